"""Optimizers: 1 and 3 steps with known gradients against the Keras update rules written
out here in NumPy (CONVENTIONS.md), the defaults, clipping, weight decay, schedules, and
(as an external oracle) the same steps taken by keras.optimizers on the TensorFlow backend.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import unidl
from unidl import layers, optimizers

# ---------------------------------------------------------------- tolerances
# Hand-written rule vs unidl, both float64: only the order of the same few float operations
# differs, so the weights agree to a few ulps of the update.
STEP_RTOL = 1e-12
STEP_ATOL = 1e-14
# Keras 3.15 (TF backend, floatx float64) vs unidl. Keras casts its Python-float
# hyper-parameters (momentum, betas, rho, epsilon, weight_decay...) through a float32
# tensor even for float64 variables (0.9 becomes 0.899999976...), so:
# - configs whose hyper-parameters are all exact in float32 (dyadic values) agree to float64
#   rounding; 1e-10 is still 100x under the float64 trajectory tolerance of CONVENTIONS.md;
KERAS_RTOL = 1e-10
KERAS_ATOL = 1e-12
# - configs using values such as Keras's own defaults (0.9, 0.999, 1e-7) carry that float32
#   rounding (seen: up to 2e-6 relative after 3 Adam steps, through 1 - beta_2**t), so they
#   get the float32 forward tolerance of CONVENTIONS.md.
KERAS_F32_RTOL = 1e-5
KERAS_F32_ATOL = 1e-6

B64 = unidl.get_backend("numpy", dtype="float64")

# CONVENTIONS.md defaults (Keras 3), restated here rather than read from unidl.
DEFAULTS = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "Adam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False},
    "AdamW": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
              "weight_decay": 0.004},
    "RMSprop": {"learning_rate": 1e-3, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False},
    "Adagrad": {"learning_rate": 1e-3, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
}
BASE = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "weight_decay": None}


def halving(step):
    """The learning-rate schedule used below: 0.125, 0.0625, ... (step counts from 0; exact in float32)."""
    return 0.125 * 0.5 ** step


SCHEDULE = "schedule"  # placeholder in CONFIGS, replaced by `halving` (or its Keras twin)

# id -> (class name, keyword arguments). Explicit values are dyadic (exact in float32, see
# the Keras tolerances above); the *_defaults configs use the CONVENTIONS defaults.
CONFIGS = {
    "sgd_defaults": ("SGD", {}),
    "sgd": ("SGD", {"learning_rate": 0.125}),
    "sgd_momentum": ("SGD", {"learning_rate": 0.125, "momentum": 0.875}),
    "sgd_nesterov": ("SGD", {"learning_rate": 0.125, "momentum": 0.875, "nesterov": True}),
    "adam_defaults": ("Adam", {}),
    "adam": ("Adam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875, "epsilon": 2.0 ** -10}),
    # beta_2 = 0.5 lets v shrink between steps, so the running max of amsgrad matters
    "adam_amsgrad": ("Adam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.5, "epsilon": 2.0 ** -20,
                              "amsgrad": True}),
    "adamw_defaults": ("AdamW", {}),
    "adamw": ("AdamW", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875, "epsilon": 2.0 ** -20,
                        "weight_decay": 0.125}),
    "rmsprop_defaults": ("RMSprop", {}),
    "rmsprop": ("RMSprop", {"learning_rate": 2.0 ** -6, "rho": 0.75, "epsilon": 2.0 ** -20}),
    "rmsprop_centered": ("RMSprop", {"learning_rate": 2.0 ** -6, "rho": 0.875, "epsilon": 2.0 ** -20,
                                     "centered": True}),
    "rmsprop_momentum": ("RMSprop", {"learning_rate": 2.0 ** -6, "rho": 0.875, "epsilon": 2.0 ** -20,
                                     "momentum": 0.875}),
    "rmsprop_centered_momentum": ("RMSprop", {"learning_rate": 2.0 ** -6, "rho": 0.875, "epsilon": 2.0 ** -20,
                                              "momentum": 0.5, "centered": True}),
    "adagrad_defaults": ("Adagrad", {}),
    "adagrad": ("Adagrad", {"learning_rate": 0.125, "initial_accumulator_value": 0.5, "epsilon": 2.0 ** -14}),
    "sgd_clipnorm": ("SGD", {"learning_rate": 0.125, "clipnorm": 0.5}),
    "adam_clipnorm": ("Adam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875,
                               "epsilon": 2.0 ** -20, "clipnorm": 0.5}),
    "sgd_clipvalue": ("SGD", {"learning_rate": 0.125, "clipvalue": 0.375}),
    "adam_clipvalue": ("Adam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875,
                                "epsilon": 2.0 ** -20, "clipvalue": 0.375}),
    "sgd_momentum_global_clipnorm": ("SGD", {"learning_rate": 0.125, "momentum": 0.5, "global_clipnorm": 1.0}),
    "rmsprop_global_clipnorm": ("RMSprop", {"learning_rate": 2.0 ** -6, "rho": 0.875, "epsilon": 2.0 ** -20,
                                            "global_clipnorm": 1.0}),
    "sgd_weight_decay": ("SGD", {"learning_rate": 0.125, "weight_decay": 0.0625}),
    "adam_weight_decay": ("Adam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875,
                                   "epsilon": 2.0 ** -20, "weight_decay": 0.0625}),
    "sgd_schedule": ("SGD", {"learning_rate": SCHEDULE, "momentum": 0.875}),
    "adam_schedule": ("Adam", {"learning_rate": SCHEDULE, "beta_1": 0.75, "beta_2": 0.96875,
                               "epsilon": 2.0 ** -20}),
    "adamw_schedule": ("AdamW", {"learning_rate": SCHEDULE, "beta_1": 0.75, "beta_2": 0.96875,
                                 "epsilon": 2.0 ** -20, "weight_decay": 0.125}),
    "rmsprop_schedule": ("RMSprop", {"learning_rate": SCHEDULE, "rho": 0.875, "epsilon": 2.0 ** -20,
                                     "centered": True}),
    # Keras's own defaults for the parts left out, with non-trivial settings elsewhere
    "adam_amsgrad_defaults": ("Adam", {"amsgrad": True}),
    "rmsprop_centered_momentum_defaults": ("RMSprop", {"momentum": 0.9, "centered": True}),
    "sgd_clipvalue_weight_decay": ("SGD", {"momentum": 0.9, "clipvalue": 0.3, "weight_decay": 0.05}),
}


def hyper_parameters(config_id):
    cls, kwargs = CONFIGS[config_id]
    return {**BASE, **DEFAULTS[cls], **kwargs}


def exact_in_float32(config_id):
    values = [v for v in hyper_parameters(config_id).values()
              if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool))]
    return all(float(np.float32(v)) == v for v in values)

# Two variables (a kernel and a bias) and three steps of known gradients. Scaled so the
# clipping options above are active (checked in test_clipping_is_active).
_rng = np.random.default_rng(42)
INITIAL = [_rng.normal(size=(3, 2)), _rng.normal(size=(2,))]
GRADS = [[1.5 * _rng.normal(size=(3, 2)), 1.5 * _rng.normal(size=(2,))] for _ in range(3)]


# ----------------------------------------------------- the rules, by hand
def _clip(grads, p):
    grads = [g.copy() for g in grads]
    if p["clipvalue"] is not None:
        grads = [np.clip(g, -p["clipvalue"], p["clipvalue"]) for g in grads]
    if p["clipnorm"] is not None:
        c = p["clipnorm"]
        grads = [g * c / max(np.sqrt(np.sum(g * g)), c) for g in grads]
    if p["global_clipnorm"] is not None:
        c = p["global_clipnorm"]
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        grads = [g * c / max(norm, c) for g in grads]
    return grads


def _sgd(w, g, s, t, lr, p):
    mu = p["momentum"]
    if not mu:
        return w - lr * g
    s["v"] = mu * s.get("v", 0.0) - lr * g
    return w + (mu * s["v"] - lr * g if p["nesterov"] else s["v"])


def _adam(w, g, s, t, lr, p):
    b1, b2 = p["beta_1"], p["beta_2"]
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    v = s["v"]
    if p["amsgrad"]:
        s["v_hat"] = np.maximum(s.get("v_hat", 0.0), s["v"])
        v = s["v_hat"]
    lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - lr_t * s["m"] / (np.sqrt(v) + p["epsilon"])


def _rmsprop(w, g, s, t, lr, p):
    rho = p["rho"]
    s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
    denominator = s["v"]
    if p["centered"]:
        s["avg"] = rho * s.get("avg", 0.0) + (1 - rho) * g
        denominator = s["v"] - s["avg"] ** 2
    increment = lr * g / np.sqrt(denominator + p["epsilon"])
    if p["momentum"]:
        s["mom"] = p["momentum"] * s.get("mom", 0.0) + increment
        increment = s["mom"]
    return w - increment


def _adagrad(w, g, s, t, lr, p):
    s["acc"] = s.get("acc", p["initial_accumulator_value"]) + g * g
    return w - lr * g / np.sqrt(s["acc"] + p["epsilon"])


RULES = {"SGD": _sgd, "Adam": _adam, "AdamW": _adam, "RMSprop": _rmsprop, "Adagrad": _adagrad}


def reference(config_id, steps):
    """Weights after `steps` updates, from the rules above and the CONVENTIONS defaults."""
    cls = CONFIGS[config_id][0]
    p = hyper_parameters(config_id)
    weights = [w.copy() for w in INITIAL]
    state = [{} for _ in weights]
    for step in range(steps):
        lr = halving(step) if p["learning_rate"] == SCHEDULE else p["learning_rate"]
        grads = _clip(GRADS[step], p)
        for i, g in enumerate(grads):
            w = weights[i]
            if p["weight_decay"]:
                w = w - lr * p["weight_decay"] * w  # decoupled, before the rule
            weights[i] = RULES[cls](w, g, state[i], step + 1, lr, p)
    return weights


# ------------------------------------------------------------ unidl side
def build(config_id):
    cls, kwargs = CONFIGS[config_id]
    kwargs = {k: (halving if v == SCHEDULE else v) for k, v in kwargs.items()}
    return getattr(optimizers, cls)(**kwargs)


def bound_variables():
    variables = [unidl.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(INITIAL)]
    for v in variables:
        v.bind(B64)
    return variables


def run_unidl(opt, steps):
    variables = bound_variables()
    with unidl.use_backend(B64):
        opt.ensure_slots(variables)
        for step in range(steps):
            opt.apply([B64.convert(g) for g in GRADS[step]], variables)
    return [v.numpy() for v in variables]


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_steps_match_the_rule(config_id, steps):
    opt = build(config_id)
    got = run_unidl(opt, steps)
    want = reference(config_id, steps)
    assert opt.iterations == steps
    for g, w, w0 in zip(got, want, INITIAL):
        assert g.shape == w0.shape and g.dtype == np.float64
        assert not np.allclose(w, w0)  # the step moved the weights
        np.testing.assert_allclose(g, w, rtol=STEP_RTOL, atol=STEP_ATOL)


def test_clipping_is_active():
    # The clip settings in CONFIGS must bite on GRADS, or the clipping tests prove nothing.
    for grads in GRADS:
        assert all(np.sqrt(np.sum(g * g)) > 0.5 for g in grads)               # clipnorm 0.5
        assert all(np.abs(g).max() > 0.375 for g in grads)                    # clipvalue 0.375
        assert np.sqrt(sum(np.sum(g * g) for g in grads)) > 1.0               # global_clipnorm 1.0


def test_tight_keras_tolerance_covers_the_explicit_configs():
    # Guard for the tolerance split: only the configs that rely on non-dyadic defaults are loose.
    loose = sorted(c for c in CONFIGS if not exact_in_float32(c))
    assert loose == sorted([c for c in CONFIGS if "defaults" in c] + ["sgd_clipvalue_weight_decay"])


def test_amsgrad_makes_a_difference_here():
    cls, kwargs = CONFIGS["adam_amsgrad"]
    plain = run_unidl(optimizers.Adam(**{**kwargs, "amsgrad": False}), 3)
    assert not np.allclose(run_unidl(build("adam_amsgrad"), 3)[0], plain[0])


def test_clip_variants_differ():
    # per-tensor clipnorm and global_clipnorm are different rules
    a = run_unidl(optimizers.SGD(0.1, clipnorm=1.0), 1)
    b = run_unidl(optimizers.SGD(0.1, global_clipnorm=1.0), 1)
    assert not np.allclose(a[0], b[0])


@pytest.mark.parametrize("cls", sorted(DEFAULTS))
def test_defaults_follow_conventions(cls):
    opt = getattr(optimizers, cls)()
    for key, value in DEFAULTS[cls].items():
        assert getattr(opt, key) == value, f"{cls}.{key}"
    assert opt.clipnorm is None and opt.clipvalue is None and opt.global_clipnorm is None
    assert opt.iterations == 0


def test_schedule_is_called_with_the_step_count():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.01

    run_unidl(optimizers.SGD(schedule), 3)
    assert seen[:3] == [0, 1, 2] and set(seen) == {0, 1, 2}


def test_adam_slots_start_at_zero_and_adagrad_at_initial_value():
    variables = bound_variables()
    with unidl.use_backend(B64):
        adam = optimizers.Adam()
        adam.ensure_slots(variables)
        adagrad = optimizers.Adagrad(initial_accumulator_value=0.25)
        adagrad.ensure_slots(variables)
    for v in variables:
        for slot in ("m", "v"):
            np.testing.assert_array_equal(B64.to_numpy(adam._slots[id(v)][slot]), 0.0)
        np.testing.assert_array_equal(B64.to_numpy(adagrad._slots[id(v)]["accumulator"]), 0.25)


def test_apply_creates_missing_slots_like_a_fresh_optimizer():
    # A standalone optimizer (custom training loops) makes its slots on the first apply;
    # the result equals an optimizer whose slots were made beforehand.
    fresh, prepared = bound_variables(), bound_variables()
    with unidl.use_backend(B64):
        optimizers.Adam().apply([B64.convert(g) for g in GRADS[0]], fresh)
        opt = optimizers.Adam()
        opt.ensure_slots(prepared)
        opt.apply([B64.convert(g) for g in GRADS[0]], prepared)
    for a, b in zip(fresh, prepared):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_argument_validation():
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(-0.1)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="beta_1"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match="rho"):
        optimizers.RMSprop(rho=1.0)
    with pytest.raises(ValueError, match="clipnorm"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(TypeError, match=r"did you mean 'learning_rate'\?"):
        optimizers.Adam(learning_rte=0.1)


def test_lookup_by_name():
    for name, cls in [("sgd", optimizers.SGD), ("adam", optimizers.Adam), ("adamw", optimizers.AdamW),
                      ("rmsprop", optimizers.RMSprop), ("adagrad", optimizers.Adagrad)]:
        assert type(optimizers.get(name)) is cls
    opt = optimizers.SGD()
    assert optimizers.get(opt) is opt
    with pytest.raises(ValueError, match=r"did you mean 'adam'\?"):
        optimizers.get("adamm")  # not "adma": difflib ranks "adamax" closer to that


def test_sgd_inside_fit_matches_the_closed_form_gradient():
    # A linear Dense(1) under mse: dL/dW = 2/N x^T (xW + b - y), dL/db = 2/N sum(xW + b - y).
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
    model = unidl.Sequential([layers.Dense(1, input_shape=(3,))], seed=0)
    model.compile(optimizer=optimizers.SGD(0.1, momentum=0.5), loss="mse", backend="numpy", dtype="float64")
    kernel, bias = (w.copy() for w in model.get_weights())
    velocity = [np.zeros_like(kernel), np.zeros_like(bias)]
    for _ in range(3):
        residual = x @ kernel + bias - y
        grads = [2.0 / len(x) * x.T @ residual, 2.0 / len(x) * residual.sum(axis=0)]
        velocity = [0.5 * v - 0.1 * g for v, g in zip(velocity, grads)]
        kernel, bias = kernel + velocity[0], bias + velocity[1]
    model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    got_kernel, got_bias = model.get_weights()
    np.testing.assert_allclose(got_kernel, kernel, rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_allclose(got_bias, bias, rtol=STEP_RTOL, atol=STEP_ATOL)


# ------------------------------------------------------- Keras as oracle (the keras fixture: conftest.py)

def keras_optimizer(keras, config_id):
    cls, kwargs = CONFIGS[config_id]

    class Halving(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.125 * keras.ops.power(0.5, keras.ops.cast(step, "float64"))

    kwargs = {k: (Halving() if v == SCHEDULE else v) for k, v in kwargs.items()}
    return getattr(keras.optimizers, cls)(**kwargs)


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_three_steps_match_keras(keras, config_id):
    variables = [keras.Variable(w.copy(), dtype="float64") for w in INITIAL]
    opt = keras_optimizer(keras, config_id)
    for step in range(3):
        opt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in GRADS[step]], variables)
    got = run_unidl(build(config_id), 3)
    rtol, atol = (KERAS_RTOL, KERAS_ATOL) if exact_in_float32(config_id) else (KERAS_F32_RTOL, KERAS_F32_ATOL)
    for g, kv in zip(got, variables):
        np.testing.assert_allclose(g, np.asarray(kv.numpy()), rtol=rtol, atol=atol)


@pytest.mark.parametrize("cls", sorted(DEFAULTS))
def test_keras_defaults_agree_with_conventions(keras, cls):
    opt = getattr(keras.optimizers, cls)()
    for key, value in DEFAULTS[cls].items():
        got = getattr(opt, key)
        got = float(np.asarray(got)) if key == "learning_rate" else got
        assert got == pytest.approx(value), f"keras {cls}.{key}"

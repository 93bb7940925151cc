"""Nadam, Adamax, Adadelta and Lion: Keras 3's update rules and defaults.

Each config takes 20 steps with known gradients and is checked three ways: against the
rules written out here in NumPy (float64), against keras.optimizers on the TensorFlow
backend in float64 (the Keras-oracle fixture, skipped without Keras), and, on torch and
tensorflow in float32, against the same Keras trajectory. Then names, defaults, argument
errors, get_config round trips, saving, and training through fit() on every backend.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import unidl
from unidl import layers, optimizers
from unidl.serialization import deserialize_optimizer, serialize_optimizer
from unidl.testing.tolerances import TRAJECTORY_F32, TRAJECTORY_F64

STEPS = 20
# Hand-written rule vs unidl, both float64: the same few float operations in another order.
STEP_RTOL, STEP_ATOL = 1e-12, 1e-14
# Keras 3.15 (TF, floatx float64) vs unidl (numpy, float64). Configs whose hyper-parameters are
# exact in float32 (dyadic) agree to float64 rounding over 20 steps:
KERAS_RTOL, KERAS_ATOL = 1e-10, 1e-12
# Keras rounds some Python-float constants through float32 even for float64 variables (seen:
# Nadam's momentum-schedule decay 0.96 inside update_step, not in the running product; the
# defaults 0.9/0.999/0.95/1e-7). unidl keeps the exact constants, so those configs carry that
# rounding: seen up to 6e-8 relative after 20 steps; the float32 forward tolerance bounds it.
KERAS_F32_RTOL, KERAS_F32_ATOL = 1e-5, 1e-6
# float32 backends (torch, tensorflow) vs Keras in float64: the trajectory tolerance of
# CONVENTIONS.md. Lion moves every weight by exactly lr per step, so a sign flipped by float32
# rounding would show as a 2*lr jump: the gradients here keep Lion's arguments away from 0
# (checked in test_lion_arguments_stay_away_from_zero).
F32 = TRAJECTORY_F32

SCHEDULE = "schedule"


def halving(step):
    """0.125 * 0.5**step (exact in float32)."""
    return 0.125 * 0.5 ** step


DEFAULTS = {
    "Nadam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Adamax": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "Adadelta": {"learning_rate": 1e-3, "rho": 0.95, "epsilon": 1e-7},
    "Lion": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.99},
}
BASE = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None, "weight_decay": None}

CONFIGS = {
    "nadam_defaults": ("Nadam", {}),
    "nadam": ("Nadam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875, "epsilon": 2.0 ** -20}),
    "nadam_weight_decay_clipnorm": ("Nadam", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875,
                                              "epsilon": 2.0 ** -20, "weight_decay": 0.0625, "clipnorm": 0.5}),
    "nadam_schedule": ("Nadam", {"learning_rate": SCHEDULE, "beta_1": 0.75, "beta_2": 0.96875,
                                 "epsilon": 2.0 ** -20}),
    "adamax_defaults": ("Adamax", {}),
    "adamax": ("Adamax", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.96875, "epsilon": 2.0 ** -20}),
    "adamax_clipvalue": ("Adamax", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.5,
                                    "epsilon": 2.0 ** -20, "clipvalue": 0.375}),
    "adadelta_defaults": ("Adadelta", {}),
    "adadelta": ("Adadelta", {"learning_rate": 0.5, "rho": 0.75, "epsilon": 2.0 ** -10}),
    "adadelta_global_clipnorm": ("Adadelta", {"learning_rate": 0.5, "rho": 0.875, "epsilon": 2.0 ** -10,
                                              "global_clipnorm": 1.0}),
    "lion_defaults": ("Lion", {}),
    "lion": ("Lion", {"learning_rate": 0.0625, "beta_1": 0.75, "beta_2": 0.875}),
    "lion_weight_decay_schedule": ("Lion", {"learning_rate": SCHEDULE, "beta_1": 0.5, "beta_2": 0.9375,
                                            "weight_decay": 0.25}),
}


def hyper_parameters(config_id):
    cls, kwargs = CONFIGS[config_id]
    return {**BASE, **DEFAULTS[cls], **kwargs}


def exact_in_float32(config_id):
    if CONFIGS[config_id][0] == "Nadam":
        return False  # Keras's float32 0.96, see KERAS_F32_RTOL
    values = [v for v in hyper_parameters(config_id).values() if isinstance(v, float)]
    return all(float(np.float32(v)) == v for v in values)


def _f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


_rng = np.random.default_rng(7)
INITIAL = [_f32(_rng.normal(size=(3, 4))), _f32(_rng.normal(size=(4,)))]
GRADS = [[_f32(1.5 * _rng.normal(size=(3, 4))), _f32(1.5 * _rng.normal(size=(4,)))] for _ in range(STEPS)]
B64 = unidl.get_backend("numpy", dtype="float64")
OTHERS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in ("torch", "tensorflow")]


# ----------------------------------------------------------------- the rules, by hand (float64)

def _clip(grads, p):
    grads = [g.copy() for g in grads]
    if p["clipvalue"] is not None:
        grads = [np.clip(g, -p["clipvalue"], p["clipvalue"]) for g in grads]
    if p["clipnorm"] is not None:
        grads = [g * p["clipnorm"] / max(np.sqrt(np.sum(g * g)), p["clipnorm"]) for g in grads]
    if p["global_clipnorm"] is not None:
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        grads = [g * p["global_clipnorm"] / max(norm, p["global_clipnorm"]) for g in grads]
    return grads


def _nadam(w, g, s, t, lr, p):
    b1, b2 = p["beta_1"], p["beta_2"]
    u_t, u_next = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
    s["U"] = s.get("U", 1.0) * u_t
    s["m"] = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - b1)
    s["v"] = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * (1 - b2)
    m_hat = u_next * s["m"] / (1 - s["U"] * u_next) + (1 - u_t) * g / (1 - s["U"])
    v_hat = s["v"] / (1 - b2 ** t)
    return w - m_hat * lr / (np.sqrt(v_hat) + p["epsilon"])


def _adamax(w, g, s, t, lr, p):
    b1, b2 = p["beta_1"], p["beta_2"]
    s["m"] = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - b1)
    s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g))
    return w - lr * s["m"] / ((1 - b1 ** t) * (s["u"] + p["epsilon"]))


def _adadelta(w, g, s, t, lr, p):
    rho, eps = p["rho"], p["epsilon"]
    s["acc_g"] = rho * s.get("acc_g", 0.0) + (1 - rho) * g * g
    delta = -np.sqrt(s.get("acc_d", 0.0) + eps) * g / np.sqrt(s["acc_g"] + eps)
    s["acc_d"] = rho * s.get("acc_d", 0.0) + (1 - rho) * delta * delta
    return w + lr * delta


def _lion(w, g, s, t, lr, p):
    m = s.get("m", 0.0)
    w = w - lr * np.sign(m * p["beta_1"] + g * (1 - p["beta_1"]))
    s["m"] = m * p["beta_2"] + g * (1 - p["beta_2"])
    return w


RULES = {"Nadam": _nadam, "Adamax": _adamax, "Adadelta": _adadelta, "Lion": _lion}


def reference(config_id, steps=STEPS):
    cls, p = CONFIGS[config_id][0], hyper_parameters(config_id)
    weights, state = [w.copy() for w in INITIAL], [{} for _ in INITIAL]
    for step in range(steps):
        lr = halving(step) if p["learning_rate"] == SCHEDULE else p["learning_rate"]
        for i, g in enumerate(_clip(GRADS[step], p)):
            w = weights[i]
            if p["weight_decay"]:
                w = w - lr * p["weight_decay"] * w
            weights[i] = RULES[cls](w, g, state[i], step + 1, lr, p)
    return weights


# ----------------------------------------------------------------- unidl and Keras runs

def build(config_id):
    cls, kwargs = CONFIGS[config_id]
    return getattr(optimizers, cls)(**{k: (halving if v == SCHEDULE else v) for k, v in kwargs.items()})


def run_unidl(opt, backend=B64, steps=STEPS):
    variables = [unidl.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(INITIAL)]
    for v in variables:
        v.bind(backend)
    with unidl.use_backend(backend):
        for step in range(steps):
            opt.apply([backend.convert(g) for g in GRADS[step]], variables)
    return [v.numpy() for v in variables]


_KERAS_CACHE: dict = {}


def run_keras(keras, config_id):
    if config_id not in _KERAS_CACHE:
        cls, kwargs = CONFIGS[config_id]

        class Halving(keras.optimizers.schedules.LearningRateSchedule):
            def __call__(self, step):
                return 0.125 * keras.ops.power(0.5, keras.ops.cast(step, "float64"))

        opt = getattr(keras.optimizers, cls)(**{k: (Halving() if v == SCHEDULE else v) for k, v in kwargs.items()})
        variables = [keras.Variable(w.copy(), dtype="float64") for w in INITIAL]
        for step in range(STEPS):
            opt.apply([keras.ops.convert_to_tensor(g, dtype="float64") for g in GRADS[step]], variables)
        _KERAS_CACHE[config_id] = [np.asarray(v.numpy()) for v in variables]
    return _KERAS_CACHE[config_id]


# ----------------------------------------------------------------- trajectories

@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_twenty_steps_match_the_rule(config_id):
    opt = build(config_id)
    got = run_unidl(opt)
    assert opt.iterations == STEPS
    for g, w, w0 in zip(got, reference(config_id), INITIAL):
        assert not np.allclose(g, w0)  # the steps moved the weights
        np.testing.assert_allclose(g, w, rtol=STEP_RTOL, atol=STEP_ATOL)


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_twenty_steps_match_keras_in_float64(keras, config_id):
    want = run_keras(keras, config_id)
    rtol, atol = (KERAS_RTOL, KERAS_ATOL) if exact_in_float32(config_id) else (KERAS_F32_RTOL, KERAS_F32_ATOL)
    for g, w in zip(run_unidl(build(config_id)), want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.skipif(not OTHERS, reason="neither torch nor tensorflow is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_twenty_float32_steps_match_keras(keras, backend, config_id):
    want = run_keras(keras, config_id)
    got = run_unidl(build(config_id), unidl.get_backend(backend, dtype="float32"))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=F32.rtol, atol=F32.atol)


@pytest.mark.parametrize("config_id", [c for c in CONFIGS if c.startswith("lion")])
def test_lion_arguments_stay_away_from_zero(config_id):
    # The float32 comparison above is meaningful for Lion only if no sign is near a tie.
    p = hyper_parameters(config_id)
    m = [np.zeros_like(w) for w in INITIAL]
    for step in range(STEPS):
        for i, g in enumerate(_clip(GRADS[step], p)):
            arg = m[i] * p["beta_1"] + g * (1 - p["beta_1"])
            # float32 rounds the argument by ~1e-7 here (|m|, |g| of order 1): keep 100x from it
            assert np.abs(arg).min() > 1e-5
            m[i] = m[i] * p["beta_2"] + g * (1 - p["beta_2"])


def test_nadam_schedule_product_survives_reset_and_reuse():
    opt = build("nadam")
    first = run_unidl(opt)
    opt.reset()
    assert opt.iterations == 0
    again = run_unidl(opt)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- names, defaults, config

@pytest.mark.parametrize("name, cls", [("nadam", "Nadam"), ("adamax", "Adamax"), ("adadelta", "Adadelta"),
                                       ("lion", "Lion")])
def test_lookup_by_name(name, cls):
    assert type(optimizers.get(name)) is getattr(optimizers, cls)
    assert getattr(unidl.optimizers, cls) is getattr(optimizers, cls)


@pytest.mark.parametrize("cls", sorted(DEFAULTS))
def test_defaults(cls):
    opt = getattr(optimizers, cls)()
    for key, value in DEFAULTS[cls].items():
        assert getattr(opt, key) == value, f"{cls}.{key}"


@pytest.mark.parametrize("cls", sorted(DEFAULTS))
def test_keras_has_the_same_defaults(keras, cls):
    opt = getattr(keras.optimizers, cls)()
    for key, value in DEFAULTS[cls].items():
        got = getattr(opt, key)
        got = float(np.asarray(got)) if key == "learning_rate" else got
        assert got == pytest.approx(value), f"keras {cls}.{key}"


@pytest.mark.parametrize("config_id", sorted(c for c in CONFIGS if SCHEDULE not in CONFIGS[c][1].values()))
def test_get_config_round_trip(config_id):
    opt = build(config_id)
    config = opt.get_config()
    again = type(opt)(**config)
    assert again.get_config() == config
    restored = deserialize_optimizer(serialize_optimizer(opt))
    assert type(restored) is type(opt) and restored.get_config() == config
    for a, b in zip(run_unidl(restored, steps=3), run_unidl(build(config_id), steps=3)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make, argument", [
    (lambda: optimizers.Nadam(beta_1=1.0), "beta_1"),
    (lambda: optimizers.Nadam(beta_2=-0.1), "beta_2"),
    (lambda: optimizers.Nadam(epsilon=0.0), "epsilon"),
    (lambda: optimizers.Adamax(beta_2=1.5), "beta_2"),
    (lambda: optimizers.Adamax(epsilon=-1e-7), "epsilon"),
    (lambda: optimizers.Adadelta(rho=1.0), "rho"),
    (lambda: optimizers.Adadelta(rho="high"), "rho"),
    (lambda: optimizers.Lion(beta_1=0.0), "beta_1"),
    (lambda: optimizers.Lion(beta_2=1.5), "beta_2"),
    (lambda: optimizers.Lion(learning_rate=-1.0), "learning_rate"),
])
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_misspelled_keyword_is_refused_with_a_suggestion():
    with pytest.raises(TypeError, match=r"did you mean 'epsilon'\?"):
        optimizers.Nadam(epsilom=1e-8)


# ----------------------------------------------------------------- inside fit, saved, on every backend

def _model():
    return unidl.Sequential([layers.Dense(8, activation="tanh", input_shape=(4,)), layers.Dense(1)], seed=3)


def _data():
    rng = np.random.default_rng(11)
    x = _f32(rng.normal(size=(32, 4)))
    return x, _f32(np.sin(x.sum(axis=1, keepdims=True)))


def _train(name, backend, dtype, steps=5, **kwargs):
    x, y = _data()
    model = _model()
    model.compile(optimizer=getattr(optimizers, name)(**kwargs), loss="mse", backend=backend, dtype=dtype)
    history = model.fit(x, y, batch_size=32, epochs=steps, shuffle=False, verbose=0)
    return history.history["loss"], model


FIT_KWARGS = {"Nadam": {"learning_rate": 0.05}, "Adamax": {"learning_rate": 0.05},
              "Adadelta": {"learning_rate": 1.0}, "Lion": {"learning_rate": 0.01}}


@pytest.mark.parametrize("name", sorted(FIT_KWARGS))
def test_fit_lowers_the_loss(name):
    losses, _ = _train(name, "numpy", "float64", steps=20, **FIT_KWARGS[name])
    assert losses[-1] < losses[0]


@pytest.mark.skipif(not OTHERS, reason="neither torch nor tensorflow is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("dtype, tol", [("float32", TRAJECTORY_F32), ("float64", TRAJECTORY_F64)])
@pytest.mark.parametrize("name", sorted(FIT_KWARGS))
def test_fit_trajectory_matches_numpy(name, backend, dtype, tol):
    # fit() runs a compiled step on torch/tensorflow: the step scalars (Nadam's schedule) are fed per step.
    want, _ = _train(name, "numpy", dtype, **FIT_KWARGS[name])
    got, _ = _train(name, backend, dtype, **FIT_KWARGS[name])
    np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=tol.atol)


@pytest.mark.parametrize("name", sorted(FIT_KWARGS))
def test_saved_model_keeps_the_optimizer(tmp_path, name):
    _, model = _train(name, "numpy", "float64", steps=2, **FIT_KWARGS[name])
    path = tmp_path / "model.unidl"
    model.save(path)
    loaded = unidl.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_slot_names_follow_keras():
    assert optimizers.Nadam.slot_names == ("momentum", "velocity")
    assert optimizers.Adamax.slot_names == ("momentum", "norm")
    assert optimizers.Adadelta.slot_names == ("accumulated_grad", "accumulated_delta_var")
    assert optimizers.Lion.slot_names == ("momentum",)
    assert math.isclose(optimizers.Lion().learning_rate, 1e-3)

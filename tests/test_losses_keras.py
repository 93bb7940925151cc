"""The losses Keras scripts name (KLDivergence, Poisson, CosineSimilarity, Hinge, SquaredHinge,
CategoricalHinge, LogCosh, Huber, MeanAbsolutePercentageError, MeanSquaredLogarithmicError) and
NegativeLogLikelihood.

Values and gradients (w.r.t. y_pred, under a random upstream weight) are compared with
keras.losses on the TensorFlow backend in float64 (the Keras-oracle fixture): unidl on NumPy in
float64 and on torch/tensorflow in float32, every reduction, with and without sample_weight.
NegativeLogLikelihood, which Keras lacks, is compared with torch.nn.functional.nll_loss and with
sparse categorical cross-entropy. Then the loss functions, names, label checks, saving, and
training through fit() on every backend.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import unidl
from unidl import layers, losses
from unidl.losses import LossInputError
from unidl.testing.tolerances import (FORWARD_F32, FORWARD_F64, GRAD_F32, GRAD_F64, TRAJECTORY_F32,
                                      Tolerance)

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]
OTHERS = [b for b in BACKENDS if b != "numpy"]
TARGETS = [("numpy", "float64")] + [(b, "float32") for b in OTHERS]
TOLERANCES = {"float64": (FORWARD_F64, GRAD_F64), "float32": (FORWARD_F32, GRAD_F32)}
# Keras's log_cosh subtracts log(2) computed in float32 (0.69314718246...) even for float64
# inputs; unidl subtracts math.log(2). Every float64 value is then off by 1.9e-9 per element
# (relative: under 1e-8 for the values here, which are above 0.1 per sample); gradients agree.
KERAS_LOG2_F32 = Tolerance(1e-7, 1e-8, "KERAS_LOG2_F32", reason="Keras's log(2) is rounded to float32",
                           replaces="FORWARD_F64")
REDUCTIONS = [("sum_over_batch_size", False), ("sum_over_batch_size", True), ("sum", True), ("none", False)]
BATCH = 6


def _f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


def _rng(name):
    return np.random.default_rng(sum(map(ord, name)))


def _regression(name, shape=(BATCH, 4), low_true=None):
    rng = _rng(name)
    y_true = rng.normal(size=shape) if low_true is None else rng.uniform(low_true, 3.0, shape)
    return _f32(y_true), _f32(rng.normal(size=shape))


def _mape(name):
    rng = _rng(name)
    sign = rng.choice([-1.0, 1.0], (BATCH, 4))
    return _f32(sign * rng.uniform(0.5, 2.0, (BATCH, 4))), _f32(rng.normal(size=(BATCH, 4)))


def _msle(name):
    rng = _rng(name)  # some negatives on both sides: the max(., 1e-7) branch is taken too
    return _f32(rng.uniform(-0.5, 3.0, (BATCH, 4))), _f32(rng.uniform(-0.5, 3.0, (BATCH, 4)))


def _distributions(name):
    rng = _rng(name)
    t = rng.uniform(0.05, 1.0, (BATCH, 5))
    p = rng.uniform(0.05, 1.0, (BATCH, 5))
    return _f32(t / t.sum(axis=1, keepdims=True)), _f32(p / p.sum(axis=1, keepdims=True))


def _poisson(name):
    rng = _rng(name)
    return _f32(rng.integers(0, 5, (BATCH, 3))), _f32(rng.uniform(0.2, 4.0, (BATCH, 3)))


def _binary_labels(name):
    rng = _rng(name)
    return _f32(rng.integers(0, 2, (BATCH, 3))), _f32(rng.normal(size=(BATCH, 3)))


def _signed_labels(name):
    rng = _rng(name)
    return _f32(rng.choice([-1.0, 1.0], (BATCH, 3))), _f32(rng.normal(size=(BATCH, 3)))


def _one_hot(name):
    rng = _rng(name)
    return _f32(np.eye(4)[rng.integers(0, 4, BATCH)]), _f32(rng.normal(size=(BATCH, 4)))


# id -> (unidl class, kwargs, Keras class name, data)
CASES: dict[str, tuple[type, dict, str, Callable]] = {
    "kld": (losses.KLDivergence, {}, "KLDivergence", _distributions),
    "poisson": (losses.Poisson, {}, "Poisson", _poisson),
    "cosine": (losses.CosineSimilarity, {}, "CosineSimilarity", _regression),
    "cosine_axis1": (losses.CosineSimilarity, {"axis": 1}, "CosineSimilarity",
                     lambda n: _regression(n, (BATCH, 3, 2))),
    "hinge_binary": (losses.Hinge, {}, "Hinge", _binary_labels),
    "hinge_signed": (losses.Hinge, {}, "Hinge", _signed_labels),
    "squared_hinge_binary": (losses.SquaredHinge, {}, "SquaredHinge", _binary_labels),
    "squared_hinge_signed": (losses.SquaredHinge, {}, "SquaredHinge", _signed_labels),
    "categorical_hinge": (losses.CategoricalHinge, {}, "CategoricalHinge", _one_hot),
    "log_cosh": (losses.LogCosh, {}, "LogCosh", _regression),
    "huber": (losses.Huber, {}, "Huber", lambda n: _regression(n, (BATCH, 4))),
    "huber_delta0.5": (losses.Huber, {"delta": 0.5}, "Huber", lambda n: _regression(n, (BATCH, 4))),
    "mape": (losses.MeanAbsolutePercentageError, {}, "MeanAbsolutePercentageError", _mape),
    "msle": (losses.MeanSquaredLogarithmicError, {}, "MeanSquaredLogarithmicError", _msle),
}


def arrays(case_id, weighted):
    y_true, y_pred = CASES[case_id][3](case_id)
    weight = _f32(_rng(case_id + "w").uniform(0.5, 2.0, BATCH)) if weighted else None
    return y_true, y_pred, weight


def upstream(shape, name):
    return _f32(_rng(name + "r").uniform(0.5, 1.5, shape))


def unidl_value_and_grad(loss, y_true, y_pred, weight, backend, dtype, name=None):
    be = unidl.get_backend(backend, dtype=dtype)
    with unidl.use_backend(be):
        yt, yp = be.convert(y_true), be.variable(y_pred, name="y_pred")
        w = None if weight is None else be.convert(weight)
        value = be.to_numpy(loss(yt, yp, w))
        r = be.convert(upstream(value.shape, name or loss.name))
        _, _, (grad,) = be.value_and_grad(lambda: (unidl.ops.sum(unidl.ops.multiply(loss(yt, yp, w), r)), None),
                                          [yp])
        return value, be.to_numpy(grad)


def keras_value_and_grad(keras, loss, y_true, y_pred, weight, name):
    import tensorflow as tf
    yp = tf.Variable(y_pred, dtype=tf.float64)
    if weight is not None:  # Keras does not broadcast (batch,) weights over (batch, steps) values; unidl does
        weight = weight.reshape(len(weight), *[1] * (y_true.ndim - 2))
    with tf.GradientTape() as tape:
        value = loss(tf.constant(y_true, tf.float64), yp, None if weight is None else tf.constant(weight, tf.float64))
        r = tf.constant(upstream(tuple(value.shape), name), tf.float64)
        objective = tf.reduce_sum(value * r)
    return np.asarray(value), np.asarray(tape.gradient(objective, yp))


def close(got, want, tol: Tolerance, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Keras {want.shape}"
    np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=tol.atol, err_msg=f"{what} ({tol})")


# ----------------------------------------------------------------- against Keras

@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("reduction, weighted", REDUCTIONS)
@pytest.mark.parametrize("case_id", sorted(CASES))
def test_values_and_gradients_match_keras(keras, case_id, reduction, weighted, backend, dtype):
    cls, kwargs, keras_name, _ = CASES[case_id]
    y_true, y_pred, weight = arrays(case_id, weighted)
    unidl_loss = cls(reduction=reduction, **kwargs)
    keras_loss = getattr(keras.losses, keras_name)(reduction=None if reduction == "none" else reduction,
                                                    **kwargs)
    want_value, want_grad = keras_value_and_grad(keras, keras_loss, y_true, y_pred, weight, unidl_loss.name)
    value, grad = unidl_value_and_grad(unidl_loss, y_true, y_pred, weight, backend, dtype)
    forward, gradient = TOLERANCES[dtype]
    if case_id == "log_cosh" and dtype == "float64":
        forward = KERAS_LOG2_F32
    close(value, want_value, forward, f"{case_id} value on {backend}")
    close(grad, want_grad, gradient, f"{case_id} gradient on {backend}")


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_functions_match_keras_functions(keras, case_id):
    cls, kwargs, keras_name, _ = CASES[case_id]
    y_true, y_pred, _ = arrays(case_id, False)
    name = cls.name
    with unidl.use_backend("numpy", dtype="float64") as be:
        got = be.to_numpy(getattr(losses, name)(y_true, y_pred, **kwargs))
    want = np.asarray(getattr(keras.losses, name)(y_true, y_pred, **kwargs))
    close(got, want, KERAS_LOG2_F32 if name == "log_cosh" else FORWARD_F64, f"losses.{name}")


def test_hinge_converts_labels_only_when_all_are_binary():
    y_pred = np.array([[0.25, -0.5, 2.0]])
    with unidl.use_backend("numpy", dtype="float64") as be:
        binary = be.to_numpy(losses.hinge(np.array([[0.0, 1.0, 1.0]]), y_pred))
        mixed = be.to_numpy(losses.hinge(np.array([[0.0, 1.0, -1.0]]), y_pred))
    # {0, 1} -> {-1, 1}: margins 1.25, 1.5, 0
    np.testing.assert_allclose(binary, [(1.25 + 1.5 + 0.0) / 3])
    # a -1 among them: left as given: margins 1, 1.5, 3
    np.testing.assert_allclose(mixed, [(1.0 + 1.5 + 3.0) / 3])


def test_cosine_similarity_of_a_zero_vector_has_finite_gradients():
    be = unidl.get_backend("numpy", dtype="float64")
    loss = losses.CosineSimilarity()
    with unidl.use_backend(be):
        y_pred = be.variable(np.array([[0.0, 0.0], [1.0, 2.0]]))
        y_true = be.convert(np.array([[1.0, 0.0], [2.0, 4.0]]))
        value, _, (grad,) = be.value_and_grad(lambda: (loss(y_true, y_pred), None), [y_pred])
    assert np.isfinite(be.to_numpy(grad)).all()
    np.testing.assert_allclose(be.to_numpy(value), -0.5)  # 0 for the zero vector, -1 for the parallel pair


# ----------------------------------------------------------------- NegativeLogLikelihood

def _log_probabilities(seed=0, shape=(BATCH, 5)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=shape)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return _f32(log_p), rng.integers(0, shape[-1], shape[:-1])


@pytest.mark.parametrize("backend, dtype", TARGETS)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_nll_matches_torch_nll_loss(backend, dtype, reduction):
    torch = pytest.importorskip("torch")
    log_p, labels = _log_probabilities()
    torch_reduction = {"sum_over_batch_size": "mean", "sum": "sum", "none": "none"}[reduction]
    lp = torch.tensor(log_p, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.nll_loss(lp, torch.tensor(labels), reduction=torch_reduction)
    r = upstream(tuple(want.shape), "nll")
    (want * torch.tensor(r)).sum().backward()
    loss = losses.NegativeLogLikelihood(reduction=reduction)
    value, grad = unidl_value_and_grad(loss, labels, log_p, None, backend, dtype, name="nll")
    forward, gradient = TOLERANCES[dtype]
    close(value, want.detach().numpy(), forward, "nll value")
    close(grad, lp.grad.numpy(), gradient, "nll gradient")


def test_nll_on_log_softmax_equals_sparse_crossentropy_from_logits():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(4, 3, 6)), rng.integers(0, 6, (4, 3))  # sequence outputs
    be = unidl.get_backend("numpy", dtype="float64")
    with unidl.use_backend(be):
        x = be.convert(logits)
        nll = losses.NegativeLogLikelihood()(be.convert(labels[..., None]), unidl.ops.log_softmax(x))
        scce = losses.SparseCategoricalCrossentropy(from_logits=True)(be.convert(labels), x)
    np.testing.assert_allclose(be.to_numpy(nll), be.to_numpy(scce), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_nll_checks_its_labels():
    loss = losses.get("nll")
    assert loss.check_labels(np.array([0, 2, 1]), (None, 3)).dtype == np.int64
    with pytest.raises(LossInputError, match=r"class ids in \[0, 3\)"):
        loss.check_labels(np.array([0, 3]), (None, 3))
    with pytest.raises(LossInputError, match="integer class ids of shape"):
        loss.check_labels(np.eye(3), (None, 3))


# ----------------------------------------------------------------- names, labels, config

@pytest.mark.parametrize("name, cls", [
    ("kl_divergence", losses.KLDivergence), ("kld", losses.KLDivergence),
    ("kullback_leibler_divergence", losses.KLDivergence), ("poisson", losses.Poisson),
    ("cosine_similarity", losses.CosineSimilarity), ("hinge", losses.Hinge), ("squared_hinge", losses.SquaredHinge),
    ("categorical_hinge", losses.CategoricalHinge), ("log_cosh", losses.LogCosh), ("logcosh", losses.LogCosh),
    ("huber", losses.Huber), ("mean_absolute_percentage_error", losses.MeanAbsolutePercentageError),
    ("mape", losses.MeanAbsolutePercentageError), ("mean_squared_logarithmic_error",
                                                   losses.MeanSquaredLogarithmicError),
    ("msle", losses.MeanSquaredLogarithmicError), ("negative_log_likelihood", losses.NegativeLogLikelihood),
    ("nll", losses.NegativeLogLikelihood),
])
def test_lookup_by_name(name, cls):
    assert type(losses.get(name)) is cls


@pytest.mark.parametrize("name", sorted(losses.FUNCTIONS))
def test_builtin_functions_resolve_to_their_class(name):
    # compile(loss=unidl.losses.sparse_categorical_crossentropy) checks labels as the class does
    assert type(losses.get(losses.FUNCTIONS[name])) is losses.BUILTINS[name]


@pytest.mark.parametrize("name", ["kl_divergence", "poisson", "cosine_similarity", "hinge", "squared_hinge",
                                  "categorical_hinge", "log_cosh", "mean_absolute_percentage_error",
                                  "mean_squared_logarithmic_error"])
def test_keras_default_names(keras, name):
    assert losses.get(name).name == getattr(keras.losses, type(losses.get(name)).__name__)().name


def test_labels_must_match_the_output_shape():
    with pytest.raises(LossInputError, match="do not match the model output shape"):
        losses.KLDivergence().check_labels(np.zeros((4, 3)), (None, 5))


def test_cosine_axis_in_config_and_argument_checks():
    assert losses.CosineSimilarity(axis=1).get_config()["axis"] == 1
    with pytest.raises(ValueError, match="reduction"):
        losses.Poisson(reduction="avg")


# ----------------------------------------------------------------- in a model: saving, every backend

MODEL_LOSSES = {  # loss -> (output activation, label maker)
    "kl_divergence": ("softmax", lambda rng, n: np.eye(3)[rng.integers(0, 3, n)] * 0.8 + 0.2 / 3),
    "poisson": ("softplus", lambda rng, n: rng.integers(0, 4, (n, 3)).astype(float)),
    "cosine_similarity": (None, lambda rng, n: rng.normal(size=(n, 3))),
    "hinge": ("tanh", lambda rng, n: rng.integers(0, 2, (n, 3)).astype(float)),
    "squared_hinge": ("tanh", lambda rng, n: rng.choice([-1.0, 1.0], (n, 3))),
    "categorical_hinge": (None, lambda rng, n: np.eye(3)[rng.integers(0, 3, n)]),
    "log_cosh": (None, lambda rng, n: rng.normal(size=(n, 3))),
    "mape": (None, lambda rng, n: rng.uniform(1.0, 2.0, (n, 3))),
    "msle": ("softplus", lambda rng, n: rng.uniform(0.0, 3.0, (n, 3))),
    "nll": ("log_softmax", lambda rng, n: rng.integers(0, 3, n)),
}


def _model_and_data(name):
    activation, labels = MODEL_LOSSES[name]
    rng = np.random.default_rng(5)
    x = _f32(rng.normal(size=(24, 4)))
    y = _f32(labels(rng, 24)) if name != "nll" else labels(rng, 24)
    model = unidl.Sequential([layers.Dense(6, activation="tanh", input_shape=(4,)),
                              layers.Dense(3, activation=activation)], seed=2)
    return model, x, y


def _fit(name, backend, dtype, loss=None, steps=4):
    model, x, y = _model_and_data(name)
    model.compile(optimizer=unidl.optimizers.SGD(0.05), loss=loss or name, backend=backend, dtype=dtype)
    history = model.fit(x, y, batch_size=24, epochs=steps, shuffle=False, verbose=0)
    return history.history["loss"], model, x, y


@pytest.mark.parametrize("name", sorted(MODEL_LOSSES))
def test_training_lowers_the_loss(name):
    losses_seen, *_ = _fit(name, "numpy", "float64", steps=10)
    assert losses_seen[-1] < losses_seen[0]


@pytest.mark.skipif(not OTHERS, reason="neither torch nor tensorflow is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("name", sorted(MODEL_LOSSES))
def test_fit_trajectory_matches_numpy(name, backend):
    want, *_ = _fit(name, "numpy", "float32")
    got, *_ = _fit(name, backend, "float32")
    np.testing.assert_allclose(got, want, rtol=TRAJECTORY_F32.rtol, atol=TRAJECTORY_F32.atol)


@pytest.mark.parametrize("loss", [
    "kl_divergence", "nll", losses.CosineSimilarity(axis=-1), losses.Huber(delta=0.5),
    losses.Poisson(reduction="sum"), losses.SquaredHinge(name="sq"),
])
def test_saved_model_keeps_its_loss(tmp_path, loss):
    name = {"Huber": "log_cosh", "Poisson": "poisson", "CosineSimilarity": "cosine_similarity",
            "SquaredHinge": "squared_hinge"}.get(type(loss).__name__, loss)
    _, model, x, y = _fit(name, "numpy", "float64", loss=loss, steps=2)
    path = tmp_path / "model.unidl"
    model.save(path)
    loaded = unidl.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)
    if not isinstance(loss, str):
        assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()


@pytest.mark.parametrize("fn", [losses.kl_divergence, losses.sparse_categorical_crossentropy, losses.hinge])
def test_saved_model_compiled_with_a_loss_function(tmp_path, fn):
    # compile(loss=keras.losses.kl_divergence): the file names the function; loading finds it among unidl's.
    model = unidl.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))], seed=0)
    model.compile(optimizer="sgd", loss=fn)
    rng = np.random.default_rng(0)
    x = rng.random((8, 4))
    y = rng.integers(0, 3, 8) if fn is losses.sparse_categorical_crossentropy else np.eye(3)[rng.integers(0, 3, 8)]
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "model.unidl")
    loaded = unidl.load_model(tmp_path / "model.unidl")
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)


@pytest.mark.parametrize("name", sorted(MODEL_LOSSES))
def test_saved_model_keeps_each_new_loss_class(tmp_path, name):
    loss = losses.get(name)  # an instance: the file names its class and config
    _, model, x, y = _fit(name, "numpy", "float64", loss=loss, steps=2)
    model.save(tmp_path / "model.unidl")
    loaded = unidl.load_model(tmp_path / "model.unidl")
    assert type(loaded.loss) is type(loss)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-12)

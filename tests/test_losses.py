"""Losses: values against NumPy formulas written here (Keras 3 definitions, CONVENTIONS.md),
gradients wrt y_pred against central finite differences of those formulas, reductions,
sample weights, label handling and the errors for labels that do not fit the loss.
"""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import losses, ops
from unidl.losses import LossInputError
from unidl.testing.gradcheck import central_differences
from unidl.tolerances import FD_F64, FORWARD_F64

# ---------------------------------------------------------------- tolerances
# The named ones (CONVENTIONS.md): FORWARD_F64 for values, FD_F64 for autodiff vs central differences.
FWD, FD = FORWARD_F64, FD_F64

CLIP_EPS = 1e-7   # probabilities are clipped to [CLIP_EPS, 1 - CLIP_EPS] (CONVENTIONS.md)
KINK_GAP = 0.1    # |y_pred - y_true| keeps this far from the kinks of mae (0) and huber (delta)

BATCH, CLASSES = 5, 4
B64 = unidl.get_backend("numpy", dtype="float64")


# ------------------------------------------------- per-sample NumPy formulas
def _clip(p):
    return np.clip(p, CLIP_EPS, 1.0 - CLIP_EPS)


def _softplus(x):
    return np.logaddexp(0.0, x)


def ref_mse(y, p):
    return np.mean((p - y) ** 2, axis=-1)


def ref_mae(y, p):
    return np.mean(np.abs(p - y), axis=-1)


def ref_huber(y, p, delta=1.0):
    e = np.abs(p - y)
    return np.mean(np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2), axis=-1)


def ref_bce(y, p, from_logits=False, label_smoothing=0.0):
    y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        # -(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), with log sigmoid(x) = -softplus(-x)
        values = y * _softplus(-p) + (1.0 - y) * _softplus(p)
    else:
        q = _clip(p)
        values = -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))
    return np.mean(values, axis=-1)


def _log_probs(p, from_logits):
    if from_logits:
        shifted = p - p.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    # Keras renormalises the probabilities to sum to one, then clips.
    return np.log(_clip(p / p.sum(axis=-1, keepdims=True)))


def ref_cce(y, p, from_logits=False, label_smoothing=0.0):
    y = y * (1.0 - label_smoothing) + label_smoothing / p.shape[-1]
    return -np.sum(y * _log_probs(p, from_logits), axis=-1)


def ref_sparse_cce(ids, p, from_logits=False):
    ids = np.asarray(ids).reshape(p.shape[:-1]).astype(np.int64)
    return -np.take_along_axis(_log_probs(p, from_logits), ids[..., None], axis=-1)[..., 0]


def reduce(values, weights, reduction):
    if weights is not None:
        values = values * weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim))
    if reduction == "none":
        return values
    if reduction == "sum":
        return np.sum(values)
    return np.sum(values) / values.size  # sum_over_batch_size


# ------------------------------------------------------------------- data
_rng = np.random.default_rng(1234)


def away_from(center, magnitudes_lo, hi, kinks, shape):
    """center + signed offsets whose |offset| stays KINK_GAP from every kink."""
    mag = _rng.uniform(magnitudes_lo, hi, size=shape)
    for k in kinks:
        near = np.abs(mag - k) < KINK_GAP
        mag[near] = k + KINK_GAP
    return center + _rng.choice([-1.0, 1.0], size=shape) * mag


def regression_data(kinks=(0.0,)):
    y = _rng.normal(size=(BATCH, CLASSES))
    return y, away_from(y, KINK_GAP, 2.5, kinks, y.shape)


def binary_probs():
    return _rng.integers(0, 2, (BATCH, CLASSES)).astype(float), _rng.uniform(0.05, 0.95, (BATCH, CLASSES))


def binary_logits():
    return _rng.uniform(0.0, 1.0, (BATCH, CLASSES)), _rng.normal(0, 2.0, (BATCH, CLASSES))  # soft labels too


def onehot_probs():
    y = np.eye(CLASSES)[_rng.integers(0, CLASSES, BATCH)]
    return y, _rng.uniform(0.05, 0.9, (BATCH, CLASSES))  # rows need not sum to 1: Keras renormalises


def onehot_logits():
    return np.eye(CLASSES)[_rng.integers(0, CLASSES, BATCH)], _rng.normal(0, 2.0, (BATCH, CLASSES))


def sparse_probs(label_shape=(BATCH,)):
    return _rng.integers(0, CLASSES, label_shape), _rng.uniform(0.05, 0.9, (BATCH, CLASSES))


def sparse_logits(label_shape=(BATCH,)):
    return _rng.integers(0, CLASSES, label_shape), _rng.normal(0, 2.0, (BATCH, CLASSES))


# name -> (loss factory(reduction), per-sample formula, data)
CASES = {
    "mse": (lambda **kw: losses.MeanSquaredError(**kw), ref_mse, regression_data),
    "mae": (lambda **kw: losses.MeanAbsoluteError(**kw), ref_mae, regression_data),
    "huber": (lambda **kw: losses.Huber(**kw), ref_huber, lambda: regression_data((0.0, 1.0))),
    "huber_delta_0.5": (lambda **kw: losses.Huber(delta=0.5, **kw), lambda y, p: ref_huber(y, p, 0.5),
                        lambda: regression_data((0.0, 0.5))),
    "bce": (lambda **kw: losses.BinaryCrossentropy(**kw), ref_bce, binary_probs),
    "bce_logits": (lambda **kw: losses.BinaryCrossentropy(from_logits=True, **kw),
                   lambda y, p: ref_bce(y, p, from_logits=True), binary_logits),
    "bce_smoothing": (lambda **kw: losses.BinaryCrossentropy(label_smoothing=0.2, **kw),
                      lambda y, p: ref_bce(y, p, label_smoothing=0.2), binary_probs),
    "bce_logits_smoothing": (lambda **kw: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2, **kw),
                             lambda y, p: ref_bce(y, p, True, 0.2), binary_logits),
    "cce": (lambda **kw: losses.CategoricalCrossentropy(**kw), ref_cce, onehot_probs),
    "cce_logits": (lambda **kw: losses.CategoricalCrossentropy(from_logits=True, **kw),
                   lambda y, p: ref_cce(y, p, from_logits=True), onehot_logits),
    "cce_smoothing": (lambda **kw: losses.CategoricalCrossentropy(label_smoothing=0.1, **kw),
                      lambda y, p: ref_cce(y, p, label_smoothing=0.1), onehot_probs),
    "cce_logits_smoothing": (lambda **kw: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1,
                                                                         **kw),
                             lambda y, p: ref_cce(y, p, True, 0.1), onehot_logits),
    "sparse_cce": (lambda **kw: losses.SparseCategoricalCrossentropy(**kw), ref_sparse_cce, sparse_probs),
    "sparse_cce_logits": (lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=True, **kw),
                          lambda y, p: ref_sparse_cce(y, p, from_logits=True), sparse_logits),
    "sparse_cce_column_labels": (lambda **kw: losses.SparseCategoricalCrossentropy(**kw), ref_sparse_cce,
                                 lambda: sparse_probs((BATCH, 1))),
}

REDUCTIONS = ["sum_over_batch_size", "sum", "none"]


# ---------------------------------------------------------------- helpers
def loss_value(loss, y_true, y_pred, sample_weight=None):
    with unidl.use_backend(B64):
        sw = None if sample_weight is None else ops.convert(sample_weight)
        return ops.to_numpy(loss(ops.convert(y_true), ops.convert(y_pred), sw))


def loss_grad(loss, y_true, y_pred, sample_weight, r):
    """Gradient wrt y_pred of sum(loss(...) * r), from the NumPy backend's autodiff."""
    with unidl.use_backend(B64):
        yt, rt = ops.convert(y_true), ops.convert(r)
        sw = None if sample_weight is None else ops.convert(sample_weight)
        _, (g,) = B64.grad_wrt_inputs(lambda p: ops.sum(ops.multiply(loss(yt, p, sw), rt)),
                                      [ops.convert(y_pred)])
        return ops.to_numpy(g)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradient(case, reduction, weighted):
    factory, per_sample, data = CASES[case]
    loss = factory(reduction=reduction)
    y_true, y_pred = data()
    weights = _rng.uniform(0.2, 2.0, BATCH) if weighted else None

    want = reduce(per_sample(y_true, y_pred), weights, reduction)
    got = loss_value(loss, y_true, y_pred, weights)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=FWD.rtol, atol=FWD.atol, err_msg="value")

    r = _rng.standard_normal(np.shape(want))  # random upstream gradient (a scalar when reduced)
    grad = loss_grad(loss, y_true, y_pred, weights, r)
    numeric = central_differences(lambda p: reduce(per_sample(y_true, p), weights, reduction) * r, y_pred)
    np.testing.assert_allclose(grad, numeric, rtol=FD.rtol, atol=FD.atol, err_msg="gradient")


def test_reductions_relate_as_documented():
    y, p = regression_data()
    per_sample = loss_value(losses.MeanSquaredError(reduction="none"), y, p)
    total = loss_value(losses.MeanSquaredError(reduction="sum"), y, p)
    mean = loss_value(losses.MeanSquaredError(), y, p)
    assert per_sample.shape == (BATCH,)
    np.testing.assert_allclose(total, per_sample.sum(), rtol=FWD.rtol)
    np.testing.assert_allclose(mean, per_sample.sum() / BATCH, rtol=FWD.rtol)
    # "mean" is accepted as Keras's other name for sum_over_batch_size
    assert losses.MeanSquaredError(reduction="mean").reduction == "sum_over_batch_size"
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="average")


def test_sequence_outputs_weight_per_sample_and_divide_by_every_value():
    # (batch, time, features): per-sample values are (batch, time); a (batch,) weight
    # broadcasts over time, and sum_over_batch_size divides by batch * time (Keras 3).
    y = _rng.normal(size=(BATCH, 3, 2))
    p = y + _rng.normal(size=y.shape)
    w = _rng.uniform(0.5, 1.5, BATCH)
    want = np.sum(ref_mse(y, p) * w[:, None]) / (BATCH * 3)
    np.testing.assert_allclose(loss_value(losses.MeanSquaredError(), y, p, w), want, rtol=FWD.rtol)


def test_probabilities_are_clipped():
    # p = 0 and p = 1 with the "wrong" label would give log(0); the clip bounds the loss.
    y = np.array([[1.0, 0.0, 1.0, 0.0]])
    p = np.array([[0.0, 1.0, 1.0, 0.0]])
    got = loss_value(losses.BinaryCrossentropy(), y, p)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref_bce(y, p).mean(), rtol=FWD.rtol)
    np.testing.assert_allclose(got, -2 * np.log(CLIP_EPS) / 4 - 2 * np.log(1 - CLIP_EPS) / 4, rtol=FWD.rtol)

    onehot = np.array([[0.0, 1.0, 0.0]])
    probs = np.array([[0.5, 0.0, 0.5]])
    np.testing.assert_allclose(loss_value(losses.CategoricalCrossentropy(), onehot, probs),
                               -np.log(CLIP_EPS), rtol=FWD.rtol)
    np.testing.assert_allclose(loss_value(losses.SparseCategoricalCrossentropy(), np.array([1]), probs),
                               -np.log(CLIP_EPS), rtol=FWD.rtol)


def test_logits_are_stable_for_large_values():
    logits = np.array([[1000.0, -1000.0, 0.0]])
    for loss, y, want in [
        (losses.BinaryCrossentropy(from_logits=True), np.array([[0.0, 1.0, 1.0]]),
         (1000.0 + 1000.0 + np.log(2.0)) / 3),
        (losses.CategoricalCrossentropy(from_logits=True), np.array([[0.0, 1.0, 0.0]]), 2000.0),
        (losses.SparseCategoricalCrossentropy(from_logits=True), np.array([2]), 1000.0),
    ]:
        got = loss_value(loss, y, logits)
        np.testing.assert_allclose(got, want, rtol=FWD.rtol, err_msg=loss.name)


def test_names_and_lookup():
    for alias, cls in [("mse", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
                       ("huber", losses.Huber), ("binary_crossentropy", losses.BinaryCrossentropy),
                       ("categorical_crossentropy", losses.CategoricalCrossentropy),
                       ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)]:
        assert type(losses.get(alias)) is cls
    assert losses.get("mse").name == "mean_squared_error"
    assert losses.Huber().delta == 1.0
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=0.0)
    with pytest.raises(ValueError, match=r"did you mean 'huber'\?"):
        losses.get("hubber")


def test_function_loss():
    loss = losses.get(lambda y, p: ops.mean(ops.abs(ops.subtract(p, y)), axis=-1))
    y, p = regression_data()
    np.testing.assert_allclose(loss_value(loss, y, p), ref_mae(y, p).mean(), rtol=FWD.rtol)


# --------------------------------------------------------- label checking
@pytest.mark.parametrize("loss_name", ["mse", "mae", "huber", "binary_crossentropy"])
def test_vector_labels_fit_a_single_unit_output(loss_name):
    loss = losses.get(loss_name)
    y = np.array([0.0, 1.0, 1.0, 0.0])
    fixed = loss.check_labels(y, (None, 1))
    assert fixed.shape == (4, 1)
    np.testing.assert_array_equal(fixed[:, 0], y)
    # and the reverse: (batch, 1) labels for a (batch,) output
    back = loss.check_labels(y[:, None], (None,))
    assert back.shape == (4,)
    np.testing.assert_array_equal(back, y)
    # matching labels pass through unchanged
    np.testing.assert_array_equal(loss.check_labels(y[:, None], (None, 1)), y[:, None])


def test_vector_labels_give_the_same_loss_as_column_labels():
    y = np.array([0.0, 1.0, 1.0, 0.0])
    p = np.array([[0.2], [0.7], [0.4], [0.1]])
    loss = losses.BinaryCrossentropy()
    fixed = loss.check_labels(y, (None, 1))
    np.testing.assert_allclose(loss_value(loss, fixed, p), ref_bce(y[:, None], p).mean(), rtol=FWD.rtol)


def test_sparse_labels_accept_vector_and_column():
    loss = losses.SparseCategoricalCrossentropy()
    ids = np.array([2, 0, 1])
    for labels in (ids, ids[:, None], ids.astype(float)):
        fixed = loss.check_labels(labels, (None, 3))
        assert fixed.dtype == np.int64 and fixed.shape == (3,)
        np.testing.assert_array_equal(fixed, ids)


def _bad_label_cases():
    onehot = np.eye(3)[[0, 2, 1, 1]]
    return [
        ("one-hot to sparse", losses.SparseCategoricalCrossentropy(), onehot, (None, 3)),
        ("ids out of range", losses.SparseCategoricalCrossentropy(), np.array([0, 1, 3, 2]), (None, 3)),
        ("negative ids", losses.SparseCategoricalCrossentropy(), np.array([0, -1, 2, 2]), (None, 3)),
        ("fractional ids", losses.SparseCategoricalCrossentropy(), np.array([0.0, 1.5, 2.0, 1.0]), (None, 3)),
        ("ids to categorical", losses.CategoricalCrossentropy(), np.array([0, 2, 1, 1]), (None, 3)),
        ("id column to categorical", losses.CategoricalCrossentropy(), np.array([[0], [2], [1], [1]]), (None, 3)),
        ("bce labels above 1", losses.BinaryCrossentropy(), np.array([[0.0], [1.0], [2.0], [1.0]]), (None, 1)),
        ("bce labels below 0", losses.BinaryCrossentropy(), np.array([[0.0], [-1.0], [1.0], [1.0]]), (None, 1)),
        ("shape mismatch", losses.MeanSquaredError(), np.zeros((4, 3)), (None, 2)),
        ("rank mismatch", losses.MeanSquaredError(), np.zeros((4, 3, 2)), (None, 3)),
        ("categorical width mismatch", losses.CategoricalCrossentropy(), np.eye(4)[[0, 1, 2, 3]], (None, 3)),
    ]


@pytest.mark.parametrize("what,loss,labels,output_shape", _bad_label_cases(),
                         ids=[c[0] for c in _bad_label_cases()])
def test_bad_labels_are_reported(what, loss, labels, output_shape):
    with pytest.raises(LossInputError) as info:
        loss.check_labels(labels, output_shape)
    message = str(info.value)
    assert loss.name in message, message
    assert str(labels.shape) in message, message
    assert str(output_shape) in message, message
    assert isinstance(info.value, ValueError)  # LossInputError is a ValueError

"""Keras's metric functions: ``f(y_true, y_pred) -> one value per sample``, over ``unidl.ops``.

They take backend tensors or host data (NumPy, lists). Called outside any backend
context they run on the NumPy reference backend and return NumPy.

Shapes: the regression and probabilistic functions reduce the last axis, exactly as
Keras's (so (batch, d) inputs give (batch,) values, and (batch,) inputs give one
number, as in Keras). The accuracy functions compare value by value and average the
last axis when the inputs have one beyond the batch, so they too return one value per
sample: Keras 3's ``binary_accuracy``/``accuracy`` return the elementwise matches,
whose mean ``Mean``/``BinaryAccuracy`` then take per sample; the metric values agree.

Top-k ties: a target is in the top k when fewer than k classes score strictly higher
than it, so classes tied at the k-th place all count as in the top k
(``tf.math.in_top_k``'s rule, and Keras's on every backend).
"""
from __future__ import annotations

import functools

import numpy as np

from .. import losses as losses_mod
from .. import ops
from ..registry import reference_backend
from .base import EPSILON, as_float, as_tensor, index_range, rank, squeeze_or_expand_to_same_rank


def eager(fn):
    """Let ``fn`` run outside any backend context: then on the NumPy reference backend, returning NumPy."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if ops.current_backend_or_none() is not None:
            return fn(*args, **kwargs)
        backend = reference_backend(dtype="float32")
        with ops.use_backend(backend):
            return backend.to_numpy(fn(*args, **kwargs))
    return run


def _floats(y_true, y_pred):
    """Both as float tensors of the current backend, ranks matched as Keras does."""
    return squeeze_or_expand_to_same_rank(as_float(y_true), as_float(y_pred))


def _per_sample(values):
    """Elementwise values -> one per sample: the mean over the last axis when there is one beyond the batch."""
    return ops.mean(values, axis=-1) if rank(values) >= 2 else values


def _matches(hit):
    return ops.cast(hit, ops.current_backend().dtype)


# ------------------------------------------------------------------ accuracy
@eager
def accuracy(y_true, y_pred):
    """1 where the label equals the prediction exactly, else 0 (averaged over the last axis)."""
    y_true, y_pred = _floats(y_true, y_pred)
    return _per_sample(_matches(ops.equal(y_true, y_pred)))


@eager
def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    """1 where ``(y_pred > threshold) == y_true``, averaged over the last axis."""
    y_true, y_pred = _floats(y_true, y_pred)
    predicted = _matches(ops.greater(y_pred, threshold))
    return _per_sample(_matches(ops.equal(y_true, predicted)))


@eager
def categorical_accuracy(y_true, y_pred):
    """1 where the arg-max of the one-hot label equals the arg-max of the prediction (first on ties)."""
    y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
    return _matches(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1)))


@eager
def sparse_categorical_accuracy(y_true, y_pred):
    """1 where the class id equals the arg-max of the prediction; ids of shape (batch,) or (batch, 1)."""
    y_true, y_pred = as_float(y_true), as_tensor(y_pred)
    if rank(y_true) == rank(y_pred) and ops.shape(y_true)[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), ops.current_backend().dtype)
    matches = _matches(ops.equal(y_true, predicted))
    if rank(matches) > 1 and ops.shape(matches)[-1] == 1:
        matches = ops.squeeze(matches, -1)
    return matches


def in_top_k(targets, predictions, k: int):
    """Whether each target id (shape (n,)) is among the k best of its row of ``predictions`` (n, classes).

    A target is in the top k when fewer than k classes score strictly higher (ties count in).
    """
    target_scores = ops.take_along_axis(predictions, ops.expand_dims(ops.cast(targets, "int64"), -1), axis=-1)
    higher = ops.sum(_matches(ops.greater(predictions, target_scores)), axis=-1)
    return ops.less(higher, k)


def _top_k_hits(ids, y_pred, k: int):
    """in_top_k over any leading shape: ids (...), y_pred (..., classes) -> matches of ids' shape."""
    ids_shape = ops.shape(ids)
    if rank(y_pred) > 2:
        y_pred = ops.reshape(y_pred, (-1, ops.shape(y_pred)[-1]))
    flat = ops.reshape(ids, (-1,)) if len(ids_shape) > 1 else ids
    matches = _matches(in_top_k(flat, y_pred, k))
    if len(ids_shape) > 1:
        matches = ops.reshape(matches, tuple(-1 if d is None else d for d in ids_shape))
    return matches


@eager
def top_k_categorical_accuracy(y_true, y_pred, k: int = 5):
    """1 where the arg-max of the one-hot label is among the k highest predictions."""
    y_true, y_pred = as_tensor(y_true), as_float(y_pred)
    return _top_k_hits(ops.argmax(y_true, axis=-1), y_pred, k)


@eager
def sparse_top_k_categorical_accuracy(y_true, y_pred, k: int = 5, from_sorted_ids: bool = False):
    """1 where the class id is among the k highest predictions.

    With ``from_sorted_ids=True``, ``y_pred`` holds class ids sorted by score (best first).
    """
    y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
    if from_sorted_ids:
        firsts = ops.take(y_pred, index_range(0, k), axis=-1)
        ids = ops.cast(y_true, "int64")
        if rank(ids) < rank(firsts):
            ids = ops.expand_dims(ids, -1)
        matches = ops.max(_matches(ops.equal(ops.cast(firsts, "int64"), ids)), axis=-1)
    else:
        matches = _top_k_hits(ops.cast(y_true, "int64"), as_float(y_pred), k)
    if rank(matches) > 1 and ops.shape(matches)[-1] == 1:
        matches = ops.squeeze(matches, -1)
    return matches


# ----------------------------------------------------------------- regression
@eager
def mean_squared_error(y_true, y_pred):
    """``mean((y_pred - y_true)**2)`` over the last axis."""
    y_true, y_pred = _floats(y_true, y_pred)
    return ops.mean(ops.square(ops.subtract(y_pred, y_true)), axis=-1)


@eager
def mean_absolute_error(y_true, y_pred):
    """``mean(|y_pred - y_true|)`` over the last axis."""
    y_true, y_pred = _floats(y_true, y_pred)
    return ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


@eager
def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))`` over the last axis."""
    y_true, y_pred = _floats(y_true, y_pred)
    diff = ops.abs(ops.divide(ops.subtract(y_true, y_pred), ops.maximum(ops.abs(y_true), EPSILON)))
    return ops.multiply(100.0, ops.mean(diff, axis=-1))


@eager
def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2)`` over the last axis."""
    y_true, y_pred = _floats(y_true, y_pred)
    first = ops.log(ops.add(ops.maximum(y_pred, EPSILON), 1.0))
    second = ops.log(ops.add(ops.maximum(y_true, EPSILON), 1.0))
    return ops.mean(ops.square(ops.subtract(first, second)), axis=-1)


def _l2_normalize(x, axis: int):
    # x * min(1 / ||x||, 1 / eps), as keras.ops.normalize: a zero vector stays zero.
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), EPSILON * EPSILON))
    return ops.divide(x, norm)


@eager
def cosine_similarity(y_true, y_pred, axis: int = -1):
    """``sum(l2_normalize(y_true) * l2_normalize(y_pred))`` over ``axis`` (1: same direction)."""
    y_true, y_pred = _floats(y_true, y_pred)
    return ops.sum(ops.multiply(_l2_normalize(y_true, axis), _l2_normalize(y_pred, axis)), axis=axis)


@eager
def log_cosh(y_true, y_pred):
    """``mean(log(cosh(y_pred - y_true)))`` over the last axis, as ``x + softplus(-2x) - log 2``."""
    y_true, y_pred = _floats(y_true, y_pred)
    x = ops.subtract(y_pred, y_true)
    return ops.mean(ops.subtract(ops.add(x, ops.softplus(ops.multiply(x, -2.0))), float(np.log(2.0))), axis=-1)


# -------------------------------------------------------------- probabilistic
@eager
def kl_divergence(y_true, y_pred):
    """``sum(y_true * log(y_true / y_pred))`` over the last axis, both clipped to [1e-7, 1]."""
    y_true, y_pred = as_float(y_true), as_float(y_pred)
    y_true, y_pred = ops.clip(y_true, EPSILON, 1.0), ops.clip(y_pred, EPSILON, 1.0)
    return ops.sum(ops.multiply(y_true, ops.log(ops.divide(y_true, y_pred))), axis=-1)


@eager
def poisson(y_true, y_pred):
    """``mean(y_pred - y_true * log(y_pred + 1e-7))`` over the last axis."""
    y_true, y_pred = as_float(y_true), as_float(y_pred)
    return ops.mean(ops.subtract(y_pred, ops.multiply(y_true, ops.log(ops.add(y_pred, EPSILON)))), axis=-1)


@eager
def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Binary cross-entropy averaged over the last axis (``unidl.losses.BinaryCrossentropy`` per sample)."""
    y_true, y_pred = _floats(y_true, y_pred)
    return losses_mod.BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing).call(y_true, y_pred)


@eager
def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
                             axis: int = -1):
    """``-sum(y_true * log p)`` over the class axis (``unidl.losses.CategoricalCrossentropy`` per sample)."""
    loss = losses_mod.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
    return loss.call(as_float(y_true), as_float(y_pred))


@eager
def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False, axis: int = -1):
    """``-log p[label]`` for integer class ids (``unidl.losses.SparseCategoricalCrossentropy`` per sample)."""
    if axis not in (-1, rank(as_tensor(y_pred)) - 1):
        raise ValueError(f"sparse_categorical_crossentropy: only the last axis holds classes, got axis={axis}")
    loss = losses_mod.SparseCategoricalCrossentropy(from_logits=from_logits)
    return loss.call(as_tensor(y_true), as_float(y_pred))


# ---------------------------------------------------------------------- hinge
def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, 1} (when every label is 0 or 1, as Keras checks); others stay."""
    is_01 = ops.maximum(_matches(ops.equal(y_true, 0.0)), _matches(ops.equal(y_true, 1.0)))
    all_01 = ops.greater(ops.min(is_01), 0.5)
    return ops.where(all_01, ops.subtract(ops.multiply(y_true, 2.0), 1.0), y_true)


@eager
def hinge(y_true, y_pred):
    """``mean(max(1 - y_true * y_pred, 0))`` over the last axis; labels {0, 1} are read as {-1, 1}."""
    y_true = _hinge_labels(as_float(y_true))
    return ops.mean(ops.relu(ops.subtract(1.0, ops.multiply(y_true, as_float(y_pred)))), axis=-1)


@eager
def squared_hinge(y_true, y_pred):
    """``mean(max(1 - y_true * y_pred, 0)**2)`` over the last axis; labels {0, 1} are read as {-1, 1}."""
    y_true = _hinge_labels(as_float(y_true))
    return ops.mean(ops.square(ops.relu(ops.subtract(1.0, ops.multiply(y_true, as_float(y_pred))))), axis=-1)


@eager
def categorical_hinge(y_true, y_pred):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` per sample."""
    y_true, y_pred = as_float(y_true), as_float(y_pred)
    positive = ops.sum(ops.multiply(y_true, y_pred), axis=-1)
    negative = ops.max(ops.multiply(ops.subtract(1.0, y_true), y_pred), axis=-1)
    return ops.relu(ops.add(ops.subtract(negative, positive), 1.0))


# Functions comparing labels and predictions value by value: the two must have the same shape
# (MeanMetricWrapper checks, after Keras's rank matching of a trailing axis of size 1).
for _fn in (accuracy, binary_accuracy, categorical_accuracy, mean_squared_error, mean_absolute_error,
            mean_absolute_percentage_error, mean_squared_logarithmic_error):
    _fn.compares_elementwise = True

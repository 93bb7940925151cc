"""Losses, written once over ``unidl.ops``.

A loss computes one value per sample (``call``: the elementwise loss averaged
over the last axis, or summed over classes for cross-entropies), then reduces
like Keras's default "sum_over_batch_size": ``sum(sample_weight * values) / batch``.
Probability inputs are clipped to [1e-7, 1 - 1e-7] when ``from_logits=False``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import ops
from .registry import resolve

EPSILON = 1e-7


class LossInputError(ValueError):
    """Labels do not fit the loss (shape, dtype, value range)."""


class Loss:
    """Base class. Subclasses implement ``call(y_true, y_pred) -> per-sample values``."""

    name = "loss"
    takes_class_ids = False  # labels are integer class ids (sparse losses): never cast to floats

    def __init__(self, reduction: str = "sum_over_batch_size", name: str | None = None):
        if reduction not in ("sum_over_batch_size", "sum", "none", "mean"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'sum_over_batch_size', 'sum' or "
                             f"'none', got {reduction!r}")
        self.reduction = "sum_over_batch_size" if reduction == "mean" else reduction
        if name:
            self.name = name

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """The reduced loss. ``mask`` (e.g. (batch, time), from Embedding(mask_zero=True) or Masking)
        leaves masked values out: the mean is then over the values the mask keeps, as in Keras."""
        if not self.takes_class_ids:
            y_true = _labels_as_floats(y_true, y_pred)
        values = self.call(y_true, y_pred)
        if sample_weight is not None:
            values = ops.multiply(values, _expand_to(sample_weight, values))
        if mask is not None:
            keep = _expand_to(ops.cast(mask, ops.current_backend().dtype), values)
            values = ops.multiply(values, keep)
            if self.reduction == "sum_over_batch_size":
                kept = ops.sum(ops.add(ops.multiply(values, 0.0), keep))  # keep, broadcast to the values
                return ops.divide(ops.sum(values), ops.maximum(kept, 1.0))
        if self.reduction == "none":
            return values
        # sum / number of values == mean; mean also works when the batch size is unknown (compiled steps)
        return ops.sum(values) if self.reduction == "sum" else ops.mean(values)

    def check_labels(self, y_true: np.ndarray, output_shape: tuple) -> np.ndarray:
        """Validate NumPy labels against the model's output shape (batch axis None); return them fixed up."""
        return _match_rank(self, y_true, output_shape)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


def _labels_as_floats(y_true, y_pred):
    """Integer labels (uint8 targets for mse) as the predictions' float dtype, as Keras casts them."""
    backend = ops.current_backend()
    if hasattr(y_true, "dtype") and not backend.is_floating(y_true) and backend.is_floating(y_pred):
        return ops.cast(y_true, backend.dtype)
    return y_true


def _expand_to(weight, values):
    """``weight`` with trailing axes of size 1 until it has the rank of ``values`` (to broadcast)."""
    for _ in range(len(ops.shape(values)) - len(ops.shape(weight))):
        weight = ops.expand_dims(weight, -1)
    return weight


def _match_rank(loss: Loss, y: np.ndarray, output_shape: tuple) -> np.ndarray:
    # Keras accepts (batch,) labels for a (batch, 1) output, and the reverse.
    if y.ndim == len(output_shape) - 1 and output_shape[-1] == 1:
        y = y[..., None]
    elif y.ndim == len(output_shape) + 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.ndim != len(output_shape) or any(o is not None and o != s for o, s in zip(output_shape[1:], y.shape[1:])):
        raise LossInputError(
            f"loss {loss.name!r}: labels of shape {y.shape} do not match the model output shape "
            f"{output_shape}; expected labels of shape {(len(y),) + tuple(output_shape[1:])}")
    return y


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)**2, axis=-1)`` per sample."""
    name = "mean_squared_error"

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(ops.subtract(y_pred, y_true)), axis=-1)


class MeanAbsoluteError(Loss):
    """``mean(|y_pred - y_true|, axis=-1)`` per sample."""
    name = "mean_absolute_error"

    def call(self, y_true, y_pred):
        return ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


class Huber(Loss):
    """``0.5 e**2`` where ``|e| <= delta``, else ``delta * |e| - 0.5 delta**2``; mean over the last axis."""
    name = "huber"

    def __init__(self, delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if delta <= 0:
            raise ValueError(f"Huber: delta must be positive, got delta={delta!r}")
        self.delta = float(delta)

    def call(self, y_true, y_pred):
        error = ops.abs(ops.subtract(y_pred, y_true))
        quadratic = ops.minimum(error, self.delta)  # the part of |e| inside the quadratic zone
        linear = ops.subtract(error, quadratic)
        values = ops.add(ops.multiply(0.5, ops.square(quadratic)), ops.multiply(self.delta, linear))
        return ops.mean(values, axis=-1)


class BinaryCrossentropy(Loss):
    """``-(y log p + (1 - y) log(1 - p))`` averaged over the last axis.

    With ``from_logits=True`` the stable form ``max(x, 0) - x y + log(1 + exp(-|x|))`` is used.
    """
    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.from_logits, self.label_smoothing = from_logits, float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, ops.current_backend().dtype)
        if self.label_smoothing:
            y_true = ops.add(ops.multiply(y_true, 1.0 - self.label_smoothing), 0.5 * self.label_smoothing)
        if self.from_logits:
            values = ops.add(ops.subtract(ops.relu(y_pred), ops.multiply(y_pred, y_true)),
                             ops.log1p(ops.exp(ops.negative(ops.abs(y_pred)))))
        else:
            p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
            values = ops.negative(ops.add(ops.multiply(y_true, ops.log(p)),
                                          ops.multiply(ops.subtract(1.0, y_true), ops.log(ops.subtract(1.0, p)))))
        return ops.mean(values, axis=-1)

    def check_labels(self, y_true, output_shape):
        y = super().check_labels(y_true, output_shape)
        if y.size and (y.min() < 0 or y.max() > 1):
            raise LossInputError(f"loss {self.name!r}: labels must lie in [0, 1], got values in "
                                 f"[{y.min()}, {y.max()}] (labels of shape {y_true.shape}, model output "
                                 f"shape {output_shape})")
        return y


class CategoricalCrossentropy(Loss):
    """``-sum(y * log p)`` over the class axis; ``y`` one-hot (or soft) labels."""
    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.from_logits, self.label_smoothing, self.axis = from_logits, float(label_smoothing), axis

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, ops.current_backend().dtype)
        if self.label_smoothing:
            classes = ops.shape(y_pred)[self.axis]
            y_true = ops.add(ops.multiply(y_true, 1.0 - self.label_smoothing), self.label_smoothing / classes)
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=self.axis)
        else:
            # Keras renormalises probabilities that do not sum to one, then clips.
            p = ops.divide(y_pred, ops.sum(y_pred, axis=self.axis, keepdims=True))
            log_p = ops.log(ops.clip(p, EPSILON, 1.0 - EPSILON))
        return ops.negative(ops.sum(ops.multiply(y_true, log_p), axis=self.axis))

    def check_labels(self, y_true, output_shape):
        if y_true.ndim == len(output_shape) - 1 or (y_true.ndim == len(output_shape) and y_true.shape[-1] == 1
                                                    and output_shape[-1] != 1):
            raise LossInputError(
                f"loss {self.name!r} expects one-hot labels of shape {(len(y_true),) + tuple(output_shape[1:])} "
                f"for the model output shape {output_shape}, got integer-like labels of shape {y_true.shape}; use "
                "loss='sparse_categorical_crossentropy' for class ids, or one-hot encode them")
        return super().check_labels(y_true, output_shape)


class SparseCategoricalCrossentropy(Loss):
    """``-log p[label]``; labels are integer class ids of shape (batch,) or (batch, 1)."""
    name = "sparse_categorical_crossentropy"
    takes_class_ids = True

    def __init__(self, from_logits: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        if len(ops.shape(y_true)) == len(ops.shape(y_pred)):
            y_true = ops.squeeze(y_true, -1)
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            p = ops.divide(y_pred, ops.sum(y_pred, axis=-1, keepdims=True))
            log_p = ops.log(ops.clip(p, EPSILON, 1.0 - EPSILON))
        labels = ops.expand_dims(ops.cast(y_true, "int64"), -1)
        return ops.negative(ops.squeeze(ops.take_along_axis(log_p, labels, axis=-1), -1))

    def check_labels(self, y_true, output_shape):
        classes = output_shape[-1]
        expected = (len(y_true),) + tuple(output_shape[1:-1])
        y = y_true[..., 0] if y_true.ndim == len(output_shape) and y_true.shape[-1] == 1 else y_true
        if tuple(y.shape[1:]) != tuple(expected[1:]):
            raise LossInputError(
                f"loss {self.name!r} expects integer class ids of shape {expected} (or {expected + (1,)}) "
                f"for the model output shape {output_shape}, got labels of shape {y_true.shape}; "
                "for one-hot labels use loss='categorical_crossentropy'")
        if y.size and (np.any(y != np.round(y)) or y.min() < 0 or (classes is not None and y.max() >= classes)):
            raise LossInputError(f"loss {self.name!r}: labels must be integer class ids in [0, {classes}), "
                                 f"got values in [{y.min()}, {y.max()}] (labels of shape {y_true.shape}, "
                                 f"model output shape {output_shape})")
        return y.astype(np.int64)


def _float(x):
    """``x`` as a tensor of the compute dtype (labels may be ints; NumPy arrays are converted)."""
    if isinstance(x, (np.ndarray, list, tuple, float, int, np.generic)):
        return ops.convert(np.asarray(x, dtype=np.float64))
    return ops.cast(x, ops.current_backend().dtype)


class MeanAbsolutePercentageError(Loss):
    """``100 * mean(|(y_true - y_pred) / max(|y_true|, 1e-7)|)`` over the last axis."""
    name = "mean_absolute_percentage_error"

    def call(self, y_true, y_pred):
        y_true = _float(y_true)
        ratio = ops.divide(ops.subtract(y_true, y_pred), ops.maximum(ops.abs(y_true), EPSILON))
        return ops.multiply(100.0, ops.mean(ops.abs(ratio), axis=-1))


class MeanSquaredLogarithmicError(Loss):
    """``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2)`` over the last axis."""
    name = "mean_squared_logarithmic_error"

    def call(self, y_true, y_pred):
        first = ops.log(ops.add(ops.maximum(y_pred, EPSILON), 1.0))
        second = ops.log(ops.add(ops.maximum(_float(y_true), EPSILON), 1.0))
        return ops.mean(ops.square(ops.subtract(first, second)), axis=-1)


class LogCosh(Loss):
    """``mean(log(cosh(y_pred - y_true)))`` over the last axis, computed as
    ``x + softplus(-2x) - log(2)`` (no overflow for large errors), as Keras."""
    name = "log_cosh"

    def call(self, y_true, y_pred):
        x = ops.subtract(y_pred, _float(y_true))
        return ops.mean(ops.subtract(ops.add(x, ops.softplus(ops.multiply(x, -2.0))), math.log(2.0)), axis=-1)


class KLDivergence(Loss):
    """Kullback-Leibler divergence ``sum(y_true * log(y_true / y_pred))`` over the last axis, both
    clipped to [1e-7, 1] first (Keras). ``y_true`` and ``y_pred`` are probability distributions.

    PyTorch's ``nn.KLDivLoss`` takes log-probabilities as ``y_pred`` and averages over all
    elements by default ("batchmean" gives this sum-then-mean).
    """
    name = "kl_divergence"

    def call(self, y_true, y_pred):
        y_true = ops.clip(_float(y_true), EPSILON, 1.0)
        y_pred = ops.clip(y_pred, EPSILON, 1.0)
        return ops.sum(ops.multiply(y_true, ops.log(ops.divide(y_true, y_pred))), axis=-1)


class Poisson(Loss):
    """``mean(y_pred - y_true * log(y_pred + 1e-7))`` over the last axis; ``y_pred`` is a rate (> 0).

    PyTorch's ``nn.PoissonNLLLoss`` defaults to log_input=True (``exp(y_pred) - y_true * y_pred``).
    """
    name = "poisson"

    def call(self, y_true, y_pred):
        return ops.mean(ops.subtract(y_pred, ops.multiply(_float(y_true), ops.log(ops.add(y_pred, EPSILON)))),
                        axis=-1)


def _l2_normalize(x, axis: int):
    # Keras: x * min(rsqrt(sum(x**2)), 1 / 1e-7), written as x / sqrt(max(sum(x**2), 1e-14)) so
    # that an all-zero vector gets a zero gradient rather than 0 * inf.
    squares = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return ops.divide(x, ops.sqrt(ops.maximum(squares, EPSILON ** 2)))


class CosineSimilarity(Loss):
    """Negative cosine similarity ``-sum(l2_normalize(y_true) * l2_normalize(y_pred))`` along ``axis``:
    -1 for vectors pointing the same way, 0 for orthogonal ones, 1 for opposite ones.

    Args:
        axis: the axis of the vectors, default -1.
    """
    name = "cosine_similarity"

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, y_true, y_pred):
        products = ops.multiply(_l2_normalize(_float(y_true), self.axis), _l2_normalize(y_pred, self.axis))
        return ops.negative(ops.sum(products, axis=self.axis))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, 1} (all of them, when every label is 0 or 1, as Keras); others stay.

    Branch-free, so it runs in compiled steps: ``y + all_binary * (y - 1)``.
    """
    y_true = _float(y_true)
    binary = ops.add(ops.cast(ops.equal(y_true, 0.0), ops.current_backend().dtype),
                     ops.cast(ops.equal(y_true, 1.0), ops.current_backend().dtype))
    all_binary = ops.min(binary)
    return ops.add(y_true, ops.multiply(all_binary, ops.subtract(y_true, 1.0)))


class Hinge(Loss):
    """``mean(max(1 - y_true * y_pred, 0))`` over the last axis; labels -1/1 (0/1 labels are converted)."""
    name = "hinge"

    def call(self, y_true, y_pred):
        return ops.mean(ops.relu(ops.subtract(1.0, ops.multiply(_hinge_labels(y_true), y_pred))), axis=-1)


class SquaredHinge(Loss):
    """``mean(max(1 - y_true * y_pred, 0)**2)`` over the last axis; labels -1/1 (0/1 labels are converted)."""
    name = "squared_hinge"

    def call(self, y_true, y_pred):
        margins = ops.relu(ops.subtract(1.0, ops.multiply(_hinge_labels(y_true), y_pred)))
        return ops.mean(ops.square(margins), axis=-1)


class CategoricalHinge(Loss):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` per sample; one-hot labels."""
    name = "categorical_hinge"

    def call(self, y_true, y_pred):
        y_true = _float(y_true)
        positive = ops.sum(ops.multiply(y_true, y_pred), axis=-1)
        negative = ops.max(ops.multiply(ops.subtract(1.0, y_true), y_pred), axis=-1)
        return ops.relu(ops.add(ops.subtract(negative, positive), 1.0))


class NegativeLogLikelihood(Loss):
    """``-y_pred[label]``: the negative log-likelihood of integer labels under log-probabilities.

    ``y_pred`` holds log-probabilities (e.g. the output of a ``log_softmax`` activation); labels are
    class ids of shape (batch, ...) or (batch, ..., 1). Nothing is clipped or normalized.
    Keras has no such loss; this is PyTorch's ``nn.NLLLoss`` with Keras's reduction (the mean
    over samples, or the sum, or none; ``sample_weight`` as every loss), on channels-last outputs
    (torch wants the classes on axis 1), without ``ignore_index`` or class weights.
    ``sparse_categorical_crossentropy(from_logits=True)`` equals it after a log_softmax.
    """
    name = "negative_log_likelihood"
    takes_class_ids = True

    def call(self, y_true, y_pred):
        if len(ops.shape(y_true)) == len(ops.shape(y_pred)):
            y_true = ops.squeeze(y_true, -1)
        labels = ops.expand_dims(ops.cast(y_true, "int64"), -1)
        return ops.negative(ops.squeeze(ops.take_along_axis(y_pred, labels, axis=-1), -1))

    check_labels = SparseCategoricalCrossentropy.check_labels


BUILTINS = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
    "huber": Huber, "huber_loss": Huber,
    "log_cosh": LogCosh, "logcosh": LogCosh,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "cce": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson,
    "cosine_similarity": CosineSimilarity,
    "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
    "negative_log_likelihood": NegativeLogLikelihood, "nll": NegativeLogLikelihood,
}


# ------------------------------------------------------------------ functions
# Keras's loss functions: per-sample values (no reduction), like ``Loss(reduction="none")``.
# NumPy arrays are converted to the bound backend's tensors.

def _per_sample(cls, y_true, y_pred, **kwargs):
    if isinstance(y_pred, (np.ndarray, list, tuple, float, int, np.generic)):
        y_pred = ops.convert(np.asarray(y_pred, dtype=np.float64))
    if isinstance(y_true, (list, tuple, float, int, np.generic)):
        y_true = np.asarray(y_true)
    if isinstance(y_true, np.ndarray):
        y_true = ops.convert(y_true)
    return cls(reduction="none", **kwargs).call(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """``mean((y_pred - y_true)**2, axis=-1)``."""
    return _per_sample(MeanSquaredError, y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """``mean(|y_pred - y_true|, axis=-1)``."""
    return _per_sample(MeanAbsoluteError, y_true, y_pred)


def mean_absolute_percentage_error(y_true, y_pred):
    """``100 * mean(|(y_true - y_pred) / max(|y_true|, 1e-7)|, axis=-1)``."""
    return _per_sample(MeanAbsolutePercentageError, y_true, y_pred)


def mean_squared_logarithmic_error(y_true, y_pred):
    """``mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1))**2, axis=-1)``."""
    return _per_sample(MeanSquaredLogarithmicError, y_true, y_pred)


def huber(y_true, y_pred, delta: float = 1.0):
    """Huber loss per sample (see :class:`Huber`)."""
    return _per_sample(Huber, y_true, y_pred, delta=delta)


def log_cosh(y_true, y_pred):
    """``mean(log(cosh(y_pred - y_true)), axis=-1)``."""
    return _per_sample(LogCosh, y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Binary cross-entropy per sample, averaged over the last axis (see :class:`BinaryCrossentropy`)."""
    return _per_sample(BinaryCrossentropy, y_true, y_pred, from_logits=from_logits,
                       label_smoothing=label_smoothing)


def categorical_crossentropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0,
                             axis: int = -1):
    """Categorical cross-entropy per sample (see :class:`CategoricalCrossentropy`)."""
    return _per_sample(CategoricalCrossentropy, y_true, y_pred, from_logits=from_logits,
                       label_smoothing=label_smoothing, axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits: bool = False):
    """Sparse categorical cross-entropy per sample (see :class:`SparseCategoricalCrossentropy`)."""
    return _per_sample(SparseCategoricalCrossentropy, y_true, y_pred, from_logits=from_logits)


def kl_divergence(y_true, y_pred):
    """``sum(y_true * log(y_true / y_pred), axis=-1)``, both clipped to [1e-7, 1]."""
    return _per_sample(KLDivergence, y_true, y_pred)


def poisson(y_true, y_pred):
    """``mean(y_pred - y_true * log(y_pred + 1e-7), axis=-1)``."""
    return _per_sample(Poisson, y_true, y_pred)


def cosine_similarity(y_true, y_pred, axis: int = -1):
    """``-sum(l2_normalize(y_true) * l2_normalize(y_pred), axis=axis)``."""
    return _per_sample(CosineSimilarity, y_true, y_pred, axis=axis)


def hinge(y_true, y_pred):
    """``mean(max(1 - y_true * y_pred, 0), axis=-1)``; 0/1 labels become -1/1."""
    return _per_sample(Hinge, y_true, y_pred)


def squared_hinge(y_true, y_pred):
    """``mean(max(1 - y_true * y_pred, 0)**2, axis=-1)``; 0/1 labels become -1/1."""
    return _per_sample(SquaredHinge, y_true, y_pred)


def categorical_hinge(y_true, y_pred):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)``."""
    return _per_sample(CategoricalHinge, y_true, y_pred)


def negative_log_likelihood(y_true, y_pred):
    """``-y_pred[y_true]``: integer labels, log-probabilities (see :class:`NegativeLogLikelihood`)."""
    return _per_sample(NegativeLogLikelihood, y_true, y_pred)


# Function name -> function, for configs that name a loss function ({"function": "kl_divergence"}).
FUNCTIONS = {fn.__name__: fn for fn in (
    mean_squared_error, mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error,
    huber, log_cosh, binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy,
    kl_divergence, poisson, cosine_similarity, hinge, squared_hinge, categorical_hinge, negative_log_likelihood,
)}
_FUNCTION_CLASSES = {name: BUILTINS[name] for name in FUNCTIONS}
mse, mae, mape, msle, kld = (mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
                             mean_squared_logarithmic_error, kl_divergence)


def get(identifier) -> Loss:
    """A Loss from a name, an instance, or a callable ``f(y_true, y_pred) -> per-sample values``.

    unidl's own loss functions (``unidl.losses.kl_divergence``...) give their class, so that
    labels are checked as the class checks them (class ids for sparse_categorical_crossentropy).
    """
    if _FUNCTION_CLASSES.get(getattr(identifier, "__name__", None)) is not None \
            and FUNCTIONS.get(identifier.__name__) is identifier:
        return _FUNCTION_CLASSES[identifier.__name__]()
    if callable(identifier) and not isinstance(identifier, (str, type, Loss)):
        return _FunctionLoss(identifier)
    return resolve("losses", identifier, BUILTINS, Loss)


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

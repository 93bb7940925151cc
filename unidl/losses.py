"""Losses, written once over ``unidl.ops``.

A loss computes one value per sample (``call``: the elementwise loss averaged
over the last axis, or summed over classes for cross-entropies), then reduces
like Keras's default "sum_over_batch_size": ``sum(sample_weight * values) / batch``.
Probability inputs are clipped to [1e-7, 1 - 1e-7] when ``from_logits=False``.
"""
from __future__ import annotations

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


BUILTINS = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
    "binary_crossentropy": BinaryCrossentropy, "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "cce": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier) -> Loss:
    """A Loss from a name, an instance, or a callable ``f(y_true, y_pred) -> per-sample values``."""
    if callable(identifier) and not isinstance(identifier, (str, type, Loss)):
        return _FunctionLoss(identifier)
    return resolve("losses", identifier, BUILTINS, Loss)


class _FunctionLoss(Loss):
    def __init__(self, fn):
        super().__init__(name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)

"""Metrics: per-sample values written once over ``unidl.ops``, averaged on the host.

``update`` adds one batch; ``result`` is the average over every sample seen
since ``reset`` (so an epoch's value weighs each batch by its size, as Keras does).
"""
from __future__ import annotations

from typing import Callable


from . import ops
from .registry import lookup


def mean_squared_error(y_true, y_pred):
    return ops.mean(ops.square(ops.subtract(y_pred, y_true)), axis=-1)


def mean_absolute_error(y_true, y_pred):
    return ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


def binary_accuracy(y_true, y_pred, threshold: float = 0.5):
    dtype = ops.current_backend().dtype
    predicted = ops.cast(ops.greater(y_pred, threshold), dtype)
    return ops.mean(ops.cast(ops.equal(ops.cast(y_true, dtype), predicted), dtype), axis=-1)


def categorical_accuracy(y_true, y_pred):
    hit = ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(y_pred, axis=-1))
    return ops.cast(hit, ops.current_backend().dtype)


def sparse_categorical_accuracy(y_true, y_pred):
    if len(ops.shape(y_true)) == len(ops.shape(y_pred)):
        y_true = ops.squeeze(y_true, -1)
    hit = ops.equal(ops.cast(y_true, "int64"), ops.argmax(y_pred, axis=-1))
    return ops.cast(hit, ops.current_backend().dtype)


# Metrics comparing labels and predictions value by value: the two must have the same shape.
for _fn in (mean_squared_error, mean_absolute_error, binary_accuracy, categorical_accuracy):
    _fn.compares_elementwise = True


class MetricInputError(ValueError):
    """Labels a metric cannot compare with the predictions."""


class Metric:
    """A running mean of ``fn(y_true, y_pred)`` over samples."""

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "metric")
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def batch_values(self, y_true, y_pred):
        """Per-sample values as a backend tensor."""
        return self.fn(y_true, y_pred)

    def update(self, y_true, y_pred, sample_weight=None) -> None:
        if getattr(self.fn, "compares_elementwise", False):
            self._check_shapes(ops.shape(y_true), ops.shape(y_pred))
        values = self.batch_values(y_true, y_pred)
        shape = ops.shape(values)
        if len(shape) > 1:  # e.g. per-timestep values: average within each sample
            values = ops.mean(ops.reshape(values, (shape[0], -1)), axis=-1)
        if sample_weight is not None:
            self.total += float(ops.to_numpy(ops.sum(ops.multiply(values, sample_weight))))
            self.count += float(ops.to_numpy(ops.sum(sample_weight)))
        else:
            self.total += float(ops.to_numpy(ops.sum(values)))
            self.count += shape[0] if shape else 1

    def _check_shapes(self, labels: tuple, predictions: tuple) -> None:
        if tuple(labels[1:]) == tuple(predictions[1:]):
            return
        hint = ("; these look like class ids: sparse_categorical_accuracy (or 'accuracy' with a sparse "
                "categorical loss) compares ids with predictions" if len(labels) < len(predictions)
                or (labels[-1:] == (1,) and predictions[-1:] != (1,)) else "")
        raise MetricInputError(f"metric {self.name!r} compares labels and predictions value by value, but the "
                               f"labels have shape {tuple(labels)} and the predictions {tuple(predictions)}{hint}. "
                               "(Keras would broadcast them and report a meaningless number.)")

    def update_value(self, value: float, weight: float) -> None:
        """Add an already reduced value (e.g. a batch loss) with its weight."""
        self.total += float(value) * weight
        self.count += weight

    def result(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def __repr__(self) -> str:
        return f"<Metric {self.name}: {self.result():.4g}>"


BUILTINS: dict[str, Callable] = {
    "mean_squared_error": mean_squared_error, "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error, "mae": mean_absolute_error,
    "binary_accuracy": binary_accuracy, "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
}

_ACCURACY_BY_LOSS = {
    "binary_crossentropy": binary_accuracy,
    "sparse_categorical_crossentropy": sparse_categorical_accuracy,
    "categorical_crossentropy": categorical_accuracy,
}


def get(identifier, loss=None, output_shape: tuple | None = None) -> Metric:
    """A Metric from a name, a Metric, or a function ``f(y_true, y_pred) -> per-sample values``.

    "accuracy"/"acc" picks binary, sparse or categorical accuracy from the loss
    (then from the output width), as Keras does.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return Metric(_pick_accuracy(loss, output_shape), identifier)
        # "accuracy"/"acc" are resolved above; listing them keeps them in did-you-mean suggestions
        fn = lookup("metrics", identifier, {**BUILTINS, "accuracy": None, "acc": None})
        return Metric(fn, identifier)
    if callable(identifier):
        return Metric(identifier)
    raise TypeError(f"a metric must be a name, a Metric or a function, got {identifier!r}")


def _pick_accuracy(loss, output_shape) -> Callable:
    name = getattr(loss, "name", "")
    if name in _ACCURACY_BY_LOSS:
        return _ACCURACY_BY_LOSS[name]
    if output_shape is not None and output_shape[-1] == 1:
        return binary_accuracy
    return categorical_accuracy



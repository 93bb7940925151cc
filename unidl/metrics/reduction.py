"""``Mean``, ``Sum``, ``MeanMetricWrapper`` and the Keras metrics that average a per-sample function.

Weighting (Keras's rule): values and ``sample_weight`` are brought to the same rank
(a trailing axis of size 1 is squeezed or added); axes of the values beyond the
weight's are averaged (summed, for ``Sum``); the values are multiplied by the weight
broadcast to their shape; then every axis after the batch is averaged. ``Mean`` adds
the weighted values to ``total`` and the weights to ``count`` (the batch size when
unweighted) and reports ``total / count`` (0 before any sample), so an epoch's value
weighs each batch by its size, or its summed weights.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import ops
from . import functions as F
from .base import Metric, MetricInputError, add_to, as_float, as_tensor, divide_no_nan, element_count, rank
from .base import squeeze_or_expand_to_same_rank


def _broadcast_like(x, like):
    """``x`` broadcast to the shape of ``like`` (no op when the static shapes already agree)."""
    if tuple(ops.shape(x)) == tuple(ops.shape(like)):
        return x
    return ops.where(ops.equal(like, like), x, x)  # every entry takes x's value, NaN in `like` or not


def reduce_to_samplewise(values, sample_weight, reduce: Callable):
    """Values (and weights) reduced to one per sample, weighted: Keras's ``reduce_to_samplewise_values``."""
    values = as_float(values)
    if sample_weight is not None:
        sample_weight = as_float(sample_weight)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_rank, values_rank = rank(sample_weight), rank(values)
        if values_rank > weight_rank:
            values = reduce(values, axis=tuple(range(weight_rank, values_rank)))
        sample_weight = _broadcast_like(sample_weight, values)
        values = ops.multiply(values, sample_weight)
        if weight_rank > 1:
            sample_weight = reduce(sample_weight, axis=tuple(range(1, weight_rank)))
    if rank(values) > 1:
        values = reduce(values, axis=tuple(range(1, rank(values))))
    return values, sample_weight


class Sum(Metric):
    """The (weighted) sum of the values: ``Sum().update_state([1, 3, 5, 7])`` gives 16."""

    def __init__(self, name: str = "sum", dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, values, sample_weight=None):
        values, _ = reduce_to_samplewise(values, sample_weight, ops.sum)
        add_to(self.total, ops.sum(values))

    def result(self):
        return ops.add(self.total, 0.0)  # a tensor, not the Variable: later updates do not change it


class Mean(Metric):
    """The (weighted) mean of the values: ``[1, 3, 5, 7]`` gives 4, with weights ``[1, 1, 0, 0]`` 2.

    State: ``total`` (the weighted sum) and ``count`` (the summed weights); the result is
    ``total / count``, 0 while ``count`` is 0 (Keras's ``divide_no_nan``).
    """

    def __init__(self, name: str = "mean", dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values, sample_weight=None):
        if type(sample_weight) is float and rank(values) == 0:  # a batch's loss and its sample count
            add_to(self.total, ops.multiply(as_float(values), sample_weight))
            add_to(self.count, sample_weight)
            return
        values, sample_weight = reduce_to_samplewise(values, sample_weight, ops.mean)
        add_to(self.total, ops.sum(values))
        if sample_weight is not None:
            add_to(self.count, ops.sum(sample_weight))
        elif rank(values) >= 1:
            batch = ops.shape(values)[0]
            add_to(self.count, element_count(values) if batch is None else float(batch))
        else:
            add_to(self.count, 1.0)

    def result(self):
        return divide_no_nan(self.total, self.count)


class MeanMetricWrapper(Mean):
    """The (weighted) mean of ``fn(y_true, y_pred, **kwargs)``, a function giving one value per sample.

    Args:
        fn: e.g. ``unidl.metrics.mean_squared_error``, or your own function written with ``unidl.ops``.
        name: the name in logs (default: the function's name).
        **kwargs: passed to ``fn`` at each call.

    Functions marked ``compares_elementwise`` (accuracy, mse, mae...) refuse labels whose
    shape differs from the predictions' beyond Keras's trailing-axis rank matching, raising
    ``MetricInputError`` with both shapes, where Keras would broadcast them silently.
    """

    def __init__(self, fn: Callable, name: str | None = None, dtype: str | None = None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper", dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    @property
    def _fn(self) -> Callable:  # Keras's attribute name
        return self.fn

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if getattr(self.fn, "compares_elementwise", False):
            check_same_shape(self.name, y_true, y_pred)
        super().update_state(self.fn(y_true, y_pred, **self._fn_kwargs), sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fn": getattr(self.fn, "__name__", repr(self.fn)), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "MeanMetricWrapper":
        config = dict(config)
        fn = config.pop("fn")
        if isinstance(fn, str):
            from . import get_function
            fn = get_function(fn)
        return cls(fn, **config)


def check_same_shape(name: str, y_true, y_pred) -> None:
    """Raise MetricInputError unless labels and predictions have one shape (after Keras's rank matching)."""
    labels, predictions = tuple(ops.shape(y_true)), tuple(ops.shape(y_pred))
    a, b = squeeze_or_expand_to_same_rank(y_true, y_pred)
    matched = tuple(ops.shape(a)), tuple(ops.shape(b))
    if len(matched[0]) == len(matched[1]) and all(
            i is None or j is None or i == j for i, j in zip(matched[0][1:], matched[1][1:])):
        return
    hint = ("; these look like class ids: sparse_categorical_accuracy (or 'accuracy' with a sparse "
            "categorical loss) compares ids with predictions" if len(labels) < len(predictions)
            or (labels[-1:] == (1,) and predictions[-1:] != (1,)) else "")
    raise MetricInputError(f"metric {name!r} compares labels and predictions value by value, but the "
                           f"labels have shape {labels} and the predictions {predictions}{hint}. "
                           "(Keras would broadcast them and report a meaningless number.)")


# ------------------------------------------------------- the wrapped metrics
def _wrapper(class_name: str, fn: Callable, default_name: str, doc: str, **defaults):
    """A MeanMetricWrapper subclass for ``fn``, with Keras's name and keyword defaults."""
    def __init__(self, name: str = default_name, dtype: str | None = None, **kwargs):
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(f"{class_name}() got unexpected keyword arguments {sorted(unknown)}")
        options = {**defaults, **kwargs}
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **options)
        for key, value in options.items():
            setattr(self, key, value)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, **self._fn_kwargs}

    def from_config(cls, config):
        return cls(**config)

    return type(class_name, (MeanMetricWrapper,), {
        "__init__": __init__, "get_config": get_config, "from_config": classmethod(from_config),
        "__doc__": doc, "__module__": __name__, "__qualname__": class_name})


Accuracy = _wrapper("Accuracy", F.accuracy, "accuracy",
                    "How often predictions equal labels exactly (``accuracy``).")
BinaryAccuracy = _wrapper("BinaryAccuracy", F.binary_accuracy, "binary_accuracy",
                          "How often ``y_pred > threshold`` equals the 0/1 label (``threshold=0.5``).",
                          threshold=0.5)
CategoricalAccuracy = _wrapper("CategoricalAccuracy", F.categorical_accuracy, "categorical_accuracy",
                               "How often the arg-max of the prediction is the one-hot label's.")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", F.sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy",
                                     "How often the arg-max of the prediction is the integer label.")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", F.top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy",
                                   "How often the one-hot label's class is among the ``k`` (5) best "
                                   "predictions; ties at the k-th place count in.", k=5)
SparseTopKCategoricalAccuracy = _wrapper("SparseTopKCategoricalAccuracy", F.sparse_top_k_categorical_accuracy,
                                         "sparse_top_k_categorical_accuracy",
                                         "How often the integer label is among the ``k`` (5) best predictions; "
                                         "ties at the k-th place count in. ``from_sorted_ids=True``: ``y_pred`` "
                                         "holds class ids, best first.", k=5, from_sorted_ids=False)
MeanSquaredError = _wrapper("MeanSquaredError", F.mean_squared_error, "mean_squared_error",
                            "Mean of ``(y_pred - y_true)**2``.")
MeanAbsoluteError = _wrapper("MeanAbsoluteError", F.mean_absolute_error, "mean_absolute_error",
                             "Mean of ``|y_pred - y_true|``.")
MeanAbsolutePercentageError = _wrapper("MeanAbsolutePercentageError", F.mean_absolute_percentage_error,
                                       "mean_absolute_percentage_error",
                                       "Mean of ``100 |y_true - y_pred| / max(|y_true|, 1e-7)``.")
MeanSquaredLogarithmicError = _wrapper("MeanSquaredLogarithmicError", F.mean_squared_logarithmic_error,
                                       "mean_squared_logarithmic_error",
                                       "Mean of ``(log(1 + y_pred) - log(1 + y_true))**2`` (both floored at 1e-7).")
CosineSimilarity = _wrapper("CosineSimilarity", F.cosine_similarity, "cosine_similarity",
                            "Mean cosine of the angle between labels and predictions along ``axis`` (-1).",
                            axis=-1)
LogCoshError = _wrapper("LogCoshError", F.log_cosh, "logcosh", "Mean of ``log(cosh(y_pred - y_true))``.")
KLDivergence = _wrapper("KLDivergence", F.kl_divergence, "kl_divergence",
                        "Mean of ``sum(y_true * log(y_true / y_pred))`` (both clipped to [1e-7, 1]).")
Poisson = _wrapper("Poisson", F.poisson, "poisson", "Mean of ``y_pred - y_true * log(y_pred + 1e-7)``.")
BinaryCrossentropy = _wrapper("BinaryCrossentropy", F.binary_crossentropy, "binary_crossentropy",
                              "Mean binary cross-entropy (``from_logits``, ``label_smoothing`` as the loss).",
                              from_logits=False, label_smoothing=0.0)
CategoricalCrossentropy = _wrapper("CategoricalCrossentropy", F.categorical_crossentropy,
                                   "categorical_crossentropy",
                                   "Mean categorical cross-entropy of one-hot labels.",
                                   from_logits=False, label_smoothing=0.0, axis=-1)
Hinge = _wrapper("Hinge", F.hinge, "hinge", "Mean of ``max(1 - y_true * y_pred, 0)``; 0/1 labels read as -1/1.")
SquaredHinge = _wrapper("SquaredHinge", F.squared_hinge, "squared_hinge",
                        "Mean of ``max(1 - y_true * y_pred, 0)**2``; 0/1 labels read as -1/1.")
CategoricalHinge = _wrapper("CategoricalHinge", F.categorical_hinge, "categorical_hinge",
                            "Mean of ``max(max((1 - y) * p) - sum(y * p) + 1, 0)`` for one-hot labels.")


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Mean cross-entropy of integer labels.

    ``ignore_class``: samples with this label get the value 0. As Keras 3 computes it, they
    still count in the mean when no ``sample_weight`` is given, and are left out (weight 0)
    when one is: Keras's ``Mean`` reads the loss's mask only to adjust given weights.
    """

    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype: str | None = None,
                 from_logits: bool = False, ignore_class: int | None = None, axis: int = -1):
        super().__init__(F.sparse_categorical_crossentropy, name=name, dtype=dtype, from_logits=from_logits,
                         axis=axis)
        self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.ignore_class is None:
            return super().update_state(y_true, y_pred, sample_weight)
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if rank(y_true) == rank(y_pred):
            y_true = ops.squeeze(y_true, -1)
        valid = ops.not_equal(y_true, self.ignore_class)
        values = ops.where(valid, self.fn(ops.where(valid, y_true, 0), y_pred, **self._fn_kwargs), 0.0)
        if sample_weight is not None:
            sample_weight = ops.multiply(as_float(sample_weight), as_float(valid))
        Mean.update_state(self, values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class RootMeanSquaredError(Mean):
    """``sqrt`` of the (weighted) mean of ``(y_pred - y_true)**2`` over every entry seen."""

    def __init__(self, name: str = "root_mean_squared_error", dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = squeeze_or_expand_to_same_rank(as_float(y_true), as_float(y_pred))
        super().update_state(ops.square(ops.subtract(y_pred, y_true)), sample_weight=sample_weight)

    def result(self):
        return ops.sqrt(super().result())

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class R2Score(Metric):
    """Coefficient of determination ``1 - SS_res / SS_tot`` per output column, over everything seen.

    Args:
        class_aggregation: "uniform_average" (default: the mean over columns),
            "variance_weighted_average" (weighted by each column's total variance) or None (one
            score per column).
        num_regressors: > 0 for the adjusted R2 ``1 - (1 - R2) (n - 1) / (n - p - 1)`` (kept
            unadjusted while ``n - 1 <= p``; Keras also warns then).
    Inputs: (samples, outputs). A column whose labels never vary scores 0 (NaN when its
    predictions are exact too), as Keras.
    """

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score", dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError("class_aggregation must be None, 'uniform_average' or 'variance_weighted_average', "
                             f"got class_aggregation={class_aggregation!r}")
        if num_regressors < 0:
            raise ValueError(f"num_regressors must be >= 0, got num_regressors={num_regressors}")
        self.class_aggregation, self.num_regressors = class_aggregation, num_regressors
        self.num_samples = self.add_variable(shape=(), name="num_samples")
        self._built = False

    def _build(self, true_shape, pred_shape) -> None:
        if len(true_shape) != 2 or len(pred_shape) != 2 or pred_shape[-1] is None:
            raise ValueError("R2Score expects inputs of shape (samples, outputs), got "
                             f"y_true {tuple(true_shape)} and y_pred {tuple(pred_shape)}")
        shape = (pred_shape[-1],)
        self.squared_sum = self.add_variable(shape=shape, name="squared_sum")
        self.sum = self.add_variable(shape=shape, name="sum")
        self.total_mse = self.add_variable(shape=shape, name="residual")
        self.count = self.add_variable(shape=shape, name="count")
        self._built = True
        self._state_backend(ops.current_backend())

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = squeeze_or_expand_to_same_rank(as_float(y_true), as_float(y_pred))
        if not self._built:
            self._build(ops.shape(y_true), ops.shape(y_pred))
        weight = as_float(1.0 if sample_weight is None else sample_weight)
        if rank(weight) == 1:
            weight = ops.expand_dims(weight, 1)
        weight = _broadcast_like(weight, y_true)
        weighted = ops.multiply(y_true, weight)
        add_to(self.sum, ops.sum(weighted, axis=0))
        add_to(self.squared_sum, ops.sum(ops.multiply(y_true, weighted), axis=0))
        add_to(self.total_mse, ops.sum(ops.multiply(ops.square(ops.subtract(y_true, y_pred)), weight), axis=0))
        add_to(self.count, ops.sum(weight, axis=0))
        add_to(self.num_samples, element_count(y_true))

    def result(self):
        if not self._built:
            return ops.convert(np.float64(0.0))
        mean = ops.divide(self.sum, self.count)
        total = ops.subtract(self.squared_sum, ops.multiply(self.sum, mean))
        flat = ops.equal(total, 0.0)
        # 1 - SS_res / 0 is -inf (Keras reports 0) or, with SS_res = 0 too, NaN (kept)
        raw = ops.where(flat, ops.where(ops.equal(self.total_mse, 0.0), float("nan"), 0.0),
                        ops.subtract(1.0, ops.divide(self.total_mse, ops.where(flat, 1.0, total))))
        if self.class_aggregation == "uniform_average":
            score = ops.mean(raw)
        elif self.class_aggregation == "variance_weighted_average":
            score = ops.divide(ops.sum(ops.multiply(total, raw)), ops.sum(total))
        else:
            score = raw
        if self.num_regressors:
            n, p = self.num_samples, float(self.num_regressors)
            room = ops.subtract(ops.subtract(n, p), 1.0)
            adjusted = ops.subtract(1.0, ops.divide(ops.multiply(ops.subtract(1.0, score), ops.subtract(n, 1.0)),
                                                    ops.where(ops.greater(room, 0.0), room, 1.0)))
            score = ops.where(ops.greater(room, 0.0), adjusted, score)
        return score

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}

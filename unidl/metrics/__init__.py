"""``unidl.metrics``: Keras 3's metrics, stateful classes and per-sample functions, over ``unidl.ops``.

Classes keep their state in ``unidl.Variable``s: ``update_state(y_true, y_pred,
sample_weight=None)`` adds a batch, ``result()`` gives the value, ``reset_state()``
starts again (see ``unidl.metrics.base`` for where the state lives). Functions
(``binary_accuracy``, ``mean_squared_error``...) give one value per sample.

``compile(metrics=[...])`` takes names ("accuracy", "mae", "auc", "precision", Keras's
class and function names), Metric instances or classes, and functions
``f(y_true, y_pred) -> per-sample values`` (averaged by a ``MeanMetricWrapper``); see :func:`get`.
The training loop reports each metric's ``result()`` as a float; epoch values are
sample-weighted means over the epoch, as in Keras.

Known differences from Keras 3:
- Default names are the class name in snake case, without Keras's process-wide ``_1``,
  ``_2`` numbering of repeated instances.
- ``Metric(name=None, dtype=None)`` takes ``name`` first (Keras: ``dtype`` first); pass both by keyword.
- ``binary_accuracy`` and ``accuracy`` return one value per sample (the mean over the last
  axis), not the elementwise matches; the metric values are the same.
- Elementwise metrics (accuracy, mse, mae, ...) refuse labels whose shape differs from the
  predictions' (other than a trailing axis of size 1), raising ``MetricInputError``; Keras
  broadcasts them.
- Keras masks (``_keras_mask``) are not read.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import ops
from ..naming import snake_case
from ..registry import lookup
from ..variables import Variable
from .base import Metric, MetricInputError
from .confusion import (AUC, F1Score, FalseNegatives, FalsePositives, FBetaScore, Precision, PrecisionAtRecall,
                        Recall, RecallAtPrecision, SensitivityAtSpecificity, SpecificityAtSensitivity,
                        TrueNegatives, TruePositives)
from .functions import (accuracy, binary_accuracy, binary_crossentropy, categorical_accuracy,
                        categorical_crossentropy, categorical_hinge, cosine_similarity, hinge, kl_divergence,
                        log_cosh, mean_absolute_error, mean_absolute_percentage_error, mean_squared_error,
                        mean_squared_logarithmic_error, poisson, sparse_categorical_accuracy,
                        sparse_categorical_crossentropy, sparse_top_k_categorical_accuracy, squared_hinge,
                        top_k_categorical_accuracy)
from .iou import IoU, BinaryIoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from .reduction import (Accuracy, BinaryAccuracy, BinaryCrossentropy, CategoricalAccuracy, CategoricalCrossentropy,
                        CategoricalHinge, CosineSimilarity, Hinge, KLDivergence, LogCoshError, Mean,
                        MeanAbsoluteError, MeanAbsolutePercentageError, MeanMetricWrapper, MeanSquaredError,
                        MeanSquaredLogarithmicError, Poisson, R2Score, RootMeanSquaredError, SparseCategoricalAccuracy,
                        SparseCategoricalCrossentropy, SparseTopKCategoricalAccuracy, SquaredHinge, Sum,
                        TopKCategoricalAccuracy)

# Keras's aliases
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
logcosh = log_cosh
kld = KLD = kl_divergence

CLASSES: tuple[type[Metric], ...] = (
    Mean, Sum, MeanMetricWrapper,
    Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError, MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError, CosineSimilarity, LogCoshError, R2Score,
    KLDivergence, Poisson, BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
    Hinge, SquaredHinge, CategoricalHinge,
    TruePositives, FalsePositives, TrueNegatives, FalseNegatives, Precision, Recall, AUC,
    SensitivityAtSpecificity, SpecificityAtSensitivity, PrecisionAtRecall, RecallAtPrecision,
    FBetaScore, F1Score,
    IoU, BinaryIoU, MeanIoU, OneHotIoU, OneHotMeanIoU,
)
_BY_CLASS_NAME = {cls.__name__: cls for cls in CLASSES}

# Per-sample functions by name (saved model files refer to them; MeanMetricWrapper configs too).
BUILTINS: dict[str, Callable] = {
    fn.__name__: fn for fn in (
        accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy,
        sparse_top_k_categorical_accuracy, mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
        mean_squared_logarithmic_error, cosine_similarity, log_cosh, kl_divergence, poisson, binary_crossentropy,
        categorical_crossentropy, sparse_categorical_crossentropy, hinge, squared_hinge, categorical_hinge)}
BUILTINS.update({"mse": mean_squared_error, "mae": mean_absolute_error, "mape": mean_absolute_percentage_error,
                 "msle": mean_squared_logarithmic_error, "logcosh": log_cosh})

# Names compile() accepts (lower case: lookups ignore case), as Keras's: each class in snake case,
# plus its aliases. "accuracy"/"acc" are resolved from the loss (see get); listed for did-you-mean.
NAMES: dict[str, Any] = {snake_case(cls.__name__): cls for cls in CLASSES if cls is not MeanMetricWrapper}
NAMES.update({"accuracy": None, "acc": None, "mse": MeanSquaredError, "mae": MeanAbsoluteError,
              "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError, "bce": BinaryCrossentropy,
              "logcosh": LogCoshError, "auc": AUC, "iou": IoU, "mean_iou": MeanIoU, "binary_iou": BinaryIoU,
              "one_hot_iou": OneHotIoU, "one_hot_mean_iou": OneHotMeanIoU})

_ACCURACY_BY_LOSS = {
    "binary_crossentropy": BinaryAccuracy,
    "sparse_categorical_crossentropy": SparseCategoricalAccuracy,
    "categorical_crossentropy": CategoricalAccuracy,
}


def get(identifier, loss=None, output_shape: tuple | None = None) -> Metric:
    """A Metric for ``compile(metrics=[...])``.

    ``identifier`` is one of:
    - a name: "accuracy"/"acc" picks binary, sparse or categorical accuracy from the loss (then
      from the output width: 1 is binary), as Keras does; other names are Keras's ("mae",
      "mse", "auc", "precision", "binary_accuracy", "MeanSquaredError", ...) or a plugin's.
      The metric is named by the name given ("mae" logs as "mae").
    - a Metric instance (returned as is: a fresh copy per compile is the caller's job), or a class;
    - a function ``f(y_true, y_pred) -> per-sample values``, wrapped in a MeanMetricWrapper named
      after it; or a saved ``{"class_name": ..., "config": ...}``.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier.lower() in ("accuracy", "acc"):
            return _pick_accuracy(loss, output_shape)(name=identifier)
        found = _BY_CLASS_NAME.get(identifier) or lookup("metrics", identifier, NAMES)
        return _instantiate(found, identifier)
    if callable(identifier):
        return MeanMetricWrapper(identifier, name=getattr(identifier, "__name__", None))
    raise TypeError(f"a metric must be a name, a Metric or a function, got {identifier!r}")


def _instantiate(found, name: str) -> Metric:
    if isinstance(found, Metric):
        return found
    if isinstance(found, type) and issubclass(found, Metric):
        try:
            return found(name=name)
        except TypeError as exc:
            raise TypeError(f"metric {name!r} needs arguments ({exc}); pass an instance instead, e.g. "
                            f"metrics=[unidl.metrics.{found.__name__}(...)]") from None
    if callable(found):  # a plugin's per-sample function
        return MeanMetricWrapper(found, name=name)
    raise TypeError(f"metric {name!r} names {found!r}, which is neither a Metric nor a function")


def _pick_accuracy(loss, output_shape) -> type[Metric]:
    name = getattr(loss, "name", "")
    if name in _ACCURACY_BY_LOSS:
        return _ACCURACY_BY_LOSS[name]
    if output_shape is not None and output_shape[-1] == 1:
        return BinaryAccuracy
    return CategoricalAccuracy


def get_function(name: str) -> Callable:
    """A per-sample metric function by name (built-in or a plugin's)."""
    return lookup("metrics", name, BUILTINS)


def serialize(metric: Metric) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` for a Metric (Keras's form)."""
    return {"class_name": type(metric).__name__, "config": metric.get_config()}


def deserialize(config: dict[str, Any], custom_objects: dict | None = None) -> Metric:
    """The Metric that :func:`serialize` described."""
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _BY_CLASS_NAME.get(name) or lookup("metrics", name, NAMES)
    return cls.from_config(dict(config.get("config", {})))


def logs(metrics) -> dict[str, Any]:
    """``{name: value}`` for the training loop: each metric's ``result()`` on the host, a float when it is
    one number (else a NumPy array); a metric whose result is a dict contributes its entries."""
    out: dict[str, Any] = {}
    for metric in metrics:
        value = metric.result()
        for key, v in (value.items() if isinstance(value, dict) else [(metric.name, value)]):
            out[key] = _host_value(v)
    return out


def _host_value(value) -> Any:
    if type(value) is Variable:
        value = value.value
    if not isinstance(value, (np.ndarray, np.generic, float, int)):
        value = ops.to_numpy(value)
    array = np.asarray(value)
    return float(array.reshape(-1)[0]) if array.size == 1 else array


__all__ = [
    "Metric", "MetricInputError", "get", "get_function", "serialize", "deserialize", "logs", "BUILTINS", "NAMES",
    *(cls.__name__ for cls in CLASSES), *BUILTINS,
]

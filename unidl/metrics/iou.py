"""Intersection-over-union metrics (semantic segmentation): Keras 3's IoU family over ``unidl.ops``.

State: a (num_classes, num_classes) confusion matrix, rows the true class and columns
the predicted one, filled with (weighted) counts. For class c,
``IoU_c = TP_c / (TP_c + FP_c + FN_c)``; a metric averages it over its target classes,
skipping classes that never occurred in labels or predictions.

Like Keras (whose IoU state is an integer matrix by default), class ids and sample
weights are truncated to integers unless ``dtype`` names a float dtype; ids outside
[0, num_classes) and the ``ignore_class`` are left out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import ops
from .base import EPSILON, Metric, as_float, as_tensor, rank


class _IoUBase(Metric):
    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True, sparse_y_pred: bool = True,
                 axis: int = -1):
        super().__init__(name=name, dtype=dtype or "int")
        self.num_classes, self.ignore_class = int(num_classes), ignore_class
        self.sparse_y_true, self.sparse_y_pred, self.axis = sparse_y_true, sparse_y_pred, axis
        self._integer = "int" in str(self._dtype)
        self.total_cm = self.add_variable(shape=(self.num_classes, self.num_classes),
                                          name="total_confusion_matrix")

    def _to_state_type(self, x):
        """Truncated to an integer (then float) when the state is integer, as Keras's int cast."""
        x = as_tensor(x)
        if self._integer:
            x = ops.cast(x, "int64")
        return as_float(x)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
        if not self.sparse_y_true:
            y_true = ops.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = ops.argmax(y_pred, axis=self.axis)
        y_true, y_pred = self._to_state_type(y_true), self._to_state_type(y_pred)
        if sample_weight is None:
            weight = ops.add(ops.multiply(y_true, 0.0), 1.0)
        else:
            weight = self._to_state_type(sample_weight)
            while rank(weight) < rank(y_true):  # a weight per sample covers all of its entries
                weight = ops.expand_dims(weight, -1)
            weight = ops.add(weight, ops.multiply(y_true, 0.0))  # broadcast to the labels' shape
        y_true, y_pred, weight = (ops.reshape(t, (-1,)) for t in (y_true, y_pred, weight))
        classes = float(self.num_classes)
        inside = ops.multiply(
            ops.multiply(as_float(ops.greater_equal(y_true, 0.0)), as_float(ops.less(y_true, classes))),
            ops.multiply(as_float(ops.greater_equal(y_pred, 0.0)), as_float(ops.less(y_pred, classes))))
        if self.ignore_class is not None:
            inside = ops.multiply(inside, as_float(ops.not_equal(y_true, float(self.ignore_class))))
        keep = ops.greater(inside, 0.5)
        true_ids = ops.cast(ops.where(keep, y_true, 0.0), "int64")
        pred_ids = ops.cast(ops.where(keep, y_pred, 0.0), "int64")
        weight = ops.where(keep, weight, 0.0)
        true_hot = as_float(ops.one_hot(true_ids, self.num_classes))
        pred_hot = ops.multiply(as_float(ops.one_hot(pred_ids, self.num_classes)), ops.expand_dims(weight, -1))
        batch_cm = ops.matmul(ops.transpose(true_hot), pred_hot)  # [i, j]: weight of true i predicted j
        self.total_cm.assign(ops.add(self.total_cm, batch_cm))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred, "axis": self.axis}


class IoU(_IoUBase):
    """Mean IoU over ``target_class_ids`` (see the module docstring).

    Args:
        num_classes: the number of classes (the confusion matrix is num_classes x num_classes).
        target_class_ids: the classes whose IoU is averaged.
        ignore_class: a label id left out (e.g. a "void" class).
        sparse_y_true / sparse_y_pred: False when labels / predictions are one-hot or scores
            along ``axis`` (their arg-max is taken).
    """

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 dtype: str | None = None, ignore_class: int | None = None, sparse_y_true: bool = True,
                 sparse_y_pred: bool = True, axis: int = -1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)
        if max(target_class_ids) >= num_classes:
            raise ValueError(f"target class id {max(target_class_ids)} is out of range [0, {num_classes})")
        self.target_class_ids = [int(c) for c in target_class_ids]

    def result(self):
        cm = self.total_cm
        true_positives = ops.sum(ops.multiply(cm, ops.convert(np.eye(self.num_classes))), axis=1)
        denominator = ops.subtract(ops.add(ops.sum(cm, axis=0), ops.sum(cm, axis=1)), true_positives)
        targets = ops.convert(np.asarray(self.target_class_ids, dtype=np.int64))
        true_positives, denominator = ops.take(true_positives, targets), ops.take(denominator, targets)
        valid = ops.greater(denominator, 1e-9)
        iou = ops.where(valid, ops.divide(true_positives, ops.add(denominator, EPSILON)), 0.0)
        count = ops.sum(as_float(valid))
        return ops.divide(ops.sum(iou, axis=-1), ops.add(count, EPSILON))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_class_ids": self.target_class_ids}


class BinaryIoU(IoU):
    """IoU of a binary segmentation: predictions ``>= threshold`` (0.5) are class 1."""

    def __init__(self, target_class_ids: Sequence[int] = (0, 1), threshold: float = 0.5, name: str | None = None,
                 dtype: str | None = None):
        super().__init__(2, target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold

    def update_state(self, y_true, y_pred, sample_weight=None):
        predicted = ops.greater_equal(as_float(y_pred), self.threshold)
        super().update_state(y_true, as_float(predicted), sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {"target_class_ids": self.target_class_ids, "threshold": self.threshold, "name": self.name,
                "dtype": self._dtype}


class MeanIoU(IoU):
    """IoU averaged over all ``num_classes`` classes (integer class ids by default).

    ``MeanIoU(num_classes=3).update_state([0, 1, 2, 1], [0, 1, 1, 1])`` gives the mean of
    1/1, 2/3 and 0/1 = 0.5556.
    """

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True, sparse_y_pred: bool = True,
                 axis: int = -1):
        super().__init__(num_classes, list(range(num_classes)), name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["target_class_ids"]
        return config


class OneHotIoU(IoU):
    """IoU over ``target_class_ids`` with one-hot labels (and score predictions unless ``sparse_y_pred``)."""

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 dtype: str | None = None, ignore_class: int | None = None, sparse_y_pred: bool = False,
                 axis: int = -1):
        super().__init__(num_classes, target_class_ids, name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=False, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot labels (and score predictions unless ``sparse_y_pred``)."""

    def __init__(self, num_classes: int, name: str | None = None, dtype: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1):
        super().__init__(num_classes, name=name, dtype=dtype, ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["sparse_y_true"]
        return config

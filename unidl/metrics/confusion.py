"""Metrics counted from a confusion matrix at thresholds: TP/FP/TN/FN, Precision, Recall, AUC,
the "X at Y" metrics, and F-scores; Keras 3's semantics, over ``unidl.ops``.

Counting (Keras's ``update_confusion_matrix_variables``): a prediction is positive at
threshold ``t`` when ``y_pred > t`` (strictly); a label is positive when it is not 0.
Every entry of ``y_pred`` counts (all classes pooled) unless ``multi_label``.
``sample_weight`` multiplies each sample's counts. When the thresholds are evenly spaced
over [0, 1] (AUC's default, the "X at Y" metrics, or given so), Keras clips ``y_pred``
to [0, 1] and compares ``y_pred * (n - 1)`` with the threshold's index instead; unidl
does the same, so values falling exactly on a threshold land on the same side as in
Keras.

``top_k`` keeps the k highest predictions of each row (ties: the lower class index
first, as ``tf.math.top_k``) and sets the others to -1e10 before thresholding.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import ops
from .base import EPSILON, Metric, as_float, divide_no_nan, index_range, rank, squeeze_or_expand_to_same_rank

NEG_INF = -1e10
TP, FP, TN, FN = "tp", "fp", "tn", "fn"


def _threshold_list(thresholds, default: float) -> list[float]:
    if thresholds is None:
        return [float(default)]
    values = list(thresholds) if isinstance(thresholds, (list, tuple, np.ndarray)) else [thresholds]
    bad = [t for t in values if t is None or not 0 <= t <= 1]
    if bad:
        raise ValueError(f"threshold values must be in [0, 1], got {bad}")
    return [float(t) for t in values]


def _evenly_spaced(thresholds: Sequence[float]) -> bool:
    n = len(thresholds)
    return n >= 3 and bool(np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=EPSILON))


def _as_mask(condition):
    return ops.cast(condition, ops.current_backend().dtype)


def _take(x, start: int, stop: int, axis: int = 0):
    return ops.take(x, index_range(start, stop), axis=axis)


def _first(x):
    """The single entry of a one-threshold result, as a scalar."""
    return ops.reshape(x, ())


def filter_top_k(x, k: int):
    """``x`` where an entry is among the k highest of its row (ties: lower index first), else -1e10."""
    classes = ops.shape(x)[-1]
    row, col = ops.expand_dims(x, -1), ops.expand_dims(x, -2)  # [..., j, i]: x_j against x_i
    earlier = ops.convert(np.tril(np.ones((classes, classes)), -1))  # [j, i] = 1 where i < j
    ahead = ops.add(_as_mask(ops.greater(col, row)), ops.multiply(_as_mask(ops.equal(col, row)), earlier))
    kept = _as_mask(ops.less(ops.sum(ahead, axis=-1), k))
    return ops.add(ops.multiply(x, kept), ops.multiply(ops.subtract(1.0, kept), NEG_INF))


def update_confusion_variables(variables: dict, y_true, y_pred, thresholds: Sequence[float], *,
                               evenly: bool = False, top_k: int | None = None, class_id: int | None = None,
                               sample_weight=None, multi_label: bool = False, label_weights=None) -> None:
    """Add a batch's TP/FP/TN/FN counts at ``thresholds`` to ``variables`` ({"tp": Variable, ...})."""
    y_true, y_pred = as_float(y_true), as_float(y_pred)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if sample_weight is not None:
        sample_weight = ops.expand_dims(as_float(sample_weight), -1)
        _, sample_weight = squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if rank(y_pred) == 1:
            raise ValueError("when class_id is given, y_pred must have shape (samples, classes), got shape "
                             f"{tuple(ops.shape(y_pred))}")
        y_true, y_pred = _take(y_true, class_id, class_id + 1, -1), _take(y_pred, class_id, class_id + 1, -1)
    n = len(thresholds)
    dims = rank(y_pred)
    if multi_label and dims != 2:
        raise ValueError(f"multi_label=True needs y_pred of shape (samples, labels), got {tuple(ops.shape(y_pred))}")
    column = (n,) + (1,) * dims  # thresholds along a new leading axis, broadcast over y_pred
    if evenly:
        with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        scaled = ops.multiply(ops.clip(y_pred, 0.0, 1.0), float(n - 1))
        index = np.arange(n, dtype=np.float64)
        if with_epsilon:
            index[0] = -1.0  # the threshold below 0 counts every prediction (Keras's relu on the bucket)
        positive = _as_mask(ops.greater(scaled, ops.convert(index.reshape(column))))
    else:
        positive = _as_mask(ops.greater(y_pred, ops.convert(np.asarray(thresholds, np.float64).reshape(column))))
    labels = _as_mask(ops.not_equal(y_true, 0.0))
    weights = sample_weight
    if label_weights is not None and not multi_label:
        lw = as_float(label_weights)
        weights = lw if weights is None else ops.multiply(weights, lw)
    true_w = labels if weights is None else ops.multiply(labels, weights)
    false_w = ops.subtract(1.0, labels) if weights is None else ops.multiply(ops.subtract(1.0, labels), weights)
    axes = (1,) if multi_label else tuple(range(1, dims + 1))  # sum over samples (and labels unless multi_label)

    def count(mask, w):
        return ops.sum(ops.multiply(mask, w), axis=axes)

    tp = count(positive, true_w) if TP in variables or (evenly and FN in variables) else None
    fp = count(positive, false_w) if FP in variables or (evenly and TN in variables) else None
    for key, make in ((TP, lambda: tp), (FP, lambda: fp),
                      (TN, lambda: ops.subtract(ops.sum(false_w, axis=tuple(a - 1 for a in axes)), fp) if evenly
                       else count(ops.subtract(1.0, positive), false_w)),
                      (FN, lambda: ops.subtract(ops.sum(true_w, axis=tuple(a - 1 for a in axes)), tp) if evenly
                       else count(ops.subtract(1.0, positive), true_w))):
        if key in variables:
            variables[key].assign(ops.add(variables[key], make()))


class _ConfusionMatrixConditionCount(Metric):
    condition = ""

    def __init__(self, thresholds=None, name: str | None = None, dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _threshold_list(thresholds, 0.5)
        self._evenly = _evenly_spaced(self.thresholds)
        self.accumulator = self.add_variable(shape=(len(self.thresholds),), name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_variables({self.condition: self.accumulator}, y_true, y_pred, self.thresholds,
                                   evenly=self._evenly, sample_weight=sample_weight)

    def result(self):
        value = ops.add(self.accumulator, 0.0)
        return _first(value) if len(self.thresholds) == 1 else value

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of positive labels predicted positive (``y_pred > threshold``, 0.5 by default).

    ``thresholds``: a float or a list of floats in [0, 1]; with a list, ``result()`` has one count each.
    """
    condition = TP


class FalsePositives(_ConfusionMatrixConditionCount):
    """The (weighted) number of negative (0) labels predicted positive; ``thresholds`` as TruePositives."""
    condition = FP


class TrueNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of negative (0) labels predicted negative; ``thresholds`` as TruePositives."""
    condition = TN


class FalseNegatives(_ConfusionMatrixConditionCount):
    """The (weighted) number of positive labels predicted negative; ``thresholds`` as TruePositives."""
    condition = FN


class _PrecisionRecall(Metric):
    other = ""  # FP for precision, FN for recall

    def __init__(self, thresholds=None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        self.thresholds = _threshold_list(thresholds, 0.5 if top_k is None else NEG_INF)
        self._evenly = _evenly_spaced(self.thresholds)
        self.true_positives = self.add_variable(shape=(len(self.thresholds),), name="true_positives")
        other_name = "false_positives" if self.other == FP else "false_negatives"
        setattr(self, other_name, self.add_variable(shape=(len(self.thresholds),), name=other_name))
        self._other = getattr(self, other_name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_variables({TP: self.true_positives, self.other: self._other}, y_true, y_pred,
                                   self.thresholds, evenly=self._evenly, top_k=self.top_k,
                                   class_id=self.class_id, sample_weight=sample_weight)

    def result(self):
        value = divide_no_nan(self.true_positives, ops.add(self.true_positives, self._other))
        return _first(value) if len(self.thresholds) == 1 else value

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k,
                "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """``TP / (TP + FP)``: how many predicted positives are positive (0 when none is predicted).

    Args:
        thresholds: float or list in [0, 1] (default 0.5; with ``top_k``, -1e10: the top k only).
        top_k: count only the k highest predictions of each row as candidates.
        class_id: compute for this class (column of ``y_pred``) alone.
    """
    other = FP


class Recall(_PrecisionRecall):
    """``TP / (TP + FN)``: how many positives are predicted positive; arguments as Precision."""
    other = FN


class SensitivitySpecificityBase(Metric):
    """Four confusion counts at ``num_thresholds`` evenly spaced thresholds in [0, 1]; subclasses pick a value."""

    def __init__(self, value: float, num_thresholds: int = 200, class_id: int | None = None,
                 name: str | None = None, dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        if num_thresholds <= 0:
            raise ValueError(f"num_thresholds must be an integer > 0, got num_thresholds={num_thresholds}")
        self.value, self.class_id = value, class_id
        if num_thresholds == 1:
            self.thresholds, self._evenly = [0.5], False
        else:
            self.thresholds = [0.0] + [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)] + [1.0]
            self._evenly = True
        shape = (len(self.thresholds),)
        self.true_positives = self.add_variable(shape=shape, name="true_positives")
        self.false_positives = self.add_variable(shape=shape, name="false_positives")
        self.true_negatives = self.add_variable(shape=shape, name="true_negatives")
        self.false_negatives = self.add_variable(shape=shape, name="false_negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion_variables({TP: self.true_positives, FP: self.false_positives, TN: self.true_negatives,
                                    FN: self.false_negatives}, y_true, y_pred, self.thresholds,
                                   evenly=self._evenly, class_id=self.class_id, sample_weight=sample_weight)

    def _rates(self):
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        return {"sensitivity": divide_no_nan(tp, ops.add(tp, fn)), "specificity": divide_no_nan(tn, ops.add(tn, fp)),
                "precision": divide_no_nan(tp, ops.add(tp, fp))}

    def _best_under_constraint(self, constrained, dependent):
        """The highest ``dependent`` over thresholds where ``constrained >= value`` (0 if none)."""
        return ops.maximum(ops.max(ops.where(ops.greater_equal(constrained, self.value), dependent, 0.0)), 0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "class_id": self.class_id}


class SensitivityAtSpecificity(SensitivitySpecificityBase):
    """The best sensitivity (recall) among thresholds whose specificity is at least ``specificity``."""

    def __init__(self, specificity: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        if not 0 <= specificity <= 1:
            raise ValueError(f"specificity must be in [0, 1], got specificity={specificity}")
        self.specificity, self.num_thresholds = specificity, num_thresholds
        super().__init__(specificity, num_thresholds, class_id, name, dtype)

    def result(self):
        rates = self._rates()
        return self._best_under_constraint(rates["specificity"], rates["sensitivity"])

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "specificity": self.specificity}


class SpecificityAtSensitivity(SensitivitySpecificityBase):
    """The best specificity among thresholds whose sensitivity (recall) is at least ``sensitivity``."""

    def __init__(self, sensitivity: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        if not 0 <= sensitivity <= 1:
            raise ValueError(f"sensitivity must be in [0, 1], got sensitivity={sensitivity}")
        self.sensitivity, self.num_thresholds = sensitivity, num_thresholds
        super().__init__(sensitivity, num_thresholds, class_id, name, dtype)

    def result(self):
        rates = self._rates()
        return self._best_under_constraint(rates["sensitivity"], rates["specificity"])

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "sensitivity": self.sensitivity}


class PrecisionAtRecall(SensitivitySpecificityBase):
    """The best precision among thresholds whose recall is at least ``recall``."""

    def __init__(self, recall: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        if not 0 <= recall <= 1:
            raise ValueError(f"recall must be in [0, 1], got recall={recall}")
        self.recall, self.num_thresholds = recall, num_thresholds
        super().__init__(recall, num_thresholds, class_id, name, dtype)

    def result(self):
        rates = self._rates()
        return self._best_under_constraint(rates["sensitivity"], rates["precision"])

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "recall": self.recall}


class RecallAtPrecision(SensitivitySpecificityBase):
    """The best recall among thresholds whose precision is at least ``precision``."""

    def __init__(self, precision: float, num_thresholds: int = 200, class_id=None, name=None, dtype=None):
        if not 0 <= precision <= 1:
            raise ValueError(f"precision must be in [0, 1], got precision={precision}")
        self.precision, self.num_thresholds = precision, num_thresholds
        super().__init__(precision, num_thresholds, class_id, name, dtype)

    def result(self):
        rates = self._rates()
        return self._best_under_constraint(rates["precision"], rates["sensitivity"])

    def get_config(self):
        return {**super().get_config(), "num_thresholds": self.num_thresholds, "precision": self.precision}


_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "majoring", "minoring")


class AUC(Metric):
    """Area under the ROC or precision-recall curve, from confusion counts at thresholds (Keras's AUC).

    Args:
        num_thresholds: thresholds ``i / (num_thresholds - 1)`` for i in 1 .. n-2, plus -1e-7 and 1 + 1e-7
            at the ends so predictions of exactly 0 and 1 are counted (default 200).
        curve: "ROC" (default), "PR" or "PRGAIN".
        summation_method: "interpolation" (default: trapezoids; for "PR" the interpolation of
            Davis & Goadrich 2006, Keras's formula), "majoring" or "minoring" (upper or lower rectangles).
        thresholds: explicit thresholds in [0, 1] instead of ``num_thresholds``.
        multi_label: treat each column of ``y_pred`` as its own label, average the AUCs (weighted by
            ``label_weights`` when given); otherwise every entry is pooled.
        num_labels: the number of labels with ``multi_label`` (else read from the first batch).
        label_weights: one weight per label (column).
        from_logits: apply a sigmoid to ``y_pred`` first.
    """

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 name: str | None = None, dtype: str | None = None, thresholds=None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights=None, from_logits: bool = False):
        if str(curve).lower() not in _CURVES:
            raise ValueError(f'invalid AUC curve {curve!r}; expected one of ["ROC", "PR", "PRGAIN"]')
        if str(summation_method).lower() not in _SUMMATIONS:
            raise ValueError(f"invalid AUC summation_method {summation_method!r}; expected one of {list(_SUMMATIONS)}")
        super().__init__(name=name, dtype=dtype)
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_threshold_list(thresholds, 0.5))
            self.num_thresholds = len(inner) + 2
            self._evenly = _evenly_spaced([0.0] + inner + [1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(f"num_thresholds must be an integer > 1, got num_thresholds={num_thresholds}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        self._thresholds = [0.0 - EPSILON] + inner + [1.0 + EPSILON]
        self.curve = _CURVES[str(curve).lower()]
        self.summation_method = str(summation_method).lower()
        self.multi_label, self.num_labels = multi_label, num_labels
        self.label_weights = None if label_weights is None else np.asarray(label_weights, dtype=np.float64)
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build(num_labels)
        else:
            if num_labels:
                raise ValueError("num_labels is needed only when multi_label is True")
            self._build(None)

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def _build(self, num_labels: int | None) -> None:
        shape = (self.num_thresholds,) if num_labels is None else (self.num_thresholds, int(num_labels))
        self._num_labels = num_labels
        self.true_positives = self.add_variable(shape=shape, name="true_positives")
        self.false_positives = self.add_variable(shape=shape, name="false_positives")
        self.true_negatives = self.add_variable(shape=shape, name="true_negatives")
        self.false_negatives = self.add_variable(shape=shape, name="false_negatives")
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = as_float(y_pred)
        if not self._built:
            if rank(y_pred) != 2:
                raise ValueError("AUC(multi_label=True) needs y_pred of shape (samples, labels), got "
                                 f"{tuple(ops.shape(y_pred))}")
            self._build(ops.shape(y_pred)[1])
            self._state_backend(ops.current_backend())  # bind the new state where this update runs
        if self._from_logits:
            y_pred = ops.sigmoid(y_pred)
        label_weights = None if self.multi_label or self.label_weights is None else ops.convert(self.label_weights)
        update_confusion_variables({TP: self.true_positives, FP: self.false_positives, TN: self.true_negatives,
                                    FN: self.false_negatives}, y_true, y_pred, self._thresholds,
                                   evenly=self._evenly, sample_weight=sample_weight, multi_label=self.multi_label,
                                   label_weights=label_weights)

    def _by_label(self, terms):
        """Sum the per-threshold terms; with multi_label, average the labels' areas (label_weights)."""
        if not self.multi_label:
            return ops.sum(terms)
        by_label = ops.sum(terms, axis=0)
        if self.label_weights is None:
            return ops.mean(by_label)
        weights = ops.convert(self.label_weights)
        return divide_no_nan(ops.sum(ops.multiply(by_label, weights)), ops.sum(weights))

    def interpolate_pr_auc(self):
        """Keras's PR-AUC: precision interpolated between thresholds (Davis & Goadrich 2006)."""
        n = self.num_thresholds
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        tp_head, tp_tail = _take(tp, 0, n - 1), _take(tp, 1, n)
        p = ops.add(tp, fp)
        p_head, p_tail = _take(p, 0, n - 1), _take(p, 1, n)
        dtp = ops.subtract(tp_head, tp_tail)
        slope = divide_no_nan(dtp, ops.maximum(ops.subtract(p_head, p_tail), 0.0))
        intercept = ops.subtract(tp_tail, ops.multiply(slope, p_tail))
        both = ops.multiply(_as_mask(ops.greater(p_head, 0.0)), _as_mask(ops.greater(p_tail, 0.0)))
        ratio = ops.where(ops.greater(both, 0.5), divide_no_nan(p_head, ops.maximum(p_tail, 0.0)), 1.0)
        increment = divide_no_nan(ops.multiply(slope, ops.add(dtp, ops.multiply(intercept, ops.log(ratio)))),
                                  ops.maximum(ops.add(tp_tail, _take(fn, 1, n)), 0.0))
        return self._by_label(increment)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp, tn, fn = self.true_positives, self.false_positives, self.true_negatives, self.false_negatives
        recall = divide_no_nan(tp, ops.add(tp, fn))
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, ops.add(fp, tn)), recall
        elif self.curve == "PR":
            x, y = recall, divide_no_nan(tp, ops.add(tp, fp))
        else:  # PRGAIN
            scale = divide_no_nan(ops.add(tp, fn), ops.add(tn, fp))
            no_tp = ops.equal(tp, 0.0)
            recall_gain = ops.where(no_tp, 0.0, ops.subtract(1.0, ops.multiply(scale, divide_no_nan(fn, tp))))
            precision_gain = ops.where(no_tp, 1.0, ops.subtract(1.0, ops.multiply(scale, divide_no_nan(fp, tp))))
            x, y = ops.maximum(recall_gain, 0.0), precision_gain
        n = self.num_thresholds
        y_head, y_tail = _take(y, 0, n - 1), _take(y, 1, n)
        if self.summation_method == "interpolation":
            heights = ops.divide(ops.add(y_head, y_tail), 2.0)
        elif self.summation_method == "minoring":
            heights = ops.minimum(y_head, y_tail)
        else:
            heights = ops.maximum(y_head, y_tail)
        return self._by_label(ops.multiply(ops.subtract(_take(x, 0, n - 1), _take(x, 1, n)), heights))

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": self.multi_label,
                  "num_labels": self.num_labels,
                  "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
                  "from_logits": self._from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


class FBetaScore(Metric):
    """F-beta score per class: ``(1 + b^2) P R / (b^2 P + R)`` with precision P and recall R.

    Args:
        average: None (one score per class), "micro" (pooled counts), "macro" (mean of the
            scores) or "weighted" (mean weighted by each class's positive labels).
        beta: the weight of recall (a float > 0; default 1.0).
        threshold: predictions above it are positive; None (default): the highest of each row is.
    Inputs: (samples, classes) labels and predictions.
    """

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str = "fbeta_score", dtype: str | None = None):
        super().__init__(name=name, dtype=dtype)
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"average must be one of None, 'micro', 'macro', 'weighted', got average={average!r}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"beta must be a Python float > 0, got beta={beta!r}")
        if threshold is not None and (not isinstance(threshold, float) or not 0.0 < threshold <= 1.0):
            raise ValueError(f"threshold must be a Python float with 0 < threshold <= 1, got threshold={threshold!r}")
        self.average, self.beta, self.threshold = average, beta, threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, true_shape, pred_shape) -> None:
        if len(pred_shape) != 2 or len(true_shape) != 2 or pred_shape[-1] is None:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (samples, classes), got "
                             f"y_true {tuple(true_shape)} and y_pred {tuple(pred_shape)}")
        shape = () if self.average == "micro" else (pred_shape[-1],)
        self.true_positives = self.add_variable(shape=shape, name="true_positives")
        self.false_positives = self.add_variable(shape=shape, name="false_positives")
        self.false_negatives = self.add_variable(shape=shape, name="false_negatives")
        self.intermediate_weights = self.add_variable(shape=shape, name="intermediate_weights")
        self._built = True
        self._state_backend(ops.current_backend())

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = as_float(y_true), as_float(y_pred)
        if not self._built:
            self._build(ops.shape(y_true), ops.shape(y_pred))
        if self.threshold is None:
            best = ops.max(y_pred, axis=-1, keepdims=True)
            y_pred = ops.multiply(_as_mask(ops.greater_equal(y_pred, best)),
                                  _as_mask(ops.greater(ops.abs(y_pred), 1e-9)))
        else:
            y_pred = _as_mask(ops.greater(y_pred, self.threshold))
        weight = None if sample_weight is None else ops.expand_dims(as_float(sample_weight), 1)

        def weighted_sum(values):
            return ops.sum(values if weight is None else ops.multiply(values, weight), axis=self.axis)

        not_pred, not_true = ops.subtract(1.0, y_pred), ops.subtract(1.0, y_true)
        for variable, values in ((self.true_positives, ops.multiply(y_pred, y_true)),
                                 (self.false_positives, ops.multiply(y_pred, not_true)),
                                 (self.false_negatives, ops.multiply(not_pred, y_true)),
                                 (self.intermediate_weights, y_true)):
            variable.assign(ops.add(variable, weighted_sum(values)))

    def result(self):
        if not self._built:
            return ops.convert(np.float64(0.0))
        tp = self.true_positives
        precision = ops.divide(tp, ops.add(ops.add(tp, self.false_positives), EPSILON))
        recall = ops.divide(tp, ops.add(ops.add(tp, self.false_negatives), EPSILON))
        b2 = self.beta ** 2
        score = ops.multiply(ops.divide(ops.multiply(precision, recall),
                                        ops.add(ops.add(ops.multiply(b2, precision), recall), EPSILON)), 1.0 + b2)
        if self.average == "weighted":
            weights = self.intermediate_weights
            return ops.sum(ops.multiply(score, ops.divide(weights, ops.add(ops.sum(weights), EPSILON))))
        if self.average is not None:
            return ops.mean(score)
        return score

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "average": self.average, "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """F1 score: the F-beta score with beta 1, the harmonic mean of precision and recall."""

    def __init__(self, average: str | None = None, threshold: float | None = None, name: str = "f1_score",
                 dtype: str | None = None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]
        return config

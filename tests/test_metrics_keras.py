"""unidl.metrics against Keras 3: the same update_state sequence gives the same result().

Every metric class runs the same batches (uneven sizes, with and without
sample_weight, then reset_state and one more batch) in Keras 3 (TensorFlow,
float32 and float64) and in unidl on the numpy, torch and tensorflow backends in
the same dtype; result() after each update must agree within the forward
tolerance of that dtype (unidl.testing.tolerances). Skips without Keras.

Also: the state's backend binding, a Keras-style custom Metric, names for compile,
configs, updates inside a compiled TensorFlow step, and a compiled model whose
logged metrics equal Keras's on the same predictions.
"""
from __future__ import annotations

import copy
import importlib.util
import zlib

import numpy as np
import pytest

import unidl
from unidl import layers, metrics, ops
from unidl.testing.tolerances import FORWARD_F32, FORWARD_F64

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(name) is None, reason=f"{name} is not installed")) for name in ("torch", "tensorflow")]
TOLERANCE = {"float32": FORWARD_F32, "float64": FORWARD_F64}
BATCHES = (5, 8, 3)  # uneven: a batch-size-weighted mean differs from the mean of batch means


# ------------------------------------------------------------------ data
def probs(rng, *shape):
    # float32-representable, so both sides start from the very same numbers in either dtype
    return rng.uniform(0.0, 1.0, shape).astype(np.float32).astype(np.float64)


def normals(rng, *shape):
    return rng.normal(size=shape).astype(np.float32).astype(np.float64)


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32).astype(np.float64)


def binary(rng, n, width=1):
    return (rng.uniform(size=(n, width)) > 0.5).astype(np.float64), probs(rng, n, width)


def one_hot(rng, n, classes=5):
    return np.eye(classes)[rng.integers(0, classes, n)], softmax(normals(rng, n, classes))


def sparse(rng, n, classes=5):
    return rng.integers(0, classes, n).astype(np.int64), softmax(normals(rng, n, classes))


def regression(rng, n, width=3):
    return normals(rng, n, width), normals(rng, n, width)


def positive(rng, n, width=3):
    return probs(rng, n, width) * 3 + 0.1, probs(rng, n, width) * 3 + 0.1


def distribution(rng, n, classes=4):
    return softmax(normals(rng, n, classes)), softmax(normals(rng, n, classes))


def hinge_labels(rng, n, width=3):
    return (rng.uniform(size=(n, width)) > 0.5).astype(np.float64), normals(rng, n, width)


def signed_labels(rng, n, width=3):
    return np.where(rng.uniform(size=(n, width)) > 0.5, 1.0, -1.0), normals(rng, n, width)


def values(rng, n):
    return (normals(rng, n, 3),)


def ids_pair(rng, n, classes=3):
    return rng.integers(0, classes, n).astype(np.int64), rng.integers(0, classes, n).astype(np.int64)


def int_weights(rng, n):
    return rng.integers(0, 4, n)  # integer weights: IoU truncates weights to integers, as Keras


def sorted_ids(rng, n, classes=6):
    labels = rng.integers(0, classes, n).astype(np.int64)
    order = np.argsort(-normals(rng, n, classes), axis=-1).astype(np.int64)
    return labels, order


def logits_binary(rng, n, width=2):
    return (rng.uniform(size=(n, width)) > 0.5).astype(np.float64), normals(rng, n, width) * 3


# (id, unidl metric, Keras metric, data(rng, n) -> args of update_state, weights(rng, n))
def weights(rng, n):
    return rng.uniform(0.1, 2.0, n).astype(np.float32).astype(np.float64)


CASES = [
    ("Mean", lambda M: M.Mean(), lambda K: K.metrics.Mean(), values, weights),
    ("Sum", lambda M: M.Sum(), lambda K: K.metrics.Sum(), values, weights),
    ("Accuracy", lambda M: M.Accuracy(), lambda K: K.metrics.Accuracy(), ids_pair, weights),
    ("BinaryAccuracy", lambda M: M.BinaryAccuracy(), lambda K: K.metrics.BinaryAccuracy(),
     lambda r, n: binary(r, n, 3), weights),
    ("BinaryAccuracy-threshold", lambda M: M.BinaryAccuracy(threshold=0.7),
     lambda K: K.metrics.BinaryAccuracy(threshold=0.7), binary, weights),
    ("CategoricalAccuracy", lambda M: M.CategoricalAccuracy(), lambda K: K.metrics.CategoricalAccuracy(),
     one_hot, weights),
    ("SparseCategoricalAccuracy", lambda M: M.SparseCategoricalAccuracy(),
     lambda K: K.metrics.SparseCategoricalAccuracy(), sparse, weights),
    ("SparseCategoricalAccuracy-column", lambda M: M.SparseCategoricalAccuracy(),
     lambda K: K.metrics.SparseCategoricalAccuracy(), lambda r, n: (sparse(r, n)[0][:, None], sparse(r, n)[1]),
     weights),
    ("TopKCategoricalAccuracy", lambda M: M.TopKCategoricalAccuracy(k=2),
     lambda K: K.metrics.TopKCategoricalAccuracy(k=2), one_hot, weights),
    ("SparseTopKCategoricalAccuracy", lambda M: M.SparseTopKCategoricalAccuracy(k=2),
     lambda K: K.metrics.SparseTopKCategoricalAccuracy(k=2), sparse, weights),
    ("SparseTopKCategoricalAccuracy-sorted", lambda M: M.SparseTopKCategoricalAccuracy(k=3, from_sorted_ids=True),
     lambda K: K.metrics.SparseTopKCategoricalAccuracy(k=3, from_sorted_ids=True), sorted_ids, weights),
    ("MeanSquaredError", lambda M: M.MeanSquaredError(), lambda K: K.metrics.MeanSquaredError(), regression,
     weights),
    ("MeanAbsoluteError", lambda M: M.MeanAbsoluteError(), lambda K: K.metrics.MeanAbsoluteError(), regression,
     weights),
    ("RootMeanSquaredError", lambda M: M.RootMeanSquaredError(), lambda K: K.metrics.RootMeanSquaredError(),
     regression, weights),
    ("MeanAbsolutePercentageError", lambda M: M.MeanAbsolutePercentageError(),
     lambda K: K.metrics.MeanAbsolutePercentageError(), regression, weights),
    ("MeanSquaredLogarithmicError", lambda M: M.MeanSquaredLogarithmicError(),
     lambda K: K.metrics.MeanSquaredLogarithmicError(), positive, weights),
    ("CosineSimilarity", lambda M: M.CosineSimilarity(), lambda K: K.metrics.CosineSimilarity(), regression,
     weights),
    ("R2Score", lambda M: M.R2Score(), lambda K: K.metrics.R2Score(), regression, weights),
    ("R2Score-variance-weighted", lambda M: M.R2Score(class_aggregation="variance_weighted_average"),
     lambda K: K.metrics.R2Score(class_aggregation="variance_weighted_average"), regression, weights),
    ("R2Score-per-output-adjusted", lambda M: M.R2Score(class_aggregation=None, num_regressors=2),
     lambda K: K.metrics.R2Score(class_aggregation=None, num_regressors=2), regression, weights),
    ("LogCoshError", lambda M: M.LogCoshError(), lambda K: K.metrics.LogCoshError(), regression, weights),
    ("KLDivergence", lambda M: M.KLDivergence(), lambda K: K.metrics.KLDivergence(), distribution, weights),
    ("Poisson", lambda M: M.Poisson(), lambda K: K.metrics.Poisson(), positive, weights),
    ("BinaryCrossentropy", lambda M: M.BinaryCrossentropy(), lambda K: K.metrics.BinaryCrossentropy(),
     lambda r, n: binary(r, n, 3), weights),
    ("BinaryCrossentropy-logits-smoothing", lambda M: M.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     lambda K: K.metrics.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), logits_binary, weights),
    ("CategoricalCrossentropy", lambda M: M.CategoricalCrossentropy(),
     lambda K: K.metrics.CategoricalCrossentropy(), one_hot, weights),
    ("CategoricalCrossentropy-logits", lambda M: M.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
     lambda K: K.metrics.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2),
     lambda r, n: (one_hot(r, n)[0], normals(r, n, 5)), weights),
    ("SparseCategoricalCrossentropy", lambda M: M.SparseCategoricalCrossentropy(),
     lambda K: K.metrics.SparseCategoricalCrossentropy(), sparse, weights),
    ("SparseCategoricalCrossentropy-ignore", lambda M: M.SparseCategoricalCrossentropy(ignore_class=1),
     lambda K: K.metrics.SparseCategoricalCrossentropy(ignore_class=1), sparse, weights),
    ("Hinge", lambda M: M.Hinge(), lambda K: K.metrics.Hinge(), hinge_labels, weights),
    ("Hinge-signed", lambda M: M.Hinge(), lambda K: K.metrics.Hinge(), signed_labels, weights),
    ("SquaredHinge", lambda M: M.SquaredHinge(), lambda K: K.metrics.SquaredHinge(), hinge_labels, weights),
    ("CategoricalHinge", lambda M: M.CategoricalHinge(), lambda K: K.metrics.CategoricalHinge(), one_hot, weights),
    ("TruePositives", lambda M: M.TruePositives(), lambda K: K.metrics.TruePositives(),
     lambda r, n: binary(r, n, 2), weights),
    ("FalsePositives", lambda M: M.FalsePositives(thresholds=[0.2, 0.5, 0.9]),
     lambda K: K.metrics.FalsePositives(thresholds=[0.2, 0.5, 0.9]), binary, weights),
    ("TrueNegatives", lambda M: M.TrueNegatives(thresholds=0.3), lambda K: K.metrics.TrueNegatives(thresholds=0.3),
     binary, weights),
    ("FalseNegatives", lambda M: M.FalseNegatives(thresholds=[0.0, 0.25, 0.5, 0.75, 1.0]),
     lambda K: K.metrics.FalseNegatives(thresholds=[0.0, 0.25, 0.5, 0.75, 1.0]), binary, weights),
    ("Precision", lambda M: M.Precision(), lambda K: K.metrics.Precision(), lambda r, n: binary(r, n, 3), weights),
    ("Precision-thresholds", lambda M: M.Precision(thresholds=[0.3, 0.6]),
     lambda K: K.metrics.Precision(thresholds=[0.3, 0.6]), binary, weights),
    ("Precision-top_k", lambda M: M.Precision(top_k=2), lambda K: K.metrics.Precision(top_k=2),
     lambda r, n: binary(r, n, 5), weights),
    ("Precision-class_id", lambda M: M.Precision(class_id=1), lambda K: K.metrics.Precision(class_id=1),
     lambda r, n: binary(r, n, 3), weights),
    ("Recall", lambda M: M.Recall(), lambda K: K.metrics.Recall(), lambda r, n: binary(r, n, 3), weights),
    ("Recall-top_k-class_id", lambda M: M.Recall(top_k=2, class_id=2),
     lambda K: K.metrics.Recall(top_k=2, class_id=2), lambda r, n: binary(r, n, 4), weights),
    ("AUC", lambda M: M.AUC(), lambda K: K.metrics.AUC(), binary, weights),
    ("AUC-pooled", lambda M: M.AUC(num_thresholds=50), lambda K: K.metrics.AUC(num_thresholds=50),
     lambda r, n: binary(r, n, 3), weights),
    ("AUC-PR", lambda M: M.AUC(curve="PR"), lambda K: K.metrics.AUC(curve="PR"), binary, weights),
    ("AUC-PR-majoring", lambda M: M.AUC(curve="PR", summation_method="majoring"),
     lambda K: K.metrics.AUC(curve="PR", summation_method="majoring"), binary, weights),
    ("AUC-ROC-minoring", lambda M: M.AUC(summation_method="minoring", num_thresholds=20),
     lambda K: K.metrics.AUC(summation_method="minoring", num_thresholds=20), binary, weights),
    ("AUC-PRGAIN", lambda M: M.AUC(curve="PRGAIN", num_thresholds=30),
     lambda K: K.metrics.AUC(curve="PRGAIN", num_thresholds=30), binary, weights),
    ("AUC-thresholds", lambda M: M.AUC(thresholds=[0.1, 0.35, 0.4, 0.8]),
     lambda K: K.metrics.AUC(thresholds=[0.1, 0.35, 0.4, 0.8]), binary, weights),
    ("AUC-even-thresholds", lambda M: M.AUC(thresholds=[0.25, 0.5, 0.75]),
     lambda K: K.metrics.AUC(thresholds=[0.25, 0.5, 0.75]), binary, weights),
    ("AUC-logits", lambda M: M.AUC(from_logits=True), lambda K: K.metrics.AUC(from_logits=True), logits_binary,
     weights),
    ("AUC-multi_label", lambda M: M.AUC(multi_label=True), lambda K: K.metrics.AUC(multi_label=True),
     lambda r, n: binary(r, n, 3), weights),
    ("AUC-multi_label-PR-weights", lambda M: M.AUC(multi_label=True, num_labels=3, curve="PR",
                                                   label_weights=[0.5, 1.0, 2.0]),
     lambda K: K.metrics.AUC(multi_label=True, num_labels=3, curve="PR", label_weights=[0.5, 1.0, 2.0]),
     lambda r, n: binary(r, n, 3), weights),
    ("AUC-label_weights", lambda M: M.AUC(label_weights=[0.2, 1.5]),
     lambda K: K.metrics.AUC(label_weights=[0.2, 1.5]), lambda r, n: binary(r, n, 2), weights),
    ("SensitivityAtSpecificity", lambda M: M.SensitivityAtSpecificity(0.625),
     lambda K: K.metrics.SensitivityAtSpecificity(0.625), binary, weights),
    ("SpecificityAtSensitivity", lambda M: M.SpecificityAtSensitivity(0.375, num_thresholds=40),
     lambda K: K.metrics.SpecificityAtSensitivity(0.375, num_thresholds=40), binary, weights),
    ("PrecisionAtRecall", lambda M: M.PrecisionAtRecall(0.5), lambda K: K.metrics.PrecisionAtRecall(0.5),
     binary, weights),
    ("RecallAtPrecision", lambda M: M.RecallAtPrecision(0.5, class_id=1),
     lambda K: K.metrics.RecallAtPrecision(0.5, class_id=1), lambda r, n: binary(r, n, 2), weights),
    ("F1Score", lambda M: M.F1Score(), lambda K: K.metrics.F1Score(), one_hot, weights),
    ("F1Score-macro-threshold", lambda M: M.F1Score(average="macro", threshold=0.4),
     lambda K: K.metrics.F1Score(average="macro", threshold=0.4), lambda r, n: binary(r, n, 3), weights),
    ("FBetaScore-micro", lambda M: M.FBetaScore(average="micro", beta=2.0),
     lambda K: K.metrics.FBetaScore(average="micro", beta=2.0), one_hot, weights),
    ("FBetaScore-weighted", lambda M: M.FBetaScore(average="weighted", beta=0.5, threshold=0.3),
     lambda K: K.metrics.FBetaScore(average="weighted", beta=0.5, threshold=0.3),
     lambda r, n: binary(r, n, 4), weights),
    ("MeanIoU", lambda M: M.MeanIoU(num_classes=3), lambda K: K.metrics.MeanIoU(num_classes=3), ids_pair,
     int_weights),
    ("MeanIoU-ignore-dense", lambda M: M.MeanIoU(num_classes=4, ignore_class=0, sparse_y_pred=False),
     lambda K: K.metrics.MeanIoU(num_classes=4, ignore_class=0, sparse_y_pred=False),
     lambda r, n: (r.integers(0, 4, (n, 2, 2)), softmax(normals(r, n, 2, 2, 4))),
     lambda r, n: r.integers(0, 3, (n, 2, 2))),
    ("IoU", lambda M: M.IoU(num_classes=3, target_class_ids=[0, 2]),
     lambda K: K.metrics.IoU(num_classes=3, target_class_ids=[0, 2]), ids_pair, int_weights),
    ("BinaryIoU", lambda M: M.BinaryIoU(threshold=0.4), lambda K: K.metrics.BinaryIoU(threshold=0.4),
     lambda r, n: ((r.uniform(size=n) > 0.5).astype(np.int64), probs(r, n)), int_weights),
    ("OneHotMeanIoU", lambda M: M.OneHotMeanIoU(num_classes=4), lambda K: K.metrics.OneHotMeanIoU(num_classes=4),
     lambda r, n: one_hot(r, n, 4), int_weights),
    ("OneHotIoU", lambda M: M.OneHotIoU(num_classes=4, target_class_ids=[1, 3]),
     lambda K: K.metrics.OneHotIoU(num_classes=4, target_class_ids=[1, 3]), lambda r, n: one_hot(r, n, 4),
     int_weights),
]
CASE_IDS = [case[0] for case in CASES]
# TensorFlow's in_top_k takes float32 predictions only: unidl in float64 is checked against Keras in
# float32 here, with the float32 tolerance (the values are counts of hits, exact in both).
KERAS_FLOAT32_ONLY = {"TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy"}
# Keras in float64 still rounds a few things to float32, so unidl's float64 values (rounded in float64
# only) differ from its by float32 rounding there; these cases use the float32 tolerance in float64:
# log_cosh subtracts log(2) computed as a float32 constant; the IoU metrics cast their result to float32.
KERAS_FLOAT32_ROUNDING = {"LogCoshError", "MeanIoU", "MeanIoU-ignore-dense", "IoU", "BinaryIoU", "OneHotMeanIoU",
                          "OneHotIoU"}
# (Its "X at Y" metrics also compare rates with the value rounded to float32, so the tests use values
# exact in float32: 0.5, 0.625, 0.375.)


def schedule(case, weighted: bool):
    """The update_state calls of a run: three uneven batches, a reset, then one more batch."""
    _, _, _, data, weight = case
    rng = np.random.default_rng(zlib.crc32(case[0].encode()))
    calls = []
    for n in (*BATCHES, None, 6):
        if n is None:
            calls.append(None)  # reset_state
            continue
        args = data(rng, n)
        calls.append((args, weight(rng, n) if weighted else None))
    return calls


@pytest.fixture(scope="module")
def keras_results(keras):
    """Keras's result() after each call of a schedule, computed once per (case, weighted, dtype)."""
    cache = {}

    def results(case, weighted: bool, dtype: str):
        key = (case[0], weighted, dtype)
        if key not in cache:
            floatx = keras.config.floatx()
            keras.config.set_floatx(dtype)
            try:
                metric = case[2](keras)
                out = []
                for call in schedule(case, weighted):
                    if call is None:
                        metric.reset_state()
                        continue
                    args, w = call
                    args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in args]
                    if w is not None and w.dtype.kind == "f":
                        w = w.astype(dtype)
                    metric.update_state(*args, sample_weight=w)
                    out.append(np.asarray(keras.ops.convert_to_numpy(metric.result()), dtype=np.float64))
            finally:
                keras.config.set_floatx(floatx)
            cache[key] = out
        return cache[key]
    return results


def unidl_results(case, weighted: bool, backend: str, dtype: str):
    metric = case[1](metrics)
    out = []
    with unidl.use_backend(backend, dtype=dtype):
        for call in schedule(case, weighted):
            if call is None:
                metric.reset_state()
                continue
            args, w = call
            tensors = [ops.convert(a) for a in args]  # as the training loop passes them
            metric.update_state(*tensors, sample_weight=None if w is None else ops.convert(w))
            out.append(np.asarray(ops.to_numpy(metric.result()), dtype=np.float64))
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_metric_matches_keras(case, weighted, backend, dtype, keras_results):
    keras_dtype = "float32" if case[0] in KERAS_FLOAT32_ONLY else dtype
    want = keras_results(case, weighted, keras_dtype)
    got = unidl_results(case, weighted, backend, dtype)
    tol = TOLERANCE["float32" if case[0] in KERAS_FLOAT32_ROUNDING else keras_dtype]
    for step, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, f"{case[0]} step {step}: shape {g.shape}, Keras {w.shape}"
        assert tol.close(g, w).all(), (f"{case[0]} on {backend}/{dtype}, call {step}: {g} vs Keras {w} "
                                       f"(max abs error {np.max(np.abs(g - w)):.3g}, tolerance {tol})")
    assert len(got) == len(want) == len(BATCHES) + 1


# ---------------------------------------------------------------- functions
@pytest.mark.parametrize("name, data, kwargs", [
    ("mean_squared_error", regression, {}), ("mean_absolute_error", regression, {}),
    ("mean_absolute_percentage_error", regression, {}), ("mean_squared_logarithmic_error", positive, {}),
    ("categorical_accuracy", one_hot, {}), ("sparse_categorical_accuracy", sparse, {}),
    ("top_k_categorical_accuracy", one_hot, {"k": 3}), ("sparse_top_k_categorical_accuracy", sparse, {"k": 2}),
    ("binary_crossentropy", lambda r, n: binary(r, n, 3), {}), ("categorical_crossentropy", one_hot, {}),
    ("sparse_categorical_crossentropy", sparse, {}), ("kl_divergence", distribution, {}), ("poisson", positive, {}),
    ("hinge", hinge_labels, {}), ("squared_hinge", hinge_labels, {}), ("categorical_hinge", one_hot, {}),
    ("log_cosh", regression, {}),
])
def test_functions_match_keras_per_sample(name, data, kwargs, keras):
    rng = np.random.default_rng(3)
    y, p = data(rng, 7)
    p = p.astype(np.float32)  # float32: TensorFlow's in_top_k takes nothing else
    keras_fn = getattr(keras.metrics, name, None) or getattr(keras.losses, name)
    want = keras.ops.convert_to_numpy(keras_fn(y, p, **kwargs))
    got = getattr(metrics, name)(y, p, **kwargs)  # outside any backend: NumPy in, NumPy out
    assert isinstance(got, np.ndarray) and got.shape == (7,)
    np.testing.assert_allclose(got, want, rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_accuracy_functions_give_one_value_per_sample_where_keras_gives_elementwise_matches(keras):
    rng = np.random.default_rng(4)
    y, p = binary(rng, 6, 3)
    elementwise = keras.ops.convert_to_numpy(keras.metrics.binary_accuracy(y, p))
    assert elementwise.shape == (6, 3)
    np.testing.assert_allclose(metrics.binary_accuracy(y, p), elementwise.mean(-1), rtol=FORWARD_F32.rtol)


# -------------------------------------------------------------- top-k ties
def test_top_k_ties_count_every_class_tied_at_the_kth_place(keras):
    # row 0: the label (class 2) ties with class 1 for second place: in the top 2
    # row 1: the label (class 0) ties with classes 1 and 2 for first place: in the top 1
    # row 2: the label (class 3) has two classes strictly above it: not in the top 2
    y_pred = np.array([[0.5, 0.2, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    ids = np.array([2, 0, 3])
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(ids, y_pred, k=2), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(ids, y_pred, k=1), [0.0, 1.0, 0.0])
    for k in (1, 2):
        want = keras.ops.convert_to_numpy(keras.metrics.sparse_top_k_categorical_accuracy(ids, y_pred, k=k))
        np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(ids, y_pred, k=k), want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_precision_top_k_breaks_ties_by_the_lower_class_index(backend, keras):
    # row 0: classes 1, 2 and 3 tie for the top 2 places: 1 and 2 are kept (tf.math.top_k's rule): one hit,
    # one miss; row 1: class 0, then class 2 of the tied 2 and 3: two hits. Precision 3 / 4.
    y_true = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    y_pred = np.array([[0.1, 0.6, 0.6, 0.6], [0.9, 0.2, 0.3, 0.3]], dtype=np.float32)
    with unidl.use_backend(backend):
        m = metrics.Precision(top_k=2)
        m.update_state(y_true, y_pred)
        got = float(ops.to_numpy(m.result()))
    keras_metric = keras.metrics.Precision(top_k=2)
    keras_metric.update_state(y_true, y_pred)
    assert got == pytest.approx(float(keras_metric.result())) == pytest.approx(3 / 4)


# ------------------------------------------------------------ state and API
def test_standalone_use_runs_on_numpy_and_returns_numpy():
    m = metrics.Mean()
    m.update_state([1, 3, 5, 7])
    assert isinstance(m.result(), np.floating) and m.result() == 4.0
    m.reset_state()
    assert m.result() == 0.0  # Keras: 0 before any sample
    m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
    assert m.result() == 2.0
    assert m(np.array([10.0]), sample_weight=[2.0]) == pytest.approx((1 + 3 + 20) / 4)  # __call__: update, result
    assert all(v.backend is not None and v.backend.name == "numpy" and v.backend.dtype == "float32"
               for v in m.variables)


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_state_moves_to_the_backend_in_context_with_its_values(backend):
    m = metrics.AUC(num_thresholds=11)
    y, p = binary(np.random.default_rng(0), 10)
    m.update_state(y[:5], p[:5])  # no context: NumPy reference backend
    with unidl.use_backend(backend):
        m.update_state(ops.convert(y[5:]), ops.convert(p[5:]))
        assert {v.backend.name for v in m.variables} == {backend}
        on_backend = float(ops.to_numpy(m.result()))
    assert isinstance(m.result(), np.floating)  # outside the context: NumPy again, from the same state
    reference = metrics.AUC(num_thresholds=11)
    reference.update_state(y, p)
    assert on_backend == pytest.approx(float(m.result())) == pytest.approx(float(reference.result()))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_state_stays_in_full_precision_under_a_mixed_precision_twin(backend):
    pytest.importorskip(backend)
    full = unidl.get_backend(backend)
    twin = full.compute_twin("bfloat16")
    m = metrics.MeanSquaredError()
    y, p = regression(np.random.default_rng(1), 8)
    with unidl.use_backend(twin):
        m.update_state(twin.convert(y), twin.convert(p))
    assert all(v.backend is full for v in m.variables)
    assert "float32" in str(m.total.value.dtype)
    assert float(m.result()) == pytest.approx(np.mean((p - y) ** 2), rel=2e-2)  # bfloat16 inputs


class BinaryTruePositives(metrics.Metric):
    """The Keras guide's example of a custom metric, with unidl.ops."""

    def __init__(self, name="binary_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        # NumPy arguments arrive as tensors of the backend in use
        hits = ops.multiply(ops.cast(ops.greater(y_true, 0.5), "float32"),
                            ops.cast(ops.greater(y_pred, 0.5), "float32"))
        if sample_weight is not None:
            hits = ops.multiply(hits, sample_weight)
        self.true_positives.assign(ops.add(self.true_positives, ops.cast(ops.sum(hits), "float32")))

    def result(self):
        return ops.add(self.true_positives, 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_keras_style_custom_metric_runs_on_every_backend(backend):
    m = BinaryTruePositives()
    with unidl.use_backend(backend):
        m.update_state(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.9, 0.2, 0.8, 0.7]))
        m.update_state(np.array([1.0, 0.0]), np.array([0.6, 0.6]), sample_weight=np.array([3.0, 1.0]))
        assert float(ops.to_numpy(m.result())) == 5.0
        m.reset_state()
        assert float(ops.to_numpy(m.result())) == 0.0
    assert [v.name for v in m.variables] == ["binary_true_positives/true_positives"]


def test_a_metric_that_forgets_super_init_says_so():
    class Broken(metrics.Metric):
        def __init__(self):
            self.total = self.add_variable(shape=(), name="total")

    with pytest.raises(RuntimeError, match=r"must call super\(\).__init__"):
        Broken()


def test_sub_metrics_state_is_part_of_the_metric():
    class Both(metrics.Metric):
        def __init__(self):
            super().__init__(name="both")
            self.mean, self.total = metrics.Mean(), metrics.Sum()

        def update_state(self, values):
            self.mean.update_state(values)
            self.total.update_state(values)

        def result(self):
            return {"mean": self.mean.result(), "sum": self.total.result()}

    m = Both()
    m.update_state([1.0, 2.0, 6.0])
    assert len(m.variables) == 3
    assert metrics.logs([m]) == {"mean": 3.0, "sum": 9.0}


def test_copies_have_their_own_state():
    m = metrics.Mean()
    m.update_state([2.0])
    twin = copy.deepcopy(m)
    twin.update_state([4.0])
    assert m.result() == 2.0 and twin.result() == 3.0


# ---------------------------------------------------------------- get, names
@pytest.mark.parametrize("identifier, cls, name", [
    ("auc", metrics.AUC, "auc"), ("AUC", metrics.AUC, "AUC"), ("precision", metrics.Precision, "precision"),
    ("Recall", metrics.Recall, "Recall"), ("mae", metrics.MeanAbsoluteError, "mae"),
    ("mse", metrics.MeanSquaredError, "mse"), ("MeanSquaredError", metrics.MeanSquaredError, "MeanSquaredError"),
    ("binary_accuracy", metrics.BinaryAccuracy, "binary_accuracy"),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy, "top_k_categorical_accuracy"),
    ("root_mean_squared_error", metrics.RootMeanSquaredError, "root_mean_squared_error"),
    ("true_positives", metrics.TruePositives, "true_positives"), ("kl_divergence", metrics.KLDivergence,
                                                                   "kl_divergence"),
    ("f1_score", metrics.F1Score, "f1_score"), ("logcosh", metrics.LogCoshError, "logcosh"),
])
def test_names_compile_accepts(identifier, cls, name):
    m = metrics.get(identifier)
    assert type(m) is cls and m.name == name


def test_get_classes_functions_and_errors():
    assert type(metrics.get(metrics.AUC)) is metrics.AUC
    wrapped = metrics.get(metrics.mean_squared_error)
    assert isinstance(wrapped, metrics.MeanMetricWrapper) and wrapped.name == "mean_squared_error"
    assert metrics.get({"class_name": "Precision", "config": {"thresholds": 0.3}}).thresholds == [0.3]
    with pytest.raises(TypeError, match=r"MeanIoU\(\.\.\.\)"):
        metrics.get("mean_iou")  # needs num_classes
    with pytest.raises(ValueError, match=r"did you mean 'precision'\?"):
        metrics.get("precison")


@pytest.mark.parametrize("make", [case[1] for case in CASES], ids=CASE_IDS)
def test_config_round_trip(make):
    m = make(metrics)
    twin = type(m).from_config(m.get_config())
    assert type(twin) is type(m) and twin.get_config() == m.get_config()
    assert metrics.deserialize(metrics.serialize(m)).get_config() == m.get_config()


def test_elementwise_metrics_refuse_mismatched_labels_but_match_a_trailing_axis_of_one():
    m = metrics.MeanAbsoluteError(name="mae")
    m.update_state(np.zeros(4), np.ones((4, 1)))  # Keras's rank matching: (4,) vs (4, 1) is fine
    assert m.result() == 1.0
    with pytest.raises(metrics.MetricInputError, match=r"labels have shape \(4,\) and the predictions \(4, 3\)"):
        m.update_state(np.zeros(4), np.ones((4, 3)))


# ------------------------------------------------------- compiled TF steps
def test_updates_run_inside_a_compiled_tensorflow_step():
    pytest.importorskip("tensorflow")
    backend = unidl.get_backend("tensorflow")
    rng = np.random.default_rng(5)
    batches = [binary(rng, n, 2) for n in (8, 8, 3)]
    eager = [metrics.AUC(), metrics.Mean(), metrics.BinaryAccuracy(), metrics.Precision(top_k=1)]
    traced = [copy.deepcopy(m) for m in eager]

    def step(y, p):
        for m in traced:
            if type(m) is metrics.Mean:
                m.update_state(p)
            else:
                m.update_state(y, p)
        return [m.result() for m in traced]

    with unidl.use_backend(backend):
        for m in traced:
            m.bind(backend)  # state made before tracing: a traced function must not create variables
        compiled = backend.compile_step(step)  # batch axis left unknown: one graph for every batch size
        for y, p in batches:
            got = compiled(backend.convert(y), backend.convert(p))
            for m in eager:
                m.update_state(*((p,) if type(m) is metrics.Mean else (y, p)))
        want = [float(ops.to_numpy(m.result())) for m in eager]
    np.testing.assert_allclose([float(backend.to_numpy(g)) for g in got], want, rtol=FORWARD_F32.rtol)


# ------------------------------------------------------------ compiled model
@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_model_logs_keras_metrics_on_its_predictions(backend, keras):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x[:, :1] + rng.normal(size=(50, 1)) > 0).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 50).astype(np.float32)
    model = unidl.Sequential([layers.Dense(4, activation="tanh", input_shape=(4,)),
                              layers.Dense(1, activation="sigmoid")], seed=1)
    model.compile(optimizer=unidl.optimizers.SGD(0.0), loss="binary_crossentropy",  # weights stay put
                  metrics=[metrics.AUC(), "accuracy", metrics.Precision()], backend=backend)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, sample_weight=w)
    evaluated = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(evaluated) == {"loss", "auc", "accuracy", "precision"}
    pred = model.predict(x, verbose=0).astype(np.float64)

    def keras_value(metric, weighted):
        for start in range(0, 50, 16):
            part = slice(start, start + 16)
            metric.update_state(y[part], pred[part], sample_weight=w[part] if weighted else None)
        return float(metric.result())

    for name, make in (("auc", lambda: keras.metrics.AUC()), ("accuracy", lambda: keras.metrics.BinaryAccuracy()),
                       ("precision", lambda: keras.metrics.Precision())):
        # As in Keras (checked with keras 3 on torch): compile's metrics ignore sample_weight.
        assert history.history[name][-1] == pytest.approx(keras_value(make(), False), rel=FORWARD_F32.rtol,
                                                          abs=FORWARD_F32.atol), name
        assert evaluated[name] == pytest.approx(keras_value(make(), False), rel=FORWARD_F32.rtol,
                                                abs=FORWARD_F32.atol), name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_weighted_metrics_use_sample_weight_and_metrics_do_not(backend):
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x[:, :1] + rng.normal(size=(50, 1)) > 0).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 50).astype(np.float32)
    model = unidl.Sequential([layers.Dense(4, activation="tanh", input_shape=(4,)),
                              layers.Dense(1, activation="sigmoid")], seed=1)
    model.compile(optimizer=unidl.optimizers.SGD(0.0), loss="binary_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy"], backend=backend)
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, sample_weight=w)
    pred = model.predict(x, verbose=0)
    plain, weighted = keras.metrics.BinaryAccuracy(), keras.metrics.BinaryAccuracy()
    plain.update_state(y, pred)
    weighted.update_state(y, pred, sample_weight=w)
    assert history.history["accuracy"][-1] == pytest.approx(float(plain.result()), rel=FORWARD_F32.rtol)
    assert history.history["weighted_accuracy"][-1] == pytest.approx(float(weighted.result()), rel=FORWARD_F32.rtol)


def test_one_metric_instance_serves_each_output_of_a_multi_output_model_separately():
    inputs = layers.Input((3,))
    a = layers.Dense(1, name="a")(inputs)
    b = layers.Dense(1, name="b")(inputs)
    model = unidl.Model(inputs, [a, b], seed=0)
    shared = metrics.MeanAbsoluteError(name="mae")
    model.compile(optimizer="sgd", loss="mse", metrics=[shared], backend="numpy")
    rng = np.random.default_rng(7)
    x, ya, yb = rng.normal(size=(10, 3)), rng.normal(size=(10, 1)), rng.normal(size=(10, 1)) + 5
    result = model.evaluate(x, [ya, yb], verbose=0, return_dict=True)
    pa, pb = model.predict(x, verbose=0)
    assert result["a_mae"] == pytest.approx(np.mean(np.abs(pa - ya)), rel=1e-6)
    assert result["b_mae"] == pytest.approx(np.mean(np.abs(pb - yb)), rel=1e-6)


# --------------------------------------------------------------------- plugins
class MetricPlugin:
    @unidl.hookimpl
    def unidl_register_metrics(self, register):
        register("binary_true_positives", BinaryTruePositives)


def test_plugins_register_metric_classes():
    from unidl.registry import REGISTRY
    REGISTRY.register_plugin(MetricPlugin(), name="test-metric-classes")
    try:
        counted = metrics.get("binary_true_positives")
        assert type(counted) is BinaryTruePositives and counted.name == "binary_true_positives"
        model = unidl.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(3,))], seed=0)
        model.compile(loss="binary_crossentropy", metrics=["binary_true_positives"], backend="numpy")
        x = np.random.default_rng(8).normal(size=(12, 3))
        y = (x[:, :1] > 0).astype(float)
        _, tp = model.evaluate(x, y, verbose=0)
        assert tp == float(np.sum((model.predict(x, verbose=0) > 0.5) & (y > 0.5)))
    finally:
        REGISTRY.unregister_plugin("test-metric-classes")

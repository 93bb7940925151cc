"""Metrics: per-sample values against NumPy, "accuracy" resolved from the loss (as Keras
does), and running means weighted by batch size (and sample weight) in Metric, evaluate()
and fit().
"""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import layers, losses, metrics, ops, optimizers

# ---------------------------------------------------------------- tolerances
FWD_RTOL = 1e-10  # float64 metric values vs NumPy (CONVENTIONS.md)
FWD_ATOL = 1e-12

B64 = unidl.get_backend("numpy", dtype="float64")
_rng = np.random.default_rng(99)


def per_sample(fn, y_true, y_pred):
    with unidl.use_backend(B64):
        return ops.to_numpy(fn(ops.convert(y_true), ops.convert(y_pred)))


# ------------------------------------------------------ per-sample values
def test_binary_accuracy():
    y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    p = np.array([[0.9, 0.2, 0.4], [0.5, 0.1, 0.7], [0.51, 0.8, 0.3]])  # 0.5 is not > 0.5
    want = np.mean((p > 0.5).astype(float) == y, axis=-1)
    np.testing.assert_allclose(want, [2 / 3, 1.0, 1.0])
    np.testing.assert_allclose(per_sample(metrics.binary_accuracy, y, p), want, rtol=FWD_RTOL)
    got = per_sample(lambda a, b: metrics.binary_accuracy(a, b, threshold=0.75), y, p)
    np.testing.assert_allclose(got, np.mean((p > 0.75).astype(float) == y, axis=-1), rtol=FWD_RTOL)


def test_categorical_accuracy():
    p = _rng.uniform(size=(12, 5))
    ids = _rng.integers(0, 5, 12)
    ids[:4] = p[:4].argmax(-1)  # some hits for sure
    y = np.eye(5)[ids]
    want = (p.argmax(-1) == ids).astype(float)
    assert 0 < want.sum() < 12
    np.testing.assert_allclose(per_sample(metrics.categorical_accuracy, y, p), want, rtol=FWD_RTOL)


@pytest.mark.parametrize("column", [False, True], ids=["ids", "id_column"])
def test_sparse_categorical_accuracy(column):
    p = _rng.uniform(size=(12, 5))
    ids = _rng.integers(0, 5, 12)
    ids[:4] = p[:4].argmax(-1)
    want = (p.argmax(-1) == ids).astype(float)
    labels = ids[:, None] if column else ids
    np.testing.assert_allclose(per_sample(metrics.sparse_categorical_accuracy, labels, p), want, rtol=FWD_RTOL)


@pytest.mark.parametrize("name,formula", [("mae", lambda y, p: np.mean(np.abs(p - y), axis=-1)),
                                          ("mse", lambda y, p: np.mean((p - y) ** 2, axis=-1)),
                                          ("mean_absolute_error", lambda y, p: np.mean(np.abs(p - y), axis=-1)),
                                          ("mean_squared_error", lambda y, p: np.mean((p - y) ** 2, axis=-1))])
def test_regression_metrics(name, formula):
    y, p = _rng.normal(size=(6, 3)), _rng.normal(size=(6, 3))
    m = metrics.get(name)
    assert m.name == name
    np.testing.assert_allclose(per_sample(m.fn, y, p), formula(y, p), rtol=FWD_RTOL)


# ------------------------------------------------- "accuracy" resolution
@pytest.mark.parametrize("loss,output_shape,expected", [
    ("binary_crossentropy", (None, 1), metrics.binary_accuracy),
    ("binary_crossentropy", (None, 4), metrics.binary_accuracy),   # multi-label: still by the loss
    ("sparse_categorical_crossentropy", (None, 4), metrics.sparse_categorical_accuracy),
    ("categorical_crossentropy", (None, 4), metrics.categorical_accuracy),
    ("mse", (None, 1), metrics.binary_accuracy),                    # other losses: by output width
    ("mse", (None, 4), metrics.categorical_accuracy),
])
@pytest.mark.parametrize("identifier", ["accuracy", "acc"])
def test_accuracy_resolves_by_loss(identifier, loss, output_shape, expected):
    m = metrics.get(identifier, loss=losses.get(loss), output_shape=output_shape)
    assert m.fn is expected
    assert m.name == identifier


def test_lookup():
    m = metrics.Metric(metrics.mean_absolute_error, "custom")
    assert metrics.get(m) is m
    assert metrics.get(metrics.binary_accuracy).name == "binary_accuracy"
    with pytest.raises(ValueError, match=r"did you mean 'mae'\?"):
        metrics.get("maee")
    with pytest.raises(TypeError):
        metrics.get(3)


# ----------------------------------------------------- running averages
def uneven_batches():
    """10 samples in batches of 4, 4, 2, built so the last (small) batch has a very different mean."""
    y = np.zeros((10, 1))
    p = np.concatenate([np.full((8, 1), 0.1), np.full((2, 1), 2.0)])
    return y, p


def test_metric_weighs_batches_by_size():
    y, p = uneven_batches()
    m = metrics.get("mae")
    batch_means = []
    with unidl.use_backend(B64):
        for start in range(0, 10, 4):
            m.update_state(ops.convert(y[start:start + 4]), ops.convert(p[start:start + 4]))
            batch_means.append(np.mean(np.abs(p[start:start + 4] - y[start:start + 4])))
    assert float(m.count.numpy()) == 10
    want = np.mean(np.abs(p - y))  # (8 * 0.1 + 2 * 2.0) / 10 = 0.48
    np.testing.assert_allclose(m.result(), want, rtol=FWD_RTOL)
    np.testing.assert_allclose(m.result(), (4 * batch_means[0] + 4 * batch_means[1] + 2 * batch_means[2]) / 10,
                               rtol=FWD_RTOL)
    assert not np.isclose(m.result(), np.mean(batch_means))  # (0.1 + 0.1 + 2.0) / 3: the unweighted mean
    m.reset_state()
    assert float(m.count.numpy()) == 0 and m.result() == 0.0  # Keras: 0 before any sample (divide_no_nan)


def test_metric_with_sample_weight():
    y, p = _rng.normal(size=(6, 2)), _rng.normal(size=(6, 2))
    w = _rng.uniform(0.1, 3.0, 6)
    values = np.mean(np.abs(p - y), axis=-1)
    m = metrics.get("mae")
    with unidl.use_backend(B64):
        m.update_state(ops.convert(y[:4]), ops.convert(p[:4]), ops.convert(w[:4]))
        m.update_state(ops.convert(y[4:]), ops.convert(p[4:]), ops.convert(w[4:]))
    np.testing.assert_allclose(m.result(), np.sum(w * values) / np.sum(w), rtol=FWD_RTOL)


def test_sequence_metric_averages_within_each_sample():
    y, p = _rng.normal(size=(3, 5, 2)), _rng.normal(size=(3, 5, 2))
    m = metrics.get("mse")
    with unidl.use_backend(B64):
        m.update_state(ops.convert(y[:2]), ops.convert(p[:2]))
        m.update_state(ops.convert(y[2:]), ops.convert(p[2:]))
    assert float(m.count.numpy()) == 3
    np.testing.assert_allclose(m.result(), np.mean((p - y) ** 2), rtol=FWD_RTOL)


def test_mean_weights_reduced_values():
    m = metrics.Mean(name="loss", dtype="float64")  # the training loop's loss tracker
    for value, n in [(1.0, 4), (2.0, 4), (10.0, 2)]:
        m.update_state(value, sample_weight=n)
    np.testing.assert_allclose(m.result(), (4 * 1.0 + 4 * 2.0 + 2 * 10.0) / 10, rtol=FWD_RTOL)


def linear_model(loss="mse", metric_ids=("mae",), units=1, activation=None):
    model = unidl.Sequential([layers.Dense(units, activation=activation, input_shape=(3,))], seed=0)
    model.compile(optimizer=optimizers.SGD(0.0), loss=loss, metrics=list(metric_ids), backend="numpy",
                  dtype="float64")
    return model


def skewed_data():
    # the last two samples sit far from the rest, so their batch of 2 dominates an unweighted mean
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 3))
    y = rng.normal(size=(10, 1))
    y[8:] += 25.0
    return x, y


def test_evaluate_averages_over_samples_not_batches():
    x, y = skewed_data()
    model = linear_model(metric_ids=("mae", "mse"))
    loss, mae, mse = model.evaluate(x, y, batch_size=4, verbose=0)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(loss, np.mean((pred - y) ** 2), rtol=FWD_RTOL)
    np.testing.assert_allclose(mse, np.mean((pred - y) ** 2), rtol=FWD_RTOL)
    np.testing.assert_allclose(mae, np.mean(np.abs(pred - y)), rtol=FWD_RTOL)
    unweighted = np.mean([np.mean(np.abs(pred[s:s + 4] - y[s:s + 4])) for s in range(0, 10, 4)])
    assert not np.isclose(mae, unweighted, rtol=1e-3)


def test_fit_epoch_logs_are_sample_weighted():
    x, y = skewed_data()
    model = linear_model()  # SGD(0): the weights do not move, so every batch sees the same model
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    pred = model.predict(x, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], np.mean((pred - y) ** 2), rtol=FWD_RTOL)
    np.testing.assert_allclose(history.history["mae"][0], np.mean(np.abs(pred - y)), rtol=FWD_RTOL)


def test_accuracy_in_a_compiled_model():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(10, 3))
    y = (rng.uniform(size=10) > 0.5).astype(float)  # (batch,) labels for a (batch, 1) output
    model = linear_model(loss="binary_crossentropy", metric_ids=("accuracy",), activation="sigmoid")
    _, acc = model.evaluate(x, y, batch_size=4, verbose=0)
    pred = model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(acc, np.mean((pred > 0.5) == y), rtol=FWD_RTOL)

    ids = rng.integers(0, 4, 10)
    model = linear_model(loss="sparse_categorical_crossentropy", metric_ids=("accuracy",), units=4,
                         activation="softmax")
    _, acc = model.evaluate(x, ids, batch_size=4, verbose=0)
    np.testing.assert_allclose(acc, np.mean(model.predict(x, verbose=0).argmax(-1) == ids), rtol=FWD_RTOL)

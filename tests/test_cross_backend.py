"""The same model on every backend: same weights, same data, same numbers.

Tolerances are the named constants of unidl.testing (CONVENTIONS.md).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.testing.tolerances import FORWARD_F32, FORWARD_F64, TRAJECTORY_F32, TRAJECTORY_F64

from .test_training import load_example

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]
OTHERS = [b for b in BACKENDS if b != "numpy"]

pytestmark = pytest.mark.skipif(not OTHERS, reason="only the NumPy backend is installed")


def mlp(seed=0, dropout=0.0):
    stack = [layers.Dense(16, activation="tanh", input_shape=(6,))]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack += [layers.Dense(8, activation="relu"), layers.Dense(3, activation="softmax")]
    return unidl.Sequential(stack, seed=seed)


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    return x, y


def train(backend, dtype, optimizer="adam", dropout=0.0, epochs=3):
    x, y = data()
    model = mlp(dropout=dropout)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"],
                  backend=backend, dtype=dtype)
    history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return history.history, model.get_weights(), model.predict(x)


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("dtype, tol", [("float64", TRAJECTORY_F64), ("float32", TRAJECTORY_F32)])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adagrad", "adamw"])
def test_training_trajectory_matches_numpy(backend, dtype, tol, optimizer):
    ref_hist, ref_weights, _ = train("numpy", dtype, optimizer)
    hist, weights, _ = train(backend, dtype, optimizer)
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=tol.rtol, atol=tol.atol)
    for got, want in zip(weights, ref_weights):
        np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=max(tol.atol, tol.rtol * 1e-2))


@pytest.mark.parametrize("backend", OTHERS)
def test_dropout_training_matches_numpy(backend):
    # masks come from unidl's seeded generator, so dropout training agrees too
    ref_hist, _, _ = train("numpy", "float64", dropout=0.3)
    hist, _, _ = train(backend, "float64", dropout=0.3)
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=TRAJECTORY_F64.rtol)


@pytest.mark.parametrize("backend", OTHERS)
def test_weights_move_between_backends(backend):
    x, _ = data()
    source = mlp(seed=5)
    source.compile(loss="mse", backend="numpy", dtype="float64")
    target = mlp(seed=99)  # different initial weights, overwritten below
    target.compile(loss="mse", backend=backend, dtype="float64")
    target.set_weights(source.get_weights())
    np.testing.assert_allclose(target.predict(x), source.predict(x), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    # recompiling carries the weights over too
    source.compile(loss="mse", backend=backend, dtype="float32")
    np.testing.assert_allclose(source.predict(x), target.predict(x), rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_all_backends_in_one_process_interleaved():
    x, y = data()
    models = {}
    for name in BACKENDS:
        model = mlp()
        model.compile(optimizer="adam", loss="categorical_crossentropy", backend=name, dtype="float64")
        models[name] = model
    for _ in range(3):  # interleave epochs of every backend
        for model in models.values():
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    ref = models["numpy"].get_weights()
    for name, model in models.items():
        for got, want in zip(model.get_weights(), ref):
            np.testing.assert_allclose(got, want, rtol=TRAJECTORY_F64.rtol, atol=1e-12, err_msg=name)


def test_backends_in_threads():
    x, y = data()
    results, errors = {}, []

    def work(name):
        try:
            model = mlp()
            model.compile(optimizer="adam", loss="categorical_crossentropy", backend=name, dtype="float64")
            model.fit(x, y, epochs=2, batch_size=16, verbose=0)
            results[name] = model.predict(x)
        except Exception as exc:  # surfaced below with the backend's name
            errors.append((name, exc))

    threads = [threading.Thread(target=work, args=(name,)) for name in BACKENDS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name in OTHERS:
        np.testing.assert_allclose(results[name], results["numpy"], rtol=TRAJECTORY_F64.rtol, atol=1e-12)


@pytest.mark.parametrize("example, epochs, key", [
    ("regression_mlp", 20, "loss"), ("xor", 200, "loss"), ("deep_regression", 3, "loss"),
    ("binary_classifier", 3, "loss")])
def test_examples_agree_across_backends(example, epochs, key):
    module = load_example(example)
    ref = module.main("numpy", epochs=epochs, verbose=0)
    for name in OTHERS:
        got = module.main(name, epochs=epochs, verbose=0)
        np.testing.assert_allclose(got[key], ref[key], rtol=TRAJECTORY_F32.rtol, err_msg=f"{example} on {name}")

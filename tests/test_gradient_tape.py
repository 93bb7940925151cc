"""unidl.GradientTape: TensorFlow-style custom training on every backend that records ops as they run."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.testing.gradcheck import central_differences
from unidl.tolerances import FD_F64, GRAD_F32

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                                      reason=f"{name} is not installed"))
                        for name in ("torch", "tensorflow")]
X = np.random.default_rng(0).random((8, 3))
Y = X.sum(axis=1, keepdims=True)


def model_on(backend, dtype="float32"):
    model = unidl.Sequential([layers.Dense(4, activation="tanh", input_shape=(3,)), layers.Dense(1)], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend=backend, dtype=dtype)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_tape_gradients_equal_value_and_grad(backend):
    model = model_on(backend)
    with unidl.use_backend(model.backend) as b:
        x, y = b.convert(X), b.convert(Y)
        with unidl.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        _, expected = unidl.value_and_grad(lambda: model.loss(y, model(x, training=True)), model)
    assert len(grads) == len(model.trainable_weights)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(b.to_numpy(g), b.to_numpy(e), rtol=GRAD_F32.rtol, atol=GRAD_F32.atol)


def test_tape_gradient_of_a_watched_input_matches_finite_differences():
    model = model_on("numpy", dtype="float64")
    with unidl.use_backend(model.backend) as b:
        x = b.convert(X)
        with unidl.GradientTape() as tape:
            tape.watch(x)
            out = ops.sum(ops.square(model(x)))
        got = b.to_numpy(tape.gradient(out, x))

        def f(value):
            return float(b.to_numpy(ops.sum(ops.square(model(b.convert(value))))))
        numeric = central_differences(f, X.copy())
    np.testing.assert_allclose(got, numeric, rtol=FD_F64.rtol, atol=FD_F64.atol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_custom_loop_trains_to_the_same_numbers_everywhere(backend):
    def train(name):
        model = model_on(name)
        losses = []
        with unidl.use_backend(model.backend) as b:
            for _ in range(5):
                with unidl.GradientTape() as tape:
                    loss = model.loss(b.convert(Y), model(b.convert(X), training=True))
                grads = tape.gradient(loss, model.trainable_weights)
                model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
                losses.append(float(b.to_numpy(loss)))
        return losses
    ours = train(backend)
    assert ours[-1] < ours[0]
    np.testing.assert_allclose(ours, train("numpy"), rtol=1e-5)


def test_a_tape_is_used_once_unless_persistent():
    model = model_on("numpy")
    with unidl.use_backend(model.backend) as b:
        with unidl.GradientTape() as tape:
            loss = model.loss(b.convert(Y), model(b.convert(X)))
        tape.gradient(loss, model.trainable_weights)
        with pytest.raises(RuntimeError, match="persistent=True"):
            tape.gradient(loss, model.trainable_weights)
        with unidl.GradientTape(persistent=True) as tape:
            loss = model.loss(b.convert(Y), model(b.convert(X)))
        first = tape.gradient(loss, model.trainable_weights)
        second = tape.gradient(loss, model.trainable_weights)
    for a, c in zip(first, second):
        np.testing.assert_array_equal(b.to_numpy(a), b.to_numpy(c))

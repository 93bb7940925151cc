"""Regularizers: l1, l2, l1_l2 penalties and their gradients by formula, and a layer's
regularizer reaching the loss that evaluate() reports and fit() trains on.
"""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import layers, ops, optimizers, regularizers
from unidl.tolerances import FORWARD_F64

# ---------------------------------------------------------------- tolerances
FWD = FORWARD_F64  # float64 value vs formula (the named tolerance, CONVENTIONS.md)
STEP_RTOL = 1e-12  # one float64 SGD step vs the same step by hand: rounding-order differences only
STEP_ATOL = 1e-14

DEFAULT_FACTOR = 0.01  # Keras: "l1", "l2" and "l1_l2" by name use 0.01 for each factor
B64 = unidl.get_backend("numpy", dtype="float64")

_rng = np.random.default_rng(77)
W = _rng.choice([-1.0, 1.0], (4, 3)) * _rng.uniform(0.1, 2.0, (4, 3))  # no zeros: |w| has a kink there


def penalty(reg, w):
    with unidl.use_backend(B64):
        return float(ops.to_numpy(reg(ops.convert(w))))


def penalty_grad(reg, w):
    with unidl.use_backend(B64):
        _, (g,) = B64.grad_wrt_inputs(lambda t: reg(t), [ops.convert(w)])
        return ops.to_numpy(g)


CASES = {
    # id -> (regularizer, value formula, gradient formula)
    "l1": (regularizers.l1(), lambda w: DEFAULT_FACTOR * np.abs(w).sum(), lambda w: DEFAULT_FACTOR * np.sign(w)),
    "l2": (regularizers.l2(), lambda w: DEFAULT_FACTOR * (w ** 2).sum(), lambda w: 2 * DEFAULT_FACTOR * w),
    "l1_l2": (regularizers.l1_l2(),
              lambda w: DEFAULT_FACTOR * np.abs(w).sum() + DEFAULT_FACTOR * (w ** 2).sum(),
              lambda w: DEFAULT_FACTOR * np.sign(w) + 2 * DEFAULT_FACTOR * w),
    "l1_0.3": (regularizers.l1(0.3), lambda w: 0.3 * np.abs(w).sum(), lambda w: 0.3 * np.sign(w)),
    "l2_0.2": (regularizers.l2(0.2), lambda w: 0.2 * (w ** 2).sum(), lambda w: 0.4 * w),
    "L1L2(0.1,0.02)": (regularizers.L1L2(l1=0.1, l2=0.02),
                       lambda w: 0.1 * np.abs(w).sum() + 0.02 * (w ** 2).sum(),
                       lambda w: 0.1 * np.sign(w) + 0.04 * w),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_penalty_and_gradient(case):
    reg, value, grad = CASES[case]
    np.testing.assert_allclose(penalty(reg, W), value(W), rtol=FWD.rtol, atol=FWD.atol)
    np.testing.assert_allclose(penalty_grad(reg, W), grad(W), rtol=FWD.rtol, atol=FWD.atol)


def test_names_resolve_to_the_default_factors():
    for name, (l1, l2) in {"l1": (DEFAULT_FACTOR, 0.0), "l2": (0.0, DEFAULT_FACTOR),
                           "l1_l2": (DEFAULT_FACTOR, DEFAULT_FACTOR)}.items():
        reg = regularizers.get(name)
        assert (reg.l1, reg.l2) == (l1, l2), name
    assert regularizers.get(None) is None
    reg = regularizers.L1L2(l2=0.5)
    assert regularizers.get(reg) is reg
    # Keras: the class's own defaults are 0 (no penalty)
    assert (regularizers.L1L2().l1, regularizers.L1L2().l2) == (0.0, 0.0)
    assert penalty(regularizers.L1L2(), W) == 0.0


def test_invalid_regularizers():
    with pytest.raises(ValueError):
        regularizers.L1L2(l1=-0.1)
    with pytest.raises(ValueError, match=r"did you mean 'l1_l2'\?"):
        regularizers.get("l1_l3")


# ----------------------------------------------------------- in a model
def make_model(**dense_kwargs):
    model = unidl.Sequential([layers.Dense(3, activation="tanh", input_shape=(4,), **dense_kwargs),
                              layers.Dense(1)], seed=0)
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="numpy", dtype="float64")
    return model


def data(n=10):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 4)), rng.normal(size=(n, 1))


@pytest.mark.parametrize("batch_size", [10, 4])
def test_kernel_regularizer_adds_its_penalty_to_the_evaluated_loss(batch_size):
    x, y = data()
    plain = make_model()
    regular = make_model(kernel_regularizer="l2")
    plain.set_weights(regular.get_weights())  # the very same weights
    kernel = regular.get_weights()[0]
    base = plain.evaluate(x, y, batch_size=batch_size, verbose=0)
    total = regular.evaluate(x, y, batch_size=batch_size, verbose=0)
    # the penalty enters once, whatever the batching
    np.testing.assert_allclose(total - base, DEFAULT_FACTOR * np.sum(kernel ** 2), rtol=FWD.rtol)
    # and the unregularized loss is the plain mse of the predictions
    np.testing.assert_allclose(base, np.mean((plain.predict(x) - y) ** 2), rtol=FWD.rtol)


def test_kernel_and_bias_regularizers_add_up():
    x, y = data()
    plain = make_model()
    regular = make_model(kernel_regularizer=regularizers.l1_l2(0.05, 0.02), bias_regularizer="l1")
    # non-zero biases, so the bias penalty is not trivially 0
    weights = [w + 0.3 for w in regular.get_weights()]
    regular.set_weights(weights)
    plain.set_weights(weights)
    kernel, bias = weights[0], weights[1]
    expected = 0.05 * np.abs(kernel).sum() + 0.02 * (kernel ** 2).sum() + DEFAULT_FACTOR * np.abs(bias).sum()
    got = regular.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=FWD.rtol)


def test_training_loss_includes_the_penalty():
    x, y = data()
    regular = make_model(kernel_regularizer="l2")  # SGD(0): the weights stay put during fit
    history = regular.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], regular.evaluate(x, y, verbose=0), rtol=FWD.rtol)


def test_penalty_gradient_reaches_the_update():
    # Linear Dense(1), mse + l2(0.1) on the kernel: dL/dW = 2/N x^T (xW + b - y) + 0.2 W.
    x, y = data()
    model = unidl.Sequential([layers.Dense(1, input_shape=(4,), kernel_regularizer=regularizers.l2(0.1))],
                             seed=0)
    model.compile(optimizer=optimizers.SGD(0.5), loss="mse", backend="numpy", dtype="float64")
    kernel, bias = model.get_weights()
    residual = x @ kernel + bias - y
    kernel_after = kernel - 0.5 * (2.0 / len(x) * x.T @ residual + 0.2 * kernel)
    bias_after = bias - 0.5 * (2.0 / len(x) * residual.sum(axis=0))
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    got_kernel, got_bias = model.get_weights()
    np.testing.assert_allclose(got_kernel, kernel_after, rtol=STEP_RTOL, atol=STEP_ATOL)
    np.testing.assert_allclose(got_bias, bias_after, rtol=STEP_RTOL, atol=STEP_ATOL)

"""Activations: every built-in against a closed-form NumPy formula written here, and its
gradient (NumPy backend's autodiff) against central finite differences of that formula.

Keras 3 conventions (CONVENTIONS.md): leaky_relu slope 0.2, hard_sigmoid = relu6(x + 3) / 6,
gelu exact (erf) unless approximate=True.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import unidl
from unidl import activations, ops
from unidl.testing.gradcheck import central_differences
from unidl.tolerances import FD_F64, FORWARD_F64

# ---------------------------------------------------------------- tolerances
# The named ones (CONVENTIONS.md): FORWARD_F64 for values (and gradients in closed form),
# FD_F64 for autodiff vs central differences.
FWD, FD = FORWARD_F64, FD_F64

# Points where a built-in is not differentiable (or its derivative jumps): finite
# differences straddling one of them are meaningless, so inputs keep KINK_GAP away.
KINKS = (-3.0, 0.0, 3.0, 6.0)   # relu/leaky/elu/selu/softsign at 0; relu6 at 0, 6; hard_* at -3, 3
KINK_GAP = 0.1
LARGE = 1000.0                  # "large |x|": exp(1000) overflows float64

SELU_ALPHA = 1.67326324235437728481704299167  # Klambauer et al. (2017), as in Keras
SELU_SCALE = 1.05070098735548049341933498529
LEAKY_SLOPE = 0.2                              # Keras 3 activations.leaky_relu default

B64 = unidl.get_backend("numpy", dtype="float64")


# ------------------------------------------------- closed-form references
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    # Split by sign so neither branch overflows.
    with np.errstate(over="ignore"):
        pos = 1.0 / (1.0 + np.exp(-np.abs(x)))
    return np.where(x >= 0, pos, 1.0 - pos)


def _softmax(x):
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


def _relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


REFERENCES = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": _relu6,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "leaky_relu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    "elu": _elu,
    "selu": lambda x: SELU_SCALE * _elu(x, SELU_ALPHA),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "hard_sigmoid": lambda x: _relu6(x + 3.0) / 6.0,
    "hard_silu": lambda x: x * _relu6(x + 3.0) / 6.0,
    "hard_swish": lambda x: x * _relu6(x + 3.0) / 6.0,
    "exponential": np.exp,
}


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


# ------------------------------------------------------------------ helpers
def sample(shape, seed, lo=-7.5, hi=7.5):
    """Uniform inputs on [lo, hi) moved at least KINK_GAP away from every kink."""
    x = np.random.default_rng(seed).uniform(lo, hi, size=shape)
    for k in KINKS:
        near = np.abs(x - k) < KINK_GAP
        x[near] = k + np.where(x[near] >= k, KINK_GAP, -KINK_GAP)
    return x


def forward(fn, x):
    with unidl.use_backend(B64):
        return ops.to_numpy(fn(ops.convert(x)))


def autodiff_grad(fn, x, r):
    """Gradient of sum(fn(x) * r) wrt x, from the NumPy backend's public entry point."""
    with unidl.use_backend(B64):
        rt = ops.convert(r)
        value, grads = B64.grad_wrt_inputs(lambda t: ops.sum(ops.multiply(fn(t), rt)), [ops.convert(x)])
        assert len(grads) == 1
        return float(ops.to_numpy(value)), ops.to_numpy(grads[0])


def check_forward_and_grad(fn, ref, x, seed=0):
    got = forward(fn, x)
    want = ref(x)
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=FWD.rtol, atol=FWD.atol, err_msg="forward")
    r = np.random.default_rng(seed + 1000).standard_normal(x.shape)  # random upstream gradient
    value, grad = autodiff_grad(fn, x, r)
    np.testing.assert_allclose(value, np.sum(want * r), rtol=FWD.rtol, atol=FWD.atol)
    # ref(x) * r, not its sum: differenced before summing, untouched entries cancel exactly.
    numeric = central_differences(lambda v: ref(v) * r, x)
    np.testing.assert_allclose(grad, numeric, rtol=FD.rtol, atol=FD.atol, err_msg="gradient")


# -------------------------------------------------------------------- tests
def test_every_builtin_has_a_reference():
    assert set(activations.BUILTINS) == set(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_and_gradient(name):
    fn = activations.get(name)
    # exponential stays on [-3, 3] so exp(x) keeps the same scale as the other outputs.
    lo, hi = (-3.0, 3.0) if name == "exponential" else (-7.5, 7.5)
    x = sample((4, 6), seed=sorted(REFERENCES).index(name), lo=lo, hi=hi)
    check_forward_and_grad(fn, REFERENCES[name], x)


def test_inputs_cover_both_sides_of_every_kink():
    # Guards the test above: the sampled inputs exercise every piece of piecewise activations.
    x = sample((4, 6), seed=0)
    for k in KINKS:
        assert (x < k).any() and (x > k).any()
    assert (x > 6.0).any() and (x < -3.0).any()


def test_gelu_approximate_is_the_tanh_form():
    x = sample((3, 5), seed=11, lo=-4.0, hi=4.0)
    check_forward_and_grad(lambda t: activations.gelu(t, approximate=True), gelu_tanh, x)
    # and the default (exact) differs from it by more than rounding
    assert np.max(np.abs(forward(activations.gelu, x) - gelu_tanh(x))) > 1e-5


def test_leaky_relu_custom_slope():
    x = sample((3, 4), seed=12, lo=-3.0, hi=3.0)
    check_forward_and_grad(lambda t: activations.leaky_relu(t, negative_slope=0.05),
                           lambda a: np.where(a > 0, a, 0.05 * a), x)


def test_elu_custom_alpha():
    x = sample((3, 4), seed=13, lo=-3.0, hi=3.0)
    check_forward_and_grad(lambda t: activations.elu(t, alpha=0.5), lambda a: _elu(a, 0.5), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_along_other_axis(name):
    x = sample((3, 4, 2), seed=14, lo=-3.0, hi=3.0)
    fn = getattr(activations, name)
    ref = REFERENCES[name]
    check_forward_and_grad(lambda t: fn(t, axis=1), lambda a: np.moveaxis(ref(np.moveaxis(a, 1, -1)), -1, 1), x)


def test_softmax_rows_sum_to_one():
    x = sample((5, 7), seed=15)
    np.testing.assert_allclose(forward(activations.softmax, x).sum(axis=-1), 1.0, rtol=FWD.rtol)


STABLE = ["sigmoid", "softplus", "softmax", "log_softmax", "elu", "selu"]


@pytest.mark.parametrize("name", STABLE)
def test_large_inputs_stay_finite(name):
    x = np.array([[-LARGE, -LARGE / 2, 0.5, LARGE / 2, LARGE], [LARGE, LARGE, -LARGE, 1.0, 2.0]])
    fn = activations.get(name)
    with np.errstate(over="raise", invalid="raise"):
        want = REFERENCES[name](x)  # the references are written in stable form
    got = forward(fn, x)
    assert np.all(np.isfinite(got)), f"{name} forward: {got}"
    np.testing.assert_allclose(got, want, rtol=FWD.rtol, atol=FWD.atol)
    r = np.random.default_rng(3).standard_normal(x.shape)
    _, grad = autodiff_grad(fn, x, r)
    assert np.all(np.isfinite(grad)), f"{name} gradient: {grad}"


def test_large_input_gradients_have_the_right_limits():
    x = np.array([-LARGE, LARGE])
    ones = np.ones(2)
    # d sigmoid -> 0 at both ends; d softplus -> (0, 1); d elu -> (0, 1); d selu -> (0, scale)
    expected = {"sigmoid": [0.0, 0.0], "softplus": [0.0, 1.0], "elu": [0.0, 1.0], "selu": [0.0, SELU_SCALE]}
    for name, want in expected.items():
        _, grad = autodiff_grad(activations.get(name), x, ones)
        np.testing.assert_allclose(grad, want, rtol=FWD.rtol, atol=FWD.atol, err_msg=name)


def test_get_resolution():
    assert activations.get(None) is activations.linear
    assert activations.get("ReLU") is activations.relu
    assert activations.get("swish") is activations.silu
    assert activations.get(np.tanh) is np.tanh
    assert activations.name_of(activations.gelu) == "gelu"
    with pytest.raises(ValueError, match=r"did you mean 'sigmoid'\?"):
        activations.get("sigmod")
    with pytest.raises(TypeError):
        activations.get(3)

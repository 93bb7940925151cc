"""The NumPy reference backend: every op's forward against closed-form NumPy, every
gradient against central finite differences, the exact tie/kink rules, and the tape.

Gradients are checked through ``sum(out * r)`` with a fixed random ``r``: with a
plain sum (upstream gradient all ones) a backward rule that mixes up elements
would still pass.
"""
from __future__ import annotations

import gc
import math
import threading
import weakref

import numpy as np
import pytest

import unidl
from unidl import ops
from unidl.testing.gradcheck import central_differences
from unidl.tolerances import FD_F64, FORWARD_F64, GRAD_F64
from unidl_numpy import tape as autodiff

B64 = unidl.get_backend("numpy", dtype="float64")
B32 = unidl.get_backend("numpy", dtype="float32")

_rng = np.random.default_rng(20240611)


def u(*shape, lo=-2.0, hi=2.0):
    """Uniform float64 input in [lo, hi)."""
    return _rng.uniform(lo, hi, size=shape)


def away(*shape, gap=0.2, hi=2.0):
    """Random sign times a magnitude in [gap, hi): keeps finite differences off a kink at 0."""
    return _rng.choice([-1.0, 1.0], size=shape) * _rng.uniform(gap, hi, size=shape)


def check(fn, inputs, ref=None, *, grad: bool = True, backend=B64, upstream_seed: int = 7):
    """Forward of ``fn`` (over ``unidl.ops``) against ``ref`` (over NumPy), then the
    gradient of ``sum(fn(*inputs) * r)`` for every floating input against central differences."""
    arrays = [np.asarray(x) for x in inputs]
    with unidl.use_backend(backend):
        out = fn(*[ops.convert(a) for a in arrays])
        if ref is not None:
            expected = np.asarray(ref(*arrays))
            assert ops.shape(out) == expected.shape, f"forward shape {ops.shape(out)} != {expected.shape}"
            assert out.dtype == expected.dtype.name, f"forward dtype {out.dtype} != {expected.dtype}"
            np.testing.assert_allclose(ops.to_numpy(out), expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol,
                                       err_msg="forward")
        if not grad:
            return
        r = ops.convert(np.random.default_rng(upstream_seed).standard_normal(ops.shape(out)))

        def weighted(*ts):
            return ops.sum(ops.multiply(fn(*ts), r))

        _, grads = backend.grad_wrt_inputs(weighted, [ops.convert(a) for a in arrays])
        assert len(grads) == len(arrays)
        for i, a in enumerate(arrays):
            if a.dtype.kind != "f":  # conditions, indices: nothing to differentiate
                continue

            def f_i(xi, i=i):
                with backend.no_grad():
                    ts = [ops.convert(xi if j == i else arrays[j]) for j in range(len(arrays))]
                    return float(ops.to_numpy(weighted(*ts)))

            assert ops.shape(grads[i]) == a.shape, f"grad of input {i}: shape"
            np.testing.assert_allclose(ops.to_numpy(grads[i]), central_differences(f_i, a),
                                       rtol=FD_F64.rtol, atol=FD_F64.atol, err_msg=f"grad of input {i}")


def grads_of(fn, inputs, r, backend=B64):
    """Exact gradients of sum(fn(*inputs) * r), for the tie/kink rules."""
    with unidl.use_backend(backend):
        rt = ops.convert(np.asarray(r, dtype=float))
        _, grads = backend.grad_wrt_inputs(lambda *ts: ops.sum(ops.multiply(fn(*ts), rt)),
                                           [ops.convert(np.asarray(x, dtype=float)) for x in inputs])
    return [g.numpy() for g in grads]


# Tolerances are the named ones of unidl.tolerances (CONVENTIONS.md): FORWARD_F64 for values and for
# exact gradients computed in closed form, FD_F64 against central differences.


# ====================================================================== binary ops

BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (3, 1)), ((), (2, 3)), ((1, 3), (4, 1)),
                    ((2, 1, 4), (1, 3, 1))]

BINARY = {
    # name: (op, numpy reference, sampler for a, sampler for b)
    "add": (lambda a, b: ops.add(a, b), np.add, u, u),
    "subtract": (lambda a, b: ops.subtract(a, b), np.subtract, u, u),
    "multiply": (lambda a, b: ops.multiply(a, b), np.multiply, u, u),
    "divide": (lambda a, b: ops.divide(a, b), np.divide, u, away),
    "power": (lambda a, b: ops.power(a, b), np.power,
              lambda *s: u(*s, lo=0.5, hi=2.0), lambda *s: u(*s, lo=-1.5, hi=1.5)),
    "maximum": (lambda a, b: ops.maximum(a, b), np.maximum, u, u),
    "minimum": (lambda a, b: ops.minimum(a, b), np.minimum, u, u),
}


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcasting(name, shapes):
    op, ref, sample_a, sample_b = BINARY[name]
    check(op, [sample_a(*shapes[0]), sample_b(*shapes[1])], ref)
    check(op, [sample_a(*shapes[1]), sample_b(*shapes[0])], ref)  # broadcasting the other way


SCALAR = 1.5


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_python_scalar_either_side(name):
    op, ref, _, _ = BINARY[name]
    x = u(3, 4, lo=0.5, hi=2.0)  # positive, so power's scalar base and divisor are valid
    check(lambda a: op(a, SCALAR), [x], lambda a: ref(a, SCALAR))
    check(lambda a: op(SCALAR, a), [x], lambda a: ref(SCALAR, a))


COMPARISONS = {"equal": np.equal, "not_equal": np.not_equal, "greater": np.greater,
               "greater_equal": np.greater_equal, "less": np.less, "less_equal": np.less_equal}


@pytest.mark.parametrize("name", sorted(COMPARISONS))
def test_comparisons(name):
    # Small integers in a float dtype, so ties (where the variants differ) occur.
    a = _rng.integers(-2, 3, size=(3, 4)).astype(float)
    b = _rng.integers(-2, 3, size=(4,)).astype(float)
    op = getattr(ops, name)
    check(op, [a, b], COMPARISONS[name], grad=False)
    check(lambda x: op(x, 0.0), [a], lambda x: COMPARISONS[name](x, 0.0), grad=False)
    check(lambda x: op(0.0, x), [a], lambda x: COMPARISONS[name](0.0, x), grad=False)


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 1), (3, 4), (4,)), ((4,), (), (3, 4))], ids=str)
def test_where(shapes):
    cond = _rng.random(shapes[0]) > 0.5
    check(ops.where, [cond, u(*shapes[1]), u(*shapes[2])], np.where)


def test_where_with_scalars():
    cond = _rng.random((3, 4)) > 0.5
    check(lambda c, a: ops.where(c, a, 0.0), [cond, u(3, 4)], lambda c, a: np.where(c, a, 0.0))
    check(lambda c, b: ops.where(c, -1.0, b), [cond, u(4)], lambda c, b: np.where(c, -1.0, b))


# ======================================================================= unary ops

def _erf_ref(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


UNARY = {
    # name: (numpy reference, input sampler on the op's smooth domain)
    "negative": (np.negative, u),
    "abs": (np.abs, away),
    "exp": (np.exp, u),
    "log": (np.log, lambda *s: u(*s, lo=0.1, hi=3.0)),
    "log1p": (np.log1p, lambda *s: u(*s, lo=-0.5, hi=3.0)),
    "sqrt": (np.sqrt, lambda *s: u(*s, lo=0.1, hi=3.0)),
    "tanh": (np.tanh, u),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda *s: u(*s, lo=-6.0, hi=6.0)),
    "relu": (lambda x: np.maximum(x, 0.0), away),
    "erf": (_erf_ref, lambda *s: u(*s, lo=-3.0, hi=3.0)),
    "square": (np.square, u),
    "softplus": (lambda x: np.log1p(np.exp(x)), lambda *s: away(*s, gap=0.05, hi=8.0)),
}


@pytest.mark.parametrize("shape", [(), (1,), (3, 4), (2, 1, 3)], ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, shape):
    ref, sample = UNARY[name]
    check(getattr(ops, name), [sample(*shape)], ref)


def test_sign_forward():
    x = np.array([-2.0, -0.0, 0.0, 0.5, 3.0])
    check(ops.sign, [x], np.sign, grad=False)


def test_erf_known_values():
    # Tabulated values of the error function (Abramowitz & Stegun 7.1).
    x = np.array([0.0, 0.5, 1.0, 2.0, -1.0])
    table = np.array([0.0, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527, -0.8427007929497149])
    with unidl.use_backend(B64):
        np.testing.assert_allclose(ops.to_numpy(ops.erf(ops.convert(x))), table, rtol=FORWARD_F64.rtol,
                                   atol=FORWARD_F64.atol)


def test_erf_float32_is_libm_rounded():
    x = u(50, lo=-4.0, hi=4.0).astype(np.float32)
    with unidl.use_backend(B32):
        got = ops.to_numpy(ops.erf(ops.convert(x)))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([math.erf(float(v)) for v in x], dtype=np.float32))


def test_sigmoid_and_softplus_stable_for_large_inputs():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"), unidl.use_backend(B64):
        s = ops.to_numpy(ops.sigmoid(ops.convert(x)))
        sp = ops.to_numpy(ops.softplus(ops.convert(x)))
    np.testing.assert_allclose(s, [0.0, math.exp(-50) / (1 + math.exp(-50)), 0.5, 1 / (1 + math.exp(-50)), 1.0],
                               rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    np.testing.assert_allclose(sp, [0.0, math.log1p(math.exp(-50)), math.log(2), 50 + math.log1p(math.exp(-50)),
                                    1000.0], rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


@pytest.mark.parametrize("lo,hi", [(-1.0, 1.0), (0.0, 0.5), (-0.3, 2.0)])
def test_clip(lo, hi):
    # Keep finite differences away from the bounds, where clip has kinks.
    x = u(3, 5)
    x = np.where(np.abs(x - lo) < 0.05, lo - 0.1, x)
    x = np.where(np.abs(x - hi) < 0.05, hi + 0.1, x)
    check(lambda a: ops.clip(a, lo, hi), [x], lambda a: np.clip(a, lo, hi))


# ====================================================================== reductions

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}
AXES = [None, 0, -1, 1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions(name, axis, keepdims):
    op, ref = getattr(ops, name), REDUCTIONS[name]
    check(lambda x: op(x, axis=axis, keepdims=keepdims), [u(2, 3, 4)],
          lambda x: ref(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("shape,axis", [((), None), ((1, 3, 1), 0), ((1, 3, 1), 2), ((1, 3, 1), None),
                                        ((4,), 0), ((4,), -1)], ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions_scalars_and_size_one_axes(name, shape, axis):
    op, ref = getattr(ops, name), REDUCTIONS[name]
    for keepdims in (False, True):
        check(lambda x: op(x, axis=axis, keepdims=keepdims), [u(*shape)],
              lambda x: ref(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_argmax(axis):
    check(lambda x: ops.argmax(x, axis=axis), [u(3, 5)], lambda x: np.argmax(x, axis=axis), grad=False)


# =============================================================== shape and indexing

@pytest.mark.parametrize("src,dst", [((2, 3, 4), (4, -1)), ((6, 4), (2, 3, 4)), ((), (1, 1)), ((3,), (1, 3, 1)),
                                     ((2, 3), (6,))], ids=str)
def test_reshape(src, dst):
    check(lambda x: ops.reshape(x, dst), [u(*src)], lambda x: np.reshape(x, dst))


@pytest.mark.parametrize("shape,axes", [((3, 4), None), ((2, 3, 4), None), ((2, 3, 4), (1, 0, 2)),
                                        ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (-1, 0, -2))], ids=str)
def test_transpose(shape, axes):
    check(lambda x: ops.transpose(x, axes), [u(*shape)], lambda x: np.transpose(x, axes))


@pytest.mark.parametrize("shapes,axis", [([(2, 3), (2, 1), (2, 2)], -1), ([(1, 3), (2, 3)], 0),
                                         ([(2, 1, 3), (2, 2, 3)], 1), ([(4,), (2,)], 0)], ids=str)
def test_concatenate(shapes, axis):
    check(lambda *xs: ops.concatenate(list(xs), axis=axis), [u(*s) for s in shapes],
          lambda *xs: np.concatenate(xs, axis=axis))


@pytest.mark.parametrize("shape,indices,axis", [
    ((5, 3), [0, 2, 2, 4, 0], 0),          # repeated indices must scatter-add
    ((3, 4), [[0, 3], [3, 3]], 1),         # 2-D indices on a middle axis
    ((2, 3, 4), [1, -1, 1], -1),           # negative axis and negative index
    ((4,), 2, 0),                          # scalar index
], ids=str)
def test_take(shape, indices, axis):
    idx = np.asarray(indices)
    check(lambda x, i: ops.take(x, i, axis=axis), [u(*shape), idx], lambda x, i: np.take(x, i, axis=axis))


@pytest.mark.parametrize("shape,indices,axis", [
    ((3, 4), [[0, 0], [3, 1], [2, 2]], 1),
    ((3, 4), [[0, 2, 2, 1], [0, 0, 1, 1]], 0),
    ((3, 4), [[1], [3], [0]], -1),
    ((2, 3, 4), np.zeros((2, 3, 2), dtype=int) + [0, 3], -1),
    ((2, 3, 4), [[[1, 1, 2, 0]]], 1),      # index broadcast over the first axis
], ids=str)
def test_take_along_axis(shape, indices, axis):
    idx = np.asarray(indices)
    check(lambda x, i: ops.take_along_axis(x, i, axis=axis), [u(*shape), idx],
          lambda x, i: np.take_along_axis(x, i, axis=axis))


# =================================================================== linear algebra

@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((2, 3, 4), (4, 5)),
                                   ((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                                   ((1, 1), (1, 3)), ((4,), (4, 5)), ((3, 4), (4,))], ids=str)
def test_matmul(sa, sb):
    check(ops.matmul, [u(*sa), u(*sb)], np.matmul)


# ==================================================================== autodiff helpers

def test_stop_gradient():
    x = u(3, 4)
    [g] = grads_of(lambda a: ops.multiply(ops.stop_gradient(a), a), [x], np.ones((3, 4)))
    np.testing.assert_array_equal(g, x)  # only the unstopped factor contributes
    check(ops.stop_gradient, [x], lambda a: a, grad=False)


def test_cast_float_keeps_gradient_int_drops_it():
    x = u(3, 4)
    r = u(3, 4)
    [g] = grads_of(lambda a: ops.cast(ops.cast(a, "float32"), "float64"), [x], r)
    np.testing.assert_array_equal(g, r.astype(np.float32))  # the gradient passes through float32 too
    [g] = grads_of(lambda a: ops.multiply(ops.cast(ops.cast(a, "int64"), "float64"), a), [x], r)
    np.testing.assert_array_equal(g, r * x.astype(np.int64))
    with unidl.use_backend(B64):
        for dtype in ("float32", "float64", "int32", "int64", "bool"):
            assert ops.cast(ops.convert(x), dtype).dtype == dtype


# ========================================================================== composites

@pytest.mark.parametrize("shape,axis", [((3, 4), 0), ((3, 4), -1), ((3, 4), 1), ((), 0)], ids=str)
def test_expand_dims(shape, axis):
    check(lambda x: ops.expand_dims(x, axis), [u(*shape)], lambda x: np.expand_dims(x, axis))


@pytest.mark.parametrize("shape,axis", [((1, 3, 4), 0), ((3, 1, 1), (1, 2)), ((3, 1), -1), ((1, 1), None)],
                         ids=str)
def test_squeeze(shape, axis):
    check(lambda x: ops.squeeze(x, axis), [u(*shape)], lambda x: np.squeeze(x, axis))


def test_squeeze_rejects_a_long_axis():
    with unidl.use_backend(B64), pytest.raises(ValueError):
        ops.squeeze(ops.convert(u(2, 3)), 0)


def _softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp_ref(x, axis, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("shape,axis", [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((4,), -1)], ids=str)
def test_softmax_and_log_softmax(shape, axis):
    x = u(*shape, lo=-3, hi=3)
    check(lambda a: ops.softmax(a, axis=axis), [x], lambda a: _softmax_ref(a, axis))
    check(lambda a: ops.log_softmax(a, axis=axis), [x], lambda a: np.log(_softmax_ref(a, axis)))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [-1, 0, None, (0, 2)], ids=str)
def test_logsumexp(axis, keepdims):
    check(lambda a: ops.logsumexp(a, axis=axis, keepdims=keepdims), [u(2, 3, 4, lo=-3, hi=3)],
          lambda a: _logsumexp_ref(a, axis, keepdims))


def test_logsumexp_large_values():
    x = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"), unidl.use_backend(B64):
        got = ops.to_numpy(ops.logsumexp(ops.convert(x), axis=-1))
    np.testing.assert_allclose(got, [1000.0 + math.log(2.0), 0.0], rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_one_hot():
    idx = np.array([[0, 2], [3, 1]])
    with unidl.use_backend(B64):
        got = ops.one_hot(ops.convert(idx), 4)
    assert got.dtype == "float64"
    np.testing.assert_array_equal(got.numpy(), np.eye(4)[idx])


@pytest.mark.parametrize("name", ["zeros", "ones"])
def test_zeros_ones(name):
    ref = getattr(np, name)
    for backend in (B64, B32):
        with unidl.use_backend(backend):
            t = getattr(ops, name)((2, 3))
        assert t.dtype == backend.dtype and t.shape == (2, 3)
        np.testing.assert_array_equal(t.numpy(), ref((2, 3)))


def test_zeros_ones_respect_explicit_dtype():
    for dtype in ("float32", "float64", "int32", "int64", "bool"):
        assert B64.zeros((2,), dtype=dtype).dtype == dtype
        assert B32.ones((2,), dtype=dtype).dtype == dtype


def test_size():
    with unidl.use_backend(B64):
        assert ops.size(ops.convert(u(2, 3, 4))) == 24
        assert ops.size(ops.convert(1.0)) == 1
        assert type(ops.size(ops.convert(u(3)))) is int


def test_softplus_gradient_at_zero():
    # The derivative is sigmoid(x) everywhere, 0.5 at 0 (the relu + log1p(e^-|x|) form gave 0 there).
    [g] = grads_of(ops.softplus, [np.array([0.0, -60.0, 60.0])], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(g, [0.5, 1 / (1 + math.exp(60.0)), 1.0], rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


# ====================================================================== exact rules

def test_maximum_minimum_ties_go_to_first_argument():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 5.0, 3.0, 0.0])
    r = np.array([0.3, -1.2, 2.0, 0.7])
    ga, gb = grads_of(ops.maximum, [a, b], r)
    np.testing.assert_array_equal(ga, r * [1, 0, 1, 1])
    np.testing.assert_array_equal(gb, r * [0, 1, 0, 0])
    ga, gb = grads_of(ops.minimum, [a, b], r)
    np.testing.assert_array_equal(ga, r * [1, 1, 1, 0])
    np.testing.assert_array_equal(gb, r * [0, 0, 0, 1])
    # Broadcast scalar second argument: it gets the sum where it strictly wins.
    x = np.array([0.0, 1.0, 0.0, -1.0])
    ga, gb = grads_of(ops.maximum, [x, np.array(0.0)], r)
    np.testing.assert_array_equal(ga, r * [1, 1, 1, 0])
    np.testing.assert_array_equal(gb, r[3])
    # The same tensor on both sides: everything goes to the first, total 1.
    [g] = grads_of(lambda t: ops.maximum(t, t), [a], r)
    np.testing.assert_array_equal(g, r)


def test_kinks_relu_abs_clip():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    r = np.array([0.5, -1.5, 2.5, 1.25, -0.75])
    [g] = grads_of(ops.relu, [x], r)
    np.testing.assert_array_equal(g, r * [0, 0, 0, 1, 1])
    [g] = grads_of(ops.abs, [x], r)
    np.testing.assert_array_equal(g, r * [-1, -1, 0, 1, 1])
    [g] = grads_of(lambda t: ops.clip(t, -1.0, 1.0), [x], r)  # bounds are inside
    np.testing.assert_array_equal(g, r * [0, 1, 1, 1, 0])


def test_max_min_split_gradient_between_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    r = np.array([0.6, -0.9])
    [g] = grads_of(lambda t: ops.max(t, axis=1), [x], r)
    np.testing.assert_allclose(g, [[0, 0.3, 0.3], [-0.3, -0.3, -0.3]], rtol=FORWARD_F64.rtol)
    [g] = grads_of(lambda t: ops.min(t, axis=-1, keepdims=True), [x], r[:, None])
    np.testing.assert_allclose(g, [[0.6, 0, 0], [-0.3, -0.3, -0.3]], rtol=FORWARD_F64.rtol)
    [g] = grads_of(lambda t: ops.max(t), [x], 2.0)
    np.testing.assert_allclose(g, [[0, 1, 1], [0, 0, 0]], rtol=FORWARD_F64.rtol)


@pytest.mark.parametrize("fn", [
    lambda x: ops.multiply(ops.sign(x), x),
    lambda x: ops.multiply(ops.cast(ops.greater(x, 0.0), "float64"), x),
    lambda x: ops.multiply(ops.cast(ops.less_equal(x, 0.0), "float64"), x),
    lambda x: ops.multiply(ops.cast(ops.argmax(x, axis=-1), "float64"), ops.sum(x, axis=-1)),
], ids=["sign", "greater", "less_equal", "argmax"])
def test_gradient_free_ops(fn):
    # Only the differentiable factor contributes; check() compares with differences.
    check(fn, [away(3, 4)])
    with unidl.use_backend(B64):
        x = ops.convert(away(3, 4))
        for out in (ops.sign(x), ops.greater(x, 0.0), ops.argmax(x)):
            assert not out.requires_grad


def test_comparison_dtypes():
    with unidl.use_backend(B64):
        x = ops.convert(u(3))
        assert ops.less(x, 0.0).dtype == "bool"
        assert ops.argmax(ops.reshape(x, (1, 3))).dtype == "int64"


# ============================================================ Tensor Python operators

OPERATORS = [
    ("a + b", lambda a, b: a + b), ("a - b", lambda a, b: a - b), ("a * b", lambda a, b: a * b),
    ("a / b", lambda a, b: a / (b * b + 1)), ("a @ b[0]", lambda a, b: a @ b[0]),
    ("2 - a", lambda a, b: 2.0 - a + b), ("3 * a / 2", lambda a, b: 3 * a / 2 + b),
    ("1 / b", lambda a, b: a + 1.0 / (b * b + 1)), ("a ** 2", lambda a, b: a ** 2 + b),
    ("2 ** a", lambda a, b: 2.0 ** a + b), ("b ** a", lambda a, b: (b * b + 1) ** a),
    ("-a", lambda a, b: -a * b), ("abs", lambda a, b: abs(a) * b),
    ("[1:, ::2]", lambda a, b: a[1:, ::2] * b[1:, ::2]),
    ("[[0, 0, 2]]", lambda a, b: a[[0, 0, 2]] * b[[1, 1, 0]]),
    ("[None, ..., 1]", lambda a, b: a[None, ..., 1] + b[:, 2]),
    ("[[2, 2, 0], -1]", lambda a, b: a[[2, 2, 0], -1] * b[0, 0]),
    ("[mask]", lambda a, b: a[np.array([True, False, True])] * b[0]),
    ("np + a", lambda a, b: np.full((3, 4), 2.0) + a * b),
]


@pytest.mark.parametrize("expr", [f for _, f in OPERATORS], ids=[i for i, _ in OPERATORS])
def test_tensor_operators(expr):
    a, b = away(3, 4, gap=0.3), away(3, 4, gap=0.3)
    with unidl.use_backend(B64):
        out = expr(ops.convert(a), ops.convert(b))
    np.testing.assert_allclose(out.numpy(), expr(a, b), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    check(expr, [a, b])


def test_index_tensors_as_keys():
    x = u(4, 3)
    idx, mask = np.array([3, 0, 3]), np.array([True, False, True, True])
    check(lambda a, i: a[i, 1:], [x, idx], lambda a, i: a[i, 1:])
    check(lambda a: a[B64.convert(mask)], [x], lambda a: a[mask])


def test_tensor_comparison_operators_and_protocols():
    with unidl.use_backend(B64):
        x = ops.convert(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal((x < 0).numpy(), [True, False, False])
    np.testing.assert_array_equal((0 <= x).numpy(), [False, True, True])
    np.testing.assert_array_equal((x > 0).numpy(), [False, False, True])
    np.testing.assert_array_equal((x >= 0).numpy(), [False, True, True])
    assert x == x and x != B64.convert(x.numpy())  # identity: tensors stay hashable
    assert {x: 1}[x] == 1
    assert (x.shape, x.ndim, x.dtype, len(x)) == ((3,), 1, "float64", 3)
    np.testing.assert_array_equal(np.asarray(x), x.numpy())
    assert float(B64.sum(x)) == 1.0 and "float64" in repr(x)


# ================================================================ conversion and state

def test_convert_dtypes():
    for backend in (B32, B64):
        assert backend.convert(1.5).dtype == backend.dtype
        assert backend.convert(np.ones(2, np.float32)).dtype == backend.dtype
        assert backend.convert(np.ones(2, np.int32)).dtype == "int64"
        assert backend.convert(np.ones(2, np.uint8)).dtype == "int64"
        assert backend.convert(3).dtype == "int64"
        assert backend.convert(np.array([True])).dtype == "bool"
        t = backend.convert([1.0, 2.0])
        assert backend.convert(t) is t
        assert backend.convert(t, dtype="float64").dtype == "float64"
        assert backend.shape(backend.convert(np.zeros((2, 1, 3)))) == (2, 1, 3)
        assert all(type(d) is int for d in backend.shape(backend.convert(np.zeros((2, 3)))))


def test_convert_and_to_numpy_copy():
    src = np.zeros(3)
    t = B64.convert(src)
    src[0] = 1.0
    assert t.numpy()[0] == 0.0
    out = B64.to_numpy(t)
    out[1] = 5.0
    assert B64.to_numpy(t)[1] == 0.0


def test_variable_and_assign():
    src = np.arange(6.0).reshape(2, 3)
    v = B32.variable(src, trainable=True, name="kernel")
    assert v.dtype == "float32" and v.requires_grad and v.name == "kernel"
    src[0, 0] = 100.0
    assert v.numpy()[0, 0] == 0.0  # a copy
    data = v.data
    B32.assign(v, np.ones((2, 3)))
    assert v.data is data and v.dtype == "float32"  # in place
    np.testing.assert_array_equal(v.numpy(), np.ones((2, 3)))
    B32.assign(v, B32.convert(np.full((2, 3), 2.0)))
    np.testing.assert_array_equal(v.numpy(), np.full((2, 3), 2.0))
    with pytest.raises(ValueError):
        B32.assign(v, np.ones(3))
    assert not B32.variable(np.zeros(2), trainable=False).requires_grad


def test_unidl_variable_binds_to_numpy_backend():
    var = unidl.Variable(np.ones((2, 2)), name="w")
    var.bind(B64)
    with unidl.use_backend(B64):
        y = ops.add(var, 1.0)
    np.testing.assert_array_equal(y.numpy(), np.full((2, 2), 2.0))
    var.assign(np.zeros((2, 2)))
    np.testing.assert_array_equal(var.numpy(), np.zeros((2, 2)))


def test_tensor_operators_accept_unidl_variables():
    # Custom layer code writes `inputs * self.scale` with a bound unidl.Variable on either side.
    scale = unidl.Variable(np.array([1.0, 2.0, 3.0]), name="scale")
    scale.bind(B64)
    x = B64.convert(np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]]))
    with unidl.use_backend(B64):  # Variable's own operators dispatch through unidl.ops
        _, _, [g] = B64.value_and_grad(lambda: (B64.sum(x * scale + scale * x - (2.0 ** (x - scale)) * 0.0),
                                                None), [scale.value])
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy().sum(axis=0), rtol=FORWARD_F64.rtol)


def test_backend_info():
    assert B64.name == "numpy" and B64.framework == "numpy"
    assert B64.framework_version() == np.__version__
    assert B64.devices() == ["cpu"]
    with pytest.raises(unidl.BackendError):
        unidl.get_backend("numpy", dtype="float16")
    with pytest.raises(unidl.BackendError):
        unidl.get_backend("numpy", device="cuda:0")


# ======================================================================== the tape

def test_value_and_grad_basic_and_unused_variable():
    w = B64.variable(np.array([[1.0, 2.0], [3.0, 4.0]]))
    unused = B64.variable(np.ones(3))
    x = B64.convert(np.array([[0.5, -1.0]]))

    def fn():
        y = B64.matmul(x, w)
        return B64.sum(B64.multiply(y, y)), {"y": y}

    loss, aux, (gw, gu) = B64.value_and_grad(fn, [w, unused])
    y = x.numpy() @ w.numpy()
    assert float(loss) == pytest.approx(float(np.sum(y * y)))
    np.testing.assert_allclose(gw.numpy(), x.numpy().T @ (2 * y), rtol=FORWARD_F64.rtol)
    np.testing.assert_array_equal(gu.numpy(), np.zeros(3))
    assert gw.shape == (2, 2) and not gw.requires_grad
    assert not loss.requires_grad and not aux["y"].requires_grad


def test_accumulation_tensor_used_twice():
    x = u(3, 4)
    check(lambda a: ops.add(ops.multiply(a, a), a), [x])
    v = B64.variable(x)
    _, _, [g] = B64.value_and_grad(lambda: (B64.sum(B64.add(B64.multiply(v, v), v)), None), [v])
    np.testing.assert_allclose(g.numpy(), 2 * x + 1, rtol=FORWARD_F64.rtol)


def test_diamond_graph_order():
    # y feeds z directly and through a longer path: y's gradient must be complete
    # before it is passed to x (a wrong topological order would lose a term).
    x = u(4)

    def fn(a):
        y = ops.exp(a)
        w = ops.tanh(ops.multiply(y, 2.0))
        return ops.add(ops.multiply(y, w), y)
    check(fn, [x])


@pytest.mark.parametrize("depth", [2000, 20000])
def test_deep_chain_no_recursion(depth):
    v = B64.variable(np.array([1.0, 2.0]))

    def fn():
        y = v
        for _ in range(depth):
            y = B64.add(y, v)
        return B64.sum(y), None

    loss, _, [g] = B64.value_and_grad(fn, [v])
    np.testing.assert_array_equal(g.numpy(), [depth + 1.0, depth + 1.0])
    assert float(loss) == 3.0 * (depth + 1)


def test_no_graph_kept_after_value_and_grad():
    v = B64.variable(u(3))
    seen = []

    def fn():
        hidden = B64.tanh(v)
        seen.append(weakref.ref(hidden))
        return B64.sum(B64.multiply(hidden, hidden)), hidden

    loss, aux, _ = B64.value_and_grad(fn, [v])
    assert not loss.requires_grad and not aux.requires_grad
    # Nothing returned refers to the recorded graph: its nodes are already freed.
    assert seen[0]() is None
    gc.collect()
    assert seen[0]() is None


def test_grad_wrt_inputs_leaves_inputs_untouched():
    x = B64.convert(u(2, 3))
    value, [g] = B64.grad_wrt_inputs(lambda t: B64.sum(B64.square(t)), [x])
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy(), rtol=FORWARD_F64.rtol)
    assert float(value) == pytest.approx(float(np.sum(x.numpy() ** 2)))
    assert not x.requires_grad and not value.requires_grad
    with pytest.raises(ValueError):
        B64.grad_wrt_inputs(lambda t: B64.square(t), [x])  # not a scalar


def test_no_grad_records_nothing():
    v = B64.variable(u(3))
    with B64.no_grad():
        y = B64.multiply(v, 2.0)
        with B64.no_grad():  # nests
            z = B64.exp(v)
        w = B64.add(v, 1.0)
    assert not (y.requires_grad or z.requires_grad or w.requires_grad)
    assert B64.multiply(v, 2.0).requires_grad  # back on afterwards

    def fn():
        with B64.no_grad():
            frozen = B64.multiply(v, v)
        return B64.sum(B64.add(frozen, v)), None
    _, _, [g] = B64.value_and_grad(fn, [v])
    np.testing.assert_array_equal(g.numpy(), np.ones(3))  # the no_grad branch contributes nothing


def test_value_and_grad_records_inside_no_grad():
    v = B64.variable(u(3))
    with B64.no_grad():
        _, _, [g] = B64.value_and_grad(lambda: (B64.sum(B64.multiply(v, 3.0)), None), [v])
    np.testing.assert_array_equal(g.numpy(), np.full(3, 3.0))


# ================================================================ float32 preservation

SCALAR_OPS = ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum"]


@pytest.mark.parametrize("scalar", [0.5, 2, np.float64(0.5), np.float32(0.5)], ids=repr)
@pytest.mark.parametrize("name", SCALAR_OPS)
def test_float32_stays_float32_with_scalars(name, scalar):
    op = getattr(B32, name)
    v = B32.variable(np.array([0.5, 1.5, 2.0]))
    assert op(v, scalar).dtype == "float32"
    assert op(scalar, v).dtype == "float32"
    # The raw tape gradient: value_and_grad would cast a drifted float64 gradient back.
    raw = autodiff.gradients(B32.sum(B32.add(op(v, scalar), op(scalar, v))))
    assert raw[v].dtype == np.float32


def test_float32_stays_float32_everywhere():
    v = B32.variable(u(2, 3, lo=0.5, hi=1.5))
    mask = B32.greater(v, 1.0)

    def fn():
        outs = [B32.where(mask, v, 0.0), B32.where(mask, 1.0, v), B32.clip(v, 0.0, 1.0), B32.erf(v),
                B32.sigmoid(v), B32.sqrt(v), B32.log(v), B32.mean(v, axis=0), B32.max(v, axis=-1),
                B32.softmax(v), B32.logsumexp(v), B32.softplus(v), v * 0.5 + 1, 2 ** v, B32.square(v),
                B32.divide(1.0, v), B32.power(v, v), B32.take(v, [1, 1], axis=1), B32.matmul(v, B32.transpose(v))]
        for o in outs:
            assert o.dtype == "float32", o
        return B32.add(B32.sum(B32.concatenate([B32.reshape(o, (-1,)) for o in outs], axis=0)), 1.0), None

    loss, _, [g] = B32.value_and_grad(fn, [v])
    assert loss.dtype == "float32" and g.dtype == "float32"
    # The raw tape gradient, before value_and_grad casts it to the variable's dtype:
    # no backward rule may drift to float64 on the way.
    with unidl.use_backend(B32):
        raw = autodiff.gradients(fn()[0])
    assert raw[v].dtype == np.float32
    _, [gi] = B32.grad_wrt_inputs(lambda t: B32.sum(B32.tanh(t) * 3.0), [u(4)])
    assert gi.dtype == "float32"


# ===================================================================== threads

def test_threads_compute_their_own_gradients():
    shared = B64.variable(np.array([1.0, 2.0, 3.0]))
    expected = {"square": 2 * shared.numpy(), "cube": 3 * shared.numpy() ** 2}
    fns = {"square": lambda: B64.multiply(shared, shared),
           "cube": lambda: B64.multiply(B64.multiply(shared, shared), shared)}
    errors: list[str] = []
    barrier = threading.Barrier(2)

    def worker(kind):
        barrier.wait()
        for _ in range(200):
            _, _, [g] = B64.value_and_grad(lambda: (B64.sum(fns[kind]()), None), [shared])
            if not np.allclose(g.numpy(), expected[kind], rtol=FORWARD_F64.rtol):
                errors.append(kind)

    threads = [threading.Thread(target=worker, args=(k,)) for k in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_no_grad_is_per_thread():
    v = B64.variable(u(3))
    entered, done = threading.Event(), threading.Event()
    result = {}

    def holder():
        with B64.no_grad():
            entered.set()
            done.wait(timeout=10)

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(timeout=10)
    result["recorded"] = B64.multiply(v, 2.0).requires_grad  # this thread still records
    done.set()
    t.join()
    assert result["recorded"]

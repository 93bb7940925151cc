"""The NumPy reference backend's neural-network primitives (pad, conv2d, conv2d_transpose, pools).

The reference must be right on its own, since every other backend is measured
against it (in the conformance kit, unidl/testing/opspecs_nn.py). So here:

* its forward pass is compared with naive implementations written below, one
  Python loop per output element, straight from the contract in
  ``unidl.backend.NN_PRIMITIVES`` (tiny sizes: they are slow on purpose);
* its gradients are compared with central finite differences in float64;
* ``conv2d_transpose`` is compared with what the contract defines it as: the
  gradient of ``conv2d`` with respect to its input, through ``grad_wrt_inputs``;
* tie-breaking (max pool's first maximum), padding rules and errors are pinned.
"""
from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest

import unidl
from unidl import ops
from unidl import tolerances
from unidl.testing.checks import compare
from unidl.testing.gradcheck import central_differences

FORWARD = tolerances.FORWARD_F64
FD = tolerances.FD_F64


@pytest.fixture(scope="module")
def np64():
    return unidl.get_backend("numpy", dtype="float64")


def _close(actual, expected, tol) -> None:
    """Shape, then values within ``tol``; a failure gives the max abs/rel error (the kit's message)."""
    compare("the NumPy reference", actual, expected, tol)


def _rng(*key) -> np.random.Generator:
    # crc32, not hash(): str hashes change from run to run, and the inputs must not.
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ------------------------------------------------------------- naive oracles

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding, size, kernel, strides, dilation):
    """((top, bottom), (left, right)); "same" per CONVENTIONS.md, extra cell after."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilation):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    return tuple(tuple(p) for p in padding)


def naive_conv2d(x, k, strides=1, padding="valid", dilation=1, groups=1):
    s, d = _pair(strides), _pair(dilation)
    n, h, w, c = x.shape
    kh, kw, cg, o = k.shape
    (t, b), (l, r) = _pads(padding, (h, w), (kh, kw), s, d)
    og = o // groups
    ho = (h + t + b - (kh - 1) * d[0] - 1) // s[0] + 1
    wo = (w + l + r - (kw - 1) * d[1] - 1) // s[1] + 1
    y = np.zeros((n, ho, wo, o))
    for bi, yi, xi, oi in itertools.product(range(n), range(ho), range(wo), range(o)):
        group = oi // og
        acc = 0.0
        for i, j, ci in itertools.product(range(kh), range(kw), range(cg)):
            row, col = yi * s[0] + i * d[0] - t, xi * s[1] + j * d[1] - l
            if 0 <= row < h and 0 <= col < w:  # outside the input: a zero of the padding
                acc += x[bi, row, col, group * cg + ci] * k[i, j, ci, oi]
        y[bi, yi, xi, oi] = acc
    return y


def naive_conv2d_transpose(x, k, strides=1, padding="valid", dilation=1):
    """Scatter form: each input cell adds x * kernel onto the output at stride spacing, then crop."""
    s, d = _pair(strides), _pair(dilation)
    n, h, w, c = x.shape
    kh, kw, o, _ = k.shape
    full_h, full_w = (h - 1) * s[0] + (kh - 1) * d[0] + 1, (w - 1) * s[1] + (kw - 1) * d[1] + 1
    full = np.zeros((n, full_h, full_w, o))
    for bi, yi, xi, ci, i, j in itertools.product(range(n), range(h), range(w), range(c), range(kh), range(kw)):
        full[bi, yi * s[0] + i * d[0], xi * s[1] + j * d[1], :] += x[bi, yi, xi, ci] * k[i, j, :, ci]
    out_h, out_w = (h * s[0], w * s[1]) if padding == "same" else (full_h, full_w)
    (t, _), (l, _) = _pads(padding, (out_h, out_w), (kh, kw), s, d)
    out = np.zeros((n, out_h, out_w, o))
    for yi, xi in itertools.product(range(out_h), range(out_w)):
        if yi + t < full_h and xi + l < full_w:  # beyond the full output: rows no kernel tap reaches
            out[:, yi, xi, :] = full[:, yi + t, xi + l, :]
    return out


def _naive_windows(x, pool, strides, padding):
    """Yield (output index, list of (row, col) input cells inside the window), row-major."""
    k = _pair(pool)
    s = k if strides is None else _pair(strides)
    h, w = x.shape[1:3]
    (t, b), (l, r) = _pads(padding, (h, w), k, s, (1, 1))
    ho, wo = (h + t + b - k[0]) // s[0] + 1, (w + l + r - k[1]) // s[1] + 1
    for yi, xi in itertools.product(range(ho), range(wo)):
        cells = [(yi * s[0] + i - t, xi * s[1] + j - l) for i in range(k[0]) for j in range(k[1])]
        yield (yi, xi), (ho, wo), [(rr, cc) for rr, cc in cells if 0 <= rr < h and 0 <= cc < w]


def naive_pool(x, pool, strides=None, padding="valid", kind="max"):
    """Forward and the gradient of sum(out * upstream) for upstream = ones, per the contract."""
    out, grad = None, np.zeros_like(x)
    for (yi, xi), (ho, wo), cells in _naive_windows(x, pool, strides, padding):
        if out is None:
            out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
        for bi, ci in itertools.product(range(x.shape[0]), range(x.shape[3])):
            values = [x[bi, rr, cc, ci] for rr, cc in cells]
            if kind == "max":
                first = int(np.argmax(values))  # numpy's argmax: the first maximal cell, row-major
                out[bi, yi, xi, ci] = values[first]
                grad[(bi, *cells[first], ci)] += 1.0
            else:
                out[bi, yi, xi, ci] = sum(values) / len(values)  # cells inside the input only
                for rr, cc in cells:
                    grad[bi, rr, cc, ci] += 1.0 / len(values)
    return out, grad


# ------------------------------------------------------------- forward

CONV_CASES = [  # (x shape, kernel shape, kwargs)
    ((2, 5, 5, 3), (3, 3, 3, 4), {}),
    ((2, 6, 5, 3), (3, 3, 3, 2), {"padding": "same"}),                      # odd and even: asymmetric same
    ((1, 6, 6, 2), (2, 2, 2, 3), {"padding": "same"}),                      # even kernel: extra after
    ((2, 7, 6, 2), (3, 3, 2, 3), {"strides": 2, "padding": "same"}),
    ((2, 7, 8, 2), (3, 2, 2, 3), {"strides": (2, 3)}),
    ((1, 7, 7, 2), (3, 3, 2, 2), {"dilation": 2}),
    ((1, 8, 7, 2), (3, 3, 2, 2), {"dilation": (2, 1), "padding": "same"}),
    ((1, 9, 9, 2), (3, 3, 2, 2), {"dilation": 2, "strides": 2, "padding": "same"}),
    ((2, 5, 5, 4), (3, 3, 2, 6), {"groups": 2, "padding": "same"}),
    ((1, 5, 5, 3), (3, 3, 1, 6), {"groups": 3}),                             # depthwise, multiplier 2
    ((2, 4, 5, 3), (1, 1, 3, 4), {}),                                        # 1x1
    ((1, 4, 4, 3), (1, 1, 3, 2), {"strides": 2, "padding": "same"}),         # 1x1, stride > kernel
    ((1, 5, 4, 2), (3, 3, 2, 2), {"padding": ((1, 0), (2, 1))}),             # explicit
    ((1, 4, 4, 2), (2, 2, 2, 2), {"padding": ((0, 3), (1, 1)), "strides": 2}),
]


@pytest.mark.parametrize("x_shape, k_shape, kwargs", CONV_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_matches_the_naive_loop(np64, x_shape, k_shape, kwargs):
    rng = _rng("conv", x_shape, k_shape, kwargs)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    with unidl.use_backend(np64):
        got = np64.to_numpy(ops.conv2d(np64.convert(x), np64.convert(k), **kwargs))
    _close(got, naive_conv2d(x, k, **kwargs), FORWARD)


TRANSPOSE_CASES = [  # (x shape, kernel shape (kh, kw, O, C), kwargs)
    ((2, 3, 4, 2), (3, 3, 3, 2), {}),
    ((1, 3, 3, 2), (3, 3, 2, 2), {"strides": 2}),
    ((1, 3, 4, 2), (3, 3, 2, 2), {"strides": 2, "padding": "same"}),
    ((1, 3, 3, 2), (2, 2, 3, 2), {"strides": 2, "padding": "same"}),          # even kernel
    ((1, 3, 3, 2), (4, 3, 2, 2), {"strides": (1, 2), "padding": "same"}),
    ((1, 3, 3, 1), (3, 3, 2, 1), {"dilation": 2}),
    ((1, 3, 3, 1), (3, 2, 2, 1), {"dilation": 2, "strides": 2, "padding": "same"}),
    ((1, 3, 3, 2), (1, 1, 2, 2), {"strides": 3, "padding": "same"}),          # rows no tap reaches: zeros
]


@pytest.mark.parametrize("x_shape, k_shape, kwargs", TRANSPOSE_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_transpose_matches_the_naive_scatter(np64, x_shape, k_shape, kwargs):
    rng = _rng("convT", x_shape, k_shape, kwargs)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    with unidl.use_backend(np64):
        got = np64.to_numpy(ops.conv2d_transpose(np64.convert(x), np64.convert(k), **kwargs))
    _close(got, naive_conv2d_transpose(x, k, **kwargs), FORWARD)


@pytest.mark.parametrize("x_shape, k_shape, kwargs", TRANSPOSE_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_transpose_is_the_input_gradient_of_conv2d(np64, x_shape, k_shape, kwargs):
    # The contract's definition: conv2d_transpose(x, k) = d/dz sum(conv2d(z, k) * x), z of the output's shape.
    rng = _rng("convT-grad", x_shape, k_shape, kwargs)
    x, k = np64.convert(rng.standard_normal(x_shape)), np64.convert(rng.standard_normal(k_shape))
    with unidl.use_backend(np64):
        y = ops.conv2d_transpose(x, k, **kwargs)
        z = np64.convert(np.zeros(np64.shape(y)))
        _, (dz,) = np64.grad_wrt_inputs(lambda z: ops.sum(ops.multiply(ops.conv2d(z, k, **kwargs), x)), [z])
    _close(np64.to_numpy(y), np64.to_numpy(dz), FORWARD)


POOL_CASES = [  # (x shape, kwargs)
    ((2, 4, 4, 3), {"pool_size": 2}),
    ((1, 5, 5, 2), {"pool_size": 2}),                                        # odd size: the last row dropped
    ((1, 5, 4, 2), {"pool_size": 2, "padding": "same"}),                     # asymmetric same
    ((1, 5, 5, 2), {"pool_size": 3, "strides": 1}),                          # overlapping windows
    ((1, 6, 5, 2), {"pool_size": 3, "strides": 2, "padding": "same"}),
    ((1, 6, 6, 1), {"pool_size": (2, 3), "strides": (1, 2), "padding": "same"}),
    ((1, 4, 5, 2), {"pool_size": 2, "strides": 2, "padding": ((1, 0), (0, 1))}),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_pools_match_the_naive_loop(np64, kind, x_shape, kwargs):
    # Values on a grid of step 1: ties within windows, to pin max pool's first-maximum rule.
    x = np.round(_rng("pool", kind, x_shape, kwargs).uniform(-3, 3, x_shape))
    want, want_grad = naive_pool(x, kwargs["pool_size"], kwargs.get("strides"), kwargs.get("padding", "valid"), kind)
    op = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    with unidl.use_backend(np64):
        got = op(np64.convert(x), **kwargs)
        _, (grad,) = np64.grad_wrt_inputs(lambda t: ops.sum(op(t, **kwargs)), [np64.convert(x)])
    _close(np64.to_numpy(got), want, FORWARD)
    _close(np64.to_numpy(grad), want_grad, FORWARD)


def test_max_pool_gives_each_window_to_its_first_maximum(np64):
    x = np.array([[3.0, 3.0, 1.0],
                  [3.0, 2.0, 3.0],
                  [0.0, 3.0, 3.0]])[None, :, :, None]
    # 2x2 windows at stride 1, each with max 3; their first 3 (row-major) sits at
    # (0, 0), (0, 1), (1, 0) and (1, 2) respectively.
    want = np.array([[1.0, 1.0, 0.0],
                     [1.0, 0.0, 1.0],
                     [0.0, 0.0, 0.0]])
    center = x.copy()
    center[0, 1, 1, 0] = 4.0  # now it wins all four overlapping windows: its gradient accumulates
    with unidl.use_backend(np64):
        _, (grad,) = np64.grad_wrt_inputs(lambda t: ops.sum(ops.max_pool2d(t, 2, strides=1)), [np64.convert(x)])
        _, (grad_center,) = np64.grad_wrt_inputs(lambda t: ops.sum(ops.max_pool2d(t, 2, strides=1)),
                                                 [np64.convert(center)])
    np.testing.assert_array_equal(np64.to_numpy(grad)[0, :, :, 0], want)
    np.testing.assert_array_equal(np64.to_numpy(grad_center)[0, :, :, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])


def test_max_pool_same_padding_never_wins(np64):
    x = np.full((1, 3, 3, 1), -5.0)
    with unidl.use_backend(np64):
        y = np64.to_numpy(ops.max_pool2d(np64.convert(x), 2, padding="same"))
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 1), -5.0))


def test_avg_pool_same_does_not_count_padding(np64):
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    with unidl.use_backend(np64):
        y = np64.to_numpy(ops.avg_pool2d(np64.convert(x), 2, padding="same"))[0, :, :, 0]
    # Windows: {0,1,3,4}, {2,5}, {6,7}, {8}.
    np.testing.assert_array_equal(y, [[2.0, 3.5], [6.5, 8.0]])


def test_pad_is_numpy_pad_and_its_gradient_slices_back(np64):
    x = _rng("pad").standard_normal((2, 3, 4))
    widths = ((1, 0), (0, 2), (3, 1))
    r = _rng("pad-r").standard_normal(np.pad(x, widths).shape)
    with unidl.use_backend(np64):
        y = ops.pad(np64.convert(x), widths, value=-np.inf)
        _, (grad,) = np64.grad_wrt_inputs(
            lambda t: ops.sum(ops.multiply(ops.pad(t, widths, value=1.5), np64.convert(r))), [np64.convert(x)])
    np.testing.assert_array_equal(np64.to_numpy(y), np.pad(x, widths, constant_values=-np.inf))
    np.testing.assert_array_equal(np64.to_numpy(grad), r[1:3, 0:3, 3:7])


def test_float32_stays_float32():
    np32 = unidl.get_backend("numpy", dtype="float32")
    x, k = np32.convert(np.ones((1, 4, 4, 2))), np32.convert(np.ones((3, 3, 2, 2)))
    with unidl.use_backend(np32):
        outs = [ops.conv2d(x, k, padding="same"), ops.conv2d_transpose(x, k, strides=2),
                ops.max_pool2d(x, 2, padding="same"), ops.avg_pool2d(x, 3, strides=1, padding="same"),
                ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))]
        _, grads = np32.grad_wrt_inputs(lambda a, b: ops.sum(ops.conv2d(a, b)), [x, k])
    assert [np32.to_numpy(t).dtype for t in outs + grads] == [np.float32] * 7


# ------------------------------------------------------------- gradients vs finite differences

def _check_fd(backend, op, arrays, kwargs, key):
    """Gradient of sum(op(*arrays) * r) w.r.t. every array vs central differences."""
    with unidl.use_backend(backend):
        out_shape = backend.shape(op(*[backend.convert(a) for a in arrays], **kwargs))
        r = backend.convert(_rng("upstream", key).standard_normal(out_shape))

        def objective(*ts):
            return ops.sum(ops.multiply(op(*ts, **kwargs), r))

        _, grads = backend.grad_wrt_inputs(objective, [backend.convert(a) for a in arrays])
        for i, a in enumerate(arrays):
            def f(v, i=i):
                args = [backend.convert(v if j == i else b) for j, b in enumerate(arrays)]
                return float(backend.to_numpy(objective(*args)))
            _close(backend.to_numpy(grads[i]), central_differences(f, a), FD)


@pytest.mark.parametrize("x_shape, k_shape, kwargs", [c for c in CONV_CASES if c[0][0] * np.prod(c[0][1:]) <= 150],
                         ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_gradients_match_finite_differences(np64, x_shape, k_shape, kwargs):
    rng = _rng("conv-fd", x_shape, k_shape, kwargs)
    _check_fd(np64, ops.conv2d, [rng.standard_normal(x_shape), rng.standard_normal(k_shape)], kwargs,
              (x_shape, k_shape, str(kwargs)))


@pytest.mark.parametrize("x_shape, k_shape, kwargs", TRANSPOSE_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_conv2d_transpose_gradients_match_finite_differences(np64, x_shape, k_shape, kwargs):
    rng = _rng("convT-fd", x_shape, k_shape, kwargs)
    _check_fd(np64, ops.conv2d_transpose, [rng.standard_normal(x_shape), rng.standard_normal(k_shape)], kwargs,
              (x_shape, k_shape, str(kwargs)))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES, ids=lambda v: str(v).replace(" ", ""))
def test_pool_gradients_match_finite_differences(np64, kind, x_shape, kwargs):
    # Continuous random values: no ties, so the max is differentiable everywhere here.
    x = _rng("pool-fd", kind, x_shape, kwargs).standard_normal(x_shape)
    _check_fd(np64, ops.max_pool2d if kind == "max" else ops.avg_pool2d, [x], kwargs, (kind, x_shape, str(kwargs)))


def test_pad_gradient_matches_finite_differences(np64):
    _check_fd(np64, ops.pad, [_rng("pad-fd").standard_normal((2, 3))], {"pad_width": ((1, 2), (0, 1))}, "pad")


# ------------------------------------------------------------- errors

@pytest.mark.parametrize("call", [
    lambda x, k: ops.conv2d(x, k, padding="full"),
    lambda x, k: ops.conv2d(x, k, padding=((1, 1),)),
    lambda x, k: ops.conv2d(x, k, padding=((-1, 0), (0, 0))),
    lambda x, k: ops.conv2d(x, k, strides=0),
    lambda x, k: ops.conv2d(x, k, groups=2),                    # C = 3 is not divisible by 2
    lambda x, k: ops.conv2d(x, k, dilation=3),                 # a window of 7 > the input's 5
    lambda x, k: ops.max_pool2d(x, 2, padding=((2, 0), (0, 0))),  # a window of padding only
    lambda x, k: ops.avg_pool2d(x, 2, padding="full"),
    lambda x, k: ops.conv2d_transpose(x, k),                     # kernel (kh, kw, O, C=2), x has 3 channels
    lambda x, k: ops.conv2d_transpose(x, ops.transpose(k, (0, 1, 3, 2)), padding=((9, 9), (0, 0))),  # empty
    lambda x, k: ops.pad(x, ((1, 1),)),
], ids=["bad_mode", "short_explicit", "negative_explicit", "zero_stride", "groups", "window_too_large",
        "pool_padding_too_large", "pool_bad_mode", "transpose_channels", "transpose_empty", "pad_width_rank"])
@pytest.mark.parametrize("name", ["numpy", "torch", "tensorflow"])
def test_bad_arguments_raise_value_error_on_every_backend(name, call):
    # Same bad input, same exception type everywhere (the frameworks' own errors differ).
    pytest.importorskip(name)
    backend = unidl.get_backend(name, dtype="float64")
    x, k = backend.convert(np.ones((1, 5, 5, 3))), backend.convert(np.ones((3, 3, 3, 2)))
    with unidl.use_backend(backend), pytest.raises(ValueError):
        call(x, k)


# ------------------------------------------------------------- TensorFlow graphs
# The kit runs ops eagerly; a compiled train step runs them in a tf.function whose
# batch axis is unknown (None). Shapes that depend on the batch must come from
# tf.shape there (conv2d_transpose's output_shape), so check that path too.

def _nn_chain(x, k, kt, kg, kd):
    """Every NN op and code path once (groups split, depthwise, dilation, transpose, pools, pad)."""
    y = ops.conv2d(x, k, strides=2, padding="same")                                   # (N, 3, 3, 4)
    y = ops.conv2d(y, kg, padding="same", groups=2, dilation=2)                       # split groups, dilated
    y = ops.conv2d(y, kd, padding=((1, 0), (0, 1)), groups=4)                         # depthwise, explicit
    y = ops.conv2d_transpose(ops.tanh(y), kt, strides=2, padding="same", dilation=(1, 2))  # (N, 6, 6, 2)
    y = ops.max_pool2d(y, 3, strides=2, padding="same")                               # asymmetric same
    y = ops.avg_pool2d(ops.pad(y, ((0, 0), (1, 0), (0, 1), (0, 0)), value=0.5), 2, strides=1,
                       padding=((1, 0), (0, 1)))
    return ops.sum(ops.square(y))


def test_tensorflow_nn_ops_run_in_a_compiled_step_with_unknown_batch():
    pytest.importorskip("tensorflow")
    tfb = unidl.get_backend("tensorflow", dtype="float64")
    ref = unidl.get_backend("numpy", dtype="float64")
    rng = _rng("tf-graph")
    # kt is a transpose kernel (kh, kw, O, C); kg a 2-group kernel; kd a depthwise one.
    k, kg, kt, kd = (rng.standard_normal(s) * 0.5 for s in ((3, 3, 3, 4), (3, 3, 2, 4), (2, 2, 2, 4), (2, 2, 1, 4)))

    def run(backend, compiled):
        variables = [backend.variable(w) for w in (k, kt, kg, kd)]

        def step(x):
            with unidl.use_backend(backend):
                loss, _, grads = backend.value_and_grad(lambda: (_nn_chain(x, *variables), None), variables)
            return loss, grads
        return backend.compile_step(step) if compiled else step

    compiled, reference = run(tfb, True), run(ref, False)
    for batch in (2, 3):  # one traced graph serves both batch sizes
        x = rng.standard_normal((batch, 6, 5, 3))
        loss, grads = compiled(tfb.convert(x))
        want_loss, want_grads = reference(ref.convert(x))
        _close(tfb.to_numpy(loss), ref.to_numpy(want_loss), tolerances.FORWARD_F64)
        for got, want in zip(grads, want_grads):
            _close(tfb.to_numpy(got), ref.to_numpy(want), tolerances.GRAD_F64)

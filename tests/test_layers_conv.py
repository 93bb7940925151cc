"""Convolution, pooling and reshaping layers.

Shapes and parameter counts are checked against Keras's formulas, written out
here; forward values against naive loops over NumPy arrays; gradients against
central finite differences (float64); training against the other backends.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.backend import NN_PRIMITIVES
from unidl.layers.base import LayerShapeError
from unidl.layers.convolutional import Conv1D, Conv2D, Conv2DTranspose
from unidl.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                                  GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D,
                                  MaxPooling2D)
from unidl.layers.reshaping import Permute, UpSampling2D, ZeroPadding2D
from unidl.testing.gradcheck import central_differences_of_state
from unidl.testing.tolerances import FD_F64, FORWARD_F32, FORWARD_F64, GRAD_F64, TRAJECTORY_F32, TRAJECTORY_F64

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]
OTHERS = [b for b in BACKENDS if b != "numpy"]


# ------------------------------------------------------------------ references

def keras_length(n, k, s, padding, d=1):
    """Keras's conv/pool output length (keras/src/ops/operation_utils.py)."""
    if n is None:
        return None
    if padding in ("same", "causal"):
        return math.floor((n - 1) / s) + 1
    return math.floor((n - ((k - 1) * d + 1)) / s) + 1


def keras_transpose_length(n, k, s, padding, d=1):
    """Keras's Conv2DTranspose output length (output_padding=None)."""
    if n is None:
        return None
    k = k + (k - 1) * (d - 1)
    return n * s if padding == "same" else n * s + max(k - s, 0)


def same_pads(n, k, s, d=1):
    """(before, after) of "same" padding (CONVENTIONS.md)."""
    total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def naive_conv2d(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    """Cross-correlation by loops. x (N, H, W, C), kernel (kh, kw, C // groups, O)."""
    (kh, kw, cg, out_ch), (sh, sw), (dh, dw) = kernel.shape, strides, dilation
    if padding == "same":
        padding = (same_pads(x.shape[1], kh, sh, dh), same_pads(x.shape[2], kw, sw, dw))
    elif padding == "valid":
        padding = ((0, 0), (0, 0))
    xp = np.pad(x, ((0, 0), *padding, (0, 0)))
    rows = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    cols = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], rows, cols, out_ch))
    per_group = out_ch // groups
    for i in range(rows):
        for j in range(cols):
            for o in range(out_ch):
                g = o // per_group
                for u in range(kh):
                    for v in range(kw):
                        cells = xp[:, i * sh + u * dh, j * sw + v * dw, g * cg:(g + 1) * cg]
                        out[:, i, j, o] += cells @ kernel[u, v, :, o]
    return out


def naive_conv2d_transpose(x, kernel, strides, padding, dilation, out_size):
    """Scatter every input cell through the kernel (kh, kw, O, C), then crop as a Keras "same"/"valid" conv
    of an ``out_size`` input would have padded."""
    (kh, kw, out_ch, _), (sh, sw), (dh, dw) = kernel.shape, strides, dilation
    n, h, w, _ = x.shape
    full = np.zeros((n, (h - 1) * sh + (kh - 1) * dh + 1 + out_size[0],
                     (w - 1) * sw + (kw - 1) * dw + 1 + out_size[1], out_ch))
    for i in range(h):
        for j in range(w):
            for u in range(kh):
                for v in range(kw):
                    full[:, i * sh + u * dh, j * sw + v * dw] += x[:, i, j] @ kernel[u, v].T
    top = same_pads(out_size[0], kh, sh, dh)[0] if padding == "same" else 0
    left = same_pads(out_size[1], kw, sw, dw)[0] if padding == "same" else 0
    return full[:, top:top + out_size[0], left:left + out_size[1]]


def naive_pool2d(x, pool, strides, padding, reduce):
    """Window max/mean over the cells inside the input (padding never counts)."""
    (ph, pw), (sh, sw) = pool, strides
    n, h, w, c = x.shape
    if padding == "same":
        top, left = same_pads(h, ph, sh)[0], same_pads(w, pw, sw)[0]
        rows, cols = math.ceil(h / sh), math.ceil(w / sw)
    else:
        top = left = 0
        rows, cols = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((n, rows, cols, c))
    for i in range(rows):
        for j in range(cols):
            r0, c0 = i * sh - top, j * sw - left
            window = x[:, max(r0, 0):min(r0 + ph, h), max(c0, 0):min(c0 + pw, w)]
            out[:, i, j] = reduce(window.reshape(n, -1, c), axis=1)
    return out


# ------------------------------------------------------------------ helpers

def build(layer, input_shape, seed=0):
    """Build ``layer`` for samples of ``input_shape`` with a seeded generator; returns the output shape."""
    return layer.build_for((None, *input_shape), np.random.default_rng(seed))


def run(layer, x, backend="numpy", dtype="float64"):
    """Forward ``x`` through ``layer`` (built if needed) on ``backend``; returns a NumPy array."""
    be = unidl.get_backend(backend, dtype=dtype)
    if not layer.built:
        build(layer, x.shape[1:])
    for w in layer.weights:
        w.bind(be)
    with unidl.use_backend(be):
        return be.to_numpy(layer(be.convert(x)))


def data(shape, seed=0):
    """Float32-representable samples (so float32 and float64 runs see the same numbers)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(np.float64)


def conv(cls, *args, **kwargs):
    """A conv layer with a random bias (zeros would not test that it is added)."""
    return cls(*args, bias_initializer="random_normal", **kwargs)


# ---------------------------------------------------------------- output shapes

CONV2D_CASES = [  # (kwargs, sample shape)
    (dict(filters=4, kernel_size=3), (7, 6, 2)),
    (dict(filters=4, kernel_size=3, padding="same"), (7, 6, 2)),
    (dict(filters=3, kernel_size=(2, 3), strides=2), (7, 8, 1)),
    (dict(filters=3, kernel_size=(3, 2), strides=(2, 3), padding="same"), (7, 8, 1)),
    (dict(filters=2, kernel_size=3, strides=3, padding="SAME"), (10, 11, 3)),
    (dict(filters=2, kernel_size=3, dilation_rate=2), (9, 8, 2)),
    (dict(filters=2, kernel_size=(2, 3), dilation_rate=(2, 1), padding="same"), (5, 6, 2)),
    (dict(filters=4, kernel_size=2, groups=2), (5, 5, 4)),
    (dict(filters=6, kernel_size=3, groups=3, padding="same", strides=2), (6, 5, 3)),
]


@pytest.mark.parametrize("kwargs, shape", CONV2D_CASES)
def test_conv2d_output_shape_matches_keras(kwargs, shape):
    layer = Conv2D(**kwargs)
    k, s, d = (np.broadcast_to(kwargs.get(a, 1), 2) for a in ("kernel_size", "strides", "dilation_rate"))
    padding = kwargs.get("padding", "valid").lower()
    expected = (None, *(keras_length(n, k[i], s[i], padding, d[i]) for i, n in enumerate(shape[:2])),
                kwargs["filters"])
    assert build(layer, shape) == expected
    assert layer.compute_output_shape((None, None, None, shape[2])) == (None, None, None, kwargs["filters"])
    assert run(layer, data((2, *shape))).shape == (2, *expected[1:])


@pytest.mark.parametrize("kwargs, steps", [
    (dict(filters=3, kernel_size=3), 9), (dict(filters=3, kernel_size=4, strides=2), 9),
    (dict(filters=3, kernel_size=3, padding="same", strides=2), 9),
    (dict(filters=3, kernel_size=3, padding="causal"), 9),
    (dict(filters=3, kernel_size=2, padding="causal", dilation_rate=3), 7),
    (dict(filters=2, kernel_size=3, padding="causal", strides=2), 8),
])
def test_conv1d_output_shape_matches_keras(kwargs, steps):
    layer = Conv1D(**kwargs)
    length = keras_length(steps, kwargs["kernel_size"], kwargs.get("strides", 1), kwargs.get("padding", "valid"),
                          kwargs.get("dilation_rate", 1))
    assert build(layer, (steps, 2)) == (None, length, kwargs["filters"])
    assert run(layer, data((2, steps, 2))).shape == (2, length, kwargs["filters"])


TRANSPOSE_CASES = [  # (kwargs, sample shape)
    (dict(filters=3, kernel_size=3), (4, 5, 2)),
    (dict(filters=3, kernel_size=3, strides=2), (4, 5, 2)),
    (dict(filters=3, kernel_size=3, strides=2, padding="same"), (4, 5, 2)),
    (dict(filters=2, kernel_size=(2, 4), strides=(2, 3), padding="same"), (3, 4, 2)),
    (dict(filters=2, kernel_size=2, strides=3), (3, 2, 1)),          # kernel narrower than the stride
    (dict(filters=2, kernel_size=(1, 3), strides=(2, 2)), (3, 3, 2)),
    (dict(filters=2, kernel_size=3, dilation_rate=2), (3, 4, 2)),
    (dict(filters=2, kernel_size=3, dilation_rate=(2, 1), padding="same"), (3, 4, 2)),
]


@pytest.mark.parametrize("kwargs, shape", TRANSPOSE_CASES)
def test_conv2d_transpose_output_shape_matches_keras(kwargs, shape):
    layer = Conv2DTranspose(**kwargs)
    k, s, d = (np.broadcast_to(kwargs.get(a, 1), 2) for a in ("kernel_size", "strides", "dilation_rate"))
    padding = kwargs.get("padding", "valid")
    expected = (None, *(keras_transpose_length(n, k[i], s[i], padding, d[i]) for i, n in enumerate(shape[:2])),
                kwargs["filters"])
    assert build(layer, shape) == expected
    assert run(layer, data((2, *shape))).shape == (2, *expected[1:])


POOL_CASES = [  # (class, kwargs, sample shape)
    (MaxPooling2D, {}, (6, 7, 2)),
    (MaxPooling2D, dict(pool_size=3, strides=2), (7, 8, 2)),
    (MaxPooling2D, dict(pool_size=(2, 3), padding="same"), (5, 7, 1)),
    (MaxPooling2D, dict(pool_size=3, strides=1, padding="same"), (4, 5, 2)),
    (AveragePooling2D, {}, (6, 7, 2)),
    (AveragePooling2D, dict(pool_size=3, strides=(2, 1)), (7, 6, 2)),
    (AveragePooling2D, dict(pool_size=(3, 2), strides=2, padding="same"), (5, 7, 3)),
]


@pytest.mark.parametrize("cls, kwargs, shape", POOL_CASES)
def test_pool2d_output_shape_matches_keras(cls, kwargs, shape):
    layer = cls(**kwargs)
    p = np.broadcast_to(kwargs.get("pool_size", 2), 2)
    s = np.broadcast_to(kwargs.get("strides", p), 2)   # strides default to the pool size
    expected = (None, *(keras_length(n, p[i], s[i], kwargs.get("padding", "valid")) for i, n in
                        enumerate(shape[:2])), shape[2])
    assert build(layer, shape) == expected
    assert run(layer, data((2, *shape))).shape == (2, *expected[1:])


@pytest.mark.parametrize("layer, shape, expected", [
    (lambda: MaxPooling1D(), (9, 3), (4, 3)),
    (lambda: AveragePooling1D(3, strides=2), (9, 3), (4, 3)),
    (lambda: MaxPooling1D(2, padding="same"), (9, 3), (5, 3)),
    (lambda: GlobalAveragePooling1D(), (9, 3), (3,)),
    (lambda: GlobalMaxPooling1D(keepdims=True), (9, 3), (1, 3)),
    (lambda: GlobalAveragePooling2D(), (4, 5, 3), (3,)),
    (lambda: GlobalMaxPooling2D(keepdims=True), (4, 5, 3), (1, 1, 3)),
    (lambda: ZeroPadding2D(), (4, 5, 3), (6, 7, 3)),
    (lambda: ZeroPadding2D(2), (4, 5, 3), (8, 9, 3)),
    (lambda: ZeroPadding2D((1, 2)), (4, 5, 3), (6, 9, 3)),
    (lambda: ZeroPadding2D(((1, 0), (2, 3))), (4, 5, 3), (5, 10, 3)),
    (lambda: UpSampling2D(), (2, 3, 2), (4, 6, 2)),
    (lambda: UpSampling2D((3, 1)), (2, 3, 2), (6, 3, 2)),
    (lambda: Permute((2, 1)), (4, 5), (5, 4)),
    (lambda: Permute((3, 1, 2)), (2, 3, 4), (4, 2, 3)),
])
def test_other_layers_output_shapes(layer, shape, expected):
    layer = layer()
    assert build(layer, shape) == (None, *expected)
    assert run(layer, data((2, *shape))).shape == (2, *expected)


# --------------------------------------------------------------- param counts

@pytest.mark.parametrize("layer, shape, count", [
    (lambda: Conv2D(32, 3), (28, 28, 1), 3 * 3 * 1 * 32 + 32),             # 320, as in Keras's MNIST CNN
    (lambda: Conv2D(64, 3), (13, 13, 32), 3 * 3 * 32 * 64 + 64),           # 18,496
    (lambda: Conv2D(8, (3, 2), groups=2), (6, 6, 4), 3 * 2 * (4 // 2) * 8 + 8),
    (lambda: Conv2D(8, 3, use_bias=False), (6, 6, 3), 3 * 3 * 3 * 8),
    (lambda: Conv1D(16, 5), (20, 8), 5 * 8 * 16 + 16),
    (lambda: Conv2DTranspose(16, 3), (5, 5, 8), 3 * 3 * 16 * 8 + 16),
    (lambda: MaxPooling2D(), (6, 6, 3), 0),
    (lambda: GlobalAveragePooling2D(), (6, 6, 3), 0),
    (lambda: UpSampling2D(), (6, 6, 3), 0),
])
def test_param_counts_match_keras(layer, shape, count):
    layer = layer()
    build(layer, shape)
    assert layer.count_params() == count


def test_kernel_layouts_are_keras():
    conv2d, conv1d, transpose = Conv2D(5, (3, 2), groups=1), Conv1D(5, 4), Conv2DTranspose(5, (3, 2))
    build(conv2d, (8, 8, 3)), build(conv1d, (8, 3)), build(transpose, (8, 8, 3))
    assert [w.shape for w in conv2d.weights] == [(3, 2, 3, 5), (5,)]
    assert [w.shape for w in conv1d.weights] == [(4, 3, 5), (5,)]
    assert [w.shape for w in transpose.weights] == [(3, 2, 5, 3), (5,)]
    assert [w.name.split("/")[1] for w in conv2d.weights] == ["kernel", "bias"]


def test_same_seed_same_kernel():
    a, b = Conv2D(4, 3), Conv2D(4, 3)
    build(a, (5, 5, 2), seed=3), build(b, (5, 5, 2), seed=3)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    # glorot_uniform: limit sqrt(6 / (fan_in + fan_out)), fans times the receptive field 3*3
    assert np.abs(a.get_weights()[0]).max() <= math.sqrt(6 / (9 * 2 + 9 * 4))


# ------------------------------------------------------------- forward values

@pytest.mark.parametrize("kwargs, shape", CONV2D_CASES)
def test_conv2d_forward_matches_naive_loops(kwargs, shape):
    layer = conv(Conv2D, **kwargs, activation="tanh")
    x = data((2, *shape))
    out = run(layer, x)
    kernel, bias = layer.get_weights()
    padding = kwargs.get("padding", "valid").lower()
    expected = np.tanh(naive_conv2d(x, kernel, np.broadcast_to(kwargs.get("strides", 1), 2), padding,
                                    np.broadcast_to(kwargs.get("dilation_rate", 1), 2), kwargs.get("groups", 1))
                       + bias)
    np.testing.assert_allclose(out, expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


@pytest.mark.parametrize("padding, strides, dilation", [
    ("valid", 1, 1), ("valid", 2, 1), ("same", 2, 1), ("same", 1, 2), ("causal", 1, 1), ("causal", 1, 2),
    ("causal", 2, 1)])
def test_conv1d_forward_matches_naive_loop(padding, strides, dilation):
    k, steps = 3, 8
    layer = conv(Conv1D, 4, k, strides=strides, padding=padding, dilation_rate=dilation)
    x = data((2, steps, 3))
    out = run(layer, x)
    kernel, bias = layer.get_weights()
    span = (k - 1) * dilation + 1
    before = {"valid": 0, "causal": span - 1, "same": same_pads(steps, k, strides, dilation)[0]}[padding]
    length = keras_length(steps, k, strides, padding, dilation)
    expected = np.zeros((2, length, 4)) + bias
    for t in range(length):
        for u in range(k):
            step = t * strides + u * dilation - before
            if 0 <= step < steps:  # outside the input: a padded zero
                expected[:, t] += x[:, step] @ kernel[u]
    np.testing.assert_allclose(out, expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


def test_causal_conv1d_never_sees_the_future():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = data((1, 10, 2))
    before = run(layer, x)
    x[:, 6:] += 1.0
    after = run(layer, x)
    np.testing.assert_array_equal(after[:, :6], before[:, :6])
    assert not np.allclose(after[:, 6:], before[:, 6:])


@pytest.mark.parametrize("kwargs, shape", TRANSPOSE_CASES)
def test_conv2d_transpose_forward_matches_naive_loops(kwargs, shape):
    layer = conv(Conv2DTranspose, **kwargs)
    x = data((2, *shape))
    out = run(layer, x)
    kernel, bias = layer.get_weights()
    expected = naive_conv2d_transpose(x, kernel, np.broadcast_to(kwargs.get("strides", 1), 2),
                                      kwargs.get("padding", "valid"),
                                      np.broadcast_to(kwargs.get("dilation_rate", 1), 2), out.shape[1:3]) + bias
    np.testing.assert_allclose(out, expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


@pytest.mark.parametrize("kwargs, shape", TRANSPOSE_CASES)
def test_conv2d_transpose_is_the_adjoint_of_conv2d(kwargs, shape):
    # <transpose(x), y> == <x, conv2d(y)> for the same kernel, strides, padding, dilation
    layer = Conv2DTranspose(**kwargs, use_bias=False)
    x = data((2, *shape))
    out = run(layer, x)
    y = data(out.shape, seed=1)
    (kernel,) = layer.get_weights()
    # kernel (kh, kw, filters, channels) is also the kernel of the conv2d from filters to channels
    forward = naive_conv2d(y, kernel, np.broadcast_to(kwargs.get("strides", 1), 2),
                           kwargs.get("padding", "valid"), np.broadcast_to(kwargs.get("dilation_rate", 1), 2))
    assert forward.shape == x.shape
    np.testing.assert_allclose(np.sum(out * y), np.sum(x * forward), rtol=FORWARD_F64.rtol)


@pytest.mark.parametrize("cls, kwargs, shape", POOL_CASES)
def test_pool2d_forward_matches_naive_loops(cls, kwargs, shape):
    x = data((2, *shape))
    layer = cls(**kwargs)
    pool = tuple(np.broadcast_to(kwargs.get("pool_size", 2), 2))
    strides = tuple(np.broadcast_to(kwargs.get("strides", pool), 2))
    expected = naive_pool2d(x, pool, strides, kwargs.get("padding", "valid"),
                            np.max if cls is MaxPooling2D else np.mean)
    np.testing.assert_allclose(run(layer, x), expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


@pytest.mark.parametrize("cls, reduce", [(MaxPooling1D, np.max), (AveragePooling1D, np.mean)])
@pytest.mark.parametrize("kwargs", [{}, dict(pool_size=3, strides=2), dict(pool_size=3, padding="same")])
def test_pool1d_forward_matches_naive_loop(cls, reduce, kwargs):
    x = data((2, 8, 3))
    pool = kwargs.get("pool_size", 2)
    expected = naive_pool2d(x[:, None], (1, pool), (1, kwargs.get("strides", pool)),
                            kwargs.get("padding", "valid"), reduce)[:, 0]
    np.testing.assert_allclose(run(cls(**kwargs), x), expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


@pytest.mark.parametrize("cls, axes, reduce", [
    (GlobalAveragePooling2D, (1, 2), np.mean), (GlobalMaxPooling2D, (1, 2), np.max),
    (GlobalAveragePooling1D, (1,), np.mean), (GlobalMaxPooling1D, (1,), np.max)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_forward(cls, axes, reduce, keepdims):
    x = data((2, 4, 5, 3)[:len(axes) + 1] + (3,))
    expected = reduce(x, axis=axes, keepdims=keepdims)
    np.testing.assert_allclose(run(cls(keepdims=keepdims), x), expected, rtol=FORWARD_F64.rtol,
                               atol=FORWARD_F64.atol)


@pytest.mark.parametrize("padding, pads", [
    (1, ((1, 1), (1, 1))), ((2, 0), ((2, 2), (0, 0))), (((0, 1), (3, 2)), ((0, 1), (3, 2)))])
def test_zero_padding_forward(padding, pads):
    x = data((2, 3, 4, 2))
    out = run(ZeroPadding2D(padding), x)
    (top, bottom), (left, right) = pads
    expected = np.zeros((2, 3 + top + bottom, 4 + left + right, 2))
    expected[:, top:top + 3, left:left + 4] = x
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("size", [2, (3, 1), (1, 2), (2, 3)])
def test_upsampling_forward(size):
    x = data((2, 3, 4, 2))
    out = run(UpSampling2D(size), x)
    sh, sw = np.broadcast_to(size, 2)
    expected = np.zeros((2, 3 * sh, 4 * sw, 2))
    for i in range(3 * sh):
        for j in range(4 * sw):
            expected[:, i, j] = x[:, i // sh, j // sw]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dims, shape", [((2, 1), (3, 4)), ((3, 1, 2), (2, 3, 4)), ((1, 2), (3, 4))])
def test_permute_forward(dims, shape):
    x = data((2, *shape))
    out = run(Permute(dims), x)
    np.testing.assert_array_equal(out, np.transpose(x, (0, *dims)))
    assert out.shape[1:] == tuple(shape[d - 1] for d in dims)


# ---------------------------------------------------------- finite differences

def layer_grads(layer, x, r, backend="numpy", dtype="float64"):
    """Gradients of sum(layer(x) * r) w.r.t. the layer's weights (as NumPy arrays)."""
    be = unidl.get_backend(backend, dtype=dtype)
    for w in layer.weights:
        w.bind(be)
    with unidl.use_backend(be):
        xt, rt = be.convert(x), be.convert(r)
        _, _, grads = be.value_and_grad(lambda: (ops.sum(ops.multiply(layer(xt), rt)), None),
                                        [w.value for w in layer.weights])
    return [be.to_numpy(g) for g in grads]


def weight_fd(layer, x, r, weight):
    """d sum(layer(x) * r) / d weight by central differences (the weight is restored after)."""
    return central_differences_of_state(lambda: run(layer, x) * r, weight.numpy(), weight.assign)


@pytest.mark.parametrize("layer, shape", [
    (lambda: conv(Conv2D, 3, 3, activation="tanh"), (5, 5, 2)),
    (lambda: conv(Conv2D, 2, (3, 2), strides=2, padding="same"), (5, 6, 2)),
    (lambda: conv(Conv2D, 2, 2, dilation_rate=2, padding="same"), (5, 5, 2)),
    (lambda: conv(Conv2D, 4, 2, groups=2), (4, 4, 4)),
    (lambda: conv(Conv1D, 2, 3, padding="causal", dilation_rate=2), (7, 2)),
    (lambda: conv(Conv2DTranspose, 2, 3, strides=2, padding="same"), (3, 3, 2)),
])
def test_weight_gradients_match_finite_differences(layer, shape):
    layer = layer()
    x = data((2, *shape))
    out_shape = (2, *build(layer, shape)[1:])
    r = data(out_shape, seed=1)
    for weight, grad in zip(layer.weights, layer_grads(layer, x, r)):
        np.testing.assert_allclose(grad, weight_fd(layer, x, r, weight), rtol=FD_F64.rtol,
                                   atol=FD_F64.atol, err_msg=weight.name)


# --------------------------------------------------------------------- models

def cnn(seed=0):
    """Conv2D 8 3x3 relu -> MaxPooling2D -> Flatten -> Dense 10 softmax (Keras's MNIST example, small)."""
    return unidl.Sequential([Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(),
                             layers.Flatten(), layers.Dense(10, activation="softmax")], seed=seed)


def images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, n)]
    return x, y


def test_cnn_param_count_and_summary(capsys):
    model = cnn()
    assert model.output_shape == (None, 10)
    # conv 3*3*1*8 + 8; pooled (3, 3, 8) flattened to 72; dense 72*10 + 10
    assert model.count_params() == 80 + 730
    model.summary()
    assert "Total params: 810" in capsys.readouterr().out


def test_cnn_trains_on_numpy():
    x, y = images()
    model = cnn()
    model.compile(optimizer=unidl.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"],
                  backend="numpy")
    history = model.fit(x, y, epochs=30, batch_size=8, verbose=0).history  # memorises the random labels
    assert history["loss"][-1] < 0.25 * history["loss"][0]
    assert history["accuracy"][-1] >= 0.9
    assert model.predict(x).shape == (32, 10)


def skip_without_nn_ops(backend):
    # The NN primitives are new in the contract: until a backend implements them, say so instead of failing.
    missing = [op for op in NN_PRIMITIVES if getattr(type(unidl.get_backend(backend)), op, None) is None]
    if missing:
        pytest.skip(f"backend {backend!r} does not implement {missing} yet")


def train_cnn(backend, dtype, steps=5):
    x, y = images(16)
    model = cnn()
    model.compile(optimizer="adam", loss="categorical_crossentropy", backend=backend, dtype=dtype)
    history = model.fit(x, y, epochs=steps, batch_size=16, shuffle=False, verbose=0)  # one step per epoch
    return history.history["loss"], model.get_weights()


@pytest.mark.skipif(not OTHERS, reason="only the NumPy backend is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("dtype, tol", [("float32", TRAJECTORY_F32), ("float64", TRAJECTORY_F64)])
def test_cnn_losses_match_numpy(backend, dtype, tol):
    skip_without_nn_ops(backend)
    ref_losses, ref_weights = train_cnn("numpy", dtype)
    losses, weights = train_cnn(backend, dtype)
    assert len(losses) == 5
    np.testing.assert_allclose(losses, ref_losses, rtol=tol.rtol, atol=tol.atol)
    for got, want in zip(weights, ref_weights):
        np.testing.assert_allclose(got, want, rtol=tol.rtol, atol=max(tol.atol, tol.rtol * 1e-2))


def every_layer_model(seed=0):
    """One model through every layer of these files (exercises compiled steps with an unknown batch size)."""
    return unidl.Sequential([
        ZeroPadding2D(1, input_shape=(8, 8, 2)),                                    # (10, 10, 2)
        Conv2D(4, 3, strides=2, padding="same", activation="tanh"),                 # (5, 5, 4)
        UpSampling2D(2),                                                            # (10, 10, 4)
        AveragePooling2D(2),                                                        # (5, 5, 4)
        Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh"),        # (10, 10, 3)
        MaxPooling2D(2),                                                            # (5, 5, 3)
        Permute((2, 1, 3)),
        layers.Reshape((25, 3)),
        Conv1D(4, 3, padding="causal", dilation_rate=2, activation="tanh"),         # (25, 4)
        MaxPooling1D(2),                                                            # (12, 4)
        AveragePooling1D(2, padding="same"),                                        # (6, 4)
        GlobalMaxPooling1D(),                                                       # (4,)
        layers.Dense(3, activation="softmax"),
    ], seed=seed)


@pytest.mark.skipif(not OTHERS, reason="only the NumPy backend is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("dtype, tol", [("float32", TRAJECTORY_F32), ("float64", TRAJECTORY_F64)])
def test_every_layer_model_losses_match_numpy(backend, dtype, tol):
    skip_without_nn_ops(backend)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 8, 8, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 12)]
    losses = {}
    for name in ("numpy", backend):
        model = every_layer_model()
        model.compile(optimizer="adam", loss="categorical_crossentropy", backend=name, dtype=dtype)
        losses[name] = model.fit(x, y, epochs=2, batch_size=5, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(losses[backend], losses["numpy"], rtol=tol.rtol, atol=tol.atol)


CROSS_LAYERS = [  # every layer of these files, with options that change the numbers
    (lambda: conv(Conv2D, 3, 3, strides=2, padding="same", activation="tanh"), (5, 6, 2)),
    (lambda: conv(Conv2D, 4, 2, dilation_rate=2, groups=2), (5, 5, 4)),
    (lambda: conv(Conv1D, 3, 3, padding="causal", dilation_rate=2), (7, 2)),
    (lambda: conv(Conv1D, 3, 2, strides=2, padding="same"), (7, 2)),
    (lambda: conv(Conv2DTranspose, 3, 3, strides=2, padding="same"), (3, 4, 2)),
    (lambda: conv(Conv2DTranspose, 2, 2, strides=3), (3, 2, 2)),
    (lambda: MaxPooling2D(3, strides=2, padding="same"), (5, 6, 2)),
    (lambda: AveragePooling2D(3, strides=2, padding="same"), (5, 6, 2)),
    (lambda: MaxPooling1D(3, strides=2), (7, 2)),
    (lambda: AveragePooling1D(2, padding="same"), (7, 2)),
    (lambda: GlobalAveragePooling2D(), (3, 4, 2)),
    (lambda: GlobalMaxPooling1D(keepdims=True), (5, 2)),
    (lambda: ZeroPadding2D(((1, 0), (2, 1))), (3, 4, 2)),
    (lambda: UpSampling2D((2, 3)), (3, 2, 2)),
    (lambda: Permute((2, 3, 1)), (2, 3, 4)),
]


@pytest.mark.skipif(not OTHERS, reason="only the NumPy backend is installed")
@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("layer, shape", CROSS_LAYERS)
def test_layer_forward_and_weight_grads_match_numpy(backend, layer, shape):
    skip_without_nn_ops(backend)
    layer = layer()
    x = data((2, *shape))
    r = data((2, *build(layer, shape)[1:]), seed=1)
    expected, got = run(layer, x), run(layer, x, backend)
    np.testing.assert_allclose(got, expected, rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)
    np.testing.assert_allclose(run(layer, x, backend, "float32"), expected, rtol=FORWARD_F32.rtol,
                               atol=FORWARD_F32.atol)
    for got, want in zip(layer_grads(layer, x, r, backend), layer_grads(layer, x, r)):
        np.testing.assert_allclose(got, want, rtol=GRAD_F64.rtol, atol=GRAD_F64.atol)


# ------------------------------------------------------------ config and errors

ALL_LAYERS = [
    lambda: Conv2D(4, (3, 2), strides=2, padding="same", activation="relu", kernel_initializer="he_normal",
                   kernel_regularizer="l2", use_bias=False, name="c"),
    lambda: Conv2D(6, 3, groups=3, dilation_rate=2, bias_regularizer=unidl.regularizers.l1(0.1)),
    lambda: Conv1D(4, 5, padding="causal", dilation_rate=2, input_shape=(10, 3)),
    lambda: Conv2DTranspose(3, 2, strides=2, activation="sigmoid", bias_initializer="ones"),
    lambda: MaxPooling2D((2, 3), strides=1, padding="same"), lambda: AveragePooling2D(),
    lambda: MaxPooling1D(3), lambda: AveragePooling1D(2, strides=1),
    lambda: GlobalAveragePooling2D(keepdims=True), lambda: GlobalMaxPooling2D(),
    lambda: GlobalAveragePooling1D(), lambda: GlobalMaxPooling1D(keepdims=True),
    lambda: ZeroPadding2D(((1, 2), (0, 3))), lambda: UpSampling2D(3), lambda: Permute((2, 1)),
]


@pytest.mark.parametrize("make", ALL_LAYERS)
def test_get_config_recreates_the_layer(make):
    layer = make()
    config = layer.get_config()
    twin = type(layer)(**config)
    assert twin.get_config() == config
    # every constructor argument is in the config
    params = [p for p in inspect.signature(type(layer).__init__).parameters if p not in ("self", "kwargs")]
    assert set(params) <= set(config), set(params) - set(config)


def test_config_keeps_names_and_objects():
    reg = unidl.regularizers.l1(0.1)
    config = Conv2D(2, 3, kernel_initializer="he_normal", kernel_regularizer=reg, activation="relu").get_config()
    assert config["kernel_initializer"] == "he_normal" and config["kernel_regularizer"] is reg
    assert config["activation"] == "relu" and config["kernel_size"] == (3, 3)


@pytest.mark.parametrize("make, shape, words", [
    (lambda: Conv2D(2, 3), (5, 5), ["Conv2D", "rank 4", "(None, 5, 5)"]),
    (lambda: Conv1D(2, 3), (5, 5, 2), ["Conv1D", "rank 3", "(None, 5, 5, 2)"]),
    (lambda: Conv2DTranspose(2, 3), (5,), ["Conv2DTranspose", "rank 4"]),
    (lambda: MaxPooling2D(), (6, 2), ["MaxPooling2D", "(batch, height, width, channels)", "(None, 6, 2)"]),
    (lambda: MaxPooling1D(), (6, 6, 2), ["MaxPooling1D", "(batch, steps, channels)"]),
    (lambda: GlobalAveragePooling2D(), (6, 2), ["GlobalAveragePooling2D", "rank 4"]),
    (lambda: ZeroPadding2D(), (6, 2), ["ZeroPadding2D", "rank 4"]),
    (lambda: UpSampling2D(), (6, 2), ["UpSampling2D", "rank 4"]),
    (lambda: Permute((2, 1)), (2, 3, 4), ["Permute", "rank 3", "(None, 2, 3, 4)"]),
])
def test_wrong_input_rank_names_layer_and_shapes(make, shape, words):
    with pytest.raises(LayerShapeError) as info:
        build(make(), shape)
    for word in words:
        assert word in str(info.value)


def test_rank_error_inside_a_model():
    message = r"Conv2D '\w+' expects inputs of rank 4.*got shape \(None, 28, 28\)"
    with pytest.raises(LayerShapeError, match=message):
        unidl.Sequential([Conv2D(4, 3, input_shape=(28, 28))])


@pytest.mark.parametrize("make, match", [
    (lambda: Conv2D(0, 3), "filters=0"),
    (lambda: Conv2D(2.5, 3), "filters=2.5"),
    (lambda: Conv2D(4, (3, 3, 3)), r"kernel_size=\(3, 3, 3\)"),
    (lambda: Conv2D(4, 0), "kernel_size=0"),
    (lambda: Conv2D(4, 3, strides=(1, -1)), r"strides=\(1, -1\)"),
    (lambda: Conv2D(4, 3, padding="full"), "padding='full'"),
    (lambda: Conv2D(4, 3, padding="causal"), "padding='causal'"),
    (lambda: Conv2D(4, 3, strides=2, dilation_rate=2), "dilation_rate=2"),
    (lambda: Conv2D(4, 3, groups=3), "groups=3"),
    (lambda: Conv2D(4, 3, data_format="channels_first"), "data_format='channels_first'"),
    (lambda: Conv2D(4, 3, kernel_initializer="glorot_unifrom"), "glorot_uniform"),
    (lambda: Conv1D(4, (3, 3)), r"kernel_size=\(3, 3\)"),
    (lambda: Conv2DTranspose(4, 3, padding="causal"), "padding='causal'"),
    (lambda: MaxPooling2D(0), "pool_size=0"),
    (lambda: AveragePooling1D(2, strides=(1, 1)), r"strides=\(1, 1\)"),
    (lambda: MaxPooling2D(padding="full"), "padding='full'"),
    (lambda: ZeroPadding2D(-1), "padding=-1"),
    (lambda: ZeroPadding2D(((1, 2), (3,))), r"padding=\(\(1, 2\), \(3,\)\)"),
    (lambda: UpSampling2D(0), "size=0"),
    (lambda: UpSampling2D(interpolation="bilinear"), "interpolation='bilinear'"),
    (lambda: Permute((1, 3)), r"dims=\(1, 3\)"),
    (lambda: Permute((0, 1)), r"dims=\(0, 1\)"),
])
def test_invalid_arguments_name_the_argument_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unexpected_keyword_suggests_the_right_one():
    with pytest.raises(TypeError, match="did you mean 'kernel_size'"):
        Conv2D(4, 3, kernel_sizes=3)
    with pytest.raises(TypeError, match="groups"):
        Conv2DTranspose(4, 3, groups=2)


@pytest.mark.parametrize("make, shape, match", [
    (lambda: Conv2D(4, 2, groups=2), (5, 5, 3), "3 channels are not a multiple of groups=2"),
    (lambda: Conv2D(4, 5), (3, 8, 1), "smaller than the window"),
    (lambda: MaxPooling2D(3), (2, 8, 1), "smaller than the window"),
    (lambda: Conv2D(4, 3), (5, 5, None), "channels axis"),
])
def test_build_errors(make, shape, match):
    with pytest.raises(ValueError, match=match):
        build(make(), shape)

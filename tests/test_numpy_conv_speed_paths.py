"""The NumPy backend's fast convolution and pooling paths, against loop references in float64.

The reference backend computes convolutions through im2col matmuls cut into blocks
of output rows, and input gradients by col2im (a stacked matmul and one strided add
per kernel tap). At stride 1 with fewer output than input channels it takes the
mirrored forms instead: the forward pass as a scatter of the input, the input
gradient as a convolution of the padded upstream gradient, the kernel gradient from
that gradient's patches. Pools work on their stacked taps and, when the windows tile
the image, scatter back with one transposing copy. Each path is chosen by shape, so
the cases below are picked to reach every one of them: stride larger than the
kernel, dilation with "same", groups on both sides, batch 1, non-square images and
kernels, block budgets from one output row to the whole batch, and pools with ties,
NaN, -inf, non-finite upstream gradients and windows that tile, overlap or leave gaps.

The references loop over output positions and kernel taps (vectorised only over
batch and channels) and compute the forward pass and the gradients of
sum(out * r) for a random upstream r, straight from the definitions.
"""
from __future__ import annotations

import itertools
import math
import tracemalloc
import zlib

import numpy as np
import pytest

import unidl
from unidl import ops
from unidl.testing import tolerances
from unidl_numpy import tape as autodiff

EXACT = tolerances.FORWARD_F64  # the loops and the fast paths only sum in a different order
F32 = tolerances.FORWARD_F32


@pytest.fixture(scope="module")
def np64():
    return unidl.get_backend("numpy", dtype="float64")


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _close(actual, expected, tol, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    ok = tol.close(actual, expected)
    assert ok.all(), f"{what}: {int((~ok).sum())} of {ok.size} outside {tol}; max abs err " \
                     f"{np.abs(actual - expected).max():.3g}"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding, size, kernel, strides, dilation):
    """((top, bottom), (left, right)); "same" per CONVENTIONS.md, the extra cell after."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilation):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    return tuple(tuple(p) for p in padding)


# ------------------------------------------------------------- loop references

def loop_conv2d(x, k, upstream, strides=1, padding="valid", dilation=1, groups=1):
    """(y, dx, dk) of y = conv2d(x, k) and the gradients of sum(y * r), r = upstream(y.shape)."""
    s, d = _pair(strides), _pair(dilation)
    kh, kw, cg, o = k.shape
    og = o // groups
    (t, b), (l, rt) = _pads(padding, x.shape[1:3], (kh, kw), s, d)
    xp = np.pad(x, ((0, 0), (t, b), (l, rt), (0, 0)))
    ho = (xp.shape[1] - (kh - 1) * d[0] - 1) // s[0] + 1
    wo = (xp.shape[2] - (kw - 1) * d[1] - 1) // s[1] + 1
    y = np.zeros((x.shape[0], ho, wo, o))
    r = upstream(y.shape)
    dxp, dk = np.zeros_like(xp), np.zeros_like(k)
    for h, w, i, j, g in itertools.product(range(ho), range(wo), range(kh), range(kw), range(groups)):
        row, col = h * s[0] + i * d[0], w * s[1] + j * d[1]
        cin, cout = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        y[:, h, w, cout] += xp[:, row, col, cin] @ k[i, j, :, cout]
        dxp[:, row, col, cin] += r[:, h, w, cout] @ k[i, j, :, cout].T
        dk[i, j, :, cout] += xp[:, row, col, cin].T @ r[:, h, w, cout]
    return y, dxp[:, t:t + x.shape[1], l:l + x.shape[2]], dk


def loop_conv2d_transpose(x, k, upstream, strides=1, padding="valid", dilation=1):
    """(y, dx, dk) for conv2d_transpose with kernel (kh, kw, O, C): each input cell adds x @ k[i, j]^T
    at (h*sh + i*dh, w*sw + j*dw) of the full output, which is then cropped by the padding."""
    s, d = _pair(strides), _pair(dilation)
    n, h_in, w_in, _ = x.shape
    kh, kw, o, _ = k.shape
    full = ((h_in - 1) * s[0] + (kh - 1) * d[0] + 1, (w_in - 1) * s[1] + (kw - 1) * d[1] + 1)
    if padding == "same":
        size = (h_in * s[0], w_in * s[1])
    elif padding == "valid":
        size = full
    else:
        size = tuple(f - sum(p) for f, p in zip(full, padding))
    (t, _), (l, _) = _pads(padding, size, (kh, kw), s, d)
    frame = np.zeros((n, max(full[0], t + size[0]), max(full[1], l + size[1]), o))
    taps = list(itertools.product(range(h_in), range(w_in), range(kh), range(kw)))
    for h, w, i, j in taps:
        frame[:, h * s[0] + i * d[0], w * s[1] + j * d[1]] += x[:, h, w] @ k[i, j].T
    y = frame[:, t:t + size[0], l:l + size[1]]
    r_frame = np.zeros_like(frame)
    r_frame[:, t:t + size[0], l:l + size[1]] = upstream(y.shape)
    dx, dk = np.zeros_like(x), np.zeros_like(k)
    for h, w, i, j in taps:
        r_cell = r_frame[:, h * s[0] + i * d[0], w * s[1] + j * d[1]]
        dx[:, h, w] += r_cell @ k[i, j]
        dk[i, j] += r_cell.T @ x[:, h, w]
    return y, dx, dk


def loop_pool(x, upstream, pool_size, strides=None, padding="valid", kind="max"):
    """(y, dx): each window over the cells inside the input; max sends r to its first maximal cell
    (row-major, NaN counting as maximal, as numpy.argmax), avg shares r equally among its cells."""
    k = _pair(pool_size)
    s = k if strides is None else _pair(strides)
    n, h_in, w_in, c = x.shape
    (t, b), (l, rt) = _pads(padding, (h_in, w_in), k, s, (1, 1))
    ho, wo = (h_in + t + b - k[0]) // s[0] + 1, (w_in + l + rt - k[1]) // s[1] + 1
    y = np.zeros((n, ho, wo, c))
    r = upstream(y.shape)
    dx = np.zeros_like(x)
    for h, w in itertools.product(range(ho), range(wo)):
        cells = [(h * s[0] + i - t, w * s[1] + j - l) for i in range(k[0]) for j in range(k[1])]
        cells = [(row, col) for row, col in cells if 0 <= row < h_in and 0 <= col < w_in]
        values = np.stack([x[:, row, col] for row, col in cells])  # (cells, N, C)
        if kind == "max":
            first = np.argmax(values, axis=0)
            y[:, h, w] = np.take_along_axis(values, first[None], 0)[0]
            for q, (row, col) in enumerate(cells):
                dx[:, row, col] += np.where(first == q, r[:, h, w], 0.0)
        else:
            y[:, h, w] = values.mean(axis=0)
            for row, col in cells:
                dx[:, row, col] += r[:, h, w] / len(cells)
    return y, dx


# ------------------------------------------------------------- the backend's side

def _upstream(key):
    return lambda shape: _rng("upstream", key).standard_normal(shape)


def _backend_run(backend, op, arrays, r, **kwargs):
    """(y, gradients of sum(op(*arrays) * r) w.r.t. each array), through the backend's own tape."""
    with unidl.use_backend(backend):
        y = op(*[backend.convert(a) for a in arrays], **kwargs)
        rt = backend.convert(r)
        _, grads = backend.grad_wrt_inputs(lambda *ts: ops.sum(ops.multiply(op(*ts, **kwargs), rt)),
                                           [backend.convert(a) for a in arrays])
    return backend.to_numpy(y), [backend.to_numpy(g) for g in grads]


# Block budgets: one output row per block, two rows, two whole images, and the default.
BUDGETS = [1, 3000, 1 << 14, None]


@pytest.fixture(params=BUDGETS, ids=lambda b: f"budget={b}")
def budget(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(autodiff, "_IM2COL_BLOCK_BYTES", request.param)
    return request.param


CONV_CASES = [  # (x shape, kernel shape (kh, kw, C // groups, O), kwargs); comments name the path
    ((2, 9, 8, 3), (2, 2, 3, 4), {"strides": 3}),                                       # stride > kernel
    ((1, 7, 10, 2), (2, 3, 2, 3), {"strides": (3, 4), "padding": "same"}),               # stride > kernel, same
    ((2, 7, 6, 4), (3, 3, 4, 2), {"dilation": 2, "padding": "same"}),                    # O < C: mirrored
    ((1, 6, 7, 2), (3, 2, 2, 5), {"dilation": (2, 1), "padding": "same"}),               # O > C: direct
    ((2, 6, 5, 6), (3, 3, 3, 4), {"groups": 2, "padding": "same"}),                      # groups, mirrored
    ((1, 9, 8, 6), (3, 3, 2, 9), {"groups": 3, "strides": 2, "dilation": 2}),            # groups, direct
    ((2, 7, 7, 4), (3, 3, 1, 4), {"groups": 4, "strides": 2, "padding": "same"}),        # depthwise: tap-major
    ((2, 8, 7, 1), (3, 2, 1, 4), {"strides": (1, 2), "padding": "same"}),                # grayscale: tap-major
    ((1, 5, 11, 3), (3, 5, 3, 2), {"padding": ((2, 0), (1, 3))}),                        # batch 1, explicit
    ((3, 4, 5, 6), (1, 1, 6, 2), {}),                                                    # 1x1, mirrored
    ((3, 6, 5, 3), (2, 4, 3, 1), {}),                                                    # one output channel
]


def _ids(v):
    return str(v).replace(" ", "")


@pytest.mark.parametrize("x_shape, k_shape, kwargs", CONV_CASES, ids=_ids)
def test_conv2d_and_its_gradients_match_the_loops(np64, budget, x_shape, k_shape, kwargs):
    rng = _rng("conv", x_shape, k_shape, kwargs)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    want_y, want_dx, want_dk = loop_conv2d(x, k, _upstream(x_shape), **kwargs)
    y, (dx, dk) = _backend_run(np64, ops.conv2d, [x, k], _upstream(x_shape)(want_y.shape), **kwargs)
    _close(y, want_y, EXACT, "forward")
    _close(dx, want_dx, EXACT, "grad of x")
    _close(dk, want_dk, EXACT, "grad of kernel")


TRANSPOSE_CASES = [  # (x shape, kernel shape (kh, kw, O, C), kwargs); comments name the path
    ((2, 4, 3, 3), (3, 3, 5, 3), {"strides": 2, "padding": "same"}),                     # the autoencoder's
    ((2, 5, 4, 2), (3, 3, 4, 2), {"padding": "same"}),                                   # stride 1, C < O: mirrored
    ((1, 4, 5, 5), (2, 3, 2, 5), {}),                                                    # stride 1, C > O: direct
    ((1, 3, 4, 2), (2, 2, 3, 2), {"strides": 3}),                                        # stride > kernel: gaps
    ((1, 3, 5, 2), (3, 2, 2, 2), {"dilation": 2, "strides": (2, 1), "padding": "same"}),
    ((2, 3, 3, 3), (3, 3, 2, 3), {"strides": 2, "padding": ((1, 0), (0, 2))}),           # explicit
]


@pytest.mark.parametrize("x_shape, k_shape, kwargs", TRANSPOSE_CASES, ids=_ids)
def test_conv2d_transpose_and_its_gradients_match_the_loops(np64, budget, x_shape, k_shape, kwargs):
    rng = _rng("convT", x_shape, k_shape, kwargs)
    x, k = rng.standard_normal(x_shape), rng.standard_normal(k_shape)
    want_y, want_dx, want_dk = loop_conv2d_transpose(x, k, _upstream(x_shape), **kwargs)
    y, (dx, dk) = _backend_run(np64, ops.conv2d_transpose, [x, k], _upstream(x_shape)(want_y.shape), **kwargs)
    _close(y, want_y, EXACT, "forward")
    _close(dx, want_dx, EXACT, "grad of x")
    _close(dk, want_dk, EXACT, "grad of kernel")


POOL_CASES = [  # (x shape, kwargs); values on an integer grid, so windows hold ties
    ((2, 6, 6, 3), {"pool_size": 2}),                                                # windows tile the image
    ((1, 7, 5, 2), {"pool_size": 2}),                                                # tiles, last row/col left out
    ((2, 5, 7, 2), {"pool_size": (2, 3), "padding": "same"}),                        # tiles over the padding
    ((1, 6, 6, 2), {"pool_size": 3, "strides": 1}),                                  # overlapping
    ((1, 7, 6, 2), {"pool_size": 3, "strides": 2, "padding": "same"}),               # overlapping, same
    ((2, 8, 7, 2), {"pool_size": 2, "strides": 3}),                                  # stride > pool: gaps
    ((1, 9, 8, 2), {"pool_size": (2, 1), "strides": (3, 2), "padding": "same"}),     # gaps, same, non-square
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kwargs", POOL_CASES, ids=_ids)
def test_pools_and_their_gradients_match_the_loops(np64, kind, x_shape, kwargs):
    x = np.round(_rng("pool", x_shape, kwargs).uniform(-2, 2, x_shape))
    want_y, want_dx = loop_pool(x, _upstream(x_shape), kind=kind, **kwargs)
    op = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    y, (dx,) = _backend_run(np64, op, [x], _upstream(x_shape)(want_y.shape), **kwargs)
    _close(y, want_y, EXACT, "forward")
    _close(dx, want_dx, EXACT, "grad of x")


@pytest.mark.parametrize("kwargs", [{"pool_size": 2}, {"pool_size": 3, "strides": 1, "padding": "same"}],
                         ids=_ids)
def test_max_pool_on_negative_infinity_and_nan(np64, kwargs):
    # All-(-inf) windows, padded or not, and windows holding NaN (the max, as in numpy.max: the
    # gradient goes to the first NaN); the upstream gradient holds inf and NaN, which must reach
    # the winners only: every other cell gets exactly 0.
    x = np.round(_rng("pool-nonfinite").uniform(-2, 2, (1, 4, 6, 2)))
    x[0, 0:2, 0:2, 0] = -np.inf
    x[0, 2, 3, 1] = x[0, 3, 2, 1] = np.nan
    probe = loop_pool(x, np.zeros, **kwargs)[0]
    r = _rng("pool-nonfinite-r").standard_normal(probe.shape)
    r[0, 0, 0, 0], r[0, 1, 1, 1] = np.inf, np.nan
    want_y, want_dx = loop_pool(x, lambda shape: r, **kwargs)
    y, (dx,) = _backend_run(np64, ops.max_pool2d, [x], r, **kwargs)
    np.testing.assert_array_equal(y, want_y)
    _close(dx, want_dx, EXACT, "grad of x")  # inf and NaN where the loops have them, 0 exactly elsewhere
    np.testing.assert_array_equal(dx == 0, want_dx == 0)


def test_float32_paths_stay_float32_and_agree_with_float64(monkeypatch):
    monkeypatch.setattr(autodiff, "_IM2COL_BLOCK_BYTES", 1000)  # row blocks in float32 too
    np32, np64 = unidl.get_backend("numpy", dtype="float32"), unidl.get_backend("numpy", dtype="float64")
    rng = _rng("float32")
    x, k = rng.uniform(-1, 1, (2, 7, 6, 4)), rng.uniform(-1, 1, (3, 3, 4, 2))
    calls = [  # (op, arrays, kwargs): both input-gradient paths of conv2d, conv2d_transpose, both pool paths
        (ops.conv2d, [x, k], {"padding": "same"}),
        (ops.conv2d, [x, k[..., :2, :].repeat(2, axis=3)], {"strides": 2, "groups": 2}),
        (ops.conv2d_transpose, [x, np.swapaxes(k, 2, 3)], {"strides": 2, "padding": "same"}),
        (ops.max_pool2d, [x], {"pool_size": 2}),
        (ops.avg_pool2d, [x], {"pool_size": 3, "strides": 1, "padding": "same"}),
    ]
    for op, arrays, kwargs in calls:
        with unidl.use_backend(np64):
            shape = np64.shape(op(*[np64.convert(a) for a in arrays], **kwargs))
        r = rng.standard_normal(shape)
        y32, grads32 = _backend_run(np32, op, arrays, r, **kwargs)
        y64, grads64 = _backend_run(np64, op, arrays, r, **kwargs)
        assert [a.dtype for a in (y32, *grads32)] == [np.float32] * (1 + len(arrays)), op
        _close(y32, y64, F32, f"{op.__name__} forward")
        for i, (g32, g64) in enumerate(zip(grads32, grads64)):
            _close(g32, g64, F32, f"{op.__name__} grad of input {i}")


@pytest.mark.parametrize("images, rows, row_bytes, budget", [(3, 5, 100, 1), (3, 5, 100, 250), (3, 5, 100, 1000),
                                                             (3, 5, 100, 10 ** 6), (1, 1, 10 ** 9, 1 << 22)])
def test_blocks_cover_the_output_grid_once(monkeypatch, images, rows, row_bytes, budget):
    monkeypatch.setattr(autodiff, "_IM2COL_BLOCK_BYTES", budget)
    covered = np.zeros((images, rows), dtype=int)
    for block in autodiff._blocks(images, rows, row_bytes):
        covered[block] += 1
        assert covered[block].size * row_bytes <= max(budget, row_bytes)  # at least one row, else under budget
    np.testing.assert_array_equal(covered, 1)


def test_conv2d_memory_stays_bounded_by_the_block_budget():
    # A whole-batch im2col of this input alone would take 9x the input (72 MiB); in blocks, the
    # forward and backward pass together peak under 6x (padded input, output, upstream gradient,
    # input gradient and about one 1 MiB block).
    np64 = unidl.get_backend("numpy", dtype="float64")
    rng = _rng("memory")
    x, k = np64.convert(rng.standard_normal((16, 64, 64, 16))), np64.convert(rng.standard_normal((3, 3, 16, 8)))
    input_bytes = 16 * 64 * 64 * 16 * 8
    tracemalloc.start()
    try:
        with unidl.use_backend(np64):
            np64.grad_wrt_inputs(lambda a, b: ops.sum(ops.conv2d(a, b, padding="same")), [x, k])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 * input_bytes, f"peak {peak / 2**20:.1f} MiB for a {input_bytes / 2**20:.1f} MiB input"

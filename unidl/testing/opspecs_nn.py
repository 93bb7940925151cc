"""Specs of the neural-network primitives: pad, conv2d, conv2d_transpose, max_pool2d, avg_pool2d.

Same form as ``opspecs`` (whose table these join: it imports this module at its
end): per op a closed-form NumPy reference and its cases. The references are
written from the contract in ``unidl.backend.NN_PRIMITIVES``, not from any
backend: convolutions and pools read windows off ``sliding_window_view``;
``conv2d_transpose`` uses the scatter form (each input cell adds its kernel-
weighted copy at stride spacing), the contract's "input-gradient of conv2d"
being checked separately, on the reference backend, in tests/test_nn_ops.py.

What the cases cover, each kept tiny (every case runs forward and backward on
every backend, and finite differences on the reference):

* conv2d: strides 1, 2 and a pair; dilation 2 (also with stride 2); groups 2 and
  depthwise (groups == C); "valid", "same" and explicit padding; odd and even
  sizes and kernels (asymmetric "same": the extra cell after); 1x1 kernels; a
  kernel passed as a ``backend.variable``, as layers do.
* conv2d_transpose: the same, "valid" / "same" / explicit, including "same"
  sizes where rows of the output meet no kernel tap (stride > kernel extent).
* max_pool2d / avg_pool2d: non-overlapping and overlapping windows (strides <
  pool size), odd sizes, asymmetric "same", explicit padding, all-negative
  inputs under "same" (padding must not win a max), and, for max pool, inputs
  on a grid with exact ties, checked against the contract's first-maximum rule.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .opspecs import F, _spec, case

# ----------------------------------------------------------------- geometry


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pads(padding: Any, size, kernel, strides, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)): "same" is CONVENTIONS.md's rule, the extra cell after."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilation):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    (t, b), (l, r) = padding
    return (t, b), (l, r)


def _windows(xp: np.ndarray, kernel, strides, dilation) -> np.ndarray:
    """(N, H', W', C, kh, kw): for every output position, the cells its (dilated) window reads."""
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    view = sliding_window_view(xp, extent, axis=(1, 2))
    return view[:, ::strides[0], ::strides[1], :, ::dilation[0], ::dilation[1]]


# --------------------------------------------------------------- references


def _pad(x, pad_width, value=0.0):
    return np.pad(x, pad_width, constant_values=value)


def _conv2d(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), groups=1):
    s, d = _pair(strides), _pair(dilation)
    kh, kw, cg, o = kernel.shape
    (t, b), (l, r) = _pads(padding, x.shape[1:3], (kh, kw), s, d)
    win = _windows(np.pad(x, ((0, 0), (t, b), (l, r), (0, 0))), (kh, kw), s, d)
    n, ho, wo = win.shape[:3]
    # Channel c of group g is input channel g * C/groups + c; output channels are group-major too.
    win = win.reshape(n, ho, wo, groups, cg, kh, kw)
    y = np.einsum("nhwgcij,ijcgo->nhwgo", win, kernel.reshape(kh, kw, cg, groups, o // groups))
    return y.reshape(n, ho, wo, o)


def _conv2d_transpose(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
    s, d = _pair(strides), _pair(dilation)
    n, h, w, _ = x.shape
    kh, kw, o, _ = kernel.shape
    full = ((h - 1) * s[0] + (kh - 1) * d[0] + 1, (w - 1) * s[1] + (kw - 1) * d[1] + 1)
    out = np.zeros((n, *full, o))
    for i in range(kh):  # scatter: input cell (y, x) adds x * kernel[i, j] at (y*s + i*d, x*s + j*d)
        for j in range(kw):
            out[:, i * d[0]:i * d[0] + (h - 1) * s[0] + 1:s[0], j * d[1]:j * d[1] + (w - 1) * s[1] + 1:s[1], :] += \
                np.einsum("nhwc,oc->nhwo", x, kernel[i, j])
    if padding == "same":
        size = (h * s[0], w * s[1])
    elif padding == "valid":
        size = full
    else:
        size = tuple(f - sum(p) for f, p in zip(full, padding))
    (t, _), (l, _) = _pads(padding, size, (kh, kw), s, d)
    # Crop the padding off the front; rows past the full output (no kernel tap reaches them) are 0.
    out = np.pad(out, ((0, 0), (0, max(t + size[0] - full[0], 0)), (0, max(l + size[1] - full[1], 0)), (0, 0)))
    return out[:, t:t + size[0], l:l + size[1], :]


def _pool_windows(x, pool_size, strides, padding):
    """Windows of the input padded with NaN (cells outside the input), and the padding used."""
    k = _pair(pool_size)
    s = k if strides is None else _pair(strides)
    pads = _pads(padding, x.shape[1:3], k, s, (1, 1))
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=np.nan)
    return _windows(xp, k, s, (1, 1)), k, s, pads


def _max_pool2d(x, pool_size, strides=None, padding="valid"):
    return np.nanmax(_pool_windows(x, pool_size, strides, padding)[0], axis=(-2, -1))  # padding never wins


def _avg_pool2d(x, pool_size, strides=None, padding="valid"):
    return np.nanmean(_pool_windows(x, pool_size, strides, padding)[0], axis=(-2, -1))  # padding not counted


def _rule_max_pool(r, x, pool_size, strides=None, padding="valid"):
    """The contract's rule at ties: each window's upstream gradient goes to its first maximal cell (row-major)."""
    win, k, s, ((t, _), (l, _)) = _pool_windows(x, pool_size, strides, padding)
    flat = np.where(np.isnan(win), -np.inf, win).reshape(*win.shape[:4], k[0] * k[1])
    first = np.argmax(flat, axis=-1)  # numpy's argmax: the first of equal maxima
    n, ho, wo, c = np.indices(first.shape, sparse=True)
    rows = ho * s[0] - t + first // k[1]
    cols = wo * s[1] - l + first % k[1]
    grad = np.zeros_like(x)
    np.add.at(grad, (n, rows, cols, c), r)  # overlapping windows accumulate
    return [grad]


# --------------------------------------------------------------------- specs
# Conv inputs live in [-1, 1): outputs are sums of up to 3*3*3 products, and a
# narrow range keeps float32 rounding (relative to the output) inside FORWARD_F32.

def _c(*shape: int, **kw: Any) -> F:
    return F(*shape, low=-1.0, high=1.0, **kw)


_spec("pad", _pad,
      case("nhwc", F(2, 3, 4, 2), pad_width=((0, 0), (1, 2), (2, 1), (0, 0))),
      case("value", F(2, 3), pad_width=((1, 1), (0, 2)), value=-1.5),
      case("rank1", F(5), pad_width=((2, 0),)),
      case("nothing", F(2, 3), pad_width=((0, 0), (0, 0))),
      # -inf fills (what a max pool pads with) make sum(out * r) infinite: forward only.
      case("neg_inf", F(1, 2, 2, 1), pad_width=((0, 0), (0, 1), (1, 0), (0, 0)), value=-math.inf, grad=False))

_spec("conv2d", _conv2d,
      case("valid", _c(2, 5, 5, 3), _c(3, 3, 3, 4)),
      case("same_odd", _c(2, 5, 5, 2), _c(3, 3, 2, 3), padding="same"),
      case("same_even_kernel", _c(1, 5, 4, 2), _c(2, 2, 2, 3), padding="same"),        # pad (0, 1)
      case("same_stride2_even", _c(2, 6, 6, 2), _c(3, 3, 2, 3), strides=2, padding="same"),  # pad (0, 1)
      case("same_stride2_odd", _c(1, 5, 7, 2), _c(3, 3, 2, 2), strides=2, padding="same"),   # pad (1, 1)
      case("strides_pair", _c(1, 7, 6, 2), _c(3, 2, 2, 2), strides=(2, 1)),
      case("dilation2", _c(1, 7, 7, 2), _c(3, 3, 2, 2), dilation=2),
      case("dilation2_same", _c(1, 6, 5, 2), _c(3, 3, 2, 2), dilation=(2, 1), padding="same"),
      case("dilation2_stride2", _c(1, 8, 7, 2), _c(3, 3, 2, 2), dilation=2, strides=2, padding="same"),
      case("groups2", _c(2, 5, 5, 4), _c(3, 3, 2, 6), groups=2, padding="same"),
      case("groups2_dilated_strided", _c(1, 7, 7, 4), _c(3, 3, 2, 4), groups=2, strides=2, dilation=2),
      case("depthwise", _c(1, 5, 5, 3), _c(3, 3, 1, 6), groups=3),                      # groups == C
      case("pointwise_1x1", _c(2, 4, 3, 3), _c(1, 1, 3, 5)),
      case("1x1_stride2_same", _c(1, 5, 5, 2), _c(1, 1, 2, 3), strides=2, padding="same"),
      case("explicit", _c(1, 5, 4, 2), _c(3, 3, 2, 2), padding=((1, 0), (2, 1))),
      case("explicit_strided", _c(1, 4, 5, 2), _c(2, 2, 2, 2), padding=((0, 3), (1, 1)), strides=2),
      case("kernel_variable", _c(1, 4, 4, 2), _c(3, 3, 2, 2, var=True), padding="same"))

# Kernel (kh, kw, O, C): the output has O channels, the input C.
_spec("conv2d_transpose", _conv2d_transpose,
      case("valid", _c(2, 3, 3, 2), _c(3, 3, 3, 2)),
      case("stride2_valid", _c(1, 3, 4, 2), _c(3, 3, 2, 2), strides=2),
      case("stride2_same", _c(2, 3, 3, 2), _c(3, 3, 3, 2), strides=2, padding="same"),  # pad (0, 1)
      case("stride1_same", _c(1, 4, 3, 2), _c(3, 3, 2, 2), padding="same"),            # pad (1, 1)
      case("even_kernel_same", _c(1, 3, 3, 2), _c(2, 2, 2, 2), strides=2, padding="same"),  # no padding
      case("kernel4_stride2_same", _c(1, 3, 2, 2), _c(4, 4, 2, 2), strides=2, padding="same"),  # pad (1, 1)
      case("strides_pair_same", _c(1, 3, 3, 2), _c(3, 3, 2, 2), strides=(1, 2), padding="same"),
      case("dilation2", _c(1, 3, 3, 2), _c(3, 3, 2, 2), dilation=2),
      case("dilation2_stride2_same", _c(1, 3, 3, 1), _c(3, 2, 2, 1), dilation=2, strides=2, padding="same"),
      case("1x1_stride3_same", _c(1, 2, 3, 2), _c(1, 1, 2, 2), strides=3, padding="same"),  # untouched rows: 0
      case("explicit", _c(1, 3, 3, 2), _c(3, 3, 2, 2), strides=2, padding=((1, 0), (0, 2))),
      case("kernel_variable", _c(1, 3, 3, 2), _c(3, 3, 2, 2, var=True), strides=2, padding="same"))


def _pool_cases(extra: tuple = ()) -> tuple:
    return (
        case("2x2", F(2, 4, 4, 3), pool_size=2),
        case("odd_valid", F(1, 5, 5, 2), pool_size=2),                              # the last row is dropped
        case("same_odd", F(1, 5, 5, 2), pool_size=2, padding="same"),               # pad (0, 1)
        case("same_stride1", F(1, 4, 5, 2), pool_size=3, strides=1, padding="same"),  # pad (1, 1), overlapping
        case("overlap", F(1, 5, 5, 2), pool_size=3, strides=2),                     # strides < pool size
        case("overlap_same", F(1, 6, 5, 2), pool_size=3, strides=2, padding="same"),  # pad (0, 1) and (1, 1)
        case("rect", F(1, 6, 6, 2), pool_size=(2, 3), strides=(1, 2), padding="same"),
        case("explicit", F(1, 4, 5, 2), pool_size=2, padding=((1, 0), (0, 1))),
        case("explicit_wide", F(1, 4, 4, 2), pool_size=3, strides=1, padding=((2, 2), (0, 1))),  # > pool // 2
        case("negative_same", F(1, 3, 3, 2, low=-3.0, high=-1.0), pool_size=2, padding="same"),
        *extra)


_spec("max_pool2d", _max_pool2d, *_pool_cases((
    # Values on a grid of step 1 tie inside windows: the gradient goes to the first maximum.
    case("ties", F(1, 4, 4, 2, step=1.0), pool_size=2, fd=False, rule=_rule_max_pool),
    case("ties_overlap", F(1, 5, 5, 2, step=1.0), pool_size=3, strides=1, fd=False, rule=_rule_max_pool),
    case("ties_same", F(1, 5, 4, 2, step=1.0), pool_size=2, padding="same", fd=False, rule=_rule_max_pool))))

_spec("avg_pool2d", _avg_pool2d, *_pool_cases())

"""Shape arithmetic of the NN primitives, shared by every backend (plugins too).

Pure Python on ints: it turns the contract's arguments (``unidl.backend.NN_PRIMITIVES``)
into explicit numbers a framework kernel takes. The canonical "same" rule of
CONVENTIONS.md lives here once: ``total = max((ceil(n/s) - 1) * s + (k - 1) * d + 1 - n, 0)``,
``before = total // 2``, the rest after (bottom/right), which torch's symmetric padding
cannot express, so backends apply these pairs explicitly where they must.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Pads = tuple[tuple[int, int], tuple[int, int]]


def pair(value: Any, name: str, op: str) -> tuple[int, int]:
    """An int or a pair of ints, each >= 1 -> (height, width)."""
    both = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(both) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in both):
        raise ValueError(f"{op}: {name} must be a positive int or a pair of them, got {value!r}")
    return int(both[0]), int(both[1])


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """The canonical "same" padding of one axis: the extra cell, if any, goes after."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def resolve_padding(padding: Any, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilation: Sequence[int], op: str) -> Pads:
    """``padding`` ("valid", "same" or explicit pairs) of an (H, W) image -> ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            top_bottom, left_right = (same_pads(*a) for a in zip(size, kernel, strides, dilation))
            return top_bottom, left_right
        raise ValueError(f"{op}: padding must be 'valid', 'same' or ((top, bottom), (left, right)), got {padding!r}")
    try:
        pads = tuple(tuple(p) for p in padding)
    except TypeError:
        pads = ()
    if len(pads) != 2 or not all(len(p) == 2 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in p)
                                 for p in pads):
        raise ValueError(f"{op}: explicit padding must be ((top, bottom), (left, right)) with non-negative "
                         f"ints, got {padding!r}")
    (t, b), (l, r) = pads
    return (int(t), int(b)), (int(l), int(r))


def transpose_geometry(padding: Any, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                       dilation: Sequence[int]) -> tuple[tuple[int, ...], Pads]:
    """(H', W') and padding of conv2d_transpose's output: the input of the conv2d it is the
    input-gradient of. That conv2d maps (H', W') back to ``size`` with this padding."""
    full = tuple((n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(size, kernel, strides, dilation))
    if isinstance(padding, str):  # "same": size * strides; "valid": the full extent (other strings fail below)
        out = tuple(n * s for n, s in zip(size, strides)) if padding.lower() == "same" else full
    else:
        explicit = resolve_padding(padding, full, kernel, strides, dilation, "conv2d_transpose")
        out = tuple(f - before - after for f, (before, after) in zip(full, explicit))
    if min(out) < 1:
        raise ValueError(f"conv2d_transpose: padding {padding!r} leaves an empty output {out}")
    return out, resolve_padding(padding, out, kernel, strides, dilation, "conv2d_transpose")


def check_window(padded: Sequence[int], kernel: Sequence[int], dilation: Sequence[int], op: str) -> None:
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    if any(n < e for n, e in zip(padded, extent)):
        raise ValueError(f"{op}: the (padded) input {tuple(padded)} is smaller than the window {extent}")


def check_rank4(shape: Sequence[Any], what: str, op: str) -> None:
    if len(shape) != 4:
        raise ValueError(f"{op}: {what} must have 4 dimensions, got shape {tuple(shape)}")


def pool_geometry(shape: Sequence[Any], pool_size: Any, strides: Any, padding: Any, op: str):
    """(window, strides, pads) of a pool; pads stay under the window so no window is all padding."""
    check_rank4(shape, "x (N, H, W, C)", op)
    k = pair(pool_size, "pool_size", op)
    s = k if strides is None else pair(strides, "strides", op)  # Keras: strides default to pool_size
    pads = resolve_padding(padding, shape[1:3], k, s, (1, 1), op)
    if any(p >= kk for both, kk in zip(pads, k) for p in both):
        raise ValueError(f"{op}: padding {pads} must be smaller than the pool size {k}")
    check_window((shape[1] + sum(pads[0]), shape[2] + sum(pads[1])), k, (1, 1), op)
    return k, s, pads

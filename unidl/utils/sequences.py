"""``pad_sequences``: a list of sequences of different lengths to one NumPy array (Keras 3's signature)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["pad_sequences"]


def pad_sequences(sequences, maxlen: int | None = None, dtype: Any = "int32", padding: str = "pre",
                  truncating: str = "pre", value: Any = 0.0) -> np.ndarray:
    """Pad (or cut) every sequence to one length: an array of shape ``(len(sequences), maxlen, ...)``.

    ``pad_sequences([[1], [2, 3], [4, 5, 6]])`` is ``[[0, 0, 1], [0, 2, 3], [4, 5, 6]]``.

    Args:
        sequences: a list (or any sized iterable) of sequences; each is a list
            or array whose items are numbers or arrays of one common shape.
        maxlen: the output length; None: the longest sequence's length.
        dtype: the output dtype (default "int32"; ``object`` or a string dtype for strings).
        padding: "pre" (default) or "post": pad before or after each sequence.
        truncating: "pre" (default) or "post": drop the first or the last
            items of sequences longer than ``maxlen``.
        value: the padding value (default 0).

    Returns:
        a NumPy array; values are cast to ``dtype`` (floats into "int32" are
        truncated, as in Keras).
    """
    if padding not in ("pre", "post"):
        raise ValueError(f'Padding type "{padding}" not understood; use "pre" or "post"')
    if truncating not in ("pre", "post"):
        raise ValueError(f'Truncating type "{truncating}" not understood; use "pre" or "post"')
    if not hasattr(sequences, "__len__") or isinstance(sequences, (str, bytes)):
        raise ValueError(f"`sequences` must be a list of sequences, got {type(sequences).__name__}")
    if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer))
                               or maxlen < 0):
        raise ValueError(f"maxlen must be a non-negative integer or None, got maxlen={maxlen!r}")
    lengths = []
    sample_shape: tuple = ()
    found_shape = False
    for i, s in enumerate(sequences):
        try:
            lengths.append(len(s))
        except TypeError:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: {s!r} at "
                             f"position {i}") from None
        if not found_shape and len(s):
            sample_shape, found_shape = np.asarray(s).shape[1:], True
    if maxlen is None:
        maxlen = max(lengths, default=0)
    maxlen = int(maxlen)
    is_text = np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(np.dtype(dtype), np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}\n"
                         "You should set `dtype=object` for variable length strings.")
    out = np.full((len(lengths), maxlen) + sample_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"Shape of sample {kept.shape[1:]} of sequence at position {i} is different from "
                             f"expected shape {sample_shape}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, -len(kept):] = kept
    return out

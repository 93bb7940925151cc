"""Reshaping layers: ZeroPadding2D, UpSampling2D, Permute (channels-last, Keras 3 arguments)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import ops
from .base import Layer, LayerShapeError, Shape
from .convolutional import _is_int, check_data_format, check_rank, normalize_tuple

_IMAGE = "(batch, height, width, channels)"


class ZeroPadding2D(Layer):
    """Zero-padding of images: adds rows of zeros at the top and bottom and columns at the left and right.

    ``output[b, top + i, left + j, c] = inputs[b, i, j, c]``, zero elsewhere.

    Args:
        padding: default (1, 1). An int p pads p everywhere; a pair (h, w) pads h rows at the top and
            at the bottom and w columns at the left and at the right; ((top, bottom), (left, right)) is explicit.
        data_format: None or "channels_last" (unidl's only layout); accepted for Keras compatibility.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, height + top + bottom, width + left + right, channels).

    PyTorch's ``nn.ZeroPad2d`` is NCHW and orders its 4-tuple (left, right, top, bottom).
    TensorFlow/Keras match unidl.
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = _normalize_padding2d(padding)
        self.data_format = check_data_format(data_format, "ZeroPadding2D")

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, _IMAGE)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0), *self.padding, (0, 0)))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, _IMAGE)
        b, h, w, c = input_shape
        (top, bottom), (left, right) = self.padding
        return (b, None if h is None else h + top + bottom, None if w is None else w + left + right, c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


def _normalize_padding2d(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if _is_int(padding) or (isinstance(padding, Sequence) and len(padding) == 2 and all(map(_is_int, padding))):
        h, w = normalize_tuple(padding, 2, "padding", "ZeroPadding2D", minimum=0)
        return (h, h), (w, w)
    if isinstance(padding, Sequence) and len(padding) == 2:
        try:
            return tuple(normalize_tuple(p, 2, "padding", "ZeroPadding2D", minimum=0) for p in padding)
        except ValueError:
            pass
    raise ValueError("ZeroPadding2D: padding must be a non-negative int, a pair (h, w) or "
                     f"((top, bottom), (left, right)) of non-negative ints, got padding={padding!r}")


class UpSampling2D(Layer):
    """Upsampling of images by repeating rows and columns (nearest neighbour).

    ``output[b, i, j, c] = inputs[b, i // size_h, j // size_w, c]``: each pixel becomes a size_h x size_w block.
    Computed as two gathers (``take``) with repeated indices, so its gradient sums each block back.

    Args:
        size: int or (size_h, size_w), the upsampling factors; default (2, 2).
        data_format: None or "channels_last" (unidl's only layout); accepted for Keras compatibility.
        interpolation: "nearest" (default; the only mode unidl implements so far).

    Input shape: (batch, height, width, channels).
    Output shape: (batch, height * size_h, width * size_w, channels).

    PyTorch's ``nn.Upsample(scale_factor=..., mode="nearest")`` is NCHW. TensorFlow/Keras match unidl.
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation: str = "nearest", **kwargs: Any):
        super().__init__(**kwargs)
        self.size = normalize_tuple(size, 2, "size", "UpSampling2D")
        self.data_format = check_data_format(data_format, "UpSampling2D")
        if interpolation != "nearest":
            raise ValueError("UpSampling2D: unidl implements interpolation='nearest' only, "
                             f"got interpolation={interpolation!r}")
        self.interpolation = interpolation

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, _IMAGE)

    def call(self, inputs):
        out = inputs
        for axis, factor in zip((1, 2), self.size):
            n = ops.shape(inputs)[axis]
            if n is None:
                raise ValueError(f"UpSampling2D {self.name!r}: height and width must be known, "
                                 f"got shape {ops.shape(inputs)}")
            if factor > 1:  # index i // factor for output cell i: [0, 0, 1, 1, ...] for factor 2
                out = ops.take(out, ops.convert(np.repeat(np.arange(n), factor)), axis=axis)
        return out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, _IMAGE)
        b, h, w, c = input_shape
        return (b, None if h is None else h * self.size[0], None if w is None else w * self.size[1], c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "data_format": self.data_format,
                "interpolation": self.interpolation}


class Permute(Layer):
    """Permutes the axes of each sample: ``output.shape[k] = inputs.shape[dims[k - 1]]`` for k >= 1.

    The batch axis stays first. ``Permute((2, 1))`` swaps the two axes of (batch, a, b) inputs.

    Args:
        dims: a permutation of 1..rank-1, numbered from 1 as in Keras (0 would be the batch axis).

    Input shape: (batch, d_1, ..., d_n). Output shape: (batch, d_dims[0], ..., d_dims[n-1]).

    PyTorch's ``Tensor.permute`` numbers from 0 and includes the batch axis (``x.permute(0, *dims)``).
    TensorFlow/Keras match unidl.
    """

    def __init__(self, dims: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        values = tuple(dims) if isinstance(dims, Sequence) else ()
        if not values or not all(map(_is_int, values)) or sorted(values) != list(range(1, len(values) + 1)):
            raise ValueError("Permute: dims must be a permutation of 1..n (axis indices after the batch axis, "
                             f"counted from 1), got dims={dims!r}")
        self.dims = tuple(int(d) for d in values)

    def build(self, input_shape: Shape) -> None:
        self._check(input_shape)

    def _check(self, input_shape: Shape) -> None:
        rank = len(self.dims) + 1
        if len(input_shape) != rank:
            expected = ", ".join(["batch", *(f"d{i}" for i in range(1, rank))])
            raise LayerShapeError(f"Permute {self.name!r} with dims={self.dims} expects inputs of rank {rank}, "
                                  f"shape ({expected}); got shape {tuple(input_shape)} (rank {len(input_shape)})")

    def call(self, inputs):
        return ops.transpose(inputs, (0, *self.dims))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        self._check(input_shape)
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims}

"""Pooling layers: Max/AveragePooling1D/2D and their global versions (channels-last, Keras 3 arguments).

Written once over ``unidl.ops.max_pool2d`` / ``avg_pool2d`` / ``mean`` / ``max``; the 1D
layers pool a height-1 image, (batch, 1, steps, channels).
"""
from __future__ import annotations

from typing import Any

from .. import ops
from .base import Layer, Shape
from .convolutional import check_data_format, check_rank, conv_output_length, normalize_padding, normalize_tuple

_LAYOUTS = {1: "(batch, steps, channels)", 2: "(batch, height, width, channels)"}


class _Pooling(Layer):
    """Window pooling over the spatial axes; subclasses set ``rank`` and ``op``."""

    rank = 2
    op = "max_pool2d"

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", data_format=None, **kwargs: Any):
        super().__init__(**kwargs)
        where = type(self).__name__
        self.pool_size = normalize_tuple(pool_size, self.rank, "pool_size", where)
        self.strides = self.pool_size if strides is None else normalize_tuple(strides, self.rank, "strides", where)
        self.padding = normalize_padding(padding, ("valid", "same"), where)
        self.data_format = check_data_format(data_format, where)

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, _LAYOUTS[self.rank])

    def call(self, inputs):
        pool = getattr(ops, self.op)
        if self.rank == 2:
            return pool(inputs, self.pool_size, self.strides, padding=self.padding)
        out = pool(ops.expand_dims(inputs, 1), (1, *self.pool_size), (1, *self.strides), padding=self.padding)
        return ops.squeeze(out, 1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, _LAYOUTS[self.rank])
        spatial = [conv_output_length(self, n, p, s, self.padding)
                   for n, p, s in zip(input_shape[1:-1], self.pool_size, self.strides)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format}


_POOL_ARGS = """
    Args:
        pool_size: int or tuple of {rank} ints, the window size; default 2.
        strides: int or tuple of {rank} ints; default None, i.e. ``pool_size`` (non-overlapping windows).
        padding: "valid" (default: windows lie inside the input) or "same" (case-insensitive: ceil(n / s)
            windows, padded total//2 before and the rest after, as for Conv2D).
        data_format: None or "channels_last" (unidl's only layout); accepted for Keras compatibility.

    Input shape: {layout}.
    Output shape: the same with each spatial size n replaced by floor((n - pool) / stride) + 1 for "valid"
    and ceil(n / stride) for "same".
"""


class MaxPooling2D(_Pooling):
    """Max pooling over 2D windows.

    ``output[b, i, j, c] = max_{u, v} inputs[b, i*sh + u - pt, j*sw + v - pl, c]``, pt/pl the top/left
    padding (0 for "valid"); padded cells never win the max.

    {args}

    PyTorch's ``nn.MaxPool2d`` is NCHW, has no "same" (explicit symmetric ``padding`` only, or ``ceil_mode``)
    and defaults strides to the kernel size as here. TensorFlow/Keras match unidl.
    """

    rank, op = 2, "max_pool2d"


class AveragePooling2D(_Pooling):
    """Average pooling over 2D windows: the mean of each window's cells that lie inside the input.

    With "same" padding a border window averages only its real cells (padding is not counted).

    {args}

    PyTorch's ``nn.AvgPool2d`` is NCHW and counts padded zeros by default (``count_include_pad=True``);
    TensorFlow/Keras match unidl (padding not counted).
    """

    rank, op = 2, "avg_pool2d"


class MaxPooling1D(_Pooling):
    """Max pooling over windows of steps: ``output[b, t, c] = max_u inputs[b, t*s + u - p, c]``.

    {args}

    PyTorch's ``nn.MaxPool1d`` takes (batch, channels, steps). TensorFlow/Keras match unidl.
    """

    rank, op = 1, "max_pool2d"


class AveragePooling1D(_Pooling):
    """Average pooling over windows of steps: the mean of each window's steps inside the input.

    {args}

    PyTorch's ``nn.AvgPool1d`` takes (batch, channels, steps) and counts padded zeros by default.
    TensorFlow/Keras match unidl.
    """

    rank, op = 1, "avg_pool2d"


for _cls in (MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D):
    if _cls.__doc__:  # None under python -OO
        _args = _POOL_ARGS.strip().format(rank=_cls.rank, layout=_LAYOUTS[_cls.rank])
        _cls.__doc__ = _cls.__doc__.replace("{args}", _args)


class _GlobalPooling(Layer):
    """Reduce every spatial axis with ``op`` ("mean" or "max"); subclasses set ``rank`` and ``op``."""

    rank = 2
    op = "mean"

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, _LAYOUTS[self.rank])

    def call(self, inputs, mask=None):
        axes = tuple(range(1, self.rank + 1))
        if mask is not None and self.rank == 1 and self.op == "mean":  # Keras's max pooling ignores masks
            return self._masked_mean(inputs, mask)
        return getattr(ops, self.op)(inputs, axis=axes, keepdims=self.keepdims)

    def _masked_mean(self, inputs, mask):
        """The mean over the steps the mask keeps (Keras)."""
        weights = ops.cast(ops.expand_dims(mask, -1), ops.current_backend().dtype)
        total = ops.sum(ops.multiply(inputs, weights), axis=1, keepdims=self.keepdims)
        return ops.divide(total, ops.maximum(ops.sum(weights, axis=1, keepdims=self.keepdims), 1.0))

    def compute_mask(self, inputs, mask=None):
        return None  # the steps are gone

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, _LAYOUTS[self.rank])
        if self.keepdims:
            return (input_shape[0], *(1,) * self.rank, input_shape[-1])
        return (input_shape[0], input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


_GLOBAL_ARGS = """
    Args:
        data_format: None or "channels_last" (unidl's only layout); accepted for Keras compatibility.
        keepdims: keep the spatial axes with size 1 (default False).

    Input shape: {layout}.
    Output shape: (batch, channels), or {kept} with ``keepdims=True``.
"""


class GlobalAveragePooling2D(_GlobalPooling):
    """Mean over height and width: ``output[b, c] = mean_{i, j} inputs[b, i, j, c]``.

    {args}

    PyTorch writes it ``nn.AdaptiveAvgPool2d(1)`` on NCHW, which keeps the spatial axes (keepdims=True).
    """

    rank, op = 2, "mean"


class GlobalMaxPooling2D(_GlobalPooling):
    """Max over height and width: ``output[b, c] = max_{i, j} inputs[b, i, j, c]``.

    {args}

    PyTorch writes it ``nn.AdaptiveMaxPool2d(1)`` on NCHW, which keeps the spatial axes (keepdims=True).
    """

    rank, op = 2, "max"


class GlobalAveragePooling1D(_GlobalPooling):
    """Mean over steps: ``output[b, c] = mean_t inputs[b, t, c]``; with a mask, over the kept steps only.

    {args}

    PyTorch writes it ``x.mean(dim=2)`` on (batch, channels, steps).
    """

    rank, op = 1, "mean"


class GlobalMaxPooling1D(_GlobalPooling):
    """Max over steps: ``output[b, c] = max_t inputs[b, t, c]`` (masks are ignored, as in Keras).

    {args}

    PyTorch writes it ``x.amax(dim=2)`` on (batch, channels, steps).
    """

    rank, op = 1, "max"


for _cls in (GlobalAveragePooling2D, GlobalMaxPooling2D, GlobalAveragePooling1D, GlobalMaxPooling1D):
    _kept = "(batch, 1, 1, channels)" if _cls.rank == 2 else "(batch, 1, channels)"
    if _cls.__doc__:
        _args = _GLOBAL_ARGS.strip().format(layout=_LAYOUTS[_cls.rank], kept=_kept)
        _cls.__doc__ = _cls.__doc__.replace("{args}", _args)

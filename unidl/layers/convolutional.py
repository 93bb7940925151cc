"""Convolution layers: Conv1D, Conv2D, Conv2DTranspose (channels-last, Keras 3 arguments).

Written once over ``unidl.ops.conv2d`` / ``conv2d_transpose``; Conv1D is a conv2d
over a height-1 image. The small argument helpers here are shared with the
pooling and reshaping layers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, ops, regularizers
from .base import Layer, LayerShapeError, Shape
from .core import set_kernel_options


# ------------------------------------------------------------- argument helpers

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def normalize_tuple(value, n: int, arg: str, where: str, minimum: int = 1) -> tuple[int, ...]:
    """An int, or a sequence of ``n`` ints, each >= ``minimum`` -> a tuple of ``n`` ints."""
    values = (value,) * n if _is_int(value) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    if len(values) != n or not all(_is_int(v) and v >= minimum for v in values):
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{where}: {arg} must be a {kind} integer or a tuple of {n} {kind} integers, "
                         f"got {arg}={value!r}")
    return tuple(int(v) for v in values)


def normalize_padding(value, allowed: tuple[str, ...], where: str) -> str:
    """``padding`` as a lower-case string among ``allowed`` (Keras accepts any case)."""
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{where}: padding must be one of {', '.join(map(repr, allowed))}, got padding={value!r}")
    return value.lower()


def check_data_format(value, where: str) -> str:
    """unidl layers are channels-last; accept Keras's ``data_format`` only when it says so."""
    if value is None or value == "channels_last":
        return "channels_last"
    raise ValueError(f"{where}: unidl layers take channels-last inputs (NHWC), so data_format must be None or "
                     f"'channels_last', got data_format={value!r}; move the channels last with Permute")


def check_rank(layer: Layer, input_shape: Shape, expected: str) -> None:
    """Raise when ``input_shape`` does not have the rank of ``expected``, e.g. "(batch, steps, channels)"."""
    rank = expected.count(",") + 1
    if len(input_shape) != rank:
        raise LayerShapeError(f"{type(layer).__name__} {layer.name!r} expects inputs of rank {rank}, "
                              f"shape {expected}; got shape {tuple(input_shape)} (rank {len(input_shape)})")


def known_channels(layer: Layer, input_shape: Shape) -> int:
    if input_shape[-1] is None:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: the channels axis (last) of the input must "
                         f"be known, got shape {tuple(input_shape)}")
    return int(input_shape[-1])


def conv_output_length(layer: Layer, n, size: int, stride: int, padding: str, dilation: int = 1):
    """Keras's output length of a conv/pool window of ``size`` over ``n`` cells (None stays None)."""
    if n is None:
        return None
    if padding in ("same", "causal"):
        return -(-n // stride)  # ceil(n / stride)
    span = (size - 1) * dilation + 1
    if n < span:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: an input of size {n} along a spatial axis is "
                         f"smaller than the window ({span}) with padding='valid'")
    return (n - span) // stride + 1


def check_positive(value, arg: str, where: str) -> int:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{where}: {arg} must be a positive integer, got {arg}={value!r}")
    return int(value)


# ---------------------------------------------------------------------- layers

class _Conv(Layer):
    """Arguments, weights and config shared by the convolution layers."""

    rank = 2                 # spatial axes of the layer's inputs
    paddings = ("valid", "same")
    _layout = "(batch, height, width, channels)"

    def _setup(self, filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
               use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer) -> None:
        where = type(self).__name__
        self.filters = check_positive(filters, "filters", where)
        self.kernel_size = normalize_tuple(kernel_size, self.rank, "kernel_size", where)
        self.strides = normalize_tuple(strides, self.rank, "strides", where)
        self.padding = normalize_padding(padding, self.paddings, where)
        self.data_format = check_data_format(data_format, where)
        self.dilation_rate = normalize_tuple(dilation_rate, self.rank, "dilation_rate", where)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{where}: strides > 1 is not supported together with dilation_rate > 1 (as in "
                             f"Keras), got strides={strides!r}, dilation_rate={dilation_rate!r}")
        self.groups = check_positive(groups, "groups", where)
        if self.filters % self.groups:
            raise ValueError(f"{where}: filters must be a multiple of groups, got filters={filters}, "
                             f"groups={groups}")
        set_kernel_options(self, activation, bool(use_bias), kernel_initializer, bias_initializer,
                           kernel_regularizer, bias_regularizer)

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        if channels % self.groups:
            raise ValueError(f"{type(self).__name__} {self.name!r}: the input's {channels} channels are not a "
                             f"multiple of groups={self.groups}")
        return (*self.kernel_size, channels // self.groups, self.filters)

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, self._layout)
        shape = self._kernel_shape(known_channels(self, input_shape))
        self.kernel = self.add_weight("kernel", shape, self.kernel_initializer, self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    def _finish(self, out):
        if self.bias is not None:
            out = ops.add(out, self.bias)
        return self.activation(out)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, self._layout)
        spatial = [conv_output_length(self, n, k, s, self.padding, d) for n, k, s, d in
                   zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)]
        return (input_shape[0], *spatial, self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": self.dilation_rate, "groups": self.groups}


class Conv2D(_Conv):
    """2D convolution layer (a cross-correlation, like every framework's "convolution").

    ``output[b, i, j, o] = activation(bias[o] + sum_{u, v, c} inputs[b, i*sh + u*dh - pt, j*sw + v*dw - pl,
    g*C/groups + c] * kernel[u, v, c, o])`` with ``g = o // (filters / groups)`` the group of filter ``o``
    and ``pt``/``pl`` the top/left padding (0 for "valid").

    Args:
        filters: number of output channels, a positive int (a multiple of ``groups``).
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: "valid" (default, no padding) or "same" (case-insensitive): pad so that the output has
            ceil(n / stride) cells, total = max((ceil(n/s) - 1)*s + (k - 1)*d + 1 - n, 0), split
            total // 2 before and the rest after (the extra cell at the bottom/right).
        data_format: None or "channels_last" (unidl's only layout); accepted for Keras compatibility.
        dilation_rate: int or (dh, dw), default 1. strides > 1 with dilation_rate > 1 is refused, as in Keras.
        groups: default 1; the input channels and the filters are split into ``groups`` independent convolutions.
        activation: name or callable, default None (linear).
        use_bias: default True.
        kernel_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        kernel_regularizer, bias_regularizer: default None.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters), new size = ceil(n / s) for "same" and
    floor((n - (k - 1)*d - 1) / s) + 1 for "valid". Kernel: (kh, kw, channels // groups, filters).

    PyTorch's ``nn.Conv2d`` is NCHW with the kernel stored (filters, channels // groups, kh, kw), takes
    padding="same" only with stride 1 (and then puts the odd extra cell on the same side as here), and
    initialises with kaiming_uniform(a=sqrt(5)). TensorFlow/Keras match unidl's layout and init.
    """

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", data_format=None,
                 dilation_rate=(1, 1), groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                    use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)

    def call(self, inputs):
        out = ops.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding,
                         dilation=self.dilation_rate, groups=self.groups)
        return self._finish(out)


class Conv1D(_Conv):
    """1D convolution layer (temporal convolution) over (batch, steps, channels).

    ``output[b, t, o] = activation(bias[o] + sum_{u, c} inputs[b, t*s + u*d - p, g*C/groups + c] *
    kernel[u, c, o])``, p the left padding and g the group of filter o. It runs as a conv2d over a
    height-1 image, (batch, 1, steps, channels).

    Args:
        filters: number of output channels, a positive int (a multiple of ``groups``).
        kernel_size: int or (k,).
        strides: int or (s,), default 1.
        padding: "valid" (default), "same" (as Conv2D) or "causal": pad (k - 1)*d zeros on the left only, so
            output[t] never sees inputs after t (WaveNet); the output has ceil(steps / s) steps.
        data_format: None or "channels_last"; accepted for Keras compatibility.
        dilation_rate: int or (d,), default 1; not together with strides > 1.
        groups: default 1.
        activation: default None (linear). use_bias: default True.
        kernel_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        kernel_regularizer, bias_regularizer: default None.

    Input shape: (batch, steps, channels). Output shape: (batch, new_steps, filters).
    Kernel: (k, channels // groups, filters).

    PyTorch's ``nn.Conv1d`` takes (batch, channels, steps), stores the kernel (filters, channels // groups, k)
    and has no "causal" padding (pad the left by hand). TensorFlow/Keras match unidl.
    """

    rank = 1
    paddings = ("valid", "same", "causal")
    _layout = "(batch, steps, channels)"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format=None,
                 dilation_rate=1, groups: int = 1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, groups, activation,
                    use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)

    def call(self, inputs):
        (k,), (d,) = self.kernel_size, self.dilation_rate
        padding = ((0, 0), ((k - 1) * d, 0)) if self.padding == "causal" else self.padding
        out = ops.conv2d(ops.expand_dims(inputs, 1), ops.expand_dims(self.kernel, 0),
                         strides=(1, *self.strides), padding=padding, dilation=(1, d), groups=self.groups)
        return self._finish(ops.squeeze(out, 1))


class Conv2DTranspose(_Conv):
    """2D transposed convolution layer (sometimes called deconvolution): conv2d run backwards.

    Each input cell scatters ``inputs[b, i, j, :] @ kernel[u, v, :, :].T`` (kernel (kh, kw, filters, channels))
    onto ``output[b, i*sh + u*dh - pt, j*sw + v*dw - pl, :]``; then bias and activation. The result is the
    gradient, with respect to its input, of a Conv2D with the same kernel, strides, padding and dilation
    applied to an input the size of this layer's output: it maps a conv's output shape back to its input shape.

    Args:
        filters: number of output channels, a positive int.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: "valid" (default) or "same" (case-insensitive).
        data_format: None or "channels_last"; accepted for Keras compatibility.
        dilation_rate: int or (dh, dw), default 1; not together with strides > 1.
        activation: default None (linear). use_bias: default True.
        kernel_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        kernel_regularizer, bias_regularizer: default None.

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters), Keras's sizes: n * s for "same"; for "valid"
    n * s + max(K - s, 0), K = (k - 1)*d + 1 the dilated kernel, i.e. (n - 1)*s + K, plus s - K zero
    rows/columns at the bottom/right when the kernel is narrower than the stride.
    Kernel: (kh, kw, filters, channels).

    PyTorch's ``nn.ConvTranspose2d`` is NCHW, stores the kernel (channels, filters, kh, kw), has no "same"
    (its ``padding`` crops the output, ``output_padding`` adds cells) and gives (n - 1)*s + K for "valid"
    even when K < s. TensorFlow/Keras match unidl's layout and sizes.
    """

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup(filters, kernel_size, strides, padding, data_format, dilation_rate, 1, activation,
                    use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)

    def _kernel_shape(self, channels: int) -> tuple[int, ...]:
        return (*self.kernel_size, self.filters, channels)

    def _extra(self) -> list[int]:
        """Zero cells Keras appends at the bottom/right for "valid" when the dilated kernel is below the stride."""
        if self.padding != "valid":
            return [0, 0]
        return [max(s - ((k - 1) * d + 1), 0)
                for k, s, d in zip(self.kernel_size, self.strides, self.dilation_rate)]

    def call(self, inputs):
        out = ops.conv2d_transpose(inputs, self.kernel, strides=self.strides, padding=self.padding,
                                   dilation=self.dilation_rate)
        extra_h, extra_w = self._extra()
        if extra_h or extra_w:
            out = ops.pad(out, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)))
        return self._finish(out)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        check_rank(self, input_shape, self._layout)
        spatial = []
        for n, k, s, d in zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate):
            span = (k - 1) * d + 1
            spatial.append(None if n is None else n * s if self.padding == "same" else n * s + max(span - s, 0))
        return (input_shape[0], *spatial, self.filters)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["groups"]
        return config


class Conv1DTranspose(Conv2DTranspose):
    """1D transposed convolution layer: Conv2DTranspose over (batch, steps, channels).

    Each input step scatters ``inputs[b, t, :] @ kernel[u, :, :].T`` (kernel (k, filters, channels)) onto
    ``output[b, t*s + u*d - p, :]``; then bias and activation. It maps a Conv1D's output length back to
    its input length, and runs as a Conv2DTranspose over a height-1 image.

    Args:
        filters: number of output channels, a positive int.
        kernel_size: int or (k,).
        strides: int or (s,), default 1.
        padding: "valid" (default) or "same" (case-insensitive).
        data_format: None or "channels_last"; accepted for Keras compatibility.
        dilation_rate: int or (d,), default 1; not together with strides > 1.
        activation: default None (linear). use_bias: default True.
        kernel_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        kernel_regularizer, bias_regularizer: default None.

    Input shape: (batch, steps, channels).
    Output shape: (batch, new_steps, filters), Keras's sizes: steps * s for "same"; for "valid"
    steps * s + max(K - s, 0), K = (k - 1)*d + 1. Kernel: (k, filters, channels).
    Keras's ``output_padding`` is not supported.

    PyTorch's ``nn.ConvTranspose1d`` takes (batch, channels, steps), stores the kernel (channels, filters, k)
    and has no "same". TensorFlow/Keras match unidl's layout and sizes.
    """

    rank = 1
    _layout = "(batch, steps, channels)"

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, **kwargs)

    def call(self, inputs):
        (s,), (d,) = self.strides, self.dilation_rate
        out = ops.conv2d_transpose(ops.expand_dims(inputs, 1), ops.expand_dims(self.kernel, 0), strides=(1, s),
                                   padding=self.padding, dilation=(1, d))
        extra = self._extra()[-1]  # [0, 0] for "same"
        if extra:
            out = ops.pad(out, ((0, 0), (0, 0), (0, extra), (0, 0)))
        return self._finish(ops.squeeze(out, 1))


class _DepthwiseBase(Layer):
    """The window arguments of the depthwise and separable convolutions (always 2D here)."""

    _layout = "(batch, height, width, channels)"

    def _window(self, kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier) -> None:
        where = type(self).__name__
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", where)
        self.strides = normalize_tuple(strides, 2, "strides", where)
        self.padding = normalize_padding(padding, ("valid", "same"), where)
        self.data_format = check_data_format(data_format, where)
        self.dilation_rate = normalize_tuple(dilation_rate, 2, "dilation_rate", where)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"{where}: strides > 1 is not supported together with dilation_rate > 1 (as in "
                             f"Keras), got strides={strides!r}, dilation_rate={dilation_rate!r}")
        self.depth_multiplier = check_positive(depth_multiplier, "depth_multiplier", where)

    def _depthwise(self, inputs, kernel):
        """Each input channel c convolved with kernel[..., c, :]: output channels c*m ... c*m + m - 1."""
        kh, kw, channels, multiplier = ops.shape(kernel)
        grouped = ops.reshape(kernel, (kh, kw, 1, channels * multiplier))  # conv2d's (kh, kw, C // groups, O)
        return ops.conv2d(inputs, grouped, strides=self.strides, padding=self.padding,
                          dilation=self.dilation_rate, groups=channels)

    def _spatial(self, input_shape: Shape) -> list:
        check_rank(self, input_shape, self._layout)
        return [conv_output_length(self, n, k, s, self.padding, d) for n, k, s, d in
                zip(input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate)]

    def _finish(self, out):
        if self.bias is not None:
            out = ops.add(out, self.bias)
        return self.activation(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "data_format": self.data_format, "dilation_rate": self.dilation_rate,
                "depth_multiplier": self.depth_multiplier}


class DepthwiseConv2D(_DepthwiseBase):
    """Depthwise 2D convolution: each input channel convolved with its own ``depth_multiplier`` filters.

    ``output[b, i, j, c*m + k] = activation(bias[c*m + k] + sum_{u, v} inputs[b, i*sh + u*dh - pt,
    j*sw + v*dw - pl, c] * kernel[u, v, c, k])`` with m = depth_multiplier. It runs as a conv2d with
    ``groups`` = the input channels.

    Args:
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: "valid" (default) or "same" (case-insensitive), as Conv2D.
        depth_multiplier: output channels per input channel, a positive int (default 1).
        data_format: None or "channels_last"; accepted for Keras compatibility.
        dilation_rate: int or (dh, dw), default 1; not together with strides > 1.
        activation: default None (linear). use_bias: default True.
        depthwise_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        depthwise_regularizer, bias_regularizer: default None.

    Weights (Keras's names and order): kernel (kh, kw, channels, depth_multiplier), bias
    (channels * depth_multiplier,).

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, channels * depth_multiplier), sizes as Conv2D.

    PyTorch writes this as ``nn.Conv2d(C, C * m, k, groups=C)``, NCHW, kernel (C * m, 1, kh, kw).
    TensorFlow/Keras match unidl.
    """

    def __init__(self, kernel_size, strides=(1, 1), padding: str = "valid", depth_multiplier: int = 1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        self._window(kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier)
        set_kernel_options(self, activation, bool(use_bias), depthwise_initializer, bias_initializer,
                           depthwise_regularizer, bias_regularizer)
        self.depthwise_initializer, self.depthwise_regularizer = self.kernel_initializer, self.kernel_regularizer
        args = self._config_args
        args["depthwise_initializer"] = args.pop("kernel_initializer")
        args["depthwise_regularizer"] = args.pop("kernel_regularizer")

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, self._layout)
        channels = known_channels(self, input_shape)
        self.kernel = self.add_weight("kernel", (*self.kernel_size, channels, self.depth_multiplier),
                                      self.depthwise_initializer, self.depthwise_regularizer)
        self.bias = (self.add_weight("bias", (channels * self.depth_multiplier,), self.bias_initializer,
                                     self.bias_regularizer) if self.use_bias else None)

    def call(self, inputs):
        return self._finish(self._depthwise(inputs, self.kernel))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        channels = None if input_shape[-1] is None else input_shape[-1] * self.depth_multiplier
        return (input_shape[0], *self._spatial(input_shape), channels)


class SeparableConv2D(_DepthwiseBase):
    """Depthwise separable 2D convolution: a DepthwiseConv2D, then a 1x1 convolution mixing the channels.

    ``mid = depthwise(inputs, depthwise_kernel)`` (as DepthwiseConv2D, without bias), then
    ``output = activation(mid @ pointwise_kernel[0, 0] + bias)``.

    Args:
        filters: number of output channels, a positive int.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1 (applied by the depthwise step).
        padding: "valid" (default) or "same" (case-insensitive).
        data_format: None or "channels_last"; accepted for Keras compatibility.
        dilation_rate: int or (dh, dw), default 1; not together with strides > 1.
        depth_multiplier: depthwise output channels per input channel, default 1.
        activation: default None (linear). use_bias: default True.
        depthwise_initializer, pointwise_initializer: default "glorot_uniform". bias_initializer: "zeros".
        depthwise_regularizer, pointwise_regularizer, bias_regularizer: default None.

    Weights (Keras's names, shapes and order): depthwise_kernel (kh, kw, channels, depth_multiplier),
    pointwise_kernel (1, 1, channels * depth_multiplier, filters), bias (filters,).

    Input shape: (batch, height, width, channels).
    Output shape: (batch, new_height, new_width, filters), sizes as Conv2D.

    PyTorch has no such layer: a grouped ``nn.Conv2d`` followed by a 1x1 ``nn.Conv2d``.
    TensorFlow/Keras match unidl.
    """

    def __init__(self, filters: int, kernel_size, strides=(1, 1), padding: str = "valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier: int = 1, activation=None, use_bias: bool = True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        self.filters = check_positive(filters, "filters", "SeparableConv2D")
        self._window(kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier)
        set_kernel_options(self, activation, bool(use_bias), depthwise_initializer, bias_initializer,
                           depthwise_regularizer, bias_regularizer)
        self.depthwise_initializer, self.depthwise_regularizer = self.kernel_initializer, self.kernel_regularizer
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        args = self._config_args
        args["depthwise_initializer"] = args.pop("kernel_initializer")
        args["depthwise_regularizer"] = args.pop("kernel_regularizer")
        args.update(filters=self.filters, pointwise_initializer=pointwise_initializer,
                    pointwise_regularizer=pointwise_regularizer)

    def build(self, input_shape: Shape) -> None:
        check_rank(self, input_shape, self._layout)
        channels = known_channels(self, input_shape)
        self.depthwise_kernel = self.add_weight("depthwise_kernel",
                                                (*self.kernel_size, channels, self.depth_multiplier),
                                                self.depthwise_initializer, self.depthwise_regularizer)
        self.pointwise_kernel = self.add_weight("pointwise_kernel",
                                                (1, 1, channels * self.depth_multiplier, self.filters),
                                                self.pointwise_initializer, self.pointwise_regularizer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    def call(self, inputs):
        mid = self._depthwise(inputs, self.depthwise_kernel)
        mixing = ops.reshape(self.pointwise_kernel, ops.shape(self.pointwise_kernel)[2:])
        return self._finish(ops.matmul(mid, mixing))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], *self._spatial(input_shape), self.filters)

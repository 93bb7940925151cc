"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax (Keras 3 arguments and defaults).

Each is written over ``unidl.ops`` and keeps its input's shape. They differ from
``Activation("relu")`` in taking arguments (a slope, a cap, a threshold, an axis), and
PReLU learns its slope.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import activations, initializers, ops, regularizers
from .base import Layer, Shape


def _non_negative(where: str, name: str, value, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        what = "a non-negative number" + (" or None" if allow_none else "")
        raise ValueError(f"{where}: {name} must be {what}, got {name}={value!r}")
    return float(value)


class _Elementwise(Layer):
    """Shape-preserving layers."""

    supports_masking = True  # elementwise: the time steps stay where they were

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


class ReLU(_Elementwise):
    """Rectified linear unit with an optional cap, slope and threshold.

    ::

        f(x) = max_value                        if x >= max_value
        f(x) = x                                if threshold < x < max_value
        f(x) = negative_slope * (x - threshold) otherwise

    With the defaults this is ``max(x, 0)``. Note that, as in Keras, inputs above the
    threshold keep their value (``x``, not ``x - threshold``).

    Args:
        max_value: a non-negative number capping the output, or None (default: no cap).
        negative_slope: a non-negative number, the slope below the threshold (default 0.0).
        threshold: a non-negative number; inputs at or below it are damped (default 0.0).

    Input shape: any. Output shape: the input shape.

    PyTorch has ``nn.ReLU``, ``nn.ReLU6`` (max_value 6), ``nn.LeakyReLU`` and
    ``nn.Threshold`` for the separate cases; TensorFlow/Keras have this layer.
    """

    def __init__(self, max_value: float | None = None, negative_slope: float = 0.0, threshold: float = 0.0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.max_value = _non_negative("ReLU", "max_value", max_value, allow_none=True)
        self.negative_slope = _non_negative("ReLU", "negative_slope", negative_slope)
        self.threshold = _non_negative("ReLU", "threshold", threshold)
        self._config_args = {"max_value": self.max_value, "negative_slope": self.negative_slope,
                             "threshold": self.threshold}

    def call(self, inputs):
        # Keras's formula, term by term: the part above the threshold, capped, minus the
        # slope times the part below it.
        if self.threshold:
            out = ops.where(ops.greater(inputs, self.threshold), inputs, 0.0)
        else:
            out = ops.relu(inputs)
        if self.max_value is not None:
            out = ops.clip(out, 0.0, self.max_value)
        if self.negative_slope:
            below = ops.relu(ops.subtract(self.threshold, inputs)) if self.threshold else \
                ops.relu(ops.negative(inputs))
            out = ops.subtract(out, ops.multiply(self.negative_slope, below))
        return out


class LeakyReLU(_Elementwise):
    """Leaky rectified linear unit: ``f(x) = x`` for ``x > 0``, ``negative_slope * x`` otherwise.

    Args:
        negative_slope: a non-negative number, default 0.3 (the activation function
            ``"leaky_relu"`` defaults to 0.2, as in Keras).

    Input shape: any. Output shape: the input shape.

    PyTorch's ``nn.LeakyReLU`` defaults to a slope of 0.01.
    """

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any):
        super().__init__(**kwargs)
        self.negative_slope = _non_negative("LeakyReLU", "negative_slope", negative_slope)
        self._config_args = {"negative_slope": self.negative_slope}

    def call(self, inputs):
        # where, not max(x, a*x): the slope may exceed 1. The gradient at 0 is the slope, as TF's.
        return ops.where(ops.greater(inputs, 0.0), inputs, ops.multiply(inputs, self.negative_slope))


class PReLU(_Elementwise):
    """Parametric ReLU: a leaky ReLU whose slope ``alpha`` is learned, one per input cell.

    ``f(x) = relu(x) - alpha * relu(-x)``, i.e. ``x`` for ``x >= 0`` and ``alpha * x`` below.

    Args:
        alpha_initializer: default "zeros" (so the layer starts as a plain ReLU).
        alpha_regularizer: default None.
        shared_axes: axes (1-based, the batch axis is 0) along which one alpha is shared, e.g.
            ``[1, 2]`` for one alpha per channel of (batch, height, width, channels) images.
            Default None: one alpha per cell of a sample.

    Weights: alpha of shape ``input_shape[1:]`` with the shared axes set to 1.

    Input shape: any, with known sizes on the axes not shared. Output shape: the input shape.

    PyTorch's ``nn.PReLU(num_parameters=1, init=0.25)`` shares one alpha per channel (axis 1,
    channels first) or overall, and starts it at 0.25.
    """

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, shared_axes=None, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = [shared_axes] if not isinstance(shared_axes, (list, tuple)) else list(shared_axes)
            if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1
                                   for a in axes):
                raise ValueError(f"PReLU: shared_axes must be None, an axis >= 1 or a list of them (the batch "
                                 f"axis 0 is always shared), got shared_axes={shared_axes!r}")
            self.shared_axes = [int(a) for a in axes]
        self._config_args = {"alpha_initializer": alpha_initializer, "alpha_regularizer": alpha_regularizer,
                             "shared_axes": self.shared_axes}

    def build(self, input_shape: Shape) -> None:
        shape = list(input_shape[1:])
        for axis in self.shared_axes or ():
            if axis >= len(input_shape):
                raise ValueError(f"PReLU {self.name!r}: shared axis {axis} is out of range for inputs of shape "
                                 f"{tuple(input_shape)}")
            shape[axis - 1] = 1
        if None in shape:
            raise ValueError(f"PReLU {self.name!r}: the axes that are not shared must have known sizes, got input "
                             f"shape {tuple(input_shape)}; share the unknown axes with shared_axes=")
        self.alpha = self.add_weight("alpha", tuple(shape), self.alpha_initializer, self.alpha_regularizer)

    def call(self, inputs):
        return ops.subtract(ops.relu(inputs), ops.multiply(self.alpha, ops.relu(ops.negative(inputs))))


class ELU(_Elementwise):
    """Exponential linear unit: ``f(x) = x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    Args:
        alpha: the scale of the negative part, default 1.0.

    Input shape: any. Output shape: the input shape.

    PyTorch's ``nn.ELU(alpha=1.0)`` is the same function.
    """

    def __init__(self, alpha: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        if not np.isfinite(alpha):
            raise ValueError(f"ELU: alpha must be a finite number, got alpha={alpha!r}")
        self.alpha = float(alpha)
        self._config_args = {"alpha": self.alpha}

    def call(self, inputs):
        return activations.elu(inputs, self.alpha)


class Softmax(_Elementwise):
    """Softmax over ``axis``: ``exp(x - max(x)) / sum(exp(x - max(x)))``.

    Args:
        axis: an int or a list of ints, the axes normalized together (default -1).

    Call arguments:
        inputs: the logits.
        mask: optional, broadcastable to the inputs; True (or > 0.5) keeps a position. Masked
            positions get -1e9 before the softmax (-3e4 in float16) and 0 after it, as in Keras.

    Input shape: any. Output shape: the input shape.

    PyTorch's ``nn.Softmax(dim=None)`` takes one axis only.
    """

    def __init__(self, axis=-1, **kwargs: Any):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            raise ValueError(f"Softmax: axis must be an int or a list of ints, got axis={axis!r}")
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        self._config_args = {"axis": self.axis}

    def build(self, input_shape: Shape) -> None:
        ndim = len(input_shape)
        for a in self.axis if isinstance(self.axis, list) else [self.axis]:
            if not -ndim <= a < ndim:
                raise ValueError(f"Softmax {self.name!r}: axis {a} is out of range for inputs of rank {ndim}")

    def call(self, inputs, mask=None):
        if mask is not None:
            if isinstance(mask, (np.ndarray, list, tuple)):
                mask = ops.convert(np.asarray(mask))
            if "bool" not in str(getattr(mask, "dtype", "")):
                mask = ops.greater(mask, 0.5)
            large_negative = -3e4 if "float16" in str(getattr(inputs, "dtype", "")) else -1e9
            inputs = ops.where(mask, inputs, large_negative)
        if isinstance(self.axis, list) and len(self.axis) > 1:
            axis = tuple(self.axis)
            out = ops.exp(ops.subtract(inputs, ops.logsumexp(inputs, axis=axis, keepdims=True)))
        else:
            out = ops.softmax(inputs, axis=self.axis[0] if isinstance(self.axis, list) else self.axis)
        if mask is not None:
            out = ops.where(mask, out, 0.0)
        return out

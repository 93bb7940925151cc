"""Normalization layers: BatchNormalization and LayerNormalization (Keras 3 semantics)."""
from __future__ import annotations

from typing import Any

from .. import initializers, ops, regularizers
from ..backend import native_kernel
from .base import Layer, Shape


def _check_epsilon(where: str, epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"{where}: epsilon must be a positive number, got epsilon={epsilon!r}")
    return float(epsilon)


def _normalize_axes(where: str, axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (int or sequence, negatives allowed) as sorted non-negative ints, checked against ``ndim``."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{where}: axis {a} is out of range for inputs of rank {ndim}")
        if a % ndim == 0:
            raise ValueError(f"{where}: cannot normalize over the batch axis (axis={axis!r})")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: axis {axis!r} names an axis twice")
    return tuple(sorted(out))


def _broadcastable(param, ndim: int, axes: tuple[int, ...], input_shape: Shape):
    """A weight of shape ``input_shape[axes]`` reshaped to broadcast against the inputs."""
    if axes == (ndim - 1,):
        return param
    shape = [1] * ndim
    for a in axes:
        shape[a] = input_shape[a]
    return ops.reshape(param, tuple(shape))


class BatchNormalization(Layer):
    """Normalizes each feature with batch statistics while training, moving ones at inference.

    Training (``training=True`` and the layer trainable), over every axis but ``axis``::

        mean, var = mean(x), mean((x - mean)**2)          # biased variance
        output = (x - mean) / sqrt(var + epsilon) * gamma + beta
        moving_mean = momentum * moving_mean + (1 - momentum) * mean
        moving_variance = momentum * moving_variance + (1 - momentum) * var

    Inference: ``output = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta``.
    A layer with ``trainable=False`` always runs in inference mode (as in Keras 3).

    Args:
        axis: the feature axis, an int (default -1: channels last).
        momentum: weight of the old value in the moving averages (default 0.99).
        epsilon: added to the variance before the square root (default 1e-3).
        center: learn an offset ``beta`` (default True).
        scale: learn a factor ``gamma`` (default True).
        beta_initializer: default "zeros". gamma_initializer: default "ones".
        moving_mean_initializer: default "zeros". moving_variance_initializer: default "ones".
        beta_regularizer / gamma_regularizer: default None.

    Weights, in this order: gamma (if ``scale``), beta (if ``center``), moving_mean,
    moving_variance (non-trainable), each of shape (features,).

    Input shape: any, with a known size on ``axis``. Output shape: the input shape.

    PyTorch's ``BatchNorm*d`` has momentum 0.1 with the opposite meaning
    (``running = 0.9 * running + 0.1 * batch``), eps 1e-5, normalizes axis 1
    (channels first) and keeps an *unbiased* running variance.
    """

    compute_in_float32 = True  # mean and variance in float32 under mixed precision

    supports_masking = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"BatchNormalization: axis must be an int, got axis={axis!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got momentum={momentum!r}")
        self.axis = axis
        self.momentum = float(momentum)
        self.epsilon = _check_epsilon("BatchNormalization", epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self._config_args = {"axis": axis, "momentum": self.momentum, "epsilon": self.epsilon, "center": self.center,
                        "scale": self.scale, "beta_initializer": beta_initializer,
                        "gamma_initializer": gamma_initializer, "moving_mean_initializer": moving_mean_initializer,
                        "moving_variance_initializer": moving_variance_initializer,
                        "beta_regularizer": beta_regularizer, "gamma_regularizer": gamma_regularizer}

    def build(self, input_shape: Shape) -> None:
        ndim = len(input_shape)
        (self._axis,) = _normalize_axes(f"BatchNormalization {self.name!r}", self.axis, ndim)
        features = input_shape[self._axis]
        if features is None:
            raise ValueError(f"BatchNormalization {self.name!r}: axis {self.axis} of the input must have a "
                             f"known size, got input shape {input_shape}")
        shape = (features,)
        self.gamma = (self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
                      if self.scale else None)
        self.beta = (self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)
                     if self.center else None)
        self.moving_mean = self.add_weight("moving_mean", shape, self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                                               trainable=False)
        self._reduce_axes = tuple(i for i in range(ndim) if i != self._axis)
        self._input_shape = input_shape

    def call(self, inputs, training: bool = False):
        kernel = native_kernel(ops.current_backend(), self)
        if kernel is not None:  # torch: F.batch_norm over the channels (last) axis
            out = kernel(inputs, training=training)
            if out is not None:
                return out
        ndim, axes = len(self._input_shape), (self._axis,)

        def bcast(v):
            return _broadcastable(v, ndim, axes, self._input_shape)

        if training and self.trainable:
            mean = ops.mean(inputs, axis=self._reduce_axes)
            variance = ops.mean(ops.square(ops.subtract(inputs, bcast(mean))), axis=self._reduce_axes)
            self._update_moving(self.moving_mean, mean)
            self._update_moving(self.moving_variance, variance)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        inv = ops.divide(1.0, ops.sqrt(ops.add(variance, self.epsilon)))
        if self.gamma is not None:
            inv = ops.multiply(inv, self.gamma)
        out = ops.multiply(ops.subtract(inputs, bcast(mean)), bcast(inv))
        if self.beta is not None:
            out = ops.add(out, bcast(self.beta))
        return out

    def _update_moving(self, variable, batch_value) -> None:
        # moving = m * moving + (1 - m) * batch, with no gradient history kept by any backend
        new = ops.add(ops.multiply(variable, self.momentum), ops.multiply(batch_value, 1.0 - self.momentum))
        backend = ops.current_backend_or_none() or variable.backend or ops.current_backend()
        backend.assign(variable.value, ops.stop_gradient(new))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape



class LayerNormalization(Layer):
    """Normalizes each sample over ``axis`` (by default its features), then scales and shifts.

    ``output = (x - mean) / sqrt(var + epsilon) * gamma + beta``, with ``mean`` and the
    biased ``var`` taken over ``axis`` of each sample separately (no batch statistics,
    so training and inference compute the same thing).

    Args:
        axis: int or list of ints, the axes to normalize over (default -1).
        epsilon: added to the variance before the square root (default 1e-3).
        center: learn an offset ``beta`` (default True).
        scale: learn a factor ``gamma`` (default True).
        beta_initializer: default "zeros". gamma_initializer: default "ones".
        beta_regularizer / gamma_regularizer: default None.

    Weights: gamma (if ``scale``), then beta (if ``center``), of shape ``input_shape[axis]``.

    Input shape: any, with known sizes on ``axis``. Output shape: the input shape.

    PyTorch's ``nn.LayerNorm`` takes ``normalized_shape`` (always the trailing axes)
    and defaults to eps 1e-5.
    """

    compute_in_float32 = True  # mean and variance in float32 under mixed precision

    supports_masking = True

    def __init__(self, axis=-1, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        valid = (isinstance(axis, int) and not isinstance(axis, bool)) or (
            isinstance(axis, (list, tuple)) and len(axis) > 0
            and all(isinstance(a, int) and not isinstance(a, bool) for a in axis))
        if not valid:
            raise ValueError(f"LayerNormalization: axis must be an int or a non-empty list of ints, "
                             f"got axis={axis!r}")
        self.axis = axis if isinstance(axis, int) else list(axis)
        self.epsilon = _check_epsilon("LayerNormalization", epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self._config_args = {"axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                        "beta_initializer": beta_initializer, "gamma_initializer": gamma_initializer,
                        "beta_regularizer": beta_regularizer, "gamma_regularizer": gamma_regularizer}

    def build(self, input_shape: Shape) -> None:
        self._axes = _normalize_axes(f"LayerNormalization {self.name!r}", self.axis, len(input_shape))
        shape = tuple(input_shape[a] for a in self._axes)
        if None in shape:
            raise ValueError(f"LayerNormalization {self.name!r}: axes {self.axis} of the input must have known "
                             f"sizes, got input shape {input_shape}")
        self.gamma = (self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
                      if self.scale else None)
        self.beta = (self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)
                     if self.center else None)
        self._input_shape = input_shape

    def call(self, inputs):
        kernel = native_kernel(ops.current_backend(), self)
        if kernel is not None:  # torch: F.layer_norm over trailing axes
            return kernel(inputs)
        ndim = len(self._input_shape)
        mean = ops.mean(inputs, axis=self._axes, keepdims=True)
        centered = ops.subtract(inputs, mean)
        variance = ops.mean(ops.square(centered), axis=self._axes, keepdims=True)
        out = ops.divide(centered, ops.sqrt(ops.add(variance, self.epsilon)))
        if self.gamma is not None:
            out = ops.multiply(out, _broadcastable(self.gamma, ndim, self._axes, self._input_shape))
        if self.beta is not None:
            out = ops.add(out, _broadcastable(self.beta, ndim, self._axes, self._input_shape))
        return out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


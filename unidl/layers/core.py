"""Core layers: Dense, Activation, Flatten, Reshape, Dropout."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import activations, initializers, ops, regularizers
from .base import Layer, Shape, provisional_rng


class Dense(Layer):
    """Densely connected layer.

    ``output = activation(inputs @ kernel + bias)``, kernel of shape (in, units).
    Inputs of rank > 2 are multiplied along their last axis.

    Args:
        units: output size, a positive int.
        activation: name or callable (default: none, i.e. linear).
        use_bias: whether to add a bias vector (default True).
        kernel_initializer: default "glorot_uniform". bias_initializer: default "zeros".
        kernel_regularizer / bias_regularizer: e.g. "l2" or ``unidl.regularizers.l1_l2(...)``.

    Input shape: (batch, ..., in). Output shape: (batch, ..., units).

    PyTorch's ``nn.Linear`` stores the transposed kernel (units, in) and
    initialises with kaiming_uniform(a=sqrt(5)); unidl uses Keras's layout and init everywhere.
    """

    supports_masking = True

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"Dense: units must be a positive integer, got units={units!r}")
        self.units = int(units)
        set_kernel_options(self, activation, use_bias, kernel_initializer, bias_initializer,
                           kernel_regularizer, bias_regularizer)

    def build(self, input_shape: Shape) -> None:
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(f"Dense {self.name!r}: the last axis of the input must be known, got {input_shape}")
        self.kernel = self.add_weight("kernel", (in_dim, self.units), self.kernel_initializer,
                                      self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    def call(self, inputs):
        out = ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            out = ops.add(out, self.bias)
        return self.activation(out)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def set_kernel_options(layer: Layer, activation, use_bias, kernel_initializer, bias_initializer,
                       kernel_regularizer, bias_regularizer) -> None:
    """The options Dense and the convolutions share: activation, bias, initializers, regularizers."""
    layer.activation = activations.get(activation)
    layer.use_bias = use_bias
    layer.kernel_initializer = initializers.get(kernel_initializer)
    layer.bias_initializer = initializers.get(bias_initializer)
    layer.kernel_regularizer = regularizers.get(kernel_regularizer)
    layer.bias_regularizer = regularizers.get(bias_regularizer)
    # get_config returns these as given (a name stays a name), so cls(**config) rebuilds the layer
    layer._config_args.update(activation=activations.serialize(layer.activation), use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)


class Activation(Layer):
    """Applies an activation function: ``output = activation(inputs)``; shape unchanged."""

    supports_masking = True

    def __init__(self, activation, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)

    def call(self, inputs):
        return self.activation(inputs)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """Flattens each sample: (batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, inputs):
        # -1, not shape[0]: the batch size may be unknown inside a compiled step
        return ops.reshape(inputs, (-1, int(np.prod(ops.shape(inputs)[1:], dtype=np.int64))))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else int(np.prod(rest, dtype=np.int64)))


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (no batch axis; one entry may be -1)."""

    def __init__(self, target_shape: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if any(d == 0 or d < -1 for d in self.target_shape) or sum(d == -1 for d in self.target_shape) > 1:
            raise ValueError(f"Reshape: target_shape must hold positive sizes and at most one -1 (the size left "
                             f"to infer), got target_shape={self.target_shape}")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        size = int(np.prod(input_shape[1:], dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"Reshape {self.name!r}: cannot reshape samples of shape {input_shape[1:]} "
                                 f"into {self.target_shape}")
            target = tuple(size // known if d == -1 else d for d in self.target_shape)
        else:
            target = self.target_shape
        if int(np.prod(target, dtype=np.int64)) != size:
            raise ValueError(f"Reshape {self.name!r}: samples of shape {input_shape[1:]} ({size} values) "
                             f"cannot become {self.target_shape} ({known} values)")
        return (input_shape[0], *target)

    def call(self, inputs):
        return ops.reshape(inputs, (-1, *self.output_shape[1:]))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability ``rate``
    and scale the rest by 1 / (1 - rate); at inference, the identity.

    Masks come from unidl's seeded NumPy generator (not the framework's), so a
    model with dropout trains to the same numbers on every backend.
    """

    draws_host_randomness = True  # a compiled step would freeze the mask: run eagerly
    supports_masking = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got rate={rate!r}")
        self.rate = float(rate)
        if seed is not None and seed < 0:
            raise ValueError(f"Dropout: seed must be a non-negative integer or None, got seed={seed!r}")
        self.seed = seed
        self._mask_rng: np.random.Generator | None = None

    def build(self, input_shape: Shape) -> None:
        if self.seed is not None:
            self._mask_rng = np.random.default_rng(self.seed)
        else:
            parent = self._rng if self._rng is not None else provisional_rng()
            self._mask_rng = np.random.default_rng(parent.integers(2**63))
        self._mask_provisional = self.seed is None and self._rng is None

    def redraw_streams(self, rng: np.random.Generator) -> None:
        if getattr(self, "_mask_provisional", False):  # built outside a model: the model's seed decides
            self._mask_rng = np.random.default_rng(rng.integers(2**63))
            self._mask_provisional = False

    def call(self, inputs, training: bool = False):
        if not training or self.rate == 0.0:
            return inputs
        keep = self._mask_rng.random(ops.shape(inputs)) >= self.rate
        return ops.multiply(inputs, ops.convert(keep / (1.0 - self.rate)))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Masking(Layer):
    """Masks the time steps whose features all equal ``mask_value``: later layers skip them.

    ``mask[b, t] = any(inputs[b, t, :] != mask_value)``; ``output = inputs * mask`` (masked steps
    become 0). Layers after it that take masks (SimpleRNN, LSTM, GRU, the global 1D poolings,
    attention, the loss) leave masked steps out, as in Keras.

    Args:
        mask_value: the padding value (default 0.0).

    Input shape: (batch, time, ...). Output shape: the same.

    PyTorch has no masking layer: ``nn.utils.rnn.pack_padded_sequence`` does this for its RNNs.
    """

    supports_masking = True

    def __init__(self, mask_value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self._config_args = {"mask_value": self.mask_value}

    def compute_mask(self, inputs, mask=None):
        differs = ops.cast(ops.not_equal(inputs, self.mask_value), ops.current_backend().dtype)
        return ops.greater(ops.max(differs, axis=-1), 0.0)

    def call(self, inputs):
        keep = ops.cast(self.compute_mask(inputs), ops.current_backend().dtype)
        return ops.multiply(inputs, ops.expand_dims(keep, -1))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

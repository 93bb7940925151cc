"""Recurrent layers: SimpleRNN, LSTM and GRU, with Keras 3's weight layouts.

Each loops over time in Python (one step per time index) and is vectorised
over the batch and the units. One matmul projects the inputs of every time step
(``x @ kernel + bias``, all gates at once); ``ops.unstack`` hands out the steps,
and each step adds ``h_{t-1} @ recurrent_kernel`` and cuts the result into its
gate blocks. The state starts at zero, which the first step uses by leaving the
recurrent terms out (the same numbers, and no batch-sized zeros: the batch size
may be unknown inside a compiled step).

``unstack`` rather than slicing step by step: a slice's gradient is as large as
its source, so T slices would cost O(T^2) in the backward pass; every backend's
unstack accumulates the T slice gradients once (torch.unbind, tf.unstack, the
NumPy tape's slice accumulator).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import activations, initializers, ops, regularizers
from ..backend import native_kernel
from .base import Layer, Shape


class _Recurrent(Layer):
    """Shared by SimpleRNN, LSTM and GRU: argument checks, the time loop, shapes and config.

    A subclass sets ``_gates`` (gate blocks in the kernel's columns) and ``_n_states``,
    and implements ``build`` and ``_step(projected, recurrent, states) -> (output, new_states)``:
    ``projected`` is ``x_t @ kernel + input bias`` (batch, gates * units); ``recurrent`` is
    ``h_{t-1} @ recurrent_kernel`` plus the recurrent bias (GRU), or None when there is
    nothing to add (first step); ``states`` is None on the first step.
    """

    _gates = 1
    _n_states = 1

    def _setup(self, units, activation, recurrent_activation, use_bias, kernel_initializer,
               recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
               bias_regularizer, return_sequences, return_state, go_backwards, **extra) -> None:
        where = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"{where}: units must be a positive integer, got units={units!r}")
        for flag, value in (("use_bias", use_bias), ("return_sequences", return_sequences),
                            ("return_state", return_state), ("go_backwards", go_backwards)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{where}: {flag} must be True or False, got {flag}={value!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        # The constructor's arguments as given (names stay names), for get_config.
        self._config_args = {
            "units": self.units, "activation": _name(activation), "use_bias": self.use_bias,
            "kernel_initializer": kernel_initializer, "recurrent_initializer": recurrent_initializer,
            "bias_initializer": bias_initializer, "kernel_regularizer": kernel_regularizer,
            "recurrent_regularizer": recurrent_regularizer, "bias_regularizer": bias_regularizer,
            "return_sequences": self.return_sequences, "return_state": self.return_state,
            "go_backwards": self.go_backwards, **extra}
        if recurrent_activation is not None:
            self._config_args["recurrent_activation"] = _name(recurrent_activation)

    # ------------------------------------------------------------- build
    def _check_input(self, input_shape: Shape) -> int:
        where = f"{type(self).__name__} {self.name!r}"
        if len(input_shape) != 3:
            raise ValueError(f"{where} expects inputs of shape (batch, time, features), got {input_shape}")
        if input_shape[2] is None:
            raise ValueError(f"{where}: the feature axis of the input must be known, got {input_shape}")
        if input_shape[1] == 0:
            raise ValueError(f"{where}: the input has no time steps, got {input_shape}")
        return input_shape[2]

    def _add_kernels(self, input_shape: Shape, bias_shape) -> None:
        features = self._check_input(input_shape)
        width = self._gates * self.units
        self.kernel = self.add_weight("kernel", (features, width), self.kernel_initializer,
                                      self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width),
                                                self.recurrent_initializer, self.recurrent_regularizer)
        self.bias = (self.add_weight("bias", bias_shape, self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    # -------------------------------------------------------------- call
    def _split(self, z):
        """(batch, gates * units) or (gates * units,) -> one tensor per gate, in kernel column order."""
        if self._gates == 1:
            return [z]
        blocks = ops.reshape(z, (-1, self._gates, self.units))
        return [ops.take(blocks, k, axis=1) for k in range(self._gates)]

    def _biases(self):
        """(input bias, recurrent bias), each None where there is none."""
        return self.bias, None

    supports_masking = True
    # Output at a masked step: the previous one (Keras's default), or zeros (what Bidirectional
    # asks of its two layers, so that the reversed backward outputs line up with zeros at padding).
    zero_output_for_mask = False

    def call(self, inputs, mask=None, initial_state=None):
        if mask is None:
            kernel = native_kernel(ops.current_backend(), self)
            if kernel is not None:  # e.g. torch's fused nn.LSTM kernel: the same numbers, several times faster
                return kernel(inputs, initial_state=initial_state)
        steps = ops.shape(inputs)[1]
        if steps is None:
            raise ValueError(f"{type(self).__name__} {self.name!r}: the number of time steps must be known")
        input_bias, recurrent_bias = self._biases()
        # One matmul projects every time step; unstack then hands the steps out (natively, its
        # backward is one stack: taking each step would cost a full-size gradient per step).
        projected_steps = ops.matmul(inputs, self.kernel)
        if input_bias is not None:
            projected_steps = ops.add(projected_steps, input_bias)
        projected_steps = ops.unstack(projected_steps, axis=1)
        keep_steps = None if mask is None else ops.unstack(ops.expand_dims(mask, -1), axis=1)
        states = self._initial_states(initial_state)
        output, outputs = None, []
        for t in (range(steps - 1, -1, -1) if self.go_backwards else range(steps)):
            projected = projected_steps[t]
            recurrent = None if states is None else ops.matmul(states[0], self.recurrent_kernel)
            if recurrent_bias is not None:
                recurrent = recurrent_bias if recurrent is None else ops.add(recurrent, recurrent_bias)
            new_output, new_states = self._step(projected, recurrent, states)
            if keep_steps is not None:  # a masked step keeps the previous output and states (Keras)
                output, states = self._keep(keep_steps[t], new_output, new_states, output, states)
                if self.zero_output_for_mask and self.return_sequences:
                    output = ops.where(keep_steps[t], new_output, 0.0)
            else:
                output, states = new_output, new_states
            if self.return_sequences:
                outputs.append(ops.expand_dims(output, 1))
        if self.return_sequences:  # in processing order: reversed in time when go_backwards
            output = ops.concatenate(outputs, axis=1)
        return [output, *states] if self.return_state else output

    def _initial_states(self, initial_state):
        """The states to start from: None (zeros, left out of the first step), or the given tensors."""
        if initial_state is None:
            return None
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != self._n_states:
            raise ValueError(f"{type(self).__name__} {self.name!r} has {self._n_states} state(s); initial_state "
                             f"holds {len(states)}")
        return states

    @staticmethod
    def _keep(keep, new_output, new_states, output, states):
        """Where ``keep`` (batch, 1) is False, the previous output and states (zeros before any step)."""
        if states is None:  # nothing before this step: a masked first step keeps zeros
            zeros = ops.multiply(new_output, 0.0)
            output, states = zeros, [zeros for _ in new_states]
        chosen = [ops.where(keep, new, old) for new, old in zip(new_states, states)]
        return ops.where(keep, new_output, output), chosen

    def compute_mask(self, inputs, mask=None):
        out = mask if (self.return_sequences and mask is not None) else None
        return [out] + [None] * self._n_states if self.return_state else out

    # ------------------------------------------------------ shapes, config
    def compute_output_shape(self, input_shape: Shape):
        batch, steps = input_shape[0], input_shape[1]
        output = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output, *[(batch, self.units)] * self._n_states]
        return output



def _name(activation):
    """An activation argument for get_config: the registered name when it has one."""
    return activation if activation is None or isinstance(activation, str) else activations.name_of(activation)


_RNN_SHAPES = """
    Input shape: (batch, time, features); the number of time steps must be known.
    Output shape: (batch, time, units) with ``return_sequences``, else (batch, units) (the
    last step processed). With ``return_state`` the layer returns a list
    ``[output, *final_states]``, each state (batch, units).
"""


class SimpleRNN(_Recurrent):
    """Fully connected recurrent layer: ``h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    The output at each step is ``h_t``; ``h_0 = 0``.

    Args:
        units: size of the state and output, a positive int.
        activation: default "tanh".
        use_bias: default True.
        kernel_initializer: default "glorot_uniform"; shape (features, units).
        recurrent_initializer: default "orthogonal"; shape (units, units).
        bias_initializer: default "zeros"; shape (units,).
        kernel_regularizer / recurrent_regularizer / bias_regularizer: default None.
        return_sequences: return every step's output, not only the last (default False).
        return_state: also return the final state (default False).
        go_backwards: process the sequence from its last step to its first (default False).
    """ + _RNN_SHAPES + """
    PyTorch's ``nn.RNN`` stores transposed kernels ``weight_ih`` (units, features) and
    ``weight_hh`` (units, units), has two biases (``b_ih + b_hh``) and is time-major
    unless ``batch_first=True``.
    """

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._setup(units, activation, None, use_bias, kernel_initializer, recurrent_initializer,
                     bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer,
                     return_sequences, return_state, go_backwards)

    def build(self, input_shape: Shape) -> None:
        self._add_kernels(input_shape, (self.units,))

    def _step(self, projected, recurrent, states):
        z = projected if recurrent is None else ops.add(projected, recurrent)
        h = self.activation(z)
        return h, [h]


def _lstm_bias_initializer(bias_initializer):
    """Keras's unit_forget_bias: the given initializer for the i, c, o blocks, ones for f."""
    def init(shape, rng):
        units = shape[0] // 4
        return np.concatenate([bias_initializer((units,), rng), np.ones(units), bias_initializer((2 * units,), rng)])
    return init


class LSTM(_Recurrent):
    """Long short-term memory layer (Hochreiter & Schmidhuber, 1997), as Keras computes it.

    With ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias`` split into four
    blocks of ``units`` columns, in the order i, f, c, o::

        i = recurrent_activation(z_i)      f = recurrent_activation(z_f)
        o = recurrent_activation(z_o)      c_t = f * c_{t-1} + i * activation(z_c)
        h_t = o * activation(c_t)

    The output at each step is ``h_t``; ``h_0 = c_0 = 0``.

    Args:
        units: size of the states and output, a positive int.
        activation: default "tanh". recurrent_activation: default "sigmoid".
        use_bias: default True.
        kernel_initializer: default "glorot_uniform"; shape (features, 4 * units).
        recurrent_initializer: default "orthogonal"; shape (units, 4 * units).
        bias_initializer: default "zeros"; shape (4 * units,).
        unit_forget_bias: start the forget-gate block of the bias at 1 (default True).
        kernel_regularizer / recurrent_regularizer / bias_regularizer: default None.
        return_sequences: return every step's output, not only the last (default False).
        return_state: also return the final states ``[h, c]`` (default False).
        go_backwards: process the sequence from its last step to its first (default False).
    """ + _RNN_SHAPES + """
    PyTorch's ``nn.LSTM`` orders the gates i, f, g, o (g is Keras's c), stores
    transposed kernels ``weight_ih`` (4 * units, features) and ``weight_hh``
    (4 * units, units), and has two biases ``b_ih + b_hh`` (their sum is Keras's bias).
    """

    _gates = 4
    _n_states = 2

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias: bool = True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(unit_forget_bias, (bool, np.bool_)):
            raise ValueError(f"LSTM: unit_forget_bias must be True or False, got {unit_forget_bias!r}")
        self._setup(units, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                    bias_regularizer, return_sequences, return_state, go_backwards,
                    unit_forget_bias=bool(unit_forget_bias))
        self.unit_forget_bias = bool(unit_forget_bias)
        if self.unit_forget_bias:
            self.bias_initializer = _lstm_bias_initializer(self.bias_initializer)

    def build(self, input_shape: Shape) -> None:
        self._add_kernels(input_shape, (4 * self.units,))

    def _step(self, projected, recurrent, states):
        z_i, z_f, z_c, z_o = self._split(projected if recurrent is None else ops.add(projected, recurrent))
        i = self.recurrent_activation(z_i)
        candidate = ops.multiply(i, self.activation(z_c))
        if states is None:
            c = candidate
        else:
            c = ops.add(ops.multiply(self.recurrent_activation(z_f), states[1]), candidate)
        h = ops.multiply(self.recurrent_activation(z_o), self.activation(c))
        return h, [h, c]


class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al., 2014), Keras's ``reset_after=True`` variant.

    Kernel columns hold the blocks z (update), r (reset), h (candidate). The bias has
    shape (2, 3 * units): row 0 is added to ``x_t @ kernel``, row 1 to ``h_{t-1} @ recurrent_kernel``::

        x_z, x_r, x_h = split(x_t @ kernel + bias[0])
        u_z, u_r, u_h = split(h_{t-1} @ recurrent_kernel + bias[1])
        z = recurrent_activation(x_z + u_z)       r = recurrent_activation(x_r + u_r)
        hh = activation(x_h + r * u_h)            h_t = z * h_{t-1} + (1 - z) * hh

    The output at each step is ``h_t``; ``h_0 = 0``.

    Args:
        units: size of the state and output, a positive int.
        activation: default "tanh". recurrent_activation: default "sigmoid".
        use_bias: default True.
        kernel_initializer: default "glorot_uniform"; shape (features, 3 * units).
        recurrent_initializer: default "orthogonal"; shape (units, 3 * units).
        bias_initializer: default "zeros"; shape (2, 3 * units).
        kernel_regularizer / recurrent_regularizer / bias_regularizer: default None.
        return_sequences: return every step's output, not only the last (default False).
        return_state: also return the final state (default False).
        go_backwards: process the sequence from its last step to its first (default False).
        reset_after: must be True (the only variant implemented; Keras 3's default).
    """ + _RNN_SHAPES + """
    PyTorch's ``nn.GRU`` computes the same function (it applies the reset gate after
    the recurrent matmul) but orders the gates r, z, n, stores transposed kernels and
    keeps the two bias rows as ``b_ih`` and ``b_hh``.
    """

    _gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, reset_after: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if reset_after is not True:
            raise ValueError(f"GRU: only reset_after=True (Keras 3's default) is implemented, "
                             f"got reset_after={reset_after!r}")
        self._setup(units, activation, recurrent_activation, use_bias, kernel_initializer,
                    recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                    bias_regularizer, return_sequences, return_state, go_backwards, reset_after=True)
        self.reset_after = True

    def build(self, input_shape: Shape) -> None:
        self._add_kernels(input_shape, (2, 3 * self.units))

    def _biases(self):
        if self.bias is None:
            return None, None
        return ops.take(self.bias, 0, axis=0), ops.take(self.bias, 1, axis=0)

    def _step(self, projected, recurrent, states):
        x_z, x_r, x_h = self._split(projected)
        if recurrent is None:  # first step without bias: h_0 @ recurrent_kernel is zero
            z = self.recurrent_activation(x_z)
            hh = self.activation(x_h)
        else:
            u_z, u_r, u_h = self._split(recurrent)
            z = self.recurrent_activation(ops.add(x_z, u_z))
            r = self.recurrent_activation(ops.add(x_r, u_r))
            hh = self.activation(ops.add(x_h, ops.multiply(r, u_h)))
        h = ops.multiply(ops.subtract(1.0, z), hh)
        if states is not None:
            h = ops.add(ops.multiply(z, states[0]), h)
        return h, [h]

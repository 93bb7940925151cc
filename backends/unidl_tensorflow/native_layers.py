"""Native kernels for whole layers on TensorFlow: SimpleRNN, LSTM and GRU as one ``tf.while_loop``
over time.

The generic recurrent layers loop over time in Python, so a traced step (``compile_step``) holds T
copies of the cell: a long trace and a large graph. Here the time loop is TensorFlow's own, as in
Keras's TensorFlow backend: one matmul projects the inputs of every step (``x @ kernel + bias``, as
the generic layer does; Keras projects inside the loop), a ``tf.TensorArray`` hands the steps to a
``tf.while_loop`` whose body is one cell step, and another collects the outputs when the layer
returns sequences. The graph holds one cell whatever T is, and T need not be known when tracing.

Each kernel computes exactly what the generic layer (written over unidl.ops) computes, from the
layer's own unidl Variables (Keras layouts, which are TensorFlow's: no reordering), so gradients
reach them as usual; the conformance kit's "native" family compares the two.
``kernel_for(backend, layer)`` answers ``Backend.native_layer``: a kernel for every configuration
of the three built-in layers (any activations, with or without biases, ``go_backwards``,
``return_sequences``, ``return_state``, ``initial_state``); the layer itself runs its generic
version when a mask is given. tanh and sigmoid become TensorFlow's ops directly; any other
activation is the layer's own function, which emits TensorFlow ops through unidl.ops inside the
loop body. Subclasses of the layers (their own ``_step``) get no kernel.

GPUs: Keras runs cuDNN there (``tf.raw_ops.CudnnRNNV3``). It is not used here: unidl has no
TensorFlow-on-GPU machine to check it on, so on a GPU this same loop runs (correct, not fused).
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from unidl import activations

_RECURRENT = ("SimpleRNN", "LSTM", "GRU")
# unidl's activations whose TensorFlow op is the same function (unidl.ops.tanh is raw_ops.Tanh...).
_TF_ACTIVATIONS = {activations.tanh: tf.math.tanh, activations.sigmoid: tf.math.sigmoid}


def kernel_for(backend, layer) -> Callable | None:
    kind = type(layer).__name__
    if kind in _RECURRENT and type(layer).__module__ == "unidl.layers.recurrent":
        return _recurrent_kernel(backend, layer, kind)
    return None


def _read(backend, variable):
    """A weight's tensor as the layer's generic path reads it: in the compute dtype under a
    mixed-precision policy (the backend is then a compute twin), else as stored."""
    if variable is None:
        return None
    value = variable.value
    return backend.cast(value, backend.dtype) if backend.autocast else tf.convert_to_tensor(value)


def _activation(fn) -> Callable:
    return _TF_ACTIVATIONS.get(fn, fn)


# One step of each cell, as the generic layer's ``_step`` computes it (the same operations in the
# same order, so the same numbers). ``projected`` is this step's ``x_t @ kernel + input bias``.

def _simple_rnn_cell(layer, recurrent_kernel, recurrent_bias):
    act = _activation(layer.activation)

    def step(projected, states):
        h = act(projected + tf.linalg.matmul(states[0], recurrent_kernel))
        return h, (h,)
    return step


def _lstm_cell(layer, recurrent_kernel, recurrent_bias):
    act, gate = _activation(layer.activation), _activation(layer.recurrent_activation)

    def step(projected, states):
        h, c = states
        z_i, z_f, z_c, z_o = tf.split(projected + tf.linalg.matmul(h, recurrent_kernel), 4, axis=1)
        c = gate(z_f) * c + gate(z_i) * act(z_c)
        h = gate(z_o) * act(c)
        return h, (h, c)
    return step


def _gru_cell(layer, recurrent_kernel, recurrent_bias):
    act, gate = _activation(layer.activation), _activation(layer.recurrent_activation)

    def step(projected, states):
        h = states[0]
        recurrent = tf.linalg.matmul(h, recurrent_kernel)
        if recurrent_bias is not None:
            recurrent = recurrent + recurrent_bias
        x_z, x_r, x_h = tf.split(projected, 3, axis=1)
        u_z, u_r, u_h = tf.split(recurrent, 3, axis=1)
        z = gate(x_z + u_z)
        r = gate(x_r + u_r)
        candidate = act(x_h + r * u_h)
        h = (1.0 - z) * candidate + z * h
        return h, (h,)
    return step


_CELLS = {"SimpleRNN": _simple_rnn_cell, "LSTM": _lstm_cell, "GRU": _gru_cell}


def _recurrent_kernel(backend, layer, kind: str) -> Callable:
    make_cell = _CELLS[kind]

    def kernel(inputs, initial_state=None):
        given = layer._initial_states(initial_state)  # the generic layer's checks and errors
        x = backend._as_tensor(inputs)
        kernel_w, recurrent_kernel = _read(backend, layer.kernel), _read(backend, layer.recurrent_kernel)
        bias = _read(backend, layer.bias)
        input_bias, recurrent_bias = bias, None
        if kind == "GRU" and bias is not None:  # (2, 3 * units): row 0 for the inputs, row 1 for the state
            input_bias, recurrent_bias = tf.unstack(bias, axis=0)
        step = make_cell(layer, recurrent_kernel, recurrent_bias)
        dtype, units = kernel_w.dtype, layer.units

        # Time-major, in processing order; then one matmul for every step's input projection.
        x = tf.transpose(x, (1, 0, 2))
        if layer.go_backwards:
            x = tf.reverse(x, (0,))
        dynamic = tf.shape(x)
        steps = x.shape[0] if x.shape[0] is not None else dynamic[0]
        batch = dynamic[1]
        projected = tf.linalg.matmul(tf.reshape(x, (-1, x.shape[2])), kernel_w)
        if input_bias is not None:
            projected = projected + input_bias
        projected = tf.reshape(projected, tf.stack([dynamic[0], batch, kernel_w.shape[1]]))
        projected_steps = tf.TensorArray(dtype, size=steps, element_shape=(None, kernel_w.shape[1]))
        projected_steps = projected_steps.unstack(projected)

        if given is None:
            zeros = tf.zeros(tf.stack([batch, units]), dtype)
            states = (zeros,) * layer._n_states
        else:
            states = tuple(tf.cast(backend._as_tensor(s), dtype) for s in given)

        loop = dict(maximum_iterations=steps, parallel_iterations=32)
        if layer.return_sequences:
            outputs = tf.TensorArray(dtype, size=steps, element_shape=(None, units))

            def body(t, states, outputs):
                output, states = step(projected_steps.read(t), states)
                return t + 1, states, outputs.write(t, output)

            _, states, outputs = tf.while_loop(lambda t, *_: t < steps, body, (0, states, outputs), **loop)
            output = tf.transpose(outputs.stack(), (1, 0, 2))  # processing order, as the generic layer
        else:
            def body(t, states):
                return t + 1, step(projected_steps.read(t), states)[1]

            _, states = tf.while_loop(lambda t, *_: t < steps, body, (0, states), **loop)
            output = states[0]  # every cell's output is its state h
        return [output, *states] if layer.return_state else output
    return kernel

"""Native kernels for whole layers on torch: the fused recurrent kernels behind nn.LSTM / nn.GRU / nn.RNN,
``F.scaled_dot_product_attention`` for MultiHeadAttention, and ``F.batch_norm`` / ``F.layer_norm`` for
BatchNormalization and LayerNormalization over the last axes (one kernel each way, where the generic
layers run some ten elementwise ops and as many full-size temporaries; see ``_batch_norm_kernel``).

Each kernel computes exactly what the generic layer (written over unidl.ops) computes, from the
layer's own unidl Variables (Keras layouts), so gradients reach them as usual; the conformance
kit's "native" family compares the two. ``kernel_for(backend, layer)`` answers
``Backend.native_layer``: a kernel when the configuration is one the fused op covers, else None.

Layouts: Keras's kernel (features, gates * units) is torch's ``weight_ih`` transposed. LSTM gates
are i, f, c, o in both; GRU's are z, r, h in Keras and r, z, n in torch (reordered here), and
Keras's reset_after GRU bias (2, 3 * units) is torch's (b_ih, b_hh).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

_RECURRENT = {"SimpleRNN": "rnn_tanh", "LSTM": "lstm", "GRU": "gru"}


def kernel_for(backend, layer) -> Callable | None:
    kind = type(layer).__name__
    if kind in _RECURRENT and type(layer).__module__ == "unidl.layers.recurrent":
        return _recurrent_kernel(backend, layer, kind) if _recurrent_matches(layer, kind) else None
    if kind == "MultiHeadAttention" and type(layer).__module__ == "unidl.layers.attention":
        return _attention_kernel(backend, layer)
    if type(layer).__module__ == "unidl.layers.normalization":
        if kind == "BatchNormalization":
            return _batch_norm_kernel(backend, layer)
        if kind == "LayerNormalization":
            return _layer_norm_kernel(backend, layer)
    return None


def _name(fn) -> str:
    return getattr(fn, "__name__", "")


def _recurrent_matches(layer, kind: str) -> bool:
    """The fused ops compute tanh cells with sigmoid gates, and biases everywhere."""
    if _name(layer.activation) != "tanh" or not layer.use_bias:
        return False
    return kind == "SimpleRNN" or _name(layer.recurrent_activation) == "sigmoid"


def _gru_order(x, units: int, axis: int = -1):
    """Keras's z, r, h blocks -> torch's r, z, n."""
    z, r, h = torch.split(x, units, dim=axis)
    return torch.cat([r, z, h], dim=axis)


def _recurrent_kernel(backend, layer, kind: str) -> Callable:
    op = getattr(torch, _RECURRENT[kind])

    def kernel(inputs, initial_state=None):
        units = layer.units
        w_ih, w_hh = _read(backend, layer.kernel).t(), _read(backend, layer.recurrent_kernel).t()
        if kind == "GRU":
            w_ih, w_hh = _gru_order(w_ih, units, 0), _gru_order(w_hh, units, 0)
            bias = _read(backend, layer.bias)
            b_ih, b_hh = _gru_order(bias[0], units, 0), _gru_order(bias[1], units, 0)
        else:
            b_ih = _read(backend, layer.bias)
            b_hh = torch.zeros_like(b_ih)
        x = torch.flip(inputs, dims=(1,)) if layer.go_backwards else inputs
        batch = x.shape[0]
        if initial_state is None:
            zeros = x.new_zeros((1, batch, units))
            states = (zeros, zeros) if kind == "LSTM" else zeros
        else:
            given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            given = [(backend.convert(s) if not torch.is_tensor(s) else s).to(x.dtype) for s in given]
            states = (given[0][None], given[1][None]) if kind == "LSTM" else given[0][None]
        # cuDNN (CUDA) flattens the weights with views: they must be contiguous, not transposed views.
        params = [w.contiguous() for w in (w_ih, w_hh, b_ih, b_hh)]
        x = x.contiguous()
        if kind == "LSTM":
            output, h, c = op(x, states, params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
            finals = [h[0], c[0]]
        else:
            output, h = op(x, states, params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
            finals = [h[0]]
        result = output if layer.return_sequences else output[:, -1]
        return [result, *finals] if layer.return_state else result
    return kernel


def _attention_kernel(backend, layer) -> Callable:
    """MultiHeadAttention's core through F.scaled_dot_product_attention (fused, and flash on CUDA)."""
    def kernel(query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
               return_attention_scores=False, training=False, use_causal_mask=False, mask=None):
        dropout_active = layer._dropout is not None and training
        masked = any(m is not None for m in (query_mask, value_mask, key_mask, attention_mask, mask))
        if return_attention_scores or dropout_active or masked:
            return None  # let the generic path answer (scores, host-drawn dropout masks, padding masks)
        key = value if key is None else key
        h = layer.num_heads
        q = _project(query, _read(backend, layer.query_kernel), _read(backend, layer.query_bias), h, layer.key_dim)
        k = _project(key, _read(backend, layer.key_kernel), _read(backend, layer.key_bias), h, layer.key_dim)
        v = _project(value, _read(backend, layer.value_kernel), _read(backend, layer.value_bias), h,
                     layer.value_dim)
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=use_causal_mask,
                                               scale=1.0 / math.sqrt(float(layer.key_dim)))
        flat = heads.transpose(1, 2).reshape(heads.shape[0], heads.shape[2], h * layer.value_dim)
        out = flat @ _read(backend, layer.output_kernel).reshape(h * layer.value_dim, -1)
        bias = _read(backend, layer.output_bias)
        return out if bias is None else out + bias

    return kernel


def _batch_norm_kernel(backend, layer) -> Callable | None:
    """BatchNormalization over the last axis (channels last) through ``F.batch_norm`` on the inputs seen
    as (samples, channels): a view, so the reduction runs over every other axis, as the layer's.

    Training: torch normalizes with the biased batch variance, as Keras, but keeps an *unbiased* running
    one, with the opposite momentum. So the kernel gives torch scratch buffers and momentum 1, which
    leaves exactly the batch mean and the unbiased variance in them, and updates the layer's moving
    statistics with Keras's rule itself: ``moving = m * moving + (1 - m) * batch``, the variance taken
    biased (``unbiased * (n - 1) / n``). Inference: torch's own use of the moving statistics.
    """
    if layer._axis != len(layer._input_shape) - 1:
        return None

    def kernel(inputs, training=False):
        channels = inputs.shape[-1]
        flat = inputs.reshape(-1, channels)
        gamma, beta = _read(backend, layer.gamma), _read(backend, layer.beta)
        moving_mean, moving_variance = layer.moving_mean.value, layer.moving_variance.value
        if not (training and layer.trainable):
            out = F.batch_norm(flat, moving_mean.to(flat.dtype), moving_variance.to(flat.dtype), gamma, beta,
                               False, 0.0, layer.epsilon)
            return out.reshape(inputs.shape)
        n = flat.shape[0]
        if n < 2:
            return None  # torch's unbiased variance divides by n - 1: the generic layer answers
        batch_mean, batch_variance = flat.new_zeros((2, channels)).unbind(0)  # one fill for both
        out = F.batch_norm(flat, batch_mean, batch_variance, gamma, beta, True, 1.0, layer.epsilon)
        # (the scratch buffers are saved for torch's backward: read, never changed in place)
        with torch.no_grad():
            m = layer.momentum
            # moving = m moving + (1 - m) batch; torch's unbiased variance times (n - 1) / n is the biased one
            moving_mean.mul_(m).add_(batch_mean.to(moving_mean.dtype), alpha=1.0 - m)
            moving_variance.mul_(m).add_(batch_variance.to(moving_variance.dtype), alpha=(1.0 - m) * (n - 1) / n)
        return out.reshape(inputs.shape)

    return kernel


def _layer_norm_kernel(backend, layer) -> Callable | None:
    """LayerNormalization over the trailing axes through ``F.layer_norm`` (biased variance, epsilon inside
    the square root: the same formula)."""
    ndim, axes = len(layer._input_shape), layer._axes
    if axes != tuple(range(ndim - len(axes), ndim)):
        return None
    shape = tuple(layer._input_shape[a] for a in axes)

    def kernel(inputs, training=False):
        return F.layer_norm(inputs, shape, _read(backend, layer.gamma), _read(backend, layer.beta), layer.epsilon)

    return kernel


def _read(backend, variable):
    """A weight's tensor as the layer's generic path reads it: in the compute dtype under a
    mixed-precision policy (the backend is then a compute twin), else as stored."""
    if variable is None:
        return None
    return backend.cast(variable.value, backend.dtype) if backend.autocast else variable.value


def _project(x, kernel, bias, heads: int, size: int):
    """(batch, T, dim) @ (dim, heads, size) (+ bias) -> (batch, heads, T, size)."""
    out = x @ kernel.reshape(kernel.shape[0], heads * size)
    if bias is not None:
        out = out + bias.reshape(heads * size)
    return out.reshape(x.shape[0], x.shape[1], heads, size).transpose(1, 2)

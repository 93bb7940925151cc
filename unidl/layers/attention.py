"""Attention layers: Attention (Luong-style dot product) and MultiHeadAttention, as Keras computes them.

Both take a query and a value (and optionally a key, default: the value), each
(batch, time, features). Padding is left out through masks: the query's and the
value's Keras masks (from ``Embedding(mask_zero=True)`` or ``Masking``, carried by
functional and Sequential models), an explicit ``attention_mask`` (batch, Tq, Tv),
and ``use_causal_mask=True`` (step i attends to steps <= i). Masked scores get a
large negative bias before the softmax, so they weigh nothing.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import initializers, ops, regularizers
from ..backend import native_kernel
from .base import Layer, Shape, merge_masks
from .core import Dropout


def _large_negative(dtype: str) -> float:
    """What masked scores get added: -1e9, or -3e4 in float16 (its range ends at 65504)."""
    return -3e4 if dtype == "float16" else -1e9


def causal_mask(query_steps: int, value_steps: int):
    """(1, Tq, Tv) bool: query step i may attend to value steps j <= i."""
    return ops.convert(np.tril(np.ones((query_steps, value_steps), dtype=bool))[None])


def _steps(x) -> int:
    steps = ops.shape(x)[1]
    if steps is None:
        raise ValueError("attention needs the number of time steps to be known")
    return steps


class Attention(Layer):
    """Dot-product attention: ``softmax(query @ key^T [* scale]) @ value``.

    Called on ``[query, value]`` or ``[query, value, key]``, each (batch, T, dim).
    ``scores = query @ key^T`` ("dot"), or ``sum(tanh(query + key))`` broadcast over the
    steps ("concat", Bahdanau-style); a masked value step's score is lowered by 1e9; the
    output at a masked query step is 0.

    Args:
        use_scale: learn a scalar ``scale`` multiplying the scores (starts at 1; for "concat",
            ``scale`` multiplies ``query + key`` inside tanh). Default False.
        score_mode: "dot" (default) or "concat".
        dropout: rate of dropout on the attention weights while training (default 0).
        seed: seed of that dropout.

    Call arguments: ``inputs`` ([query, value] or [query, value, key]), ``mask`` ([query mask,
    value mask], from the inputs' Keras masks), ``return_attention_scores`` (also return the
    weights, (batch, Tq, Tv)), ``use_causal_mask``, ``training``.

    Output shape: (batch, Tq, value dim).

    PyTorch has no such layer; ``F.scaled_dot_product_attention`` computes the "dot" mode with a
    1/sqrt(dim) scale instead of a learned one.
    """

    supports_masking = True

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0,
                 seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Attention: score_mode must be 'dot' or 'concat', got score_mode={score_mode!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Attention: dropout must be in [0, 1), got dropout={dropout!r}")
        self.use_scale, self.score_mode, self.dropout = bool(use_scale), score_mode, float(dropout)
        self._dropout = Dropout(self.dropout, seed=seed) if self.dropout else None
        self._config_args = {"use_scale": self.use_scale, "score_mode": score_mode, "dropout": self.dropout,
                             "seed": seed}

    @property
    def draws_host_randomness(self) -> bool:
        return self._dropout is not None

    def build(self, input_shape) -> None:
        if not isinstance(input_shape, list) or len(input_shape) not in (2, 3):
            raise ValueError(f"Attention {self.name!r} must be called on [query, value] or [query, value, key], "
                             f"got input shape {input_shape}")
        self.scale = self.add_weight("scale", (), "ones") if self.use_scale else None
        if self._dropout is not None:  # built here, so that building needs no trial call
            self._dropout.build_for(input_shape[0], self._rng)
        self.concat_score_weight = (self.add_weight("concat_score_weight", (), "ones")
                                    if self.score_mode == "concat" else None)

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = ops.matmul(query, ops.transpose(key, (0, 2, 1)))
            return scores if self.scale is None else ops.multiply(scores, self.scale)
        summed = ops.add(ops.expand_dims(query, -2), ops.expand_dims(key, -3))
        if self.scale is not None:
            summed = ops.multiply(summed, self.scale)
        return ops.multiply(self.concat_score_weight, ops.sum(ops.tanh(summed), axis=-1))

    def call(self, inputs, mask=None, training=False, return_attention_scores=False, use_causal_mask=False):
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        query_mask, value_mask = (mask[0], mask[1]) if isinstance(mask, list) else (None, None)
        scores = self._scores(query, key)
        keep = None if value_mask is None else ops.expand_dims(value_mask, -2)
        if use_causal_mask:
            keep = merge_masks([keep, causal_mask(_steps(query), _steps(key))])
        if keep is not None:
            scores = ops.where(keep, scores, ops.add(scores, _large_negative(ops.current_backend().dtype)))
        weights = ops.softmax(scores, axis=-1)
        applied = self._dropout(weights, training=training) if self._dropout is not None else weights
        output = ops.matmul(applied, value)
        if query_mask is not None:
            output = ops.where(ops.expand_dims(query_mask, -1), output, 0.0)
        return [output, weights] if return_attention_scores else output

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, list) else None

    def compute_output_shape(self, input_shape) -> Shape:
        return (*input_shape[0][:-1], input_shape[1][-1])

    def symbolic_output_shape(self, input_shape, arg_shapes=(), kwarg_shapes=None, call_kwargs=None):
        output = self.build_for(input_shape, arg_shapes=arg_shapes, kwarg_shapes=kwarg_shapes)
        if (call_kwargs or {}).get("return_attention_scores"):
            return [output, (input_shape[0][0], input_shape[0][1], input_shape[1][1])]
        return output


class MultiHeadAttention(Layer):
    """Multi-head attention (Vaswani et al., 2017) with Keras's weights and formula.

    With ``h = num_heads``, ``k = key_dim``, ``v = value_dim`` (default ``key_dim``)::

        Q = query @ W_q + b_q      (batch, Tq, h, k)       W_q: (query dim, h, k)
        K = key   @ W_k + b_k      (batch, Tv, h, k)       W_k: (key dim, h, k)
        V = value @ W_v + b_v      (batch, Tv, h, v)       W_v: (value dim, h, v)
        A = softmax(Q K^T / sqrt(k) + mask bias)  per head (batch, h, Tq, Tv)
        output = (A V) @ W_o + b_o                          W_o: (h, v, output dim)

    The output dim is the query's last axis unless ``output_shape`` is given.

    Args:
        num_heads: number of heads. key_dim: size of each head for query and key.
        value_dim: size of each head for the value (default key_dim).
        dropout: dropout rate on the attention weights while training (default 0).
        use_bias: biases in the four projections (default True).
        output_shape: size of the output's last axis (default: the query's).
        attention_axes: only None (attention over axis 1) is supported.
        kernel_initializer / bias_initializer: default "glorot_uniform" / "zeros".
        kernel_regularizer / bias_regularizer: default None.
        seed: seed of the dropout.

    Call arguments: ``query`` (batch, Tq, dim), ``value`` (batch, Tv, dim), ``key`` (default:
    value), ``attention_mask`` (batch, Tq, Tv) bool, ``return_attention_scores`` (also return A),
    ``use_causal_mask``, ``training``. The query's and value's Keras masks are used as well.

    Weights, in Keras's order: query kernel, bias; key kernel, bias; value kernel, bias;
    output kernel, bias.

    PyTorch's ``nn.MultiheadAttention`` packs the three input projections into one
    (3 * h * k, dim) weight, is sequence-first unless ``batch_first=True``, and takes a mask
    that is True where attention is *forbidden*.
    """

    supports_masking = True

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, output_shape=None, attention_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        for name, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if value is not None and value <= 0:
                raise ValueError(f"MultiHeadAttention: {name} must be a positive integer, got {name}={value!r}")
        if attention_axes is not None:
            raise NotImplementedError("MultiHeadAttention: attention_axes other than None (attention over "
                                      "axis 1 of (batch, time, features) inputs) are not supported yet")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got dropout={dropout!r}")
        if isinstance(output_shape, (tuple, list)):
            if len(output_shape) != 1:
                raise ValueError(f"MultiHeadAttention: output_shape must be an int or a 1-tuple, got {output_shape!r}")
            output_shape = output_shape[0]
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.use_bias, self.output_dim = bool(use_bias), output_shape
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._dropout = Dropout(dropout, seed=seed) if dropout else None
        self._config_args = {
            "num_heads": self.num_heads, "key_dim": self.key_dim, "value_dim": value_dim, "dropout": float(dropout),
            "use_bias": self.use_bias, "output_shape": output_shape, "attention_axes": None,
            "kernel_initializer": kernel_initializer, "bias_initializer": bias_initializer,
            "kernel_regularizer": kernel_regularizer, "bias_regularizer": bias_regularizer, "seed": seed}

    @property
    def draws_host_randomness(self) -> bool:
        return self._dropout is not None

    def build(self, query_shape: Shape, value_shape: Shape | None = None, key_shape: Shape | None = None) -> None:
        if value_shape is None:
            raise ValueError(f"MultiHeadAttention {self.name!r} must be called as layer(query, value[, key])")
        key_shape = key_shape or value_shape
        for what, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(f"MultiHeadAttention {self.name!r}: the {what} must be (batch, time, features) "
                                 f"with known features, got shape {shape}")
        self._value_steps = value_shape[1]
        output_dim = self.output_dim or query_shape[-1]
        h, k, v = self.num_heads, self.key_dim, self.value_dim
        self.query_kernel, self.query_bias = self._projection("query", (query_shape[-1], h, k), (h, k))
        self.key_kernel, self.key_bias = self._projection("key", (key_shape[-1], h, k), (h, k))
        self.value_kernel, self.value_bias = self._projection("value", (value_shape[-1], h, v), (h, v))
        self.output_kernel, self.output_bias = self._projection("attention_output", (h, v, output_dim),
                                                                (output_dim,))
        if self._dropout is not None:  # built here, so that building needs no trial call
            self._dropout.build_for((None, h, query_shape[1], value_shape[1]), self._rng)

    def _projection(self, name: str, kernel_shape: tuple, bias_shape: tuple):
        kernel = self.add_weight(f"{name}/kernel", kernel_shape, self.kernel_initializer, self.kernel_regularizer)
        bias = (self.add_weight(f"{name}/bias", bias_shape, self.bias_initializer, self.bias_regularizer)
                if self.use_bias else None)
        return kernel, bias

    @staticmethod
    def _project(x, kernel, bias, heads: int, size: int):
        """(batch, T, dim) @ (dim, heads, size) -> (batch, heads, T, size)."""
        steps = _steps(x)
        out = ops.matmul(x, ops.reshape(kernel, (ops.shape(kernel)[0], heads * size)))
        if bias is not None:
            out = ops.add(out, ops.reshape(bias, (heads * size,)))
        return ops.transpose(ops.reshape(out, (-1, steps, heads, size)), (0, 2, 1, 3))

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores: bool = False, training=False, use_causal_mask: bool = False, mask=None):
        kernel = native_kernel(ops.current_backend(), self)
        if kernel is not None:  # torch: scaled_dot_product_attention, when no mask or score is asked for
            out = kernel(query, value, key=key, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
                         attention_mask=attention_mask, return_attention_scores=return_attention_scores,
                         training=training, use_causal_mask=use_causal_mask, mask=mask)
            if out is not None:
                return out
        key = value if key is None else key
        query_mask = mask if query_mask is None else query_mask
        h = self.num_heads
        q = self._project(query, self.query_kernel, self.query_bias, h, self.key_dim)
        k = self._project(key, self.key_kernel, self.key_bias, h, self.key_dim)
        v = self._project(value, self.value_kernel, self.value_bias, h, self.value_dim)
        q = ops.multiply(q, 1.0 / math.sqrt(float(self.key_dim)))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (batch, heads, Tq, Tv)
        keep = self._keep(query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask)
        if keep is not None:  # as Keras's Softmax(mask): masked scores get a large negative bias
            bias = ops.multiply(ops.subtract(1.0, ops.cast(keep, ops.current_backend().dtype)),
                                _large_negative(ops.current_backend().dtype))
            scores = ops.add(scores, ops.expand_dims(bias, 1))
        weights = ops.softmax(scores, axis=-1)
        applied = self._dropout(weights, training=training) if self._dropout is not None else weights
        heads = ops.transpose(ops.matmul(applied, v), (0, 2, 1, 3))  # (batch, Tq, heads, value_dim)
        steps = _steps(query)
        flat = ops.reshape(heads, (-1, steps, h * self.value_dim))
        output = ops.matmul(flat, ops.reshape(self.output_kernel, (h * self.value_dim, -1)))
        if self.output_bias is not None:
            output = ops.add(output, self.output_bias)
        return [output, weights] if return_attention_scores else output

    @staticmethod
    def _keep(query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask):
        """The (batch, Tq, Tv) bool mask of allowed attention, merged from every source (None: all)."""
        parts = []
        if query_mask is not None:
            parts.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
        for m in (value_mask, key_mask):
            if m is not None:
                parts.append(ops.expand_dims(ops.cast(m, "bool"), -2))
        if use_causal_mask:
            parts.append(causal_mask(_steps(query), _steps(value)))
        if attention_mask is not None:
            parts.append(ops.cast(attention_mask, "bool"))
        return merge_masks(parts)

    def compute_mask(self, inputs, mask=None):
        return mask  # the query's

    def compute_output_shape(self, query_shape: Shape) -> Shape:
        return (*query_shape[:-1], self.output_dim or query_shape[-1])

    def symbolic_output_shape(self, input_shape, arg_shapes=(), kwarg_shapes=None, call_kwargs=None):
        output = self.build_for(input_shape, arg_shapes=arg_shapes, kwarg_shapes=kwarg_shapes)
        if (call_kwargs or {}).get("return_attention_scores"):
            return [output, (input_shape[0], self.num_heads, input_shape[1], self._value_steps)]
        return output

"""Attention and MultiHeadAttention against Keras 3 (same weights in, same outputs out), with
padding masks, causal masks and attention scores, on every backend; and a Keras-style
transformer block whose sublayers (Dropout included) follow the ``training`` of the fit that runs them."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.testing.tolerances import FORWARD_F32, GRAD_F32

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                                      reason=f"{name} is not installed"))
                        for name in ("torch", "tensorflow")]
RNG = np.random.default_rng(0)
QUERY, VALUE = RNG.random((2, 4, 6)), RNG.random((2, 5, 6))
IDS = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]])


def assert_close(ours, theirs, tol=FORWARD_F32):
    np.testing.assert_allclose(ours, theirs, rtol=tol.rtol, atol=tol.atol)


def twin(keras, build, model):
    """The same graph built with Keras (``build(keras_module)``), with the unidl model's weights."""
    inputs, outputs = build(keras)
    other = keras.Model(inputs, outputs)
    other.set_weights(model.get_weights())
    return other


def compiled(inputs, outputs, backend, seed=0):
    model = unidl.Model(inputs, outputs, seed=seed)
    model.compile(loss="mse", backend=backend, dtype="float32")
    return model


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_attention_over_padded_ids_matches_keras(keras, backend):
    def build(k):
        inputs = k.Input((5,))
        x = k.layers.Embedding(8, 6, mask_zero=True)(inputs)
        x = k.layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.1)(x, x)
        return inputs, k.layers.GlobalAveragePooling1D()(x)
    model = compiled(*build(unidl), backend)
    assert_close(model.predict(IDS), twin(keras, build, model).predict(IDS, verbose=0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cross_attention_scores_value_dim_and_output_shape_match_keras(keras, backend):
    def build(k):
        q, v = k.Input((4, 6)), k.Input((5, 6))
        out, scores = k.layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=7)(q, v, return_attention_scores=True)
        return [q, v], [out, scores]
    model = compiled(*build(unidl), backend)
    ours, theirs = model.predict([QUERY, VALUE]), twin(keras, build, model).predict([QUERY, VALUE], verbose=0)
    assert [o.shape for o in ours] == [(2, 4, 7), (2, 2, 4, 5)]
    for a, b in zip(ours, theirs):
        assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_causal_self_attention_matches_keras_and_ignores_the_future(keras, backend):
    def build(k):
        x = k.Input((4, 6))
        return x, k.layers.MultiHeadAttention(2, 3)(x, x, use_causal_mask=True)
    model = compiled(*build(unidl), backend)
    out = model.predict(QUERY)
    assert_close(out, twin(keras, build, model).predict(QUERY, verbose=0))
    changed = QUERY.copy()
    changed[:, 3] += 1.0  # only the last step changes: earlier outputs must not
    np.testing.assert_allclose(model.predict(changed)[:, :3], out[:, :3], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs", [{}, {"use_scale": True}, {"score_mode": "concat"}])
def test_attention_layer_matches_keras(keras, backend, kwargs):
    def build(k):
        q, v = k.Input((4, 6)), k.Input((5, 6))
        return [q, v], k.layers.Attention(**kwargs)([q, v])
    model = compiled(*build(unidl), backend)
    assert_close(model.predict([QUERY, VALUE]), twin(keras, build, model).predict([QUERY, VALUE], verbose=0))


def test_multi_head_attention_gradients_match_keras(keras):
    import tensorflow as tf

    def build(k):
        x = k.Input((4, 6))
        return x, k.layers.MultiHeadAttention(2, 3)(x, x)
    model = compiled(*build(unidl), "numpy")
    other = twin(keras, build, model)
    x = QUERY.astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(other(x)))
    theirs = tape.gradient(loss, other.trainable_weights)
    with unidl.use_backend(model.backend):
        xt = model.backend.convert(x)
        _, ours = unidl.value_and_grad(lambda: ops.sum(ops.square(model(xt))), model)
    for a, b in zip(ours, theirs):
        assert_close(model.backend.to_numpy(a), b.numpy(), GRAD_F32)


class TransformerBlock(layers.Layer):
    """The Keras example's block: attention, dropout, residual + layer norm, feed-forward."""

    def __init__(self, dim, heads, hidden, rate=0.5, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=heads, key_dim=dim)
        self.ffn = unidl.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(dim)])
        self.norm1, self.norm2 = layers.LayerNormalization(epsilon=1e-6), layers.LayerNormalization(epsilon=1e-6)
        self.drop1, self.drop2 = layers.Dropout(rate), layers.Dropout(rate)

    def call(self, inputs):  # no training argument: the sublayers inherit fit's
        attended = self.drop1(self.att(inputs, inputs))
        out1 = self.norm1(inputs + attended)
        return self.norm2(out1 + self.drop2(self.ffn(out1)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_inside_a_custom_layer_is_active_during_fit_only(backend):
    block = TransformerBlock(4, 2, 8)
    inputs = layers.Input((5, 4))
    model = unidl.Model(inputs, block(inputs), seed=0)
    model.compile(optimizer="sgd", loss="mse", backend=backend)
    x = RNG.random((8, 5, 4)).astype("float32")
    zeroed = []
    original = layers.Dropout.call

    def spy(self, inputs, training=False):
        out = original(self, inputs, training=training)
        zeroed.append(float(np.mean(model.backend.to_numpy(out) == 0)) if training else 0.0)
        return out
    layers.Dropout.call = spy
    try:
        model.fit(x, x, epochs=1, batch_size=8, verbose=0)
        assert zeroed and min(zeroed) > 0.3  # rate 0.5: about half the values zeroed in training
        zeroed.clear()
        model.predict(x)
        assert zeroed and max(zeroed) == 0.0
    finally:
        layers.Dropout.call = original

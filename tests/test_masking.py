"""Masks, as Keras carries them: Embedding(mask_zero=True) and Masking make a mask; recurrent layers
keep their state over masked steps; global 1D pooling and the loss leave masked steps out.

Each case runs on every backend and is checked against Keras 3 itself (the ``keras`` oracle
fixture) with the same weights, within the named tolerances.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.testing.tolerances import FORWARD_F32

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                                      reason=f"{name} is not installed"))
                        for name in ("torch", "tensorflow")]
IDS = np.array([[4, 2, 0, 0, 0], [3, 1, 2, 0, 0], [1, 0, 0, 0, 0]])  # id 0 is padding
TARGETS = np.random.default_rng(0).normal(size=(3, 5, 1))


def sequence_model(recurrent: str, backend: str, **rnn_kwargs):
    inputs = layers.Input((5,))
    x = layers.Embedding(6, 3, mask_zero=True)(inputs)
    x = getattr(layers, recurrent)(4, return_sequences=True, **rnn_kwargs)(x)
    model = unidl.Model(inputs, layers.Dense(1)(x), seed=0)
    model.compile(optimizer="sgd", loss="mse", backend=backend, dtype="float32")
    return model


def keras_twin(keras, model, recurrent: str, **rnn_kwargs):
    inputs = keras.Input((5,))
    x = keras.layers.Embedding(6, 3, mask_zero=True)(inputs)
    x = getattr(keras.layers, recurrent)(4, return_sequences=True, **rnn_kwargs)(x)
    twin = keras.Model(inputs, keras.layers.Dense(1)(x))
    twin.set_weights(model.get_weights())
    twin.compile(optimizer="sgd", loss="mse")
    return twin


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recurrent", ["SimpleRNN", "LSTM", "GRU"])
def test_recurrent_layers_skip_masked_steps_and_the_loss_ignores_them(keras, backend, recurrent):
    model = sequence_model(recurrent, backend)
    twin = keras_twin(keras, model, recurrent)
    np.testing.assert_allclose(model.predict(IDS), twin.predict(IDS, verbose=0), rtol=FORWARD_F32.rtol,
                               atol=FORWARD_F32.atol)
    ours, theirs = model.evaluate(IDS, TARGETS, verbose=0), twin.evaluate(IDS, TARGETS, verbose=0)
    assert ours == pytest.approx(theirs, rel=FORWARD_F32.rtol * 10)  # float32 sums in another order


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_masked_step_repeats_the_previous_output(backend):
    out = sequence_model("LSTM", backend).predict(IDS)
    # steps 2..4 are padding (equal up to the Dense matmul's rounding of identical rows)
    np.testing.assert_allclose(out[0, 2:], np.repeat(out[0, 1:2], 3, axis=0), rtol=1e-6, atol=1e-7)
    assert not np.allclose(out[0, 0], out[0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_masking_and_masked_global_pooling_match_keras(keras, backend):
    x = np.random.default_rng(1).normal(size=(3, 5, 2)).astype("float32")
    x[0, 3:] = 0.0
    x[2, 1:] = 0.0
    inputs = layers.Input((5, 2))
    masked = layers.Masking(0.0)(inputs)
    outputs = [layers.GlobalAveragePooling1D()(masked), layers.GlobalMaxPooling1D()(masked)]
    model = unidl.Model(inputs, outputs, seed=0)
    model.compile(loss="mse", backend=backend)
    k_in = keras.Input((5, 2))
    k_masked = keras.layers.Masking(0.0)(k_in)
    twin = keras.Model(k_in, [keras.layers.GlobalAveragePooling1D()(k_masked),
                              keras.layers.GlobalMaxPooling1D()(k_masked)])
    for ours, theirs in zip(model.predict(x), twin.predict(x, verbose=0)):
        np.testing.assert_allclose(ours, theirs, rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_flow_through_sequential_models_too(backend):
    model = unidl.Sequential([layers.Embedding(6, 3, mask_zero=True, input_shape=(5,)),
                              layers.SimpleRNN(2, return_sequences=True), layers.Dense(1)], seed=0)
    model.compile(loss="mse", backend=backend)
    functional_like = unidl.Model.from_config(model_as_functional(model).get_config())
    functional_like.set_weights(model.get_weights())
    functional_like.compile(loss="mse", backend=backend)
    assert model.evaluate(IDS, TARGETS, verbose=0) == pytest.approx(
        functional_like.evaluate(IDS, TARGETS, verbose=0), rel=1e-6)
    out = model.predict(IDS)
    np.testing.assert_allclose(out[2, 1:], np.repeat(out[2, :1], 4, axis=0), rtol=1e-6, atol=1e-7)


def model_as_functional(sequential):
    inputs = layers.Input((5,))
    x = inputs
    for layer in sequential.layers:
        x = type(layer)(**{k: v for k, v in layer.get_config().items() if k not in ("name", "input_shape")})(x)
    return unidl.Model(inputs, x, seed=0)


def test_a_bidirectional_layer_passes_the_mask_to_both_directions(keras):
    inputs = layers.Input((5,))
    x = layers.Embedding(6, 3, mask_zero=True)(inputs)
    x = layers.Bidirectional(layers.LSTM(2, return_sequences=True))(x)
    model = unidl.Model(inputs, layers.Dense(1)(x), seed=0)
    model.compile(loss="mse", backend="numpy")
    k_in = keras.Input((5,))
    k = keras.layers.Embedding(6, 3, mask_zero=True)(k_in)
    k = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))(k)
    twin = keras.Model(k_in, keras.layers.Dense(1)(k))
    twin.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(IDS), twin.predict(IDS, verbose=0), rtol=FORWARD_F32.rtol,
                               atol=FORWARD_F32.atol)


def test_initial_state_starts_the_recurrence(keras):
    inputs, state_h, state_c = layers.Input((5, 3)), layers.Input((2,)), layers.Input((2,))
    out = layers.LSTM(2, return_sequences=True)(inputs, initial_state=[state_h, state_c])
    model = unidl.Model([inputs, state_h, state_c], out, seed=0)
    model.compile(loss="mse", backend="numpy")
    k_ins = [keras.Input((5, 3)), keras.Input((2,)), keras.Input((2,))]
    twin = keras.Model(k_ins, keras.layers.LSTM(2, return_sequences=True)(k_ins[0], initial_state=k_ins[1:]))
    twin.set_weights(model.get_weights())
    rng = np.random.default_rng(2)
    data = [rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 2)), rng.normal(size=(2, 2))]
    np.testing.assert_allclose(model.predict(data), twin.predict(data, verbose=0), rtol=1e-6, atol=1e-7)
    loaded = unidl.Model.from_config(model.get_config())  # the state inputs are saved with the call
    loaded.set_weights(model.get_weights())
    loaded.compile(loss="mse", backend="numpy")
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))

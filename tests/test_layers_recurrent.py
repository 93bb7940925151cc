"""Normalization, Embedding, recurrent and wrapper layers.

(a) forward values on the NumPy backend (float64) against NumPy re-implementations
    of Keras's equations written here, independently of the layer code;
(b) Keras 3 (TensorFlow) as an external oracle: the same weights give the same outputs;
(c) LSTM and GRU gradients against central finite differences, and every backend's
    gradients against the NumPy reference;
(d) small models train to the same losses on numpy, torch and tensorflow;
(e) BatchNormalization's moving statistics after fit agree across backends.
Plus shapes, configs and argument checks.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.callbacks import Callback
from unidl.layers.embedding import Embedding
from unidl.layers.normalization import BatchNormalization, LayerNormalization
from unidl.layers.recurrent import GRU, LSTM, SimpleRNN
from unidl.layers.wrappers import Bidirectional, TimeDistributed
from unidl.registry import BackendUnavailableError, get_backend
from unidl.testing.gradcheck import central_differences
from unidl.testing.tolerances import (FD_F64, FORWARD_F32, FORWARD_F64, GRAD_F32, GRAD_F64, TRAJECTORY_F32,
                                      TRAJECTORY_F64)

BACKENDS = ("numpy", "torch", "tensorflow")
FORWARD = {"float64": FORWARD_F64, "float32": FORWARD_F32}
GRAD = {"float64": GRAD_F64, "float32": GRAD_F32}
TRAJECTORY = {"float64": TRAJECTORY_F64, "float32": TRAJECTORY_F32}


def backend_or_skip(name: str, dtype: str = "float64"):
    try:
        return get_backend(name, dtype=dtype)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


def assert_close(actual, expected, tol, what: str = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    ok = tol.close(actual, expected)
    if not ok.all():
        err = np.abs(actual - expected)
        rel = (err / (np.abs(expected) + 1e-300)).max()
        raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.size} values off under {tol}; "
                             f"max abs err {err.max():.3g}, max rel err {rel:.3g}")


def to_numpy(backend, out):
    if isinstance(out, (list, tuple)):
        return [backend.to_numpy(o) for o in out]
    return backend.to_numpy(out)


def run_layer(layer, x, backend: str = "numpy", dtype: str = "float64", training: bool = False, seed: int = 0):
    """Build ``layer`` (seeded) for x, bind its weights to the backend and call it once."""
    be = backend_or_skip(backend, dtype)
    if not layer.built:
        layer.build_for((None, *np.shape(x)[1:]), np.random.default_rng(seed))
    for w in layer.weights:
        w.bind(be)
    with unidl.use_backend(be):
        return to_numpy(be, layer(be.convert(x), training=training))


def randomize(layer, seed: int = 1, scale: float = 0.5) -> list[np.ndarray]:
    """Give every weight random values (zeros/ones initial biases and gammas test nothing)."""
    rng = np.random.default_rng(seed)
    values = [rng.normal(0.0, scale, w.shape) for w in layer.weights]
    for w, v in zip(layer.weights, values):
        if "variance" in w.name:
            v[...] = rng.uniform(0.5, 2.0, w.shape)
    layer.set_weights(values)
    return values


def sequences(batch=3, steps=5, features=4, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, steps, features))


# ================================================ (a) NumPy reference equations

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_batchnorm(x, gamma, beta, mean, var, eps=1e-3, training=False, momentum=0.99):
    """Keras BatchNormalization (axis=-1): returns output and the updated moving stats."""
    if training:
        axes = tuple(range(x.ndim - 1))
        batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)  # biased variance
        out = (x - batch_mean) / np.sqrt(batch_var + eps) * gamma + beta
        return out, momentum * mean + (1 - momentum) * batch_mean, momentum * var + (1 - momentum) * batch_var
    return (x - mean) / np.sqrt(var + eps) * gamma + beta, mean, var


def ref_layernorm(x, gamma, beta, eps=1e-3):
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def ref_scan(step, x, state, go_backwards=False):
    """Run ``step(x_t, state) -> (h, state)`` over time; outputs in processing order."""
    order = range(x.shape[1])[::-1] if go_backwards else range(x.shape[1])
    outputs = []
    for t in order:
        h, state = step(x[:, t], state)
        outputs.append(h)
    return np.stack(outputs, axis=1), state


def ref_simple_rnn(x, kernel, recurrent, bias, go_backwards=False):
    def step(x_t, state):
        h = np.tanh(x_t @ kernel + state[0] @ recurrent + bias)
        return h, [h]
    return ref_scan(step, x, [np.zeros((x.shape[0], kernel.shape[1]))], go_backwards)


def ref_lstm(x, kernel, recurrent, bias, go_backwards=False):
    units = recurrent.shape[0]

    def step(x_t, state):
        h, c = state
        z = x_t @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, [h, c]
    zeros = np.zeros((x.shape[0], units))
    return ref_scan(step, x, [zeros, zeros], go_backwards)


def ref_gru(x, kernel, recurrent, bias, go_backwards=False):
    units = recurrent.shape[0]

    def step(x_t, state):
        h = state[0]
        xz, xr, xh = np.split(x_t @ kernel + bias[0], 3, axis=-1)
        rz, rr, rh = np.split(h @ recurrent + bias[1], 3, axis=-1)
        z, r = sigmoid(xz + rz), sigmoid(xr + rr)
        hh = np.tanh(xh + r * rh)
        h = z * h + (1 - z) * hh
        return h, [h]
    return ref_scan(step, x, [np.zeros((x.shape[0], units))], go_backwards)


RNN_REFERENCES = {SimpleRNN: ref_simple_rnn, LSTM: ref_lstm, GRU: ref_gru}


@pytest.mark.parametrize("training", [False, True])
def test_batchnorm_forward_and_moving_stats(training):
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(8, 5))
    layer = BatchNormalization()
    layer.build_for((None, 5), np.random.default_rng(0))
    gamma, beta, mean, var = randomize(layer)
    out = run_layer(layer, x, training=training)
    expected, new_mean, new_var = ref_batchnorm(x, gamma, beta, mean, var, training=training)
    assert_close(out, expected, FORWARD_F64, "output")
    assert_close(layer.moving_mean.numpy(), new_mean, FORWARD_F64, "moving_mean")
    assert_close(layer.moving_variance.numpy(), new_var, FORWARD_F64, "moving_variance")


def test_batchnorm_other_axis_and_frozen_layer():
    x = np.random.default_rng(0).normal(size=(4, 3, 2, 5))
    layer = BatchNormalization(axis=1, center=False)
    layer.build_for((None, 3, 2, 5), np.random.default_rng(0))
    gamma, mean, var = randomize(layer)
    out = run_layer(layer, x, training=True)
    moved = np.moveaxis(x, 1, -1)
    expected, new_mean, _ = ref_batchnorm(moved, gamma, 0.0, mean, var, training=True)
    assert_close(out, np.moveaxis(expected, -1, 1), FORWARD_F64, "axis=1 output")
    assert_close(layer.moving_mean.numpy(), new_mean, FORWARD_F64, "axis=1 moving_mean")
    # A frozen BatchNormalization runs in inference mode even when training (Keras 3).
    layer.trainable = False
    out = run_layer(layer, x, training=True)
    expected, _, _ = ref_batchnorm(moved, gamma, 0.0, new_mean, layer.moving_variance.numpy())
    assert_close(out, np.moveaxis(expected, -1, 1), FORWARD_F64, "frozen output")
    assert_close(layer.moving_mean.numpy(), new_mean, FORWARD_F64, "frozen layer keeps its moving_mean")


def test_layernorm_forward():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(3, 4, 6))
    layer = LayerNormalization()
    layer.build_for((None, 4, 6), np.random.default_rng(0))
    gamma, beta = randomize(layer)
    assert_close(run_layer(layer, x), ref_layernorm(x, gamma, beta), FORWARD_F64, "axis=-1")
    layer = LayerNormalization(axis=[1, 2], scale=False)
    layer.build_for((None, 4, 6), np.random.default_rng(0))
    (beta,) = randomize(layer)
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    assert_close(run_layer(layer, x), (x - mean) / np.sqrt(var + 1e-3) + beta, FORWARD_F64, "axis=[1, 2]")


def test_embedding_forward_with_int_and_float_ids():
    ids = np.array([[0, 3, 9], [2, 2, 1]])
    layer = Embedding(10, 4)
    layer.build_for((None, 3), np.random.default_rng(0))
    (table,) = layer.get_weights()
    assert np.all(np.abs(table) <= 0.05)  # uniform(-0.05, 0.05)
    assert_close(run_layer(layer, ids), table[ids], FORWARD_F64, "int64 ids")
    assert_close(run_layer(layer, ids.astype("float64")), table[ids], FORWARD_F64, "float ids")


@pytest.mark.parametrize("cls", [SimpleRNN, LSTM, GRU])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_recurrent_forward(cls, go_backwards):
    x = sequences()
    layer = cls(3, return_sequences=True, return_state=True, go_backwards=go_backwards)
    layer.build_for((None, 5, 4), np.random.default_rng(0))
    weights = randomize(layer)
    sequence, *states = run_layer(layer, x)
    expected, expected_states = RNN_REFERENCES[cls](x, *weights, go_backwards=go_backwards)
    assert_close(sequence, expected, FORWARD_F64, "sequence")
    assert len(states) == len(expected_states)
    for i, (s, e) in enumerate(zip(states, expected_states)):
        assert_close(s, e, FORWARD_F64, f"state {i}")
    # the default: only the last output processed
    last = cls(3, go_backwards=go_backwards)
    last.build_for((None, 5, 4), np.random.default_rng(0))
    last.set_weights(weights)
    assert_close(run_layer(last, x), expected[:, -1], FORWARD_F64, "last output")


@pytest.mark.parametrize("cls", [SimpleRNN, LSTM, GRU])
def test_recurrent_without_bias(cls):
    x = sequences()
    layer = cls(3, use_bias=False, return_sequences=True)
    layer.build_for((None, 5, 4), np.random.default_rng(0))
    kernel, recurrent = randomize(layer)
    units = 3 * {SimpleRNN: 1, LSTM: 4, GRU: 3}[cls]
    bias = np.zeros((2, units)) if cls is GRU else np.zeros(units)
    expected, _ = RNN_REFERENCES[cls](x, kernel, recurrent, bias)
    assert_close(run_layer(layer, x), expected, FORWARD_F64, "no bias")


def test_lstm_initial_weights_follow_keras():
    layer = LSTM(4)
    layer.build_for((None, 5, 3), np.random.default_rng(0))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (3, 16) and recurrent.shape == (4, 16) and bias.shape == (16,)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])  # unit_forget_bias
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-12)  # orthogonal rows
    limit = np.sqrt(6.0 / (3 + 16))  # glorot_uniform over (in, 4 units)
    assert np.all(np.abs(kernel) <= limit)
    no_forget = LSTM(4, unit_forget_bias=False)
    no_forget.build_for((None, 5, 3), np.random.default_rng(0))
    np.testing.assert_array_equal(no_forget.get_weights()[2], np.zeros(16))
    gru = GRU(4)
    gru.build_for((None, 5, 3), np.random.default_rng(0))
    assert [w.shape for w in gru.get_weights()] == [(3, 12), (4, 12), (2, 12)]


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional_forward(merge_mode):
    x = sequences()
    layer = Bidirectional(GRU(3, return_sequences=True, return_state=True), merge_mode=merge_mode)
    layer.build_for((None, 5, 4), np.random.default_rng(0))
    weights = randomize(layer)
    out = run_layer(layer, x)
    forward, (h_f,) = ref_gru(x, *weights[:3])
    backward, (h_b,) = ref_gru(x, *weights[3:], go_backwards=True)
    backward = backward[:, ::-1]  # re-reversed: step t of both halves is input step t
    merged = {"concat": [np.concatenate([forward, backward], -1)], "sum": [forward + backward],
              "mul": [forward * backward], "ave": [(forward + backward) / 2], None: [forward, backward]}
    expected = [*merged[merge_mode], h_f, h_b]
    assert len(out) == len(expected)
    for i, (o, e) in enumerate(zip(out, expected)):
        assert_close(o, e, FORWARD_F64, f"output {i}")


def test_time_distributed_forward():
    x = sequences()
    layer = TimeDistributed(layers.Dense(2, activation="tanh"))
    layer.build_for((None, 5, 4), np.random.default_rng(0))
    kernel, bias = randomize(layer)
    assert_close(run_layer(layer, x), np.tanh(x @ kernel + bias), FORWARD_F64, "TimeDistributed(Dense)")
    images = np.random.default_rng(1).normal(size=(2, 3, 4, 5))
    flat = TimeDistributed(layers.Flatten())
    assert_close(run_layer(flat, images), images.reshape(2, 3, 20), FORWARD_F64, "TimeDistributed(Flatten)")


# ============================================== shapes, configs, argument checks

SHAPE_CASES = [
    (lambda: BatchNormalization(), (None, 5, 4)),
    (lambda: LayerNormalization(axis=[1, 2]), (None, 5, 4)),
    (lambda: Embedding(10, 3), (None, 5)),
    (lambda: SimpleRNN(3), (None, 5, 4)),
    (lambda: LSTM(3, return_sequences=True, return_state=True), (None, 5, 4)),
    (lambda: GRU(3, return_state=True, go_backwards=True), (None, 5, 4)),
    (lambda: Bidirectional(LSTM(3, return_sequences=True)), (None, 5, 4)),
    (lambda: Bidirectional(LSTM(3, return_state=True), merge_mode="sum"), (None, 5, 4)),
    (lambda: Bidirectional(SimpleRNN(3), merge_mode=None), (None, 5, 4)),
    (lambda: TimeDistributed(layers.Dense(2)), (None, 5, 4)),
]


def _shapes(out):
    return [_shapes(o) for o in out] if isinstance(out, list) else (None, *np.shape(out)[1:])


@pytest.mark.parametrize("make, input_shape", SHAPE_CASES)
def test_compute_output_shape_matches_call(make, input_shape):
    layer = make()
    x = np.random.default_rng(0).integers(0, 10, (2, *input_shape[1:])).astype("float64")
    out = run_layer(layer, x)
    declared = layer.compute_output_shape(input_shape)
    assert _shapes(out) == (list(declared) if isinstance(declared, list) else declared)
    assert layer.output_shape == declared


@pytest.mark.parametrize("make, input_shape", SHAPE_CASES)
def test_config_recreates_the_layer(make, input_shape):
    layer = make()
    layer.build_for(input_shape, np.random.default_rng(0))
    config = layer.get_config()
    twin = type(layer)(**config)
    assert twin.get_config() == config
    twin.build_for(input_shape, np.random.default_rng(0))
    assert twin.get_config() == config  # building keeps it: inner layers are not renamed twice
    assert [w.shape for w in twin.weights] == [w.shape for w in layer.weights]
    assert twin.compute_output_shape(input_shape) == layer.compute_output_shape(input_shape)


def test_configs_list_every_constructor_argument():
    examples = [BatchNormalization(), LayerNormalization(), Embedding(3, 2), SimpleRNN(2), LSTM(2), GRU(2),
                Bidirectional(LSTM(2)), TimeDistributed(layers.Dense(2))]
    for layer in examples:
        args = {p for p in inspect.signature(type(layer).__init__).parameters if p not in ("self", "kwargs")}
        missing = args - set(layer.get_config())
        assert not missing, f"{type(layer).__name__}.get_config() lacks {missing}"


def test_wrapper_config_nests_the_inner_layer():
    config = Bidirectional(LSTM(3, return_sequences=True), merge_mode="ave").get_config()
    assert config["layer"]["class_name"] == "LSTM"
    assert config["layer"]["config"]["units"] == 3 and config["merge_mode"] == "ave"
    twin = Bidirectional(**config)
    assert twin.forward_layer.return_sequences and twin.backward_layer.go_backwards
    td = TimeDistributed(layers.Dense(4, activation="relu")).get_config()
    assert td["layer"] == {"class_name": "Dense", "config": layers.Dense(4, activation="relu").get_config()}


@pytest.mark.parametrize("make, message", [
    (lambda: LSTM(0), "units must be a positive integer"),
    (lambda: GRU(2.5), "units must be an integer"),
    (lambda: SimpleRNN(4, return_sequences="yes"), "return_sequences must be True or False"),
    (lambda: GRU(4, reset_after=False), "reset_after=True"),
    (lambda: LSTM(4, activation="tanhh"), "did you mean 'tanh'"),
    (lambda: BatchNormalization(momentum=1.5), "momentum must be in"),
    (lambda: BatchNormalization(axis=[1, 2]), "axis must be an int"),
    (lambda: LayerNormalization(epsilon=0), "epsilon must be a positive number"),
    (lambda: LayerNormalization(axis="last"), "axis must be an int or a non-empty list"),
    (lambda: Embedding(0, 4), "input_dim must be a positive integer"),
    (lambda: Embedding(10, -1), "output_dim must be a positive integer"),
    (lambda: Bidirectional(layers.Dense(3)), "must be a recurrent layer"),
    (lambda: Bidirectional(LSTM(3), merge_mode="max"), "merge_mode must be one of"),
    (lambda: Bidirectional(LSTM(3, return_sequences=True), backward_layer=LSTM(3, go_backwards=True)),
     "must agree on return_sequences"),
])
def test_invalid_arguments_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_misspelled_keyword_is_reported():
    with pytest.raises(TypeError, match="return_sequences"):
        LSTM(4, return_sequence=True)


@pytest.mark.parametrize("make, input_shape, message", [
    (lambda: LSTM(3), (None, 4), "expects inputs of shape \\(batch, time, features\\)"),
    (lambda: GRU(3), (None, 5, None), "feature axis of the input must be known"),
    (lambda: BatchNormalization(axis=3), (None, 4), "out of range"),
    (lambda: LayerNormalization(axis=0), (None, 4), "batch axis"),
    (lambda: TimeDistributed(layers.Dense(2)), (None, 4), "rank >= 3"),
])
def test_bad_input_shapes_raise_clear_errors(make, input_shape, message):
    with pytest.raises(ValueError, match=message):
        make().build_for(input_shape, np.random.default_rng(0))


# ================================================ (b) Keras 3 as an external oracle

@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"the Keras oracle needs KERAS_BACKEND=tensorflow, got {keras.backend.backend()}")
    return keras


def keras_outputs(keras_layer, x, training=False):
    out = keras_layer(x, training=training)
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)


ORACLE_CASES = {  # (unidl layer, Keras layer given keras and the dtype)
    "SimpleRNN": (lambda: SimpleRNN(4, return_sequences=True, return_state=True),
                  lambda k, d: k.layers.SimpleRNN(4, return_sequences=True, return_state=True, dtype=d)),
    "LSTM": (lambda: LSTM(4, return_sequences=True, return_state=True),
             lambda k, d: k.layers.LSTM(4, return_sequences=True, return_state=True, dtype=d)),
    "LSTM-backwards": (lambda: LSTM(4, go_backwards=True, return_state=True),
                       lambda k, d: k.layers.LSTM(4, go_backwards=True, return_state=True, dtype=d)),
    "GRU": (lambda: GRU(4, return_sequences=True, return_state=True),
            lambda k, d: k.layers.GRU(4, return_sequences=True, return_state=True, dtype=d)),
    "GRU-backwards": (lambda: GRU(4, go_backwards=True, return_sequences=True),
                      lambda k, d: k.layers.GRU(4, go_backwards=True, return_sequences=True, dtype=d)),
    "Bidirectional(LSTM)": (
        lambda: Bidirectional(LSTM(4, return_sequences=True)),
        lambda k, d: k.layers.Bidirectional(k.layers.LSTM(4, return_sequences=True, dtype=d), dtype=d)),
    "Bidirectional(LSTM)-states-sum": (
        lambda: Bidirectional(LSTM(3, return_state=True), merge_mode="sum"),
        lambda k, d: k.layers.Bidirectional(k.layers.LSTM(3, return_state=True, dtype=d), merge_mode="sum",
                                            dtype=d)),
    "LayerNormalization": (lambda: LayerNormalization(), lambda k, d: k.layers.LayerNormalization(dtype=d)),
    "TimeDistributed(Dense)": (lambda: TimeDistributed(layers.Dense(3)),
                               lambda k, d: k.layers.TimeDistributed(k.layers.Dense(3, dtype=d), dtype=d)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(ORACLE_CASES))
def test_same_outputs_as_keras(keras, case, dtype):
    make, make_keras = ORACLE_CASES[case]
    x = sequences(batch=3, steps=6, features=5).astype(dtype)
    layer = make()
    layer.build_for((None, 6, 5), np.random.default_rng(0))
    weights = randomize(layer)
    keras_layer = make_keras(keras, dtype)
    keras_layer.build((None, 6, 5))
    keras_layer.set_weights(weights)
    expected = keras_outputs(keras_layer, x)
    out = run_layer(layer, x, dtype=dtype)
    if not isinstance(expected, list):
        out, expected = [out], [expected]
    assert len(out) == len(expected)
    for i, (o, e) in enumerate(zip(out, expected)):
        assert_close(o, e, FORWARD[dtype], f"{case} output {i}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("training", [False, True])
def test_batchnorm_same_as_keras(keras, dtype, training):
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(6, 3, 4)).astype(dtype)
    layer = BatchNormalization()
    layer.build_for((None, 3, 4), np.random.default_rng(0))
    weights = randomize(layer)
    keras_layer = keras.layers.BatchNormalization(dtype=dtype)
    keras_layer.build((None, 3, 4))
    keras_layer.set_weights(weights)
    expected = keras_outputs(keras_layer, x, training=training)
    assert_close(run_layer(layer, x, dtype=dtype, training=training), expected, FORWARD[dtype], "output")
    for ours, theirs in zip(layer.get_weights(), keras_layer.get_weights()):  # moving stats included
        assert_close(ours, theirs, FORWARD[dtype], "weights after the call")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_embedding_same_as_keras(keras, dtype):
    ids = np.random.default_rng(0).integers(0, 7, size=(3, 5))
    layer = Embedding(7, 4)
    layer.build_for((None, 5), np.random.default_rng(0))
    keras_layer = keras.layers.Embedding(7, 4, dtype=dtype)
    keras_layer.build((None, 5))
    keras_layer.set_weights(layer.get_weights())
    assert_close(run_layer(layer, ids, dtype=dtype), keras_outputs(keras_layer, ids), FORWARD[dtype], "Embedding")


# ====================================================================== (c) gradients

def layer_loss(layer, be, x, upstream, training=True):
    """A scalar from the layer's outputs with a random upstream gradient (not a plain sum)."""
    out = layer(be.convert(x), training=training)
    out = out if isinstance(out, list) else [out]
    total = 0.0
    for o, u in zip(out, upstream):
        total = ops.add(total, ops.sum(ops.multiply(o, be.convert(u))))
    return total


def weight_grads(layer, backend, dtype, x, upstream):
    be = backend_or_skip(backend, dtype)
    for w in layer.weights:
        w.bind(be)
    with unidl.use_backend(be):
        _, _, grads = be.value_and_grad(lambda: (layer_loss(layer, be, x, upstream), None),
                                        [w.value for w in layer.weights])
    return [be.to_numpy(g) for g in grads]


def upstream_for(layer, x, seed=2):
    shapes = layer.compute_output_shape((None, *x.shape[1:]))
    shapes = shapes if isinstance(shapes, list) else [shapes]
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(len(x), *s[1:])) for s in shapes]


GRAD_CASES = {
    "LSTM": lambda: LSTM(2, return_sequences=True, return_state=True),
    "LSTM-backwards-last": lambda: LSTM(2, go_backwards=True),
    "GRU": lambda: GRU(2, return_sequences=True, return_state=True),
    "GRU-backwards-last": lambda: GRU(2, go_backwards=True),
    "SimpleRNN": lambda: SimpleRNN(2, return_sequences=True),
    "Bidirectional(GRU)": lambda: Bidirectional(GRU(2, return_sequences=True)),
    "BatchNormalization": lambda: BatchNormalization(),
    "LayerNormalization": lambda: LayerNormalization(),
}


@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_numpy_gradients_match_finite_differences(case):
    x = sequences(batch=2, steps=3, features=3)
    layer = GRAD_CASES[case]()
    layer.build_for((None, 3, 3), np.random.default_rng(0))
    randomize(layer)
    upstream = upstream_for(layer, x)
    trainable = [i for i, w in enumerate(layer.weights) if w.trainable]
    start = layer.get_weights()
    grads = weight_grads(layer, "numpy", "float64", x, upstream)
    be = get_backend("numpy", dtype="float64")

    def loss_at(values):
        layer.set_weights(values)
        with unidl.use_backend(be), be.no_grad():
            return float(be.to_numpy(layer_loss(layer, be, x, upstream)))

    for i in trainable:
        numeric = central_differences(lambda w, i=i: loss_at(start[:i] + [w] + start[i + 1:]), start[i])
        assert_close(grads[i], numeric, FD_F64, f"{case}: d loss / d {layer.weights[i].name}")


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_backend_gradients_match_numpy(case, backend):
    x = sequences(batch=2, steps=4, features=3)
    layer = GRAD_CASES[case]()
    layer.build_for((None, 4, 3), np.random.default_rng(0))
    weights = randomize(layer)
    upstream = upstream_for(layer, x)
    expected = weight_grads(layer, "numpy", "float64", x, upstream)
    layer.set_weights(weights)  # BatchNormalization moved its statistics
    got = weight_grads(layer, backend, "float64", x, upstream)
    for w, g, e in zip(layer.weights, got, expected):
        assert_close(g, e, GRAD_F64, f"{backend} {case}: d loss / d {w.name}")


# ============================================== (d, e) training agrees across backends

class BatchLosses(Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def regression_target(x):
    return np.tanh(x.reshape(len(x), -1).sum(axis=1, keepdims=True) / 4)


# Short sequences (3 steps): TensorFlow traces the unrolled time loop into one graph, which
# costs about a millisecond per op; the layers' step logic is the same for any length.
TRAIN_CASES = {
    "BatchNormalization": (lambda: [layers.Dense(6, use_bias=False, input_shape=(4,)), BatchNormalization(),
                                   layers.Dense(1)], (4,)),
    "BatchNormalization-seq": (lambda: [BatchNormalization(input_shape=(3, 4)), layers.Flatten(), layers.Dense(1)],
                               (3, 4)),
    "LayerNormalization": (lambda: [layers.Dense(6, input_shape=(4,)), LayerNormalization(), layers.Dense(1)],
                           (4,)),
    "Embedding": (lambda: [Embedding(10, 3, input_shape=(5,)), layers.Flatten(), layers.Dense(1)], "ids"),
    "Embedding+LSTM": (lambda: [Embedding(10, 3, input_shape=(3,)), LSTM(4), layers.Dense(1)], "ids"),
    "SimpleRNN": (lambda: [SimpleRNN(4, input_shape=(3, 2)), layers.Dense(1)], (3, 2)),
    "LSTM-stacked": (lambda: [LSTM(4, return_sequences=True, input_shape=(3, 2)), LSTM(3, go_backwards=True),
                              layers.Dense(1)], (3, 2)),
    "GRU": (lambda: [GRU(4, input_shape=(3, 2)), layers.Dense(1)], (3, 2)),
    "Bidirectional(LSTM)": (lambda: [Bidirectional(LSTM(3, return_sequences=True), input_shape=(3, 2)),
                                     layers.Flatten(), layers.Dense(1)], (3, 2)),
    "Bidirectional(GRU)-sum": (lambda: [Bidirectional(GRU(3), merge_mode="sum", input_shape=(3, 2)),
                                        layers.Dense(1)], (3, 2)),
    "TimeDistributed(Dense)": (lambda: [TimeDistributed(layers.Dense(4, activation="tanh"), input_shape=(3, 2)),
                                        GRU(3), layers.Dense(1)], (3, 2)),
}


def train(case, backend, dtype):
    make, sample = TRAIN_CASES[case]
    rng = np.random.default_rng(0)
    # 10 samples in batches of 4: the last batch is smaller (a compiled step must not fix the batch size)
    if sample == "ids":
        steps = make()[0].get_config()["input_shape"][0]
        x = rng.integers(0, 10, size=(10, steps))
    else:
        x = rng.normal(size=(10, *sample))
    y = regression_target(x / 10 if sample == "ids" else x)
    backend_or_skip(backend, dtype)
    model = unidl.Sequential(make(), seed=0)
    # float64 runs TensorFlow's compiled step (unknown batch size), float32 its eager one:
    # both paths are covered, and each graph trace costs seconds.
    model.compile(optimizer="adam", loss="mse", backend=backend, dtype=dtype,
                  jit_compile="auto" if dtype == "float64" else False)
    record = BatchLosses()
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0, callbacks=[record])
    return record.losses, model.get_weights()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_training_agrees_across_backends(case, dtype):
    reference_losses, reference_weights = train(case, "numpy", dtype)
    assert len(reference_losses) == 6 and np.all(np.isfinite(reference_losses))
    for backend in BACKENDS[1:]:
        losses, weights = train(case, backend, dtype)
        assert_close(losses, reference_losses, TRAJECTORY[dtype], f"{backend} {case} losses")
        for i, (w, r) in enumerate(zip(weights, reference_weights)):  # moving statistics included (e)
            assert_close(w, r, TRAJECTORY[dtype], f"{backend} {case} weight {i} after fit")


def test_batchnorm_moving_statistics_move_during_fit():
    for backend in BACKENDS:
        _, weights = train("BatchNormalization", backend, "float64")
        moving_mean, moving_variance = weights[3], weights[4]
        assert np.all(moving_mean != 0.0) and np.all(moving_variance != 1.0), backend


def test_lstm_layer_trains_on_every_backend_without_compiling():
    x = sequences(batch=6, steps=4, features=3)
    y = regression_target(x)
    losses = {}
    for backend in BACKENDS:
        backend_or_skip(backend)
        model = unidl.Sequential([LSTM(3, input_shape=(4, 3)), layers.Dense(1)], seed=0)
        model.compile(optimizer="sgd", loss="mse", backend=backend, dtype="float64", jit_compile=False)
        losses[backend] = model.fit(x, y, epochs=3, batch_size=6, verbose=0).history["loss"]
    for backend in BACKENDS[1:]:
        assert_close(losses[backend], losses["numpy"], TRAJECTORY_F64, backend)
    assert losses["numpy"][-1] < losses["numpy"][0]


def test_time_distributed_dropout_runs_eagerly():
    layer = TimeDistributed(layers.Dropout(0.5))
    assert layer.draws_host_randomness
    assert not TimeDistributed(layers.Dense(2)).draws_host_randomness


def test_return_state_in_a_functional_model():
    pytest.importorskip("unidl.functional")
    x = sequences(batch=6, steps=4, features=3)
    for backend in BACKENDS:
        backend_or_skip(backend)
        inputs = layers.Input((4, 3))
        lstm = LSTM(3, return_state=True)
        _, h, c = lstm(inputs)
        model = unidl.Model(inputs, [h, c], seed=0)
        model.compile(backend=backend, dtype="float64")
        h_out, c_out = model.predict(x)
        _, (h_ref, c_ref) = ref_lstm(x, *lstm.get_weights())
        assert_close(h_out, h_ref, FORWARD_F64, f"{backend} h")
        assert_close(c_out, c_ref, FORWARD_F64, f"{backend} c")


def test_weight_names_are_unique_in_a_model():
    model = unidl.Sequential([
        Bidirectional(LSTM(3, return_sequences=True), input_shape=(4, 3)),
        Bidirectional(GRU(2, return_sequences=True)),
        TimeDistributed(layers.Dense(2)),
        layers.Flatten(),
        layers.Dense(1),
    ], seed=0)
    names = [w.name for w in model.weights]
    assert len(names) == len(set(names)), names
    assert names[:3] == ["bidirectional/forward_lstm/kernel", "bidirectional/forward_lstm/recurrent_kernel",
                         "bidirectional/forward_lstm/bias"]
    assert "bidirectional/backward_lstm/kernel" in names and "time_distributed/dense/kernel" in names
    # the same seed gives the same weights (the inner layers draw from the model's generator)
    twin = unidl.Sequential([Bidirectional(LSTM(3, return_sequences=True), input_shape=(4, 3)),
                             Bidirectional(GRU(2, return_sequences=True)), TimeDistributed(layers.Dense(2)),
                             layers.Flatten(), layers.Dense(1)], seed=0)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)

"""TensorFlow's native recurrent kernels (backends/unidl_tensorflow/native_layers.py) beyond the kit.

The conformance kit's "native" family compares each kernel with the generic layer on its default
configurations. Here: every flag (``go_backwards``, ``return_sequences``, ``return_state``),
``initial_state`` (and its gradient), ``use_bias=False`` and activations other than tanh/sigmoid,
against the generic layer (``generic_layers()``) on the same backend, in float64 and float32; the
same errors; and what the kernel is for: one traced graph whatever the number of time steps,
which need not be known when tracing.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import unidl  # noqa: E402
from unidl import layers  # noqa: E402
from unidl.backend import generic_layers  # noqa: E402
from unidl.testing.checks import compare  # noqa: E402
from unidl.tolerances import FORWARD_BF16, FORWARD_F32, FORWARD_F64, GRAD_F32, GRAD_F64  # noqa: E402

TOLERANCES = {"float64": (FORWARD_F64, GRAD_F64), "float32": (FORWARD_F32, GRAD_F32)}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}

CONFIGS = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"return_sequences": True, "go_backwards": True, "return_state": True}),
    ("SimpleRNN", {"use_bias": False, "activation": "relu", "return_sequences": True}),
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True, "return_state": True}),
    ("LSTM", {"go_backwards": True, "return_state": True}),
    ("LSTM", {"go_backwards": True, "return_sequences": True}),
    ("LSTM", {"use_bias": False, "activation": "relu", "recurrent_activation": "hard_sigmoid",
              "return_sequences": True, "unit_forget_bias": False}),
    ("GRU", {}),
    ("GRU", {"return_sequences": True, "return_state": True}),
    ("GRU", {"go_backwards": True, "return_sequences": True, "return_state": True}),
    ("GRU", {"use_bias": False, "return_sequences": True}),
    ("GRU", {"activation": "softsign", "recurrent_activation": "hard_sigmoid", "go_backwards": True}),
]


def _ids(config):
    kind, kwargs = config
    return kind + "".join(f"-{k}={v}" for k, v in kwargs.items())


def _layer(kind, kwargs, steps=5, seed=0):
    layer = layers.BUILTINS[kind](4, **kwargs)
    layer.build_for((None, steps, 3), rng=np.random.default_rng(seed))
    return layer


def _run(backend, layer, x, states):
    """Outputs, and the gradients of a weighted sum of them w.r.t. the input, the initial states and the
    weights; ``states`` None calls the layer without ``initial_state``."""
    rng = np.random.default_rng(1)
    with unidl.use_backend(backend):
        for weight in layer.weights:
            weight.bind(backend)
        inputs = [backend.variable(x)] + ([] if states is None else [backend.variable(s) for s in states])
        weights = [w.value for w in layer.weights]
        upstream = {}

        def objective():
            out = layer(inputs[0]) if states is None else layer(inputs[0], initial_state=list(inputs[1:]))
            outs = out if isinstance(out, list) else [out]
            total = 0.0
            for i, o in enumerate(outs):
                if i not in upstream:
                    upstream[i] = backend.convert(rng.uniform(0.5, 1.5, size=backend.shape(o)))
                total = unidl.ops.add(total, unidl.ops.sum(unidl.ops.multiply(o, upstream[i])))
            return total, [backend.to_numpy(o) for o in outs]

        _, outs, grads = backend.value_and_grad(objective, inputs + weights)
        names = ["input"] + [f"initial state {i}" for i in range(len(inputs) - 1)] + [w.name for w in layer.weights]
        return outs, dict(zip(names, (backend.to_numpy(g) for g in grads)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "initial_state"])
def test_native_kernel_matches_the_generic_layer(config, dtype, with_state):
    kind, kwargs = config
    backend = unidl.get_backend("tensorflow", dtype=dtype)
    assert backend.native_layer(_layer(kind, kwargs)) is not None
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5, 3)).astype(dtype)
    states = [rng.normal(size=(3, 4)).astype(dtype) for _ in range(N_STATES[kind])] if with_state else None
    with generic_layers():
        want_outs, want_grads = _run(backend, _layer(kind, kwargs), x, states)
    got_outs, got_grads = _run(backend, _layer(kind, kwargs), x, states)
    forward, grad = TOLERANCES[dtype]
    assert len(got_outs) == len(want_outs) == (1 + N_STATES[kind] if kwargs.get("return_state") else 1)
    for i, (got, want) in enumerate(zip(got_outs, want_outs)):
        compare(f"{kind} output {i}", got, want, forward, dtype=dtype)
    assert list(got_grads) == list(want_grads)
    for name, want in want_grads.items():
        compare(f"{kind} gradient of {name}", got_grads[name], want, grad, dtype=dtype)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_wrong_number_of_initial_states_is_the_generic_layers_error(kind):
    backend = unidl.get_backend("tensorflow", dtype="float64")
    x = np.zeros((2, 5, 3))
    wrong = [np.zeros((2, 4))] * (N_STATES[kind] + 1)
    messages = []
    for context in (generic_layers, contextlib.nullcontext):
        with context(), pytest.raises(ValueError) as info:
            _run(backend, _layer(kind, {}), x, wrong)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def _traced_ops(backend, layer, steps):
    """How many operations a traced call of ``layer`` on (batch, steps, 3) holds (steps may be None)."""
    def call(x):
        with unidl.use_backend(backend):
            return layer(x)
    graph = tf.function(call, autograph=False).get_concrete_function(
        tf.TensorSpec((None, steps, 3), backend.dtype)).graph
    return len(graph.get_operations())


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_the_traced_graph_does_not_grow_with_the_number_of_steps(kind):
    backend = unidl.get_backend("tensorflow")
    layer = _layer(kind, {"return_sequences": True}, steps=None)
    for weight in layer.weights:
        weight.bind(backend)
    assert _traced_ops(backend, layer, 4) == _traced_ops(backend, layer, 60)
    with generic_layers():  # the generic layer unrolls the loop: one cell per step
        assert _traced_ops(backend, layer, 60) > 10 * _traced_ops(backend, layer, 4) / 2


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_one_graph_with_an_unknown_number_of_steps_serves_every_length(kind):
    backend = unidl.get_backend("tensorflow", dtype="float64")
    layer = _layer(kind, {"return_sequences": True, "return_state": True}, steps=None)
    for weight in layer.weights:
        weight.bind(backend)

    def call(x):
        with unidl.use_backend(backend):
            return layer(x)
    traced = tf.function(call, autograph=False).get_concrete_function(tf.TensorSpec((None, None, 3), "float64"))
    rng = np.random.default_rng(3)
    for steps in (1, 4, 9):
        x = rng.normal(size=(2, steps, 3))
        got = traced(tf.constant(x))
        with generic_layers(), unidl.use_backend(backend):
            want = layer(backend.convert(x))
        for g, w in zip(got, want):
            compare(f"{kind} over {steps} steps", g.numpy(), backend.to_numpy(w), FORWARD_F64, dtype="float64")


def test_fit_with_native_kernels_under_mixed_bfloat16_follows_the_generic_layers():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 6, 3)).astype("float32")
    y = x[:, -2:].sum(axis=(1, 2))[:, None]
    histories = []
    for context in (generic_layers, contextlib.nullcontext):
        model = unidl.Sequential([layers.Input((6, 3)), layers.LSTM(5, return_sequences=True),
                                  layers.GRU(4, go_backwards=True, return_sequences=True), layers.SimpleRNN(3), layers.Dense(1)], seed=0)
        model.compile(optimizer="adam", loss="mse", backend="tensorflow", dtype_policy="mixed_bfloat16")
        assert model.backend.native_layer(model.layers[0]) is not None
        with context():
            history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        histories.append(np.array(history.history["loss"]))
    # bfloat16 keeps 8 bits of mantissa: both runs round alike, not identically (the input projection is
    # one matmul over every step in the kernel, a batched one in the generic layer); seen 2.5e-4 apart
    compare("loss of each epoch, native vs generic layers", histories[1], histories[0], FORWARD_BF16)

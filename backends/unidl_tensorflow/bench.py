"""A hand-written TensorFlow training loop that ``unidl bench`` times unidl against.

What a TensorFlow user writes by hand: ``tf.Variable`` weights, a
``tf.function`` train step with ``tf.GradientTape``, Adam as Keras computes
it; for mixed_bfloat16, bfloat16 casts of the inputs and weights inside the step.
The models a TensorFlow user builds from Keras layers (the LSTM, the Conv1D
classifier, the transformer: Keras's own examples) use Keras 3 layers on
TensorFlow inside that same step (under mixed_bfloat16, Keras's own dtype policy).

On ``--device cuda`` (or gpu) the step runs under ``tf.device`` on the GPU TensorFlow sees;
without one the case is skipped.
"""
from __future__ import annotations

import contextlib
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the backend does: TF's C++ log to errors only
import tensorflow as tf  # noqa: E402

from unidl.bench import (CLASSES, CONV1D_BLOCKS, CONV1D_FILTERS, CONV1D_STEPS, EMBED, FF, HEADS,  # noqa: E402
                         HIDDEN, LAYER_NORM_EPSILON, LSTM_FEATURES, LSTM_STEPS, LSTM_UNITS, MAXLEN, VOCAB, WIDE,
                         WIDE_DEPTH, DeviceUnavailable)

MODELS = ("mlp", "cnn", "lstm", "wide", "conv1d", "transformer")
POLICIES = (None, "mixed_bfloat16")
KERAS_MODELS = ("conv1d", "transformer")  # whole Keras models (the LSTM is a Keras layer in a hand-written one)


def _placement(device: str | None):
    """A ``tf.device`` context for unidl's device name (cpu, cuda[:N], gpu[:N]); DeviceUnavailable without it."""
    kind, _, index = (device or "cpu").lower().partition(":")
    if kind == "cpu":
        return contextlib.nullcontext()
    if kind not in ("cuda", "gpu"):
        raise DeviceUnavailable(f"native/tensorflow: unknown device {device!r}")
    gpus = tf.config.list_physical_devices("GPU")
    if int(index or 0) >= len(gpus):
        raise DeviceUnavailable(f"native/tensorflow: TensorFlow sees {len(gpus)} GPU(s), so not {device}")
    return tf.device(f"/GPU:{int(index or 0)}")


def _keras():
    """Keras 3 on TensorFlow (the case runs in its own process: the backend is chosen here)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the native TensorFlow loop needs Keras on TensorFlow, not {keras.backend.backend()!r} "
                           "(KERAS_BACKEND)")
    return keras


def keras_model(name: str, policy: str | None = None):
    """Keras's examples' models (softmax outputs), as a Keras user writes them; under a mixed policy,
    every layer takes it (``dtype="mixed_bfloat16"``) but the last, kept in float32 as Keras's guide asks."""
    keras = _keras()
    L, dt = keras.layers, policy or "float32"
    if name == "conv1d":  # "Timeseries classification from scratch" (FordA)
        inputs = keras.Input((CONV1D_STEPS, 1))
        h = inputs
        for _ in range(CONV1D_BLOCKS):
            h = L.ReLU(dtype=dt)(L.BatchNormalization(dtype=dt)(L.Conv1D(CONV1D_FILTERS, 3, padding="same", dtype=dt)(h)))
        h = L.GlobalAveragePooling1D(dtype=dt)(h)
        return keras.Model(inputs, L.Dense(CLASSES["conv1d"], activation="softmax", dtype="float32")(h))
    # "Text classification with Transformer", without its dropout
    inputs = keras.Input((MAXLEN,), dtype="int64")
    positions = L.Embedding(MAXLEN, EMBED, dtype=dt)(keras.ops.arange(MAXLEN))
    h = L.Embedding(VOCAB, EMBED, dtype=dt)(inputs) + positions
    attended = L.MultiHeadAttention(num_heads=HEADS, key_dim=EMBED, dtype=dt)(h, h)
    h = L.LayerNormalization(epsilon=LAYER_NORM_EPSILON, dtype=dt)(h + attended)
    ffn = L.Dense(EMBED, dtype=dt)(L.Dense(FF, activation="relu", dtype=dt)(h))
    h = L.LayerNormalization(epsilon=LAYER_NORM_EPSILON, dtype=dt)(h + ffn)
    h = L.Dense(20, activation="relu", dtype=dt)(L.GlobalAveragePooling1D(dtype=dt)(h))
    return keras.Model(inputs, L.Dense(CLASSES["transformer"], activation="softmax", dtype="float32")(h))


def run_native_tensorflow(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                          policy: str | None = None):
    with _placement(device):
        return _run(model_name, x, y, batch_size, repeats, policy)


def _run(model_name: str, x, y, batch_size: int, repeats: int, policy: str | None):
    rng = np.random.default_rng(0)
    if policy not in (None, "mixed_bfloat16"):
        raise ValueError(f"the native TensorFlow loop is written for float32 and mixed_bfloat16, not {policy}")
    half = tf.bfloat16 if policy else None

    def read(v):  # mixed_bfloat16 by hand: every weight read as bfloat16
        return v if half is None else tf.cast(v, half)

    def glorot(shape):
        fan_in, fan_out = np.prod(shape[:-1]), shape[-1] * (np.prod(shape[:-2]) if len(shape) > 2 else 1)
        limit = np.sqrt(6 / (fan_in + fan_out))
        return tf.Variable(rng.uniform(-limit, limit, shape).astype(np.float32))

    recurrent = whole = None
    dense, convs = [], []
    if model_name in ("mlp", "wide"):
        sizes = [784, HIDDEN, HIDDEN, 10] if model_name == "mlp" else [784] + [WIDE] * WIDE_DEPTH + [10]
        dense = [(glorot((a, b)), tf.Variable(tf.zeros(b))) for a, b in zip(sizes[:-1], sizes[1:])]
    elif model_name == "lstm":  # a TensorFlow user's LSTM is Keras's (its fused kernels on GPUs)
        recurrent = tf.keras.layers.LSTM(LSTM_UNITS)
        recurrent.build((None, LSTM_STEPS, LSTM_FEATURES))
        dense = [(glorot((LSTM_UNITS, 10)), tf.Variable(tf.zeros(10)))]
    elif model_name in KERAS_MODELS:
        whole = keras_model(model_name, policy)
    else:
        convs = [(glorot((3, 3, 1, 32)), tf.Variable(tf.zeros(32))), (glorot((3, 3, 32, 64)), tf.Variable(tf.zeros(64)))]
        dense = [(glorot((1600, 128)), tf.Variable(tf.zeros(128))), (glorot((128, 10)), tf.Variable(tf.zeros(10)))]
    variables = [v for pair in convs + dense for v in pair]
    if recurrent is not None:
        variables = list(recurrent.trainable_variables) + variables
    if whole is not None:
        variables = list(whole.trainable_variables)
    optimizer = _TfAdam(variables)

    def forward(h):
        if recurrent is not None:
            h = recurrent(h)
        h = h if half is None else tf.cast(h, half)
        for w, b in convs:
            h = tf.nn.relu(tf.nn.conv2d(h, read(w), 1, "VALID") + read(b))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        if convs:
            h = tf.reshape(h, (-1, 1600))
        for i, (w, b) in enumerate(dense):
            h = tf.matmul(h, read(w)) + read(b)
            if i < len(dense) - 1:
                h = tf.nn.relu(h)
        return tf.cast(h, tf.float32)  # the loss in float32

    def loss_of(xb, yb):
        if whole is not None:  # Keras's softmax output and loss
            probabilities = whole(xb, training=True)
            return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(yb, probabilities))
        logits = forward(xb)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_of(xb, yb)
        optimizer.apply(tape.gradient(loss, variables))
        return loss

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        running = 0.0
        for i in range(0, len(x), batch_size):
            running += float(step(x[i:i + batch_size], y[i:i + batch_size]))
        times.append(time.perf_counter() - start)
    return times[1:]


class _TfAdam:
    """Adam (Keras's rule) over tf.Variables, for the native TensorFlow loop."""

    def __init__(self, variables, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        self.tf, self.variables = tf, variables
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0)

    def apply(self, grads):
        tf = self.tf
        self.t.assign_add(1.0)
        lr_t = self.lr * tf.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v):
            m.assign_add((g - m) * (1 - self.b1))
            v.assign_add((tf.square(g) - v) * (1 - self.b2))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + self.eps))

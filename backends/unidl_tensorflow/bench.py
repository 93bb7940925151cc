"""A hand-written TensorFlow training loop that ``unidl bench`` times unidl against.

What a TensorFlow user writes by hand: ``tf.Variable`` weights, a
``tf.function`` train step with ``tf.GradientTape``, Adam as Keras computes
it; for mixed_bfloat16, bfloat16 casts of the inputs and weights inside the step.
"""
from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the backend does: TF's C++ log to errors only
import tensorflow as tf  # noqa: E402

from unidl.bench import HIDDEN, LSTM_FEATURES, LSTM_STEPS, LSTM_UNITS

MODELS = ("mlp", "cnn", "lstm")
POLICIES = (None, "mixed_bfloat16")


def run_native_tensorflow(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                          policy: str | None = None):
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

    recurrent = None
    if model_name == "mlp":
        sizes = [784, HIDDEN, HIDDEN, 10]
        dense = [(glorot((a, b)), tf.Variable(tf.zeros(b))) for a, b in zip(sizes[:-1], sizes[1:])]
        convs = []
    elif model_name == "lstm":  # a TensorFlow user's LSTM is Keras's (its fused kernels on GPUs)
        recurrent = tf.keras.layers.LSTM(LSTM_UNITS)
        recurrent.build((None, LSTM_STEPS, LSTM_FEATURES))
        dense, convs = [(glorot((LSTM_UNITS, 10)), tf.Variable(tf.zeros(10)))], []
    else:
        convs = [(glorot((3, 3, 1, 32)), tf.Variable(tf.zeros(32))), (glorot((3, 3, 32, 64)), tf.Variable(tf.zeros(64)))]
        dense = [(glorot((1600, 128)), tf.Variable(tf.zeros(128))), (glorot((128, 10)), tf.Variable(tf.zeros(10)))]
    variables = [v for pair in convs + dense for v in pair]
    if recurrent is not None:
        variables = list(recurrent.trainable_variables) + variables
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

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = forward(xb)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
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

"""No memory growth per training step, and compiled custom steps that trace once per kind of input.

Memory: a fresh process trains a small model one sample per step; after a warm-up its resident set
must stay flat (the TensorFlow backend used to grow 0.75 KB a step: a new tf.constant per learning
rate). Retracing: ``unidl.function`` keeps its compiled step per backend *kind*, and new sequence
lengths neither crash nor trace forever.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.backend import generic_layers

STEPS = 6000
# Growth per step that counts as a leak: far above allocator noise spread over STEPS steps
# (a page per ~40 steps), far below the 0.75 KB/step the TensorFlow backend leaked.
LEAK_KB_PER_STEP = 0.1

needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS needs /proc")


def installed(name, *more):
    return pytest.param(name, *more, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                              reason=f"{name} is not installed"))


RSS_PER_STEP = textwrap.dedent("""
    import json, sys
    import numpy as np, unidl
    from unidl import layers
    from unidl.memory import proc_status_mb
    backend, steps, jit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    model = unidl.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(1)], seed=0)
    model.compile(optimizer="adam", loss="mse", backend=backend, jit_compile=jit)
    rng = np.random.default_rng(0)
    x, y = rng.random((steps, 3)).astype("float32"), rng.random((steps, 1)).astype("float32")
    model.fit(x[:1500], y[:1500], batch_size=1, epochs=1, verbose=0)  # warm-up: caches, allocator pools
    before = proc_status_mb("VmRSS")
    model.fit(x, y, batch_size=1, epochs=1, verbose=0)
    print(json.dumps((proc_status_mb("VmRSS") - before) * 1024 / steps))
""")


@needs_proc
@pytest.mark.parametrize("backend, jit", [("numpy", True), installed("torch", True),
                                          installed("tensorflow", True), installed("tensorflow", False)])
def test_training_steps_do_not_grow_memory(backend, jit):
    steps = STEPS if jit else STEPS // 4  # TensorFlow's eager steps are slow
    proc = subprocess.run([sys.executable, "-c", RSS_PER_STEP, backend, str(steps), "1" if jit else "0"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kb_per_step = json.loads(proc.stdout.strip().splitlines()[-1])
    assert kb_per_step < LEAK_KB_PER_STEP, f"{backend} (jit={jit}) grew {kb_per_step:.3f} KB per step"


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")
@pytest.mark.parametrize("native", [True, False], ids=["native_layers", "generic_layers"])
def test_a_custom_step_is_compiled_once_per_backend_kind_and_sequence_lengths_may_vary(native):
    model = unidl.Sequential([layers.SimpleRNN(3, input_shape=(None, 2)), layers.Dense(1)], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="tensorflow")
    traces = []

    @unidl.function
    def step(x, y):
        traces.append(ops.shape(x))
        loss, grads = unidl.value_and_grad(lambda: ops.mean(ops.square(ops.subtract(model(x), y))), model)
        model.optimizer.apply(grads, model.trainable_weights)
        return loss

    rng = np.random.default_rng(0)
    lengths = [6, 6, 5, 6, 7, 4, 9, 5, 6, 8, 3]
    with contextlib.nullcontext() if native else generic_layers():
        for length in lengths:
            with unidl.use_backend("tensorflow") as backend:  # a new backend object every time
                x = backend.convert(rng.random((2, length, 2)))
                y = backend.convert(rng.random((2, 1)))
                float(backend.to_numpy(step(x, y)))
    # never one trace per call, whatever object use_backend hands out. The first call runs eagerly, then
    # one trace per new length until three lengths have come; then the time axis is traced as unknown.
    if native:  # TensorFlow's native SimpleRNN loops with tf.while_loop: one graph serves every length
        assert len(traces) == 1 + 3 + 1, traces
    else:  # the generic layer must know its number of steps: it stays traced at each size
        assert len(traces) == 1 + len(set(lengths)) + 1, traces
    assert model.optimizer.iterations == len(lengths)

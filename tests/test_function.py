"""unidl.function: custom training steps compiled by the bound backend give the eager numbers."""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.testing.tolerances import TRAJECTORY_F32, TRAJECTORY_F64

BACKENDS = ["numpy", "torch", "tensorflow", "jax"]  # jax: the example plugin, when installed
STEPS = 6


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param != "numpy":
        pytest.importorskip("unidl_jax" if request.param == "jax" else request.param)
    return request.param


def gan(backend: str, dtype: str):
    generator = unidl.Sequential([layers.Dense(8, activation="relu", input_shape=(3,)), layers.Dense(2)], seed=1)
    critic = unidl.Sequential([layers.Dense(8, activation="tanh", input_shape=(2,)), layers.Dense(1)], seed=2)
    decay = unidl.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.5)  # a new rate every step
    generator.compile(optimizer=unidl.optimizers.Adam(decay), backend=backend, dtype=dtype)
    critic.compile(optimizer=unidl.optimizers.SGD(0.05, momentum=0.9), backend=backend, dtype=dtype)
    return generator, critic


def train(backend: str, dtype: str, compiled: bool):
    generator, critic = gan(backend, dtype)
    bce = unidl.losses.BinaryCrossentropy(from_logits=True)
    rng = np.random.default_rng(0)

    def step(real, noise, ones, zeros):
        def critic_loss():
            fake = ops.stop_gradient(generator(noise))
            return ops.add(bce(ones, critic(real)), bce(zeros, critic(fake)))
        c_loss, c_grads = unidl.value_and_grad(critic_loss, critic)
        critic.optimizer.apply(c_grads, critic.trainable_weights)
        g_loss, g_grads = unidl.value_and_grad(lambda: bce(ones, critic(generator(noise))), generator)
        generator.optimizer.apply(g_grads, generator.trainable_weights)
        return c_loss, g_loss

    run = unidl.function(step) if compiled else step
    b = generator.backend
    losses = []
    with unidl.use_backend(b):
        ones, zeros = b.convert(np.ones((16, 1))), b.convert(np.zeros((16, 1)))
        for _ in range(STEPS):
            real = b.convert(rng.normal(size=(16, 2)))
            noise = b.convert(rng.normal(size=(16, 3)))
            losses.append([float(b.to_numpy(v)) for v in run(real, noise, ones, zeros)])
    return np.array(losses), generator, critic


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_custom_steps_follow_the_eager_ones(backend, dtype):
    tol = TRAJECTORY_F64 if dtype == "float64" else TRAJECTORY_F32
    eager, g_eager, c_eager = train(backend, dtype, compiled=False)
    traced, g_traced, c_traced = train(backend, dtype, compiled=True)
    np.testing.assert_allclose(traced, eager, rtol=tol.rtol, atol=tol.atol)
    for a, b in zip(g_traced.get_weights() + c_traced.get_weights(), g_eager.get_weights() + c_eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=tol.rtol, atol=1e-6 if dtype == "float32" else 1e-12)
    # the host counted every step, so the schedule and Adam's bias corrections advanced
    assert g_traced.optimizer.iterations == c_traced.optimizer.iterations == STEPS
    assert not np.allclose(eager[0], eager[-1])  # training moved


def test_function_traces_once_on_tensorflow():
    pytest.importorskip("tensorflow")
    traces = []
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    model.compile(optimizer="adam", loss="mse", backend="tensorflow")

    @unidl.function
    def step(x):
        traces.append(1)  # Python side effects run while tracing only
        loss, grads = unidl.value_and_grad(lambda: ops.mean(ops.square(model(x))), model)
        model.optimizer.apply(grads, model.trainable_weights)
        return loss

    b = model.backend
    with unidl.use_backend(b):
        losses = [float(b.to_numpy(step(b.convert(np.ones((4, 3)))))) for _ in range(5)]
    assert len(traces) == 2  # the first, eager call and one trace for the four compiled calls
    assert losses[-1] < losses[0] and model.optimizer.iterations == 5

"""unidl.random: Keras's random functions, the same numbers on every backend, never frozen into a graph."""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import unidl
from unidl import layers, ops

BACKENDS = ["numpy"] + [pytest.param(name, marks=pytest.mark.skipif(importlib.util.find_spec(name) is None,
                                                                      reason=f"{name} is not installed"))
                        for name in ("torch", "tensorflow")]
needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="tensorflow is not installed")


def draws(backend, seed):
    with unidl.use_backend(backend) as b:
        return [b.to_numpy(unidl.random.normal((2, 3), seed=seed)), b.to_numpy(unidl.random.uniform((4,), seed=seed)),
                b.to_numpy(unidl.random.randint((5,), 0, 10, seed=seed))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_seed_gives_the_same_numbers_on_every_backend(backend):
    ours = draws(backend, unidl.random.SeedGenerator(3))
    reference = draws("numpy", unidl.random.SeedGenerator(3))
    for a, b in zip(ours, reference):
        np.testing.assert_array_equal(a, b.astype(a.dtype))


def test_seed_semantics_follow_keras():
    generator = unidl.random.SeedGenerator(7)
    with unidl.use_backend("numpy") as b:
        first, second = (b.to_numpy(unidl.random.normal((3,), seed=generator)) for _ in range(2))
        assert not np.array_equal(first, second)  # a generator advances
        fixed = [b.to_numpy(unidl.random.normal((3,), seed=11)) for _ in range(2)]
        np.testing.assert_array_equal(*fixed)     # an int is a fixed draw
        unidl.utils.set_random_seed(5)
        a = b.to_numpy(unidl.random.uniform((3,)))
        unidl.utils.set_random_seed(5)
        np.testing.assert_array_equal(a, b.to_numpy(unidl.random.uniform((3,))))  # seed=None follows set_random_seed
        t = b.to_numpy(unidl.random.truncated_normal((1000,), seed=1))
        assert np.abs(t).max() <= 2.0
        kept = b.to_numpy(unidl.random.dropout(b.ones((1000,)), 0.25, seed=2))
        np.testing.assert_allclose(np.unique(kept), [0.0, 1.0 / 0.75], rtol=1e-6)
        assert 0.2 < np.mean(kept == 0) < 0.3


class Sampling(layers.Layer):
    """The Keras VAE example's sampling layer: z = mean + exp(log_var / 2) * epsilon."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = unidl.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = unidl.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def vae_like(backend):
    inputs = layers.Input((8,))
    hidden = layers.Dense(4)(inputs)
    z = Sampling()([layers.Dense(2)(hidden), layers.Dense(2)(hidden)])
    model = unidl.Model(inputs, layers.Dense(8)(z), seed=0)
    model.compile(optimizer="adam", loss="mse", backend=backend)
    return model


X = np.random.default_rng(0).random((64, 8)).astype("float32")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sampling_layer_draws_new_noise_every_call_and_trains_alike_everywhere(backend):
    model = vae_like(backend)
    losses = model.fit(X, X, epochs=2, batch_size=16, verbose=0).history["loss"]
    assert not np.allclose(model.predict(X[:4]), model.predict(X[:4]))  # not frozen into a graph
    reference = vae_like("numpy").fit(X, X, epochs=2, batch_size=16, verbose=0).history["loss"]
    np.testing.assert_allclose(losses, reference, rtol=1e-5)


@needs_tf
def test_jit_compile_true_with_random_draws_warns_and_runs_eagerly():
    model = vae_like("tensorflow")
    model.compile(optimizer="adam", loss="mse", backend="tensorflow", jit_compile=True)
    with pytest.warns(RuntimeWarning, match="draws random numbers .* runs eagerly"):
        model.fit(X, X, epochs=1, batch_size=32, verbose=0)


@needs_tf
def test_a_compiled_custom_step_with_random_draws_falls_back_to_eager():
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="tensorflow")
    seen = []

    @unidl.function
    def noisy(x):
        noise = unidl.random.normal((2, 3), seed=model_seed)
        out = model(x + noise)
        seen.append(1)
        return out

    model_seed = unidl.random.SeedGenerator(0)
    with unidl.use_backend(model.backend) as b:
        x = b.convert(np.zeros((2, 3)))
        outputs = [b.to_numpy(noisy(x))]
        with pytest.warns(RuntimeWarning, match="runs eagerly"):
            outputs.append(b.to_numpy(noisy(x)))
        outputs.append(b.to_numpy(noisy(x)))
    assert not np.allclose(outputs[1], outputs[2])


@needs_tf
def test_numpy_randomness_in_a_traced_step_is_reported():
    class HostNoise(layers.Layer):
        def call(self, x):
            return x + ops.convert(np.random.normal(size=(1, 3)).astype("float32"))

    model = unidl.Sequential([layers.Input((3,)), HostNoise(), layers.Dense(1)], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend="tensorflow")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(np.zeros((8, 3)), np.zeros((8, 1)), batch_size=4, verbose=0)  # the first step runs eagerly
    assert any("NumPy's global random generator was used while a step was traced" in str(w.message)
               for w in caught)

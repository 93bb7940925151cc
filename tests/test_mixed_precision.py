"""Mixed precision: half-precision compute, float32 master weights, loss scaling for float16.

Every model here is compared with the same model (same seed, same weights) on the
NumPy reference backend in float64, within the named FORWARD_BF16 / FORWARD_F16
tolerances; the probes check the computation really ran in the half dtype.
"""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl import layers
from unidl.backend import BackendError
from unidl.naming import UnknownNameError
from unidl.precision import DynamicLossScale
from unidl.testing.tolerances import FORWARD_BF16, FORWARD_F16

from .test_training import load_example

BACKENDS = ["torch", "tensorflow"]
POLICIES = {"mixed_bfloat16": FORWARD_BF16, "mixed_float16": FORWARD_F16}
RNG = np.random.default_rng(0)


@pytest.fixture(params=BACKENDS)
def backend(request):
    pytest.importorskip(request.param)
    return request.param


def mlp():
    return unidl.Sequential([layers.Dense(64, activation="relu", input_shape=(20,)), layers.Dropout(0.2),
                             layers.BatchNormalization(), layers.Dense(10, activation="softmax")], seed=1)


def cnn():
    return unidl.Sequential([layers.Conv2D(8, 3, activation="relu", padding="same", input_shape=(12, 12, 1)),
                             layers.MaxPooling2D(2), layers.Conv2D(8, 3), layers.AveragePooling2D(),
                             layers.Flatten(), layers.LayerNormalization(), layers.Dense(10, activation="softmax")],
                            seed=1)


def recurrent():
    return unidl.Sequential([layers.Embedding(1000, 8, input_shape=(7,)), layers.LSTM(16, return_sequences=True),
                             layers.SimpleRNN(8), layers.Dense(3, activation="softmax")], seed=1)


MODELS = {"mlp": (mlp, RNG.normal(size=(16, 20))), "cnn": (cnn, RNG.normal(size=(16, 12, 12, 1))),
          "recurrent": (recurrent, RNG.integers(250, 1000, size=(16, 7)))}  # ids bfloat16 would round


def reference_predict(make, x):
    model = make()
    model.compile(loss="mse", backend="numpy", dtype="float64")
    return model.predict(x)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_the_float64_reference(backend, policy, name):
    make, x = MODELS[name]
    model = make()
    model.compile(loss="mse", backend=backend, dtype_policy=policy)
    out = model.predict(x)
    expected = reference_predict(make, x)
    assert out.dtype == np.float32  # outputs come back in the variable dtype
    np.testing.assert_allclose(out, expected, rtol=POLICIES[policy].rtol, atol=POLICIES[policy].atol)
    # and the half precision is real: a float32 pass would sit within FORWARD_F32 of the reference
    assert np.abs(out - expected).max() > 1e-5


class Probe(layers.Layer):
    """Records the dtypes its input and its kernel arrive in."""

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (input_shape[-1], 2))
        self.seen = []

    def call(self, x):
        kernel = unidl.ops.multiply(self.kernel, 1.0)  # reading the Variable through ops
        self.seen.append((str(x.dtype), str(kernel.dtype)))
        return unidl.ops.matmul(x, kernel)


def test_layers_compute_in_half_precision_and_weights_stay_float32(backend):
    probe = Probe()
    model = unidl.Sequential([layers.Dense(4, input_shape=(3,)), probe, layers.BatchNormalization()], seed=0)
    model.compile(optimizer="adam", loss="mse", backend=backend, dtype_policy="mixed_bfloat16")
    before = model.get_weights()
    probe.seen.clear()  # building ran one shape-inference pass on the NumPy reference
    history = model.fit(RNG.normal(size=(32, 3)), RNG.normal(size=(32, 2)), epochs=2, batch_size=8, verbose=0)
    assert probe.seen and all("bfloat16" in x and "bfloat16" in k for x, k in probe.seen)
    after = model.get_weights()
    assert all(w.dtype == np.float32 for w in after)  # master weights
    assert all(not np.array_equal(a, b) for a, b in zip(before[:2], after[:2]))
    lines = []
    model.summary(print_fn=lines.append)
    assert f"backend: {backend} (mixed_bfloat16)" in lines[0]
    assert all(np.isfinite(history.history["loss"]))


def test_bfloat16_training_follows_float32_training(backend):
    x = RNG.normal(size=(128, 20))
    y = np.eye(10)[np.argmax(x[:, :10], axis=1)]  # learnable: the largest of the first ten features
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        model = mlp()
        model.compile(optimizer="adam", loss="categorical_crossentropy", backend=backend, dtype_policy=policy)
        losses[policy] = model.fit(x, y, epochs=15, batch_size=32, verbose=0, shuffle=False).history["loss"]
    # the same descent, within bfloat16's forward tolerance, step by step
    np.testing.assert_allclose(losses["mixed_bfloat16"], losses["float32"], rtol=FORWARD_BF16.rtol)
    assert losses["mixed_bfloat16"][-1] < 0.7 * losses["mixed_bfloat16"][0]


def test_compiled_and_eager_bfloat16_steps_agree():
    pytest.importorskip("tensorflow")
    x, y = RNG.normal(size=(64, 12, 12, 1)), np.eye(10)[RNG.integers(0, 10, 64)]
    weights = {}
    for jit in (True, False):
        model = cnn()
        model.compile(optimizer="sgd", loss="categorical_crossentropy", backend="tensorflow",
                      dtype_policy="mixed_bfloat16", jit_compile=jit)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
        weights[jit] = model.get_weights()
    for compiled, eager in zip(weights[True], weights[False]):
        np.testing.assert_allclose(compiled, eager, rtol=FORWARD_BF16.rtol, atol=1e-3)


def tiny_gradient_model(backend, loss_scale):
    # Targets 1e-4 away from the outputs: float16 gradients of ~1e-8 underflow to 0 without scaling.
    model = unidl.Sequential([layers.Dense(1, input_shape=(4,), use_bias=False, kernel_initializer="zeros")], seed=0)
    model.compile(optimizer="sgd", loss="mse", backend=backend, dtype_policy="mixed_float16")
    model.dtype_policy.loss_scale = loss_scale
    return model


def test_loss_scaling_rescues_float16_gradients_that_underflow(backend):
    x, y = np.full((8, 4), 1e-4), np.full((8, 1), 1e-4)
    unscaled = tiny_gradient_model(backend, DynamicLossScale(initial_scale=1.0, growth_interval=10 ** 9))
    unscaled.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.all(unscaled.get_weights()[0] == 0.0)  # the gradient underflowed in float16
    scaled = tiny_gradient_model(backend, DynamicLossScale())
    scaled.fit(x, y, epochs=1, batch_size=8, verbose=0)
    kernel = scaled.get_weights()[0]
    # SGD(lr 0.01) on mse: w = -lr * dL/dw = lr * 2 * mean(x * (y - 0)) = 2e-10 per entry
    np.testing.assert_allclose(kernel, np.full((4, 1), 0.01 * 2 * 1e-4 * 1e-4), rtol=FORWARD_F16.rtol)


def test_overflowing_step_is_skipped_and_the_scale_halved(backend):
    model = tiny_gradient_model(backend, DynamicLossScale(initial_scale=2.0 ** 40))
    x, y = np.ones((8, 4)), np.full((8, 1), 100.0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    scale = model.dtype_policy.loss_scale
    assert scale.skipped_steps == 1 and scale.scale == 2.0 ** 39
    assert np.all(model.get_weights()[0] == 0.0)  # nothing was applied
    assert model.optimizer.iterations == 0        # and the step is not counted
    # the scale halves until the kernel's gradient (8 * 25 * scale) fits under float16's 65504
    model.fit(x, y, epochs=40, batch_size=8, verbose=0)
    assert scale.scale <= 256 and model.optimizer.iterations > 0
    assert np.all(np.isfinite(model.get_weights()[0])) and np.any(model.get_weights()[0] != 0.0)


def test_dynamic_loss_scale_grows_after_a_run_of_finite_steps():
    scale = DynamicLossScale(initial_scale=8.0, growth_interval=3)
    for _ in range(3):
        scale.update(True)
    assert scale.scale == 16.0
    scale.update(False)
    assert scale.scale == 8.0 and scale.good_steps == 0 and scale.skipped_steps == 1
    low = DynamicLossScale(initial_scale=1.0)
    low.update(False)
    assert low.scale == 1.0  # never below min_scale


def test_custom_training_loop_runs_the_model_under_its_policy(backend):
    model = mlp()
    model.compile(optimizer="sgd", loss="mse", backend=backend, dtype_policy="mixed_bfloat16")
    x = RNG.normal(size=(4, 20))
    with unidl.use_backend(model.backend):
        loss, grads = unidl.value_and_grad(lambda: unidl.ops.mean(model(unidl.ops.convert(x))), model)
    assert all("float32" in str(g.dtype) for g in grads) and "float32" in str(loss.dtype)
    out = model(x)
    assert "float32" in str(out.dtype)
    deviation = np.abs(model.backend.to_numpy(out) - reference_predict(mlp, x)).max()
    assert 1e-5 < deviation < FORWARD_BF16.atol  # computed in bfloat16, and right


def test_a_mixed_model_saves_float32_weights_that_load_anywhere(backend, tmp_path):
    model = cnn()
    model.compile(loss="mse", backend=backend, dtype_policy="mixed_bfloat16")
    path = tmp_path / "model.unidl"
    model.save(path)
    loaded = unidl.load_model(path)
    loaded.compile(loss="mse", backend="numpy")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_clear_errors():
    model = mlp()
    with pytest.raises(BackendError, match="'numpy' cannot compute in bfloat16.*backend='torch'"):
        model.compile(loss="mse", backend="numpy", dtype_policy="mixed_bfloat16")
    with pytest.raises(UnknownNameError, match="did you mean 'mixed_bfloat16'"):
        model.compile(loss="mse", backend="numpy", dtype_policy="mixed_bfloat")
    with pytest.raises(ValueError, match="float32 master weights.*dtype='float32'"):
        model.compile(loss="mse", backend="numpy", dtype="float64", dtype_policy="mixed_float16")
    assert model.backend is None  # nothing half-compiled


@pytest.mark.parametrize("policy", POLICIES)
def test_bench_runs_mixed_precision_cases_side_by_side(backend, policy):
    from unidl import bench
    cases = [case for case in bench.available_cases("mlp", policy) if case.endswith("/" + backend)]
    assert f"unidl/{backend}" in cases
    for case in cases:
        result = bench.run_case("mlp", case, steps=2, batch_size=8, repeats=1, device=None, policy=policy)
        assert result["case"] == case and len(result["ms_per_step"]) == 1 and result["ms_per_step"][0] > 0


def test_embedding_ids_stay_exact_above_bfloat16s_integer_range(backend):
    model = unidl.Sequential([layers.Embedding(1000, 4, input_shape=(3,))], seed=0)
    model.compile(loss="mse", backend=backend, dtype_policy="mixed_bfloat16")
    ids = np.array([[257, 259, 999]])  # bfloat16 holds 256 and 260 exactly, not 257 or 259
    table = model.get_weights()[0]
    np.testing.assert_allclose(model.predict(ids)[0], table[[257, 259, 999]], rtol=2.0 ** -8)


def test_cnn_digits_example_learns_as_well_in_bfloat16(backend):
    example = load_example("cnn_digits")
    full = example.main(backend, epochs=4, verbose=0)
    mixed = example.main(backend, epochs=4, verbose=0, dtype_policy="mixed_bfloat16")
    assert mixed["accuracy"] > 0.85 and abs(mixed["accuracy"] - full["accuracy"]) <= 0.02

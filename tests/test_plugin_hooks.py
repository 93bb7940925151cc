"""Plugins add building blocks by name, and a third-party backend passes the conformance kit.

A small plugin object (``NamedBlocks``) implements the building-block hooks
(layers, losses, optimizers, metrics, activations); the ``blocks`` fixture
registers it on the global registry, as a plugin found through an entry point
would be, and unregisters it in teardown. The last test runs a sample of the
kit on the example JAX backend in ``examples/plugins/unidl-jax`` when it is
installed (scripts/_venv.sh installs it).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import unidl
from unidl import hookimpl, layers, ops
from unidl.losses import Loss
from unidl.optimizers import SGD
from unidl.registry import REGISTRY
from unidl.tolerances import FORWARD_F32

PLUGIN = "test-named-blocks"
BACKEND = "numpy"
# The limit only catches a hung run of the kit on JAX (see the last test).
JAX_KIT_TIMEOUT_S = 600


# ---------------------------------------------------------------- the plugin's blocks


class Scale(layers.Layer):
    """y = x * s, one trainable scale per feature."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", (input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return ops.multiply(inputs, self.scale)


class DoubleMeanAbsoluteError(Loss):
    name = "double_mae"

    def call(self, y_true, y_pred):
        return ops.multiply(ops.mean(ops.abs(ops.subtract(y_pred, y_true)), axis=-1), 2.0)


class FixedRateSGD(SGD):
    def __init__(self, **kwargs):
        super().__init__(learning_rate=0.05, **kwargs)


def max_abs_error(y_true, y_pred):  # a metric is a per-sample function, averaged by unidl
    return ops.max(ops.abs(ops.subtract(y_pred, y_true)), axis=-1)


def shifted_relu(x):  # relu(x - 1)
    return ops.relu(ops.subtract(x, 1.0))


class NamedBlocks:
    """The plugin: one of each kind, registered by name."""

    @hookimpl
    def unidl_register_layers(self, register):
        register("Scale", Scale)

    @hookimpl
    def unidl_register_losses(self, register):
        register("my_loss", DoubleMeanAbsoluteError)

    @hookimpl
    def unidl_register_optimizers(self, register):
        register("my_opt", FixedRateSGD)

    @hookimpl
    def unidl_register_metrics(self, register):
        register("my_metric", max_abs_error)

    @hookimpl
    def unidl_register_activations(self, register):
        register("my_act", shifted_relu)


@pytest.fixture
def blocks():
    REGISTRY.register_plugin(NamedBlocks(), name=PLUGIN)
    yield
    REGISTRY.unregister_plugin(PLUGIN)


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((16, 4))
    return x, x.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- names resolve


def test_compile_and_fit_with_plugin_names(blocks):
    x, y = _data()
    model = unidl.Sequential([layers.Dense(3, activation="my_act", input_shape=(4,)), Scale(), layers.Dense(1)],
                             seed=0)
    model.compile(loss="my_loss", optimizer="my_opt", metrics=["my_metric"], backend=BACKEND)
    assert isinstance(model.optimizer, FixedRateSGD)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert set(history.history) >= {"loss", "my_metric"}

    loss, metric = model.evaluate(x, y, verbose=0)
    error = model.predict(x, verbose=0) - y
    np.testing.assert_allclose(loss, 2 * np.abs(error).mean(), rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)
    np.testing.assert_allclose(metric, np.abs(error).max(axis=-1).mean(), rtol=FORWARD_F32.rtol,
                               atol=FORWARD_F32.atol)


def test_activation_by_name_computes_the_plugin_function(blocks):
    x, _ = _data()
    model = unidl.Sequential([layers.Dense(3, activation="my_act", input_shape=(4,))], seed=0)
    model.compile(loss="mse", optimizer="sgd", backend=BACKEND)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x @ kernel + bias - 1.0, 0.0),
                               rtol=FORWARD_F32.rtol, atol=FORWARD_F32.atol)


def test_layer_class_by_name(blocks, tmp_path):
    cls, plugin = REGISTRY.named("layers")["Scale"]
    assert (cls, plugin) == (Scale, PLUGIN)
    # Loading a saved model finds the class the same way: by name, through the hook.
    x, y = _data()
    model = unidl.Sequential([Scale(input_shape=(4,)), layers.Dense(1)], seed=0)
    model.compile(loss="mse", optimizer="sgd", backend=BACKEND)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "scaled.unidl"
    model.save(path)
    loaded = unidl.saving.load_model(path)
    assert isinstance(loaded.layers[0], Scale)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("kind, bad, good", [
    ("loss", lambda: _compile(loss="no_such_loss"), "my_loss"),
    ("optimizer", lambda: _compile(optimizer="no_such_opt"), "my_opt"),
    ("metric", lambda: _compile(metrics=["no_such_metric"]), "my_metric"),
    ("activation", lambda: layers.Dense(3, activation="no_such_act"), "my_act"),
])
def test_unknown_name_lists_plugin_names_too(blocks, kind, bad, good):
    with pytest.raises(ValueError, match=f"unknown {kind} 'no_such_") as err:
        bad()
    assert good in str(err.value)


def _compile(loss="mse", optimizer="sgd", metrics=None):
    model = unidl.Sequential([layers.Dense(1, input_shape=(4,))], seed=0)
    model.compile(loss=loss, optimizer=optimizer, metrics=metrics, backend=BACKEND)
    x, y = _data()
    model.evaluate(x, y, verbose=0)  # metrics resolve when first used


def test_names_are_gone_after_unregistering():
    REGISTRY.register_plugin(NamedBlocks(), name=PLUGIN)
    assert "my_loss" in REGISTRY.named("losses")
    REGISTRY.unregister_plugin(PLUGIN)
    assert "my_loss" not in REGISTRY.named("losses")
    with pytest.raises(ValueError, match="unknown loss 'my_loss'"):
        _compile(loss="my_loss")


# ---------------------------------------------------------------- a third-party backend


# The project's suite runs a sample of the kit on the example plugin: float64 (the dtype that
# needs jax_enable_x64), and in every family that runs in float64 a few items, chosen to
# exercise the matmul, convolution, softmax, recurrent, optimizer and training code paths.
# ~45 s on one core, nearly all of it XLA compiling each op for each new shape (eager JAX).
JAX_KIT_DTYPE = "float64"
JAX_KIT_SAMPLE = "matmul or softmax or conv2d or Dense or GRU or adam or xor or error"
JAX_KIT_FAMILIES = ("op", "activation", "layer", "optimizer", "fused", "training", "compiled", "error")


@pytest.mark.skipif(importlib.util.find_spec("unidl_jax") is None or importlib.util.find_spec("jax") is None,
                    reason="the example JAX plugin is not installed (pip install -e examples/plugins/unidl-jax)")
def test_example_jax_plugin_passes_the_conformance_kit(tmp_path):
    """What a plugin author runs, in a fresh process: ``pytest --pyargs unidl.testing --unidl-backend=jax``,
    here on a sample (one dtype, a few items of every family) so that the suite stays fast.

    The full kit for the plugin, both dtypes and every case (~8 min of CPU), is the plugin's own
    CI job: ``pytest --pyargs unidl.testing --unidl-backend=jax -p no:cacheprovider``.
    """
    command = [sys.executable, "-m", "pytest", "--pyargs", "unidl.testing", "--unidl-backend=jax",
               f"--unidl-dtype={JAX_KIT_DTYPE}", "-k", JAX_KIT_SAMPLE, "-q", "-p", "no:cacheprovider"]
    try:
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=JAX_KIT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the kit on jax ran over {JAX_KIT_TIMEOUT_S} s:\n{exc.stdout or ''}")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-20000:]
    summary = out[out.index("unidl conformance summary"):]
    print(summary)  # shown with -s / -rA: the per-family counts and the jax backend's declarations
    row = next(line.split() for line in summary.splitlines() if line.startswith(f"jax-{JAX_KIT_DTYPE}"))
    assert int(row[1]) > 100 and row[2:4] == ["0", "0"], row  # passed, failed, excluded
    families = {line.split()[0] for line in summary.splitlines() if line.startswith("  ")}
    assert set(JAX_KIT_FAMILIES) <= families, f"the sample missed a family: {summary}"

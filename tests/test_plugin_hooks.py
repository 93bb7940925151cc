"""Plugins add building blocks by name, and a third-party backend passes the conformance kit.

A small plugin object (``NamedBlocks``) implements the building-block hooks
(layers, losses, optimizers, metrics, activations); the ``blocks`` fixture
registers it on the global registry, as a plugin found through an entry point
would be, and unregisters it in teardown. The last test runs the kit on the
example JAX backend in ``examples/plugins/unidl-jax`` when it is installed
(scripts/_venv.sh installs it).
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

PLUGIN = "test-named-blocks"
BACKEND = "numpy"
# The kit on JAX: ~2 min of CPU per dtype, nearly all of it XLA compiling each op for
# each new shape (eager JAX). The limit only catches a hung run.
JAX_KIT_TIMEOUT_S = 1800


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
    np.testing.assert_allclose(loss, 2 * np.abs(error).mean(), rtol=1e-6)
    np.testing.assert_allclose(metric, np.abs(error).max(axis=-1).mean(), rtol=1e-6)


def test_activation_by_name_computes_the_plugin_function(blocks):
    x, _ = _data()
    model = unidl.Sequential([layers.Dense(3, activation="my_act", input_shape=(4,))], seed=0)
    model.compile(loss="mse", optimizer="sgd", backend=BACKEND)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x @ kernel + bias - 1.0, 0.0), rtol=1e-6)


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


@pytest.mark.skipif(importlib.util.find_spec("unidl_jax") is None or importlib.util.find_spec("jax") is None,
                    reason="the example JAX plugin is not installed (pip install -e examples/plugins/unidl-jax)")
def test_example_jax_plugin_passes_the_conformance_kit(tmp_path):
    """What a plugin author runs, in fresh processes: ``pytest --pyargs unidl.testing --unidl-backend=jax``.

    One process per dtype, run side by side: the same checks as one run, in half the
    wall time where there are two cores.
    """
    runs = {dtype: subprocess.Popen([sys.executable, "-m", "pytest", "--pyargs", "unidl.testing",
                                     "--unidl-backend=jax", f"--unidl-dtype={dtype}", "-q", "-p", "no:cacheprovider"],
                                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for dtype in ("float32", "float64")}
    failed = []
    for dtype, run in runs.items():
        try:
            out, _ = run.communicate(timeout=JAX_KIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.kill()
            out, _ = run.communicate()
            out += f"\n(killed after {JAX_KIT_TIMEOUT_S} s)"
        summary = out[out.find("unidl conformance summary"):]
        print(summary)  # shown with -s / -rA: the per-family counts and the jax backend's declarations
        if run.returncode != 0 or f"jax-{dtype}" not in summary:
            failed.append(f"--- jax {dtype}: exit status {run.returncode}\n{out[-20000:]}")
    assert not failed, "\n".join(failed)

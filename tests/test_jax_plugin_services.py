"""The example JAX plugin's services, registered through the same hooks as the built-in backends'
(issue 14: third-party backends add bench baselines and export formats): ``native/jax`` in
``unidl bench`` and the ``"jax_export"`` format."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from unidl import bench, exporting
from unidl.registry import REGISTRY

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("unidl_jax") is None or importlib.util.find_spec("jax") is None,
    reason="the example JAX plugin is not installed (pip install -e examples/plugins/unidl-jax)")


def test_the_plugins_baseline_is_discovered_and_offered_for_its_models():
    info = REGISTRY.services("bench_baselines")["jax"]
    assert info.plugin == "jax" and {"mlp", "cnn"} <= set(info.options["models"])
    assert "native/jax" in bench.available_cases("mlp")
    assert "native/jax" not in bench.available_cases("lstm")  # it does not implement that one


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_tiny_bench_of_unidl_jax_against_native_jax(model):
    for case in ("unidl/jax", "native/jax"):
        result = bench.run_case(model, case, steps=2, batch_size=4, repeats=1, device=None)
        assert result["case"] == case and len(result["ms_per_step"]) == 1 and result["ms_per_step"][0] > 0


def test_native_jax_trains():
    """The hand-written step lowers the loss on a separable problem (the Adam and the gradient are right)."""
    import jax
    from unidl_jax import bench as jb
    rng = np.random.default_rng(0)
    x = rng.random((64, 784), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int32)
    params, state = jb.init_params("mlp"), None
    params = jax.tree_util.tree_map(jax.numpy.asarray, params)
    state = jb.adam_init(params)
    step = jax.jit(jb._train_step)
    losses = []
    for _ in range(30):
        params, state, loss = step(params, state, x, y)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


def test_native_jax_without_the_device_is_skipped():
    import jax
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("checks the skip on a machine without a GPU")
    result = bench.run_case("mlp", "native/jax", steps=1, batch_size=2, repeats=1, device="cuda")
    assert "no gpu device" in result["skipped"]


def test_jax_export_round_trip(tmp_path):
    from jax import export
    assert "jax_export" in exporting.formats()
    model = bench.unidl_model("cnn")
    model.compile(loss="mse", backend="numpy")  # exported through a copy compiled on jax
    path = tmp_path / "cnn.jax_export"
    model.export(path, format="jax_export")
    serving = export.deserialize(bytearray(path.read_bytes()))
    for batch in (1, 5):  # the batch axis is symbolic
        x, _ = bench.make_data("cnn", 1, batch)
        np.testing.assert_allclose(np.asarray(serving.call(x)), model.predict(x), rtol=1e-5, atol=1e-5)

"""``unidl bench``: the models, their native loops, device skips and ``--threads``; kept fast (a step or two).

Timings are not checked (a shared machine's are noise): what is checked is that every case runs, that
a case which cannot use the device asked for is skipped with its reason, and that the tables show it.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from unidl import bench
from unidl.registry import REGISTRY

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
needs_tf = pytest.mark.skipif(not HAS_TF, reason="tensorflow is not installed")
NEW_MODELS = ("wide", "conv1d", "transformer")


def tiny_case(model: str, case: str, device=None, policy=None) -> dict:
    return bench.run_case(model, case, steps=1, batch_size=2, repeats=1, device=device, policy=policy)


def assert_timed(result: dict, case: str) -> None:
    assert result["case"] == case and "skipped" not in result, result
    assert len(result["ms_per_step"]) == 1 and result["ms_per_step"][0] > 0


def cuda_available() -> bool:
    if not HAS_TORCH:
        return False
    import torch
    return torch.cuda.is_available()


# ----------------------------------------------------------------- the models


@pytest.mark.parametrize("model", bench.MODELS)
def test_every_model_has_data_a_description_and_defaults(model):
    x, y = bench.make_data(model, steps=2, batch_size=3)
    assert len(x) == len(y) == 6 and y.dtype == np.int64
    assert y.min() >= 0 and y.max() < bench.CLASSES.get(model, 10)
    assert x.dtype == (np.int64 if model == "transformer" else np.float32)
    assert model in bench.DESCRIPTIONS
    assert bench.default_steps(model, "cpu") <= bench.default_steps(model, "cuda")
    assert bench.default_batch_size(model) > 0


@pytest.mark.parametrize("model,outputs", [("conv1d", 2), ("transformer", 2)])
def test_keras_example_models_build_as_the_examples_do(model, outputs):
    net = bench.unidl_model(model)
    net.compile(loss="sparse_categorical_crossentropy", backend="numpy")
    x, _ = bench.make_data(model, 1, 2)
    probabilities = net.predict(x)
    assert probabilities.shape == (2, outputs)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)  # softmax outputs
    kinds = {type(layer).__name__ for layer in net.layers}
    expected = ({"Conv1D", "BatchNormalization", "ReLU", "GlobalAveragePooling1D"} if model == "conv1d"
                else {"TokenAndPositionEmbedding", "TransformerBlock", "GlobalAveragePooling1D"})
    assert expected <= kinds


@needs_torch
@pytest.mark.parametrize("model", NEW_MODELS)
@pytest.mark.parametrize("kind", ["unidl", "native"])
def test_new_models_run_on_torch(model, kind):
    assert_timed(tiny_case(model, f"{kind}/torch"), f"{kind}/torch")


@needs_tf
@pytest.mark.parametrize("model", NEW_MODELS)
def test_new_models_run_in_the_native_tensorflow_loop(model):
    assert_timed(tiny_case(model, "native/tensorflow"), "native/tensorflow")


def test_unidl_numpy_runs_the_conv1d_model():
    assert_timed(tiny_case("conv1d", "unidl/numpy"), "unidl/numpy")


def test_every_builtin_baseline_implements_every_model():
    baselines = REGISTRY.services("bench_baselines")
    for name in ("torch", "tensorflow", "torch-graph"):
        assert set(baselines[name].options["models"]) == set(bench.MODELS), name


# ---------------------------------------------------------------- devices


@needs_torch
@pytest.mark.skipif(cuda_available(), reason="checks the skip on a machine without CUDA")
def test_torch_graph_baseline_is_skipped_without_cuda():
    for device in (None, "cpu", "cuda"):
        result = tiny_case("mlp", "native/torch-graph", device=device)
        assert result["case"] == "native/torch-graph" and "cuda" in result["skipped"].lower(), result
    # asked to run anyway (the baseline itself): it refuses with the same one-line reason
    from unidl_torch.bench import run_native_torch_graph
    with pytest.raises(bench.DeviceUnavailable, match="needs --device cuda"):
        run_native_torch_graph("mlp", *bench.make_data("mlp", 1, 2), 2, 1, None)


def test_cases_that_cannot_use_the_device_are_skipped_with_their_reason():
    result = tiny_case("mlp", "unidl/numpy", device="cuda")
    assert "skipped" in result and "numpy" in result["skipped"] and "\n" not in result["skipped"]


@needs_torch
@pytest.mark.skipif(cuda_available(), reason="checks the skip on a machine without CUDA")
def test_torch_cases_without_cuda_are_skipped_too():
    result = tiny_case("mlp", "unidl/torch", device="cuda")
    assert "CUDA is not available" in result["skipped"]


def test_a_baseline_without_the_model_is_skipped():
    baselines = REGISTRY.services("bench_baselines")
    if "jax" not in baselines or "transformer" in baselines["jax"].options["models"]:
        pytest.skip("needs a baseline that lacks a model")
    assert "no transformer model" in tiny_case("transformer", "native/jax")["skipped"]


def test_the_table_lists_skipped_cases_and_thread_setting():
    table = bench.report("mlp", {"unidl/torch": [2.0, 3.0], "native/torch": [2.0]}, {}, 10, 128, "cuda",
                         threads=1, skipped={"unidl/numpy": "backend 'numpy' runs on 'cpu' only"})
    assert "threads 1" in table and "device cuda" in table
    assert "unidl/numpy          skipped: backend 'numpy' runs on 'cpu' only" in table
    assert "1.250" in table  # 2.5 / 2.0


@needs_torch
def test_main_runs_cases_round_robin_and_reports_skips(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--models", "mlp", "--cases", "unidl/numpy,native/torch,native/torch-graph", "--steps", "2",
                       "--batch-size", "8", "--repeats", "1", "--rounds", "1", "--threads", "1", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "threads 1" in table and "unidl/numpy" in table and "native/torch " in table
    if not cuda_available():
        assert "native/torch-graph   skipped: native/torch-graph runs on cuda only" in table
    raw = json.loads(out.read_text())
    assert len(raw["mlp"]["results"]["unidl/numpy"]) == 1


def test_a_failing_case_is_reported_and_the_others_still_run(capsys):
    code = bench.main(["--models", "mlp", "--cases", "unidl/numpy,native/no-such-loop", "--steps", "2",
                       "--batch-size", "8", "--repeats", "1", "--rounds", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "no native baseline 'no-such-loop'" in captured.err
    assert "unidl/numpy" in captured.out and "failed" in captured.out


# ---------------------------------------------------------------- threads


@needs_torch
def test_threads_cap_every_pool_before_and_after_the_framework_import():
    code = ("import os; from unidl.bench import _THREADS; _THREADS.before_import(1); import torch; "
            "_THREADS.after_import(); "
            "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['TF_NUM_INTRAOP_THREADS'], "
            "'xla_cpu_multi_thread_eigen=false' in os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1", "1", "True"]


def test_threads_must_be_positive():
    with pytest.raises(SystemExit):
        bench.main(["--threads", "0"])

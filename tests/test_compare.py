"""``unidl compare`` / ``unidl.compare``: one model on several backends, where the numbers differ.

Tolerances are the named constants of unidl.testing (CONVENTIONS.md). Runs are a
few steps long, and speed is measured only where a test is about it.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import cli, layers
from unidl.testing.tolerances import FORWARD_F32, FORWARD_F64, GRAD_F32

compare_mod = importlib.import_module("unidl.compare")  # `import unidl.compare as m` gives the same module

ROOT = Path(__file__).resolve().parent.parent
REGRESSION = str(ROOT / "examples" / "regression_mlp.py")
INSTALLED = [row["name"] for row in unidl.list_backends() if row["installed"]]
BUILTINS = [b for b in ("numpy", "torch", "tensorflow") if b in INSTALLED]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


# ------------------------------------------------------- a deliberately wrong backend

def _wrong_relu_backend(dtype="float32", device=None):
    from unidl_numpy import tape as ad
    from unidl_numpy.backend import NumpyBackend

    class WrongReluBackend(NumpyBackend):
        """The NumPy backend with a leaky relu: every relu layer's output is off for x < 0."""
        name = "wrong_relu"

        def relu(self, x):
            return ad.maximum(x, ad.multiply(x, 0.1))

    return WrongReluBackend(dtype=dtype, device=device)


class _WrongReluPlugin:
    @unidl.hookimpl
    def unidl_register_backends(self, register):
        register("wrong_relu", _wrong_relu_backend, framework="numpy", description="test: a wrong relu")


@pytest.fixture
def wrong_relu():
    unidl.registry.REGISTRY.register_plugin(_WrongReluPlugin(), name="test-wrong-relu")
    try:
        yield "wrong_relu"
    finally:
        unidl.registry.REGISTRY.unregister_plugin("test-wrong-relu")


# ----------------------------------------------------------------- the regression example

@pytest.fixture(scope="module")
def regression_report():
    return unidl.compare(REGRESSION, backends=BUILTINS, steps=3, speed=False)


def test_regression_example_agrees_layer_by_layer(regression_report):
    report = regression_report
    assert [b.label for b in report.backends] == ["numpy/float64", *(f"{b}/float32" for b in BUILTINS)]
    assert report.reference_report.is_reference and report.reference_report.forward is None
    for b in report.compared:
        assert b.error is None, b.error
        assert b.forward_scope == "per layer"
        assert [d.name for d in b.forward] == ["dense", "dense_1"]
        assert [d.shape for d in b.forward] == [(32, 10), (32, 1)]
        for d in b.forward:
            assert d.tolerance == FORWARD_F32.name and d.ok, (b.label, d)
            assert d.max_abs <= FORWARD_F32.atol + FORWARD_F32.rtol * 10  # activations here are O(1)..O(10)
        assert b.first_diverging_layer is None
        assert [d.name for d in b.gradients] == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
        assert all(d.ok and d.tolerance == GRAD_F32.name for d in b.gradients)
        assert len(b.loss_curve) == 3 and b.loss_curve_diff.ok
        assert set(b.metric_curves) == {"mae"}
        assert [d.name for d in b.final_weights] == [d.name for d in b.gradients]
        assert all(d.ok for d in b.final_weights)
    assert report.passed() and report.passed(1e-4) and report.failures() == []
    assert not report.passed(0.0)  # float32 vs float64 is never bit-exact


def test_the_report_renders_as_plain_text(regression_report):
    text = regression_report.table()
    for needle in ("Forward: per layer outputs", "Gradients", "Training: 3 steps", "dense/kernel",
                   "FORWARD_F32", "PASSED"):
        assert needle in text
    assert "Speed and memory" not in text  # speed=False


def test_float64_everywhere_is_near_exact():
    others = [b for b in BUILTINS if b != "tensorflow"]  # keep it quick: TF's run is in the fixture
    report = unidl.compare(REGRESSION, backends=others, dtype="float64", steps=2, speed=False)
    assert report.tolerances["forward"].startswith(FORWARD_F64.name)
    assert report.passed(), report.failures()
    numpy_run = next(b for b in report.compared if b.backend == "numpy")
    assert all(d.max_abs == 0.0 for d in numpy_run.forward)  # the very same computation


# ----------------------------------------------------------------- a wrong backend is caught

def test_a_wrong_relu_is_caught_at_the_first_relu_layer(wrong_relu):
    report = unidl.compare(REGRESSION, backends=["numpy", wrong_relu], steps=2, speed=False)
    good, bad = report.compared
    assert good.first_diverging_layer is None and not good.failures()
    assert bad.first_diverging_layer == "dense"  # Dense(10, activation="relu")
    assert bad.first_divergence(1e-3) == "dense"
    assert not bad.forward[0].ok and bad.forward[0].mismatched > 0
    assert not report.passed() and not report.passed(1e-2)
    assert any("wrong_relu/float32: forward 'dense'" in line for line in report.failures())
    text = report.table()
    assert "wrong_relu/float32: first diverging layer: dense" in text and "FAILED" in text


def test_fail_above_sets_the_exit_status(wrong_relu, capsys):
    base = ["compare", REGRESSION, "--steps", "2", "--no-speed", "--quiet"]
    assert cli.main([*base, "--backends", f"numpy,{wrong_relu}", "--fail-above", "1e-3"]) == 1
    assert cli.main([*base, "--backends", f"numpy,{wrong_relu}", "--fail-above", "auto"]) == 1
    assert cli.main([*base, "--backends", f"numpy,{wrong_relu}"]) == 0  # without --fail-above: report only
    assert cli.main([*base, "--backends", "numpy", "--fail-above", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert "first diverging layer: dense" in out


def test_a_backend_that_fails_is_reported_and_fails_the_check(capsys):
    report = unidl.compare(REGRESSION, backends=["numpy", "no_such_backend"], steps=1, speed=False)
    broken = report.compared[1]
    assert broken.error and "no_such_backend" in broken.error
    assert not report.passed()
    assert report.compared[0].error is None


# ----------------------------------------------------------------- JSON

JSON_KEYS = {"unidl_version", "model", "reference", "reference_dtype", "dtype", "batch_size", "probe_size",
             "steps", "epochs", "seed", "tolerances", "backends", "notes", "passed", "failures"}
BACKEND_KEYS = {"backend", "dtype", "device", "label", "framework_version", "is_reference", "error",
                "forward_scope", "forward", "first_diverging_layer", "loss", "loss_diff", "gradients",
                "loss_curve", "metric_curves", "loss_curve_diff", "metric_max_abs", "final_weights", "speed"}
DIFF_KEYS = {"name", "shape", "max_abs", "max_rel", "err", "ok", "tolerance", "mismatched", "size", "note"}


def test_json_output_parses_and_has_the_documented_keys(capsys):
    status = cli.main(["compare", "xor", "--backends", "numpy", "--steps", "2", "--no-speed", "--json", "--quiet",
                       "--fail-above", "1e-4"])
    assert status == 0
    out = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(out) and out["passed"] is True and out["failures"] == []
    assert out["fail_above"] == 1e-4 and out["passed_fail_above"] is True
    ref, numpy32 = out["backends"]
    assert set(ref) == BACKEND_KEYS == set(numpy32)
    assert ref["is_reference"] and ref["forward"] is None and ref["label"] == "numpy/float64"
    assert numpy32["label"] == "numpy/float32" and numpy32["first_diverging_layer"] is None
    assert set(numpy32["forward"][0]) == DIFF_KEYS and numpy32["forward"][0]["name"] == "dense"
    assert len(numpy32["loss_curve"]) == 2 and set(numpy32["metric_curves"]) == {"accuracy"}
    assert set(out["tolerances"]) == {"forward", "grad", "trajectory", "weights"}


# ----------------------------------------------------------------- the command line, end to end

@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed (pip install 'unidl[compare]')")
def test_cli_end_to_end_in_a_subprocess_writes_the_plot(tmp_path):
    backends = ",".join(b for b in ("numpy", "torch") if b in INSTALLED)
    png = tmp_path / "curves.png"
    proc = subprocess.run(
        [sys.executable, "-m", "unidl", "compare", "examples/xor.py", "--backends", backends, "--steps", "3",
         "--repeats", "1", "--timing-steps", "4", "--plot", str(png), "--fail-above", "1e-4"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = proc.stdout
    assert "Forward: per layer outputs" in out and "Speed and memory" in out and "PASSED" in out
    assert "own subprocess" in out  # each backend timed in its own process
    for name in backends.split(","):
        assert f"{name}/float32" in out


def test_plot_without_matplotlib_says_how_to_install(regression_report, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        regression_report.plot(tmp_path / "x.png")
    monkeypatch.setattr(compare_mod, "matplotlib_available", lambda: False)
    assert cli.main(["compare", "xor", "--no-speed", "--plot", str(tmp_path / "x.png")]) == 2
    assert "unidl[compare]" in capsys.readouterr().err


def test_tables_fall_back_to_plain_text_without_rich(regression_report, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)
    regression_report.print(plain=False)
    out = capsys.readouterr().out
    assert "layer" in out and "PASSED" in out and "┃" not in out


def test_rich_tables_when_rich_is_installed(regression_report, capsys):
    pytest.importorskip("rich")
    regression_report.print(plain=False)
    out = capsys.readouterr().out
    assert "dense/kernel" in out and "PASSED" in out and "━" in out


def test_bad_specs_are_usage_errors(capsys):
    assert cli.main(["compare", "no/such/file.py", "--no-speed"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli.main(["compare", "examples/xor.py:nope", "--no-speed"]) == 2
    assert "no model factory function 'nope'" in capsys.readouterr().err
    assert cli.main(["compare", "xor", "--no-speed", "--fail-above", "lots"]) == 2


# ----------------------------------------------------------------- sources, layer outputs, in-process speed

@pytest.mark.parametrize("name", ["regression_mlp", "xor", "deep_regression", "binary_classifier"])
def test_examples_expose_their_factories(name):
    source = compare_mod.load_source(name)
    model = source.build()
    assert isinstance(model, unidl.Model) and model.backend is None and model.built
    x, y = compare_mod._split_data(source.data())
    assert len(x) == len(y)
    assert source.compile_kwargs()["loss"]
    assert source.spec.endswith(f"{name}.py:build_model")


def _data(n=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def test_layer_outputs_walk_functional_graphs_and_name_shared_layers():
    inputs = layers.Input((3,))
    shared = layers.Dense(3, activation="tanh", name="shared")
    h = shared(shared(inputs))
    outputs = layers.Dense(2, name="head")(h)
    model = unidl.Model(inputs, outputs, seed=0)
    model.compile(loss="mse", backend="numpy", dtype="float64")
    x, _ = _data()
    outs, scope = compare_mod.layer_outputs(model, x)
    assert scope == "per layer"
    assert [name for name, _ in outs] == ["shared", "shared#2", "head"]
    np.testing.assert_allclose(outs[-1][1], model.predict(x), rtol=FORWARD_F64.rtol, atol=FORWARD_F64.atol)


class TwoDense(unidl.Model):
    def __init__(self):
        super().__init__(seed=0)
        self.hidden = layers.Dense(4, activation="relu")
        self.out = layers.Dense(2)

    def call(self, inputs, training=False):
        return self.out(self.hidden(inputs))


def test_a_subclassed_model_is_compared_on_its_output_only_and_timed_in_process():
    x, y = _data()
    model = TwoDense()
    report = unidl.compare(model, (x, y), backends=["numpy"], compile={"optimizer": "sgd", "loss": "mse"},
                           steps=2, batch_size=4, repeats=1, timing_steps=2)
    run = report.compared[0]
    assert run.forward_scope.startswith("final output only")
    assert [d.name for d in run.forward] == ["two_dense (output)"]
    assert len(run.loss_curve) == 2 and report.passed()
    assert run.speed.error is None and run.speed.ms_per_step > 0
    assert "tracemalloc" in run.speed.memory_method and "in-process" in run.speed.timing
    assert any("in this process" in note for note in report.notes)


def test_compare_needs_a_loss():
    x, y = _data()
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    with pytest.raises(compare_mod.CompareError, match="no loss"):
        unidl.compare(model, (x, y), backends=["numpy"], speed=False)


def test_epochs_train_whole_epochs_on_the_same_batches():
    x, y = _data(10)
    model = unidl.Sequential([layers.Dense(2, input_shape=(3,))], seed=0)
    report = unidl.compare(model, (x, y), backends=["numpy"], compile={"loss": "mse", "optimizer": "adam"},
                           epochs=2, batch_size=4, speed=False)
    assert report.steps == 6 and len(report.compared[0].loss_curve) == 6  # 3 batches per epoch
    assert report.passed()

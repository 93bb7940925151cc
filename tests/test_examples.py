"""Every tutorial example runs on every backend and reaches the same numbers.

Each example runs for a few epochs/steps from the same seed on each installed
backend; the results must agree with the NumPy backend (float32 trajectory
tolerance for losses, one test sample for accuracies).
"""
from __future__ import annotations

import numpy as np
import pytest

import unidl
from unidl.testing.tolerances import TRAJECTORY_F32

from .test_training import load_example

pytest.importorskip("sklearn", reason="the tutorial examples use scikit-learn's bundled data sets")

BACKENDS = [row["name"] for row in unidl.list_backends() if row["installed"] and row["name"] in
            ("numpy", "torch", "tensorflow")]

# example -> (keyword arguments for a short run, {result key: kind of comparison})
CASES = {
    "cnn_digits": ({"epochs": 2, "verbose": 0}, {"loss": "loss", "accuracy": "accuracy"}),
    "cnn_digits_sparse": ({"epochs": 2, "verbose": 0}, {"loss": "loss", "accuracy": "accuracy"}),
    "breast_cancer": ({"epochs": 5}, {"loss": "loss", "accuracy": "accuracy"}),
    "transfer_learning": ({"epochs": 2}, {"transfer_accuracy": "accuracy", "scratch_accuracy": "accuracy"}),
    "adversarial_fgsm": ({"epochs": 2, "epsilons": (0.1,)}, {0.0: "accuracy", 0.1: "accuracy"}),
    "gan_2d": ({"steps": 30, "verbose": 0}, {"radius_mean": "loss", "radius_std": "loss"}),
}


def check_close(kind: str, got: float, want: float, test_size: int, label: str) -> None:
    if kind == "accuracy":  # a float32 rounding may flip one borderline sample
        assert abs(got - want) <= 1.5 / test_size, f"{label}: {got} vs {want}"
    else:
        np.testing.assert_allclose(got, want, rtol=TRAJECTORY_F32.rtol, atol=TRAJECTORY_F32.atol, err_msg=label)


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_agrees_across_backends(name):
    module = load_example(name)
    kwargs, keys = CASES[name]
    results = {backend: module.main(backend, **kwargs) for backend in BACKENDS}
    for backend in BACKENDS[1:]:
        for key, kind in keys.items():
            check_close(kind, results[backend][key], results["numpy"][key], 360, f"{name}[{key}] on {backend}")


def test_overfitting_example_shows_the_gap_and_agrees():
    module = load_example("overfitting")
    results = {backend: module.main(backend, epochs=3) for backend in BACKENDS}
    for backend in BACKENDS[1:]:
        for variant in module.VARIANTS:
            check_close("accuracy", results[backend][variant]["val_accuracy"],
                        results["numpy"][variant]["val_accuracy"], 1497, f"{variant} on {backend}")


def test_saliency_writes_a_png(tmp_path):
    module = load_example("saliency")
    out = tmp_path / "saliency.png"
    result = module.main("numpy", epochs=1, out=str(out), count=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["maps"].shape == (3, 8, 8) and np.all(result["maps"] >= 0) and result["maps"].max() > 0


def test_char_rnn_custom_layer_and_lstm_agree():
    module = load_example("char_rnn")
    results = {backend: module.main(backend, epochs=1, max_samples=192) for backend in BACKENDS}
    for backend in BACKENDS[1:]:
        for kind in ("rnn", "lstm"):
            check_close("loss", results[backend][kind]["loss"], results["numpy"][kind]["loss"], 0,
                        f"char_rnn {kind} on {backend}")

"""Every Keras-style script of this folder runs after ``import unidl as keras`` on numpy, torch and
tensorflow, and gives the same numbers on each (same seed, same initial weights, same batches)."""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest

import unidl

SCRIPTS = ["convnet_classifier", "imbalanced_mlp", "timeseries_conv1d", "denoising_autoencoder",
           "bidirectional_lstm", "transformer_classifier", "vae", "dcgan", "custom_loop", "callbacks_guide",
           "preprocessing_adapt"]
BACKENDS = ["numpy", "torch", "tensorflow"]
# float32 on three frameworks, a few epochs: sums in another order move the last digits (the named
# float32 trajectory tolerance of unidl.tolerances, TRAJECTORY_F32).
from unidl.tolerances import TRAJECTORY_F32  # noqa: E402

_RESULTS: dict[tuple[str, str], dict] = {}


def run(script: str, backend: str) -> dict:
    if (script, backend) not in _RESULTS:
        if importlib.util.find_spec(backend) is None:
            pytest.skip(f"{backend} is not installed")
        module = importlib.import_module(f"tests.keras_compat.{script}")
        previous = unidl.config.backend()
        unidl.config.set_backend(backend)
        unidl.utils.set_random_seed(0)  # models built without a seed: the same weights on every backend
        try:
            _RESULTS[(script, backend)] = module.main(unidl)
        finally:
            unidl.config.set_backend(previous)
    return _RESULTS[(script, backend)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_and_matches_numpy(script, backend):
    result = run(script, backend)
    assert result and all(len(v) for v in result.values())
    reference = run(script, "numpy")
    for key, values in reference.items():
        if key == "calls":
            assert result[key] == values
            continue
        np.testing.assert_allclose(np.asarray(result[key], dtype=float), np.asarray(values, dtype=float),
                                   rtol=TRAJECTORY_F32.rtol, atol=TRAJECTORY_F32.rtol / 100, err_msg=key)

"""Test configuration shared by unidl's own suite."""
from __future__ import annotations

import os
import sys

import pytest

from unidl.testing.plugin import set_default_backends

# The built-in backends the conformance kit runs on (tests/test_conformance.py).
# One whose framework is not installed is left out and named in the kit's
# summary. A new built-in backend adds its name here and nothing else.
# --unidl-backend / $UNIDL_TEST_BACKENDS still choose others on the command line.
BUILTIN_BACKENDS = ("numpy", "torch", "tensorflow")


def pytest_configure(config: pytest.Config) -> None:
    set_default_backends(config, BUILTIN_BACKENDS)


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on TensorFlow in float64: the oracle for optimizers and schedules (skips without it)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip(f"keras was already imported with the {keras.backend.backend()!r} backend")
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")  # learning rates, slots and schedules computed in float64, like unidl's
    yield keras
    keras.config.set_floatx(floatx)

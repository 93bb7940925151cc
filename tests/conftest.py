"""Test configuration shared by unidl's own suite."""
from __future__ import annotations

import pytest

from unidl.testing.plugin import set_default_backends

# The built-in backends the conformance kit runs on (tests/test_conformance.py).
# One whose framework is not installed is left out and named in the kit's
# summary. A new built-in backend adds its name here and nothing else.
# --unidl-backend / $UNIDL_TEST_BACKENDS still choose others on the command line.
BUILTIN_BACKENDS = ("numpy", "torch", "tensorflow")


def pytest_configure(config: pytest.Config) -> None:
    set_default_backends(config, BUILTIN_BACKENDS)

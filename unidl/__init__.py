"""unidl: describe a neural network once, run it on any deep-learning framework.

    import unidl
    from unidl import layers
    model = unidl.Sequential([layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=0)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"], backend="torch")
    model.fit(x, y, epochs=100)

Importing unidl imports no framework: a backend imports its own when a model
is first compiled on it.
"""
from __future__ import annotations

from .version import __version__  # noqa: F401  (unidl.__version__)

from . import (activations, callbacks, config, distributed, initializers, layers, losses, metrics, models, ops, optimizers,
               random, regularizers, saving, schedules, utils)
from .autodiff import GradientTape, function, grad, value_and_grad
from .backend import Backend, BackendError
from .data import DataError
from .hookspecs import hookimpl
from .layers import Input
from .files import SavingError, WeightsFileError
from .models import Model, NotCompiledError, Sequential
from .ops import use_backend
from .registry import BackendUnavailableError, UnknownBackendError, get_backend, list_backends
from .saving import WeightsMismatchError, load_model
from .serialization import UnknownObjectError
from .variables import Variable

__all__ = [
    "Backend", "BackendError", "BackendUnavailableError", "DataError", "Model", "NotCompiledError",
    "SavingError", "WeightsFileError", "WeightsMismatchError", "UnknownObjectError",
    "Input", "Sequential", "UnknownBackendError", "Variable", "activations", "callbacks", "compare", "config", "distributed",
    "get_backend",
    "grad", "hookimpl", "initializers", "layers", "list_backends", "load_model", "losses", "metrics", "ops",
    "optimizers", "regularizers", "saving", "schedules", "use_backend", "value_and_grad", "function", "models",
    "utils", "random", "GradientTape",
]

def __getattr__(name: str):
    # ``unidl.compare`` (a module you can call: ``unidl.compare(model, backends=[...])``) loads on
    # first use, so ``import unidl`` does not pay for it.
    if name == "compare":
        import importlib
        return importlib.import_module(".compare", __name__)
    raise AttributeError(f"module 'unidl' has no attribute {name!r}")

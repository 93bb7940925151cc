"""unidl: describe a neural network once, run it on any deep-learning framework."""
from __future__ import annotations

__version__ = "0.1.0"

from . import ops
from .backend import Backend, BackendError
from .hookspecs import hookimpl
from .ops import use_backend
from .registry import (BackendUnavailableError, UnknownBackendError, get_backend,
                       list_backends)
from .variables import Variable

"""``unidl.config``: the default backend name and float dtype, as ``keras.config`` has them.

There is still no global backend. These are *defaults* for the places where
nothing else says which backend to use:

* ``unidl.ops`` called with no backend bound (a script, a loss function, data
  preparation: ``unidl.ops.softmax(np.array(...))``) runs on the default backend;
* ``compile()`` without ``backend=`` (the caller reads :func:`backend`).

A model stays bound to the backend it was compiled on, and ``with
unidl.use_backend(...)`` still binds another for its block; several backends
run side by side as before. Choosing a default imports nothing: the framework
is imported when the first op runs on it.

The default name comes from, in order: :func:`set_backend`, the environment
variable ``UNIDL_BACKEND`` (like ``KERAS_BACKEND``; read the first time it is
needed), then ``"numpy"``. The default float dtype is :func:`floatx`
(``"float32"``, or ``UNIDL_FLOATX``), as ``keras.config.floatx``. unidl's
default backend is one instance per (name, float dtype), built on first use.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a leaf at import time: the registry is imported when an instance is built
    from .backend import Backend

__all__ = ["backend", "set_backend", "floatx", "set_floatx", "epsilon", "set_epsilon", "default_backend",
           "ENV_BACKEND", "ENV_FLOATX", "DEFAULT_BACKEND"]

ENV_BACKEND = "UNIDL_BACKEND"
ENV_FLOATX = "UNIDL_FLOATX"
DEFAULT_BACKEND = "numpy"
FLOATX_CHOICES = ("float32", "float64")  # the compute dtypes every backend offers (half ones: mixed precision)

_lock = threading.Lock()
_chosen_backend: str | None = None      # set_backend's choice
_chosen_floatx: str | None = None       # set_floatx's choice
_environment: dict[str, str] | None = None  # UNIDL_BACKEND / UNIDL_FLOATX, read once, when first needed
_epsilon = 1e-7
_instances: dict[tuple[str, str], "Backend"] = {}
_default: "Backend | None" = None       # the instance for the current (backend(), floatx()); None: not built yet


def _env(key: str) -> str | None:
    global _environment
    if _environment is None:
        _environment = {k: v.strip() for k in (ENV_BACKEND, ENV_FLOATX) if (v := os.environ.get(k, "").strip())}
    return _environment.get(key)


def backend() -> str:
    """The default backend's name: ``set_backend``'s, else ``UNIDL_BACKEND``, else ``"numpy"``."""
    return _chosen_backend or _env(ENV_BACKEND) or DEFAULT_BACKEND


def set_backend(name: str | None) -> None:
    """Make ``name`` the default backend (None: back to ``UNIDL_BACKEND`` or ``"numpy"``).

    Only the name is checked (an unknown one raises ``UnknownBackendError`` listing the
    installed backends); no framework is imported. Models already compiled keep their
    backend, and ``use_backend`` blocks keep theirs: this changes only where ops run
    when nothing is bound, and what ``compile()`` picks without ``backend=``.
    """
    global _chosen_backend, _default
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"set_backend takes a backend name (a str), got {name!r}; to run ops on a backend "
                            "instance, use `with unidl.use_backend(backend):`")
        from .registry import REGISTRY
        REGISTRY.backend_info(name)  # UnknownBackendError for a name no plugin registers
    with _lock:
        _chosen_backend, _default = name, None


def floatx() -> str:
    """The default float dtype: ``set_floatx``'s, else ``UNIDL_FLOATX``, else ``"float32"``."""
    return _chosen_floatx or _env(ENV_FLOATX) or "float32"


def set_floatx(dtype: str | None) -> None:
    """Make ``dtype`` ("float32" or "float64") the default float dtype (None: back to the default).

    It is the compute dtype of the default backend (so of floats that ops make from
    NumPy arrays and Python lists when nothing is bound). For half precision, compile
    with ``dtype_policy="mixed_float16"`` or ``"mixed_bfloat16"``.
    """
    global _chosen_floatx, _default
    if dtype is not None and dtype not in FLOATX_CHOICES:
        raise ValueError(f"set_floatx: unknown float dtype {dtype!r}; choose one of {list(FLOATX_CHOICES)} "
                         "(half precision is a compile option: dtype_policy='mixed_float16' or 'mixed_bfloat16')")
    with _lock:
        _chosen_floatx, _default = dtype, None


def epsilon() -> float:
    """The fuzz factor of probability losses and ops (``keras.config.epsilon``), 1e-7 by default."""
    return _epsilon


def set_epsilon(value: float) -> None:
    """Set the fuzz factor :func:`epsilon` returns."""
    global _epsilon
    _epsilon = float(value)


def default_backend() -> "Backend":
    """The default backend's instance (one per name and float dtype, built on first use).

    This is where its framework is imported. ``unidl.ops`` calls it when no backend is bound.
    """
    backend = _default
    return backend if backend is not None else _build_default()


def _build_default() -> "Backend":
    global _default
    name, dtype = backend(), floatx()
    with _lock:
        instance = _instances.get((name, dtype))
        if instance is None:
            from .registry import get_backend
            try:
                instance = get_backend(name, dtype=dtype)
            except Exception as exc:
                source = ("set_backend" if _chosen_backend else f"${ENV_BACKEND}" if _env(ENV_BACKEND)
                          else "unidl's default")
                exc.add_note(f"unidl: no backend is bound here, so this ran on the default backend {name!r} "
                             f"(from {source}); bind one with `with unidl.use_backend(...)` or choose another "
                             f"default with unidl.config.set_backend(...) or {ENV_BACKEND}")
                raise
            _instances[(name, dtype)] = instance
        if (name, dtype) == (backend(), floatx()):  # not changed meanwhile by another thread
            _default = instance
    return instance

"""``unidl.ops``: the backend-neutral tensor ops layer code is written with.

Every function here forwards to the backend bound in the current context.
A compiled model binds its own backend while it runs; code calling ops by
hand binds one explicitly::

    with unidl.use_backend("torch"):
        y = unidl.ops.softmax(unidl.ops.convert(x))

The binding lives in a ``contextvars.ContextVar``: there is no process-wide
backend, so models on different backends run side by side, in threads too.
Each op costs one context lookup and one attribute lookup on the backend.
``unidl.Variable`` arguments are unwrapped to the backend tensor they hold.

The contract of each op is in ``unidl.backend.PRIMITIVES`` (what every backend
implements) or ``unidl.backend.DERIVED`` (ops ``Backend`` builds from those);
composites are documented on ``unidl.backend.Backend``.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

from .backend import COMPOSITES, DERIVED, PRIMITIVES, Backend
from .registry import get_backend
from .variables import Variable

_current: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("unidl_backend", default=None)


class NoBackendError(RuntimeError):
    """An op was called with no backend bound to the current context."""


def current_backend() -> Backend:
    """The backend bound to the current context; raises when none is."""
    backend = _current.get()
    if backend is None:
        raise NoBackendError(
            "no backend is bound: unidl.ops run inside a compiled model, or inside "
            "`with unidl.use_backend(\"numpy\"):`")
    return backend


def current_backend_or_none() -> Backend | None:
    """The backend bound to the current context, or None."""
    return _current.get()


@contextlib.contextmanager
def use_backend(backend: "Backend | str", **options) -> Iterator[Backend]:
    """Bind ``backend`` (an instance or a registered name) for ops in this context."""
    if isinstance(backend, str):
        backend = get_backend(backend, **options)
    token = _current.set(backend)
    try:
        yield backend
    finally:
        _current.reset(token)


def _unwrap(x, backend: Backend | None = None):
    # A unidl.Variable holds its backend tensor in ``.value``; everything else passes through.
    # A mixed-precision compute twin reads float32 master weights in its half dtype.
    if type(x) is not Variable:
        return x
    if backend is not None and backend.autocast:
        return backend.cast(x.value, backend.dtype)
    return x.value


def _make_op(name: str, doc: str):
    def op(*args, **kwargs):
        backend = _current.get()
        if backend is None:
            current_backend()
        for a in args:  # rebuild the argument list only when a Variable is among them
            if type(a) is Variable:
                args = [_unwrap(x, backend) for x in args]
                break
        return getattr(backend, name)(*args, **kwargs)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


for _name, _doc in {**PRIMITIVES, **DERIVED}.items():
    globals()[_name] = _make_op(_name, _doc)
for _name in COMPOSITES:
    globals()[_name] = _make_op(_name, getattr(Backend, _name).__doc__ or f"{_name}: see unidl.backend.Backend.{_name}")


def concatenate(xs, axis: int = -1):
    """concatenate(xs, axis=-1): join a sequence of tensors (Variables allowed)."""
    backend = current_backend()
    return backend.concatenate([_unwrap(x, backend) for x in xs], axis=axis)


__all__ = ["current_backend", "current_backend_or_none", "use_backend", "NoBackendError", *PRIMITIVES, *DERIVED,
           *COMPOSITES]

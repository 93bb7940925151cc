"""Which ops a check used: the kit notes the name of every op called on the backend under test.

The summary uses these names to file a failure under the failing op that
caused it (see :mod:`unidl.testing.rootcause`): when ``exp`` is wrong, the
softmax, elu and Dense checks that called it fail too, and are listed as
"caused by op exp" instead of as independent failures.

:func:`instrument` puts a thin wrapper in the backend instance's ``__dict__``
for each op of ``unidl.ops`` (``unidl.backend.iter_ops``). An instance
attribute is what ``unidl.ops`` and the backend's own composites (``self.exp``
inside ``softmax``) find first, so both are seen; the class is left alone, so
``type(backend).compile_step is Backend.compile_step`` tests still hold. A
call costs one extra Python call and a ``set.add``: the kit only instruments
the backends it builds for its own checks.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from unidl.backend import BackendError, iter_ops

__all__ = ["instrument", "take", "missing_ops_in"]

_USED = "_unidl_kit_ops_used"  # instance attribute holding the set of op names called
# How Backend reports an op it lacks (Backend._missing): "backend 'x' does not implement 'erf'".
_MISSING = re.compile(r"does not implement '(\w+)'")


def instrument(backend: Any) -> bool:
    """Make ``backend`` note every op called on it; False when it cannot be (no instance ``__dict__``).

    Idempotent. Compute twins (mixed precision) the backend makes later share its record.
    """
    try:
        state = vars(backend)
    except TypeError:  # __slots__: nothing to hang the wrappers on, so nothing is recorded
        return False
    if _USED in state:
        return True
    _wrap_ops(backend, state, set())
    return True


def take(backend: Any) -> frozenset[str]:
    """The names of the ops called on ``backend`` since the last ``take`` (empty if not instrumented)."""
    used = getattr(backend, "__dict__", {}).get(_USED)
    if used is None:
        return frozenset()
    names = frozenset(used)
    used.clear()
    return names


def missing_ops_in(exc: BaseException | None) -> frozenset[str]:
    """The ops that ``exc`` (or an exception it was raised from) says the backend does not implement.

    A missing op is never called, so no wrapper notes it; this lets a check that
    failed for want of ``erf`` count as having used ``erf`` all the same.
    """
    names: set[str] = set()
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BackendError):
            names.update(_MISSING.findall(str(exc)))
        names.update(getattr(exc, "missing_ops", ()))  # the kit's own contract check lists them
        exc = exc.__cause__ or exc.__context__
    return frozenset(names) & frozenset(iter_ops())


def _wrap_ops(backend: Any, state: dict, used: set[str]) -> None:
    for name in iter_ops():
        try:
            op = getattr(backend, name)
        except (BackendError, AttributeError):  # a missing op: the kit's contract check reports it
            continue
        if callable(op):
            state[name] = _recording(name, op, used)
    twin = getattr(backend, "compute_twin", None)
    if callable(twin):
        state["compute_twin"] = _instrumenting_twins(twin, used)
    state[_USED] = used


def _recording(name: str, op: Callable, used: set[str]) -> Callable:
    note = used.add

    def recorded(*args: Any, **kwargs: Any) -> Any:
        note(name)
        return op(*args, **kwargs)

    recorded.__name__ = recorded.__qualname__ = name
    recorded.__doc__ = getattr(op, "__doc__", None)
    recorded.__wrapped__ = op  # type: ignore[attr-defined]
    return recorded


def _instrumenting_twins(compute_twin: Callable, used: set[str]) -> Callable:
    """``compute_twin`` whose twins record into the backend's own set (mixed precision runs on them)."""
    def instrumented(dtype: str) -> Any:
        twin = compute_twin(dtype)
        try:
            state = vars(twin)
        except TypeError:
            return twin
        if _USED not in state:
            _wrap_ops(twin, state, used)
        return twin

    instrumented.__wrapped__ = compute_twin  # type: ignore[attr-defined]
    return instrumented

"""``ImmutableArrays``: variables, gradients and compiled steps for frameworks whose arrays never change (JAX, MLX).

unidl's contract assumes mutable variables: layer code reads a weight, an optimizer
assigns it, and ``value_and_grad(fn, variables)`` differentiates a closure that *reads*
them. JAX and MLX instead differentiate and compile *pure functions of their
arguments*. This mixin bridges the two, once for every such framework:

1. **Variables** are :class:`VariableHolder` objects, small mutable slots whose
   ``.value`` is an array; ``assign`` swaps the array. Holders reach the ops (layer
   code passes its weights), so ops unwrap them: bind framework functions with
   :func:`lift` (or :meth:`ImmutableArrays.bind_lifted`), call :func:`unwrap` in methods.
2. **Gradients.** ``value_and_grad`` swaps the traced arguments into the holders
   while the framework differentiates, and puts the arrays back afterwards. A holder
   that ``fn`` assigns (BatchNormalization's moving statistics) would keep a traced
   value: its new value leaves the trace as an auxiliary output and is written back
   once the trace is over.
3. **Compiled steps.** ``compile_step`` passes every live variable of the framework in
   and out of the compiled program (a variable read but not passed in would be frozen
   into it as a constant), so a step may train several models, each compiled on its
   own backend instance. The step's arguments, Python-float ``scalars`` included, are
   traced inputs. unidl runs the first call of a step eagerly (``unidl.stepping``), so that
   what the step creates (optimizer slots, metric state) exists before any trace.

A backend lists the mixin before ``Backend`` and supplies the two framework calls::

    class MlxBackend(ImmutableArrays, Backend):
        def differentiate(self, fn, args):  # (value, aux, grads) of pure fn(*args) -> (value, aux)
            ...
        def jit(self, fn):                  # fn compiled, its arguments traced (None: stay eager)
            ...

plus its ops, with holders unwrapped. The JAX example plugin
(``examples/plugins/unidl-jax``) is the worked example. Arrays are expected to have
``.dtype`` and ``.astype`` (JAX, MLX, CuPy do); override ``assigned_value`` otherwise.

Contract layer: this module imports only ``unidl.backend``, the standard library and NumPy.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Callable, Sequence

from .backend import Tensor, tracing


class VariableHolder:
    """A mutable slot holding an immutable array: what ``ImmutableArrays.variable`` returns."""
    __slots__ = ("value", "name", "__weakref__")

    def __init__(self, value: Any, name: str = ""):
        self.value, self.name = value, name

    def __repr__(self) -> str:
        shape, dtype = getattr(self.value, "shape", "?"), getattr(self.value, "dtype", "?")
        return f"<VariableHolder {self.name} shape={tuple(shape)} dtype={dtype}>"


def unwrap(x: Any) -> Any:
    """The array inside a holder; anything else passes through."""
    return x.value if type(x) is VariableHolder else x


def lift(fn: Callable) -> Callable:
    """``fn`` (a framework function) made to accept holders as positional arguments."""
    def op(*args, **kwargs):
        return fn(*[unwrap(a) for a in args], **kwargs)
    op.__name__ = getattr(fn, "__name__", "op")
    op.__doc__ = getattr(fn, "__doc__", None)
    return op


# Every live holder, per framework, in creation order: compiled steps pass them all in and out.
_LIVE: dict[str, "weakref.WeakValueDictionary[int, VariableHolder]"] = {}
_HOLDER_IDS = itertools.count()
# Per thread, a stack of the traces being differentiated; each maps id(holder) -> holder
# for the holders assigned while it runs (see ImmutableArrays.value_and_grad).
_TRACES = threading.local()


def _open_traces() -> list[dict[int, VariableHolder]]:
    stack = getattr(_TRACES, "stack", None)
    if stack is None:
        stack = _TRACES.stack = []
    return stack


class ImmutableArrays:
    """Mixin for a ``Backend`` whose framework's arrays are immutable; list it before ``Backend``.

    It implements ``variable``, ``assign``, ``value_and_grad``, ``grad_wrt_inputs`` and
    ``compile_step`` over the two framework calls a subclass provides:
    :meth:`differentiate` and (optionally) :meth:`jit`.
    """

    # ---------------------------------------------------- the framework's part
    def differentiate(self, fn: Callable[..., tuple[Tensor, Any]], args: list) -> tuple[Tensor, Any, list]:
        """``(value, aux, grads)`` of the pure function ``fn(*args) -> (value, aux)``, with
        ``grads[i]`` the gradient of the scalar ``value`` with respect to ``args[i]``.

        JAX: ``(value, aux), grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))),
        has_aux=True)(*args)``.
        """
        raise self._missing("differentiate")

    def jit(self, fn: Callable) -> Callable | None:
        """``fn`` compiled by the framework, or None to run steps eagerly (the default).

        ``fn(values, args)`` takes a list of arrays and the step's arguments (nested
        tuples/lists/dicts of arrays, Python floats and None) and returns nested arrays.
        Arrays and floats must be traced inputs, never constants of the program: the
        floats change at every call (see ``Backend.compile_step``). JAX: ``jax.jit(fn)``.
        """
        return None

    def bind_lifted(self, table: dict[str, Callable]) -> None:
        """Bind each ``table[op]`` (a framework function with the op's exact contract) as op ``op``."""
        for op, fn in table.items():
            setattr(self, op, lift(fn))

    # ------------------------------------------------------------ variables
    def variable(self, value: Any, trainable: bool = True, name: str = "") -> VariableHolder:
        # Every holder may be differentiated: gradients are taken for what value_and_grad is given.
        holder = VariableHolder(self.convert(value), name)
        self._live_holders()[next(_HOLDER_IDS)] = holder
        return holder

    def assign(self, variable: VariableHolder, value: Any) -> None:
        variable.value = self.assigned_value(variable.value, value)
        traces = _open_traces()
        if traces:  # assigned while a gradient is traced: value_and_grad writes it back
            traces[-1][id(variable)] = variable

    def assigned_value(self, old: Any, value: Any) -> Any:
        """``value`` as the array a holder now holding ``old`` takes: converted, in ``old``'s dtype
        (a float32 weight stays float32, even when a half-precision twin computed the update)."""
        new = self.convert(unwrap(value))
        return new if new.dtype == old.dtype else new.astype(old.dtype)

    def is_floating(self, x: Any) -> bool:
        return super().is_floating(unwrap(x))  # type: ignore[misc]

    def _live_holders(self) -> "weakref.WeakValueDictionary[int, VariableHolder]":
        # Per framework, not per instance: compile(backend=...) builds one instance per model,
        # and a custom step may train several models.
        key = getattr(self, "framework", "") or type(self).__name__
        return _LIVE.setdefault(key, weakref.WeakValueDictionary())

    # ------------------------------------------------------------ gradients
    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[VariableHolder]) -> tuple[Tensor, Any, list]:
        def loss(*values):
            for holder, value in zip(variables, values):
                holder.value = value  # fn now reads the traced argument through the holder
            return fn()
        return self._differentiate_holders(loss, [v.value for v in variables], variables)

    def grad_wrt_inputs(self, fn: Callable[..., Tensor], inputs: Sequence[Any]) -> tuple[Tensor, list]:
        value, _, grads = self._differentiate_holders(lambda *xs: (fn(*xs), None),
                                                      [self.convert(unwrap(x)) for x in inputs])
        return value, grads

    def _differentiate_holders(self, fn: Callable, args: list, holders: Sequence[VariableHolder] = ()):
        """:meth:`differentiate` of ``fn(*args) -> (value, aux)``. ``holders`` (those ``fn`` swaps
        args into) get their arrays back; holders ``fn`` assigns get their new values."""
        if not args:  # nothing to differentiate with respect to
            value, aux = fn()
            return value, aux, []
        saved = [h.value for h in holders]
        written: dict[int, VariableHolder] = {}

        def traced(*xs):
            value, aux = fn(*xs)
            # Values assigned in the trace are traced values; hand them out as auxiliary results.
            return value, (aux, [w.value for w in written.values()])

        traces = _open_traces()
        traces.append(written)
        try:
            value, (aux, new), grads = self.differentiate(traced, args)
        finally:
            traces.pop()
            for holder, original in zip(holders, saved):
                holder.value = original
        for holder, fresh in zip(written.values(), new):
            holder.value = fresh
        return value, aux, list(grads)

    # ------------------------------------------------------- compiled steps
    def compile_step(self, step: Callable) -> Callable:
        """``step`` compiled by :meth:`jit`, every live variable passed in and out (see the module docstring).

        One program serves the variables alive when it was built; it is rebuilt when
        variables are created or freed. The program is the framework's to cache per
        argument shapes. unidl runs the first call of every step eagerly before it asks
        for this (``unidl.stepping``), so the variables a step creates (optimizer slots,
        metric state) exist before the first trace.
        """
        if type(self).jit is ImmutableArrays.jit:  # no compiler: Backend's default, eager steps
            return step
        program: Callable | None = None
        program_holders: tuple[VariableHolder, ...] = ()

        def run(*args):
            nonlocal program, program_holders
            holders = tuple(self._live_holders().values())
            if program is None or holders != program_holders:
                program, program_holders = self.jit(_pure_step(step, holders)), holders
            values = [h.value for h in holders]
            try:
                out, values = program(values, args)
            finally:  # the new values, or after a failed trace the old ones: never traced values
                for holder, value in zip(holders, values):
                    holder.value = value
            return out
        return run


def _pure_step(step: Callable, holders: tuple[VariableHolder, ...]) -> Callable:
    """``step`` as a pure function of the holders' values and its arguments: (values, args) -> (out, new values)."""
    def pure(values, args):
        with tracing():  # the framework runs this body only to trace it
            for holder, value in zip(holders, values):
                holder.value = value
            return step(*args), [holder.value for holder in holders]
    return pure


__all__ = ["ImmutableArrays", "VariableHolder", "lift", "unwrap"]

"""The op checks of the conformance kit. Each raises ``ConformanceError`` on the first problem.

* :func:`check_forward`: the op on a backend vs its closed-form NumPy reference.
* :func:`check_grad`: gradients vs the reference backend (NumPy, float64), or
  vs the contract's closed-form rule at kinks and ties.
* :func:`check_finite_differences`: the reference backend's own gradients vs
  central finite differences.
* :func:`check_missing_op`: an op a backend lacks raises ``BackendError``.

Every comparison goes shape, then dtype, then values (tinygrad's order), and
a failure names the backend, its dtype, the op, the case, what was compared
("forward", "grad of input 1"), the shapes and the max abs/rel error.

Gradients are those of ``sum(op(inputs) * r)`` for a fixed random ``r`` of
the output's shape, taken through the public ``backend.grad_wrt_inputs``.
"""
from __future__ import annotations

import copy
import functools
import re
from typing import Any, Callable, Sequence

import numpy as np

import unidl
from unidl.backend import PRIMITIVES, Backend, BackendError, missing_ops

from . import tolerances
from .gradcheck import FD_STEP, central_differences  # noqa: F401 -- FD_STEP: checks.FD_STEP is public
from .kit import REFERENCE_BACKEND, REFERENCE_DTYPE, CheckId
from .opspecs import Case, OpSpec, make_inputs, make_upstream, resolve_kwargs
from .tolerances import Tolerance

class ConformanceError(AssertionError):
    """A backend does not do what the contract says.

    The message's first line is the whole verdict (pytest's one-line summary
    shows it): where (backend, dtype, family, item, case and its inputs), what
    was compared ("forward", "grad of input 1"), the shape and dtype, and for
    values the max abs and rel error against the named tolerance. Further
    lines add detail (the worst element).
    """

    @property
    def brief(self) -> str:
        """The first line without its "backend ..., case ... [inputs]: " prefix, for the summary,
        which names the check already."""
        return brief(str(self))


class MissingOpsError(ConformanceError):
    """The backend lacks primitive ops; ``missing_ops`` names them (the summary files this under them)."""

    def __init__(self, missing_ops: list[str], message: str):
        super().__init__(message)
        self.missing_ops = tuple(missing_ops)


def brief(message: str) -> str:
    """The first line of a kit failure message, less the prefix naming the backend, item and case."""
    first = message.split("\n", 1)[0]
    match = _WHERE.match(first)
    return first[match.end():] if match else first


# The prefix every check label starts with (see the _label helpers): "backend 'x' (dtype), <family>
# 'item', case 'name' [inputs]: ". The inputs' description has no "]: " of its own.
_WHERE = re.compile(r"backend '[^']*'.*?, case '[^']*' \[.*?\]: ")


# ---------------------------------------------------------------- comparing

def compare(label: str, actual: Any, expected: Any, tol: Tolerance, dtype: str | None = None) -> None:
    """Raise ConformanceError unless ``actual`` matches ``expected``: shape, then dtype, then values.

    Floating results are compared with ``tol``; integer and bool results exactly.
    ``dtype`` is the dtype ``actual`` must have (None: not checked).
    """
    __tracebackhide__ = True  # pytest shows the message, not the kit's frames
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise ConformanceError(f"{label}: shape {actual.shape}, expected {expected.shape}")
    if dtype is not None and actual.dtype != np.dtype(dtype):
        raise ConformanceError(f"{label}: dtype {actual.dtype}, expected {dtype} (shape {actual.shape})")
    floating = actual.dtype.kind == "f" or expected.dtype.kind == "f"
    ok = (tol.close(actual.astype(np.float64), expected.astype(np.float64)) if floating
          else actual == expected)
    if ok.all():
        return
    rule = str(tol) if floating else "exact equality"
    raise ConformanceError(f"{label}: shape {actual.shape}, dtype {actual.dtype}: "
                           + mismatch_report(actual, expected, ok, rule))


def mismatch_report(actual: np.ndarray, expected: np.ndarray, ok: np.ndarray, rule: str) -> str:
    """"N of M values outside RULE: max abs err A, max rel err R", then a line on the worst element.

    The errors are over all elements (a NaN or inf where a finite value was
    expected counts as an infinite error); the relative error over the elements
    whose expected value is not 0. The worst element is the failing one with
    the largest abs error.
    """
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        abs_err = np.abs(a - e)
        abs_err = np.where(np.isnan(a) & np.isnan(e), 0.0, abs_err)
        abs_err = np.where(np.isnan(abs_err) | np.isinf(abs_err), np.inf, abs_err)
        rel_err = np.where(e != 0, abs_err / np.abs(e), 0.0)
        excess = np.where(ok, -1.0, abs_err)  # among the failing elements, the largest error
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
    return (f"{int((~ok).sum())} of {ok.size} values outside {rule}: "
            f"max abs err {_g(abs_err.max(initial=0.0))}, max rel err {_g(rel_err.max(initial=0.0))}\n"
            f"  worst at index {tuple(int(i) for i in worst)}: got {float(a[worst]):.10g}, "
            f"expected {float(e[worst]):.10g}")


def _g(x: float) -> str:
    return f"{float(x):.3g}"


def expected_dtype(reference_out: Any, kwargs: dict[str, Any], compute_dtype: str) -> str:
    """The dtype the contract asks for: an explicit ``dtype=`` kwarg wins; otherwise
    floating results take the compute dtype, integers int64 and bools bool."""
    if kwargs.get("dtype") is not None:
        return str(kwargs["dtype"])
    kind = np.asarray(reference_out).dtype.kind
    return compute_dtype if kind == "f" else "bool" if kind == "b" else "int64"


# ---------------------------------------------------------------- helpers

def _label(backend: Backend, spec: OpSpec, case: Case, what: str) -> str:
    return (f"backend {backend.name!r} ({backend.dtype}), op {spec.name!r}, case {case.name!r} "
            f"[{case.describe()}]: {what}")


def _check_id(backend: Backend, spec: OpSpec, case: Case, check: str) -> CheckId:
    return CheckId("op", spec.name, backend.dtype, check, case.name)


def _reference_out(spec: OpSpec, case: Case, values: list[Any]) -> Any:
    return spec.reference(*values, **resolve_kwargs(case.kwargs, "float64"))


def _to_backend(backend: Backend, case: Case, values: Sequence[Any]) -> list[Any]:
    """The case's inputs as the op receives them: tensors (or variables); raw ones and Python values as is."""
    def one(spec: Any, value: Any) -> Any:
        if spec.raw:
            return value
        return backend.variable(value) if getattr(spec, "var", False) else backend.convert(value)
    return [one(spec, v) for spec, v in zip(case.inputs, values)]


def _run(label: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn``; an exception becomes a ConformanceError saying where it happened."""
    __tracebackhide__ = True
    try:
        return fn()
    except ConformanceError:
        raise
    except Exception as exc:
        raise ConformanceError(f"{label}: raised {type(exc).__name__}: {exc}") from exc


def _tensor_to_numpy(backend: Backend, x: Any) -> np.ndarray:
    # Lenient on purpose (a NumPy scalar is accepted): only the to_numpy op's own
    # check insists on an ndarray, so one deviation is reported once.
    return np.asarray(backend.to_numpy(x))


# ---------------------------------------------------------------- forward

def check_forward(backend: Backend, spec: OpSpec, case: Case, tolerance: Tolerance | None = None) -> None:
    """Run ``spec``'s op on ``backend`` and compare it with the closed-form NumPy reference."""
    __tracebackhide__ = True
    label = _label(backend, spec, case, "forward")
    values = make_inputs(case)
    expected = _reference_out(spec, case, values)
    kwargs = resolve_kwargs(case.kwargs, backend.dtype)
    tol = tolerance or tolerances.lookup(backend, _check_id(backend, spec, case, "forward"))

    with unidl.use_backend(backend):
        args = _run(label + " (converting the inputs)", lambda: _to_backend(backend, case, values))
        out = _run(label, lambda: spec.invoke(*args, **kwargs))

    if spec.output == "python":
        _check_python_value(label, out, expected)
        return
    dtype = expected_dtype(expected, kwargs, backend.dtype)
    if spec.output == "array":  # to_numpy itself: a real ndarray, and a copy
        if not isinstance(out, np.ndarray):
            raise ConformanceError(f"{label}: returned {type(out).__module__}.{type(out).__name__}, "
                                   "expected a numpy.ndarray")
        compare(label, out, expected, tol, dtype=dtype)
        _check_is_copy(label, backend, args[0], out, expected)
        return
    got = _run(label + " (to_numpy of the result)", lambda: _tensor_to_numpy(backend, out))
    compare(label, got, expected, tol, dtype=dtype)


def _check_python_value(label: str, out: Any, expected: Any) -> None:
    """shape() must give a tuple of Python ints, size() a Python int."""
    if isinstance(expected, tuple):
        ok_type = isinstance(out, tuple) and all(type(d) is int for d in out)
        want, same = "a tuple of Python ints", ok_type and tuple(out) == expected
    else:
        ok_type = type(out) is int
        want, same = "a Python int", ok_type and out == expected
    if not ok_type:
        raise ConformanceError(f"{label}: returned {out!r} of type {type(out).__name__}, expected {want}")
    if not same:
        raise ConformanceError(f"{label}: returned {out!r}, expected {expected!r}")


def _check_is_copy(label: str, backend: Backend, tensor: Any, out: np.ndarray, expected: np.ndarray) -> None:
    """Writing to the array to_numpy returned must work and leave the tensor unchanged."""
    try:
        if out.dtype == bool:
            np.logical_not(out, out=out)
        else:
            out += 1
    except ValueError as exc:  # a read-only view
        raise ConformanceError(f"{label}: the returned array is not writable ({exc}); "
                               "to_numpy must return a copy the caller may keep") from exc
    if not np.array_equal(np.asarray(backend.to_numpy(tensor)), expected):
        raise ConformanceError(f"{label}: writing to the array to_numpy returned changed the tensor; "
                               "to_numpy must return a copy")


# ---------------------------------------------------------------- gradients

def _objective_grads(backend: Backend, spec: OpSpec, case: Case, values: list[Any],
                     r: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Value and gradients of sum(op(inputs) * r) w.r.t. the case's differentiable inputs."""
    diff = case.diff_indices()
    kwargs = resolve_kwargs(case.kwargs, backend.dtype)
    with unidl.use_backend(backend):
        args = _to_backend(backend, case, values)
        upstream = backend.convert(r)

        def objective(*xs: Any) -> Any:
            call_args = list(args)
            for i, x in zip(diff, xs):
                call_args[i] = x
            return unidl.ops.sum(unidl.ops.multiply(spec.invoke(*call_args, **kwargs), upstream))

        value, grads = backend.grad_wrt_inputs(objective, [args[i] for i in diff])
        return (_tensor_to_numpy(backend, value),
                [None if g is None else _tensor_to_numpy(backend, g) for g in grads])


def check_grad(backend: Backend, reference_backend: Backend | None, spec: OpSpec, case: Case,
               tolerance: Tolerance | None = None) -> None:
    """Compare ``backend``'s gradients with the reference backend's (or the case's closed-form rule).

    The reference runs in float64 on the same float32-representable inputs, so
    a float32 backend is measured against (nearly) exact values.
    """
    __tracebackhide__ = True
    label = _label(backend, spec, case, "grad")
    values = make_inputs(case)
    expected_out = np.asarray(_reference_out(spec, case, values), dtype=np.float64)
    r = make_upstream(case, expected_out.shape)
    tol = tolerance or tolerances.lookup(backend, _check_id(backend, spec, case, "grad"))

    if case.rule is not None:  # a kink or a tie: the contract's convention is the truth
        expected_value = np.sum(expected_out * r)
        expected_grads = case.rule(r, *values, **resolve_kwargs(case.kwargs, "float64"))
        source = "the contract's rule"
    else:
        reference_backend = reference_backend or reference()
        expected_value, expected_grads = _run(
            f"{label} (on the reference backend {reference_backend!r})",
            lambda: _objective_grads(reference_backend, spec, case, values, r))
        source = f"reference {reference_backend.name} {reference_backend.dtype}"

    value, grads = _run(label, lambda: _objective_grads(backend, spec, case, values, r))
    _compare_grads(label, source, case, values, value, grads, expected_value, expected_grads, tol, backend.dtype)


def _compare_grads(label: str, source: str, case: Case, values: list[Any], value: Any, grads: list[Any],
                   expected_value: Any, expected_grads: list[Any], tol: Tolerance, dtype: str) -> None:
    __tracebackhide__ = True
    diff = case.diff_indices()
    if len(grads) != len(diff):
        raise ConformanceError(f"{label}: grad_wrt_inputs returned {len(grads)} gradients for {len(diff)} inputs")
    compare(f"{label}: value of sum(out * r) vs {source}", value, expected_value, tol, dtype=dtype)
    for i, got, want in zip(diff, grads, expected_grads):
        what = f"{label} of input {i} (shape {np.shape(values[i])}) vs {source}"
        if got is None:
            raise ConformanceError(f"{what}: the gradient is None (expected zeros where the output does not depend on it)")
        compare(what, got, want, tol, dtype=dtype)


def check_finite_differences(spec: OpSpec, case: Case, backend: Backend | None = None,
                             tolerance: Tolerance | None = None) -> None:
    """The reference backend's gradients vs central finite differences of sum(op(x) * r), in float64."""
    __tracebackhide__ = True
    backend = backend or reference()
    label = _label(backend, spec, case, "grad")
    values = make_inputs(case)
    r = make_upstream(case, np.shape(_reference_out(spec, case, values)))
    tol = tolerance or tolerances.lookup(backend, _check_id(backend, spec, case, "fd"))
    kwargs = resolve_kwargs(case.kwargs, backend.dtype)

    def objective(vals: list[Any]) -> float:
        with unidl.use_backend(backend):
            out = spec.invoke(*_to_backend(backend, case, vals), **kwargs)
            return float(np.sum(_tensor_to_numpy(backend, out) * r))

    value, grads = _run(label, lambda: _objective_grads(backend, spec, case, values, r))
    numeric = [central_differences(lambda x, i=i: objective(_replaced(values, i, x)), values[i])
               for i in case.diff_indices()]
    _compare_grads(label, "central differences", case, values, value, grads, objective(values), numeric, tol,
                   backend.dtype)


def _replaced(values: list[Any], i: int, x: np.ndarray) -> list[Any]:
    out = list(values)
    out[i] = x
    return out


# ---------------------------------------------------------------- errors

class _Absent:
    """Hides an op: reading it raises AttributeError, so the backend's ``__getattr__`` runs.

    A data descriptor (it defines ``__set__``), so it also hides an op bound
    on the instance (``self.erf = torch.erf``).
    """

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        raise AttributeError("removed by the conformance kit")

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("removed by the conformance kit")


def check_contract(backend: Backend) -> None:
    """The backend implements every primitive op, or the report names each one it lacks."""
    missing = missing_ops(backend)
    if missing:
        raise MissingOpsError(missing,
            f"backend {backend.name!r} ({type(backend).__module__}.{type(backend).__name__}) does not implement "
            f"{len(missing)} of the {len(PRIMITIVES)} primitive ops: {', '.join(missing)}. Each op's contract "
            "is in unidl.backend.PRIMITIVES; see docs/writing-a-backend.md")


def check_missing_op(backend: Backend, op: str) -> None:
    """An op the backend lacks raises BackendError naming the backend and the op.

    The kit removes ``op`` from a copy of the backend and calls it through
    ``unidl.ops``; this proves the backend keeps the base class's
    ``__getattr__`` behaviour. A name that is no op must still raise
    AttributeError (so ``hasattr`` and ``getattr(b, name, default)`` work).
    """
    label = f"backend {backend.name!r} ({backend.dtype}), op {op!r} removed"
    stub = copy.copy(backend)
    stub.__class__ = type(f"{type(backend).__name__}Without_{op}", (type(backend),), {op: _Absent()})
    try:
        with unidl.use_backend(stub):
            getattr(unidl.ops, op)(stub.convert(np.zeros((2,))))
    except BackendError as exc:
        message = str(exc)
        if backend.name not in message or op not in message:
            raise ConformanceError(f"{label}: BackendError {message!r} does not name the backend and the op")
    except Exception as exc:
        raise ConformanceError(f"{label}: raised {type(exc).__name__}: {exc}, expected BackendError") from exc
    else:
        raise ConformanceError(f"{label}: calling it raised nothing, expected BackendError")
    try:
        missing = getattr(stub, "no_such_op_in_unidl", None)
    except Exception as exc:
        raise ConformanceError(f"{label}: getattr(backend, 'no_such_op_in_unidl', None) raised "
                               f"{type(exc).__name__}: {exc}; expected AttributeError, so defaults work") from exc
    if missing is not None:
        raise ConformanceError(f"{label}: backend.no_such_op_in_unidl exists: {missing!r}")


# ---------------------------------------------------------------- reference

@functools.lru_cache(maxsize=None)
def reference() -> Backend:
    """The reference backend (NumPy, float64), built once per process."""
    return unidl.get_backend(REFERENCE_BACKEND, dtype=REFERENCE_DTYPE)

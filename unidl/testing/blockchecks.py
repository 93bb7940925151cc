"""Checks of the building-block families (activation, loss, layer). Each raises ``ConformanceError``.

A case (see :mod:`unidl.testing.blockspecs`) is set up on the backend under
test and, separately, on the reference (NumPy, float64), from the same seeded
float32-representable values:

* :func:`check_forward`: every labelled output (an activation's output, a
  loss value, a layer's output and its regularization penalty) vs the
  reference's: shape, then dtype, then values, with the FORWARD tolerance.
* :func:`check_grad`: ``backend.value_and_grad`` of the case's objective
  (``sum(out * r)`` for a fixed random ``r``, plus penalties) w.r.t. every
  variable -- the input, ``y_pred``, each layer weight -- vs the reference's,
  with the GRAD tolerance.
* :func:`check_finite_differences`: on the reference itself, the same
  gradients vs central finite differences (FD tolerance).

Failures name the backend, its dtype, the family, item and case, the case's
inputs, what was compared ("output", "grad of kernel") and the max abs/rel error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import unidl
from unidl.backend import Backend, generic_layers

from . import tolerances
from .checks import ConformanceError, _run, _tensor_to_numpy, compare, reference
from .gradcheck import central_differences_of_state
from .kit import CheckId
from .tolerances import Tolerance

__all__ = ["check_forward", "check_grad", "check_finite_differences", "run_forward", "run_grads"]


def _label(backend: Backend, family: str, case: Any, what: str) -> str:
    return (f"backend {backend.name!r} ({backend.dtype}), {family} {case.item!r}, case {case.name!r} "
            f"[{case.describe()}]: {what}")


def _tolerance(backend: Backend, family: str, case: Any, check: str) -> Tolerance:
    return tolerances.lookup(backend, CheckId(family, case.item, backend.dtype, check, case.name))


# ---------------------------------------------------------------- running

def run_forward(backend: Backend, case: Any) -> dict[str, np.ndarray]:
    """The case's labelled outputs on ``backend``, as NumPy arrays (computed under ``no_grad``)."""
    with unidl.use_backend(backend):
        bound = case.bind(backend)
        with backend.no_grad():
            outputs = bound.forward()
        return {label: _tensor_to_numpy(backend, value) for label, value in outputs.items()}


def run_grads(backend: Backend, case: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The objective's value and its gradient w.r.t. each of the case's variables, through ``value_and_grad``."""
    with unidl.use_backend(backend):
        bound = case.bind(backend)
        labels = list(bound.variables)
        value, _, grads = backend.value_and_grad(lambda: (bound.objective(), None),
                                                 [bound.variables[k] for k in labels])
        if len(grads) != len(labels):
            raise ConformanceError(f"value_and_grad returned {len(grads)} gradients for {len(labels)} variables")
        missing = [k for k, g in zip(labels, grads) if g is None]
        if missing:
            raise ConformanceError(f"value_and_grad returned None as the gradient of {missing} "
                                   "(the contract asks for zeros where the loss does not depend on a variable)")
        return (_tensor_to_numpy(backend, value),
                {k: _tensor_to_numpy(backend, g) for k, g in zip(labels, grads)})


# ---------------------------------------------------------------- checks

def check_forward(backend: Backend, reference_backend: Backend | None, family: str, case: Any,
                  tolerance: Tolerance | None = None) -> None:
    """Every labelled output of ``case`` on ``backend`` vs the reference's."""
    __tracebackhide__ = True
    reference_backend = reference_backend or reference()
    label = _label(backend, family, case, "forward")
    tol = tolerance or _tolerance(backend, family, case, "forward")
    expected = _run(f"{label} (on the reference {reference_backend.name} {reference_backend.dtype})",
                    lambda: run_forward(reference_backend, case))
    got = _run(label, lambda: run_forward(backend, case))
    _same_keys(label, "outputs", got, expected)
    for key, want in expected.items():
        compare(f"{label}: {key}", got[key], want, tol, dtype=backend.dtype)


def check_grad(backend: Backend, reference_backend: Backend | None, family: str, case: Any,
               tolerance: Tolerance | None = None) -> None:
    """The gradient of the case's objective w.r.t. each variable on ``backend`` vs the reference's."""
    __tracebackhide__ = True
    reference_backend = reference_backend or reference()
    label = _label(backend, family, case, "grad")
    tol = tolerance or _tolerance(backend, family, case, "grad")
    source = f"reference {reference_backend.name} {reference_backend.dtype}"
    expected_value, expected = _run(f"{label} (on the {source})", lambda: run_grads(reference_backend, case))
    value, got = _run(label, lambda: run_grads(backend, case))
    compare(f"{label}: value of the objective vs {source}", value, expected_value, tol, dtype=backend.dtype)
    _same_keys(label, "gradients", got, expected)
    for key, want in expected.items():
        compare(f"{label} of {key} (shape {want.shape}) vs {source}", got[key], want, tol, dtype=backend.dtype)


def check_finite_differences(backend: Backend | None, family: str, case: Any,
                             tolerance: Tolerance | None = None) -> None:
    """The reference's gradients of the case's objective vs central finite differences (float64)."""
    __tracebackhide__ = True
    backend = backend or reference()
    label = _label(backend, family, case, "grad")
    tol = tolerance or _tolerance(backend, family, case, "fd")
    value, grads = _run(label, lambda: run_grads(backend, case))
    with unidl.use_backend(backend):
        bound = case.bind(backend)

        def objective() -> float:
            with backend.no_grad():
                return float(np.sum(_tensor_to_numpy(backend, bound.objective())))

        compare(f"{label}: value of the objective vs a second evaluation", value, objective(), tol)
        for key, variable in bound.variables.items():
            numeric = central_differences_of_state(
                objective, _tensor_to_numpy(backend, variable),
                lambda value, variable=variable: backend.assign(variable, backend.convert(value)))
            compare(f"{label} of {key} vs central differences", grads[key], numeric, tol, dtype=backend.dtype)


def _same_keys(label: str, what: str, got: dict, expected: dict) -> None:
    if list(got) != list(expected):
        raise ConformanceError(f"{label}: {what} {list(got)}, the reference gives {list(expected)}")


# ---------------------------------------------------------------- native layer kernels

NO_NATIVE_KERNEL = "native: generic layers only (the backend has no native kernel for these layers)"


def check_native(backend: Backend, case: Any, tolerance: Tolerance | None = None) -> tuple[str, str] | None:
    """A backend's native kernel for the case's layer (``Backend.native_layer``) vs the generic layer, on the
    same backend: forward outputs and the gradient w.r.t. every input and weight. Returns a note when the
    backend has no kernel for this layer (then there is nothing to compare)."""
    __tracebackhide__ = True
    layer = case.build()
    if backend.native_layer(layer) is None:
        return NO_NATIVE_KERNEL, case.item
    label = _label(backend, "native", case, "native kernel vs the generic layer")
    tol = tolerance or _tolerance(backend, "native", case, "forward")
    with generic_layers():
        expected = _run(f"{label} (generic)", lambda: run_forward(backend, case))
        expected_value, expected_grads = _run(f"{label} (generic grads)", lambda: run_grads(backend, case))
    got = _run(f"{label} (native)", lambda: run_forward(backend, case))
    value, grads = _run(f"{label} (native grads)", lambda: run_grads(backend, case))
    _same_keys(label, "outputs", got, expected)
    for key, want in expected.items():
        compare(f"{label}: {key}", got[key], want, tol, dtype=backend.dtype)
    grad_tol = tolerance or _tolerance(backend, "native", case, "grad")
    compare(f"{label}: value of the objective", value, expected_value, grad_tol, dtype=backend.dtype)
    for key, want in expected_grads.items():
        compare(f"{label}: gradient of {key}", grads[key], want, grad_tol, dtype=backend.dtype)
    return None

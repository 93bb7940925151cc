"""The op-level checks of the conformance kit.

Each function below is one kind of check; the unidl pytest plugin runs it
once per backend x dtype x case, each a pytest item of its own, so one
failing op never hides another. Run them on a backend with::

    pytest --pyargs unidl.testing --unidl-backend=NAME

A project runs them in its own suite by importing the functions (see
unidl's tests/test_conformance.py).
"""
from __future__ import annotations

from typing import Any

from . import checks, opspecs
from .kit import SimpleCase, Target, conformance_check

__all__ = ["test_backend_implements_every_primitive", "test_op_forward", "test_op_grad", "test_op_grad_fd",
           "test_missing_op_raises_backend_error"]


def _forward_cases(target: Target) -> list[opspecs.Case]:
    return opspecs.all_cases()


def _grad_cases(target: Target) -> list[opspecs.Case]:
    # The reference compared with itself proves nothing: in float64 it runs only
    # the cases with a closed-form rule; finite differences check the rest.
    return [c for c in opspecs.all_cases() if opspecs.spec(c.item).checks_grad(c)
            and (c.rule is not None or not target.is_reference)]


def _fd_cases(target: Target) -> list[opspecs.Case]:
    if not target.is_reference:
        return []
    return [c for c in opspecs.all_cases() if opspecs.spec(c.item).checks_grad(c) and c.fd]


@conformance_check("error", "contract", lambda target: [SimpleCase("primitives", "every_op")])
def test_backend_implements_every_primitive(unidl_backend: Any, unidl_case: SimpleCase) -> None:
    checks.check_contract(unidl_backend)


@conformance_check("op", "forward", _forward_cases)
def test_op_forward(unidl_backend: Any, unidl_case: opspecs.Case) -> None:
    checks.check_forward(unidl_backend, opspecs.spec(unidl_case.item), unidl_case)


@conformance_check("op", "grad", _grad_cases)
def test_op_grad(unidl_backend: Any, unidl_reference: Any, unidl_case: opspecs.Case) -> None:
    checks.check_grad(unidl_backend, unidl_reference, opspecs.spec(unidl_case.item), unidl_case)


@conformance_check("op", "fd", _fd_cases)
def test_op_grad_fd(unidl_backend: Any, unidl_case: opspecs.Case) -> None:
    checks.check_finite_differences(opspecs.spec(unidl_case.item), unidl_case, backend=unidl_backend)


@conformance_check("error", "raises", lambda target: [SimpleCase("missing_op", "erf")])
def test_missing_op_raises_backend_error(unidl_backend: Any, unidl_case: SimpleCase) -> None:
    checks.check_missing_op(unidl_backend, unidl_case.name)

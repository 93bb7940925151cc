"""The conformance kit's tolerances: unidl's named ones, plus what a backend declares.

The named constants and their rule live in the leaf module :mod:`unidl.tolerances`
(re-exported here, so ``unidl.testing.tolerances.FORWARD_F32`` keeps working).
What is kit-specific is here: a backend that needs a looser bound declares it
in ``Backend.conformance_tolerances`` with a reason; :func:`lookup` applies it,
and the pytest plugin lists it in the conformance report.
"""
from __future__ import annotations

from typing import Any

from unidl.tolerances import (FD_F64, FORWARD_BF16, FORWARD_F16, FORWARD_F32, FORWARD_F64, GRAD_F32, GRAD_F64,
                              TRAJECTORY_F32, TRAJECTORY_F64, Tolerance, default)

from .kit import CheckId, most_specific

__all__ = ["Tolerance", "default", "override", "lookup", "FORWARD_F64", "FORWARD_F32", "GRAD_F64", "GRAD_F32",
           "FD_F64", "TRAJECTORY_F64", "TRAJECTORY_F32", "FORWARD_BF16", "FORWARD_F16"]


def override(backend: Any, check_id: CheckId) -> tuple[str, Tolerance] | None:
    """The backend's declared override for ``check_id`` as (pattern, Tolerance), or None."""
    hit = most_specific(getattr(backend, "conformance_tolerances", {}) or {}, check_id)
    if hit is None:
        return None
    pattern, (rtol, atol, why) = hit
    return pattern, Tolerance(float(rtol), float(atol), f"{backend.name}[{pattern}]", reason=str(why))


def lookup(backend: Any, check_id: CheckId, kind: str | None = None) -> Tolerance:
    """Tolerance for ``check_id`` on ``backend``: its declared override, else the named default.

    ``kind`` picks the default family (defaults to the check segment of the id).
    """
    base = default(kind or check_id.check, check_id.dtype)
    hit = override(backend, check_id)
    if hit is None:
        return base
    _, tol = hit
    return Tolerance(tol.rtol, tol.atol, tol.name, tol.reason, replaces=str(base))

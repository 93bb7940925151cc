"""Named numeric tolerances: how close two results must be to count as the same.

A value passes when, elementwise, ``|actual - expected| <= atol + rtol * |expected|``
(numpy.isclose's rule), NaN only matching NaN. Every comparison in unidl's
tools and tests names one of these constants instead of a bare literal, so a
failure says which bound it broke and why that bound is what it is. The
normative table is the "Tolerances" section of the conventions (CONVENTIONS.md).

This module is a leaf: it imports nothing from unidl, so the core, the tools
(``unidl.compare``) and the conformance kit (``unidl.testing``, which adds a
backend's declared overrides on top) can all use it.

Float32 results are compared with references computed in float64 from the
very same (float32-representable) inputs, so the whole budget goes to the
backend under test, none to the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tolerance", "default", "FORWARD_F64", "FORWARD_F32", "GRAD_F64", "GRAD_F32", "FD_F64",
           "TRAJECTORY_F64", "TRAJECTORY_F32", "FORWARD_BF16", "FORWARD_F16"]


@dataclass(frozen=True)
class Tolerance:
    """``rtol`` and ``atol`` under a name that failure messages and reports show."""
    rtol: float
    atol: float
    name: str
    reason: str = ""        # set for a backend's override: why the default is too tight
    replaces: str = ""      # for an override: the name of the default it replaces

    def close(self, actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
        """Elementwise pass/fail mask."""
        return np.isclose(actual, expected, rtol=self.rtol, atol=self.atol, equal_nan=True)

    def __str__(self) -> str:
        text = f"{self.name} (rtol={self.rtol:g}, atol={self.atol:g})"
        return f"{text}, replaces {self.replaces}: {self.reason}" if self.replaces else text


# Forward pass, backend vs the closed-form NumPy reference.
FORWARD_F64 = Tolerance(1e-10, 1e-12, "FORWARD_F64")
FORWARD_F32 = Tolerance(1e-5, 1e-6, "FORWARD_F32")

# Gradients, backend vs the reference backend. CONVENTIONS gives float64 only an
# rtol; the atol 1e-10 is for entries whose exact value is 0 but which come out
# as rounding noise (a softmax gradient is a difference of O(1) terms, ~1e-16
# each). It is 100x under the rtol slack of an O(1) gradient, so it hides no
# real error, and a million times over float64 noise.
GRAD_F64 = Tolerance(1e-8, 1e-10, "GRAD_F64")
GRAD_F32 = Tolerance(1e-4, 1e-5, "GRAD_F32")

# NumPy gradients vs central finite differences (float64 only). The atol covers
# the difference quotient's own rounding, eps * |f| / h ~ 1e-16 * 10 / 1e-6 =
# 1e-9 for small test cases, with margin; its truncation error is
# O(h^2) ~ 1e-12.
FD_F64 = Tolerance(1e-5, 1e-7, "FD_F64")

# Loss after N optimizer steps, backend vs reference (the training family).
# CONVENTIONS gives rtol only; the atols are the forward ones, for losses
# trained down to ~0.
TRAJECTORY_F64 = Tolerance(1e-8, 1e-12, "TRAJECTORY_F64")
TRAJECTORY_F32 = Tolerance(1e-3, 1e-6, "TRAJECTORY_F32")

# Mixed precision (unidl.precision): a model computing in half precision vs the float64
# reference with the same weights. Each op rounds to the half dtype's unit roundoff
# (bfloat16 2^-9 ~ 2e-3, float16 2^-12 ~ 2.4e-4); a few layers of such roundings give a
# few times that on O(1) outputs: seen up to 6e-3 (bfloat16) and 4e-4 (float16) on the
# test models, so these bounds leave a 3x (bfloat16) and 7x (float16) margin.
FORWARD_BF16 = Tolerance(2e-2, 2e-2, "FORWARD_BF16")
FORWARD_F16 = Tolerance(3e-3, 3e-3, "FORWARD_F16")

_DEFAULTS: dict[tuple[str, str], Tolerance] = {
    ("forward", "float64"): FORWARD_F64,
    ("forward", "float32"): FORWARD_F32,
    ("grad", "float64"): GRAD_F64,
    ("grad", "float32"): GRAD_F32,
    ("fd", "float64"): FD_F64,
    ("trajectory", "float64"): TRAJECTORY_F64,
    ("trajectory", "float32"): TRAJECTORY_F32,
}


def default(kind: str, dtype: str) -> Tolerance:
    """The named tolerance for a kind of check ("forward", "grad", "fd", "trajectory") and dtype."""
    try:
        return _DEFAULTS[(kind, dtype)]
    except KeyError:
        raise ValueError(f"no tolerance is defined for {kind!r} checks in {dtype}") from None

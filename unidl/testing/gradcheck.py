"""Central finite differences: the one numeric gradient the kit and unidl's tests check autodiff with.

``central_differences(f, x)`` estimates the gradient of ``f`` at ``x`` one
element at a time::

    g[i] = sum(f(x + h e_i) - f(x - h e_i)) / (2 h),    h = FD_STEP * max(1, |x[i]|)

* The step is relative to ``|x[i]|`` (never below ``FD_STEP``), so large
  entries are not perturbed below their own rounding.
* ``f`` may return a scalar or an array. An array is differenced *before* it
  is summed, so entries that the perturbation leaves alone cancel exactly and
  add no rounding noise (``f = lambda x: act(x) * r`` for the gradient of
  ``sum(act(x) * r)``).
* Everything is float64; ``x`` is copied, never modified.

Compare the result with :data:`unidl.tolerances.FD_F64` (truncation error
O(h^2) ~ 1e-12; rounding error ~ eps * |f| / h ~ 1e-9 for O(10) objectives).
A function of state rather than of an array (a layer weight) perturbs the
state inside ``f``: see :func:`central_differences_of_state`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["FD_STEP", "central_differences", "central_differences_of_state"]

# Relative step of the central differences: h = FD_STEP * max(1, |x|). Balances the
# truncation error (~h^2) against the rounding error (~eps / h) in float64.
FD_STEP = 1e-6


def central_differences(f: Callable[[np.ndarray], Any], x: Any, *, step: float = FD_STEP) -> np.ndarray:
    """The gradient of ``sum(f(x))`` at ``x`` by central differences, element by element (float64)."""
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array stays as it was
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        h = step * max(1.0, abs(float(x[idx])))
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        difference = np.asarray(f(up), dtype=np.float64) - np.asarray(f(down), dtype=np.float64)
        grad[idx] = np.sum(difference) / (2 * h)
    return grad


def central_differences_of_state(objective: Callable[[], Any], start: Any, assign: Callable[[np.ndarray], None],
                                 *, step: float = FD_STEP) -> np.ndarray:
    """The gradient of ``sum(objective())`` w.r.t. a piece of state (a weight) that ``assign`` sets.

    ``start`` is the state's current value; each perturbed value is written
    with ``assign`` before ``objective()`` runs, and ``start`` is written back
    at the end, also when ``objective`` raises.
    """
    start = np.array(start, dtype=np.float64)

    def at(value: np.ndarray) -> Any:
        assign(value)
        return objective()

    try:
        return central_differences(at, start, step=step)
    finally:
        assign(start)

"""The accuracy probe: before the op checks, does each target really compute in its dtype?

Some frameworks accept float64 tensors but run some kernels in float32 (or
float32 matmuls in TF32 on a GPU). The op checks then fail by the hundred,
each with a small error, and nothing says why. The probe runs a few ops
(matmul, exp, log, tanh, sum) once per target on float32-representable data
and measures each result's error against NumPy in float64, normwise:
``max |got - want| / max |want|``. It names the precision that error fits
(float64, float32, or "half": TF32, float16 or bfloat16) and warns when that
is coarser than the target's dtype::

    backend 'mlx' float64: matmul, exp only float32-accurate (max rel err 6.1e-08, 5.9e-08;
    float64 kernels give ~1e-16): its float64 kernels likely compute in float32

The probe never fails a run: a wrong op is the op checks' business, and an
op the backend lacks or that raises is left out here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Finding", "probe", "precision_of", "warning_text", "PRECISIONS"]

# Unit roundoff of each precision a kernel may really compute in, finest first. TF32, float16
# (2^-11) and bfloat16 (2^-8) are too close to tell apart from one error: one class, "half".
PRECISIONS: tuple[tuple[str, float], ...] = (("float64", 2.0 ** -53), ("float32", 2.0 ** -24), ("half", 2.0 ** -8))
# A result is "P-accurate" when its normwise error is within this many unit roundoffs of P:
# a 48-term dot product or a 4096-term sum accumulates a few dozen roundings at most.
SLACK = 64.0

_SIZE = 48


@dataclass(frozen=True)
class Finding:
    """One probed op: its normwise relative error vs NumPy float64 and the precision that fits it."""
    op: str
    error: float
    precision: str   # a name of PRECISIONS, or "wrong" when no precision explains the error


def _data(seed: int, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(low, high, shape)
    return x.astype(np.float32).astype(np.float64)  # the same values for float32 and float64 targets


# op name -> (inputs, how to call it on the backend, the NumPy float64 result)
_PROBES: dict[str, tuple[list[np.ndarray], Callable[..., Any], Callable[..., np.ndarray]]] = {
    "matmul": ([_data(1, (_SIZE, _SIZE), -1, 1), _data(2, (_SIZE, _SIZE), -1, 1)],
               lambda b, x, y: b.matmul(x, y), np.matmul),
    "exp": ([_data(3, (1024,), -3, 3)], lambda b, x: b.exp(x), np.exp),
    "log": ([_data(4, (1024,), 0.1, 10)], lambda b, x: b.log(x), np.log),
    "tanh": ([_data(5, (1024,), -3, 3)], lambda b, x: b.tanh(x), np.tanh),
    "sum": ([_data(6, (64, 64), 0, 1)], lambda b, x: b.sum(x), np.sum),
}


def precision_of(error: float) -> str:
    """The finest precision whose rounding explains a normwise relative ``error``."""
    for name, unit in PRECISIONS:
        if error <= SLACK * unit:
            return name
    return "wrong"


def probe(backend: Any) -> list[Finding]:
    """Each probe op on ``backend`` vs NumPy in float64 (ops that are missing or raise are left out)."""
    findings = []
    for op, (inputs, run, reference) in _PROBES.items():
        try:
            got = np.asarray(backend.to_numpy(run(backend, *[backend.convert(x) for x in inputs])), np.float64)
        except Exception:  # noqa: BLE001 -- a broken op is reported by its own checks
            continue
        want = reference(*inputs)
        if got.shape != np.shape(want):
            continue
        error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        findings.append(Finding(op, error, precision_of(error) if np.isfinite(error) else "wrong"))
    return findings


def _rank(precision: str) -> int:
    names = [name for name, _ in PRECISIONS]
    return names.index(precision) if precision in names else len(names)


def warning_text(backend_name: str, dtype: str, findings: list[Finding]) -> str | None:
    """One warning for the ops coarser than ``dtype`` (grouped by the precision they fit), or None."""
    coarse = [f for f in findings if f.precision != "wrong" and _rank(f.precision) > _rank(dtype)]
    if not coarse:
        return None
    parts = []
    for precision in dict.fromkeys(f.precision for f in coarse):
        group = [f for f in coarse if f.precision == precision]
        accuracy = "half-precision (tf32, float16 or bfloat16)" if precision == "half" else precision
        parts.append(f"{', '.join(f.op for f in group)} only {accuracy}-accurate (max rel err "
                     f"{', '.join(f'{f.error:.2g}' for f in group)})")
    unit = dict(PRECISIONS).get(dtype, 0.0)
    return (f"backend {backend_name!r} {dtype}: {'; '.join(parts)}; {dtype} kernels give ~{unit:.0e}: "
            f"its {dtype} ops likely compute in lower precision, so expect {dtype} checks to fail "
            "by small margins (look at these ops first)")

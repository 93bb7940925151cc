"""The numbers of one comparison: per-tensor differences, per-backend reports, the whole report."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..version import __version__
from .render import num, plot_curves, render_plain, render_rich


class CompareError(ValueError):
    """What to compare cannot be found or used (a bad model spec, no data, no loss...)."""


@dataclass
class Diff:
    """How far one tensor (a layer output, a gradient, a weight, a loss curve) is from the reference."""
    name: str
    shape: tuple | None
    max_abs: float
    max_rel: float
    err: float            # max |a - r| / (1 + |r|), what passed(tol) compares
    ok: bool              # within ``tolerance``
    tolerance: str        # the named tolerance's name
    mismatched: int = 0   # elements outside the named tolerance
    size: int = 0
    note: str = ""

    def within(self, tol: float | None = None) -> bool:
        return self.ok if tol is None else self.err <= tol


@dataclass
class Speed:
    ms_per_step: float | None          # median over the repeats
    ms_per_step_runs: list[float]
    peak_mb: float | None              # memory the training itself added (see memory_method)
    memory_method: str                 # how peak_mb was measured
    timing: str                        # what was timed
    error: str | None = None
    process_peak_mb: float | None = None  # the whole subprocess's peak RSS, framework included


@dataclass
class BackendReport:
    """One backend's run and its differences from the reference (None for the reference itself)."""
    backend: str
    dtype: str
    device: str
    framework_version: str = ""
    is_reference: bool = False
    error: str | None = None
    forward_scope: str = ""
    forward: list[Diff] | None = None
    first_diverging_layer: str | None = None
    loss: float | None = None                 # loss on the probe batch (the gradient check's value)
    loss_diff: Diff | None = None             # that loss vs the reference's (forward tolerance)
    gradients: list[Diff] | None = None
    loss_curve: list[float] = field(default_factory=list)
    metric_curves: dict[str, list[float]] = field(default_factory=dict)
    loss_curve_diff: Diff | None = None
    metric_max_abs: dict[str, float] = field(default_factory=dict)  # informational, never gates
    final_weights: list[Diff] | None = None
    speed: Speed | None = None

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.dtype}" + (f"@{self.device}" if self.device not in ("", "cpu") else "")

    def diffs(self) -> list[tuple[str, Diff]]:
        """Every gating check as (section, Diff)."""
        out = [("forward", d) for d in self.forward or []]
        if self.loss_diff is not None:
            out.append(("loss value", self.loss_diff))
        out += [("gradient", d) for d in self.gradients or []]
        if self.loss_curve_diff is not None:
            out.append(("training loss", self.loss_curve_diff))
        out += [("final weight", d) for d in self.final_weights or []]
        return out

    def first_divergence(self, tol: float | None = None) -> str | None:
        """The first layer whose output is outside ``tol`` (None: the named forward tolerance)."""
        for d in self.forward or []:
            if not d.within(tol):
                return d.name
        return None

    def failures(self, tol: float | None = None) -> list[str]:
        if self.is_reference:
            return [f"{self.label} (reference): {self.error}"] if self.error else []
        if self.error:
            return [f"{self.label}: {self.error.splitlines()[-1] if self.error else ''}"]
        limit = "the named tolerance" if tol is None else f"{tol:g}"
        return [f"{self.label}: {section} {d.name!r} differs (max abs {num(d.max_abs)}, err {num(d.err)}"
                f" > {limit}{'' if tol is not None else ' ' + d.tolerance})" for section, d in self.diffs()
                if not d.within(tol)]


@dataclass
class CompareReport:
    """The numbers of one comparison. ``to_dict()`` is what ``--json`` prints."""
    model: str
    reference: str
    reference_dtype: str
    dtype: str
    batch_size: int
    probe_size: int
    steps: int
    epochs: int | None
    seed: int
    tolerances: dict[str, str]
    backends: list[BackendReport]
    notes: list[str] = field(default_factory=list)

    @property
    def reference_report(self) -> BackendReport:
        return next(b for b in self.backends if b.is_reference)

    @property
    def compared(self) -> list[BackendReport]:
        return [b for b in self.backends if not b.is_reference]

    def failures(self, tol: float | None = None) -> list[str]:
        """One line per check outside ``tol`` (None: the named tolerances), and per backend that failed."""
        return [line for b in self.backends for line in b.failures(tol)]

    def passed(self, tol: float | None = None) -> bool:
        """True when every backend ran and every check is within ``tol``.

        ``tol`` None uses the named tolerances (CONVENTIONS.md) for the dtype; a number
        means ``|a - r| <= tol * (1 + |r|)`` for every value (``--fail-above TOL``).
        """
        return not self.failures(tol)

    def to_dict(self) -> dict:
        def convert(obj):
            if dataclasses.is_dataclass(obj):
                return {f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            if isinstance(obj, dict):
                return {str(k): convert(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [convert(v) for v in obj]
            if isinstance(obj, (float, np.floating)):
                return float(obj) if math.isfinite(obj) else None  # JSON has no inf/nan: null
            if isinstance(obj, np.integer):
                return int(obj)
            return obj
        out = convert(self)
        for b, src in zip(out["backends"], self.backends):
            b["label"] = src.label
        out["unidl_version"] = __version__
        out["passed"] = self.passed()
        out["failures"] = self.failures()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, tol: float | None = None) -> str:
        """The report as plain text (what the CLI prints when rich is not installed)."""
        return "\n".join(render_plain(self, tol))

    def print(self, tol: float | None = None, file=None, plain: bool | None = None) -> None:
        """Print the report as tables: rich ones when rich is installed, else plain text.

        ``plain`` None picks rich only for a terminal (pipes and CI logs get plain text).
        """
        file = file or sys.stdout
        if plain is None:
            plain = not getattr(file, "isatty", lambda: False)()
        if not plain:
            try:
                import rich  # noqa: F401
            except ImportError:
                plain = True
        if plain:
            print(self.table(tol), file=file)
        else:
            render_rich(self, tol, file)

    def plot(self, path: str | os.PathLike) -> Path:
        """Loss and metric curves of every backend (and |loss - reference loss|) to a PNG."""
        return plot_curves(self, Path(path))

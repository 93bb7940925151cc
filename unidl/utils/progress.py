"""``Progbar``: Keras's progress bar for custom loops (``fit`` draws its own, ``unidl.progress``)."""
from __future__ import annotations

import math
import sys
import time
from typing import Iterable

import numpy as np

__all__ = ["Progbar"]


def _format_value(value) -> str:
    if isinstance(value, str):
        return value
    value = float(np.mean(value))
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _format_duration(seconds: float) -> str:
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _format_per_unit(seconds: float, unit: str) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


class Progbar:
    """A progress bar for loops you write yourself, with Keras's arguments and averaging rules.

    ::

        bar = unidl.utils.Progbar(len(batches))
        for i, batch in enumerate(batches):
            loss = ...
            bar.update(i + 1, values=[("loss", loss)])

    Values are averaged over the steps seen (weighted by the steps each update
    covers), except names in ``stateful_metrics``, shown as given. On a
    terminal the bar redraws in place (at most every ``interval`` seconds); in
    a log file (not a terminal) ``verbose=1`` writes one line when the bar
    finishes, as ``fit`` does, instead of a line per update.

    Args:
        target: the number of steps expected; None when unknown.
        width: the bar's width in characters (Keras 3's default, 20).
        verbose: 0 silent, 1 the bar, 2 one line when finished.
        interval: the least time between two redraws, in seconds.
        stateful_metrics: names whose value is shown as given, not averaged.
        stateless_metrics: the opposite choice: only these names are averaged (give one of the two).
        unit_name: what a step is called in the time per step ("step", "sample").
        stream: where to write (default ``sys.stdout``, looked up at each write).
    """

    def __init__(self, target: int | None, width: int = 20, verbose: int = 1, interval: float = 0.05,
                 stateful_metrics: Iterable[str] | None = None, stateless_metrics: Iterable[str] | None = None,
                 unit_name: str = "step", stream=None):
        if stateful_metrics is not None and stateless_metrics is not None:
            raise ValueError("Only one of `stateful_metrics` or `stateless_metrics` can be provided: "
                             "`stateful_metrics` lists names shown as given (all others averaged), "
                             "`stateless_metrics` names averaged (all others shown as given)")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))
                                   or target < 0):
            raise ValueError(f"Progbar: target must be a non-negative integer or None, got target={target!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"Progbar: verbose must be 0, 1 or 2, got verbose={verbose!r}")
        self.target = None if target is None else int(target)
        self.width, self.verbose, self.interval, self.unit_name = int(width), verbose, float(interval), unit_name
        self.stateful_metrics = set(stateful_metrics) if stateful_metrics is not None else (
            None if stateless_metrics is not None else set())
        self.stateless_metrics = None if stateless_metrics is None else set(stateless_metrics)
        self._stream = stream
        self._values: dict[str, list] = {}
        self._values_order: list[str] = []
        self._seen_so_far = 0
        self._start = time.time()
        self._last_update = 0.0
        self._time_after_first_step: float | None = None
        self._prev_total_width = 0
        self._finalized = False

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def _dynamic(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)()) or "ipykernel" in sys.modules

    def _averaged(self, name: str) -> bool:
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def update(self, current: int, values=None, finalize: bool | None = None) -> None:
        """Move the bar to step ``current``.

        Args:
            current: the index of the current step (steps done so far).
            values: a list of ``(name, value)`` for this step (a dict works too).
            finalize: whether this is the last update; None means ``current >= target``.
        """
        if finalize is None:
            finalize = self.target is not None and current >= self.target
        items = values.items() if isinstance(values, dict) else (values or [])
        for name, value in items:
            if name not in self._values_order:
                self._values_order.append(name)
            if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
                value = value.numpy()
            if not self._averaged(name) or isinstance(value, str):
                self._values[name] = [value, 1]
            elif finalize:
                self._values[name] = [value, 1]
            else:
                covered = max(current - self._seen_so_far, 1)
                if name not in self._values:
                    self._values[name] = [value * covered, covered]
                else:
                    self._values[name][0] += value * covered
                    self._values[name][1] += covered
        self._seen_so_far = current
        now = time.time()
        per_unit = self._step_duration(current, now)
        if self.verbose == 1:
            dynamic = self._dynamic()
            if not finalize and (not dynamic or now - self._last_update < self.interval):
                return
            self._draw(current, now, per_unit, finalize, dynamic)
        elif self.verbose == 2 and finalize:
            self._write(self._line(current, now, per_unit, finalize, bar=False) + "\n")
        self._last_update = now
        if finalize:
            self._finalized = True

    def add(self, n: int, values=None) -> None:
        """Advance by ``n`` steps: ``update(current + n, values)``."""
        self.update(self._seen_so_far + n, values)

    # ------------------------------------------------------------------ drawing
    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _bar(self, current: int) -> str:
        if self.target:
            digits = int(math.log10(self.target)) + 1
            filled = int(self.width * min(current / self.target, 1.0))
            arrow = ">" if 0 < filled < self.width else "=" if filled else ""
            bar = "=" * max(filled - 1, 0) + arrow + "." * (self.width - filled)
            return f"{current:{digits}d}/{self.target} [{bar}]"
        return f"{current:7d}/Unknown"

    def _line(self, current: int, now: float, per_unit: float, finalize: bool, bar: bool = True) -> str:
        if bar:
            text = self._bar(current)
        elif self.target:
            text = f"{current:{int(math.log10(self.target)) + 1}d}/{self.target}"
        else:
            text = f"{current}/Unknown"
        if self.target and not finalize:
            text += f" - ETA: {_format_duration(per_unit * (self.target - current))}"
        else:
            text += f" - {now - self._start:.0f}s"
        text += f" {_format_per_unit(per_unit, self.unit_name)}"
        for name in self._values_order:
            total, count = self._values[name]
            shown = total if isinstance(total, str) else np.mean(total) / max(1, count)
            text += f" - {name}: {_format_value(shown)}"
        return text

    def _draw(self, current: int, now: float, per_unit: float, finalize: bool, dynamic: bool) -> None:
        line = self._line(current, now, per_unit, finalize)
        if dynamic:
            pad = " " * max(self._prev_total_width - len(line), 0)
            self._write("\r" + line + pad + ("\n" if finalize else ""))
        else:
            self._write(line + "\n")
        self._prev_total_width = len(line)

    def _step_duration(self, current: int, now: float) -> float:
        """Seconds per step, leaving out the first step (often slow: compilation) once there are more."""
        if not current:
            return 0.0
        if self._time_after_first_step is not None and current > 1:
            per_unit = (now - self._time_after_first_step) / (current - 1)
        else:
            per_unit = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return per_unit

"""Keras-style progress output: a live bar on a terminal, one line per epoch otherwise."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """Keras-style progress: a live bar on a terminal (verbose=1), one line per epoch otherwise."""

    def __init__(self, steps: int | None, verbose: int, stream=None):
        self.steps, self.verbose, self.done = steps, verbose, 0
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    @staticmethod
    def format_logs(logs: dict) -> str:
        return " - ".join(f"{k}: {_format_value(v)}" for k, v in logs.items())

    def update(self, step: int, logs) -> None:
        """Step ``step`` done; ``logs`` is a dict, or a function returning one, called only to redraw
        (reading a step's logs waits for the device: the loop passes a function)."""
        self.done = step
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.05 and step != self.steps):
            return
        self._last_draw = now
        if callable(logs):
            logs = logs()
        if self.steps:
            width = 30
            filled = int(width * step / self.steps)
            bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
            self.stream.write(f"\r{step}/{self.steps} [{bar}] - {self.format_logs(logs)}")
        else:  # an iterable of unknown length
            self.stream.write(f"\r{step} steps - {self.format_logs(logs)}")
        self.stream.flush()

    def finish(self, logs: dict[str, float]) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        steps = self.steps or self.done
        per_step = elapsed / max(steps, 1)
        unit = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
        prefix = f"\r{steps}/{steps} [{'=' * 30}] - " if self.live else f"{steps}/{steps} - "
        self.stream.write(f"{prefix}{elapsed:.2f}s {unit} - {self.format_logs(logs)}\n")
        self.stream.flush()


def _format_value(value) -> str:
    """A log value: a number to 4 decimals, a vector (TruePositives at several thresholds) as a list."""
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "[" + ", ".join(f"{float(v):.4f}" for v in value) + "]"

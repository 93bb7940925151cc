"""Learning-rate schedules: ``schedule(step) -> float``, with Keras 3's formulas.

An optimizer takes one as its ``learning_rate`` and calls it with its step
counter (``optimizer.iterations``, counting from 0) before every update::

    lr = unidl.schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96)
    model.compile(optimizer=unidl.optimizers.SGD(learning_rate=lr), ...)

Schedules are evaluated on the host in float64 and return Python floats, so a
compiled train step receives the learning rate as an input and never retraces
for a new value, and every backend sees the very same number.

``get_config()`` returns the constructor arguments; ``from_config`` rebuilds the
schedule. ``unidl.saving`` uses both to store an optimizer's schedule in a model file.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Sequence


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step) -> float`` and ``get_config``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(step)")

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement get_config() to be saved")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


def _positive(cls: str, arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{cls}: {arg} must be a positive number, got {arg}={value!r}")
    return value


def _step(step) -> float:
    # A step may arrive as a NumPy scalar or 0-d array; schedules compute in float64.
    return float(step)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is floored, so the rate drops in steps
    every ``decay_steps`` steps.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; steps per factor of ``decay_rate``.
        decay_rate: the factor applied every ``decay_steps`` steps.
        staircase: floor ``step / decay_steps`` (default False).
        name: kept in the config, as Keras does.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False, name: str = "ExponentialDecay"):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = _positive("ExponentialDecay", "decay_steps", decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)
        self.name = name

    def __call__(self, step) -> float:
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """A constant rate per interval of steps.

    ``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after
    ``boundaries[-1]`` (Keras's closed-right intervals).

    Args:
        boundaries: increasing step numbers.
        values: one more entry than ``boundaries``.
        name: kept in the config.
    """

    def __init__(self, boundaries: Sequence[int], values: Sequence[float], name: str = "PiecewiseConstant"):
        boundaries, values = list(boundaries), [float(v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError("PiecewiseConstantDecay: values must have one more entry than boundaries, got "
                             f"{len(boundaries)} boundaries and {len(values)} values")
        if sorted(boundaries) != boundaries:  # bisect below needs them in order
            raise ValueError(f"PiecewiseConstantDecay: boundaries must be in increasing order, got {boundaries}")
        self.boundaries, self.values, self.name = boundaries, values, name

    def __call__(self, step) -> float:
        # bisect_left counts the boundaries strictly below step: step == boundary stays in the left interval.
        return self.values[bisect.bisect_left(self.boundaries, _step(step))]

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": list(self.boundaries), "values": list(self.values), "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine decay, optionally after a linear warmup (SGDR without restarts).

    Without warmup, for ``s = min(step, decay_steps)``::

        lr = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)

    With ``warmup_target``: the rate rises linearly from ``initial_learning_rate``
    to ``warmup_target`` over ``warmup_steps`` steps, then decays from
    ``warmup_target`` as above over the next ``decay_steps`` steps.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: positive; steps to decay over.
        alpha: the final rate as a fraction of the starting one (default 0).
        warmup_target: the rate reached at the end of the warmup (None: no warmup).
        warmup_steps: warmup length in steps (default 0).
        name: kept in the config.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None, warmup_steps: int = 0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = _positive("CosineDecay", "decay_steps", decay_steps)
        self.alpha = float(alpha)
        self.name = name
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        if warmup_steps < 0:
            raise ValueError(f"CosineDecay: warmup_steps must be >= 0, got warmup_steps={warmup_steps!r}")
        self.warmup_steps = warmup_steps

    def _decay(self, step: float, decay_from: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = _step(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return (self.warmup_target - self.initial_learning_rate) * fraction + self.initial_learning_rate
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


BUILTINS: dict[str, type[LearningRateSchedule]] = {
    cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay, CosineDecay)}

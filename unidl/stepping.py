"""How the loops run a step and read its logs.

``StepFunction``: a model's ``train_step`` / ``test_step`` / ``predict_step`` as ``fit``, ``evaluate``
and ``predict`` call it once per batch. The first call runs eagerly and notes the optimizers the
step applies (a GAN's two); later calls go through ``backend.compile_step`` with each optimizer's
per-step hyper-parameters (learning rate, bias corrections) fed in as inputs, never baked in, and
the host counts the optimizers' iterations. A step that turns out to draw host random numbers
while traced falls back to eager execution for good.

``LogReader``: a step returns its logs as backend tensors (running means kept on the device).
Reading them forces the host to wait for the device, so the loop reads them only when someone
looks: the progress bar as it redraws, callbacks that override a batch hook, a NaN check at least
once a second, and the end of the epoch.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any, Callable

from .backend import FrozenRandomnessError
from .metrics import _host_value
from .optimizers import recording_applies, scalars_from

__all__ = ["StepFunction", "LogReader", "DeferredLogs"]


class DeferredLogs(MutableMapping):
    """A step's ``{name: metric result}``, computed on first access.

    An eager step's results cost a few kernels per metric; the loop reads logs only now and
    then, so the default steps return this instead of computing them every step. (Traced and
    captured steps compute them in the graph: there they are free.)
    """

    def __init__(self, compute: Callable[[], dict]):
        self._compute, self._data = compute, None

    def _values(self) -> dict:
        if self._data is None:
            self._data = self._compute()
        return self._data

    def __getitem__(self, key):
        return self._values()[key]

    def __setitem__(self, key, value):
        self._values()[key] = value

    def __delitem__(self, key):
        del self._values()[key]

    def __iter__(self):
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def copy(self) -> dict:
        return dict(self._values())

    def __repr__(self) -> str:
        return repr(self._values())


class StepFunction:
    """``method(data)`` (a model's step) run eagerly or compiled by the model's backend."""

    def __init__(self, model, method: Callable, purpose: str, compiled: bool):
        self.model, self.method, self.purpose = model, method, purpose
        self.eager = not compiled
        self.optimizers: list = []   # those the step applies, noted by its first call
        self._first_call = True
        self._compiled: Callable | None = None
        self.__name__ = f"{purpose}_function"

    def _step(self, scalars: list, data):
        with scalars_from({id(opt): s for opt, s in zip(self.optimizers, scalars)}):
            return self.method(data)

    def __call__(self, data):
        if self.eager:
            return self.method(data)
        if self._first_call:  # eager, noting the optimizers it applies (and creating their slots)
            with recording_applies([]) as applied:
                out = self.method(data)
            self.optimizers = list(dict.fromkeys(applied))
            self._first_call = False
            return out
        if self._compiled is None:
            self._compiled = self.model.backend.compile_step(self._step)
        scalars = [{k: float(v) for k, v in opt.step_scalars().items()} for opt in self.optimizers]
        try:
            out = self._compiled(scalars, data)
        except FrozenRandomnessError:  # unidl.random inside the step: a graph would freeze the draws
            self.eager = True
            self.model._draws_randomness = True
            if self.model.jit_compile is True:
                warnings.warn(f"model {self.model.name!r}: jit_compile=True ignored: its {self.purpose} step draws "
                              "random numbers (unidl.random) and runs eagerly, as a graph would freeze them",
                              RuntimeWarning, stacklevel=3)
            return self.method(data)
        for opt in self.optimizers:
            opt.iterations += 1
        return out

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None


class LogReader:
    """The logs of the steps of one pass over the data, read to host numbers only when needed."""

    CHECK_EVERY_S = 1.0  # the longest a NaN loss goes unnoticed when nothing else reads the logs

    def __init__(self, bar, callbacks_read: bool, check_loss: bool = True):
        self.bar, self.callbacks_read, self.check_loss = bar, callbacks_read, check_loss
        self.last: dict | None = None
        self.steps = 0
        self.invalid_loss: float | None = None
        self._host: dict | None = None
        self._last_read = time.perf_counter()

    def step(self, done: int, logs) -> dict:
        """Note step ``done``'s logs; returns them on the host if a callback reads batch logs, else {}."""
        self.last, self.steps, self._host = logs, done, None
        if self.callbacks_read or (self.check_loss and time.perf_counter() - self._last_read >= self.CHECK_EVERY_S):
            self.read()
        self.bar.update(done, self.read)
        return dict(self._host) if self.callbacks_read else {}

    def read(self) -> dict[str, Any]:
        """The last step's logs as host numbers (one device sync per step at most)."""
        if self._host is None:
            logs = self.last if isinstance(self.last, Mapping) else {}
            self._host = {k: _host_value(v) for k, v in logs.items()}
            self._last_read = time.perf_counter()
            if self.check_loss and self.invalid_loss is None:
                for key, value in self._host.items():
                    if key.endswith("loss") and isinstance(value, float) and not math.isfinite(value):
                        self.invalid_loss = value
                        break
        return self._host

    def final(self) -> dict[str, Any]:
        """The pass's logs (the last step's running values) on the host, as a new dict."""
        return dict(self.read())

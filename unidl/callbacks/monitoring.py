"""Callbacks that watch the logs: EarlyStopping, TerminateOnNaN, the learning-rate ones, CSVLogger.

Callbacks that watch a value (``monitor="val_loss"``) take ``mode``: "min",
"max", or "auto", which means "max" for accuracy/AUC-like names ("acc" in the
name, or ending in "auc") and "min" for everything else.
"""
from __future__ import annotations

import csv
import inspect
import math
import os
import sys
import warnings
from typing import Callable

import numpy as np

from .base import Callback


def _mode_sign(mode: str, monitor: str, where: str) -> float:
    """+1 when smaller is better, -1 when larger is better."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return 1.0 if mode == "min" else -1.0


def _optimizer_of(model, where: str):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise RuntimeError(f"{where} needs a compiled model with an optimizer; call model.compile(optimizer=...)")
    return optimizer


def _set_learning_rate(optimizer, value, where: str) -> None:
    # A schedule passed to the optimizer decides the rate per step; a callback
    # replacing it with a float would silently discard it (Keras refuses too).
    if callable(optimizer.learning_rate):
        raise TypeError(f"{where} cannot set the learning rate of optimizer {optimizer.name!r}: it was created "
                        f"with a schedule ({optimizer.learning_rate!r}); give it a float learning_rate instead")
    # A Python float exactly: compiled train steps take host floats as inputs (a
    # NumPy scalar would be baked into the traced graph instead).
    optimizer.learning_rate = float(value)


# Relative: a change of a monitored value below this is float32 summation order, not learning.
ROUNDING = 1e-6

class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``restore_best_weights=True`` puts back the weights of the best epoch at the end.

    A change within float32 rounding of the best value (relative 1e-6, a few units in the last
    place) is not an improvement: metrics accumulate in float32 on the device, and the same
    losses summed in another (shuffled) order differ in their last bits.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0, verbose: int = 0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be a non-negative integer, got patience={patience!r}")
        if mode == "auto":
            mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
        self.monitor, self.min_delta, self.patience = monitor, abs(min_delta), patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch, self.verbose = start_from_epoch, verbose
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch = 0, 0
        self.best = self.baseline if self.baseline is not None else math.inf * self.sign
        self.best_weights, self.best_epoch = None, 0

    def _improved(self, value: float) -> bool:
        noise = ROUNDING * abs(self.best) if math.isfinite(self.best) else 0.0
        return self.sign * (value - self.best) < -max(self.min_delta, noise)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r}, which is not among the logged "
                           f"values {sorted(logs)}; pass validation data or monitor one of those")
        if epoch < self.start_from_epoch:
            return
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best {self.monitor} "
                  f"{self.best:.4g} at epoch {self.best_epoch + 1})", file=sys.stdout)
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stops training as soon as a batch loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of every epoch.

    ``schedule(epoch, lr) -> new lr`` (epoch counted from 0, lr the current
    rate), or ``schedule(epoch) -> lr``. The rate used is logged as
    ``"learning_rate"`` in each epoch's logs.

    Args:
        schedule: the function above.
        verbose: 1 prints the new rate at each epoch.
    """

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose
        self._takes_lr = _positional_count(schedule) != 1

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = _optimizer_of(self.model, "LearningRateScheduler")
        lr = optimizer.current_learning_rate
        new = self.schedule(epoch, lr) if self._takes_lr else self.schedule(epoch)
        if not _is_real_number(new):
            raise ValueError(f"LearningRateScheduler: the schedule must return a number, got {new!r} at epoch "
                             f"{epoch}")
        if not (math.isfinite(float(new)) and float(new) >= 0):
            raise ValueError(f"LearningRateScheduler: the schedule returned learning rate {new!r} at epoch "
                             f"{epoch}; it must be finite and >= 0")
        _set_learning_rate(optimizer, new, "LearningRateScheduler")
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(new)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _optimizer_of(self.model, "LearningRateScheduler").current_learning_rate


def _positional_count(fn: Callable) -> int | None:
    """How many positional arguments ``fn`` takes (None if unknown or unlimited)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _is_real_number(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (int, float, np.floating, np.integer)) or (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu")


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by ``factor`` when ``monitor`` stops improving.

    After ``patience`` epochs without an improvement larger than ``min_delta``,
    ``lr = max(lr * factor, min_lr)``; then ``cooldown`` epochs pass before
    waiting starts again. The rate used in each epoch is logged as ``"learning_rate"``.

    Args:
        monitor: the logged value to watch (default "val_loss").
        factor: in (0, 1): the rate is multiplied by it (default 0.1).
        patience: epochs without improvement before reducing (default 10).
        verbose: 1 prints each reduction.
        mode: "min", "max" or "auto" (see the module docstring).
        min_delta: the smallest change that counts as an improvement (default 1e-4).
        cooldown: epochs after a reduction during which no waiting is counted (default 0).
        min_lr: the rate never goes below this (default 0).
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got factor={factor!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), patience, verbose
        self.min_delta, self.cooldown, self.min_lr = abs(min_delta), cooldown, float(min_lr)
        self.sign = _mode_sign(mode, monitor, "ReduceLROnPlateau")
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf * self.sign
        self.wait, self.cooldown_counter = 0, 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _improved(self, value: float) -> bool:
        noise = ROUNDING * abs(self.best) if math.isfinite(self.best) else 0.0
        return self.sign * (value - self.best) < -max(self.min_delta, noise)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = _optimizer_of(self.model, "ReduceLROnPlateau")
        logs["learning_rate"] = optimizer.current_learning_rate
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"ReduceLROnPlateau monitors {self.monitor!r}, which is not among the logged values "
                          f"{sorted(logs)}; the learning rate is left as it is", RuntimeWarning, stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = optimizer.current_learning_rate
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    _set_learning_rate(optimizer, new, "ReduceLROnPlateau")
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Writes each epoch's logs as one CSV row: a header ``epoch,<sorted keys>``, then a row per epoch.

    The file is flushed after each row, so it can be read while training runs.
    A value missing in some epoch is written as "NA".

    Args:
        filename: the CSV file.
        separator: the field separator (default ",").
        append: add to an existing file (no second header if it already has
            content) instead of overwriting it.
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys: list[str] | None = None
        self.writer = None
        self.csv_file = None
        self.append_header = True

    def on_train_begin(self, logs=None):
        has_content = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self.append_header = not has_content
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self.keys, self.writer = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            # Fixed by the first epoch; unlike Keras no "val_" columns are invented without
            # validation data (unidl has no validation_freq, so they would always be "NA").
            self.keys = sorted(logs)
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self.append_header:
                self.writer.writerow(["epoch", *self.keys])
        self.writer.writerow([epoch, *(_csv_value(logs.get(k, "NA")) for k in self.keys)])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None:
            self.csv_file.close()
        self.csv_file, self.writer = None, None


def _csv_value(value):
    if isinstance(value, (str, int, float)):
        return value
    try:
        items = list(value)
    except TypeError:
        return value
    return f"[{', '.join(map(str, items))}]"

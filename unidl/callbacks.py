"""Callbacks with Keras's hook names, called by ``Model.fit``.

A callback sees ``self.model`` and receives ``logs`` dicts of Python floats.
Setting ``model.stop_training = True`` ends ``fit`` after the current batch or epoch.

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
from typing import Any, Callable, Iterable

import numpy as np

from . import saving


class Callback:
    def __init__(self) -> None:
        self.model = None
        self.params: dict[str, Any] = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch: int, logs=None): ...
    def on_epoch_end(self, epoch: int, logs=None): ...
    def on_train_batch_begin(self, batch: int, logs=None): ...
    def on_train_batch_end(self, batch: int, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch: int, logs=None): ...
    def on_test_batch_end(self, batch: int, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch: int, logs=None): ...
    def on_predict_batch_end(self, batch: int, logs=None): ...


class CallbackList:
    """Calls every callback's hook in order."""

    def __init__(self, callbacks: Iterable[Callback], model, params: dict[str, Any]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be unidl.callbacks.Callback instances, got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, logs=None):
            # Every hook gets a logs dict, as Keras passes one, so user functions may require it.
            for cb in self.callbacks:
                getattr(cb, hook)(*args, logs if logs is not None else {})
        return call


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"]`` is a list, one value per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"<History epochs={len(self.epoch)} last={last}>"


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``restore_best_weights=True`` puts back the weights of the best epoch at the end.
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
        return self.sign * (value - self.best) < -self.min_delta

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


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)


# ------------------------------------------------------------------ helpers

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


# ------------------------------------------------------------- checkpoints

class ModelCheckpoint(Callback):
    """Saves the model (or its weights) during training, atomically.

    ``filepath`` may name values to fill in: ``"ckpt-{epoch:02d}-{val_loss:.2f}.unidl"``
    gets the epoch (counted from 1), any logged value, and ``{batch}`` (from 1)
    when ``save_freq`` is a number of batches. Missing directories are created.

    Args:
        filepath: where to save. With ``save_weights_only`` a weights file
            (``.npz`` or ``.safetensors``, see ``unidl.saving.save_weights``),
            else a model file (``unidl.saving.save_model``; suffix ``.unidl`` suggested).
        monitor: the logged value that decides what "best" is (default "val_loss").
        verbose: 1 prints a line at each save or skip.
        save_best_only: save only when ``monitor`` improved on the best value so far;
            with a fixed ``filepath`` the file then always holds the best model.
        save_weights_only: save the weights only, not the architecture and compile config.
        mode: "min", "max" or "auto" (see the module docstring).
        save_freq: "epoch" (at each epoch end) or an integer: every that many batches.
        initial_value_threshold: with ``save_best_only``, a value to beat before the first save.

    Each save replaces the file atomically: a crash mid-save leaves the previous checkpoint.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str | int = "epoch", initial_value_threshold: float | None = None):
        super().__init__()
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq <= 0):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive number of batches, "
                             f"got save_freq={save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.save_freq = save_freq
        self.sign = _mode_sign(mode, monitor, "ModelCheckpoint")
        self.initial_value_threshold = initial_value_threshold
        self.best = initial_value_threshold if initial_value_threshold is not None else math.inf * self.sign
        self._current_epoch = 0
        self._batches_since_save = 0

    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        if not self.save_weights_only:
            # A model that cannot be written as JSON should fail now, not after the first epoch's work.
            saving.model_config(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _file_path(self, epoch: int, batch: int | None, logs: dict) -> str:
        fields = {**logs, "epoch": epoch + 1}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(f"ModelCheckpoint: cannot fill in filepath {self.filepath!r}: {exc} is not among the "
                           f"values available here, {sorted(fields)}") from None

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        path = self._file_path(epoch, batch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint: can save the best model only when {self.monitor!r} is logged; "
                              f"logged values: {sorted(logs)}. Skipping this save.", RuntimeWarning, stacklevel=2)
                return
            # NaN compares false: a diverged epoch is never "best".
            if not self.sign * (current - self.best) < 0:
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            saving.save_weights(self.model, path)
        else:
            saving.save_model(self.model, path)


# ---------------------------------------------------------- learning rate

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
        return self.sign * (value - self.best) < -self.min_delta

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


# ------------------------------------------------------------------- logging

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

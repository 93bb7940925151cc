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


# --------------------------------------------------------------- TensorBoard

class _Protos:
    """The protocol-buffer classes of an event writer (TensorBoard's and TensorFlow's have the same fields)."""

    def __init__(self, summary, histogram, graph_def):
        self.Summary, self.HistogramProto, self.GraphDef = summary, histogram, graph_def


class _TensorBoardFileWriter:
    """Events through the ``tensorboard`` package's record writer and protos, into a local file.

    (tensorboard's ``EventFileWriter`` would import TensorFlow when it is installed, for its
    file-system layer; the record framing and the protos need nothing.)
    """

    name = "tensorboard"
    _files_opened = 0

    def __init__(self, logdir: str):
        import socket
        import time

        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.graph_pb2 import GraphDef
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.protos = _Protos(Summary, HistogramProto, GraphDef)
        self._event = Event
        type(self)._files_opened += 1
        # The name TensorBoard's own writers use: the run's files sort by creation time.
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{type(self)._files_opened}")
        self.path = os.path.join(logdir, name)
        self._writer = RecordWriter(open(self.path, "wb"))
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _add(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def write(self, summary, step: int) -> None:
        import time
        self._add(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def write_graph(self, graph_def) -> None:
        import time
        self._add(self._event(wall_time=time.time(), graph_def=graph_def.SerializeToString()))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()


class _TensorFlowFileWriter:
    """Events through ``tf.summary`` (used when TensorFlow is installed but the tensorboard package is not)."""

    name = "tensorflow"

    def __init__(self, logdir: str):
        import tensorflow as tf

        self._tf = tf
        self.protos = _Protos(tf.compat.v1.Summary, tf.compat.v1.HistogramProto, tf.compat.v1.GraphDef)
        self._writer = tf.summary.create_file_writer(logdir)

    def write(self, summary, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))

    def write_graph(self, graph_def) -> None:
        with self._writer.as_default():
            self._tf.summary.graph(graph_def)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


_WRITERS = {"tensorboard": _TensorBoardFileWriter, "tensorflow": _TensorFlowFileWriter}


def _event_writer_class(choice: str):
    """The writer class for ``choice`` ("auto": tensorboard's, else TensorFlow's), or an ImportError."""
    import importlib.util

    names = ["tensorboard", "tensorflow"] if choice == "auto" else [choice]
    for name in names:
        if importlib.util.find_spec(name) is not None:
            return _WRITERS[name]
    raise ImportError("the TensorBoard callback writes event files with the tensorboard package: "
                      "`pip install tensorboard` (or `pip install unidl[tensorboard]`); TensorFlow's writer "
                      "is used instead when TensorFlow is installed"
                      + ("" if choice == "auto" else f" (writer={choice!r} was asked for and is not installed)"))


def _histogram(protos: _Protos, values: np.ndarray, bins: int = 30):
    """A TensorBoard histogram of ``values``: ``bucket_limit`` holds each bucket's right edge."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return protos.HistogramProto()
    counts, edges = np.histogram(values, bins=bins)
    return protos.HistogramProto(min=float(values.min()), max=float(values.max()), num=float(values.size),
                                 sum=float(values.sum()), sum_squares=float(np.dot(values, values)),
                                 bucket_limit=[float(e) for e in edges[1:]], bucket=[float(c) for c in counts])


class TensorBoard(Callback):
    """Writes event files for TensorBoard (``tensorboard --logdir logs``), laid out as Keras does.

    ``log_dir/train`` gets ``epoch_<name>`` scalars (loss, metrics,
    ``epoch_learning_rate``) at step = epoch; ``log_dir/validation`` gets the
    ``val_`` values under the same tags, so TensorBoard draws training and
    validation on one chart. With ``update_freq="batch"`` (or every N
    batches) ``log_dir/train`` also gets ``batch_<name>`` at step = the global
    batch count (continuing from the optimizer's step count, so a resumed run
    does not overwrite earlier steps). ``on_test_end`` (``evaluate`` or
    validation passing callbacks) writes ``evaluation_<name>_vs_iterations``
    to ``log_dir/validation`` at step = the optimizer's iterations.

    Args:
        log_dir: the directory (created when missing).
        histogram_freq: every that many epochs, a histogram of each weight
            (``<layer>/<weight>/histogram``, step = epoch); 0 writes none.
        write_graph: write the layer graph (the Graphs tab: one node per layer,
            its class, output shape and parameter count as attributes).
        write_steps_per_second: also log the training speed (``epoch_steps_per_second``,
            ``batch_steps_per_second``).
        update_freq: "epoch" (default), "batch", or an integer N: batch
            scalars every N batches.
        writer: "auto" (default): the ``tensorboard`` package's event writer,
            or TensorFlow's ``tf.summary`` writer when only TensorFlow is installed;
            "tensorboard" or "tensorflow" to insist on one. torch's ``SummaryWriter``
            is itself built on the ``tensorboard`` package, which is used directly.

    The writer is imported when training starts, never at ``import unidl``;
    without either package training stops at once with an ImportError naming
    ``pip install tensorboard``. ``write_images``, ``profile_batch`` and the
    embedding options of Keras are accepted and ignored with a warning.
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int = 0, embeddings_freq: int = 0, embeddings_metadata=None,
                 writer: str = "auto"):
        super().__init__()
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, (int, np.integer)) \
                or histogram_freq < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be a non-negative integer, got "
                             f"histogram_freq={histogram_freq!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, (int, np.integer))
                                       or update_freq <= 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive number of batches, "
                             f"got update_freq={update_freq!r}")
        if writer not in ("auto", *_WRITERS):
            raise ValueError(f"TensorBoard: writer must be 'auto', 'tensorboard' or 'tensorflow', got {writer!r}")
        ignored = [name for name, value, default in (("write_images", write_images, False),
                                                     ("profile_batch", profile_batch, 0),
                                                     ("embeddings_freq", embeddings_freq, 0),
                                                     ("embeddings_metadata", embeddings_metadata, None))
                   if value != default and not (name == "profile_batch" and value in (None, (0, 0)))]
        if ignored:
            warnings.warn(f"TensorBoard: {ignored} are not supported by unidl and are ignored", RuntimeWarning,
                          stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq, self.write_graph = int(histogram_freq), bool(write_graph)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = update_freq
        self.writer = writer
        self._writers: dict[str, Any] = {}
        self._writer_class = None
        self._global_train_batch: int | None = None
        self._batch_start = 0.0
        self._epoch_start = 0.0
        self._epoch_start_batch = 0

    # ------------------------------------------------------------ writers
    def _writer(self, run: str):
        """The event writer of ``log_dir/<run>`` ("train" or "validation"), opened on first use."""
        if run not in self._writers:
            if self._writer_class is None:
                self._writer_class = _event_writer_class(self.writer)
            directory = os.path.join(self.log_dir, run)
            os.makedirs(directory, exist_ok=True)
            self._writers[run] = self._writer_class(directory)
        return self._writers[run]

    def _scalars(self, run: str, values: dict[str, Any], step: int, prefix: str) -> None:
        writer = self._writer(run)
        items = []
        for name, value in values.items():
            if _is_real_number(value):
                items.append(writer.protos.Summary.Value(tag=f"{prefix}{name}", simple_value=float(value)))
        if items:
            writer.write(writer.protos.Summary(value=items), step)

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self._writer_class = _event_writer_class(self.writer)  # a missing package fails before any training
        self._global_train_batch = None  # read from the optimizer at the first batch (after any restore)
        if self.write_graph:
            self._write_model_graph()

    def on_train_end(self, logs=None):
        self._close()

    def _batches_so_far(self) -> int:
        if self._global_train_batch is None:
            optimizer = getattr(self.model, "optimizer", None)
            self._global_train_batch = int(getattr(optimizer, "iterations", 0) or 0)
        return self._global_train_batch

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self._epoch_start, self._epoch_start_batch = time.perf_counter(), self._batches_so_far()

    def on_train_batch_begin(self, batch, logs=None):
        import time
        self._global_train_batch = self._batches_so_far() + 1
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        import time
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        values = dict(logs or {})
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._batch_start
            values["steps_per_second"] = 1.0 / elapsed if elapsed > 0 else 0.0
        self._scalars("train", values, self._global_train_batch, "batch_")

    def on_epoch_end(self, epoch, logs=None):
        import time
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "current_learning_rate"):
            train["learning_rate"] = optimizer.current_learning_rate
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._epoch_start
            steps = self._batches_so_far() - self._epoch_start_batch
            train["steps_per_second"] = steps / elapsed if elapsed > 0 else 0.0
        self._scalars("train", train, epoch, "epoch_")
        if validation:
            self._scalars("validation", validation, epoch, "epoch_")
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not logs:
            return
        self._scalars("validation", {f"evaluation_{k}_vs_iterations": v for k, v in logs.items()},
                      int(optimizer.iterations), "")
        self._writer("validation").flush()

    # ------------------------------------------------------------ contents
    def _write_histograms(self, epoch: int) -> None:
        writer = self._writer("train")
        seen: set[int] = set()
        values = []
        for layer in self.model.layers:
            for weight in layer.weights:
                if id(weight) in seen:
                    continue
                seen.add(id(weight))
                name = weight.name if "/" in weight.name else f"{layer.name}/{weight.name}"
                values.append(writer.protos.Summary.Value(tag=f"{name}/histogram",
                                                          histo=_histogram(writer.protos, weight.numpy())))
        if values:
            writer.write(writer.protos.Summary(value=values), epoch)

    def _write_model_graph(self) -> None:
        """The layer graph as a GraphDef: one node per layer, named by its path, wired as the model is."""
        from .utils.plotting import layer_graph

        model = self.model
        if not getattr(model, "built", False):
            return  # built by the first batch of an iterable: nothing to draw yet
        writer = self._writer("train")
        graph = layer_graph(model, expand_nested=True)
        names = {}
        for node in graph.nodes:
            names[node.key] = "/".join([*map(str, node.cluster), str(node.layer.name or node.key)])
        inputs: dict[str, list[str]] = {}
        for src, dst in graph.edges:
            inputs.setdefault(dst, []).append(names[src])
        graph_def = writer.protos.GraphDef()
        for node in graph.nodes:
            layer = node.layer
            item = graph_def.node.add()
            item.name, item.op = names[node.key], type(layer).__name__
            item.input.extend(inputs.get(node.key, []))
            shape = getattr(layer, "output_shape", None)
            if shape is None and getattr(layer, "shape", None) is not None:
                shape = (None, *layer.shape)  # an Input declares one sample's shape
            item.attr["output_shape"].s = str(shape).encode()
            params = int(sum(int(np.prod(w.shape)) for w in getattr(layer, "weights", [])))
            item.attr["params"].i = params
        writer.write_graph(graph_def)
        writer.flush()


# ---------------------------------------------------------- BackupAndRestore

_BACKUP_FORMAT = "unidl.training_state"
_BACKUP_VERSION = 1


def _generators(model) -> dict[str, np.random.Generator]:
    """Every NumPy generator of the model and its layers, by path ("model/shuffle_rng", "model/dropout/_mask_rng").

    They decide the batch order and dropout masks: restoring their states makes a resumed run draw what
    the uninterrupted run would have drawn.
    """
    found: dict[str, np.random.Generator] = {}
    seen: set[int] = set()

    def walk(obj, path: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for attr, value in sorted(vars(obj).items()):
            if isinstance(value, np.random.Generator):
                found[f"{path}/{attr}"] = value
        subs = obj.layers if getattr(obj, "_kind", "") == "model" else obj._sublayers()
        for sub in subs:
            walk(sub, f"{path}/{sub.name}")

    walk(model, "model")
    return found


class BackupAndRestore(Callback):
    """Backs up the training state so that a ``fit`` interrupted midway resumes where it stopped.

    At the end of each epoch the callback writes, atomically, one file in
    ``backup_dir``: the weights, the optimizer's state (slots, step count,
    learning rate), the number of epochs done, and the state of the NumPy
    generators that draw the batch order and dropout masks. When ``fit`` is
    called again with a ``BackupAndRestore`` on the same ``backup_dir`` (after
    an exception, a KeyboardInterrupt, a killed process and a rebuilt model),
    it restores that state and continues with the next epoch: the final
    weights equal those of an uninterrupted run (bit for bit on the NumPy
    backend). After a ``fit`` that ends normally (including an EarlyStopping
    stop) the backup is deleted, unless ``delete_checkpoint=False``.

    Args:
        backup_dir: a directory for this run's backup only (created when missing).
        save_freq: "epoch" (default), or an integer N: also back up every N
            batches. A run interrupted mid-epoch then restarts that epoch from
            the weights of the last batch backup (as Keras does): not an exact
            replay, since part of the epoch is trained twice.
        double_checkpoint: keep the previous backup too, and fall back to it
            when the latest cannot be read.
        delete_checkpoint: delete the backup once ``fit`` completes.

    Like Keras, it resumes what the model owns: other callbacks' own state
    (ReduceLROnPlateau's patience counter, EarlyStopping's best value) starts
    over, and so does History. Put it after callbacks that change the
    learning rate at epoch end, so the backup holds the rate they set.
    Needs a ``fit`` that honours ``model._initial_epoch`` (set in
    ``on_train_begin``, as Keras's fit does); a fit that does not is detected
    and reported, never silently retrained from epoch 0.
    """

    FILENAME = "training_state.zip"
    PREVIOUS = "training_state.prev.zip"

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer))
                                     or save_freq <= 0):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: save_freq={save_freq!r}. Expected "
                             "either 'epoch' or a positive integer (a number of batches).")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint, self.delete_checkpoint = bool(double_checkpoint), bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, self.FILENAME)
        self._previous_path = os.path.join(self.backup_dir, self.PREVIOUS)
        self._current_epoch = 0
        self._batches_since_save = 0
        self._epoch_start_generators: dict[str, Any] = {}
        self._pending: dict | None = None  # a backup read at train begin, applied once the model is built
        self._resume_epoch: int | None = None

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self._batches_since_save = 0
        self._resume_epoch = None
        state = self._read_backup()
        if state is None:
            return
        self._pending = state
        epoch = state["metadata"]["epoch"]
        self._current_epoch = epoch
        if getattr(self.model, "built", False):
            self._apply(state)
        # Keras's contract: fit reads model._initial_epoch after on_train_begin.
        self.model._initial_epoch = epoch
        self._resume_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if self._resume_epoch is not None:
            resume, self._resume_epoch = self._resume_epoch, None
            if epoch < resume:
                raise RuntimeError(
                    f"BackupAndRestore restored the state after epoch {resume} from {self._path!r}, but fit started "
                    f"at epoch {epoch + 1}: this fit does not read model._initial_epoch after on_train_begin (the "
                    f"Keras contract for resuming). Pass fit(..., initial_epoch={resume}) to resume by hand.")
        self._current_epoch = epoch
        self._batches_since_save = 0
        if self.save_freq != "epoch":
            self._epoch_start_generators = self._generator_states()

    def on_train_batch_begin(self, batch, logs=None):
        if self._pending is not None:  # the model was built by this first batch (an iterable of batches)
            self._apply(self._pending)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            # The epoch in progress restarts on resume, with the batch order it had.
            self._save(self._current_epoch, batch + 1, self._epoch_start_generators)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._save(epoch + 1, 0, self._generator_states())

    def on_train_end(self, logs=None):
        self._pending = None
        if self.delete_checkpoint:
            self.delete_backup()

    def delete_backup(self) -> None:
        """Remove this callback's backup files (and ``backup_dir`` if that leaves it empty)."""
        from .files import remove_stale_temporaries

        for path in (self._path, self._previous_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir):
            for name in (self.FILENAME, self.PREVIOUS):
                remove_stale_temporaries(self.backup_dir, name)
            try:
                os.rmdir(self.backup_dir)
            except OSError:  # other files are there: not ours to delete
                pass

    # ------------------------------------------------------------ state
    def _generator_states(self) -> dict[str, Any]:
        return {path: g.bit_generator.state for path, g in _generators(self.model).items()}

    def _save(self, epoch: int, batch: int, generators: dict[str, Any]) -> None:
        import json
        import zipfile

        from . import __version__
        from .files import atomic_write, write_npz, zip_info

        model = self.model
        optimizer = getattr(model, "optimizer", None)
        scale = None if getattr(model, "dtype_policy", None) is None else model.dtype_policy.loss_scale
        metadata = {
            "format": _BACKUP_FORMAT, "format_version": _BACKUP_VERSION, "unidl_version": __version__,
            "model": model.name, "epoch": int(epoch), "batch": int(batch),
            "optimizer_iterations": None if optimizer is None else int(optimizer.iterations),
            "learning_rate": (None if optimizer is None or callable(optimizer.learning_rate)
                              else float(optimizer.learning_rate)),
            "loss_scale": None if scale is None else {"scale": scale.scale, "good_steps": scale.good_steps,
                                                      "skipped_steps": scale.skipped_steps},
            "generators": generators,
        }
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            os.replace(self._path, self._previous_path)
        with atomic_write(self._path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(zip_info("metadata.json"), json.dumps(metadata).encode())
            with zf.open(zip_info("model.weights.npz"), "w", force_zip64=True) as member:
                write_npz(member, saving._weights_arrays(model))
            if optimizer is not None:
                with zf.open(zip_info("optimizer.npz"), "w", force_zip64=True) as member:
                    write_npz(member, saving._optimizer_arrays(model))

    def _read_backup(self) -> dict | None:
        """The latest readable backup (the previous one if the latest is damaged), or None."""
        from .files import SavingError

        paths = [p for p in (self._path, self._previous_path if self.double_checkpoint else None)
                 if p and os.path.exists(p)]
        errors = []
        for path in paths:
            try:
                return self._read(path)
            except (SavingError, OSError, KeyError, ValueError) as exc:
                errors.append(f"{path}: {exc}")
        if errors:
            raise saving.SavingError("BackupAndRestore cannot resume: " + "; ".join(errors) + ". Delete "
                                     f"{self.backup_dir!r} to start over.")
        return None

    def _read(self, path: str) -> dict:
        from .files import WeightsFileError, open_zip, read_bytes, read_json_member, read_member

        source = f"backup {path!r}"
        zf = open_zip(read_bytes(path, "backup"), source)
        metadata = read_json_member(zf, "metadata.json", source)
        if not isinstance(metadata, dict) or metadata.get("format") != _BACKUP_FORMAT:
            raise WeightsFileError(f"{source} is not a unidl training-state backup")
        if not isinstance(metadata.get("format_version"), int) or metadata["format_version"] > _BACKUP_VERSION:
            raise WeightsFileError(f"{source} has format version {metadata.get('format_version')!r}; this unidl "
                                   f"reads versions up to {_BACKUP_VERSION}")
        epoch = metadata.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise WeightsFileError(f"{source}: 'epoch' must be a non-negative integer, got {epoch!r}")
        members = {"weights": read_member(zf, "model.weights.npz", source, None)}
        if "optimizer.npz" in zf.namelist():
            members["optimizer"] = read_member(zf, "optimizer.npz", source, None)
        return {"path": path, "metadata": metadata, **members}

    def _apply(self, state: dict) -> None:
        """Put the backed-up weights, optimizer state and generator states into the model."""
        from .files import read_npz

        self._pending = None
        model, path, metadata = self.model, state["path"], state["metadata"]
        try:
            shapes = saving._expected_shapes(model)
            weights = read_npz(state["weights"], f"the weights in backup {path!r}", shapes)
            pairs = saving._matched(model, weights, f"backup {path!r}")
            optimizer = getattr(model, "optimizer", None)
            slots = None
            if optimizer is not None and "optimizer" in state:
                slot_shapes = {k: tuple(b.shape(h)) for k, (b, h) in saving._slot_handles_after_ensure(model).items()}
                slots = read_npz(state["optimizer"], f"the optimizer state in backup {path!r}", slot_shapes)
        except saving.SavingError as exc:
            raise type(exc)(f"BackupAndRestore: the backup in {self.backup_dir!r} does not fit model "
                            f"{model.name!r} (was it written by another model? delete the directory to start "
                            f"over): {exc}") from exc
        saving._assign_all(pairs)
        if slots is not None:
            saving._restore_optimizer(model, slots, metadata.get("optimizer_iterations"), path)
        elif optimizer is not None and metadata.get("optimizer_iterations") is not None:
            optimizer.iterations = int(metadata["optimizer_iterations"])
        if optimizer is not None and metadata.get("learning_rate") is not None \
                and not callable(optimizer.learning_rate):
            optimizer.learning_rate = float(metadata["learning_rate"])
        scale = None if getattr(model, "dtype_policy", None) is None else model.dtype_policy.loss_scale
        if scale is not None and isinstance(metadata.get("loss_scale"), dict):
            scale.scale = float(metadata["loss_scale"]["scale"])
            scale.good_steps = int(metadata["loss_scale"]["good_steps"])
            scale.skipped_steps = int(metadata["loss_scale"]["skipped_steps"])
        generators = _generators(model)
        for key, value in (metadata.get("generators") or {}).items():
            generator = generators.get(key)
            if generator is not None and isinstance(value, dict) \
                    and value.get("bit_generator") == generator.bit_generator.state.get("bit_generator"):
                generator.bit_generator.state = value

"""Callbacks that write files: ModelCheckpoint (the model or its weights, every epoch or at its best)
and BackupAndRestore (the whole training state, so that an interrupted fit resumes)."""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from .. import saving
from ..files import SavingError, remove_stale_temporaries
from .base import Callback
from .monitoring import _mode_sign


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
        return {path: g.bit_generator.state for path, g in saving.random_generators(self.model).items()}

    def _save(self, epoch: int, batch: int, generators: dict[str, Any]) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            os.replace(self._path, self._previous_path)
        saving.save_training_state(self.model, self._path, epoch, batch, generators)

    def _read_backup(self) -> dict | None:
        """The latest readable backup (the previous one if the latest is damaged), or None."""
        paths = [p for p in (self._path, self._previous_path if self.double_checkpoint else None)
                 if p and os.path.exists(p)]
        errors = []
        for path in paths:
            try:
                return saving.read_training_state(path)
            except (SavingError, OSError, KeyError, ValueError) as exc:
                errors.append(f"{path}: {exc}")
        if errors:
            raise SavingError("BackupAndRestore cannot resume: " + "; ".join(errors) + ". Delete "
                              f"{self.backup_dir!r} to start over.")
        return None

    def _apply(self, state: dict) -> None:
        """Put the backed-up weights, optimizer state and generator states into the model."""
        self._pending = None
        try:
            saving.restore_training_state(self.model, state)
        except SavingError as exc:
            raise type(exc)(f"BackupAndRestore: the backup in {self.backup_dir!r} does not fit model "
                            f"{self.model.name!r} (was it written by another model? delete the directory to start "
                            f"over): {exc}") from exc

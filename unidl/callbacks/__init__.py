"""Callbacks with Keras's hook names, called by ``Model.fit``.

A callback sees ``self.model`` and receives ``logs`` dicts of Python floats.
Setting ``model.stop_training = True`` ends ``fit`` after the current batch or epoch.

Callbacks that watch a value (``monitor="val_loss"``) take ``mode``: "min",
"max", or "auto", which means "max" for accuracy/AUC-like names ("acc" in the
name, or ending in "auc") and "min" for everything else.

Modules: ``base`` (Callback, CallbackList, History, LambdaCallback), ``monitoring``
(EarlyStopping, TerminateOnNaN, LearningRateScheduler, ReduceLROnPlateau, CSVLogger),
``checkpoints`` (ModelCheckpoint, BackupAndRestore) and ``tensorboard``.
"""
from __future__ import annotations

from .base import Callback, CallbackList, History, LambdaCallback
from .checkpoints import BackupAndRestore, ModelCheckpoint
from .monitoring import CSVLogger, EarlyStopping, LearningRateScheduler, ReduceLROnPlateau, TerminateOnNaN
from .tensorboard import TensorBoard

__all__ = ["Callback", "CallbackList", "History", "LambdaCallback", "EarlyStopping", "TerminateOnNaN",
           "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "ModelCheckpoint", "BackupAndRestore",
           "TensorBoard"]

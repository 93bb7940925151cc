"""Callbacks with Keras's hook names, called by ``Model.fit``.

A callback sees ``self.model`` and receives ``logs`` dicts of Python floats.
Setting ``model.stop_training = True`` ends ``fit`` after the current batch or epoch.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable


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

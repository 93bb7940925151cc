"""The callback protocol (Keras's hook names), the list ``fit`` drives, and History."""
from __future__ import annotations

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
    # Keras's older names: the train-batch hooks call them, so overriding either works.
    def on_batch_begin(self, batch: int, logs=None): ...
    def on_batch_end(self, batch: int, logs=None): ...

    def on_train_batch_begin(self, batch: int, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch: int, logs=None): ...
    def on_test_batch_end(self, batch: int, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch: int, logs=None): ...
    def on_predict_batch_end(self, batch: int, logs=None): ...


_ALIASES = {"on_train_batch_end": ("on_batch_end",), "on_train_batch_begin": ("on_batch_begin",)}


class CallbackList:
    """Calls every callback's hook in order."""

    def __init__(self, callbacks: Iterable[Callback], model, params: dict[str, Any]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be unidl.callbacks.Callback instances, got {cb!r}")
            cb.set_model(model)
            cb.set_params(params)

    def overrides(self, hook: str) -> bool:
        """Whether any callback implements ``hook`` (or its older alias): the loop then reads the batch
        logs back from the device for it; otherwise they stay there."""
        names = {hook, *_ALIASES.get(hook, ())}
        return any(name in vars(cb) or getattr(type(cb), name, None) is not getattr(Callback, name, None)
                   for cb in self.callbacks for name in names)

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


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise TypeError(f"LambdaCallback: unknown hook {name!r}")
            setattr(self, name, fn)

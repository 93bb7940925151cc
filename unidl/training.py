"""The training loop: ``fit``, ``evaluate``, ``predict`` and ``summary`` of every Model.

These functions are the bodies of the Model methods of the same names
(``Model.fit = training.fit``). Data flow of one training step::

    numpy batch --backend.convert--> tensors
    loss, grads = backend.value_and_grad(forward + loss + regularization)
    optimizer.update_all(grads)            (written once over unidl.ops)
    the step above may be compiled by the backend (tf.function...) when the model allows
    loss and metrics --> Python floats --> progress bar, History, callbacks

Batch order comes from the model's seeded generator, never a framework's.
"""
from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Sequence

import numpy as np

from . import metrics as metrics_mod
from .callbacks import Callback, CallbackList, History
from .ops import use_backend


class DataError(ValueError):
    """Training data that cannot be used as given."""


# ------------------------------------------------------------------ helpers

def as_numeric_array(data: Any, argument: str) -> np.ndarray:
    """``data`` as a real-valued NumPy array, or a DataError saying why not."""
    if hasattr(data, "numpy") and not isinstance(data, np.ndarray):
        data = data.numpy()  # a framework tensor handed in by the user
    try:
        array = np.asarray(data)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{argument} could not be turned into an array: {exc}") from exc
    if array.dtype == object or array.dtype.kind in "USV":
        raise DataError(f"{argument} must be numeric, got an array of dtype {array.dtype} "
                        f"(e.g. {array.ravel()[:1].tolist()}); convert strings/objects to numbers first")
    if array.dtype.kind == "c":
        raise DataError(f"{argument} is complex ({array.dtype}); unidl trains on real numbers only")
    if array.ndim == 0:
        raise DataError(f"{argument} must have a batch axis, got a scalar")
    return array


def _check_batch_size(batch_size: Any) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got batch_size={batch_size!r}")
    return int(batch_size)


def _prepare_x(model, x, argument: str = "x") -> np.ndarray:
    x = as_numeric_array(x, argument)
    if len(x) == 0:
        raise DataError(f"{argument} is empty: there is nothing to train or evaluate on")
    model.ensure_built((None, *x.shape[1:]))
    expected = model.input_shape
    if x.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected[1:], x.shape[1:])):
        first = model.layers[0].name if model.layers else "input"
        raise DataError(f"{argument} has samples of shape {x.shape[1:]}, but model {model.name!r} expects "
                        f"{tuple(expected[1:])} (layer {first!r} was built for input shape {expected})")
    return x.astype(model.backend.dtype, copy=False) if x.dtype.kind == "f" or x.dtype.kind in "iub" else x


def _prepare_xy(model, x, y, sample_weight=None, class_weight=None):
    if model.backend is None:
        raise RuntimeError(f"model {model.name!r} must be compiled before training or evaluating: call "
                           "model.compile(optimizer=..., loss=..., backend=...)")
    if model.loss is None:
        raise RuntimeError(f"model {model.name!r} was compiled without a loss; pass loss=... to compile()")
    x = _prepare_x(model, x)
    if y is None:
        raise DataError("y is missing: fit and evaluate need targets")
    y = as_numeric_array(y, "y")
    if len(y) != len(x):
        raise DataError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    y = model.loss.check_labels(y, model.output_shape)
    if y.dtype.kind == "f" or y.dtype.kind == "b":
        y = y.astype(model.backend.dtype)
    weights = None
    if sample_weight is not None:
        weights = as_numeric_array(sample_weight, "sample_weight").astype(np.float64)
        if weights.shape != (len(x),):
            raise DataError(f"sample_weight must have shape ({len(x)},), got {weights.shape}")
    if class_weight is not None:
        labels = y.argmax(-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0].round()
        per_sample = np.array([class_weight.get(int(c), 1.0) for c in labels])
        weights = per_sample if weights is None else weights * per_sample
    if weights is not None:
        weights = weights.astype(model.backend.dtype)
    return x, y, weights


def _resolve_metrics(model) -> list:
    return [metrics_mod.get(m, loss=model.loss, output_shape=model.output_shape) for m in model._metric_ids]


def _batches(n: int, batch_size: int, order: np.ndarray | None):
    for start in range(0, n, batch_size):
        yield (slice(start, start + batch_size) if order is None else order[start:start + batch_size])


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return verbose


class ProgressBar:
    """Keras-style progress: a live bar on a terminal (verbose=1), one line per epoch otherwise."""

    def __init__(self, steps: int, verbose: int, stream=None):
        self.steps, self.verbose = steps, verbose
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    @staticmethod
    def format_logs(logs: dict[str, float]) -> str:
        return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())

    def update(self, step: int, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.05 and step < self.steps):
            return
        self._last_draw = now
        width = 30
        done = int(width * step / self.steps)
        bar = "=" * max(done - 1, 0) + (">" if done < width else "=") + "." * (width - done)
        self.stream.write(f"\r{step}/{self.steps} [{bar}] - {self.format_logs(logs)}")
        self.stream.flush()

    def finish(self, logs: dict[str, float]) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.steps, 1)
        unit = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
        prefix = f"\r{self.steps}/{self.steps} [{'=' * 30}] - " if self.live else f"{self.steps}/{self.steps} - "
        self.stream.write(f"{prefix}{elapsed:.2f}s {unit} - {self.format_logs(logs)}\n")
        self.stream.flush()


# --------------------------------------------------------------- the steps

def train_step(self, x, y, sample_weight=None):
    """One optimizer step on a batch of backend tensors; returns (loss, y_pred).

    Override it in a Model subclass for custom training (it runs with the
    model's backend bound, so ``unidl.ops`` work inside).
    """
    trainable = self.trainable_weights
    key = tuple(map(id, trainable))
    if self._train_function is None or self._train_function[0] != key:
        self._train_function = (key, _make_train_function(self, trainable))
    loss, y_pred = self._train_function[1](x, y, sample_weight, self.optimizer.step_scalars())
    self.optimizer.iterations += 1
    return loss, y_pred


def _make_train_function(model, trainable: list):
    """The generic step, handed to the backend to compile when that is allowed and useful."""
    backend = model.backend

    def step(x, y, sample_weight, scalars):
        def loss_fn():
            y_pred = model.call(x, training=True)
            return total_loss(model, y, y_pred, sample_weight), y_pred

        loss, y_pred, grads = backend.value_and_grad(loss_fn, [w.value for w in trainable])
        with backend.no_grad():
            model.optimizer.update_all(grads, trainable, scalars)
        return loss, y_pred

    return backend.compile_step(step) if _may_compile(model) else step


def _may_compile(model) -> bool:
    if model.jit_compile is False:
        return False
    # Layers drawing host randomness each call (Dropout's NumPy masks) would be frozen
    # into a traced graph, so such models run eagerly.
    host_random = [layer.name for layer in model.layers if getattr(layer, "draws_host_randomness", False)]
    if host_random and model.jit_compile is True:
        warnings.warn(f"jit_compile=True ignored: layers {host_random} draw NumPy random numbers at every "
                      "call and run eagerly", RuntimeWarning, stacklevel=4)
    return not host_random


def total_loss(model, y, y_pred, sample_weight=None):
    """The compiled loss plus every layer's regularization penalty."""
    from . import ops
    loss = model.loss(y, y_pred, sample_weight)
    for layer in model.layers:
        for penalty in layer.regularization_losses():
            loss = ops.add(loss, penalty)
    return loss


def test_step(self, x, y, sample_weight=None):
    """Loss and predictions on a batch, in inference mode; returns (loss, y_pred)."""
    with self.backend.no_grad():
        y_pred = self.call(x, training=False)
        return total_loss(self, y, y_pred, sample_weight), y_pred


# ---------------------------------------------------------------- the loops

def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto",
        callbacks: Sequence[Callback] | None = None, validation_split: float = 0.0,
        validation_data=None, shuffle: bool = True, class_weight: dict | None = None,
        sample_weight=None, initial_epoch: int = 0) -> History:
    """Train for ``epochs`` passes over (x, y); returns a History.

    Args:
        x, y: NumPy arrays (or anything ``np.asarray`` accepts) with the same number of samples.
        batch_size: samples per step (default 32). epochs: passes over the data.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch ("auto" = 1).
        validation_split: fraction of the *last* samples held out for validation (before shuffling).
        validation_data: (x_val, y_val) or (x_val, y_val, sample_weight_val).
        shuffle: reshuffle each epoch with the model's seeded generator.
        class_weight: {class id: weight}; sample_weight: one weight per sample.
    """
    batch_size = _check_batch_size(batch_size)
    verbose = _verbosity(verbose)
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got epochs={epochs!r}")
    x, y, weights = _prepare_xy(self, x, y, sample_weight, class_weight)
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    if validation_split and validation_data is None:
        cut = int(len(x) * (1.0 - validation_split))
        if cut == 0 or cut == len(x):
            raise DataError(f"validation_split={validation_split} leaves no training or no validation "
                            f"samples out of {len(x)}")
        validation_data = (x[cut:], y[cut:]) + ((weights[cut:],) if weights is not None else ())
        x, y, weights = x[:cut], y[:cut], (None if weights is None else weights[:cut])

    metrics = _resolve_metrics(self)
    backend = self.backend
    steps = math.ceil(len(x) / batch_size)
    history = History()
    cbs = CallbackList([history, *(callbacks or [])], self,
                       {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
    self.stop_training = False
    self.history = history
    loss_metric = metrics_mod.Metric(lambda *_: None, "loss")
    with use_backend(backend):
        self.optimizer.ensure_slots(self.trainable_weights)
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            cbs.on_epoch_begin(epoch)
            bar = ProgressBar(steps, verbose)
            for m in (loss_metric, *metrics):
                m.reset()
            order = self.shuffle_rng.permutation(len(x)) if shuffle else None
            logs: dict[str, float] = {}
            for step, idx in enumerate(_batches(len(x), batch_size, order)):
                cbs.on_train_batch_begin(step)
                x_np = x[idx]
                xb, yb = backend.convert(x_np), backend.convert(y[idx])
                wb = None if weights is None else backend.convert(weights[idx])
                loss, y_pred = self.train_step(xb, yb, wb)
                batch_loss = float(backend.to_numpy(loss))
                loss_metric.update_value(batch_loss, len(x_np))
                for m in metrics:
                    m.update(yb, y_pred, wb)
                logs = {"loss": loss_metric.result(), **{m.name: m.result() for m in metrics}}
                cbs.on_train_batch_end(step, logs={**logs, "loss": batch_loss})
                bar.update(step + 1, logs)
                if not math.isfinite(batch_loss):
                    _stop_on_invalid_loss(self, epoch, step, batch_loss)
                    break
                if self.stop_training:
                    break
            if validation_data is not None and not self.stop_training:
                val = _evaluate_arrays(self, *_split_validation(self, validation_data), batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            bar.finish(logs)
            cbs.on_epoch_end(epoch, logs=logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs=logs if epochs > initial_epoch else {})
    return history


def _stop_on_invalid_loss(model, epoch: int, step: int, loss: float) -> None:
    model.stop_training = True
    message = (f"training stopped: the loss became {loss} at epoch {epoch + 1}, batch {step + 1}. "
               "Common causes: a learning rate too high, unscaled inputs, or log/divide of zero in a "
               "custom loss. Try a smaller learning_rate or clipnorm=1.0.")
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _split_validation(model, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise DataError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight)")
    x_val, y_val, *rest = validation_data
    return _prepare_xy(model, x_val, y_val, rest[0] if rest else None)


def _evaluate_arrays(model, x, y, weights, batch_size: int, bar: ProgressBar | None = None) -> dict[str, float]:
    backend = model.backend
    metrics = _resolve_metrics(model)
    loss_metric = metrics_mod.Metric(lambda *_: None, "loss")
    with use_backend(backend):
        for step, idx in enumerate(_batches(len(x), batch_size, None)):
            x_np = x[idx]
            xb, yb = backend.convert(x_np), backend.convert(y[idx])
            wb = None if weights is None else backend.convert(weights[idx])
            loss, y_pred = model.test_step(xb, yb, wb)
            loss_metric.update_value(float(backend.to_numpy(loss)), len(x_np))
            for m in metrics:
                m.update(yb, y_pred, wb)
            if bar is not None:
                bar.update(step + 1, {"loss": loss_metric.result()})
    return {"loss": loss_metric.result(), **{m.name: m.result() for m in metrics}}


def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto",
             sample_weight=None, return_dict: bool = False):
    """Loss (then each metric, in compile order) over (x, y) in inference mode.

    Returns a float when there are no metrics, else a list ``[loss, *metrics]``
    (or a dict with ``return_dict=True``).
    """
    batch_size = _check_batch_size(batch_size)
    verbose = _verbosity(verbose)
    x, y, weights = _prepare_xy(self, x, y, sample_weight)
    bar = ProgressBar(math.ceil(len(x) / batch_size), verbose)
    results = _evaluate_arrays(self, x, y, weights, batch_size, bar)
    bar.finish(results)
    if return_dict:
        return results
    values = list(results.values())
    return values[0] if len(values) == 1 else values


def predict(self, x, batch_size: int | None = None, verbose=0) -> np.ndarray:
    """Model outputs for x, computed in batches in inference mode, as a NumPy array."""
    if self.backend is None:
        raise RuntimeError(f"model {self.name!r} must be compiled (to choose a backend) before predict(): "
                           "call model.compile(backend=...)")
    batch_size = _check_batch_size(batch_size)
    x = _prepare_x(self, x)
    backend = self.backend
    bar = ProgressBar(math.ceil(len(x) / batch_size), _verbosity(verbose))
    outputs = []
    with use_backend(backend), backend.no_grad():
        for step, idx in enumerate(_batches(len(x), batch_size, None)):
            outputs.append(backend.to_numpy(self.call(backend.convert(x[idx]), training=False)))
            bar.update(step + 1, {})
    bar.finish({})
    return np.concatenate(outputs, axis=0)


# ------------------------------------------------------------------ summary

def print_summary(model, print_fn=print) -> None:
    model._require_built("summary")
    rows = [(f"{layer.name} ({type(layer).__name__})", str(layer.output_shape), f"{layer.count_params():,}")
            for layer in model.layers]
    headers = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)] if rows else [14, 14, 9]
    line = "+" + "+".join("-" * w for w in widths) + "+"

    def fmt(cells):
        return "|" + "|".join(f" {c:<{w - 2}} " if i < 2 else f" {c:>{w - 2}} "
                              for i, (c, w) in enumerate(zip(cells, widths))) + "|"

    total = model.count_params()
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    backend = f", backend: {model.backend.name} ({model.backend.dtype})" if model.backend else ""
    out = [f'Model: "{model.name}"{backend}', line, fmt(headers), line.replace("-", "=")]
    out += [fmt(r) for r in rows]
    out += [line, f" Total params: {total:,}", f" Trainable params: {trainable:,}",
            f" Non-trainable params: {total - trainable:,}"]
    for text in out:
        print_fn(text)

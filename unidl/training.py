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

from . import losses as losses_mod
from . import metrics as metrics_mod
from . import ops
from .callbacks import Callback, CallbackList, History
from .data import (ArrayData, DataError, IterableData, as_numeric_array, is_iterable_data, pack_outputs,
                   prepare_weights, prepare_x, prepare_y)
from .functional import flatten
from .ops import use_backend
from .variables import structure_version

__all__ = ["fit", "evaluate", "predict", "train_step", "test_step", "total_loss", "DataError",
           "as_numeric_array"]


# ------------------------------------------------------------------ helpers

def _check_batch_size(batch_size: Any) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got batch_size={batch_size!r}")
    return int(batch_size)


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return verbose


def _require_compiled(model, what: str) -> None:
    if model.backend is None:
        raise RuntimeError(f"model {model.name!r} must be compiled before {what}: call "
                           "model.compile(optimizer=..., loss=..., backend=...)")


def resolve_losses(model) -> list[tuple[Any, float]]:
    """One (Loss, weight) per model output, from compile's ``loss`` and ``loss_weights``."""
    spec, weights = model._loss_spec, model._loss_weights
    if spec is None:
        raise RuntimeError(f"model {model.name!r} was compiled without a loss; pass loss=... to compile()")
    names = model.output_names
    n = len(names)

    def per_output(value, what):
        if isinstance(value, dict):
            unknown = set(value) - set(names)
            if unknown:
                raise ValueError(f"{what} names unknown outputs {sorted(unknown)}; outputs: {names}")
            return [value.get(name) for name in names]
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(f"{what} has {len(value)} entries for a model with {n} outputs {names}")
            return list(value)
        return [value] * n

    losses = per_output(spec, "loss")
    factors = per_output(weights, "loss_weights") if weights is not None else [1.0] * n
    return [(losses_mod.get(loss), 1.0 if w is None else float(w))
            for loss, w in zip(losses, factors) if loss is not None]


def _resolve_metrics(model, losses) -> list[tuple[int, Any]]:
    """(output index, Metric) pairs; names get the output's name when there are several outputs."""
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    names = model.output_names
    resolved = []
    ids = model._metric_ids
    if isinstance(ids, dict):
        unknown = set(ids) - set(names)
        if unknown:
            raise ValueError(f"metrics names unknown outputs {sorted(unknown)}; outputs: {names}")
    for i, (shape, (loss, _)) in enumerate(zip(shapes, losses)):
        wanted = ids.get(names[i], []) if isinstance(ids, dict) else ids
        for m in ([wanted] if isinstance(wanted, str) else wanted):
            metric = metrics_mod.get(m, loss=loss, output_shape=shape)
            if len(shapes) > 1:
                metric = metrics_mod.Metric(metric.fn, f"{names[i]}_{metric.name}")
            resolved.append((i, metric))
    return resolved


def _array_data(model, x, y, sample_weight=None, class_weight=None) -> ArrayData:
    xs = prepare_x(model, x)  # builds the model from the data when needed
    model._losses = resolve_losses(model)
    ys = prepare_y(model, y, len(xs[0]), model._losses)
    weights = prepare_weights(model, len(xs[0]), ys, sample_weight, class_weight)
    return ArrayData(xs, ys, weights)


def _data(model, x, y, sample_weight, class_weight, steps):
    """ArrayData or IterableData for fit/evaluate."""
    if is_iterable_data(x):
        if y is not None:
            raise DataError("when x is a generator or iterable of batches, y must be None "
                            "(each batch is (x, y) or (x, y, sample_weight))")
        return IterableData(model, x, steps, resolve_losses)
    return _array_data(model, x, y, sample_weight, class_weight)


def _to_backend(backend, batch):
    """NumPy batch structure -> backend tensors (None stays None)."""
    if batch is None:
        return None
    if isinstance(batch, list):
        return [backend.convert(a) for a in batch]
    return backend.convert(batch)


class ProgressBar:
    """Keras-style progress: a live bar on a terminal (verbose=1), one line per epoch otherwise."""

    def __init__(self, steps: int | None, verbose: int, stream=None):
        self.steps, self.verbose, self.done = steps, verbose, 0
        self.stream = stream or sys.stdout
        self.live = verbose == 1 and getattr(self.stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self._last_draw = 0.0

    @staticmethod
    def format_logs(logs: dict[str, float]) -> str:
        return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())

    def update(self, step: int, logs: dict[str, float]) -> None:
        self.done = step
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.05 and step != self.steps):
            return
        self._last_draw = now
        if self.steps:
            width = 30
            filled = int(width * step / self.steps)
            bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled)
            self.stream.write(f"\r{step}/{self.steps} [{bar}] - {self.format_logs(logs)}")
        else:  # an iterable of unknown length
            self.stream.write(f"\r{step} steps - {self.format_logs(logs)}")
        self.stream.flush()

    def finish(self, logs: dict[str, float]) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self.start
        steps = self.steps or self.done
        per_step = elapsed / max(steps, 1)
        unit = f"{per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us/step"
        prefix = f"\r{steps}/{steps} [{'=' * 30}] - " if self.live else f"{steps}/{steps} - "
        self.stream.write(f"{prefix}{elapsed:.2f}s {unit} - {self.format_logs(logs)}\n")
        self.stream.flush()


# --------------------------------------------------------------- the steps

def train_step(self, x, y, sample_weight=None):
    """One optimizer step on a batch of backend tensors; returns (loss, y_pred).

    Override it in a Model subclass for custom training (it runs with the
    model's backend bound, so ``unidl.ops`` work inside).
    """
    # The walk over the layers for the trainable weights costs ~40 us; redo it only after a weight,
    # sublayer or trainable flag changed anywhere (unidl.variables.structure_version).
    version = structure_version()
    if self._trainable_cache is None or self._trainable_cache[0] != version:
        self._trainable_cache = (version, self.trainable_weights)
    trainable = self._trainable_cache[1]
    key = tuple(map(id, trainable))
    if self._train_function is None or self._train_function[0] != key:
        self._train_function = (key, _make_train_function(self, trainable))
    scalars = self.optimizer.step_scalars()
    if self.distribute is not None:
        scalars["batch_share"] = self._batch_share
    scaler = _loss_scale(self)
    skipped = scaler.skipped_steps if scaler is not None else 0
    loss, y_pred = self._train_function[1](x, y, sample_weight, scalars)
    if scaler is None or scaler.skipped_steps == skipped:  # a step skipped for overflow is not counted
        self.optimizer.iterations += 1
    return loss, y_pred


def _make_train_function(model, trainable: list):
    """The generic step, handed to the backend to compile when that is allowed and useful."""
    backend = model.backend
    scaler = _loss_scale(model)

    def step(x, y, sample_weight, scalars):
        def loss_fn():
            y_pred = model.forward(x, training=True)
            loss = total_loss(model, y, y_pred, sample_weight)
            if scaler is None:
                return loss, y_pred
            return ops.multiply(loss, scaler.scale), (y_pred, loss)

        loss, y_pred, grads = backend.value_and_grad(loss_fn, [w.value for w in trainable])
        with backend.no_grad():
            if scaler is not None:
                (y_pred, loss), grads = y_pred, [ops.multiply(g, 1.0 / scaler.scale) for g in grads]
            if model.distribute is not None:  # sum every process's share: the whole batch's gradient
                grads = model.distribute.reduce_gradients(grads, scalars.pop("batch_share"))
            if scaler is not None:
                finite = _all_finite(backend, grads)
                scaler.update(finite)
                if not finite:  # overflow in float16: skip the update; the scale was halved
                    return loss, y_pred
            model.optimizer.update_all(grads, trainable, scalars)
        return loss, y_pred

    return backend.compile_step(step) if _may_compile(model) else step


def _loss_scale(model):
    """The model's DynamicLossScale (a mixed_float16 policy), or None."""
    return None if model.dtype_policy is None else model.dtype_policy.loss_scale


def _all_finite(backend, grads) -> bool:
    """Whether every gradient entry is finite (one host sync: inf or NaN anywhere makes the sum so)."""
    total = None
    for g in grads:
        term = ops.sum(ops.multiply(g, 0.0))  # 0 * inf = NaN, so any inf/NaN survives the sum
        total = term if total is None else ops.add(total, term)
    return total is None or bool(np.isfinite(backend.to_numpy(total)))


def _may_compile(model) -> bool:
    if model.jit_compile is False or model.distribute is not None:
        return False
    if _loss_scale(model) is not None:
        return False  # skipping an overflowed step is a host-side decision
    # Layers drawing host randomness each call (Dropout's NumPy masks) would be frozen
    # into a traced graph, so such models run eagerly.
    host_random = [layer.name for layer in model.layers if getattr(layer, "draws_host_randomness", False)]
    if host_random and model.jit_compile is True:
        warnings.warn(f"jit_compile=True ignored: layers {host_random} draw NumPy random numbers at every "
                      "call and run eagerly", RuntimeWarning, stacklevel=4)
    return not host_random


def total_loss(model, y, y_pred, sample_weight=None):
    """The compiled loss (weighted sum over outputs) plus every regularization penalty."""
    losses = model._losses
    if len(losses) == 1:
        loss = losses[0][0](y, y_pred, sample_weight)
        if losses[0][1] != 1.0:
            loss = ops.multiply(loss, losses[0][1])
    else:
        loss = None
        for (fn, weight), target, pred in zip(losses, y, y_pred):
            term = ops.multiply(fn(target, pred, sample_weight), weight)
            loss = term if loss is None else ops.add(loss, term)
    for penalty in model.regularization_losses():
        loss = ops.add(loss, penalty)
    return loss


def test_step(self, x, y, sample_weight=None):
    """Loss and predictions on a batch, in inference mode; returns (loss, y_pred)."""
    def step(x, y, sample_weight):
        y_pred = self.forward(x, training=False)
        return total_loss(self, y, y_pred, sample_weight), y_pred

    with self.backend.no_grad():
        return _inference_function(self, "test", step)(x, y, sample_weight)


def _inference_function(model, purpose: str, step):
    """``step`` for ``purpose`` ("test", "predict"), compiled once by the backend unless jit_compile=False.

    Inference draws no host randomness (Dropout is off), so every model may run it compiled:
    on TensorFlow one traced graph per input structure instead of an eager op-by-op pass.
    """
    functions = model._inference_functions
    if purpose not in functions:
        functions[purpose] = step if model.jit_compile is False else model.backend.compile_step(step)
    return functions[purpose]


def _update_metrics(metrics, y, y_pred, weights) -> None:
    several = isinstance(y, list)
    for i, m in metrics:
        m.update(y[i] if several else y, y_pred[i] if several else y_pred, weights)


# ---------------------------------------------------------------- the loops

def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto",
        callbacks: Sequence[Callback] | None = None, validation_split: float = 0.0,
        validation_data=None, shuffle: bool = True, class_weight: dict | None = None,
        sample_weight=None, initial_epoch: int = 0, steps_per_epoch: int | None = None,
        validation_steps: int | None = None) -> History:
    """Train for ``epochs`` passes over the data; returns a History.

    Args:
        x, y: NumPy arrays (or lists/dicts of arrays for several inputs/outputs) with
            the same number of samples; or ``x`` a generator/iterable yielding
            ``(x, y)`` / ``(x, y, sample_weight)`` batches and ``y`` None.
        batch_size: samples per step for array data (default 32). epochs: passes over the data.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch ("auto" = 1).
        validation_split: fraction of the *last* samples held out for validation (before shuffling).
        validation_data: (x_val, y_val), (x_val, y_val, sample_weight_val) or an iterable of batches.
        shuffle: reshuffle array data each epoch with the model's seeded generator.
        class_weight: {class id: weight}; sample_weight: one weight per sample.
        steps_per_epoch: batches per epoch drawn from an iterable (default: until it ends).
    """
    batch_size = _check_batch_size(batch_size)
    verbose = _verbosity(verbose)
    if not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got epochs={epochs!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    _require_compiled(self, "training")
    data = _data(self, x, y, sample_weight, class_weight, steps_per_epoch)
    self._losses = resolve_losses(self) if self.built else None
    if validation_split and validation_data is None:
        if not isinstance(data, ArrayData):
            raise DataError("validation_split needs array data; pass validation_data for iterables")
        data, validation = data.split(validation_split)
    else:
        validation = None if validation_data is None else _validation(self, validation_data, validation_steps)

    metrics = _resolve_metrics(self, self._losses)
    backend = self.backend
    steps = data.steps(batch_size)
    history = History()
    # History last, as in Keras: it then records what other callbacks add to the logs (learning_rate).
    cbs = CallbackList([*(callbacks or []), history], self,
                       {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
    self.stop_training = False
    self.history = history
    loss_metric = metrics_mod.Metric(lambda *_: None, "loss")
    logs: dict[str, float] = {}
    with use_backend(backend):
        self.optimizer.ensure_slots(self.trainable_weights)
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            cbs.on_epoch_begin(epoch)
            bar = ProgressBar(steps, verbose)
            for m in (loss_metric, *(m for _, m in metrics)):
                m.reset()
            logs = {}
            rng = self.shuffle_rng if shuffle else None
            for step, (xb, yb, wb) in enumerate(data.batches(batch_size, rng)):
                cbs.on_train_batch_begin(step)
                if self.distribute is not None:  # every process draws the same batch and keeps its slice
                    total = len(flatten(xb)[0])
                    xb, yb, wb = (self.distribute.shard(part) for part in (xb, yb, wb))
                    self._batch_share = len(flatten(xb)[0]) / total
                    if not self._batch_share:
                        raise DataError(f"a batch of {total} samples cannot be split across "
                                        f"{self.distribute.world_size} processes; use batches at least that large")
                n = len(flatten(xb)[0])
                yt = _to_backend(backend, yb)
                wt = None if wb is None else backend.convert(wb)
                loss, y_pred = self.train_step(_to_backend(backend, xb), yt, wt)
                batch_loss = float(backend.to_numpy(loss))
                loss_metric.update_value(batch_loss, n)
                _update_metrics(metrics, yt, y_pred, wt)
                logs = {"loss": loss_metric.result(), **{m.name: m.result() for _, m in metrics}}
                cbs.on_train_batch_end(step, logs={**logs, "loss": batch_loss})
                bar.update(step + 1, logs)
                if not math.isfinite(batch_loss):
                    _stop_on_invalid_loss(self, epoch, step, batch_loss)
                    break
                if self.stop_training:
                    break
            if not logs:
                _warn_no_batches(self, epoch)
                break
            if validation is not None and not self.stop_training:
                val = _evaluate_data(self, validation, batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            bar.finish(logs)
            cbs.on_epoch_end(epoch, logs=logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs=logs)
    return history


def _warn_no_batches(model, epoch: int) -> None:
    model.stop_training = True
    warnings.warn(f"training stopped at epoch {epoch + 1}: the data iterable yielded no batch (a generator "
                  "runs out after one pass; pass steps_per_epoch, or an iterable that can restart)",
                  RuntimeWarning, stacklevel=3)


def _stop_on_invalid_loss(model, epoch: int, step: int, loss: float) -> None:
    model.stop_training = True
    message = (f"training stopped: the loss became {loss} at epoch {epoch + 1}, batch {step + 1}. "
               "Common causes: a learning rate too high, unscaled inputs, NaN/inf in the data (let through "
               "by compile(nonfinite_data=...)), or log/divide of zero in a custom loss. "
               "Try a smaller learning_rate or clipnorm=1.0.")
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _validation(model, validation_data, steps: int | None):
    if is_iterable_data(validation_data):
        return IterableData(model, validation_data, steps, resolve_losses)
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise DataError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), "
                        "or an iterable of such batches")
    x_val, y_val, *rest = validation_data
    return _array_data(model, x_val, y_val, rest[0] if rest else None)


def _evaluate_data(model, data, batch_size: int, bar: ProgressBar | None = None) -> dict[str, float]:
    backend = model.backend
    metrics = _resolve_metrics(model, model._losses)
    loss_metric = metrics_mod.Metric(lambda *_: None, "loss")
    with use_backend(backend):
        for step, (xb, yb, wb) in enumerate(data.batches(batch_size)):
            yt = _to_backend(backend, yb)
            wt = None if wb is None else backend.convert(wb)
            loss, y_pred = model.test_step(_to_backend(backend, xb), yt, wt)
            loss_metric.update_value(float(backend.to_numpy(loss)), len(flatten(xb)[0]))
            _update_metrics(metrics, yt, y_pred, wt)
            if bar is not None:
                bar.update(step + 1, {"loss": loss_metric.result()})
    return {"loss": loss_metric.result(), **{m.name: m.result() for _, m in metrics}}


def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto",
             sample_weight=None, return_dict: bool = False, steps: int | None = None):
    """Loss (then each metric, in compile order) over the data in inference mode.

    Returns a float when there are no metrics, else a list ``[loss, *metrics]``
    (or a dict with ``return_dict=True``). ``x`` may be an iterable of batches, as in fit.
    """
    batch_size = _check_batch_size(batch_size)
    verbose = _verbosity(verbose)
    _require_compiled(self, "evaluate()")
    data = _data(self, x, y, sample_weight, None, steps)
    self._losses = resolve_losses(self) if self.built else None
    bar = ProgressBar(data.steps(batch_size), verbose)
    results = _evaluate_data(self, data, batch_size, bar)
    bar.finish(results)
    if return_dict:
        return results
    values = list(results.values())
    return values[0] if len(values) == 1 else values


def predict(self, x, batch_size: int | None = None, verbose=0, steps: int | None = None):
    """Model outputs for x, computed in batches in inference mode, as NumPy (a list for several outputs)."""
    _require_compiled(self, "predict() (compile chooses the backend)")
    batch_size = _check_batch_size(batch_size)
    backend = self.backend
    if is_iterable_data(x):
        data = IterableData(self, x, steps, None)
    else:
        xs = prepare_x(self, x)
        data = ArrayData(xs, None, None)
    bar = ProgressBar(data.steps(batch_size), _verbosity(verbose))
    outputs: list[list[np.ndarray]] = []
    forward = _inference_function(self, "predict", lambda x: self.forward(x, training=False))
    with use_backend(backend), backend.no_grad():
        for step, (xb, _, _) in enumerate(data.batches(batch_size)):
            out = forward(_to_backend(backend, xb))
            outputs.append([backend.to_numpy(o) for o in flatten(out)])
            bar.update(step + 1, {})
    bar.finish({})
    if not outputs:
        raise DataError("predict() got no batches from x")
    return pack_outputs(self, [np.concatenate(column, axis=0) for column in zip(*outputs)])


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
    policy = model.dtype_policy
    dtype = policy.name if policy is not None and policy.mixed else model.backend.dtype if model.backend else ""
    backend = f", backend: {model.backend.name} ({dtype})" if model.backend else ""
    out = [f'Model: "{model.name}"{backend}', line, fmt(headers), line.replace("-", "=")]
    out += [fmt(r) for r in rows]
    out += [line, f" Total params: {total:,}", f" Trainable params: {trainable:,}",
            f" Non-trainable params: {total - trainable:,}"]
    for text in out:
        print_fn(text)

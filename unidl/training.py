"""``Trainer``: the training half of every ``Model``: compile, fit, evaluate, predict, summary.

``Model`` (``unidl.models``) describes an architecture; it inherits from
``Trainer`` everything that needs a backend. The state ``compile`` sets (the
backend, optimizer, losses, metrics, dtype policy, compiled steps) belongs to
this class. From its host it needs a ``Layer`` with ``weights``,
``trainable_weights``, ``call``, ``output_names``, ``output_shape``,
``output_structure``, ``built`` and ``ensure_built``.

Data flow of one training step::

    numpy batch --backend.convert--> tensors
    loss, grads = backend.value_and_grad(forward + loss + regularization)
    optimizer.update_all(grads)            (written once over unidl.ops)
    the step above may be compiled by the backend (tf.function...) when the model allows
    loss and metrics --> Python floats --> progress bar, History, callbacks

Batch order comes from the model's seeded generator, never a framework's.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Sequence

import numpy as np

from . import config
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import ops
from . import optimizers as optimizers_mod
from . import precision
from .backend import HALF_DTYPES, Backend, is_tracing
from .callbacks import Callback, CallbackList, History
from .data import (NONFINITE_CHOICES, ArrayData, DataError, IterableData, is_iterable_data, pack_outputs,
                   pack_x_y_sample_weight, prepare_weights, prepare_x, prepare_y, raw_array_data,
                   unpack_x_y_sample_weight)
from .layers.base import collect_losses, host_layers_done
from .ops import use_backend
from .progress import ProgressBar
from .stepping import DeferredLogs, LogReader, StepFunction
from .registry import get_backend
from .structure import flatten
from .variables import structure_version

__all__ = ["Trainer", "NotCompiledError", "DataError"]

# Attributes that tie a model to a backend; Model.clone() leaves them behind.
COMPILED_STATE = ("backend", "optimizer", "train_function", "test_function", "predict_function", "dtype_policy",
                  "_loss_tracker", "_metric_objects")


class NotCompiledError(RuntimeError):
    """fit/evaluate/predict called before compile()."""


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


def _to_backend(backend, batch):
    """NumPy batch structure -> backend tensors (None stays None)."""
    if batch is None:
        return None
    if isinstance(batch, list):
        return [backend.convert(a) for a in batch]
    return backend.convert(batch)


def _callback_list(callbacks) -> list[Callback]:
    """``callbacks`` as a list, refusing a single callback or anything else with the fix in the message."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        raise TypeError(f"callbacks must be a list of callbacks; got one {type(callbacks).__name__}: pass "
                        f"callbacks=[{type(callbacks).__name__}(...)]")
    callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else None
    if callbacks is None or not all(isinstance(c, Callback) for c in callbacks):
        raise TypeError("callbacks must be a list of unidl.callbacks.Callback objects")
    return callbacks


def _sample_count(x):
    """The batch's number of samples, for the loss tracker's weight: an int when the batch size is known
    (eager; TensorFlow's trace leaves it unknown: then a tensor)."""
    first = flatten(x)[0]
    shape = ops.shape(first)
    if shape[0] is not None:
        return float(shape[0])
    per_sample = float(np.prod([d for d in shape[1:]])) if len(shape) > 1 else 1.0
    return ops.divide(ops.sum(ops.ones_like(ops.cast(first, ops.current_backend().dtype))), per_sample)


def _expand_like(weight, mask):
    """Per-sample weights (batch,) reshaped to broadcast against a (batch, time...) mask."""
    extra = len(ops.shape(mask)) - len(ops.shape(weight))
    return ops.reshape(weight, (-1, *([1] * (len(ops.shape(weight)) - 1 + extra)))) if extra > 0 else weight


def _attribute_metrics(model) -> list:
    """Metric objects held as attributes (or in lists) of the model and its layers, in discovery order,
    cached until the model's structure changes (unidl.variables.structure_version)."""
    version = structure_version()
    cached = model.__dict__.get("_attribute_metrics_cache")
    if cached is not None and cached[0] == version:
        return cached[1]
    found: dict[int, Any] = {}
    for holder in [model, *_all_layers(model)]:
        for value in holder.__dict__.values():
            for item in (value if isinstance(value, (list, tuple)) else (value,)):
                if isinstance(item, metrics_mod.Metric) and item is not model.__dict__.get("_loss_tracker"):
                    found.setdefault(id(item), item)
    result = list(found.values())
    model.__dict__["_attribute_metrics_cache"] = (version, result)
    return result


def _all_layers(model) -> list:
    """Every layer under ``model``, nested ones included (a Dropout inside a user's layer counts)."""
    found: dict[int, Any] = {}
    stack = list(model._sublayers())
    while stack:
        layer = stack.pop()
        if id(layer) not in found:
            found[id(layer)] = layer
            stack.extend(layer._sublayers())
    return list(found.values())


def _all_finite(backend, grads) -> bool:
    """Whether every gradient entry is finite (one host sync: inf or NaN anywhere makes the sum so)."""
    total = None
    for g in grads:
        term = ops.sum(ops.multiply(g, 0.0))  # 0 * inf = NaN, so any inf/NaN survives the sum
        total = term if total is None else ops.add(total, term)
    return total is None or bool(np.isfinite(backend.to_numpy(total)))


class Trainer:
    """compile / fit / evaluate / predict / summary for a model (see the module docstring)."""

    def _init_training_state(self) -> None:
        self.backend: Backend | None = None
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss = None  # the compiled Loss (single-output models)
        self._loss_spec = self._loss_weights = None  # compile's loss / loss_weights as given
        self._losses: list | None = None  # (Loss, weight) per output, resolved when training starts
        self._metric_ids: list | dict = []
        self._weighted_metric_ids: list | dict = []
        self._metric_objects: list | None = None  # (output, Metric, weighted), made on first use
        self._loss_tracker = None  # the "loss" Mean that the default steps update
        self.train_function = self.test_function = self.predict_function = None  # StepFunctions
        self._trainable_cache: tuple | None = None  # (structure version, trainable weights): train_step
        self.jit_compile: bool | str = "auto"
        self.distribute = None  # a unidl.distributed strategy, set by compile
        self.dtype_policy: precision.DTypePolicy | None = None  # set by compile
        self.nonfinite_data = "raise"  # compile's choice for NaN/inf in the data
        self._draws_randomness = False  # a traced step asked unidl.random for numbers: steps run eagerly
        self.stop_training = False
        self.history = None
        # Set by a callback in on_train_begin to move fit's first epoch (BackupAndRestore resuming);
        # fit reads it once, right after on_train_begin (Keras's model._initial_epoch).
        self._initial_epoch: int | None = None

    # ----------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend: str | Backend | None = None,
                dtype: str | None = None, device: str | None = None, jit_compile: bool | str = "auto",
                loss_weights=None, distribute=None, dtype_policy: str | None = None,
                nonfinite_data: str = "raise", backend_options: dict | None = None, weighted_metrics=None,
                run_eagerly: bool = False, steps_per_execution: int = 1, auto_scale_loss: bool = True) -> None:
        """Choose optimizer, loss, metrics and the backend this model runs on.

        Args:
            optimizer: name ("adam") or ``unidl.optimizers.Optimizer`` instance.
            loss: name ("mse", "binary_crossentropy"...), Loss instance or function; for a model
                with several outputs, one for all, a list (one per output) or a dict by output name.
            loss_weights: for several outputs, the factor of each output's loss (list or dict).
            distribute: a ``unidl.distributed.DataParallel`` strategy to train across processes.
            metrics: list of names ("accuracy", "mae"...), Metric instances or functions (or a dict
                by output name); unweighted. weighted_metrics: the same, weighted by sample_weight
                (and class_weight).
            loss: None is allowed for a model whose loss comes from ``add_loss`` or a custom ``train_step``.
            backend: registered backend name ("numpy", "torch", "tensorflow", or a plugin's); None:
                the default, ``unidl.config.backend()`` (``set_backend``, else $UNIDL_BACKEND, else "numpy").
            dtype: weight and compute dtype, "float32" or "float64"; None: ``unidl.config.floatx()``.
            dtype_policy: "mixed_bfloat16" or "mixed_float16" to compute in half precision with
                float32 master weights (torch, tensorflow); "mixed_float16" scales the loss.
            device: e.g. "cpu", "cuda", "cuda:1"; None is the backend's default.
            jit_compile: let the backend compile the train step ("auto": when it has a faster path).
            nonfinite_data: what fit/evaluate/predict do with NaN or inf in x, y or sample_weight:
                "raise" (default, a DataError naming the array and the first bad sample),
                "warn" (a RuntimeWarning, then use the data) or "ignore" (no scan).
            backend_options: the backend's own settings, e.g. ``{"tf32": True}`` on torch or tensorflow
                (TensorFloat-32 on GPUs; unidl's default is off). ``unidl backends`` lists none;
                an unknown option is an error listing the backend's options.
            run_eagerly: Keras's name for ``jit_compile=False``. steps_per_execution, auto_scale_loss:
                accepted for Keras scripts (one step per call; mixed_float16 always scales its loss).

        Compiling again (e.g. on another backend) keeps the current weights and
        starts a fresh optimizer state.
        """
        if nonfinite_data not in NONFINITE_CHOICES:
            raise ValueError(f"nonfinite_data must be one of {list(NONFINITE_CHOICES)}, got {nonfinite_data!r}")
        if backend is None:
            backend = config.backend()
        if dtype is None:
            dtype = config.floatx()
        if dtype in HALF_DTYPES:
            raise ValueError(f"dtype={dtype!r} would keep the weights themselves in {dtype}; to compute in {dtype} "
                             f"with float32 weights, compile with dtype_policy='mixed_{dtype}'")
        new_backend = get_backend(backend, dtype=dtype, device=device, **(backend_options or {}))
        policy = precision.get_policy(dtype_policy, new_backend.dtype)
        if policy.mixed:
            new_backend.compute_twin(policy.compute_dtype)  # fails now, not at the first step
        self.optimizer = optimizers_mod.get(optimizer)
        # Validate names now; per-output losses are matched to outputs when training starts.
        for item in (loss.values() if isinstance(loss, dict) else loss if isinstance(loss, (list, tuple))
                     else [loss]):
            if item is not None:
                losses_mod.get(item)
        self._loss_spec, self._loss_weights = loss, loss_weights
        self.loss = None if loss is None or isinstance(loss, (list, tuple, dict)) else losses_mod.get(loss)
        for name, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if isinstance(value, str):
                raise TypeError(f"{name} must be a list, e.g. {name}=[{value!r}]")
        if isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, (int, np.integer)) \
                or steps_per_execution < 1:
            raise ValueError(f"steps_per_execution must be a positive integer, got {steps_per_execution!r}")
        self._metric_ids = dict(metrics) if isinstance(metrics, dict) else list(metrics or [])
        self._weighted_metric_ids = (dict(weighted_metrics) if isinstance(weighted_metrics, dict)
                                     else list(weighted_metrics or []))
        self._metric_objects = None
        self._loss_tracker = metrics_mod.Mean(name="loss")
        self.jit_compile = False if run_eagerly else jit_compile
        if distribute is not None:
            distribute.check_backend(new_backend)
        self.distribute = distribute
        self.dtype_policy = policy
        self.nonfinite_data = nonfinite_data
        self.backend = new_backend
        self.train_function = self.test_function = self.predict_function = None
        self._losses = None
        if self.built:
            self.bind_weights()

    @property
    def compiled_loss_spec(self):
        """The ``loss`` compile was given (names stay names); saved in model files."""
        return self._loss_spec

    @property
    def compiled_loss_weights(self):
        return self._loss_weights

    @property
    def compiled_metric_spec(self):
        """The ``metrics`` compile was given (a list, or a dict by output name)."""
        return self._metric_ids

    def bind_weights(self) -> None:
        """Move weights that are not on this model's backend onto it; give the optimizer slots."""
        for w in self.weights:
            if w.backend is not self.backend:
                w.bind(self.backend)
                self.train_function = self.test_function = self.predict_function = None  # they hold the old ones
        if self.optimizer is not None:
            with use_backend(self.backend):
                self.optimizer.ensure_slots(self.trainable_weights)

    def _require_compiled(self, what: str) -> None:
        if self.backend is None:
            raise NotCompiledError(f"model {self.name!r} must be compiled before {what}: call "
                                   "model.compile(optimizer=..., loss=..., backend=...)")

    # ------------------------------------------------------ dtype policy
    def forward(self, inputs, training: bool = False):
        """``call(inputs)`` under the model's dtype policy (with its backend bound): what the loops run,
        on batches the host layers already processed (data.prepare_x ran them)."""
        with host_layers_done():
            return self.run_with_policy(lambda: self.call_with_training(inputs, training))

    def forward_with_masks(self, inputs, training: bool = False):
        """(outputs, output masks) under the model's dtype policy: what the loss sees."""
        with host_layers_done():
            return self.run_with_policy(lambda: self.call_with_masks(inputs, training))

    def run_with_policy(self, run):
        """``run()`` under the model's dtype policy.

        Under a mixed policy the layers run on the backend's half-precision twin (each casts its
        floating inputs as it is called), and the outputs come back as float32 for losses and metrics.
        """
        policy = self.dtype_policy
        if policy is None or not policy.mixed:
            return run()
        twin = self.backend.compute_twin(policy.compute_dtype)
        with use_backend(twin):
            outputs = run()
        return precision.cast_floats(self.backend, outputs, policy.variable_dtype)

    def _loss_scale(self):
        """The model's DynamicLossScale (a mixed_float16 policy), or None."""
        return None if self.dtype_policy is None else self.dtype_policy.loss_scale

    # ------------------------------------------------------ losses, metrics
    def compiled_losses(self) -> list[tuple[Any, float]]:
        """One (Loss, weight) per model output, from compile's ``loss`` and ``loss_weights`` (cached);
        empty when compiled without a loss (a model whose loss comes from ``add_loss``)."""
        if self._losses is None:
            self._losses = self._resolve_losses()
        return self._losses

    def _resolve_losses(self) -> list[tuple[Any, float]]:
        spec, weights = self._loss_spec, self._loss_weights
        if spec is None:
            return []
        names = self.output_names
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

    def _compile_metric_objects(self) -> list[tuple[int, Any, bool]]:
        """(output index, Metric, weighted) for compile's ``metrics`` then ``weighted_metrics``, made once
        per compile; names get the output's name when there are several outputs (as in Keras)."""
        if self._metric_objects is None:
            plain = [(*pair, False) for pair in self._resolve_metrics(self._metric_ids)]
            weighted = [(*pair, True) for pair in self._resolve_metrics(self._weighted_metric_ids)]
            taken = {m.name for _, m, _ in plain}
            for _, metric, _ in weighted:  # the same metric in both lists: Keras names the weighted one so
                if metric.name in taken:
                    metric.name = f"weighted_{metric.name}"
            self._metric_objects = plain + weighted
        return self._metric_objects

    def _resolve_metrics(self, ids) -> list[tuple[int, Any]]:
        shapes = self.output_shape if isinstance(self.output_shape, list) else [self.output_shape]
        names = self.output_names
        if isinstance(ids, dict):
            unknown = set(ids) - set(names)
            if unknown:
                raise ValueError(f"metrics names unknown outputs {sorted(unknown)}; outputs: {names}")
        losses = self.compiled_losses()
        resolved = []
        for i, shape in enumerate(shapes):
            wanted = ids.get(names[i], []) if isinstance(ids, dict) else ids
            loss = losses[i][0] if i < len(losses) else None
            for m in ([wanted] if isinstance(wanted, str) else wanted):
                metric = metrics_mod.get(m, loss=loss, output_shape=shape)
                if len(shapes) > 1:
                    metric = copy.deepcopy(metric) if metric is m else metric  # one instance per output
                    metric.name = f"{names[i]}_{metric.name}"
                resolved.append((i, metric))
        return resolved

    @property
    def metrics(self) -> list:
        """Every metric the loops reset each epoch and report: the loss tracker ("loss"), compile's
        metrics, then Metric objects held as attributes of the model or its layers (Keras's order).
        Override it, as in Keras, to list the trackers a custom ``train_step`` updates."""
        found: list = []
        if self.backend is not None:
            found.append(self._loss_tracker)
            if self.built or self._metric_objects is not None:
                found.extend(m for _, m, _ in self._compile_metric_objects())
        seen = {id(m) for m in found}
        for metric in _attribute_metrics(self):
            if id(metric) not in seen:
                seen.add(id(metric))
                found.append(metric)
        return found

    @property
    def metrics_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def reset_metrics(self) -> None:
        """Start every metric of ``metrics`` over (fit does at each epoch, evaluate at its start)."""
        for metric in self.metrics:
            metric.reset_state()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training: bool = True):
        """The loss to minimize: compile's loss (a weighted sum over outputs) plus ``self.losses``
        (``add_loss`` terms and weight regularization), as Keras's ``Model.compute_loss``.

        Override it to change the loss while keeping the default ``train_step``. Steps of a sequence
        model that an output mask leaves out (Embedding(mask_zero=True), Masking) count for nothing.
        """
        terms = []
        losses = self.compiled_losses()
        if losses:
            if y is None:
                raise DataError(f"model {self.name!r} was compiled with a loss but got no targets: pass y "
                                "to fit/evaluate (or batches of (x, y))")
            masks = self.__dict__.get("_step_masks")
            masks = masks[1] if masks is not None and masks[0] is y_pred else None
            masks = masks or [None] * len(losses)
            several = len(losses) > 1
            ys, preds = (list(y), list(y_pred)) if several else ([y], [y_pred])
            for (fn, weight), target, pred, mask in zip(losses, ys, preds, masks):
                term = fn(target, pred, sample_weight, mask=mask)
                terms.append(term if weight == 1.0 else ops.multiply(term, weight))
        terms.extend(self.losses)
        if not terms:
            raise ValueError(f"model {self.name!r} has no loss to minimize: pass loss=... to compile(), or "
                             "add terms with self.add_loss(...) in a layer's call")
        total = terms[0]
        for term in terms[1:]:
            total = ops.add(total, term)
        return total

    def total_loss(self, y, y_pred, sample_weight=None, masks=None):
        """``compute_loss`` for outputs ``y_pred`` whose output masks are ``masks`` (kept for callers of
        the first API: ``unidl compare`` differentiates it by hand)."""
        if masks is not None:
            self.__dict__["_step_masks"] = (y_pred, masks)
        try:
            return self.compute_loss(None, y, y_pred, sample_weight)
        finally:
            self.__dict__.pop("_step_masks", None)

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Update compile's metrics with a batch and return ``get_metrics_result()``: what the default
        steps return. ``metrics`` are unweighted and ``weighted_metrics`` use ``sample_weight`` (class
        weights included), as in Keras; steps an output mask leaves out count for none of them."""
        masks = self.__dict__.get("_step_masks")
        masks = masks[1] if masks is not None and masks[0] is y_pred else None
        several = isinstance(y_pred, (list, tuple)) and len(self.output_names) > 1
        for i, metric, weighted in self._compile_metric_objects():
            weight = sample_weight if weighted else None
            mask = masks[i] if masks else None
            if mask is not None:
                mask = ops.cast(mask, self.backend.dtype)
                weight = mask if weight is None else ops.multiply(mask, _expand_like(weight, mask))
            metric.update_state(y[i] if several else y, y_pred[i] if several else y_pred, sample_weight=weight)
        return self.get_metrics_result()

    def get_metrics_result(self):
        """``{name: result}`` of every metric in ``metrics`` (backend tensors inside a step); a metric
        whose result is a dict contributes its entries. Outside a trace the results are computed when
        first read (a ``DeferredLogs`` mapping): eager steps whose logs nobody reads skip them."""
        if not is_tracing():
            return DeferredLogs(self._metrics_result_now)
        return self._metrics_result_now()

    def _metrics_result_now(self) -> dict:
        results: dict = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                results.update(value)
            else:
                results[metric.name] = value
        return results

    # ------------------------------------------------------------- data
    def array_data(self, x, y, sample_weight=None, class_weight=None) -> ArrayData:
        """Checked NumPy arrays for fit/evaluate (builds the model from them when needed)."""
        if self._takes_raw_data():
            return raw_array_data(self, x, y, sample_weight)
        xs = prepare_x(self, x)
        losses = self.compiled_losses()
        ys = None if y is None and not losses else prepare_y(self, y, len(xs[0]), losses)
        weights = prepare_weights(self, len(xs[0]), ys, sample_weight, class_weight)
        return ArrayData(xs, ys, weights)

    def _takes_raw_data(self) -> bool:
        """A model with its own ``train_step`` and no ``call`` of its own to build from (Keras's GAN and
        VAE examples): fit hands it the arrays as given, without checks against input/output shapes."""
        return not self.built and self._graph_less_custom_step()

    def _graph_less_custom_step(self) -> bool:
        from .models import Model  # the host class: a subclass without call() of its own
        overridden = type(self).train_step is not Trainer.train_step
        return overridden and getattr(type(self), "call", None) is getattr(Model, "call", None)

    def _data(self, x, y, sample_weight, class_weight, steps):
        """ArrayData or IterableData for fit/evaluate."""
        if is_iterable_data(x):
            if y is not None:
                raise DataError("when x is a generator or iterable of batches, y must be None "
                                "(each batch is (x, y) or (x, y, sample_weight))")
            return IterableData(self, x, steps, self.compiled_losses, raw=self._takes_raw_data())
        return self.array_data(x, y, sample_weight, class_weight)

    def _validation(self, validation_data, steps: int | None):
        if is_iterable_data(validation_data):
            return IterableData(self, validation_data, steps, self.compiled_losses, raw=self._takes_raw_data())
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise DataError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), "
                            "or an iterable of such batches")
        x_val, y_val, *rest = validation_data
        return self.array_data(x_val, y_val, rest[0] if rest else None)

    def _batch_data(self, batch):
        """A NumPy (x, y, sample_weight) batch as the ``data`` a step receives: backend tensors packed as
        Keras packs them (``x`` alone when there are no targets)."""
        backend = self.backend
        x, y, w = batch
        return pack_x_y_sample_weight(_to_backend(backend, x), _to_backend(backend, y),
                                      None if w is None else backend.convert(w))

    # ------------------------------------------------------------- steps
    def train_step(self, data) -> dict:
        """One optimizer step on a batch; returns the logs ``{name: value}`` (Keras's ``train_step``).

        ``data`` is what fit batches: ``x``, ``(x, y)`` or ``(x, y, sample_weight)`` of backend
        tensors (``unidl.utils.unpack_x_y_sample_weight`` splits it). Override it in a Model
        subclass as in Keras: compute the loss under a ``unidl.GradientTape`` (or with
        ``unidl.value_and_grad``), ``self.optimizer.apply_gradients``, update your metrics, and
        return ``{m.name: m.result() for m in self.metrics}``. It runs with the model's backend
        bound, compiled by it like the default step (traced on TensorFlow, captured on CUDA).
        """
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        backend = self.backend
        trainable = self._trainable_now()
        scaler = self._loss_scale()

        def loss_fn():
            y_pred = self._forward_for_loss(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            return (loss if scaler is None else ops.multiply(loss, scaler.scale)), (y_pred, loss)

        _, (y_pred, loss), grads = backend.value_and_grad(loss_fn, [w.value for w in trainable])
        with backend.no_grad():
            if scaler is not None:
                grads = [ops.multiply(g, 1.0 / scaler.scale) for g in grads]
            if self.distribute is not None:  # sum every process's share: the whole batch's gradient
                grads = self.distribute.reduce_gradients(grads, self.distribute.batch_share)
            finite = True
            if scaler is not None:
                finite = _all_finite(backend, grads)
                scaler.update(finite)
            if finite:  # an overflow in float16 skips the update (and is not counted); the scale was halved
                self.optimizer.apply(grads, trainable)
            self._loss_tracker.update_state(loss, sample_weight=_sample_count(x))
            logs = self.compute_metrics(x, y, y_pred, sample_weight)
        self.__dict__.pop("_step_masks", None)
        return logs

    def test_step(self, data) -> dict:
        """Loss and metrics on a batch in inference mode; returns the logs (Keras's ``test_step``)."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self._forward_for_loss(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        self._loss_tracker.update_state(loss, sample_weight=_sample_count(x))
        logs = self.compute_metrics(x, y, y_pred, sample_weight)
        self.__dict__.pop("_step_masks", None)
        return logs

    def predict_step(self, data):
        """The model's outputs for a batch (Keras's ``predict_step``)."""
        x, _, _ = unpack_x_y_sample_weight(data)
        return self.forward(x, training=False)

    def _forward_for_loss(self, x, training: bool):
        """Outputs under the dtype policy, collecting add_loss terms into ``self.losses`` and noting the
        output masks for compute_loss/compute_metrics of these very outputs."""
        with collect_losses(self):
            y_pred, masks = self.forward_with_masks(x, training=training)
        self.__dict__["_step_masks"] = (y_pred, masks)
        return y_pred

    def _trainable_now(self) -> list:
        # The walk over the layers for the trainable weights costs ~40 us; redo it only after a weight,
        # sublayer or trainable flag changed anywhere (unidl.variables.structure_version).
        version = structure_version()
        if self._trainable_cache is None or self._trainable_cache[0] != version:
            self._trainable_cache = (version, self.trainable_weights)
        return self._trainable_cache[1]

    def make_train_function(self, force: bool = False):
        """The callable fit runs per batch: ``train_step``, compiled by the backend unless jit_compile=False
        (Keras's ``make_train_function``); also ``self.train_function``."""
        if self.train_function is None or force:
            self.train_function = StepFunction(self, self.train_step, "train", self._may_compile())
        return self.train_function

    def make_test_function(self, force: bool = False):
        if self.test_function is None or force:
            self.test_function = StepFunction(self, self.test_step, "test", self._may_compile(inference=True))
        return self.test_function

    def make_predict_function(self, force: bool = False):
        if self.predict_function is None or force:
            self.predict_function = StepFunction(self, self.predict_step, "predict",
                                                 self._may_compile(inference=True))
        return self.predict_function

    def _may_compile(self, inference: bool = False) -> bool:
        if self.jit_compile is False or self.distribute is not None or self._draws_randomness:
            return False
        if inference:
            return True  # inference draws no host randomness (Dropout is off)
        if self._loss_scale() is not None:
            return False  # skipping an overflowed step is a host-side decision
        # Layers drawing host randomness each call (Dropout's NumPy masks) would be frozen
        # into a traced graph, so such models run eagerly.
        host_random = [layer.name for layer in _all_layers(self) if getattr(layer, "draws_host_randomness", False)]
        if host_random and self.jit_compile is True:
            warnings.warn(f"jit_compile=True ignored: layers {host_random} draw NumPy random numbers at every "
                          "call and run eagerly", RuntimeWarning, stacklevel=5)
        return not host_random

    # ------------------------------------------------------------- loops
    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto",
            callbacks: Sequence[Callback] | None = None, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, class_weight: dict | None = None,
            sample_weight=None, initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: int = 1) -> History:
        """Train for ``epochs`` passes over the data; returns a History.

        Args:
            x, y: NumPy arrays (or lists/dicts of arrays for several inputs/outputs) with
                the same number of samples; or ``x`` a generator/iterable yielding
                ``(x, y)`` / ``(x, y, sample_weight)`` batches and ``y`` None. A model whose
                loss needs no targets (``add_loss``, a custom ``train_step``) takes ``x`` alone.
            batch_size: samples per step for array data (default 32). epochs: passes over the data.
            verbose: 0 silent, 1 progress bar, 2 one line per epoch ("auto" = 1).
            validation_split: fraction of the *last* samples held out for validation (before shuffling).
            validation_data: (x_val, y_val), (x_val, y_val, sample_weight_val) or an iterable of batches;
                validated every ``validation_freq`` epochs, in batches of ``validation_batch_size``.
            shuffle: reshuffle array data each epoch with the model's seeded generator.
            class_weight: {class id: weight}; sample_weight: one weight per sample.
            steps_per_epoch: batches per epoch drawn from an iterable (default: until it ends).

        Losses and metrics accumulate on the backend's device; the loop reads them when the progress
        bar redraws, when a callback asks for batch logs, at least once a second, and at each epoch's end.
        A NaN or infinite loss stops training at the first such read: up to a second of steps late.
        """
        batch_size = _check_batch_size(batch_size)
        verbose = _verbosity(verbose)
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got epochs={epochs!r}")
        callbacks = _callback_list(callbacks)
        for name, value in (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps),
                            ("validation_freq", validation_freq)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value <= 0):
                raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
        if not isinstance(initial_epoch, (int, np.integer)) or initial_epoch < 0:
            raise ValueError(f"initial_epoch must be a non-negative integer, got initial_epoch={initial_epoch!r}")
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        self._require_compiled("training")
        data = self._data(x, y, sample_weight, class_weight, steps_per_epoch)
        if validation_split and validation_data is None:
            if not isinstance(data, ArrayData):
                raise DataError("validation_split needs array data; pass validation_data for iterables")
            data, validation = data.split(validation_split)
        else:
            validation = None if validation_data is None else self._validation(validation_data, validation_steps)
        validation_batch_size = _check_batch_size(validation_batch_size or batch_size)

        steps = data.steps(batch_size)
        history = History()
        # History last, as in Keras: it then records what other callbacks add to the logs (learning_rate).
        cbs = CallbackList([*(callbacks or []), history], self,
                           {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        self.stop_training = False
        self.history = history
        epoch_logs: dict[str, Any] = {}
        with use_backend(self.backend):
            self.bind_weights()
            self.optimizer.ensure_slots(self._trainable_now())
            train_function = self.make_train_function()
            self._initial_epoch = None
            cbs.on_train_begin()
            if self._initial_epoch is not None:  # a callback restored a backup (BackupAndRestore resuming)
                initial_epoch, self._initial_epoch = int(self._initial_epoch), None
            for epoch in range(initial_epoch, epochs):
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}")
                self.reset_metrics()
                cbs.on_epoch_begin(epoch)
                reader = LogReader(ProgressBar(steps, verbose), cbs.overrides("on_train_batch_end"))
                rng = self.shuffle_rng if shuffle else None
                for step, batch in enumerate(data.batches(batch_size, rng)):
                    cbs.on_train_batch_begin(step)
                    if self.distribute is not None:  # every process draws the same batch and keeps its slice
                        batch = self.distribute.shard_batch(*batch)
                    logs = train_function(self._batch_data(batch))
                    batch_logs = reader.step(step + 1, logs)
                    cbs.on_train_batch_end(step, logs=batch_logs)
                    if reader.invalid_loss is not None:
                        self._stop_on_invalid_loss(epoch, step, reader.invalid_loss)
                        break
                    if self.stop_training:
                        break
                if reader.last is None:
                    self._warn_no_batches(epoch)
                    break
                epoch_logs = reader.final()
                if reader.invalid_loss is not None and not self.stop_training:
                    self._stop_on_invalid_loss(epoch, reader.steps - 1, reader.invalid_loss)
                if validation is not None and not self.stop_training and (epoch + 1) % validation_freq == 0:
                    val = self._evaluate_data(validation, validation_batch_size, cbs)
                    epoch_logs.update({f"val_{k}": v for k, v in val.items()})
                reader.bar.finish(epoch_logs)
                cbs.on_epoch_end(epoch, logs=epoch_logs)
                if self.stop_training:
                    break
            cbs.on_train_end(logs=epoch_logs)
        return history

    def _warn_no_batches(self, epoch: int) -> None:
        self.stop_training = True
        warnings.warn(f"training stopped at epoch {epoch + 1}: the data iterable yielded no batch (a generator "
                      "runs out after one pass; pass steps_per_epoch, or an iterable that can restart)",
                      RuntimeWarning, stacklevel=3)

    def _stop_on_invalid_loss(self, epoch: int, step: int, loss: float) -> None:
        self.stop_training = True
        message = (f"training stopped: the loss became {loss} at epoch {epoch + 1}, by batch {step + 1}. "
                   "Common causes: a learning rate too high, unscaled inputs, NaN/inf in the data (let through "
                   "by compile(nonfinite_data=...)), or log/divide of zero in a custom loss. "
                   "Try a smaller learning_rate or clipnorm=1.0.")
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _evaluate_data(self, data, batch_size: int, cbs: CallbackList, bar: ProgressBar | None = None) -> dict:
        """Reset the metrics, run test_step over the data (the ``on_test_*`` hooks of ``cbs`` around it)
        and return the logs on the host."""
        with use_backend(self.backend):
            test_function = self.make_test_function()
            self.reset_metrics()
            cbs.on_test_begin()
            reader = LogReader(bar or ProgressBar(None, 0), cbs.overrides("on_test_batch_end"), check_loss=False)
            for step, batch in enumerate(data.batches(batch_size)):
                cbs.on_test_batch_begin(step)
                batch_logs = reader.step(step + 1, test_function(self._batch_data(batch)))
                cbs.on_test_batch_end(step, logs=batch_logs)
            if reader.last is None:
                raise DataError("evaluate() got no batches from the data")
            logs = reader.final()
            cbs.on_test_end(logs=logs)
            return logs

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto",
                 sample_weight=None, steps: int | None = None, callbacks: Sequence[Callback] | None = None,
                 return_dict: bool = False):
        """Loss (then each metric, in compile order) over the data in inference mode.

        Returns a float when there are no metrics, else a list ``[loss, *metrics]``
        (or a dict with ``return_dict=True``). ``x`` may be an iterable of batches, as in fit.
        """
        batch_size = _check_batch_size(batch_size)
        verbose = _verbosity(verbose)
        self._require_compiled("evaluate()")
        data = self._data(x, y, sample_weight, None, steps)
        cbs = CallbackList(_callback_list(callbacks), self, {"steps": data.steps(batch_size), "verbose": verbose})
        bar = ProgressBar(data.steps(batch_size), verbose)
        results = self._evaluate_data(data, batch_size, cbs, bar)
        bar.finish(results)
        if return_dict:
            return results
        values = list(results.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose=0, steps: int | None = None,
                callbacks: Sequence[Callback] | None = None):
        """Model outputs for x, computed in batches in inference mode, as NumPy (a list for several outputs)."""
        self._require_compiled("predict() (compile chooses the backend)")
        if x is None:
            raise DataError("predict() needs x: the inputs to compute outputs for (an array, a list or dict of "
                            "arrays, or an iterable of batches)")
        batch_size = _check_batch_size(batch_size)
        backend = self.backend
        if is_iterable_data(x):
            data = IterableData(self, x, steps, None)
        else:
            data = ArrayData(prepare_x(self, x), None, None)
        cbs = CallbackList(_callback_list(callbacks), self, {"steps": data.steps(batch_size), "verbose": verbose})
        bar = ProgressBar(data.steps(batch_size), _verbosity(verbose))
        outputs: list[list[np.ndarray]] = []
        with use_backend(backend), backend.no_grad():
            predict_function = self.make_predict_function()
            cbs.on_predict_begin()
            for step, batch in enumerate(data.batches(batch_size)):
                cbs.on_predict_batch_begin(step)
                out = [backend.to_numpy(o) for o in flatten(predict_function(self._batch_data(batch)))]
                outputs.append(out)
                cbs.on_predict_batch_end(step, logs={"outputs": out[0] if len(out) == 1 else out})
                bar.update(step + 1, {})
            cbs.on_predict_end()
        bar.finish({})
        if not outputs:
            raise DataError("predict() got no batches from x")
        return pack_outputs(self, [np.concatenate(column, axis=0) for column in zip(*outputs)])

    # ----------------------------------------------------------- summary
    def summary(self, print_fn=print) -> None:
        """Print a table of layers, output shapes and parameter counts."""
        self._require_built("summary")
        rows = [(f"{layer.name} ({type(layer).__name__})", str(layer.output_shape), f"{layer.count_params():,}")
                for layer in self.layers]
        headers = ("Layer (type)", "Output Shape", "Param #")
        widths = ([max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)] if rows
                  else [14, 14, 9])
        line = "+" + "+".join("-" * w for w in widths) + "+"

        def fmt(cells):
            return "|" + "|".join(f" {c:<{w - 2}} " if i < 2 else f" {c:>{w - 2}} "
                                  for i, (c, w) in enumerate(zip(cells, widths))) + "|"

        total = self.count_params()
        trainable = int(sum(np.prod(w.shape) for w in self.trainable_weights))
        policy = self.dtype_policy
        dtype = policy.name if policy is not None and policy.mixed else self.backend.dtype if self.backend else ""
        backend = f", backend: {self.backend.name} ({dtype})" if self.backend else ""
        out = [f'Model: "{self.name}"{backend}', line, fmt(headers), line.replace("-", "=")]
        out += [fmt(r) for r in rows]
        out += [line, f" Total params: {total:,}", f" Trainable params: {trainable:,}",
                f" Non-trainable params: {total - trainable:,}"]
        for text in out:
            print_fn(text)

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
import math
import warnings
from typing import Any, Sequence

import numpy as np

from . import config
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import ops
from . import optimizers as optimizers_mod
from . import precision
from .backend import HALF_DTYPES, Backend, FrozenRandomnessError
from .callbacks import Callback, CallbackList, History
from .data import (NONFINITE_CHOICES, ArrayData, DataError, IterableData, is_iterable_data, pack_outputs,
                   prepare_weights, prepare_x, prepare_y)
from .layers.base import host_layers_done
from .ops import use_backend
from .progress import ProgressBar
from .registry import get_backend
from .structure import flatten
from .variables import structure_version

__all__ = ["Trainer", "NotCompiledError", "DataError"]

# Attributes that tie a model to a backend; Model.clone() leaves them behind.
COMPILED_STATE = ("backend", "optimizer", "_train_function", "_inference_functions", "dtype_policy")


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


def _update_metrics(metrics, y, y_pred, weights) -> None:
    several = isinstance(y, list)
    for i, m in metrics:
        m.update_state(y[i] if several else y, y_pred[i] if several else y_pred, weights)


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
        self._train_function = None
        self._trainable_cache: tuple | None = None  # (structure version, trainable weights): train_step
        self._inference_functions: dict = {}  # "predict" / "test" -> step, compiled by the backend
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
                nonfinite_data: str = "raise", backend_options: dict | None = None) -> None:
        """Choose optimizer, loss, metrics and the backend this model runs on.

        Args:
            optimizer: name ("adam") or ``unidl.optimizers.Optimizer`` instance.
            loss: name ("mse", "binary_crossentropy"...), Loss instance or function; for a model
                with several outputs, one for all, a list (one per output) or a dict by output name.
            loss_weights: for several outputs, the factor of each output's loss (list or dict).
            distribute: a ``unidl.distributed.DataParallel`` strategy to train across processes.
            metrics: list of names ("accuracy", "mae"...), Metric instances or functions.
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
        if isinstance(metrics, str):
            raise TypeError(f"metrics must be a list, e.g. metrics=[{metrics!r}]")
        self._metric_ids = dict(metrics) if isinstance(metrics, dict) else list(metrics or [])
        self.jit_compile = jit_compile
        if distribute is not None:
            distribute.check_backend(new_backend)
        self.distribute = distribute
        self.dtype_policy = policy
        self.nonfinite_data = nonfinite_data
        self.backend = new_backend
        self._train_function = None
        self._inference_functions = {}
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
                self._inference_functions = {}  # compiled ones hold the old variables
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
        """One (Loss, weight) per model output, from compile's ``loss`` and ``loss_weights`` (cached)."""
        if self._losses is None:
            self._losses = self._resolve_losses()
        return self._losses

    def _resolve_losses(self) -> list[tuple[Any, float]]:
        spec, weights = self._loss_spec, self._loss_weights
        if spec is None:
            raise RuntimeError(f"model {self.name!r} was compiled without a loss; pass loss=... to compile()")
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

    def _compiled_metrics(self) -> list[tuple[int, Any]]:
        """(output index, Metric) pairs; names get the output's name when there are several outputs."""
        shapes = self.output_shape if isinstance(self.output_shape, list) else [self.output_shape]
        names = self.output_names
        resolved = []
        ids = self._metric_ids
        if isinstance(ids, dict):
            unknown = set(ids) - set(names)
            if unknown:
                raise ValueError(f"metrics names unknown outputs {sorted(unknown)}; outputs: {names}")
        for i, (shape, (loss, _)) in enumerate(zip(shapes, self.compiled_losses())):
            wanted = ids.get(names[i], []) if isinstance(ids, dict) else ids
            for m in ([wanted] if isinstance(wanted, str) else wanted):
                metric = metrics_mod.get(m, loss=loss, output_shape=shape)
                if len(shapes) > 1:
                    metric = copy.deepcopy(metric) if metric is m else metric  # one instance per output
                    metric.name = f"{names[i]}_{metric.name}"
                resolved.append((i, metric))
        return resolved

    def total_loss(self, y, y_pred, sample_weight=None, masks=None):
        """The compiled loss (weighted sum over outputs) plus every regularization penalty.

        ``masks`` (one per output, None where absent) leave masked steps out of each output's loss.
        """
        losses = self.compiled_losses()
        masks = masks or [None] * len(losses)
        if len(losses) == 1:
            loss = losses[0][0](y, y_pred, sample_weight, mask=masks[0])
            if losses[0][1] != 1.0:
                loss = ops.multiply(loss, losses[0][1])
        else:
            loss = None
            for (fn, weight), target, pred, mask in zip(losses, y, y_pred, masks):
                term = ops.multiply(fn(target, pred, sample_weight, mask=mask), weight)
                loss = term if loss is None else ops.add(loss, term)
        for penalty in self.regularization_losses():
            loss = ops.add(loss, penalty)
        return loss

    # ------------------------------------------------------------- data
    def array_data(self, x, y, sample_weight=None, class_weight=None) -> ArrayData:
        """Checked NumPy arrays for fit/evaluate (builds the model from them when needed)."""
        xs = prepare_x(self, x)
        ys = prepare_y(self, y, len(xs[0]), self.compiled_losses())
        weights = prepare_weights(self, len(xs[0]), ys, sample_weight, class_weight)
        return ArrayData(xs, ys, weights)

    def _data(self, x, y, sample_weight, class_weight, steps):
        """ArrayData or IterableData for fit/evaluate."""
        if is_iterable_data(x):
            if y is not None:
                raise DataError("when x is a generator or iterable of batches, y must be None "
                                "(each batch is (x, y) or (x, y, sample_weight))")
            return IterableData(self, x, steps, self.compiled_losses)
        return self.array_data(x, y, sample_weight, class_weight)

    def _validation(self, validation_data, steps: int | None):
        if is_iterable_data(validation_data):
            return IterableData(self, validation_data, steps, self.compiled_losses)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise DataError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, sample_weight), "
                            "or an iterable of such batches")
        x_val, y_val, *rest = validation_data
        return self.array_data(x_val, y_val, rest[0] if rest else None)

    # ------------------------------------------------------------- steps
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
            self._train_function = (key, self._make_train_function(trainable))
        scalars = self.optimizer.step_scalars()
        if self.distribute is not None:
            scalars["batch_share"] = self.distribute.batch_share
        scaler = self._loss_scale()
        skipped = scaler.skipped_steps if scaler is not None else 0
        loss, y_pred = self._train_function[1](x, y, sample_weight, scalars)
        if scaler is None or scaler.skipped_steps == skipped:  # a step skipped for overflow is not counted
            self.optimizer.iterations += 1
        return loss, y_pred

    def _make_train_function(self, trainable: list):
        """The generic step, handed to the backend to compile when that is allowed and useful."""
        backend = self.backend
        scaler = self._loss_scale()

        def step(x, y, sample_weight, scalars):
            def loss_fn():
                y_pred, masks = self.forward_with_masks(x, training=True)
                loss = self.total_loss(y, y_pred, sample_weight, masks)
                if scaler is None:
                    return loss, y_pred
                return ops.multiply(loss, scaler.scale), (y_pred, loss)

            loss, y_pred, grads = backend.value_and_grad(loss_fn, [w.value for w in trainable])
            with backend.no_grad():
                if scaler is not None:
                    (y_pred, loss), grads = y_pred, [ops.multiply(g, 1.0 / scaler.scale) for g in grads]
                if self.distribute is not None:  # sum every process's share: the whole batch's gradient
                    grads = self.distribute.reduce_gradients(grads, scalars.pop("batch_share"))
                if scaler is not None:
                    finite = _all_finite(backend, grads)
                    scaler.update(finite)
                    if not finite:  # overflow in float16: skip the update; the scale was halved
                        return loss, y_pred
                self.optimizer.update_all(grads, trainable, scalars)
            return loss, y_pred

        return self._compiled(step) if self._may_compile() else step

    def _compiled(self, step):
        """``step`` compiled by the backend, falling back to ``step`` itself for good when tracing it asks
        for random numbers (unidl.random), which a graph would freeze."""
        compiled = self.backend.compile_step(step)
        state = {"eager": False}

        def run(*args):
            if state["eager"]:
                return step(*args)
            try:
                return compiled(*args)
            except FrozenRandomnessError:
                state["eager"] = True
                self._draws_randomness = True
                if self.jit_compile is True:
                    warnings.warn(f"model {self.name!r}: jit_compile=True ignored: its step draws random numbers "
                                  "(unidl.random) and runs eagerly, as a graph would freeze them",
                                  RuntimeWarning, stacklevel=4)
                return step(*args)
        return run

    def _may_compile(self) -> bool:
        if self.jit_compile is False or self.distribute is not None or self._draws_randomness:
            return False
        if self._loss_scale() is not None:
            return False  # skipping an overflowed step is a host-side decision
        # Layers drawing host randomness each call (Dropout's NumPy masks) would be frozen
        # into a traced graph, so such models run eagerly.
        host_random = [layer.name for layer in _all_layers(self) if getattr(layer, "draws_host_randomness", False)]
        if host_random and self.jit_compile is True:
            warnings.warn(f"jit_compile=True ignored: layers {host_random} draw NumPy random numbers at every "
                          "call and run eagerly", RuntimeWarning, stacklevel=5)
        return not host_random

    def test_step(self, x, y, sample_weight=None):
        """Loss and predictions on a batch, in inference mode; returns (loss, y_pred)."""
        def step(x, y, sample_weight):
            y_pred, masks = self.forward_with_masks(x, training=False)
            return self.total_loss(y, y_pred, sample_weight, masks), y_pred

        with self.backend.no_grad():
            return self._inference_function("test", step)(x, y, sample_weight)

    def _inference_function(self, purpose: str, step):
        """``step`` for ``purpose`` ("test", "predict"), compiled once by the backend unless jit_compile=False.

        Inference draws no host randomness (Dropout is off), so every model may run it compiled:
        on TensorFlow one traced graph per input structure instead of an eager op-by-op pass.
        """
        functions = self._inference_functions
        if purpose not in functions:
            functions[purpose] = step if self.jit_compile is False or self._draws_randomness else self._compiled(step)
        return functions[purpose]

    # ------------------------------------------------------------- loops
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
        callbacks = _callback_list(callbacks)
        for name, value in (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value <= 0):
                raise ValueError(f"{name} must be a positive integer or None, got {name}={value!r}")
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

        metrics = self._compiled_metrics()
        backend = self.backend
        steps = data.steps(batch_size)
        history = History()
        # History last, as in Keras: it then records what other callbacks add to the logs (learning_rate).
        cbs = CallbackList([*(callbacks or []), history], self,
                           {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        self.stop_training = False
        self.history = history
        loss_metric = metrics_mod.HostMean(name="loss")  # batch losses are host floats already
        logs: dict[str, float] = {}
        with use_backend(backend):
            self.optimizer.ensure_slots(self.trainable_weights)
            self._initial_epoch = None
            cbs.on_train_begin()
            if self._initial_epoch is not None:  # a callback restored a backup (BackupAndRestore)
                initial_epoch, self._initial_epoch = int(self._initial_epoch), None
            for epoch in range(initial_epoch, epochs):
                if verbose:
                    print(f"Epoch {epoch + 1}/{epochs}")
                cbs.on_epoch_begin(epoch)
                bar = ProgressBar(steps, verbose)
                for m in (loss_metric, *(m for _, m in metrics)):
                    m.reset_state()
                logs = {}
                rng = self.shuffle_rng if shuffle else None
                for step, (xb, yb, wb) in enumerate(data.batches(batch_size, rng)):
                    cbs.on_train_batch_begin(step)
                    if self.distribute is not None:  # every process draws the same batch and keeps its slice
                        xb, yb, wb = self.distribute.shard_batch(xb, yb, wb)
                    n = len(flatten(xb)[0])
                    yt = _to_backend(backend, yb)
                    wt = None if wb is None else backend.convert(wb)
                    loss, y_pred = self.train_step(_to_backend(backend, xb), yt, wt)
                    batch_loss = float(backend.to_numpy(loss))
                    loss_metric.update_state(batch_loss, sample_weight=n)
                    _update_metrics(metrics, yt, y_pred, wt)
                    logs = metrics_mod.logs([loss_metric, *(m for _, m in metrics)])
                    cbs.on_train_batch_end(step, logs={**logs, "loss": batch_loss})
                    bar.update(step + 1, logs)
                    if not math.isfinite(batch_loss):
                        self._stop_on_invalid_loss(epoch, step, batch_loss)
                        break
                    if self.stop_training:
                        break
                if not logs:
                    self._warn_no_batches(epoch)
                    break
                if validation is not None and not self.stop_training:
                    val = self._evaluate_data(validation, batch_size)
                    logs.update({f"val_{k}": v for k, v in val.items()})
                bar.finish(logs)
                cbs.on_epoch_end(epoch, logs=logs)
                if self.stop_training:
                    break
            cbs.on_train_end(logs=logs)
        return history

    def _warn_no_batches(self, epoch: int) -> None:
        self.stop_training = True
        warnings.warn(f"training stopped at epoch {epoch + 1}: the data iterable yielded no batch (a generator "
                      "runs out after one pass; pass steps_per_epoch, or an iterable that can restart)",
                      RuntimeWarning, stacklevel=3)

    def _stop_on_invalid_loss(self, epoch: int, step: int, loss: float) -> None:
        self.stop_training = True
        message = (f"training stopped: the loss became {loss} at epoch {epoch + 1}, batch {step + 1}. "
                   "Common causes: a learning rate too high, unscaled inputs, NaN/inf in the data (let through "
                   "by compile(nonfinite_data=...)), or log/divide of zero in a custom loss. "
                   "Try a smaller learning_rate or clipnorm=1.0.")
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _evaluate_data(self, data, batch_size: int, bar: ProgressBar | None = None) -> dict[str, float]:
        backend = self.backend
        metrics = self._compiled_metrics()
        loss_metric = metrics_mod.HostMean(name="loss")
        with use_backend(backend):
            for m in (loss_metric, *(m for _, m in metrics)):
                m.reset_state()
            for step, (xb, yb, wb) in enumerate(data.batches(batch_size)):
                yt = _to_backend(backend, yb)
                wt = None if wb is None else backend.convert(wb)
                loss, y_pred = self.test_step(_to_backend(backend, xb), yt, wt)
                loss_metric.update_state(float(backend.to_numpy(loss)), sample_weight=len(flatten(xb)[0]))
                _update_metrics(metrics, yt, y_pred, wt)
                if bar is not None:
                    bar.update(step + 1, metrics_mod.logs([loss_metric]))
            return metrics_mod.logs([loss_metric, *(m for _, m in metrics)])

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto",
                 sample_weight=None, return_dict: bool = False, steps: int | None = None):
        """Loss (then each metric, in compile order) over the data in inference mode.

        Returns a float when there are no metrics, else a list ``[loss, *metrics]``
        (or a dict with ``return_dict=True``). ``x`` may be an iterable of batches, as in fit.
        """
        batch_size = _check_batch_size(batch_size)
        verbose = _verbosity(verbose)
        self._require_compiled("evaluate()")
        data = self._data(x, y, sample_weight, None, steps)
        bar = ProgressBar(data.steps(batch_size), verbose)
        results = self._evaluate_data(data, batch_size, bar)
        bar.finish(results)
        if return_dict:
            return results
        values = list(results.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size: int | None = None, verbose=0, steps: int | None = None):
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
        bar = ProgressBar(data.steps(batch_size), _verbosity(verbose))
        outputs: list[list[np.ndarray]] = []
        forward = self._inference_function("predict", lambda x: self.forward(x, training=False))
        with use_backend(backend), backend.no_grad():
            for step, (xb, _, _) in enumerate(data.batches(batch_size)):
                out = forward(_to_backend(backend, xb))
                outputs.append([backend.to_numpy(o) for o in flatten(out)])
                bar.update(step + 1, {})
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

"""Models: ``Sequential`` and the ``Model`` base class users may subclass.

A model owns its layers, a seeded NumPy generator (initial weights, shuffling,
dropout masks) and, once compiled, one backend. Nothing here imports a framework.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator, Sequence

import numpy as np

from . import losses as losses_mod
from . import optimizers as optimizers_mod
from . import training
from .backend import Backend
from .layers.base import InputLayer, Layer, Shape, _as_shape, _snake_case
from .ops import use_backend
from .registry import get_backend
from .variables import Variable

# Attributes that tie a model to a backend; clone() leaves them behind.
_COMPILED_STATE = ("backend", "optimizer", "_train_function")


class NotCompiledError(RuntimeError):
    """fit/evaluate called before compile()."""


class Model:
    """Base class of models: holds layers and implements compile / fit / evaluate / predict.

    Subclass it and write ``call(inputs, training=False)`` from layers created in
    ``__init__`` (like a Keras subclassed model), or use :class:`Sequential`.

    Args:
        name: shown by ``summary()``.
        seed: seeds every random choice unidl makes for this model (initial weights,
            shuffling, dropout masks): the same seed gives the same model on every backend.
    """

    def __init__(self, name: str | None = None, seed: int | None = None):
        self.name = name or _snake_case(type(self).__name__)
        self.seed = seed
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(seeds[0])      # weights, dropout streams
        self.shuffle_rng = np.random.default_rng(seeds[1])    # fit()'s batch order
        self.backend: Backend | None = None
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss: losses_mod.Loss | None = None
        self.compiled_metrics: list = []
        self._train_function = None
        self._metric_ids: list = []
        self.jit_compile: bool | str = "auto"
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.built = False
        self.stop_training = False
        self.history = None

    # ------------------------------------------------------------ layers
    @property
    def layers(self) -> list[Layer]:
        """Sub-layers in the order they were assigned (subclassed models)."""
        return [v for v in self.__dict__.values() if isinstance(v, Layer)]

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model {self.name!r} has no layer {name!r}; its layers: "
                         f"{[layer.name for layer in self.layers]}")

    @property
    def weights(self) -> list[Variable]:
        seen: dict[int, Variable] = {}
        for layer in self.layers:
            for w in layer.weights:
                seen.setdefault(id(w), w)
        return list(seen.values())

    @property
    def trainable_weights(self) -> list[Variable]:
        ids = {id(w) for layer in self.layers for w in layer.trainable_weights}
        return [w for w in self.weights if id(w) in ids]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        ids = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in ids]

    def count_params(self) -> int:
        self._require_built("count_params")
        return int(sum(np.prod(w.shape) for w in self.weights))

    def get_weights(self) -> list[np.ndarray]:
        """All weights as NumPy arrays, layer by layer in Keras order (kernel, then bias)."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, values: Sequence[np.ndarray]) -> None:
        """Set every weight from a list like the one ``get_weights`` returns. All-or-nothing."""
        weights = self.weights
        if len(values) != len(weights):
            raise ValueError(f"model {self.name!r} has {len(weights)} weight arrays, got {len(values)}")
        for w, v in zip(weights, values):
            if tuple(np.shape(v)) != tuple(w.shape):
                raise ValueError(f"weight {w.name!r} has shape {tuple(w.shape)}, got an array of shape "
                                 f"{tuple(np.shape(v))}")
        for w, v in zip(weights, values):
            w.assign(np.asarray(v))

    # ------------------------------------------------------------- build
    def build(self, input_shape: Shape) -> None:
        """Create every weight for inputs of ``input_shape`` (batch axis included, may be None)."""
        input_shape = _as_shape(input_shape)
        # Subclassed models build their layers by running call once on a zero sample,
        # on the reference backend: the weights are still NumPy arrays at this point.
        backend = get_backend("numpy", dtype="float64")
        taken: set[str] = set()
        for layer in self.layers:
            layer._rng = layer._rng or self._init_rng
            if not layer.built:
                layer.name = unique_name(layer.name or _snake_case(type(layer).__name__), taken)
            taken.add(layer.name)
        with use_backend(backend), backend.no_grad():
            out = self.call(backend.zeros((1, *input_shape[1:])), training=False)
            self.output_shape = (None, *backend.shape(out)[1:])
        self.input_shape = input_shape
        self.built = True

    def ensure_built(self, input_shape: Shape) -> None:
        """Build for ``input_shape`` if needed, then bind new weights to the compiled backend."""
        if not self.built:
            self.build(input_shape)
        if self.backend is not None:
            self._bind()

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise RuntimeError(f"model {self.name!r} is not built yet, so {what}() cannot run: give the "
                               "first layer input_shape=(...), start with layers.Input(shape), or call "
                               "model.build((None, ...)) / fit() first")

    def call(self, inputs, training: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=False)")

    def __call__(self, inputs, training: bool = False):
        if self.backend is None:
            raise NotCompiledError(f"model {self.name!r} is not bound to a backend; call "
                                   "model.compile(..., backend=...) first")
        with use_backend(self.backend):
            if isinstance(inputs, np.ndarray):
                inputs = self.backend.convert(inputs)
            if not self.built:
                self.ensure_built((None, *self.backend.shape(inputs)[1:]))
            return self.call(inputs, training=training)

    # ----------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend: str | Backend = "numpy",
                dtype: str = "float32", device: str | None = None, jit_compile: bool | str = "auto") -> None:
        """Choose optimizer, loss, metrics and the backend this model runs on.

        Args:
            optimizer: name ("adam") or ``unidl.optimizers.Optimizer`` instance.
            loss: name ("mse", "binary_crossentropy"...), Loss instance or function.
            metrics: list of names ("accuracy", "mae"...), Metric instances or functions.
            backend: registered backend name ("numpy", "torch", "tensorflow", or a plugin's).
            dtype: compute dtype, "float32" (default) or "float64".
            device: e.g. "cpu", "cuda", "cuda:1"; None is the backend's default.
            jit_compile: let the backend compile the train step ("auto": when it has a faster path).

        Compiling again (e.g. on another backend) keeps the current weights and
        starts a fresh optimizer state.
        """
        new_backend = get_backend(backend, dtype=dtype, device=device)
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = None if loss is None else losses_mod.get(loss)
        self._metric_ids = list(metrics or [])
        if isinstance(metrics, (str, dict)):
            raise TypeError(f"metrics must be a list, e.g. metrics=[{metrics!r}]")
        self.jit_compile = jit_compile
        self.backend = new_backend
        self._train_function = None
        if self.built:
            self._bind()

    def _bind(self) -> None:
        """Move weights that are not on this model's backend onto it; give the optimizer slots."""
        for w in self.weights:
            if w.backend is not self.backend:
                w.bind(self.backend)
        if self.optimizer is not None:
            with use_backend(self.backend):
                self.optimizer.ensure_slots(self.trainable_weights)

    def clone(self) -> "Model":
        """An unbound copy with the same architecture and current weights (compile it anywhere)."""
        saved = {k: self.__dict__[k] for k in _COMPILED_STATE}
        self.__dict__.update(dict.fromkeys(_COMPILED_STATE))
        try:
            twin = copy.deepcopy(self)
        finally:
            self.__dict__.update(saved)
        return twin

    # ------------------------------------------------ training (training.py)
    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict
    train_step = training.train_step
    test_step = training.test_step

    def summary(self, print_fn=print) -> None:
        """Print a table of layers, output shapes and parameter counts."""
        training.print_summary(self, print_fn)


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``... whichever is not taken (Keras's numbering)."""
    if base not in taken:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


class Sequential(Model):
    """A plain stack of layers, each taking the previous one's output.

    ``Sequential([layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=0)``

    With an input shape (``input_shape=`` on the first layer, or ``layers.Input``)
    the model is built at once; otherwise on the first ``fit``/``predict``.
    """

    def __init__(self, layers: Sequence[Layer] | None = None, name: str | None = None, seed: int | None = None):
        super().__init__(name=name, seed=seed)
        self._layers: list[Layer] = []
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def add(self, layer: Layer) -> None:
        """Append a layer (built immediately when the model's input shape is known)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a unidl layer, got {layer!r} ({type(layer).__name__})")
        if any(layer is other for other in self._layers):
            raise ValueError(f"layer {layer.name!r} is already in model {self.name!r}")
        layer.name = unique_name(layer.name or _snake_case(type(layer).__name__),
                                 {other.name for other in self._layers})
        if layer._declared_input_shape is not None:
            if self._layers:
                raise ValueError(f"layer {layer.name!r} declares input_shape but is not the first layer of "
                                 f"model {self.name!r}")
            self.input_shape = layer._declared_input_shape
        self._layers.append(layer)
        if self.input_shape is not None:
            shape = self.output_shape if self.built else self.input_shape
            if isinstance(layer, InputLayer):
                shape = self.input_shape
            self.output_shape = layer.build_for(shape, self._init_rng)
            self.built = True
            if self.backend is not None:
                self._bind()

    def build(self, input_shape: Shape) -> None:
        shape = _as_shape(input_shape)
        self.input_shape = shape
        for layer in self._layers:
            shape = layer.build_for(shape, self._init_rng)
        self.output_shape = shape
        self.built = True

    def call(self, inputs, training: bool = False):
        x = inputs
        for layer in self._layers:
            x = layer(x, training=training)
        return x

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self._layers]}

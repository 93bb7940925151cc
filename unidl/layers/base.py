"""``Layer``: the base of every layer, built-in or user-written.

A layer is written like a Keras layer and runs on every backend:

* ``__init__`` validates arguments and creates no weight;
* ``build(input_shape)`` creates weights with ``self.add_weight(...)``, whose
  initial values come from the model's seeded NumPy generator;
* ``call(inputs, training=False)`` computes the output with ``unidl.ops``.

Shapes exclude nothing: ``input_shape`` passed to ``build`` and
``compute_output_shape`` includes the batch axis as ``None``.
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from .. import initializers, ops, regularizers
from ..naming import check_kwargs
from ..variables import Variable

Shape = tuple  # of int | None, batch axis first

_BASE_KWARGS = ("name", "trainable", "input_shape", "input_dim", "batch_size", "dtype")


class LayerShapeError(ValueError):
    """An input does not have the shape a layer was built for."""


def _as_shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def _shapes_compatible(expected: Shape, actual: Shape) -> bool:
    return len(expected) == len(actual) and all(e is None or a is None or e == a for e, a in zip(expected, actual))


class Layer:
    """Base class of layers. Subclasses implement ``build`` (optional) and ``call``.

    Args:
        name: unique name inside its model (default: snake_case of the class, numbered by the model).
        trainable: whether the optimizer updates this layer's weights.
        input_shape: shape of one sample (no batch axis), for the first layer of a Sequential model.
        input_dim: shorthand for ``input_shape=(input_dim,)``.
    """

    def __init__(self, **kwargs: Any):
        check_kwargs(f"{type(self).__name__}()", kwargs, (*_BASE_KWARGS, *_init_parameters(type(self))))
        self.name: str | None = kwargs.get("name")
        self._trainable = bool(kwargs.get("trainable", True))
        input_shape = kwargs.get("input_shape")
        if input_shape is None and kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        self._declared_input_shape = None if input_shape is None else (None, *_as_shape(input_shape))
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self._weights: list[Variable] = []
        self._rng: np.random.Generator | None = None

    # ------------------------------------------------------------ weights
    def add_weight(self, name: str, shape: Sequence[int], initializer="glorot_uniform",
                   regularizer=None, trainable: bool = True) -> Variable:
        """Create a weight drawn from the model's seeded generator."""
        rng = self._rng if self._rng is not None else np.random.default_rng()
        value = initializers.get(initializer)(tuple(int(d) for d in shape), rng)
        variable = Variable(np.asarray(value, dtype=np.float64), f"{self.name}/{name}",
                            trainable=trainable, regularizer=regularizers.get(regularizer))
        self._weights.append(variable)
        return variable

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)

    @property
    def weights(self) -> list[Variable]:
        return list(self._weights)

    @property
    def trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if w.trainable] if self._trainable else []

    @property
    def non_trainable_weights(self) -> list[Variable]:
        return [w for w in self._weights if not (w.trainable and self._trainable)]

    def count_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self._weights))

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self._weights]

    def set_weights(self, values: Sequence[np.ndarray]) -> None:
        if len(values) != len(self._weights):
            raise ValueError(f"layer {self.name!r} has {len(self._weights)} weights, got {len(values)} arrays")
        for w, v in zip(self._weights, values):
            v = np.asarray(v)
            if tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"layer {self.name!r}: weight {w.name!r} has shape {tuple(w.shape)}, "
                                 f"got an array of shape {v.shape}")
        for w, v in zip(self._weights, values):
            w.assign(np.asarray(v))

    # ------------------------------------------------------- build & call
    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of ``input_shape``. Default: no weights."""

    def call(self, inputs, training: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=False)")

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Output shape for ``input_shape``. Default: run ``call`` on one zero sample."""
        return infer_output_shape(self, input_shape)

    def build_for(self, input_shape: Shape, rng: np.random.Generator | None = None) -> Shape:
        """Build (once) for ``input_shape`` and return the output shape."""
        input_shape = _as_shape(input_shape)
        if not self.built:
            if rng is not None:
                self._rng = rng
            self.name = self.name or _snake_case(type(self).__name__)
            self.build(input_shape)
            self.input_shape = input_shape
            self.built = True
            self.output_shape = _as_shape(self.compute_output_shape(input_shape))
        elif not _shapes_compatible(self.input_shape, input_shape):
            raise LayerShapeError(
                f"layer {self.name!r} ({type(self).__name__}) was built for input shape "
                f"{self.input_shape}, got {input_shape}")
        return self.output_shape

    def __call__(self, inputs, training: bool = False):
        shape = ops.shape(inputs)
        if not self.built:
            self.build_for((None, *shape[1:]))
        elif len(shape) != len(self.input_shape) or any(
                e is not None and e != a for e, a in zip(self.input_shape[1:], shape[1:])):
            raise LayerShapeError(
                f"layer {self.name!r} ({type(self).__name__}) expected input shape "
                f"{self.input_shape}, got {(None, *shape[1:])}")
        if _accepts_training(type(self)):
            return self.call(inputs, training=training)
        return self.call(inputs)

    # ------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self._trainable}
        if self._declared_input_shape is not None:
            config["input_shape"] = self._declared_input_shape[1:]
        return config

    def regularization_losses(self) -> list:
        """Penalty terms of this layer's regularized weights (backend tensors)."""
        return [w.regularizer(w) for w in self._weights if w.regularizer is not None]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _init_parameters(cls: type) -> list[str]:
    """Named parameters of the layer class's own __init__ (for did-you-mean suggestions)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]


_TRAINING_ARG: dict[type, bool] = {}


def _accepts_training(cls: type) -> bool:
    # Checked once per class: user layers may write call(self, x) without `training`.
    if cls not in _TRAINING_ARG:
        params = inspect.signature(cls.call).parameters
        _TRAINING_ARG[cls] = "training" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return _TRAINING_ARG[cls]


def _snake_case(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def infer_output_shape(layer: Layer, input_shape: Shape) -> Shape:
    """Run ``layer.call`` on one zero sample to find its output shape (for custom layers)."""
    if any(d is None for d in input_shape[1:]):
        raise ValueError(f"layer {layer.name!r}: cannot infer the output shape for input shape {input_shape} "
                         "with unknown dimensions; implement compute_output_shape")
    backend = next((w.backend for w in layer.weights if w.backend is not None), None)
    from ..registry import get_backend
    backend = backend or get_backend("numpy", dtype="float64")
    with ops.use_backend(backend):
        with backend.no_grad():
            out = layer.call(backend.zeros((1, *input_shape[1:])), **(
                {"training": False} if _accepts_training(type(layer)) else {}))
        return (None, *backend.shape(out)[1:])


class InputLayer(Layer):
    """Declares the shape of the model's input (one sample, no batch axis).

    ``layers.Input((28, 28, 1))`` as the first entry of a ``Sequential`` is the
    same as passing ``input_shape=(28, 28, 1)`` to the first real layer.
    """

    def __init__(self, shape: Sequence[int], name: str | None = None, **kwargs: Any):
        super().__init__(name=name, input_shape=tuple(shape), **kwargs)
        self.shape = tuple(shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def call(self, inputs):
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape: Sequence[int], name: str | None = None) -> InputLayer:
    """The input of a model: ``Input((4,))`` declares samples of 4 features."""
    if isinstance(shape, int):
        shape = (shape,)
    return InputLayer(shape, name=name)

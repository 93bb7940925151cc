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

import contextlib
import contextvars
import inspect
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from .. import initializers, ops, regularizers
from ..arguments import checked
from ..naming import check_kwargs, snake_case
from ..precision import cast_floats
from ..registry import reference_backend
from ..symbolic import SymbolicTensor, call_symbolic, is_symbolic
from ..utils.random_seed import default_seed
from ..variables import TrainableFlag, Variable, structure_changed, structure_version

Shape = tuple  # of int | None, batch axis first

_BASE_KWARGS = ("name", "trainable", "input_shape", "input_dim", "batch_size", "dtype")


# The add_loss terms of the forward pass in progress (a list), None outside any layer call.
_LOSS_SCOPE: contextvars.ContextVar[list | None] = contextvars.ContextVar("unidl_loss_scope", default=None)


@contextlib.contextmanager
def collect_losses(owner: "Layer") -> Iterator[list]:
    """Collect the add_loss terms of a forward pass run inside (the trainer's steps use it); they
    become ``owner.losses`` afterwards, as after ``owner(x)``."""
    added: list = []
    token = _LOSS_SCOPE.set(added)
    try:
        yield added
    finally:
        _LOSS_SCOPE.reset(token)
        owner.__dict__["_added_losses"] = added


def provisional_rng() -> np.random.Generator:
    """The generator of a layer built outside any model: ``set_random_seed``'s next seed (so a
    seeded script is reproducible), else fresh entropy. A model adopting the layer redraws from its own."""
    return np.random.default_rng(default_seed())


class LayerShapeError(ValueError):
    """An input does not have the shape a layer was built for."""


# The ``training`` flag of the outermost call in progress: a sublayer called without one inherits it
# (a Dropout inside a user's layer is active during fit, as in Keras).
_TRAINING: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_training", default=False)
# True while a layer's call runs only to find shapes (build, compute_output_shape): weights stay NumPy.
_INFERRING: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_inferring_shapes", default=False)

# True while a model runs on data its host layers already processed (fit, evaluate, predict): those
# layers (runs_on_host) then pass their input through.
_HOST_DONE: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_host_layers_done", default=False)


@contextlib.contextmanager
def host_layers_done() -> Iterator[None]:
    """Layers that run on the host (``runs_on_host``) pass their input through: it went through them already."""
    token = _HOST_DONE.set(True)
    try:
        yield
    finally:
        _HOST_DONE.reset(token)


def host_layers_done_already() -> bool:
    """Whether the model runs on data its host layers already processed (see :func:`host_layers_done`)."""
    return _HOST_DONE.get()


# True while a saved model is rebuilt for loading: weights get placeholders instead of drawn values.
_DEFERRED_VALUES: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_deferred_values", default=False)


@contextlib.contextmanager
def deferred_initial_values() -> Iterator[None]:
    """Layers built inside draw no initial weights: each weight is a zero-copy, read-only
    placeholder of its shape, to be assigned from a file. Loading uses it, so that a file
    declaring a huge architecture costs nothing before its weights are checked."""
    token = _DEFERRED_VALUES.set(True)
    try:
        yield
    finally:
        _DEFERRED_VALUES.reset(token)


def _as_shape(shape):
    """A shape as a tuple of int/None; a list of shapes (multi-input layers) as a list of those."""
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return [_as_shape(s) for s in shape]
    return tuple(None if d is None else int(d) for d in shape)


def _sample_shape(shape) -> tuple:
    """A declared input shape (one sample, no batch axis), checked: positive sizes or None."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
            d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in shape):
        raise TypeError(f"an input shape must be a tuple of sizes (ints, or None for unknown), got {shape!r}")
    if any(d is not None and d <= 0 for d in shape):
        raise ValueError(f"input shape {tuple(shape)} has an axis of size <= 0; every axis of a sample must "
                         "have a positive size (or None when unknown)")
    return tuple(None if d is None else int(d) for d in shape)


def _shapes_compatible(expected, actual) -> bool:
    if isinstance(expected, list) or isinstance(actual, list):
        return (isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual)
                and all(_shapes_compatible(e, a) for e, a in zip(expected, actual)))
    return len(expected) == len(actual) and all(
        e is None or a is None or e == a for e, a in zip(expected[1:], actual[1:]))


def _batchless_shape(inputs):
    """(None, *sample shape) of a tensor, or a list of those for a list of tensors."""
    if isinstance(inputs, (list, tuple)):
        return [_batchless_shape(x) for x in inputs]
    return (None, *ops.shape(inputs)[1:])


class Layer:
    """Base class of layers. Subclasses implement ``build`` (optional) and ``call``.

    Args:
        name: unique name inside its model (default: snake_case of the class, numbered by the model).
        trainable: whether the optimizer updates this layer's weights.
        input_shape: shape of one sample (no batch axis), for the first layer of a Sequential model.
        input_dim: shorthand for ``input_shape=(input_dim,)``.
    """

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        # unidl's own layers check their annotated constructor arguments (Dropout(rate="half") names
        # rate); users' layers are left as their authors wrote them.
        if cls.__module__.startswith("unidl.") and "__init__" in vars(cls):
            cls.__init__ = checked(vars(cls)["__init__"])

    def __init__(self, **kwargs: Any):
        check_kwargs(f"{type(self).__name__}()", kwargs, (*_BASE_KWARGS, *_init_parameters(type(self))))
        self.name: str | None = kwargs.get("name")
        if not isinstance(kwargs.get("trainable", True), (bool, np.bool_)):
            raise TypeError(f"{type(self).__name__}(): trainable must be True or False, "
                            f"got trainable={kwargs['trainable']!r}")
        self._trainable = bool(kwargs.get("trainable", True))
        input_shape = kwargs.get("input_shape")
        if input_shape is None and kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        self._declared_input_shape = None if input_shape is None else (None, *_sample_shape(input_shape))
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self._weights: list[Variable] = []
        self._rng: np.random.Generator | None = None
        # Constructor arguments as given (a name stays a name), for get_config: subclasses fill it.
        self._config_args: dict[str, Any] = {}

    # ------------------------------------------------------------ weights
    def add_weight(self, *args: Any, shape: Sequence[int] | None = None, initializer=None, dtype=None,
                   trainable: bool = True, autocast: bool = True, regularizer=None, constraint=None,
                   aggregation: str = "none", name: str | None = None, **kwargs: Any) -> Variable:
        """Create a weight drawn from the model's seeded generator (Keras 3's signature).

        ``add_weight(shape=(3, 4), initializer="random_normal", trainable=True)`` as in Keras 3, or
        positionally ``add_weight(shape, initializer, ...)``; unidl's own layers (and Keras 2 code)
        pass the name first: ``add_weight("kernel", (3, 4), "glorot_uniform", regularizer)``.
        ``initializer`` defaults to "glorot_uniform"; ``name`` to "variable", "variable_1"...
        ``dtype`` and ``autocast`` are accepted for compatibility: weights are stored in the
        backend's dtype and read in the compute dtype under a mixed-precision policy.
        """
        if kwargs:
            raise TypeError(f"{type(self).__name__}.add_weight() got unexpected arguments {sorted(kwargs)}")
        given = dict(shape=shape, initializer=initializer, dtype=dtype, trainable=trainable,
                     regularizer=regularizer, name=name)
        order = (("name", "shape", "initializer", "regularizer", "trainable") if args and isinstance(args[0], str)
                 else ("shape", "initializer", "dtype", "trainable", "autocast", "regularizer", "constraint",
                       "aggregation", "name"))
        if len(args) > len(order):
            raise TypeError(f"add_weight() takes at most {len(order)} positional arguments, got {len(args)}")
        given.update(zip(order, args))
        if given.get("constraint", constraint) is not None:
            raise NotImplementedError(f"{type(self).__name__}.add_weight(constraint=...): weight constraints "
                                      "are not supported yet; clip the weights in a callback instead")
        if given["shape"] is None:
            given["shape"] = ()
        return self._new_weight(given["name"], given["shape"],
                                "glorot_uniform" if given["initializer"] is None else given["initializer"],
                                given["regularizer"], bool(given["trainable"]))

    def _new_weight(self, name: str | None, shape, initializer, regularizer, trainable: bool) -> Variable:
        init = initializers.get(initializer)
        try:
            shape = tuple(int(d) for d in (shape if isinstance(shape, (list, tuple)) else (shape,)))
        except (TypeError, ValueError):
            raise TypeError(f"{type(self).__name__}.add_weight(): shape must be a tuple of integers, "
                            f"got {shape!r}") from None
        if name is None:
            taken = {w.name.rsplit("/", 1)[-1] for w in self._weights}
            name = next(n for n in ("variable", *(f"variable_{i}" for i in range(1, len(taken) + 2)))
                        if n not in taken)
        if _DEFERRED_VALUES.get():  # rebuilt for loading: the file provides the values
            initial = np.broadcast_to(np.zeros((), np.float64), shape)
        else:
            # Without a model's generator (a layer called outside any model), draw provisionally:
            # the model that later adopts the layer redraws these from its own seed.
            rng = self._rng if self._rng is not None else provisional_rng()
            initial = np.asarray(init(shape, rng), dtype=np.float64)
        variable = Variable(initial, f"{self.name}/{name}", trainable=trainable,
                            regularizer=regularizers.get(regularizer))
        variable.initializer = init
        variable.seeded = self._rng is not None
        self._weights.append(variable)
        structure_changed()
        return variable

    # ------------------------------------------------------------ add_loss
    def add_loss(self, loss) -> None:
        """Add a loss term computed in ``call`` (an activity penalty, a KL term): ``fit`` adds every
        term added during the forward pass to the compiled loss, as Keras does. Read them with
        ``model.losses`` after a call."""
        scope = _LOSS_SCOPE.get()
        if scope is None:  # called outside any forward pass: kept on the layer until the next call
            self.__dict__.setdefault("_added_losses", []).append(loss)
        else:
            scope.append(loss)

    @property
    def losses(self) -> list:
        """The terms ``add_loss`` added during the last call (sublayers' included), then the weight
        regularization penalties: what ``fit`` adds to the compiled loss."""
        return [*self.__dict__.get("_added_losses", []), *self.regularization_losses()]

    trainable = TrainableFlag()  # whether the optimizer updates this layer's weights

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if isinstance(value, Layer) or (isinstance(value, (list, tuple))  # a sublayer: its weights are ours
                                        and any(isinstance(item, Layer) for item in value)):
            structure_changed()

    def _sublayers(self) -> list["Layer"]:
        """Layers held in attributes (directly or in a list/tuple): their weights are this layer's too."""
        found: dict[int, Layer] = {}
        for value in self.__dict__.values():
            for item in (value if isinstance(value, (list, tuple)) else (value,)):
                if isinstance(item, Layer) and item is not self:
                    found.setdefault(id(item), item)
        return list(found.values())

    @property
    def weights(self) -> list[Variable]:
        seen = {id(w): w for w in self._weights}
        for sub in self._sublayers():
            for w in sub.weights:
                seen.setdefault(id(w), w)
        return list(seen.values())

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self._trainable:
            return []
        ids = {id(w) for w in self._weights if w.trainable}
        ids.update(id(w) for sub in self._sublayers() for w in sub.trainable_weights)
        return [w for w in self.weights if id(w) in ids]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        ids = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in ids]

    def count_params(self) -> int:
        return int(sum(np.prod(w.shape) for w in self.weights))

    _kind = "layer"  # how error messages name this kind of object
    # Under a mixed-precision policy (unidl.precision) a layer's floating inputs are cast to the
    # half compute dtype, except where ``autocast_inputs`` is False (Embedding: its inputs are ids,
    # which bfloat16 would round above 256); ``compute_in_float32`` runs the whole layer in float32
    # (batch means and variances lose too much in bfloat16).
    autocast_inputs = True
    compute_in_float32 = False
    # Layers computed on the host in NumPy (string lookups, text vectorization): fit/evaluate/predict run
    # them on the batch before the backend step (see unidl.layers.preprocessing).
    runs_on_host = False

    def get_weights(self) -> list[np.ndarray]:
        """All weights as NumPy arrays, layer by layer in Keras order (kernel, then bias)."""
        return [w.numpy() for w in self.weights]

    def set_weights(self, values: Sequence[np.ndarray]) -> None:
        """Set every weight from a list like the one ``get_weights`` returns. All-or-nothing."""
        weights = self.weights
        if len(values) != len(weights):
            raise ValueError(f"{self._kind} {self.name!r} has {len(weights)} weight arrays, got {len(values)}")
        for w, v in zip(weights, values):
            v = np.asarray(v)
            if tuple(v.shape) != tuple(w.shape):
                raise ValueError(f"{self._kind} {self.name!r}: weight {w.name!r} has shape {tuple(w.shape)}, "
                                 f"got an array of shape {v.shape}")
        for w, v in zip(weights, values):
            w.assign(np.asarray(v))

    # ------------------------------------------------------- build & call
    def build(self, input_shape: Shape) -> None:
        """Create the weights for inputs of ``input_shape``. Default: no weights."""

    def call(self, inputs, training: bool = False):
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=False)")

    def call_with_training(self, inputs, training: bool, **kwargs):
        """``call(inputs, training=training)``, or ``call(inputs)`` when ``call`` takes no ``training``;
        sublayers called without a ``training`` of their own inherit it."""
        if _call_signature(type(self)).training:
            kwargs["training"] = training
        token = _TRAINING.set(bool(training))
        try:
            return self.call(inputs, **kwargs)
        finally:
            _TRAINING.reset(token)

    def check_input_values(self, values: np.ndarray, where: str) -> None:
        """Refuse input data this layer cannot take, before any step runs (ValueError naming ``where``).

        fit/evaluate/predict call it on the NumPy data of each model input the layer reads
        directly. Default: any numbers are fine (Embedding checks its ids).
        """

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Output shape for ``input_shape``. Default: run ``call`` on one zero sample."""
        return infer_output_shape(self, input_shape)

    def build_for(self, input_shape: Shape, rng: np.random.Generator | None = None,
                  arg_shapes: tuple = (), kwarg_shapes: dict | None = None) -> Shape:
        """Build (once) for ``input_shape`` and return the output shape.

        ``arg_shapes`` / ``kwarg_shapes``: the shapes of the call's other tensor arguments (an
        attention layer's value and key), passed on to a ``build`` that takes them, as in Keras.
        """
        input_shape = _as_shape(input_shape)
        if not self.built:
            if rng is not None:
                self._rng = rng
            self.name = self.name or snake_case(type(self).__name__)
            if _build_takes_more(type(self)):
                self.build(input_shape, *arg_shapes, **(kwarg_shapes or {}))
            else:
                self.build(input_shape)
            self.input_shape = input_shape
            self.built = True
            subs = [sub for sub in self._sublayers() if not sub.built]
            if subs:  # sublayers build on their first call: run one now so all weights exist before compile
                for sub in subs:
                    sub._rng = sub._rng or self._rng
                infer_output_shape(self, input_shape)
            self.output_shape = _as_shape(self.compute_output_shape(input_shape))
        elif not _shapes_compatible(self.input_shape, input_shape):
            raise LayerShapeError(
                f"layer {self.name!r} ({type(self).__name__}) was built for input shape "
                f"{self.input_shape}, got {input_shape}")
        return self.output_shape

    def symbolic_output_shape(self, input_shape: Shape, arg_shapes: tuple = (), kwarg_shapes: dict | None = None,
                              call_kwargs: dict | None = None):
        """The output shape(s) of a call recorded in a functional graph (building the layer first).

        Default: ``build_for``'s. A layer whose outputs depend on a call argument (attention's
        ``return_attention_scores``) overrides it.
        """
        return self.build_for(input_shape, arg_shapes=arg_shapes, kwarg_shapes=kwarg_shapes)

    def rename(self, name: str) -> None:
        """Change the layer's name and the ``layer/weight`` names of its weights with it."""
        old, self.name = self.name, name
        for w in self._weights:
            if old and w.name.startswith(old + "/"):
                w.name = name + w.name[len(old):]

    def redraw_unseeded(self, rng: np.random.Generator) -> None:
        """Redraw what was drawn without a model's generator from ``rng`` (same seed, same weights):
        this layer's weights and random streams, then its sublayers' (a custom layer called before
        its model existed built its Dense and Dropout sublayers provisionally)."""
        self._rng = rng
        for w in self._weights:
            if not w.seeded and w.initializer is not None:
                w.assign(np.asarray(w.initializer(w.shape, rng), dtype=np.float64))
                w.seeded = True
        self.redraw_streams(rng)
        for sub in self._sublayers():
            if sub._rng is None or sub._rng is not rng:
                sub.redraw_unseeded(rng)

    def redraw_streams(self, rng: np.random.Generator) -> None:
        """Re-derive random streams (Dropout's masks) drawn provisionally; the default has none."""

    # Masks (Keras's): a layer that keeps its input's timesteps aligned passes a mask through
    # (``supports_masking``); ``compute_mask`` gives the mask of its output. Functional and
    # Sequential models carry masks from layer to layer, and the loss leaves masked steps out.
    supports_masking = False

    def compute_mask(self, inputs, mask=None):
        """The mask of this layer's output, given its input and the input's mask (None: no mask)."""
        return mask if self.supports_masking else None

    def __call__(self, inputs, *args, **kwargs):
        """Run the layer on tensors, or, on symbolic inputs (``layers.Input``), add it to a graph.

        Positional arguments after ``inputs`` and keyword arguments go to ``call`` (an attention
        layer's ``value``, a recurrent layer's ``initial_state``). ``training`` (default: that of
        the call this one runs in, else False) and ``mask`` go to ``call`` when it takes them.
        """
        training = kwargs.pop("training", None)
        if self.runs_on_host and host_layers_done_already() and not is_symbolic(inputs):
            return inputs  # the data pipeline ran this layer on the NumPy batch already
        if is_symbolic(inputs) or any(is_symbolic(a) for a in (*args, *kwargs.values())):
            _check_call_arguments(type(self), args, kwargs)
            if training is not None:
                kwargs["training"] = training
            return call_symbolic(self, inputs, args, kwargs)
        signature = _call_signature(type(self))
        if args and signature.names[:1] == ("training",):  # layer(x, True): call(self, x, training)
            training, args = (args[0] if training is None else training), args[1:]
        training = _TRAINING.get() if training is None else bool(training)
        backend = ops._current.get()
        self._build_on_first_call(inputs, backend, args, kwargs)
        if signature.training:
            kwargs["training"] = training
        if "mask" in kwargs and (kwargs["mask"] is None or not signature.mask):
            del kwargs["mask"]  # as Keras: a layer that takes no mask gets none
        if self.autocast_inputs and self._weights and backend is not None:
            inputs = _integers_as_floats(backend, inputs)
        token = _TRAINING.set(training)
        # The outermost call collects what add_loss adds anywhere below it (see ``losses``).
        outermost = _LOSS_SCOPE.get() is None
        scope_token = _LOSS_SCOPE.set([]) if outermost else None
        try:
            if backend is not None and backend.autocast:  # a mixed-precision compute twin
                if self.compute_in_float32:
                    return self._call_in_full_precision(backend, inputs, args, kwargs)
                if self.autocast_inputs:
                    inputs = cast_floats(backend, inputs, backend.dtype)
            return self.call(inputs, *args, **kwargs)
        finally:
            _TRAINING.reset(token)
            if outermost:
                self.__dict__["_added_losses"] = _LOSS_SCOPE.get()
                _LOSS_SCOPE.reset(scope_token)

    def _build_on_first_call(self, inputs, backend, args: tuple = (), kwargs: dict | None = None) -> None:
        """Build for the inputs' shape the first time; check it afterwards; put new weights on ``backend``."""
        shape = _batchless_shape(inputs)
        if not self.built:
            kwarg_shapes = {k: _arg_shape(v) for k, v in (kwargs or {}).items() if _arg_shape(v) is not None}
            self.build_for(shape, arg_shapes=tuple(_arg_shape(a) for a in args), kwarg_shapes=kwarg_shapes)
            for sub in self._sublayers():  # sublayers built inside call draw from the same seed
                if not sub.built and sub._rng is None:
                    sub._rng = self._rng
        elif not _shapes_compatible(self.input_shape, shape):
            raise LayerShapeError(
                f"layer {self.name!r} ({type(self).__name__}) expected input shape "
                f"{self.input_shape}, got {shape}")
        # A layer used by hand under a backend (use_backend, a custom loop) computes with that backend's
        # tensors: its NumPy weights move there, as compile would move them. Not while shapes are inferred.
        if backend is not None and self._weights and self._weights[0].backend is None and not _INFERRING.get():
            owner = backend.full_precision or backend
            for w in self._weights:
                if w.backend is None:
                    w.bind(owner)

    def _call_in_full_precision(self, twin, inputs, args, kwargs):
        """Run ``call`` on the float32 backend behind a mixed-precision twin; outputs in the twin's dtype."""
        full = twin.full_precision
        with ops.use_backend(full):
            outputs = self.call(cast_floats(full, inputs, full.dtype), *args, **kwargs)
        return cast_floats(twin, outputs, twin.dtype)

    # ------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """The arguments that rebuild this layer: name, trainable, input shape, and ``self._config_args``."""
        config: dict[str, Any] = {"name": self.name, "trainable": self._trainable}
        if self._declared_input_shape is not None:
            config["input_shape"] = self._declared_input_shape[1:]
        return {**config, **self._config_args}

    def regularization_losses(self) -> list:
        """Penalty terms of this layer's regularized weights, sublayers' included (backend tensors)."""
        # The walk over the weights costs more than a small model's step: redo it only after the
        # structure changed (unidl.variables.structure_version); most models regularize nothing.
        version = structure_version()
        cached = self.__dict__.get("_regularized_cache")
        if cached is None or cached[0] != version:
            cached = (version, [w for w in self.weights if w.regularizer is not None])
            self.__dict__["_regularized_cache"] = cached
        return [w.regularizer(w) for w in cached[1]]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} built={self.built}>"


def _init_parameters(cls: type) -> list[str]:
    """Named parameters of the layer class's own __init__ (for did-you-mean suggestions)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]


def merge_masks(masks) -> Any:
    """The logical and of the masks that are not None (None when all are)."""
    present = [m for m in (masks if isinstance(masks, (list, tuple)) else [masks]) if m is not None]
    if not present:
        return None
    merged = present[0]
    for m in present[1:]:
        merged = ops.where(merged, m, False)
    return merged


def _integers_as_floats(backend, inputs):
    """Integer or bool tensors as the compute dtype: a layer with floating weights (Dense fed uint8 pixels,
    int features) computes in floats, as Keras casts them; floats pass through untouched."""
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_integers_as_floats(backend, x) for x in inputs)
    if hasattr(inputs, "dtype") and not backend.is_floating(inputs):
        return backend.cast(inputs, backend.dtype)
    return inputs


def _arg_shape(value) -> Shape | None:
    """(None, *sample shape) of a tensor argument (symbolic or real), None for anything else."""
    if isinstance(value, SymbolicTensor):
        return value.shape
    shape = getattr(value, "shape", None)
    if shape is None or isinstance(value, (int, float, bool)) or not len(tuple(shape)):
        return None
    return (None, *tuple(shape)[1:])


_BUILD_TAKES_MORE: dict[type, bool] = {}


def _build_takes_more(cls: type) -> bool:
    """Whether ``cls.build`` takes more than the input shape (the shapes of other call arguments)."""
    found = _BUILD_TAKES_MORE.get(cls)
    if found is None:
        params = list(inspect.signature(cls.build).parameters.values())[2:]
        found = _BUILD_TAKES_MORE[cls] = bool(params)
    return found


class _CallSignature(NamedTuple):
    training: bool   # call takes ``training``
    mask: bool       # call takes ``mask``
    names: tuple     # its parameter names after ``inputs``
    var_positional: bool
    var_keyword: bool


_SIGNATURES: dict[type, _CallSignature] = {}


def _call_signature(cls: type) -> _CallSignature:
    """What ``cls.call`` takes, read once per class (user layers may write ``call(self, x)``)."""
    found = _SIGNATURES.get(cls)
    if found is None:
        params = list(inspect.signature(cls.call).parameters.values())[2:]  # after self, inputs
        var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        names = tuple(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
        found = _SIGNATURES[cls] = _CallSignature(
            "training" in names or var_keyword, "mask" in names or var_keyword, names,
            any(p.kind is p.VAR_POSITIONAL for p in params), var_keyword)
    return found


def call_parameters(cls: type) -> tuple:
    """The names ``cls.call`` takes after its inputs."""
    return _call_signature(cls).names


def _check_call_arguments(cls: type, args: tuple, kwargs: dict) -> None:
    """Refuse arguments ``cls.call`` does not take, when the call is recorded (not at run time)."""
    signature = _call_signature(cls)
    if len(args) > len(signature.names) and not signature.var_positional:
        raise TypeError(f"{cls.__name__}.call() takes {len(signature.names)} argument(s) after the inputs "
                        f"({list(signature.names)}), got {len(args)}")
    if signature.var_keyword:
        return
    for key in kwargs:
        if key not in signature.names:
            raise TypeError(f"{cls.__name__}.call() got an unexpected keyword argument {key!r}; it takes "
                            f"{list(signature.names)}")


def infer_output_shape(layer: Layer, input_shape: Shape) -> Shape:
    """Run ``layer.call`` on one zero sample to find its output shape (for custom layers)."""
    flat = [d for shp in (input_shape if isinstance(input_shape, list) else [input_shape]) for d in shp[1:]]
    if any(d is None for d in flat):
        raise ValueError(f"layer {layer.name!r}: cannot infer the output shape for input shape {input_shape} "
                         "with unknown dimensions; implement compute_output_shape")
    backend = next((w.backend for w in layer.weights if w.backend is not None), None) or reference_backend()

    def zeros(shape):
        return [zeros(s) for s in shape] if isinstance(shape, list) else backend.zeros((1, *shape[1:]))

    def batchless(out):
        return [batchless(o) for o in out] if isinstance(out, (list, tuple)) else (None, *backend.shape(out)[1:])

    with ops.use_backend(backend), inferring_shapes():
        with backend.no_grad():
            out = layer.call_with_training(zeros(input_shape), False)
        return batchless(out)


@contextlib.contextmanager
def inferring_shapes() -> Iterator[None]:
    """Calls inside only find shapes: layers keep their weights where they are (NumPy before compile)."""
    token = _INFERRING.set(True)
    try:
        yield
    finally:
        _INFERRING.reset(token)


class InputLayer(Layer):
    """Declares the shape of the model's input (one sample, no batch axis).

    ``layers.Input((28, 28, 1))`` as the first entry of a ``Sequential`` is the
    same as passing ``input_shape=(28, 28, 1)`` to the first real layer.
    """

    def __init__(self, shape: Sequence[int | None], name: str | None = None, **kwargs: Any):
        super().__init__(name=name, input_shape=tuple(shape), **kwargs)
        self.shape = tuple(shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def call(self, inputs):
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape: Sequence[int], name: str | None = None, dtype: str | None = None):
    """The input of a model: ``Input((4,))`` declares samples of 4 features (no batch axis).

    Returns a symbolic tensor: call layers on it and pass the result to
    ``unidl.Model(inputs, outputs)``, or put it first in a ``Sequential``.
    """
    if isinstance(shape, int):
        shape = (shape,)
    layer = InputLayer(shape, name=name)
    return SymbolicTensor((None, *layer.shape), layer, index=0, dtype=dtype)

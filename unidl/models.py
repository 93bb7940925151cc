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
from . import precision, saving, training
from .backend import HALF_DTYPES, Backend
from .data import NONFINITE_CHOICES
from .functional import Graph, SymbolicTensor, map_structure
from .layers.base import InputLayer, Layer, Shape, _as_shape, _snake_case, is_symbolic
from .ops import _current, use_backend
from .registry import get_backend
from .variables import structure_changed

# Attributes that tie a model to a backend; clone() leaves them behind.
_COMPILED_STATE = ("backend", "optimizer", "_train_function", "_inference_functions", "dtype_policy")


class NotCompiledError(RuntimeError):
    """fit/evaluate called before compile()."""


class Model(Layer):
    """A trainable graph of layers: compile / fit / evaluate / predict live here.

    Three ways to describe one, all running on every backend:

    * functional: ``Model(inputs, outputs)`` with ``inputs = layers.Input(shape)`` and
      ``outputs`` the result of calling layers on it (several inputs/outputs, shared layers);
    * subclassing: create layers in ``__init__`` and write ``call(inputs, training=False)``;
    * :class:`Sequential`, a plain stack.

    A model is itself a layer, so it can be used inside another model (transfer
    learning: freeze it with ``model.trainable = False``).

    Args:
        inputs, outputs: symbolic tensors (functional API), or None when subclassing.
        name: shown by ``summary()``.
        seed: seeds every random choice unidl makes for this model (initial weights,
            shuffling, dropout masks): the same seed gives the same model on every backend.
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, seed: int | None = None,
                 trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.name = name or _snake_case(type(self).__name__)
        self.seed = seed
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(seeds[0])      # weights, dropout streams
        self.shuffle_rng = np.random.default_rng(seeds[1])    # fit()'s batch order
        self.backend: Backend | None = None
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.loss = None  # the compiled Loss (single-output models)
        self._loss_spec = self._loss_weights = None  # compile's loss / loss_weights as given
        self._losses: list | None = None  # (Loss, weight) per output, resolved when training starts
        self._train_function = None
        self._trainable_cache: tuple | None = None  # (structure version, trainable weights): train_step
        self._inference_functions: dict = {}  # "predict" / "test" -> step, compiled by the backend
        self._metric_ids: list = []
        self.jit_compile: bool | str = "auto"
        self.distribute = None  # a unidl.distributed strategy, set by compile
        self.dtype_policy: precision.DTypePolicy | None = None  # set by compile
        self.nonfinite_data = "raise"  # compile's choice for NaN/inf in the data
        self.stop_training = False
        self.history = None
        self._graph: Graph | None = None
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model(inputs, outputs): give both, or neither when subclassing")
            self._init_graph(inputs, outputs)

    def _init_graph(self, inputs, outputs) -> None:
        self._graph = Graph(inputs, outputs)
        structure_changed()
        taken: set[str] = set()
        for t in self._graph.inputs:  # inputs get names too, so the wiring can be saved
            t.node.layer.name = unique_name(t.node.layer.name or "input_layer", taken)
            taken.add(t.node.layer.name)
        for layer in self._graph.layers:
            if layer.name in taken:
                layer.rename(unique_name(layer.name, taken))
            taken.add(layer.name)
            layer.redraw_unseeded(self._init_rng)  # layers called outside a model get this model's seed
        shapes = [t.shape for t in self._graph.inputs]
        self.input_shape = shapes[0] if len(shapes) == 1 else shapes
        out_shapes = [t.shape for t in self._graph.outputs]
        self.output_shape = out_shapes[0] if len(out_shapes) == 1 else out_shapes
        self.built = True

    # ------------------------------------------------------------ layers
    @property
    def layers(self) -> list[Layer]:
        """Sub-layers: the graph's (functional), or those assigned as attributes (subclassed)."""
        if self._graph is not None:
            return self._graph.layers
        return Layer._sublayers(self)  # subclassed: layers held in attributes

    @property
    def output_names(self) -> list[str]:
        if self._graph is None:
            return [self.name]
        return [t.node.layer.name for t in self._graph.outputs]

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model {self.name!r} has no layer {name!r}; its layers: "
                         f"{[layer.name for layer in self.layers]}")

    _kind = "model"

    def _sublayers(self) -> list[Layer]:
        # A model's weights, trainable weights and penalties are those of its layers (Layer's rules).
        return self.layers

    def count_params(self) -> int:
        self._require_built("count_params")
        return super().count_params()

    # ------------------------------------------------------------- build
    def build(self, input_shape: Shape) -> None:
        """Create every weight for inputs of ``input_shape`` (batch axis included, may be None)."""
        if self._graph is not None:
            return
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

        def zeros(shape):
            return [zeros(s) for s in shape] if isinstance(shape, list) else backend.zeros((1, *shape[1:]))

        with use_backend(backend), backend.no_grad():
            out = self.call(zeros(input_shape), training=False)
            self.output_shape = map_structure(lambda o: (None, *backend.shape(o)[1:]), out)
        self.input_shape = input_shape
        self.built = True

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if not self.built:
            self.build(input_shape)
        return self.output_shape

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
        if self._graph is not None:
            return self._graph.run(inputs, training)
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=False)")

    def __call__(self, inputs, training: bool = False, **kwargs):
        """Run the model. Inside another model's computation (a backend is bound and the inputs are
        tensors) it behaves as a layer; called from user code it uses its own compiled backend."""
        def as_layer(x):
            return super(Model, self).__call__(x, training=training, **kwargs)

        bound = current_backend_or_none()
        if is_symbolic(inputs) or (bound is not None and not _has_numpy(inputs)):
            # A custom training step calling its own model runs it under the model's dtype policy.
            return self.forward(inputs, run=as_layer) if bound is self.backend else as_layer(inputs)
        if self.backend is None:
            raise NotCompiledError(f"model {self.name!r} is not bound to a backend; call "
                                   "model.compile(..., backend=...) first")
        with use_backend(self.backend):
            inputs = map_structure(lambda x: self.backend.convert(x) if isinstance(x, np.ndarray) else x, inputs)
            if not self.built:
                self.ensure_built(map_structure(lambda x: (None, *self.backend.shape(x)[1:]), inputs))
            return self.forward(inputs, run=as_layer)

    def forward(self, inputs, training: bool = False, run=None):
        """``call(inputs)`` under the model's dtype policy (with its backend bound).

        Under a mixed policy the layers run on the backend's half-precision twin (each casts its
        floating inputs as it is called), and the outputs come back as float32 for losses and metrics.
        """
        run = run or (lambda x: self.call(x, training=training))
        policy = self.dtype_policy
        if policy is None or not policy.mixed:
            return run(inputs)
        twin = self.backend.compute_twin(policy.compute_dtype)
        with use_backend(twin):
            outputs = run(inputs)
        return precision.cast_floats(self.backend, outputs, policy.variable_dtype)

    # ----------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend: str | Backend = "numpy",
                dtype: str = "float32", device: str | None = None, jit_compile: bool | str = "auto",
                loss_weights=None, distribute=None, dtype_policy: str | None = None,
                nonfinite_data: str = "raise") -> None:
        """Choose optimizer, loss, metrics and the backend this model runs on.

        Args:
            optimizer: name ("adam") or ``unidl.optimizers.Optimizer`` instance.
            loss: name ("mse", "binary_crossentropy"...), Loss instance or function; for a model
                with several outputs, one for all, a list (one per output) or a dict by output name.
            loss_weights: for several outputs, the factor of each output's loss (list or dict).
            distribute: a ``unidl.distributed.DataParallel`` strategy to train across processes.
            metrics: list of names ("accuracy", "mae"...), Metric instances or functions.
            backend: registered backend name ("numpy", "torch", "tensorflow", or a plugin's).
            dtype: weight and compute dtype, "float32" (default) or "float64".
            dtype_policy: "mixed_bfloat16" or "mixed_float16" to compute in half precision with
                float32 master weights (torch, tensorflow); "mixed_float16" scales the loss.
            device: e.g. "cpu", "cuda", "cuda:1"; None is the backend's default.
            jit_compile: let the backend compile the train step ("auto": when it has a faster path).
            nonfinite_data: what fit/evaluate/predict do with NaN or inf in x, y or sample_weight:
                "raise" (default, a DataError naming the array and the first bad sample),
                "warn" (a RuntimeWarning, then use the data) or "ignore" (no scan).

        Compiling again (e.g. on another backend) keeps the current weights and
        starts a fresh optimizer state.
        """
        if nonfinite_data not in NONFINITE_CHOICES:
            raise ValueError(f"nonfinite_data must be one of {list(NONFINITE_CHOICES)}, got {nonfinite_data!r}")
        if dtype in HALF_DTYPES:
            raise ValueError(f"dtype={dtype!r} would keep the weights themselves in {dtype}; to compute in {dtype} "
                             f"with float32 weights, compile with dtype_policy='mixed_{dtype}'")
        new_backend = get_backend(backend, dtype=dtype, device=device)
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
        if self.built:
            self._bind()

    def _bind(self) -> None:
        """Move weights that are not on this model's backend onto it; give the optimizer slots."""
        for w in self.weights:
            if w.backend is not self.backend:
                w.bind(self.backend)
                self._inference_functions = {}  # compiled ones hold the old variables
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

    # ------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Functional models: layers plus the wiring of every call (see ``from_config``)."""
        if self._graph is None:
            raise NotImplementedError(f"{type(self).__name__} is a subclassed model: implement get_config() "
                                      "(and from_config) to save it as JSON, or save only its weights")
        from .saving import serialize_layer
        nodes = self._graph.nodes
        position = {id(node): i for i, node in enumerate(nodes)}

        def ref(t: SymbolicTensor) -> list[int]:
            return [position[id(t.node)], t.index]

        def ref_structure(value):
            if isinstance(value, (list, tuple)):
                return [ref_structure(v) for v in value]
            return {"ref": ref(value)}

        layers_config: dict[str, Any] = {}
        calls = []
        for node in nodes:
            layers_config.setdefault(node.layer.name, serialize_layer(node.layer))
            calls.append({"layer": node.layer.name,
                          "inputs": None if node.inputs is None else ref_structure(node.inputs),
                          "kwargs": node.kwargs})
        return {"name": self.name, "seed": self.seed, "trainable": self.trainable,
                "layers": layers_config, "calls": calls,
                "inputs": [ref(t) for t in self._graph.inputs],
                "outputs": ref_structure(self._graph.output_structure)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> "Model":
        """Rebuild a functional model from ``get_config()``: same layers, same wiring, same names."""
        from .saving import deserialize_layer
        layers_by_name = {name: deserialize_layer(spec, custom_objects) for name, spec in config["layers"].items()}
        outputs_of: list[Any] = []
        for call in config["calls"]:
            layer = layers_by_name[call["layer"]]
            if call["inputs"] is None:  # an Input
                outputs_of.append(SymbolicTensor((None, *layer.shape), layer))
                continue

            def resolve(value):
                if isinstance(value, list):
                    return [resolve(v) for v in value]
                node, index = value["ref"]
                out = outputs_of[node]
                return out[index] if isinstance(out, list) else out
            outputs_of.append(layer(resolve(call["inputs"]), **call.get("kwargs", {})))

        def pick(value):
            if isinstance(value, list) and value and not isinstance(value[0], int):
                return [pick(v) for v in value]
            node, index = value["ref"] if isinstance(value, dict) else value
            out = outputs_of[node]
            return out[index] if isinstance(out, list) else out
        inputs = [pick(r) for r in config["inputs"]]
        return cls(inputs if len(inputs) > 1 else inputs[0], pick(config["outputs"]), name=config.get("name"),
                   seed=config.get("seed"), trainable=config.get("trainable", True))

    def to_native(self):
        """This model as its backend's own module: a ``torch.nn.Module`` on torch, a ``tf.Module``
        on TensorFlow. It computes the same outputs; trace or save it to leave unidl behind."""
        if self.backend is None:
            raise NotCompiledError(f"model {self.name!r} must be compiled on a backend before to_native()")
        self._require_built("to_native")
        return self.backend.export_module(self)

    def export(self, path, format: str = "onnx", **options) -> None:
        """Write this model for inference without unidl: ``format="onnx"`` (a ``.onnx`` file, dynamic
        batch axis; ``pip install 'unidl[onnx]'``) or ``"saved_model"`` (a TensorFlow SavedModel
        directory). Works from any backend; see :mod:`unidl.exporting`."""
        from .exporting import export
        export(self, path, format, **options)

    # ------------------------------------------------ training (training.py)
    save = saving.save_model
    save_weights = saving.save_weights
    load_weights = saving.load_weights
    fit = training.fit
    evaluate = training.evaluate
    predict = training.predict
    train_step = training.train_step
    test_step = training.test_step

    def summary(self, print_fn=print) -> None:
        """Print a table of layers, output shapes and parameter counts."""
        training.print_summary(self, print_fn)


def current_backend_or_none():
    return _current.get()


def _has_numpy(inputs) -> bool:
    return any(isinstance(x, np.ndarray) for x in (inputs if isinstance(inputs, (list, tuple)) else [inputs]))


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
        if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer  # layers.Input(shape) as the first entry
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a unidl layer, got {layer!r} ({type(layer).__name__})")
        if any(layer is other for other in self._layers):
            raise ValueError(f"layer {layer.name!r} is already in model {self.name!r}")
        layer.rename(unique_name(layer.name or _snake_case(type(layer).__name__),
                                 {other.name for other in self._layers}))
        declared = layer._declared_input_shape
        if declared is None and isinstance(layer, Model) and layer.built and not self._layers:
            declared = layer.input_shape  # a built model as the first layer brings its input shape
        if declared is not None:
            if self._layers:
                raise ValueError(f"layer {layer.name!r} declares input_shape but is not the first layer of "
                                 f"model {self.name!r}")
            self.input_shape = declared
        self._layers.append(layer)
        structure_changed()
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

"""Models: ``Model`` (functional or subclassed) and ``Sequential``.

A model is a layer that owns other layers and a seeded NumPy generator
(initial weights, shuffling, dropout masks). What needs a backend (compile,
fit, evaluate, predict, summary) comes from ``unidl.training.Trainer``; saving
from ``unidl.saving``; export from ``unidl.exporting``. Nothing here imports a
framework.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator, Sequence

import numpy as np

from . import config, exporting, saving
from .functional import Graph
from .layers.base import InputLayer, Layer, Shape, _as_shape
from .naming import UniqueNames, snake_case
from .ops import current_backend_or_none, use_backend
from .registry import reference_backend
from .serialization import deserialize_layer, register_layer_classes, serialize_layer
from .structure import flatten, map_structure
from .symbolic import SymbolicTensor, is_symbolic
from .training import COMPILED_STATE, NotCompiledError, Trainer
from .utils.random_seed import default_seed

__all__ = ["Model", "Sequential", "NotCompiledError", "load_model", "clone_model"]

load_model = saving.load_model  # Keras's keras.models.load_model


def clone_model(model: "Model") -> "Model":
    """Keras's keras.models.clone_model: an unbound copy of ``model`` (same architecture and weights)."""
    return model.clone()


class Model(Trainer, Layer):
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

    _kind = "model"

    def __init__(self, inputs=None, outputs=None, name: str | None = None, seed: int | None = None,
                 trainable: bool = True):
        super().__init__(name=name, trainable=trainable)
        self.name = name or snake_case(type(self).__name__)
        self.seed = seed
        # Unseeded: unidl.utils.set_random_seed's sequence when it was called, else fresh entropy.
        seeds = np.random.SeedSequence(seed if seed is not None else default_seed()).spawn(2)
        self._init_rng = np.random.default_rng(seeds[0])      # weights, dropout streams
        self.shuffle_rng = np.random.default_rng(seeds[1])    # fit()'s batch order
        self._init_training_state()
        self._graph: Graph | None = None
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError("Model(inputs, outputs): give both, or neither when subclassing")
            self._init_graph(inputs, outputs)

    def _init_graph(self, inputs, outputs) -> None:
        self._graph = Graph(inputs, outputs)
        names = UniqueNames()
        for t in self._graph.inputs:  # inputs get names too, so the wiring can be saved
            t.node.layer.name = names(t.node.layer.name or "input_layer")
        for layer in self._graph.layers:
            name = names(layer.name)
            if name != layer.name:
                layer.rename(name)
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

    @property
    def graph(self) -> Graph | None:
        """A functional model's ``unidl.functional.Graph`` (its nodes in order; ``run`` walks them), else None."""
        return self._graph

    @property
    def input_names(self) -> list[str] | None:
        """The names of a functional model's ``layers.Input`` s, in order (None if subclassed)."""
        return None if self._graph is None else [t.node.layer.name for t in self._graph.inputs]

    @property
    def output_structure(self):
        """The symbolic outputs in the structure ``Model(inputs, outputs)`` was given (None if subclassed)."""
        return None if self._graph is None else self._graph.output_structure

    def layers_reading_input(self, index: int) -> list[Layer]:
        """The layers that take model input ``index`` directly (a subclassed model: unknown, so none)."""
        if self._graph is None:
            return []
        tensor = self._graph.inputs[index]
        return [node.layer for node in self._graph.nodes
                if node.inputs is not None and any(t is tensor for t in flatten(node.inputs))]

    def host_layers_for_input(self, index: int) -> list[Layer]:
        """The host layers (``runs_on_host``: TextVectorization...) that alone read model input ``index``:
        fit, evaluate and predict run them on the NumPy batch before the backend step."""
        readers = self.layers_reading_input(index)
        if len(readers) == 1 and getattr(readers[0], "runs_on_host", False):
            return readers
        return []

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model {self.name!r} has no layer {name!r}; its layers: "
                         f"{[layer.name for layer in self.layers]}")

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
        backend = reference_backend()
        names = UniqueNames()
        for layer in self.layers:
            layer._rng = layer._rng or self._init_rng
            if not layer.built:
                layer.name = names(layer.name or snake_case(type(layer).__name__))
            names.add(layer.name)

        def zeros(shape):
            return [zeros(s) for s in shape] if isinstance(shape, list) else backend.zeros((1, *shape[1:]))

        with use_backend(backend), backend.no_grad():
            out = self.call_with_training(zeros(input_shape), False)
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
            self.bind_weights()

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise RuntimeError(f"model {self.name!r} is not built yet, so {what}() cannot run: give the "
                               "first layer input_shape=(...), start with layers.Input(shape), or call "
                               "model.build((None, ...)) / fit() first")

    def call(self, inputs, training: bool = False):
        if self._graph is not None:
            return self._graph.run(inputs, training)
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, training=False)")

    def call_with_masks(self, inputs, training: bool = False):
        """(outputs, the mask of each output or None): the loss leaves masked steps out.

        A functional model carries masks from layer to layer; a subclassed model's ``call``
        decides alone, so its outputs have no mask here.
        """
        if self._graph is not None:
            return self._graph.run_with_masks(inputs, training)
        return self.call_with_training(inputs, training), None

    def compute_mask(self, inputs, mask=None):
        return None  # a model used as a layer: its inner masks stay inside

    def __call__(self, inputs, training: bool = False, **kwargs):
        """Run the model. Inside another model's computation (a backend is bound and the inputs are
        tensors) it behaves as a layer; called from user code it uses its own compiled backend."""
        def as_layer(x):
            return super(Model, self).__call__(x, training=training, **kwargs)

        if self._graph is not None and isinstance(inputs, dict):
            inputs = self._graph.flat_inputs(inputs)  # matched by input name, as Keras does
        bound = current_backend_or_none()
        if is_symbolic(inputs) or (bound is not None and not _has_numpy(inputs)):
            if bound is not self.backend or is_symbolic(inputs):
                return as_layer(inputs)
            # A custom step calling its own model: built (and bound) on the first call, under its dtype policy.
            if not self.built:
                self.ensure_built(map_structure(lambda x: (None, *bound.shape(x)[1:]), inputs))
            return self.run_with_policy(lambda: as_layer(inputs))
        # Its compiled backend; not compiled (Keras's eager style: model(x) in a custom loop), the
        # backend bound here, else the weights' own, else the default (unidl.config.backend()).
        backend = self.backend or bound or _weights_backend(self) or config.default_backend()
        with use_backend(backend):
            inputs = map_structure(lambda x: backend.convert(x) if _is_host_array(x) else x, inputs)
            if not self.built:
                self.ensure_built(map_structure(lambda x: (None, *backend.shape(x)[1:]), inputs))
            if self.backend is None:
                for w in self.weights:
                    if w.backend is None:
                        w.bind(backend)
            return self.run_with_policy(lambda: as_layer(inputs))

    def clone(self) -> "Model":
        """An unbound copy with the same architecture and current weights (compile it anywhere)."""
        saved = {k: self.__dict__[k] for k in COMPILED_STATE}
        self.__dict__.update(dict.fromkeys(COMPILED_STATE))
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
        nodes = self._graph.nodes
        position = {id(node): i for i, node in enumerate(nodes)}

        def ref(t: SymbolicTensor) -> list[int]:
            return [position[id(t.node)], t.index]

        def encode(value):  # symbolic tensors become {"ref": [node, index]}; other values stay as they are
            if isinstance(value, SymbolicTensor):
                return {"ref": ref(value)}
            if isinstance(value, (list, tuple)):
                return [encode(v) for v in value]
            if isinstance(value, dict):
                return {k: encode(v) for k, v in value.items()}
            return value

        layers_config: dict[str, Any] = {}
        calls = []
        for node in nodes:
            layers_config.setdefault(node.layer.name, serialize_layer(node.layer))
            call = {"layer": node.layer.name, "inputs": None if node.inputs is None else encode(node.inputs),
                    "kwargs": encode(node.kwargs)}
            if node.args:
                call["args"] = encode(list(node.args))
            calls.append(call)
        return {"name": self.name, "seed": self.seed, "trainable": self.trainable,
                "layers": layers_config, "calls": calls,
                "inputs": [ref(t) for t in self._graph.inputs],
                "outputs": encode(self._graph.output_structure)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> "Model":
        """Rebuild a model from ``get_config()``: a functional one replays its calls (same layers, same
        wiring, same names); a subclassed one is called with its config, as Keras does."""
        if "calls" not in config:
            return cls(**config)
        return _GraphConfig(config, custom_objects).rebuild(cls)

    # ------------------------------------------------------- saving, export
    def save(self, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
        """Architecture, weights and compile configuration in one file (see :mod:`unidl.saving`)."""
        saving.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Every weight, by name, to an ``.npz`` or ``.safetensors`` file (see :mod:`unidl.saving`)."""
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        """Every weight from a file ``save_weights`` or ``save`` wrote; all or nothing."""
        saving.load_weights(self, filepath)

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
        directory), or a format a plugin registers. Works from any backend; see :mod:`unidl.exporting`."""
        exporting.export(self, path, format, **options)


class _GraphConfig:
    """Replays the calls of a functional model's config, checking every reference as it goes."""

    def __init__(self, config: dict[str, Any], custom_objects):
        for key, kind in (("layers", dict), ("calls", list), ("inputs", list)):
            if not isinstance(config.get(key), kind):
                raise ValueError(f"a functional model config needs {key!r} as a {kind.__name__}, "
                                 f"got {type(config.get(key)).__name__}")
        self.config = config
        self.layers = {name: deserialize_layer(spec, custom_objects) for name, spec in config["layers"].items()}
        self.outputs_of: list[Any] = []

    def _tensor(self, ref) -> Any:
        if not (isinstance(ref, list) and len(ref) == 2 and all(isinstance(i, int) and not isinstance(i, bool)
                                                                   for i in ref)):
            raise ValueError(f"a tensor reference must be [node, index], got {ref!r:.80}")
        node, index = ref
        if not 0 <= node < len(self.outputs_of):
            raise ValueError(f"reference {ref} names node {node}, but only nodes 0..{len(self.outputs_of) - 1} "
                             "come before it")
        out = self.outputs_of[node]
        if isinstance(out, list):
            if not 0 <= index < len(out):
                raise ValueError(f"reference {ref}: node {node} has {len(out)} outputs")
            return out[index]
        if index != 0:
            raise ValueError(f"reference {ref}: node {node} has one output")
        return out

    def _structure(self, value) -> Any:
        """Symbolic tensors for the references in ``value`` (a ref, or lists/dicts of them)."""
        if isinstance(value, dict) and "ref" in value:
            return self._tensor(value["ref"])
        if isinstance(value, list) and not (value and isinstance(value[0], int)):
            return [self._structure(v) for v in value]
        if isinstance(value, dict):
            return {k: self._structure(v) for k, v in value.items()}
        if isinstance(value, list):
            return self._tensor(value)
        raise ValueError(f"expected a tensor reference or a list of them, got {value!r:.80}")

    def _arguments(self, value) -> Any:
        """Call arguments: references become symbolic tensors, anything else stays as it was saved."""
        if isinstance(value, dict) and set(value) == {"ref"}:
            return self._tensor(value["ref"])
        if isinstance(value, list):
            return [self._arguments(v) for v in value]
        if isinstance(value, dict):
            return {k: self._arguments(v) for k, v in value.items()}
        return value

    def rebuild(self, cls) -> "Model":
        for call in self.config["calls"]:
            if not isinstance(call, dict) or call.get("layer") not in self.layers:
                raise ValueError(f"a call must name one of the config's layers {sorted(self.layers)}, "
                                 f"got {call!r:.120}")
            layer = self.layers[call["layer"]]
            kwargs = call.get("kwargs") or {}
            if not isinstance(kwargs, dict):
                raise ValueError(f"the kwargs of a call must be an object, got {kwargs!r:.80}")
            if call.get("inputs") is None:  # an Input
                if not isinstance(layer, InputLayer):
                    raise ValueError(f"layer {call['layer']!r} is called without inputs but is not an Input")
                self.outputs_of.append(SymbolicTensor((None, *layer.shape), layer))
                continue
            args = call.get("args") or []
            if not isinstance(args, list):
                raise ValueError(f"the args of a call must be a list, got {args!r:.80}")
            self.outputs_of.append(layer(self._structure(call["inputs"]), *self._arguments(args),
                                         **self._arguments(kwargs)))
        inputs = [self._tensor(r) for r in self.config["inputs"]]
        outputs = self._structure(self.config.get("outputs"))
        return cls(inputs if len(inputs) > 1 else inputs[0], outputs, name=self.config.get("name"),
                   seed=self.config.get("seed"), trainable=self.config.get("trainable", True))


def _is_host_array(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _has_numpy(inputs) -> bool:
    return any(_is_host_array(x) for x in flatten(inputs))


def _weights_backend(model):
    """The backend the model's weights are bound to (a model run before by hand), else None."""
    for w in model.weights:
        if w.backend is not None:
            return w.backend
    return None


class Sequential(Model):
    """A plain stack of layers, each taking the previous one's output.

    ``Sequential([layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=0)``

    With an input shape (``input_shape=`` on the first layer, or ``layers.Input``)
    the model is built at once; otherwise on the first ``fit``/``predict``.
    """

    def __init__(self, layers: Sequence[Layer] | None = None, name: str | None = None, seed: int | None = None,
                 trainable: bool = True):
        super().__init__(name=name, seed=seed, trainable=trainable)
        self._layers: list[Layer] = []
        self._layer_ids: set[int] = set()
        self._names = UniqueNames()
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self) -> list[Layer]:
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def layers_reading_input(self, index: int) -> list[Layer]:
        return self.layers[:1] if index == 0 else []

    def host_layers_for_input(self, index: int) -> list[Layer]:
        """The leading host layers (``runs_on_host``), run on the NumPy batch before the backend step."""
        chain = []
        for layer in (self.layers if index == 0 else []):
            if not getattr(layer, "runs_on_host", False):
                break
            chain.append(layer)
        return chain

    def add(self, layer: Layer) -> None:
        """Append a layer (built immediately when the model's input shape is known)."""
        if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer  # layers.Input(shape) as the first entry
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a unidl layer, got {layer!r} ({type(layer).__name__})")
        if id(layer) in self._layer_ids:
            raise ValueError(f"layer {layer.name!r} is already in model {self.name!r}")
        layer.rename(self._names(layer.name or snake_case(type(layer).__name__)))
        declared = layer._declared_input_shape
        if declared is None and isinstance(layer, Model) and layer.built and not self._layers:
            declared = layer.input_shape  # a built model as the first layer brings its input shape
        if declared is not None:
            if self._layers:
                raise ValueError(f"layer {layer.name!r} declares input_shape but is not the first layer of "
                                 f"model {self.name!r}")
            self.input_shape = declared
        self._layers.append(layer)
        self._layer_ids.add(id(layer))
        if self.input_shape is not None:
            shape = self.output_shape if self.built else self.input_shape
            if isinstance(layer, InputLayer):
                shape = self.input_shape
            self.output_shape = layer.build_for(shape, self._init_rng)
            self.built = True
            if self.backend is not None:
                self.bind_weights()

    def build(self, input_shape: Shape) -> None:
        shape = _as_shape(input_shape)
        self.input_shape = shape
        for layer in self._layers:
            shape = layer.build_for(shape, self._init_rng)
        self.output_shape = shape
        self.built = True

    def call(self, inputs, training: bool = False):
        return self.call_with_masks(inputs, training)[0]

    def call_with_masks(self, inputs, training: bool = False):
        x, mask = inputs, None
        for layer in self._layers:
            out = layer(x, training=training, mask=mask)
            mask = layer.compute_mask(x, mask)
            x = out
        return x, [mask]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "trainable": self.trainable,
                "layers": [serialize_layer(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> "Sequential":
        """A Sequential model from ``get_config()``: its layers, added in order."""
        specs = config.get("layers", [])
        if not isinstance(specs, list):
            raise ValueError(f"a Sequential config needs 'layers' as a list, got {type(specs).__name__}")
        model = cls(name=config.get("name"), seed=config.get("seed"), trainable=config.get("trainable", True))
        for spec in specs:
            model.add(deserialize_layer(spec, custom_objects))
        return model


register_layer_classes({"Model": Model, "Sequential": Sequential})  # saved configs name these classes

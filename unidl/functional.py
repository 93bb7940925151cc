"""The functional API: describe a graph of layers with symbolic tensors.

::

    inputs = layers.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
    model = unidl.Model(inputs, outputs, seed=0)

Calling a layer on a ``SymbolicTensor`` builds the layer for that shape and
records a ``Node`` (the layer, its symbolic inputs and outputs). ``Model``
orders the nodes from inputs to outputs once; running the model walks that
list with real tensors. Nothing here touches a backend.
"""
from __future__ import annotations

from typing import Any, Callable

from .layers.base import InputLayer, Layer


class SymbolicTensor:
    """A placeholder for a tensor of known shape (batch axis None) in a model being described."""

    __slots__ = ("shape", "node", "index", "dtype")

    def __init__(self, shape: tuple, producer: "Layer | Node", index: int = 0, dtype: str | None = None):
        self.shape = tuple(shape)
        self.node = producer if isinstance(producer, Node) else Node(producer, None, {}, self)
        self.index = index
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} from {self.node.layer.name or type(self.node.layer).__name__}>"


class Node:
    """One call of a layer in a graph: ``outputs = layer(inputs, **kwargs)``."""

    __slots__ = ("layer", "inputs", "kwargs", "outputs")

    def __init__(self, layer: Layer, inputs: Any, kwargs: dict, outputs: Any):
        self.layer, self.inputs, self.kwargs, self.outputs = layer, inputs, kwargs, outputs

    @property
    def parents(self) -> list["Node"]:
        return [t.node for t in flatten(self.inputs)] if self.inputs is not None else []


# ------------------------------------------------------------- structures
# Inputs and outputs may be one tensor, a list/tuple, or a dict of them.

def flatten(structure) -> list:
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [x for key in sorted(structure) for x in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [x for item in structure for x in flatten(item)]
    return [structure]


def pack_like(structure, flat: list):
    """Rebuild ``structure`` with the leaves of ``flat`` (the inverse of ``flatten``)."""
    it = iter(flat)

    def build(s):
        if isinstance(s, dict):
            return {key: build(s[key]) for key in sorted(s)}
        if isinstance(s, (list, tuple)):
            return type(s)(build(item) for item in s) if isinstance(s, tuple) else [build(item) for item in s]
        return next(it)
    return build(structure)


def map_structure(fn: Callable, structure):
    return pack_like(structure, [fn(x) for x in flatten(structure)])


# ----------------------------------------------------------------- graph

def call_symbolic(layer: Layer, inputs, kwargs: dict):
    """Build ``layer`` for the symbolic inputs' shapes and record the call as a Node."""
    shapes = [t.shape for t in inputs] if isinstance(inputs, (list, tuple)) else inputs.shape
    output_shape = layer.build_for(shapes)
    node = Node(layer, inputs, kwargs, None)
    if isinstance(output_shape, list):
        node.outputs = [SymbolicTensor(s, node, i) for i, s in enumerate(output_shape)]
    else:
        node.outputs = SymbolicTensor(output_shape, node, 0)
    return node.outputs


def topological_nodes(outputs: list[SymbolicTensor]) -> list[Node]:
    """Nodes needed for ``outputs``, each after the nodes it reads from (iterative DFS)."""
    order: list[Node] = []
    done: set[int] = set()
    stack: list[tuple[Node, bool]] = [(t.node, False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((parent, False) for parent in reversed(node.parents) if id(parent) not in done)
    return order


class Graph:
    """The ordered nodes between a model's symbolic inputs and outputs."""

    def __init__(self, inputs, outputs):
        self.input_structure, self.output_structure = inputs, outputs
        self.inputs, self.outputs = flatten(inputs), flatten(outputs)
        for t in self.inputs + self.outputs:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(f"Model(inputs, outputs) expects symbolic tensors from layers.Input and "
                                f"layer calls, got {t!r}")
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ValueError(f"model inputs must come from layers.Input(...); {t!r} is a layer output")
        self.nodes = topological_nodes(self.outputs)
        known = {id(t.node) for t in self.inputs}
        for node in self.nodes:
            if isinstance(node.layer, InputLayer) and id(node) not in known:
                raise ValueError(f"the outputs depend on an Input that is not among the model's inputs: "
                                 f"{node.outputs!r}; add it to Model(inputs=[...])")

    @property
    def layers(self) -> list[Layer]:
        seen: dict[int, Layer] = {}
        for node in self.nodes:
            if not isinstance(node.layer, InputLayer):
                seen.setdefault(id(node.layer), node.layer)
        return list(seen.values())

    def run(self, inputs, training: bool, on_node: Callable[[Node, Any], None] | None = None):
        """Evaluate the graph on real tensors (same structure as the symbolic inputs).

        ``on_node(node, output)`` is called after each layer call (``unidl compare`` records
        per-layer activations with it)."""
        flat_inputs = flatten(inputs) if not _is_leaf(inputs) or len(self.inputs) > 1 else [inputs]
        if len(flat_inputs) != len(self.inputs):
            raise ValueError(f"the model takes {len(self.inputs)} inputs, got {len(flat_inputs)}")
        values = {id(t): x for t, x in zip(self.inputs, flat_inputs)}
        for node in self.nodes:
            if isinstance(node.layer, InputLayer):
                continue
            args = map_structure(lambda t: values[id(t)], node.inputs)
            out = node.layer(args, training=training, **node.kwargs)
            for t, value in zip(flatten(node.outputs), flatten(out) if isinstance(node.outputs, list) else [out]):
                values[id(t)] = value
            if on_node is not None:
                on_node(node, out)
        return map_structure(lambda t: values[id(t)], self.output_structure)


def _is_leaf(x) -> bool:
    return not isinstance(x, (list, tuple, dict))

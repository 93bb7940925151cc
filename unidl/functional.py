"""The functional API: describe a graph of layers with symbolic tensors.

::

    inputs = layers.Input((28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
    model = unidl.Model(inputs, outputs, seed=0)

Calling a layer on a ``SymbolicTensor`` (``unidl.symbolic``) builds the layer
for that shape and records a ``Node``. ``Graph`` orders the nodes from inputs
to outputs once; running the model walks that list with real tensors. Nothing
here touches a backend.
"""
from __future__ import annotations

from typing import Any, Callable

from .layers.base import InputLayer, Layer, call_parameters
from .structure import flatten, is_leaf, map_structure, match_keys
from .symbolic import Node, SymbolicTensor


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
    def input_keys(self) -> list[str]:
        """The name of each input, in ``self.inputs`` order: the keys of a dict given to
        ``Model(inputs={...})``, else the ``layers.Input`` names (what a dict of data is matched by)."""
        if isinstance(self.input_structure, dict):
            return sorted(self.input_structure)
        return [t.node.layer.name for t in self.inputs]

    @property
    def output_keys(self) -> list[str]:
        """The name of each output, in ``self.outputs`` order: a dict's keys, else the output layers' names."""
        if isinstance(self.output_structure, dict):
            return sorted(self.output_structure)
        return [t.node.layer.name for t in self.outputs]

    def flat_inputs(self, inputs) -> list:
        """Tensors in input order: a dict is matched by name (:attr:`input_keys`), a list by position."""
        if isinstance(inputs, dict):
            return [inputs[key] for key in match_keys(inputs, self.input_keys, "input")]
        flat = flatten(inputs) if not is_leaf(inputs) or len(self.inputs) > 1 else [inputs]
        if len(flat) != len(self.inputs):
            raise ValueError(f"the model takes {len(self.inputs)} inputs {self.input_keys}, got {len(flat)}")
        return flat

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
        return self.run_with_masks(inputs, training, on_node)[0]

    def run_with_masks(self, inputs, training: bool, on_node: Callable[[Node, Any], None] | None = None,
                       masks=None):
        """(outputs, their masks) of the graph on real tensors; a mask is None where no layer made one.

        Each layer gets its input's mask (``mask=``, when it takes one) and gives its output's
        (``compute_mask``): Embedding(mask_zero=True) -> LSTM -> pooling, as in Keras.
        """
        values = {id(t): x for t, x in zip(self.inputs, self.flat_inputs(inputs))}
        mask_of = {} if masks is None else {id(t): m for t, m in zip(self.inputs, self.flat_inputs(masks))}

        def value(x):
            return values[id(x)] if isinstance(x, SymbolicTensor) else x

        for node in self.nodes:
            if isinstance(node.layer, InputLayer):
                continue
            inputs_now = map_structure(value, node.inputs)
            mask = _structure_mask(node.inputs, mask_of)
            kwargs = {k: map_structure(value, v) for k, v in node.kwargs.items()}
            if mask is not None and "mask" not in kwargs:
                kwargs["mask"] = mask
            _add_argument_masks(node, kwargs, mask_of)
            kwargs.setdefault("training", training)  # a training fixed in the graph (a frozen BatchNorm) wins
            out = node.layer(inputs_now, *map_structure(value, list(node.args)), **kwargs)
            out_mask = node.layer.compute_mask(inputs_now, mask)
            outputs = flatten(out) if isinstance(node.outputs, list) else [out]
            out_masks = out_mask if isinstance(node.outputs, list) and isinstance(out_mask, list) \
                else [out_mask] * len(outputs)
            for t, v, m in zip(flatten(node.outputs), outputs, out_masks):
                values[id(t)] = v
                if m is not None:
                    mask_of[id(t)] = m
            if on_node is not None:
                on_node(node, out)
        outputs = map_structure(lambda t: values[id(t)], self.output_structure)
        return outputs, [mask_of.get(id(t)) for t in self.outputs]


def _add_argument_masks(node: Node, kwargs: dict, mask_of: dict) -> None:
    """Masks of a call's other tensor arguments, for a layer that takes them by name (an attention
    layer's ``value_mask`` / ``key_mask``, as Keras reads them off the value and key)."""
    names = call_parameters(type(node.layer))
    for position, (argument, name) in enumerate((("value", "value_mask"), ("key", "key_mask"))):
        if name not in names or name in kwargs:
            continue
        tensor = node.args[position] if len(node.args) > position else node.kwargs.get(argument)
        if isinstance(tensor, SymbolicTensor) and mask_of.get(id(tensor)) is not None:
            kwargs[name] = mask_of[id(tensor)]


def _structure_mask(inputs, mask_of: dict):
    """The mask(s) of a node's inputs: one mask, a list (None where absent), or None when there is none."""
    if isinstance(inputs, SymbolicTensor):
        return mask_of.get(id(inputs))
    masks = [mask_of.get(id(t)) for t in flatten(inputs)]
    return None if all(m is None for m in masks) else masks

"""Symbolic tensors: what layers return while a functional model is being described.

::

    inputs = layers.Input((28, 28, 1))          # a SymbolicTensor
    x = layers.Conv2D(32, 3)(inputs)            # builds Conv2D, records a Node, returns a SymbolicTensor

Calling a layer on a ``SymbolicTensor`` builds the layer for that shape and
records the call as a ``Node`` (layer, symbolic inputs, keyword arguments,
symbolic outputs). ``unidl.functional.Graph`` later orders the nodes. This
module sits below ``layers``: it knows a layer only as an object with
``build_for(shape)``, so nothing here imports a layer, a model or a backend.
"""
from __future__ import annotations

from typing import Any

from .structure import flatten


class SymbolicTensor:
    """A placeholder for a tensor of known shape (batch axis None) in a model being described."""

    __slots__ = ("shape", "node", "index", "dtype")

    def __init__(self, shape: tuple, producer: Any, index: int = 0, dtype: str | None = None):
        self.shape = tuple(shape)
        # ``producer`` is the Node that computes this tensor, or an input layer (which gets its own Node).
        self.node = producer if isinstance(producer, Node) else Node(producer, None, {}, self)
        self.index = index
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} from {self.node.layer.name or type(self.node.layer).__name__}>"


class Node:
    """One call of a layer in a graph: ``outputs = layer(inputs, *args, **kwargs)``; ``inputs`` None for an
    Input. ``args`` and ``kwargs`` may hold symbolic tensors too (an attention layer's ``value``)."""

    __slots__ = ("layer", "inputs", "args", "kwargs", "outputs")

    def __init__(self, layer: Any, inputs: Any, kwargs: dict, outputs: Any, args: tuple = ()):
        self.layer, self.inputs, self.args, self.kwargs, self.outputs = layer, inputs, args, kwargs, outputs

    @property
    def parents(self) -> list["Node"]:
        if self.inputs is None:
            return []
        return [t.node for t in flatten([self.inputs, *self.args, *self.kwargs.values()])
                if isinstance(t, SymbolicTensor)]


def is_symbolic(inputs: Any) -> bool:
    """True for a SymbolicTensor or a list/tuple holding one."""
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(x, SymbolicTensor) for x in flatten(inputs))
    return isinstance(inputs, SymbolicTensor)


def call_symbolic(layer: Any, inputs: Any, args: tuple, kwargs: dict) -> Any:
    """Build ``layer`` for the symbolic inputs' shapes and record the call as a Node; return its outputs.

    ``layer`` is anything with ``symbolic_output_shape(input shape, shapes of the other tensor
    arguments, shapes of tensor keyword arguments, keyword arguments)``: unidl.layers.Layer.
    """
    shapes = [t.shape for t in inputs] if isinstance(inputs, (list, tuple)) else inputs.shape
    arg_shapes = tuple(a.shape if isinstance(a, SymbolicTensor) else None for a in args)
    kwarg_shapes = {k: v.shape for k, v in kwargs.items() if isinstance(v, SymbolicTensor)}
    output_shape = layer.symbolic_output_shape(shapes, arg_shapes, kwarg_shapes, kwargs)
    node = Node(layer, inputs, kwargs, None, tuple(args))
    if isinstance(output_shape, list):
        node.outputs = [SymbolicTensor(s, node, i) for i, s in enumerate(output_shape)]
    else:
        node.outputs = SymbolicTensor(output_shape, node, 0)
    return node.outputs

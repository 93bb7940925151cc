"""Layers that merge several inputs: Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum.

Each takes a list of tensors (functional API: ``layers.Add()([a, b])``).
Elementwise merges need equal shapes (broadcasting over size-1 axes is allowed,
as in Keras); Concatenate needs equal shapes except along ``axis``.
"""
from __future__ import annotations

from functools import reduce
from typing import Any

from .. import ops
from .base import Layer, Shape, merge_masks


class _Merge(Layer):
    """Base of the merge layers: validates a list of at least two input shapes."""

    def build(self, input_shape) -> None:
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"{type(self).__name__} layer {self.name!r} must be called on a list of at "
                             f"least 2 inputs, got input shape {input_shape}")
        self._check_shapes(input_shape)

    def _check_shapes(self, shapes: list[Shape]) -> None:
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"{type(self).__name__} layer {self.name!r}: inputs have different ranks: {shapes}")
        for dims in zip(*(s[1:] for s in shapes)):
            known = {d for d in dims if d not in (None, 1)}
            if len(known) > 1:
                raise ValueError(f"{type(self).__name__} layer {self.name!r}: input shapes {shapes} "
                                 "do not match (elementwise merges need equal shapes)")

    def compute_output_shape(self, input_shape: list[Shape]) -> Shape:
        out = []
        for dims in zip(*input_shape):
            known = [d for d in dims if d is not None]
            out.append(max(known) if known else None)
        return tuple(out)

    def call(self, inputs):
        return reduce(self.merge, inputs)

    def compute_mask(self, inputs, mask=None):
        return merge_masks(mask) if isinstance(mask, list) else mask

    def merge(self, a, b):
        raise NotImplementedError


class Add(_Merge):
    """``output = x1 + x2 + ...``"""

    def merge(self, a, b):
        return ops.add(a, b)


class Subtract(_Merge):
    """``output = x1 - x2`` (exactly two inputs)."""

    def build(self, input_shape) -> None:
        super().build(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"Subtract layer {self.name!r} takes exactly 2 inputs, got {len(input_shape)}")

    def merge(self, a, b):
        return ops.subtract(a, b)


class Multiply(_Merge):
    """``output = x1 * x2 * ...`` elementwise."""

    def merge(self, a, b):
        return ops.multiply(a, b)


class Maximum(_Merge):
    """Elementwise maximum of the inputs."""

    def merge(self, a, b):
        return ops.maximum(a, b)


class Minimum(_Merge):
    """Elementwise minimum of the inputs."""

    def merge(self, a, b):
        return ops.minimum(a, b)


class Average(_Merge):
    """``output = (x1 + ... + xn) / n``"""

    def call(self, inputs):
        return ops.divide(reduce(ops.add, inputs), float(len(inputs)))


class Concatenate(_Merge):
    """Joins the inputs along ``axis`` (default -1, the features).

    Input shape: a list of shapes equal except along ``axis``. Output shape: the
    same, with the ``axis`` sizes summed.
    """

    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def _check_shapes(self, shapes: list[Shape]) -> None:
        rank = len(shapes[0])
        if any(len(s) != rank for s in shapes) or not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"Concatenate layer {self.name!r}: cannot join shapes {shapes} along axis {self.axis}")
        axis = self.axis % rank
        for i in range(1, rank):
            if i != axis and len({s[i] for s in shapes if s[i] is not None}) > 1:
                raise ValueError(f"Concatenate layer {self.name!r}: shapes {shapes} differ outside axis {self.axis}")

    def compute_output_shape(self, input_shape: list[Shape]) -> Shape:
        axis = self.axis % len(input_shape[0])
        sizes = [s[axis] for s in input_shape]
        out = list(input_shape[0])
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def call(self, inputs):
        return ops.concatenate(list(inputs), axis=self.axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}

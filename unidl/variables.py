"""``Variable``: one weight of a layer, independent of any backend.

A Variable starts life holding a NumPy array drawn by unidl's seeded
generator (``value`` is that array while unbound). When its model is compiled
it is *bound*: ``value`` becomes the backend's own variable (a torch tensor
with requires_grad, a tf.Variable, ...).
Layer code passes Variables straight to ``unidl.ops``, which unwraps them.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np


_structure_version = 0


def structure_changed() -> None:
    """Note that some model's weights or trainable flags may have changed (see ``structure_version``)."""
    global _structure_version
    _structure_version += 1


def structure_version() -> int:
    """A number that changes whenever a weight is created, a layer gains a sublayer, or a
    ``trainable`` flag is set: the training step caches its list of trainable weights on it."""
    return _structure_version


class TrainableFlag:
    """The ``trainable`` attribute of layers and variables: a bool whose every change is noted
    (``structure_changed``), so cached lists of trainable weights are rebuilt."""

    def __get__(self, obj, owner=None):
        return self if obj is None else obj._trainable

    def __set__(self, obj, value) -> None:
        obj._trainable = bool(value)
        structure_changed()


class Variable:
    __slots__ = ("name", "_trainable", "value", "backend", "regularizer", "initializer", "seeded",
                 "__weakref__")

    def __init__(self, initial: np.ndarray, name: str, trainable: bool = True, regularizer=None):
        self.name = name
        self.trainable = trainable
        self.regularizer = regularizer
        self.value: Any = np.asarray(initial)  # a NumPy array until bound, then the backend handle
        self.backend = None
        self.initializer = None  # how the initial value was drawn (a model may redraw it from its seed)
        self.seeded = True       # False: drawn without a model's seeded generator

    trainable = TrainableFlag()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape) if self.backend is None else tuple(self.backend.shape(self.value))

    @property
    def bound(self) -> bool:
        return self.backend is not None

    def bind(self, backend) -> None:
        """Move this weight into ``backend`` (its current value carries over)."""
        current = self.numpy()
        self.value = backend.variable(current, trainable=self.trainable, name=self.name)
        self.backend = backend

    def unbind(self) -> None:
        """Bring the value back to NumPy and forget the backend."""
        self.value, self.backend = self.numpy(), None

    def numpy(self) -> np.ndarray:
        """The current value as a NumPy array (a copy)."""
        if self.backend is None:
            return self.value.copy()
        return self.backend.to_numpy(self.value)

    def assign(self, value) -> None:
        """Set the value from a NumPy array (or backend tensor) of the same shape."""
        if self.backend is None:
            value = np.asarray(value)
            if value.shape != self.value.shape:
                raise ValueError(f"variable {self.name!r}: expected shape {self.value.shape}, got {value.shape}")
            self.value = value.astype(self.value.dtype, copy=True)
            return
        if isinstance(value, np.ndarray):
            if value.shape != self.shape:
                raise ValueError(f"variable {self.name!r}: expected shape {self.shape}, got {value.shape}")
            value = self.backend.convert(value)
        self.backend.assign(self.value, value)

    def assign_add(self, value) -> None:
        """``variable += value`` in place (Keras's spelling, used by custom metrics and layers)."""
        if self.backend is None:
            self.assign(self.numpy() + np.asarray(value))
        elif type(value) is float or (not isinstance(value, (Variable, np.ndarray, np.generic, int, list))
                                      and _ops().current_backend_or_none() in (None, self.backend)):
            self.backend.assign_add(self.value, value)  # a float or a tensor of this backend: one kernel
        else:
            self.assign(_ops().add(self, value))

    def assign_sub(self, value) -> None:
        """``variable -= value`` in place."""
        self.assign(_ops().subtract(self, value) if self.backend is not None else self.numpy() - np.asarray(value))

    def __deepcopy__(self, memo) -> "Variable":
        # A copy is always unbound: it carries the value, never the backend tensor.
        twin = Variable(self.numpy(), self.name, self.trainable, copy.deepcopy(self.regularizer, memo))
        twin.initializer, twin.seeded = self.initializer, self.seeded
        return twin

    def __repr__(self) -> str:
        where = self.backend.name if self.backend else "unbound"
        return f"<Variable {self.name} shape={self.shape} {where}>"

    # Operators, so custom layer code may write ``x @ self.kernel + self.bias``.
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().subtract(self, o)
    def __rsub__(self, o): return _ops().subtract(o, self)
    def __mul__(self, o): return _ops().multiply(self, o)
    def __rmul__(self, o): return _ops().multiply(o, self)
    def __truediv__(self, o): return _ops().divide(self, o)
    def __rtruediv__(self, o): return _ops().divide(o, self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().negative(self)


def _ops():
    from . import ops
    return ops

"""Weight regularizers: penalties added to the training loss.

``L1L2(l1, l2)(w) = l1 * sum(|w|) + l2 * sum(w**2)`` (Keras's definition; the
default factor of the ``l1``/``l2`` names is 0.01).
"""
from __future__ import annotations

from . import ops
from .registry import resolve


class Regularizer:
    def __call__(self, weight):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        if l1 < 0 or l2 < 0:
            raise ValueError(f"regularization factors must be >= 0, got l1={l1}, l2={l2}")
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, weight):
        penalty = 0.0
        if self.l1:
            penalty = ops.multiply(self.l1, ops.sum(ops.abs(weight)))
        if self.l2:
            penalty = ops.add(penalty, ops.multiply(self.l2, ops.sum(ops.square(weight))))
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self) -> str:
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def l1(l1: float = 0.01) -> L1L2:  # noqa: E741 - Keras's name
    return L1L2(l1=l1)


def l2(l2: float = 0.01) -> L1L2:
    return L1L2(l2=l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:  # noqa: E741
    return L1L2(l1=l1, l2=l2)


L1, L2 = l1, l2
BUILTINS = {"l1": l1, "l2": l2, "l1_l2": l1_l2, "l1l2": l1_l2}


def get(identifier):
    if identifier is None:
        return None
    if callable(identifier) and not isinstance(identifier, (str, type)):
        return identifier
    return resolve("regularizers", identifier, BUILTINS, Regularizer)

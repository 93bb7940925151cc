"""Activation functions, written once over ``unidl.ops`` (so they run on every backend).

Defaults follow Keras 3 (see CONVENTIONS.md): leaky_relu's slope is 0.2, gelu
is exact (erf) unless ``approximate=True``, hard_sigmoid is relu6(x + 3) / 6.
"""
from __future__ import annotations

import math
from typing import Callable

from . import ops
from .registry import lookup

Activation = Callable


def linear(x):
    return x


def relu(x):
    return ops.relu(x)


def relu6(x):
    return ops.clip(x, 0.0, 6.0)


def sigmoid(x):
    return ops.sigmoid(x)


def tanh(x):
    return ops.tanh(x)


def softmax(x, axis: int = -1):
    return ops.softmax(x, axis=axis)


def log_softmax(x, axis: int = -1):
    return ops.log_softmax(x, axis=axis)


def leaky_relu(x, negative_slope: float = 0.2):
    # max(x, a*x) equals x for x >= 0 and a*x below, for 0 <= a < 1.
    return ops.maximum(x, ops.multiply(x, negative_slope))


def elu(x, alpha: float = 1.0):
    # exp of min(x, 0), not of x: the unselected branch of `where` still gets a
    # gradient of 0 * d/dx, which would be 0 * inf = nan for large positive x.
    negative = ops.multiply(alpha, ops.subtract(ops.exp(ops.minimum(x, 0.0)), 1.0))
    return ops.where(ops.greater(x, 0.0), x, negative)


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def selu(x):
    return ops.multiply(_SELU_SCALE, elu(x, _SELU_ALPHA))


def gelu(x, approximate: bool = False):
    if approximate:
        inner = ops.multiply(math.sqrt(2.0 / math.pi), ops.add(x, ops.multiply(0.044715, ops.multiply(x, ops.square(x)))))
        return ops.multiply(ops.multiply(0.5, x), ops.add(1.0, ops.tanh(inner)))
    return ops.multiply(ops.multiply(0.5, x), ops.add(1.0, ops.erf(ops.divide(x, math.sqrt(2.0)))))


def softplus(x):
    return ops.softplus(x)


def softsign(x):
    return ops.divide(x, ops.add(ops.abs(x), 1.0))


def silu(x):
    return ops.multiply(x, ops.sigmoid(x))


def hard_sigmoid(x):
    return ops.clip(ops.add(ops.divide(x, 6.0), 0.5), 0.0, 1.0)


def hard_silu(x):
    return ops.multiply(x, hard_sigmoid(x))


def exponential(x):
    return ops.exp(x)


BUILTINS: dict[str, Callable] = {
    "linear": linear, "relu": relu, "relu6": relu6, "sigmoid": sigmoid, "tanh": tanh,
    "softmax": softmax, "log_softmax": log_softmax, "leaky_relu": leaky_relu, "elu": elu,
    "selu": selu, "gelu": gelu, "softplus": softplus, "softsign": softsign,
    "silu": silu, "swish": silu, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "hard_swish": hard_silu, "exponential": exponential,
}


def get(identifier) -> Callable:
    """An activation function from a name, a callable, or None (linear)."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return lookup("activations", identifier, BUILTINS)
    if callable(identifier):
        return identifier
    raise TypeError(f"activation must be a name or a callable, got {identifier!r}")


def serialize(fn: Callable):
    """An activation for a config: its name when it is a built-in, else the callable itself."""
    name = name_of(fn)
    return name if BUILTINS.get(name) is fn else fn


def name_of(fn: Callable) -> str:
    """The registered name of an activation (for summaries and configs)."""
    for name, f in BUILTINS.items():
        if f is fn:
            return name
    return getattr(fn, "__name__", repr(fn))

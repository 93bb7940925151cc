"""Backend-agnostic gradients for code that trains or probes models by hand.

::

    with unidl.use_backend(model.backend):
        loss, grads = unidl.value_and_grad(lambda: my_loss(model(x), y), model)
        model.optimizer.apply(grads, model.trainable_weights)

        score, (dx,) = unidl.value_and_grad(lambda t: ops.sum(model(t)[:, 3]), inputs=[x])

The same code runs on every backend: each backend differentiates in its own
way (NumPy tape, torch autograd, tf.GradientTape) behind ``Backend.value_and_grad``
and ``Backend.grad_wrt_inputs``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .layers.base import Layer
from .ops import current_backend
from .variables import Variable


def _variables(wrt) -> list[Variable]:
    if isinstance(wrt, Layer):  # a model or a layer: its trainable weights
        return wrt.trainable_weights
    variables = list(wrt)
    for v in variables:
        if not isinstance(v, Variable):
            raise TypeError(f"value_and_grad differentiates with respect to a model, a layer or a list of "
                            f"unidl.Variable; got {type(v).__name__}. For plain tensors use inputs=[...]")
    return variables


def value_and_grad(fn: Callable, wrt: "Layer | Sequence[Variable] | None" = None, *,
                   inputs: Sequence[Any] | None = None, has_aux: bool = False):
    """Evaluate ``fn`` and its gradient, on the backend bound in this context.

    Exactly one of:

    * ``wrt``: a model or layer (its trainable weights) or a list of Variables;
      ``fn()`` takes no argument and returns a scalar (or ``(scalar, aux)`` with ``has_aux``).
      Returns ``(value, grads)`` or ``(value, aux, grads)``; ``grads[i]`` matches ``variables[i]``.
    * ``inputs``: tensors or NumPy arrays; ``fn(*inputs)`` returns a scalar.
      Returns ``(value, grads)`` with one gradient per input (saliency maps, adversarial examples).
    """
    backend = current_backend()
    if (wrt is None) == (inputs is None):
        raise TypeError("value_and_grad needs exactly one of wrt=(model, layer or variables) and inputs=[...]")
    if inputs is not None:
        tensors = [backend.convert(x) if isinstance(x, np.ndarray) else x for x in inputs]
        return backend.grad_wrt_inputs(fn, tensors)
    variables = _variables(wrt)

    def wrapped():
        out = fn()
        return out if has_aux else (out, None)

    value, aux, grads = backend.value_and_grad(wrapped, [v.value for v in variables])
    return (value, aux, grads) if has_aux else (value, grads)


def grad(fn: Callable, wrt=None, *, inputs: Sequence[Any] | None = None):
    """Only the gradients of :func:`value_and_grad`."""
    return value_and_grad(fn, wrt, inputs=inputs)[-1]

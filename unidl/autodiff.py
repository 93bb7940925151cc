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

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .backend import FrozenRandomnessError
from .layers.base import Layer
from .ops import current_backend, current_backend_or_none, use_backend
from .optimizers import recording_applies, scalars_from
from .structure import flatten, pack_like
from .variables import Variable, structure_version


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
      Returns ``(value, grads)`` or ``(value, aux, grads)``; ``grads[i]`` matches ``variables[i]``
      (for a model: ``model.trainable_weights``). When ``fn`` builds the model (its first call
      creates the weights), ``fn`` runs a second time so that every new weight gets its gradient.
    * ``inputs``: tensors or NumPy arrays; ``fn(*inputs)`` returns a scalar.
      Returns ``(value, grads)`` with one gradient per input (saliency maps, adversarial examples).
    """
    if (wrt is None) == (inputs is None):
        raise TypeError("value_and_grad needs exactly one of wrt=(model, layer or variables) and inputs=[...]")
    if inputs is not None:
        backend = current_backend()
        tensors = [backend.convert(x) if isinstance(x, np.ndarray) else x for x in inputs]
        return backend.grad_wrt_inputs(fn, tensors)
    variables = _variables(wrt)
    # The bound backend; with none bound, the one the weights live on (a model compiled on torch
    # differentiates on torch, not on the default backend); else the default.
    if current_backend_or_none() is None:
        bound = [v.backend for v in variables if v.backend is not None]
        with use_backend(bound[0] if bound else current_backend()):
            return value_and_grad(fn, wrt=wrt, has_aux=has_aux)
    backend = current_backend()

    def wrapped():
        out = fn()
        return out if has_aux else (out, None)

    version = structure_version()
    value, aux, grads = backend.value_and_grad(wrapped, [v.value for v in variables])
    if isinstance(wrt, Layer) and structure_version() != version and _variables(wrt) != variables:
        # ``fn`` built the model (its first call created weights), so those weights got no
        # gradient: run it again over every weight, rather than lose this first step.
        variables = _variables(wrt)
        value, aux, grads = backend.value_and_grad(wrapped, [v.value for v in variables])
    return (value, aux, grads) if has_aux else (value, grads)


class GradientTape:
    """Records the ops run inside its block; ``gradient`` then differentiates: Keras's TensorFlow-style custom
    training code, on every backend that records ops as they run (NumPy, torch, TensorFlow)::

        with unidl.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))

    Variables are watched; other tensors (an input, for a saliency map) with :meth:`watch`. The
    backend is the one bound when the block starts (the default backend when none is). A backend
    of immutable arrays (JAX) cannot record: use :func:`value_and_grad` there, which every backend has.

    Args:
        persistent: allow several ``gradient`` calls (default: one).
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = bool(persistent)
        self._backend = None
        self._tape = None
        self._used = False

    def __enter__(self) -> "GradientTape":
        self._backend = current_backend()
        self._tape = self._backend.gradient_tape(persistent=self.persistent)
        self._tape.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._tape.__exit__(*exc)

    def watch(self, tensor) -> None:
        """Differentiate with respect to ``tensor`` too (a plain tensor, e.g. an input)."""
        for t in flatten(tensor):
            self._tape.watch(t.value if isinstance(t, Variable) else t)

    def gradient(self, target, sources):
        """d target / d source for each source (Variables or watched tensors), in the structure of ``sources``;
        zeros where ``target`` does not depend on a source."""
        if self._tape is None:
            raise RuntimeError("GradientTape.gradient: use the tape in a `with unidl.GradientTape() as tape:` block")
        if self._used and not self.persistent:
            raise RuntimeError("GradientTape.gradient can be called once; create it with persistent=True for more")
        self._used = True
        flat = flatten(sources)
        handles = [s.value if isinstance(s, Variable) else s for s in flat]
        grads = self._tape.gradient(target, handles)
        return pack_like(sources, list(grads))


def grad(fn: Callable, wrt=None, *, inputs: Sequence[Any] | None = None):
    """Only the gradients of :func:`value_and_grad`."""
    return value_and_grad(fn, wrt, inputs=inputs)[-1]


def function(fn: Callable | None = None, *, jit_compile: bool = True):
    """Compile a custom step (a GAN update, an adversarial attack) with the bound backend.

    ``unidl.function`` is to custom loops what ``compile(jit_compile=...)`` is to ``fit``:
    a traced graph on TensorFlow (``tf.function``) and JAX (``jax.jit``), plain Python on
    torch and NumPy. Use it as a decorator, and call the result with backend tensors::

        @unidl.function
        def train_step(real, noise):
            d_loss, d_grads = unidl.value_and_grad(lambda: ..., discriminator)
            discriminator.optimizer.apply(d_grads, discriminator.trainable_weights)
            ...
            return d_loss, g_loss

    As with ``tf.function``, the Python body runs while tracing only: return the values you
    need, draw random numbers outside (pass them in), and give calls the same structure of
    arguments (a new structure traces again). The first call runs eagerly, which notes the
    optimizers the step applies (each once per call); later calls feed each one's learning
    rate and bias corrections in as traced inputs, so schedules and Adam's corrections
    advance exactly as in eager code, and count the optimizer's iterations on the host.
    """
    if fn is None:
        return lambda f: function(f, jit_compile=jit_compile)
    optimizers: list = []  # those the step applies, noted by its first call
    compiled: dict = {}    # backend identity (kind, dtype, device) -> its compiled step
    first_call = True
    eager = False  # set when tracing met unidl.random: from then on the step runs eagerly

    def step(scalars, *args):
        with scalars_from({id(opt): s for opt, s in zip(optimizers, scalars)}):
            return fn(*args)

    def call(*args):
        nonlocal first_call, eager
        backend = current_backend()
        if not jit_compile or eager:
            return fn(*args)
        if first_call:  # eager, noting the optimizers it applies
            with recording_applies([]) as applied:
                out = fn(*args)
            optimizers.extend(dict.fromkeys(applied))  # once each, in order
            first_call = False
            return out
        # Keyed by what the backend is, not by the object: use_backend("tensorflow") makes a new
        # object per call, and a step compiled for an equal backend must not trace again.
        key = (type(backend), backend.name, backend.dtype, str(backend.device))
        if key not in compiled:
            compiled[key] = backend.compile_step(step)
        scalars = [{k: float(v) for k, v in opt.step_scalars().items()} for opt in optimizers]
        try:
            out = compiled[key](scalars, *args)
        except FrozenRandomnessError:  # the step draws unidl.random numbers: a graph would freeze them
            eager = True
            warnings.warn(f"unidl.function {getattr(fn, '__name__', 'step')!r} runs eagerly: it draws random "
                          "numbers (unidl.random), which a compiled graph would freeze", RuntimeWarning, stacklevel=2)
            return fn(*args)
        for opt in optimizers:
            opt.iterations += 1
        return out

    call.__name__ = getattr(fn, "__name__", "function")
    call.__doc__ = fn.__doc__
    return call

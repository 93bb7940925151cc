"""Optimizers, written once over ``unidl.ops`` with Keras 3's update rules and defaults.

Each step has two halves:

* ``step_scalars()`` computes this step's hyper-parameters (learning rate,
  bias corrections) on the host as Python floats;
* ``update(variable, grad, slots, scalars)`` applies the rule to one variable
  with backend ops and ``backend.assign``.

Keeping the scalars separate lets a compiled train step (tf.function, ...)
take them as inputs instead of baking a learning rate into the graph.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Callable, Sequence

import numpy as np

from . import ops
from .naming import check_kwargs
from .registry import resolve
from .variables import Variable

_BASE_KWARGS = ("learning_rate", "clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "name")


# unidl.function's hooks into apply(): which optimizers a step applies (its first, eager call
# records them), and, while it is traced, each one's step scalars as traced tensors.
_applied: contextvars.ContextVar[list | None] = contextvars.ContextVar("unidl_applied", default=None)
_traced_scalars: contextvars.ContextVar[dict | None] = contextvars.ContextVar("unidl_traced_scalars",
                                                                              default=None)


@contextlib.contextmanager
def recording_applies(into: list):
    """Append every optimizer whose ``apply`` runs in this context to ``into``."""
    token = _applied.set(into)
    try:
        yield into
    finally:
        _applied.reset(token)


@contextlib.contextmanager
def scalars_from(traced: dict):
    """Let ``apply`` of each optimizer ``id`` in ``traced`` use those step scalars."""
    token = _traced_scalars.set(traced)
    try:
        yield
    finally:
        _traced_scalars.reset(token)


class Optimizer:
    """Base class.

    Args:
        learning_rate: a float, or a schedule ``f(step) -> float`` (step counts from 0).
        clipnorm: clip each gradient to this L2 norm. global_clipnorm: clip all gradients
            together to this global norm. clipvalue: clip each gradient element to [-v, v].
        weight_decay: decoupled weight decay, ``w -= lr * weight_decay * w`` before the update.
    """

    slot_names: tuple[str, ...] = ()
    default_learning_rate = 0.001

    def __init__(self, learning_rate=None, clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, weight_decay: float | None = None, name: str | None = None):
        if learning_rate is None:
            learning_rate = self.default_learning_rate
        if not callable(learning_rate) and (not np.isfinite(learning_rate) or learning_rate < 0):
            raise ValueError(f"{type(self).__name__}: learning_rate must be a non-negative number or a "
                             f"schedule, got {learning_rate!r}")
        if sum(x is not None for x in (clipnorm, global_clipnorm)) > 1:
            raise ValueError("use only one of clipnorm and global_clipnorm")
        self.learning_rate = learning_rate
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.weight_decay = weight_decay
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots: dict[int, dict[str, Any]] = {}  # id(variable) -> slot name -> backend variable
        self._slot_backend: dict[int, Any] = {}

    # ----------------------------------------------------------- state
    def ensure_slots(self, variables: Sequence[Variable]) -> None:
        """Create the slots (moments...) of variables that have none yet, on their backend.

        Slots of a variable that moved to another backend are made anew (zeroed).
        """
        for v in variables:
            if id(v) in self._slots and self._slot_backend[id(v)] is v.backend:
                continue
            self._slots[id(v)] = {s: v.backend.variable(self.initial_slot(s, v), trainable=False,
                                                        name=f"{v.name}/{s}") for s in self.slot_names}
            self._slot_backend[id(v)] = v.backend

    def initial_slot(self, slot: str, variable: Variable) -> np.ndarray:
        return np.zeros(variable.shape)

    def reset(self) -> None:
        """Forget every slot and the step count (a copy of an optimizer starts anew with it)."""
        self._slots, self._slot_backend = {}, {}
        self.iterations = 0

    def slots_of(self, variable: Variable) -> dict[str, Any]:
        """The slots (slot name -> backend variable) of ``variable``; empty before ``ensure_slots``."""
        return self._slots.get(id(variable), {})

    @property
    def current_learning_rate(self) -> float:
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    # ------------------------------------------------------------ step
    def step_scalars(self) -> dict[str, float]:
        """This step's hyper-parameters as Python floats (host side)."""
        return {"lr": self.current_learning_rate}

    def apply(self, grads: Sequence, variables: Sequence[Variable]) -> None:
        """One optimizer step: update ``variables`` from their ``grads`` (backend tensors).

        Inside a step compiled by :func:`unidl.function` this step's hyper-parameters arrive
        as traced inputs (not frozen at trace time) and the host counts the iteration.
        """
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"optimizer {self.name!r}: apply() got {len(grads)} gradients for {len(variables)} "
                             "variables; pass one gradient per variable, in the same order (the grads "
                             "unidl.value_and_grad returns match model.trainable_weights)")
        traced = _traced_scalars.get()
        if traced is not None and id(self) in traced:
            self.update_all(grads, variables, traced[id(self)])
            return
        applied = _applied.get()
        if applied is not None:
            applied.append(self)
        self.update_all(grads, variables, self.step_scalars())
        self.iterations += 1

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras's spelling of :meth:`apply`: ``optimizer.apply_gradients(zip(grads, model.trainable_weights))``."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def update_all(self, grads: Sequence, variables: Sequence[Variable], scalars: dict) -> None:
        """The traceable half of ``apply``: no host state changes, so it can run in a compiled step.

        ``scalars`` are this step's hyper-parameters (floats, or tensors in a compiled step).
        A backend may take over a variable's update with a native kernel
        (``Backend.fused_update``); the conformance kit checks it against ``update``.
        """
        self.ensure_slots(variables)  # a no-op once every variable has its slots
        backend = ops.current_backend()
        rule = self.native_rule
        for var, grad in zip(variables, self.clip(list(grads))):
            if self.weight_decay:
                decay = _times(scalars["lr"], self.weight_decay)
                _assign(var, ops.subtract(var.value, ops.multiply(var.value, decay)))
            slots = self._slots[id(var)]
            if not (rule and backend.fused_update(rule, self, var.value, grad, slots, scalars)):
                self.update(var, grad, slots, scalars)

    def update(self, variable: Variable, grad, slots: dict[str, Any], scalars: dict) -> None:
        raise NotImplementedError

    rule_name: str | None = None  # set next to each built-in ``update``
    use_native_kernels = True     # False forces the generic rule (tests compare the two)

    @property
    def native_rule(self) -> str | None:
        """The rule a backend may run natively ("adam", "sgd"...), or None.

        None when a subclass overrides ``update``: a native kernel would then
        silently replace the user's rule.
        """
        if not self.use_native_kernels:
            return None
        for cls in type(self).__mro__:
            if "update" in cls.__dict__:
                return cls.__dict__.get("rule_name")
        return None

    def clip(self, grads: list) -> list:
        if self.clipvalue is not None:
            grads = [ops.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            grads = [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm is not None:
            norm = ops.sqrt(sum_tensors([ops.sum(ops.square(g)) for g in grads]))
            scale = ops.divide(self.global_clipnorm, ops.maximum(norm, self.global_clipnorm))
            grads = [ops.multiply(g, scale) for g in grads]
        return grads

    def get_config(self) -> dict[str, Any]:
        lr = self.learning_rate
        return {"name": self.name, "learning_rate": lr if not callable(lr) else repr(lr),
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self.learning_rate})"


def sum_tensors(xs: list):
    total = xs[0]
    for x in xs[1:]:
        total = ops.add(total, x)
    return total


def _clip_by_norm(g, max_norm: float):
    # g * max_norm / max(||g||, max_norm): unchanged when the norm is within bounds.
    norm = ops.sqrt(ops.sum(ops.square(g)))
    return ops.multiply(g, ops.divide(max_norm, ops.maximum(norm, max_norm)))


def _times(a, b):
    # Host floats stay host floats; tensors (compiled steps) go through ops.
    return a * b if isinstance(a, float) else ops.multiply(a, b)


def _assign(variable: Variable | Any, value) -> None:
    if isinstance(variable, Variable):
        # the bound backend (a step's, possibly a mixed-precision twin), else the weight's own
        (ops.current_backend_or_none() or variable.backend or ops.current_backend()).assign(variable.value, value)
    else:
        ops.current_backend().assign(variable, value)


class SGD(Optimizer):
    """Stochastic gradient descent, Keras form.

    Without momentum: ``w -= lr * g``. With momentum ``mu``: ``v = mu * v - lr * g``;
    ``w += v`` (or ``w += mu * v - lr * g`` with ``nesterov=True``). Default lr 0.01.
    PyTorch's SGD keeps ``b = mu * b + g; w -= lr * b`` instead: the same for a constant lr.
    """
    default_learning_rate = 0.01

    def __init__(self, learning_rate=None, momentum: float = 0.0, nesterov: bool = False, **kwargs):
        check_kwargs("SGD()", kwargs, _BASE_KWARGS)
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got momentum={momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    rule_name = "sgd"

    def update(self, variable, grad, slots, s):
        step = ops.multiply(s["lr"], grad)
        if not self.momentum:
            _assign(variable, ops.subtract(variable.value, step))
            return
        v = ops.subtract(ops.multiply(self.momentum, slots["momentum"]), step)
        _assign(slots["momentum"], v)
        if self.nesterov:
            _assign(variable, ops.add(variable.value, ops.subtract(ops.multiply(self.momentum, v), step)))
        else:
            _assign(variable, ops.add(variable.value, v))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam, Keras form (epsilon outside the square root, after the bias correction of lr).

    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g**2``;
    ``w -= lr_t * m / (sqrt(v) + eps)`` with ``lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t)``.
    Defaults: lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7 (PyTorch: 1e-8, added after
    correcting v, which differs slightly).
    """
    slot_names = ("m", "v")

    def __init__(self, learning_rate=None, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        check_kwargs(f"{type(self).__name__}()", kwargs, _BASE_KWARGS)
        super().__init__(learning_rate, **kwargs)
        for label, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{type(self).__name__}: {label} must be in [0, 1), got {beta!r}")
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        if amsgrad:
            self.slot_names = ("m", "v", "v_hat")

    def step_scalars(self):
        t = self.iterations + 1
        lr = self.current_learning_rate
        return {"lr": lr, "lr_t": lr * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)}

    rule_name = "adam"

    def update(self, variable, grad, slots, s):
        m = ops.add(slots["m"], ops.multiply(ops.subtract(grad, slots["m"]), 1 - self.beta_1))
        v = ops.add(slots["v"], ops.multiply(ops.subtract(ops.square(grad), slots["v"]), 1 - self.beta_2))
        _assign(slots["m"], m)
        _assign(slots["v"], v)
        if self.amsgrad:
            v = ops.maximum(slots["v_hat"], v)
            _assign(slots["v_hat"], v)
        step = ops.divide(ops.multiply(s["lr_t"], m), ops.add(ops.sqrt(v), self.epsilon))
        _assign(variable, ops.subtract(variable.value, step))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.004, Keras; PyTorch's default is 0.01)."""

    def __init__(self, learning_rate=None, weight_decay: float = 0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """RMSprop, Keras form: ``v = rho v + (1 - rho) g**2``; ``w -= lr g / sqrt(v + eps)``.

    ``centered=True`` subtracts the squared mean gradient from v; ``momentum`` accumulates
    the increments. Defaults: lr 1e-3, rho 0.9, epsilon 1e-7 (PyTorch: lr 1e-2, alpha 0.99,
    eps 1e-8 added outside the root).
    """

    def __init__(self, learning_rate=None, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs):
        check_kwargs("RMSprop()", kwargs, _BASE_KWARGS)
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"RMSprop: rho must be in [0, 1), got rho={rho!r}")
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        self.slot_names = ("velocity",) + (("momentum",) if momentum else ()) + (("average_grad",) if centered else ())

    rule_name = "rmsprop"

    def update(self, variable, grad, slots, s):
        velocity = ops.add(ops.multiply(self.rho, slots["velocity"]), ops.multiply(1 - self.rho, ops.square(grad)))
        _assign(slots["velocity"], velocity)
        denominator = velocity
        if self.centered:
            avg = ops.add(ops.multiply(self.rho, slots["average_grad"]), ops.multiply(1 - self.rho, grad))
            _assign(slots["average_grad"], avg)
            denominator = ops.subtract(velocity, ops.square(avg))
        increment = ops.divide(ops.multiply(s["lr"], grad), ops.sqrt(ops.add(denominator, self.epsilon)))
        if self.momentum:
            increment = ops.add(ops.multiply(self.momentum, slots["momentum"]), increment)
            _assign(slots["momentum"], increment)
        _assign(variable, ops.subtract(variable.value, increment))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad, Keras form: ``acc += g**2``; ``w -= lr g / sqrt(acc + eps)``.

    Defaults: lr 1e-3, initial_accumulator_value 0.1, epsilon 1e-7 (PyTorch: lr 1e-2, acc 0).
    """
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=None, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7, **kwargs):
        check_kwargs("Adagrad()", kwargs, _BASE_KWARGS)
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value, self.epsilon = initial_accumulator_value, epsilon

    def initial_slot(self, slot, variable):
        return np.full(variable.shape, self.initial_accumulator_value)

    rule_name = "adagrad"

    def update(self, variable, grad, slots, s):
        acc = ops.add(slots["accumulator"], ops.square(grad))
        _assign(slots["accumulator"], acc)
        step = ops.divide(ops.multiply(s["lr"], grad), ops.sqrt(ops.add(acc, self.epsilon)))
        _assign(variable, ops.subtract(variable.value, step))

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


def _check_unit_interval(where: str, name: str, value, closed_right: bool = False, open_left: bool = False):
    """``value`` in [0, 1) (or (0, 1] / [0, 1] per the flags), else a ValueError naming it."""
    number = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    low_ok = number and (value > 0.0 if open_left else value >= 0.0)
    high_ok = number and (value <= 1.0 if closed_right else value < 1.0)
    if not (low_ok and high_ok):
        interval = ("(0" if open_left else "[0") + (", 1]" if closed_right else ", 1)")
        raise ValueError(f"{where}: {name} must be in {interval}, got {name}={value!r}")
    return float(value)


def _check_epsilon(where: str, epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)) \
            or not epsilon > 0 or not np.isfinite(epsilon):
        raise ValueError(f"{where}: epsilon must be a positive number, got epsilon={epsilon!r}")
    return float(epsilon)


class Nadam(Optimizer):
    """Adam with Nesterov momentum, Keras form (Dozat 2016, with the momentum schedule).

    With ``u_t = b1 (1 - 0.5 * 0.96**t)`` and ``U_t = u_1 ... u_t``::

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g**2
        m_hat = u_{t+1} m / (1 - U_t u_{t+1}) + (1 - u_t) g / (1 - U_t)
        v_hat = v / (1 - b2**t)
        w -= lr * m_hat / (sqrt(v_hat) + eps)

    Defaults: lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7. The schedule's product ``U_t``
    is a host-side scalar, like the learning rate.

    PyTorch's ``NAdam`` uses the same schedule (momentum_decay 4e-3 gives 0.96**t) with eps 1e-8
    added after the bias correction of v.
    """
    slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=None, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 **kwargs):
        check_kwargs("Nadam()", kwargs, (*_BASE_KWARGS, "beta_1", "beta_2", "epsilon"))
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit_interval("Nadam", "beta_1", beta_1)
        self.beta_2 = _check_unit_interval("Nadam", "beta_2", beta_2)
        self.epsilon = _check_epsilon("Nadam", epsilon)
        self._u_product = (0, 1.0)  # (t, U_t): the momentum schedule's running product, host side

    def _u(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** t)

    def _u_product_at(self, t: int) -> float:
        """``U_t = u_1 * ... * u_t``, kept incrementally (recomputed after a reset or a jump)."""
        step, product = self._u_product
        if step > t:
            step, product = 0, 1.0
        while step < t:
            step += 1
            product *= self._u(step)
        self._u_product = (step, product)
        return product

    def step_scalars(self):
        t = self.iterations + 1
        u_t, u_next = self._u(t), self._u(t + 1)
        product = self._u_product_at(t)
        return {"lr": self.current_learning_rate,
                "momentum_scale": u_next / (1.0 - product * u_next),   # applied to m
                "gradient_scale": (1.0 - u_t) / (1.0 - product),        # applied to g
                "velocity_scale": 1.0 / (1.0 - self.beta_2 ** t)}       # v_hat = v * this

    def update(self, variable, grad, slots, s):
        m = ops.add(slots["momentum"], ops.multiply(ops.subtract(grad, slots["momentum"]), 1 - self.beta_1))
        v = ops.add(slots["velocity"], ops.multiply(ops.subtract(ops.square(grad), slots["velocity"]),
                                                    1 - self.beta_2))
        _assign(slots["momentum"], m)
        _assign(slots["velocity"], v)
        m_hat = ops.add(ops.multiply(s["momentum_scale"], m), ops.multiply(s["gradient_scale"], grad))
        v_hat = ops.multiply(v, s["velocity_scale"])
        step = ops.divide(ops.multiply(m_hat, s["lr"]), ops.add(ops.sqrt(v_hat), self.epsilon))
        _assign(variable, ops.subtract(variable.value, step))

    def reset(self) -> None:
        super().reset()
        self._u_product = (0, 1.0)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm), Keras form.

    ``m = b1 m + (1 - b1) g``; ``u = max(b2 u, |g|)``; ``w -= lr m / ((1 - b1**t) (u + eps))``.
    Defaults: lr 1e-3, beta_1 0.9, beta_2 0.999, epsilon 1e-7.

    PyTorch's ``Adamax`` defaults to lr 2e-3, eps 1e-8 and adds eps inside the max
    (``u = max(b2 u, |g| + eps)``).
    """
    slot_names = ("momentum", "norm")

    def __init__(self, learning_rate=None, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 **kwargs):
        check_kwargs("Adamax()", kwargs, (*_BASE_KWARGS, "beta_1", "beta_2", "epsilon"))
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit_interval("Adamax", "beta_1", beta_1)
        self.beta_2 = _check_unit_interval("Adamax", "beta_2", beta_2)
        self.epsilon = _check_epsilon("Adamax", epsilon)

    def step_scalars(self):
        t = self.iterations + 1
        return {"lr": self.current_learning_rate, "bias_correction": 1.0 - self.beta_1 ** t}

    def update(self, variable, grad, slots, s):
        m = ops.add(slots["momentum"], ops.multiply(ops.subtract(grad, slots["momentum"]), 1 - self.beta_1))
        u = ops.maximum(ops.multiply(self.beta_2, slots["norm"]), ops.abs(grad))
        _assign(slots["momentum"], m)
        _assign(slots["norm"], u)
        step = ops.divide(ops.multiply(s["lr"], m), ops.multiply(s["bias_correction"], ops.add(u, self.epsilon)))
        _assign(variable, ops.subtract(variable.value, step))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Adadelta, Keras form (with a learning rate, unlike the paper's)::

        acc_g = rho acc_g + (1 - rho) g**2
        delta = -sqrt(acc_d + eps) / sqrt(acc_g + eps) * g
        acc_d = rho acc_d + (1 - rho) delta**2
        w += lr * delta

    Defaults: lr 1e-3, rho 0.95, epsilon 1e-7 (PyTorch: lr 1.0, rho 0.9, eps 1e-6).
    """
    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate=None, rho: float = 0.95, epsilon: float = 1e-7, **kwargs):
        check_kwargs("Adadelta()", kwargs, (*_BASE_KWARGS, "rho", "epsilon"))
        super().__init__(learning_rate, **kwargs)
        self.rho = _check_unit_interval("Adadelta", "rho", rho)
        self.epsilon = _check_epsilon("Adadelta", epsilon)

    def update(self, variable, grad, slots, s):
        rho = self.rho
        acc_grad = ops.add(ops.multiply(rho, slots["accumulated_grad"]), ops.multiply(1 - rho, ops.square(grad)))
        _assign(slots["accumulated_grad"], acc_grad)
        delta = ops.negative(ops.divide(ops.multiply(ops.sqrt(ops.add(slots["accumulated_delta_var"], self.epsilon)),
                                                     grad),
                                        ops.sqrt(ops.add(acc_grad, self.epsilon))))
        _assign(slots["accumulated_delta_var"], ops.add(ops.multiply(rho, slots["accumulated_delta_var"]),
                                                        ops.multiply(1 - rho, ops.square(delta))))
        _assign(variable, ops.add(variable.value, ops.multiply(s["lr"], delta)))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Lion(Optimizer):
    """Lion (EvoLved Sign Momentum, Chen et al. 2023), Keras form::

        w -= lr * sign(b1 m + (1 - b1) g)
        m = b2 m + (1 - b2) g

    Defaults: lr 1e-3, beta_1 0.9, beta_2 0.99. beta_1 must be in (0, 1] (0 makes it signSGD).
    Lion's steps have size lr in every coordinate: its learning rate is typically 3-10x smaller
    than AdamW's. PyTorch has no built-in Lion.
    """
    slot_names = ("momentum",)

    def __init__(self, learning_rate=None, beta_1: float = 0.9, beta_2: float = 0.99, **kwargs):
        check_kwargs("Lion()", kwargs, (*_BASE_KWARGS, "beta_1", "beta_2"))
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = _check_unit_interval("Lion", "beta_1", beta_1, closed_right=True, open_left=True)
        self.beta_2 = _check_unit_interval("Lion", "beta_2", beta_2, closed_right=True)

    def update(self, variable, grad, slots, s):
        m = slots["momentum"]
        direction = ops.sign(ops.add(ops.multiply(m, self.beta_1), ops.multiply(grad, 1.0 - self.beta_1)))
        _assign(variable, ops.subtract(variable.value, ops.multiply(s["lr"], direction)))
        _assign(m, ops.add(ops.multiply(m, self.beta_2), ops.multiply(grad, 1.0 - self.beta_2)))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


BUILTINS: dict[str, Callable[..., Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
    "nadam": Nadam, "adamax": Adamax, "adadelta": Adadelta, "lion": Lion,
}


def get(identifier) -> Optimizer:
    return resolve("optimizers", identifier, BUILTINS, Optimizer)

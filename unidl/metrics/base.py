"""``Metric``: Keras 3's stateful metric API over ``unidl.Variable`` state.

A metric keeps running totals in Variables (``add_variable``), adds a batch with
``update_state(y_true, y_pred, sample_weight=None)``, reads its value with
``result()`` and starts again with ``reset_state()``. Every update is written with
``unidl.ops``, so it runs on any backend, inside a compiled step too.

Where the state lives
    The Variables start unbound (NumPy). On first use they are bound to the
    backend bound in the current context (``with unidl.use_backend(...)``, or the
    model's while it trains); under a mixed-precision compute twin, to the
    full-precision backend behind it, so totals never accumulate in half
    precision. Used again under a different backend (another framework, dtype or
    device), the state moves there with its values. Used outside any backend
    context, a metric runs on the backend its state is bound to, else on unidl's
    default backend (``unidl.config``: NumPy unless chosen) in ``metric.dtype``
    (float32 unless given), as Keras runs on its default backend.

What ``result()`` returns
    Inside a backend context: a tensor of that backend (a scalar for most
    metrics). Outside any context: NumPy (a ``numpy.float32`` scalar or an array),
    so ``print(m.result())`` and ``float(m.result())`` work as in Keras.

Subclasses override ``update_state``, ``result`` and (when the state is not all
zeros at the start) ``reset_state``; each override is wrapped so that it runs on
the state's backend as described above.
"""
from __future__ import annotations

import copy
import functools
from typing import Any

import numpy as np

from .. import initializers
from .. import ops
from ..naming import snake_case
from ..variables import Variable

# Keras's ``backend.epsilon()``: the fuzz factor its metric formulas use.
EPSILON = 1e-7

_HOST_TYPES = (np.ndarray, np.generic, list, tuple, int, float, bool)


class MetricInputError(ValueError):
    """Labels a metric cannot compare with the predictions."""


def _same_backend(a, b) -> bool:
    """Whether two backend objects are the same kind: framework, dtype and device.

    ``use_backend("torch")`` makes a new object per call; state bound to an equal one need not move.
    """
    return a is b or (type(a) is type(b) and a.name == b.name and a.dtype == b.dtype
                      and str(a.device) == str(b.device))


def _on_state_backend(method):
    """Run a metric method on the backend its state lives on (see the module docstring)."""
    if getattr(method, "_runs_on_state_backend", False):
        return method

    update = method.__name__ == "update_state"  # its host arguments (NumPy, lists) become tensors

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        current = ops.current_backend_or_none()
        # fast path: the state was bound to this very backend object and no variable was added since
        backend = current if current is not None and self.__dict__.get("_bound_to") is current \
            else self._state_backend(current)
        if backend is current:
            return method(self, *_tensors(args), **_tensors(kwargs)) if update else method(self, *args, **kwargs)
        with ops.use_backend(backend):
            out = method(self, *_tensors(args), **_tensors(kwargs)) if update else method(self, *args, **kwargs)
            if current is None and method.__name__ == "result":
                out = _to_host(backend, out)
        return out

    run._runs_on_state_backend = True
    return run


def _default_backend(dtype: str):
    """unidl.config's default backend, in ``dtype`` when that is not its float dtype."""
    from .. import config
    from ..registry import get_backend
    dtype = dtype if dtype in ("float32", "float64") else "float32"
    default = config.default_backend()
    return default if default.dtype == dtype else get_backend(default.name, dtype=dtype)


def _tensors(args):
    """Host data among update_state's arguments (a list, or a dict of keywords) as tensors."""
    if isinstance(args, dict):
        return {k: as_tensor(v) for k, v in args.items()}
    return [as_tensor(a) for a in args]


def _to_host(backend, value):
    if isinstance(value, dict):
        return {k: _to_host(backend, v) for k, v in value.items()}
    if value is None or isinstance(value, (np.ndarray, np.generic, float, int)):
        return value
    if type(value) is Variable:
        value = value.value
    return np.asarray(backend.to_numpy(value))[()]  # a 0-d array becomes a NumPy scalar


class Metric:
    """Base class of stateful metrics (Keras 3's ``keras.metrics.Metric``).

    Args:
        name: the metric's name in logs (default: the class name in snake_case,
            without Keras's ``_1``, ``_2`` numbering).
        dtype: dtype of the state when the metric runs outside any backend context
            ("float32" unless given); bound to a backend, the backend's float dtype is used.

    A subclass creates its state in ``__init__`` with ``self.add_variable(...)`` and
    implements ``update_state`` and ``result`` with ``unidl.ops``::

        class BinaryTruePositives(unidl.metrics.Metric):
            def __init__(self, name="binary_true_positives", **kwargs):
                super().__init__(name=name, **kwargs)
                self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")

            def update_state(self, y_true, y_pred, sample_weight=None):
                hits = ops.multiply(ops.cast(ops.greater(y_true, 0.5), "float32"),
                                    ops.cast(ops.greater(y_pred, 0.5), "float32"))
                self.true_positives.assign(ops.add(self.true_positives, ops.sum(hits)))

            def result(self):
                return ops.add(self.true_positives, 0.0)

    (Keras writes ``self.true_positives.assign_add(...)``; unidl.Variable has ``assign`` only.)

    ``Metric(fn, name)`` with a function ``fn(y_true, y_pred) -> per-sample values``
    (the form unidl had before this API) makes a ``MeanMetricWrapper(fn, name)``.
    """

    def __new__(cls, *args, **kwargs):
        if cls is Metric and args and callable(args[0]) and not isinstance(args[0], str):
            from .reduction import MeanMetricWrapper
            return object.__new__(MeanMetricWrapper)  # Python then runs MeanMetricWrapper.__init__(fn, name)
        return object.__new__(cls)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("update_state", "result", "reset_state"):
            if name in cls.__dict__:
                setattr(cls, name, _on_state_backend(cls.__dict__[name]))

    def __init__(self, name: str | None = None, dtype: str | None = None):
        self._variables: list[Variable] = []
        self._metrics: list[Metric] = []
        self.name = name or snake_case(type(self).__name__)
        self._dtype = dtype or "float32"

    def __setattr__(self, name, value):
        # Keras tracks metrics held as attributes: their state is part of ours.
        if isinstance(value, Metric) and "_metrics" in self.__dict__ and value is not self:
            self._metrics.append(value)
        object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- state
    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def variables(self) -> list[Variable]:
        """The state: this metric's Variables, then those of the metrics it holds."""
        self._check_super_called()
        out = list(self._variables)
        for metric in self._metrics:
            out.extend(metric.variables)
        return out

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum",
                     name: str | None = None) -> Variable:
        """A non-trainable ``unidl.Variable`` of ``shape`` holding part of the state.

        ``initializer``: a name ("zeros", "ones"), a ``unidl.initializers`` object or a
        callable ``f(shape, rng)``. ``dtype`` and ``aggregation`` are accepted for Keras
        compatibility; the state takes the float dtype of the backend it is bound to.
        """
        self._check_super_called()
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
        value = initializers.get(initializer)(shape, np.random.default_rng(0))
        variable = Variable(np.asarray(value, dtype=np.float64), name=f"{self.name}/{name or 'variable'}",
                            trainable=False)
        self._variables.append(variable)
        object.__setattr__(self, "_bound_to", None)  # the new variable is not bound yet
        return variable

    def add_weight(self, shape=(), initializer="zeros", dtype=None, name: str | None = None) -> Variable:
        """Keras's other name for :meth:`add_variable`."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    def bind(self, backend) -> None:
        """Move the state onto ``backend`` now (a name or a Backend), e.g. before a step is traced."""
        if isinstance(backend, str):
            from ..registry import get_backend
            backend = get_backend(backend)
        self._state_backend(backend)

    def _state_backend(self, current):
        """The backend to run on; binds (or moves) the state to it. See the module docstring."""
        variables = self.variables
        if current is not None:
            backend = current.full_precision or current
        else:
            backend = next((v.backend for v in variables if v.backend is not None), None)
            if backend is None:  # Keras runs on its default backend; so does unidl (NumPy unless chosen)
                backend = _default_backend(self._dtype)
        for v in variables:
            if v.backend is None or (v.backend is not backend and not _same_backend(v.backend, backend)):
                v.bind(backend)
        object.__setattr__(self, "_bound_to", backend)
        return backend

    def _check_super_called(self) -> None:
        if "_variables" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__(name=..., dtype=...) "
                               "before creating state")

    # ---------------------------------------------------------------- the API
    def update_state(self, *args, **kwargs) -> None:
        """Add a batch to the state."""
        raise NotImplementedError(f"{type(self).__name__} must implement update_state")

    def result(self):
        """The metric's value from the state: a backend tensor (NumPy outside any backend context)."""
        raise NotImplementedError(f"{type(self).__name__} must implement result")

    @_on_state_backend
    def reset_state(self) -> None:
        """Set every state variable to zeros (between epochs, or by hand)."""
        for v in self.variables:
            v.assign(np.zeros(v.shape))

    def __call__(self, *args, **kwargs):
        """``update_state(*args, **kwargs)``, then ``result()`` (as Keras)."""
        self.update_state(*args, **kwargs)
        return self.result()

    # ------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self._dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Metric":
        return cls(**config)

    def __deepcopy__(self, memo) -> "Metric":
        # A copy holds unbound copies of the state (Variable's own deepcopy), with the same values.
        twin = object.__new__(type(self))
        memo[id(self)] = twin
        for key, value in self.__dict__.items():
            object.__setattr__(twin, key, None if key == "_bound_to" else copy.deepcopy(value, memo))
        return twin

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


# ------------------------------------------------------------------ helpers
# Small pieces of Keras's metric code, over unidl's primitive ops.

def as_tensor(x):
    """Host data (NumPy, lists, Python numbers) as a tensor of the current backend; tensors pass through."""
    if isinstance(x, _HOST_TYPES):
        return ops.convert(np.asarray(x))
    return x


def as_float(x):
    """``x`` as a tensor in the current backend's float dtype (labels may be ints or bools)."""
    x = as_tensor(x)
    dtype = ops.current_backend().dtype
    if dtype in str(getattr(x, "dtype", "")):  # "float32" in torch.float32, tf's <dtype: 'float32'>...
        return x
    return ops.cast(x, dtype)


def rank(x) -> int:
    return len(ops.shape(x))


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Keras's rule: when the ranks differ by one and the longer ends in 1, squeeze it, or (a rank-1
    partner, ``expand_rank_1``) expand the other."""
    r1, r2 = rank(x1), rank(x2)
    if r1 == r2 + 1 and ops.shape(x1)[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = ops.expand_dims(x2, -1)
        else:
            x1 = ops.squeeze(x1, -1)
    elif r2 == r1 + 1 and ops.shape(x2)[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = ops.expand_dims(x1, -1)
        else:
            x2 = ops.squeeze(x2, -1)
    return x1, x2


def divide_no_nan(a, b):
    """``a / b``, and 0 where ``b == 0``."""
    zero = ops.equal(b, 0.0)
    return ops.where(zero, 0.0, ops.divide(a, ops.where(zero, 1.0, b)))


def element_count(x):
    """The number of entries of ``x`` as a float tensor; NaN entries count too."""
    dtype = ops.current_backend().dtype
    return ops.add(ops.sum(ops.cast(ops.equal(x, x), dtype)), ops.sum(ops.cast(ops.not_equal(x, x), dtype)))


def index_range(start: int, stop: int):
    """int64 indices ``start .. stop - 1`` as a tensor (for ``ops.take``: unidl has no slicing op)."""
    return ops.convert(np.arange(start, stop, dtype=np.int64))


def add_to(variable: Variable, value) -> None:
    """``variable += value`` (Keras's ``assign_add``): one in-place kernel where the backend has one."""
    variable.assign_add(value)

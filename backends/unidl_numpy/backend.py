"""``NumpyBackend``: unidl's reference backend, NumPy arrays plus the tape in ``tape``.

It runs in float32 or float64 and its gradients are checked against finite
differences, so the other backends are checked against it. Each primitive is
the function of the same name in ``tape`` (forward and backward side by
side); this class adds conversion, variables and the two autodiff entry points.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from unidl.backend import Backend, BackendError

from . import tape as ad
from .tape import Tensor


def _detach_tree(tree: Any) -> Any:
    """Detach the Tensors in a (nested) tuple/list/dict, so no graph outlives value_and_grad."""
    if type(tree) is Tensor:
        return tree.detach() if tree.requires_grad else tree
    if type(tree) in (tuple, list):
        return type(tree)(_detach_tree(t) for t in tree)
    if type(tree) is dict:
        return {k: _detach_tree(v) for k, v in tree.items()}
    return tree


def _promoting(op: Callable) -> Callable:
    """``op(a, b)`` as a method with Keras's dtype promotion where NumPy's differs: an integer Tensor
    meeting a float Tensor or Python float takes the float dtype (NumPy makes float64 of int64 +
    float32), two floats the wider one. Tensors of one dtype (nearly every call) pass straight through."""
    def promoted(self, a, b):
        ta, tb = type(a), type(b)
        if ta is Tensor and tb is Tensor:
            if a.data.dtype is not b.data.dtype:  # builtin dtypes are singletons
                a, b = _to_common(a, b, self.dtype)
        elif (ta is Tensor and tb is float and a.data.dtype.kind != "f") or (
                tb is Tensor and ta is float and b.data.dtype.kind != "f"):
            a, b = _to_common(a, b, self.dtype)
        return op(a, b)
    promoted.__name__ = promoted.__qualname__ = op.__name__
    promoted.__doc__ = op.__doc__
    return promoted


def _to_common(a, b, compute_dtype: str):
    kinds = [x.data.dtype.kind if type(x) is Tensor else "f" for x in (a, b)]
    if "f" not in kinds:  # two integer or bool tensors: NumPy's rule is Keras's
        return a, b
    floats = [x.data.dtype for x in (a, b) if type(x) is Tensor and x.data.dtype.kind == "f"]
    target = max(floats, key=lambda d: d.itemsize).name if floats else compute_dtype
    return tuple(ad.cast(x, target) if type(x) is Tensor and x.data.dtype.name != target else x for x in (a, b))


class NumpyBackend(Backend):
    """NumPy + reverse-mode tape. Tensors are ``unidl_numpy.tape.Tensor``; CPU only."""

    name = "numpy"
    framework = "numpy"

    def __init__(self, dtype: str = "float32", device: str | None = None):
        if device not in (None, "cpu"):
            raise BackendError(f"backend 'numpy' runs on 'cpu' only, not device={device!r}")
        super().__init__(dtype=dtype, device=device)

    # ------------------------------------------------------------------ info
    def framework_version(self) -> str:
        return np.__version__

    def devices(self) -> list[str]:
        return ["cpu"]

    # ------------------------------------------------ conversion, introspection
    def convert(self, x: Any, dtype: str | None = None) -> Tensor:
        """Array/scalar -> Tensor holding a copy: floats take the compute dtype,
        integers int64, bools stay bool. A Tensor comes back as is (cast if ``dtype`` differs)."""
        if type(x) is Tensor:
            return x if dtype is None or x.data.dtype == dtype else ad.cast(x, dtype)
        arr = np.asarray(x)
        if dtype is None:
            kind = arr.dtype.kind
            dtype = self.dtype if kind == "f" else "int64" if kind in "iu" else arr.dtype
        # A copy: the caller may reuse its array, and variables are updated in place.
        return Tensor(np.array(arr, dtype=dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.data.copy() if type(x) is Tensor else np.array(x)

    def shape(self, x: Any) -> tuple[int, ...]:
        return x.data.shape if type(x) is Tensor else np.shape(x)

    def dtype_of(self, x: Any) -> str:
        return x.data.dtype.name if type(x) is Tensor else np.asarray(x).dtype.name

    # --------------------------------------- primitives: one rule each, in tape.py
    cast = staticmethod(ad.cast)
    add = _promoting(ad.add)
    subtract = _promoting(ad.subtract)
    multiply = _promoting(ad.multiply)
    divide = _promoting(ad.divide)
    power = _promoting(ad.power)
    maximum = _promoting(ad.maximum)
    minimum = _promoting(ad.minimum)
    equal = staticmethod(ad.equal)
    not_equal = staticmethod(ad.not_equal)
    greater = staticmethod(ad.greater)
    greater_equal = staticmethod(ad.greater_equal)
    less = staticmethod(ad.less)
    less_equal = staticmethod(ad.less_equal)

    def where(self, cond, a, b):
        if type(a) is Tensor or type(b) is Tensor:  # a and b promoted as _promoting does
            a, b = self._common(a, b)
        return ad.where(cond, a, b)

    _common = _promoting(lambda a, b: (a, b))
    negative = staticmethod(ad.negative)
    abs = staticmethod(ad.abs)
    sign = staticmethod(ad.sign)
    exp = staticmethod(ad.exp)
    log = staticmethod(ad.log)
    log1p = staticmethod(ad.log1p)
    sqrt = staticmethod(ad.sqrt)
    tanh = staticmethod(ad.tanh)
    sigmoid = staticmethod(ad.sigmoid)
    relu = staticmethod(ad.relu)
    erf = staticmethod(ad.erf)
    clip = staticmethod(ad.clip)
    sum = staticmethod(ad.sum)
    mean = staticmethod(ad.mean)
    max = staticmethod(ad.max)
    min = staticmethod(ad.min)
    argmax = staticmethod(ad.argmax)
    reshape = staticmethod(ad.reshape)
    transpose = staticmethod(ad.transpose)
    concatenate = staticmethod(ad.concatenate)
    take = staticmethod(ad.take)
    unstack = staticmethod(ad.unstack)
    take_along_axis = staticmethod(ad.take_along_axis)
    matmul = _promoting(ad.matmul)
    stop_gradient = staticmethod(ad.stop_gradient)
    # optional ops, and derived ones NumPy does natively
    sin = staticmethod(ad.sin)
    cos = staticmethod(ad.cos)
    floor = staticmethod(ad.floor)
    argsort = staticmethod(ad.argsort)
    cumsum = staticmethod(ad.cumsum)
    # neural-network primitives (NHWC; see unidl.backend.NN_PRIMITIVES)
    pad = staticmethod(ad.pad)
    conv2d = staticmethod(ad.conv2d)
    conv2d_transpose = staticmethod(ad.conv2d_transpose)
    max_pool2d = staticmethod(ad.max_pool2d)
    avg_pool2d = staticmethod(ad.avg_pool2d)

    # ------------------------------------------------------------------ state
    def variable(self, value: Any, trainable: bool = True, name: str = "") -> Tensor:
        """A leaf Tensor holding a copy of ``value`` (floats in the compute dtype).

        Only floating variables can be trainable: an integer counter never gets a gradient.
        """
        var = self.convert(np.asarray(value))
        var.requires_grad = bool(trainable) and var.data.dtype.kind == "f"
        var.name = name
        return var

    def assign(self, variable: Tensor, value: Any) -> None:
        """Write ``value`` into ``variable.data`` in place (same array object, same dtype)."""
        src = value.data if type(value) is Tensor else np.asarray(value)
        if src.shape != variable.data.shape:
            raise ValueError(f"assign: variable {variable.name!r} has shape {variable.data.shape}, "
                             f"value has shape {src.shape}")
        variable.data[...] = src

    def fused_update(self, rule, optimizer, variable, grad, slots, scalars) -> bool:
        """Keras's update rules as in-place NumPy kernels (no tape, no temporaries per op).

        Each computes the generic rule's expression in ``unidl.optimizers``; the
        conformance kit compares them.
        """
        kernel = _FUSED.get(rule)
        if kernel is None or any(type(v) is not float for v in scalars.values()):
            return False
        slot_data = {name: slot.data for name, slot in slots.items()}
        return kernel(optimizer, variable.data, grad.data if type(grad) is Tensor else np.asarray(grad),
                      slot_data, scalars)

    # ---------------------------------------------------------------- autodiff
    def no_grad(self) -> ad._Recording:
        return ad.no_grad()

    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[Tensor]) -> tuple[Tensor, Any, list[Tensor]]:
        # Record even if the caller sits in no_grad: asking for gradients means recording.
        with ad.enable_grad():
            loss, aux = fn()
        loss = self._as_scalar(loss, "value_and_grad")
        grads = self._backprop(loss, variables)
        # Detached results: nothing returned keeps the graph (and its arrays) alive.
        return loss.detach(), _detach_tree(aux), grads

    def gradient_tape(self, persistent: bool = False):
        from .gradient_tape import NumpyGradientTape  # the framework is imported already: a backend exists
        return NumpyGradientTape(self, persistent)

    def grad_wrt_inputs(self, fn: Callable[..., Tensor],
                        inputs: Sequence[Any]) -> tuple[Tensor, list[Tensor]]:
        # Fresh leaves sharing the inputs' arrays (never written), so callers' tensors stay untouched.
        leaves = [Tensor(self.convert(x).data, requires_grad=True) for x in inputs]
        with ad.enable_grad():
            value = fn(*leaves)
        value = self._as_scalar(value, "grad_wrt_inputs")
        return value.detach(), self._backprop(value, leaves)

    @staticmethod
    def _as_scalar(value: Any, where: str) -> Tensor:
        value = value if type(value) is Tensor else Tensor(value)
        if value.data.size != 1:
            raise ValueError(f"{where}: the function must return a scalar, got shape {value.data.shape}")
        return value

    @staticmethod
    def _backprop(root: Tensor, targets: Sequence[Tensor]) -> list[Tensor]:
        """Gradients of ``root`` for each target: fresh arrays of its shape and dtype, zeros if unused."""
        got = ad.gradients(root)
        # np.array copies: gradients may be broadcast views or shared between inputs.
        return [Tensor(np.array(got[t], dtype=t.data.dtype)) if t in got else Tensor(np.zeros_like(t.data))
                for t in targets]


# --------------------------------------------------------------- fused rules
# In-place on the arrays; each returns False for a configuration it does not cover.

def _fused_sgd(opt, w, g, slots, s) -> bool:
    step = s["lr"] * g
    if not opt.momentum:
        w -= step                                  # w -= lr g
        return True
    v = slots["momentum"]
    v *= opt.momentum
    v -= step                                      # v = mu v - lr g
    w += opt.momentum * v - step if opt.nesterov else v
    return True


def _fused_adam(opt, w, g, slots, s) -> bool:
    if opt.amsgrad:
        return False
    m, v = slots["m"], slots["v"]
    m += (g - m) * (1 - opt.beta_1)                # m += (g - m)(1 - b1)
    v += (g * g - v) * (1 - opt.beta_2)            # v += (g^2 - v)(1 - b2)
    denominator = np.sqrt(v)
    denominator += opt.epsilon
    w -= s["lr_t"] * m / denominator               # w -= lr_t m / (sqrt v + eps)
    return True


def _fused_rmsprop(opt, w, g, slots, s) -> bool:
    if opt.centered:
        return False
    v = slots["velocity"]
    v *= opt.rho
    v += (1 - opt.rho) * (g * g)                   # v = rho v + (1 - rho) g^2
    increment = s["lr"] * g / np.sqrt(v + opt.epsilon)
    if opt.momentum:
        m = slots["momentum"]
        m *= opt.momentum
        m += increment                             # m = mu m + lr g / sqrt(v + eps)
        increment = m
    w -= increment
    return True


def _fused_adagrad(opt, w, g, slots, s) -> bool:
    acc = slots["accumulator"]
    acc += g * g                                   # acc += g^2
    w -= s["lr"] * g / np.sqrt(acc + opt.epsilon)  # w -= lr g / sqrt(acc + eps)
    return True


_FUSED = {"sgd": _fused_sgd, "adam": _fused_adam, "rmsprop": _fused_rmsprop, "adagrad": _fused_adagrad}

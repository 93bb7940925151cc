"""The backend contract: what a framework must provide for unidl to run on it.

A backend is one small class. It implements the *primitive* ops listed in
``PRIMITIVES`` plus a handful of state/autodiff methods; everything else
(softmax, one_hot, every layer, loss and optimizer) is written once, over those
primitives, and works unchanged on every backend.

Rules every backend follows (the conformance kit in ``unidl.testing`` checks them):

* Tensors are the framework's own type. Layouts are canonical (NHWC images,
  (in, out) Dense kernels); a backend translates at its edge, never in layer code.
* Operands are positional (``add(a, b)``); options such as ``axis`` and ``keepdims`` are keywords.
* Binary ops broadcast like NumPy and accept Python scalars on either side.
* ``axis`` arguments accept an int, a tuple of ints, or None, negative values included.
* Floating tensors made by ``convert`` use the backend's compute dtype
  (``self.dtype``: "float32" or "float64"); integer arrays become int64, bools stay bool.
* Comparisons return bool tensors and carry no gradient.
* Importing the module that defines a backend class must not import its
  framework: import it in ``__init__`` (see einops' ``_backends.py`` for the idea).

Composite ops (``softmax``, ``logsumexp``, ``one_hot``...) are defined at the
bottom of ``Backend`` from primitives. A backend may override one with a native
kernel when that is faster; the conformance kit then checks the override
against this generic version.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator, Sequence

import numpy as np

Tensor = Any  # the backend's own tensor type
Axis = "int | tuple[int, ...] | None"

# name -> one-line contract. The conformance kit walks this table.
PRIMITIVES: dict[str, str] = {
    # conversion and introspection
    "convert": "convert(x, dtype=None): numpy array / scalar / tensor -> tensor; floats take the compute dtype",
    "to_numpy": "to_numpy(x): tensor -> numpy array (a copy the caller may keep)",
    "shape": "shape(x): tuple of ints (the batch axis may be None inside a compiled step: reshape with -1)",
    "cast": "cast(x, dtype): dtype is a string: float32, float64, int32, int64, bool",
    # elementwise, broadcasting
    "add": "add(a, b) = a + b",
    "subtract": "subtract(a, b) = a - b",
    "multiply": "multiply(a, b) = a * b",
    "divide": "divide(a, b) = a / b (true division)",
    "power": "power(a, b) = a ** b (a > 0 when b is a tensor)",
    "maximum": "maximum(a, b): elementwise; on ties the gradient goes to a",
    "minimum": "minimum(a, b): elementwise; on ties the gradient goes to a",
    "equal": "equal(a, b) -> bool",
    "not_equal": "not_equal(a, b) -> bool",
    "greater": "greater(a, b) -> bool",
    "greater_equal": "greater_equal(a, b) -> bool",
    "less": "less(a, b) -> bool",
    "less_equal": "less_equal(a, b) -> bool",
    "where": "where(cond, a, b): a where cond is true else b; broadcasting",
    # elementwise, unary
    "negative": "negative(x) = -x",
    "abs": "abs(x); gradient sign(x) (0 at 0)",
    "sign": "sign(x) in {-1, 0, 1}; zero gradient",
    "exp": "exp(x)",
    "log": "log(x), x > 0",
    "log1p": "log1p(x) = log(1 + x), x > -1",
    "sqrt": "sqrt(x), x > 0",
    "tanh": "tanh(x)",
    "sigmoid": "sigmoid(x) = 1 / (1 + exp(-x)), stable for large |x|",
    "relu": "relu(x) = max(x, 0); gradient 0 at x == 0",
    "erf": "erf(x), the Gauss error function",
    "clip": "clip(x, lo, hi); gradient 1 where lo <= x <= hi, else 0",
    # reductions
    "sum": "sum(x, axis=None, keepdims=False)",
    "mean": "mean(x, axis=None, keepdims=False)",
    "max": "max(x, axis=None, keepdims=False); gradient split evenly between ties",
    "min": "min(x, axis=None, keepdims=False); gradient split evenly between ties",
    "argmax": "argmax(x, axis=-1) -> int64; no gradient",
    # shape and indexing
    "reshape": "reshape(x, shape); one entry may be -1",
    "transpose": "transpose(x, axes=None); None reverses the axes",
    "concatenate": "concatenate(xs, axis=-1): xs is a sequence of tensors",
    "take": "take(x, indices, axis=0): gather whole slices (like numpy.take)",
    "take_along_axis": "take_along_axis(x, indices, axis): like numpy.take_along_axis",
    # linear algebra
    "matmul": "matmul(a, b): a (..., n, k) @ b (..., k, m), batch axes broadcast; 2-D and higher",
    # autodiff helper
    "stop_gradient": "stop_gradient(x): same value, no gradient flows back",
}

# Neural-network primitives (NHWC images, canonical kernel layouts; see CONVENTIONS.md).
# ``padding`` is "valid", "same" (total = max((ceil(n/s)-1)*s + (k-1)*d + 1 - n, 0),
# before = total // 2, the rest after) or explicit ((top, bottom), (left, right)).
NN_PRIMITIVES: dict[str, str] = {
    "pad": "pad(x, pad_width, value=0.0): pad_width is one (before, after) pair per axis, like numpy.pad",
    "conv2d": ("conv2d(x, kernel, strides=(1, 1), padding='valid', dilation=(1, 1), groups=1): "
               "cross-correlation; x (N, H, W, C), kernel (kh, kw, C // groups, O) -> (N, H', W', O)"),
    "conv2d_transpose": ("conv2d_transpose(x, kernel, strides=(1, 1), padding='valid', dilation=(1, 1)): "
                         "x (N, H, W, C), kernel (kh, kw, O, C) -> (N, H', W', O) with H' = (H - 1) * s + "
                         "(kh - 1) * d + 1 for 'valid' and H * s for 'same'; it equals the gradient with "
                         "respect to its input of conv2d(., kernel, strides, padding, dilation) applied to an "
                         "(N, H', W', O) input, seeded with x (Keras's Conv2DTranspose, output_padding=None)"),
    "max_pool2d": ("max_pool2d(x, pool_size, strides, padding='valid'): NHWC window max; padded cells never win; "
                   "the gradient goes to the first maximal element of each window (row-major)"),
    "avg_pool2d": ("avg_pool2d(x, pool_size, strides, padding='valid'): NHWC window mean over the cells "
                   "inside the input (padding is not counted, as Keras/TF)"),
}
PRIMITIVES.update(NN_PRIMITIVES)

# Ops the dispatching module ``unidl.ops`` exposes: primitives plus composites.
COMPOSITES: tuple[str, ...] = (
    "square", "expand_dims", "squeeze", "softmax", "log_softmax", "logsumexp",
    "softplus", "one_hot", "zeros", "ones", "size", "unstack",
)

DTYPES = ("float32", "float64", "int32", "int64", "bool")
FLOAT_DTYPES = ("float32", "float64")
HALF_DTYPES = ("bfloat16", "float16")  # compute dtypes of mixed precision (unidl.precision)


# True while compute_twin builds a half-precision twin (the only way to get a half-dtype backend).
_building_twin: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_building_twin", default=False)


class BackendError(RuntimeError):
    """A backend cannot do what was asked (missing op, device, dtype...)."""


def _normalize_axis(axis, ndim: int):
    """Return axis as a tuple of non-negative ints (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim if ndim else a for a in axis)


def _reshape_target(shape) -> tuple:
    # Inside a compiled step the batch size may be unknown (None): let reshape infer it.
    return tuple(-1 if d is None else d for d in shape)


class Backend:
    """Base class for every backend.

    Subclasses set the class attributes, import their framework in
    ``__init__``, implement every name in ``PRIMITIVES`` and the state and
    autodiff methods below. ``dtype`` is the floating compute dtype, ``device``
    a string such as "cpu" or "cuda:0" (None picks the backend's default).
    """

    name: str = "abstract"
    framework: str = ""  # importable module name of the framework, e.g. "torch"
    supported_dtypes: tuple[str, ...] = FLOAT_DTYPES
    # Half dtypes this backend can compute in under a mixed-precision policy (see
    # ``compute_twin``); its ``cast`` must then accept them too.
    mixed_precision_dtypes: tuple[str, ...] = ()
    # Set on a compute twin only: reads of unidl.Variables are cast to ``dtype`` (autocasting),
    # and ``full_precision`` is the backend owning the float32 master weights.
    autocast: bool = False
    full_precision: "Backend | None" = None
    # Conformance-kit declarations (read by unidl.testing, shown in its report):
    # check id (e.g. "op:erf" or "op:erf:float32:grad") -> why it is skipped.
    conformance_exclusions: dict[str, str] = {}
    # check id -> (rtol, atol, why the named default tolerance is too tight).
    conformance_tolerances: dict[str, tuple[float, float, str]] = {}

    def __init__(self, dtype: str = "float32", device: str | None = None):
        twin = dtype in self.mixed_precision_dtypes and _building_twin.get()
        if dtype not in self.supported_dtypes and not twin:
            hint = (f"; to compute in {dtype} with float32 weights, compile with dtype_policy='mixed_{dtype}'"
                    if dtype in HALF_DTYPES else "")
            raise BackendError(
                f"backend {self.name!r} does not support dtype={dtype!r}; "
                f"choose one of {list(self.supported_dtypes)}{hint}")
        self.dtype = dtype
        self.device = device or "cpu"

    def __repr__(self) -> str:
        return f"<unidl backend {self.name} dtype={self.dtype} device={self.device}>"

    # ---------------------------------------------------------------- info
    def framework_version(self) -> str:
        """Version string of the framework this backend runs on."""
        return ""

    def devices(self) -> list[str]:
        """Devices this backend can run on, e.g. ["cpu", "cuda:0"]."""
        return ["cpu"]

    # ------------------------------------------------------ state, autodiff
    def variable(self, value: np.ndarray, trainable: bool = True, name: str = "") -> Tensor:
        """Make a framework variable holding ``value`` (converted to the compute dtype).

        The returned handle is what layer code reads (through ``unidl.Variable``)
        and what ``value_and_grad`` differentiates with respect to.
        """
        raise self._missing("variable")

    def assign(self, variable: Tensor, value: Tensor) -> None:
        """Overwrite ``variable`` in place with ``value`` (same shape). Not differentiated."""
        raise self._missing("assign")

    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[Tensor]) -> tuple[Tensor, Any, list]:
        """Run ``fn()`` and differentiate its first result with respect to ``variables``.

        ``fn`` takes no argument (it reads the variables) and returns
        ``(loss, aux)`` where ``loss`` is a scalar tensor and ``aux`` anything.
        Returns ``(loss, aux, grads)``; ``grads[i]`` has the shape of
        ``variables[i]``, and is zeros when the loss does not depend on it.
        """
        raise self._missing("value_and_grad")

    def grad_wrt_inputs(self, fn: Callable[..., Tensor], inputs: Sequence[Tensor]) -> tuple[Tensor, list]:
        """Differentiate scalar ``fn(*inputs)`` with respect to plain tensors ``inputs``.

        Returns ``(value, grads)``. Used for saliency maps and adversarial examples.
        """
        raise self._missing("grad_wrt_inputs")

    def no_grad(self) -> contextlib.AbstractContextManager:
        """Context in which ops record nothing for autodiff (inference, optimizer updates)."""
        return contextlib.nullcontext()

    def compile_step(self, step: Callable) -> Callable:
        """Optionally return a faster, compiled version of a train step.

        ``step(*tensors)`` reads and assigns variables. The default returns it
        unchanged; a backend overriding this must give the same numbers
        (checked by the conformance kit).
        """
        return step

    def fused_update(self, rule: str, optimizer, variable: Tensor, grad: Tensor, slots: dict,
                     scalars: dict) -> bool:
        """Optionally apply an optimizer's update ``rule`` to one variable with native kernels.

        ``rule`` is ``optimizer.native_rule`` ("sgd", "adam", "rmsprop", "adagrad"); its
        hyper-parameters are the optimizer's attributes (``beta_1``, ``momentum``...).
        ``slots`` maps slot names ("m", "v"...) to backend variables, ``scalars``
        holds this step's values ("lr", "lr_t"...). Return True when done, False
        to let the generic rule (written over ops) run. The conformance kit
        compares every override with the generic rule.
        """
        return False

    def export_module(self, model) -> Any:
        """Optionally return ``model`` (bound to this backend) as the framework's own module.

        The module computes ``model.call`` with the framework alone once traced
        (``torch.export.export``, ``tf.saved_model.save``), so users can leave unidl.
        """
        raise BackendError(f"backend {self.name!r} cannot export a model to a native module")

    def compute_twin(self, dtype: str) -> "Backend":
        """This backend computing in half precision ``dtype`` over this backend's variables.

        Floating tensors the twin makes (``convert``, ``zeros``, ``one_hot``) are ``dtype``, and
        ``unidl.ops`` cast each ``unidl.Variable`` it reads to ``dtype``. Variables, optimizer
        state and assignments stay with this backend (float32 master weights).
        """
        if dtype not in self.mixed_precision_dtypes:
            offered = (f"it offers {list(self.mixed_precision_dtypes)}" if self.mixed_precision_dtypes
                       else "use backend='torch' or backend='tensorflow'")
            raise BackendError(f"backend {self.name!r} cannot compute in {dtype} (mixed precision); {offered}")
        twins = self.__dict__.setdefault("_twins", {})
        if dtype not in twins:
            token = _building_twin.set(True)  # half dtypes are for twins only: see __init__
            try:
                twin = type(self)(dtype=dtype, device=self.device)
            finally:
                _building_twin.reset(token)
            twin.autocast, twin.full_precision = True, self
            twins[dtype] = twin
        return twins[dtype]

    def is_floating(self, x: Tensor) -> bool:
        """Whether ``x`` is a floating tensor (any width); override when ``x.dtype`` says otherwise."""
        return "float" in str(getattr(x, "dtype", ""))

    def sync(self) -> None:
        """Wait for queued device work to finish (for timing). Default: nothing."""

    # ------------------------------------------------------------ helpers
    def _missing(self, op: str) -> BackendError:
        return BackendError(f"backend {self.name!r} does not implement {op!r}")

    def __getattr__(self, op: str):
        # Only reached for names the subclass did not define.
        if op in PRIMITIVES:
            raise self._missing(op)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {op!r}")

    # ---------------------------------------------------------- composites
    # Written once over primitives; a backend may override any of them.

    def square(self, x):
        return self.multiply(x, x)

    def size(self, x) -> int:
        return int(np.prod(self.shape(x), dtype=np.int64))

    def unstack(self, x, axis: int = 0) -> list:
        """The slices of ``x`` along ``axis`` (a known size), each without that axis.

        Recurrent layers take their time steps this way. The generic version takes each
        slice; a native one (torch.unbind, tf.unstack) also spares the backward pass a
        full-size gradient per slice, which makes long sequences quadratic.
        """
        return [self.take(x, i, axis=axis) for i in range(self.shape(x)[axis])]

    def expand_dims(self, x, axis: int):
        shape = list(self.shape(x))
        axis = axis if axis >= 0 else len(shape) + 1 + axis
        shape.insert(axis, 1)
        return self.reshape(x, _reshape_target(shape))

    def squeeze(self, x, axis):
        shape = self.shape(x)
        axes = _normalize_axis(axis, len(shape))
        for a in axes:
            if shape[a] not in (1, None):
                raise ValueError(f"squeeze: axis {a} of shape {shape} is not 1")
        return self.reshape(x, _reshape_target([d for i, d in enumerate(shape) if i not in axes]))

    def logsumexp(self, x, axis=-1, keepdims: bool = False):
        # Shift by the (gradient-free) max so exp never overflows.
        m = self.stop_gradient(self.max(x, axis=axis, keepdims=True))
        out = self.add(self.log(self.sum(self.exp(self.subtract(x, m)), axis=axis, keepdims=True)), m)
        return out if keepdims else self.squeeze(out, axis)

    def log_softmax(self, x, axis: int = -1):
        return self.subtract(x, self.logsumexp(x, axis=axis, keepdims=True))

    def softmax(self, x, axis: int = -1):
        m = self.stop_gradient(self.max(x, axis=axis, keepdims=True))
        e = self.exp(self.subtract(x, m))
        return self.divide(e, self.sum(e, axis=axis, keepdims=True))

    def softplus(self, x):
        # log(1 + e^x) = relu(x) + log1p(e^-|x|): no overflow, full precision for x << 0.
        # -|x| is written minimum(x, -x) because minimum's tie rule (gradient to the first
        # argument) then gives the exact gradient 0.5 at x == 0; abs would give 0.
        return self.add(self.relu(x), self.log1p(self.exp(self.minimum(x, self.negative(x)))))

    def one_hot(self, indices, depth: int):
        classes = self.convert(np.arange(depth, dtype=np.int64))
        hit = self.equal(self.expand_dims(self.cast(indices, "int64"), -1), classes)
        return self.cast(hit, self.dtype)

    def zeros(self, shape, dtype: str | None = None):
        """Zeros of ``shape`` in ``dtype`` (default: the compute dtype)."""
        return self.convert(np.zeros(shape), dtype=dtype or self.dtype)

    def ones(self, shape, dtype: str | None = None):
        """Ones of ``shape`` in ``dtype`` (default: the compute dtype)."""
        return self.convert(np.ones(shape), dtype=dtype or self.dtype)


def missing_ops(backend: Backend) -> list[str]:
    """The primitive ops ``backend`` does not implement (the conformance kit's first check)."""
    missing = []
    for op in PRIMITIVES:
        try:
            getattr(backend, op)
        except (BackendError, AttributeError):
            missing.append(op)
    return missing


def iter_ops() -> Iterator[str]:
    """All op names reachable through ``unidl.ops``: primitives, then composites."""
    yield from PRIMITIVES
    yield from COMPOSITES

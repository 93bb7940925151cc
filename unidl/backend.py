"""The backend contract: what a framework must provide for unidl to run on it.

A backend is one small class. It implements the ops listed in ``PRIMITIVES``
plus a handful of state and autodiff methods; everything else is
written once, over those primitives, and works unchanged on every backend:

* the ops in ``DERIVED`` (maximum, relu, clip, mean, the pools, conv2d_transpose...)
  have a contract line of their own and a default in ``Backend``'s "derived ops"
  section; a backend overrides one when its framework has a faster native kernel;
* composites (``softmax``, ``logsumexp``, ``one_hot``...) are defined at the bottom
  of ``Backend``; a backend may override one with a native kernel too;
* every layer, loss, metric and optimizer.

The conformance kit checks every op the same way, whether the backend wrote it
or inherited it.

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

Frameworks whose arrays are immutable (JAX, MLX) get variables, gradients and
compiled steps from the ``unidl.immutable_arrays.ImmutableArrays`` mixin.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import geometry

Tensor = Any  # the backend's own tensor type
Axis = "int | tuple[int, ...] | None"

# Every op of ``unidl.ops`` is in exactly one of three tables:
#
# * PRIMITIVES: what a backend MUST implement (name -> one-line contract);
# * DERIVED: ops with a contract of their own that ``Backend`` already implements over
#   the primitives (name -> one-line contract); a backend overrides one when its native
#   kernel is faster, keeping the contract's tie and kink conventions;
# * COMPOSITES: helpers written once in ``Backend`` (softmax, one_hot...), documented there.
#
# The conformance kit checks all three on every backend, overrides included.

# Neural-network ops (NHWC images, canonical kernel layouts; see CONVENTIONS.md).
# ``padding`` is "valid", "same" (total = max((ceil(n/s)-1)*s + (k-1)*d + 1 - n, 0),
# before = total // 2, the rest after) or explicit ((top, bottom), (left, right)).
# pad and conv2d are primitives, the other three derived; this table holds all five.
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

# name -> one-line contract: the ops every backend implements. ``missing_ops`` and the
# kit's contract check walk this table; ``unidl new-backend`` writes one stub per entry.
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
    "equal": "equal(a, b) -> bool; bool operands too",
    "greater": "greater(a, b) -> bool",
    "greater_equal": "greater_equal(a, b) -> bool",
    "where": "where(cond, a, b): a where cond is true else b; broadcasting",
    # elementwise, unary
    "sign": "sign(x) in {-1, 0, 1}; zero gradient",
    "exp": "exp(x)",
    "log": "log(x), x > 0",
    "tanh": "tanh(x)",
    "erf": "erf(x), the Gauss error function",
    # reductions
    "sum": "sum(x, axis=None, keepdims=False)",
    "max": "max(x, axis=None, keepdims=False); gradient split evenly between ties",
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
    # neural-network primitives
    "pad": NN_PRIMITIVES["pad"],
    "conv2d": NN_PRIMITIVES["conv2d"],
}

# name -> one-line contract: ops ``Backend`` implements over the primitives (see its
# "derived ops" section for how). Same contract as a primitive: a native override must
# keep every convention written here, and the kit checks it exactly as it checks a primitive.
DERIVED: dict[str, str] = {
    # elementwise, broadcasting
    "maximum": "maximum(a, b): elementwise; on ties the gradient goes to a",
    "minimum": "minimum(a, b): elementwise; on ties the gradient goes to a",
    "not_equal": "not_equal(a, b) -> bool",
    "less": "less(a, b) -> bool",
    "less_equal": "less_equal(a, b) -> bool",
    # elementwise, unary
    "negative": "negative(x) = -x",
    "abs": "abs(x); gradient sign(x) (0 at 0)",
    "log1p": "log1p(x) = log(1 + x), x > -1, accurate for |x| << 1",
    "sqrt": "sqrt(x), x > 0",
    "sigmoid": "sigmoid(x) = 1 / (1 + exp(-x)), stable for large |x|",
    "relu": "relu(x) = max(x, 0); gradient 0 at x == 0",
    "clip": "clip(x, lo, hi); gradient 1 where lo <= x <= hi, else 0",
    # reductions
    "mean": "mean(x, axis=None, keepdims=False)",
    "min": "min(x, axis=None, keepdims=False); gradient split evenly between ties",
    # neural-network ops
    "conv2d_transpose": NN_PRIMITIVES["conv2d_transpose"],
    "max_pool2d": NN_PRIMITIVES["max_pool2d"],
    "avg_pool2d": NN_PRIMITIVES["avg_pool2d"],
}

# Ops the dispatching module ``unidl.ops`` exposes beyond the two tables above.
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


# True while a backend traces a step into a graph (tf.function, jax.jit): what runs then runs once,
# so host-side work (a NumPy random draw) would be frozen into every later call.
_tracing: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_tracing", default=False)


class FrozenRandomnessError(BackendError):
    """Random numbers were asked for while a step was being traced: they would be the same at every call."""


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """Mark a trace in progress (backends wrap their ``compile_step`` tracing in it).

    ``unidl.random`` refuses to draw inside (``FrozenRandomnessError``, which makes the training
    loop run that model's step eagerly), and a draw from NumPy's global generator during the
    trace is reported with a warning, since it would be frozen into the graph.
    """
    import warnings

    before = np.random.get_state()
    token = _tracing.set(True)
    try:
        yield
    finally:
        _tracing.reset(token)
    after = np.random.get_state()
    if after[2:] != before[2:] or not np.array_equal(after[1], before[1]):  # position, or key, moved
        warnings.warn("NumPy's global random generator was used while a step was traced into a graph: those "
                      "numbers are now frozen into it and repeat at every call. Draw them with unidl.random "
                      "(the step then runs eagerly), or pass them in as arguments", RuntimeWarning, stacklevel=3)


# True inside generic_layers(): layers skip their backend's native kernels (see Backend.native_layer).
_generic_layers: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_generic_layers", default=False)


@contextlib.contextmanager
def generic_layers() -> Iterator[None]:
    """Layers run their generic version (over ops) inside, never a backend's native kernel."""
    token = _generic_layers.set(True)
    try:
        yield
    finally:
        _generic_layers.reset(token)


def native_kernel(backend: "Backend", layer) -> Callable | None:
    """``backend.native_layer(layer)``, unless inside :func:`generic_layers`.

    Under a mixed-precision policy ``backend`` is the compute twin (``backend.autocast``): a kernel
    then reads the layer's weights cast to ``backend.dtype``, as the generic path's ops do."""
    if _generic_layers.get():
        return None
    return backend.native_layer(layer)


def is_tracing() -> bool:
    """Whether a backend is tracing a step right now (see :func:`tracing`)."""
    return _tracing.get()


def _normalize_axis(axis, ndim: int):
    """Return axis as a tuple of non-negative ints (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(int(a) % ndim if ndim else int(a) for a in axis)


def _window_counts(size, window, strides, pads) -> np.ndarray:
    """(H', W') array: how many cells of the unpadded (H, W) input each pool window covers."""
    counts = []
    for n, k, s, (before, after) in zip(size, window, strides, pads):
        start = np.arange((n + before + after - k) // s + 1) * s - before
        counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return np.outer(*counts).astype(np.float64)


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
    # The backend's own settings, from ``compile(backend_options={...})``: name -> (default, what it does).
    option_defaults: dict[str, tuple[Any, str]] = {}

    def __init__(self, dtype: str = "float32", device: str | None = None, **options: Any):
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            known = ", ".join(f"{k} ({doc}; default {d!r})" for k, (d, doc) in self.option_defaults.items())
            raise BackendError(f"backend {self.name!r} has no option {unknown}; its options: {known or 'none'}")
        self.options = {k: options.get(k, default) for k, (default, _) in self.option_defaults.items()}
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

    def gradient_tape(self, persistent: bool = False):
        """Optionally a tape recording the ops run while it is entered (``unidl.GradientTape``).

        Returns an object with ``__enter__`` / ``__exit__``, ``watch(tensor)`` and
        ``gradient(target, sources) -> list`` (one gradient per source: zeros where the target does
        not depend on it). Frameworks that record as they run (torch autograd, tf.GradientTape,
        the NumPy tape) implement it; others keep this default, and users take ``value_and_grad``.
        """
        raise BackendError(f"backend {self.name!r} cannot record ops for a GradientTape; differentiate a "
                           "function instead: unidl.value_and_grad(lambda: loss(...), model)")

    def grad_wrt_inputs(self, fn: Callable[..., Tensor], inputs: Sequence[Tensor]) -> tuple[Tensor, list]:
        """Differentiate scalar ``fn(*inputs)`` with respect to plain tensors ``inputs``.

        Returns ``(value, grads)``. Used for saliency maps and adversarial examples.
        """
        raise self._missing("grad_wrt_inputs")

    def no_grad(self) -> contextlib.AbstractContextManager:
        """Context in which ops record nothing for autodiff (inference, optimizer updates)."""
        return contextlib.nullcontext()

    def compile_step(self, step: Callable) -> Callable:
        """Optionally return a compiled version of ``step`` giving the same numbers; the default returns ``step``.

        unidl hands over each step function once and then calls the result many times,
        always with the same structure of arguments:

        * the train step of ``fit``: ``step(x, y, sample_weight, scalars)``;
        * inference steps: ``step(x)`` (predict) and ``step(x, y, sample_weight)`` (evaluate);
        * custom steps (``unidl.function``): ``step(scalars_list, *args)``, one ``scalars``
          dict per optimizer the step applies, then the user's own arguments.

        ``x`` and ``y`` are backend tensors, or lists/dicts of them, whose batch size may
        change (the last batch); ``sample_weight`` may be None. ``scalars`` maps names
        ("lr", "lr_t"...) to **Python floats** that change from call to call (a learning-rate
        schedule, Adam's bias corrections). Feed each one to the compiled program as a
        traced input. A program with the value baked in as a constant is wrong from the next
        call on, and one program (or one new framework constant) per value seen keeps
        growing: a leak.

        ``step`` reads and assigns variables (weights, optimizer slots, BatchNormalization's
        moving statistics), possibly of several models each compiled on its own instance of
        this backend (a GAN in one ``unidl.function``): the compiled step must read the
        current values of all of them and leave its new values in them. It returns a
        (nested) tuple of tensors.

        The first call of a ``unidl.function`` runs eagerly, in unidl, never through this
        method: that call creates the optimizers' slots and notes which optimizers the step
        applies. ``fit`` creates the slots before its first step. A backend that cannot
        create variables while tracing may still run its own first call eagerly (the
        ``ImmutableArrays`` mixin does).

        The kit's ``compiled`` family trains each example model with ``jit_compile="auto"``
        (this method) and with ``jit_compile=False`` and compares losses and weights within
        the TRAJECTORY tolerances; a backend keeping this default is noted "eager only".
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

    def native_layer(self, layer) -> Callable | None:
        """Optionally a native kernel for a whole layer call: ``kernel(inputs, **call_arguments)``, or None.

        A layer that can use one (SimpleRNN, LSTM, GRU, MultiHeadAttention) asks before running its
        generic version, written over ops; the backend returns a kernel when it has one for the
        layer's configuration (e.g. torch's fused LSTM when the activations are tanh/sigmoid and no
        mask is given), else None. The kernel reads the layer's unidl Variables, so gradients reach
        them as usual; it may also return None for one call it does not cover (attention with a
        padding mask), and the generic version then runs. Under a mixed-precision policy this is
        asked of the compute twin (``self.autocast``): read the weights cast to ``self.dtype``.
        Inside ``generic_layers()`` the question is not asked: the conformance kit compares every
        native kernel with the generic layer that way (forward, gradients, training).
        """
        return None

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
                twin = type(self)(dtype=dtype, device=self.device, **self.options)
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

    def device_peak_memory_mb(self) -> float | None:
        """The accelerator memory this backend's device has held at most so far (MiB), or None
        where there is no accelerator or the framework cannot tell (benchmarks report it)."""
        return None

    # ------------------------------------------------------------ helpers
    def _missing(self, op: str) -> BackendError:
        return BackendError(f"backend {self.name!r} does not implement {op!r}")

    def __getattr__(self, op: str):
        # Only reached for names the subclass did not define.
        if op in PRIMITIVES:
            raise self._missing(op)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {op!r}")

    # ---------------------------------------------------------- derived ops
    # The ops of DERIVED, written over the primitives with each contract's tie and kink
    # convention. Override one when the framework has a faster kernel that keeps those
    # conventions; the kit checks an override exactly as it checks these versions.

    def maximum(self, a, b):
        # b only where a is strictly smaller: a tie picks a, so a gets the whole gradient.
        return self.where(self.less(a, b), b, a)

    def minimum(self, a, b):
        return self.where(self.greater(a, b), b, a)

    def not_equal(self, a, b):
        return self.equal(self.equal(a, b), False)  # NaN != NaN holds, as in NumPy

    def less(self, a, b):
        return self.greater(b, a)

    def less_equal(self, a, b):
        return self.greater_equal(b, a)

    def negative(self, x):
        return self.multiply(x, -1)  # an int factor: integer tensors stay integer

    def abs(self, x):
        # sign carries no gradient, so the gradient is sign(x): 0 at 0, as the contract says.
        return self.multiply(x, self.sign(x))

    def log1p(self, x):
        # log(u) with u = 1 + x rounded loses the digits of a small x. Goldberg's remedy: the
        # factor x / (u - 1) (1 up to rounding) restores them, and where u == 1, log1p(x) = x.
        # The correction is added without gradient, so the gradient is 1 / u ~ 1 / (1 + x).
        u = self.add(x, 1.0)
        spread = self.subtract(u, 1.0)
        tiny = self.equal(spread, 0.0)
        log_u = self.log(u)
        factor = self.divide(x, self.where(tiny, 1.0, spread))  # never 0 / 0, even where unused
        correction = self.stop_gradient(self.multiply(log_u, self.subtract(factor, 1.0)))
        return self.where(tiny, x, self.add(log_u, correction))

    def sqrt(self, x):
        return self.power(x, 0.5)

    def sigmoid(self, x):
        # e = exp(-|x|) never overflows: sigmoid = 1 / (1 + e) for x >= 0 and e / (1 + e) below.
        # -|x| is minimum(-x, x): its tie rule gives the slope -1 at 0 that the x >= 0 branch
        # needs (abs has slope 0 there, which would make sigmoid'(0) 0 instead of 1/4).
        e = self.exp(self.minimum(self.negative(x), x))
        return self.divide(self.where(self.greater_equal(x, 0.0), 1.0, e), self.add(e, 1.0))

    def relu(self, x):
        # At the kink the constant branch is taken: gradient 0 at 0. NaN stays NaN.
        return self.where(self.less_equal(x, 0.0), 0.0, x)

    def clip(self, x, lo, hi):
        # Each of maximum and minimum gives ties to x: gradient 1 on [lo, hi], bounds
        # included; lo > hi gives hi, as numpy.clip.
        return self.minimum(self.maximum(x, lo), hi)

    def mean(self, x, axis=None, keepdims: bool = False):
        if not self.is_floating(x):
            x = self.cast(x, self.dtype)  # the mean of integers is a float, as in NumPy
        total = self.sum(x, axis=axis, keepdims=keepdims)
        shape = self.shape(x)
        sizes = [shape[a] for a in _normalize_axis(axis, len(shape))]
        if None not in sizes:
            return self.divide(total, float(np.prod(sizes)))
        # A size unknown until run time (the batch axis inside a compiled step): count the
        # cells. x ** 0 is 1 everywhere, NaN and inf included, in x's dtype.
        return self.divide(total, self.sum(self.power(self.stop_gradient(x), 0), axis=axis, keepdims=keepdims))

    def min(self, x, axis=None, keepdims: bool = False):
        # Negation is exact and keeps max's even split of the gradient between ties.
        return self.negative(self.max(self.negative(x), axis=axis, keepdims=keepdims))

    def conv2d_transpose(self, x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)):
        op = "conv2d_transpose"
        xs, ks = self.shape(x), self.shape(kernel)
        geometry.check_rank4(xs, "x (N, H, W, C)", op)
        geometry.check_rank4(ks, "kernel (kh, kw, O, C)", op)
        s, d = geometry.pair(strides, "strides", op), geometry.pair(dilation, "dilation", op)
        (_, h, w, c), (kh, kw, _, kc) = xs, ks
        if kc != c:
            raise ValueError(f"{op}: x has {c} channels but the kernel (kh, kw, O, C) is {tuple(ks)}")
        size, ((top, _), (left, _)) = geometry.transpose_geometry(padding, (h, w), (kh, kw), s, d)
        # Kernel tap (i, j) carries input cell (y, x) to (y*s + i*d, x*s + j*d) of the full output,
        # whose row top + r is output row r. As a forward convolution: spread the input out (s - 1
        # zeros after each cell), frame it with (k - 1)*d - top cells before and what makes `size`
        # outputs after (a negative amount crops), and correlate it at dilation d with the kernel
        # flipped in space, its channel axes swapped. Autodiff then gives both gradients.
        frame = [((k - 1) * dd - before, n + before - m * ss)
                 for k, dd, before, n, m, ss in zip((kh, kw), d, (top, left), size, (h, w), s)]
        framed, pads = self._crop_negative(self._spread_hw(x, s), frame)
        flipped = self.transpose(self._reversed(self._reversed(kernel, 0), 1), (0, 1, 3, 2))
        return self.conv2d(framed, flipped, padding=pads, dilation=d)

    def max_pool2d(self, x, pool_size, strides=None, padding="valid"):
        window, step, pads = geometry.pool_geometry(self.shape(x), pool_size, strides, padding, "max_pool2d")
        best = None
        # Positions in row-major order, and maximum keeps the earlier value on a tie: each
        # window's gradient goes to its first maximal cell. -inf padding never wins.
        for cells in self._window_cells(self._pad_hw(x, pads, -np.inf), window, step, pads):
            best = cells if best is None else self.maximum(best, cells)
        return best

    def avg_pool2d(self, x, pool_size, strides=None, padding="valid"):
        window, step, pads = geometry.pool_geometry(self.shape(x), pool_size, strides, padding, "avg_pool2d")
        total = None
        for cells in self._window_cells(self._pad_hw(x, pads, 0.0), window, step, pads):
            total = cells if total is None else self.add(total, cells)
        # Divide by the cells of each window that lie inside the input: padding is not counted.
        counts = _window_counts(self.shape(x)[1:3], window, step, pads)
        return self.divide(total, self.convert(counts[:, :, None]))

    # Helpers of the derived NN ops: images are NHWC, the batch size may be unknown (None).
    def _index(self, positions) -> Tensor:
        return self.convert(np.asarray(positions, dtype=np.int64))

    def _reversed(self, x, axis: int):
        return self.take(x, self._index(np.arange(self.shape(x)[axis] - 1, -1, -1)), axis=axis)

    def _pad_hw(self, x, pads, value: float):
        if not any(p for pair in pads for p in pair):
            return x
        return self.pad(x, ((0, 0), *pads, (0, 0)), value=value)

    def _spread_hw(self, x, strides):
        """x with s - 1 zero rows (columns) after each row (column): (N, H*sh, W*sw, C)."""
        (sh, sw), (n, h, w, c) = strides, self.shape(x)
        if (sh, sw) == (1, 1):
            return x
        cells = self.reshape(x, _reshape_target((n, h, 1, w, 1, c)))
        cells = self.pad(cells, ((0, 0), (0, 0), (0, sh - 1), (0, 0), (0, sw - 1), (0, 0)))
        return self.reshape(cells, _reshape_target((n, h * sh, w * sw, c)))

    def _crop_negative(self, x, frame):
        """Apply ((top, bottom), (left, right)) amounts: crop the negative ones now, and
        return the non-negative ones for conv2d's explicit padding."""
        pads = []
        for axis, (before, after) in zip((1, 2), frame):
            if before < 0 or after < 0:
                n = self.shape(x)[axis]
                x = self.take(x, self._index(np.arange(max(-before, 0), n - max(-after, 0))), axis=axis)
            pads.append((max(before, 0), max(after, 0)))
        return x, tuple(pads)

    def _window_cells(self, padded, window, strides, pads) -> Iterator[Tensor]:
        """For each window position (i, j), row-major: the (N, H', W', C) cells of ``padded`` it covers."""
        _, hp, wp, _ = self.shape(padded)
        (kh, kw), (sh, sw) = window, strides
        ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
        for i in range(kh):
            rows = self.take(padded, self._index(np.arange(ho) * sh + i), axis=1)
            for j in range(kw):
                yield self.take(rows, self._index(np.arange(wo) * sw + j), axis=2)

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


_STUB_MARK = "__unidl_not_implemented__"


def not_implemented(method: Callable) -> Callable:
    """Mark a backend method as a placeholder still to be written (``unidl new-backend`` writes one per primitive).

    Calling it raises ``BackendError`` naming the backend and the op, as a missing op does,
    and ``missing_ops`` lists it, so the kit's contract check names every op left to write.
    """
    op = method.__name__

    @functools.wraps(method)
    def stub(self, *args, **kwargs):
        raise BackendError(f"backend {self.name!r} does not implement {op!r} yet: its method is a "
                           "@not_implemented stub (the contract is its docstring)")
    setattr(stub, _STUB_MARK, True)
    return stub


def missing_ops(backend: Backend) -> list[str]:
    """The primitive ops ``backend`` lacks or leaves as ``@not_implemented`` stubs (the kit's contract check).

    Only ``PRIMITIVES`` count: every op of ``DERIVED`` has a default in ``Backend``.
    """
    missing = []
    for op in PRIMITIVES:
        try:
            implementation = getattr(backend, op)
        except (BackendError, AttributeError):
            missing.append(op)
            continue
        if getattr(implementation, _STUB_MARK, False):
            missing.append(op)
    return missing


def iter_ops() -> Iterator[str]:
    """Every op name reachable through ``unidl.ops``: primitives, derived ops, then composites."""
    yield from PRIMITIVES
    yield from DERIVED
    yield from COMPOSITES

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
import math
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import config, geometry

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

DERIVED.update({
    # elementwise, unary (rounding: zero gradient, integer tensors come back unchanged)
    "tan": "tan(x) = sin(x) / cos(x)",
    "ceil": "ceil(x): the smallest integer >= x, in x's dtype; zero gradient",
    "round": "round(x): the nearest integer, halves to even (as numpy.round), in x's dtype; zero gradient",
    # elementwise, broadcasting
    "floor_divide": "floor_divide(a, b) = floor(a / b); integers stay integers; zero gradient",
    "mod": "mod(a, b) = a - floor_divide(a, b) * b: the remainder with the sign of b (numpy.mod)",
    "logical_and": "logical_and(a, b) -> bool; nonzero operands count as true",
    "logical_or": "logical_or(a, b) -> bool; nonzero operands count as true",
    "logical_not": "logical_not(x) -> bool: true where x is zero (or false)",
    # reductions and scans
    "prod": ("prod(x, axis=None, keepdims=False): product; its gradient is the product of the other "
             "elements, exact where some are zero"),
    "cumsum": "cumsum(x, axis): running sum along one axis (an int)",
    "argmin": "argmin(x, axis=-1) -> int64; the first index wins a tie; no gradient",
    "all": "all(x, axis=None, keepdims=False) -> bool: every element nonzero (true for an empty axis)",
    "any": "any(x, axis=None, keepdims=False) -> bool: some element nonzero (false for an empty axis)",
    # sorting (over argsort)
    "sort": "sort(x, axis=-1): ascending; the gradient goes back through the sorting permutation",
    "top_k": ("top_k(x, k, sorted=True) -> (values, int64 indices): the k largest along the last axis, largest "
              "first, a tie going to the lower index (sorted=False may return them in any order)"),
    # shape and linear algebra
    "stack": "stack(xs, axis=0): join tensors of one shape along a new axis",
    "einsum": ("einsum(subscripts, *operands): Einstein summation as numpy.einsum: explicit ('ij,jk->ik') or "
               "implicit output, '...' allowed; an index repeated within one operand (a trace) is not"),
})

# name -> one-line contract: ops with no default written over the primitives (none can be
# written with the right gradient from them). A backend should implement them; one it lacks
# raises BackendError naming the backend and the op when called, never a silent detour
# through host NumPy that would break gradients or tracing. The derived ops over them
# (tan, ceil, round, floor_divide, mod, sort, top_k) then raise the same error.
OPTIONAL: dict[str, str] = {
    "sin": "sin(x)",
    "cos": "cos(x)",
    "floor": "floor(x): the largest integer <= x, in x's dtype; zero gradient",
    "argsort": ("argsort(x, axis=-1) -> int64: the indices that sort x ascending along axis; stable "
                "(equal elements keep their order); no gradient"),
}

# Ops the dispatching module ``unidl.ops`` exposes beyond the tables above: helpers written
# once in ``Backend`` over the ops above (documented on each method), which a backend may
# override with a native kernel (the kit checks an override against the same reference).
COMPOSITES: tuple[str, ...] = (
    "square", "expand_dims", "squeeze", "softmax", "log_softmax", "logsumexp",
    "softplus", "one_hot", "zeros", "ones", "size", "unstack",
    # conversion and introspection
    "dtype_of",
    # elementwise
    "rsqrt", "logical_xor", "isnan", "isinf", "isfinite",
    # activations (keras.ops names and defaults)
    "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "softsign", "hard_sigmoid", "log_sigmoid",
    # reductions and statistics
    "var", "std", "count_nonzero", "norm", "moments",
    # shape and indexing
    "tile", "repeat", "flip", "roll", "broadcast_to", "split", "swapaxes", "moveaxis", "tril", "triu", "slice",
    # linear algebra
    "tensordot", "dot", "outer",
    # creation
    "zeros_like", "ones_like", "full", "full_like", "arange", "linspace", "eye",
    # losses and normalization on tensors (keras.ops semantics: no reduction over the batch)
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "normalize",
    "dot_product_attention", "log2", "log10",
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


def _dtype_name(dtype) -> str:
    """A framework's dtype object as unidl's string: "float32", "int64", "bool"..."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = str(dtype)
    return name.rsplit(".", 1)[-1]  # "torch.float32" -> "float32"


def _dtype_kind(name: str) -> str:
    """NumPy's kind letter of a dtype name: "f" (float, bfloat16 too), "i", "u", "b" or "c"."""
    if name == "bool":
        return "b"
    if name.startswith("uint"):
        return "u"
    if name.startswith("int"):
        return "i"
    if name.startswith("complex"):
        return "c"
    return "f" if "float" in name else "?"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _epsilon() -> float:
    return config.epsilon()


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_EINSUM_LABELS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse_einsum(subscripts: str, ndims: list[int]) -> tuple[list[str], str]:
    """Each operand's labels (``...`` spelled out as letters of its own) and the output's."""
    spec = subscripts.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"einsum: {subscripts!r} names {len(terms)} operands, got {len(ndims)}")
    if not re.fullmatch(r"[A-Za-z.,]*", lhs) or (arrow and not re.fullmatch(r"[A-Za-z.]*", rhs)):
        raise ValueError(f"einsum: subscripts {subscripts!r} may hold letters, ',', '->' and '...' only")
    spare = [c for c in _EINSUM_LABELS if c not in spec]
    widest = 0
    for term, ndim in zip(terms, ndims):
        if term.count("...") > 1 or term.replace("...", "").count("."):
            raise ValueError(f"einsum: malformed term {term!r}")
        extra = ndim - len(term.replace("...", ""))
        if extra < 0 or (extra and "..." not in term):
            raise ValueError(f"einsum: term {term!r} does not match an operand of {ndim} dimensions")
        widest = max(widest, extra)
    # Broadcast dimensions align from the right, so the last ones share letters across operands.
    ellipsis = "".join(spare[:widest])
    inputs = [term.replace("...", ellipsis[widest - (ndim - len(term.replace("...", ""))):])
              for term, ndim in zip(terms, ndims)]
    for labels in inputs:
        if len(set(labels)) != len(labels):
            raise ValueError(f"einsum: an index repeated within one operand ({subscripts!r}: a trace or a "
                             "diagonal) is not supported")
    if arrow:
        output = rhs.replace("...", ellipsis)
    else:  # implicit: broadcast dimensions, then the labels seen once, in alphabetical order
        counts = {}
        for labels in terms:
            for c in labels.replace("...", ""):
                counts[c] = counts.get(c, 0) + 1
        output = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1))
    if len(set(output)) != len(output):
        raise ValueError(f"einsum: the output of {subscripts!r} repeats an index")
    return inputs, output


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

    def assign_add(self, variable: Tensor, value: Tensor | float) -> None:
        """``variable += value`` in place (metric totals, counters). The default assigns the sum;
        a backend may do it in one kernel (torch's ``add_``)."""
        self.assign(variable, self.add(variable, value))

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

        * the steps of ``fit``, ``evaluate`` and ``predict``: ``step(scalars_list, data)``, where
          ``data`` is the batch as the model's ``train_step``/``test_step``/``predict_step``
          receives it (``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``);
        * custom steps (``unidl.function``): ``step(scalars_list, *args)``, then the user's own
          arguments.

        ``scalars_list`` holds one ``scalars`` dict per optimizer the step applies (none for
        inference). ``x`` and ``y`` are backend tensors, or lists/dicts of them, whose batch size
        may change (the last batch); ``sample_weight`` may be None. A step returns tensors in
        tuples, lists or dicts (a train step returns its logs, ``{"loss": ..., "accuracy": ...}``).
        ``scalars`` maps names ("lr", "lr_t"...) to **Python floats** that change from call to call (a learning-rate
        schedule, Adam's bias corrections). Feed each one to the compiled program as a
        traced input. A program with the value baked in as a constant is wrong from the next
        call on, and one program (or one new framework constant) per value seen keeps
        growing: a leak.

        ``step`` reads and assigns variables (weights, optimizer slots, BatchNormalization's
        moving statistics), possibly of several models each compiled on its own instance of
        this backend (a GAN in one ``unidl.function``): the compiled step must read the
        current values of all of them and leave its new values in them. It returns
        (nested) tensors, as above.

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

        A layer that can use one (SimpleRNN, LSTM, GRU, MultiHeadAttention, BatchNormalization,
        LayerNormalization) asks before running its
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
        if op in OPTIONAL:
            raise BackendError(f"backend {self.name!r} does not implement {op!r}, an optional op "
                               f"({OPTIONAL[op]}) that unidl cannot build from its primitives; its derived ops "
                               "(see unidl.backend.OPTIONAL) need it too")
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

    # The ops DERIVED gained for Keras's op set. Rounding ops take integer tensors through
    # unchanged; floats are rounded with floor (an optional op) and carry no gradient.

    def tan(self, x):
        return self.divide(self.sin(x), self.cos(x))

    def ceil(self, x):
        if self._integral(x):
            return x
        return self.negative(self.floor(self.negative(x)))

    def round(self, x):  # noqa: A003 - the op's name in the contract
        if self._integral(x):
            return x
        # floor(x) + 1 where the fraction is over 1/2, or exactly 1/2 with floor(x) odd (halves to even).
        low = self.floor(x)
        fraction = self.subtract(x, low)
        odd = self.equal(self.subtract(low, self.multiply(self.floor(self.multiply(low, 0.5)), 2.0)), 1.0)
        up = self.logical_or(self.greater(fraction, 0.5), self.logical_and(self.equal(fraction, 0.5), odd))
        return self.stop_gradient(self.where(up, self.add(low, 1.0), low))

    def floor_divide(self, a, b):
        quotient = self.stop_gradient(self.floor(self.divide(a, b)))
        if self._integral(a) and self._integral(b):
            # Through true division: exact while the quotient fits the float's mantissa (2**24
            # in float32); the built-in backends have native integer kernels.
            return self.cast(quotient, "int64")
        return quotient

    def mod(self, a, b):
        return self.subtract(a, self.multiply(self.floor_divide(a, b), b))

    def _as_bool(self, x):
        if type(x) in (bool, int, float):
            return self.convert(np.asarray(bool(x)))
        if self.dtype_of(x) == "bool":
            return x
        return self.not_equal(x, 0)

    def logical_and(self, a, b):
        return self.where(self._as_bool(a), self._as_bool(b), self.convert(np.asarray(False)))

    def logical_or(self, a, b):
        return self.where(self._as_bool(a), self.convert(np.asarray(True)), self._as_bool(b))

    def logical_not(self, x):
        return self.equal(self._as_bool(x), False)

    def prod(self, x, axis=None, keepdims: bool = False):
        shape = tuple(self.shape(x))
        axes = _normalize_axis(axis, len(shape))
        if not axes:
            return x
        kept = [a for a in range(len(shape)) if a not in axes]
        sizes = [shape[a] for a in axes]
        if None in sizes:
            raise BackendError(f"backend {self.name!r}: prod over an axis of unknown size (the batch axis inside "
                               "a compiled step) needs a native prod")
        n = int(np.prod(sizes, dtype=np.int64))
        flat = self.reshape(self.transpose(x, (*kept, *axes)), _reshape_target([shape[a] for a in kept] + [n]))
        if n == 0:
            flat, n = self.pad(flat, [(0, 0)] * len(kept) + [(0, 1)], value=1), 1
        # Multiply the two halves until one column is left: log2(n) products, each exact, so the
        # gradient of every element is the product of the others (zeros included).
        while n > 1:
            if n % 2:
                flat, n = self.pad(flat, [(0, 0)] * len(kept) + [(0, 1)], value=1), n + 1
            half = n // 2
            flat = self.multiply(self.take(flat, self._index(np.arange(half)), axis=-1),
                                 self.take(flat, self._index(np.arange(half, n)), axis=-1))
            n = half
        out = self.reshape(flat, _reshape_target([shape[a] for a in kept]))
        if keepdims:
            out = self.reshape(out, _reshape_target([1 if i in axes else d for i, d in enumerate(shape)]))
        return out

    def cumsum(self, x, axis: int = -1):
        shape = self.shape(x)
        axis = int(axis) % len(shape)
        n, step = shape[axis], 1
        keep_first = self._index(np.arange(n))
        # Hillis-Steele scan: add a copy shifted by 1, 2, 4... cells: log2(n) additions.
        while step < n:
            widths = [(0, 0)] * len(shape)
            widths[axis] = (step, 0)
            shifted = self.take(self.pad(x, widths, value=0), keep_first, axis=axis)
            x = self.add(x, shifted)
            step *= 2
        return x

    def argmin(self, x, axis: int | None = -1):
        if self.dtype_of(x) == "bool":
            x = self.cast(x, "int64")
        return self.argmax(self.negative(x), axis=axis)  # the first maximum of -x is the first minimum

    def all(self, x, axis=None, keepdims: bool = False):  # noqa: A003
        failing = self.cast(self.logical_not(x), "int64")
        return self.equal(self.sum(failing, axis=axis, keepdims=keepdims), 0)

    def any(self, x, axis=None, keepdims: bool = False):  # noqa: A003
        passing = self.cast(self._as_bool(x), "int64")
        return self.greater(self.sum(passing, axis=axis, keepdims=keepdims), 0)

    def sort(self, x, axis: int = -1):
        return self.take_along_axis(x, self.argsort(x, axis=axis), axis=axis)

    def top_k(self, x, k: int, sorted: bool = True):  # noqa: A002 - Keras's argument name
        k = int(k)
        n = self.shape(x)[-1]
        if not 0 <= k <= n:
            raise ValueError(f"top_k: k={k} is outside [0, {n}] (the size of the last axis)")
        if self.dtype_of(x) == "bool":
            x = self.cast(x, "int64")
        order = self.argsort(self.negative(x), axis=-1)
        indices = self.take(order, self._index(np.arange(k)), axis=-1)  # stable: lower index first on ties
        return self.take_along_axis(x, indices, axis=-1), indices

    def stack(self, xs, axis: int = 0):
        xs = list(xs)
        if not xs:
            raise ValueError("stack: needs at least one tensor")
        return self.concatenate([self.expand_dims(x, axis) for x in xs], axis=axis)

    def einsum(self, subscripts: str, *operands):
        inputs, output = _parse_einsum(subscripts, [len(self.shape(x)) for x in operands])
        x, labels = operands[0], inputs[0]
        for i in range(1, len(operands)):
            later = set("".join(inputs[i + 1:]) + output)
            x, labels = self._einsum_pair(x, labels, operands[i], inputs[i], later)
        return self._einsum_reduce(x, labels, output)

    def _einsum_reduce(self, x, labels: str, keep: str):
        """Sum the labels of x not in ``keep`` and order the rest as in ``keep``."""
        summed = tuple(i for i, c in enumerate(labels) if c not in keep)
        if summed:
            x = self.sum(x, axis=summed)
            labels = "".join(c for c in labels if c in keep)
        missing = set(keep) - set(labels)
        if missing:
            raise ValueError(f"einsum: output labels {sorted(missing)} appear in no operand")
        if labels != keep:
            x = self.transpose(x, tuple(labels.index(c) for c in keep))
        return x

    def _einsum_pair(self, x, xs: str, y, ys: str, later: set):
        """x (labels xs) times y (labels ys), keeping the labels in ``later``: one matmul."""
        x = self._einsum_reduce(x, xs, "".join(c for c in xs if c in ys or c in later))
        xs = "".join(c for c in xs if c in ys or c in later)
        y = self._einsum_reduce(y, ys, "".join(c for c in ys if c in xs or c in later))
        ys = "".join(c for c in ys if c in xs or c in later)
        batch = [c for c in xs if c in ys and c in later]
        summed = [c for c in xs if c in ys and c not in later]
        left = [c for c in xs if c not in ys]
        right = [c for c in ys if c not in xs]
        xshape, yshape = dict(zip(xs, self.shape(x))), dict(zip(ys, self.shape(y)))

        def size(shape, labels):
            sizes = [shape[c] for c in labels]
            return -1 if None in sizes else int(np.prod(sizes, dtype=np.int64))

        # x -> (batch..., L, S), y -> (batch..., S, R): batch axes stay separate, so they broadcast.
        a = self.transpose(x, tuple(xs.index(c) for c in batch + left + summed))
        a = self.reshape(a, _reshape_target([xshape[c] for c in batch] + [size(xshape, left), size(xshape, summed)]))
        b = self.transpose(y, tuple(ys.index(c) for c in batch + summed + right))
        b = self.reshape(b, _reshape_target([yshape[c] for c in batch] + [size(yshape, summed), size(yshape, right)]))
        out = self.matmul(a, b)
        out_batch = [d for d in self.shape(out)[:len(batch)]]
        out = self.reshape(out, _reshape_target(out_batch + [xshape[c] for c in left] + [yshape[c] for c in right]))
        return out, "".join(batch + left + right)

    def _integral(self, x) -> bool:
        """Whether x is an integer or bool tensor (or Python int)."""
        if type(x) is int or type(x) is bool:
            return True
        if type(x) is float:
            return False
        return _dtype_kind(self.dtype_of(x)) in "iub"

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

    # ------------------------------------------- composites: keras.ops's numpy-like set
    # Signatures and defaults are keras.ops's (unidl.ops adapts the few it words differently).

    def dtype_of(self, x) -> str:
        """The dtype of tensor ``x`` as a string ("float32", "int64", "bool"...), as keras.ops.dtype."""
        return _dtype_name(x.dtype)

    def rsqrt(self, x):
        """1 / sqrt(x)."""
        return self.divide(1.0, self.sqrt(x))

    def logical_xor(self, a, b):
        """a xor b -> bool; nonzero operands count as true."""
        return self.not_equal(self._as_bool(a), self._as_bool(b))

    def isnan(self, x):
        """x is NaN -> bool."""
        return self.not_equal(x, x)

    def isinf(self, x):
        """x is +inf or -inf -> bool."""
        return self.equal(self.abs(x), np.inf)

    def isfinite(self, x):
        """x is neither NaN nor infinite -> bool."""
        return self.less(self.abs(x), np.inf)  # NaN < inf is false

    # activations, with keras.ops's defaults and the gradients TensorFlow gives at the kinks
    def relu6(self, x):
        """min(max(x, 0), 6); gradient 1 on the open interval (0, 6), 0 at both kinks."""
        return self.where(self.less_equal(x, 0.0), 0.0, self.where(self.greater_equal(x, 6.0), 6.0, x))

    def leaky_relu(self, x, negative_slope: float = 0.2):
        """x for x > 0, else negative_slope * x (gradient negative_slope at 0)."""
        return self.where(self.greater(x, 0.0), x, self.multiply(x, float(negative_slope)))

    def elu(self, x, alpha: float = 1.0):
        """x for x > 0, else alpha * (exp(x) - 1) (gradient alpha at 0)."""
        # exp of min(x, 0): the branch not taken never overflows, so its zero gradient stays finite.
        negative = self.multiply(self.subtract(self.exp(self.minimum(x, 0.0)), 1.0), float(alpha))
        return self.where(self.greater(x, 0.0), x, negative)

    def selu(self, x):
        """scale * elu(x, alpha) with Keras's constants (alpha 1.67326..., scale 1.05070...)."""
        return self.multiply(self.elu(x, _SELU_ALPHA), _SELU_SCALE)

    def gelu(self, x, approximate: bool = True):
        """x * Phi(x); approximate=True (keras.ops's default) is the tanh form
        0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), False the exact erf form."""
        if approximate:
            inner = self.multiply(self.add(x, self.multiply(self.multiply(self.square(x), x), 0.044715)),
                                  math.sqrt(2.0 / math.pi))
            return self.multiply(self.multiply(x, 0.5), self.add(self.tanh(inner), 1.0))
        return self.multiply(self.multiply(x, 0.5), self.add(self.erf(self.multiply(x, 1.0 / math.sqrt(2.0))), 1.0))

    def silu(self, x):
        """x * sigmoid(x) (also called swish)."""
        return self.multiply(x, self.sigmoid(x))

    def softsign(self, x):
        """x / (1 + |x|)."""
        return self.divide(x, self.add(self.abs(x), 1.0))

    def hard_sigmoid(self, x):
        """relu6(x + 3) / 6, as keras.ops.hard_sigmoid."""
        return self.divide(self.relu6(self.add(x, 3.0)), 6.0)

    def log_sigmoid(self, x):
        """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
        return self.negative(self.softplus(self.negative(x)))

    # reductions and statistics
    def _floating(self, x):
        return x if self.is_floating(x) else self.cast(x, self.dtype)

    def var(self, x, axis=None, keepdims: bool = False):
        """Population variance (divides by n), as keras.ops.var; integers give floats."""
        x = self._floating(x)
        centered = self.subtract(x, self.mean(x, axis=axis, keepdims=True))
        return self.mean(self.square(centered), axis=axis, keepdims=keepdims)

    def std(self, x, axis=None, keepdims: bool = False):
        """sqrt(var(x)), the population standard deviation."""
        return self.sqrt(self.var(x, axis=axis, keepdims=keepdims))

    def count_nonzero(self, x, axis=None):
        """How many elements are nonzero -> int64."""
        return self.sum(self.cast(self._as_bool(x), "int64"), axis=axis)

    def norm(self, x, ord=None, axis=None, keepdims: bool = False):  # noqa: A002 - numpy's name
        """Vector or matrix norm, as numpy.linalg.norm / keras.ops.norm.

        ``axis`` None flattens (the 2-norm) when ``ord`` is None, else takes vectors (1-D x)
        or matrices (2-D x); an int gives vector norms (ord None/2, 1, inf, -inf, 0, any p),
        a pair matrix norms (ord None/"fro", 1, -1, inf, -inf; 2, -2 and "nuc" need an SVD
        and are refused).
        """
        x = self._floating(x)
        ndim = len(self.shape(x))
        if axis is None:
            axes = tuple(range(ndim))
            if ord is not None and ndim not in (1, 2):
                raise ValueError(f"norm: ord={ord!r} with axis=None needs a 1-D or 2-D x, got {ndim} dimensions")
        else:
            axes = _normalize_axis(axis, ndim)
        if ord is None or (ord == "fro" and len(axes) == 2) or (ord == 2 and len(axes) == 1):
            out = self.sqrt(self.sum(self.square(x), axis=axes, keepdims=True))
        elif len(axes) == 1:
            magnitude = self.abs(x)
            if ord == np.inf:
                out = self.max(magnitude, axis=axes, keepdims=True)
            elif ord == -np.inf:
                out = self.min(magnitude, axis=axes, keepdims=True)
            elif ord == 0:
                out = self.cast(self.sum(self.cast(self.not_equal(x, 0.0), "int64"), axis=axes, keepdims=True),
                                self.dtype_of(x))
            elif ord == 1:
                out = self.sum(magnitude, axis=axes, keepdims=True)
            elif isinstance(ord, (int, float)):
                out = self.power(self.sum(self.power(magnitude, float(ord)), axis=axes, keepdims=True), 1.0 / ord)
            else:
                raise ValueError(f"norm: invalid ord {ord!r} for a vector norm")
        elif len(axes) == 2:
            rows, cols = axes
            if ord in (1, -1):   # max (min) over columns of the column sums
                sums, reduce_axis = self.sum(self.abs(x), axis=rows, keepdims=True), cols
            elif ord in (np.inf, -np.inf):  # over rows of the row sums
                sums, reduce_axis = self.sum(self.abs(x), axis=cols, keepdims=True), rows
            else:
                raise ValueError(f"norm: ord={ord!r} is not supported for matrices (use None, 'fro', 1, -1, inf "
                                 "or -inf; 2, -2 and 'nuc' need a singular value decomposition)")
            extremum = self.max if ord in (1, np.inf) else self.min
            out = extremum(sums, axis=reduce_axis, keepdims=True)
        else:
            raise ValueError(f"norm: axis must be None, an int or a pair of ints, got {axis!r}")
        return out if keepdims else self.squeeze(out, axes)

    def moments(self, x, axes, keepdims: bool = False, synchronized: bool = False):
        """(mean, variance) over ``axes``, the variance the population one (as keras.ops.moments).

        ``synchronized`` (across replicas) has no meaning for one backend and is accepted as Keras does.
        """
        x = self._floating(x)
        mean = self.mean(x, axis=axes, keepdims=True)
        variance = self.mean(self.square(self.subtract(x, mean)), axis=axes, keepdims=True)
        if keepdims:
            return mean, variance
        axes = _normalize_axis(axes, len(self.shape(x)))
        return self.squeeze(mean, axes), self.squeeze(variance, axes)

    # shape and indexing: gathers with index arrays made on the host (shapes are known),
    # so every dtype works and the gradient of each is take's
    def tile(self, x, repeats):
        """Repeat the whole of x ``repeats[i]`` times along axis i (as numpy.tile)."""
        repeats = [int(r) for r in (repeats if isinstance(repeats, (tuple, list)) else (repeats,))]
        shape = list(self.shape(x))
        if len(repeats) > len(shape):  # new leading axes of size 1, as numpy
            shape = [1] * (len(repeats) - len(shape)) + shape
            x = self.reshape(x, _reshape_target(shape))
        repeats = [1] * (len(shape) - len(repeats)) + repeats
        for axis, (n, r) in enumerate(zip(shape, repeats)):
            if r != 1:
                x = self.take(x, self._index(np.tile(np.arange(self._known(n, "tile")), r)), axis=axis)
        return x

    def repeat(self, x, repeats, axis=None):
        """Repeat each element (axis=None: of the flattened x) ``repeats`` times, or repeats[i] times the i-th."""
        if axis is None:
            x, axis = self.reshape(x, (-1,)), 0
        n = self._known(self.shape(x)[axis], "repeat")
        return self.take(x, self._index(np.repeat(np.arange(n), repeats)), axis=axis)

    def flip(self, x, axis=None):
        """Reverse the order of the elements along ``axis`` (None: every axis)."""
        for a in _normalize_axis(axis, len(self.shape(x))):
            x = self._reversed(x, a)
        return x

    def roll(self, x, shift, axis=None):
        """Shift elements along ``axis`` cyclically (None: over the flattened x, then the shape back)."""
        if axis is None:
            shape = self.shape(x)
            return self.reshape(self.roll(self.reshape(x, (-1,)), shift, axis=0), _reshape_target(shape))
        shifts = shift if isinstance(shift, (tuple, list)) else (shift,) * (len(axis) if isinstance(axis, (tuple, list))
                                                                            else 1)
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        if len(shifts) != len(axes):
            raise ValueError(f"roll: shift {shift!r} and axis {axis!r} must have the same length")
        for s, a in zip(shifts, axes):
            n = self._known(self.shape(x)[a], "roll")
            x = self.take(x, self._index((np.arange(n) - int(s)) % n if n else np.arange(0)), axis=a)
        return x

    def broadcast_to(self, x, shape):
        """x broadcast to ``shape`` (NumPy's rules)."""
        shape = tuple(int(d) for d in shape)
        have = list(self.shape(x))
        if len(have) < len(shape):
            have = [1] * (len(shape) - len(have)) + have
            x = self.reshape(x, _reshape_target(have))
        for axis, (n, want) in enumerate(zip(have, shape)):
            if n == 1 and want != 1:
                x = self.take(x, self._index(np.zeros(want, dtype=np.int64)), axis=axis)
            elif n != want:
                raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(self.shape(x))} to {shape}")
        return x

    def split(self, x, indices_or_sections, axis: int = 0) -> list:
        """Pieces of x along ``axis``: an int n gives n equal pieces, a list the cut positions (numpy.split)."""
        n = self._known(self.shape(x)[axis], "split")
        if isinstance(indices_or_sections, (int, np.integer)):
            sections = int(indices_or_sections)
            if sections <= 0 or n % sections:
                raise ValueError(f"split: an axis of size {n} does not split into {sections} equal pieces")
            cuts = list(range(0, n, n // sections))[1:] if sections > 1 else []
        else:
            cuts = [int(c) for c in indices_or_sections]
        bounds = [0, *[min(max(c, 0), n) for c in cuts], n]
        return [self.take(x, self._index(np.arange(a, max(a, b))), axis=axis) for a, b in zip(bounds, bounds[1:])]

    def swapaxes(self, x, axis1: int, axis2: int):
        """x with two axes exchanged."""
        perm = list(range(len(self.shape(x))))
        a, b = int(axis1) % len(perm), int(axis2) % len(perm)
        perm[a], perm[b] = perm[b], perm[a]
        return self.transpose(x, tuple(perm))

    def moveaxis(self, x, source, destination):
        """x with the axes ``source`` moved to the positions ``destination`` (numpy.moveaxis)."""
        ndim = len(self.shape(x))
        src = [int(a) % ndim for a in (source if isinstance(source, (tuple, list)) else (source,))]
        dst = [int(a) % ndim for a in (destination if isinstance(destination, (tuple, list)) else (destination,))]
        if len(src) != len(dst):
            raise ValueError(f"moveaxis: source {source!r} and destination {destination!r} differ in length")
        order = [a for a in range(ndim) if a not in src]
        for d, s in sorted(zip(dst, src)):
            order.insert(d, s)
        return self.transpose(x, tuple(order))

    def _band(self, x, k: int, lower: bool):
        rows, cols = self.shape(x)[-2:]
        mask = np.tri(self._known(rows, "tril"), self._known(cols, "tril"), int(k) if lower else int(k) - 1,
                      dtype=bool)
        return self.where(self.convert(mask if lower else ~mask), x, 0)

    def tril(self, x, k: int = 0):
        """x with the elements above the k-th diagonal (of the last two axes) set to 0."""
        return self._band(x, k, lower=True)

    def triu(self, x, k: int = 0):
        """x with the elements below the k-th diagonal (of the last two axes) set to 0."""
        return self._band(x, k, lower=False)

    def slice(self, x, start_indices, shape):  # noqa: A003 - keras.ops's name
        """The block of x starting at ``start_indices`` with extent ``shape`` (-1: to the end)."""
        for axis, (start, size) in enumerate(zip(start_indices, shape)):
            n = self.shape(x)[axis]
            start = int(start)
            stop = self._known(n, "slice") if int(size) == -1 else start + int(size)
            if start != 0 or stop != n:
                x = self.take(x, self._index(np.arange(start, stop)), axis=axis)
        return x

    # linear algebra over matmul
    def tensordot(self, a, b, axes=2):
        """Sum products over ``axes`` of a and b (an int n: a's last n with b's first n; or two lists)."""
        na, nb = len(self.shape(a)), len(self.shape(b))
        if isinstance(axes, (int, np.integer)):
            axes_a, axes_b = list(range(na - int(axes), na)), list(range(int(axes)))
        else:
            axes_a, axes_b = ([int(i) for i in (s if isinstance(s, (tuple, list)) else (s,))] for s in axes)
        axes_a, axes_b = [i % na for i in axes_a], [i % nb for i in axes_b]
        free_a = [i for i in range(na) if i not in axes_a]
        free_b = [i for i in range(nb) if i not in axes_b]
        sa, sb = self.shape(a), self.shape(b)
        summed = int(np.prod([sa[i] for i in axes_a], dtype=np.int64))
        left = self.reshape(self.transpose(a, (*free_a, *axes_a)), (-1, summed))
        right = self.reshape(self.transpose(b, (*axes_b, *free_b)), (summed, -1))
        return self.reshape(self.matmul(left, right), _reshape_target([sa[i] for i in free_a] + [sb[i] for i in free_b]))

    def dot(self, a, b):
        """numpy.dot: products summed over the last axis of a and the second-to-last of b (its only, if 1-D)."""
        na, nb = len(self.shape(a)), len(self.shape(b))
        if na == 0 or nb == 0:
            return self.multiply(a, b)
        if na == 2 and nb == 2:
            return self.matmul(a, b)
        return self.tensordot(a, b, axes=([na - 1], [max(nb - 2, 0)]))

    def outer(self, a, b):
        """The outer product of the flattened a and b: (a.size, b.size)."""
        return self.multiply(self.reshape(a, (-1, 1)), self.reshape(b, (1, -1)))

    # creation: shapes and Python numbers in, tensors out (no gradient)
    def zeros_like(self, x, dtype: str | None = None):
        """Zeros of x's shape in ``dtype`` (default: x's dtype)."""
        return self._filled_like(x, 0, dtype)

    def ones_like(self, x, dtype: str | None = None):
        """Ones of x's shape in ``dtype`` (default: x's dtype)."""
        return self._filled_like(x, 1, dtype)

    def full_like(self, x, fill_value, dtype: str | None = None):
        """``fill_value`` everywhere in x's shape, in ``dtype`` (default: x's dtype)."""
        return self._filled_like(x, fill_value, dtype)

    def _filled_like(self, x, value, dtype):
        dtype = dtype or self.dtype_of(x)
        shape = self.shape(x)
        if None not in shape:
            return self.full(shape, value, dtype=dtype)
        # A size known only at run time (inside a compiled step): x ** 0 is 1 everywhere, NaN included.
        ones = self.power(self.stop_gradient(self._floating(x)), 0)
        filled = ones if _is_number(value) and value == 1 else self.multiply(ones, value)
        return self.cast(filled, dtype)

    def full(self, shape, fill_value, dtype: str | None = None):
        """``fill_value`` (a number or a tensor broadcast to ``shape``) in ``dtype`` (default: the compute dtype)."""
        dtype = dtype or self.dtype
        if _is_number(fill_value) or isinstance(fill_value, np.ndarray):
            return self.convert(np.full(tuple(shape), fill_value), dtype=dtype)
        return self.broadcast_to(self.cast(fill_value, dtype), shape)

    def arange(self, start, stop=None, step=None, dtype: str | None = None):
        """numpy.arange(start, stop, step) (one bound: from 0 to it): int64 when every bound is an
        int, else the compute dtype. The bounds are numbers, or tensors read on the host."""
        if stop is None:
            start, stop = 0, start
        bounds = [self._host_number(v, "arange") for v in (start, stop, 1 if step is None else step)]
        if dtype is None:
            dtype = "int64" if all(isinstance(v, int) for v in bounds) else self.dtype
        return self.convert(np.arange(*bounds), dtype=dtype)

    def linspace(self, start, stop, num: int = 50, endpoint: bool = True, retstep: bool = False,
                 dtype: str | None = None, axis: int = 0):
        """``num`` evenly spaced values from start to stop (numpy.linspace); start/stop may be tensors."""
        dtype = dtype or self.dtype
        if _is_number(start) and _is_number(stop):
            values, step = np.linspace(start, stop, int(num), endpoint=endpoint, retstep=True, axis=axis)
            out = self.convert(values, dtype=dtype)
            return (out, self.convert(np.asarray(step), dtype=dtype)) if retstep else out
        start, stop = self.cast(self._tensor(start), dtype), self.cast(self._tensor(stop), dtype)
        div = (int(num) - 1) if endpoint else int(num)
        fractions = np.arange(int(num)) / max(div, 1)
        shape = self.shape(self.add(start, stop))
        frac = self.convert(fractions.reshape((-1,) + (1,) * len(shape)), dtype=dtype)
        delta = self.subtract(stop, start)
        out = self.add(start, self.multiply(frac, delta))
        if axis != 0:
            out = self.moveaxis(out, 0, axis)
        return (out, self.divide(delta, float(max(div, 1)))) if retstep else out

    def eye(self, N: int, M: int | None = None, k: int = 0, dtype: str | None = None):  # noqa: N803 - numpy's names
        """An N x M matrix with ones on the k-th diagonal."""
        return self.convert(np.eye(int(N), None if M is None else int(M), int(k)), dtype=dtype or self.dtype)

    # losses on tensors, as keras.ops (elementwise or per sample: no mean over the batch)
    def binary_crossentropy(self, target, output, from_logits: bool = False):
        """Elementwise -(t log p + (1 - t) log(1 - p)); probabilities are clipped to [eps, 1 - eps]
        (``unidl.config.epsilon()``), logits go through the stable form
        max(x, 0) - x t + log(1 + exp(-|x|))."""
        if from_logits:
            # -|x| as minimum(x, -x), as softplus does: the exact gradient sigmoid(x) - t at x == 0.
            stable = self.log1p(self.exp(self.minimum(output, self.negative(output))))
            return self.add(self.subtract(self.relu(output), self.multiply(output, target)), stable)
        eps = _epsilon()
        p = self.clip(output, eps, 1.0 - eps)
        both = self.add(self.multiply(target, self.log(p)),
                        self.multiply(self.subtract(1.0, target), self.log(self.subtract(1.0, p))))
        return self.negative(both)

    def categorical_crossentropy(self, target, output, from_logits: bool = False, axis: int = -1):
        """-sum(t log p) over ``axis``; probabilities are renormalized to sum to 1, then clipped to
        [eps, 1 - eps]; logits go through log_softmax."""
        if from_logits:
            log_p = self.log_softmax(output, axis=axis)
        else:
            eps = _epsilon()
            p = self.divide(output, self.sum(output, axis=axis, keepdims=True))
            log_p = self.log(self.clip(p, eps, 1.0 - eps))
        return self.negative(self.sum(self.multiply(target, log_p), axis=axis))

    def sparse_categorical_crossentropy(self, target, output, from_logits: bool = False, axis: int = -1):
        """-log p[target] along the last axis for integer targets (a trailing axis of size 1 is dropped);
        probabilities are clipped to [eps, 1 - eps] and renormalized, as Keras does."""
        ndim = len(self.shape(output))
        if int(axis) % ndim != ndim - 1:
            raise ValueError(f"sparse_categorical_crossentropy: only axis=-1 is supported, got axis={axis}")
        target = self.cast(target, "int64")
        tshape = self.shape(target)
        if len(tshape) == ndim and tshape[-1] == 1:
            target = self.squeeze(target, -1)
        if not from_logits:
            # As Keras: the clipped probabilities' logs are taken as logits, so rows that do not
            # sum to 1 are renormalized (as categorical_crossentropy does explicitly).
            eps = _epsilon()
            output = self.log(self.clip(output, eps, 1.0 - eps))
        log_p = self.log_softmax(output, axis=-1)
        picked = self.take_along_axis(log_p, self.expand_dims(target, -1), axis=-1)
        return self.negative(self.squeeze(picked, -1))

    def normalize(self, x, axis: int = -1, order: int = 2, epsilon: float | None = None):
        """x divided by its ``order``-norm along ``axis``, as keras.ops.normalize (at most 1 / epsilon times x)."""
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"normalize: order must be an int >= 1, got {order!r}")
        x = self._floating(x)
        if len(self.shape(x)) == 0:
            x = self.expand_dims(x, 0)
        eps = _epsilon() if epsilon is None else float(epsilon)
        if order == 2:
            inverse = self.rsqrt(self.sum(self.square(x), axis=axis, keepdims=True))
            return self.multiply(x, self.minimum(inverse, 1.0 / eps))
        return self.divide(x, self.maximum(self.norm(x, ord=order, axis=axis, keepdims=True), eps))

    def dot_product_attention(self, query, key, value, bias=None, mask=None, scale=None, is_causal: bool = False,
                              flash_attention=None, attn_logits_soft_cap=None):
        """softmax(scale * q k^T + bias, masked) v, as keras.ops.dot_product_attention.

        query (B, T, N, H), key and value (B, S, N, H) -> (B, T, N, H); ``scale`` defaults to
        1 / sqrt(H); ``mask`` (broadcast to (B, N, T, S), true = attend) and ``is_causal`` (query t
        sees keys s <= t) give masked logits Keras's large negative value (-0.7 * 3.38953e38).
        Flash attention and soft caps are not offered.
        """
        if flash_attention or attn_logits_soft_cap is not None:
            raise ValueError("dot_product_attention: flash_attention and attn_logits_soft_cap are not supported")
        if len(self.shape(query)) != 4:
            raise ValueError(f"dot_product_attention: query, key and value must be 4-D (batch, length, heads, "
                             f"depth), got query shape {tuple(self.shape(query))}")
        depth = self.shape(key)[-1]
        scale = 1.0 / math.sqrt(depth) if scale is None else float(scale)
        logits = self.multiply(self.einsum("btnh,bsnh->bnts", query, key), scale)
        if bias is not None:
            logits = self.add(logits, self.cast(self._tensor(bias), self.dtype_of(logits)))
        keep = None if mask is None else self._as_bool(self._tensor(mask))
        if is_causal:
            t, s = self.shape(logits)[2:]
            causal = self.convert(np.tri(self._known(t, "dot_product_attention"),
                                         self._known(s, "dot_product_attention"), dtype=bool))
            keep = causal if keep is None else self.logical_and(keep, causal)
        if keep is not None:
            logits = self.where(keep, logits, -0.7 * 3.38953e38)
        return self.einsum("bnts,bsnh->btnh", self.softmax(logits, axis=-1), value)

    def log2(self, x):
        """log(x) / log(2)."""
        return self.multiply(self.log(x), 1.0 / math.log(2.0))

    def log10(self, x):
        """log(x) / log(10)."""
        return self.multiply(self.log(x), 1.0 / math.log(10.0))

    # helpers of the composites
    def _known(self, size, op: str) -> int:
        if size is None:
            raise BackendError(f"backend {self.name!r}: {op} along an axis of unknown size (the batch axis inside "
                               "a compiled step) is not supported")
        return int(size)

    def _host_number(self, value, op: str):
        """A bound given as a number, or as a scalar tensor read on the host (eager only)."""
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return value.item() if isinstance(value, np.generic) else value
        try:
            return int(value) if _dtype_kind(self.dtype_of(value)) in "iu" else float(value)
        except Exception as exc:
            raise TypeError(f"{op}: its bounds must be Python numbers (or scalar tensors outside a compiled "
                            f"step), got {value!r}") from exc

    def _tensor(self, x):
        return self.convert(x) if _is_number(x) or isinstance(x, (np.ndarray, list, tuple)) else x


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
    """Every backend op reachable through ``unidl.ops``: primitives, derived, optional ops, then composites."""
    yield from PRIMITIVES
    yield from DERIVED
    yield from OPTIONAL
    yield from COMPOSITES


# keras.backend's names for the defaults, so that `import unidl as keras; keras.backend.backend()`
# answers as Keras does. They are unidl.config's functions: no process-wide backend behind them.
def backend() -> str:
    """The default backend's name (``unidl.config.backend()``), as ``keras.backend.backend()``."""
    return config.backend()


floatx = config.floatx
set_floatx = config.set_floatx
epsilon = config.epsilon
set_epsilon = config.set_epsilon

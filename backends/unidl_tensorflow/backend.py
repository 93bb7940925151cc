"""``TensorFlowBackend``: unidl's primitives on TensorFlow 2 (eager mode, tf.GradientTape).

Importing this module does not import tensorflow; ``TensorFlowBackend.__init__`` does.

Speed: most primitives call ``tf.raw_ops`` (public, keyword-only) rather than the
``tf.*`` wrappers, which add dispatch and name-scope work costing up to 3x the
kernel launch on small tensors. Gradients are registered per op type, so they
are the same either way. Shape, permutation and axis tuples go to TF as cached
int32 tensors: converting a Python tuple costs ~30 us per op, a cached tensor
nothing.

Where TF's native rule differs from unidl's contract, the code says so:
  * a Python scalar as the FIRST operand (``tf.add(0.5, float64_tensor)``)
    becomes float32 and the op fails; non-tensor operands take the dtype of the
    tensor operand here, on either side;
  * ``take``/``take_along_axis`` accept negative indices (NumPy semantics);
    ``tf.gather`` rejects them on CPU and returns zeros on GPU;
  * ``take_along_axis`` broadcasts non-axis dimensions like NumPy;
  * ``divide`` and ``mean`` of integers give floats (TF: no kernel / an integer mean);
  * gradients of gathers come back as dense tensors, not ``tf.IndexedSlices``.
Rules that already match (checked by tests/test_tensorflow_backend.py):
``Maximum``/``Minimum`` give a tie's gradient to the first argument, ``Max``/``Min``
split it evenly, ``Relu``'s gradient is 0 at 0, ``Abs``'s is sign(x);
so ``Backend.clip`` (max then min, about half the cost of ``tf.clip_by_value``) has
gradient 1 on the closed interval [lo, hi].
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import re
import sys
from typing import Any, Callable, Sequence

import numpy as np

from unidl.geometry import check_rank4 as _check_rank4, check_window as _check_window  # noqa: I001
from unidl.geometry import pair as _pair, pool_geometry as _pool_geometry
from unidl.geometry import resolve_padding as _resolve_padding, transpose_geometry as _transpose_geometry
from unidl.backend import tracing, COMPOSITES, DERIVED, DTYPES, HALF_DTYPES, OPTIONAL, PRIMITIVES, Backend, BackendError

Tensor = Any  # tf.Tensor or tf.Variable

_GPU_NAME = re.compile(r"^(?:cuda|gpu)(?::(\d+))?$")
_CPU_NAME = re.compile(r"^cpu(?::0)?$")
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_./-]")
# Ops that never run a kernel; everything else is pinned when the device is not TF's default.
_UNPINNED = ("to_numpy", "shape", "dtype_of", "size")


# ------------------------------------------------------------ NN geometry
# Padding geometry comes from unidl.geometry (the contract's rules). TF's own "SAME"
# is the same rule (checked by the conformance kit), so "valid" and "same" go to TF as
# strings and explicit pairs as TF's explicit padding lists.


def _tf_padding(padding: Any, pads) -> Any:
    """TF's padding argument: its own "VALID"/"SAME" (the same rules) or an explicit NHWC list."""
    if isinstance(padding, str):
        return padding.upper()
    (t, b), (l, r) = pads
    return [[0, 0], [t, b], [l, r], [0, 0]]


def _variable_name(name: str) -> str | None:
    """A TF-valid variable name: [A-Za-z0-9.][A-Za-z0-9_./-]* ('dense_1/kernel' stays as is)."""
    name = _BAD_NAME_CHARS.sub("_", name)
    if name and not (name[0].isalnum() or name[0] == "."):
        name = "v" + name
    return name or None  # None lets TF pick "Variable"


class TensorFlowBackend(Backend):
    """unidl backend on TensorFlow 2: eager tensors, ``tf.Variable`` weights, ``tf.GradientTape``."""

    name = "tensorflow"
    framework = "tensorflow"
    mixed_precision_dtypes = ("bfloat16", "float16")

    option_defaults = {
        "tf32": (False, "let GPU matmuls and convolutions use TensorFloat-32 (TensorFlow's own default is on; "
                        "unidl's is off, so results agree with the CPU and the other backends)"),
    }

    def __init__(self, dtype: str = "float32", device: str | None = None, **options):
        super().__init__(dtype=dtype, device=device, **options)
        if "tensorflow" not in sys.modules:
            # TF's C++ INFO/WARNING lines flood stderr on import; keep errors, and a user's own setting.
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        self.tf = tf
        self._float = tf.as_dtype(self.dtype)
        self._tf_dtypes = {d: tf.as_dtype(d) for d in (*DTYPES, *HALF_DTYPES, "uint8", "int8", "int16")}
        self._gpus = tf.config.list_physical_devices("GPU")
        if self._gpus:  # process-wide in TensorFlow, as in torch: the backend built last decides
            tf.config.experimental.enable_tensor_float_32_execution(bool(self.options["tf32"]))
        self._allow_memory_growth()
        self.device, self._tf_device = self._resolve_device(self.device)
        # Tensors are created under tf.device only when there is a choice to make. A fresh
        # context each time: one tf.device object shared between threads mixes up their stacks.
        self._place = functools.partial(tf.device, self._tf_device) if self._gpus else contextlib.nullcontext
        self._tapes: contextvars.ContextVar[tuple] = contextvars.ContextVar("unidl_tf_tapes", default=())
        self._cached_ints = functools.lru_cache(maxsize=1024)(self._make_ints)
        self._bind_ops()
        # TF runs an op on GPU:0 whenever one is visible, wherever its inputs live, so
        # any other device needs every op pinned (a few us each); the default one does not.
        default = "/GPU:0" if self._gpus else "/CPU:0"
        if self._tf_device != default:
            self._pin_ops()

    # ---------------------------------------------------------------- info
    def framework_version(self) -> str:
        return self.tf.__version__

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(len(self._gpus))]

    def sync(self) -> None:
        if self._gpus:
            self.tf.test.experimental.sync_devices()

    def _resolve_device(self, device: str) -> tuple[str, str]:
        """unidl device string -> (canonical unidl name, TF device name); BackendError if unusable."""
        spec = device.strip().lower()
        if _CPU_NAME.match(spec):
            return "cpu", "/CPU:0"
        gpu = _GPU_NAME.match(spec)
        if gpu is None:
            raise BackendError(
                f"backend 'tensorflow': unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'gpu:N'")
        index = int(gpu.group(1) or 0)
        if index >= len(self._gpus):
            raise BackendError(
                f"backend 'tensorflow': device {device!r} requested but TensorFlow sees "
                f"{len(self._gpus)} GPU(s); available devices: {self.devices()}")
        return f"cuda:{index}", f"/GPU:{index}"

    def _allow_memory_growth(self) -> None:
        # Otherwise TF reserves nearly all GPU memory on first use, starving a torch model
        # in the same process. Must run before TF makes its first tensor.
        with contextlib.suppress(RuntimeError):  # the runtime is already initialized: leave it
            for gpu in self._gpus:
                self.tf.config.experimental.set_memory_growth(gpu, True)

    # --------------------------------------------------------- op binding
    def _bind_ops(self) -> None:
        """Bind the hot primitives as instance attributes: one closure call per op."""
        tf, raw = self.tf, self.tf.raw_ops
        # The eager tensor and variable classes, named rather than made: the first tensor starts TF's
        # runtime, after which tf.distribute can no longer set up (unidl.distributed does, at compile).
        try:
            from tensorflow.python.framework.ops import EagerTensor
            from tensorflow.python.ops.resource_variable_ops import ResourceVariable
            tensor_types = frozenset((EagerTensor, ResourceVariable))
        except ImportError:  # pragma: no cover - moved in another TF version
            tensor_types = frozenset((type(tf.constant(0.0)), type(tf.Variable(0.0))))
        self._tensor_types = tensor_types
        coerce, as_tensor = self._coerce, self._as_tensor

        def binary(kernel):
            def op(a, b):
                # Fast path: both already eager tensors/variables. Anything else is coerced.
                if type(a) not in tensor_types or type(b) not in tensor_types:
                    a, b = coerce(a, b)
                return kernel(x=a, y=b)
            return op

        def divide(a, b):
            if type(a) not in tensor_types or type(b) not in tensor_types:
                a, b = coerce(a, b)
            if not a.dtype.is_floating:  # true division: TF's RealDiv has no integer kernel
                a, b = self.cast(a, self.dtype), self.cast(b, self.dtype)
            return raw.RealDiv(x=a, y=b)

        def unary(kernel, arg="x"):
            def op(x):
                if type(x) not in tensor_types:
                    x = as_tensor(x)
                return kernel(**{arg: x})
            return op

        for name, kernel in (("add", raw.AddV2), ("subtract", raw.Sub), ("multiply", raw.Mul),
                             ("power", raw.Pow),
                             # TF's gradient masks are x >= y and x <= y: ties go to ``a``, as the contract says.
                             ("maximum", raw.Maximum), ("minimum", raw.Minimum),
                             ("equal", raw.Equal), ("not_equal", raw.NotEqual),
                             ("greater", raw.Greater), ("greater_equal", raw.GreaterEqual),
                             ("less", raw.Less), ("less_equal", raw.LessEqual)):
            setattr(self, name, binary(kernel))
        batch_matmul = binary(raw.BatchMatMulV2)  # broadcasts batch axes

        def matmul(a, b):
            # MatMul is ~5x cheaper than BatchMatMulV2 for plain 2-D operands (Dense, RNN cells)
            if type(a) in tensor_types and type(b) in tensor_types and len(a.shape) == 2 == len(b.shape):
                return raw.MatMul(a=a, b=b)
            if len(getattr(a, "shape", ())) == 1 or len(getattr(b, "shape", ())) == 1:
                return vector_matmul(a, b)
            return batch_matmul(a, b)

        def vector_matmul(a, b):
            # NumPy's rule for 1-D operands (BatchMatMulV2 refuses them): a row / a column, dropped after.
            a_vector, b_vector = len(a.shape) == 1, len(b.shape) == 1
            out = batch_matmul(tf.expand_dims(a, 0) if a_vector else a, tf.expand_dims(b, -1) if b_vector else b)
            if b_vector:
                out = tf.squeeze(out, -1)
            return tf.squeeze(out, -2) if a_vector else out
        self.matmul = matmul
        self.divide = divide
        for name, kernel in (("negative", raw.Neg), ("abs", raw.Abs), ("sign", raw.Sign),
                             ("exp", raw.Exp), ("log", raw.Log), ("log1p", raw.Log1p),
                             ("sqrt", raw.Sqrt), ("tanh", raw.Tanh), ("sigmoid", raw.Sigmoid),
                             ("erf", raw.Erf)):
            setattr(self, name, unary(kernel))
        for name, kernel in (("sin", raw.Sin), ("cos", raw.Cos), ("tan", raw.Tan), ("rsqrt", raw.Rsqrt)):
            setattr(self, name, unary(kernel))
        self.relu = unary(raw.Relu, "features")  # ReluGrad is 0 at x == 0
        self.stop_gradient = unary(raw.StopGradient, "input")
        self.sum = self._reduction(raw.Sum)
        self.mean = self._reduction(raw.Mean, floating=True)
        self.max = self._reduction(raw.Max)  # the Max/Min gradient splits evenly between ties
        self.min = self._reduction(raw.Min)

    def _reduction(self, kernel, floating: bool = False) -> Callable:
        tensor_types, as_tensor, axes = self._tensor_types, self._as_tensor, self._axes

        def op(x, axis=None, keepdims: bool = False):
            if type(x) not in tensor_types:
                x = as_tensor(x)
            if floating and not x.dtype.is_floating:  # mean of ints is a float, as in NumPy (TF's is an int)
                x = self.cast(x, self.dtype)
            return kernel(input=x, axis=axes(x, axis), keep_dims=keepdims)
        return op

    def _pin_ops(self) -> None:
        """Wrap every kernel-running primitive so that it runs on ``self._tf_device``."""
        device = self.tf.device

        def pinned(fn, where):
            def op(*args, **kwargs):
                with device(where):
                    return fn(*args, **kwargs)
            return op
        for name in (*PRIMITIVES, *DERIVED, *OPTIONAL, *COMPOSITES):
            if name not in _UNPINNED:
                setattr(self, name, pinned(getattr(self, name), self._tf_device))

    # ---------------------------------------------------------- helpers
    def _ints(self, values: tuple) -> Tensor:
        """An int32 tensor of ``values``: cached when eager; made anew while tracing a
        tf.function, because a constant created inside a graph cannot leave it."""
        if self.tf.executing_eagerly():
            return self._cached_ints(values)
        return self.tf.constant(values, dtype=self.tf.int32)

    def _make_ints(self, values: tuple) -> Tensor:
        # Host memory, whatever the device: shapes and axes are read by the CPU.
        with self.tf.device("/CPU:0"):
            return self.tf.constant(values, dtype=self.tf.int32)

    def _axes(self, x: Tensor, axis) -> Any:
        """An axis argument as TF takes it fastest: a Python int, or a cached int32 tensor."""
        if type(axis) is int:
            return axis
        if axis is None:
            return self._ints(tuple(range(len(x.shape))))
        if isinstance(axis, (tuple, list)):
            return self._ints(tuple(int(a) for a in axis))
        return int(axis)  # a NumPy integer

    def _is_tensor(self, x) -> bool:
        return isinstance(x, (self.tf.Tensor, self.tf.Variable))

    def _as_tensor(self, x) -> Tensor:
        """A tensor as is (graph tensors, other variable classes); anything else through ``convert``."""
        return x if self._is_tensor(x) else self.convert(x)

    def _coerce(self, a, b) -> tuple[Tensor, Tensor]:
        """Make both operands tensors; a non-tensor takes the other operand's dtype.

        TF would turn a Python float into float32 and a NumPy float into float64
        before looking at the other operand, so ``add(0.5, float64_tensor)`` and
        ``add(float64_array, float32_tensor)`` fail natively.
        """
        a_is, b_is = self._is_tensor(a), self._is_tensor(b)
        if a_is and b_is:
            return a, b
        if b_is:
            b, a = self._join(b, a)
            return a, b
        if not a_is:
            a = self.convert(a)  # two plain values: the first sets the dtype, as convert does
        return self._join(a, b)

    def _join(self, tensor: Tensor, value) -> tuple[Tensor, Tensor]:
        """(tensor, value as a tensor of tensor's dtype); an integer tensor meeting a float
        becomes float, as in NumPy (TF would truncate the float)."""
        if not tensor.dtype.is_floating and (type(value) is float or np.asarray(value).dtype.kind == "f"):
            tensor = self.cast(tensor, self.dtype)
        with self._place():
            return tensor, self._scalar(value, tensor.dtype)

    def _scalar(self, value, dtype):
        """A tensor of ``dtype`` from a Python or NumPy scalar.

        Through a 0-d NumPy array: ``tf.constant`` of a Python float keeps a cache entry per new value
        (0.7 KB each: a per-step learning rate leaked 12 MB per 16,000 Adam steps), a NumPy array none,
        and it is faster too.
        """
        return self.tf.constant(np.asarray(value, dtype=dtype.as_numpy_dtype))

    def _indices(self, indices, n: int) -> Tensor:
        """int64 index tensor with negative entries wrapped (NumPy semantics) for an axis of length n."""
        tf = self.tf
        if self._is_tensor(indices):
            indices = self.cast(indices, "int64")
            return tf.raw_ops.SelectV2(condition=indices < 0, t=indices + n, e=indices)
        indices = np.asarray(indices, dtype=np.int64)
        return self.convert(np.where(indices < 0, indices + n, indices))

    # ----------------------------------------------- conversion, introspection
    def convert(self, x, dtype: str | None = None) -> Tensor:
        tf = self.tf
        if self._is_tensor(x):
            target = self._dtype(dtype) if dtype else self._canonical(x.dtype)
            if x.dtype != target:
                return tf.raw_ops.Cast(x=x, DstT=target)
            # A variable is read, so the result does not change when the variable is assigned.
            return tf.identity(x) if isinstance(x, tf.Variable) else x
        array = np.asarray(x)
        target = self._dtype(dtype).as_numpy_dtype if dtype else self._numpy_target(array.dtype)
        if array.dtype != target:
            array = array.astype(target)  # bfloat16 included: TF's numpy dtype for it casts NumPy floats
        with self._place():
            return tf.constant(array)

    def _dtype(self, dtype: str) -> Any:
        try:
            return self._tf_dtypes[dtype]
        except KeyError:
            raise BackendError(f"backend 'tensorflow': unknown dtype {dtype!r}; use one of "
                               f"{sorted(self._tf_dtypes)}") from None

    def _numpy_target(self, dtype: np.dtype) -> np.dtype:
        kind = dtype.kind
        if kind == "f":
            return self._float.as_numpy_dtype  # ml_dtypes' bfloat16 under mixed precision
        if kind in "iu":
            return np.dtype(np.int64)
        if kind == "b":
            return dtype
        raise BackendError(f"backend 'tensorflow': cannot convert an array of dtype {dtype} "
                           f"(floating, integer and bool arrays are supported)")

    def _canonical(self, dtype) -> Any:
        if dtype.is_floating:
            return self._float
        if dtype.is_integer:
            return self.tf.int64
        return dtype

    def to_numpy(self, x: Tensor) -> np.ndarray:
        # np.array copies: x.numpy() may share the tensor's buffer. (np.array(x) on a variable
        # would warn: ResourceVariable.__array__ takes no ``copy`` argument.)
        return np.array(x.numpy() if self._is_tensor(x) else x)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(x.shape.as_list())

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        target = self._dtype(dtype)
        if type(x) not in self._tensor_types:
            return self.convert(x, dtype)
        return x if x.dtype == target else self.tf.raw_ops.Cast(x=x, DstT=target)

    # --------------------------------------------------------- elementwise
    def where(self, cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
        if type(a) not in self._tensor_types or type(b) not in self._tensor_types:
            a, b = self._coerce(a, b)
        return self.tf.raw_ops.SelectV2(condition=cond, t=a, e=b)  # SelectV2 broadcasts all three

    # ---------------------------------------------------------- reductions
    def argmax(self, x: Tensor, axis: int | None = -1) -> Tensor:
        if axis is None:  # NumPy: index into the flattened array
            x, axis = self.reshape(x, (-1,)), 0
        return self.tf.raw_ops.ArgMax(input=x, dimension=axis, output_type=self.tf.int64)

    # ------------------------------------------------- shape and indexing
    def expand_dims(self, x: Tensor, axis: int) -> Tensor:
        # native: works when the batch size is unknown inside a compiled step
        return self.tf.expand_dims(x, axis)

    def squeeze(self, x: Tensor, axis) -> Tensor:
        shape = self.shape(x)
        axes = [a % len(shape) for a in (range(len(shape)) if axis is None else
                                          (axis,) if isinstance(axis, int) else axis)]
        for a in axes:
            if shape[a] not in (1, None):  # the same ValueError as every backend
                raise ValueError(f"squeeze: axis {a} of shape {shape} is not 1")
        return self.tf.squeeze(x, axes)

    def reshape(self, x: Tensor, shape) -> Tensor:
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        return self.tf.raw_ops.Reshape(tensor=x, shape=self._ints(shape))

    def transpose(self, x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
        ndim = len(x.shape)
        perm = tuple(range(ndim - 1, -1, -1)) if axes is None else tuple(int(a) % ndim for a in axes)
        return self.tf.raw_ops.Transpose(x=x, perm=self._ints(perm))

    def concatenate(self, xs: Sequence[Tensor], axis: int = -1) -> Tensor:
        return self.tf.concat(list(xs), axis=axis)

    def unstack(self, x: Tensor, axis: int = 0) -> list:
        return self.tf.unstack(x, axis=axis)  # one op; its gradient is one stack

    def take(self, x: Tensor, indices, axis: int | None = 0) -> Tensor:
        if axis is None:  # NumPy: take from the flattened array
            x, axis = self.reshape(x, (-1,)), 0
        n = x.shape[axis]
        return self.tf.raw_ops.GatherV2(params=x, indices=self._indices(indices, n), axis=axis)

    def take_along_axis(self, x: Tensor, indices, axis: int) -> Tensor:
        tf = self.tf
        ndim = len(x.shape)
        axis = int(axis) % ndim
        indices = self._indices(indices, x.shape[axis])
        if len(indices.shape) != ndim:
            raise ValueError(f"take_along_axis: indices have {len(indices.shape)} dims, x has {ndim}")
        # NumPy broadcasts every axis but ``axis`` between x and indices; TF's batched gather does not.
        xs, js = self.shape(x), self.shape(indices)
        if None not in xs + js:  # inside a compiled step the batch size is unknown: no broadcasting then
            batch = tuple(np.broadcast_shapes(xs[:axis] + xs[axis + 1:], js[:axis] + js[axis + 1:]))
            x_full = batch[:axis] + (xs[axis],) + batch[axis:]
            j_full = batch[:axis] + (js[axis],) + batch[axis:]
            if xs != x_full:
                x = tf.broadcast_to(x, x_full)
            if js != j_full:
                indices = tf.broadcast_to(indices, j_full)
        if axis == ndim - 1:
            return tf.raw_ops.GatherV2(params=x, indices=indices, axis=axis, batch_dims=axis)
        # A batched gather indexes the axis right after the batch axes: move ``axis`` last and back.
        perm = tuple(i for i in range(ndim) if i != axis) + (axis,)
        inverse = tuple(int(i) for i in np.argsort(perm))
        out = tf.raw_ops.GatherV2(params=self.transpose(x, perm), indices=self.transpose(indices, perm),
                                  axis=ndim - 1, batch_dims=ndim - 1)
        return self.transpose(out, inverse)

    # ------------------------------------------------ keras.ops additions
    # Native TF ops where they have the contract's semantics; the rest are Backend's
    # defaults (gelu and leaky_relu too: TF's kernels hold their constants in float32,
    # off by 1e-8 relative in float64). Integer tensors pass floor/ceil/round unchanged (TF has no integer kernels).
    # Rounding ops have no registered gradient: tapes report zeros (UnconnectedGradients.ZERO).
    def floor(self, x: Tensor) -> Tensor:
        x = self._as_tensor(x)
        return self.tf.raw_ops.Floor(x=x) if x.dtype.is_floating else x

    def ceil(self, x: Tensor) -> Tensor:
        x = self._as_tensor(x)
        return self.tf.raw_ops.Ceil(x=x) if x.dtype.is_floating else x

    def round(self, x: Tensor) -> Tensor:  # noqa: A003
        x = self._as_tensor(x)
        return self.tf.raw_ops.Round(x=x) if x.dtype.is_floating else x  # halves to even

    def floor_divide(self, a, b) -> Tensor:
        a, b = self._coerce(a, b)
        return self.tf.math.floordiv(a, b)

    def mod(self, a, b) -> Tensor:
        a, b = self._coerce(a, b)
        return self.tf.math.floormod(a, b)  # the sign of b; its gradient for b is -floor(a / b)

    def argsort(self, x: Tensor, axis: int = -1) -> Tensor:
        return self.cast(self.tf.argsort(x, axis=axis, stable=True), "int64")

    def top_k(self, x: Tensor, k: int, sorted: bool = True):  # noqa: A002
        # TF's top_k gives a tie to the lower index, as the contract asks.
        values, indices = self.tf.math.top_k(x, int(k), sorted=True)
        return values, self.cast(indices, "int64")

    def cumsum(self, x: Tensor, axis: int = -1) -> Tensor:
        return self.tf.cumsum(x, axis=axis)

    def prod(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        # ProdGrad multiplies exclusive cumulative products: exact with zeros, as the contract asks.
        return self.tf.raw_ops.Prod(input=x, axis=self._axes(x, axis), keep_dims=keepdims)

    def argmin(self, x: Tensor, axis: int | None = -1) -> Tensor:
        if axis is None:
            x, axis = self.reshape(x, (-1,)), 0
        return self.tf.raw_ops.ArgMin(input=x, dimension=axis, output_type=self.tf.int64)

    def _bool(self, x) -> Tensor:
        x = self._as_tensor(x)
        return x if x.dtype == self.tf.bool else self.tf.not_equal(x, self.tf.zeros((), x.dtype))

    def all(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A003
        x = self._bool(x)
        return self.tf.raw_ops.All(input=x, axis=self._axes(x, axis), keep_dims=keepdims)

    def any(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A003
        x = self._bool(x)
        return self.tf.raw_ops.Any(input=x, axis=self._axes(x, axis), keep_dims=keepdims)

    def logical_and(self, a, b) -> Tensor:
        return self.tf.logical_and(self._bool(a), self._bool(b))

    def logical_or(self, a, b) -> Tensor:
        return self.tf.logical_or(self._bool(a), self._bool(b))

    def logical_xor(self, a, b) -> Tensor:
        return self.tf.math.logical_xor(self._bool(a), self._bool(b))

    def logical_not(self, x) -> Tensor:
        return self.tf.logical_not(self._bool(x))

    def isnan(self, x: Tensor) -> Tensor:
        return self.tf.math.is_nan(x) if x.dtype.is_floating else super().isnan(x)

    def isinf(self, x: Tensor) -> Tensor:
        return self.tf.math.is_inf(x) if x.dtype.is_floating else super().isinf(x)

    def isfinite(self, x: Tensor) -> Tensor:
        return self.tf.math.is_finite(x) if x.dtype.is_floating else super().isfinite(x)

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        return self.tf.stack(list(xs), axis=axis)

    def einsum(self, subscripts: str, *operands: Tensor) -> Tensor:
        return self.tf.einsum(subscripts, *operands)

    def tile(self, x: Tensor, repeats) -> Tensor:
        repeats = [int(r) for r in (repeats if isinstance(repeats, (tuple, list)) else (repeats,))]
        ndim = len(x.shape)
        if len(repeats) > ndim:  # numpy's rule: new leading axes of size 1 first
            x = self.tf.reshape(x, [1] * (len(repeats) - ndim) + list(self.tf.shape(x)))
        repeats = [1] * (len(x.shape) - len(repeats)) + repeats
        return self.tf.tile(x, repeats)

    def repeat(self, x: Tensor, repeats, axis=None) -> Tensor:
        return self.tf.repeat(x, repeats, axis=axis)

    def flip(self, x: Tensor, axis=None) -> Tensor:
        axes = range(len(x.shape)) if axis is None else axis if isinstance(axis, (tuple, list)) else (axis,)
        return self.tf.reverse(x, [int(a) for a in axes])

    def roll(self, x: Tensor, shift, axis=None) -> Tensor:
        if axis is None:
            return self.tf.reshape(self.tf.roll(self.tf.reshape(x, [-1]), shift, axis=0), self.tf.shape(x))
        return self.tf.roll(x, shift, axis=axis)

    def broadcast_to(self, x: Tensor, shape) -> Tensor:
        return self.tf.broadcast_to(x, [int(d) for d in shape])

    def zeros_like(self, x: Tensor, dtype: str | None = None) -> Tensor:
        return self.tf.zeros_like(x, dtype=None if dtype is None else self._dtype(dtype))

    def ones_like(self, x: Tensor, dtype: str | None = None) -> Tensor:
        return self.tf.ones_like(x, dtype=None if dtype is None else self._dtype(dtype))

    def silu(self, x: Tensor) -> Tensor:
        return self.tf.nn.silu(x)

    def selu(self, x: Tensor) -> Tensor:
        return self.tf.nn.selu(x)  # Keras's constants

    def elu(self, x: Tensor, alpha: float = 1.0) -> Tensor:
        return self.tf.nn.elu(x) if alpha == 1.0 else super().elu(x, alpha)

    def relu6(self, x: Tensor) -> Tensor:
        return self.tf.nn.relu6(x)  # Relu6Grad: 1 on the open interval (0, 6)

    def softsign(self, x: Tensor) -> Tensor:
        return self.tf.nn.softsign(x)

    def log_sigmoid(self, x: Tensor) -> Tensor:
        return self.tf.math.log_sigmoid(x)

    def var(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        return self.tf.math.reduce_variance(self._floating(x), axis=axis, keepdims=keepdims)

    def std(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        return self.tf.math.reduce_std(self._floating(x), axis=axis, keepdims=keepdims)

    # ------------------------------------------------ neural-network primitives
    # NHWC and (kh, kw, in, out) kernels are TF's own layouts: no translation. Everything
    # here works with an unknown batch size (inside a compiled step): only H, W and C are read.
    def pad(self, x: Tensor, pad_width, value: float = 0.0) -> Tensor:
        ndim = len(x.shape)
        try:
            widths = [list(p) for p in pad_width]
        except TypeError:
            widths = []
        if len(widths) != ndim or not all(
                len(p) == 2 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in p) for p in widths):
            raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for each "
                             f"of the {ndim} axes, got {pad_width!r}")
        widths = [[int(a), int(b)] for a, b in widths]
        if not any(a or b for a, b in widths):
            return x
        return self.tf.pad(x, widths, constant_values=self._scalar(value, x.dtype))

    def _dilated_kernel(self, kernel: Tensor, dilation: tuple[int, int]) -> Tensor:
        """The kernel with dilation - 1 zero taps between its taps: ((kh-1)dh+1, (kw-1)dw+1, in, out).

        TF's CPU kernels compute dilated convolutions forward but have no gradient for them
        (Conv2DBackpropInput/Filter: "Current CPU implementations do not yet support dilation
        rates larger than 1"), nor a dilated conv2d_transpose at all. An undilated convolution
        with this kernel is the same sum, plus exact zeros; gradients reach the real taps
        through reshape and pad. It costs (extent / kh)(extent / kw) times the multiplies.
        """
        tf = self.tf
        (dh, dw), (kh, kw, ci, co) = dilation, self.shape(kernel)
        stuffed = tf.pad(tf.reshape(kernel, (kh, 1, kw, 1, ci, co)),
                         [[0, 0], [0, dh - 1], [0, 0], [0, dw - 1], [0, 0], [0, 0]])
        stuffed = tf.reshape(stuffed, (kh * dh, kw * dw, ci, co))
        return stuffed[:(kh - 1) * dh + 1, :(kw - 1) * dw + 1]

    def conv2d(self, x: Tensor, kernel: Tensor, strides=(1, 1), padding="valid", dilation=(1, 1),
               groups: int = 1) -> Tensor:
        tf = self.tf
        xs, ks = self.shape(x), self.shape(kernel)
        _check_rank4(xs, "x (N, H, W, C)", "conv2d")
        _check_rank4(ks, "kernel (kh, kw, C // groups, O)", "conv2d")
        s, d = _pair(strides, "strides", "conv2d"), _pair(dilation, "dilation", "conv2d")
        (kh, kw, cg, o), c, groups = ks, xs[3], int(groups)
        if groups < 1 or c != cg * groups or o % groups:
            raise ValueError(f"conv2d: x has {c} channels and the kernel shape is {ks}; with groups={groups} "
                             "the kernel must be (kh, kw, C // groups, O) with C and O divisible by groups")
        pads = _resolve_padding(padding, xs[1:3], (kh, kw), s, d, "conv2d")
        _check_window((xs[1] + sum(pads[0]), xs[2] + sum(pads[1])), (kh, kw), d, "conv2d")
        if d != (1, 1):
            kernel = self._dilated_kernel(kernel, d)
        tf_pad, tf_strides = _tf_padding(padding, pads), [1, s[0], s[1], 1]
        if groups == 1:
            return tf.nn.conv2d(x, kernel, tf_strides, tf_pad)
        # TF's CPU kernels run a grouped conv2d forward but have no gradient for it
        # ("Gradients for grouped convolutions are not supported on CPU"). Depthwise
        # (groups == C) has its own op with gradients, for equal strides only; other
        # groupings run group by group: output channels are group-major, as canonical.
        if groups == c and s[0] == s[1]:
            # Channel c's outputs are c * m ... c * m + m - 1, m = O // C: the depthwise order.
            depthwise = tf.reshape(kernel, (*self.shape(kernel)[:2], c, o // c))
            return tf.nn.depthwise_conv2d(x, depthwise, tf_strides, tf_pad)
        return tf.concat([tf.nn.conv2d(xg, kg, tf_strides, tf_pad) for xg, kg in
                          zip(tf.split(x, groups, axis=3), tf.split(kernel, groups, axis=3))], axis=3)

    def conv2d_transpose(self, x: Tensor, kernel: Tensor, strides=(1, 1), padding="valid",
                         dilation=(1, 1)) -> Tensor:
        tf = self.tf
        xs, ks = self.shape(x), self.shape(kernel)
        _check_rank4(xs, "x (N, H, W, C)", "conv2d_transpose")
        _check_rank4(ks, "kernel (kh, kw, O, C)", "conv2d_transpose")
        s, d = _pair(strides, "strides", "conv2d_transpose"), _pair(dilation, "dilation", "conv2d_transpose")
        (_, h, w, c), (kh, kw, o, kc) = xs, ks
        if kc != c:
            raise ValueError(f"conv2d_transpose: x has {c} channels but the kernel (kh, kw, O, C) is {ks}")
        # TF's Conv2DBackpropInput is the contract's definition: the input-gradient of conv2d.
        size, pads = _transpose_geometry(padding, (h, w), (kh, kw), s, d)
        if d != (1, 1):
            kernel = self._dilated_kernel(kernel, d)
        # tf.shape, not a Python int: the batch size may be unknown inside a compiled step.
        output_shape = tf.stack([tf.shape(x)[0], size[0], size[1], o])
        return tf.nn.conv2d_transpose(x, kernel, output_shape, [1, s[0], s[1], 1], _tf_padding(padding, pads))

    def max_pool2d(self, x: Tensor, pool_size, strides=None, padding="valid") -> Tensor:
        tf = self.tf
        k, s, pads = _pool_geometry(self.shape(x), pool_size, strides, padding, "max_pool2d")
        if not isinstance(padding, str):  # explicit: -inf cells never win a window
            x, padding = self.pad(x, ((0, 0), *pads, (0, 0)), value=-np.inf), "valid"
        # TF's "SAME" pads with cells that never win, and its gradient (MaxPoolGrad, also
        # oneDNN's in compiled graphs) goes to the first maximal cell of each window, row-major.
        return tf.nn.max_pool2d(x, k, s, padding.upper())

    def avg_pool2d(self, x: Tensor, pool_size, strides=None, padding="valid") -> Tensor:
        tf = self.tf
        k, s, pads = _pool_geometry(self.shape(x), pool_size, strides, padding, "avg_pool2d")
        if isinstance(padding, str):  # TF's "SAME" divides by the cells inside the input, as the contract
            return tf.nn.avg_pool2d(x, k, s, padding.upper())
        # Explicit padding: the VALID mean over zero padding is sum / (kh kw); rescale each
        # window to sum / (its count of input cells).
        h, w = self.shape(x)[1:3]
        mean = tf.nn.avg_pool2d(self.pad(x, ((0, 0), *pads, (0, 0))), k, s, "VALID")
        counts = []
        for n, kk, ss, (before, _), m in zip((h, w), k, s, pads, self.shape(mean)[1:3]):
            start = np.arange(m) * ss - before
            counts.append(np.minimum(start + kk, n) - np.maximum(start, 0))
        scale = (k[0] * k[1]) / np.outer(*counts)[:, :, None]
        return mean * self._scalar(scale, x.dtype)

    # ------------------------------------------------------ state, autodiff
    def variable(self, value, trainable: bool = True, name: str = "") -> Tensor:
        with self._place():
            return self.tf.Variable(self.convert(value), trainable=trainable, name=_variable_name(name))

    def assign(self, variable: Tensor, value: Tensor) -> None:
        variable.assign(value, read_value=False)  # read_value=False skips a read op

    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[Tensor]) -> tuple[Tensor, Any, list]:
        tf = self.tf
        variables = list(variables)
        # Watch exactly the given variables (trainable or not), nothing else read inside fn.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            with self._recording(tape):
                loss, aux = fn()
        with self._place():
            grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, aux, self._dense(grads)

    def gradient_tape(self, persistent: bool = False):
        from .gradient_tape import TensorFlowGradientTape  # the framework is imported already: a backend exists
        return TensorFlowGradientTape(self, persistent)

    def grad_wrt_inputs(self, fn: Callable[..., Tensor], inputs: Sequence[Tensor]) -> tuple[Tensor, list]:
        tf = self.tf
        inputs = [self._as_tensor(x) for x in inputs]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(inputs)
            with self._recording(tape):
                value = fn(*inputs)
        with self._place():
            grads = tape.gradient(value, inputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return value, self._dense(grads)

    def native_layer(self, layer):
        # SimpleRNN / LSTM / GRU as one tf.while_loop over time (see native_layers.py)
        return _native_kernel_for(self, layer)

    def export_module(self, model):
        """A ``tf.Module`` holding the model's tf.Variables, callable as a traced inference function.

        ``tf.saved_model.save(module, path)`` writes a SavedModel that TensorFlow serves
        without unidl.
        """
        from unidl.ops import use_backend
        tf, backend = self.tf, self
        shapes = model.input_shape if isinstance(model.input_shape, list) else [model.input_shape]
        specs = [tf.TensorSpec((None, *shape[1:]), self._float) for shape in shapes]

        class UnidlModule(tf.Module):
            def __init__(self):
                super().__init__(name=model.name)
                self.model_weights = [w.value for w in model.weights]

            @tf.function(input_signature=specs, autograph=False)
            def __call__(self, *inputs):
                with use_backend(backend):
                    return model.call(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

        return UnidlModule()

    def compile_step(self, step: Callable) -> Callable:
        """``step`` as one TF graph: forward, tape and optimizer update together.

        Arguments are flattened (dicts and tuples allowed); Python floats (the
        optimizer's per-step learning rate and bias corrections) become scalar
        tensors, so a new value does not retrace. The leading axis of every
        other tensor is the batch axis and is left unknown, so one concrete
        graph serves full and last, smaller batches. Other axes are traced at
        the sizes first seen; once a few sizes of an axis have come (sequences
        of several lengths), that axis is traced as unknown too, as
        ``tf.function(reduce_retracing=True)`` does. Concrete functions are
        called directly: this skips tf.function's per-call signature matching,
        which costs about as much as a small model's whole step.
        """
        tf = self.tf
        graphs: dict[tuple, Callable] = {}
        sizes_seen: dict[tuple, list] = {}  # pattern of ranks -> the non-batch shapes traced for it
        exact_only: set[tuple] = set()     # patterns whose step needs known sizes (a loop over time steps)

        def run(*args):
            flat = tf.nest.flatten(args)
            # None (e.g. no sample weights) is baked into the graph, one graph per pattern.
            pattern = tuple(None if a is None else (type(a) is float or len(a.shape)) for a in flat)
            tensors = [self._scalar(a, self._float) if type(a) is float else a for a in flat if a is not None]
            shapes = tuple(() if len(t.shape) == 0 else tuple(t.shape[1:]) for t in tensors)
            key = (pattern, shapes)
            graph = graphs.get(key)
            if graph is None:
                traced = sizes_seen.setdefault(pattern, [])
                relax = len(traced) >= _SIZES_BEFORE_RELAXING and pattern not in exact_only
                specs_shapes = _relaxed([*traced, shapes]) if relax else shapes
                graph = graphs.get((pattern, specs_shapes))
                if graph is None:
                    try:
                        graph = self._trace(step, args, pattern, tensors, specs_shapes)
                    except Exception:
                        if not relax:
                            raise
                        exact_only.add(pattern)  # e.g. a recurrent layer must know its number of steps
                        specs_shapes = shapes
                        graph = self._trace(step, args, pattern, tensors, specs_shapes)
                    graphs[(pattern, specs_shapes)] = graph
                    traced.append(shapes)
                graphs[key] = graph
            with self._place():
                return graph(*tensors)
        return run

    def _trace(self, step: Callable, args: tuple, key: tuple, tensors: list, shapes: tuple) -> Callable:
        tf = self.tf

        def flat_step(*flat_tensors):
            it = iter(flat_tensors)
            flat = [None if k is None else next(it) for k in key]
            with tracing():  # TensorFlow runs this body only to trace it
                return step(*tf.nest.pack_sequence_as(args, flat))

        specs = [tf.TensorSpec((None, *shape) if len(t.shape) else (), t.dtype) for t, shape in zip(tensors, shapes)]
        with self._place():
            # autograph off: the step has no tensor-dependent Python control flow to convert,
            # and tracing is faster without rewriting every function it calls
            return tf.function(flat_step, autograph=False).get_concrete_function(*specs)

    def _dense(self, grads: list) -> list:
        # A gather's gradient is a tf.IndexedSlices; callers get plain tensors of the variable's shape.
        slices = self.tf.IndexedSlices
        return [self.tf.convert_to_tensor(g) if isinstance(g, slices) else g for g in grads]

    @contextlib.contextmanager
    def _recording(self, tape):
        """Note ``tape`` as active in this context so that ``no_grad`` can pause it."""
        token = self._tapes.set(self._tapes.get() + (tape,))
        try:
            yield
        finally:
            self._tapes.reset(token)

    def no_grad(self) -> contextlib.AbstractContextManager:
        # Outside value_and_grad nothing records; inside, pause every tape this backend opened.
        tapes = self._tapes.get()
        return self._paused(tapes) if tapes else contextlib.nullcontext()

    @contextlib.contextmanager
    def _paused(self, tapes: tuple):
        with contextlib.ExitStack() as stack:
            for tape in tapes:
                stack.enter_context(tape.stop_recording())
            # Paused tapes are not active: a nested no_grad must not stop them twice (TF raises).
            token = self._tapes.set(())
            try:
                yield
            finally:
                self._tapes.reset(token)


# How many sizes of a non-batch axis get a graph of their own before the axis is traced as unknown.
_SIZES_BEFORE_RELAXING = 3


def _relaxed(shapes: list[tuple]) -> tuple:
    """Per tensor, the shape whose axes are None wherever the given shapes disagree."""
    return tuple(tuple(d[0] if len(set(d)) == 1 else None for d in zip(*per_tensor))
                 for per_tensor in zip(*shapes))


def _native_kernel_for(backend, layer):
    from .native_layers import kernel_for  # imports tensorflow: only once a backend exists
    return kernel_for(backend, layer)

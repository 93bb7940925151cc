"""``JaxBackend``: unidl's primitives on JAX arrays, gradients by ``jax.value_and_grad``.

The model a backend author copies. JAX arrays are immutable, so variables are
holders whose array is swapped on assignment, gradients swap traced values into
the holders, and compiled steps pass every variable in and out of ``jax.jit``.
unidl's :class:`~unidl.immutable_arrays.ImmutableArrays` mixin does all of that;
this backend supplies the two JAX calls it needs (``differentiate``, ``jit``)
and the ops, each unwrapping holders: the ops that are plain ``jax.numpy``
functions are bound through ``bind_lifted``, the others call ``unwrap``.

Derived ops (``unidl.backend.DERIVED``) that JAX has natively with the contract's
conventions are bound too; ``maximum``, ``minimum``, ``abs`` and ``clip`` are
Backend's defaults, because ``jnp``'s versions split the gradient at ties and
kinks where the contract does not.

**64-bit.** JAX makes int32/float32 unless ``jax_enable_x64`` is on, and the
contract wants int64 integers (indices, argmax) in every compute dtype, so
building this backend turns that switch on. It is process-global: JAX code
elsewhere in the process that relied on the 32-bit default then gets 64-bit
results when it does not name a dtype. Floats made here always take the
backend's compute dtype, so float32 models stay float32.

Matmuls and convolutions ask for ``Precision.HIGHEST``: the default on GPUs
and TPUs rounds operands to TF32/bfloat16, beyond the kit's float32 tolerances.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from unidl.backend import Backend, BackendError, Tensor
from unidl.geometry import check_rank4, check_window, pair, pool_geometry, resolve_padding, transpose_geometry
from unidl.immutable_arrays import ImmutableArrays, VariableHolder, unwrap

jax: Any = None  # bound by JaxBackend.__init__, so importing this module imports no JAX
jnp: Any = None
lax: Any = None

JaxVariable = VariableHolder  # what variable() returns (the name older code used)


def _dimension(d):
    """A dimension as a Python int (NumPy ints included), or JAX's symbolic dimension when it has no value."""
    try:
        return int(d)
    except Exception:  # jax.export's InconclusiveDimensionOperation: a symbolic batch size
        return d


class JaxBackend(ImmutableArrays, Backend):
    """JAX backend: float32 or float64 on the device JAX picks (CPU unless asked)."""

    name = "jax"
    framework = "jax"
    mixed_precision_dtypes = ("bfloat16", "float16")  # compute twins for unidl's mixed precision

    def __init__(self, dtype: str = "float32", device: str | None = None):
        global jax, jnp, lax
        import jax
        import jax.numpy as jnp
        from jax import lax

        super().__init__(dtype=dtype, device=device)
        jax.config.update("jax_enable_x64", True)  # process-global: see the module docstring
        self._device = self._resolve_device(device)
        self.device = f"{self._device.platform}:{self._device.id}"
        self._dtypes = {d: jnp.dtype(d) for d in ("float32", "float64", "int32", "int64", "bool",
                                                  "bfloat16", "float16", "uint8", "int8", "int16")}
        self._precision = lax.Precision.HIGHEST

        # jax.numpy already has the contract's semantics for these (NumPy broadcasting,
        # Python scalars on either side keep the tensor's dtype, axis=() reduces nothing).
        self.bind_lifted({
            "add": jnp.add, "subtract": jnp.subtract, "multiply": jnp.multiply, "divide": jnp.true_divide,
            "power": jnp.power, "equal": jnp.equal, "not_equal": jnp.not_equal, "greater": jnp.greater,
            "greater_equal": jnp.greater_equal, "less": jnp.less, "less_equal": jnp.less_equal,
            "where": jnp.where, "negative": jnp.negative, "sign": jnp.sign, "exp": jnp.exp, "log": jnp.log,
            "log1p": jnp.log1p, "sqrt": jnp.sqrt, "tanh": jnp.tanh, "erf": lax.erf,
            "sigmoid": jax.nn.sigmoid,  # lax.logistic: stable for large |x|
            "relu": jax.nn.relu,        # its custom JVP masks with x > 0: gradient 0 at 0
            "sum": jnp.sum, "mean": jnp.mean,
            "max": jnp.max, "min": jnp.min,  # the reduce-max JVP splits the gradient evenly between ties
            "reshape": jnp.reshape, "transpose": jnp.transpose, "take_along_axis": jnp.take_along_axis,
            "stop_gradient": lax.stop_gradient,
            # keras.ops's additions (unidl.backend.OPTIONAL, DERIVED and composites) with the contract's rules
            "sin": jnp.sin, "cos": jnp.cos, "tan": jnp.tan, "rsqrt": lax.rsqrt, "cumsum": jnp.cumsum,
            "mod": jnp.mod, "floor_divide": jnp.floor_divide, "prod": jnp.prod, "all": jnp.all, "any": jnp.any,
            "logical_and": jnp.logical_and, "logical_or": jnp.logical_or, "logical_xor": jnp.logical_xor,
            "logical_not": jnp.logical_not, "isnan": jnp.isnan, "isinf": jnp.isinf, "isfinite": jnp.isfinite,
            "silu": jax.nn.silu, "selu": jax.nn.selu, "gelu": jax.nn.gelu, "log_sigmoid": jax.nn.log_sigmoid,
            "softsign": jax.nn.soft_sign,
        })

    # ----------------------------------------------------------------- info
    def _resolve_device(self, device: str | None):
        if device is None:
            return jax.devices("cpu")[0]
        wanted = str(device).replace("cuda", "gpu")  # JAX calls CUDA devices "gpu"
        for d in jax.devices() + jax.devices("cpu"):
            if wanted in (f"{d.platform}:{d.id}", d.platform):
                return d
        raise BackendError(f"jax backend: unknown device {device!r}; available devices: {self.devices()}")

    def framework_version(self) -> str:
        return jax.__version__

    def devices(self) -> list[str]:
        return sorted({f"{d.platform}:{d.id}" for d in jax.devices() + jax.devices("cpu")})

    # ------------------------------------------- the mixin's two JAX calls
    def differentiate(self, fn: Callable, args: list) -> tuple[Tensor, Any, list]:
        (value, aux), grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))), has_aux=True)(*args)
        return value, aux, list(grads)

    def jit(self, fn: Callable) -> Callable:
        return jax.jit(fn)  # Python floats among the arguments are traced (weakly typed), not constants

    # ----------------------------------------------------------- conversion
    def convert(self, x: Any, dtype: str | None = None) -> Tensor:
        x = unwrap(x)
        if isinstance(x, jax.Array):  # already ours (or a tracer): only the dtype may change
            if dtype is None:  # (bfloat16's NumPy kind is "V", so ask jnp what is floating)
                floating = jnp.issubdtype(x.dtype, jnp.floating)
                dtype = self.dtype if floating else "bool" if x.dtype.kind == "b" else "int64"
            return x.astype(self._dtypes[dtype])
        arr = np.asarray(x)
        if dtype is None:
            kind = arr.dtype.kind
            if kind not in "fiub":
                raise BackendError(f"jax backend: cannot convert an array of dtype {arr.dtype}")
            dtype = self.dtype if kind == "f" else "bool" if kind == "b" else "int64"
        # jnp.array copies (jax.device_put may alias a NumPy buffer on the CPU).
        return jnp.array(arr, dtype=self._dtypes[dtype], device=self._device)

    def to_numpy(self, x: Tensor) -> np.ndarray:
        return np.array(unwrap(x), copy=True)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        # Python ints; a symbolic dimension (jax.export's shape polymorphism: "jax_export") stays as it is.
        return tuple(d if isinstance(d, int) else _dimension(d) for d in jnp.shape(unwrap(x)))

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        return jnp.asarray(unwrap(x)).astype(self._dtypes[dtype])  # float -> int truncates toward zero

    # ------------------------------------------------------ ops with a twist
    def argmax(self, x, axis: int | None = -1) -> Tensor:
        return jnp.argmax(unwrap(x), axis=axis)  # the contract's default axis is -1, jnp's None; first index on ties

    def concatenate(self, xs: Sequence[Tensor], axis: int = -1) -> Tensor:
        return jnp.concatenate([unwrap(x) for x in xs], axis=axis)

    def take(self, x, indices, axis: int = 0) -> Tensor:
        return jnp.take(unwrap(x), unwrap(indices), axis=axis)  # negative indices count from the end

    def matmul(self, a, b) -> Tensor:
        return jnp.matmul(unwrap(a), unwrap(b), precision=self._precision)

    def dtype_of(self, x) -> str:
        return jnp.dtype(unwrap(x).dtype).name

    def _rounding(self, fn, x):
        x = unwrap(x)
        return fn(x) if jnp.issubdtype(x.dtype, jnp.floating) else x  # integers pass unchanged

    def floor(self, x) -> Tensor:
        return self._rounding(jnp.floor, x)

    def ceil(self, x) -> Tensor:
        return self._rounding(jnp.ceil, x)

    def round(self, x) -> Tensor:  # noqa: A003
        return self._rounding(jnp.round, x)  # halves to even

    def argsort(self, x, axis: int = -1) -> Tensor:
        return jnp.argsort(unwrap(x), axis=axis, stable=True)

    def argmin(self, x, axis: int | None = -1) -> Tensor:
        return jnp.argmin(unwrap(x), axis=axis)  # the contract's default axis is -1; first index on ties

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        return jnp.stack([unwrap(x) for x in xs], axis=axis)

    def einsum(self, subscripts: str, *operands) -> Tensor:
        return jnp.einsum(subscripts, *[unwrap(x) for x in operands], precision=self._precision)

    # ------------------------------------------------------------ NN ops
    # unidl.geometry holds the contract's padding rules ("same" spelled out, the extra
    # cell after), so XLA gets explicit (before, after) pairs.
    def pad(self, x, pad_width, value: float = 0.0) -> Tensor:
        x = unwrap(x)
        try:
            widths = [(int(a), int(b)) for a, b in pad_width]
        except (TypeError, ValueError):
            widths = []
        if len(widths) != x.ndim or any(a < 0 or b < 0 for a, b in widths):
            raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for "
                             f"each of the {x.ndim} axes, got {pad_width!r}")
        return jnp.pad(x, widths, constant_values=value)

    def conv2d(self, x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), groups: int = 1) -> Tensor:
        x, kernel = unwrap(x), unwrap(kernel)
        check_rank4(x.shape, "x (N, H, W, C)", "conv2d")
        check_rank4(kernel.shape, "kernel (kh, kw, C // groups, O)", "conv2d")
        s, d = pair(strides, "strides", "conv2d"), pair(dilation, "dilation", "conv2d")
        kh, kw, cg, o = kernel.shape
        if groups < 1 or x.shape[3] != cg * groups or o % groups:
            raise ValueError(f"conv2d: x has {x.shape[3]} channels and the kernel shape is {kernel.shape}; with "
                             f"groups={groups} the kernel must be (kh, kw, C // groups, O), C, O divisible by groups")
        pads = resolve_padding(padding, x.shape[1:3], (kh, kw), s, d, "conv2d")
        check_window([n + sum(p) for n, p in zip(x.shape[1:3], pads)], (kh, kw), d, "conv2d")
        # Canonical layouts are NHWC images and HWIO kernels; XLA takes them as they are.
        return lax.conv_general_dilated(x, kernel, window_strides=s, padding=pads, rhs_dilation=d,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
                                        precision=self._precision)

    def conv2d_transpose(self, x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)) -> Tensor:
        x, kernel = unwrap(x), unwrap(kernel)
        check_rank4(x.shape, "x (N, H, W, C)", "conv2d_transpose")
        check_rank4(kernel.shape, "kernel (kh, kw, O, C)", "conv2d_transpose")
        s, d = pair(strides, "strides", "conv2d_transpose"), pair(dilation, "dilation", "conv2d_transpose")
        (n, h, w, c), (kh, kw, o, kc) = x.shape, kernel.shape
        if kc != c:
            raise ValueError(f"conv2d_transpose: x has {c} channels but the kernel (kh, kw, O, C) is {kernel.shape}")
        out_hw, _ = transpose_geometry(padding, (h, w), (kh, kw), s, d)
        # The contract's definition, literally: the transpose of the linear map y -> conv2d(y, kernel)
        # on (N, H', W', O) inputs, applied to x. JAX derives it (and its own gradients) for us.
        y = jax.ShapeDtypeStruct((n, *out_hw, o), x.dtype)
        transpose = jax.linear_transpose(lambda t: self.conv2d(t, kernel, s, padding, d), y)
        return transpose(x)[0]

    def max_pool2d(self, x, pool_size, strides=None, padding="valid") -> Tensor:
        x = unwrap(x)
        window, step, pads = self._window(x, pool_size, strides, padding, "max_pool2d")
        # -inf padding never wins; the reduce-window-max gradient goes to the first maximum.
        return lax.reduce_window(x, -jnp.inf, lax.max, window, step, pads)

    def avg_pool2d(self, x, pool_size, strides=None, padding="valid") -> Tensor:
        x = unwrap(x)
        window, step, pads = self._window(x, pool_size, strides, padding, "avg_pool2d")
        total = lax.reduce_window(x, 0.0, lax.add, window, step, pads)
        # Divide by the cells of each window inside the input (padding not counted, as Keras).
        count = lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, window, step, pads)
        return total / count

    @staticmethod
    def _window(x, pool_size, strides, padding, op: str):
        """reduce_window's window, strides and padding over all four axes (NHWC)."""
        k, s, pads = pool_geometry(x.shape, pool_size, strides, padding, op)
        return (1, *k, 1), (1, *s, 1), [(0, 0), *pads, (0, 0)]

    # ------------------------------------------------------------ composites
    # Native versions of the composites on the training hot path (the kit checks them
    # against the generic ones in unidl.backend.Backend).
    def softmax(self, x, axis: int = -1):
        return jax.nn.softmax(unwrap(x), axis=axis)

    def log_softmax(self, x, axis: int = -1):
        return jax.nn.log_softmax(unwrap(x), axis=axis)

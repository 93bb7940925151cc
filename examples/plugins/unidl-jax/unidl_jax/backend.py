"""``JaxBackend``: unidl's primitives on JAX arrays, gradients by ``jax.value_and_grad``.

The model a backend author copies. Three things differ from a framework with
mutable tensors (torch, TensorFlow), and each is solved once, here:

1. **Variables.** JAX arrays are immutable, so a unidl variable is a small
   mutable holder, :class:`JaxVariable`, whose ``.value`` is a JAX array;
   ``assign`` swaps that array. Holders reach the ops (layer code passes its
   weights), and JAX no longer accepts ``__jax_array__`` objects, so every op
   unwraps them: the ops that are plain ``jax.numpy`` functions are bound
   through :func:`_lifted`, the others call :func:`_v`.
2. **Gradients.** ``value_and_grad(fn, variables)`` gets a closure that
   *reads* the variables, while ``jax.value_and_grad`` differentiates a pure
   function of its *arguments*. The bridge: inside the differentiated
   function, each holder's value is swapped for the traced argument; it is put
   back afterwards. A holder that ``fn`` assigns (BatchNormalization's moving
   statistics) would keep a tracer, so its new value leaves the trace as an
   auxiliary output and is written back once the trace is over.
3. **64-bit.** JAX makes int32/float32 unless ``jax_enable_x64`` is on, and the
   contract wants int64 integers (indices, argmax) in every compute dtype, so
   building this backend turns that switch on. It is process-global: JAX code
   elsewhere in the process that relied on the 32-bit default then gets
   64-bit results when it does not name a dtype. Floats made here always
   take the backend's compute dtype, so float32 models stay float32.

Matmuls and convolutions ask for ``Precision.HIGHEST``: the default on GPUs
and TPUs rounds operands to TF32/bfloat16, beyond the kit's float32 tolerances.
``compile_step`` jit-compiles whole train steps (same trick as 2., for all state).
"""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from unidl.backend import Backend, BackendError, Tensor

jax: Any = None  # bound by JaxBackend.__init__, so importing this module imports no JAX
jnp: Any = None
lax: Any = None


class JaxVariable:
    """A mutable slot holding an immutable JAX array: what ``variable()`` returns."""
    __slots__ = ("value", "name", "__weakref__")

    def __init__(self, value, name: str = ""):
        self.value, self.name = value, name

    def __repr__(self) -> str:
        return f"<JaxVariable {self.name} shape={self.value.shape} dtype={self.value.dtype}>"


def _v(x):
    """The array inside a holder; anything else passes through."""
    return x.value if type(x) is JaxVariable else x


def _lifted(fn: Callable) -> Callable:
    """``fn`` (a jax.numpy function) made to accept holders as positional arguments."""
    def op(*args, **kwargs):
        return fn(*[_v(a) for a in args], **kwargs)
    op.__name__ = getattr(fn, "__name__", "op")
    return op


# ---------------------------------------------------------- NN-op helpers (pure Python)
# unidl.geometry holds the contract's padding rules ("same" spelled out, extra cell after),
# so a plugin never re-derives them; XLA then gets explicit (before, after) pairs.
from unidl.geometry import pair as _pair  # noqa: E402
from unidl.geometry import resolve_padding as _pads  # noqa: E402


def _check_rank4(x, what: str, op: str) -> None:
    if len(x.shape) != 4:
        raise ValueError(f"{op}: {what} must have 4 dimensions, got shape {tuple(x.shape)}")


_ALL_HOLDERS: "weakref.WeakValueDictionary[int, JaxVariable]" = weakref.WeakValueDictionary()
_HOLDER_IDS = itertools.count()


class JaxBackend(Backend):
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
                                                  "bfloat16", "float16")}
        self._writes = threading.local()  # holders assigned inside the current trace (see value_and_grad)
        # Every live variable of every JaxBackend, in creation order (compile_step): a custom step
        # may train several models, each compiled with its own backend instance.
        self._holders = _ALL_HOLDERS
        self._precision = lax.Precision.HIGHEST

        # jax.numpy already has the contract's semantics for these (NumPy broadcasting,
        # Python scalars on either side keep the tensor's dtype, axis=() reduces nothing);
        # _lifted only unwraps variable holders.
        for op, fn in {
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
        }.items():
            setattr(self, op, _lifted(fn))

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

    # ----------------------------------------------------------- conversion
    def convert(self, x: Any, dtype: str | None = None) -> Tensor:
        x = _v(x)
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
        return np.array(_v(x), copy=True)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(int(d) for d in jnp.shape(_v(x)))

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        return jnp.asarray(_v(x)).astype(self._dtypes[dtype])  # float -> int truncates toward zero

    # ---------------------------------------------------------- elementwise
    # jnp.maximum/minimum split the gradient on ties; the contract gives all of it to a.
    def maximum(self, a, b):
        a, b = _v(a), _v(b)
        return jnp.where(jnp.greater_equal(a, b), a, b)

    def minimum(self, a, b):
        a, b = _v(a), _v(b)
        return jnp.where(jnp.less_equal(a, b), a, b)

    def abs(self, x):
        # jnp.abs has gradient 1 at 0; x * sign(x) is |x| with gradient sign(x), 0 at 0.
        x = _v(x)
        return x * jnp.sign(x)

    def clip(self, x, lo, hi):
        # jnp.clip would split the gradient at the bounds; with the tie rule above the
        # gradient is 1 on [lo, hi], bounds included.
        return self.minimum(self.maximum(x, lo), hi)

    def argmax(self, x, axis: int | None = -1) -> Tensor:
        return jnp.argmax(_v(x), axis=axis)  # the contract's default axis is -1, jnp's None; first index on ties

    # ------------------------------------------------------ shape, indexing
    def concatenate(self, xs: Sequence[Tensor], axis: int = -1) -> Tensor:
        return jnp.concatenate([_v(x) for x in xs], axis=axis)

    def take(self, x, indices, axis: int = 0) -> Tensor:
        return jnp.take(_v(x), _v(indices), axis=axis)  # negative indices count from the end

    def matmul(self, a, b) -> Tensor:
        return jnp.matmul(_v(a), _v(b), precision=self._precision)

    # ------------------------------------------------------------ NN ops
    def pad(self, x, pad_width, value: float = 0.0) -> Tensor:
        x = _v(x)
        try:
            widths = [(int(a), int(b)) for a, b in pad_width]
        except (TypeError, ValueError):
            widths = []
        if len(widths) != x.ndim or any(a < 0 or b < 0 for a, b in widths):
            raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for "
                             f"each of the {x.ndim} axes, got {pad_width!r}")
        return jnp.pad(x, widths, constant_values=value)

    def conv2d(self, x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), groups: int = 1) -> Tensor:
        x, kernel = _v(x), _v(kernel)
        _check_rank4(x, "x (N, H, W, C)", "conv2d")
        _check_rank4(kernel, "kernel (kh, kw, C // groups, O)", "conv2d")
        s, d = _pair(strides, "strides", "conv2d"), _pair(dilation, "dilation", "conv2d")
        kh, kw, cg, o = kernel.shape
        if groups < 1 or x.shape[3] != cg * groups or o % groups:
            raise ValueError(f"conv2d: x has {x.shape[3]} channels and the kernel shape is {kernel.shape}; with "
                             f"groups={groups} the kernel must be (kh, kw, C // groups, O), C, O divisible by groups")
        pads = _pads(padding, x.shape[1:3], (kh, kw), s, d, "conv2d")
        if any(n + sum(p) < (k - 1) * dd + 1 for n, p, k, dd in zip(x.shape[1:3], pads, (kh, kw), d)):
            raise ValueError(f"conv2d: the (padded) input {x.shape[1:3]} is smaller than the kernel {(kh, kw)}")
        # Canonical layouts are NHWC images and HWIO kernels; XLA takes them as they are.
        return lax.conv_general_dilated(x, kernel, window_strides=s, padding=pads, rhs_dilation=d,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
                                        precision=self._precision)

    def conv2d_transpose(self, x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)) -> Tensor:
        x, kernel = _v(x), _v(kernel)
        _check_rank4(x, "x (N, H, W, C)", "conv2d_transpose")
        _check_rank4(kernel, "kernel (kh, kw, O, C)", "conv2d_transpose")
        s, d = _pair(strides, "strides", "conv2d_transpose"), _pair(dilation, "dilation", "conv2d_transpose")
        (n, h, w, c), (kh, kw, o, kc) = x.shape, kernel.shape
        if kc != c:
            raise ValueError(f"conv2d_transpose: x has {c} channels but the kernel (kh, kw, O, C) is {kernel.shape}")
        full = ((h - 1) * s[0] + (kh - 1) * d[0] + 1, (w - 1) * s[1] + (kw - 1) * d[1] + 1)
        if isinstance(padding, str) and padding.lower() == "same":
            out_hw = (h * s[0], w * s[1])
        else:  # "valid" or explicit: the full size less the padding the forward conv2d adds
            out_hw = tuple(f - sum(p) for f, p in zip(full, _pads(padding, full, (kh, kw), s, d, "conv2d_transpose")))
        if min(out_hw) < 1:
            raise ValueError(f"conv2d_transpose: padding {padding!r} leaves an empty output {out_hw}")
        # The contract's definition, literally: the transpose of the linear map y -> conv2d(y, kernel)
        # on (N, H', W', O) inputs, applied to x. JAX derives it (and its own gradients) for us.
        y = jax.ShapeDtypeStruct((n, *out_hw, o), x.dtype)
        transpose = jax.linear_transpose(lambda t: self.conv2d(t, kernel, s, padding, d), y)
        return transpose(x)[0]

    def _pool_setup(self, x, pool_size, strides, padding, op: str):
        """reduce_window's window, strides and padding, all four axes (NHWC)."""
        _check_rank4(x, "x (N, H, W, C)", op)
        k = _pair(pool_size, "pool_size", op)
        s = k if strides is None else _pair(strides, "strides", op)  # Keras: strides default to pool_size
        pads = _pads(padding, x.shape[1:3], k, s, (1, 1), op)
        if any(p >= kk for pair, kk in zip(pads, k) for p in pair):
            raise ValueError(f"{op}: padding {pads} must be smaller than the pool size {k}")
        if any(n + sum(p) < kk for n, p, kk in zip(x.shape[1:3], pads, k)):
            raise ValueError(f"{op}: the (padded) input {x.shape[1:3]} is smaller than the window {k}")
        return (1, *k, 1), (1, *s, 1), [(0, 0), *pads, (0, 0)]

    def max_pool2d(self, x, pool_size, strides=None, padding="valid") -> Tensor:
        x = _v(x)
        window, step, pads = self._pool_setup(x, pool_size, strides, padding, "max_pool2d")
        # -inf padding never wins; the reduce-window-max gradient goes to the first maximum.
        return lax.reduce_window(x, -jnp.inf, lax.max, window, step, pads)

    def avg_pool2d(self, x, pool_size, strides=None, padding="valid") -> Tensor:
        x = _v(x)
        window, step, pads = self._pool_setup(x, pool_size, strides, padding, "avg_pool2d")
        total = lax.reduce_window(x, 0.0, lax.add, window, step, pads)
        # Divide by the cells of each window inside the input (padding not counted, as Keras).
        count = lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, window, step, pads)
        return total / count

    # -------------------------------------------------- state, autodiff
    def variable(self, value: Any, trainable: bool = True, name: str = "") -> JaxVariable:
        holder = JaxVariable(self.convert(value), name)  # gradients are taken for what value_and_grad is given
        self._holders[next(_HOLDER_IDS)] = holder
        return holder

    def assign(self, variable: JaxVariable, value: Any) -> None:
        variable.value = self.convert(value).astype(variable.value.dtype)
        written = getattr(self._writes, "stack", None)
        if written:  # assigned while a gradient is traced: value_and_grad writes it back
            written[-1][id(variable)] = variable

    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[JaxVariable]) -> tuple[Tensor, Any, list]:
        def loss(*values):
            for var, value in zip(variables, values):
                var.value = value  # fn now reads the traced argument through the holder
            return fn()
        return self._differentiate(loss, [v.value for v in variables], variables)

    def grad_wrt_inputs(self, fn: Callable[..., Tensor], inputs: Sequence[Any]) -> tuple[Tensor, list]:
        value, _, grads = self._differentiate(lambda *xs: (fn(*xs), None), [self.convert(x) for x in inputs])
        return value, grads

    def _differentiate(self, fn, args: list, holders: Sequence[JaxVariable] = ()):
        """``jax.value_and_grad`` of ``fn(*args) -> (value, aux)`` w.r.t. every arg. ``holders``
        (those ``fn`` swaps args into) get their arrays back; ones ``fn`` assigns, their new values."""
        if not args:  # nothing to differentiate with respect to
            value, aux = fn()
            return value, aux, []
        saved = [h.value for h in holders]
        stack = self._writes.__dict__.setdefault("stack", [])
        written: dict[int, JaxVariable] = {}

        def traced(*xs):
            value, aux = fn(*xs)
            # Values assigned in the trace are tracers; hand them out as auxiliary results.
            return value, (aux, [w.value for w in written.values()])

        stack.append(written)
        try:
            (value, (aux, new)), grads = jax.value_and_grad(traced, argnums=tuple(range(len(args))),
                                                            has_aux=True)(*args)
        finally:
            stack.pop()
            for h, original in zip(holders, saved):
                h.value = original
        for holder, fresh in zip(written.values(), new):
            holder.value = fresh
        return value, aux, list(grads)

    def compile_step(self, step: Callable) -> Callable:
        """``jax.jit`` the train step: one XLA program per batch shape, not op-by-op dispatch.

        jit traces a pure function, but ``step`` reads and assigns variables. So every live
        variable of this backend (``compile(backend="jax")`` builds one backend per model: its
        weights and optimizer slots) goes in, as one read but not passed would be frozen into
        the program as a constant; it is swapped into its holder while tracing and comes back
        out. The holders are a static argument: a program is reused only for the same ones.
        ``scalars`` (learning rate...) are traced, so a schedule does not recompile. The
        first call runs eagerly, to create the optimizer's slots before any trace.
        """
        def pure(holders, values, args):
            for holder, value in zip(holders, values):
                holder.value = value
            return step(*args), [holder.value for holder in holders]
        jitted = jax.jit(pure, static_argnums=0)
        calls = itertools.count()

        def run(*args):
            if next(calls) == 0:
                return step(*args)
            holders = tuple(self._holders.values())
            values = [h.value for h in holders]
            try:
                out, values = jitted(holders, values, args)
            finally:  # the new values, or after a failed trace the old ones: never tracers
                for holder, value in zip(holders, values):
                    holder.value = value
            return out
        return run

    # ------------------------------------------------------------ composites
    # Native versions of the composites on the training hot path (the kit checks them
    # against the generic ones in unidl.backend.Backend).
    def softmax(self, x, axis: int = -1):
        return jax.nn.softmax(_v(x), axis=axis)

    def log_softmax(self, x, axis: int = -1):
        return jax.nn.log_softmax(_v(x), axis=axis)

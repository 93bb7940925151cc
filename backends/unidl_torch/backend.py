"""``TorchBackend``: unidl's primitives on PyTorch tensors and autograd.

torch is imported by ``TorchBackend.__init__`` (into this module's ``torch``
global), never at module import, so loading the plugin stays free.

Where a torch function already has the contract's exact semantics it is bound
as an instance attribute (``self.add = torch.add``): ``unidl.ops`` then calls
torch directly, with no Python frame of ours in between. Methods exist only
where the contract differs from torch's native rule (tie-breaking, axis
defaults, numpy-style indexing); each says how.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import numpy as np

from unidl.geometry import check_rank4 as _check_rank4, check_window as _check_window  # noqa: I001
from unidl.geometry import pair as _pair, pool_geometry as _pool_geometry
from unidl.geometry import resolve_padding as _resolve_padding, transpose_geometry as _transpose_geometry
from unidl.backend import HALF_DTYPES, Backend, BackendError, Tensor

from .capture import host_constants

torch: Any = None  # bound by TorchBackend.__init__
F: Any = None  # torch.nn.functional, bound there too

_INT_KINDS = "iu"  # NumPy dtype kinds that ``convert`` turns into int64


# ------------------------------------------------------------ NN geometry
# Padding geometry comes from unidl.geometry (the contract's rules): "same" puts its odd
# cell after (bottom/right), which torch's own padding (symmetric) cannot express, so it
# is resolved to explicit (before, after) pairs and applied by F.pad when asymmetric.


def _symmetric(pads, limit: Sequence[int] | None = None) -> tuple[int, int] | None:
    """(pad_h, pad_w) when both axes pad equally before and after (torch's own padding), else None.

    ``limit``: the largest pad torch takes per axis (its pools refuse more than half the window).
    """
    (t, b), (l, r) = pads
    if t != b or l != r or (limit is not None and (t > limit[0] or l > limit[1])):
        return None
    return t, l


class _DtypeTable(dict):
    """unidl dtype name -> torch dtype; an unknown name is a BackendError listing the known ones."""

    def __missing__(self, name):
        raise BackendError(f"backend 'torch': unknown dtype {name!r}; use one of {sorted(self)}")


def _positive_strides(array, dtype) -> np.ndarray:
    """``array`` in ``dtype``, copied when it is a view with negative strides (x[::-1]), which torch refuses."""
    array = np.asarray(array, dtype=dtype)
    return array.copy() if any(s < 0 for s in array.strides) else array


def _torch_pad_list(pads) -> tuple[int, int, int, int]:
    """((top, bottom), (left, right)) -> F.pad's order for NCHW: (left, right, top, bottom)."""
    (t, b), (l, r) = pads
    return (l, r, t, b)


class TorchBackend(Backend):
    """PyTorch backend: CPU or CUDA, float32 or float64."""

    name = "torch"
    framework = "torch"
    mixed_precision_dtypes = ("bfloat16", "float16")

    option_defaults = {
        "tf32": (False, "let CUDA matmuls and convolutions use TensorFloat-32 (faster on Ampere and later, "
                        "about 3 decimal digits: results then differ from the CPU and the other backends)"),
    }

    def __init__(self, dtype: str = "float32", device: str | None = None, **options):
        global torch, F
        import torch
        import torch.nn.functional as F

        super().__init__(dtype=dtype, device=device, **options)
        self._device = self._resolve_device(device)
        if self._device.type == "cuda":
            # TF32 is decided here, not left to torch's defaults (matmuls off, cuDNN convolutions on):
            # off by default, so that results agree with the CPU, the reference and the other backends.
            # torch's switches are process-wide: the backend built last decides for every model.
            torch.backends.cuda.matmul.allow_tf32 = bool(self.options["tf32"])
            torch.backends.cudnn.allow_tf32 = bool(self.options["tf32"])
            # cuDNN's fused recurrent kernels (the native SimpleRNN/LSTM/GRU) order their float32 sums
            # otherwise than the CPU: seen 2.6e-6 off (relative 9e-5) on an H200, over FORWARD_F32.
            why = "cuDNN's fused recurrent kernels round float32 sums in another order than the CPU"
            self.conformance_tolerances = {
                **type(self).conformance_tolerances,
                **{f"{family}:{layer}:float32": (1e-4, 1e-5, why) for family in ("layer", "native")
                   for layer in ("SimpleRNN", "LSTM", "GRU", "Bidirectional")}}
        if self._device.type == "cpu":
            # Flush subnormal floats to zero in this (the training) thread, as TensorFlow and XLA do
            # on CPUs: Adam's moment of a dead ReLU unit decays into subnormals after some hundred
            # steps, and x86 arithmetic on them is so slow that a whole step took 2x longer.
            torch.set_flush_denormal(True)
        self.device = str(self._device)
        self._dtypes = _DtypeTable({"float32": torch.float32, "float64": torch.float64,
                                    "bfloat16": torch.bfloat16, "float16": torch.float16,
                                    "int32": torch.int32, "int64": torch.int64, "bool": torch.bool,
                                    "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16})
        self._float = self._dtypes[dtype]
        self._divisors: dict[tuple, Any] = {}  # avg_pool2d's per-window counts, per geometry (_pool_divisor)

        # Exact contract semantics already; torch.add/sub/mul/div/pow take a
        # Python scalar on either side and keep the tensor's float dtype.
        # Bound torch functions take positional arguments only (torch names
        # them input/other, not a/b).
        self.add = torch.add
        self.subtract = torch.sub
        self.multiply = torch.mul
        self.divide = torch.div  # true division, also for integer tensors
        self.power = torch.pow
        # torch.eq(2.0, t) is refused; the operators reflect a leading scalar.
        self.equal = operator.eq
        self.not_equal = operator.ne
        self.greater = operator.gt
        self.greater_equal = operator.ge
        self.less = operator.lt
        self.less_equal = operator.le
        self.where = torch.where
        self.negative = torch.neg
        self.abs = torch.abs  # gradient sgn(x): 0 at 0, as the contract asks
        self.sign = torch.sign  # zero gradient
        self.exp = torch.exp
        self.log = torch.log
        self.log1p = torch.log1p
        self.sqrt = torch.sqrt
        self.tanh = torch.tanh
        self.sigmoid = torch.sigmoid
        self.relu = torch.relu  # backward masks with x > 0: gradient 0 at 0
        self.erf = torch.erf
        self.matmul = torch.matmul
        self.stop_gradient = torch.Tensor.detach
        # keras.ops's additions with the contract's semantics (optional ops, derived, composites).
        # floor, ceil and round return integer tensors unchanged and have zero gradient.
        self.sin = torch.sin
        self.cos = torch.cos
        self.tan = torch.tan
        self.floor = torch.floor
        self.ceil = torch.ceil
        self.round = torch.round  # halves to even
        self.mod = torch.remainder  # the sign of the divisor, as numpy.mod; d/db = -floor(a / b)
        self.rsqrt = torch.rsqrt
        self.isnan = torch.isnan
        self.isinf = torch.isinf
        self.isfinite = torch.isfinite
        self.silu = F.silu
        self.selu = torch.selu  # Keras's constants
        self.relu6 = F.relu6  # hardtanh(0, 6): gradient 1 on the open interval, as the contract
        self.softsign = F.softsign
        self.log_sigmoid = F.logsigmoid
        # (not F.hardsigmoid: its backward multiplies by a float32 1/6, off by 3e-8 in float64)

    # ---------------------------------------------------------------- device
    def native_layer(self, layer):
        # torch's fused recurrent kernels and scaled_dot_product_attention (see native_layers.py)
        return _native_kernel_for(self, layer)

    def device_peak_memory_mb(self) -> float | None:
        if self._device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self._device) / 2**20

    def _resolve_device(self, device: str | None):
        name = "cpu" if device is None else str(device)
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise BackendError(
                f"torch backend: unknown device {name!r} ({err}); "
                f"available devices: {self.devices()}") from None
        if dev.type == "cpu":
            return torch.device("cpu")
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendError(
                    f"torch backend: device {name!r} asked for, but CUDA is not available "
                    f"to this torch {torch.__version__}; available devices: {self.devices()}")
            index = torch.cuda.current_device() if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise BackendError(
                    f"torch backend: device {name!r} does not exist; "
                    f"available devices: {self.devices()}")
            return torch.device("cuda", index)
        raise BackendError(
            f"torch backend: device {name!r} is not supported; "
            f"available devices: {self.devices()}")

    def framework_version(self) -> str:
        return torch.__version__

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    # ------------------------------------------------------------ conversion
    def convert(self, x: Any, dtype: str | None = None) -> Tensor:
        if isinstance(x, torch.Tensor):
            if dtype is not None:
                target = self._dtypes[dtype]
            elif x.is_floating_point():
                target = self._float
            elif x.dtype == torch.bool:
                target = torch.bool
            else:
                target = torch.int64
            return x.to(device=self._device, dtype=target)
        arr = np.asarray(x)
        if dtype is None:
            kind = arr.dtype.kind
            if kind == "f":
                dtype = self.dtype
            elif kind in _INT_KINDS:
                dtype = "int64"
            elif kind == "b":
                dtype = "bool"
            else:
                raise BackendError(f"torch backend: cannot convert an array of dtype {arr.dtype}")
        constants = host_constants.get()
        if constants is not None:  # inside a step being warmed up or captured as a CUDA graph
            return constants.tensor(arr, dtype, lambda: self._from_numpy(arr, dtype))
        return self._from_numpy(arr, dtype)

    def _from_numpy(self, arr: np.ndarray, dtype: str) -> Tensor:
        # torch.tensor copies, so the result never aliases the caller's array.
        if dtype in HALF_DTYPES:  # NumPy has no bfloat16: go through float32
            return torch.tensor(_positive_strides(arr, np.float32), device=self._device).to(self._dtypes[dtype])
        return torch.tensor(_positive_strides(arr, dtype), device=self._device)

    def _host_tensor(self, value: Any, dtype=None) -> Tensor:
        """``torch.as_tensor(value, dtype)`` on this device, for host data an op is given (indices, repeats).

        Inside a step being captured as a CUDA graph, where a host-to-device copy cannot be recorded,
        this is the tensor the step's eager warm-up made of the same data (``capture.HostConstants``).
        """
        constants = host_constants.get()
        if constants is None:
            return torch.as_tensor(value, dtype=dtype, device=self._device)
        return constants.tensor(value, dtype, lambda: torch.as_tensor(value, dtype=dtype, device=self._device))

    def to_numpy(self, x: Tensor) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            # .numpy() of a CPU tensor shares its memory; the caller gets its own copy.
            return np.array(x.detach().cpu().numpy(), copy=True)
        return np.array(x, copy=True)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        return x.to(self._dtypes[dtype])

    # ------------------------------------------------------------ elementwise
    # maximum and minimum are Backend's where() forms: torch.maximum/minimum send half
    # the gradient to each side on ties, where the contract sends all of it to ``a``.
    def clip(self, x: Tensor, lo, hi) -> Tensor:
        # A method only to take the contract's argument names (torch says min/max).
        # clamp's backward masks with lo <= x <= hi, inclusive, as the contract asks.
        return torch.clamp(x, lo, hi)

    # ------------------------------------------------------------- reductions
    # Positional arguments: torch's parser is measurably slower with keywords.
    # axis=() means "reduce nothing" in NumPy but "reduce everything" in torch.
    def sum(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if axis == ():
            return x
        return torch.sum(x, axis, keepdims)

    def mean(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if axis == ():
            return x
        return torch.mean(x, axis, keepdims)

    # amax/amin split the gradient evenly between ties (torch.max(x, dim) would
    # give it all to one index), as the contract asks.
    def max(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if axis == ():
            return x
        return torch.amax(x, () if axis is None else axis, keepdims)

    def min(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if axis == ():
            return x
        return torch.amin(x, () if axis is None else axis, keepdims)

    def argmax(self, x: Tensor, axis: int | None = -1) -> Tensor:
        return torch.argmax(x, axis)  # first index on ties, like NumPy

    # ------------------------------------------------------- shape, indexing
    def reshape(self, x: Tensor, shape) -> Tensor:
        return torch.reshape(x, (shape,) if isinstance(shape, int) else shape)

    def transpose(self, x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
        if axes is None:
            axes = range(x.ndim - 1, -1, -1)
        return x.permute(*axes)

    def concatenate(self, xs: Sequence[Tensor], axis: int = -1) -> Tensor:
        return torch.cat(tuple(xs), axis)

    def unstack(self, x: Tensor, axis: int = 0) -> list:
        return list(torch.unbind(x, axis))  # views; the backward stacks the slices' gradients once

    def _indices(self, indices: Any) -> Tensor:
        if isinstance(indices, torch.Tensor):
            return indices
        return self._host_tensor(_positive_strides(indices, np.int64))

    def take(self, x: Tensor, indices: Any, axis: int = 0) -> Tensor:
        # One advanced index at position ``axis`` gives numpy.take exactly:
        # shape x.shape[:axis] + indices.shape + x.shape[axis+1:], negative
        # indices counted from the end, duplicates accumulating in the gradient.
        axis = axis % x.ndim
        return x[(slice(None),) * axis + (self._indices(indices),)]

    def take_along_axis(self, x: Tensor, indices: Any, axis: int) -> Tensor:
        return torch.take_along_dim(x, self._indices(indices).long(), axis)

    # ------------------------------------------------ neural-network primitives
    # Canonical NHWC tensors go to torch as NCHW views (permute: no copy; torch's CPU
    # kernels then run in channels-last memory) and come back permuted the other way.
    # Kernels: canonical (kh, kw, in, out) -> torch's (out, in, kh, kw).
    def pad(self, x: Tensor, pad_width, value: float = 0.0) -> Tensor:
        try:
            widths = tuple(tuple(p) for p in pad_width)
        except TypeError:
            widths = ()
        if len(widths) != x.ndim or not all(
                len(p) == 2 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in p) for p in widths):
            raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for each "
                             f"of the {x.ndim} axes, got {pad_width!r}")
        # F.pad lists the LAST axis first: (last_before, last_after, second_last_before, ...).
        flat = tuple(int(v) for pair in reversed(widths) for v in pair)
        return F.pad(x, flat, "constant", value) if any(flat) else x

    def conv2d(self, x: Tensor, kernel: Tensor, strides=(1, 1), padding="valid", dilation=(1, 1),
               groups: int = 1) -> Tensor:
        _check_rank4(x.shape, "x (N, H, W, C)", "conv2d")
        _check_rank4(kernel.shape, "kernel (kh, kw, C // groups, O)", "conv2d")
        s, d = _pair(strides, "strides", "conv2d"), _pair(dilation, "dilation", "conv2d")
        kh, kw, cg, o = kernel.shape
        groups = int(groups)
        if groups < 1 or x.shape[3] != cg * groups or o % groups:
            raise ValueError(f"conv2d: x has {x.shape[3]} channels and the kernel shape is {tuple(kernel.shape)}; "
                             f"with groups={groups} the kernel must be (kh, kw, C // groups, O) with C and O "
                             "divisible by groups")
        pads = _resolve_padding(padding, x.shape[1:3], (kh, kw), s, d, "conv2d")
        _check_window((x.shape[1] + sum(pads[0]), x.shape[2] + sum(pads[1])), (kh, kw), d, "conv2d")
        xc = x.permute(0, 3, 1, 2)
        native = _symmetric(pads)
        if native is None:  # asymmetric ("same" with an odd total, or explicit): pad first, then no padding
            xc, native = F.pad(xc, _torch_pad_list(pads)), (0, 0)
        # Contiguous weight, as in conv2d_transpose: some dilated backward kernels refuse a permuted one.
        y = F.conv2d(xc, kernel.permute(3, 2, 0, 1).contiguous(), None, s, native, d, groups)
        return y.permute(0, 2, 3, 1)

    def conv2d_transpose(self, x: Tensor, kernel: Tensor, strides=(1, 1), padding="valid",
                         dilation=(1, 1)) -> Tensor:
        _check_rank4(x.shape, "x (N, H, W, C)", "conv2d_transpose")
        _check_rank4(kernel.shape, "kernel (kh, kw, O, C)", "conv2d_transpose")
        s, d = _pair(strides, "strides", "conv2d_transpose"), _pair(dilation, "dilation", "conv2d_transpose")
        _, h, w, c = x.shape
        kh, kw, _, kc = kernel.shape
        if kc != c:
            raise ValueError(f"conv2d_transpose: x has {c} channels but the kernel (kh, kw, O, C) is "
                             f"{tuple(kernel.shape)}")
        # torch's conv_transpose2d with no padding gives the "full" output; the contract's output
        # is that frame cropped by the padding of the conv2d it transposes (cells past the full
        # frame, which no kernel tap reaches, are zeros).
        full = ((h - 1) * s[0] + (kh - 1) * d[0] + 1, (w - 1) * s[1] + (kw - 1) * d[1] + 1)
        size, ((t, _), (l, _)) = _transpose_geometry(padding, (h, w), (kh, kw), s, d)
        crop_bottom, crop_right = full[0] - t - size[0], full[1] - l - size[1]  # negative: zero rows to add
        # The part of the crop that is the same on both sides, torch does itself (no wasted rows).
        ph, pw = max(min(t, crop_bottom), 0), max(min(l, crop_right), 0)
        # A contiguous weight: torch's dilated transposed-conv backward refuses a permuted one
        # ("grad_weight needs to be contiguous"); a kernel is small, the copy is cheap.
        weight = kernel.permute(3, 2, 0, 1).contiguous()
        y = F.conv_transpose2d(x.permute(0, 3, 1, 2), weight, None, s, (ph, pw), 0, 1, d)
        rest = (-(l - pw), -(crop_right - pw), -(t - ph), -(crop_bottom - ph))  # F.pad crops where negative
        if any(rest):
            y = F.pad(y, rest)
        return y.permute(0, 2, 3, 1)

    def max_pool2d(self, x: Tensor, pool_size, strides=None, padding="valid") -> Tensor:
        k, s, pads = _pool_geometry(tuple(x.shape), pool_size, strides, padding, "max_pool2d")
        xc = x.permute(0, 3, 1, 2)
        native = _symmetric(pads, (k[0] // 2, k[1] // 2))
        if native is None:  # -inf: a padded cell never wins a window (torch's own padding does the same)
            xc, native = F.pad(xc, _torch_pad_list(pads), "constant", -float("inf")), (0, 0)
        # torch's max pool records the first maximal cell of each window (strictly-greater scan,
        # row-major) and routes the gradient there: the contract's tie rule.
        return F.max_pool2d(xc, k, s, native).permute(0, 2, 3, 1)

    def avg_pool2d(self, x: Tensor, pool_size, strides=None, padding="valid") -> Tensor:
        k, s, pads = _pool_geometry(tuple(x.shape), pool_size, strides, padding, "avg_pool2d")
        xc = x.permute(0, 3, 1, 2)
        native = _symmetric(pads, (k[0] // 2, k[1] // 2))
        if native is not None:  # count_include_pad=False: the contract's count, for torch's own padding
            if native != (0, 0) and xc.is_cuda:
                # torch's CUDA backward for channels-last inputs with padding > 0 (what the permuted NHWC
                # tensor is) returns silently wrong gradients (pytorch/pytorch#188344, torch <= 2.11);
                # the NCHW kernel is right, so pool a contiguous copy there.
                xc = xc.contiguous()
            return F.avg_pool2d(xc, k, s, native, False, False).permute(0, 2, 3, 1)
        # Asymmetric: window sums over zero padding, divided by each window's count of input cells.
        sums = F.avg_pool2d(F.pad(xc, _torch_pad_list(pads)), k, s, 0, False, True, 1)  # divisor_override=1
        return (sums / self._pool_divisor(tuple(x.shape[1:3]), k, s, pads, x.dtype)).permute(0, 2, 3, 1)

    def _pool_divisor(self, size, k, s, pads, dtype) -> Tensor:
        """Each pooling window's count of input cells (not padding), (out_h, out_w), kept per geometry:
        made from host arrays once (a host-to-device copy, which a CUDA graph capture could not record)."""
        key = (size, tuple(k), tuple(s), tuple(map(tuple, pads)), dtype)
        divisor = self._divisors.get(key)
        if divisor is None:
            counts = []
            for n, kk, ss, (before, after) in zip(size, k, s, pads):
                start = np.arange((n + before + after - kk) // ss + 1) * ss - before
                counts.append(np.minimum(start + kk, n) - np.maximum(start, 0))
            divisor = self._divisors[key] = self._host_tensor(np.outer(*counts), dtype)
        return divisor

    # ------------------------------------------------ keras.ops additions
    # Native kernels where torch has the contract's semantics; everything else is
    # Backend's default. Methods only where torch's arguments differ (dim, keepdim...).
    def dtype_of(self, x: Tensor) -> str:
        return str(x.dtype)[6:]  # "torch.float32" -> "float32"

    def argsort(self, x: Tensor, axis: int = -1) -> Tensor:
        return torch.argsort(x, dim=axis, stable=True)

    def sort(self, x: Tensor, axis: int = -1) -> Tensor:
        return torch.sort(x, dim=axis, stable=True).values  # the gradient goes back through the permutation

    def cumsum(self, x: Tensor, axis: int = -1) -> Tensor:
        return torch.cumsum(x, axis)

    def floor_divide(self, a, b) -> Tensor:
        # torch.floor_divide has no derivative; division with floor rounding has the contract's zero gradient.
        if not isinstance(a, torch.Tensor):
            a = self._host_tensor(a)
        return torch.div(a, b, rounding_mode="floor")

    def prod(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if axis is None:
            out = torch.prod(x)
            return out.reshape((1,) * x.ndim) if keepdims else out
        for a in sorted((int(a) % x.ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,))),
                        reverse=True):  # torch reduces one axis at a time; from the last, so indices hold
            x = torch.prod(x, a, keepdims)
        return x

    def argmin(self, x: Tensor, axis: int | None = -1) -> Tensor:
        return torch.argmin(x, axis)  # first index on ties

    def all(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A003
        if axis is None:
            axis = tuple(range(x.ndim))
        return torch.all(x, dim=axis, keepdim=keepdims) if axis != () else x.bool()

    def any(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A003
        if axis is None:
            axis = tuple(range(x.ndim))
        return torch.any(x, dim=axis, keepdim=keepdims) if axis != () else x.bool()

    def _bool(self, x):
        # torch.full: a fill kernel, no host-to-device copy (capturable in a CUDA graph)
        return x if isinstance(x, torch.Tensor) else torch.full((), bool(x), dtype=torch.bool, device=self._device)

    def logical_and(self, a, b) -> Tensor:
        return torch.logical_and(self._bool(a), self._bool(b))

    def logical_or(self, a, b) -> Tensor:
        return torch.logical_or(self._bool(a), self._bool(b))

    def logical_xor(self, a, b) -> Tensor:
        return torch.logical_xor(self._bool(a), self._bool(b))

    def logical_not(self, x) -> Tensor:
        return torch.logical_not(self._bool(x))

    def stack(self, xs: Sequence[Tensor], axis: int = 0) -> Tensor:
        return torch.stack(tuple(xs), axis)

    def einsum(self, subscripts: str, *operands: Tensor) -> Tensor:
        return torch.einsum(subscripts, *operands)

    def tile(self, x: Tensor, repeats) -> Tensor:
        return torch.tile(x, tuple(repeats) if isinstance(repeats, (tuple, list)) else (int(repeats),))

    def repeat(self, x: Tensor, repeats, axis=None) -> Tensor:
        if not isinstance(repeats, int):
            repeats = self._host_tensor(np.asarray(repeats, dtype=np.int64))
        return torch.repeat_interleave(x, repeats, axis)

    def flip(self, x: Tensor, axis=None) -> Tensor:
        if axis is None:
            axis = tuple(range(x.ndim))
        return torch.flip(x, axis if isinstance(axis, (tuple, list)) else (axis,))

    def roll(self, x: Tensor, shift, axis=None) -> Tensor:
        return torch.roll(x, shift, axis)

    def broadcast_to(self, x: Tensor, shape) -> Tensor:
        return torch.broadcast_to(x, tuple(shape))

    def tril(self, x: Tensor, k: int = 0) -> Tensor:
        return torch.tril(x, k)

    def triu(self, x: Tensor, k: int = 0) -> Tensor:
        return torch.triu(x, k)

    def zeros_like(self, x: Tensor, dtype: str | None = None) -> Tensor:
        return torch.zeros_like(x, dtype=None if dtype is None else self._dtypes[dtype])

    def ones_like(self, x: Tensor, dtype: str | None = None) -> Tensor:
        return torch.ones_like(x, dtype=None if dtype is None else self._dtypes[dtype])

    def gelu(self, x: Tensor, approximate: bool = True) -> Tensor:
        return F.gelu(x, approximate="tanh" if approximate else "none")  # the same two formulas as Keras

    def elu(self, x: Tensor, alpha: float = 1.0) -> Tensor:
        return F.elu(x, alpha)  # gradient alpha * exp(x) for x <= 0: alpha at 0, as the contract

    def leaky_relu(self, x: Tensor, negative_slope: float = 0.2) -> Tensor:
        return F.leaky_relu(x, negative_slope)  # gradient negative_slope at 0

    def var(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if not x.is_floating_point():
            x = x.to(self._float)
        return torch.var(x, dim=axis, correction=0, keepdim=keepdims)

    def std(self, x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
        if not x.is_floating_point():
            x = x.to(self._float)
        return torch.std(x, dim=axis, correction=0, keepdim=keepdims)

    def swapaxes(self, x: Tensor, axis1: int, axis2: int) -> Tensor:
        return torch.swapaxes(x, axis1, axis2)

    def moveaxis(self, x: Tensor, source, destination) -> Tensor:
        return torch.movedim(x, source, destination)

    # ------------------------------------------------------ state, autodiff
    def variable(self, value: Any, trainable: bool = True, name: str = "") -> Tensor:
        t = self.convert(value)
        # convert() may hand back the caller's own tensor: a variable owns its storage.
        if t is value:
            t = t.clone()
        t = t.detach()
        return t.requires_grad_(trainable and t.is_floating_point())

    def assign(self, variable: Tensor, value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            value = self.convert(value)
        with torch.no_grad():
            variable.copy_(value)

    def assign_add(self, variable: Tensor, value: Any) -> None:
        with torch.no_grad():
            variable.add_(value)

    # ------------------------------------------------------------ export
    def export_module(self, model):
        """A ``torch.nn.Module`` whose parameters ARE the model's weights (no copy).

        The unidl variables are rebound to the module's ``nn.Parameter`` objects, so
        training either one trains both; ``torch.export.export`` / ``torch.onnx.export`` of
        the module record a graph of torch ops only.
        """
        from unidl.ops import use_backend
        backend, weights = self, model.weights
        params = [torch.nn.Parameter(w.value.detach(), requires_grad=w.trainable and w.value.is_floating_point())
                  for w in weights]
        for w, p in zip(weights, params):
            w.value = p

        class UnidlModule(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.weights = torch.nn.ParameterList(params)

            def forward(self, *inputs):
                with use_backend(backend):
                    return model.call(inputs[0] if len(inputs) == 1 else list(inputs), training=self.training)

        module = UnidlModule()
        module.eval()
        return module

    # ------------------------------------------------------ compiled steps
    def compile_step(self, step: Callable) -> Callable:
        """On CUDA, ``step`` captured as a CUDA graph once per argument signature and replayed; on the CPU, ``step``.

        (``Backend.compile_step`` states the contract; ``unidl_torch/capture.py`` the mechanism.)
        The first ``capture.WARMUP_CALLS`` (2) calls of each signature (argument structure, tensor
        shapes, dtypes and devices, static values such as ints) run eagerly on a side stream; the
        next one is captured and replayed, and so is every later one: the tensors are copied into
        static buffers, the Python floats (learning rate, Adam's ``lr_t``) into 0-d device tensors
        (never baked in), and the outputs come back as fresh copies. Each call makes exactly one
        step, so the numbers are those of eager training (within rounding: with tensor scalars the
        optimizers run their generic rule instead of ``fused_update``'s kernels). The full batch
        and the last, smaller one are two captures sharing one memory pool.

        A step that cannot be captured (a host sync such as ``.item()``, a host-to-device copy of
        data that changes between calls, a data-dependent shape) runs eagerly for that signature,
        with one ``RuntimeWarning`` naming the reason. A ``unidl.random`` draw raises
        ``FrozenRandomnessError`` (the training loop then runs eagerly). Variables must be updated
        in place (``assign``), as unidl does: the graph holds their memory addresses.
        ``compile(jit_compile=False)`` never calls this.
        """
        if self._device.type != "cuda":
            return step  # eager: torch.compile did not beat it on the CPU (see docs/performance.md)
        from .capture import CapturedStep, GraphRecorder
        return CapturedStep(step, GraphRecorder(self._device), float_dtype=self._float, device=self._device)

    # ------------------------------------------------------ fused updates
    def fused_update(self, rule, optimizer, variable, grad, slots, scalars) -> bool:
        """Keras's update rules as in-place torch kernels (4-5 ops instead of ~15 allocating ones).

        Only eager steps with host-float hyper-parameters take this path; each
        kernel computes the same expression as the generic rule in
        ``unidl.optimizers`` (the kit compares them).
        """
        kernel = _FUSED.get(rule)
        if kernel is None or any(type(v) is not float for v in scalars.values()):
            return False
        with torch.no_grad():
            return kernel(optimizer, variable, grad, slots, scalars)

    def value_and_grad(self, fn: Callable[[], tuple[Tensor, Any]],
                       variables: Sequence[Tensor]) -> tuple[Tensor, Any, list]:
        with torch.enable_grad():
            loss, aux = fn()
        # autograd.grad (not .backward) so no .grad state accumulates on variables.
        # Non-trainable variables cannot be passed to it; they get zeros, as do
        # all variables when the loss does not depend on any of them.
        wrt = [v for v in variables if v.requires_grad]
        if not (wrt and loss.requires_grad):
            return loss.detach(), aux, [torch.zeros_like(v) for v in variables]
        found = iter(torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True))
        grads = [next(found) if v.requires_grad else torch.zeros_like(v) for v in variables]
        return loss.detach(), aux, grads

    def gradient_tape(self, persistent: bool = False):
        from .gradient_tape import TorchGradientTape  # the framework is imported already: a backend exists
        return TorchGradientTape(self, persistent)

    def grad_wrt_inputs(self, fn: Callable[..., Tensor],
                        inputs: Sequence[Any]) -> tuple[Tensor, list]:
        leaves = [self.convert(x).detach().requires_grad_(True) for x in inputs]
        with torch.enable_grad():
            value = fn(*leaves)
        if value.requires_grad:
            grads = list(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True))
        else:
            grads = [torch.zeros_like(x) for x in leaves]
        return value.detach(), grads

    def no_grad(self):
        return torch.no_grad()

    # ---------------------------------------------------------- composites
    # Native kernels for the composites on the training hot path; the
    # conformance kit checks each against the generic version in Backend.
    def softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        return torch.softmax(x, axis)

    def log_softmax(self, x: Tensor, axis: int = -1) -> Tensor:
        return torch.log_softmax(x, axis)

    def softplus(self, x: Tensor) -> Tensor:
        # log(e^x + e^0), stable for large |x|, with gradient sigmoid(x) everywhere.
        # The generic relu/abs formula gets slope 0 at x == 0 (both kinks' conventions
        # give 0 there); softplus is smooth with slope 1/2.
        return torch.logaddexp(x, x.new_zeros(()))

    def zeros(self, shape, dtype: str | None = None) -> Tensor:
        return torch.zeros(shape, dtype=self._dtypes[dtype or self.dtype], device=self._device)

    def ones(self, shape, dtype: str | None = None) -> Tensor:
        return torch.ones(shape, dtype=self._dtypes[dtype or self.dtype], device=self._device)


# --------------------------------------------------------------- fused rules
# Each returns False for a configuration it does not cover (the generic rule runs).

def _fused_sgd(opt, w, g, slots, s) -> bool:
    lr, mu = s["lr"], opt.momentum
    if not mu:
        w.add_(g, alpha=-lr)                      # w -= lr g
        return True
    v = slots["momentum"]
    v.mul_(mu).add_(g, alpha=-lr)                 # v = mu v - lr g
    if opt.nesterov:
        w.add_(v, alpha=mu).add_(g, alpha=-lr)    # w += mu v - lr g
    else:
        w.add_(v)
    return True


def _fused_adam(opt, w, g, slots, s) -> bool:
    if opt.amsgrad:
        return False
    m, v = slots["m"], slots["v"]
    m.lerp_(g, 1 - opt.beta_1)                    # m += (g - m)(1 - b1)
    v.lerp_(g * g, 1 - opt.beta_2)                # v += (g^2 - v)(1 - b2)
    w.addcdiv_(m, v.sqrt().add_(opt.epsilon), value=-s["lr_t"])  # w -= lr_t m / (sqrt v + eps)
    return True


def _fused_rmsprop(opt, w, g, slots, s) -> bool:
    if opt.centered:
        return False
    v = slots["velocity"]
    v.mul_(opt.rho).addcmul_(g, g, value=1 - opt.rho)   # v = rho v + (1 - rho) g^2
    denominator = v.add(opt.epsilon).sqrt_()
    if opt.momentum:
        m = slots["momentum"]
        m.mul_(opt.momentum).addcdiv_(g, denominator, value=s["lr"])  # m = mu m + lr g / sqrt(v + eps)
        w.sub_(m)
    else:
        w.addcdiv_(g, denominator, value=-s["lr"])      # w -= lr g / sqrt(v + eps)
    return True


def _fused_adagrad(opt, w, g, slots, s) -> bool:
    acc = slots["accumulator"]
    acc.addcmul_(g, g)                                   # acc += g^2
    w.addcdiv_(g, acc.add(opt.epsilon).sqrt_(), value=-s["lr"])  # w -= lr g / sqrt(acc + eps)
    return True


_FUSED = {"sgd": _fused_sgd, "adam": _fused_adam, "rmsprop": _fused_rmsprop, "adagrad": _fused_adagrad}


def _native_kernel_for(backend, layer):
    from .native_layers import kernel_for  # imports torch: only once a backend exists
    return kernel_for(backend, layer)

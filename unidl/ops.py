"""``unidl.ops``: tensor ops for layer code and for scripts, with keras.ops's names and semantics.

Every function here runs on a backend:

* the one bound to the current context: a compiled model binds its own while it
  runs (its layers, its train step), and ``with unidl.use_backend("torch"):``
  binds one for a block of code;
* else the default backend, ``unidl.config.backend()`` (``UNIDL_BACKEND``, else
  "numpy"), so ``unidl.ops.softmax(np.array([1.0, 2.0]))`` works in a script, a
  loss function or data preparation, as ``keras.ops`` does. The default is only a
  name: a compiled model still runs on its own backend.

The binding lives in a ``contextvars.ContextVar``: there is no process-wide
backend, so models on different backends run side by side, in threads too.

Operands may mix the backend's tensors with NumPy arrays, Python lists and
numbers, and ``unidl.Variable``s (layer weights, unwrapped to the tensor they
hold). Arrays are converted to the backend's tensors with Keras's promotion: a
float array meeting a float tensor takes the tensor's dtype, an int array
meeting a float tensor becomes float, ops on floats (``exp``, ``mean``,
``divide``...) make floats of ints. Where two tensors of different dtypes meet
and the framework refuses them (TensorFlow always does, torch's ``matmul``
too), the op promotes them the same way and runs again, so no raw framework
dtype error reaches the caller.

Cost: an op reads the context, checks its operands' types against a small set
(one set lookup per operand) and calls the backend, about 0.1 us in all on a
2020s CPU (``tests/test_keras_ops.py::test_dispatch_overhead_stays_small``
guards it). Conversion and promotion run only when a check hits (Variables are
only unwrapped) or the framework raises.

The contract of each backend op is in ``unidl.backend`` (``PRIMITIVES``,
``DERIVED``, ``OPTIONAL``, and the composites on ``Backend``). The functions
here add keras.ops's signatures and defaults where they differ from the
contract's (``argmax(x)`` over the flattened x, ``concatenate`` along axis 0,
``take`` with ``axis=None``...) and its names for the NN ops (``conv``,
``max_pool``...). ``unidl.ops.nn`` and ``unidl.ops.image`` hold the ops of
``keras.ops.nn`` and ``keras.ops.image`` that unidl has.

unidl differs from Keras in two documented ways: integers are int64 (Keras:
int32), and NumPy float arrays become the backend's float dtype (float32 unless
``unidl.config.set_floatx("float64")``), where Keras keeps float64 arrays float64.
"""
from __future__ import annotations

import builtins
import contextlib
import contextvars
import linecache
import sys
import types
from typing import Iterator, Sequence

import numpy as np

from . import config
from .backend import DERIVED, OPTIONAL, PRIMITIVES, Backend, _dtype_kind, _dtype_name
from .registry import get_backend
from .variables import Variable

_current: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("unidl_backend", default=None)
_get = _current.get
_default = config.default_backend


class NoBackendError(RuntimeError):
    """Kept for compatibility: ops now run on the default backend when none is bound."""


def current_backend() -> Backend:
    """The backend ops run on here: the one bound to this context, else the default backend."""
    backend = _get()
    return backend if backend is not None else _default()


def current_backend_or_none() -> Backend | None:
    """The backend bound to the current context, or None (the default backend is not "bound")."""
    return _get()


@contextlib.contextmanager
def use_backend(backend: "Backend | str", **options) -> Iterator[Backend]:
    """Bind ``backend`` (an instance or a registered name) for ops in this context."""
    if isinstance(backend, str):
        backend = get_backend(backend, **options)
    token = _current.set(backend)
    try:
        yield backend
    finally:
        _current.reset(token)


# ----------------------------------------------------------- operand conversion
# Operand roles: "x" a value (joins dtype promotion), "f" a value of a float op (ints become
# floats), "i" indices (int64), "b" a condition or logical operand (bool), "a" anything
# (converted with convert's defaults).

_SCALAR_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
                 np.float16, np.float32, np.float64)
# Operand types that are not a backend's tensors: an op converts them before calling the backend.
_HOST = frozenset((Variable, np.ndarray, list, tuple, *_SCALAR_TYPES))
_PYTHON = (bool, int, float)
_KIND_ORDER = {"b": 0, "u": 1, "i": 1, "f": 2}
_FLOAT_WIDTH = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}


def _unwrap(x, backend: Backend | None = None):
    # A unidl.Variable holds its backend tensor in ``.value``; everything else passes through.
    # A mixed-precision compute twin reads float32 master weights in its half dtype.
    if type(x) is not Variable:
        return x
    if backend is not None and backend.autocast and x.backend is not None:
        return backend.cast(x.value, backend.dtype)
    return x.value


def _targets(backend: Backend, roles: str, values: list) -> tuple[str, str, str]:
    """(result kind, float dtype, int dtype) of the value operands: Keras's promotion, with host
    arrays following the tensors' widths and Python numbers weak."""
    kind, floats, ints = "b", [], []
    for role, v in zip(roles, values):
        if role not in "xf":
            continue
        if role == "f":
            kind = "f"
        t = type(v)
        if t in _PYTHON:
            k = "b" if t is bool else "i" if t is int else "f"
        elif t is np.ndarray:
            k = v.dtype.kind
        else:
            name = backend.dtype_of(v)
            k = _dtype_kind(name)
            (floats if k == "f" else ints if k in "iu" else []).append(name)
        if _KIND_ORDER.get(k, 2) > _KIND_ORDER[kind]:
            kind = "f" if k not in _KIND_ORDER else k
    float_dtype = builtins.max(floats, key=lambda n: _FLOAT_WIDTH.get(n, 2)) if floats else backend.dtype
    int_dtype = "int64" if not ints or "int64" in ints else ints[0]
    return kind, float_dtype, int_dtype


def _host(backend: Backend, roles: str, operands: Sequence) -> tuple[Backend, list]:
    """Convert the operands that are not tensors of ``backend`` (the slow path of every op)."""
    values = list(operands)
    arrays = False
    for i, x in enumerate(values):
        if type(x) is Variable:
            if x.backend is not None and x.backend is not backend and _get() is None:
                backend = x.backend  # nothing bound: the weights of a compiled model take the op to their backend
            values[i] = x = _unwrap(x, backend)
        if type(x) in _HOST:
            arrays = True
    if not arrays:  # only Variables (layer code, on every call): unwrapped, nothing else to do
        return backend, values
    for i, x in enumerate(values):
        t = type(x)
        if t in _SCALAR_TYPES:
            values[i] = x.item()  # NumPy scalars are weak, like Python numbers
        elif t is not np.ndarray and t in _HOST:
            values[i] = np.asarray(x)
    kind, float_dtype, int_dtype = _targets(backend, roles, values)
    value_dtype = float_dtype if kind == "f" else int_dtype if kind in "iu" else "bool"
    # Python numbers stay Python numbers (weak) unless no operand is a tensor.
    anchored = builtins.any(type(v) not in _PYTHON for r, v in zip(roles, values) if r in "xf")
    out = []
    for role, v in zip(roles, values):
        t = type(v)
        if t is np.ndarray:
            if role in "xf":
                v = backend.convert(v, dtype=value_dtype)
            elif role == "i":
                v = backend.convert(v if v.dtype.kind in "iu" else v.astype(np.int64), dtype="int64")
            elif role == "b":
                v = backend.convert(v.astype(bool), dtype="bool")
            else:
                v = backend.convert(v)
        elif t in _PYTHON:
            if role in "xf" and not anchored:
                v = backend.convert(np.asarray(v), dtype=value_dtype)
                anchored = True
            elif role == "b":
                v = backend.convert(np.asarray(bool(v)))
        elif role in "xf" and kind != "b" and backend.dtype_of(v) != value_dtype:
            name = backend.dtype_of(v)
            if _KIND_ORDER.get(_dtype_kind(name), 2) < _KIND_ORDER[kind]:  # an int tensor in a float op
                v = backend.cast(v, value_dtype)
        out.append(v)
    return backend, out


def _promoted(backend: Backend, roles: str, operands: Sequence) -> list | None:
    """After the framework refused ``operands``: the operands promoted to one dtype (Keras's rules),
    or None when promotion changes nothing (the error was about something else)."""
    try:
        values = list(operands)
        if builtins.any(type(v) in _HOST for v in values):
            return None
        if builtins.all(type(v) in _PYTHON for r, v in zip(roles, values) if r in "xf"):  # e.g. ops.exp(2.0) on torch
            _, values = _host(backend, roles, [np.asarray(v) if r in "xf" else v for r, v in zip(roles, values)])
            return values
        kind, float_dtype, int_dtype = _targets(backend, roles, values)
        target = float_dtype if kind == "f" else int_dtype if kind in "iu" else None
        if target is None:
            return None
        changed = False
        for i, (role, v) in enumerate(zip(roles, values)):
            if role in "xf" and type(v) not in _PYTHON and backend.dtype_of(v) != target:
                values[i], changed = backend.cast(v, target), True
        return values if changed else None
    except Exception:
        return None


def _operands(roles: str, *operands) -> tuple[Backend, list]:
    """The backend to run on and the operands converted for it (for the hand-written ops below)."""
    backend = _get()
    if backend is None:
        backend = _default()
    for x in operands:
        if type(x) in _HOST:
            return _host(backend, roles, operands)
    return backend, list(operands)


def _sequence(xs, role: str = "x") -> tuple[Backend, list]:
    """The backend and the tensors of a sequence operand (concatenate, stack, einsum)."""
    xs = list(xs)
    return _operands(role * len(xs), *xs)


# ------------------------------------------------------------- generated ops
# Most ops forward to the backend method of the same name: each is generated from its
# keras.ops signature, its operands' roles and the backend call, so it costs one context
# lookup, one type check per operand and the call itself.

_TEMPLATE = '''\
def {name}({params}):
    backend = _get()
    if backend is None:
        backend = _default()
    if {host_check}:
        backend, ({operands},) = _host(backend, {roles!r}, ({operands},))
    try:
        return backend.{method}({call})
    except Exception:
        retry = _promoted(backend, {roles!r}, ({operands},))
        if retry is None:
            raise
        ({operands},) = retry
        return backend.{method}({call})
'''

_TEMPLATE_NO_OPERANDS = '''\
def {name}({params}):
    backend = _get()
    if backend is None:
        backend = _default()
    return backend.{method}({call})
'''


def _docstring(name: str, params: str, method: str) -> str:
    contract = {**PRIMITIVES, **DERIVED, **OPTIONAL}.get(method)
    if contract is None:
        contract = (getattr(Backend, method, None).__doc__ or "").strip() if hasattr(Backend, method) else ""
        contract = f"{method}: {contract}" if contract else f"see unidl.backend.Backend.{method}"
    return f"{name}({params})\n\n{contract}"


_GENERATED: list[tuple[str, str, str]] = []  # (name, source, docstring) until _define_generated runs


def _parameter_names(params: str) -> list[str]:
    """The names in a parameter list such as "x, strides=(1, 1), padding='valid'" (commas at depth 0 split)."""
    names, depth, start = [], 0, 0
    for i, c in enumerate(params + ","):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            part = params[start:i].strip()
            if part:
                names.append(part.split("=")[0].strip())
            start = i + 1
    return names


def _generate(name: str, params: str, roles: str = "x", call: str | None = None, method: str | None = None,
              doc: str | None = None) -> None:
    """Queue op ``name(params)`` forwarding to ``backend.method(call)`` (defined by ``_define_generated``).

    The first ``len(roles)`` parameters are the operands; ``call`` defaults to the operands
    positionally and every other parameter as a keyword of the same name.
    """
    method = method or name
    names = _parameter_names(params)
    operands, options = names[:len(roles)], names[len(roles):]
    if call is None:
        call = ", ".join([*operands, *(f"{o}={o}" for o in options)])
    if operands:
        source = _TEMPLATE.format(name=name, params=params, roles=roles, method=method, call=call,
                                  operands=", ".join(operands),
                                  host_check=" or ".join(f"type({o}) in _HOST" for o in operands))
    else:
        source = _TEMPLATE_NO_OPERANDS.format(name=name, params=params, method=method, call=call)
    _GENERATED.append((name, source, doc or _docstring(name, params, method)))


def _define_generated() -> None:
    """Compile every queued op at once (one compile: importing unidl stays fast)."""
    source = "\n\n".join(src for _, src, _ in _GENERATED)
    filename = "<unidl.ops generated>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
    namespace = {"_get": _get, "_default": _default, "_HOST": _HOST, "_host": _host, "_promoted": _promoted}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own templates, no user input
    for name, _, doc in _GENERATED:
        op = namespace[name]
        op.__module__ = __name__
        op.__doc__ = doc
        globals()[name] = op
    _GENERATED.clear()


# conversion and introspection (convert, to_numpy, shape, cast, dtype: hand-written below)
_generate("size", "x", "a")

# elementwise, binary
for _name in ("add", "subtract", "multiply", "power", "maximum", "minimum", "mod", "floor_divide"):
    _generate(_name, "x1, x2", "xx")
_generate("divide", "x1, x2", "ff")
for _name in ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal"):
    _generate(_name, "x1, x2", "xx")
for _name in ("logical_and", "logical_or", "logical_xor"):
    _generate(_name, "x1, x2", "bb")
_generate("clip", "x, x_min, x_max", "xxx")

# elementwise, unary
for _name in ("negative", "abs", "sign", "square", "relu", "floor", "ceil", "isnan", "isinf", "isfinite"):
    _generate(_name, "x", "x")
_generate("logical_not", "x", "b")
for _name in ("exp", "log", "log1p", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "sin", "cos", "tan",
              "softplus", "softsign", "silu", "selu", "relu6", "hard_sigmoid", "log_sigmoid"):
    _generate(_name, "x", "f")
_generate("gelu", "x, approximate=True", "f")
_generate("elu", "x, alpha=1.0", "f")
_generate("leaky_relu", "x, negative_slope=0.2", "f")
_generate("softmax", "x, axis=-1", "f")
_generate("log_softmax", "x, axis=-1", "f")
_generate("stop_gradient", "variable", "a")

# reductions and statistics
_generate("sum", "x, axis=None, keepdims=False", "x")
_generate("prod", "x, axis=None, keepdims=False, dtype=None", "x",
          call="x if dtype is None else backend.cast(x, dtype), axis=axis, keepdims=keepdims")
_generate("mean", "x, axis=None, keepdims=False", "f")
_generate("var", "x, axis=None, keepdims=False", "f")
_generate("std", "x, axis=None, keepdims=False", "f")
_generate("all", "x, axis=None, keepdims=False", "a")
_generate("any", "x, axis=None, keepdims=False", "a")
_generate("count_nonzero", "x, axis=None", "a")
_generate("logsumexp", "x, axis=None, keepdims=False", "f")
_generate("norm", "x, ord=None, axis=None, keepdims=False", "f")
_generate("moments", "x, axes, keepdims=False, synchronized=False", "f")

# shape and indexing
_generate("reshape", "x, newshape", "x", call="x, newshape")
_generate("transpose", "x, axes=None", "x")
_generate("tile", "x, repeats", "x")
_generate("repeat", "x, repeats, axis=None", "x")
_generate("flip", "x, axis=None", "x")
_generate("roll", "x, shift, axis=None", "x")
_generate("broadcast_to", "x, shape", "x")
_generate("split", "x, indices_or_sections, axis=0", "x")
_generate("swapaxes", "x, axis1, axis2", "x")
_generate("moveaxis", "x, source, destination", "x")
_generate("tril", "x, k=0", "x")
_generate("triu", "x, k=0", "x")
_generate("slice", "inputs, start_indices, shape", "x", call="inputs, start_indices, shape")
_generate("sort", "x, axis=-1", "x")
_generate("argsort", "x, axis=-1", "x")
_generate("top_k", "x, k, sorted=True", "x")

# linear algebra
_generate("matmul", "x1, x2", "xx")
_generate("dot", "x1, x2", "xx")
_generate("outer", "x1, x2", "xx")
_generate("tensordot", "x1, x2, axes=2", "xx")

# creation
_generate("zeros", "shape, dtype=None", "")
_generate("ones", "shape, dtype=None", "")
_generate("full", "shape, fill_value, dtype=None", "")
_generate("zeros_like", "x, dtype=None", "a")
_generate("ones_like", "x, dtype=None", "a")
_generate("full_like", "x, fill_value, dtype=None", "a")
_generate("arange", "start, stop=None, step=None, dtype=None", "")
_generate("linspace", "start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0", "")
_generate("eye", "N, M=None, k=0, dtype=None", "")

# neural-network ops under their contract names (keras.ops's conv, max_pool... are below)
_generate("conv2d", "x, kernel, strides=(1, 1), padding='valid', dilation=(1, 1), groups=1", "xx")
_generate("conv2d_transpose", "x, kernel, strides=(1, 1), padding='valid', dilation=(1, 1)", "xx")
_generate("max_pool2d", "x, pool_size, strides=None, padding='valid'", "f")
_generate("avg_pool2d", "x, pool_size, strides=None, padding='valid'", "f")

# losses and normalization on tensors
_generate("binary_crossentropy", "target, output, from_logits=False", "ff")
_generate("categorical_crossentropy", "target, output, from_logits=False, axis=-1", "ff")
_generate("sparse_categorical_crossentropy", "target, output, from_logits=False, axis=-1", "if")
_generate("normalize", "x, axis=-1, order=2, epsilon=None", "f")
_generate("dot_product_attention", "query, key, value, bias=None, mask=None, scale=None, is_causal=False, "
          "flash_attention=None, attn_logits_soft_cap=None", "fff")
_generate("log2", "x", "f")
_generate("log10", "x", "f")
_generate("ravel", "x", "x", call="x, (-1,)", method="reshape", doc="ravel(x)\n\nx flattened to one axis.")

_define_generated()


# ------------------------------------------------------------- hand-written ops
# keras.ops signatures that the contract words differently, and ops whose operands are
# sequences or need no backend for host inputs.

def convert(x, dtype: str | None = None):
    """convert(x, dtype=None)

    NumPy array, Python number or list, or tensor -> a tensor of the backend; floats take
    its compute dtype, integers int64, bools stay bool (``dtype`` overrides)."""
    backend = _get()
    if backend is None:  # nothing bound: a weight of a compiled model stays on its backend
        backend = x.backend if type(x) is Variable and x.backend is not None else _default()
    return backend.convert(_unwrap(x, backend), dtype=dtype)


def convert_to_tensor(x, dtype: str | None = None, sparse=None, ragged=None):
    """convert_to_tensor(x, dtype=None, sparse=None, ragged=None)

    As keras.ops.convert_to_tensor: a tensor of the backend (see ``convert``). Sparse and
    ragged tensors do not exist in unidl: ``sparse``/``ragged`` may only be None or False."""
    if sparse or ragged:
        raise ValueError("convert_to_tensor: unidl has no sparse or ragged tensors (sparse=True / ragged=True)")
    return convert(x, dtype=dtype)


def to_numpy(x) -> np.ndarray:
    """to_numpy(x)

    A NumPy array holding a copy of x (a tensor, Variable, array, list or number)."""
    if type(x) is Variable:
        return x.numpy()
    if type(x) in _HOST or type(x) in _PYTHON:
        return np.array(x)
    backend = _get()
    if backend is not None:
        return backend.to_numpy(x)
    # Nothing bound: x may be any framework's tensor (a model's output, a tensor made under
    # use_backend), not only the default backend's; read it as its own framework does.
    try:
        return _any_to_numpy(x)
    except Exception:
        return _default().to_numpy(x)


def _any_to_numpy(x) -> np.ndarray:
    """A copy of a framework tensor as NumPy: torch's detached and moved to the CPU, then ``.numpy()``."""
    for method in ("detach", "cpu"):
        if callable(getattr(x, method, None)):
            x = getattr(x, method)()
    return np.array(x.numpy() if callable(getattr(x, "numpy", None)) else x)


def convert_to_numpy(x) -> np.ndarray:
    """convert_to_numpy(x)

    As keras.ops.convert_to_numpy: a NumPy array holding a copy of x."""
    return to_numpy(x)


def shape(x) -> tuple:
    """shape(x)

    A tuple of ints (the batch axis may be None inside a compiled step)."""
    if type(x) is Variable:
        return x.shape
    if type(x) in _HOST or type(x) in _PYTHON:
        return tuple(np.shape(x))
    return current_backend().shape(x)


def ndim(x) -> int:
    """ndim(x)

    The number of axes of x."""
    return len(shape(x))


def dtype(x) -> str:
    """dtype(x)

    x's dtype as a string: "float32", "int64", "bool"..."""
    if type(x) is Variable:
        x = x.value
    if type(x) in _HOST or type(x) in _PYTHON:
        return np.asarray(x).dtype.name
    backend = _get()
    if backend is None and hasattr(x, "dtype"):  # nothing bound: any framework's tensor, as it is
        return _dtype_name(x.dtype)
    return current_backend().dtype_of(x)


def cast(x, dtype: str):
    """cast(x, dtype)

    x converted to ``dtype`` ("float32", "float64", "int32", "int64", "bool"); float to int
    truncates toward zero."""
    backend = current_backend()
    if type(x) is Variable:
        if _get() is None and x.backend is not None:
            backend = x.backend
        x = _unwrap(x, backend)
    if type(x) in _HOST or type(x) in _PYTHON:
        return backend.convert(np.asarray(x), dtype=dtype)  # straight to dtype: float64 data keep their digits
    return backend.cast(x, dtype)


def where(condition, x1=None, x2=None):
    """where(condition, x1, x2)

    x1 where condition holds, else x2 (broadcasting). keras.ops.where(condition) with no
    x1/x2 returns the indices of true elements, a shape known only at run time: unidl
    does not offer it."""
    if x1 is None or x2 is None:
        raise ValueError("where: give both x1 and x2 (where(condition) alone, numpy.nonzero, has a data-dependent "
                         "shape, which unidl's ops do not make)")
    backend, (condition, x1, x2) = _operands("bxx", condition, x1, x2)
    try:
        return backend.where(condition, x1, x2)
    except Exception:
        retry = _promoted(backend, "bxx", (condition, x1, x2))
        if retry is None:
            raise
        return backend.where(*retry)


def _index_axis(backend: Backend, x, axis):
    """(x, axis) with axis=None meaning "of the flattened x", as Keras's take and argmax have it."""
    if axis is None:
        return backend.reshape(x, (-1,)), 0
    return x, axis


def argmax(x, axis=None, keepdims: bool = False):
    """argmax(x, axis=None, keepdims=False)

    int64 index of the largest element along ``axis`` (None: of the flattened x); the first
    one wins a tie."""
    return _arg_extremum("argmax", x, axis, keepdims)


def argmin(x, axis=None, keepdims: bool = False):
    """argmin(x, axis=None, keepdims=False)

    int64 index of the smallest element along ``axis`` (None: of the flattened x); the first
    one wins a tie."""
    return _arg_extremum("argmin", x, axis, keepdims)


def _arg_extremum(op: str, x, axis, keepdims):
    backend, (x,) = _operands("a", x)
    ndim_ = len(backend.shape(x))
    flat, where_ = _index_axis(backend, x, axis)
    out = getattr(backend, op)(flat, axis=where_)
    if keepdims:
        out = backend.reshape(out, (1,) * ndim_) if axis is None else backend.expand_dims(out, axis)
    return out


def take(x, indices, axis=None):
    """take(x, indices, axis=None)

    The slices of x at ``indices`` along ``axis`` (None: elements of the flattened x), as
    numpy.take; negative indices count from the end; repeated ones add up in the gradient."""
    backend, (x, indices) = _operands("xi", x, indices)
    x, axis = _index_axis(backend, x, axis)
    return backend.take(x, indices, axis=axis)


def take_along_axis(x, indices, axis=None):
    """take_along_axis(x, indices, axis=None)

    numpy.take_along_axis (axis=None: along the flattened x)."""
    backend, (x, indices) = _operands("xi", x, indices)
    if axis is None:
        x, indices, axis = backend.reshape(x, (-1,)), backend.reshape(indices, (-1,)), 0
    return backend.take_along_axis(x, indices, axis=axis)


def concatenate(xs, axis: int = 0):
    """concatenate(xs, axis=0)

    Join a sequence of tensors along an existing axis (keras.ops's default axis is 0)."""
    backend, xs = _sequence(xs)
    try:
        return backend.concatenate(xs, axis=axis)
    except Exception:
        retry = _promoted(backend, "x" * len(xs), xs)
        if retry is None:
            raise
        return backend.concatenate(retry, axis=axis)


def stack(x, axis: int = 0):
    """stack(x, axis=0)

    Join a sequence of tensors of one shape along a new axis."""
    backend, xs = _sequence(x)
    try:
        return backend.stack(xs, axis=axis)
    except Exception:
        retry = _promoted(backend, "x" * len(xs), xs)
        if retry is None:
            raise
        return backend.stack(retry, axis=axis)


def einsum(subscripts: str, *operands):
    """einsum(subscripts, *operands)

    Einstein summation, as numpy.einsum ('ij,jk->ik', 'bij,bjk->bik', '...ij->...ji', implicit
    outputs); an index repeated within one operand (a trace, a diagonal) is not supported."""
    backend, xs = _sequence(operands)
    try:
        return backend.einsum(subscripts, *xs)
    except Exception:
        retry = _promoted(backend, "x" * len(xs), xs)
        if retry is None:
            raise
        return backend.einsum(subscripts, *retry)


def unstack(x, num: int | None = None, axis: int = 0) -> list:
    """unstack(x, num=None, axis=0)

    The slices of x along ``axis`` (``num``, if given, must be its size)."""
    backend, (x,) = _operands("a", x)
    size = backend.shape(x)[axis]
    if num is not None and size is not None and int(num) != size:
        raise ValueError(f"unstack: num={num} but axis {axis} of shape {backend.shape(x)} has size {size}")
    return backend.unstack(x, axis=axis)


def expand_dims(x, axis):
    """expand_dims(x, axis)

    x with new axes of size 1 at ``axis`` (an int or a tuple of ints, positions in the result)."""
    backend, (x,) = _operands("a", x)
    if isinstance(axis, (tuple, list)):
        rank = len(backend.shape(x)) + len(axis)
        for a in sorted(int(a) % rank for a in axis):
            x = backend.expand_dims(x, a)
        return x
    return backend.expand_dims(x, axis)


def squeeze(x, axis=None):
    """squeeze(x, axis=None)

    x without the axes of size 1 named by ``axis`` (None: all of them)."""
    backend, (x,) = _operands("a", x)
    if axis is None:
        axis = tuple(i for i, d in enumerate(backend.shape(x)) if d == 1)
        if not axis:
            return x
    return backend.squeeze(x, axis)


def one_hot(x, num_classes: int, axis: int = -1, dtype: str | None = None, sparse: bool = False):
    """one_hot(x, num_classes, axis=-1, dtype=None, sparse=False)

    A 1 at each index's class along the new axis ``axis``, 0 elsewhere (an index outside
    [0, num_classes) gives a row of zeros); floats of the compute dtype unless ``dtype``."""
    if sparse:
        raise ValueError("one_hot: unidl has no sparse tensors (sparse=True)")
    backend, (x,) = _operands("i", x)
    out = backend.one_hot(x, int(num_classes))
    if dtype is not None:
        out = backend.cast(out, dtype)
    if axis not in (-1, len(backend.shape(out)) - 1):
        out = backend.moveaxis(out, -1, axis)
    return out


def pad(x, pad_width, mode: str = "constant", constant_values=None, value=None):
    """pad(x, pad_width, mode="constant", constant_values=None)

    numpy.pad's modes "constant" (with ``constant_values``, default 0), "reflect", "symmetric"
    and "edge"; ``pad_width`` holds one (before, after) pair per axis. (``value=`` is unidl's
    older name of ``constant_values``.)"""
    backend, (x,) = _operands("a", x)
    ndim_ = len(backend.shape(x))
    widths = _pad_widths(pad_width, ndim_)
    fill = constant_values if constant_values is not None else value
    if mode == "constant":
        return backend.pad(x, widths, value=0.0 if fill is None else fill)
    if fill is not None:
        raise ValueError(f"pad: constant_values is for mode='constant', not mode={mode!r}")
    if mode not in ("reflect", "symmetric", "edge"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'symmetric' or 'edge', got {mode!r}")
    for axis, (before, after) in enumerate(widths):
        if before or after:
            n = backend._known(backend.shape(x)[axis], "pad")
            index = np.pad(np.arange(n), (before, after), mode=mode)  # NumPy's own rule, applied to positions
            x = backend.take(x, backend._index(index), axis=axis)
    return x


def _pad_widths(pad_width, ndim_: int) -> tuple:
    """pad_width -> one (before, after) pair of non-negative ints per axis, or ValueError (as every
    backend's pad and keras.ops.pad on TensorFlow: no shorthand broadcast over the axes)."""
    try:
        widths = np.asarray(pad_width)
    except Exception:  # ragged
        widths = np.zeros(0)
    if widths.shape != (ndim_, 2) or widths.dtype.kind not in "iu" or (widths < 0).any():
        raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for each of "
                         f"the {ndim_} axes, got {pad_width!r}")
    return tuple((int(a), int(b)) for a, b in widths)


def max(x, axis=None, keepdims: bool = False, initial=None):  # noqa: A001 - keras.ops's name
    """max(x, axis=None, keepdims=False, initial=None)

    The largest element along ``axis``; ``initial`` takes part (as a lower bound). The gradient
    is split evenly between ties."""
    backend, (x,) = _operands("x", x)
    out = backend.max(x, axis=axis, keepdims=keepdims)
    return out if initial is None else backend.maximum(out, initial)


def min(x, axis=None, keepdims: bool = False, initial=None):  # noqa: A001
    """min(x, axis=None, keepdims=False, initial=None)

    The smallest element along ``axis``; ``initial`` takes part (as an upper bound). The
    gradient is split evenly between ties."""
    backend, (x,) = _operands("x", x)
    out = backend.min(x, axis=axis, keepdims=keepdims)
    return out if initial is None else backend.minimum(out, initial)


def cumsum(x, axis=None, dtype: str | None = None):
    """cumsum(x, axis=None, dtype=None)

    Running sum along ``axis`` (None: of the flattened x), in ``dtype`` if given."""
    backend, (x,) = _operands("x", x)
    if dtype is not None:
        x = backend.cast(x, dtype)
    x, axis = _index_axis(backend, x, axis)
    return backend.cumsum(x, axis=axis)


def round(x, decimals: int = 0):  # noqa: A001
    """round(x, decimals=0)

    The nearest value with ``decimals`` decimals, halves to even (x * 10**decimals rounded,
    then scaled back, as Keras does); zero gradient."""
    backend, (x,) = _operands("x", x)
    if not decimals:
        return backend.round(x)
    if backend._integral(x):
        if decimals > 0:
            return x
        factor = 10 ** -int(decimals)
        return backend.cast(backend.multiply(backend.round(backend.divide(x, float(factor))), factor),
                            backend.dtype_of(x))
    factor = 10.0 ** int(decimals)
    return backend.divide(backend.round(backend.multiply(x, factor)), factor)


def identity(n: int, dtype: str | None = None):
    """identity(n, dtype=None)

    The n x n identity matrix."""
    return eye(n, dtype=dtype)  # noqa: F821 (generated above)


# Keras's other names for the same ops (and the backend method's name for dtype)
dtype_of = dtype
true_divide = divide  # noqa: F821 (generated above)
absolute = globals()["abs"]


def amax(x, axis=None, keepdims: bool = False):
    """amax(x, axis=None, keepdims=False)

    The same as ``max``."""
    return max(x, axis=axis, keepdims=keepdims)


def amin(x, axis=None, keepdims: bool = False):
    """amin(x, axis=None, keepdims=False)

    The same as ``min``."""
    return min(x, axis=axis, keepdims=keepdims)


swish = silu  # noqa: F821 (generated above)


def reciprocal(x):
    """reciprocal(x)

    1 / x."""
    return divide(1.0, x)  # noqa: F821 (generated above)


# ------------------------------------------------ keras.ops's neural-network ops
# conv, depthwise_conv, separable_conv, conv_transpose, max_pool, average_pool: Keras's
# argument names, 1-D (N, W, C) and 2-D (N, H, W, C) inputs, data_format, over the
# contract's NHWC conv2d and pools.

def _data_format(data_format: str | None) -> str:
    data_format = data_format or "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    return data_format


class _Spatial:
    """Brings Keras's 1-D / 2-D, channels-first / -last inputs to the contract's NHWC and back."""

    def __init__(self, backend: Backend, x, data_format: str | None, op: str):
        self.backend, self.op = backend, op
        self.first = _data_format(data_format) == "channels_first"
        self.rank = len(backend.shape(x)) - 2
        if self.rank not in (1, 2):
            raise ValueError(f"{op}: inputs must be (batch, width, channels) or (batch, height, width, channels) "
                             f"(1-D or 2-D), got shape {tuple(backend.shape(x))}; 3-D is not supported")

    def inputs(self, x):
        b = self.backend
        if self.first:
            x = b.moveaxis(x, 1, -1)
        return b.expand_dims(x, 1) if self.rank == 1 else x

    def kernel(self, k):
        return self.backend.expand_dims(k, 0) if self.rank == 1 else k

    def pair(self, value, name: str):
        if isinstance(value, str):
            return value
        values = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,) * self.rank))
        if len(values) != self.rank:
            raise ValueError(f"{self.op}: {name}={value!r} needs {self.rank} value(s)")
        return (1, *values) if self.rank == 1 else values

    def padding(self, padding):
        if isinstance(padding, str):
            padding = padding.lower()
            if padding not in ("valid", "same"):
                raise ValueError(f"{self.op}: padding must be 'valid' or 'same', got {padding!r}")
        return padding

    def outputs(self, y):
        b = self.backend
        if self.rank == 1:
            y = b.squeeze(y, 1)
        return b.moveaxis(y, -1, 1) if self.first else y


def conv(inputs, kernel, strides=1, padding: str = "valid", data_format: str | None = None, dilation_rate=1):
    """conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1)

    keras.ops.conv: 1-D or 2-D cross-correlation. Kernel (w, in / groups, out) or
    (h, w, in / groups, out); groups = in / kernel's in."""
    backend, (inputs, kernel) = _operands("xx", inputs, kernel)
    s = _Spatial(backend, inputs, data_format, "conv")
    x, k = s.inputs(inputs), s.kernel(kernel)
    groups = backend.shape(x)[-1] // backend.shape(k)[-2]
    y = backend.conv2d(x, k, strides=s.pair(strides, "strides"), padding=s.padding(padding),
                       dilation=s.pair(dilation_rate, "dilation_rate"), groups=groups)
    return s.outputs(y)


def depthwise_conv(inputs, kernel, strides=1, padding: str = "valid", data_format: str | None = None,
                   dilation_rate=1):
    """depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1)

    keras.ops.depthwise_conv: each input channel c convolved with its own filters; kernel
    (..., in, multiplier), output channel c * multiplier + m."""
    backend, (inputs, kernel) = _operands("xx", inputs, kernel)
    s = _Spatial(backend, inputs, data_format, "depthwise_conv")
    x, k = s.inputs(inputs), s.kernel(kernel)
    kh, kw, c, m = backend.shape(k)
    k = backend.reshape(k, (kh, kw, 1, c * m))
    y = backend.conv2d(x, k, strides=s.pair(strides, "strides"), padding=s.padding(padding),
                       dilation=s.pair(dilation_rate, "dilation_rate"), groups=c)
    return s.outputs(y)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding: str = "valid",
                   data_format: str | None = None, dilation_rate=1):
    """separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid", data_format=None, dilation_rate=1)

    keras.ops.separable_conv: depthwise_conv, then a 1x1 conv with ``pointwise_kernel``."""
    depthwise = depthwise_conv(inputs, depthwise_kernel, strides=strides, padding=padding, data_format=data_format,
                               dilation_rate=dilation_rate)
    return conv(depthwise, pointwise_kernel, strides=1, padding="valid", data_format=data_format)


def conv_transpose(inputs, kernel, strides=1, padding: str = "valid", output_padding=None,
                   data_format: str | None = None, dilation_rate=1):
    """conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None, dilation_rate=1)

    keras.ops.conv_transpose: the transpose of ``conv``; kernel (..., out, in). Only
    ``output_padding=None`` (the sizes "valid" and "same" imply) is supported."""
    if output_padding is not None:
        raise ValueError("conv_transpose: output_padding is not supported (only None: the output size that "
                         "padding 'valid' or 'same' implies)")
    backend, (inputs, kernel) = _operands("xx", inputs, kernel)
    s = _Spatial(backend, inputs, data_format, "conv_transpose")
    y = backend.conv2d_transpose(s.inputs(inputs), s.kernel(kernel), strides=s.pair(strides, "strides"),
                                 padding=s.padding(padding), dilation=s.pair(dilation_rate, "dilation_rate"))
    return s.outputs(y)


def _pool(op: str, method: str, inputs, pool_size, strides, padding, data_format):
    backend, (inputs,) = _operands("f", inputs)
    s = _Spatial(backend, inputs, data_format, op)
    strides = pool_size if strides is None else strides
    y = getattr(backend, method)(s.inputs(inputs), s.pair(pool_size, "pool_size"),
                                 strides=s.pair(strides, "strides"), padding=s.padding(padding))
    return s.outputs(y)


def max_pool(inputs, pool_size, strides=None, padding: str = "valid", data_format: str | None = None):
    """max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None)

    keras.ops.max_pool over 1-D or 2-D windows (strides default to pool_size)."""
    return _pool("max_pool", "max_pool2d", inputs, pool_size, strides, padding, data_format)


def average_pool(inputs, pool_size, strides=None, padding: str = "valid", data_format: str | None = None):
    """average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None)

    keras.ops.average_pool over 1-D or 2-D windows; "same" padding is not counted."""
    return _pool("average_pool", "avg_pool2d", inputs, pool_size, strides, padding, data_format)


# ------------------------------------------------------------- keras.ops.image

def resize(images, size, interpolation: str = "bilinear", antialias: bool = False,
           crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False, fill_mode: str = "constant",
           fill_value: float = 0.0, data_format: str | None = None):
    """resize(images, size, interpolation="bilinear", antialias=False, crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0, data_format=None)

    keras.ops.image.resize: (N, H, W, C) or (H, W, C) images to ``size`` = (height, width),
    "bilinear" or "nearest" with half-pixel centers (TensorFlow's tf.image.resize), as gathers
    and weighted sums (gradients flow to the images). ``antialias`` changes nothing when
    enlarging; shrinking with it is not supported."""
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"resize: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    if fill_mode != "constant" or (crop_to_aspect_ratio and pad_to_aspect_ratio):
        raise ValueError("resize: fill_mode must be 'constant', and crop_to_aspect_ratio and pad_to_aspect_ratio "
                         "exclude each other")
    backend, (x,) = _operands("f", images)
    single = len(backend.shape(x)) == 3
    if single:
        x = backend.expand_dims(x, 0)
    if len(backend.shape(x)) != 4:
        raise ValueError(f"resize: images must be (N, H, W, C) or (H, W, C), got shape {backend.shape(images)}")
    if _data_format(data_format) == "channels_first":
        x = backend.moveaxis(x, 1, -1)
    target = tuple(int(d) for d in size)
    if len(target) != 2:
        raise ValueError(f"resize: size must be (height, width), got {size!r}")
    h, w = (backend._known(d, "resize") for d in backend.shape(x)[1:3])
    if crop_to_aspect_ratio or pad_to_aspect_ratio:
        x, h, w = _to_aspect_ratio(backend, x, h, w, target, pad_to_aspect_ratio, fill_value)
    if antialias and (target[0] < h or target[1] < w):
        raise ValueError("resize: antialias=True when shrinking is not supported (it is a no-op when enlarging)")
    for axis, n, m in ((2, w, target[1]), (1, h, target[0])):  # width first, then height, as TensorFlow
        if n != m:
            x = _resize_axis(backend, x, axis, n, m, interpolation)
    if _data_format(data_format) == "channels_first":
        x = backend.moveaxis(x, -1, 1)
    return backend.squeeze(x, 0) if single else x


def _resize_axis(backend: Backend, x, axis: int, n: int, m: int, interpolation: str):
    """Resample one axis of x from n to m cells (half-pixel centers, scale in float32 as TensorFlow)."""
    scale = np.float32(n) / np.float32(m)
    centers = (np.arange(m, dtype=np.float32) + np.float32(0.5)) * scale
    if interpolation == "nearest":
        return backend.take(x, backend._index(np.minimum(np.floor(centers), n - 1).astype(np.int64)), axis=axis)
    source = centers - np.float32(0.5)
    low = np.floor(source)
    weight = (source - low).astype(np.float64)
    below = np.clip(low, 0, n - 1).astype(np.int64)
    above = np.clip(low + 1, 0, n - 1).astype(np.int64)
    shape = [1, 1, 1, 1]
    shape[axis] = m
    a = backend.take(x, backend._index(below), axis=axis)
    b = backend.take(x, backend._index(above), axis=axis)
    lerp = backend.convert(weight.reshape(shape), dtype=backend.dtype_of(x))
    return backend.add(a, backend.multiply(backend.subtract(b, a), lerp))  # a + (b - a) t, as TensorFlow


def _to_aspect_ratio(backend: Backend, x, h: int, w: int, target, pad: bool, fill_value):
    """Crop (or pad) the images, centered, to the target's aspect ratio, as Keras does before resizing."""
    th, tw = target
    if pad:
        new_h, new_w = builtins.max(h, int(w * th / tw)), builtins.max(w, int(h * tw / th))
        top, left = (new_h - h) // 2, (new_w - w) // 2  # as Keras: the same on both sides (odd remainders dropped)
        widths = ((0, 0), (top, top), (left, left), (0, 0))
        return backend.pad(x, widths, value=fill_value), h + 2 * top, w + 2 * left
    crop_h = builtins.max(builtins.min(h, int(w * th / tw)), 1)
    crop_w = builtins.max(builtins.min(w, int(h * tw / th)), 1)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return backend.slice(x, (0, top, left, 0), (-1, crop_h, crop_w, -1)), crop_h, crop_w


# ------------------------------------------------------------- namespaces
# keras.ops.nn.X and keras.ops.image.X as Keras scripts write them.

def _namespace(name: str, members: Sequence[str], doc: str) -> types.ModuleType:
    module = types.ModuleType(f"{__name__}.{name}", doc)
    for member in members:
        setattr(module, member, globals()[member])
    module.__all__ = list(members)
    sys.modules[module.__name__] = module
    return module


nn = _namespace("nn", (
    "relu", "relu6", "sigmoid", "softplus", "softsign", "silu", "swish", "log_sigmoid", "leaky_relu",
    "hard_sigmoid", "elu", "selu", "gelu", "softmax", "log_softmax", "one_hot", "conv", "depthwise_conv",
    "separable_conv", "conv_transpose", "max_pool", "average_pool", "binary_crossentropy",
    "categorical_crossentropy", "sparse_categorical_crossentropy", "moments", "normalize",
    "dot_product_attention"),
    "keras.ops.nn's ops that unidl has (the same functions as unidl.ops.X).")

image = _namespace("image", ("resize",), "keras.ops.image's ops that unidl has.")
del resize  # keras.ops has it as keras.ops.image.resize only

__all__ = ["current_backend", "current_backend_or_none", "use_backend", "NoBackendError", "nn", "image",
           *(name for name in globals() if not name.startswith("_") and callable(globals()[name])
             and getattr(globals()[name], "__module__", None) == __name__ and name not in (
                 "current_backend", "current_backend_or_none", "use_backend", "NoBackendError"))]

"""A small reverse-mode autodiff tape over NumPy arrays (micrograd's idea, for arrays).

Every op below computes its result and, right under it, the ``backward`` rule
that maps the gradient of the output ``g`` to the gradients of its inputs, with
the derivative formula in a comment. ``NumpyBackend`` exposes these functions as
its primitives and ``Tensor``'s operators call them, so each op has exactly one
implementation.

How the tape works:

* An op's output records its inputs and its ``backward`` closure only when
  recording is on (see ``no_grad``) and some input is a ``Tensor`` that requires
  grad. Everything else (inference, optimizer updates, constants) costs no graph.
* ``gradients(root)`` sorts the graph topologically without recursion (graphs
  get deep: an RNN over 100 steps, long chains of adds), walks it in reverse and
  accumulates each node's gradient in a dict local to the call. Leaves are never
  written to, so concurrent ``value_and_grad`` calls on shared variables cannot
  mix their gradients.
* Inputs that broadcast get their gradient summed back to their own shape
  (``unbroadcast``).
* Python and NumPy scalars stay "weak": ``float32 tensor * 0.5`` is float32.
* Backward rules never write into the incoming ``g``: one array may be handed
  to several inputs (``add`` gives ``g`` to both), and accumulation makes new arrays.
"""
from __future__ import annotations

import builtins
import contextvars
import math
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from unidl.geometry import pair as _pair
from unidl.geometry import resolve_padding as _resolve_padding
from unidl.geometry import transpose_geometry as _transpose_geometry

from unidl.variables import Variable

# Recording switch. A ContextVar, not a module flag, so ``no_grad`` in one
# thread (or asyncio task) never turns recording off in another.
_recording: contextvars.ContextVar[bool] = contextvars.ContextVar("unidl_numpy_recording", default=True)


class _Recording:
    """Context manager setting the recording flag; a fresh one per use, so it nests and is thread-safe."""
    __slots__ = ("flag", "token")

    def __init__(self, flag: bool):
        self.flag = flag

    def __enter__(self) -> "_Recording":
        self.token = _recording.set(self.flag)
        return self

    def __exit__(self, *exc) -> None:
        _recording.reset(self.token)


def no_grad() -> _Recording:
    """Context in which ops record no graph (inference, optimizer updates)."""
    return _Recording(False)


def enable_grad() -> _Recording:
    """Context in which ops record again, even inside ``no_grad`` (used by value_and_grad)."""
    return _Recording(True)


class Tensor:
    """An ndarray plus what reverse mode needs: the inputs and backward rule of the op that made it.

    ``requires_grad`` is True for trainable leaves (variables, inputs of
    ``grad_wrt_inputs``) and for every recorded result that depends on one.
    ``==`` and ``!=`` keep Python's identity meaning so tensors can be dict keys
    (the backward pass needs that); use ``equal``/``not_equal`` for elementwise tests.
    """
    __slots__ = ("data", "requires_grad", "name", "_inputs", "_backward", "__weakref__")
    # Makes ``ndarray <op> Tensor`` return NotImplemented, so Python calls our reflected operator.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False, name: str = ""):
        # Ufuncs on 0-d arrays return NumPy scalars; keep .data an ndarray always.
        self.data: np.ndarray = data if type(data) is np.ndarray else np.asarray(data)
        self.requires_grad = requires_grad
        self.name = name
        self._inputs: tuple = ()
        self._backward: Callable[[np.ndarray], Sequence[np.ndarray | None]] | None = None

    # ------------------------------------------------------------ introspection
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> str:
        return self.data.dtype.name

    def numpy(self) -> np.ndarray:
        """A copy of the value the caller may keep and modify."""
        return self.data.copy()

    def detach(self) -> "Tensor":
        """Same array, no graph."""
        return Tensor(self.data)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return a.copy() if copy else a

    def __len__(self) -> int:
        return len(self.data)

    def __bool__(self) -> bool:
        # Without this every Tensor would be truthy, and `if ops.greater(a, b):` would lie.
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __repr__(self) -> str:
        body = " ".join(np.array2string(self.data, threshold=8, edgeitems=2, precision=4).split())
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    # ----------------------------------------------- operators: the same rules as the ops
    # ``_operand`` lets custom layer code mix tensors and unidl Variables (``inputs * self.scale``).
    def __add__(self, o): return add(self, _operand(o))
    def __radd__(self, o): return add(_operand(o), self)
    def __sub__(self, o): return subtract(self, _operand(o))
    def __rsub__(self, o): return subtract(_operand(o), self)
    def __mul__(self, o): return multiply(self, _operand(o))
    def __rmul__(self, o): return multiply(_operand(o), self)
    def __truediv__(self, o): return divide(self, _operand(o))
    def __rtruediv__(self, o): return divide(_operand(o), self)
    def __pow__(self, o): return power(self, _operand(o))
    def __rpow__(self, o): return power(_operand(o), self)
    def __matmul__(self, o): return matmul(self, _operand(o))
    def __rmatmul__(self, o): return matmul(_operand(o), self)
    def __neg__(self): return negative(self)
    def __abs__(self): return abs(self)
    def __lt__(self, o): return less(self, _operand(o))
    def __le__(self, o): return less_equal(self, _operand(o))
    def __gt__(self, o): return greater(self, _operand(o))
    def __ge__(self, o): return greater_equal(self, _operand(o))
    def __getitem__(self, key): return getitem(self, key)


def _operand(o: Any) -> Any:
    """A bound ``unidl.Variable`` stands for the Tensor it holds; anything else is itself."""
    return o.value if type(o) is Variable else o


# ------------------------------------------------------------------ tape helpers

def _val(x: Any) -> Any:
    """The array inside a Tensor; other operands pass through as NumPy constants.

    NumPy scalars (np.float64(0.5), what np.sqrt returns) become Python scalars,
    so they promote weakly like Python numbers and never upcast a float32 tensor.
    """
    if type(x) is Tensor:
        return x.data
    if isinstance(x, np.generic):
        return x.item()
    return x


def _needs(x: Any) -> bool:
    """Whether input ``x`` wants a gradient (lets a rule skip work for constants)."""
    return type(x) is Tensor and x.requires_grad


def _result(data: Any, inputs: tuple, backward: Callable) -> Tensor:
    """Wrap ``data``; record ``inputs`` and ``backward`` if recording and some input needs grad.

    ``backward(g)`` returns one gradient (or None) per entry of ``inputs``.
    """
    out = Tensor(data)
    for x in inputs:
        if type(x) is Tensor and x.requires_grad:
            if _recording.get():
                out.requires_grad = True
                out._inputs = inputs
                out._backward = backward
            break
    return out


def _constant(data: Any) -> Tensor:
    """Results that carry no gradient (comparisons, sign, argmax)."""
    return Tensor(data)


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added to or stretched in ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


def _unb(g: np.ndarray, x: Any) -> np.ndarray | None:
    """Gradient for input ``x`` reduced to its shape, or None when it needs none."""
    return unbroadcast(g, x.data.shape) if _needs(x) else None


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """axis (int, tuple, None, negatives allowed) -> sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(int(a) % ndim if ndim else int(a) for a in axis))


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a reduction over ``axes`` has with keepdims=True."""
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def gradients(root: Tensor, seed: np.ndarray | None = None) -> dict[Tensor, np.ndarray]:
    """Reverse-mode pass from ``root``: {leaf tensor: gradient} for every leaf requiring grad.

    The gradients live in a dict local to this call (never on the tensors), so
    two threads differentiating through the same variables stay independent.
    """
    if not root.requires_grad:
        return {}
    # Iterative depth-first post-order: a node is appended after all of its inputs.
    # A node is marked when it is expanded, not when pushed, which keeps the order
    # topological when a node is reached again through a longer path.
    order: list[Tensor] = []
    seen: set[Tensor] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        for x in node._inputs:
            if type(x) is Tensor and x.requires_grad and x not in seen:
                stack.append((x, False))

    grads: dict[Tensor, np.ndarray] = {root: np.ones_like(root.data) if seed is None else seed}
    owned: set[int] = set()  # ids of accumulators made here, which may grow in place
    leaves: dict[Tensor, np.ndarray] = {}
    for node in reversed(order):
        g = grads.pop(node, None)
        if g is None:
            continue
        owned.discard(id(g))
        if node._backward is None:  # a leaf
            leaves[node] = g
            continue
        for x, gx in zip(node._inputs, node._backward(g)):
            if gx is None or type(x) is not Tensor or not x.requires_grad:
                continue
            prev = grads.get(x)
            if type(gx) is _SliceGrad:  # one slice of x's gradient: written into an accumulator
                if prev is None or id(prev) not in owned:
                    prev = np.zeros_like(x.data) if prev is None else prev.copy()
                    owned.add(id(prev))
                gx.add_into(prev)
                grads[x] = prev
            elif prev is None:
                grads[x] = gx
            elif id(prev) in owned:
                prev += gx
            else:  # not in place: prev or gx may be the very array another input received
                grads[x] = prev + gx
    return leaves


class _SliceGrad:
    """The gradient of one slice ``x[..., index, ...]`` (``unstack``), kept small until accumulated.

    Handing back a full-size array per slice would make the backward pass of T slices cost
    O(T^2); ``gradients`` instead adds each slice into one accumulator for x.
    """
    __slots__ = ("index", "axis", "g")

    def __init__(self, index: int, axis: int, g: np.ndarray):
        self.index, self.axis, self.g = index, axis, g

    def add_into(self, buffer: np.ndarray) -> None:
        np.moveaxis(buffer, self.axis, 0)[self.index] += self.g


# ================================================================== the ops
# Each op: forward, then its backward rule. ``g`` is d(loss)/d(output).

# ------------------------------------------------------- elementwise, binary

def add(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # d(a+b)/da = 1, d(a+b)/db = 1
        return _unb(g, a), _unb(g, b)
    return _result(ad + bd, (a, b), backward)


def subtract(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # d(a-b)/da = 1, d(a-b)/db = -1
        return _unb(g, a), (_unb(-g, b) if _needs(b) else None)
    return _result(ad - bd, (a, b), backward)


def multiply(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # d(ab)/da = b, d(ab)/db = a
        return (_unb(g * bd, a) if _needs(a) else None,
                _unb(g * ad, b) if _needs(b) else None)
    return _result(ad * bd, (a, b), backward)


def divide(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)
    out = ad / bd

    def backward(g):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
        ga = g / bd
        return (_unb(ga, a) if _needs(a) else None,
                _unb(-ga * out, b) if _needs(b) else None)
    return _result(out, (a, b), backward)


def power(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)
    out = ad ** bd

    def backward(g):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log a  (needs a > 0)
        # log in out's dtype: np.log of a Python-scalar base would be a float64 scalar and upcast g.
        return (_unb(g * bd * ad ** (bd - 1), a) if _needs(a) else None,
                _unb(g * out * np.log(ad, dtype=out.dtype), b) if _needs(b) else None)
    return _result(out, (a, b), backward)


def maximum(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # 1 to the larger input; on ties everything goes to a (a >= b)
        to_a = ad >= bd
        return (_unb(np.where(to_a, g, 0), a) if _needs(a) else None,
                _unb(np.where(to_a, 0, g), b) if _needs(b) else None)
    return _result(np.maximum(ad, bd), (a, b), backward)


def minimum(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # 1 to the smaller input; on ties everything goes to a (a <= b)
        to_a = ad <= bd
        return (_unb(np.where(to_a, g, 0), a) if _needs(a) else None,
                _unb(np.where(to_a, 0, g), b) if _needs(b) else None)
    return _result(np.minimum(ad, bd), (a, b), backward)


# Comparisons: bool results, no gradient.
def equal(a, b) -> Tensor: return _constant(np.equal(_val(a), _val(b)))
def not_equal(a, b) -> Tensor: return _constant(np.not_equal(_val(a), _val(b)))
def greater(a, b) -> Tensor: return _constant(np.greater(_val(a), _val(b)))
def greater_equal(a, b) -> Tensor: return _constant(np.greater_equal(_val(a), _val(b)))
def less(a, b) -> Tensor: return _constant(np.less(_val(a), _val(b)))
def less_equal(a, b) -> Tensor: return _constant(np.less_equal(_val(a), _val(b)))


def where(cond, a, b) -> Tensor:
    cd, ad, bd = _val(cond), _val(a), _val(b)

    def backward(g):  # g flows to a where cond holds, to b elsewhere
        return (None,
                _unb(np.where(cd, g, 0), a) if _needs(a) else None,
                _unb(np.where(cd, 0, g), b) if _needs(b) else None)
    return _result(np.where(cd, ad, bd), (cond, a, b), backward)


# -------------------------------------------------------- elementwise, unary

def negative(x) -> Tensor:
    def backward(g):  # d(-x)/dx = -1
        return (-g,)
    return _result(-_val(x), (x,), backward)


def abs(x) -> Tensor:  # noqa: A001 - the op's name in the contract
    xd = _val(x)

    def backward(g):  # d|x|/dx = sign(x), 0 at 0
        return (g * np.sign(xd),)
    return _result(np.abs(xd), (x,), backward)


def sign(x) -> Tensor:
    # Piecewise constant: no gradient.
    return _constant(np.sign(_val(x)))


def exp(x) -> Tensor:
    out = np.exp(_val(x))

    def backward(g):  # d e^x/dx = e^x
        return (g * out,)
    return _result(out, (x,), backward)


def log(x) -> Tensor:
    xd = _val(x)

    def backward(g):  # d log x/dx = 1/x
        return (g / xd,)
    return _result(np.log(xd), (x,), backward)


def log1p(x) -> Tensor:
    xd = _val(x)

    def backward(g):  # d log(1+x)/dx = 1/(1+x)
        return (g / (1 + xd),)
    return _result(np.log1p(xd), (x,), backward)


def sqrt(x) -> Tensor:
    out = np.sqrt(_val(x))

    def backward(g):  # d sqrt(x)/dx = 1/(2 sqrt(x))
        return (g / (2 * out),)
    return _result(out, (x,), backward)


def tanh(x) -> Tensor:
    out = np.tanh(_val(x))

    def backward(g):  # d tanh(x)/dx = 1 - tanh(x)^2
        return (g * (1 - out * out),)
    return _result(out, (x,), backward)


def sigmoid(x) -> Tensor:
    xd = _val(x)
    # e = exp(-|x|) never overflows; 1/(1+e) for x >= 0 and e/(1+e) for x < 0 are both exact.
    e = np.exp(-np.abs(xd))
    out = np.where(xd >= 0, 1 / (1 + e), e / (1 + e))

    def backward(g):  # d s(x)/dx = s(x) (1 - s(x))
        return (g * out * (1 - out),)
    return _result(out, (x,), backward)


def relu(x) -> Tensor:
    xd = _val(x)

    def backward(g):  # 1 for x > 0, 0 for x <= 0 (0 at the kink, by contract)
        return (g * (xd > 0),)
    return _result(np.maximum(xd, 0), (x,), backward)


# libm's erf, one element at a time: NumPy has no erf and SciPy is not a
# dependency. Exactness beats speed here: this backend is the reference.
_erf_elementwise = np.frompyfunc(math.erf, 1, 1)
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)  # a Python float, so float32 stays float32


def erf(x) -> Tensor:
    xd = np.asarray(_val(x))
    dtype = xd.dtype if xd.dtype.kind == "f" else np.float64

    def backward(g):  # d erf(x)/dx = 2/sqrt(pi) exp(-x^2)
        return (g * (_TWO_OVER_SQRT_PI * np.exp(-xd * xd)),)
    return _result(np.asarray(_erf_elementwise(xd), dtype=dtype), (x,), backward)


def clip(x, lo, hi) -> Tensor:
    xd, lod, hid = _val(x), _val(lo), _val(hi)

    def backward(g):  # 1 where lo <= x <= hi (bounds included), else 0; lo and hi get none
        inside = True
        if lod is not None:
            inside = xd >= lod
        if hid is not None:
            inside = inside & (xd <= hid)
        return (g * inside,)
    return _result(np.clip(xd, lod, hid), (x,), backward)


# ---------------------------------------------------------------- reductions

def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    xd = _val(x)

    def backward(g):  # every element contributes once: broadcast g back
        kept = _kept_shape(xd.shape, _axes(axis, xd.ndim))
        return (np.broadcast_to(np.reshape(g, kept), xd.shape),)
    return _result(np.sum(xd, axis=_tuple_axis(axis), keepdims=keepdims), (x,), backward)


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    xd = _val(x)

    def backward(g):  # each element contributes 1/n, n = number of reduced elements
        axes = _axes(axis, xd.ndim)
        n = math.prod(xd.shape[a] for a in axes)
        return (np.broadcast_to(np.reshape(g, _kept_shape(xd.shape, axes)) / n, xd.shape),)
    return _result(np.mean(xd, axis=_tuple_axis(axis), keepdims=keepdims), (x,), backward)


def _extremum(reduce: Callable, x, axis, keepdims: bool) -> Tensor:
    xd = _val(x)
    axes = _axes(axis, xd.ndim)
    m = reduce(xd, axis=axes, keepdims=True)

    def backward(g):  # d max/dx_i = 1/k for each of the k elements equal to the max, else 0
        hit = xd == m
        share = np.reshape(g, m.shape) / hit.sum(axis=axes, keepdims=True, dtype=g.dtype)
        return (hit * share,)
    return _result(m if keepdims else np.squeeze(m, axis=axes), (x,), backward)


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _extremum(np.max, x, axis, keepdims)


def min(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _extremum(np.min, x, axis, keepdims)


def argmax(x, axis: int | None = -1) -> Tensor:
    # Integer result: no gradient.
    return _constant(np.argmax(_val(x), axis=axis).astype(np.int64, copy=False))


def _tuple_axis(axis):
    # NumPy wants a tuple, not a list, for several axes.
    return tuple(axis) if isinstance(axis, list) else axis


# ------------------------------------------------------ shape and indexing

def reshape(x, shape) -> Tensor:
    xd = _val(x)

    def backward(g):  # same elements, old shape
        return (np.reshape(g, xd.shape),)
    return _result(np.reshape(xd, shape), (x,), backward)


def transpose(x, axes=None) -> Tensor:
    xd = _val(x)
    if axes is not None:
        axes = tuple(int(a) % xd.ndim for a in axes)

    def backward(g):  # apply the inverse permutation (None reverses, its own inverse)
        return (np.transpose(g, None if axes is None else np.argsort(axes)),)
    return _result(np.transpose(xd, axes), (x,), backward)


def concatenate(xs, axis: int = -1) -> Tensor:
    xs = tuple(xs)
    datas = [_val(t) for t in xs]
    ends = np.cumsum([np.shape(d)[axis] for d in datas])[:-1]

    def backward(g):  # each input gets back its own slice of g
        return tuple(np.split(g, ends, axis=axis))
    return _result(np.concatenate(datas, axis=axis), xs, backward)


def take(x, indices, axis: int = 0) -> Tensor:
    xd, idx = _val(x), np.asarray(_val(indices))
    axis = int(axis) % xd.ndim
    k = idx.ndim

    def backward(g):  # scatter-add: an index taken twice gets both slices of g
        gx = np.zeros_like(xd)
        # Put the gathered axis first on both sides, so one np.add.at does it.
        np.add.at(np.moveaxis(gx, axis, 0), idx, np.moveaxis(g, tuple(range(axis, axis + k)), tuple(range(k))))
        return gx, None
    return _result(np.take(xd, idx, axis=axis), (x, indices), backward)


def unstack(x, axis: int = 0) -> list[Tensor]:
    xd = _val(x)
    axis = int(axis) % xd.ndim

    def slice_at(i: int) -> Tensor:
        # d out_i / dx: g in slice i, zeros elsewhere (written by gradients() into one accumulator)
        return _result(np.take(xd, i, axis=axis), (x,), lambda g: (_SliceGrad(i, axis, g),))
    return [slice_at(i) for i in range(xd.shape[axis])]


def take_along_axis(x, indices, axis: int) -> Tensor:
    xd, idx = _val(x), np.asarray(_val(indices))
    axis = int(axis) % xd.ndim

    def backward(g):  # scatter-add through the equivalent fancy index
        # x[index] == take_along_axis(x, idx, axis): idx on `axis`, aranges on the others.
        index = tuple(idx if d == axis else
                      np.arange(n).reshape([-1 if e == d else 1 for e in range(xd.ndim)])
                      for d, n in enumerate(xd.shape))
        gx = np.zeros_like(xd)
        np.add.at(gx, index, g)
        return gx, None
    return _result(np.take_along_axis(xd, idx, axis=axis), (x, indices), backward)


def getitem(x, key) -> Tensor:
    """``x[key]`` with basic or advanced indexing (keys may hold index Tensors)."""
    xd = _val(x)
    if type(key) is tuple:
        key = tuple(_val(k) for k in key)
    else:
        key = _val(key)

    def backward(g):  # scatter-add: repeated advanced indices accumulate
        gx = np.zeros_like(xd)
        np.add.at(gx, key, g)
        return (gx,)
    return _result(xd[key], (x,), backward)


# ------------------------------------------------------------ linear algebra

def matmul(a, b) -> Tensor:
    ad, bd = _val(a), _val(b)

    def backward(g):  # dA = G B^T, dB = A^T G, summed over broadcast batch axes
        # 1-D operands follow NumPy: promote to matrices, then drop the added axis again.
        a2 = ad[None, :] if ad.ndim == 1 else ad
        b2 = bd[:, None] if bd.ndim == 1 else bd
        g2 = g
        if ad.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if bd.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if _needs(a):
            ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(ad.shape)
        if _needs(b):
            gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(bd.shape)
        return ga, gb
    return _result(ad @ bd, (a, b), backward)


# ------------------------------------------------------------ autodiff helpers

def stop_gradient(x) -> Tensor:
    # Same array, cut from the graph.
    return Tensor(_val(x))


def cast(x, dtype: str) -> Tensor:
    xd = _val(x)
    out = np.asarray(xd).astype(dtype)
    if out.dtype.kind != "f":  # int/bool results carry no gradient
        return _constant(out)

    def backward(g):  # identity, cast back to the input's precision
        return (g.astype(xd.dtype, copy=False),)
    return _result(out, (x,), backward)


# ================================================================ neural-network ops
# NHWC images; conv kernels (kh, kw, in // groups, out); padding "valid", "same" or
# ((top, bottom), (left, right)) as in unidl.backend.NN_PRIMITIVES.
#
# Convolutions run on BLAS through im2col. A strided view of the padded input gives,
# for every output cell, the (kh, kw, C) patch it reads (``_patches``, no copy). The
# patches of a block of output rows are copied into one (cells, kh*kw*C) matrix, which
# meets the kernel, read as a (kh*kw*C, O) matrix, in one matmul. Blocks hold about
# ``_IM2COL_BLOCK_BYTES`` of patches: memory stays bounded on large images, and the copy
# is still in cache when BLAS reads it. The way back (col2im) turns a block's output
# gradient into the gradient each kernel tap sends to the cells it read, with one
# stacked matmul, and adds those on with one strided add per tap: kh*kw adds, never a
# loop over positions. At stride 1 each product takes whichever of the two forms copies
# fewer channels (see ``_flipped_kernel``).
# Pools reduce their kh*kw taps' strided views elementwise; their backward rules work on
# the taps stacked into one contiguous array, and scatter back with one transposing copy
# when the windows tile the image.
# (This module's own max, min and sum are ops: plain Python ones are spelled builtins.max.)

_IM2COL_BLOCK_BYTES = 1 << 20  # 1 MiB: measured best (or within noise) on both the bench CNN and the autoencoder


def _out_size(padded: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int],
              op: str) -> tuple[int, int]:
    """Output (H', W') of a window sliding over a padded (H, W) image."""
    out = tuple((n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(padded, kernel, strides, dilation))
    if builtins.min(out) < 1:
        extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
        raise ValueError(f"{op}: the (padded) input {tuple(padded)} is smaller than the window {extent}")
    return out  # type: ignore[return-value]


def _pad_hw(a: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    (t, b), (l, r) = pads
    if not (t or b or l or r):
        return a
    return np.pad(a, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _crop_hw(a: np.ndarray, pads) -> np.ndarray:
    (t, b), (l, r) = pads
    return a[:, t:a.shape[1] - b, l:a.shape[2] - r, :]


def _window(a: np.ndarray, i: int, j: int, strides, dilation, out_hw) -> np.ndarray:
    """The cells of padded image ``a`` that kernel tap (i, j) meets: an (N, H', W', ...) strided view."""
    (sh, sw), (dh, dw), (ho, wo) = strides, dilation, out_hw
    return a[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]


def _positions(kh: int, kw: int):
    return ((i, j) for i in range(kh) for j in range(kw))  # row-major: the max-pool tie order


def _patches(xp: np.ndarray, kernel_hw, strides, dilation, out_hw) -> np.ndarray:
    """Read-only (N, H', W', kh, kw, C) view of padded ``xp``, no copy:
    [n, h, w, i, j, c] = xp[n, h*sh + i*dh, w*sw + j*dw, c]."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel_hw, strides, dilation, out_hw
    view = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))  # (N, ., ., C, eh, ew)
    view = view[:, :(ho - 1) * sh + 1:sh, :(wo - 1) * sw + 1:sw, :, ::dh, ::dw]
    return view.transpose(0, 1, 2, 4, 5, 3)


def _blocks(images: int, rows: int, row_bytes: int) -> list[tuple[slice, slice]]:
    """(images, output rows) index pairs cutting an (N, H', ...) output grid into blocks whose patches
    take about ``_IM2COL_BLOCK_BYTES``: runs of whole images when one image fits, else runs of rows."""
    per_block = builtins.max(1, _IM2COL_BLOCK_BYTES // builtins.max(row_bytes, 1))
    if per_block >= rows:
        step = per_block // rows
        return [(slice(n, n + step), slice(0, rows)) for n in range(0, images, step)]
    return [(slice(n, n + 1), slice(h, h + per_block)) for n in range(images) for h in range(0, rows, per_block)]


def _row_bytes(out_width: int, kernel_hw, channels: int, dtype) -> int:
    """Bytes of im2col patches per output row."""
    return out_width * kernel_hw[0] * kernel_hw[1] * channels * np.dtype(dtype).itemsize


def _im2col(patches: np.ndarray, groups: int) -> np.ndarray:
    """Patches (n, h, w, kh, kw, C) -> a (G, n*h*w, kh*kw*C/G) copy: one row per output cell, one slab per group.

    With one channel per group (a grayscale input, a depthwise convolution) the copy is laid out
    tap-major and returned transposed: it then moves whole image rows at a time, not runs of kw
    values (measured 2-7x faster), and BLAS takes the transposed matrix as it is.
    """
    n, h, w, kh, kw, c = patches.shape
    if c == groups:
        tap_major = np.ascontiguousarray(patches.transpose(5, 3, 4, 0, 1, 2))  # (G, kh, kw, n, h, w)
        return tap_major.reshape(groups, kh * kw, n * h * w).transpose(0, 2, 1)
    by_group = patches.reshape(n, h, w, kh, kw, groups, c // groups)
    return by_group.transpose(5, 0, 1, 2, 3, 4, 6).reshape(groups, n * h * w, kh * kw * (c // groups))


def _kernel_matrices(k: np.ndarray, groups: int) -> np.ndarray:
    """Kernel (kh, kw, C/G, O) -> (G, kh*kw*C/G, O/G): the matrix each group's patches meet."""
    kh, kw, cg, o = k.shape
    by_group = k.reshape(kh, kw, cg, groups, o // groups).transpose(3, 0, 1, 2, 4)
    return by_group.reshape(groups, kh * kw * cg, o // groups)


def _from_kernel_matrices(m: np.ndarray, k_shape) -> np.ndarray:
    """Inverse of ``_kernel_matrices``: (G, kh*kw*C/G, O/G) -> (kh, kw, C/G, O)."""
    kh, kw, cg, o = k_shape
    groups = m.shape[0]
    return m.reshape(groups, kh, kw, cg, o // groups).transpose(1, 2, 3, 0, 4).reshape(k_shape)


def _by_group(a: np.ndarray, groups: int) -> np.ndarray:
    """(n, h, w, G*q) -> (G, n*h*w, q) view: the cells as rows, one slab per group of channels."""
    return a.reshape(-1, groups, a.shape[-1] // groups).transpose(1, 0, 2)


def _group_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (G, m, p) @ b (G, p, q), group by group. One group goes through a plain 2-D matmul:
    the stacked form was measured ~40% slower on a transposed operand."""
    if a.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return a @ b


def _im2col_conv(xp: np.ndarray, k: np.ndarray, strides, dilation, groups: int, out_hw) -> np.ndarray:
    """y[n, h, w, o] = sum_{i, j, c} xp[n, h*sh + i*dh, w*sw + j*dw, c] k[i, j, c, o] (per group):
    im2col(xp) @ kernel matrix, one matmul per block of output rows."""
    n, c, o = xp.shape[0], xp.shape[3], k.shape[3]
    patches = _patches(xp, k.shape[:2], strides, dilation, out_hw)
    weights = _kernel_matrices(k, groups)
    y = np.empty((n, *out_hw, o), dtype=np.result_type(xp, k))
    for block in _blocks(n, out_hw[0], _row_bytes(out_hw[1], k.shape[:2], c, xp.dtype)):
        cols = _im2col(patches[block], groups)
        target = y[block].reshape(-1, o)  # a view: a block is whole images, or rows of one image
        if groups == 1:
            np.matmul(cols[0], weights[0], out=target)
        else:
            target[...] = (cols @ weights).transpose(1, 0, 2).reshape(target.shape)  # (G, cells, O/G) -> cells
    return y


def _im2col_kernel_grad(xp: np.ndarray, g: np.ndarray, strides, dilation, groups: int, k_shape) -> np.ndarray:
    """dk[i, j, c, o] = sum_{n, h, w} xp[n, h*sh + i*dh, w*sw + j*dw, c] g[n, h, w, o] (per group):
    im2col(xp)^T @ g, summed over the blocks of output rows."""
    n, ho, wo, _ = g.shape
    # Contiguous first: g is often a broadcast view (the backward of a sum), whose
    # zero strides would push matmul off its BLAS path.
    g = np.ascontiguousarray(g)
    patches = _patches(xp, k_shape[:2], strides, dilation, (ho, wo))
    total = None
    for block in _blocks(n, ho, _row_bytes(wo, k_shape[:2], xp.shape[3], xp.dtype)):
        term = _group_matmul(_im2col(patches[block], groups).transpose(0, 2, 1), _by_group(g[block], groups))
        total = term if total is None else np.add(total, term, out=total)
    return _from_kernel_matrices(total, k_shape)


def _col2im(g: np.ndarray, k: np.ndarray, strides, dilation, groups: int, padded_shape) -> np.ndarray:
    """dxp[n, h*sh + i*dh, w*sw + j*dw, c] += sum_o g[n, h, w, o] k[i, j, c, o] (per group).

    Per block of output rows, one stacked matmul gives every kernel tap's gradient of
    the cells it read, tap-major (taps, cells, C), so that each tap's slab is contiguous;
    one strided add per tap puts it onto those cells (measured 1.2-1.7x faster than adding
    the columns of one im2col-shaped product). Taps of neighbouring cells overlap when
    stride < extent: add, never assign.
    """
    n, ho, wo, o = g.shape
    kh, kw, cg, _ = k.shape
    g = np.ascontiguousarray(g)  # see _im2col_kernel_grad
    # (kh*kw, G, O/G, C/G): per tap and group, the matrix that maps g's channels back to x's.
    tap_weights = np.ascontiguousarray(k.reshape(kh * kw, cg, groups, o // groups).transpose(0, 2, 3, 1))
    gxp = np.zeros(padded_shape, dtype=np.result_type(g, k))
    gxp_by_group = gxp.reshape(*padded_shape[:3], groups, cg)  # a view: (N, Hp, Wp, G, C/G)
    for images, rows in _blocks(n, ho, _row_bytes(wo, (kh, kw), padded_shape[3], gxp.dtype)):
        gb = g[images, rows]
        per_tap = _by_group(gb, groups) @ tap_weights  # (kh*kw, G, cells, C/G)
        target = gxp_by_group[images, rows.start * strides[0]:]
        for tap, (i, j) in enumerate(_positions(kh, kw)):
            view = _window(target, i, j, strides, dilation, gb.shape[1:3])
            view += per_tap[tap].transpose(1, 0, 2).reshape(view.shape)
    return gxp


# At stride 1 a convolution and its transpose are one computation: with the kernel turned
# 180 degrees and its input and output channels swapped (``_flipped_kernel``), the
# correlation y = conv(xp, k) is also the scatter of xp onto a frame, cropped by the
# kernel extent - 1 on every side. im2col copies kh*kw*C values per output cell, col2im
# writes kh*kw*O per input cell: at stride 1 each of the three products below takes the
# form that expands the side with fewer channels (the final 32 -> 1 convolution of an
# autoencoder: 32x less copying). Strided convolutions keep the direct forms.

def _flipped_kernel(k: np.ndarray, groups: int) -> np.ndarray:
    """Kernel (kh, kw, C/G, O) -> (kh, kw, O/G, C): turned 180 degrees, inputs and outputs swapped per
    group. Its own inverse (with the swapped shape)."""
    kh, kw, cg, o = k.shape
    by_group = k[::-1, ::-1].reshape(kh, kw, cg, groups, o // groups)
    return by_group.transpose(0, 1, 4, 3, 2).reshape(kh, kw, o // groups, groups * cg)


def _through_output_side(strides, in_channels: int, out_channels: int) -> bool:
    return strides == (1, 1) and out_channels < in_channels


def _full_pads(k_shape, dilation):
    """Padding by the kernel extent - 1 on every side: the frame of a stride-1 convolution's transpose."""
    return ((k_shape[0] - 1) * dilation[0],) * 2, ((k_shape[1] - 1) * dilation[1],) * 2


def _conv(xp: np.ndarray, k: np.ndarray, strides, dilation, groups: int, out_hw) -> np.ndarray:
    """y = conv(xp, k), (N, H', W', O): im2col, or at stride 1 with O < C the scatter of xp."""
    if _through_output_side(strides, xp.shape[3], k.shape[3]):
        full = _full_pads(k.shape, dilation)  # xp's cells scatter onto rows 0 .. Hp-1 + (kh-1)*dh
        frame = (xp.shape[0], xp.shape[1] + full[0][0], xp.shape[2] + full[1][0], k.shape[3])
        y = _crop_hw(_col2im(xp, _flipped_kernel(k, groups), (1, 1), dilation, groups, frame), full)
        return np.ascontiguousarray(y)
    return _im2col_conv(xp, k, strides, dilation, groups, out_hw)


def _conv_input_grad(g: np.ndarray, k: np.ndarray, strides, dilation, groups: int, padded_shape) -> np.ndarray:
    """d/dxp of sum(conv(xp, k) * g), the transposed convolution of g: col2im, or at stride 1 with
    O < C the convolution of g, fully padded, with the flipped kernel."""
    if _through_output_side(strides, padded_shape[3], k.shape[3]):
        g_full = _pad_hw(g, _full_pads(k.shape, dilation))
        return _im2col_conv(g_full, _flipped_kernel(k, groups), (1, 1), dilation, groups, padded_shape[1:3])
    return _col2im(g, k, strides, dilation, groups, padded_shape)


def _conv_kernel_grad(xp: np.ndarray, g: np.ndarray, strides, dilation, groups: int, k_shape) -> np.ndarray:
    """d/dk of sum(conv(xp, k) * g): im2col(xp)^T @ g, or at stride 1 with O < C the patches of the
    fully padded g against xp, which is the flipped kernel's gradient."""
    if _through_output_side(strides, xp.shape[3], g.shape[3]):
        g_full = _pad_hw(g, _full_pads(k_shape, dilation))
        flipped_shape = (k_shape[0], k_shape[1], k_shape[3] // groups, xp.shape[3])
        return _flipped_kernel(_im2col_kernel_grad(g_full, xp, (1, 1), dilation, groups, flipped_shape), groups)
    return _im2col_kernel_grad(xp, g, strides, dilation, groups, k_shape)


def _check_rank4(a: np.ndarray, what: str, op: str) -> None:
    if np.ndim(a) != 4:
        raise ValueError(f"{op}: {what} must have 4 dimensions, got shape {np.shape(a)}")


def conv2d(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1), groups: int = 1) -> Tensor:
    xd, kd = _val(x), _val(kernel)
    _check_rank4(xd, "x (N, H, W, C)", "conv2d")
    _check_rank4(kd, "kernel (kh, kw, C // groups, O)", "conv2d")
    s, d = _pair(strides, "strides", "conv2d"), _pair(dilation, "dilation", "conv2d")
    groups = int(groups)
    c, (kh, kw, cg, o) = xd.shape[3], kd.shape
    if groups < 1 or c != cg * groups or o % groups:
        raise ValueError(f"conv2d: x has {c} channels and the kernel shape is {kd.shape}; with groups={groups} "
                         "the kernel must be (kh, kw, C // groups, O) with C and O divisible by groups")
    pads = _resolve_padding(padding, xd.shape[1:3], (kh, kw), s, d, "conv2d")
    xp = _pad_hw(xd, pads)
    out_hw = _out_size(xp.shape[1:3], (kh, kw), s, d, "conv2d")

    def backward(g):
        # dx: the transposed convolution of g, cropped back from the padded frame;
        # dk: the patches of x correlated with g.
        gx = _crop_hw(_conv_input_grad(g, kd, s, d, groups, xp.shape), pads) if _needs(x) else None
        gk = _conv_kernel_grad(xp, g, s, d, groups, kd.shape) if _needs(kernel) else None
        return gx, gk
    return _result(_conv(xp, kd, s, d, groups, out_hw), (x, kernel), backward)


def conv2d_transpose(x, kernel, strides=(1, 1), padding="valid", dilation=(1, 1)) -> Tensor:
    xd, kd = _val(x), _val(kernel)
    _check_rank4(xd, "x (N, H, W, C)", "conv2d_transpose")
    _check_rank4(kd, "kernel (kh, kw, O, C)", "conv2d_transpose")
    s, d = _pair(strides, "strides", "conv2d_transpose"), _pair(dilation, "dilation", "conv2d_transpose")
    n, h, w, c = xd.shape
    kh, kw, o, kc = kd.shape
    if kc != c:
        raise ValueError(f"conv2d_transpose: x has {c} channels but the kernel (kh, kw, O, C) is {kd.shape}")
    out_hw, pads = _transpose_geometry(padding, (h, w), (kh, kw), s, d)
    padded_shape = (n, out_hw[0] + builtins.sum(pads[0]), out_hw[1] + builtins.sum(pads[1]), o)

    def backward(g):
        # The transpose of a transpose is the convolution itself: dx = conv2d(g, kernel);
        # dk is conv2d's kernel gradient with g as its input and x as its upstream.
        gp = _pad_hw(g, pads)
        gx = _conv(gp, kd, s, d, 1, (h, w)) if _needs(x) else None
        gk = _conv_kernel_grad(gp, xd, s, d, 1, kd.shape) if _needs(kernel) else None
        return gx, gk
    out = _crop_hw(_conv_input_grad(xd, kd, s, d, 1, padded_shape), pads)
    return _result(np.ascontiguousarray(out), (x, kernel), backward)


def _pool_setup(xd: np.ndarray, pool_size, strides, padding, op: str):
    """(window, strides, pads, out_hw) of a 2-D pool; explicit pads must stay under the window size,
    so that every window holds at least one cell of the input."""
    _check_rank4(xd, "x (N, H, W, C)", op)
    k = _pair(pool_size, "pool_size", op)
    s = k if strides is None else _pair(strides, "strides", op)  # Keras: strides default to pool_size
    pads = _resolve_padding(padding, xd.shape[1:3], k, s, (1, 1), op)
    if any(p >= kk for pair, kk in zip(pads, k) for p in pair):
        raise ValueError(f"{op}: padding {pads} must be smaller than the pool size {k}")
    out_hw = _out_size((xd.shape[1] + builtins.sum(pads[0]), xd.shape[2] + builtins.sum(pads[1])), k, s, (1, 1), op)
    return k, s, pads, out_hw


def _masked(g: np.ndarray, mask: np.ndarray, finite: bool) -> np.ndarray:
    """g where mask, else 0. A multiply by the mask is branch-free (~20x faster than np.where on an
    irregular mask) but gives inf * 0 = NaN, so non-finite g takes np.where."""
    return g * mask if finite else np.where(mask, g, 0)


def _tiles(a: np.ndarray, k, out_hw) -> np.ndarray:
    """(N, H', kh, W', kw, C) view of the top-left H'*kh x W'*kw cells of ``a``: the windows of a pool
    whose strides equal its size, tap (i, j) of window (h, w) at [:, h, i, w, j]. (A view even of a
    sliced array: splitting an axis in two never needs a copy.)"""
    (kh, kw), (ho, wo) = k, out_hw
    return a[:, :ho * kh, :wo * kw].reshape(a.shape[0], ho, kh, wo, kw, a.shape[3])


def _stack_taps(xp: np.ndarray, k, s, out_hw) -> np.ndarray:
    """(kh*kw, N, H', W', C) copy of the pool taps' strided views: contiguous per tap, so the
    elementwise passes over it run long inner loops."""
    return np.stack([_window(xp, i, j, s, (1, 1), out_hw) for i, j in _positions(*k)])


def _unstack_taps(per_tap: np.ndarray, shape, k, s, out_hw) -> np.ndarray:
    """The transpose of ``_stack_taps``: a new array of ``shape`` where each cell sums what its taps hold."""
    out = np.zeros(shape, dtype=per_tap.dtype)
    if s == k:  # windows tile the image: one transposing copy
        n, ho, wo, c = per_tap.shape[1:]
        _tiles(out, k, out_hw)[...] = per_tap.reshape(k[0], k[1], n, ho, wo, c).transpose(2, 3, 0, 4, 1, 5)
        return out
    for tap, (i, j) in enumerate(_positions(*k)):  # windows may overlap: accumulate
        view = _window(out, i, j, s, (1, 1), out_hw)
        view += per_tap[tap]
    return out


def _first_max(per_tap: np.ndarray, best: np.ndarray, barred: np.ndarray | None = None) -> np.ndarray:
    """(kh*kw, ...) bool: True at each window's first maximal tap (row-major), NaN counting as maximal
    and ``barred`` taps (padding) never winning."""
    hits = per_tap == best
    if np.isnan(best).any():
        hits |= np.isnan(per_tap)
    if barred is not None:
        hits &= ~barred
    open_ = np.ones(best.shape, dtype=bool)  # windows no earlier tap claimed
    for tap_hits in hits:
        tap_hits &= open_
        open_ ^= tap_hits
    return hits


def _padding_taps(shape, pads, k, s, out_hw) -> np.ndarray | None:
    """(kh*kw, N, H', W', C) bool: the taps that read padding; None when there is none."""
    if not any(p for pair in pads for p in pair):
        return None
    return _stack_taps(_pad_hw(np.zeros(shape, dtype=bool), pads, True), k, s, out_hw)


def max_pool2d(x, pool_size, strides=None, padding="valid") -> Tensor:
    xd = _val(x)
    k, s, pads, out_hw = _pool_setup(xd, pool_size, strides, padding, "max_pool2d")
    xp = _pad_hw(xd, pads, -np.inf)  # -inf padding never wins a window
    best = None
    for i, j in _positions(*k):
        v = _window(xp, i, j, s, (1, 1), out_hw)
        best = v.copy() if best is None else np.maximum(best, v, out=best)  # NaN propagates, as in numpy.max

    def backward(g):  # d max/dx = 1 at the window's first maximal cell, 0 elsewhere; windows accumulate
        # A window whose max is -inf ties with its padding, which must not win it.
        barred = _padding_taps(xd.shape, pads, k, s, out_hw) if np.isneginf(best).any() else None
        hits = _first_max(_stack_taps(xp, k, s, out_hw), best, barred)
        per_tap = _masked(g, hits, bool(np.isfinite(g).all()))  # (kh*kw, N, H', W', C)
        return (_crop_hw(_unstack_taps(per_tap, xp.shape, k, s, out_hw), pads),)
    return _result(best, (x,), backward)


def _window_counts(size, k, s, pads, out_hw, dtype) -> np.ndarray:
    """(H', W') array: how many cells of the unpadded input each pool window covers."""
    counts = []
    for n, kk, ss, (before, _), m in zip(size, k, s, pads, out_hw):
        start = np.arange(m) * ss - before
        counts.append(np.minimum(start + kk, n) - np.maximum(start, 0))
    return np.outer(*counts).astype(dtype)


def avg_pool2d(x, pool_size, strides=None, padding="valid") -> Tensor:
    xd = _val(x)
    k, s, pads, out_hw = _pool_setup(xd, pool_size, strides, padding, "avg_pool2d")
    xp = _pad_hw(xd, pads)
    one = (1, 1)
    total = None
    for i, j in _positions(*k):
        v = _window(xp, i, j, s, one, out_hw)
        total = v.copy() if total is None else np.add(total, v, out=total)
    # Divide by the cells inside the input only: padding is not counted (Keras/TF).
    counts = _window_counts(xd.shape[1:3], k, s, pads, out_hw, total.dtype)[:, :, None]

    def backward(g):  # d mean/dx = 1/count for each cell of the window, accumulated over windows
        share = np.broadcast_to(g / counts, (k[0] * k[1], *g.shape))
        return (_crop_hw(_unstack_taps(share, xp.shape, k, s, out_hw), pads),)
    return _result(total / counts, (x,), backward)


def pad(x, pad_width, value: float = 0.0) -> Tensor:
    xd = _val(x)
    widths = _pad_widths(pad_width, np.ndim(xd))
    out = np.pad(xd, widths, mode="constant", constant_values=value)

    def backward(g):  # padded cells are constants: the input's cells take their slice of g
        return (g[tuple(slice(before, before + n) for (before, _), n in zip(widths, xd.shape))],)
    return _result(out, (x,), backward)


def _pad_widths(pad_width, ndim: int) -> tuple[tuple[int, int], ...]:
    """pad_width -> one (before, after) pair of non-negative ints per axis, or ValueError."""
    try:
        widths = tuple(tuple(p) for p in pad_width)
    except TypeError:
        widths = ()
    if len(widths) != ndim or not all(len(p) == 2 and all(isinstance(v, (int, np.integer)) and v >= 0 for v in p)
                                      for p in widths):
        raise ValueError(f"pad: pad_width must hold one (before, after) pair of non-negative ints for each of "
                         f"the {ndim} axes, got {pad_width!r}")
    return tuple((int(a), int(b)) for a, b in widths)


# ================================================================ keras.ops additions
# The optional ops (unidl.backend.OPTIONAL) and native versions of derived ones.

def sin(x) -> Tensor:
    xd = _val(x)

    def backward(g):  # d sin(x)/dx = cos(x)
        return (g * np.cos(xd),)
    return _result(np.sin(xd), (x,), backward)


def cos(x) -> Tensor:
    xd = _val(x)

    def backward(g):  # d cos(x)/dx = -sin(x)
        return (-g * np.sin(xd),)
    return _result(np.cos(xd), (x,), backward)


def floor(x) -> Tensor:
    # Piecewise constant: no gradient. Integers come back as they are.
    return _constant(np.floor(_val(x)) if np.asarray(_val(x)).dtype.kind == "f" else np.array(_val(x)))


def argsort(x, axis: int = -1) -> Tensor:
    # Stable, so equal elements keep their order (the contract); integer result: no gradient.
    return _constant(np.argsort(_val(x), axis=axis, kind="stable").astype(np.int64, copy=False))


def cumsum(x, axis: int = -1) -> Tensor:
    xd = _val(x)
    axis = int(axis) % xd.ndim

    def backward(g):  # d out_j/dx_i = 1 for i <= j: the running sum of g taken from the end
        return (np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis),)
    return _result(np.cumsum(xd, axis=axis), (x,), backward)

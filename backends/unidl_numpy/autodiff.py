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
# Every op below loops over the kh*kw kernel (or pool window) positions and nothing
# else: position (i, j) of the kernel meets a strided view of the padded input (one
# cell per output position), so each step is one BLAS matmul (convolutions) or one
# elementwise op (pools) over the whole batch and every channel. This keeps memory at
# one input-sized block per step, where a full im2col matrix would take kh*kw times
# the input, and measured no slower. The backward rules reuse the same views.
# (This module's own max, min and sum are ops: plain Python ones are spelled builtins.max.)







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
    """The cells of padded image ``a`` that kernel position (i, j) meets: an (N, H', W', C) strided view."""
    (sh, sw), (dh, dw), (ho, wo) = strides, dilation, out_hw
    return a[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw, :]


def _positions(kh: int, kw: int):
    return ((i, j) for i in range(kh) for j in range(kw))  # row-major: the max-pool tie order


def _group_matmul(a: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """a (M, G*p) times G blocks (G, p, q), group g of a's columns meeting block g -> (M, G*q)."""
    groups, p, q = blocks.shape
    if groups == 1:
        return a @ blocks[0]
    m = a.shape[0]
    out = np.matmul(a.reshape(m, groups, p).transpose(1, 0, 2), blocks)  # (G, M, q)
    return out.transpose(1, 0, 2).reshape(m, groups * q)


def _group_outer(a: np.ndarray, b: np.ndarray, groups: int) -> np.ndarray:
    """sum over rows m of a[m, group g]^T b[m, group g], for a (M, G*p), b (M, G*q) -> (p, G*q)."""
    if groups == 1:
        return a.T @ b
    m = a.shape[0]
    out = np.matmul(a.reshape(m, groups, -1).transpose(1, 2, 0), b.reshape(m, groups, -1).transpose(1, 0, 2))
    return out.transpose(1, 0, 2).reshape(out.shape[1], -1)  # (G, p, q) -> (p, G*q)


def _kernel_blocks(k_ij: np.ndarray, groups: int, transposed: bool = False) -> np.ndarray:
    """Kernel slice (C/G, O) -> its G diagonal blocks (G, C/G, O/G), or (G, O/G, C/G) transposed."""
    cg, o = k_ij.shape
    blocks = k_ij.reshape(cg, groups, o // groups)
    return blocks.transpose(1, 2, 0) if transposed else blocks.transpose(1, 0, 2)


def _conv_forward(xp: np.ndarray, k: np.ndarray, strides, dilation, groups: int, out_hw) -> np.ndarray:
    """y[n, h, w, o] = sum_{i, j, c} xp[n, h*sh + i*dh, w*sw + j*dw, c] k[i, j, c, o] (per group)."""
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, o = k.shape
    m = n * out_hw[0] * out_hw[1]
    out = None
    for i, j in _positions(kh, kw):
        # reshape copies the strided view into one contiguous (M, C) block: one BLAS call.
        cells = _window(xp, i, j, strides, dilation, out_hw).reshape(m, c)
        term = _group_matmul(cells, _kernel_blocks(k[i, j], groups))
        if out is None:
            out = term
        else:
            out += term
    return out.reshape(n, *out_hw, o)


def _conv_input_grad(g: np.ndarray, k: np.ndarray, strides, dilation, groups: int, padded_shape) -> np.ndarray:
    """d/dxp of sum(conv(xp) * g): each kernel position scatters g @ k[i, j]^T back onto the cells it read."""
    n, ho, wo, o = g.shape
    c = padded_shape[3]
    # Contiguous first: g is often a broadcast view (the backward of a sum), whose
    # zero strides would survive the reshape and push matmul off its BLAS path.
    g2 = np.ascontiguousarray(g).reshape(n * ho * wo, o)
    gxp = np.zeros(padded_shape, dtype=np.result_type(g, k))
    for i, j in _positions(k.shape[0], k.shape[1]):
        view = _window(gxp, i, j, strides, dilation, (ho, wo))
        # Windows of different positions overlap when stride < extent: accumulate, never assign.
        view += _group_matmul(g2, _kernel_blocks(k[i, j], groups, transposed=True)).reshape(n, ho, wo, c)
    return gxp


def _conv_kernel_grad(xp: np.ndarray, g: np.ndarray, strides, dilation, groups: int, k_shape) -> np.ndarray:
    """d/dk[i, j] of sum(conv(xp) * g) = window(i, j)^T @ g, summed over batch and positions (per group)."""
    n, ho, wo, o = g.shape
    m = n * ho * wo
    g2 = np.ascontiguousarray(g).reshape(m, o)  # see _conv_input_grad
    gk = np.empty(k_shape, dtype=np.result_type(xp, g))
    for i, j in _positions(k_shape[0], k_shape[1]):
        gk[i, j] = _group_outer(_window(xp, i, j, strides, dilation, (ho, wo)).reshape(m, xp.shape[3]), g2, groups)
    return gk


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
        # dk[i, j]: correlation of the input window at (i, j) with g.
        gx = _crop_hw(_conv_input_grad(g, kd, s, d, groups, xp.shape), pads) if _needs(x) else None
        gk = _conv_kernel_grad(xp, g, s, d, groups, kd.shape) if _needs(kernel) else None
        return gx, gk
    return _result(_conv_forward(xp, kd, s, d, groups, out_hw), (x, kernel), backward)




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
        gx = _conv_forward(gp, kd, s, d, 1, (h, w)) if _needs(x) else None
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


def max_pool2d(x, pool_size, strides=None, padding="valid") -> Tensor:
    xd = _val(x)
    k, s, pads, out_hw = _pool_setup(xd, pool_size, strides, padding, "max_pool2d")
    xp = _pad_hw(xd, pads, -np.inf)  # -inf padding never wins a window
    one = (1, 1)
    best = winner = None
    for p, (i, j) in enumerate(_positions(*k)):
        v = _window(xp, i, j, s, one, out_hw)
        if best is None:
            best = v.copy()
            # Index of the winning position in each window (row-major); small ints save memory.
            winner = np.zeros(best.shape, dtype=np.min_scalar_type(k[0] * k[1] - 1))
            continue
        # Strictly greater: on a tie the earlier position keeps the window (the contract's
        # first-maximum rule). A NaN always takes it, so NaNs propagate as in numpy.max.
        wins = (v > best) | np.isnan(v)
        np.copyto(best, v, where=wins)
        winner[wins] = p

    def backward(g):  # each window's g goes to its winner; overlapping windows accumulate
        gxp = np.zeros(xp.shape, dtype=g.dtype)
        for p, (i, j) in enumerate(_positions(*k)):
            view = _window(gxp, i, j, s, one, out_hw)
            view += np.where(winner == p, g, 0)
        return (_crop_hw(gxp, pads),)
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
        share = g / counts
        gxp = np.zeros(xp.shape, dtype=share.dtype)
        for i, j in _positions(*k):
            view = _window(gxp, i, j, s, one, out_hw)
            view += share
        return (_crop_hw(gxp, pads),)
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

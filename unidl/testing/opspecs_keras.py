"""Specs of the ops that keras.ops scripts use beyond unidl's first set: the optional ops
(sin, cos, floor, argsort), the derived ones over them and the primitives (rounding,
prod, cumsum, sort, top_k, einsum...), and the composites (activations, statistics,
shape helpers, creation, crossentropies).

Same form as ``opspecs`` (whose table these join: it imports this module at its end).
Every reference is NumPy's own function where NumPy has one, else the formula of
keras.ops's documentation (tests/test_keras_ops.py checks unidl against Keras itself).
The calls go through ``unidl.ops``, so the cases use keras.ops's signatures.

Rounding ops have zero gradient by contract: their cases keep values away from the
points where they jump (``avoid``), so finite differences see the 0 too.
"""
from __future__ import annotations

import math
import numpy as np

from .opspecs import COMPUTE, LARGE, B, F, I, S, V, _erf, _logsumexp, _np_dtype, _rule_zero, _sigmoid, _spec, case

_INTEGERS = tuple(float(v) for v in range(-4, 5))
_HALVES = tuple(v + 0.5 for v in range(-5, 5))
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_EPS = 1e-7  # unidl.config.epsilon()'s default, as keras.config.epsilon()


def _rule_zero_all(r, *inputs, **kwargs):
    return [np.zeros_like(x) for x in inputs if isinstance(x, np.ndarray) and x.dtype.kind == "f"]


# --------------------------------------------------------------- optional ops

_spec("sin", np.sin, case("basic", F(3, 4, low=-4.0, high=4.0)))
_spec("cos", np.cos, case("basic", F(3, 4, low=-4.0, high=4.0)))
_spec("floor", np.floor,
      case("basic", F(3, 4, low=-3.0, high=3.0, avoid=_INTEGERS), rule=_rule_zero),
      case("integers", V([[-2.0, 0.0, 3.0], [-0.0, 1.0, -1.0]]), grad=False),
      case("int64", I(2, 3, high=9)))
_spec("argsort", lambda x, axis=-1: np.argsort(x, axis=axis, kind="stable"),
      case("last_axis", F(3, 5)), case("axis0", F(4, 3), axis=0),
      # Ties keep their order (stable), so every backend gives the same permutation.
      case("ties", V([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, -1.0, 0.0]])),
      case("int64", I(2, 6, high=3)),
      grad=False)

# ----------------------------------------------------------- derived: rounding

_spec("tan", np.tan, case("basic", F(3, 4, low=-1.2, high=1.2)))
_spec("ceil", np.ceil,
      case("basic", F(3, 4, low=-3.0, high=3.0, avoid=_INTEGERS), rule=_rule_zero),
      case("int64", I(2, 3, high=9)))
_spec("round", lambda x, decimals=0: np.round(x, decimals),
      case("basic", F(3, 4, low=-3.0, high=3.0, avoid=_HALVES), rule=_rule_zero),
      # Halves go to the even neighbour (numpy.round, TensorFlow, torch).
      case("halves", V([[0.5, 1.5, 2.5, -0.5], [-1.5, -2.5, 3.5, 4.5]]), grad=False),
      case("decimals", V([[1.234, -2.345, 0.07]]), S(1), grad=False),
      case("int64", I(2, 3, high=9)))
_spec("floor_divide", np.floor_divide,
      case("float", V([[7.0, -7.0, 5.5], [-5.5, 0.75, 9.0]]), V([[2.0, 2.0, 1.5], [1.5, -0.5, -4.0]]),
           rule=_rule_zero_all),
      case("python_rhs", V([[7.0, -7.0, 5.5]]), S(2.0), rule=_rule_zero_all),
      case("int64", V([[7, -7, 9], [0, 5, -1]], dtype="int64"), V([[2, 2, -4], [3, -5, 2]], dtype="int64")))
_spec("mod", np.mod,
      case("float", V([[7.0, -7.0, 5.5], [-5.5, 0.75, 9.0]]), V([[2.0, 2.0, 1.5], [1.5, -0.5, -4.0]])),
      case("python_rhs", V([[7.0, -7.0, 5.5]]), S(2.5)),
      case("int64", V([[7, -7, 9], [0, 5, -1]], dtype="int64"), V([[2, 2, -4], [3, -5, 2]], dtype="int64")))

# ----------------------------------------------------------- derived: logical

for _name, _fn in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                   ("logical_xor", np.logical_xor)):
    _spec(_name, _fn,
          case("bool", B(3, 4), B(3, 4)),
          case("broadcast", B(3, 1), B(4)),
          case("numbers", V([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]]), V([[1.0, 0.0, 2.0], [0.0, 4.0, 0.0]])),
          case("python", B(2, 3), S(True)),
          grad=False)
_spec("logical_not", np.logical_not,
      case("bool", B(3, 4)), case("numbers", V([[0.0, 1.5, -2.0], [0.0, 0.0, 3.0]])),
      case("int64", I(2, 3, high=2)), grad=False)
for _name, _fn in (("isnan", np.isnan), ("isinf", np.isinf), ("isfinite", np.isfinite)):
    _spec(_name, _fn,
          case("specials", V([[0.0, np.nan, np.inf, -np.inf], [1.5, -2.0, np.nan, 3.0]])),
          case("int64", I(2, 3, high=5)),
          grad=False)

# ---------------------------------------------------- derived: reductions, scans


def _reduction_cases(low: float = -1.0, high: float = 1.0) -> tuple:
    return (case("all", F(3, 4, low=low, high=high)),
            case("axis1", F(2, 3, 4, low=low, high=high), axis=1),
            case("neg_keepdims", F(2, 3, 4, low=low, high=high), axis=-1, keepdims=True),
            case("tuple_axes", F(2, 3, 4, low=low, high=high), axis=(0, -1)),
            case("scalar", F()))


_spec("prod", lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims),
      *_reduction_cases(0.5, 1.5),
      case("odd_length", F(2, 7, low=0.5, high=1.5), axis=1),
      case("with_zeros", V([[0.0, 2.0, 3.0], [1.5, 0.0, 0.0], [2.0, -1.0, 0.5]]), axis=1),  # grads: others' product
      case("int64", I(2, 3, high=4), axis=0, grad=False))
_spec("cumsum", lambda x, axis=None, dtype=None: np.cumsum(x if dtype is None else x.astype(_np_dtype(dtype)),
                                                          axis=axis),
      case("last_axis", F(3, 5), axis=-1), case("axis0", F(4, 3), axis=0),
      case("long", F(2, 9), axis=1),          # a length that is no power of two
      case("flattened", F(2, 3)),             # keras.ops's default axis=None
      case("int64", I(2, 4, high=5), axis=1))
_spec("argmin", lambda x, axis=None, keepdims=False: np.argmin(x, axis=axis, keepdims=keepdims),
      case("last_axis", F(3, 4), axis=-1), case("axis0", F(3, 4), axis=0), case("flattened", F(3, 4)),
      case("ties", V([[1.0, -3.0, -3.0], [2.0, 2.0, 2.0]]), axis=-1),
      grad=False)
_spec("all", lambda x, axis=None, keepdims=False: np.all(x, axis=axis, keepdims=keepdims),
      case("bool", B(3, 4), axis=1), case("numbers", V([[1.0, 0.0, 2.0], [1.0, 3.0, -1.0]]), axis=-1),
      case("everything", B(2, 3)), case("keepdims", B(2, 3), axis=0, keepdims=True),
      case("empty_axis", V(np.zeros((2, 0))), axis=1), grad=False)
_spec("any", lambda x, axis=None, keepdims=False: np.any(x, axis=axis, keepdims=keepdims),
      case("bool", B(3, 4), axis=1), case("numbers", V([[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), axis=-1),
      case("everything", B(2, 3)), case("empty_axis", V(np.zeros((2, 0))), axis=1), grad=False)
_spec("count_nonzero", lambda x, axis=None: np.count_nonzero(x, axis=axis),
      case("numbers", V([[0.0, 1.5, 0.0], [2.0, -1.0, 0.0]])), case("axis", V([[0.0, 1.5, 0.0], [2.0, -1.0, 0.0]]),
                                                                     axis=1),
      grad=False)
_spec("var", lambda x, axis=None, keepdims=False: np.var(x, axis=axis, keepdims=keepdims), *_reduction_cases())
_spec("std", lambda x, axis=None, keepdims=False: np.std(x, axis=axis, keepdims=keepdims),
      *[c for c in _reduction_cases() if c.name != "scalar"])  # the std of one value: sqrt'(0) is infinite


def _moments(x, axes, keepdims=False, synchronized=False):
    return np.stack([np.mean(x, axis=tuple(axes), keepdims=keepdims), np.var(x, axis=tuple(axes),
                                                                              keepdims=keepdims)])


_spec("moments", _moments,
      case("batch", F(4, 3), axes=[0]), case("image", F(2, 3, 3, 2), axes=[0, 1, 2]),
      case("keepdims", F(2, 3, 4), axes=[-1], keepdims=True),
      call=lambda ops, x, **kw: ops.stack(list(ops.moments(x, **kw))))


def _norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    return np.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims)


_spec("norm", _norm,
      case("flattened", F(3, 4)), case("axis", F(3, 4), axis=-1), case("keepdims", F(2, 3, 4), axis=1, keepdims=True),
      case("l1", F(3, 4, avoid=(0.0,)), ord=1, axis=1), case("l1_vector", F(5, avoid=(0.0,)), ord=1),
      case("inf", F(3, 4, avoid=(0.0,)), ord=np.inf, axis=1),
      case("p3", F(3, 4, low=0.2, high=2.0), ord=3, axis=0),
      case("matrix_fro", F(2, 3, 4), axis=(1, 2)),
      case("matrix_1", F(3, 4, low=0.1, high=2.0), ord=1, axis=(0, 1)),
      case("matrix_inf", F(3, 4, low=0.1, high=2.0), ord=np.inf, axis=(0, 1)))

# ---------------------------------------------------------- derived: sorting


_spec("sort", lambda x, axis=-1: np.sort(x, axis=axis, kind="stable"),
      case("last_axis", F(3, 5)), case("axis0", F(4, 3), axis=0),
      case("ties", V([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, -1.0, 0.0]]), grad=False))


def _top_k(x, k, sorted=True):  # noqa: A002
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.concatenate([np.take_along_axis(x, order, axis=-1), order.astype(np.float64)], axis=-1)


def _top_k_call(ops, x, k, **kw):
    values, indices = ops.top_k(x, k, **kw)
    return ops.concatenate([values, ops.cast(indices, ops.dtype(values))], axis=-1)


_spec("top_k", _top_k,
      case("rows", F(3, 6), S(2)), case("all", F(2, 4), S(4)), case("rank3", F(2, 2, 5), S(3)),
      case("ties", V([[1.0, 3.0, 3.0, 2.0, 3.0]]), S(2), grad=False),   # lower index first
      call=_top_k_call)

# -------------------------------------------------------- derived: shape, einsum


def _weighted(parts):
    # Each piece times its position + 1, flattened and joined: a piece out of place changes the values.
    return np.concatenate([np.ravel(p) * (i + 1) for i, p in enumerate(parts)])


def _weighted_call(ops, parts):
    return ops.concatenate([ops.multiply(ops.reshape(p, (-1,)), float(i + 1)) for i, p in enumerate(parts)])


_spec("stack", lambda *xs, axis=0: np.stack(xs, axis=axis),
      case("axis0", F(2, 3), F(2, 3), F(2, 3)), case("last", F(2, 3), F(2, 3), axis=-1),
      case("middle", F(2, 3), F(2, 3), axis=1), case("single", F(4)),
      call=lambda ops, *xs, **kw: ops.stack(list(xs), **kw))

_EINSUM = (
    ("matmul", "ij,jk->ik", (F(3, 4), F(4, 2))),
    ("batch_matmul", "bij,bjk->bik", (F(2, 3, 4), F(2, 4, 2))),
    ("attention", "bqhd,bkhd->bhqk", (F(2, 3, 2, 4), F(2, 5, 2, 4))),
    ("outer", "i,j->ij", (F(3), F(4))),
    ("dot", "i,i->", (F(5), F(5))),
    ("transpose", "ij->ji", (F(3, 4),)),
    ("sum_axis", "ijk->ik", (F(2, 3, 4),)),
    ("implicit", "ij,jk", (F(3, 4), F(4, 2))),
    ("ellipsis", "...ij,...jk->...ik", (F(2, 3, 4), F(2, 4, 2))),
    ("broadcast_ellipsis", "...ij,jk->...ik", (F(2, 2, 3, 4), F(4, 2))),
    ("three", "ij,jk,kl->il", (F(2, 3), F(3, 4), F(4, 2))),
    ("summed_free", "ij,kj->k", (F(3, 4), F(2, 4))),
)
_spec("einsum", lambda subscripts, *xs: np.einsum(subscripts, *xs),
      *(case(name, S(spec), *inputs) for name, spec, inputs in _EINSUM),
      call=lambda ops, subscripts, *xs: ops.einsum(subscripts, *xs))

_spec("tile", np.tile,
      case("two_axes", F(2, 3), S((2, 3))), case("prepend", F(3), S((2, 2))), case("short_reps", F(2, 3), S(2)),
      case("int64", I(2, 2, high=5), S((1, 2))))
_spec("repeat", lambda x, repeats, axis=None: np.repeat(x, repeats, axis=axis),
      case("flattened", F(2, 3), S(2)), case("axis", F(2, 3), S(3), axis=1),
      case("per_element", F(3, 2), S([1, 0, 2]), axis=0))
_spec("flip", lambda x, axis=None: np.flip(x, axis=axis),
      case("all", F(2, 3)), case("axis", F(2, 3, 4), axis=1), case("axes", F(2, 3, 4), axis=(0, -1)))
_spec("roll", lambda x, shift, axis=None: np.roll(x, shift, axis=axis),
      case("flattened", F(2, 3), S(2)), case("axis", F(2, 5), S(-2), axis=1), case("axes", F(3, 4), S((1, 5)),
                                                                              axis=(0, 1)))
_spec("broadcast_to", lambda x, shape: np.broadcast_to(x, shape),
      case("rows", F(1, 3), S((4, 3))), case("new_axes", F(3), S((2, 4, 3))), case("middle", F(2, 1, 3), S((2, 4, 3))))


def _split_call(ops, x, *args, **kw):
    return _weighted_call(ops, ops.split(x, *args, **kw))


_spec("split", lambda x, sections, axis=0: _weighted(np.split(x, sections, axis=axis)),
      case("equal", F(6, 2), S(3)), case("cuts", F(2, 7), S([2, 5]), axis=1), case("one", F(3, 2), S(1)),
      call=_split_call)
_spec("swapaxes", np.swapaxes, case("basic", F(2, 3, 4), S(0), S(2)), case("neg", F(2, 3, 4), S(-1), S(1)))
_spec("moveaxis", np.moveaxis, case("one", F(2, 3, 4), S(0), S(-1)), case("two", F(2, 3, 4, 5), S((0, 1)), S((3, 0))))
_spec("tril", lambda x, k=0: np.tril(x, k), case("square", F(4, 4)), case("batch_k", F(2, 3, 4), k=1),
      case("negative_k", F(4, 3), k=-1))
_spec("triu", lambda x, k=0: np.triu(x, k), case("square", F(4, 4)), case("batch_k", F(2, 3, 4), k=-1))
_spec("slice", lambda x, start, shape: x[tuple(np.s_[s:x.shape[i] if n == -1 else s + n]
                                               for i, (s, n) in enumerate(zip(start, shape)))],
      case("block", F(4, 5), S((1, 2)), S((2, 3))), case("to_end", F(3, 4, 2), S((0, 1, 0)), S((2, -1, 2))))

# ---------------------------------------------------------- linear algebra

_spec("tensordot", lambda a, b, axes=2: np.tensordot(a, b, axes=axes),
      case("default", F(2, 3, 4, low=-1, high=1), F(3, 4, 2, low=-1, high=1)),
      case("one", F(3, 4, low=-1, high=1), F(4, 2, low=-1, high=1), axes=1),
      case("lists", F(3, 4, 2, low=-1, high=1), F(2, 5, 3, low=-1, high=1), axes=([0, 2], [2, 0])))
_spec("dot", np.dot,
      case("matrices", F(3, 4, low=-1, high=1), F(4, 2, low=-1, high=1)),
      case("vectors", F(5, low=-1, high=1), F(5, low=-1, high=1)),
      case("matrix_vector", F(3, 4, low=-1, high=1), F(4, low=-1, high=1)),
      case("nd", F(2, 3, 4, low=-1, high=1), F(5, 4, 2, low=-1, high=1)),
      case("scalar", F(3, 2), F()))
_spec("outer", np.outer, case("vectors", F(3), F(4)), case("flattens", F(2, 2), F(3)))

# ------------------------------------------------------------ activations

_spec("rsqrt", lambda x: 1.0 / np.sqrt(x), case("basic", F(3, 4, low=0.1, high=4.0)))
_spec("relu6", lambda x: np.clip(x, 0.0, 6.0),
      case("basic", F(3, 4, low=-2.0, high=8.0, avoid=(0.0, 6.0))),
      case("kinks", V([[0.0, 6.0, 3.0], [-1.0, 7.0, 0.0]]), fd=False,
           rule=lambda r, x: [r * ((x > 0.0) & (x < 6.0))]))  # gradient 1 on the open interval only
_spec("leaky_relu", lambda x, negative_slope=0.2: np.where(x > 0, x, negative_slope * x),
      case("basic", F(3, 4, avoid=(0.0,))), case("slope", F(3, 4, avoid=(0.0,)), negative_slope=0.01),
      case("at_zero", V([[0.0, -1.5, 2.0]]), fd=False, rule=lambda r, x: [r * np.where(x > 0, 1.0, 0.2)]))


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))


_spec("elu", _elu, case("basic", F(3, 4, low=-3, high=3, avoid=(0.0,))),
      case("alpha", F(3, 4, low=-3, high=3, avoid=(0.0,)), alpha=0.5), case("large", V(LARGE)))
_spec("selu", lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA), case("basic", F(3, 4, low=-3, high=3, avoid=(0.0,))))


def _gelu(x, approximate=True):
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


_spec("gelu", _gelu, case("tanh_form", F(3, 4, low=-4, high=4)),
      case("exact", F(3, 4, low=-4, high=4), approximate=False))
_spec("silu", lambda x: x * _sigmoid(x), case("basic", F(3, 4, low=-5, high=5)), case("large", V(LARGE)))
_spec("softsign", lambda x: x / (1.0 + np.abs(x)), case("basic", F(3, 4, low=-4, high=4)))
_spec("hard_sigmoid", lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
      case("basic", F(3, 4, low=-5, high=5, avoid=(-3.0, 3.0))))
_spec("log_sigmoid", lambda x: -np.logaddexp(0.0, -x), case("basic", F(3, 4, low=-5, high=5)), case("large", V(LARGE)))

# ---------------------------------------------------------------- creation

_spec("dtype_of", lambda x: np.zeros((1,), dtype=x.dtype if x.dtype.kind != "f" else np.float64),
      case("float", F(2, 3)), case("int64", I(2, high=3)), case("bool", B(2)), case("variable", F(2, var=True)),
      grad=False, call=lambda ops, x: ops.zeros((1,), dtype=ops.dtype(x)))
for _name, _value in (("zeros_like", 0), ("ones_like", 1)):
    _spec(_name, lambda x, dtype=None, _value=_value: np.full(x.shape, _value, dtype=_np_dtype(dtype or x.dtype)),
          case("float", F(2, 3)), case("int64", I(2, 3, high=4)), case("to_bool", F(3), dtype="bool"),
          grad=False)
_spec("full_like", lambda x, fill_value, dtype=None: np.full(x.shape, fill_value, dtype=_np_dtype(dtype or x.dtype)),
      case("float", F(2, 3), S(1.5)), case("int64", I(2, 3, high=4), S(7)), case("to_compute", I(2, high=4), S(2.5),
                                                                                  dtype=COMPUTE),
      grad=False)
_spec("full", lambda shape, fill_value, dtype=None: np.full(shape, fill_value, dtype=_np_dtype(dtype or COMPUTE)),
      case("float", S((2, 3)), S(1.5)), case("int_value", S((3,)), S(2)), case("int64", S((2,)), S(4), dtype="int64"),
      grad=False)
_spec("arange", lambda start, stop=None, step=None, dtype=None: np.arange(
          *([0, start] if stop is None else [start, stop]), *([] if step is None else [step])),
      case("stop", S(5)), case("start_stop", S(2), S(7)), case("negative_step", S(5), S(-3), S(-2)),
      case("floats", S(0.0), S(1.0), S(0.25)), case("to_compute", S(4), dtype=COMPUTE),
      grad=False)
_spec("linspace", lambda start, stop, num=50, endpoint=True, dtype=None: np.linspace(start, stop, num,
                                                                                   endpoint=endpoint),
      case("default", S(0.0), S(1.0)), case("num", S(-1.0), S(2.0), num=7), case("open", S(0.0), S(1.0), num=4,
                                                                                  endpoint=False),
      case("tensors", F(3), F(3), num=5),  # start and stop as tensors: one row per step
      grad=False)
_spec("eye", lambda n, m=None, k=0, dtype=None: np.eye(n, m, k),
      case("square", S(3)), case("rect_k", S(2), S(4), k=1), case("int64", S(3), dtype="int64"),
      grad=False)

# ------------------------------------------------------------ losses on tensors


def _bce(t, p, from_logits=False):
    if from_logits:
        return np.maximum(p, 0.0) - p * t + np.log1p(np.exp(-np.abs(p)))
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return -(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))


def _cce(t, p, from_logits=False, axis=-1):
    if from_logits:
        return -np.sum(t * (p - _logsumexp(p, axis=axis, keepdims=True)), axis=axis)
    p = np.clip(p / np.sum(p, axis=axis, keepdims=True), _EPS, 1.0 - _EPS)
    return -np.sum(t * np.log(p), axis=axis)


def _scce(t, p, from_logits=False, axis=-1):
    if t.ndim == p.ndim and t.shape[-1] == 1:
        t = t[..., 0]
    if not from_logits:  # Keras takes the clipped probabilities' logs as logits: rows are renormalized
        p = np.log(np.clip(p, _EPS, 1.0 - _EPS))
    log_p = p - _logsumexp(p, axis=-1, keepdims=True)
    return -np.take_along_axis(log_p, t[..., None].astype(np.int64), axis=-1)[..., 0]


_spec("binary_crossentropy", _bce,
      case("probabilities", F(3, 4, low=0.0, high=1.0), F(3, 4, low=0.05, high=0.95)),
      case("logits", F(3, 4, low=0.0, high=1.0), F(3, 4, low=-4, high=4), from_logits=True),
      case("logits_large", V([[1.0, 0.0, 1.0, 0.0]]), V([[-100.0, 100.0, 30.0, 0.0]]), from_logits=True),
      # p = 0 is clipped to eps. (Not p = 1: 1 - eps rounds in float32, as in Keras.)
      case("clipped", V([[1.0, 0.0]]), V([[0.0, 0.0]]), grad=False))
_spec("categorical_crossentropy", _cce,
      case("probabilities", F(3, 4, low=0.0, high=1.0), F(3, 4, low=0.05, high=1.0)),
      case("logits", F(3, 4, low=0.0, high=1.0), F(3, 4, low=-4, high=4), from_logits=True),
      case("axis0", F(4, 3, low=0.0, high=1.0), F(4, 3, low=0.05, high=1.0), axis=0))
_spec("sparse_categorical_crossentropy", _scce,
      case("probabilities", I(3, high=4), F(3, 4, low=0.05, high=0.95)),
      case("logits", I(3, high=4), F(3, 4, low=-4, high=4), from_logits=True),
      case("trailing_one", I(3, 1, high=4), F(3, 4, low=-4, high=4), from_logits=True),
      case("sequence", I(2, 3, high=5), F(2, 3, 5, low=-4, high=4), from_logits=True))


def _normalize(x, axis=-1, order=2, epsilon=None):
    eps = _EPS if epsilon is None else epsilon
    if order == 2:
        return x * np.minimum(1.0 / np.sqrt(np.sum(x * x, axis=axis, keepdims=True)), 1.0 / eps)
    return x / np.maximum(np.linalg.norm(x, ord=order, axis=axis, keepdims=True), eps)


def _attention(q, k, v, bias=None, mask=None, scale=None, is_causal=False):
    logits = np.einsum("btnh,bsnh->bnts", q, k) * (1.0 / math.sqrt(k.shape[-1]) if scale is None else scale)
    if bias is not None:
        logits = logits + bias
    keep = np.ones(logits.shape, dtype=bool)
    if mask is not None:
        keep &= mask.astype(bool)
    if is_causal:
        keep &= np.tri(logits.shape[2], logits.shape[3], dtype=bool)
    logits = np.where(keep, logits, -0.7 * 3.38953e38)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.einsum("bnts,bsnh->btnh", e / e.sum(axis=-1, keepdims=True), v)


_spec("dot_product_attention", _attention,
      case("plain", F(2, 3, 2, 4, low=-1, high=1), F(2, 5, 2, 4, low=-1, high=1), F(2, 5, 2, 4, low=-1, high=1)),
      case("mask_bias", F(1, 3, 2, 4, low=-1, high=1), F(1, 4, 2, 4, low=-1, high=1), F(1, 4, 2, 4, low=-1, high=1),
           F(1, 1, 3, 4, low=-1, high=1), V([[[[True, False, True, True]]]], dtype="bool")),   # bias, mask
      case("causal_scale", F(2, 4, 1, 3, low=-1, high=1), F(2, 4, 1, 3, low=-1, high=1),
           F(2, 4, 1, 3, low=-1, high=1), is_causal=True, scale=0.5))
_spec("log2", np.log2, case("basic", F(3, 4, low=0.1, high=4.0)))
_spec("log10", np.log10, case("basic", F(3, 4, low=0.1, high=4.0)))

_spec("normalize", _normalize, case("l2", F(3, 4)), case("axis0", F(3, 4), axis=0),
      case("l1", F(3, 4, avoid=(0.0,)), order=1))

del _name, _fn, _value

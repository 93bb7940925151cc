"""One spec per op of ``unidl.ops``: its cases, input domains and a closed-form NumPy reference.

A spec says how to call the op and what it must return; checks.py does the
checking. Each case lists the op's inputs:

* ``F(*shape, low, high, avoid, step)``: seeded uniform floats in [low, high),
  rounded to float32 so float32 and float64 runs see identical values.
  ``avoid`` lists kinks (relu at 0, clip at its bounds) that values keep
  ``MARGIN`` away from, so gradients and finite differences stay on one side;
  ``step`` snaps values to a grid, to make ties on purpose.
* ``V(values)``: explicit values (edge cases: large |x|, exact ties, zeros).
* ``I(*shape, high)``: int64 indices in [0, high); ``B(*shape)``: bool masks.
* ``S(value)``: a Python value passed as is (a scalar operand, a shape, clip bounds).

Any array input marked ``raw=True`` reaches the op as a NumPy array instead of
a backend tensor (only ``convert`` wants that); ``F(..., var=True)`` reaches it
as ``backend.variable(...)``, the handle layer code passes for its weights
(checked in the forward pass; gradients w.r.t. variables are
``value_and_grad``'s business). Float inputs are differentiable unless
``diff=False``; ints, bools, variables and Python values never are.

Case flags: ``grad=False`` skips the gradient check (non-float output, or an
op without one); ``fd=False`` marks a point where the derivative does not
exist (a kink, a tie): there the contract in ``unidl.backend.PRIMITIVES``
fixes a convention instead, given as ``rule``, a closed-form gradient that
every backend's gradient is compared with. Kwarg value ``COMPUTE`` stands for
the backend's compute dtype. Inputs are drawn from ``np.random.default_rng``
seeded by the op and case names, so each case sees the same numbers in every
run, on every backend.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from unidl.backend import iter_ops

MARGIN = 0.05          # how far values keep from a kink or a near-tie
COMPUTE = "<compute>"  # kwarg placeholder for the backend's compute dtype


# ------------------------------------------------------------------ inputs

def _as_f32(x: Any) -> np.ndarray:
    """float64 array holding float32-representable values."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


@dataclass(frozen=True)
class F:
    """Seeded uniform floats; see the module docstring."""
    shape: tuple[int, ...]
    low: float = -2.0
    high: float = 2.0
    avoid: tuple[float, ...] = ()
    step: float | None = None
    diff: bool = True
    raw: bool = False
    var: bool = False

    def __init__(self, *shape: int, low: float = -2.0, high: float = 2.0, avoid: Sequence[float] = (),
                 step: float | None = None, diff: bool = True, raw: bool = False, var: bool = False):
        for name, value in (("shape", tuple(shape)), ("low", low), ("high", high), ("avoid", tuple(avoid)),
                            ("step", step), ("diff", diff), ("raw", raw), ("var", var)):
            object.__setattr__(self, name, value)

    def make(self, rng: np.random.Generator) -> np.ndarray:
        x = np.asarray(rng.uniform(self.low, self.high, self.shape))
        if self.step is not None:
            return _as_f32(np.round(x / self.step) * self.step)
        for _ in range(100):  # redraw values too close to a kink
            bad = _near(x, self.avoid)
            if not bad.any():
                break
            x[bad] = rng.uniform(self.low, self.high, int(bad.sum()))
        return _as_f32(x)

    def describe(self) -> str:
        return f"{self.shape} in [{self.low:g}, {self.high:g})" + (" as backend.variable" if self.var else "")


@dataclass(frozen=True)
class V:
    """Explicit values."""
    values: Any
    dtype: str = "float64"
    diff: bool = True
    raw: bool = False

    def make(self, rng: np.random.Generator) -> np.ndarray:
        x = np.array(self.values, dtype=self.dtype)
        return _as_f32(x).astype(self.dtype) if x.dtype.kind == "f" else x

    def describe(self) -> str:
        return f"explicit {np.shape(self.values)} {self.dtype}"


@dataclass(frozen=True)
class I:  # noqa: E742 - short on purpose: specs read like tables
    """Seeded integers in [0, high) (indices)."""
    shape: tuple[int, ...]
    high: int
    dtype: str = "int64"
    raw: bool = False
    diff = False

    def __init__(self, *shape: int, high: int, dtype: str = "int64", raw: bool = False):
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "raw", raw)

    def make(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.high, self.shape).astype(self.dtype)

    def describe(self) -> str:
        return f"{self.shape} {self.dtype} in [0, {self.high})"


@dataclass(frozen=True)
class B:
    """Seeded booleans."""
    shape: tuple[int, ...]
    raw: bool = False
    diff = False

    def __init__(self, *shape: int, raw: bool = False):
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "raw", raw)

    def make(self, rng: np.random.Generator) -> np.ndarray:
        return rng.random(self.shape) < 0.5

    def describe(self) -> str:
        return f"{self.shape} bool"


@dataclass(frozen=True)
class S:
    """A Python value passed to the op unchanged (never converted, never differentiated)."""
    value: Any
    diff = False
    raw = True

    def make(self, rng: np.random.Generator) -> Any:
        return self.value

    def describe(self) -> str:
        return f"python {self.value!r}"


Input = "F | V | I | B | S"


def _near(x: np.ndarray, points: Sequence[float]) -> np.ndarray:
    bad = np.zeros(np.shape(x), dtype=bool)
    for p in points:
        bad |= np.abs(x - p) < MARGIN
    return bad


def is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


# ------------------------------------------------------------------- cases

@dataclass(frozen=True, repr=False)
class Case:
    """One call of an op: its inputs, kwargs and which checks apply (see the module docstring)."""
    name: str
    inputs: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    grad: bool | None = None       # None: the spec's default
    fd: bool = True
    rule: Callable[..., list] | None = None
    apart: bool = False            # redraw input 1 until no pair with input 0 is within MARGIN
    item: str = ""                 # the op name, set by the spec

    def diff_indices(self) -> list[int]:
        """Positions of the inputs whose gradient is checked."""
        return [i for i, spec in enumerate(self.inputs)
                if _is_float_spec(spec) and spec.diff and not spec.raw and not getattr(spec, "var", False)]

    def __repr__(self) -> str:  # short: pytest prints it in every failure
        return f"<case {self.item}:{self.name}>"

    def describe(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        inputs = "; ".join(spec.describe() for spec in self.inputs)
        return f"inputs [{inputs}]" + (f" kwargs {{{kw}}}" if kw else "")


def _is_float_spec(spec: Any) -> bool:
    return isinstance(spec, F) or (isinstance(spec, V) and np.dtype(spec.dtype).kind == "f")


def case(name: str, *inputs: Any, grad: bool | None = None, fd: bool = True,
         rule: Callable[..., list] | None = None, apart: bool = False, **kwargs: Any) -> Case:
    """Shorthand: ``case("broadcast", F(3, 1), F(4), axis=0)``."""
    return Case(name, tuple(inputs), dict(kwargs), grad, fd, rule, apart)


def _seed(case: Case, salt: int = 0) -> int:
    return zlib.crc32(f"{case.item}:{case.name}".encode()) + salt


def make_inputs(case: Case) -> list[Any]:
    """The case's input values (NumPy arrays in float64/int64/bool, or Python values); seeded."""
    rng = np.random.default_rng(_seed(case))
    values = [spec.make(rng) for spec in case.inputs]
    if case.apart:
        for _ in range(100):
            a, b = np.broadcast_arrays(values[0], values[1])
            if not (np.abs(a - b) < MARGIN).any():
                break
            values[1] = case.inputs[1].make(rng)
        else:
            raise RuntimeError(f"case {case.item}:{case.name}: could not draw inputs apart")
    return values


def make_upstream(case: Case, shape: tuple[int, ...]) -> np.ndarray:
    """The fixed random upstream gradient r (the checks differentiate sum(out * r)).

    Random, not ones: with ones a backward rule that mixes up elements of the
    output (a transposed or mis-indexed gradient) can still sum to the right value.
    """
    return _as_f32(np.random.default_rng(_seed(case, salt=1)).standard_normal(shape))


def resolve_kwargs(kwargs: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """Replace the COMPUTE placeholder by ``dtype``."""
    return {k: (dtype if v == COMPUTE else v) for k, v in kwargs.items()}


# ------------------------------------------------------------------- specs

@dataclass(frozen=True)
class OpSpec:
    """How to call one op and what it must return.

    ``reference(*inputs, **kwargs)`` is the closed-form forward in plain
    NumPy (float64). ``call(ops, *inputs, **kwargs)`` replaces the default
    ``getattr(unidl.ops, name)(*inputs, **kwargs)``. ``output`` is "tensor"
    (converted back with ``to_numpy``), "array" (already a NumPy array) or
    "python" (a Python value compared exactly: shape, size).
    """
    name: str
    reference: Callable[..., Any]
    cases: tuple[Case, ...]
    grad: bool = True
    call: Callable[..., Any] | None = None
    output: str = "tensor"
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cases", tuple(replace(c, item=self.name) for c in self.cases))

    def invoke(self, *args: Any, **kwargs: Any) -> Any:
        """Run the op through ``unidl.ops`` on the backend bound in the current context."""
        from unidl import ops
        if self.call is not None:
            return self.call(ops, *args, **kwargs)
        return getattr(ops, self.name)(*args, **kwargs)

    def checks_grad(self, case: Case) -> bool:
        wanted = self.grad if case.grad is None else case.grad
        return bool(wanted) and self.output == "tensor" and bool(case.diff_indices())


SPECS: dict[str, OpSpec] = {}


def _spec(name: str, reference: Callable[..., Any], *cases: Case, **options: Any) -> None:
    if name in SPECS:
        raise ValueError(f"op {name!r} has two specs")
    SPECS[name] = OpSpec(name, reference, tuple(cases), **options)


def spec(name: str) -> OpSpec:
    return SPECS[name]


def all_cases() -> list[Case]:
    return [c for s in SPECS.values() for c in s.cases]


def missing_specs() -> list[str]:
    """Ops reachable through ``unidl.ops`` that have no spec here (must be empty)."""
    return [op for op in iter_ops() if op not in SPECS]


# ----------------------------------------------------- reference helpers

def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _kept(r: np.ndarray, shape: tuple[int, ...], axis: Any) -> np.ndarray:
    """Reshape a reduction's upstream gradient to the keepdims shape, ready to broadcast."""
    axes = _axes(axis, len(shape))
    return np.reshape(r, tuple(1 if i in axes else d for i, d in enumerate(shape)))


def _np_dtype(dtype: str) -> str:
    return "float64" if dtype == COMPUTE else dtype


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _logsumexp(x, axis=-1, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=_axes(axis, np.ndim(x)))


def _softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


_erf = np.vectorize(math.erf, otypes=[np.float64])


# Gradient rules at kinks and ties, straight from the PRIMITIVES contract.
# Each takes (r, *inputs, **kwargs) and returns one array per differentiable input.

def _rule_reduce_ties(fn):
    def rule(r, x, axis=None, keepdims=False):
        # "gradient split evenly between ties"
        hit = x == fn(x, axis=axis, keepdims=True)
        return [hit / hit.sum(axis=_axes(axis, x.ndim), keepdims=True) * _kept(r, x.shape, axis)]
    return rule


def _rule_maximum(r, a, b):
    return [r * (a >= b), r * (a < b)]  # "on ties the gradient goes to a"


def _rule_minimum(r, a, b):
    return [r * (a <= b), r * (a > b)]


def _rule_relu(r, x):
    return [r * (x > 0)]  # "gradient 0 at x == 0"


def _rule_abs(r, x):
    return [r * np.sign(x)]  # "gradient sign(x) (0 at 0)"


def _rule_zero(r, x):
    return [np.zeros_like(x)]  # sign: "zero gradient"


def _rule_clip(r, x, lo, hi):
    return [r * ((x >= lo) & (x <= hi))]  # "gradient 1 where lo <= x <= hi"


# Values for stability cases: far outside where a naive formula stays finite in float32.
LARGE = [[-100.0, -30.0, -5.0, 0.0], [5.0, 30.0, 100.0, 1.0]]

# --------------------------------------------------- conversion, introspection

_spec("convert", lambda x, dtype=None: np.asarray(x),
      case("float_array", F(2, 3, raw=True)),
      case("float32_array", V([[1.5, -2.25], [0.0, 3.0]], dtype="float32", raw=True)),  # -> compute dtype too
      case("int32_array", I(2, 3, high=5, dtype="int32", raw=True)),
      case("bool_array", B(2, 3, raw=True)),
      case("python_float", S(2.5)),
      case("python_int", S(3)),
      case("tensor", F(2, 3)),
      case("int_to_compute", I(4, high=5, raw=True), dtype=COMPUTE),
      grad=False)

_spec("to_numpy", lambda x: x,
      case("float", F(2, 3)),
      case("int", I(4, high=9)),
      case("bool", B(3)),
      case("scalar", F()),
      case("variable", F(2, 3, var=True)),   # a framework variable may track gradients
      grad=False, output="array")

_spec("shape", lambda x: tuple(x.shape),
      case("rank3", F(2, 3, 4)), case("scalar", F()), case("empty", F(0, 3)), case("variable", F(3, var=True)),
      grad=False, output="python")

_spec("cast", lambda x, dtype: x.astype(_np_dtype(dtype)),
      case("to_compute", F(3, 4), dtype=COMPUTE, grad=True),  # the only float -> compute-dtype cast
      case("to_int32", F(2, 3, low=-3, high=3), dtype="int32"),   # truncates toward zero
      case("to_int64", F(2, 3, low=-3, high=3), dtype="int64"),
      case("to_bool", V([[0.0, 1.5, -2.0], [0.0, 0.25, 0.0]]), dtype="bool"),
      case("to_float64", F(2, 3), dtype="float64"),
      case("to_float32", F(2, 3), dtype="float32"),
      case("int_to_compute", I(2, 3, high=7), dtype=COMPUTE),
      case("bool_to_compute", B(2, 3), dtype=COMPUTE),
      grad=False)

# ------------------------------------------------------ elementwise, binary


def _arith(name: str, ref: Callable, low: float = -2.0, high: float = 2.0, empty: bool = False) -> None:
    """The arithmetic ops share their cases: same shape, broadcasting, () and Python scalars."""
    b = dict(low=low, high=high)
    cases = [case("same", F(3, 4), F(3, 4, **b)),
             case("broadcast", F(3, 1), F(1, 4, **b)),
             case("rank", F(2, 3, 4), F(4, **b)),
             case("scalar_tensor", F(2, 3), F(**b)),
             case("python_rhs", F(2, 3), S(1.5)),
             case("python_int", F(2, 3), S(2)),        # an int must not turn the result integer
             case("python_lhs", S(1.5), F(2, 3, **b)),
             case("variable", F(2, 3, var=True), F(2, 3, **b))]
    if empty:
        cases.append(case("empty", F(0, 3), F(3, **b), grad=False))
    _spec(name, ref, *cases)


_arith("add", np.add, empty=True)
_arith("subtract", np.subtract)
_arith("multiply", np.multiply, empty=True)
_arith("divide", np.divide, low=0.5, high=2.0)

_spec("power", np.power,
      case("same", F(3, 4, low=0.5, high=2.0), F(3, 4)),
      case("broadcast", F(3, 4, low=0.5, high=2.0), F(4)),
      case("python_square", F(2, 3), S(2)),          # a may be negative when b is a Python number
      case("python_cube", F(2, 3), S(3)),
      case("python_sqrt", F(2, 3, low=0.5, high=2.0), S(0.5)),
      case("python_base", S(2.0), F(2, 3)))

for _name, _fn, _rule in (("maximum", np.maximum, _rule_maximum), ("minimum", np.minimum, _rule_minimum)):
    _spec(_name, _fn,
          case("same", F(3, 4), F(3, 4), apart=True),
          case("broadcast", F(3, 1), F(4), apart=True),
          case("python_rhs", F(2, 3, avoid=(0.25,)), S(0.25)),
          case("python_lhs", S(0.25), F(2, 3, avoid=(0.25,))),
          case("ties", V([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]]), V([[1.0, 2.0, 0.5], [-3.0, 0.0, 4.0]]),
               fd=False, rule=_rule))

for _name, _fn in (("equal", np.equal), ("not_equal", np.not_equal), ("greater", np.greater),
                   ("greater_equal", np.greater_equal), ("less", np.less), ("less_equal", np.less_equal)):
    # Values on a grid of step 1, so ties (where these ops differ) really occur.
    _spec(_name, _fn,
          case("same", F(3, 4, step=1.0), F(3, 4, step=1.0)),
          case("broadcast", F(3, 1, step=1.0), F(4, step=1.0)),
          case("python_rhs", F(2, 3, step=1.0), S(0.0)),
          case("python_lhs", S(0.0), F(2, 3, step=1.0)),
          case("int64", I(3, 4, high=3), I(3, 4, high=3)),
          # Backend.not_equal is equal(equal(a, b), False): equal must take bools too.
          *((case("bool", B(3, 4), B(3, 4)), case("bool_python", B(2, 3), S(False)))
            if _name in ("equal", "not_equal") else ()),
          grad=False)

_spec("where", np.where,
      case("same", B(3, 4), F(3, 4), F(3, 4)),
      case("broadcast", B(3, 1), F(4), F()),
      case("python_b", B(2, 3), F(2, 3), S(0.0)),
      case("python_a", B(2, 3), S(-1.0), F(2, 3)))

# ------------------------------------------------------- elementwise, unary

_spec("negative", np.negative, case("basic", F(3, 4)), case("scalar", F()))
_spec("abs", np.abs,
      case("basic", F(3, 4, avoid=(0.0,))),
      case("at_zero", V([[0.0, -1.5, 2.0], [0.0, 3.0, -0.5]]), fd=False, rule=_rule_abs))
_spec("sign", np.sign,
      case("basic", F(3, 4, avoid=(0.0,)), rule=_rule_zero),
      case("at_zero", V([0.0, -1.5, 2.0, 0.0]), fd=False, rule=_rule_zero))
_spec("exp", np.exp, case("basic", F(3, 4)), case("empty", F(0, 2), grad=False))
_spec("log", np.log, case("basic", F(3, 4, low=0.1, high=3.0)))
_spec("log1p", np.log1p, case("basic", F(3, 4, low=-0.9, high=3.0)))
_spec("sqrt", np.sqrt, case("basic", F(3, 4, low=0.1, high=4.0)))
_spec("tanh", np.tanh, case("basic", F(3, 4)), case("large", V(LARGE)))
_spec("sigmoid", _sigmoid, case("basic", F(3, 4, low=-5, high=5)), case("large", V(LARGE)))
_spec("relu", lambda x: np.maximum(x, 0.0),
      case("basic", F(3, 4, avoid=(0.0,))),
      case("at_zero", V([[0.0, -1.5, 2.0], [0.0, 3.0, -0.5]]), fd=False, rule=_rule_relu))
_spec("erf", _erf, case("basic", F(3, 4, low=-3.0, high=3.0)))
_spec("clip", np.clip,
      case("basic", F(3, 4, avoid=(-1.0, 1.0)), S(-1.0), S(1.0)),
      case("at_bounds", V([[-1.0, 1.0, 0.5], [-2.0, 1.0, -1.0]]), S(-1.0), S(1.0), fd=False, rule=_rule_clip))

# --------------------------------------------------------------- reductions


def _reduction(name: str, ref: Callable, ties_rule: Callable | None = None, empty: bool = False) -> None:
    cases = [case("all", F(3, 4, low=-1, high=1)),
             case("axis1", F(2, 3, 4, low=-1, high=1), axis=1),
             case("neg_keepdims", F(2, 3, 4, low=-1, high=1), axis=-1, keepdims=True),
             case("tuple_axes", F(2, 3, 4, low=-1, high=1), axis=(0, -1)),
             case("all_keepdims", F(3, 4, low=-1, high=1), keepdims=True),
             case("scalar", F()),
             case("size1_axis", F(3, 1, 2), axis=1),
             # An empty tuple reduces over no axis (NumPy); torch's dim=() reduces over all.
             case("no_axes", F(2, 3), axis=())]
    if ties_rule is not None:
        ties = V([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
        cases += [case("ties_axis", ties, axis=1, fd=False, rule=ties_rule),
                  case("ties_all", ties, fd=False, rule=ties_rule)]
    if empty:  # reducing an empty axis: the sum of nothing is 0
        cases.append(case("empty_axis", F(2, 0), axis=1))
    _spec(name, ref, *cases)


_reduction("sum", np.sum, empty=True)
_reduction("mean", np.mean)
_reduction("max", np.max, _rule_reduce_ties(np.max))
_reduction("min", np.min, _rule_reduce_ties(np.min))

# unidl.ops.argmax has keras.ops's signature: axis=None means the flattened x.
_spec("argmax", lambda x, axis=None, keepdims=False: np.argmax(x, axis=axis, keepdims=keepdims),
      case("last_axis", F(3, 4), axis=-1), case("axis0", F(3, 4), axis=0), case("rank3_neg", F(2, 3, 4), axis=-2),
      case("flattened", F(3, 4)), case("keepdims", F(2, 3, 4), axis=1, keepdims=True),
      # PRIMITIVES does not say which index wins a tie; the kit expects NumPy's
      # first one, so metrics (accuracy on equal logits) agree across backends.
      case("ties", V([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 0.0]]), axis=-1),
      grad=False)

# -------------------------------------------------------- shape and indexing

_spec("reshape", np.reshape,
      case("merge", F(2, 3, 4), S((6, 4))),
      case("infer", F(2, 3, 4), S((4, -1))),
      case("to_scalar", F(1, 1), S(())),
      case("from_scalar", F(), S((1, 1))),
      case("variable", F(2, 3, var=True), S((3, 2))))

_spec("transpose", lambda x, axes=None: np.transpose(x, axes),
      case("reverse", F(2, 3, 4)),
      case("perm", F(2, 3, 4), axes=(1, 0, 2)),
      case("matrix", F(3, 5), axes=(1, 0)))

_spec("concatenate", lambda *xs, axis=0: np.concatenate(xs, axis=axis),
      case("last_axis", F(2, 3), F(2, 4), axis=-1),
      case("default_axis", F(2, 3), F(1, 3)),  # keras.ops's default: axis 0
      case("axis0_three", F(1, 3), F(2, 3), F(3, 3), axis=0),
      case("with_empty", F(2, 3), F(2, 0), F(2, 1), axis=1),
      case("single", F(2, 3), axis=-1),
      call=lambda ops, *xs, **kw: ops.concatenate(list(xs), **kw))

_spec("take", lambda x, idx, axis=None: np.take(x, idx, axis=axis),
      # Repeated indices: their gradients must add up.
      case("rows_repeat", F(5, 3), V([4, 0, 2, 2], dtype="int64"), axis=0),
      case("axis1_2d", F(3, 5), V([[1, 1], [4, 0]], dtype="int64"), axis=1),
      case("neg_axis", F(2, 3, 4), V([3, 0, 3], dtype="int64"), axis=-1),
      case("scalar_index", F(4, 3), V(2, dtype="int64"), axis=0),
      case("flattened", F(3, 4), V([11, 0, -1, 5], dtype="int64")),  # keras.ops's default axis=None
      case("variable", F(5, 3, var=True), V([1, 4, 1], dtype="int64"), axis=0))   # an embedding lookup

_spec("take_along_axis", lambda x, idx, axis: np.take_along_axis(x, idx, axis=axis),
      case("axis1", F(3, 4), I(3, 5, high=4), axis=1),
      case("axis0", F(3, 4), I(2, 4, high=3), axis=0),
      case("neg_axis_3d", F(2, 3, 4), I(2, 3, 2, high=4), axis=-1),
      case("broadcast_index", F(3, 4), I(1, 2, high=4), axis=1))  # numpy broadcasts the other axes

_spec("matmul", np.matmul,
      case("2d", F(3, 4, low=-1, high=1), F(4, 5, low=-1, high=1)),
      case("batch", F(2, 3, 4, low=-1, high=1), F(2, 4, 5, low=-1, high=1)),
      case("broadcast_batch", F(2, 1, 3, 4, low=-1, high=1), F(3, 4, 2, low=-1, high=1)),
      case("2d_by_batch", F(3, 4, low=-1, high=1), F(2, 4, 5, low=-1, high=1)),
      case("variable", F(3, 4, low=-1, high=1), F(4, 5, low=-1, high=1, var=True)))

# stop_gradient is checked inside x * stop_gradient(x): the value is x**2 and the
# gradient x * r (only the unstopped factor), not 2 x r.
_spec("stop_gradient", lambda x: x * x,
      case("product", F(3, 4), fd=False, rule=lambda r, x: [x * r]),  # differences see 2 x r
      call=lambda ops, x: ops.multiply(x, ops.stop_gradient(x)))

# ---------------------------------------------------------------- composites

_spec("square", np.square, case("basic", F(3, 4)), case("scalar", F()))
_spec("expand_dims", lambda x, axis: np.expand_dims(x, axis),
      case("front", F(2, 3), axis=0), case("neg_end", F(2, 3), axis=-1), case("middle", F(2, 3), axis=1),
      case("scalar", F(), axis=0))
_spec("squeeze", lambda x, axis: np.squeeze(x, axis=axis),
      case("middle", F(2, 1, 3), axis=1), case("tuple_neg", F(1, 3, 1), axis=(0, -1)))
_spec("softmax", _softmax,
      case("last_axis", F(3, 4)), case("size1_axis", F(3, 1)), case("axis0", F(3, 4), axis=0), case("rank3", F(2, 3, 4), axis=1),
      case("large", V(LARGE)), case("huge", V([[1000.0, 0.0, -1000.0], [50.0, 50.0, 49.0]])))
_spec("log_softmax", lambda x, axis=-1: x - _logsumexp(x, axis=axis, keepdims=True),
      case("last_axis", F(3, 4)), case("axis0", F(3, 4), axis=0), case("size1_axis", F(3, 1)),
      case("huge", V([[1000.0, 0.0, -1000.0], [50.0, 50.0, 49.0]])))
_spec("logsumexp", lambda x, axis=None, keepdims=False: _logsumexp(x, axis=axis, keepdims=keepdims),
      case("last_axis", F(3, 4), axis=-1), case("all_axes", F(3, 4)),
      case("tuple_keepdims", F(2, 3, 4), axis=(0, -1), keepdims=True),
      case("huge", V([[1000.0, 1000.0, -1000.0], [-50.0, -50.0, -49.0]]), axis=-1))
_spec("softplus", lambda x: np.logaddexp(0.0, x),
      case("basic", F(3, 4, low=-3, high=3)), case("large", V(LARGE)),
      # softplus is smooth at 0 (slope 1/2); formulas built from relu/abs have kinks there.
      case("at_zero", V([0.0, 0.0, 1.0])))
def _unstack_weighted(x, axis=0):
    # Each slice times its position + 1, side by side: a slice out of place changes the values.
    return np.concatenate([np.take(x, i, axis=axis) * (i + 1) for i in range(x.shape[axis])], axis=-1)


_spec("unstack", _unstack_weighted,
      case("axis0", F(3, 2)), case("time_axis", F(2, 4, 3), axis=1), case("neg_axis", F(2, 3, 2), axis=-1),
      case("size1", F(2, 1, 3), axis=1),
      call=lambda ops, x, axis=0: ops.concatenate(
          [ops.multiply(s, float(i + 1)) for i, s in enumerate(ops.unstack(x, axis=axis))], axis=-1))
_spec("one_hot", lambda idx, depth: (idx[..., None] == np.arange(depth)).astype(np.float64),
      case("vector", I(5, high=3), S(3)), case("matrix", I(2, 3, high=4), S(4)),
      grad=False)
_spec("zeros", lambda shape, dtype=None: np.zeros(shape, dtype=_np_dtype(dtype or "float64")),
      case("default", S((2, 3))), case("scalar", S(())), case("int64", S((3,)), dtype="int64"),
      grad=False)
_spec("ones", lambda shape, dtype=None: np.ones(shape, dtype=_np_dtype(dtype or "float64")),
      case("default", S((2, 3))), case("explicit_compute", S((4,)), dtype=COMPUTE), case("bool", S((2,)), dtype="bool"),
      grad=False)
_spec("size", lambda x: int(np.prod(x.shape, dtype=np.int64)),
      case("rank3", F(2, 3, 4)), case("scalar", F()), case("empty", F(0, 3)),
      grad=False, output="python")

# The neural-network primitives' specs and those of the keras.ops additions live in their
# own modules, which register them here.
from . import opspecs_keras, opspecs_nn  # noqa: E402,F401

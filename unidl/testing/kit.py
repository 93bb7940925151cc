"""The conformance kit's shared vocabulary: targets, check ids, and how a test joins the kit.

Nothing here imports a framework or builds a backend, so the pytest plugin can
import it at start-up for free.

* A **target** is one (backend name, dtype) pair the kit runs against.
* A **check id** names one check of one case: ``family:item:dtype:check:case``,
  e.g. ``op:erf:float32:grad:basic``. Backends key their
  ``conformance_exclusions`` and ``conformance_tolerances`` by *patterns* over
  these ids: a pattern matches when its segments equal the first segments of
  the id, ``*`` matching any one segment. So ``op:erf`` covers every check of
  erf, ``op:erf:float32:grad`` its float32 gradient checks, ``op:*:*:grad:large``
  the gradient of every op's ``large`` case. Where several patterns match, the
  longest (then the one with fewer ``*``) wins.
* A **family** of checks (op, activation, loss, layer, optimizer, fused,
  training, compiled, error) is a set of test functions carrying
  :func:`conformance_check` with that family name. The plugin
  parametrizes each over targets x cases and turns every pair into its own
  pytest item, so one failure never hides another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Protocol, TypeVar

# The reference every other backend is compared with: NumPy in float64,
# itself checked against finite differences.
REFERENCE_BACKEND = "numpy"
REFERENCE_DTYPE = "float64"

MARK = "unidl_check"

V = TypeVar("V")


@dataclass(frozen=True)
class Target:
    """One (backend, dtype) pair under test."""
    backend: str
    dtype: str

    @property
    def is_reference(self) -> bool:
        return self.backend == REFERENCE_BACKEND and self.dtype == REFERENCE_DTYPE

    def __str__(self) -> str:
        return f"{self.backend}-{self.dtype}"


class KitCase(Protocol):
    """What a family's case object offers the plugin: the checked item and the case name."""
    item: str   # e.g. the op name "erf"
    name: str   # e.g. "broadcast"


class SimpleCase(NamedTuple):
    """A case with nothing but its names, for checks that need no data."""
    item: str
    name: str


@dataclass(frozen=True)
class CheckId:
    """``family:item:dtype:check:case`` -- see the module docstring."""
    family: str
    item: str
    dtype: str
    check: str
    case: str

    def segments(self) -> tuple[str, ...]:
        return (self.family, self.item, self.dtype, self.check, self.case)

    def __str__(self) -> str:
        return ":".join(self.segments())


def matches(pattern: str, check_id: CheckId) -> bool:
    """True when ``pattern`` (segments, ``*`` wildcards) is a prefix of ``check_id``."""
    wanted = pattern.split(":")
    have = check_id.segments()
    return len(wanted) <= len(have) and all(w in ("*", h) for w, h in zip(wanted, have))


def most_specific(table: Mapping[str, V], check_id: CheckId) -> tuple[str, V] | None:
    """The (pattern, value) of ``table`` that matches ``check_id`` most specifically, or None."""
    hits = [pattern for pattern in table if matches(pattern, check_id)]
    if not hits:
        return None
    best = max(hits, key=lambda p: (p.count(":"), -p.split(":").count("*")))
    return best, table[best]


CaseSource = Callable[[Target], Iterable[Any]]


def conformance_check(family: str, check: str, cases: CaseSource):
    """Mark a test function as a conformance check.

    :param family: the first segment of its check ids ("op", "layer", "loss"...).
    :param check: what it checks ("forward", "grad", "fd", "trajectory", "raises").
    :param cases: ``cases(target)`` returns the case objects (each with
        ``item`` and ``name``) to run on that target; return none to leave the
        target out (e.g. finite differences run on the reference only).

    The function receives the fixtures ``unidl_backend`` (the backend instance,
    exclusions already applied), ``unidl_case`` (one case) and, if it asks,
    ``unidl_reference`` (the NumPy float64 reference backend) and
    ``unidl_note`` (records a remark for the summary).
    """
    import pytest  # only test modules call this, and they run under pytest
    return pytest.mark.unidl_check(family=family, check=check, cases=cases)


def check_id_for(family: str, check: str, target: Target, case: KitCase) -> CheckId:
    return CheckId(family, case.item, target.dtype, check, case.name)

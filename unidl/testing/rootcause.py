"""Group a run's failures by the op that caused them.

One wrong op fails its own checks and then every layer, loss, optimizer and
training check that calls it: a wrong ``exp`` can fail a hundred checks. The
conformance summary therefore lists each **root op** (an op failing its own
checks) with its failures, then the failures of other checks that *used* a
failing op as "caused by op X", and only what remains as independent
failures. The ops a check used are recorded while it runs
(:mod:`unidl.testing.recording`); an op it needed but the backend lacks
counts as used, so an unimplemented ``erf`` is the root of the gelu failures.

How failures are attributed, per target (backend and dtype):

* the failing ops are the items of failing ``op`` checks;
* an op is a root when at least one of its own failing checks used no other
  failing op (``softmax`` failing while ``exp`` is fine);
* an op whose every failing check used some failing op is explained by those
  (``softmax`` failing only through ``exp``), transitively; of failing ops
  that only explain each other (a cycle with no root), the one with most
  failures becomes a root;
* any other failure that used failing ops is caused by their roots; one that
  used none is independent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["Failure", "RootOp", "Grouping", "group_by_root_op"]


@dataclass(frozen=True)
class Failure:
    """One failed check: its id, what it checked, the ops it called, and its one-line message."""
    check: str                 # "op:exp:float64:forward:basic", or a plain test's node id
    family: str                # "op", "layer", ... ("other" for a plain test)
    item: str                  # the op name for the op family
    ops: frozenset[str] = frozenset()
    brief: str = ""


@dataclass
class RootOp:
    """A failing op: its own failed checks, and the failures of other checks it caused."""
    op: str
    own: list[Failure] = field(default_factory=list)
    caused: list[Failure] = field(default_factory=list)
    # For a caused failure that used more than one root op: the other roots it used.
    also: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Grouping:
    roots: list[RootOp]          # most failures first
    independent: list[Failure]   # failures that used no failing op

    @property
    def caused_count(self) -> int:
        return sum(len(root.caused) for root in self.roots)


def group_by_root_op(failures: Iterable[Failure]) -> Grouping:
    """File each failure under its root op, or as independent (see the module docstring)."""
    failures = sorted(failures, key=lambda f: f.check)
    failing_ops = {f.item for f in failures if f.family == "op"}
    own = {op: [f for f in failures if f.family == "op" and f.item == op] for op in failing_ops}
    roots_of = _roots_of(own, failing_ops)
    groups = {op: RootOp(op, own=own[op]) for op, roots in roots_of.items() if roots == {op}}
    independent = []
    for failure in failures:
        if failure.family == "op" and failure.item in groups:
            continue  # a root's own failure, filed above
        causes = sorted(set().union(*(roots_of[op] for op in _failing_used(failure, failing_ops))))
        if not causes:
            independent.append(failure)
            continue
        first = max(causes, key=lambda op: (len(groups[op].own), op))  # under the root with most failures
        groups[first].caused.append(failure)
        if len(causes) > 1:
            groups[first].also[failure.check] = [op for op in causes if op != first]
    ordered = sorted(groups.values(), key=lambda g: (-(len(g.own) + len(g.caused)), g.op))
    return Grouping(ordered, independent)


def _failing_used(failure: Failure, failing_ops: set[str]) -> set[str]:
    """The failing ops this failure called, other than the op it checks."""
    return (failure.ops & failing_ops) - ({failure.item} if failure.family == "op" else set())


def _roots_of(own: dict[str, list[Failure]], failing_ops: set[str]) -> dict[str, set[str]]:
    """For every failing op, the root ops that explain it (``{op}`` for a root itself)."""
    roots_of = {op: {op} for op, failures in own.items()
                if any(not _failing_used(f, failing_ops) for f in failures)}
    while True:
        _explain(own, failing_ops, roots_of)
        unplaced = failing_ops - set(roots_of)
        if not unplaced:
            return roots_of
        # Ops that only explain each other: make the one with most failures a root, explain the rest.
        cycle_root = max(sorted(unplaced), key=lambda op: len(own[op]))
        roots_of[cycle_root] = {cycle_root}


def _explain(own: dict[str, list[Failure]], failing_ops: set[str], roots_of: dict[str, set[str]]) -> None:
    """Place each op whose every failure used an op already placed, until none is left to place."""
    changed = True
    while changed:
        changed = False
        for op in sorted(failing_ops - set(roots_of)):
            used = [_failing_used(f, failing_ops) & set(roots_of) for f in own[op]]
            if all(used):
                roots_of[op] = set().union(*(roots_of[u] for uses in used for u in uses))
                changed = True

"""pytest plugin of the unidl conformance kit, loaded through the ``pytest11`` entry point.

It is imported by every pytest run in an environment where unidl is
installed, so importing it must stay cheap: no framework import, no backend
built. Backends are built on the first test that needs them, once per
(backend, dtype) per session.

What it adds (see ``unidl.testing`` for the user-facing story):

* options ``--unidl-backend NAME`` and ``--unidl-dtype float32|float64``, both
  repeatable, and ``--unidl-device DEVICE``;
* ``pytest_generate_tests``: every test function that uses the
  ``unidl_backend`` fixture runs once per target; a test marked with
  :func:`unidl.testing.kit.conformance_check` runs once per target x case;
* fixtures ``unidl_backend`` (applies the backend's declared exclusions and
  records its loosened tolerances), ``unidl_reference`` (NumPy float64),
  ``unidl_note`` (a remark for the summary, e.g. "generic rule only");
* an accuracy probe per target, right after collection (:mod:`unidl.testing.probe`):
  a warning when a target's kernels compute in a coarser precision than its dtype;
* a conformance summary at the end of the run: counts per target, per
  family and target, declared exclusions and tolerances, notes, the probe's
  warnings, and the failures grouped by the op that caused them
  (:mod:`unidl.testing.rootcause`; the ops each check called are recorded by
  :mod:`unidl.testing.recording`), each with its one-line message.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Sequence

import pytest

# Cheap: importing this package already imported unidl's core (NumPy, pluggy), no framework.
import unidl
from unidl.backend import BackendError, missing_ops
from unidl.registry import REGISTRY, UnknownBackendError

from . import probe, recording
from .kit import MARK, REFERENCE_BACKEND, REFERENCE_DTYPE, CheckId, Target, check_id_for, most_specific
from .rootcause import Failure, Grouping, RootOp, group_by_root_op
from .tolerances import override

ENV_BACKENDS = "UNIDL_TEST_BACKENDS"
FLOAT_DTYPES = ("float32", "float64")
OUTCOMES = ("passed", "failed", "excluded", "skipped")

CONTRACT_TEST = "test_backend_implements_every_primitive"  # the contract check (test_conformance_ops.py)

_KIT = pytest.StashKey["ConformanceKit"]()
_DEFAULT_BACKENDS = pytest.StashKey[tuple]()
_BACKEND_UNDER_TEST = pytest.StashKey[Any]()  # on an item: the backend whose op calls its check records


def set_default_backends(config: pytest.Config, names: Iterable[str]) -> None:
    """Backends to test when neither ``--unidl-backend`` nor ``$UNIDL_TEST_BACKENDS`` names any.

    Call it from a conftest's ``pytest_configure``. Unlike names given
    explicitly, a default whose framework is not installed is left out and
    reported, not an error.
    """
    config.stash[_DEFAULT_BACKENDS] = tuple(names)


# ---------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("unidl", "unidl conformance kit")
    group.addoption("--unidl-backend", action="append", default=[], dest="unidl_backends", metavar="NAME",
                    help="run the unidl conformance checks on this backend (repeatable). Default: the names "
                         f"in ${ENV_BACKENDS}, else every registered backend whose framework is installed.")
    group.addoption("--unidl-dtype", action="append", default=[], dest="unidl_dtypes", choices=FLOAT_DTYPES,
                    help="compute dtype to check (repeatable; default: float32 and float64).")
    group.addoption("--unidl-device", default=None, dest="unidl_device", metavar="DEVICE",
                    help="device the backends under test run on, e.g. cuda:0 (default: each backend's own; "
                         "the NumPy reference always runs on the CPU).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(family, check, cases): a unidl conformance check, "
                                       "parametrized by the unidl plugin (see unidl.testing)")
    kit = ConformanceKit(config)
    config.stash[_KIT] = kit
    config.pluginmanager.register(kit, "unidl-conformance-kit")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "unidl_target" not in metafunc.fixturenames:
        return
    targets = metafunc.config.stash[_KIT].targets()
    mark = metafunc.definition.get_closest_marker(MARK)
    if mark is None:  # a plain test using unidl_backend: once per target
        metafunc.parametrize("unidl_target", targets, ids=str)
        return
    cases = mark.kwargs["cases"]
    combos = [pytest.param(t, c, id=f"{t}-{c.item}-{c.name}") for t in targets for c in cases(t)]
    if not combos:  # say why, rather than pytest's bare "empty parameter set"
        where = ", ".join(map(str, targets)) or "no backend"
        reason = f"no {mark.kwargs['family']}:{mark.kwargs['check']} case applies to this run's targets ({where})"
        combos = [pytest.param(None, None, id="no-target", marks=pytest.mark.skip(reason=reason))]
    metafunc.parametrize(("unidl_target", "unidl_case"), combos)


@pytest.fixture
def unidl_backend(request: pytest.FixtureRequest, unidl_target: Target) -> Any:
    """The backend instance under test (built once per session), exclusions applied."""
    kit = request.config.stash[_KIT]
    request.node.user_properties.append(("unidl_target", str(unidl_target)))
    backend = kit.backend(unidl_target, kit.device)
    check_id = _check_id(request.node)
    if check_id is not None:
        kit.apply_declarations(request.node, backend, check_id)
    recording.take(backend)  # forget what earlier checks called: from here on, it is this check's
    request.node.stash[_BACKEND_UNDER_TEST] = backend
    return backend


@pytest.fixture
def unidl_note(request: pytest.FixtureRequest, unidl_target: Target) -> Callable[[str, str], None]:
    """``unidl_note(topic, subject)``: a remark for the conformance summary, not a failure.

    Notes are grouped by backend and topic, e.g. topic "generic only (...)",
    subjects "adam[adam_amsgrad]", "rmsprop[rmsprop_centered]".
    """
    def note(topic: str, subject: str) -> None:
        request.node.user_properties.append(("unidl_note", (unidl_target.backend, topic, subject)))
    return note


@pytest.fixture
def unidl_reference(request: pytest.FixtureRequest) -> Any:
    """The reference backend the other backends' gradients are compared with: NumPy in float64."""
    return request.config.stash[_KIT].backend(Target(REFERENCE_BACKEND, REFERENCE_DTYPE), device=None)


def _check_id(item: pytest.Item) -> CheckId | None:
    mark = item.get_closest_marker(MARK)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if mark is None or "unidl_case" not in params:
        return None
    return check_id_for(mark.kwargs["family"], mark.kwargs["check"], params["unidl_target"], params["unidl_case"])


# ---------------------------------------------------------------- session state


class ConformanceKit:
    """Per-session state: targets, built backends, and the tallies for the summary."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._targets: list[Target] | None = None
        self._backends: dict[tuple[Target, str | None], Any] = {}
        self.untested: dict[str, str] = {}    # backend or target -> why it was not tested
        # nodeid -> (target, outcome, check id); a later phase's failure overrides.
        self._outcomes: dict[str, tuple[str, str, str]] = {}
        self._failures: dict[str, Failure] = {}             # nodeid -> what the summary says of it
        self._probe_warnings: dict[str, str] = {}           # target -> the accuracy probe's warning
        self._exclusions: dict[tuple[str, str], list] = {}   # (backend, pattern) -> [reason, count]
        self._loosened: dict[tuple[str, str], list] = {}     # (backend, pattern) -> [text, count]
        self._notes: dict[tuple[str, str], set[str]] = {}    # (backend, topic) -> subjects

    # ---------------------------------------------------------- targets
    def pytest_sessionstart(self) -> None:
        # A misspelt or uninstalled backend that the user named is a usage error,
        # raised before collection. Not in pytest_configure: plugins configured
        # after this one (a conftest, -p) may still register backends.
        if self.explicitly_requested():
            self.targets()

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """A backend lacking primitive ops runs only its contract check, whose one failure lists them
        all: every other check would fail on the first missing op it meets, burying that list."""
        lacking: dict[Target, list[str]] = {}
        keep, dropped = [], []
        for item in items:
            target = getattr(getattr(item, "callspec", None), "params", {}).get("unidl_target")
            if target is not None and target not in lacking:
                lacking[target] = self._missing_primitives(target)
            if target is not None and lacking[target] and getattr(item, "originalname", "") != CONTRACT_TEST:
                dropped.append(item)
            else:
                keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
        for target, missing in lacking.items():
            if missing:
                self.untested[str(target)] = (f"lacks {len(missing)} primitive ops, so only its contract check "
                                              f"ran: {', '.join(missing)}")

    def _missing_primitives(self, target: Target) -> list[str]:
        try:
            return missing_ops(unidl.get_backend(target.backend, dtype=target.dtype, device=self.device))
        except Exception:  # building it fails: the checks themselves report that
            return []

    def targets(self) -> list[Target]:
        if self._targets is None:
            names, explicit = self._requested_backends()
            dtypes = list(dict.fromkeys(self.config.getoption("unidl_dtypes") or FLOAT_DTYPES))
            self._targets = [Target(n, d) for n in self._usable(names, explicit) for d in dtypes]
        return self._targets

    def explicitly_requested(self) -> bool:
        return bool(self.config.getoption("unidl_backends") or os.environ.get(ENV_BACKENDS, "").strip())

    def _requested_backends(self) -> tuple[list[str], bool]:
        """The backend names to test, and whether the user named them (then each must work)."""
        if self.config.getoption("unidl_backends"):
            return self.config.getoption("unidl_backends"), True
        env = os.environ.get(ENV_BACKENDS, "").replace(",", " ").split()
        if env:
            return env, True
        if _DEFAULT_BACKENDS in self.config.stash:
            return list(self.config.stash[_DEFAULT_BACKENDS]), False
        return [row["name"] for row in unidl.list_backends()], False

    def _usable(self, names: Sequence[str], explicit: bool) -> list[str]:
        usable = []
        for name in dict.fromkeys(names):
            try:
                info = REGISTRY.backend_info(name)
            except UnknownBackendError as exc:
                if explicit:
                    raise pytest.UsageError(f"unidl conformance kit: {exc}") from None
                self.untested[name] = "not registered"
                continue
            if not info.framework_installed:
                why = f"its framework {info.framework!r} is not installed ({info.install})"
                if explicit:
                    raise pytest.UsageError(f"unidl conformance kit: backend {name!r}: {why}")
                self.untested[name] = why
                continue
            usable.append(name)
        return usable

    # ---------------------------------------------------------- backends
    @property
    def device(self) -> str | None:
        """The device the backends under test run on (``--unidl-device``; None: their default)."""
        return self.config.getoption("unidl_device")

    def backend(self, target: Target, device: str | None) -> Any:
        """The backend for ``target`` on ``device``, built on first use. A BackendError
        (e.g. an unsupported dtype) skips the test; any other failure to build fails it."""
        got = self._build(target, device)
        if isinstance(got, Exception):
            if isinstance(got, BackendError):
                self.untested[str(target)] = str(got)
                pytest.skip(f"{target}: {got}")
            raise RuntimeError(f"could not build backend {target.backend!r} with dtype "
                               f"{target.dtype}: {type(got).__name__}: {got}") from got
        return got

    def _build(self, target: Target, device: str | None) -> Any:
        """The backend, or the exception building it raised (remembered: a broken backend is built once)."""
        key = (target, device)
        if key not in self._backends:
            try:
                backend = unidl.get_backend(target.backend, dtype=target.dtype, device=device)
                recording.instrument(backend)  # the summary files failures under the ops they used
                self._backends[key] = backend
            except Exception as exc:
                self._backends[key] = exc
        return self._backends[key]

    def apply_declarations(self, item: pytest.Item, backend: Any, check_id: CheckId) -> None:
        """Skip an excluded check; record a loosened tolerance (the check itself applies it)."""
        item.user_properties.append(("unidl_check", str(check_id)))
        excluded = most_specific(getattr(backend, "conformance_exclusions", {}) or {}, check_id)
        if excluded is not None:
            pattern, reason = excluded
            item.user_properties.append(("unidl_excluded", (backend.name, pattern, str(reason))))
            pytest.skip(f"excluded by backend {backend.name!r} [{pattern}]: {reason}")
        loosened = override(backend, check_id)
        if loosened is not None:
            pattern, tol = loosened
            item.user_properties.append(("unidl_tolerance", (
                backend.name, pattern, f"rtol={tol.rtol:g} atol={tol.atol:g}: {tol.reason}")))

    # ---------------------------------------------------------- the accuracy probe
    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter asks for the lines below
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.config.getoption("collectonly"):
            return
        targets = {item.callspec.params["unidl_target"] for item in session.items
                   if "unidl_target" in getattr(getattr(item, "callspec", None), "params", {})}
        for target in sorted((t for t in targets if t is not None), key=str):
            backend = self._build(target, self.device)
            if isinstance(backend, Exception):
                continue  # the tests say why, one by one
            text = probe.warning_text(target.backend, target.dtype, probe.probe(backend))
            recording.take(backend)  # the probe's calls are no check's
            if text:
                self._probe_warnings[str(target)] = text

    def pytest_report_collectionfinish(self) -> list[str]:
        return [f"WARNING unidl accuracy probe: {text}" for _, text in sorted(self._probe_warnings.items())]

    # ---------------------------------------------------------- reporting
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        # user_properties are copied into the report when it is made: add these first.
        if call.when == "call" and _BACKEND_UNDER_TEST in item.stash:
            used = recording.take(item.stash[_BACKEND_UNDER_TEST])
            used |= recording.missing_ops_in(call.excinfo.value if call.excinfo else None)
            item.user_properties.append(("unidl_ops", tuple(sorted(used))))
        if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            item.user_properties.append(("unidl_brief", _brief(call.excinfo.value)))
        yield

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        target = props.get("unidl_target")
        if target is None:
            return
        if report.when == "setup":  # the fixture records declarations during setup
            for key, table in (("unidl_excluded", self._exclusions), ("unidl_tolerance", self._loosened)):
                if key in props:
                    backend, pattern, text = props[key]
                    table.setdefault((backend, pattern), [text, 0])[1] += 1
        if report.when == "call":
            outcome = report.outcome
            for key, value in report.user_properties:
                if key == "unidl_note":
                    backend, topic, subject = value
                    self._notes.setdefault((backend, topic), set()).add(subject)
        elif report.failed:
            outcome = "failed"
        elif report.when == "setup" and report.skipped:
            outcome = "excluded" if "unidl_excluded" in props else "skipped"
        else:
            return
        previous = self._outcomes.get(report.nodeid)
        if previous is not None and previous[1] == "failed":
            return
        check = props.get("unidl_check", report.nodeid)
        self._outcomes[report.nodeid] = (target, outcome, check)
        if outcome == "failed":
            self._failures[report.nodeid] = Failure(check, *_family_and_item(check),
                                                    ops=frozenset(props.get("unidl_ops", ())),
                                                    brief=props.get("unidl_brief", ""))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self._outcomes and not self.untested:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "unidl conformance summary")
        counts: dict[str, Counter] = defaultdict(Counter)
        failures: dict[str, list[Failure]] = defaultdict(list)
        for nodeid, (target, outcome, check) in self._outcomes.items():
            counts[target][outcome] += 1
            if outcome == "failed":
                failures[target].append(self._failures[nodeid])
        write(f"{'backend-dtype':<24}" + "".join(f"{o:>10}" for o in OUTCOMES))
        for target in sorted(counts):
            write(f"{target:<24}" + "".join(f"{counts[target][o]:>10}" for o in OUTCOMES))
        self._write_families(write)
        self._write_declared(write, "exclusions declared by the backends", self._exclusions)
        self._write_declared(write, "loosened tolerances declared by the backends", self._loosened)
        if self._notes:
            write("notes (not failures):")
            for (backend, topic), subjects in sorted(self._notes.items()):
                write(f"  {backend}: {topic}: {', '.join(sorted(subjects))}")
        if self.untested:
            write("not tested:")
            for name, why in sorted(self.untested.items()):
                write(f"  {name}: {why}")
        if self._probe_warnings:
            write("accuracy probe (warnings, not failures):")
            for _, text in sorted(self._probe_warnings.items()):
                write(f"  {text}")
        for target in sorted(failures):
            _write_failures(write, target, group_by_root_op(failures[target]))

    def _write_families(self, write: Any) -> None:
        """passed/failed/excluded (and /skipped, when any) per family and target."""
        counts: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        for target, outcome, check in self._outcomes.values():
            family = "other" if "::" in check else check.split(":", 1)[0]  # a plain test's node id
            counts[family][target][outcome] += 1
        targets = sorted({t for per_target in counts.values() for t in per_target})
        if len(counts) < 2:
            return
        skipped = any(c["skipped"] for per_target in counts.values() for c in per_target.values())
        shown = OUTCOMES if skipped else OUTCOMES[:3]
        write(f"by family ({'/'.join(shown)}):")
        width = max(len(t) for t in targets) + 2
        write(f"  {'':<12}" + "".join(f"{t:>{width}}" for t in targets))
        for family in sorted(counts):
            cells = ["/".join(str(counts[family][t][o]) for o in shown) if counts[family][t] else "-"
                     for t in targets]
            write(f"  {family:<12}" + "".join(f"{cell:>{width}}" for cell in cells))

    @staticmethod
    def _write_declared(write: Any, title: str, table: dict[tuple[str, str], list]) -> None:
        if not table:
            return
        write(f"{title}:")
        for (backend, pattern), (text, count) in sorted(table.items()):
            write(f"  {backend} [{pattern}] ({count} checks): {text}")


# ---------------------------------------------------------------- failures, by root op


def _brief(exc: BaseException) -> str:
    """The one line the summary shows for a failure: a kit error's verdict, else the exception's first line."""
    brief = getattr(exc, "brief", None)
    if isinstance(brief, str):
        return brief
    first = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _family_and_item(check: str) -> tuple[str, str]:
    if "::" in check:  # a plain test's node id, not a check id
        return "other", check
    family, item = (check.split(":") + [""])[:2]
    return family, item


def _write_failures(write: Callable[[str], None], target: str, grouping: Grouping) -> None:
    """The failures of one target: each root op with its own failures, then those it caused, then the rest."""
    write(_failures_header(target, grouping))
    for root in grouping.roots:
        _write_root(write, root)
    if grouping.independent and grouping.roots:
        write("  independent of the failing ops:")
    indent = "    " if grouping.roots else "  "
    for failure in grouping.independent:
        write(f"{indent}{_line(failure)}")


def _failures_header(target: str, grouping: Grouping) -> str:
    """"failed on torch-float64 (191: 3 root ops, 180 caused by them, 8 independent):"."""
    total = sum(len(root.own) for root in grouping.roots) + grouping.caused_count + len(grouping.independent)
    if not grouping.roots:
        return f"failed on {target} ({total}):"
    parts = [_plural(len(grouping.roots), "root op")]
    if grouping.caused_count:
        parts.append(f"{grouping.caused_count} caused by them")
    if grouping.independent:
        parts.append(f"{len(grouping.independent)} independent")
    return f"failed on {target} ({total}: {', '.join(parts)}):"


def _write_root(write: Callable[[str], None], root: RootOp) -> None:
    write(f"  op {root.op}: {_plural(len(root.own), 'own failure')}"
          + (f", {len(root.caused)} caused" if root.caused else ""))
    for failure in root.own:
        write(f"    {_line(failure)}")
    if root.caused:
        write(f"    caused by op {root.op} ({len(root.caused)}):")
    for subject, count, also in _by_subject(root):
        also_used = f", also used failing op {', '.join(also)}" if also else ""
        write(f"      {subject} ({_plural(count, 'check')}){also_used}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _by_subject(root: RootOp) -> list[tuple[str, int, list[str]]]:
    """The failures a root op caused, per family:item ("layer:Dense"): count, other failing ops used."""
    subjects: dict[str, tuple[int, set[str]]] = {}
    for failure in root.caused:
        subject = f"{failure.family}:{failure.item}" if failure.family != "other" else failure.check
        count, also = subjects.get(subject, (0, set()))
        subjects[subject] = (count + 1, also | set(root.also.get(failure.check, ())))
    return [(subject, count, sorted(also)) for subject, (count, also) in sorted(subjects.items())]


def _line(failure: Failure) -> str:
    return f"{failure.check}: {failure.brief}" if failure.brief else failure.check

"""Checks of the training families (optimizer, fused, training, compiled, error). Each raises ``ConformanceError``.

* :func:`check_optimizer`: ``STEPS`` optimizer steps on a backend vs the
  reference, step by step (TRAJECTORY tolerance).
* :func:`check_fused`: the same steps on one backend with its native kernels
  (``Backend.fused_update``) vs with ``optimizer.use_native_kernels = False``
  (the generic rule written over ops). Returns a :class:`Note` when the
  backend took none of the updates natively ("generic rule only": not a failure).
* :func:`check_training`: ``fit`` for ``TRAIN_STEPS`` steps on a backend vs
  the reference: every step's loss and the final weights.
* :func:`check_compiled`: the same training with ``jit_compile=False`` vs the
  default ``"auto"`` (which lets ``Backend.compile_step`` run) on one backend.
* :func:`check_raises`: a bad input raises the documented exception type,
  and on every backend the type the reference raises.

Weights are compared by their *displacement* from the common start
(``w_t - w_0``), so an update of 1e-3 of a weight is measured at the
tolerance's rtol instead of disappearing in the weight's own size.
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

import unidl
from unidl.backend import Backend, generic_layers
from unidl.callbacks import Callback
from unidl.variables import Variable

from . import tolerances
from .checks import ConformanceError, _run, compare, reference
from .kit import CheckId
from .tolerances import Tolerance
from .trainspecs import ErrorCase, OptimizerCase, TrainingCase

__all__ = ["check_optimizer", "check_fused", "check_training", "check_compiled", "check_raises",
           "run_optimizer", "run_training", "Note", "Trajectory", "TrainRun"]

GENERIC_ONLY = "fused: generic rule only (fused_update declined these configs)"
NO_FUSED_UPDATE = "fused: generic rule only (fused_update is Backend's default)"
EAGER_ONLY = "compiled: eager only (compile_step is Backend's default)"
NO_NATIVE_LAYERS = "native: generic layers only (the backend has no native kernel for these layers)"


def _label(backend: Backend, family: str, case: Any, what: str) -> str:
    return (f"backend {backend.name!r} ({backend.dtype}), {family} {case.item!r}, case {case.name!r} "
            f"[{case.describe()}]: {what}")


def _on_both(backend: Backend, reference_backend: Backend | None, family: str, case: Any, run) -> tuple:
    """``run(backend, case)`` on the reference (default: NumPy float64) and on ``backend``:
    (the check's label, the reference's description, backend's result, the reference's result)."""
    __tracebackhide__ = True
    reference_backend = reference_backend or reference()
    label = _label(backend, family, case, "trajectory")
    source = f"reference {reference_backend.name} {reference_backend.dtype}"
    expected = _run(f"{label} (on the {source})", lambda: run(reference_backend, case))
    return label, source, _run(label, lambda: run(backend, case)), expected


def _tolerance(backend: Backend, family: str, case: Any) -> Tolerance:
    return tolerances.lookup(backend, CheckId(family, case.item, backend.dtype, "trajectory", case.name))


# -------------------------------------------------------------- optimizers

@dataclass
class Trajectory:
    """Variable values after each optimizer step, and whether each update ran natively."""
    start: dict[str, np.ndarray]
    steps: list[dict[str, np.ndarray]] = field(default_factory=list)
    fused: list[bool] = field(default_factory=list)   # one entry per fused_update call


def _spying_copy(backend: Backend, record: list[bool]) -> Backend:
    """A shallow copy of ``backend`` whose ``fused_update`` notes each answer in ``record``."""
    spy = copy.copy(backend)
    native = backend.fused_update

    def fused_update(rule: str, optimizer: Any, variable: Any, grad: Any, slots: dict, scalars: dict) -> bool:
        done = native(rule, optimizer, variable, grad, slots, scalars)
        record.append(bool(done))
        return done

    spy.fused_update = fused_update
    return spy


def run_optimizer(backend: Backend, case: OptimizerCase, native: bool = True) -> Trajectory:
    """``case``'s steps through ``optimizer.apply`` on ``backend``; ``native=False`` forces the generic rule."""
    trajectory = Trajectory(case.start())
    spy = _spying_copy(backend, trajectory.fused)
    optimizer = case.make()
    optimizer.use_native_kernels = native
    variables = [Variable(value, name) for name, value in trajectory.start.items()]
    for variable in variables:
        variable.bind(spy)
    with unidl.use_backend(spy):
        optimizer.ensure_slots(variables)
        for grads in case.gradients():
            with spy.no_grad():
                optimizer.apply([spy.convert(grads[v.name]) for v in variables], variables)
            trajectory.steps.append({v.name: v.numpy() for v in variables})
    return trajectory


def _compare_trajectories(label: str, got: Trajectory, expected: Trajectory, tol: Tolerance, dtype: str,
                          source: str) -> None:
    __tracebackhide__ = True
    for step, (have, want) in enumerate(zip(got.steps, expected.steps), start=1):
        for name, value in want.items():
            start = expected.start[name]
            compare(f"{label}: displacement of {name} {value.shape} from its start after step {step} vs {source}",
                    have[name].astype(np.float64) - start, value.astype(np.float64) - start, tol)
            _check_dtype(f"{label}: {name} after step {step}", have[name], dtype)


def _check_dtype(label: str, value: np.ndarray, dtype: str) -> None:
    if value.dtype != np.dtype(dtype):
        raise ConformanceError(f"{label}: dtype {value.dtype}, expected {dtype} (shape {value.shape})")


def check_optimizer(backend: Backend, reference_backend: Backend | None, case: OptimizerCase,
                    tolerance: Tolerance | None = None) -> None:
    """``case``'s optimizer steps on ``backend`` vs on the reference."""
    __tracebackhide__ = True
    label, source, got, expected = _on_both(backend, reference_backend, "optimizer", case, run_optimizer)
    _compare_trajectories(label, got, expected, tolerance or _tolerance(backend, "optimizer", case),
                          backend.dtype, source)


class Note(NamedTuple):
    """A remark for the conformance summary (not a failure): grouped by topic, listing subjects."""
    topic: str
    subject: str


def check_fused(backend: Backend, case: OptimizerCase, tolerance: Tolerance | None = None) -> Note | None:
    """Native kernels vs the generic rule on one backend; ``case.item`` is the rule, ``case.name`` the config.

    Returns a note when the backend ran none of the updates natively (then
    both runs are the generic rule: equal, and not a failure):
    :data:`NO_FUSED_UPDATE` when it keeps ``Backend.fused_update``,
    :data:`GENERIC_ONLY` when its ``fused_update`` declined this config.
    """
    __tracebackhide__ = True
    label = _label(backend, "fused", case, "native kernels vs the generic rule")
    generic = _run(f"{label} (generic rule)", lambda: run_optimizer(backend, case, native=False))
    native = _run(f"{label} (native kernels)", lambda: run_optimizer(backend, case, native=True))
    _compare_trajectories(label, native, generic, tolerance or _tolerance(backend, "fused", case),
                          backend.dtype, "the generic rule")
    if generic.fused:
        raise ConformanceError(f"{label}: fused_update was called with use_native_kernels=False")
    if any(native.fused):
        return None
    if type(backend).fused_update is Backend.fused_update:
        return Note(NO_FUSED_UPDATE, case.item)
    return Note(GENERIC_ONLY, f"{case.item}[{case.name}]")


# ---------------------------------------------------------------- training

@dataclass
class TrainRun:
    """What ``fit`` produced: the loss of every step, the initial and final weights."""
    losses: np.ndarray
    initial: list[np.ndarray]
    weights: list[np.ndarray]
    names: list[str]


class _StepLosses(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.losses.append(float((logs or {})["loss"]))


# backend -> {(example, jit_compile): TrainRun}. Deterministic runs, shared by the training
# and compiled checks so each model trains (and TF traces it) once per backend and mode.
_RUNS: "weakref.WeakKeyDictionary[Backend, dict]" = weakref.WeakKeyDictionary()


def run_training(backend: Backend, case: TrainingCase, jit_compile: bool | str = "auto") -> TrainRun:
    """Train ``case``'s model on ``backend`` (cached per backend instance, example and mode)."""
    runs = _RUNS.setdefault(backend, {})
    key = (case.item, jit_compile)
    if key not in runs:
        runs[key] = _train(backend, case, jit_compile)
    return runs[key]


def _train(backend: Backend, case: TrainingCase, jit_compile: bool | str) -> TrainRun:
    model = case.build(case.seed)
    x, y = case.data()
    initial = model.get_weights()
    loss = case.loss() if callable(case.loss) else case.loss
    model.compile(optimizer=case.optimizer(), loss=loss, backend=backend, jit_compile=jit_compile)
    recorder = _StepLosses()
    model.fit(x, y, batch_size=case.batch_size, epochs=case.epochs, verbose=0, callbacks=[recorder])
    return TrainRun(np.array(recorder.losses), initial, model.get_weights(), [w.name for w in model.weights])


def _compare_runs(label: str, got: TrainRun, expected: TrainRun, tol: Tolerance, dtype: str, source: str,
                  steps: int) -> None:
    __tracebackhide__ = True
    if len(got.losses) != steps:
        raise ConformanceError(f"{label}: fit ran {len(got.losses)} steps, expected {steps} "
                               f"(losses {got.losses.tolist()})")
    compare(f"{label}: loss of each of the {steps} steps vs {source}", got.losses, expected.losses, tol)
    for name, start, have, want in zip(expected.names, expected.initial, got.weights, expected.weights):
        compare(f"{label}: displacement of {name} {want.shape} from its initial value vs {source}",
                have.astype(np.float64) - start, want.astype(np.float64) - start, tol)
        _check_dtype(f"{label}: final {name}", have, dtype)


def check_training(backend: Backend, reference_backend: Backend | None, case: TrainingCase,
                   tolerance: Tolerance | None = None) -> None:
    """``fit`` on ``backend`` (``jit_compile="auto"``) vs on the reference: step losses, final weights."""
    __tracebackhide__ = True
    label, source, got, expected = _on_both(backend, reference_backend, "training", case, run_training)
    _compare_runs(label, got, expected, tolerance or _tolerance(backend, "training", case), backend.dtype,
                  source, case.steps())


def check_compiled(backend: Backend, case: TrainingCase, tolerance: Tolerance | None = None) -> Note | None:
    """``fit`` with ``jit_compile="auto"`` vs ``jit_compile=False`` on one backend.

    Returns :data:`EAGER_ONLY` when the backend keeps ``Backend.compile_step``
    (then the two runs are the same code: trivially equal, still run).
    """
    __tracebackhide__ = True
    label = _label(backend, "compiled", case, "jit_compile='auto' vs jit_compile=False")
    eager = _run(f"{label} (eager)", lambda: run_training(backend, case, jit_compile=False))
    compiled = _run(f"{label} (compiled)", lambda: run_training(backend, case, jit_compile="auto"))
    _compare_runs(label, compiled, eager, tolerance or _tolerance(backend, "compiled", case), backend.dtype,
                  "the eager run", case.steps())
    return Note(EAGER_ONLY, case.item) if type(backend).compile_step is Backend.compile_step else None


def check_native_training(backend: Backend, case: TrainingCase, tolerance: Tolerance | None = None) -> Note | None:
    """``fit`` with the backend's native layer kernels vs inside ``generic_layers()``, on one backend."""
    __tracebackhide__ = True
    label = _label(backend, "native", case, "native layer kernels vs the generic layers")
    with generic_layers():
        generic = _run(f"{label} (generic)", lambda: _train(backend, case, "auto"))
    native = _run(f"{label} (native)", lambda: _train(backend, case, "auto"))
    _compare_runs(label, native, generic, tolerance or _tolerance(backend, "native", case), backend.dtype,
                  "the generic layers", case.steps())
    probe = case.build(case.seed)
    if all(backend.native_layer(layer) is None for layer in probe.layers):
        return Note(NO_NATIVE_LAYERS, case.item)
    return None


# ------------------------------------------------------------------ errors

def _raised(backend: Backend, case: ErrorCase) -> BaseException | None:
    try:
        case.trigger(backend)
    except Exception as exc:  # what is raised is the point of the check
        return exc
    return None


def _describe(exc: BaseException | None) -> str:
    return "nothing" if exc is None else f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


def check_raises(backend: Backend, reference_backend: Backend | None, case: ErrorCase) -> None:
    """``case.trigger`` raises ``case.expected`` on ``backend``, and an instance of the type the reference raises.

    A subclass counts (a backend may raise a more specific error); another type does not.
    """
    __tracebackhide__ = True
    reference_backend = reference_backend or reference()
    label = _label(backend, "error", case, "raises")
    got = _raised(backend, case)
    if not isinstance(got, case.expected):
        raise ConformanceError(f"{label}: raised {_describe(got)}; expected {case.expected.__qualname__}")
    expected = _raised(reference_backend, case)
    if expected is not None and not isinstance(got, type(expected)):
        raise ConformanceError(f"{label}: raised {_describe(got)}; the reference {reference_backend.name} "
                               f"raises {_describe(expected)}")

"""Running one model on each backend from the same weights, and measuring how far each is from the reference."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..autodiff import value_and_grad
from ..callbacks import Callback
from ..models import Model, Sequential
from ..ops import use_backend
from ..registry import list_backends
from ..structure import flatten, map_structure
from ..tolerances import Tolerance, default as default_tolerance
from .report import BackendReport, CompareError, CompareReport, Diff
from .sources import (_as_source, _resolve_compile, _split_data, _unbound_built, compiled_clone,
                      consistency_mode, num_samples)
from .speed import measure_all

# Final weights after training: the trajectory rtol, with an atol of rtol / 100, because a
# weight that starts at 0 (a bias) or crosses 0 has no scale of its own for rtol to use.
# The same bound tests/test_cross_backend.py puts on trained weights.
TRAINED_WEIGHTS_F64 = Tolerance(1e-8, 1e-10, "TRAINED_WEIGHTS_F64",
                                reason="trajectory rtol; atol rtol/100 for weights near 0")
TRAINED_WEIGHTS_F32 = Tolerance(1e-3, 1e-5, "TRAINED_WEIGHTS_F32",
                                reason="trajectory rtol; atol rtol/100 for weights near 0")
_DEVICE_BACKENDS = ("torch",)  # a plain device string applies to these only


def installed_backends() -> list[str]:
    """Every registered backend whose framework is installed (built-ins and plugins)."""
    return [row["name"] for row in list_backends() if row["installed"]]


def _round_to(value, dtype: str):
    """Floating arrays rounded to ``dtype`` (so float64 references see the very same numbers)."""
    def one(a):
        a = np.asarray(a)
        return a.astype(dtype) if a.dtype.kind == "f" and dtype == "float32" else a
    return map_structure(one, value)


def _take(value, n: int):
    return map_structure(lambda a: np.asarray(a)[:n], value)


def layer_outputs(model: Model, x, training: bool = False) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Run a compiled model layer by layer on ``x``; returns ([(layer name, output)], scope).

    * Sequential: each layer of ``model.layers`` in turn;
    * functional: each node of ``model.graph.nodes`` (a layer called twice gives
      ``name`` and ``name#2``; a layer with several outputs ``name[0]``, ``name[1]``...);
    * subclassed: only the model's final output (its layers run inside ``call``).

    ``scope`` says which: "per layer" or "final output only (...)". Outputs are NumPy arrays.
    """
    backend = model.backend
    if backend is None:
        raise RuntimeError(f"model {model.name!r} must be compiled before layer_outputs()")
    outputs: list[tuple[str, np.ndarray]] = []

    def record(name, out):
        tensors = flatten(out) if isinstance(out, (list, tuple, dict)) else [out]
        if len(tensors) == 1:
            outputs.append((name, backend.to_numpy(tensors[0])))
        else:
            outputs.extend((f"{name}[{i}]", backend.to_numpy(t)) for i, t in enumerate(tensors))

    with use_backend(backend), backend.no_grad():
        xt = map_structure(lambda a: backend.convert(np.asarray(a)), x)
        if isinstance(model, Sequential):
            h = xt
            for layer in model.layers:
                h = layer(h, training=training)
                record(layer.name, h)
            return outputs, "per layer"
        if model.graph is not None:
            calls: dict[int, int] = {}

            def on_node(node, out):
                count = calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1  # shared layers: name#2
                record(node.layer.name + (f"#{count}" if count > 1 else ""), out)
            model.graph.run(xt, training, on_node)
            return outputs, "per layer"
        record(f"{model.name} (output)", model.call(xt, training=training))
        return outputs, "final output only (a subclassed model runs its layers inside call())"


def _gradients(model: Model, x, y) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """Loss (compiled loss + regularization, training mode) on one batch and its gradient per weight."""
    backend = model.backend
    data = model.array_data(x, y)  # checks the labels against the loss, as fit does
    xb, yb, wb = next(data.batches(num_samples(x)))
    with use_backend(backend):
        xt, yt = map_structure(backend.convert, xb), map_structure(backend.convert, yb)
        wt = None if wb is None else backend.convert(wb)
        loss, grads = value_and_grad(lambda: model.total_loss(yt, model.call(xt, training=True), wt), model)
        names = [w.name for w in model.trainable_weights]
        return float(backend.to_numpy(loss)), [(n, backend.to_numpy(g)) for n, g in zip(names, grads)]


class _StepRecorder(Callback):
    """Records each training step's logs; stops fit after ``max_steps`` steps (None: never)."""

    def __init__(self, max_steps: int | None):
        super().__init__()
        self.max_steps, self.logs = max_steps, []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs or {}))
        if self.max_steps is not None and len(self.logs) >= self.max_steps:
            self.model.stop_training = True


@dataclass
class _Run:
    """The raw arrays of one backend's run (kept in memory, never serialized)."""
    activations: list[tuple[str, np.ndarray]]
    scope: str
    loss: float
    grads: list[tuple[str, np.ndarray]]
    loss_curve: list[float]
    metric_curves: dict[str, list[float]]
    final_weights: list[tuple[str, np.ndarray]]
    framework_version: str
    device: str
    note: str | None


def _run_backend(base: Model, compile_kwargs: dict, x, y, probe: int, backend: str, dtype: str,
                 device: str | None, batch_size: int, steps: int | None, epochs: int | None) -> _Run:
    # Forward and gradients on one clone, training on another: both start from base's weights.
    model = compiled_clone(base, compile_kwargs, backend, dtype, device)
    note = consistency_mode(model.backend)
    xp, yp = _take(x, probe), _take(y, probe)
    activations, scope = layer_outputs(model, xp)
    loss, grads = _gradients(model, xp, yp)

    model = compiled_clone(base, compile_kwargs, backend, dtype, device)
    recorder = _StepRecorder(steps if epochs is None else None)
    n = num_samples(x)
    per_epoch = -(-n // batch_size)
    run_epochs = epochs if epochs is not None else -(-steps // per_epoch)
    model.fit(x, y, batch_size=batch_size, epochs=run_epochs, shuffle=False, verbose=0, callbacks=[recorder])
    loss_curve = [float(logs.get("loss", float("nan"))) for logs in recorder.logs]
    metric_names = [k for k in (recorder.logs[0] if recorder.logs else {}) if k != "loss"]
    metric_curves = {k: [float(logs.get(k, float("nan"))) for logs in recorder.logs] for k in metric_names}
    final = [(w.name, w.numpy()) for w in model.weights]
    b = model.backend
    return _Run(activations, scope, loss, grads, loss_curve, metric_curves, final,
                b.framework_version(), str(b.device), note)


def _diff(name: str, actual, expected, tol: Tolerance) -> Diff:
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(expected, dtype=np.float64)
    if a.shape != r.shape:
        return Diff(name, tuple(r.shape), math.inf, math.inf, math.inf, False, tol.name, int(r.size), int(r.size),
                    note=f"shape {tuple(a.shape)} vs reference {tuple(r.shape)}")
    if a.size == 0:
        return Diff(name, tuple(r.shape), 0.0, 0.0, 0.0, True, tol.name, 0, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(a - r)
        both_nan = np.isnan(a) & np.isnan(r)
        delta = np.where(both_nan, 0.0, np.where(np.isnan(delta), np.inf, delta))
        max_abs = float(delta.max())
        scale = float(np.nanmax(np.abs(r))) if not np.isnan(r).all() else 0.0
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
        err = float((delta / (1.0 + np.abs(np.where(both_nan, 0.0, r)))).max())
    close = tol.close(a, r)
    mismatched = int(close.size - close.sum())
    return Diff(name, tuple(r.shape), max_abs, max_rel, err, mismatched == 0, tol.name, mismatched, int(r.size))


def _loose_dtype(a: str, b: str) -> str:
    return "float32" if "float32" in (a, b) else "float64"


def _configs(backends, reference: str, reference_dtype: str, dtype: str, device) -> list[tuple]:
    if backends is None:
        names = installed_backends()
    elif isinstance(backends, str):
        names = [b.strip() for b in backends.split(",") if b.strip()]
    else:
        names = list(backends)
    if not names:
        raise CompareError("no backend to compare: none is installed (see `unidl backends`)")

    def device_for(name):
        if isinstance(device, dict):
            return device.get(name)
        return device if name in _DEVICE_BACKENDS else None
    configs = [(reference, reference_dtype, device_for(reference) if isinstance(device, dict) else None, True)]
    configs += [(name, dtype, device_for(name), False) for name in dict.fromkeys(names)]
    return configs


def compare(model, data=None, *, backends: Sequence[str] | str | None = None, reference: str = "numpy",
            reference_dtype: str = "float64", dtype: str = "float32", steps: int = 20,
            epochs: int | None = None, batch_size: int = 32, device: str | dict | None = None,
            seed: int | None = 0, compile: dict | None = None, speed: bool = True, repeats: int = 5,
            timing_steps: int | None = None, isolate: bool | None = None,
            progress: Callable[[str], None] | None = None) -> CompareReport:
    """Run one model on several backends from the same initial weights; return a :class:`CompareReport`.

    Args:
        model: a spec string (``"examples/xor.py"``, ``"file.py:factory"``, ``"pkg.mod:factory"``, a
            built-in example name), a factory returning an uncompiled model, or a model (cloned).
        data: (x, y), a factory returning it (or ((x, y), (x_val, y_val))), or a spec string;
            None takes the model module's ``make_data``.
        backends: names (list or "numpy,torch"); None: every installed backend, plugins included.
        reference, reference_dtype: what the others are compared with (NumPy in float64).
        dtype: the compared backends' compute dtype. Weights and inputs are rounded to it first,
            so every backend, the reference included, starts from exactly the same numbers.
        steps: optimizer steps to train (the batches in order); ``epochs`` instead trains whole epochs.
        batch_size: training batch size; the forward and gradient checks use the first batch.
        device: for torch (e.g. "cuda"); a dict maps backend names to devices.
        seed: passed to factories that take ``seed`` (the model's weights).
        compile: optimizer / loss / metrics / loss_weights for ``compile``; default: the module's
            ``compile_kwargs()``, or the arguments of a model that came compiled.
        speed: also time training and measure peak memory: ``repeats`` timed epochs of ``timing_steps``
            batches (default: ``steps``, at least 50) after a warm-up epoch.
        isolate: measure speed in a subprocess per backend (None: when the model can be rebuilt there).
        progress: called with a line of text as each phase starts (the CLI prints them to stderr).
    """
    if steps is None or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    say = progress or (lambda _msg: None)
    source = _as_source(model, data, seed)
    if source.data is None:
        raise CompareError(f"no data for {source.label}: define make_data() next to the model factory, "
                           "or pass data (--data file.py:make_data)")
    x, y = _split_data(source.data())
    x, y = _round_to(x, dtype), _round_to(y, dtype)

    base = source.build()
    if not isinstance(base, Model):
        raise CompareError(f"the model factory {source.label} returned {type(base).__name__}, not a unidl model")
    kwargs = _resolve_compile(source, base, compile)
    if kwargs.get("loss") is None:
        raise CompareError(f"no loss to compare gradients and training with: pass compile={{'loss': ...}} "
                           f"(--loss NAME), or define compile_kwargs() next to {source.label}")
    base = _unbound_built(base, x)
    initial = [w.astype(dtype).astype(np.float64) if dtype == "float32" else w for w in base.get_weights()]
    base.set_weights(initial)

    n = num_samples(x)
    probe = min(batch_size, n)
    configs = _configs(backends, reference, reference_dtype, dtype, device)
    tol_dtype = _loose_dtype(dtype, reference_dtype)
    tols = {"forward": default_tolerance("forward", tol_dtype), "grad": default_tolerance("grad", tol_dtype),
            "trajectory": default_tolerance("trajectory", tol_dtype),
            "weights": TRAINED_WEIGHTS_F32 if tol_dtype == "float32" else TRAINED_WEIGHTS_F64}
    notes = [f"weights and inputs rounded to {dtype} before the runs: every backend starts from the same numbers"
             ] if dtype == "float32" else []
    reports: list[BackendReport] = []
    runs: dict[int, _Run] = {}
    for i, (name, dt, dev, is_ref) in enumerate(configs):
        say(f"running {name}/{dt}{' (reference)' if is_ref else ''}")
        report = BackendReport(name, dt, dev or "cpu", is_reference=is_ref)
        try:
            run = _run_backend(base, kwargs, x, y, probe, name, dt, dev, batch_size, steps, epochs)
        except Exception as exc:  # one broken backend is reported, the others still run
            report.error = f"{type(exc).__name__}: {exc}"
            report.forward_scope = ""
            reports.append(report)
            if is_ref:
                raise CompareError(f"the reference backend {name}/{dt} failed: {report.error}") from exc
            continue
        runs[i] = run
        report.framework_version, report.device = run.framework_version, run.device
        report.forward_scope, report.loss = run.scope, run.loss
        report.loss_curve, report.metric_curves = run.loss_curve, run.metric_curves
        if run.note and run.note not in notes:
            notes.append(run.note)
        reports.append(report)

    ref = runs[0]
    for i, report in enumerate(reports):
        if report.is_reference or i not in runs:
            continue
        run = runs[i]
        report.forward = [_diff(name, a, r, tols["forward"])
                          for (name, a), (_, r) in zip(run.activations, ref.activations)]
        report.first_diverging_layer = report.first_divergence()
        report.loss_diff = _diff("(loss)", run.loss, ref.loss, tols["forward"])
        report.gradients = [_diff(name, g, r, tols["grad"]) for (name, g), (_, r) in zip(run.grads, ref.grads)]
        steps_run = min(len(run.loss_curve), len(ref.loss_curve))
        curve = _diff("loss", run.loss_curve[:steps_run], ref.loss_curve[:steps_run], tols["trajectory"])
        if len(run.loss_curve) != len(ref.loss_curve):
            curve.ok, curve.err = False, math.inf
            curve.note = f"{len(run.loss_curve)} steps vs the reference's {len(ref.loss_curve)}"
        report.loss_curve_diff = curve
        report.metric_max_abs = {
            k: float(np.nanmax(np.abs(np.subtract(v[:steps_run], ref.metric_curves[k][:steps_run]))))
            if steps_run else 0.0
            for k, v in run.metric_curves.items() if k in ref.metric_curves}
        report.final_weights = [_diff(name, w, r, tols["weights"])
                                for (name, w), (_, r) in zip(run.final_weights, ref.final_weights)]

    if speed:
        timing_steps = timing_steps or max(steps, 50)
        measure_all(reports, source, base, kwargs, x, y, batch_size, timing_steps, repeats, isolate, seed, say,
                     notes, compile)
    return CompareReport(
        model=source.label, reference=reference, reference_dtype=reference_dtype, dtype=dtype,
        batch_size=batch_size, probe_size=probe, steps=len(ref.loss_curve), epochs=epochs, seed=seed,
        tolerances={k: str(t) for k, t in tols.items()}, backends=reports, notes=notes)

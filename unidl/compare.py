"""``unidl.compare``: one model on several backends, side by side, from the same weights.

::

    report = unidl.compare("examples/regression_mlp.py", backends=["numpy", "torch", "tensorflow"])
    print(report.table())
    assert report.passed()            # within CONVENTIONS.md's named tolerances
    report.plot("curves.png")         # needs matplotlib

    unidl compare examples/xor.py --steps 20 --plot curves.png --fail-above 1e-4

``unidl.compare`` is this module, made callable: ``unidl.compare(...)`` is
:func:`compare`, and ``from unidl.compare import CompareReport`` works too.

The model is built once (its initial weights drawn from its seed), rounded to
the compared dtype, and every backend gets an exact copy: a ``clone()`` of the
same unbound model, compiled on that backend (compiling carries the weights).
The reference (NumPy in float64 by default) runs the same clones. Then, per
backend:

* forward: every layer's output on the first batch (``layer_outputs``), against
  the reference's; the first layer outside the named forward tolerance is
  reported as where the backends start to diverge;
* backward: the gradient of the compiled loss (plus regularization) for each
  trainable weight, on that batch, via ``unidl.value_and_grad``;
* training: ``steps`` optimizer steps (or ``epochs`` epochs) with ``fit``, the
  same batches in the same order (``shuffle=False``): the loss and metric of
  every step, and the difference of the final weights;
* speed and memory: median ms per training step (``fit`` epochs of
  ``timing_steps`` batches, ``repeats`` times after a warm-up, as ``unidl bench``
  does) and peak memory, each backend in its own subprocess so the memory is its
  own: the peak RSS while the model is built and trained minus the RSS before,
  with the framework loaded (Linux's VmHWM, reset at that point; ``ru_maxrss``
  elsewhere), or CUDA's peak allocation for torch on a GPU. A model that cannot
  be rebuilt in a subprocess (an object, or a function defined in ``__main__``)
  is measured in this process, with ``tracemalloc``. The report says which
  method gave each number.

Differences, for an output ``a`` and the reference's ``r``:

* ``max_abs`` = max |a - r|; ``max_rel`` = max |a - r| / max |r|
  (relative to the tensor's largest reference value, so zeros do not blow it up);
* ``err`` = max |a - r| / (1 + |r|): absolute for small values, relative for
  large ones. ``report.passed(tol)`` and ``--fail-above TOL`` check
  ``err <= tol`` everywhere, i.e. ``numpy.isclose(a, r, rtol=tol, atol=tol)``;
* ``ok``: within the named tolerance of CONVENTIONS.md for the dtype
  (``unidl.testing.tolerances``): FORWARD_*, GRAD_*, TRAJECTORY_* for the loss
  curve, and TRAINED_WEIGHTS_* (below) for the final weights.

Nothing here imports a framework; rich (tables) and matplotlib (plots) are
optional and imported only when used.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .autodiff import value_and_grad
from .callbacks import Callback
from .functional import flatten, map_structure
from .layers.base import InputLayer
from .models import Model, Sequential
from .ops import use_backend
from .testing.tolerances import Tolerance, default as default_tolerance

__all__ = ["compare", "CompareReport", "BackendReport", "Diff", "Speed", "ModelSource", "load_source",
           "layer_outputs", "installed_backends", "TRAINED_WEIGHTS_F32", "TRAINED_WEIGHTS_F64",
           "MATPLOTLIB_MISSING"]

# Final weights after training: the trajectory rtol, with an atol of rtol / 100, because a
# weight that starts at 0 (a bias) or crosses 0 has no scale of its own for rtol to use.
# The same bound tests/test_cross_backend.py puts on trained weights.
TRAINED_WEIGHTS_F64 = Tolerance(1e-8, 1e-10, "TRAINED_WEIGHTS_F64",
                                reason="trajectory rtol; atol rtol/100 for weights near 0")
TRAINED_WEIGHTS_F32 = Tolerance(1e-3, 1e-5, "TRAINED_WEIGHTS_F32",
                                reason="trajectory rtol; atol rtol/100 for weights near 0")

DEFAULT_MODEL_FACTORY = "build_model"
DEFAULT_DATA_FACTORY = "make_data"
COMPILE_FACTORY = "compile_kwargs"  # optional: a module's compile arguments (optimizer, loss, metrics)
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"  # present in a source checkout
BUILTIN_EXAMPLES = ("regression_mlp", "xor", "deep_regression", "binary_classifier")
MATPLOTLIB_MISSING = ("--plot needs matplotlib, which is not installed; install it with: "
                      "pip install matplotlib   (or: pip install 'unidl[compare]')")
_DEVICE_BACKENDS = ("torch",)  # a plain device string applies to these only


class CompareError(ValueError):
    """What to compare cannot be found or used (a bad model spec, no data, no loss...)."""


# ====================================================================== results

@dataclass
class Diff:
    """How far one tensor (a layer output, a gradient, a weight, a loss curve) is from the reference."""
    name: str
    shape: tuple | None
    max_abs: float
    max_rel: float
    err: float            # max |a - r| / (1 + |r|), what passed(tol) compares
    ok: bool              # within ``tolerance``
    tolerance: str        # the named tolerance's name
    mismatched: int = 0   # elements outside the named tolerance
    size: int = 0
    note: str = ""

    def within(self, tol: float | None = None) -> bool:
        return self.ok if tol is None else self.err <= tol


@dataclass
class Speed:
    ms_per_step: float | None          # median over the repeats
    ms_per_step_runs: list[float]
    peak_mb: float | None              # memory the training itself added (see memory_method)
    memory_method: str                 # how peak_mb was measured
    timing: str                        # what was timed
    error: str | None = None
    process_peak_mb: float | None = None  # the whole subprocess's peak RSS, framework included


@dataclass
class BackendReport:
    """One backend's run and its differences from the reference (None for the reference itself)."""
    backend: str
    dtype: str
    device: str
    framework_version: str = ""
    is_reference: bool = False
    error: str | None = None
    forward_scope: str = ""
    forward: list[Diff] | None = None
    first_diverging_layer: str | None = None
    loss: float | None = None                 # loss on the probe batch (the gradient check's value)
    loss_diff: Diff | None = None             # that loss vs the reference's (forward tolerance)
    gradients: list[Diff] | None = None
    loss_curve: list[float] = field(default_factory=list)
    metric_curves: dict[str, list[float]] = field(default_factory=dict)
    loss_curve_diff: Diff | None = None
    metric_max_abs: dict[str, float] = field(default_factory=dict)  # informational, never gates
    final_weights: list[Diff] | None = None
    speed: Speed | None = None

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.dtype}" + (f"@{self.device}" if self.device not in ("", "cpu") else "")

    def diffs(self) -> list[tuple[str, Diff]]:
        """Every gating check as (section, Diff)."""
        out = [("forward", d) for d in self.forward or []]
        if self.loss_diff is not None:
            out.append(("loss value", self.loss_diff))
        out += [("gradient", d) for d in self.gradients or []]
        if self.loss_curve_diff is not None:
            out.append(("training loss", self.loss_curve_diff))
        out += [("final weight", d) for d in self.final_weights or []]
        return out

    def first_divergence(self, tol: float | None = None) -> str | None:
        """The first layer whose output is outside ``tol`` (None: the named forward tolerance)."""
        for d in self.forward or []:
            if not d.within(tol):
                return d.name
        return None

    def failures(self, tol: float | None = None) -> list[str]:
        if self.is_reference:
            return [f"{self.label} (reference): {self.error}"] if self.error else []
        if self.error:
            return [f"{self.label}: {self.error.splitlines()[-1] if self.error else ''}"]
        limit = "the named tolerance" if tol is None else f"{tol:g}"
        return [f"{self.label}: {section} {d.name!r} differs (max abs {_num(d.max_abs)}, err {_num(d.err)}"
                f" > {limit}{'' if tol is not None else ' ' + d.tolerance})" for section, d in self.diffs()
                if not d.within(tol)]


@dataclass
class CompareReport:
    """The numbers of one comparison. ``to_dict()`` is what ``--json`` prints."""
    model: str
    reference: str
    reference_dtype: str
    dtype: str
    batch_size: int
    probe_size: int
    steps: int
    epochs: int | None
    seed: int
    tolerances: dict[str, str]
    backends: list[BackendReport]
    notes: list[str] = field(default_factory=list)

    @property
    def reference_report(self) -> BackendReport:
        return next(b for b in self.backends if b.is_reference)

    @property
    def compared(self) -> list[BackendReport]:
        return [b for b in self.backends if not b.is_reference]

    def failures(self, tol: float | None = None) -> list[str]:
        """One line per check outside ``tol`` (None: the named tolerances), and per backend that failed."""
        return [line for b in self.backends for line in b.failures(tol)]

    def passed(self, tol: float | None = None) -> bool:
        """True when every backend ran and every check is within ``tol``.

        ``tol`` None uses the named tolerances (CONVENTIONS.md) for the dtype; a number
        means ``|a - r| <= tol * (1 + |r|)`` for every value (``--fail-above TOL``).
        """
        return not self.failures(tol)

    def to_dict(self) -> dict:
        def convert(obj):
            if dataclasses.is_dataclass(obj):
                return {f.name: convert(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            if isinstance(obj, dict):
                return {str(k): convert(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [convert(v) for v in obj]
            if isinstance(obj, (float, np.floating)):
                return float(obj) if math.isfinite(obj) else None  # JSON has no inf/nan: null
            if isinstance(obj, np.integer):
                return int(obj)
            return obj
        out = convert(self)
        for b, src in zip(out["backends"], self.backends):
            b["label"] = src.label
        out["unidl_version"] = __version__
        out["passed"] = self.passed()
        out["failures"] = self.failures()
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, tol: float | None = None) -> str:
        """The report as plain text (what the CLI prints when rich is not installed)."""
        return "\n".join(_render_plain(self, tol))

    def print(self, tol: float | None = None, file=None, plain: bool | None = None) -> None:
        """Print the report as tables: rich ones when rich is installed, else plain text.

        ``plain`` None picks rich only for a terminal (pipes and CI logs get plain text).
        """
        file = file or sys.stdout
        if plain is None:
            plain = not getattr(file, "isatty", lambda: False)()
        if not plain:
            try:
                import rich  # noqa: F401
            except ImportError:
                plain = True
        if plain:
            print(self.table(tol), file=file)
        else:
            _render_rich(self, tol, file)

    def plot(self, path: str | os.PathLike) -> Path:
        """Loss and metric curves of every backend (and |loss - reference loss|) to a PNG."""
        return _plot(self, Path(path))


# ====================================================================== sources

@dataclass
class ModelSource:
    """Where the model, its data and its compile arguments come from.

    ``build()`` returns an uncompiled model, ``data()`` (x, y) and ``compile_kwargs()``
    a dict for ``compile`` (optimizer, loss, metrics, loss_weights) or None.
    ``spec`` is a string a subprocess can resolve again (for speed and memory), or None.
    """
    label: str
    build: Callable[[], Model]
    data: Callable[[], Any] | None = None
    compile_kwargs: Callable[[], dict | None] | None = None
    spec: str | None = None


def _call_with_seed(fn: Callable, seed: int | None):
    """``fn(seed=seed)`` when it takes a ``seed`` argument, else ``fn()``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if seed is not None and ("seed" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())):
        return fn(seed=seed)
    return fn()


def _split_spec(spec: str) -> tuple[str, str | None]:
    """'path/to/file.py:factory' or 'pkg.module:factory' -> (location, factory or None)."""
    location, sep, attr = spec.rpartition(":")
    if sep and attr and location and not attr.startswith(("\\", "/")):
        return location, attr
    return spec, None


def _load_module(location: str):
    """A module from a file path, a built-in example name or an importable module path."""
    path = Path(location)
    if location.endswith(".py") or path.is_file():
        if not path.is_file():
            raise CompareError(f"no such file: {location}")
        path = path.resolve()
        name = f"unidl_compare_{path.stem}_{abs(hash(str(path))) % 10**8}"
        if name in sys.modules:
            return sys.modules[name], str(path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the file may import its neighbours
        try:
            spec.loader.exec_module(module)
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(path.parent))
        sys.modules[name] = module
        return module, str(path)
    if location in BUILTIN_EXAMPLES or (EXAMPLES_DIR / f"{location}.py").is_file():
        example = EXAMPLES_DIR / f"{location}.py"
        if not example.is_file():
            raise CompareError(f"the built-in example {location!r} is not here ({example}): the examples ship "
                               "with unidl's source tree; pass the path of a model file instead")
        return _load_module(str(example))
    try:
        return importlib.import_module(location), location
    except ImportError as exc:
        examples = ", ".join(BUILTIN_EXAMPLES)
        raise CompareError(f"cannot import {location!r} ({exc}); give a Python file (model.py:build_model), "
                           f"a module path (mypkg.models:make) or a built-in example ({examples})") from exc


def _factory(module, attr: str, where: str, what: str) -> Callable:
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                       and getattr(v, "__module__", None) == module.__name__)
        raise CompareError(f"{where} has no {what} function {attr!r}; its functions: {found or 'none'}")
    return fn


def load_source(model: str, data: str | None = None, seed: int | None = 0) -> ModelSource:
    """Resolve a model spec (and optionally a data spec) to a :class:`ModelSource`.

    ``model``: ``path/file.py[:factory]``, ``pkg.module[:factory]`` or a built-in example name
    (``xor``, ``regression_mlp``...); the factory defaults to ``build_model``. ``data`` has the
    same form with ``make_data`` as default; None takes the model module's ``make_data``.
    Factories taking a ``seed`` argument get ``seed``. A module's ``compile_kwargs()``, when it
    has one, gives the optimizer, loss and metrics.
    """
    location, attr = _split_spec(model)
    module, where = _load_module(location)
    build_fn = _factory(module, attr or DEFAULT_MODEL_FACTORY, where, "model factory")
    spec = f"{where}:{attr or DEFAULT_MODEL_FACTORY}"
    if data is None:
        data_fn = getattr(module, DEFAULT_DATA_FACTORY, None)
        data_fn = data_fn if callable(data_fn) else None
    else:
        data_location, data_attr = _split_spec(data)
        data_module, data_where = _load_module(data_location)
        data_fn = _factory(data_module, data_attr or DEFAULT_DATA_FACTORY, data_where, "data factory")
    compile_fn = getattr(module, COMPILE_FACTORY, None)
    return ModelSource(
        label=f"{Path(where).stem if where.endswith('.py') else where}:{build_fn.__name__}",
        build=lambda: _call_with_seed(build_fn, seed),
        data=None if data_fn is None else (lambda: _call_with_seed(data_fn, seed)),
        compile_kwargs=compile_fn if callable(compile_fn) else None,
        spec=spec)


def _importable(fn: Callable) -> str | None:
    """'module:qualname' when a subprocess can import ``fn``, else None."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if module.startswith("unidl_compare_") and path:  # a file loaded by load_source
        return f"{path}:{qualname}"
    return f"{module}:{qualname}"


def _as_source(model, data, seed: int | None) -> ModelSource:
    if isinstance(model, ModelSource):
        source = model
    elif isinstance(model, (str, os.PathLike)):
        source = load_source(str(model), data if isinstance(data, str) else None, seed)
    elif isinstance(model, Model):
        template = model
        source = ModelSource(label=model.name, build=template.clone)
        if template._loss_spec is not None:
            source.compile_kwargs = lambda: _compiled_kwargs(template)
    elif callable(model):
        source = ModelSource(label=getattr(model, "__name__", "model"), build=lambda: _call_with_seed(model, seed),
                             spec=_importable(model))
    else:
        raise TypeError(f"compare() takes a model factory, an uncompiled model, or a spec string such as "
                        f"'examples/xor.py:build_model'; got {model!r}")
    if data is not None and not isinstance(data, str):
        if callable(data):
            source.data = lambda: _call_with_seed(data, seed)
        else:
            source.data = lambda: data
    return source


def _compiled_kwargs(model: Model) -> dict:
    """The compile arguments of a model that was already compiled."""
    return {"optimizer": model.optimizer if model.optimizer is not None else "rmsprop",
            "loss": model._loss_spec, "loss_weights": model._loss_weights,
            "metrics": model._metric_ids}


def _resolve_compile(source: ModelSource, model: Model, overrides: dict | None) -> dict:
    """Compile arguments: ``overrides``, then the module's compile_kwargs(), then those of a model
    that came compiled; the optimizer defaults to compile's own default."""
    found = source.compile_kwargs() if source.compile_kwargs is not None else None
    if found is None and model._loss_spec is not None:
        found = _compiled_kwargs(model)
    kwargs = {**(found or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    kwargs.setdefault("optimizer", "rmsprop")
    return kwargs


def _unbound_built(model: Model, x) -> Model:
    """``model`` unbound (a clone when it came compiled) and built for ``x``'s shapes."""
    if model.backend is not None:
        model = model.clone()
    if not model.built:
        shapes = [(None, *np.shape(a)[1:]) for a in flatten(x)]
        model.build(shapes[0] if len(shapes) == 1 else shapes)
    return model


def _split_data(data) -> tuple[Any, Any]:
    """(x, y) from (x, y), or from ((x, y), (x_val, y_val)): the training pair."""
    if isinstance(data, dict) and "x" in data:
        return data["x"], data.get("y")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(p, tuple) and len(p) in (2, 3) for p in data):
        data = data[0]
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise CompareError("the data factory must return (x, y), or ((x, y), (x_val, y_val)); got "
                           f"{type(data).__name__}")
    return data[0], data[1]


# ====================================================================== running

def installed_backends() -> list[str]:
    """Every registered backend whose framework is installed (built-ins and plugins)."""
    from .registry import list_backends
    return [row["name"] for row in list_backends() if row["installed"]]


def _fresh(kwargs: dict) -> dict:
    """Compile arguments with a fresh, unshared optimizer and metric objects for one more model."""
    out = dict(kwargs)
    opt = out.get("optimizer")
    if opt is not None and not isinstance(opt, str):
        opt = copy.copy(opt)  # slots and step count are per model: start them anew
        opt._slots, opt._slot_backend, opt.iterations = {}, {}, 0
        out["optimizer"] = opt
    for key in ("loss", "metrics"):
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            out[key] = copy.deepcopy(value)
    return out


def _round_to(value, dtype: str):
    """Floating arrays rounded to ``dtype`` (so float64 references see the very same numbers)."""
    def one(a):
        a = np.asarray(a)
        return a.astype(dtype) if a.dtype.kind == "f" and dtype == "float32" else a
    return map_structure(one, value)


def _take(value, n: int):
    return map_structure(lambda a: np.asarray(a)[:n], value)


def _num_samples(x) -> int:
    return len(flatten(x)[0])


def _consistency_mode(backend) -> str | None:
    """CONVENTIONS.md: comparisons run with TF32 off on GPUs. The framework is already imported
    by the backend, so this looks it up rather than importing it."""
    if backend.name == "torch" and str(backend.device).startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            return "torch on CUDA: TF32 turned off (torch.backends.cuda.matmul / cudnn.allow_tf32 = False)"
    return None


def layer_outputs(model: Model, x, training: bool = False) -> tuple[list[tuple[str, np.ndarray]], str]:
    """Run a compiled model layer by layer on ``x``; returns ([(layer name, output)], scope).

    * Sequential: each layer of ``model._layers`` in turn;
    * functional: each node of ``model._graph.nodes`` (a layer called twice gives
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
            for layer in model._layers:
                if isinstance(layer, InputLayer):
                    continue
                h = layer(h, training=training)
                record(layer.name, h)
            return outputs, "per layer"
        if model._graph is not None:
            calls: dict[int, int] = {}

            def on_node(node, out):
                count = calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1  # shared layers: name#2
                record(node.layer.name + (f"#{count}" if count > 1 else ""), out)
            model._graph.run(xt, training, on_node)
            return outputs, "per layer"
        record(f"{model.name} (output)", model.call(xt, training=training))
        return outputs, "final output only (a subclassed model runs its layers inside call())"


def _gradients(model: Model, x, y) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """Loss (compiled loss + regularization, training mode) on one batch and its gradient per weight."""
    from . import training
    backend = model.backend
    data = training._array_data(model, x, y)  # checks labels against the loss, sets model._losses
    xb, yb, wb = next(data.batches(_num_samples(x)))
    with use_backend(backend):
        xt, yt = training._to_backend(backend, xb), training._to_backend(backend, yb)
        wt = None if wb is None else backend.convert(wb)
        loss, grads = value_and_grad(lambda: training.total_loss(model, yt, model.call(xt, training=True), wt),
                                     model)
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


def _compile(base: Model, compile_kwargs: dict, backend: str, dtype: str, device: str | None) -> Model:
    model = base.clone()
    model.compile(**_fresh(compile_kwargs), backend=backend, dtype=dtype, device=device)
    return model


def _run_backend(base: Model, compile_kwargs: dict, x, y, probe: int, backend: str, dtype: str,
                 device: str | None, batch_size: int, steps: int | None, epochs: int | None) -> _Run:
    # Forward and gradients on one clone, training on another: both start from base's weights.
    model = _compile(base, compile_kwargs, backend, dtype, device)
    note = _consistency_mode(model.backend)
    xp, yp = _take(x, probe), _take(y, probe)
    activations, scope = layer_outputs(model, xp)
    loss, grads = _gradients(model, xp, yp)

    model = _compile(base, compile_kwargs, backend, dtype, device)
    recorder = _StepRecorder(steps if epochs is None else None)
    n = _num_samples(x)
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

    n = _num_samples(x)
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
        _measure_all(reports, source, base, kwargs, x, y, batch_size, timing_steps, repeats, isolate, seed, say,
                     notes, compile)
    return CompareReport(
        model=source.label, reference=reference, reference_dtype=reference_dtype, dtype=dtype,
        batch_size=batch_size, probe_size=probe, steps=len(ref.loss_curve), epochs=epochs, seed=seed,
        tolerances={k: str(t) for k, t in tols.items()}, backends=reports, notes=notes)


# ====================================================================== speed and memory

def _timing_data(x, y, batch_size: int, steps: int):
    """``steps`` full batches (rows repeated when the data is smaller) and the batch size used."""
    n = _num_samples(x)
    batch = min(batch_size, n)
    idx = np.arange(steps * batch) % n
    return map_structure(lambda a: np.asarray(a)[idx], x), map_structure(lambda a: np.asarray(a)[idx], y), batch


def _time_training(model: Model, x, y, batch: int, steps: int, repeats: int) -> list[float]:
    """ms/step of ``repeats`` one-epoch fits of ``steps`` batches, after one warm-up epoch."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        model.backend.sync()
        times.append((time.perf_counter() - start) * 1e3 / steps)
    return times[1:]


def _cuda_peak(backend) -> float | None:
    torch = sys.modules.get("torch")
    if backend.name == "torch" and str(backend.device).startswith("cuda") and torch is not None:
        return torch.cuda.max_memory_allocated(backend._device) / 2**20
    return None


def _measure_here(base: Model, kwargs: dict, x, y, backend: str, dtype: str, device, batch_size: int,
                  steps: int, repeats: int) -> Speed:
    """Speed in this process; memory with tracemalloc (NumPy allocations) or torch's CUDA counters."""
    import tracemalloc
    xt, yt, batch = _timing_data(x, y, batch_size, steps)
    model = _compile(base, kwargs, backend, dtype, device)
    _consistency_mode(model.backend)
    runs = _time_training(model, xt, yt, batch, steps, repeats)
    cuda = _cuda_peak(model.backend)
    if cuda is not None:
        peak, method = cuda, "CUDA peak allocated (torch.cuda.max_memory_allocated), in-process"
    else:
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base_mem = tracemalloc.get_traced_memory()[0]
        model.fit(xt, yt, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        peak = (tracemalloc.get_traced_memory()[1] - base_mem) / 2**20
        if not tracing:
            tracemalloc.stop()
        method = ("tracemalloc peak over one epoch, in-process (NumPy and Python allocations only; "
                  + ("the framework's own memory is not seen)" if backend != "numpy" else "complete for numpy)"))
    return Speed(statistics.median(runs), runs, peak, method,
                 f"median of {repeats} fit() epochs of {steps} steps (batch {batch}) after a warm-up, in-process")


def _measure_all(reports, source: ModelSource, base: Model, kwargs: dict, x, y, batch_size: int, steps: int,
                 repeats: int, isolate: bool | None, seed, say, notes: list[str], compile_overrides) -> None:
    overrides_json = None
    if source.spec is not None:
        try:
            overrides_json = json.dumps(compile_overrides or {})
        except TypeError:
            overrides_json = None  # objects in compile=...: only this process has them
    can_isolate = source.spec is not None and overrides_json is not None
    if isolate and not can_isolate:
        raise CompareError("isolate=True needs a model a subprocess can rebuild: a spec string or an importable "
                           "factory, with compile= holding names only")
    use_subprocess = can_isolate if isolate is None else bool(isolate)
    if not use_subprocess:
        notes.append("speed and memory measured in this process (the model cannot be rebuilt in a subprocess)")
    with tempfile.TemporaryDirectory(prefix="unidl-compare-") as tmp:
        if use_subprocess:
            xt, yt, batch = _timing_data(x, y, batch_size, steps)
            arrays = {f"x{i}": a for i, a in enumerate(flatten(xt))}
            arrays.update({f"y{i}": a for i, a in enumerate(flatten(yt))})
            np.savez(Path(tmp, "data.npz"), **arrays)
            np.savez(Path(tmp, "weights.npz"), *base.get_weights())
        for report in reports:
            if report.is_reference or report.error:
                continue
            say(f"timing {report.label}")
            device = None if report.device == "cpu" else report.device
            try:
                if use_subprocess:
                    job = {"spec": source.spec, "seed": seed, "compile": json.loads(overrides_json),
                           "x_count": len(flatten(xt)), "y_count": len(flatten(yt)),
                           "x_list": isinstance(xt, (list, tuple)), "y_list": isinstance(yt, (list, tuple)),
                           "dir": tmp, "backend": report.backend, "dtype": report.dtype, "device": device,
                           "batch": batch, "steps": steps, "repeats": repeats}
                    report.speed = _run_worker(job)
                    if report.speed.error is None:
                        continue
                    worker_error = report.speed.error
                    report.speed = _measure_here(base, kwargs, x, y, report.backend, report.dtype, device,
                                                 batch_size, steps, repeats)
                    report.speed.timing += f" (the subprocess failed: {worker_error})"
                else:
                    report.speed = _measure_here(base, kwargs, x, y, report.backend, report.dtype, device,
                                                 batch_size, steps, repeats)
            except Exception as exc:
                report.speed = Speed(None, [], None, "", "", error=f"{type(exc).__name__}: {exc}")


def _run_worker(job: dict) -> Speed:
    path = Path(job["dir"], f"job-{job['backend']}.json")
    path.write_text(json.dumps(job))
    env = dict(os.environ)
    # The subprocess sees the same modules as this process (a factory's package on sys.path...).
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))])
    cmd = [sys.executable, "-c", "import sys; from unidl.compare import _worker_main; "
           "sys.exit(_worker_main(sys.argv[1:]))", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Speed(None, [], None, "", "", error=f"exit {proc.returncode}: {tail}")
    out = json.loads(lines[-1])
    return Speed(out["ms_per_step"], out["runs"], out["peak_mb"], out["memory_method"], out["timing"],
                 process_peak_mb=out["process_peak_mb"])


def _worker_main(argv: list[str]) -> int:
    """Internal: measure one backend in this (fresh) process; prints one JSON line.

    Memory: the peak RSS while the model is built, compiled and trained, minus the RSS
    just before, with the framework imported and initialised. On Linux the peak is the
    process's high-water mark (VmHWM), reset at that point; elsewhere ``ru_maxrss``,
    which cannot be reset (a high import peak then hides a smaller training peak) and
    which Linux carries over from the parent process.
    """
    from .bench import _proc_status_mb, _reset_peak_rss, _rss_mb
    from .registry import get_backend
    job = json.loads(Path(argv[0]).read_text())
    backend = get_backend(job["backend"], dtype=job["dtype"], device=job["device"])  # imports the framework
    with use_backend(backend):
        backend.to_numpy(backend.add(backend.convert(np.ones(2)), 1.0))  # wake the framework up
    import_peak = _proc_status_mb("VmHWM")
    use_proc = _reset_peak_rss()
    baseline = _proc_status_mb("VmRSS") if use_proc else _rss_mb()
    source = load_source(job["spec"], seed=job["seed"])
    data = np.load(Path(job["dir"], "data.npz"))
    xs = [data[f"x{i}"] for i in range(job["x_count"])]
    ys = [data[f"y{i}"] for i in range(job["y_count"])]
    x = xs if job["x_list"] else xs[0]
    y = ys if job["y_list"] else ys[0]
    weights = np.load(Path(job["dir"], "weights.npz"))
    base = source.build()
    kwargs = _resolve_compile(source, base, job["compile"])
    base = _unbound_built(base, x)
    base.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    model = _compile(base, kwargs, job["backend"], job["dtype"], job["device"])
    _consistency_mode(model.backend)
    steps, repeats = job["steps"], job["repeats"]
    batch = job["batch"]
    runs = _time_training(model, x, y, batch, steps, repeats)
    cuda = _cuda_peak(model.backend)
    end_peak = _proc_status_mb("VmHWM") if use_proc else _rss_mb()
    process_peak = max(end_peak, import_peak or 0.0)
    if cuda is not None:
        peak, method = cuda, "CUDA peak allocated (torch.cuda.max_memory_allocated), own subprocess"
    elif use_proc:
        peak, method = end_peak - baseline, ("peak RSS while building and training, minus the RSS before (the "
                                             "framework imported): /proc/self VmHWM, own subprocess")
    else:
        peak, method = end_peak - baseline, ("peak RSS growth over the process after importing the framework "
                                             "(getrusage ru_maxrss), own subprocess")
    print(json.dumps({"ms_per_step": statistics.median(runs), "runs": runs, "peak_mb": peak,
                      "process_peak_mb": process_peak, "memory_method": method,
                      "timing": f"median of {repeats} fit() epochs of {steps} steps (batch {batch}) after a "
                                "warm-up, own subprocess"}))
    return 0


# ====================================================================== rendering

def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.1e}"


def _status(d: Diff, tol: float | None) -> str:
    ok = d.within(tol)
    if ok:
        return "ok"
    if d.note:
        return f"FAIL ({d.note})"
    return f"FAIL ({d.mismatched}/{d.size})" if tol is None else "FAIL"


def _sections(report: CompareReport, tol: float | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table; shared by the plain and the rich renderers."""
    ref = report.reference_report
    ref_label = f"{ref.backend}/{ref.dtype}"
    limit = "" if tol is None else f"; pass/fail against --fail-above {tol:g} (err = |a-r|/(1+|r|))"
    out = []
    ok_runs = [b for b in report.compared if not b.error]
    scope = ok_runs[0].forward_scope if ok_runs else ""
    rows = []
    for b in ok_runs:
        for d in b.forward or []:
            rows.append([d.name, str(d.shape), b.label, _num(d.max_abs), _num(d.max_rel), _status(d, tol)])
    for b in ok_runs:  # the compiled loss on the same batch, a forward quantity too
        if b.loss_diff is not None:
            d = b.loss_diff
            rows.append([f"(loss {b.loss:.6g})", "()", b.label, _num(d.max_abs), _num(d.max_rel), _status(d, tol)])
    out.append((f"Forward: {scope} outputs on the first {report.probe_size} samples vs {ref_label}, "
                f"{report.tolerances['forward']}{limit}",
                ["layer", "shape", "backend", "max abs", "max rel", "status"], rows))
    rows = []
    for b in ok_runs:
        for d in b.gradients or []:
            rows.append([d.name, str(d.shape), b.label, _num(d.max_abs), _num(d.max_rel), _status(d, tol)])
    out.append((f"Gradients of the loss on that batch vs {ref_label}, {report.tolerances['grad']}{limit}",
                ["parameter", "shape", "backend", "max abs", "max rel", "status"], rows))
    rows = []
    for b in [ref, *ok_runs]:
        curve = b.loss_curve
        first = f"{curve[0]:.6g}" if curve else "-"
        last = f"{curve[-1]:.6g}" if curve else "-"
        if b.is_reference:
            rows.append([b.label + " (ref)", first, last, "", "", "", ""])
            continue
        worst = max(b.final_weights or [], key=lambda d: d.err, default=None)
        status = "ok" if all(d.within(tol) for d in [b.loss_curve_diff, *(b.final_weights or [])] if d) else "FAIL"
        rows.append([b.label, first, last, _num(b.loss_curve_diff.max_rel) if b.loss_curve_diff else "-",
                     f"{_num(worst.max_abs)} ({worst.name})" if worst else "-",
                     ", ".join(f"{k} {_num(v)}" for k, v in b.metric_max_abs.items()) or "-", status])
    out.append((f"Training: {report.steps} steps, batch {report.probe_size}, same batches in order (shuffle off); "
                f"loss {report.tolerances['trajectory']}, weights {report.tolerances['weights']}{limit}",
                ["backend", "loss step 1", "final loss", "loss max rel", "final weights max abs (worst)",
                 "metric max abs", "status"], rows))
    speed = [b for b in report.compared if b.speed is not None]
    if speed:
        rows = []
        methods: list[str] = []
        for b in speed:
            s = b.speed
            if s.error:
                rows.append([b.label, "-", "-", "-", "-", "-", f"error: {s.error}"])
                continue
            if s.memory_method not in methods:
                methods.append(s.memory_method)
            rows.append([b.label, f"{s.ms_per_step:.3f}", f"{min(s.ms_per_step_runs):.3f}",
                         f"{max(s.ms_per_step_runs):.3f}", f"{s.peak_mb:.1f}" if s.peak_mb is not None else "-",
                         f"{s.process_peak_mb:.0f}" if s.process_peak_mb is not None else "-",
                         f"[{methods.index(s.memory_method) + 1}]"])
        timing = next((b.speed.timing for b in speed if not b.speed.error), "")
        legend = "; ".join(f"[{i + 1}] {m}" for i, m in enumerate(methods))
        out.append((f"Speed and memory: ms per training step, {timing}. Memory: {legend}",
                    ["backend", "ms/step (median)", "min", "max", "training MB", "process peak MB", "memory"],
                    rows))
    return out


def _summary(report: CompareReport, tol: float | None) -> list[str]:
    lines = []
    for b in report.compared:
        if b.error:
            lines.append(f"{b.label}: did not run: {b.error}")
            continue
        first = b.first_divergence(tol)
        lines.append(f"{b.label}: " + (f"first diverging layer: {first}" if first else
                                        "no layer diverges" if b.forward_scope == "per layer" else
                                        "the output agrees"))
    failures = report.failures(tol)
    what = "the named tolerances" if tol is None else f"--fail-above {tol:g}"
    head = (f"PASSED: every backend agrees with {report.reference}/{report.reference_dtype} within {what}"
            if not failures else f"FAILED: {len(failures)} check(s) outside {what}:")
    return lines + [head] + [f"  - {f}" for f in failures[:20]] + (
        [f"  ... and {len(failures) - 20} more"] if len(failures) > 20 else [])


def _header(report: CompareReport) -> str:
    return (f"unidl compare: {report.model}; reference {report.reference}/{report.reference_dtype}, compared in "
            f"{report.dtype}; seed {report.seed}")


def _plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def _render_plain(report: CompareReport, tol: float | None) -> list[str]:
    lines = [_header(report)]
    for title, header, rows in _sections(report, tol):
        lines += ["", title] + (_plain_table(header, rows) if rows else ["(nothing to show)"])
    if report.notes:
        lines += [""] + [f"note: {n}" for n in report.notes]
    return lines + [""] + _summary(report, tol)


def _render_rich(report: CompareReport, tol: float | None, file) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(file=file)
    console.print(f"[bold]{_header(report)}[/bold]")
    for title, header, rows in _sections(report, tol):
        table = Table(title=title, title_justify="left", title_style="bold")
        for h in header:
            table.add_column(h, justify="right" if any(k in h for k in ("max", "ms", "min", "MB", "loss")) else "left")
        for row in rows:
            table.add_row(*[f"[red]{c}[/red]" if c.startswith("FAIL") else
                            f"[green]{c}[/green]" if c == "ok" else c for c in row])
        console.print(table)
    for n in report.notes:
        console.print(f"note: {n}", highlight=False)
    for line in _summary(report, tol):
        style = "green" if line.startswith("PASSED") else "red" if line.startswith(("FAILED", "  -")) else ""
        console.print(f"[{style}]{line}[/{style}]" if style else line, highlight=False)


def _plot(report: CompareReport, path: Path) -> Path:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MATPLOTLIB_MISSING) from None
    runs = [b for b in report.backends if b.loss_curve]
    metrics = list(dict.fromkeys(k for b in runs for k in b.metric_curves))
    ref = report.reference_report
    panels = ["loss", *metrics] + (["|loss - reference loss|"] if len(runs) > 1 else [])
    fig = Figure(figsize=(5.5 * len(panels), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for i, b in enumerate(runs):  # one colour per backend in every panel
            label = b.label + (" (reference)" if b.is_reference else "")
            style = {"linestyle": "--", "linewidth": 2.5, "alpha": 0.6} if b.is_reference else {"linewidth": 1.2}
            style["color"] = f"C{i % 10}"
            steps = np.arange(1, len(b.loss_curve) + 1)
            if panel == "loss":
                ax.plot(steps, b.loss_curve, label=label, **style)
            elif panel in b.metric_curves:
                ax.plot(steps, b.metric_curves[panel], label=label, **style)
            elif panel.startswith("|") and not b.is_reference:
                n = min(len(b.loss_curve), len(ref.loss_curve))
                gap = np.abs(np.subtract(b.loss_curve[:n], ref.loss_curve[:n]))
                ax.semilogy(steps[:n], np.maximum(gap, 1e-18), label=label, **style)
        ax.set_title(panel if panel != "loss" else f"loss ({report.model})")
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


class _CallableModule(types.ModuleType):
    """``unidl.compare(...)`` calls :func:`compare`; the module's other names stay reachable."""

    def __call__(self, *args, **kwargs) -> CompareReport:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

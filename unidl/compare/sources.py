"""Where the model, its data and its compile arguments come from: files, modules, factories, objects."""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..models import Model
from ..registry import get_backend
from ..structure import flatten
from .report import CompareError

DEFAULT_MODEL_FACTORY = "build_model"
DEFAULT_DATA_FACTORY = "make_data"
COMPILE_FACTORY = "compile_kwargs"  # optional: a module's compile arguments (optimizer, loss, metrics)
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # present in a source checkout
BUILTIN_EXAMPLES = ("regression_mlp", "xor", "deep_regression", "binary_classifier")


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
        if template.compiled_loss_spec is not None:
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
            "loss": model.compiled_loss_spec, "loss_weights": model.compiled_loss_weights,
            "metrics": model.compiled_metric_spec}


def _resolve_compile(source: ModelSource, model: Model, overrides: dict | None) -> dict:
    """Compile arguments: ``overrides``, then the module's compile_kwargs(), then those of a model
    that came compiled; the optimizer defaults to compile's own default."""
    found = source.compile_kwargs() if source.compile_kwargs is not None else None
    if found is None and model.compiled_loss_spec is not None:
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


# ------------------------------------------------------------ compiled clones

def _fresh(kwargs: dict) -> dict:
    """Compile arguments with a fresh, unshared optimizer and metric objects for one more model."""
    out = dict(kwargs)
    opt = out.get("optimizer")
    if opt is not None and not isinstance(opt, str):
        opt = copy.copy(opt)  # slots and step count are per model: start them anew
        opt.reset()
        out["optimizer"] = opt
    for key in ("loss", "metrics"):
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            out[key] = copy.deepcopy(value)
    return out


def num_samples(x) -> int:
    return len(flatten(x)[0])


def consistency_mode(backend) -> str | None:
    """A note for the report when the backend compares in a mode it chose for comparisons (docs/conventions.md:
    TF32 off on GPUs); ``compiled_clone`` asks for it."""
    if "tf32" in backend.options and str(backend.device) != "cpu" and not backend.options["tf32"]:
        return f"{backend.name} on {backend.device}: TF32 off (backend_options={{'tf32': False}})"
    return None


def compiled_clone(base: Model, compile_kwargs: dict, backend: str, dtype: str, device: str | None) -> Model:
    """A copy of ``base`` compiled on ``backend``, with TF32 off where the backend has that switch."""
    model = base.clone()
    options = {"tf32": False} if "tf32" in get_backend(backend, dtype=dtype, device=device).option_defaults else {}
    model.compile(**_fresh(compile_kwargs), backend=backend, dtype=dtype, device=device, backend_options=options)
    return model

"""Objects to and from JSON-ready configs: layers, optimizers, losses, metrics, schedules.

A config names a class (``{"class_name": "Dense", "config": {...}}``) or a
function (``{"function": "mse"}``). Names are found, in this order, among the
``custom_objects`` of the enclosing :func:`custom_object_scope` (and of the
call), the built-ins, then plugin-registered items.

Layer and model classes live above this module (``unidl.layers``,
``unidl.models``), so they are not imported here: those modules add their
classes with :func:`register_layer_classes` when they are imported, and a class rebuilds
itself with its own ``from_config``. Loading a config therefore never needs to
know what a model is.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
from typing import Any, Iterator, Mapping

from . import losses, metrics, optimizers, schedules
from .files import SavingError
from .naming import closest
from .registry import REGISTRY

# Tables (class name -> class) of the layer and model classes unidl ships, added by unidl.layers and
# unidl.models. Kept by reference and read at each lookup, so a class added to a table later is found.
_LAYER_CLASS_TABLES: list[Mapping[str, type]] = []


class UnknownObjectError(SavingError):
    """A config names a class or function that cannot be found."""


def register_layer_classes(classes: Mapping[str, type]) -> None:
    """Make the layer (or model) classes of ``classes`` findable by class name in saved configs."""
    if all(classes is not table for table in _LAYER_CLASS_TABLES):
        _LAYER_CLASS_TABLES.append(classes)


def layer_classes() -> dict[str, type]:
    """Every layer and model class unidl ships, by class name."""
    return {name: cls for table in _LAYER_CLASS_TABLES for name, cls in table.items()}


# custom_objects of the load in progress, so that code rebuilding nested layers
# (a wrapper's inner layer) finds them without passing them along.
_SCOPE: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("unidl_custom_objects", default={})


@contextlib.contextmanager
def custom_object_scope(custom_objects: Mapping[str, Any] | None) -> Iterator[None]:
    """Make ``{"Name": object}`` findable by :func:`deserialize_layer` and friends inside the block."""
    token = _SCOPE.set({**_SCOPE.get(), **(custom_objects or {})})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def resolve_name(kind: str, class_name: str, builtins: Mapping[str, Any],
                 custom_objects: Mapping[str, Any] | None, what: str) -> Any:
    """Find ``class_name``: custom objects first, then the built-ins, then plugins (``kind`` "" for none)."""
    if not isinstance(class_name, str):
        raise SavingError(f"a {what} must be named by a string, got {class_name!r}")
    custom = {**_SCOPE.get(), **(custom_objects or {})}
    if class_name in custom:
        return custom[class_name]
    if class_name in builtins:
        return builtins[class_name]
    plugin_items = {}
    if kind:
        for name, (obj, _plugin) in REGISTRY.named(kind).items():
            plugin_items[name] = obj
            plugin_items.setdefault(getattr(obj, "__name__", name), obj)
        if class_name in plugin_items:
            return plugin_items[class_name]
    known = sorted({*builtins, *plugin_items, *custom})
    hook = f", or register it from a plugin's unidl_register_{kind} hook" if kind else ""
    raise UnknownObjectError(
        f"unknown {what} {class_name!r}{closest(class_name, known)}: it is not built into unidl"
        f"{' nor registered by a plugin' if kind else ''}. Pass it when loading, "
        f"load_model(path, custom_objects={{{class_name!r}: {class_name}}}){hook}. Known: {', '.join(known)}")


def _classes_by_name(builtins: Mapping[str, Any]) -> dict[str, Any]:
    # The optimizer and loss tables are keyed by user-facing names ("adam"); saved files use class names.
    return {getattr(obj, "__name__", key): obj for key, obj in builtins.items() if isinstance(obj, type)}


def _class_spec(spec: Any, what: str) -> tuple[str, dict]:
    """(class name, config) of ``{"class_name": str, "config": dict}``, checked."""
    if not isinstance(spec, Mapping) or "class_name" not in spec:
        raise SavingError(f"a saved {what} must be {{'class_name': ..., 'config': {{...}}}}, got {spec!r:.200}")
    config = spec.get("config") or {}
    if not isinstance(config, Mapping):
        raise SavingError(f"the config of saved {what} {spec['class_name']!r} must be an object, got {config!r:.200}")
    return spec["class_name"], dict(config)


def from_config(cls: Any, config: dict[str, Any], what: str, custom_objects: Mapping[str, Any] | None = None):
    """``cls.from_config(config)`` (with ``custom_objects`` when it takes them), else ``cls(**config)``."""
    factory = getattr(cls, "from_config", None)
    try:
        if factory is None:
            return cls(**config)
        if "custom_objects" in inspect.signature(factory).parameters:
            return factory(config, custom_objects=custom_objects)
        return factory(config)
    except SavingError:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        hint = (". A class whose __init__ takes arguments must return them from get_config() (or define a "
                "from_config classmethod)") if isinstance(exc, TypeError) else ""
        raise SavingError(f"could not rebuild {what} {getattr(cls, '__name__', cls)!r} from its saved config: "
                          f"{type(exc).__name__}: {exc}{hint} (config: {config!r:.200})") from exc


# --------------------------------------------------------------------- layers

def serialize_layer(layer) -> dict[str, Any]:
    """``{"class_name", "config"}``: what :func:`deserialize_layer` turns back into the layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(spec: Any, custom_objects: Mapping[str, Any] | None = None):
    """A layer (or nested model) from ``{"class_name": ..., "config": ...}``.

    The class comes from ``custom_objects`` (and those of the enclosing
    :func:`custom_object_scope`), unidl's layer and model classes, then plugin
    layers; it rebuilds itself with its ``from_config``.
    """
    class_name, config = _class_spec(spec, "layer")
    cls = resolve_name("layers", class_name, layer_classes(), custom_objects, "layer class")
    with custom_object_scope(custom_objects):
        return from_config(cls, config, "layer", custom_objects)


# ------------------------------------------------------ compile configuration

def _function_ref(fn, what: str) -> dict[str, str]:
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise SavingError(f"{what} {fn!r} has no name to save it by; use a named function (and pass it as "
                          "custom_objects={name: function} when loading)")
    return {"function": name}


def map_leaves(fn, value):
    """Apply ``fn`` to the leaves of a per-output structure (a list or dict of leaves, or one leaf).

    A saved leaf may itself be a dict (``{"class_name": ...}`` or ``{"function": ...}``);
    any other dict maps output names to leaves.
    """
    if isinstance(value, dict) and not ("class_name" in value or "function" in value):
        return {k: map_leaves(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_leaves(fn, v) for v in value]
    return None if value is None else fn(value)


def _serialize_learning_rate(lr):
    if not callable(lr):
        return float(lr)
    if hasattr(lr, "get_config"):
        return {"class_name": type(lr).__name__, "config": lr.get_config()}
    return _function_ref(lr, "learning-rate schedule")


def _deserialize_learning_rate(value, custom_objects):
    if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
        raise SavingError(f"a saved learning rate must be a number or a schedule, got {value!r:.200}")
    if not isinstance(value, dict):
        return value
    if "function" in value:
        return resolve_name("", value["function"], {}, custom_objects, "learning-rate schedule function")
    class_name, config = _class_spec(value, "learning-rate schedule")
    cls = resolve_name("", class_name, schedules.BUILTINS, custom_objects, "learning-rate schedule")
    return from_config(cls, config, "learning-rate schedule")


def serialize_optimizer(optimizer) -> dict[str, Any]:
    config = dict(optimizer.get_config())
    config["learning_rate"] = _serialize_learning_rate(optimizer.learning_rate)
    return {"class_name": type(optimizer).__name__, "config": config}


def deserialize_optimizer(spec: Any, custom_objects=None):
    class_name, config = _class_spec(spec, "optimizer")
    cls = resolve_name("optimizers", class_name, _classes_by_name(optimizers.BUILTINS), custom_objects,
                       "optimizer class")
    config["learning_rate"] = _deserialize_learning_rate(config.get("learning_rate", 0.001), custom_objects)
    return from_config(cls, config, "optimizer")


def serialize_loss(loss) -> str | dict[str, Any]:
    """A loss as compile() was given it: a name stays a name; a Loss by class and config; a function by name."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, losses._FunctionLoss):
        loss = loss.fn
    if not isinstance(loss, losses.Loss):
        return _function_ref(loss, "loss function")
    config = dict(loss.get_config())
    if type(loss).get_config is losses.Loss.get_config:
        # The base config has only name and reduction: add the subclass's own
        # constructor arguments (delta, from_logits, ...) that it keeps as attributes.
        for param in inspect.signature(type(loss).__init__).parameters.values():
            if param.name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) \
                    and hasattr(loss, param.name):
                config.setdefault(param.name, getattr(loss, param.name))
    return {"class_name": type(loss).__name__, "config": config}


def deserialize_loss(spec, custom_objects=None):
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and "function" in spec:
        return resolve_name("losses", spec["function"], losses.FUNCTIONS, custom_objects, "loss function")
    class_name, config = _class_spec(spec, "loss")
    cls = resolve_name("losses", class_name, _classes_by_name(losses.BUILTINS), custom_objects, "loss class")
    return from_config(cls, config, "loss")


def serialize_metric(metric) -> str | dict[str, Any]:
    if isinstance(metric, str):
        return metric
    if type(metric) is metrics.MeanMetricWrapper:  # a plain function's mean: saved by the function's name
        for name, fn in metrics.BUILTINS.items():
            if fn is metric.fn:
                return {"function": name, "name": metric.name}
        return {**_function_ref(metric.fn, "metric function"), "name": metric.name}
    if isinstance(metric, metrics.Metric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    if isinstance(metric, type) and issubclass(metric, metrics.Metric):
        return {"class_name": metric.__name__, "config": {}}
    return _function_ref(metric, "metric function")


def deserialize_metric(spec, custom_objects=None):
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and "class_name" in spec:
        class_name, config = _class_spec(spec, "metric")
        cls = resolve_name("metrics", class_name, {c.__name__: c for c in metrics.CLASSES}, custom_objects,
                           "metric class")
        return from_config(cls, config, "metric")
    if not isinstance(spec, Mapping) or "function" not in spec:
        raise SavingError(f"a saved metric must be a name, {{'class_name': ...}} or {{'function': ...}}, "
                          f"got {spec!r:.200}")
    fn = resolve_name("metrics", spec["function"], metrics.BUILTINS, custom_objects, "metric function")
    return metrics.Metric(fn, str(spec["name"])) if "name" in spec else fn

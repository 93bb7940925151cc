"""Turning user identifiers ("adam", "glorot_uniform", an object) into objects.

Every kind of building block (activations, losses, ...) keeps a dict of its
built-ins; plugins add more through the registry hooks. An unknown name is a
``ValueError`` that lists what exists and suggests the closest spelling.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Mapping


class UnknownNameError(ValueError):
    """An identifier names nothing of its kind."""


def closest(name: str, candidates) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def lookup(kind: str, name: str, builtins: Mapping[str, Any]) -> Any:
    """Find ``name`` among the built-ins of ``kind``, then among plugin-registered ones."""
    key = name.lower()
    if key in builtins:
        return builtins[key]
    from .registry import REGISTRY  # plugins are loaded on the first miss only
    plugin_items = REGISTRY.named(kind)
    if name in plugin_items:
        return plugin_items[name][0]
    known = sorted({*builtins, *plugin_items})
    raise UnknownNameError(
        f"unknown {singular(kind)} {name!r}{closest(key, known)}; known {kind}: {', '.join(known)}")


def singular(kind: str) -> str:
    return kind[:-2] if kind.endswith("sses") else kind[:-1]


def check_kwargs(where: str, given: Mapping[str, Any], allowed) -> None:
    """Reject misspelled keyword arguments, suggesting the closest allowed one."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise TypeError(f"{where} got an unexpected keyword argument {key!r}{closest(key, allowed)}")


def resolve(kind: str, identifier: Any, builtins: Mapping[str, Any],
            instance_of: type | tuple[type, ...] | None = None, **kwargs) -> Any:
    """Return an instance for ``identifier``: an instance passes through, a name is looked up and called."""
    if instance_of is not None and isinstance(identifier, instance_of):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:  # as saved in a model config
        name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier["class_name"]).lower()
        factory = lookup(kind, name if name in builtins else identifier["class_name"], builtins)
        return factory(**identifier.get("config", {}), **kwargs)
    if isinstance(identifier, str):
        factory: Callable = lookup(kind, identifier, builtins)
        return factory(**kwargs) if kwargs or isinstance(factory, type) else factory()
    if isinstance(identifier, type) and instance_of is not None and issubclass(identifier, instance_of):
        return identifier(**kwargs)
    raise TypeError(f"expected a {singular(kind)} name or object, got {identifier!r} ({type(identifier).__name__})")

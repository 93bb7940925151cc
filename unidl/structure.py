"""Nested structures of tensors: one tensor, or lists/tuples/dicts of them.

Model inputs and outputs, labels and batches may all be structured. These three
functions are the one place that decides the order of the leaves: lists and
tuples in order, dicts by sorted key (as ``tf.nest`` and ``jax.tree`` do), so a
structure flattened here and packed back comes out the same.
"""
from __future__ import annotations

from typing import Any, Callable


def is_leaf(x: Any) -> bool:
    """True for anything that is not a list, tuple or dict."""
    return not isinstance(x, (list, tuple, dict))


def flatten(structure: Any) -> list:
    """The leaves of ``structure`` in order (None counts as no leaf)."""
    if structure is None:
        return []
    if isinstance(structure, dict):
        return [x for key in sorted(structure) for x in flatten(structure[key])]
    if isinstance(structure, (list, tuple)):
        return [x for item in structure for x in flatten(item)]
    return [structure]


def pack_like(structure: Any, flat: list) -> Any:
    """Rebuild ``structure`` with the leaves of ``flat`` (the inverse of :func:`flatten`)."""
    leaves = iter(flat)

    def build(s):
        if s is None:  # no leaf (as flatten counts it)
            return None
        if isinstance(s, dict):
            return {key: build(s[key]) for key in sorted(s)}
        if isinstance(s, tuple):
            return tuple(build(item) for item in s)
        if isinstance(s, list):
            return [build(item) for item in s]
        return next(leaves)
    return build(structure)


def map_structure(fn: Callable[[Any], Any], structure: Any) -> Any:
    """``structure`` with ``fn`` applied to every leaf."""
    return pack_like(structure, [fn(x) for x in flatten(structure)])


def match_keys(given: dict, expected: list[str], what: str, error: type[Exception] = ValueError) -> list[str]:
    """``expected``, after checking that ``given`` has exactly those keys.

    Data given as a dict is matched to a model's inputs or outputs by name, never by
    the dict's order (as Keras does); the error names every odd key and the names expected.
    """
    unknown = [k for k in given if k not in expected]
    missing = [k for k in expected if k not in given]
    if unknown or missing:
        parts = ([f"unknown {what} name(s) {unknown}"] if unknown else []) + \
                ([f"missing {what} name(s) {missing}"] if missing else [])
        raise error(f"{' and '.join(parts)}: the model's {what}s are named {expected}")
    return expected

"""Names: Keras-style default names, unique numbering, and did-you-mean messages.

A leaf module (it imports nothing from unidl). Turning a name such as "adam"
into an object is the registry's job (``unidl.registry.lookup``), because
plugins can add names.
"""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, Mapping


class UnknownNameError(ValueError):
    """An identifier names nothing of its kind."""


def closest(name: str, candidates) -> str:
    """' (did you mean 'x'?)' for the nearest candidate, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def singular(kind: str) -> str:
    return kind[:-2] if kind.endswith("sses") else kind[:-1]


def check_kwargs(where: str, given: Mapping[str, Any], allowed) -> None:
    """Reject misspelled keyword arguments, suggesting the closest allowed one."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise TypeError(f"{where} got an unexpected keyword argument {key!r}{closest(key, allowed)}")


def snake_case(name: str) -> str:
    """Keras's default names: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, SimpleRNN -> simple_rnn."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class UniqueNames:
    """Hands out names not yet taken: ``base``, then ``base_1``, ``base_2``... (Keras's numbering).

    Remembers the next free number of each base, so naming n same-kind layers
    costs O(n) in all, not O(n^2) (a model of 8,000 Dense layers).
    """

    def __init__(self, taken: Iterable[str] = ()):
        self.taken: set[str] = set(taken)
        self._next: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        """A free name derived from ``base``, now taken."""
        name = base
        if name in self.taken:
            i = self._next.get(base, 1)
            while f"{base}_{i}" in self.taken:
                i += 1
            self._next[base] = i + 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def add(self, name: str) -> None:
        """Mark ``name`` as taken."""
        self.taken.add(name)

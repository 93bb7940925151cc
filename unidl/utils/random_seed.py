"""``set_random_seed``: one call seeds Python, NumPy, unidl's defaults, and torch/TensorFlow if imported.

This module is a leaf (it imports nothing from unidl), so any unidl module may
import :func:`default_seed` without an import cycle.

How unidl uses the seed: a model or layer built without an explicit ``seed``
asks :func:`default_seed` for one. Before ``set_random_seed`` that is ``None``
(fresh OS entropy, as NumPy does); after it, each call returns the next number
of a sequence fixed by the seed, so the first unseeded model of a script gets
the same weights in every run and the second one gets other (but again
reproducible) weights, as in Keras, where each unseeded layer draws from one
global seed generator.
"""
from __future__ import annotations

import random
import sys
import threading

import numpy as np

__all__ = ["set_random_seed", "get_random_seed", "default_seed", "times_seeded"]

_lock = threading.Lock()
_seed: int | None = None
_sequence: np.random.SeedSequence | None = None
_times_seeded = 0


def set_random_seed(seed: int) -> None:
    """Seed every source of randomness a training script uses, in one call.

    Seeds Python's ``random``, NumPy's global generator (``np.random.seed``),
    unidl's default seed (models, layers and ``unidl.random`` calls without an
    explicit seed: see :func:`default_seed`), and, only when they are already
    imported (this function never imports a framework), ``torch.manual_seed``
    and ``tf.random.set_seed``. Calling it again with the same seed starts
    every sequence over.

    Args:
        seed: a non-negative integer below 2**32 (NumPy's global generator
            takes no larger one).

    Like ``keras.utils.set_random_seed``. Keras also seeds TensorFlow when it is
    installed but not yet imported (by importing it); unidl does not import it.
    """
    global _seed, _sequence
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed!r} "
                         f"(of type {type(seed)})")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be between 0 and 2**32 - 1 (NumPy's global generator takes no other), "
                         f"got seed={seed}")
    global _times_seeded
    with _lock:
        _seed = seed
        _sequence = np.random.SeedSequence(seed)
        _times_seeded += 1
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(getattr(tf, "random", None), "set_seed"):
        tf.random.set_seed(seed)


def times_seeded() -> int:
    """How many times :func:`set_random_seed` was called: a stream seeded from it starts over when this changes."""
    return _times_seeded


def get_random_seed() -> int | None:
    """The seed given to :func:`set_random_seed`, or None if it was never called."""
    return _seed


def default_seed() -> int | None:
    """The seed for the next model, layer or random call created without one.

    None until :func:`set_random_seed` is called (the caller then draws fresh
    entropy). After it, each call returns the next integer of a sequence
    determined by the seed alone: the n-th call of a run always returns the
    same number. Thread-safe.
    """
    with _lock:
        if _sequence is None:
            return None
        child = _sequence.spawn(1)[0]
    return int(child.generate_state(1, np.uint64)[0])

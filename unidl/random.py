"""``unidl.random``: random tensors with Keras's names, the same numbers on every backend.

::

    seed = unidl.random.SeedGenerator(1337)          # in a layer's __init__
    eps = unidl.random.normal(ops.shape(z_mean), seed=seed)   # in its call: new numbers every call

Numbers are drawn on the host by NumPy's PCG64, then converted to the bound
backend's tensors: a model using them trains to the same numbers on NumPy,
PyTorch and TensorFlow, as Dropout does. ``seed`` is, as in Keras:

* a ``SeedGenerator``: each draw advances it (new numbers every call, reproducible from its seed);
* an int: a fixed draw (the same numbers for the same int, every call);
* None: the module's generator, seeded by ``unidl.utils.set_random_seed`` when it was called.

A host draw cannot happen inside a step a backend traces into a graph (it would be frozen into
every later call, which TensorFlow did silently): there a draw raises
``unidl.backend.FrozenRandomnessError``, and fit, evaluate, predict and ``unidl.function`` run that
step eagerly instead (with a one-time warning where the user asked for compilation).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .backend import FrozenRandomnessError, is_tracing
from .utils.random_seed import default_seed, times_seeded

__all__ = ["SeedGenerator", "normal", "uniform", "randint", "truncated_normal", "dropout", "shuffle",
           "categorical", "binomial", "gamma", "beta"]


class SeedGenerator:
    """A stream of random numbers: each draw with ``seed=generator`` gets the next ones.

    Args:
        seed: an int (reproducible), or None (from ``unidl.utils.set_random_seed``'s seed when set,
            else fresh entropy).
    """

    def __init__(self, seed: int | None = None, **kwargs: Any):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"SeedGenerator: seed must be a non-negative integer or None, got seed={seed!r}")
        self.seed = seed
        self.generator = np.random.default_rng(seed if seed is not None else default_seed())

    def next(self) -> np.random.Generator:
        return self.generator

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def __deepcopy__(self, memo):
        twin = SeedGenerator(self.seed)
        twin.generator.bit_generator.state = self.generator.bit_generator.state  # a clone continues the stream
        return twin


_global: SeedGenerator | None = None  # draws with seed=None
_global_from = 0                      # times_seeded() when it started


def _generator(seed, what: str) -> np.random.Generator:
    if is_tracing():
        raise FrozenRandomnessError(
            f"unidl.random.{what} was called while a step was being traced into a graph, where its numbers "
            "would be frozen; the step runs eagerly instead")
    global _global, _global_from
    if isinstance(seed, SeedGenerator):
        return seed.generator
    if seed is None:
        if _global is None or _global_from != times_seeded():  # set_random_seed starts it over
            _global, _global_from = SeedGenerator(), times_seeded()
        return _global.generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"unidl.random.{what}: seed must be an int, a SeedGenerator or None, got {seed!r}")
    return np.random.default_rng(int(seed))


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"unidl.random: shape must be a tuple of known sizes, got {shape!r} (inside a traced step "
                        "the batch size is unknown: such steps run eagerly)") from None


def _float_dtype(dtype: str | None) -> str:
    backend = ops.current_backend_or_none()
    return dtype or (backend.dtype if backend is not None else "float32")


def _tensor(values: np.ndarray, dtype: str):
    return ops.convert(values.astype(dtype), dtype=dtype)


def normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, dtype: str | None = None, seed=None):
    """Normal draws of ``shape``."""
    dtype = _float_dtype(dtype)
    return _tensor(_generator(seed, "normal").normal(mean, stddev, _shape(shape)), dtype)


def uniform(shape: Sequence[int], minval: float = 0.0, maxval: float = 1.0, dtype: str | None = None, seed=None):
    """Uniform draws of ``shape`` in [minval, maxval)."""
    dtype = _float_dtype(dtype)
    return _tensor(_generator(seed, "uniform").uniform(minval, maxval, _shape(shape)), dtype)


def randint(shape: Sequence[int], minval: int, maxval: int, dtype: str = "int32", seed=None):
    """Integers of ``shape`` in [minval, maxval)."""
    return _tensor(_generator(seed, "randint").integers(minval, maxval, _shape(shape)), dtype)


def truncated_normal(shape: Sequence[int], mean: float = 0.0, stddev: float = 1.0, dtype: str | None = None,
                     seed=None):
    """Normal draws more than two standard deviations away redrawn (as Keras)."""
    dtype = _float_dtype(dtype)
    rng, shape = _generator(seed, "truncated_normal"), _shape(shape)
    values = rng.normal(0.0, 1.0, shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.normal(0.0, 1.0, int(outside.sum()))
        outside = np.abs(values) > 2.0
    return _tensor(mean + stddev * values, dtype)


def dropout(inputs, rate: float, noise_shape: Sequence[int] | None = None, seed=None):
    """Inverted dropout of ``inputs`` (kept values scaled by 1 / (1 - rate)), a new mask every call."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"unidl.random.dropout: rate must be in [0, 1), got rate={rate!r}")
    shape = ops.shape(inputs) if noise_shape is None else tuple(
        d if d is not None else s for d, s in zip(noise_shape, ops.shape(inputs)))
    keep = _generator(seed, "dropout").random(_shape(shape)) >= rate
    return ops.multiply(inputs, ops.convert(keep / (1.0 - rate)))


def shuffle(x, axis: int = 0, seed=None):
    """``x`` with its slices along ``axis`` in a random order."""
    size = ops.shape(x)[axis]
    order = _generator(seed, "shuffle").permutation(size)
    return ops.take(x, ops.convert(order), axis=axis)


def categorical(logits, num_samples: int, dtype: str = "int32", seed=None):
    """Class ids drawn from ``softmax(logits)`` per row: (batch, num_samples)."""
    probs = ops.to_numpy(ops.softmax(logits, axis=-1)).astype(np.float64)
    rng = _generator(seed, "categorical")
    cumulative = np.cumsum(probs / probs.sum(-1, keepdims=True), axis=-1)
    draws = rng.random((probs.shape[0], num_samples))
    ids = np.minimum((draws[..., None] > cumulative[:, None, :]).sum(-1), probs.shape[-1] - 1)
    return _tensor(ids, dtype)


def binomial(shape: Sequence[int], counts, probabilities, dtype: str | None = None, seed=None):
    """Binomial draws of ``shape``."""
    dtype = _float_dtype(dtype)
    return _tensor(_generator(seed, "binomial").binomial(counts, probabilities, _shape(shape)), dtype)


def gamma(shape: Sequence[int], alpha: float, dtype: str | None = None, seed=None):
    """Gamma(alpha, 1) draws of ``shape``."""
    dtype = _float_dtype(dtype)
    return _tensor(_generator(seed, "gamma").gamma(alpha, 1.0, _shape(shape)), dtype)


def beta(shape: Sequence[int], alpha: float, beta: float, dtype: str | None = None, seed=None):
    """Beta(alpha, beta) draws of ``shape``."""
    dtype = _float_dtype(dtype)
    return _tensor(_generator(seed, "beta").beta(alpha, beta, _shape(shape)), dtype)


"""Datasets of NumPy arrays: ``Dataset``, ``timeseries_dataset_from_array``, ``split_dataset``.

Where Keras returns a ``tf.data.Dataset``, unidl returns a :class:`Dataset`:
a sized, re-iterable object yielding NumPy arrays, which ``model.fit`` /
``evaluate`` / ``predict`` take as they take any iterable of batches. It knows
the ``tf.data`` calls typical scripts make on such datasets (``batch``,
``unbatch``, ``shuffle``, ``prefetch``, ``cache``, ``as_numpy_iterator``,
``cardinality``), so those lines keep working after the import swap.

Samples are gathered lazily: a timeseries dataset stores the series once and
cuts each batch of windows out of it when the batch is drawn (materializing
every window would copy the series ``sequence_length`` times).

Randomness: a dataset given a ``seed`` shuffles the same way in every run, and
draws a new order at each pass (each epoch of ``fit``), as ``tf.data`` does by
default; without a seed it uses ``unidl.utils.set_random_seed``'s sequence
when that was called, else fresh entropy.
"""
from __future__ import annotations

import random as _random
from typing import Any, Iterator

import numpy as np

from ..structure import flatten, pack_like
from .random_seed import default_seed

__all__ = ["Dataset", "PyDataset", "Sequence", "timeseries_dataset_from_array", "split_dataset"]


# ------------------------------------------------------------------ sources

class _Source:
    """Samples 0..n-1; ``gather(index)`` returns one sample (an int) or a batch (an int array)."""

    n: int

    def gather(self, index):  # pragma: no cover - interface
        raise NotImplementedError


class _ArraySource(_Source):
    """Samples are the rows of arrays of one length, kept in a structure (array, tuple, list, dict)."""

    def __init__(self, structure: Any):
        self.structure = structure
        self.leaves = flatten(structure)
        self.n = len(self.leaves[0])

    def gather(self, index):
        return pack_like(self.structure, [leaf[index] for leaf in self.leaves])


class _SubsetSource(_Source):
    """The samples of ``source`` at ``indices``, in that order."""

    def __init__(self, source: _Source, indices: np.ndarray):
        self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
        self.n = len(self.indices)

    def gather(self, index):
        return self.source.gather(self.indices[index])


class _WindowSource(_Source):
    """Windows of a timeseries: sample i is ``data[start + positions[i] + arange(length) * rate]``
    and, with targets, ``targets[start + positions[i]]``."""

    def __init__(self, data: np.ndarray, targets: np.ndarray | None, positions: np.ndarray, start: int,
                 sequence_length: int, sampling_rate: int):
        self.data, self.targets, self.positions, self.start = data, targets, positions, start
        self.offsets = np.arange(sequence_length, dtype=np.int64) * sampling_rate
        self.n = len(positions)

    def gather(self, index):
        starts = self.start + self.positions[index]
        windows = self.data[np.asarray(starts)[..., None] + self.offsets]
        if self.targets is None:
            return windows
        return windows, self.targets[starts]


# ------------------------------------------------------------------ Dataset

def _generator(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(default_seed() if seed is None else seed)


def _check_positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, "
                         f"got {name}={value!r}")


class Dataset:
    """A sized, re-iterable dataset of NumPy arrays (samples, or batches after :meth:`batch`).

    ``Dataset.from_tensor_slices((x, y)).shuffle(1000, seed=0).batch(32)`` reads
    like the ``tf.data`` line it replaces; ``model.fit(dataset, epochs=5)`` takes
    it, and each pass over it (each epoch) is a new shuffle. ``len(dataset)``
    is the number of elements one pass yields.

    Elements keep the structure of the data: ``(x, y)`` tuples for ``(x, y)``,
    dicts for dicts, a bare array for one array.
    """

    def __init__(self, source: _Source, batch_size: int | None = None, drop_remainder: bool = False,
                 shuffle_samples: bool = False, shuffle_batches: bool = False, seed: int | None = None,
                 rng: np.random.Generator | None = None, batch_order: np.ndarray | None = None):
        self._source = source
        self._batch_size = batch_size
        self._drop_remainder = bool(drop_remainder)
        self._shuffle_samples, self._shuffle_batches = shuffle_samples, shuffle_batches
        self._seed = seed
        self._rng = rng if rng is not None else (_generator(seed) if shuffle_samples or shuffle_batches else None)
        self._batch_order = batch_order  # one fixed order of the batches (shuffle without reshuffling)

    # -------------------------------------------------------- construction
    @classmethod
    def from_tensor_slices(cls, data) -> "Dataset":
        """One element per row of ``data``: an array, or a tuple/list/dict of arrays of one length."""
        return cls(_ArraySource(_checked_structure(data, "Dataset.from_tensor_slices")))

    def _replace(self, **changes) -> "Dataset":
        state = {"batch_size": self._batch_size, "drop_remainder": self._drop_remainder,
                 "shuffle_samples": self._shuffle_samples, "shuffle_batches": self._shuffle_batches,
                 "seed": self._seed, "rng": self._rng, "batch_order": self._batch_order}
        state.update(changes)
        return Dataset(self._source, **state)

    # ----------------------------------------------------------- tf.data-like
    def batch(self, batch_size: int, drop_remainder: bool = False) -> "Dataset":
        """Elements become batches of ``batch_size`` consecutive samples (the last may be smaller
        unless ``drop_remainder``)."""
        _check_positive("batch_size", batch_size)
        if self._batch_size is not None:
            raise ValueError(f"this dataset is already batched (batch_size={self._batch_size}); call "
                             ".unbatch() first to batch it differently (unidl has no batches of batches)")
        return self._replace(batch_size=int(batch_size), drop_remainder=drop_remainder)

    def unbatch(self) -> "Dataset":
        """Elements become single samples again."""
        return self._replace(batch_size=None, drop_remainder=False, shuffle_batches=False, batch_order=None)

    def shuffle(self, buffer_size: int | None = None, seed: int | None = None,
                reshuffle_each_iteration: bool = True) -> "Dataset":
        """Shuffle the elements, with a new order at each pass unless ``reshuffle_each_iteration=False``.

        Before :meth:`batch` this shuffles samples, after it the order of the
        batches, as ``tf.data`` does. The shuffle is over the whole dataset
        (``buffer_size`` is accepted for ``tf.data`` compatibility: a full
        buffer, the best case of ``tf.data``'s shuffle).
        """
        rng = _generator(seed)
        if not reshuffle_each_iteration:
            order = rng.permutation(len(self) if self._batch_size is not None else self._source.n)
            if self._batch_size is None:
                return Dataset(_SubsetSource(self._source, order))
            return self._replace(shuffle_batches=False, batch_order=order)
        if self._batch_size is None:
            return self._replace(shuffle_samples=True, seed=seed, rng=rng)
        return self._replace(shuffle_batches=True, seed=seed, rng=rng)

    def prefetch(self, buffer_size: Any = None) -> "Dataset":
        """Nothing to do for in-memory NumPy data: the same dataset."""
        return self

    def cache(self, filename: str = "") -> "Dataset":
        """Nothing to do for in-memory NumPy data: the same dataset."""
        return self

    def as_numpy_iterator(self) -> Iterator:
        return iter(self)

    def cardinality(self) -> int:
        """The number of elements (``tf.data`` returns it as a tensor; here a Python int)."""
        return len(self)

    # ------------------------------------------------------------ iteration
    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    def __len__(self) -> int:
        n, size = self._source.n, self._batch_size
        if size is None:
            return n
        return n // size if self._drop_remainder else -(-n // size)

    def _batch_slices(self) -> list[slice]:
        n, size = self._source.n, self._batch_size
        return [slice(i * size, min((i + 1) * size, n)) for i in range(len(self))]

    def __iter__(self) -> Iterator:
        source = self._source
        order = self._rng.permutation(source.n) if self._shuffle_samples else None
        if self._batch_size is None:
            for i in range(source.n):
                yield source.gather(int(order[i]) if order is not None else i)
            return
        slices = self._batch_slices()
        if self._shuffle_batches:
            slices = [slices[i] for i in self._rng.permutation(len(slices))]
        elif self._batch_order is not None:
            slices = [slices[i] for i in self._batch_order]
        for s in slices:
            yield source.gather(order[s] if order is not None else np.arange(s.start, s.stop))

    def __repr__(self) -> str:
        kind = f"batches of {self._batch_size}" if self._batch_size else "samples"
        return f"<unidl.utils.Dataset: {len(self)} {kind}>"


class PyDataset:
    """Base class for batch-producing datasets written in Python, as ``keras.utils.PyDataset``.

    Subclass it, implement ``__len__`` (the number of batches) and
    ``__getitem__(index)`` (batch ``index`` as ``(x, y)`` or ``(x, y, sample_weight)``),
    optionally ``on_epoch_end()`` (e.g. to reshuffle); ``model.fit(dataset)``
    draws ``dataset[0] ... dataset[len - 1]`` each epoch, then calls ``on_epoch_end()``.

    ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are accepted for
    Keras compatibility; batches are read in the training thread, in order.
    """

    def __init__(self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10):
        self.workers, self.use_multiprocessing, self.max_queue_size = workers, use_multiprocessing, max_queue_size

    def __getitem__(self, index: int):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index) returning batch index")

    def __len__(self) -> int:
        count = self.num_batches
        if count is None:
            raise NotImplementedError(f"{type(self).__name__} must implement __len__ (its number of batches)")
        return int(count)

    @property
    def num_batches(self) -> int | None:
        """The number of batches (Keras 3's alternative to ``__len__``; None when unknown)."""
        if type(self).__len__ is not PyDataset.__len__:
            return len(self)
        return None

    def on_epoch_begin(self) -> None:
        """Called before each pass over the batches."""

    def on_epoch_end(self) -> None:
        """Called after each complete pass over the batches."""

    def __iter__(self) -> Iterator:
        self.on_epoch_begin()
        for index in range(len(self)):
            yield self[index]
        self.on_epoch_end()


Sequence = PyDataset  # keras.utils.Sequence, the older name


# ------------------------------------------------------------------ arrays in

def _as_array(value: Any, where: str) -> np.ndarray:
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"{where} must have a sample axis, got a scalar")
    return array


def _checked_structure(data: Any, where: str) -> Any:
    """``data`` (an array, or a tuple/list/dict of arrays) as NumPy arrays of one length."""
    if isinstance(data, (tuple, list, dict)):
        leaves = flatten(data)
        if not leaves:
            raise ValueError(f"{where}: got an empty {type(data).__name__}; pass arrays")
        arrays = [_as_array(a, f"{where}: each array") for a in leaves]
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            raise ValueError(f"{where}: the arrays must have the same length (number of samples), got "
                             f"{[len(a) for a in arrays]}")
        structure = pack_like(data, arrays)
        return tuple(structure) if isinstance(structure, list) else structure  # like tf.data: a list is a tuple
    return _as_array(data, where)


# ------------------------------------------------------------------ timeseries

def timeseries_dataset_from_array(data, targets, sequence_length: int, sequence_stride: int = 1,
                                  sampling_rate: int = 1, batch_size: int | None = 128, shuffle: bool = False,
                                  seed: int | None = None, start_index: int | None = None,
                                  end_index: int | None = None) -> Dataset:
    """Batches of sliding windows over a timeseries, with Keras 3's arguments and window layout.

    Window ``i`` holds ``data[start + p, start + p + r, ..., start + p + (sequence_length - 1) * r]``
    with ``p = i * sequence_stride``, ``r = sampling_rate`` and ``start = start_index or 0``;
    its target is ``targets[start + p]`` (the target of the window that *starts* at that step).

    Args:
        data: the series, time on axis 0 (array-like).
        targets: one target per time step (``targets[i]`` for the window starting at ``i``),
            or None to yield the windows alone.
        sequence_length: time steps per window.
        sequence_stride: steps between the starts of two windows.
        sampling_rate: steps between two time steps inside a window.
        batch_size: windows per batch (the last batch may be smaller); None yields single windows.
        shuffle: draw the windows in a random order (a new one at each pass) instead of in time order.
        seed: seed of that order.
        start_index, end_index: use only ``data[start_index:end_index]`` (to hold out a split).

    Returns:
        a :class:`Dataset` yielding ``(windows, targets)`` (or ``windows``) NumPy batches of shape
        ``(batch, sequence_length, *data.shape[1:])`` and ``(batch, *targets.shape[1:])``.
    """
    data = _as_array(data, "timeseries_dataset_from_array: data")
    n = len(data)
    _check_positive("sequence_length", sequence_length)
    _check_positive("batch_size", batch_size, allow_none=True)
    for name, value in (("start_index", start_index), ("end_index", end_index)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ValueError(f"{name} must be an integer or None, got {name}={value!r}")
    # Keras's checks, in Keras's words.
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: start_index={start_index}")
        if start_index >= n:
            raise ValueError(f"`start_index` must be lower than the length of the data. Received: "
                             f"start_index={start_index}, for data of length {n}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, "
                             f"and end_index={end_index}")
        if end_index >= n:
            raise ValueError(f"`end_index` must be lower than the length of the data. Received: "
                             f"end_index={end_index}, for data of length {n}")
    if end_index is not None and end_index <= 0:
        raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        _check_positive(name, value)
        if value >= n:
            raise ValueError(f"`{name}` must be lower than the length of the data. Received: {name}={value}, "
                             f"for data of length {n}")
    target_array = None
    if targets is not None:
        target_array = _as_array(targets, "timeseries_dataset_from_array: targets")
    start = int(start_index or 0)
    stop = n if end_index is None else int(end_index)
    count = stop - start - (sequence_length - 1) * sampling_rate
    if target_array is not None:
        count = min(count, len(target_array))
    if count <= 0:
        raise ValueError(f"timeseries_dataset_from_array: no window fits: {stop - start} time steps (data[{start}:"
                         f"{stop}]) hold no window of sequence_length={sequence_length} at sampling_rate="
                         f"{sampling_rate} (one spans {(sequence_length - 1) * sampling_rate + 1} steps)"
                         + ("" if target_array is None else f", with {len(target_array)} targets"))
    positions = np.arange(0, count, sequence_stride, dtype=np.int64)
    source = _WindowSource(data, target_array, positions, start, int(sequence_length), int(sampling_rate))
    if shuffle and seed is None:
        seed = default_seed()
        if seed is None:
            seed = int(np.random.randint(1_000_000))  # as Keras: reproducible after np.random.seed
    dataset = Dataset(source, shuffle_samples=bool(shuffle), seed=seed)
    return dataset if batch_size is None else dataset.batch(int(batch_size))


# ------------------------------------------------------------------ split

def _rescale_sizes(left_size, right_size, total: int) -> tuple[int, int]:
    """Keras's rules: a float is a fraction in (0, 1), an int a count in (0, total); None is the rest."""
    def kind(value, name):
        if value is None:
            return None
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"Invalid `{name}` Type. Expected: int or float or None, Received: type({name})=bool")
        if isinstance(value, (int, np.integer)):
            return int
        if isinstance(value, (float, np.floating)):
            return float
        raise TypeError(f"Invalid `{name}` Type. Expected: int or float or None, Received: "
                        f"type({name})={type(value)}")

    left_kind, right_kind = kind(left_size, "left_size"), kind(right_size, "right_size")
    if left_size is None and right_size is None:
        raise ValueError("At least one of the `left_size` or `right_size` must be specified. Received: "
                         "left_size=None and right_size=None")
    for value, k, name in ((left_size, left_kind, "left_size"), (right_size, right_kind, "right_size")):
        if (k is int and not 0 < value < total) or (k is float and not 0 < value < 1):
            raise ValueError(f"`{name}` should be either a positive integer smaller than {total}, or a float "
                             f"within the range `[0, 1]`. Received: {name}={value}")
    if left_kind is float and right_kind is float and left_size + right_size > 1:
        raise ValueError("The sum of `left_size` and `right_size` is greater than 1. It must be less than or "
                         "equal to 1.")
    left = None if left_size is None else round(left_size * total) if left_kind is float else int(left_size)
    right = None if right_size is None else round(right_size * total) if right_kind is float else int(right_size)
    if left is None:
        left = total - right
    elif right is None:
        right = total - left
    if left + right > total:
        raise ValueError(f"The sum of `left_size` and `right_size` should be smaller than the {total}. "
                         f"Received: left_size + right_size = {left + right} and total_length = {total}")
    for size, side in ((left, "left"), (right, "right")):
        if size == 0:
            raise ValueError(f"With `dataset` of length={total}, `left_size`={left_size} and `right_size`="
                             f"{right_size}. Resulting {side} side dataset split will be empty. Adjust any of "
                             "the aforementioned parameters")
    return int(left), int(right)


def _samples_source(dataset: Any) -> tuple[_Source, int | None]:
    """(sample source, batch size to restore) for whatever split_dataset is given."""
    if isinstance(dataset, Dataset):
        return dataset._source, dataset.batch_size
    if isinstance(dataset, (np.ndarray, tuple, list, dict)) or hasattr(dataset, "__array__"):
        if isinstance(dataset, (tuple, list)) and not dataset:
            raise ValueError("split_dataset: received an empty list or tuple; pass arrays of one length")
        return _ArraySource(_checked_structure(dataset, "split_dataset")), None
    # A framework dataset (tf.data, a torch Dataset) or any iterable of samples: read it into arrays.
    batch_size = None
    if hasattr(dataset, "_batch_size") and hasattr(dataset, "unbatch"):  # a batched tf.data.Dataset
        batch_size = _batch_size_of(dataset)
        dataset = dataset.unbatch()
    if hasattr(dataset, "as_numpy_iterator"):
        samples = list(dataset.as_numpy_iterator())
    elif hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        samples = [dataset[i] for i in range(len(dataset))]
    elif hasattr(dataset, "__iter__"):
        samples = list(dataset)
    else:
        raise TypeError(f"split_dataset: unsupported dataset type {type(dataset).__name__}: pass an array, a "
                        "tuple/list/dict of arrays, a unidl.utils.Dataset, or an iterable of samples")
    if not samples:
        raise ValueError("split_dataset: received an empty dataset")
    first = samples[0]
    if isinstance(first, list):
        first = tuple(first)
    columns = zip(*[flatten(tuple(s) if isinstance(s, list) else s) for s in samples])
    stacked = [np.stack([_as_array(v, "split_dataset: a sample") if np.ndim(v) else np.asarray(v)
                         for v in column]) for column in columns]
    return _ArraySource(pack_like(first, stacked)), batch_size


def _batch_size_of(dataset) -> int | None:
    size = getattr(dataset, "_batch_size", None)
    try:
        return int(size.numpy()) if hasattr(size, "numpy") else int(size)
    except (TypeError, ValueError):
        return None


def split_dataset(dataset, left_size: int | float | None = None, right_size: int | float | None = None,
                  shuffle: bool = False, seed: int | None = None) -> tuple[Dataset, Dataset]:
    """Split samples into a left and a right :class:`Dataset` (e.g. training and validation).

    Args:
        dataset: an array, a tuple/list/dict of arrays of one length (elements
            are then tuples/dicts of rows), a :class:`Dataset`, or any dataset
            of samples (a ``tf.data.Dataset``, a torch ``Dataset``), which is read into arrays.
        left_size: a float in (0, 1): the fraction of samples on the left; an
            int: their number; None: what ``right_size`` leaves.
        right_size: the same for the right split.
        shuffle: shuffle the samples before splitting.
        seed: the seed of that shuffle (default: a draw from Python's ``random``,
            so ``set_random_seed`` makes it reproducible, as in Keras).

    Returns:
        ``(left, right)``: the first ``left_size`` samples and the last
        ``right_size`` ones. A batched dataset gives splits batched the same
        way; anything else gives splits of single samples (call ``.batch(n)``).

    The order for a given ``seed`` is the one Keras draws (``random.Random(seed)``'s shuffle),
    so a split equals ``keras.utils.split_dataset``'s. Unlike Keras, the global ``random``
    state is left alone.
    """
    source, batch_size = _samples_source(dataset)
    total = source.n
    left, right = _rescale_sizes(left_size, right_size, total)
    order = list(range(total))
    if shuffle:
        if seed is None:
            seed = _random.randint(0, int(1e6))
        _random.Random(seed).shuffle(order)
    indices = np.asarray(order, dtype=np.int64)
    splits = []
    for part in (indices[:left], indices[total - right:]):
        split = Dataset(_SubsetSource(source, part))
        splits.append(split if batch_size is None else split.batch(batch_size))
    return splits[0], splits[1]

"""Turning what users pass to fit/evaluate/predict into checked NumPy batches.

Two kinds of data:

* arrays: ``x`` and ``y`` are arrays (or lists/dicts of arrays for models with
  several inputs/outputs); batches are slices in an order drawn from the
  model's seeded generator;
* iterables: a Python generator, iterator or sequence object yielding
  ``(x, y)`` or ``(x, y, sample_weight)`` batches; ``steps_per_epoch`` batches
  are drawn per epoch (all of them when it is None).

Every batch leaves here as NumPy in the model's dtype, with labels checked
against the loss, so the loop itself only converts and runs.
"""
from __future__ import annotations

import collections.abc
import warnings
from typing import Any, Iterator

import numpy as np

from .structure import flatten, match_keys, pack_like


class DataError(ValueError):
    """Training data that cannot be used as given."""


def as_numeric_array(data: Any, argument: str) -> np.ndarray:
    """``data`` as a real-valued NumPy array, or a DataError saying why not."""
    if hasattr(data, "numpy") and not isinstance(data, np.ndarray):
        data = data.numpy()  # a framework tensor handed in by the user
    try:
        array = np.asarray(data)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{argument} could not be turned into an array: {exc}") from exc
    if array.dtype == object or array.dtype.kind in "USV":
        raise DataError(f"{argument} must be numeric, got an array of dtype {array.dtype} "
                        f"(e.g. {array.ravel()[:1].tolist()}); convert strings/objects to numbers first")
    if array.dtype.kind == "c":
        raise DataError(f"{argument} is complex ({array.dtype}); unidl trains on real numbers only")
    if array.ndim == 0:
        raise DataError(f"{argument} must have a batch axis, got a scalar")
    return array


NONFINITE_CHOICES = ("raise", "warn", "ignore")


def check_finite(model, arrays: list[np.ndarray], argument: str) -> None:
    """Apply the model's ``nonfinite_data`` choice (compile) to NaN/inf entries of ``arrays``.

    One NaN in the data makes the loss NaN and then every weight: "raise" (the default)
    stops before that happens, "warn" trains anyway with a warning, "ignore" skips the scan.
    """
    choice = getattr(model, "nonfinite_data", "raise")
    if choice == "ignore":
        return
    for i, a in enumerate(arrays):
        if a.dtype.kind != "f" or not a.size:
            continue  # integer and bool data cannot hold NaN or inf
        if np.isfinite(a.min()) and np.isfinite(a.max()):  # NaN and inf reach min/max: two fast passes
            continue
        bad = ~np.isfinite(a)
        rows = np.flatnonzero(bad.reshape(len(a), -1).any(axis=1))
        which = argument if len(arrays) == 1 else f"{argument}[{i}]"
        message = (f"{which} holds {int(bad.sum())} NaN/inf value(s) in {len(rows)} sample(s), the first at "
                   f"sample {rows[0]}; they would turn the loss and then the weights into NaN")
        if choice == "warn":
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            continue
        raise DataError(f"{message}. Clean them (drop those rows, or np.nan_to_num), or pass "
                        "compile(..., nonfinite_data='warn') or 'ignore' to use the data as it is")


def is_iterable_data(x) -> bool:
    """A generator/iterator/sequence of batches, as opposed to arrays."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(x, "__array__"):
        return False
    return isinstance(x, collections.abc.Iterator) or hasattr(x, "__iter__") or hasattr(x, "__getitem__")


def _structured(data, count: int | None, argument: str, names: list[str] | None = None,
                convert=None) -> list[np.ndarray] | None:
    """The arrays of ``data`` in flat order: one array, or one per model input/output.

    A dict is matched by name to ``names`` (the model's input or output names), never by its order.
    ``convert(value, label, index)`` makes each one an array (default: a checked numeric array).
    """
    if data is None:
        return None
    convert = convert or (lambda value, label, index: as_numeric_array(value, label))
    if isinstance(data, dict) and names is not None:
        what = "input" if argument == "x" else "output"
        keys = match_keys(data, names, what, DataError)
        return [convert(data[k], f"{argument}[{k!r}]", i) for i, k in enumerate(keys)]
    several = count is not None and count > 1
    if several or (count is None and isinstance(data, (list, tuple, dict))
                   and all(isinstance(a, np.ndarray) for a in flatten(data))):
        arrays = flatten(data)
        if count is not None and len(arrays) != count:
            raise DataError(f"{argument} must hold {count} arrays (one per model "
                            f"{'input' if argument == 'x' else 'output'}), got {len(arrays)}")
        return [convert(a, f"{argument}[{i}]", i) for i, a in enumerate(arrays)]
    return [convert(data, argument, 0)]


def _names(model, which: str) -> list[str] | None:
    """A functional model's input or output names (what dict data is matched by); None when subclassed."""
    graph = getattr(model, "graph", None)
    return None if graph is None else getattr(graph, which)


def _count(shape) -> int | None:
    if shape is None:
        return None
    return len(shape) if isinstance(shape, list) else 1


def _shape_list(shape) -> list:
    return shape if isinstance(shape, list) else [shape]


def prepare_x(model, x, argument: str = "x") -> list[np.ndarray]:
    """Checked input arrays (flat list), building the model from them if needed."""
    raw = _structured(x, _count(model.input_shape), argument, _names(model, "input_keys"), _as_array)
    n = len(raw[0])
    if n == 0:
        raise DataError(f"{argument} is empty: there is nothing to train or evaluate on")
    if any(len(a) != n for a in raw):
        raise DataError(f"all arrays in {argument} need the same number of samples, got "
                        f"{[len(a) for a in raw]}")
    shapes = [(None, *a.shape[1:]) for a in raw]
    model.ensure_built(shapes[0] if len(shapes) == 1 else shapes)
    # Host layers (TextVectorization, StringLookup...) reading an input run here, on the NumPy batch,
    # before anything reaches a backend; the model then skips them (unidl.layers.host_layers_done).
    hosted = [_run_host_layers(model, i, a) for i, a in enumerate(raw)]
    arrays = [as_numeric_array(a, argument if len(raw) == 1 else f"{argument}[{i}]") for i, (a, _) in
              enumerate(hosted)]
    for a, expected, i in zip(arrays, _shape_list(model.input_shape), range(len(arrays))):
        if hosted[i][1]:
            continue  # its expected shape is that of the raw data (strings), checked by the host layer
        if a.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected[1:], a.shape[1:])):
            first = model.layers[0].name if model.layers else "input"
            which = argument if len(arrays) == 1 else f"{argument}[{i}]"
            raise DataError(f"{which} has samples of shape {a.shape[1:]}, but model {model.name!r} expects "
                            f"{tuple(expected[1:])} (layer {first!r} was built for input shape {expected})")
    check_finite(model, arrays, argument)
    _check_layer_inputs(model, arrays, argument)
    # Inputs become the compute dtype, integers included (layers taking ids, like Embedding,
    # cast back; float32 holds every id below 2**24 exactly).
    return [a.astype(model.backend.dtype, copy=False) for a in arrays]


def _as_array(value, label: str, index: int) -> np.ndarray:
    """An array, not yet checked to be numeric: host layers may turn strings into numbers first."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise DataError(f"{label} could not be turned into an array: {exc}") from exc


def _run_host_layers(model, index: int, values: np.ndarray) -> tuple[np.ndarray, bool]:
    """``values`` after the host layers reading model input ``index`` (and whether there were any)."""
    chain = getattr(model, "host_layers_for_input", lambda i: [])(index)
    for layer in chain:
        values = np.asarray(layer.host_call(values))
    return values, bool(chain)


def _check_layer_inputs(model, arrays: list[np.ndarray], argument: str) -> None:
    """Let each layer reading a model input directly refuse values it cannot take (Embedding: ids)."""
    reading = getattr(model, "layers_reading_input", None)
    if reading is None:
        return
    for i, a in enumerate(arrays):
        for layer in reading(i):
            try:
                layer.check_input_values(a, argument if len(arrays) == 1 else f"{argument}[{i}]")
            except ValueError as exc:
                raise DataError(str(exc)) from None


def prepare_y(model, y, n: int, losses: list) -> list[np.ndarray]:
    """Checked label arrays (flat list, one per output), each fixed up by its loss (a model compiled
    without a loss, whose loss comes from add_loss, gets its targets unchecked)."""
    if y is None:
        raise DataError("y is missing: fit and evaluate need targets")
    outputs = _shape_list(model.output_shape)
    arrays = _structured(y, len(outputs), "y", _names(model, "output_keys"))
    check_finite(model, arrays, "y")  # before the loss's label checks, which NaN would confuse
    checked = []
    for i, (a, shape) in enumerate(zip(arrays, outputs)):
        if len(a) != n:
            raise DataError(f"x and y must have the same number of samples, got {n} and {len(a)}")
        if i < len(losses):
            a = losses[i][0].check_labels(a, shape)
        checked.append(a.astype(model.backend.dtype) if a.dtype.kind in "fb" else a)
    return checked


def raw_array_data(model, x, y=None, sample_weight=None) -> "ArrayData":
    """Arrays for a model that takes its data as given (a custom ``train_step`` and no ``call`` to check
    shapes against): numeric, the same number of samples each; floats in the model's dtype."""
    def arrays(value, argument):
        parts = list(value.values()) if isinstance(value, dict) else \
            list(value) if isinstance(value, (list, tuple)) else [value]
        out = [as_numeric_array(_as_array(v, argument, i), argument) for i, v in enumerate(parts)]
        check_finite(model, out, argument)
        return [a.astype(model.backend.dtype) if a.dtype.kind == "f" else a for a in out]

    xs = arrays(x, "x")
    ys = None if y is None else arrays(y, "y")
    counts = {len(a) for a in xs + (ys or [])}
    if len(counts) != 1:
        raise DataError(f"x and y need the same number of samples per array, got {sorted(counts)}")
    if not counts or counts == {0}:
        raise DataError("x is empty: there is nothing to train or evaluate on")
    weights = None if sample_weight is None else \
        as_numeric_array(sample_weight, "sample_weight").astype(model.backend.dtype)
    return ArrayData(xs, ys, weights)


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """One batch as a step receives it (Keras's ``pack_x_y_sample_weight``): ``x`` alone when there are
    no targets (wrapped in a 1-tuple when it is itself a list or tuple), else ``(x, y)`` or
    ``(x, y, sample_weight)``."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def unpack_x_y_sample_weight(data):
    """``(x, y, sample_weight)`` of a step's ``data``, None for what is absent (Keras's
    ``unpack_x_y_sample_weight``)."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data[0], data[1], data[2]
    raise ValueError(f"data must be x, (x,), (x, y) or (x, y, sample_weight); got a tuple of {len(data)}")


def prepare_weights(model, n: int, y: list[np.ndarray], sample_weight=None, class_weight=None):
    weights = None
    if sample_weight is not None:
        weights = as_numeric_array(sample_weight, "sample_weight").astype(np.float64)
        if weights.shape != (n,):
            raise DataError(f"sample_weight must have shape ({n},), got {weights.shape}")
        check_finite(model, [weights], "sample_weight")
    if class_weight is not None:
        _check_class_weight(class_weight, y[0], _shape_list(model.output_shape)[0])
        labels = y[0]
        labels = labels.argmax(-1) if labels.ndim > 1 and labels.shape[-1] > 1 else \
            labels.reshape(len(labels), -1)[:, 0].round()
        per_sample = np.array([class_weight.get(int(c), 1.0) for c in labels])
        weights = per_sample if weights is None else weights * per_sample
    return None if weights is None else weights.astype(model.backend.dtype)


def _check_class_weight(class_weight, labels: np.ndarray, output_shape: tuple) -> None:
    """Keys must be class ids the model can predict, values non-negative numbers."""
    if not isinstance(class_weight, dict):
        raise DataError(f"class_weight must be a dict {{class id: weight}}, got {type(class_weight).__name__}")
    width = output_shape[-1] if output_shape and output_shape[-1] is not None else None
    classes = 2 if width == 1 else width
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 0 \
                or (classes is not None and key >= classes):
            raise DataError(f"class_weight has key {key!r}, but the model predicts classes 0.."
                            f"{'?' if classes is None else classes - 1} (output shape {output_shape}); keys must "
                            "be class ids")
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not weight >= 0:
            raise DataError(f"class_weight[{key}] must be a non-negative number, got {weight!r}")


def pack_batch(arrays: list[np.ndarray], idx=slice(None)):
    """Rows ``idx`` of each array: one array for a one-input/output model, else a list."""
    return arrays[0][idx] if len(arrays) == 1 else [a[idx] for a in arrays]


class ArrayData:
    """Arrays held in memory; batches are slices, shuffled by the model's generator."""

    def __init__(self, x: list[np.ndarray], y: list[np.ndarray] | None, weights: np.ndarray | None):
        self.x, self.y, self.weights = x, y, weights

    def __len__(self) -> int:
        return len(self.x[0])

    def steps(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def split(self, fraction: float) -> tuple["ArrayData", "ArrayData"]:
        """The first (1 - fraction) of the samples and the rest (Keras takes the last ones, unshuffled)."""
        cut = int(len(self) * (1.0 - fraction))
        if cut == 0 or cut == len(self):
            raise DataError(f"validation_split={fraction} leaves no training or no validation samples "
                            f"out of {len(self)}")
        part = lambda arrays, s: None if arrays is None else [a[s] for a in arrays]  # noqa: E731
        w = self.weights
        return (ArrayData(part(self.x, slice(None, cut)), part(self.y, slice(None, cut)),
                          None if w is None else w[:cut]),
                ArrayData(part(self.x, slice(cut, None)), part(self.y, slice(cut, None)),
                          None if w is None else w[cut:]))

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[tuple]:
        """(x, y, weights) NumPy batches; x/y keep their structure (one array or a list)."""
        order = rng.permutation(len(self)) if rng is not None else None
        for start in range(0, len(self), batch_size):
            idx = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield (pack_batch(self.x, idx),
                   None if self.y is None else pack_batch(self.y, idx),
                   None if self.weights is None else self.weights[idx])



class IterableData:
    """Batches drawn from a user iterable; each batch is checked like array data."""

    def __init__(self, model, source, steps_per_epoch: int | None, losses=None, raw: bool = False):
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, (int, np.integer))
                                            or steps_per_epoch <= 0):
            raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        # losses() -> the model's per-output losses, asked once the model is built (None: no labels)
        self.model, self.source, self.steps_per_epoch = model, source, steps_per_epoch
        self.losses, self.raw = losses, raw
        self._iterator = iter(source) if isinstance(source, collections.abc.Iterator) else None
        self.exhausted = False

    def steps(self, batch_size: int) -> int | None:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return len(self.source) if hasattr(self.source, "__len__") else None

    def batches(self, batch_size: int, rng=None) -> Iterator[tuple]:
        # A one-shot iterator continues where the last epoch stopped; a re-iterable restarts.
        iterator = self._iterator if self._iterator is not None else iter(self.source)
        for step, item in enumerate(iterator):
            yield self._check(item, step)
            if self.steps_per_epoch is not None and step + 1 >= self.steps_per_epoch:
                return
        if self._iterator is not None:
            self.exhausted = True

    def _check(self, item, step: int) -> tuple:
        item = _as_numpy_batch(item)
        if not isinstance(item, tuple):
            item = (item,)  # a batch may be the inputs alone (predict, a model needing no targets), as in Keras
        if not isinstance(item, (tuple, list)) or len(item) not in (1, 2, 3):
            raise DataError(f"batch {step} of the data iterable must be (x, y) or (x, y, sample_weight), "
                            f"got {type(item).__name__}")
        x, y, w = (list(item) + [None, None])[:3]
        if self.raw:  # a custom train_step without call(): its data as given
            data = raw_array_data(self.model, x, y, w)
            return (pack_batch(data.x), None if data.y is None else pack_batch(data.y), data.weights)
        xs = prepare_x(self.model, x)
        n = len(xs[0])
        losses = None if self.losses is None else self.losses()
        ys = None if losses is None or (y is None and not losses) else prepare_y(self.model, y, n, losses)
        weights = prepare_weights(self.model, n, ys, w) if ys is not None else None
        return pack_batch(xs), None if ys is None else pack_batch(ys), weights


def _as_numpy_batch(item):
    """A batch from a framework's data pipeline as NumPy: tf.data and torch DataLoader batches hold
    tensors (``.numpy()``, or ``.detach().cpu().numpy()``); lists and dicts of them are walked.
    Nothing is imported: a tensor is recognized by its methods."""
    if isinstance(item, tuple):
        return tuple(_as_numpy_batch(part) for part in item)
    if isinstance(item, list):
        return [_as_numpy_batch(part) for part in item]
    if isinstance(item, dict):
        return {k: _as_numpy_batch(v) for k, v in item.items()}
    if isinstance(item, np.ndarray) or item is None:
        return item
    if hasattr(item, "detach") and hasattr(item, "cpu"):  # a torch tensor
        return item.detach().cpu().numpy()
    if hasattr(item, "numpy") and callable(item.numpy):  # a TensorFlow (or JAX-like) tensor
        return item.numpy()
    return item


def pack_outputs(model, flat: list):
    """Model outputs in the structure of the model's outputs (for multi-output predict)."""
    structure = model.output_structure
    if structure is None or len(flatten(structure)) == 1:
        return flat[0]
    return pack_like(structure, flat)

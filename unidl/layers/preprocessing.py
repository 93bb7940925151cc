"""Preprocessing layers: Rescaling, Normalization, CategoryEncoding (in the model's graph) and
IntegerLookup, StringLookup, TextVectorization (on the host), with Keras 3's arguments and rules.

Two kinds of layers live here:

* **Graph layers** (``Rescaling``, ``Normalization``, ``CategoryEncoding``) are written over
  ``unidl.ops`` like every other layer and run inside a compiled step on any backend.
* **Host layers** (``IntegerLookup``, ``StringLookup``, ``TextVectorization``) map strings or
  arbitrary integer keys through a vocabulary, which no framework tensor op expresses on
  every backend (strings have no tensor type in PyTorch). They declare it::

      runs_on_host = True
      def host_call(self, values: np.ndarray) -> np.ndarray: ...

  ``host_call`` maps NumPy input (strings, bytes or ids) to NumPy output (int64 ids, float32
  encodings, or strings for an inverted StringLookup). Called by hand (``vectorizer(["some
  text"])``, ``lookup(np.array([...]))``) a host layer returns NumPy, or a backend tensor when
  a backend is bound (``with unidl.use_backend(...)``, or inside a running model) and the
  output is numeric. A model runs its host layers on the batch before the backend step.

Vocabularies follow Keras: ``adapt`` counts the tokens, and the vocabulary lists them by
decreasing count, ties broken by decreasing token (UTF-8 bytes for strings, values for
integers), after the special tokens (mask, then OOV). The vocabulary is part of the layer's
config, so a saved model keeps it.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Any, Iterable, Sequence

import numpy as np

from .. import ops
from ..naming import snake_case
from ..symbolic import is_symbolic
from .base import host_layers_done_already, Layer, Shape

EPSILON = 1e-7  # Keras's backend.epsilon(): the floor of Normalization's standard deviation

_OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


# ------------------------------------------------------------------ helpers

def _check_choice(where: str, name: str, value, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{where}: {name} must be one of {', '.join(map(repr, allowed))}, got {name}={value!r}")
    return value


def _output_mode(where: str, value, allowed: Sequence[str] = _OUTPUT_MODES) -> str:
    # Keras's deprecated spellings
    value = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(value, value) if isinstance(value, str) else value
    return _check_choice(where, "output_mode", value, allowed)


def _no_sparse(where: str, sparse) -> None:
    if sparse:
        raise ValueError(f"{where}: sparse=True is not supported: unidl has no sparse tensors on every backend, "
                         "so outputs are dense (sparse=False)")


def _to_numpy(values) -> np.ndarray:
    """Host data as a NumPy array: lists, NumPy arrays, framework tensors (``.numpy()``), backend tensors."""
    if isinstance(values, np.ndarray):
        return values
    if isinstance(values, (list, tuple, str, bytes, int, float, np.generic)):
        return np.asarray(values, dtype=object if _has_text(values) else None)
    backend = ops.current_backend_or_none()
    if backend is not None:
        try:
            return np.asarray(backend.to_numpy(values))
        except Exception:  # not this backend's tensor: try the generic ways below
            pass
    if hasattr(values, "numpy"):  # a tf.Tensor (e.g. from a tf.data pipeline) or a torch tensor
        return np.asarray(values.numpy())
    return np.asarray(values)


def _has_text(values) -> bool:
    if isinstance(values, (str, bytes)):
        return True
    if isinstance(values, (list, tuple)):
        return any(_has_text(v) for v in values)
    return False


def _batches(data, inputs_only: bool = False) -> Iterable[np.ndarray]:
    """``adapt`` data as NumPy batches: an array (or list, tuple, tensor) is one batch; any other
    iterable (a generator, a tf.data.Dataset, a DataLoader) yields batches, as in Keras. With
    ``inputs_only``, a batch that is a tuple (x, y[, sample_weight]) gives its x (Normalization)."""
    if isinstance(data, (np.ndarray, list, tuple, str, bytes)) or _is_tensor(data):
        yield _to_numpy(data)
        return
    if not hasattr(data, "__iter__"):
        raise TypeError(f"adapt() takes a NumPy array, a list, a tensor or an iterable of batches, got "
                        f"{type(data).__name__}")
    for batch in data:
        if inputs_only and isinstance(batch, tuple):
            batch = batch[0]
        yield _to_numpy(batch)


def _is_tensor(value) -> bool:
    """A tensor of some framework (has a shape and a dtype), not a dataset or a generator."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not hasattr(value, "__next__")


def _as_text(values: np.ndarray, encoding: str = "utf-8") -> np.ndarray:
    """An array of Python ``str`` (object dtype): bytes are decoded, as TF's string tensors are."""
    flat = [v.decode(encoding) if isinstance(v, (bytes, np.bytes_)) else str(v) for v in values.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(values.shape)


class HostLayerError(RuntimeError):
    """A host layer (``runs_on_host``) was given values it cannot bring to NumPy (a traced tensor)."""


class _HostLayer(Layer):
    """A layer computed on the host in NumPy (see the module docstring)."""

    runs_on_host = True
    autocast_inputs = False

    def host_call(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, inputs, training: bool = False, **kwargs):
        if is_symbolic(inputs):
            return super().__call__(inputs, **kwargs)
        if host_layers_done_already():
            return inputs  # fit/evaluate/predict ran this layer on the NumPy batch already
        # No build here: a host layer takes batches of any shape (called by hand on a list of
        # strings, then on the (batch, 1) strings of a model's Input).
        self.name = self.name or snake_case(type(self).__name__)
        return self.call(inputs)

    def call(self, inputs, training: bool = False):
        try:
            values = _to_numpy(inputs)
        except Exception as exc:
            raise HostLayerError(
                f"{type(self).__name__} {self.name!r} runs on the host, in NumPy (runs_on_host = True), and got "
                f"a {type(inputs).__name__} it cannot read as NumPy ({type(exc).__name__}: {exc}). It cannot run "
                "inside a compiled (traced) step: apply it to the data before the model, or as the model's first "
                "layer") from exc
        return self._to_backend(self.host_call(values))

    @staticmethod
    def _to_backend(out: np.ndarray):
        backend = ops.current_backend_or_none()
        if backend is None or out.dtype.kind not in "biuf":
            return out
        return backend.convert(out)


# ------------------------------------------------------------------ Rescaling

class Rescaling(Layer):
    """Rescales inputs: ``output = inputs * scale + offset`` (e.g. ``Rescaling(1 / 255)`` for pixels).

    Args:
        scale: a number, or an array broadcast against the inputs (e.g. one per channel).
        offset: a number or an array, default 0.0.

    Inputs are cast to the model's float dtype first (integer pixels are fine).

    Input shape: any. Output shape: the input shape.

    PyTorch has no layer for it (torchvision's ``Normalize`` subtracts and divides instead).
    """

    def __init__(self, scale, offset=0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale, self.offset = self._factor("scale", scale), self._factor("offset", offset)
        self._config_args = {"scale": _jsonable(self.scale), "offset": _jsonable(self.offset)}

    @staticmethod
    def _factor(name: str, value):
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"Rescaling: {name} must be a number or an array of numbers, got {name}={value!r}")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"Rescaling: {name} must be a number or an array of numbers, got {name}={value!r}") \
                from None
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Rescaling: {name} must be finite, got {name}={value!r}")
        return float(array) if array.ndim == 0 else array

    def call(self, inputs):
        x = ops.cast(inputs, ops.current_backend().dtype)
        scale = self.scale if isinstance(self.scale, float) else ops.convert(self.scale)
        offset = self.offset if isinstance(self.offset, float) else ops.convert(self.offset)
        out = ops.multiply(x, scale)
        return out if isinstance(offset, float) and offset == 0.0 else ops.add(out, offset)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


def _jsonable(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


# ------------------------------------------------------------------ Normalization

class Normalization(Layer):
    """Shifts and scales inputs to mean 0 and variance 1, with statistics given or learned by ``adapt``.

    ``output = (inputs - mean) / max(sqrt(variance), 1e-7)``; with ``invert=True``,
    ``output = mean + inputs * max(sqrt(variance), 1e-7)`` (undoes it).

    Args:
        axis: the axis or axes that keep their own mean and variance (default -1: one per feature
            of the last axis); statistics are taken over all the other axes. None: one scalar
            mean and variance over everything. The batch axis cannot be kept.
        mean, variance: the statistics, given together (numbers or arrays broadcast to the kept
            axes); the layer then has no weights. Default None: learn them with ``adapt``.
        invert: apply the inverse transformation (default False).

    ``adapt(data)`` computes, over every axis but ``axis``, the mean and the biased variance of
    a NumPy array (or tensor), or of an iterable of batches (merged exactly as Keras merges
    them). Call it before fit/evaluate/predict.

    Weights (when not given ``mean``/``variance``), non-trainable, Keras's names: mean and
    variance (shape: the kept axes), count (a scalar: the number of values each statistic saw;
    Keras leaves it 0).

    Input shape: any, with known sizes on the kept axes. Output shape: the input shape.

    PyTorch has no such layer (torchvision's ``Normalize(mean, std)`` takes fixed statistics).
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if axis is None:
            axes: tuple[int, ...] = ()
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            axes = (int(axis),)
        elif isinstance(axis, (list, tuple)) and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                                     for a in axis):
            axes = tuple(int(a) for a in axis)
        else:
            raise ValueError(f"Normalization: axis must be an int, a tuple of ints or None, got axis={axis!r}")
        self.axis = axes
        if (mean is None) != (variance is None):
            raise ValueError(f"Normalization: mean and variance must be given together, got mean={mean!r} and "
                             f"variance={variance!r}")
        self.input_mean = self.input_variance = None
        if mean is not None:
            m, v = (np.asarray(a, dtype=np.float64) for a in (mean, variance))
            if m.shape != v.shape:
                raise ValueError(f"Normalization: mean and variance must have the same shape, got {m.shape} and "
                                 f"{v.shape}")
            if m.ndim > len(axes):
                raise ValueError(f"Normalization: mean of rank {m.ndim} has more axes than axis={axis!r} keeps")
            if np.any(v < 0):
                raise ValueError("Normalization: variance must be non-negative")
            self.input_mean, self.input_variance = m, v
        self.invert = bool(invert)
        self._config_args = {"axis": axis if axis is None or isinstance(axis, int) else list(axes),
                             "mean": None if mean is None else _jsonable(self.input_mean),
                             "variance": None if variance is None else _jsonable(self.input_variance),
                             "invert": self.invert}

    def build(self, input_shape: Shape) -> None:
        ndim = len(input_shape)
        where = f"Normalization {self.name!r}"
        keep = []
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(f"{where}: axis {a} is out of range for inputs of rank {ndim} "
                                 f"(shape {tuple(input_shape)})")
            keep.append(a % ndim)
        if 0 in keep:
            raise ValueError(f"{where}: axis {self.axis} keeps the batch axis of inputs of shape "
                             f"{tuple(input_shape)}; for samples of one value each, use axis=None")
        self._keep = tuple(sorted(set(keep)))
        for a in self._keep:
            if input_shape[a] is None:
                raise ValueError(f"{where}: the kept axis {a} must have a known size, got input shape "
                                 f"{tuple(input_shape)}")
        self._reduce = tuple(a for a in range(ndim) if a not in self._keep)
        self._broadcast_shape = tuple(input_shape[a] if a in self._keep else 1 for a in range(ndim))
        stats_shape = tuple(input_shape[a] for a in self._keep)
        if self.input_mean is None:
            self.mean = self.add_weight("mean", stats_shape, "zeros", trainable=False)
            self.variance = self.add_weight("variance", stats_shape, "ones", trainable=False)
            self.count = self.add_weight("count", (), "zeros", trainable=False)
            self._fixed = None
        else:
            self._fixed = tuple(self._expand(a) for a in (self.input_mean, self.input_variance))

    def _expand(self, value: np.ndarray) -> np.ndarray:
        """A given mean/variance broadcast to the inputs, its axes matched to the last kept axes (Keras)."""
        shape = [1] * len(self._broadcast_shape)
        for i in range(1, value.ndim + 1):
            shape[self._keep[-i]] = value.shape[-i]
        try:
            return np.broadcast_to(value.reshape(shape), self._broadcast_shape).copy()
        except ValueError:
            raise ValueError(f"Normalization {self.name!r}: mean/variance of shape {value.shape} do not broadcast "
                             f"to the kept axes {tuple(self._broadcast_shape[a] for a in self._keep)}") from None

    def adapt(self, data) -> None:
        """Learn the mean and variance of ``data`` (an array or tensor, or an iterable of batches)."""
        if self.input_mean is not None:
            raise ValueError(f"Normalization {self.name!r} was given mean and variance; adapt() would replace them. "
                             "Create the layer without mean= and variance= to learn them")
        total_mean = total_var = None
        total = 0
        for batch in _batches(data, inputs_only=True):
            batch = np.asarray(batch, dtype=np.float64)
            if batch.ndim == 0:
                raise ValueError("Normalization.adapt: data must have a batch axis, got a scalar")
            if not self.built:
                self.build_for((None, *batch.shape[1:]))
            elif any(batch.shape[a] != self.input_shape[a] for a in self._keep) or \
                    batch.ndim != len(self.input_shape):
                raise ValueError(f"Normalization {self.name!r} was built for inputs of shape {self.input_shape}; "
                                 f"adapt() got data of shape {batch.shape}")
            mean, var = batch.mean(axis=self._reduce), batch.var(axis=self._reduce)
            count = int(np.prod([batch.shape[a] for a in self._reduce], dtype=np.int64))
            if total_mean is None:
                total_mean, total_var, total = mean, var, count
                continue
            # Keras's merge of batch statistics (lack-of-fit sum of squares)
            total += count
            w = count / total
            new_mean = total_mean * (1 - w) + mean * w
            total_var = (total_var + (total_mean - new_mean) ** 2) * (1 - w) + (var + (mean - new_mean) ** 2) * w
            total_mean = new_mean
        if total_mean is None:
            raise ValueError("Normalization.adapt: the data holds no batch")
        for weight, value in ((self.mean, total_mean), (self.variance, total_var), (self.count, float(total))):
            weight.assign(np.asarray(value, dtype=np.float64))
            weight.seeded = True  # set on purpose: a model adopting the layer must not redraw it

    def call(self, inputs):
        x = ops.cast(inputs, ops.current_backend().dtype)
        if self._fixed is not None:
            mean, std = ops.convert(self._fixed[0]), ops.convert(np.maximum(np.sqrt(self._fixed[1]), EPSILON))
        else:
            mean = ops.reshape(self.mean, self._broadcast_shape)
            std = ops.maximum(ops.sqrt(ops.reshape(self.variance, self._broadcast_shape)), EPSILON)
        if self.invert:
            return ops.add(mean, ops.multiply(x, std))
        return ops.divide(ops.subtract(x, mean), std)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape


# ------------------------------------------------------------------ CategoryEncoding

class CategoryEncoding(Layer):
    """Encodes integer ids in ``[0, num_tokens)`` as one-hot, multi-hot or count vectors.

    * ``"one_hot"``: each id becomes a one-hot vector; an input of shape (batch, 1) gives
      (batch, num_tokens), (batch,) gives (batch, num_tokens), (batch, k) gives (batch, k, num_tokens).
    * ``"multi_hot"`` (default): each sample (the last input axis) becomes one vector with 1 at
      every id it holds; (batch, k) gives (batch, num_tokens). A rank-1 input is one sample (Keras).
    * ``"count"``: like multi_hot, with how many times each id occurs (times ``count_weights``
      when given: ``layer(ids, count_weights=w)``).

    Args:
        num_tokens: the number of ids, a positive int.
        output_mode: "multi_hot" (default), "one_hot" or "count" ("binary" is read as "multi_hot").
        sparse: only False (unidl's outputs are dense).

    Outputs are floats in the model's dtype. Ids arriving as floats are cast to int64.
    fit/evaluate/predict refuse ids outside ``[0, num_tokens)`` before any step (Keras on
    TensorFlow raises too).

    PyTorch has ``nn.functional.one_hot`` (int64 output) for the one-hot case only.
    """

    autocast_inputs = False  # ids: bfloat16 would round those above 256 (mixed precision)

    def __init__(self, num_tokens: int | None = None, output_mode: str = "multi_hot", sparse: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if num_tokens is None or num_tokens < 1:
            raise ValueError(f"CategoryEncoding: num_tokens must be a positive integer (the number of ids), got "
                             f"num_tokens={num_tokens!r}; for ids not known beforehand use IntegerLookup")
        self.num_tokens = int(num_tokens)
        self.output_mode = _output_mode("CategoryEncoding", output_mode, ("multi_hot", "one_hot", "count"))
        _no_sparse("CategoryEncoding", sparse)
        self._config_args = {"num_tokens": self.num_tokens, "output_mode": self.output_mode}

    def __call__(self, inputs, training: bool = False, **kwargs):
        if isinstance(inputs, (list, tuple)) and not any(is_symbolic(x) for x in inputs):
            inputs = np.asarray(inputs)  # Keras takes a list of ids
        if isinstance(inputs, np.ndarray) and ops.current_backend_or_none() is not None:
            inputs = ops.convert(inputs)
        return super().__call__(inputs, training=training, **kwargs)

    def check_input_values(self, values: np.ndarray, where: str) -> None:
        if values.size and (values.min() < 0 or values.max() >= self.num_tokens
                            or (values.dtype.kind == "f" and not np.all(values == np.round(values)))):
            raise ValueError(f"{where} feeds layer {self.name!r} (CategoryEncoding, num_tokens={self.num_tokens}) "
                             f"values in [{values.min():g}, {values.max():g}]; they must be integer ids in "
                             f"[0, {self.num_tokens})")

    def call(self, inputs, count_weights=None):
        ids = ops.cast(inputs, "int64")
        shape = ops.shape(ids)
        if self.output_mode == "one_hot":
            if len(shape) > 1 and shape[-1] == 1:
                ids = ops.squeeze(ids, -1)
            return ops.one_hot(ids, self.num_tokens)
        if count_weights is not None and self.output_mode != "count":
            raise ValueError(f"CategoryEncoding {self.name!r}: count_weights is used only with "
                             f"output_mode='count', got output_mode={self.output_mode!r}")
        if not shape:
            ids = ops.expand_dims(ids, 0)
        hot = ops.one_hot(ids, self.num_tokens)  # (..., k, num_tokens)
        if self.output_mode == "multi_hot":
            return ops.max(hot, axis=-2)
        if count_weights is not None:
            weights = count_weights if not isinstance(count_weights, (np.ndarray, list)) \
                else ops.convert(np.asarray(count_weights, dtype=np.float64))
            hot = ops.multiply(hot, ops.expand_dims(ops.cast(weights, ops.current_backend().dtype), -1))
        return ops.sum(hot, axis=-2)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if self.output_mode == "one_hot" and (len(input_shape) == 1 or input_shape[-1] != 1):
            return (*input_shape, self.num_tokens)
        return (*input_shape[:-1], self.num_tokens)


# ------------------------------------------------------------------ vocabulary lookups

class _Vocabulary:
    """The token <-> index table of the lookup layers and TextVectorization (not a layer).

    Indices: ``[mask]`` (int output mode with a mask token only), then ``num_oov_indices`` OOV
    slots, then the tokens. ``kind`` is "string" or "int".
    """

    def __init__(self, where: str, kind: str, max_tokens, num_oov_indices, mask_token, oov_token, output_mode,
                 pad_to_max_tokens, invert):
        self.where, self.kind = where, kind
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"{where}: max_tokens must be None or an integer > 1, got max_tokens={max_tokens!r}")
        if num_oov_indices < 0:
            raise ValueError(f"{where}: num_oov_indices must be a non-negative integer, got "
                             f"num_oov_indices={num_oov_indices!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{where}: pad_to_max_tokens=True needs max_tokens")
        if invert and output_mode != "int":
            raise ValueError(f"{where}: invert=True needs output_mode='int', got output_mode={output_mode!r}")
        self.max_tokens, self.num_oov_indices = max_tokens, int(num_oov_indices)
        self.mask_token, self.oov_token = mask_token, oov_token
        self.output_mode, self.pad_to_max_tokens, self.invert = output_mode, bool(pad_to_max_tokens), bool(invert)
        self.tokens: list | None = None          # the vocabulary without the special tokens
        self.idf: np.ndarray | None = None       # tf_idf: one weight per index (special ones included)
        self.given = False                       # set by the constructor's vocabulary: adapt refused
        self.reset_counts()

    # indices
    @property
    def oov_start(self) -> int:
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    @property
    def token_start(self) -> int:
        return self.oov_start + self.num_oov_indices

    def size(self) -> int:
        return self.token_start + len(self.tokens or ())

    def depth(self) -> int:
        """The length of encoded vectors (non-int output modes)."""
        if self.pad_to_max_tokens:
            return int(self.max_tokens)
        if self.tokens is None:
            raise RuntimeError(f"{self.where}: output_mode={self.output_mode!r} needs a vocabulary to size its "
                               "outputs: call adapt() or pass vocabulary= first")
        return self.size()

    def get(self, include_special_tokens: bool = True) -> list:
        tokens = list(self.tokens or ())
        if not include_special_tokens:
            return tokens
        specials = [self.mask_token] * self.oov_start + [self.oov_token] * self.num_oov_indices
        return specials + tokens

    # vocabulary from data
    def reset_counts(self) -> None:
        self._counts: collections.Counter = collections.Counter()
        self._doc_counts: collections.Counter = collections.Counter()
        self._docs = 0

    def count(self, docs: Iterable[Sequence]) -> None:
        """Add the tokens of each document (a sequence of tokens) to the counts."""
        if self.given:
            raise ValueError(f"{self.where}: cannot adapt a layer given a vocabulary (the vocabulary argument or "
                             "set_vocabulary()), as in Keras; create it without one to learn it")
        for doc in docs:
            doc = list(doc)
            self._counts.update(doc)
            if self.output_mode == "tf_idf":
                self._doc_counts.update(set(doc))
                self._docs += 1

    def finalize(self) -> None:
        counts = dict(self._counts)
        for special in (self.mask_token, self.oov_token):
            counts.pop(special, None)
        key = (lambda t: t.encode("utf-8")) if self.kind == "string" else (lambda t: t)
        ranked = sorted(counts, key=lambda t: (counts[t], key(t)), reverse=True)  # Keras: count, then token, desc
        if self.max_tokens is not None:
            ranked = ranked[:max(int(self.max_tokens) - self.token_start, 0)]
        self.tokens = ranked
        if self.output_mode == "tf_idf":
            idf = np.log(1.0 + self._docs / (1.0 + np.array([self._doc_counts[t] for t in ranked], np.float64)))
            self.idf = self._pad_idf(idf)
        self.reset_counts()
        self._index()

    # vocabulary given
    def set(self, vocabulary, idf_weights=None) -> None:
        where = self.where
        if isinstance(vocabulary, str):  # a file, one token per line (Keras)
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = f.read().splitlines()
            while vocabulary and vocabulary[-1] == "":
                vocabulary.pop()
        values = _to_numpy(vocabulary).reshape(-1).tolist()
        values = [self._token(v) for v in values]
        if not values:
            raise ValueError(f"{where}: cannot set an empty vocabulary")
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise ValueError(f"{where}: output_mode='tf_idf' with a vocabulary needs idf_weights")
        if idf_weights is not None and self.output_mode != "tf_idf":
            raise ValueError(f"{where}: idf_weights are used only with output_mode='tf_idf', got "
                             f"output_mode={self.output_mode!r}")
        specials = self.get()[:self.token_start]
        found_specials = values[:self.token_start] == specials
        tokens = values[self.token_start:] if found_specials else values
        repeated = [t for t, n in collections.Counter(tokens).items() if n > 1]
        if repeated:
            raise ValueError(f"{where}: the vocabulary repeats {repeated[:10]}; each token must appear once")
        if self.mask_token is not None and self.mask_token in tokens:
            raise ValueError(f"{where}: the mask token {self.mask_token!r} is in the vocabulary; leave the mask and "
                             f"OOV tokens out, or put them first in this order: {specials}")
        if self.oov_token is not None and self.invert and self.oov_token in tokens:
            raise ValueError(f"{where}: the OOV token {self.oov_token!r} is in the vocabulary; leave the mask and "
                             f"OOV tokens out, or put them first in this order: {specials}")
        if self.max_tokens is not None and self.token_start + len(tokens) > self.max_tokens:
            raise ValueError(f"{where}: a vocabulary of {self.token_start + len(tokens)} entries (special tokens "
                             f"included) is larger than max_tokens={self.max_tokens}")
        self.tokens = tokens
        if idf_weights is not None:
            idf = np.asarray(_to_numpy(idf_weights), dtype=np.float64).reshape(-1)
            if len(idf) != len(values):
                raise ValueError(f"{where}: idf_weights has {len(idf)} entries for a vocabulary of {len(values)}")
            if found_specials:
                back = (self.max_tokens - len(idf)) if self.pad_to_max_tokens else 0
                self.idf = np.pad(idf, (0, max(back, 0)))
            else:
                self.idf = self._pad_idf(idf)
        self._index()

    def _pad_idf(self, idf: np.ndarray) -> np.ndarray:
        """Token idf weights with the special indices in front (their mean) and zeros up to max_tokens."""
        front = np.full(self.token_start, idf.mean() if len(idf) else 0.0)
        out = np.concatenate([front, idf])
        if self.pad_to_max_tokens:
            out = np.pad(out, (0, max(int(self.max_tokens) - len(out), 0)))
        return out

    def _token(self, value):
        if self.kind == "string":
            return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)
        if isinstance(value, (bool, np.bool_)) or not float(value).is_integer():
            raise ValueError(f"{self.where}: vocabulary entries must be integers, got {value!r}")
        return int(value)

    def _index(self) -> None:
        keys = np.asarray(self.tokens, dtype=str if self.kind == "string" else np.int64)
        order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[order]
        self._sorted_index = order.astype(np.int64) + self.token_start

    # lookups
    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Tokens -> int64 indices (same shape); masked entries -> -1 outside the int output mode."""
        if self.tokens is None:
            raise RuntimeError(f"{self.where}: the layer has no vocabulary yet: call adapt() or pass vocabulary=")
        flat = values.reshape(-1)
        keys = self._sorted_keys
        if len(keys):
            pos = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
            found = keys[pos] == flat
            out = np.where(found, self._sorted_index[pos], -1)
        else:
            found, out = np.zeros(flat.shape, bool), np.full(flat.shape, -1, np.int64)
        missing = ~found
        if self.mask_token is not None:
            masked = flat == self.mask_token
            missing &= ~masked
        if missing.any():
            if self.num_oov_indices == 0:
                bad = flat[missing][:5].tolist()
                raise ValueError(f"{self.where}: with num_oov_indices=0 every input must be in the vocabulary; "
                                 f"found out-of-vocabulary values {bad}. Set num_oov_indices=1")
            if self.num_oov_indices == 1:
                out[missing] = self.oov_start
            else:  # IntegerLookup: floor modulo, as Keras's "floormod" oov_method
                out[missing] = np.mod(flat[missing].astype(np.int64), self.num_oov_indices) + self.oov_start
        if self.mask_token is not None:
            out[masked] = 0 if self.output_mode == "int" else -1
        return out.reshape(values.shape).astype(np.int64)

    def tokens_of(self, ids: np.ndarray) -> np.ndarray:
        """int64 indices -> tokens (invert=True): unknown indices give the OOV token."""
        if self.tokens is None:
            raise RuntimeError(f"{self.where}: the layer has no vocabulary yet: pass vocabulary=")
        ids = np.asarray(ids)
        if ids.dtype.kind == "f":
            if not np.all(ids == np.round(ids)):
                raise ValueError(f"{self.where}: invert=True takes integer indices, got non-integer values")
            ids = ids.astype(np.int64)
        table = self.get()  # mask (index 0, if any), the OOV slots (the OOV token), the tokens
        out = np.empty(ids.shape, dtype=object if self.kind == "string" else np.int64)
        flat, target = ids.reshape(-1), out.reshape(-1)
        for i, index in enumerate(flat.tolist()):
            target[i] = table[index] if 0 <= index < len(table) else self.oov_token
        return out.astype(str) if self.kind == "string" else out

    def encode(self, rows: Sequence[np.ndarray], single: bool) -> np.ndarray:
        """Per-sample index arrays -> (samples, depth) float32 multi_hot / count / tf_idf vectors."""
        depth = self.depth()
        out = np.zeros((len(rows), depth), dtype=np.float64)
        for i, row in enumerate(rows):
            row = row[(row >= 0) & (row < depth)]  # masked entries (-1) are left out
            if self.output_mode == "multi_hot":
                out[i, row] = 1.0
            else:
                np.add.at(out[i], row, 1.0)
        if self.output_mode == "tf_idf":
            out = out * self.idf[:depth]
        out = out.astype(np.float32)
        return out[0] if single else out

    def one_hot(self, indices: np.ndarray) -> np.ndarray:
        depth = self.depth()
        if indices.ndim > 1 and indices.shape[-1] == 1:
            indices = indices[..., 0]
        hot = (indices[..., None] == np.arange(depth)).astype(np.float32)
        return hot

    def config(self) -> dict[str, Any]:
        return {"vocabulary": None if self.tokens is None else list(self.tokens),
                "idf_weights": None if self.idf is None else self.idf[self.token_start:self.size()].tolist()}


class _IndexLookup(_HostLayer):
    """What StringLookup and IntegerLookup share: arguments, adapt, the vocabulary methods, encoding."""

    _kind = "string"

    def _setup(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
               output_mode, pad_to_max_tokens, sparse) -> None:
        where = type(self).__name__
        output_mode = _output_mode(where, output_mode)
        _no_sparse(where, sparse)
        self._vocab = _Vocabulary(where, self._kind, max_tokens, num_oov_indices, mask_token, oov_token,
                                  output_mode, pad_to_max_tokens, invert)
        self.max_tokens, self.num_oov_indices = max_tokens, num_oov_indices
        self.mask_token, self.oov_token = mask_token, oov_token
        self.output_mode, self.pad_to_max_tokens, self.invert = output_mode, bool(pad_to_max_tokens), bool(invert)
        if vocabulary is not None:
            self._vocab.set(vocabulary, idf_weights)
            self._vocab.given = True
        elif idf_weights is not None:
            raise ValueError(f"{where}: idf_weights are given with a vocabulary only")
        self._config_args = {"max_tokens": max_tokens, "num_oov_indices": num_oov_indices,
                             "mask_token": mask_token, "oov_token": oov_token, "output_mode": output_mode,
                             "pad_to_max_tokens": self.pad_to_max_tokens, "invert": self.invert}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._vocab.config()}

    # vocabulary
    def adapt(self, data, steps: int | None = None) -> None:
        """Learn the vocabulary of ``data``: an array, list or tensor, or an iterable of batches
        (the first ``steps`` of them when given). Replaces the learned vocabulary."""
        self._vocab.reset_counts()
        direct = isinstance(data, (np.ndarray, list, tuple)) or _is_tensor(data)
        for i, batch in enumerate(_batches(data)):
            if steps is not None and i >= steps:
                break
            batch = self._host_values(batch)
            if batch.ndim == 0:
                batch = batch.reshape(1)
            if batch.ndim == 1:  # one document per element (an array) or per batch (an iterable), as Keras
                batch = batch[:, None] if direct else batch[None, :]
            self._vocab.count(list(row.reshape(-1).tolist()) for row in batch)
        self._vocab.finalize()

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary; with the special tokens, an entry's position is its index."""
        return self._vocab.get(include_special_tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Set the vocabulary (a list, an array, or a text file with one token per line)."""
        self._vocab.set(vocabulary, idf_weights)

    def vocabulary_size(self) -> int:
        """Entries in the vocabulary, the mask and OOV indices included."""
        return self._vocab.size()

    def _host_values(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def host_call(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if self.invert:
            return self._vocab.tokens_of(values)
        indices = self._vocab.lookup(self._host_values(values))
        return _encode(self._vocab, indices, self.output_mode)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if self.output_mode == "int":
            return input_shape
        depth = self._vocab.depth()
        if self.output_mode == "one_hot" and not (len(input_shape) > 1 and input_shape[-1] == 1):
            return (*input_shape, depth)
        return (*input_shape[:-1], depth)


def _encode(vocab: _Vocabulary, indices: np.ndarray, output_mode: str) -> np.ndarray:
    """int64 indices -> the layer's output for ``output_mode`` (Keras's encode_categorical_inputs)."""
    if output_mode == "int":
        return indices
    if output_mode == "one_hot":
        return vocab.one_hot(indices)
    if indices.ndim == 0:
        indices = indices.reshape(1)
    if indices.ndim == 1:  # one sample (Keras)
        return vocab.encode([indices], single=True)
    lead = indices.shape[:-1]
    rows = list(indices.reshape(-1, indices.shape[-1]))
    return vocab.encode(rows, single=False).reshape(*lead, -1)


class StringLookup(_IndexLookup):
    """Maps strings to integer indices through a vocabulary (adapted, or given); a host layer.

    Indices: the mask token (if any, in int mode) is 0; then ``num_oov_indices`` OOV indices
    (strings not in the vocabulary); then the vocabulary, most frequent first. With
    ``invert=True`` the layer maps indices back to strings.

    Args:
        max_tokens: the largest vocabulary, special tokens included (None: no limit).
        num_oov_indices: 0 (unknown strings are an error) or 1 (default). Keras's FarmHash
            bucketing of several OOV indices is not reproduced: more than 1 is refused.
        mask_token: a string mapped to index 0 (int mode), or None (default: no mask).
        oov_token: the string an unknown index maps back to with ``invert=True``, default "[UNK]".
        vocabulary: a list/array of strings or a text file path (one per line), default None
            (learn it with ``adapt``).
        idf_weights: with output_mode "tf_idf" and a given vocabulary, one weight per token.
        invert: map indices to strings (default False; output_mode must be "int").
        output_mode: "int" (default: int64 indices, same shape), "one_hot", "multi_hot",
            "count" or "tf_idf" (float32 vectors of the vocabulary's size; a rank-1 input is one
            sample, as in Keras).
        pad_to_max_tokens: encode to max_tokens entries whatever the vocabulary size (default False).
        sparse: only False. encoding: of bytes inputs, default "utf-8".

    Input shape: any array of strings (or bytes). Output shape: as the input ("int"), or
    (..., vocabulary size) for the encodings.

    Keras computes this on TensorFlow's CPU lookup tables; unidl computes it in NumPy on every
    backend (``host_call``), with the same vocabulary and indices. Multi-hot/count outputs
    are float32 here (int64 in Keras).
    """

    def __init__(self, max_tokens: int | None = None, num_oov_indices: int = 1, mask_token: str | None = None,
                 oov_token: str = "[UNK]", vocabulary=None, idf_weights=None, invert: bool = False,
                 output_mode: str = "int", pad_to_max_tokens: bool = False, sparse: bool = False,
                 encoding: str = "utf-8", **kwargs: Any):
        super().__init__(**kwargs)
        if num_oov_indices > 1:
            raise ValueError(f"StringLookup: num_oov_indices={num_oov_indices} needs TensorFlow's FarmHash "
                             "bucketing of strings, which unidl does not reproduce; use 0 or 1 (or map strings to "
                             "integers first and use IntegerLookup, whose buckets are value % num_oov_indices)")
        self.encoding = encoding
        self._setup(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                    output_mode, pad_to_max_tokens, sparse)
        self._config_args["encoding"] = encoding

    def _host_values(self, values: np.ndarray) -> np.ndarray:
        return _as_text(np.asarray(values), self.encoding).astype(str) if np.asarray(values).size else \
            np.asarray(values, dtype=str)


class IntegerLookup(_IndexLookup):
    """Maps integer keys (any values: user ids, years, codes) to contiguous indices; a host layer.

    Indices: the mask token (if any, in int mode) is 0; then ``num_oov_indices`` OOV indices;
    then the vocabulary, most frequent first. A key not in the vocabulary goes to the OOV
    index ``key mod num_oov_indices`` (Keras's "floormod"). With ``invert=True`` the layer maps
    indices back to keys.

    Args:
        max_tokens: the largest vocabulary, special tokens included (None: no limit).
        num_oov_indices: default 1; 0 makes unknown keys an error.
        mask_token: an integer mapped to index 0 (int mode), or None (default).
        oov_token: the key an unknown index maps back to with ``invert=True``, default -1.
        vocabulary: a list/array of integers or a text file path, default None (learn it with ``adapt``).
        vocabulary_dtype: "int64" (default) or "int32"; outputs are int64 either way.
        idf_weights: with output_mode "tf_idf" and a given vocabulary, one weight per key.
        invert: map indices to keys (default False; output_mode must be "int").
        output_mode: "int" (default), "one_hot", "multi_hot", "count" or "tf_idf".
        pad_to_max_tokens: default False. sparse: only False.

    Input shape: any array of integers. Output shape: as the input ("int"), or
    (..., vocabulary size) for the encodings.

    Keras runs it on TensorFlow lookup tables; unidl in NumPy (``host_call``), same indices.
    """

    _kind = "int"

    def __init__(self, max_tokens: int | None = None, num_oov_indices: int = 1, mask_token: int | None = None,
                 oov_token: int = -1, output_mode: str = "int", pad_to_max_tokens: bool = False, vocabulary=None,
                 vocabulary_dtype: str = "int64", idf_weights=None, invert: bool = False, sparse: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.vocabulary_dtype = _check_choice("IntegerLookup", "vocabulary_dtype", vocabulary_dtype,
                                              ("int64", "int32"))
        self._setup(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert,
                    output_mode, pad_to_max_tokens, sparse)
        self._config_args["vocabulary_dtype"] = vocabulary_dtype

    def _host_values(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if values.dtype.kind in "iub":
            return values.astype(np.int64)
        try:
            floats = values.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"IntegerLookup {self.name!r} takes integers, got values of dtype {values.dtype}; "
                             "use StringLookup for strings") from None
        if not np.all(floats == np.round(floats)):
            raise ValueError(f"IntegerLookup {self.name!r} takes integers, got non-integer values")
        return floats.astype(np.int64)


# ------------------------------------------------------------------ TextVectorization

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_STRIP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ASCII_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")


class TextVectorization(_HostLayer):
    """Turns raw strings into token ids (or multi-hot, count, tf-idf vectors); a host layer.

    Each string is standardized, split into tokens, optionally extended with n-grams, and the
    tokens are looked up in a vocabulary learned with ``adapt`` (or given):

    * standardize "lower_and_strip_punctuation" (default): ASCII letters lowercased and ASCII
      punctuation (``string.punctuation``) removed, exactly as Keras's TensorFlow ops do;
      "lower", "strip_punctuation", None, or a callable ``str -> str``.
    * split "whitespace" (default: runs of ASCII whitespace, no empty tokens), "character"
      (one token per Unicode character), None (the whole string is one token), or a callable
      ``str -> list[str]``.
    * ngrams: None, n (all 1..n-grams) or a tuple of widths: the tokens of each width, widths in
      order, joined by a space.

    Indices (int mode): 0 is padding (the mask token ""), 1 the OOV token "[UNK]", then the
    vocabulary, most frequent first, ties in decreasing UTF-8 order (as Keras). max_tokens counts
    both special tokens.

    Args:
        max_tokens: the largest vocabulary, special tokens included (None: no limit).
        standardize, split, ngrams: see above.
        output_mode: "int" (default: int64 ids, one row per string, padded with 0), "multi_hot",
            "count", "tf_idf" (float32 vectors of the vocabulary's size) or "one_hot" (with
            split=None only: one token per string).
        output_sequence_length: int mode only: pad or truncate every row to this length (None:
            the longest row of the batch).
        pad_to_max_tokens: encode to max_tokens entries (default False).
        vocabulary: a list of tokens (or a file path), default None (learn it with ``adapt``).
        idf_weights: tf_idf mode with a given vocabulary: one weight per token.
        sparse, ragged: only False (dense, padded outputs). encoding: of bytes inputs, "utf-8".

    Input shape: (batch,) or (batch, 1) strings, or one string. Output shape: (batch,
    output_sequence_length) ids, or (batch, vocabulary size); a single string gives one row
    without the batch axis, as Keras.

    Keras runs it with TensorFlow string ops; unidl in NumPy and Python (``host_call``) with the
    same tokens, vocabulary and ids, on every backend. Encoded vectors are float32 here.
    """

    def __init__(self, max_tokens: int | None = None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode: str = "int", output_sequence_length: int | None = None,
                 pad_to_max_tokens: bool = False, vocabulary=None, idf_weights=None, sparse: bool = False,
                 ragged: bool = False, encoding: str = "utf-8", **kwargs: Any):
        super().__init__(**kwargs)
        where = "TextVectorization"
        if not callable(standardize) and standardize is not None:
            _check_choice(where, "standardize", standardize, ("lower_and_strip_punctuation", "lower",
                                                              "strip_punctuation"))
        if not callable(split) and split is not None:
            _check_choice(where, "split", split, ("whitespace", "character"))
        if ngrams is None:
            widths = None
        elif isinstance(ngrams, (int, np.integer)) and not isinstance(ngrams, bool) and ngrams >= 1:
            widths = tuple(range(1, int(ngrams) + 1))
        elif isinstance(ngrams, (tuple, list)) and ngrams and all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in ngrams):
            widths = tuple(int(n) for n in ngrams)
        else:
            raise ValueError(f"{where}: ngrams must be None, a positive integer or a tuple of them, got "
                             f"ngrams={ngrams!r}")
        output_mode = _output_mode(where, output_mode)
        if output_sequence_length is not None:
            if output_mode != "int":
                raise ValueError(f"{where}: output_sequence_length is for output_mode='int' only, got "
                                 f"output_mode={output_mode!r}")
            if output_sequence_length < 1:
                raise ValueError(f"{where}: output_sequence_length must be a positive integer or None, got "
                                 f"output_sequence_length={output_sequence_length!r}")
        if output_mode == "one_hot" and split is not None:
            raise ValueError(f"{where}: output_mode='one_hot' encodes one token per string, so it needs "
                             f"split=None; for split text use 'multi_hot' or 'count'")
        _no_sparse(where, sparse)
        if ragged:
            raise ValueError(f"{where}: ragged=True is not supported: unidl's outputs are dense, padded rows "
                             "(ragged=False)")
        self.max_tokens, self.standardize, self.split = max_tokens, standardize, split
        self.ngrams, self._widths = ngrams, widths
        self.output_mode, self.output_sequence_length = output_mode, output_sequence_length
        self.pad_to_max_tokens, self.encoding = bool(pad_to_max_tokens), encoding
        self._vocab = _Vocabulary(where, "string", max_tokens, 1, "", "[UNK]", output_mode, pad_to_max_tokens,
                                  False)
        if vocabulary is not None:
            self._vocab.set(vocabulary, idf_weights)
            self._vocab.given = True
        elif idf_weights is not None:
            raise ValueError(f"{where}: idf_weights are given with a vocabulary only")
        self._config_args = {"max_tokens": max_tokens, "standardize": standardize, "split": split,
                             "ngrams": list(ngrams) if isinstance(ngrams, tuple) else ngrams,
                             "output_mode": output_mode, "output_sequence_length": output_sequence_length,
                             "pad_to_max_tokens": self.pad_to_max_tokens, "encoding": encoding}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._vocab.config()}

    # text -> tokens
    def _standardize(self, text: str) -> str:
        mode = self.standardize
        if mode in ("lower", "lower_and_strip_punctuation"):
            text = text.translate(_ASCII_LOWER)
        if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
            text = text.translate(_STRIP_PUNCTUATION)
        if callable(mode):
            text = mode(text)
        return text

    def _tokens(self, text: str) -> list[str]:
        text = self._standardize(text)
        if self.split is None:
            tokens = [text]
        elif self.split == "whitespace":
            tokens = [t for t in _ASCII_WHITESPACE.split(text) if t]
        elif self.split == "character":
            tokens = list(text)
        else:
            tokens = list(self.split(text))
        if self._widths is None:
            return tokens
        return [" ".join(tokens[i:i + n]) for n in self._widths for i in range(len(tokens) - n + 1)]

    def _documents(self, values: np.ndarray) -> tuple[list[list[str]], bool]:
        """The token list of each string; True when the input was a single string."""
        values = _as_text(np.asarray(values, dtype=object if np.asarray(values).dtype.kind not in "US" else None),
                          self.encoding)
        single = values.ndim == 0
        if single:
            values = values.reshape(1)
        if values.ndim > 1:
            if values.shape[-1] != 1 or values.ndim > 2:
                raise ValueError(f"TextVectorization {self.name!r} takes strings of shape (batch,) or (batch, 1), "
                                 f"got shape {values.shape}")
            values = values[:, 0]
        return [self._tokens(v) for v in values.tolist()], single

    # vocabulary
    def adapt(self, data, batch_size: int | None = None, steps: int | None = None) -> None:
        """Learn the vocabulary (and the idf weights in tf_idf mode) of ``data``: strings as an array or
        list (one document each), or an iterable of such batches (the first ``steps`` when given)."""
        self._vocab.reset_counts()
        for i, batch in enumerate(_batches(data)):
            if steps is not None and i >= steps:
                break
            docs, _ = self._documents(batch)
            self._vocab.count(docs)
        self._vocab.finalize()

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The vocabulary; with the special tokens ("" and "[UNK]" in int mode), a token's position is its id."""
        return self._vocab.get(include_special_tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        self._vocab.set(vocabulary, idf_weights)

    def vocabulary_size(self) -> int:
        return self._vocab.size()

    # strings -> ids
    def host_call(self, values: np.ndarray) -> np.ndarray:
        docs, single = self._documents(values)
        rows = [self._vocab.lookup(np.asarray(doc, dtype=str)) if doc else np.zeros(0, np.int64)
                for doc in docs]
        if self.output_mode == "one_hot":
            out = self._vocab.one_hot(np.concatenate(rows) if rows else np.zeros(0, np.int64))
            return out[0] if single else out
        if self.output_mode != "int":
            return self._vocab.encode(rows, single)
        length = self.output_sequence_length
        if self.split is None and length is None:  # one id per string, in the input's shape (Keras)
            shape = np.shape(values)
            ids = np.concatenate(rows) if rows else np.zeros(0, np.int64)
            return ids.reshape(shape[:2] if len(shape) > 1 else shape) if not single else ids[0]
        if length is None:
            length = max((len(r) for r in rows), default=0)
        out = np.zeros((len(rows), length), dtype=np.int64)  # 0: padding (the mask token "")
        for i, row in enumerate(rows):
            row = row[:length]
            out[i, :len(row)] = row
        return out[0] if single else out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        batch = input_shape[0] if input_shape else None
        if self.output_mode == "int" and self.split is None and self.output_sequence_length is None:
            return tuple(input_shape)
        if self.output_mode == "int":
            return (batch, self.output_sequence_length)
        return (batch, self._vocab.depth())

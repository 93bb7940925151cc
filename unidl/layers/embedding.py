"""Embedding: integer ids to dense vectors."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, ops, regularizers
from .base import Layer, Shape


def _positive_int(where: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{where}: {name} must be a positive integer, got {name}={value!r}")
    return int(value)


class Embedding(Layer):
    """Turns integer ids into dense vectors: ``output[..., :] = embeddings[ids[...]]``.

    Args:
        input_dim: vocabulary size; ids must lie in ``[0, input_dim)``.
        output_dim: size of each vector.
        embeddings_initializer: default "random_uniform", i.e. uniform(-0.05, 0.05)
            (Keras's "uniform").
        embeddings_regularizer: default None.
        mask_zero: id 0 is padding (default False): the output then carries a mask, False where
            the id is 0, which later layers (LSTM, pooling, attention, the loss) honour, as in Keras.

    Weights: embeddings of shape (input_dim, output_dim).

    Input shape: (batch, ...) of ids. Integer tensors are used as they are; floating
    ones (the training loop hands ids over in the compute dtype) are cast to int64,
    which is exact for ids below 2**24 in float32 (2**53 in float64).
    Output shape: (batch, ..., output_dim).

    PyTorch's ``nn.Embedding`` stores the same (num_embeddings, embedding_dim) table
    but initializes it from normal(0, 1).
    """

    autocast_inputs = False  # ids: bfloat16 would round those above 256 (mixed precision)

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="random_uniform",
                 embeddings_regularizer=None, mask_zero: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.mask_zero = bool(mask_zero)
        self.input_dim = _positive_int("Embedding", "input_dim", input_dim)
        self.output_dim = _positive_int("Embedding", "output_dim", output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self._config_args = {"input_dim": self.input_dim, "output_dim": self.output_dim,
                        "embeddings_initializer": embeddings_initializer,
                        "embeddings_regularizer": embeddings_regularizer, "mask_zero": self.mask_zero}

    def build(self, input_shape: Shape) -> None:
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer, self.embeddings_regularizer)

    def check_input_values(self, values: np.ndarray, where: str) -> None:
        if not values.size:
            return
        low, high = values.min(), values.max()
        if low < 0 or high >= self.input_dim or (values.dtype.kind == "f" and not np.all(values == np.round(values))):
            bad = np.flatnonzero(((values < 0) | (values >= self.input_dim) | (values != np.round(values)))
                                 .reshape(len(values), -1).any(axis=1))
            raise ValueError(f"{where} feeds layer {self.name!r} (Embedding, input_dim={self.input_dim}) ids in "
                             f"[{low:g}, {high:g}]; ids must be integers in [0, {self.input_dim}) (sample "
                             f"{bad[0]} is the first with one outside). Raise input_dim, or map the ids into range")

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs, 0) if self.mask_zero else None

    def call(self, inputs):
        # cast: ids may arrive as floats in the compute dtype; ops.take needs integers
        return ops.take(self.embeddings, ops.cast(inputs, "int64"), axis=0)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape, self.output_dim)


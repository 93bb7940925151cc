"""The NumPy backend's GradientTape: ops record while it is entered; gradients by the tape's reverse pass."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import tape as ad
from .tape import Tensor


class NumpyGradientTape:
    def __init__(self, backend, persistent: bool = False):
        self.backend = backend
        self._recording = ad.enable_grad()

    def __enter__(self) -> "NumpyGradientTape":
        self._recording.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._recording.__exit__(*exc)

    def watch(self, tensor: Any) -> None:
        if type(tensor) is not Tensor:
            raise TypeError(f"GradientTape.watch takes a tensor of the numpy backend, got {type(tensor).__name__}")
        tensor.requires_grad = True  # a leaf from now on, as tf.GradientTape.watch makes it

    def gradient(self, target: Any, sources: Sequence[Tensor]) -> list[Tensor]:
        target = target if type(target) is Tensor else Tensor(np.asarray(target))
        if target.data.size != 1:
            target = ad.sum(target)  # as tf.GradientTape: the gradient of the sum of a non-scalar target
        return self.backend._backprop(target, list(sources))

"""The torch backend's GradientTape: autograd records anyway; gradients through torch.autograd.grad."""
from __future__ import annotations

from typing import Any, Sequence

import torch


class TorchGradientTape:
    def __init__(self, backend, persistent: bool = False):
        self.persistent = persistent
        self._enabled = torch.enable_grad()

    def __enter__(self) -> "TorchGradientTape":
        self._enabled.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._enabled.__exit__(*exc)

    def watch(self, tensor: Any) -> None:
        if not tensor.requires_grad:
            tensor.requires_grad_(True)  # a leaf tensor: autograd records from here on

    def gradient(self, target, sources: Sequence[Any]) -> list:
        if target.numel() != 1:
            target = target.sum()  # as tf.GradientTape: the gradient of the sum of a non-scalar target
        wanted = [s for s in sources if s.requires_grad]
        if not (wanted and target.requires_grad):
            return [torch.zeros_like(s) for s in sources]
        found = iter(torch.autograd.grad(target, wanted, allow_unused=True, materialize_grads=True,
                                         retain_graph=self.persistent))
        return [next(found) if s.requires_grad else torch.zeros_like(s) for s in sources]

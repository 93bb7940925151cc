"""The TensorFlow backend's GradientTape: a tf.GradientTape, paused by the backend's no_grad like its own."""
from __future__ import annotations

import contextlib
from typing import Any, Sequence


class TensorFlowGradientTape:
    def __init__(self, backend, persistent: bool = False):
        self.backend = backend
        self.tape = backend.tf.GradientTape(persistent=persistent)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "TensorFlowGradientTape":
        self._stack.enter_context(self.tape)
        self._stack.enter_context(self.backend._recording(self.tape))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def watch(self, tensor: Any) -> None:
        self.tape.watch(tensor)

    def gradient(self, target, sources: Sequence[Any]) -> list:
        tf = self.backend.tf
        grads = self.tape.gradient(target, list(sources), unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return self.backend._dense(grads)

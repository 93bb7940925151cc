"""The ``mixed`` family of the conformance kit: mixed precision on a backend that offers it.

A backend declaring ``mixed_precision_dtypes`` (e.g. ("bfloat16", "float16")) is
checked in each of them, on small models covering dense, convolution, pooling,
normalization and recurrent layers:

* ``forward``: ``predict`` under ``dtype_policy="mixed_<dtype>"`` vs the float64
  reference with the same weights, within FORWARD_BF16 / FORWARD_F16, with float32
  outputs; and off the reference by more than float32 rounding, so the compute
  really ran in the half dtype;
* ``trajectory``: one SGD step under the policy (after any steps float16's loss
  scaling skips for overflow) keeps the weights float32 and moves the trainable
  ones as the reference's step does (the displacement, relative to its largest
  entry, within the same tolerance). One step, because half-precision
  trajectories drift apart chaotically over many (BatchNormalization on a small
  batch amplifies every rounding): the step is the gradient, checked.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

import unidl
from unidl import layers
from unidl.backend import HALF_DTYPES, Backend

from . import tolerances
from .checks import ConformanceError, compare
from .tolerances import Tolerance

__all__ = ["MixedCase", "mixed_cases", "check_mixed_forward", "check_mixed_training"]

STEPS = 1


def _dense() -> unidl.Sequential:
    return unidl.Sequential([layers.Dense(16, activation="relu", input_shape=(6,)), layers.BatchNormalization(),
                             layers.Dense(3, activation="softmax")], seed=3)


def _conv() -> unidl.Sequential:
    return unidl.Sequential([layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
                             layers.MaxPooling2D(2), layers.Flatten(), layers.LayerNormalization(),
                             layers.Dense(3, activation="softmax")], seed=3)


def _recurrent() -> unidl.Sequential:
    return unidl.Sequential([layers.LSTM(5, return_sequences=True, input_shape=(4, 3)), layers.SimpleRNN(4),
                             layers.Dense(3, activation="softmax")], seed=3)


MODELS: dict[str, tuple[Callable[[], unidl.Sequential], tuple[int, ...]]] = {
    "dense": (_dense, (6,)), "conv": (_conv, (6, 6, 2)), "recurrent": (_recurrent, (4, 3))}


class MixedCase(NamedTuple):
    item: str   # the half dtype, "bfloat16" or "float16"
    name: str   # the model, a key of MODELS

    def describe(self) -> str:
        return f"dtype_policy='mixed_{self.item}', model {self.name}"


def mixed_cases(backend_name: str, dtype: str) -> list[MixedCase]:
    """The cases of a float32 target (a backend declaring no half dtype skips them: see ``_require``)."""
    if dtype != "float32":
        return []
    return [MixedCase(half, model) for half in HALF_DTYPES for model in MODELS]


def _require(backend: Backend, case: MixedCase) -> None:
    # Which half dtypes a backend offers is a class attribute, known once it is built.
    if case.item not in backend.mixed_precision_dtypes:
        import pytest
        pytest.skip(f"backend {backend.name!r} declares no mixed precision in {case.item} "
                    f"(mixed_precision_dtypes={backend.mixed_precision_dtypes})")


def _tolerance(case: MixedCase) -> Tolerance:
    return tolerances.FORWARD_BF16 if case.item == "bfloat16" else tolerances.FORWARD_F16


def _data(case: MixedCase, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, *MODELS[case.name][1]))
    return x, np.eye(3)[rng.integers(0, 3, n)]


def _label(backend: Backend, case: MixedCase, what: str) -> str:
    return f"backend {backend.name!r}, mixed:{case.item}, case {case.name!r} [{case.describe()}]: {what}"


def _model(case: MixedCase, backend: Any, policy: str | None) -> unidl.Sequential:
    model = MODELS[case.name][0]()
    model.compile(optimizer=unidl.optimizers.SGD(0.1), loss="categorical_crossentropy", backend=backend,
                  dtype="float64" if policy is None else "float32", dtype_policy=policy)
    return model


def check_mixed_forward(backend: Backend, reference: Backend, case: MixedCase) -> None:
    _require(backend, case)
    x, _ = _data(case)
    tol = _tolerance(case)
    out = _model(case, backend, f"mixed_{case.item}").predict(x)
    expected = _model(case, reference, None).predict(x)
    compare(_label(backend, case, "forward (predict) vs the float64 reference"), out, expected, tol, dtype="float32")
    if np.abs(out - expected).max() <= tolerances.FORWARD_F32.atol:
        raise ConformanceError(_label(backend, case, f"outputs match the reference to float32 precision: the "
                                      f"forward pass did not compute in {case.item}"))


def check_mixed_training(backend: Backend, reference: Backend, case: MixedCase) -> None:
    _require(backend, case)
    x, y = _data(case)
    tol = _tolerance(case)
    mixed, exact = _model(case, backend, f"mixed_{case.item}"), _model(case, reference, None)
    start = exact.get_weights()
    # float16's loss scaling may skip the first steps (their gradients overflow): train until
    # STEPS updates have been applied; a skipped step changes no weight.
    for _ in range(4 * STEPS + 40):
        if mixed.optimizer.iterations >= STEPS:
            break
        mixed.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    else:
        raise ConformanceError(_label(backend, case, f"{mixed.dtype_policy.loss_scale} applied "
                                      f"{mixed.optimizer.iterations} of {STEPS} steps"))
    exact.fit(x, y, batch_size=len(x), epochs=STEPS, shuffle=False, verbose=0)
    trainable = {id(w) for w in mixed.trainable_weights}
    for w, got, want, w0 in zip(mixed.weights, mixed.get_weights(), exact.get_weights(), start):
        if got.dtype != np.float32:
            raise ConformanceError(_label(backend, case, f"weight {w.name!r} became {got.dtype}; master weights "
                                          "stay float32"))
        if id(w) not in trainable:
            continue  # moving statistics also move on skipped steps (the forward pass ran)
        moved, expected = got - w0, want - w0
        scale = max(np.abs(expected).max(), 1e-3)  # relative to the largest step of this weight
        abs_err = np.abs(moved - expected).max()
        err = abs_err / scale
        if not np.isfinite(err) or err > tol.rtol + tol.atol:
            raise ConformanceError(_label(backend, case, f"trajectory: step of weight {w.name!r} {got.shape} vs "
                                          f"the reference's {STEPS} SGD step(s): max abs err {abs_err:.3g}, "
                                          f"max rel err {err:.3g} (relative to its largest step) over {tol}"))

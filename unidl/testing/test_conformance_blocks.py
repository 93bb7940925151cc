"""The building-block and training checks of the conformance kit.

Families (check ids ``family:item:dtype:check:case``):

* ``activation:<name>``: forward and grad vs the reference; fd on the reference.
* ``loss:<config>``: value and grad w.r.t. y_pred, under each reduction (the case).
* ``layer:<class>``: forward, grad w.r.t. the input and every weight.
* ``optimizer:<config>``: steps vs the reference.
* ``fused:<rule>``: native kernels vs the generic rule on the same backend (the case is the config).
* ``native:<layer class>``: a backend's native kernel for a whole layer (``Backend.native_layer``)
  vs the generic layer on the same backend: forward and gradients; ``training:lstm_native`` adds
  a 20-step fit of a recurrent model, native vs generic.
* ``training:<example>``: fit() step losses and final weights vs the reference.
* ``compiled:<example>``: fit() with jit_compile="auto" vs False on the same backend.
* ``error:<case>``: the same exception type as the reference (the case is the expected type).
* ``mixed:<half dtype>``: mixed precision (float32 targets of backends declaring
  ``mixed_precision_dtypes``): forward and a few steps vs the reference (see mixedchecks).

Comparing the reference with itself proves nothing, so on NumPy float64 the
families that compare with the reference run their finite-difference checks
instead (or nothing); ``fused``, ``compiled`` and ``error`` run everywhere.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from . import blockchecks, blockspecs, mixedchecks, trainchecks, trainspecs
from .kit import Target, conformance_check

__all__ = [
    "test_activation_forward", "test_activation_grad", "test_activation_fd",
    "test_loss_forward", "test_loss_grad", "test_loss_fd",
    "test_layer_forward", "test_layer_grad", "test_layer_fd",
    "test_optimizer_trajectory", "test_fused_vs_generic", "test_training_trajectory",
    "test_compiled_vs_eager", "test_same_exception", "test_mixed_forward", "test_mixed_training",
    "test_native_vs_generic_layer", "test_native_vs_generic_training",
]


def _others(cases: Iterable[Any]) -> Callable[[Target], list]:
    """The cases, on every target but the reference."""
    cases = list(cases)
    return lambda target: [] if target.is_reference else cases


def _reference_fd(cases: Iterable[Any]) -> Callable[[Target], list]:
    """The cases that allow finite differences, on the reference only."""
    cases = [c for c in cases if c.fd]
    return lambda target: cases if target.is_reference else []


def _everywhere(cases: Iterable[Any]) -> Callable[[Target], list]:
    cases = list(cases)
    return lambda target: cases


# ------------------------------------------------------------- activations

@conformance_check("activation", "forward", _others(blockspecs.ACTIVATIONS))
def test_activation_forward(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_forward(unidl_backend, unidl_reference, "activation", unidl_case)


@conformance_check("activation", "grad", _others(blockspecs.ACTIVATIONS))
def test_activation_grad(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_grad(unidl_backend, unidl_reference, "activation", unidl_case)


@conformance_check("activation", "fd", _reference_fd(blockspecs.ACTIVATIONS))
def test_activation_fd(unidl_backend: Any, unidl_case: Any) -> None:
    blockchecks.check_finite_differences(unidl_backend, "activation", unidl_case)


# ------------------------------------------------------------------ losses

@conformance_check("loss", "forward", _others(blockspecs.LOSSES))
def test_loss_forward(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_forward(unidl_backend, unidl_reference, "loss", unidl_case)


@conformance_check("loss", "grad", _others(blockspecs.LOSSES))
def test_loss_grad(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_grad(unidl_backend, unidl_reference, "loss", unidl_case)


@conformance_check("loss", "fd", _reference_fd(blockspecs.LOSSES))
def test_loss_fd(unidl_backend: Any, unidl_case: Any) -> None:
    blockchecks.check_finite_differences(unidl_backend, "loss", unidl_case)


# ------------------------------------------------------------------ layers

@conformance_check("layer", "forward", _others(blockspecs.LAYERS))
def test_layer_forward(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_forward(unidl_backend, unidl_reference, "layer", unidl_case)


@conformance_check("layer", "grad", _others(blockspecs.LAYERS))
def test_layer_grad(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    blockchecks.check_grad(unidl_backend, unidl_reference, "layer", unidl_case)


@conformance_check("layer", "fd", _reference_fd(blockspecs.LAYERS))
def test_layer_fd(unidl_backend: Any, unidl_case: Any) -> None:
    blockchecks.check_finite_differences(unidl_backend, "layer", unidl_case)


# -------------------------------------------------------------- optimizers

@conformance_check("optimizer", "trajectory", _others(trainspecs.OPTIMIZERS))
def test_optimizer_trajectory(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    trainchecks.check_optimizer(unidl_backend, unidl_reference, unidl_case)


@conformance_check("fused", "trajectory", _everywhere(trainspecs.fused_cases()))
def test_fused_vs_generic(unidl_backend: Any, unidl_case: Any, unidl_note: Any) -> None:
    note = trainchecks.check_fused(unidl_backend, unidl_case)
    if note:
        unidl_note(*note)


# ------------------------------------------------------------ native layers

@conformance_check("native", "layer", _everywhere(blockspecs.LAYERS))
def test_native_vs_generic_layer(unidl_backend: Any, unidl_case: Any, unidl_note: Any) -> None:
    note = blockchecks.check_native(unidl_backend, unidl_case)
    if note:
        unidl_note(*note)


@conformance_check("native", "trajectory", _everywhere(trainspecs.NATIVE_EXAMPLES))
def test_native_vs_generic_training(unidl_backend: Any, unidl_case: Any, unidl_note: Any) -> None:
    note = trainchecks.check_native_training(unidl_backend, unidl_case)
    if note:
        unidl_note(*note)


# ---------------------------------------------------------------- training

@conformance_check("training", "trajectory", _others(trainspecs.EXAMPLES))
def test_training_trajectory(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    trainchecks.check_training(unidl_backend, unidl_reference, unidl_case)


@conformance_check("compiled", "trajectory", _everywhere(trainspecs.EXAMPLES))
def test_compiled_vs_eager(unidl_backend: Any, unidl_case: Any, unidl_note: Any) -> None:
    note = trainchecks.check_compiled(unidl_backend, unidl_case)
    if note:
        unidl_note(*note)


# ------------------------------------------------------------------ errors

@conformance_check("error", "raises", _everywhere(trainspecs.ERRORS))
def test_same_exception(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    trainchecks.check_raises(unidl_backend, unidl_reference, unidl_case)


# --------------------------------------------------------- mixed precision

def _mixed(target: Target) -> list:
    return mixedchecks.mixed_cases(target.backend, target.dtype)


@conformance_check("mixed", "forward", _mixed)
def test_mixed_forward(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    mixedchecks.check_mixed_forward(unidl_backend, unidl_reference, unidl_case)


@conformance_check("mixed", "trajectory", _mixed)
def test_mixed_training(unidl_backend: Any, unidl_reference: Any, unidl_case: Any) -> None:
    mixedchecks.check_mixed_training(unidl_backend, unidl_reference, unidl_case)

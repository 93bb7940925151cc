"""Mixed precision: compute in bfloat16 or float16, keep float32 master weights.

``model.compile(..., dtype_policy="mixed_bfloat16")`` (or "mixed_float16") makes
the model's forward pass run on a *compute twin* of its backend: the same
framework and device, with bfloat16/float16 as the floating dtype. Weights stay
float32 variables of the model's backend; every read of one inside the forward
pass is cast to the compute dtype (Keras's autocasting), so gradients arrive in
float32 and the optimizer updates float32 master weights. The model's outputs
are cast back to float32 before the loss and metrics see them, and layers whose
statistics need the range of float32 (``compute_in_float32``: BatchNormalization,
LayerNormalization) compute in float32 inside the bf16 pass. Each layer casts its
floating inputs to the compute dtype as it is called, except layers taking ids
(``autocast_inputs = False``: Embedding), so ids above 256 stay exact.

float16 has 5 exponent bits, so small gradients underflow to zero: the
"mixed_float16" policy scales the loss (``DynamicLossScale``) and skips a step
whose gradients overflowed. bfloat16 has float32's exponent range and needs no
scaling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .naming import UnknownNameError, closest
from .structure import map_structure

POLICIES = {
    # name: (compute dtype, variable dtype, scales the loss)
    "float32": ("float32", "float32", False),
    "float64": ("float64", "float64", False),
    "mixed_bfloat16": ("bfloat16", "float32", False),
    "mixed_float16": ("float16", "float32", True),
}


class DynamicLossScale:
    """Loss scaling for float16: multiply the loss by ``scale`` so small gradients stay
    representable, divide the gradients by it, and adapt ``scale``: halve it (and skip the
    step) when a gradient is inf/NaN, double it after ``growth_interval`` finite steps."""

    def __init__(self, initial_scale: float = 2.0 ** 15, growth_interval: int = 2000,
                 min_scale: float = 1.0):
        self.scale = float(initial_scale)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.good_steps = 0
        self.skipped_steps = 0

    def update(self, finite: bool) -> None:
        """Record whether this step's gradients were finite (the step ran) or not (skipped)."""
        if not finite:
            self.scale = max(self.scale / 2.0, self.min_scale)
            self.good_steps = 0
            self.skipped_steps += 1
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval and math.isfinite(self.scale * 2.0):
            self.scale *= 2.0
            self.good_steps = 0

    def __repr__(self) -> str:
        return f"<DynamicLossScale scale={self.scale:g} skipped={self.skipped_steps}>"


@dataclass
class DTypePolicy:
    """How a model stores and computes: ``variable_dtype`` weights, ``compute_dtype`` math."""
    name: str
    compute_dtype: str
    variable_dtype: str
    loss_scale: DynamicLossScale | None = None

    @property
    def mixed(self) -> bool:
        return self.compute_dtype != self.variable_dtype


def get_policy(policy: "str | DTypePolicy | None", dtype: str) -> DTypePolicy:
    """The policy ``compile`` was given; None is "the backend dtype, no mixing"."""
    if isinstance(policy, DTypePolicy):
        return policy
    if policy is None:
        policy = dtype
    if not isinstance(policy, str):
        raise TypeError(f"dtype_policy must be a name such as 'mixed_bfloat16', got {policy!r}")
    policy = policy.lower()
    if policy not in POLICIES:
        raise UnknownNameError(f"unknown dtype policy {policy!r}{closest(policy, POLICIES)}; "
                               f"known policies: {', '.join(POLICIES)}")
    compute, variables, scaled = POLICIES[policy]
    if variables != dtype and policy.startswith("mixed"):
        raise ValueError(f"dtype_policy={policy!r} keeps float32 master weights: compile with dtype='float32' "
                         f"(got dtype={dtype!r})")
    if variables != dtype:
        raise ValueError(f"dtype_policy={policy!r} contradicts dtype={dtype!r}: give one of them")
    return DTypePolicy(policy, compute, variables, DynamicLossScale() if scaled else None)


def cast_floats(backend, structure, dtype: str):
    """Cast every floating tensor in a (nested list/tuple/dict of) tensors to ``dtype``."""
    return map_structure(lambda t: backend.cast(t, dtype) if backend.is_floating(t) else t, structure)

"""The split of the contract: the ops a backend must write, and the derived ones ``Backend`` writes for it.

``unidl.backend.PRIMITIVES`` lists exactly what a backend implements; every op of
``DERIVED`` has a default in ``Backend``, written over the primitives. The proof
that the defaults keep each op's contract (ties, kinks, padding rules) is the
kit's own op checks, run here on built-in backends with their native overrides of
the derived ops removed, in float32 and float64: every case of every derived op,
and of the composites built on them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import unidl
from unidl import ops
from unidl.backend import (COMPOSITES, DERIVED, NN_PRIMITIVES, OPTIONAL, PRIMITIVES, Backend, BackendError,
                           iter_ops, missing_ops, not_implemented)
from unidl.testing import checks, opspecs, tolerances

MAX_REQUIRED_OPS = 40  # issue 14: a backend writes at most this many primitives
FRAMEWORKS = ("numpy", "torch", "tensorflow")  # the built-ins; JAX's run takes minutes (XLA compiles every op)


def relying_on_defaults(backend_class: type) -> type:
    """``backend_class`` with every native version of a derived op removed, so Backend's defaults run.

    Class-level overrides are shadowed by the defaults; ops a backend binds on the
    instance (torch: ``self.relu = torch.relu``) are dropped after ``__init__``.
    """
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        backend_class.__init__(self, *args, **kwargs)
        for op in DERIVED:
            self.__dict__.pop(op, None)

    namespace = {op: Backend.__dict__[op] for op in DERIVED}
    return type(f"{backend_class.__name__}OnDefaults", (backend_class,), {"__init__": __init__, **namespace})


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request) -> str:
    if request.param != "numpy" and importlib.util.find_spec(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    return request.param


_on_defaults: dict[tuple[str, str], Backend] = {}


def on_defaults(name: str, dtype: str) -> Backend:
    """The built-in backend ``name`` relying on Backend's derived ops, built once per (name, dtype)."""
    if (name, dtype) not in _on_defaults:
        _on_defaults[name, dtype] = relying_on_defaults(type(unidl.get_backend(name)))(dtype=dtype)
    return _on_defaults[name, dtype]


# ---------------------------------------------------------------- the tables

def test_primitives_are_exactly_what_backend_leaves_undone():
    assert len(PRIMITIVES) <= MAX_REQUIRED_OPS
    assert not set(PRIMITIVES) & set(DERIVED)
    undone = [op for op in PRIMITIVES if op in Backend.__dict__]
    assert undone == [], f"Backend implements {undone}: move them to DERIVED"
    assert [op for op in DERIVED if op not in Backend.__dict__] == []
    assert set(NN_PRIMITIVES) <= set(PRIMITIVES) | set(DERIVED)


def test_every_op_is_reachable_and_documented():
    names = list(iter_ops())
    assert len(names) == len(set(names)) == len(PRIMITIVES) + len(DERIVED) + len(OPTIONAL) + len(COMPOSITES)
    for op in names:
        assert callable(getattr(ops, op)), op
    for op, contract in {**PRIMITIVES, **DERIVED}.items():
        assert getattr(ops, op).__doc__.startswith(f"{op}(")  # concatenate's own wrapper words it differently
        assert contract.startswith(f"{op}("), f"the contract line of {op!r} must start with its call"


def test_missing_ops_names_required_ops_and_stubs_only():
    class Nothing(Backend):
        name = "nothing"

    assert missing_ops(Nothing()) == list(PRIMITIVES)  # no derived op is ever missing

    numpy_backend = unidl.get_backend("numpy")

    class AlmostNumpy(type(numpy_backend)):
        @not_implemented
        def erf(self, x):
            """erf(x), the Gauss error function"""

    almost = AlmostNumpy()
    assert missing_ops(almost) == ["erf"]
    assert missing_ops(numpy_backend) == []
    with pytest.raises(BackendError, match=r"backend 'numpy' does not implement 'erf' yet"):
        almost.erf(almost.convert(np.zeros(2)))
    assert AlmostNumpy.erf.__doc__ == "erf(x), the Gauss error function"


# ------------------------------------------------------ the kit on the defaults

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", [*DERIVED, *COMPOSITES])
def test_the_defaults_pass_the_kits_op_checks(framework, dtype, op):
    """Forward and gradient checks of every case, on a built-in backend relying on the defaults."""
    backend = on_defaults(framework, dtype)
    if op in DERIVED:
        assert getattr(type(backend), op) is Backend.__dict__[op] and op not in backend.__dict__
    spec = opspecs.spec(op)
    failures = []
    for case in spec.cases:
        for check, applies in (("forward", True), ("grad", spec.checks_grad(case))):
            if not applies:
                continue
            try:
                if check == "forward":
                    checks.check_forward(backend, spec, case)
                else:
                    checks.check_grad(backend, checks.reference(), spec, case)
            except checks.ConformanceError as exc:
                failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_derived_ops_run_with_an_unknown_batch_size():
    """Inside a compiled step the batch axis may be None: the defaults reshape with -1 and count cells."""
    reference = unidl.get_backend("numpy", dtype="float64")

    class UnknownBatch(relying_on_defaults(type(reference))):
        batched: set[int] = set()  # ids of the tensors whose batch size is "unknown"

        def shape(self, x):
            known = super().shape(x)
            return (None, *known[1:]) if id(x) in self.batched else known

    backend = UnknownBatch(dtype="float64")
    rng = np.random.default_rng(0)
    x, image, kernel = rng.normal(size=(5, 3)), rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(3, 3, 2, 3))
    tx, timage = backend.convert(x), backend.convert(image)
    UnknownBatch.batched.update((id(tx), id(timage)))
    tol = tolerances.FORWARD_F64
    with unidl.use_backend(backend):
        assert backend.shape(tx) == (None, 3) and backend.shape(timage) == (None, 4, 5, 3)
        got = backend.to_numpy(ops.mean(tx, axis=0))
        np.testing.assert_allclose(got, x.mean(axis=0), rtol=tol.rtol, atol=tol.atol)
        transposed = ops.conv2d_transpose(timage, backend.convert(kernel), strides=2, padding="same")
        pooled = ops.avg_pool2d(timage, 2, padding="same")
    with unidl.use_backend(reference):
        expected = ops.conv2d_transpose(reference.convert(image), reference.convert(kernel), strides=2, padding="same")
        expected_pool = ops.avg_pool2d(reference.convert(image), 2, padding="same")
    np.testing.assert_allclose(backend.to_numpy(transposed), reference.to_numpy(expected), rtol=tol.rtol, atol=tol.atol)
    np.testing.assert_allclose(backend.to_numpy(pooled), reference.to_numpy(expected_pool), rtol=tol.rtol,
                               atol=tol.atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_default_log1p_keeps_the_digits_of_a_tiny_x(dtype):
    """log(1 + x) loses x's low digits where 1 + x rounds; the default must not (relative error only)."""
    backend = on_defaults("numpy", dtype)
    x = np.array([1e-10, -3e-8, 2e-5, -1e-12, 5e-7, 0.25], dtype=dtype)
    relative = replace(tolerances.FORWARD_F64 if dtype == "float64" else tolerances.FORWARD_F32, atol=0.0)
    with unidl.use_backend(backend):
        _, (grad,) = backend.grad_wrt_inputs(lambda t: ops.sum(ops.log1p(t)), [backend.convert(x)])
        got = backend.to_numpy(ops.log1p(backend.convert(x)))
    np.testing.assert_allclose(got, np.log1p(x.astype(np.float64)), rtol=relative.rtol)
    np.testing.assert_allclose(backend.to_numpy(grad), 1.0 / (1.0 + x.astype(np.float64)), rtol=relative.rtol)
    naive = np.log(1 + x)
    assert not np.allclose(naive, np.log1p(x.astype(np.float64)), rtol=relative.rtol, atol=0.0)  # the case bites

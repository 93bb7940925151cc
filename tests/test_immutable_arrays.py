"""The ImmutableArrays mixin, checked without JAX: the NumPy backend made to treat its tensors as immutable.

``HolderBackend`` is the NumPy backend with the mixin in front: variables are
``VariableHolder`` slots, every op unwraps them, gradients come from the tape
through ``differentiate``, and ``jit`` returns a recording "program" that runs the
pure step it is given. The mixin's plumbing (swapping values in and out, writing
back values assigned under a trace, passing every live variable through a
compiled step, the eager first call) must then give the NumPy backend's numbers.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import layers, ops
from unidl.backend import COMPOSITES, DERIVED, PRIMITIVES
from unidl.immutable_arrays import ImmutableArrays, VariableHolder, unwrap
from unidl.testing import checks, opspecs
from unidl.testing.tolerances import TRAJECTORY_F64
from unidl_numpy import tape as ad
from unidl_numpy.backend import NumpyBackend, _detach_tree


class HolderBackend(ImmutableArrays, NumpyBackend):
    """NumPy tensors treated as immutable: holders for variables, the tape for ``differentiate``."""

    name = "numpy_holders"
    framework = "numpy_holders"  # its own set of live holders

    def __init__(self, dtype: str = "float64", device: str | None = None):
        super().__init__(dtype=dtype, device=device)
        self.programs_built = 0
        self.program_calls: list[int] = []  # how many holder values each program call received
        self.bind_lifted({op: getattr(self, op) for op in (*PRIMITIVES, *DERIVED, *COMPOSITES)
                          if op != "concatenate"})

    def concatenate(self, xs, axis: int = -1):
        return ad.concatenate([unwrap(x) for x in xs], axis=axis)

    def assigned_value(self, old, value):
        return self.convert(unwrap(value), dtype=old.dtype)  # the tape's Tensor has no astype

    def fused_update(self, *args) -> bool:
        return False  # NumPy's fused kernels write in place: not for immutable arrays

    def differentiate(self, fn, args):
        leaves = [ad.Tensor(self.convert(a).data, requires_grad=True) for a in args]
        with ad.enable_grad():
            value, aux = fn(*leaves)
        return value.detach(), _detach_tree(aux), self._backprop(self._as_scalar(value, "differentiate"), leaves)

    def jit(self, fn):
        self.programs_built += 1

        def program(values, args):
            self.program_calls.append(len(values))
            return fn(values, args)
        return program


def mlp(seed: int = 0) -> unidl.Sequential:
    return unidl.Sequential([layers.Dense(6, activation="tanh", input_shape=(4,)),
                             layers.BatchNormalization(),  # assigns its moving statistics inside the gradient
                             layers.Dense(1)], seed=seed)


def data(n: int = 24):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4))
    return x, np.tanh(x @ rng.normal(size=(4, 1)))


def trained(backend, jit_compile) -> tuple[list[float], list[np.ndarray]]:
    model = mlp()
    model.compile(optimizer="adam", loss="mse", backend=backend, dtype="float64", jit_compile=jit_compile)
    x, y = data()
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0).history["loss"]
    return history, model.get_weights()


@pytest.mark.parametrize("jit_compile", [False, "auto"])
def test_training_on_holders_gives_the_numpy_numbers(jit_compile):
    holders = HolderBackend()
    losses, weights = trained(holders, jit_compile)
    expected_losses, expected_weights = trained("numpy", False)
    np.testing.assert_allclose(losses, expected_losses, rtol=TRAJECTORY_F64.rtol, atol=TRAJECTORY_F64.atol)
    assert len(weights) == len(expected_weights) == 8  # moving mean and variance included
    for got, want in zip(weights, expected_weights):
        np.testing.assert_allclose(got, want, rtol=TRAJECTORY_F64.rtol, atol=TRAJECTORY_F64.atol)
    if jit_compile == "auto":  # nine steps: the first eager, the other eight through one program
        assert holders.programs_built == 1 and len(holders.program_calls) == 8


def test_values_assigned_under_a_gradient_are_written_back_concrete():
    backend = HolderBackend()
    weight, counter = backend.variable(np.ones(3)), backend.variable(np.zeros(()), trainable=False)

    def loss():
        # BatchNormalization does this in training: a statistic of values that depend on the weights.
        backend.assign(counter, backend.add(counter, backend.sum(weight)))
        return backend.sum(backend.multiply(weight, weight)), None

    value, _, (grad,) = backend.value_and_grad(loss, [weight])
    assert float(backend.to_numpy(value)) == 3.0
    np.testing.assert_array_equal(backend.to_numpy(grad), 2 * np.ones(3))
    # The value computed under the gradient came back without its graph (a tracer, in JAX).
    assert type(counter.value) is ad.Tensor and not counter.value.requires_grad
    assert float(backend.to_numpy(counter)) == 3.0
    assert type(weight.value) is ad.Tensor and not weight.value.requires_grad  # its own array is back


def test_a_compiled_step_passes_every_live_variable_in_and_out():
    """Two models, each on its own backend instance, trained by one step: both see their updates."""
    first, second = HolderBackend(), HolderBackend()
    a, b = mlp(seed=1), mlp(seed=2)
    a.compile(optimizer="sgd", loss="mse", backend=first, dtype="float64")
    b.compile(optimizer="sgd", loss="mse", backend=second, dtype="float64")
    x, y = (first.convert(v) for v in data(8))

    def step(x, y):
        for model in (a, b):
            loss, grads = unidl.value_and_grad(lambda m=model: ops.mean(ops.square(ops.subtract(m(x), y))), model)
            model.optimizer.apply(grads, model.trainable_weights)
        return loss

    compiled = first.compile_step(lambda *args: step(*args))
    before = [w.numpy() for w in b.weights]
    with unidl.use_backend(first):
        step(x, y)  # unidl runs a step's first call eagerly (it creates the optimizers' slots)
        assert first.programs_built == 0
        compiled(x, y)
    live = len(first._live_holders())
    assert first.programs_built == 1 and first.program_calls == [live]
    assert live >= len(a.weights) + len(b.weights)  # the other instance's variables went in too
    assert not np.allclose(b.weights[0].numpy(), before[0])  # and came out updated
    assert all(type(w.value) is VariableHolder for w in a.weights + b.weights)


def test_the_kits_op_checks_pass_on_holders():
    """Every op case, forward and gradient, with variables as holders (the cases' var=True inputs)."""
    backend = HolderBackend(dtype="float64")
    failures = []
    for case in opspecs.all_cases():
        spec = opspecs.spec(case.item)
        try:
            checks.check_forward(backend, spec, case)
            if spec.checks_grad(case):
                checks.check_grad(backend, checks.reference(), spec, case)
        except checks.ConformanceError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def test_the_mixin_stays_in_the_contract_layer():
    """It may import unidl.backend, unidl.variables, the standard library and NumPy: nothing else."""
    source = Path(sys.modules[ImmutableArrays.__module__].__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    allowed = {".backend", ".variables", "numpy"}
    outside = {m for m in imported if m not in allowed and m.split(".")[0] not in sys.stdlib_module_names}
    assert outside == set()

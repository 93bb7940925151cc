"""The conformance kit run on every built-in backend, and tests of the kit itself.

The kit's checks are imported from ``unidl.testing``; the unidl pytest plugin
parametrizes them over the backends in conftest.BUILTIN_BACKENDS (those whose
framework is installed) x float32/float64 x every case of every family (op,
activation, loss, layer, optimizer, fused, training, compiled, error). A third-party
backend runs exactly the same checks with
``pytest --pyargs unidl.testing --unidl-backend=NAME``.

The rest tests the kit itself: check ids and tolerances, that deliberately
broken backends fail with one-line messages carrying the max abs/rel error and
the tolerance, the grouping of failures by root op, the recording of the ops a
check calls, and the accuracy probe (in-process, and end to end through the
pytest plugin in a subprocess).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl import ops
from unidl.backend import iter_ops
from unidl.testing import (blockchecks, blockspecs, checks, gradcheck, opspecs, plugin, probe, recording, tolerances,
                           trainchecks, trainspecs)
from unidl.testing.kit import CheckId, matches, most_specific
from unidl.testing.rootcause import Failure, group_by_root_op
from unidl.testing.test_conformance_blocks import *  # noqa: F401,F403 -- the kit's checks, collected here
from unidl.testing.test_conformance_ops import *  # noqa: F401,F403

# ---------------------------------------------------------------- coverage


def test_every_op_has_a_spec():
    assert opspecs.missing_specs() == []


def test_specs_name_only_real_ops():
    assert sorted(set(opspecs.SPECS) - set(iter_ops())) == []


def test_every_differentiable_op_has_a_gradient_case():
    no_grad = {name for name, spec in opspecs.SPECS.items() if not any(spec.checks_grad(c) for c in spec.cases)}
    # Ops without a gradient by contract: conversion, comparisons, integer results, constructors.
    assert no_grad == {"convert", "to_numpy", "shape", "equal", "not_equal", "greater", "greater_equal",
                       "less", "less_equal", "argmax", "one_hot", "zeros", "ones", "size",
                       "argsort", "argmin", "all", "any", "count_nonzero", "logical_and", "logical_or", "logical_xor",
                       "logical_not", "isnan", "isinf", "isfinite", "dtype_of", "zeros_like", "ones_like", "full",
                       "full_like", "arange", "linspace", "eye"}


def test_inputs_are_seeded_and_float32_exact():
    case = opspecs.spec("matmul").cases[0]
    first, second = opspecs.make_inputs(case), opspecs.make_inputs(case)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, a.astype(np.float32).astype(np.float64))


def test_kink_cases_keep_away_from_kinks():
    values = opspecs.make_inputs(opspecs.spec("clip").cases[0])[0]
    assert np.all(np.abs(np.abs(values) - 1.0) >= opspecs.MARGIN)
    a, b = opspecs.make_inputs(opspecs.spec("maximum").cases[0])
    assert np.all(np.abs(a - b) >= opspecs.MARGIN)


# ---------------------------------------------------------------- check ids, tolerances

ID = CheckId("op", "erf", "float32", "grad", "basic")


@pytest.mark.parametrize("pattern, hit", [
    ("op", True), ("op:erf", True), ("op:erf:float32:grad", True), ("op:*:*:grad", True),
    ("op:erf:float32:grad:basic", True), ("op:erf:float64", False), ("op:er", False),
    ("op:erf:float32:grad:basic:extra", False), ("layer:erf", False),
])
def test_check_id_patterns(pattern, hit):
    assert matches(pattern, ID) is hit


def test_most_specific_pattern_wins():
    table = {"op:erf": "a", "op:erf:*:grad": "b", "op:erf:float32:grad": "c", "op:exp": "d"}
    assert most_specific(table, ID) == ("op:erf:float32:grad", "c")
    assert most_specific({"op:*:float32": 1, "op:erf": 2}, ID) == ("op:*:float32", 1)  # longer
    assert most_specific({"op:*:float32:grad": 1, "op:erf:float32:grad": 2}, ID) == ("op:erf:float32:grad", 2)
    assert most_specific({"op:exp": 1}, ID) is None


def test_tolerance_lookup_applies_a_declared_override():
    class Declaring:
        name = "fake"
        conformance_tolerances = {"op:erf:*:grad": (1e-3, 1e-4, "approximate erf kernel")}

    tol = tolerances.lookup(Declaring(), ID)
    assert (tol.rtol, tol.atol, tol.reason) == (1e-3, 1e-4, "approximate erf kernel")
    assert "GRAD_F32" in tol.replaces and "fake[op:erf:*:grad]" in str(tol)
    assert tolerances.lookup(Declaring(), CheckId("op", "exp", "float32", "grad", "basic")) is tolerances.GRAD_F32
    assert tolerances.lookup(Declaring(), CheckId("op", "exp", "float64", "forward", "x")) is tolerances.FORWARD_F64


# ---------------------------------------------------------------- the kit catches bugs


@pytest.fixture(scope="module")
def reference():
    return unidl.get_backend("numpy", dtype="float64")


def test_wrong_forward_is_reported_with_backend_op_case_and_error(reference):
    class WrongErf(type(reference)):
        name = "wrong_erf"

        def erf(self, x):
            return self.tanh(x)

    backend = WrongErf(dtype="float64")
    spec = opspecs.spec("erf")
    with pytest.raises(checks.ConformanceError) as info:
        checks.check_forward(backend, spec, spec.cases[0])
    first_line = str(info.value).splitlines()[0]  # what pytest's one-line summary shows
    for part in ("'wrong_erf'", "float64", "op 'erf'", "case 'basic'", "forward", "shape (3, 4), dtype float64",
                 "max abs err", "max rel err", "FORWARD_F64 (rtol=1e-10, atol=1e-12)"):
        assert part in first_line
    assert info.value.brief.startswith("forward: shape (3, 4), dtype float64: ")  # the summary's line


def test_a_wrong_gradient_names_the_input_and_the_tolerance_on_one_line(reference):
    class HalfGradExp(type(reference)):
        name = "half_grad_exp"

        def exp(self, x):  # right values, half the gradient
            e = super().exp(x)
            return self.add(self.stop_gradient(self.multiply(e, 0.5)), self.multiply(e, 0.5))

    spec = opspecs.spec("exp")
    checks.check_forward(HalfGradExp(dtype="float32"), spec, spec.cases[0])  # the values are right
    with pytest.raises(checks.ConformanceError) as info:
        checks.check_grad(HalfGradExp(dtype="float32"), reference, spec, spec.cases[0])
    first_line = str(info.value).splitlines()[0]
    assert "grad of input 0 (shape (3, 4))" in first_line and "GRAD_F32 (rtol=0.0001, atol=1e-05)" in first_line
    assert "12 of 12 values outside" in first_line


def test_mismatch_report_gives_max_abs_and_rel_error_over_all_elements():
    expected = np.array([1.0, 2.0, 0.0, 4.0])
    actual = np.array([1.5, 2.0, 1e-3, 4.0])  # abs errors 0.5, 0, 1e-3, 0; rel 0.5 (0 expected: not a ratio)
    with pytest.raises(checks.ConformanceError) as info:
        checks.compare("label", actual, expected, tolerances.FORWARD_F64)
    first, worst = str(info.value).splitlines()
    assert first == ("label: shape (4,), dtype float64: 2 of 4 values outside FORWARD_F64 (rtol=1e-10, "
                     "atol=1e-12): max abs err 0.5, max rel err 0.5")
    assert worst.strip() == "worst at index (0,): got 1.5, expected 1"


def test_mismatch_report_counts_an_unexpected_nan_as_infinite_error():
    with pytest.raises(checks.ConformanceError, match=r"1 of 2 values outside .*: max abs err inf"):
        checks.compare("label", np.array([np.nan, 1.0]), np.array([0.5, 1.0]), tolerances.FORWARD_F32)
    checks.compare("label", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), tolerances.FORWARD_F32)


def test_mismatch_report_compares_integers_exactly():
    with pytest.raises(checks.ConformanceError, match=r"1 of 3 values outside exact equality: max abs err 2"):
        checks.compare("label", np.array([1, 2, 5]), np.array([1, 2, 3]), tolerances.FORWARD_F64)


def test_random_upstream_catches_a_gradient_a_plain_sum_would_miss(reference):
    class Misrouted(type(reference)):
        """transpose with the right values, but its gradient routed to the wrong elements."""
        name = "misrouted"

        def transpose(self, x, axes=None):
            right = super().transpose(x, axes)
            flat = self.reshape(x, (-1,))
            # Same elements in reverse order: equal sum, so d sum(out)/dx is still all ones.
            wrong = self.reshape(self.take(flat, self.convert(np.arange(self.size(flat))[::-1].copy())),
                                 self.shape(right))
            return self.add(self.stop_gradient(right), self.subtract(wrong, self.stop_gradient(wrong)))

    backend = Misrouted(dtype="float64")
    spec = opspecs.spec("transpose")
    case = spec.cases[0]
    checks.check_forward(backend, spec, case)  # the values are right
    x = backend.convert(opspecs.make_inputs(case)[0])
    with unidl.use_backend(backend):
        _, (ones_grad,) = backend.grad_wrt_inputs(lambda t: ops.sum(ops.transpose(t)), [x])
    np.testing.assert_array_equal(backend.to_numpy(ones_grad), 1.0)  # a plain sum sees nothing wrong
    with pytest.raises(checks.ConformanceError, match="grad of input 0"):
        checks.check_grad(backend, reference, spec, case)


def test_a_wrong_dtype_is_reported(reference):
    class Upcasting(type(reference)):
        name = "upcasting"

        def exp(self, x):
            return self.cast(super().exp(x), "float64")

    backend = Upcasting(dtype="float32")
    spec = opspecs.spec("exp")
    with pytest.raises(checks.ConformanceError, match="dtype float64, expected float32"):
        checks.check_forward(backend, spec, spec.cases[0])


# ---------------------------------------------------------------- finite differences


def test_central_differences_of_a_known_function():
    x = np.array([[0.5, -2.0], [3.0, 1e3]])
    before = x.copy()
    numeric = gradcheck.central_differences(lambda v: np.sum(np.sin(v) * v), x)
    np.testing.assert_allclose(numeric, np.cos(x) * x + np.sin(x), rtol=tolerances.FD_F64.rtol,
                               atol=tolerances.FD_F64.atol)
    np.testing.assert_array_equal(x, before)  # the caller's array is not touched


def test_central_differences_of_an_array_valued_function_sum_it():
    r = np.array([1.0, -2.0, 0.5])
    x = np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(gradcheck.central_differences(lambda v: np.exp(v) * r, x), np.exp(x) * r,
                               rtol=tolerances.FD_F64.rtol, atol=tolerances.FD_F64.atol)


def test_central_differences_of_state_restore_it_even_when_the_objective_raises():
    state = {"w": np.array([1.0, 2.0])}

    def assign(value):
        state["w"] = np.array(value)

    grad = gradcheck.central_differences_of_state(lambda: np.sum(state["w"] ** 2), state["w"], assign)
    np.testing.assert_allclose(grad, [2.0, 4.0], rtol=tolerances.FD_F64.rtol, atol=tolerances.FD_F64.atol)
    np.testing.assert_array_equal(state["w"], [1.0, 2.0])

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        gradcheck.central_differences_of_state(failing, state["w"], assign)
    np.testing.assert_array_equal(state["w"], [1.0, 2.0])


# ---------------------------------------------------------------- root ops, recording, the probe


def _failure(check: str, *ops: str) -> Failure:
    family, item = check.split(":")[:2]
    return Failure(check, family, item, frozenset(ops))


def test_failures_that_used_a_failing_op_are_filed_under_it():
    grouping = group_by_root_op([
        _failure("op:exp:float64:forward:basic", "convert", "exp", "to_numpy"),
        _failure("op:softmax:float64:forward:basic", "convert", "softmax", "max", "exp", "sum"),  # only via exp
        _failure("activation:elu:float64:forward:basic", "convert", "exp", "where"),
        _failure("layer:Dense:float64:grad:linear", "matmul", "add", "sum"),  # used no failing op
    ])
    [root] = grouping.roots
    assert root.op == "exp"
    assert [f.check for f in root.own] == ["op:exp:float64:forward:basic"]
    assert [f.check for f in root.caused] == ["activation:elu:float64:forward:basic",
                                              "op:softmax:float64:forward:basic"]
    assert [f.check for f in grouping.independent] == ["layer:Dense:float64:grad:linear"]


def test_an_op_failing_on_its_own_is_a_root_even_when_it_also_uses_a_failing_op():
    grouping = group_by_root_op([
        _failure("op:exp:float64:forward:basic", "exp"),
        _failure("op:softmax:float64:forward:basic", "softmax"),           # a native softmax, wrong by itself
        _failure("op:softmax:float64:grad:basic", "softmax", "exp", "sum"),
        _failure("loss:cce:float64:forward:mean", "softmax", "exp", "log"),
    ])
    roots = {root.op: root for root in grouping.roots}
    assert set(roots) == {"exp", "softmax"}
    assert len(roots["softmax"].own) == 2
    caused = [(root.op, f.check, root.also.get(f.check)) for root in grouping.roots for f in root.caused]
    assert caused == [("softmax", "loss:cce:float64:forward:mean", ["exp"])]  # under one root, naming the other


def test_ops_that_only_explain_each_other_still_get_a_root():
    # sum's and multiply's gradient checks each use the other (the objective is sum(op(x) * r)).
    grouping = group_by_root_op([
        _failure("op:sum:float64:grad:a", "sum", "multiply"),
        _failure("op:sum:float64:grad:b", "sum", "multiply"),
        _failure("op:multiply:float64:grad:a", "multiply", "sum"),
        _failure("layer:Dense:float64:grad:linear", "multiply", "sum", "matmul"),
    ])
    [root] = grouping.roots
    assert root.op == "sum"  # the one with most failures
    assert {f.check for f in root.caused} == {"op:multiply:float64:grad:a", "layer:Dense:float64:grad:linear"}
    assert grouping.independent == []


def test_recording_sees_ops_called_through_unidl_ops_and_inside_composites():
    backend = unidl.get_backend("numpy", dtype="float64")
    assert recording.instrument(backend)
    assert type(backend) is type(unidl.get_backend("numpy"))  # the class is left alone
    with unidl.use_backend(backend):
        ops.softmax(ops.convert(np.ones((2, 3))))
    used = recording.take(backend)
    assert {"convert", "softmax", "exp", "sum", "divide"} <= used  # exp: called by softmax on self
    assert recording.take(backend) == frozenset()  # take starts afresh
    assert recording.take(unidl.get_backend("numpy")) == frozenset()  # not instrumented: nothing


def test_a_check_failing_for_want_of_an_op_counts_as_using_it(reference):
    class NoErf(type(reference)):
        name = "no_erf"

        @property
        def erf(self):  # as if never written: Backend.__getattr__ raises BackendError
            raise AttributeError("erf")

    case = next(c for c in blockspecs.ACTIVATIONS if c.item == "gelu")
    with pytest.raises(checks.ConformanceError, match="does not implement 'erf'") as info:
        blockchecks.check_forward(NoErf(dtype="float64"), reference, "activation", case)
    assert recording.missing_ops_in(info.value) == {"erf"}
    assert recording.missing_ops_in(ValueError("does not implement 'erf'")) == frozenset()  # not a BackendError
    with pytest.raises(checks.ConformanceError) as info:
        checks.check_contract(NoErf(dtype="float64"))
    assert recording.missing_ops_in(info.value) == {"erf"}


def _float32_exp_backend(reference):
    class Float32Exp(type(reference)):
        """A float64 backend whose exp kernel computes in float32, as some frameworks silently do."""
        name = "float32_exp"

        def exp(self, x):
            return self.cast(super().exp(self.cast(x, "float32")), self.dtype)

    return Float32Exp(dtype="float64")


def test_the_probe_names_an_op_that_is_only_float32_accurate(reference):
    findings = {f.op: f for f in probe.probe(_float32_exp_backend(reference))}
    assert findings["exp"].precision == "float32" and 1e-9 < findings["exp"].error < 1e-6
    assert findings["matmul"].precision == "float64"
    text = probe.warning_text("float32_exp", "float64", list(findings.values()))
    assert text.startswith("backend 'float32_exp' float64: exp only float32-accurate (max rel err ")
    assert "matmul" not in text


def test_the_probe_names_a_float32_matmul_that_is_only_half_precision_accurate():
    float32 = unidl.get_backend("numpy", dtype="float32")

    class HalfMatmul(type(float32)):
        """Rounds matmul's inputs to 10 mantissa bits, as TF32 tensor cores do."""
        name = "half_matmul"

        def matmul(self, a, b):
            def rounded(t):
                return self.convert(self.to_numpy(t).astype(np.float16).astype(np.float32))
            return super().matmul(rounded(a), rounded(b))

    text = probe.warning_text("half_matmul", "float32", probe.probe(HalfMatmul(dtype="float32")))
    assert text.startswith("backend 'half_matmul' float32: matmul only half-precision (tf32, float16 or bfloat16)"
                           "-accurate")


def test_the_probe_is_quiet_on_a_backend_computing_in_its_dtype(reference):
    assert probe.warning_text("numpy", "float64", probe.probe(reference)) is None
    float32 = unidl.get_backend("numpy", dtype="float32")
    assert {f.precision for f in probe.probe(float32)} == {"float32"}
    assert probe.warning_text("numpy", "float32", probe.probe(float32)) is None


@pytest.mark.parametrize("error, precision", [(1e-16, "float64"), (3e-8, "float32"), (5e-4, "half"),
                                              (4e-3, "half"), (0.5, "wrong")])
def test_the_probe_names_the_precision_an_error_fits(error, precision):
    assert probe.precision_of(error) == precision


# ---------------------------------------------------------------- the plugin

PARTIAL_BACKEND = '''
"""A backend with declared exclusions, a loosened tolerance and one bug, for the plugin test."""
import unidl
from unidl import hookimpl
from unidl.registry import REGISTRY


def _make(dtype="float32", device=None):
    base = type(unidl.get_backend("numpy", dtype=dtype))

    class Partial(base):
        name = "partial"
        conformance_exclusions = {"op:erf": "no erf kernel here", "fused:adagrad": "no adagrad kernel yet"}
        conformance_tolerances = {"op:exp:*:forward": (1e-3, 1e-3, "fast exp")}

        def negative(self, x):  # a bug the kit must find
            return x

    return Partial(dtype=dtype, device=device)


class _Plugin:
    @hookimpl
    def unidl_register_backends(self, register):
        register("partial", _make, framework="numpy")


def pytest_configure(config):
    REGISTRY.register_plugin(_Plugin(), "partial-plugin")
'''


FLOAT32_EXP_BACKEND = '''
"""A float64 backend whose exp computes in float32 (as some frameworks silently do), for the plugin test."""
import unidl
from unidl import hookimpl
from unidl.registry import REGISTRY


def _make(dtype="float32", device=None):
    base = type(unidl.get_backend("numpy", dtype=dtype))

    class Float32Exp(base):
        name = "float32_exp"

        def exp(self, x):
            return self.cast(super().exp(self.cast(x, "float32")), self.dtype)

    return Float32Exp(dtype=dtype, device=device)


class _Plugin:
    @hookimpl
    def unidl_register_backends(self, register):
        register("float32_exp", _make, framework="numpy")


def pytest_configure(config):
    REGISTRY.register_plugin(_Plugin(), "float32-exp-plugin")
'''


def _run_kit(tmp_path: Path, *args: str, plugin: str = PARTIAL_BACKEND) -> subprocess.CompletedProcess:
    (tmp_path / "kit_test_backend.py").write_text(plugin)
    # A wide terminal, so that pytest's one-line failure summaries are not cut.
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "kit_test_backend", "-p", "no:cacheprovider",
                           "--pyargs", "unidl.testing", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "1000"})


def test_plugin_reports_counts_exclusions_tolerances_and_failures(tmp_path):
    run = _run_kit(tmp_path, "--unidl-backend=partial", "--unidl-dtype=float64", "-q",
                   "-k", "erf or exp or negative")
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "unidl conformance summary" in out
    summary = out[out.index("unidl conformance summary"):]
    row = next(line.split() for line in summary.splitlines() if line.startswith("partial-float64"))
    passed, failed, excluded = map(int, row[1:4])
    assert failed == 4  # negative: forward and grad, in two cases each
    assert excluded == 2  # erf: forward and grad (its one case)
    assert "partial [op:erf] (2 checks): no erf kernel here" in summary
    assert "partial [op:exp:*:forward] (2 checks): rtol=0.001 atol=0.001: fast exp" in summary
    assert "op:negative:float64:forward:basic" in summary
    assert passed > 0


def test_plugin_warns_early_and_files_failures_under_the_op_that_caused_them(tmp_path):
    run = _run_kit(tmp_path, "--unidl-backend=float32_exp", "--unidl-dtype=float64", "-q", "-rf",
                   "-k", "(exp and not expand) or softmax or elu or (Dense and linear)", plugin=FLOAT32_EXP_BACKEND)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    summary = out[out.index("unidl conformance summary"):]
    # The probe's warning comes right after collection, before the first test's result.
    warning = "WARNING unidl accuracy probe: backend 'float32_exp' float64: exp only float32-accurate"
    assert warning in out and out.index(warning) < out.index("FAILURES")
    assert "accuracy probe (warnings, not failures):" in summary
    # The failures: exp's own, then what used exp, and nothing else.
    lines = summary.splitlines()
    header = next(line for line in lines if line.startswith("failed on float32_exp-float64"))
    assert ": 1 root op, " in header and "independent" not in header
    assert any(line.startswith("  op exp: 2 own failures, ") for line in lines)
    own = next(line for line in lines if line.strip().startswith("op:exp:float64:forward:basic: "))
    assert "forward: shape (3, 4), dtype float64: 12 of 12 values outside FORWARD_F64 (rtol=1e-10, atol=1e-12): " \
           "max abs err " in own and ", max rel err " in own
    caused = lines[lines.index("    caused by op exp (" + header.split(", ")[1].split()[0] + "):") + 1:]
    subjects = {line.split()[0] for line in caused if line.startswith("      ")}
    assert {"activation:elu", "activation:softmax", "op:softmax", "op:log_softmax",
            "training:softmax_classifier"} <= subjects
    # pytest's own one-line summary (-rf) carries the numbers too.
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert any("op 'exp'" in line and "max abs err" in line for line in failed)
    assert not [line for line in failed if "Dense-linear" in line]  # Dense without softmax uses no exp


def test_plugin_refuses_an_unknown_backend(tmp_path):
    run = _run_kit(tmp_path, "--unidl-backend=no_such_backend")
    assert run.returncode == 4
    assert "unknown backend 'no_such_backend'" in run.stdout + run.stderr


def test_importing_the_plugin_imports_no_framework():
    code = ("import sys, unidl.testing.plugin, unidl.testing.test_conformance_ops, "
            "unidl.testing.test_conformance_blocks; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_plain_test_using_unidl_backend_runs_once_per_target(unidl_backend, unidl_target, request):
    # What a plugin author gets for their own extra tests: the same targets, the same session cache.
    assert (unidl_backend.name, unidl_backend.dtype) == (unidl_target.backend, unidl_target.dtype)
    kit = request.config.stash[plugin._KIT]
    assert kit.backend(unidl_target, kit.device) is unidl_backend


# ---------------------------------------------------------------- building blocks and training: coverage

def test_every_activation_has_cases():
    assert {c.item for c in blockspecs.ACTIVATIONS} == set(unidl.activations.BUILTINS)


def test_every_loss_class_has_a_config():
    assert set(unidl.losses.BUILTINS.values()) <= blockspecs.loss_classes_covered()
    assert {c.name for c in blockspecs.LOSSES} == set(blockspecs.REDUCTIONS)


def test_every_layer_class_has_a_case():
    assert blockspecs.layer_classes_without_case() == []


def test_every_optimizer_has_a_config():
    assert set(unidl.optimizers.BUILTINS.values()) <= {type(c.make()) for c in trainspecs.OPTIMIZERS}


def test_fused_cases_are_filed_under_their_rule():
    filed = {(c.item, c.name) for c in trainspecs.fused_cases()}
    assert {("adam", "adamw"), ("adam", "clipvalue"), ("sgd", "clipnorm"), ("rmsprop", "global_clipnorm")} <= filed


def test_training_cases_take_the_announced_number_of_steps():
    assert {c.steps() for c in trainspecs.EXAMPLES} == {trainspecs.TRAIN_STEPS}


def test_optimizer_steps_move_weights_far_beyond_the_float32_tolerance(reference):
    # An update hidden in the tolerance would not be checked at all.
    tol = tolerances.TRAJECTORY_F32
    for case in trainspecs.OPTIMIZERS:
        first = trainchecks.run_optimizer(reference, case).steps[0]
        for name, start in case.start().items():
            assert np.median(np.abs(first[name] - start)) > 20 * tol.rtol * np.abs(start).max(), case.item


# ---------------------------------------------------------------- building blocks and training: the kit catches bugs

def _numpy_subclass(reference, name, **members):
    return type(f"Broken_{name}", (type(reference),), {"name": name, **members})


def test_a_wrong_fused_adam_kernel_fails_fused_adam(reference):
    def fused_update(self, rule, optimizer, variable, grad, slots, scalars):
        if rule != "adam" or optimizer.amsgrad:
            return super(type(self), self).fused_update(rule, optimizer, variable, grad, slots, scalars)
        m, v = slots["m"].data, slots["v"].data
        g = grad.data
        m += (g - m) * (1 - optimizer.beta_1)
        v += (g * g - v) * (1 - optimizer.beta_2)
        variable.data -= scalars["lr"] * m / (np.sqrt(v) + optimizer.epsilon)  # lr, not the corrected lr_t
        return True

    backend = _numpy_subclass(reference, "wrong_fused_adam", fused_update=fused_update)(dtype="float64")
    cases = {(c.item, c.name): c for c in trainspecs.fused_cases()}
    with pytest.raises(checks.ConformanceError) as info:
        trainchecks.check_fused(backend, cases[("adam", "adam")])
    message = str(info.value)
    for part in ("'wrong_fused_adam'", "fused 'adam'", "case 'adam'", "native kernels vs the generic rule",
                 "displacement of kernel", "TRAJECTORY_F64"):
        assert part in message
    assert trainchecks.check_fused(backend, cases[("sgd", "sgd")]) is None  # the other rules are fine
    assert trainchecks.check_fused(backend, cases[("adam", "adam_amsgrad")]) == (trainchecks.GENERIC_ONLY,
                                                                                 "adam[adam_amsgrad]")


def test_a_wrong_compile_step_fails_compiled(reference):
    def compile_step(self, step):
        def run(scalars, data):  # "optimizes" by doubling every learning rate
            return step([{k: 2 * v for k, v in s.items()} for s in scalars], data)
        return run

    backend = _numpy_subclass(reference, "wrong_compile", compile_step=compile_step)(dtype="float64")
    examples = {c.item: c for c in trainspecs.EXAMPLES}
    with pytest.raises(checks.ConformanceError, match="compiled 'regression_mlp'.*loss of each of the 20 steps"):
        trainchecks.check_compiled(backend, examples["regression_mlp"])
    # A model with Dropout never runs compiled (its masks are drawn on the host), so it passes.
    assert trainchecks.check_compiled(backend, examples["dropout"]) is None
    assert trainchecks.check_compiled(reference, examples["xor"]) == (trainchecks.EAGER_ONLY, "xor")


def test_a_gradient_missing_for_one_weight_fails_layer_grad(reference):
    def value_and_grad(self, fn, variables):
        loss, aux, grads = super(type(self), self).value_and_grad(fn, variables)
        return loss, aux, [grads[0]] + [self.zeros(self.shape(g)) for g in grads[1:]]

    backend = _numpy_subclass(reference, "first_grad_only", value_and_grad=value_and_grad)(dtype="float32")
    case = next(c for c in blockspecs.LAYERS if (c.item, c.name) == ("Dense", "linear"))
    blockchecks.check_forward(backend, reference, "layer", case)  # the forward pass is right
    with pytest.raises(checks.ConformanceError, match=r"layer 'Dense', case 'linear'.*grad of kernel \(shape \(4, 3\)\)"):
        blockchecks.check_grad(backend, reference, "layer", case)


def test_another_exception_type_fails_error(reference):
    def trigger(backend):
        if backend.name == "numpy":
            raise unidl.layers.LayerShapeError("the reference's error")
        raise RuntimeError("a framework's own error")

    case = trainspecs.ErrorCase("made_up", trigger, unidl.layers.LayerShapeError, "a made-up case")
    backend = _numpy_subclass(reference, "other_errors")(dtype="float32")
    trainchecks.check_raises(reference, reference, case)
    with pytest.raises(checks.ConformanceError, match="raised builtins.RuntimeError: a framework's own error; "
                                                      "expected LayerShapeError"):
        trainchecks.check_raises(backend, reference, case)


def test_plugin_reports_families_and_notes(tmp_path):
    run = _run_kit(tmp_path, "--unidl-backend=partial", "--unidl-dtype=float64", "-q", "-k", "fused or (Dense and linear)")
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    summary = out[out.index("unidl conformance summary"):]
    families = {line.split()[0]: line.split()[1] for line in summary.splitlines()
                if line.startswith("  ") and line.split()[0] in ("fused", "layer")}
    assert families == {"fused": "12/0/1", "layer": "2/0/0"}
    assert "partial [fused:adagrad] (1 checks): no adagrad kernel yet" in summary
    assert f"partial: {trainchecks.GENERIC_ONLY}: adam[adam_amsgrad], rmsprop[rmsprop_centered]" in summary

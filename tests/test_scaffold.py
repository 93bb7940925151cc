"""``unidl new-backend NAME``: the plugin skeleton it writes builds, registers, and lists the ops to write."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import zipfile

import pytest

import unidl
from unidl import cli
from unidl.backend import PRIMITIVES, BackendError, missing_ops
from unidl.registry import REGISTRY
from unidl.scaffold import ScaffoldError, new_backend, signature
from unidl.testing import checks

NAME = "scaffolded_demo"  # unlikely to clash with an installed backend
PACKAGE = f"unidl_{NAME}"


@pytest.fixture
def skeleton(tmp_path):
    root = tmp_path / "unidl-scaffolded-demo"
    files = new_backend(NAME, root)
    return root, files


@pytest.fixture
def registered(skeleton, monkeypatch):
    """The generated plugin module, imported from its directory and registered as an entry point would be."""
    root, _ = skeleton
    monkeypatch.syspath_prepend(str(root))
    module = importlib.import_module(PACKAGE)
    REGISTRY.register_plugin(module, name=NAME)
    yield module
    REGISTRY.unregister_plugin(NAME)
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_the_skeleton_has_one_stub_per_primitive_with_its_contract(skeleton):
    root, files = skeleton
    assert sorted(str(p.relative_to(root)) for p in files) == sorted([
        "pyproject.toml", "README.md", f"{PACKAGE}/__init__.py", f"{PACKAGE}/backend.py", f"tests/test_{NAME}.py"])
    tree = ast.parse((root / PACKAGE / "backend.py").read_text())
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    stubs = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)
             and any(getattr(d, "id", None) == "not_implemented" for d in node.decorator_list)}
    assert list(stubs)[:len(PRIMITIVES)] == list(PRIMITIVES)
    for op, contract in PRIMITIVES.items():
        assert " ".join(ast.get_docstring(stubs[op]).split()) == contract
        params = ", ".join(a.arg for a in stubs[op].args.args[1:])
        assert params == ", ".join(p.split("=")[0].strip() for p in _split_params(signature(op)))
    assert {"variable", "assign", "value_and_grad", "grad_wrt_inputs"} <= set(stubs)


def _split_params(params: str) -> list[str]:
    """'x, strides=(1, 1), groups=1' -> ['x', 'strides=(1, 1)', 'groups=1'] (commas inside parentheses stay)."""
    parts, depth, current = [], 0, ""
    for ch in params:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in (*parts, current) if p.strip()]


def test_pyproject_declares_the_entry_point_and_the_hook_registers_the_backend(skeleton):
    root, _ = skeleton
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "unidl-scaffolded-demo"' in pyproject
    assert f'[project.entry-points.unidl]\n{NAME} = "{PACKAGE}"' in pyproject
    hook = (root / PACKAGE / "__init__.py").read_text()
    assert f'register("{NAME}", _make_backend' in hook and "framework=None" in hook and "install=" in hook
    readme = (root / "README.md").read_text()
    assert "pip install -e ." in readme and f"pytest --pyargs unidl.testing --unidl-backend={NAME}" in readme


def test_the_skeleton_builds_into_a_wheel(skeleton, tmp_path):
    root, _ = skeleton
    out = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(root)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert f"{PACKAGE}/backend.py" in names and f"{PACKAGE}/__init__.py" in names
    assert f"[unidl]\n{NAME} = {PACKAGE}" in entry_points


def test_the_registered_skeleton_lists_every_primitive_as_missing(registered):
    backend = unidl.get_backend(NAME)
    assert type(backend).__module__ == f"{PACKAGE}.backend"
    assert missing_ops(backend) == list(PRIMITIVES)
    with pytest.raises(checks.ConformanceError, match=rf"'{NAME}' .* does not implement {len(PRIMITIVES)} of the "
                                                      rf"{len(PRIMITIVES)} primitive ops: convert, to_numpy, "):
        checks.check_contract(backend)
    with pytest.raises(BackendError, match=rf"backend '{NAME}' does not implement 'matmul' yet"):
        backend.matmul(None, None)
    assert callable(backend.relu)  # derived ops come from Backend, written over the primitives


def test_the_generated_test_file_runs_and_names_the_missing_ops(registered, skeleton):
    root, _ = skeleton
    run = subprocess.run([sys.executable, "-c", _RUN_GENERATED_TEST, str(root), NAME], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(PRIMITIVES)} primitive ops still to write: convert, to_numpy" in run.stdout


# The generated test, in a fresh process with the plugin registered as in `registered`.
_RUN_GENERATED_TEST = """
import importlib, sys
root, name = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
from unidl.registry import REGISTRY
REGISTRY.register_plugin(importlib.import_module("unidl_" + name), name=name)
sys.path.insert(0, root + "/tests")
test = importlib.import_module("test_" + name)
try:
    test.test_every_primitive_op_is_written()
except AssertionError as exc:
    print(exc)
"""


@pytest.mark.parametrize("name, why", [
    ("My-Backend", "may hold only lowercase letters, digits and underscores, not '-', 'B', 'M' (e.g. 'my_backend')"),
    ("9lives", "must start with a letter, not '9'"),
    ("lambda", "is a Python keyword"),
    ("numpy", "a backend 'numpy' is already registered"),
    ("", "the name is empty"),
])
def test_bad_names_are_refused_with_the_reason(tmp_path, name, why):
    with pytest.raises(ScaffoldError, match=f"cannot use {name!r} as a backend name: .*"):
        new_backend(name, tmp_path / "out")
    with pytest.raises(ScaffoldError) as info:
        new_backend(name, tmp_path / "out")
    assert why in str(info.value)
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_is_never_overwritten(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(ScaffoldError, match="already exists"):
        new_backend(NAME, target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_the_command_line(tmp_path, capsys):
    assert cli.main(["new-backend", NAME, "--dir", str(tmp_path / "pkg"), "--framework", "mlx.core"]) == 0
    assert "pytest --pyargs unidl.testing --unidl-backend=scaffolded_demo" in capsys.readouterr().out
    hook = (tmp_path / "pkg" / PACKAGE / "__init__.py").read_text()
    assert 'framework="mlx.core"' in hook and 'install="pip install mlx"' in hook
    assert 'framework = "mlx.core"' in (tmp_path / "pkg" / PACKAGE / "backend.py").read_text()
    assert cli.main(["new-backend", NAME, "--dir", str(tmp_path / "pkg")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["new-backend", "Bad Name"]) == 2
    assert "may hold only lowercase letters" in capsys.readouterr().err
    assert cli.main(["new-backend", NAME, "--dir", str(tmp_path / "other"), "--framework", 'x"; import os']) == 2
    assert "--framework must be a module name" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_every_primitive_contract_starts_with_its_call():
    """The scaffold reads each stub's parameters off the contract line: keep that form."""
    for op in PRIMITIVES:
        params = signature(op)
        compile(f"def {op}(self, {params}): pass" if params else f"def {op}(self): pass", op, "exec")

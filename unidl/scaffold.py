"""``unidl new-backend NAME``: write the skeleton of a backend plugin package.

The package installs (``pip install -e DIR``), registers backend NAME through the
``unidl`` entry point, and holds one ``@not_implemented`` stub per op of
``unidl.backend.PRIMITIVES`` (its contract line as docstring) plus the state and
autodiff methods. Until the stubs are written, ``unidl.backend.missing_ops`` and the
kit's contract check list them all at once. Everything else (the derived ops,
composites, layers, losses, optimizers) comes from ``unidl.backend.Backend``.

The templates below use ``string.Template``: ``$name`` is filled in, ``$$`` is a dollar.
"""
from __future__ import annotations

import keyword
import re
import textwrap
from pathlib import Path
from string import Template

from .backend import PRIMITIVES
from .registry import REGISTRY


class ScaffoldError(ValueError):
    """The skeleton cannot be written: a bad name, or a directory that already exists."""


# ------------------------------------------------------------------ names

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NAME_CHAR = re.compile(r"[a-z0-9_]")
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a backend (its package is ``unidl_<name>``), or None when it can."""
    if not name:
        return "the name is empty"
    bad = sorted({ch for ch in name if not _NAME_CHAR.fullmatch(ch)})
    if bad:
        hint = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        return (f"it may hold only lowercase letters, digits and underscores, not {', '.join(map(repr, bad))}"
                + (f" (e.g. {hint!r})" if _NAME.fullmatch(hint) else ""))
    if not _NAME.fullmatch(name):
        return f"it must start with a letter, not {name[0]!r}"
    if keyword.iskeyword(name):
        return "it is a Python keyword"
    for row in REGISTRY.list_backends():
        if row["name"] == name:
            return f"a backend {name!r} is already registered (by plugin {row['plugin']!r}); pick another name"
    return None


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) + "Backend"


# ------------------------------------------------------------- the stubs

def signature(op: str) -> str:
    """The parameters of ``op`` as its contract line spells them: 'x, dtype=None' for convert."""
    contract = PRIMITIVES[op]
    if not contract.startswith(f"{op}("):
        raise ValueError(f"the contract of {op!r} must start with its call, {op}(...): {contract!r}")
    depth = 0
    for end, ch in enumerate(contract):
        depth += ch == "("
        depth -= ch == ")"
        if ch == ")" and depth == 0:
            return contract[len(op) + 1:end]
    raise ValueError(f"unbalanced parentheses in the contract of {op!r}: {contract!r}")


def _docstring(text: str, indent: str) -> str:
    text = text.replace("\\", "\\\\").replace('"""', "'''")
    lines = textwrap.wrap(text, width=100 - len(indent), break_long_words=False, break_on_hyphens=False)
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""'
    return f'{indent}"""' + f"\n{indent}".join(lines) + f'\n{indent}"""'


def _stub(op: str, params: str, contract: str) -> str:
    head = f"    @not_implemented\n    def {op}(self{', ' if params else ''}{params}):\n"
    return head + _docstring(contract, " " * 8) + "\n"


# Not ops, but what every backend writes too (see Backend): name -> (parameters, contract).
STATE_METHODS: dict[str, tuple[str, str]] = {
    "variable": ('value, trainable=True, name=""',
                 "A framework variable holding value (a NumPy array) in the compute dtype: what layer code "
                 "passes to ops, and what value_and_grad differentiates with respect to."),
    "assign": ("variable, value", "Overwrite variable in place with value (same shape). Not differentiated."),
    "value_and_grad": ("fn, variables",
                       "Run fn() -> (loss, aux) and return (loss, aux, grads), grads[i] of variables[i]'s shape; "
                       "zeros where the loss does not depend on it."),
    "grad_wrt_inputs": ("fn, inputs", "(fn(*inputs), grads) with respect to the plain tensors inputs."),
}


def backend_source(name: str, framework: str | None) -> str:
    """The text of ``unidl_<name>/backend.py``: the Backend subclass with its stubs."""
    stubs = "\n".join(_stub(op, signature(op), contract) for op, contract in PRIMITIVES.items())
    state = "\n".join(_stub(op, params, contract) for op, (params, contract) in STATE_METHODS.items())
    return _BACKEND.substitute(name=name, cls=_class_name(name), framework=framework or "",
                               framework_text=framework or "your framework", count=len(PRIMITIVES),
                               stubs=stubs, state=state)


# ------------------------------------------------------------ the package

def new_backend(name: str, directory: str | Path | None = None, framework: str | None = None) -> list[Path]:
    """Write the plugin package for backend ``name`` into ``directory`` (default ``./unidl-<name>``).

    ``framework`` is the module the backend imports (e.g. "mlx.core"); ``unidl backends``
    then says whether it is installed. Refuses a bad name and an existing directory
    (``ScaffoldError``). Returns the files written.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ScaffoldError(f"cannot use {name!r} as a backend name: {problem}")
    if framework is not None and not _MODULE.fullmatch(framework):
        raise ScaffoldError(f"--framework must be a module name such as mlx.core, got {framework!r}")
    dist = f"unidl-{name.replace('_', '-')}"
    root = Path(directory) if directory is not None else Path.cwd() / dist
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another --dir (nothing was written)")
    package = f"unidl_{name}"
    install = f"pip install {framework.split('.')[0]}" if framework else f"pip install {dist}"
    fields = dict(name=name, dist=dist, package=package, cls=_class_name(name),
                  framework_arg=f'"{framework}"' if framework else "None", install=install)
    files = {
        "pyproject.toml": _PYPROJECT.substitute(fields),
        "README.md": _README.substitute(fields),
        f"{package}/__init__.py": _INIT.substitute(fields),
        f"{package}/backend.py": backend_source(name, framework),
        f"tests/test_{name}.py": _TEST.substitute(fields),
    }
    written = []
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# ------------------------------------------------------------ templates

_PYPROJECT = Template('''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The $name backend for unidl."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["unidl"]  # add your framework here

# The line that makes this a unidl plugin: unidl loads the module named here and calls
# its hooks. "$name" is the plugin's name in `unidl backends`.
[project.entry-points.unidl]
$name = "$package"

[tool.setuptools]
packages = ["$package"]
''')

_INIT = Template('''\
"""$dist: the $name backend for unidl, registered as a plugin.

unidl imports this module when it first looks up a backend, so it must stay cheap:
it imports no framework, it only says how to build the backend.
"""
from unidl import hookimpl

__version__ = "0.1.0"


def _make_backend(dtype: str = "float32", device: str | None = None):
    from .backend import $cls  # the framework is imported there, on the first compile
    return $cls(dtype=dtype, device=device)


@hookimpl
def unidl_register_backends(register):
    register("$name", _make_backend,
             framework=$framework_arg,  # the module your backend imports, e.g. "mlx.core"
             install="$install",  # shown by `unidl backends` when the framework is missing
             description="$name (work in progress)")
''')

_BACKEND = Template('''\
"""``$cls``: unidl's primitive ops on $framework_text.

Written by ``unidl new-backend $name``: one stub per op of ``unidl.backend.PRIMITIVES``
($count ops), each with its contract as docstring, then the state and autodiff methods.
Write each one and remove its ``@not_implemented``; the conformance kit lists the
stubs left (``pytest --pyargs unidl.testing --unidl-backend=$name``).

Everything else has a default in ``unidl.backend.Backend``, written over these ops:
the derived ops of ``unidl.backend.DERIVED`` (maximum, relu, mean, the pools...) and
the composites (softmax, one_hot...). Override one when your framework has a faster
kernel with the same conventions. Where a framework function has an op's exact
contract, bind it in ``__init__`` instead of writing a method (``self.add = fw.add``).

If your framework's arrays are immutable (JAX, MLX), base the class on
``unidl.immutable_arrays.ImmutableArrays`` too: it provides variable, assign,
value_and_grad, grad_wrt_inputs and compile_step. Guide: docs/writing-a-backend.md.
"""
from __future__ import annotations

from typing import Any

from unidl.backend import Backend, BackendError, not_implemented  # noqa: F401 - BackendError: for your errors

fw: Any = None  # your framework, imported by $cls.__init__ (importing this module must stay free)


class $cls(Backend):
    """The $name backend."""

    name = "$name"
    framework = "$framework"  # the module your framework is imported as

    def __init__(self, dtype: str = "float32", device: str | None = None):
        super().__init__(dtype=dtype, device=device)  # checks dtype against supported_dtypes
        # global fw
        # import your_framework as fw

    # ------------------------------------------------------------ primitives

$stubs
    # ------------------------------------------------------ state, autodiff

$state''')

_README = Template('''\
# $dist

The `$name` backend for [unidl](https://pypi.org/project/unidl/), written by
`unidl new-backend $name`.

```bash
pip install -e .                                      # registers the "$name" backend
unidl backends                                        # "$name" is listed
pytest tests                                          # lists the primitive ops still to write
pytest --pyargs unidl.testing --unidl-backend=$name   # the conformance kit, float32 and float64
```

`$package/backend.py` holds one stub per primitive op, with its contract. Write
them, then run the kit until it passes; declare what cannot pass, with a reason,
in `conformance_exclusions` / `conformance_tolerances` on the class. unidl's
docs/writing-a-backend.md walks through the contract, the kit and the optional
fast paths (`compile_step`, `fused_update`, native composites).
''')

_TEST = Template('''\
"""First checks of the $name backend. The full conformance kit:
``pytest --pyargs unidl.testing --unidl-backend=$name``."""
import numpy as np

import unidl
from unidl.backend import missing_ops


def test_every_primitive_op_is_written():
    missing = missing_ops(unidl.get_backend("$name"))
    assert not missing, f"{len(missing)} primitive ops still to write: {', '.join(missing)}"


def test_arrays_round_trip():
    backend = unidl.get_backend("$name")
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(backend.to_numpy(backend.convert(x)), x)
''')

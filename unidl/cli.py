"""The ``unidl`` command line, also run as ``python -m unidl``.

::

    unidl --version
    unidl backends [--json] [--strict [NAME]] [--devices]
    unidl bench [--steps N] [--device cuda] [--json FILE]
    unidl compare MODEL [--backends numpy,torch] [--steps N] [--json] [--plot out.png] [--fail-above TOL]
    unidl new-backend NAME [--dir DIR] [--framework MODULE]

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its
arguments and sets ``handler``, plus the handler itself, which takes the parsed
arguments and returns the exit status. To add a subcommand, write that pair and
list the first in ``_SUBCOMMANDS``.

Listing backends never imports a framework: it reads entry points, calls the
registration hooks and asks ``importlib`` whether each framework could be
found. Only ``--devices`` imports frameworks, because only a running framework
knows its devices.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Callable, Sequence

from . import registry
from .version import __version__
from .backend import missing_ops

# ------------------------------------------------------------------ helpers


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart, with a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _source(distribution: str, version: str) -> str:
    """'unidl 0.1.0' for an entry-point plugin, '-' for one registered in-process."""
    return f"{distribution} {version}".strip() or "-"


# ---------------------------------------------------------- unidl backends


def _add_backends(subparsers) -> None:
    p = subparsers.add_parser(
        "backends",
        help="list the registered backends and the plugins that failed to load",
        description="List every registered backend: the plugin and distribution it comes from, "
                    "its framework and that framework's version, and whether the framework is "
                    "installed (with the command that installs it when it is not). Plugins that "
                    "failed to load are listed after the table. No framework is imported, "
                    "unless --devices is given.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--strict", nargs="?", const=True, default=False, metavar="NAME",
                   help="exit with status 1 when a framework is missing or a plugin failed to load; with a "
                        "backend NAME, check that one alone: registered, its plugin loaded, its framework "
                        "installed, and the backend built with every required op (this imports its framework)")
    p.add_argument("--devices", action="store_true",
                   help="also list each installed backend's devices (this imports the frameworks)")
    p.set_defaults(handler=_run_backends)


def _devices(name: str) -> list[str] | str:
    """The backend's devices, or the error that stopped us from asking."""
    try:
        return list(registry.REGISTRY.get_backend(name).devices())
    except Exception as exc:  # report it in the table; one broken backend must not hide the rest
        return f"error: {type(exc).__name__}: {exc}"


def _plugin_json(record) -> dict:
    return {**dataclasses.asdict(record), "error": record.error}


def _check_one(reg, name: str) -> list[str]:
    """Why backend ``name`` is not usable (empty when it is): registered, plugin loaded, framework, ops."""
    try:
        info = reg.backend_info(name)
    except registry.UnknownBackendError as exc:
        return [str(exc)]
    record = reg.plugins.get(info.plugin)
    problems = [f"plugin {info.plugin!r}: {record.error}"] if record is not None and record.error else []
    if not info.framework_installed:
        return problems + [f"framework {info.framework!r} is not installed: {info.install or 'pip install ' + info.framework}"]
    try:
        backend = reg.get_backend(name)
    except Exception as exc:  # the point of --strict NAME: report why it does not build
        return problems + [f"cannot build the backend: {type(exc).__name__}: {exc}"]
    missing = missing_ops(backend)
    if missing:
        problems.append(f"required ops not implemented: {', '.join(missing)}")
    return problems


def _run_backends(args: argparse.Namespace) -> int:
    reg = registry.REGISTRY  # looked up at call time, so tests can swap in their own Registry
    rows = reg.list_backends()
    plugins = list(reg.plugins.values())
    failures = reg.failures()
    if args.devices:
        for row in rows:
            row["devices"] = _devices(row["name"]) if row["installed"] else []
    one = args.strict if isinstance(args.strict, str) else None
    if one is not None:
        problems = _check_one(reg, one)
        status = 1 if problems else 0
    else:
        problems = bool(failures) or not all(row["installed"] for row in rows)
        status = 1 if args.strict and problems else 0

    if args.json:
        out = {"unidl_version": __version__, "backends": rows, "plugins": [_plugin_json(p) for p in plugins],
               "failures": [_plugin_json(p) for p in failures]}
        if one is not None:
            out["checked"] = {"backend": one, "ok": not problems, "problems": problems}
        print(json.dumps(out, indent=2))
        return status

    if rows:
        header = ["BACKEND", "PLUGIN", "FROM", "FRAMEWORK", "INSTALLED"] + (["DEVICES"] if args.devices else [])
        table = []
        for row in rows:
            framework = " ".join(filter(None, [row["framework"], row["framework_version"]])) or "-"
            installed = "yes" if row["installed"] else f"no: {row['install'] or 'pip install ' + row['framework']}"
            cells = [row["name"], row["plugin"], _source(row["distribution"], row["version"]), framework, installed]
            if args.devices:
                devices = row["devices"]
                cells.append(", ".join(devices) if isinstance(devices, list) else devices)
            table.append(cells)
        print(_table(header, table))
    else:
        print("no backends are registered (is unidl installed? `pip install -e .` registers the built-ins)")
    if failures:
        print("\nplugins that failed to load:")
        for p in failures:
            print(f"  {p.name} ({_source(p.distribution, p.version)}): {p.error}")
    if one is not None:
        print(f"\nbackend {one!r}: " + ("ok" if not problems else "NOT usable:\n  - " + "\n  - ".join(problems)))
    return status


# ------------------------------------------------------------- unidl bench


def _add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", add_help=False,
        help="time unidl against hand-written native training loops (see `unidl bench --help`)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from . import bench  # its argument parser owns the options and --help
    return bench.main(args.bench_args)


# ----------------------------------------------------------- unidl compare


def _tolerance_arg(text: str) -> float | None:
    """--fail-above: a number, or 'auto' for the named tolerances of CONVENTIONS.md."""
    if text.lower() in ("auto", "named"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e-4, or 'auto'; got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"the tolerance must be >= 0, got {text!r}")
    return value


def _add_compare(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="run one model on several backends from the same weights; report where the numbers differ",
        description="Run one model on several backends from the same initial weights and the same batches, "
                    "and report, against the reference backend: each layer's output and the first layer "
                    "that diverges, each parameter's gradient, the loss and metric curves of a few training "
                    "steps and the final weights; then ms/step and peak memory per backend, each measured "
                    "in its own subprocess.",
        epilog="MODEL is a Python file or module exposing a factory that returns an uncompiled model "
               "(examples/xor.py, model.py:make_net, mypkg.models:make) or a built-in example "
               "(regression_mlp, xor, deep_regression, binary_classifier). The factory defaults to "
               "build_model, the data to the same module's make_data, the optimizer/loss/metrics to its "
               "compile_kwargs(). Exit status: 0, or 1 with --fail-above when a backend disagrees or fails, "
               "2 for bad arguments.")
    p.add_argument("model", metavar="MODEL", help="file.py[:factory], pkg.module[:factory] or an example name")
    p.add_argument("--data", metavar="SPEC", help="data factory returning (x, y) (default: MODEL's make_data)")
    p.add_argument("--backends", metavar="LIST",
                   help="comma-separated backends (default: every installed backend, plugins included)")
    p.add_argument("--reference", default="numpy", help="the backend the others are compared with (numpy)")
    p.add_argument("--reference-dtype", default="float64", choices=("float32", "float64"),
                   help="the reference's dtype (float64)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="the compared backends' dtype (float32)")
    p.add_argument("--steps", type=int, default=20, help="training steps to compare (20)")
    p.add_argument("--epochs", type=int, default=None, help="train whole epochs instead of --steps")
    p.add_argument("--batch-size", type=int, default=32, help="batch size; the first batch is the probe (32)")
    p.add_argument("--device", default=None, help="device for the torch backend, e.g. cuda or cuda:1")
    p.add_argument("--seed", type=int, default=0, help="seed given to factories that take one (0)")
    p.add_argument("--loss", default=None, help="loss name, overriding the module's compile_kwargs()")
    p.add_argument("--optimizer", default=None, help="optimizer name, overriding compile_kwargs()")
    p.add_argument("--metrics", default=None, help="comma-separated metric names, overriding compile_kwargs()")
    p.add_argument("--no-speed", action="store_true", help="skip timing and memory (faster)")
    p.add_argument("--repeats", type=int, default=5, help="timed epochs per backend; the median is shown (5)")
    p.add_argument("--timing-steps", type=int, default=None, help="steps per timed epoch (max(--steps, 50))")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="write the loss and metric curves to this PNG (needs matplotlib)")
    p.add_argument("--plain", action="store_true",
                   help="plain-text tables even on a terminal with rich installed (pipes always get plain text)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p.add_argument("--fail-above", type=_tolerance_arg, default=False, metavar="TOL",
                   help="exit 1 when a value differs by more than TOL (|a-r| > TOL*(1+|r|)) or a backend "
                        "fails; 'auto' uses the named tolerances for the dtype")
    p.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    import os
    from .compare import MATPLOTLIB_MISSING, CompareError, compare, matplotlib_available
    if os.getcwd() not in sys.path:  # `unidl compare mypkg.models:make` from the project's directory
        sys.path.insert(0, os.getcwd())
    if args.plot and not matplotlib_available():
        print(f"unidl compare: {MATPLOTLIB_MISSING}", file=sys.stderr)
        return 2
    overrides = {"loss": args.loss, "optimizer": args.optimizer,
                 "metrics": [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None}
    progress = None if args.quiet else (lambda msg: print(f"unidl compare: {msg}", file=sys.stderr, flush=True))
    try:
        report = compare(
            args.model, args.data, backends=args.backends, reference=args.reference,
            reference_dtype=args.reference_dtype, dtype=args.dtype, steps=args.steps, epochs=args.epochs,
            batch_size=args.batch_size, device=args.device, seed=args.seed,
            compile={k: v for k, v in overrides.items() if v is not None}, speed=not args.no_speed,
            repeats=args.repeats, timing_steps=args.timing_steps, progress=progress)
    except (CompareError, ValueError, registry.UnknownBackendError) as exc:
        print(f"unidl compare: {exc}", file=sys.stderr)
        return 2
    tol = None if args.fail_above is False else args.fail_above
    if args.json:
        out = report.to_dict()
        if tol is not None:
            out["fail_above"] = tol
            out["passed_fail_above"] = report.passed(tol)
        print(json.dumps(out, indent=2))
    else:
        report.print(tol, plain=True if args.plain else None)
    if args.plot:
        path = report.plot(args.plot)
        if progress:
            progress(f"curves written to {path}")
    if args.fail_above is not False and not report.passed(tol):
        return 1
    return 0


# ------------------------------------------------------- unidl new-backend


def _add_new_backend(subparsers) -> None:
    p = subparsers.add_parser(
        "new-backend",
        help="write the skeleton of a backend plugin package (one stub per primitive op)",
        description="Write an installable plugin package for backend NAME: pyproject.toml with the unidl "
                    "entry point, the registration hook, a Backend subclass with one stub per primitive op "
                    "(its contract as docstring), a README with the install and kit commands, and a test.")
    p.add_argument("name", metavar="NAME", help="the backend's name: lowercase letters, digits and underscores")
    p.add_argument("--dir", default=None, help="directory to create (default: ./unidl-NAME); must not exist")
    p.add_argument("--framework", default=None, metavar="MODULE",
                   help="the module the backend imports, e.g. mlx.core (`unidl backends` checks it is installed)")
    p.set_defaults(handler=_run_new_backend)


def _run_new_backend(args: argparse.Namespace) -> int:
    from .scaffold import ScaffoldError, new_backend
    try:
        files = new_backend(args.name, args.dir, framework=args.framework)
    except ScaffoldError as exc:
        print(f"unidl new-backend: {exc}", file=sys.stderr)
        return 2
    root = files[0].parent
    print(f"wrote the {args.name!r} backend plugin in {root}:")
    for path in files:
        print(f"  {path.relative_to(root)}")
    print(f"next: pip install -e {root}, then `pytest {root / 'tests'}` lists the primitive ops to write, "
          f"and `pytest --pyargs unidl.testing --unidl-backend={args.name}` runs the conformance kit")
    return 0


# --------------------------------------------------------------------- main

_SUBCOMMANDS: tuple[Callable, ...] = (_add_backends, _add_bench, _add_compare, _add_new_backend)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unidl",
        description="unidl: describe a neural network once, run it on NumPy, PyTorch, TensorFlow "
                    "or any backend a plugin adds.")
    parser.add_argument("--version", action="version", version=f"unidl {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # bench's own parser owns all its options, --help included
        from . import bench
        return bench.main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: hand back argparse's status
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.handler(args)
    except BrokenPipeError:  # `unidl backends | head`
        sys.stderr.close()
        return 0

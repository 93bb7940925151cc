"""The ``unidl`` command line, also run as ``python -m unidl``.

::

    unidl --version
    unidl backends [--json] [--strict] [--devices]
    unidl bench [--steps N] [--device cuda] [--json FILE]

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its
arguments and sets ``handler``, plus the handler itself, which takes the parsed
arguments and returns the exit status. To add a subcommand (``bench`` and
``compare`` are planned), write that pair and list the first in ``_SUBCOMMANDS``.

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

from . import __version__, registry

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
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a framework is missing or a plugin failed to load")
    p.add_argument("--devices", action="store_true",
                   help="also list each installed backend's devices (this imports the frameworks)")
    p.set_defaults(handler=_run_backends)


def _devices(name: str) -> list[str] | str:
    """The backend's devices, or the error that stopped us from asking."""
    try:
        return list(registry.REGISTRY.get_backend(name).devices())
    except Exception as exc:  # report it in the table; one broken backend must not hide the rest
        return f"error: {type(exc).__name__}: {exc}"


def _run_backends(args: argparse.Namespace) -> int:
    reg = registry.REGISTRY  # looked up at call time, so tests can swap in their own Registry
    rows = reg.list_backends()
    plugins = list(reg.plugins.values())
    failures = reg.failures()
    if args.devices:
        for row in rows:
            row["devices"] = _devices(row["name"]) if row["installed"] else []
    problems = bool(failures) or not all(row["installed"] for row in rows)
    status = 1 if args.strict and problems else 0

    if args.json:
        print(json.dumps({
            "unidl_version": __version__,
            "backends": rows,
            "plugins": [dataclasses.asdict(p) for p in plugins],
            "failures": [dataclasses.asdict(p) for p in failures],
        }, indent=2))
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


# --------------------------------------------------------------------- main

_SUBCOMMANDS: tuple[Callable, ...] = (_add_backends, _add_bench)


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

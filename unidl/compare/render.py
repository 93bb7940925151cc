"""The report as text: plain tables, rich tables on a terminal, and the curves as a PNG (matplotlib)."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
import numpy as np

# Functions here take a report.CompareReport ("report") or report.Diff ("d"); report.py imports this module.

MATPLOTLIB_MISSING = ("--plot needs matplotlib, which is not installed; install it with: "
                      "pip install matplotlib   (or: pip install 'unidl[compare]')")


def num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.1e}"


def _status(d, tol: float | None) -> str:
    ok = d.within(tol)
    if ok:
        return "ok"
    if d.note:
        return f"FAIL ({d.note})"
    return f"FAIL ({d.mismatched}/{d.size})" if tol is None else "FAIL"


def _sections(report, tol: float | None) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table; shared by the plain and the rich renderers."""
    ref = report.reference_report
    ref_label = f"{ref.backend}/{ref.dtype}"
    limit = "" if tol is None else f"; pass/fail against --fail-above {tol:g} (err = |a-r|/(1+|r|))"
    out = []
    ok_runs = [b for b in report.compared if not b.error]
    scope = ok_runs[0].forward_scope if ok_runs else ""
    rows = []
    for b in ok_runs:
        for d in b.forward or []:
            rows.append([d.name, str(d.shape), b.label, num(d.max_abs), num(d.max_rel), _status(d, tol)])
    for b in ok_runs:  # the compiled loss on the same batch, a forward quantity too
        if b.loss_diff is not None:
            d = b.loss_diff
            rows.append([f"(loss {b.loss:.6g})", "()", b.label, num(d.max_abs), num(d.max_rel), _status(d, tol)])
    out.append((f"Forward: {scope} outputs on the first {report.probe_size} samples vs {ref_label}, "
                f"{report.tolerances['forward']}{limit}",
                ["layer", "shape", "backend", "max abs", "max rel", "status"], rows))
    rows = []
    for b in ok_runs:
        for d in b.gradients or []:
            rows.append([d.name, str(d.shape), b.label, num(d.max_abs), num(d.max_rel), _status(d, tol)])
    out.append((f"Gradients of the loss on that batch vs {ref_label}, {report.tolerances['grad']}{limit}",
                ["parameter", "shape", "backend", "max abs", "max rel", "status"], rows))
    rows = []
    for b in [ref, *ok_runs]:
        curve = b.loss_curve
        first = f"{curve[0]:.6g}" if curve else "-"
        last = f"{curve[-1]:.6g}" if curve else "-"
        if b.is_reference:
            rows.append([b.label + " (ref)", first, last, "", "", "", ""])
            continue
        worst = max(b.final_weights or [], key=lambda d: d.err, default=None)
        status = "ok" if all(d.within(tol) for d in [b.loss_curve_diff, *(b.final_weights or [])] if d) else "FAIL"
        rows.append([b.label, first, last, num(b.loss_curve_diff.max_rel) if b.loss_curve_diff else "-",
                     f"{num(worst.max_abs)} ({worst.name})" if worst else "-",
                     ", ".join(f"{k} {num(v)}" for k, v in b.metric_max_abs.items()) or "-", status])
    out.append((f"Training: {report.steps} steps, batch {report.probe_size}, same batches in order (shuffle off); "
                f"loss {report.tolerances['trajectory']}, weights {report.tolerances['weights']}{limit}",
                ["backend", "loss step 1", "final loss", "loss max rel", "final weights max abs (worst)",
                 "metric max abs", "status"], rows))
    speed = [b for b in report.compared if b.speed is not None]
    if speed:
        rows = []
        methods: list[str] = []
        for b in speed:
            s = b.speed
            if s.error:
                rows.append([b.label, "-", "-", "-", "-", "-", f"error: {s.error}"])
                continue
            if s.memory_method not in methods:
                methods.append(s.memory_method)
            rows.append([b.label, f"{s.ms_per_step:.3f}", f"{min(s.ms_per_step_runs):.3f}",
                         f"{max(s.ms_per_step_runs):.3f}", f"{s.peak_mb:.1f}" if s.peak_mb is not None else "-",
                         f"{s.process_peak_mb:.0f}" if s.process_peak_mb is not None else "-",
                         f"[{methods.index(s.memory_method) + 1}]"])
        timing = next((b.speed.timing for b in speed if not b.speed.error), "")
        legend = "; ".join(f"[{i + 1}] {m}" for i, m in enumerate(methods))
        out.append((f"Speed and memory: ms per training step, {timing}. Memory: {legend}",
                    ["backend", "ms/step (median)", "min", "max", "training MB", "process peak MB", "memory"],
                    rows))
    return out


def _summary(report, tol: float | None) -> list[str]:
    lines = []
    for b in report.compared:
        if b.error:
            lines.append(f"{b.label}: did not run: {b.error}")
            continue
        first = b.first_divergence(tol)
        lines.append(f"{b.label}: " + (f"first diverging layer: {first}" if first else
                                        "no layer diverges" if b.forward_scope == "per layer" else
                                        "the output agrees"))
    failures = report.failures(tol)
    what = "the named tolerances" if tol is None else f"--fail-above {tol:g}"
    head = (f"PASSED: every backend agrees with {report.reference}/{report.reference_dtype} within {what}"
            if not failures else f"FAILED: {len(failures)} check(s) outside {what}:")
    return lines + [head] + [f"  - {f}" for f in failures[:20]] + (
        [f"  ... and {len(failures) - 20} more"] if len(failures) > 20 else [])


def _header(report) -> str:
    return (f"unidl compare: {report.model}; reference {report.reference}/{report.reference_dtype}, compared in "
            f"{report.dtype}; seed {report.seed}")


def _plain_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def render_plain(report, tol: float | None) -> list[str]:
    lines = [_header(report)]
    for title, header, rows in _sections(report, tol):
        lines += ["", title] + (_plain_table(header, rows) if rows else ["(nothing to show)"])
    if report.notes:
        lines += [""] + [f"note: {n}" for n in report.notes]
    return lines + [""] + _summary(report, tol)


def render_rich(report, tol: float | None, file) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(file=file)
    console.print(f"[bold]{_header(report)}[/bold]")
    for title, header, rows in _sections(report, tol):
        table = Table(title=title, title_justify="left", title_style="bold")
        for h in header:
            table.add_column(h, justify="right" if any(k in h for k in ("max", "ms", "min", "MB", "loss")) else "left")
        for row in rows:
            table.add_row(*[f"[red]{c}[/red]" if c.startswith("FAIL") else
                            f"[green]{c}[/green]" if c == "ok" else c for c in row])
        console.print(table)
    for n in report.notes:
        console.print(f"note: {n}", highlight=False)
    for line in _summary(report, tol):
        style = "green" if line.startswith("PASSED") else "red" if line.startswith(("FAILED", "  -")) else ""
        console.print(f"[{style}]{line}[/{style}]" if style else line, highlight=False)


def plot_curves(report, path: Path) -> Path:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(MATPLOTLIB_MISSING) from None
    runs = [b for b in report.backends if b.loss_curve]
    metrics = list(dict.fromkeys(k for b in runs for k in b.metric_curves))
    ref = report.reference_report
    panels = ["loss", *metrics] + (["|loss - reference loss|"] if len(runs) > 1 else [])
    fig = Figure(figsize=(5.5 * len(panels), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for i, b in enumerate(runs):  # one colour per backend in every panel
            label = b.label + (" (reference)" if b.is_reference else "")
            style = {"linestyle": "--", "linewidth": 2.5, "alpha": 0.6} if b.is_reference else {"linewidth": 1.2}
            style["color"] = f"C{i % 10}"
            steps = np.arange(1, len(b.loss_curve) + 1)
            if panel == "loss":
                ax.plot(steps, b.loss_curve, label=label, **style)
            elif panel in b.metric_curves:
                ax.plot(steps, b.metric_curves[panel], label=label, **style)
            elif panel.startswith("|") and not b.is_reference:
                n = min(len(b.loss_curve), len(ref.loss_curve))
                gap = np.abs(np.subtract(b.loss_curve[:n], ref.loss_curve[:n]))
                ax.semilogy(steps[:n], np.maximum(gap, 1e-18), label=label, **style)
        ax.set_title(panel if panel != "loss" else f"loss ({report.model})")
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None

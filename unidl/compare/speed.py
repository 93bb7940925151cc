"""Speed and memory: each backend timed in its own subprocess (or in this one when it must)."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..memory import max_rss_mb, proc_status_mb, reset_peak_rss
from ..models import Model
from ..ops import use_backend
from ..registry import get_backend
from ..structure import flatten, map_structure
from .report import CompareError, Speed
from .sources import (ModelSource, _resolve_compile, _unbound_built, compiled_clone, consistency_mode,
                      load_source, num_samples)


def _timing_data(x, y, batch_size: int, steps: int):
    """``steps`` full batches (rows repeated when the data is smaller) and the batch size used."""
    n = num_samples(x)
    batch = min(batch_size, n)
    idx = np.arange(steps * batch) % n
    return map_structure(lambda a: np.asarray(a)[idx], x), map_structure(lambda a: np.asarray(a)[idx], y), batch


def _time_training(model: Model, x, y, batch: int, steps: int, repeats: int) -> list[float]:
    """ms/step of ``repeats`` one-epoch fits of ``steps`` batches, after one warm-up epoch."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        model.backend.sync()
        times.append((time.perf_counter() - start) * 1e3 / steps)
    return times[1:]


def _measure_here(base: Model, kwargs: dict, x, y, backend: str, dtype: str, device, batch_size: int,
                  steps: int, repeats: int) -> Speed:
    """Speed in this process; memory with tracemalloc (NumPy allocations) or torch's CUDA counters."""
    import tracemalloc
    xt, yt, batch = _timing_data(x, y, batch_size, steps)
    model = compiled_clone(base, kwargs, backend, dtype, device)
    consistency_mode(model.backend)
    runs = _time_training(model, xt, yt, batch, steps, repeats)
    cuda = model.backend.device_peak_memory_mb()
    if cuda is not None:
        peak, method = cuda, "the device's peak allocation (the backend's device_peak_memory_mb), in-process"
    else:
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base_mem = tracemalloc.get_traced_memory()[0]
        model.fit(xt, yt, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        peak = (tracemalloc.get_traced_memory()[1] - base_mem) / 2**20
        if not tracing:
            tracemalloc.stop()
        method = ("tracemalloc peak over one epoch, in-process (NumPy and Python allocations only; "
                  + ("the framework's own memory is not seen)" if backend != "numpy" else "complete for numpy)"))
    return Speed(statistics.median(runs), runs, peak, method,
                 f"median of {repeats} fit() epochs of {steps} steps (batch {batch}) after a warm-up, in-process")


def measure_all(reports, source: ModelSource, base: Model, kwargs: dict, x, y, batch_size: int, steps: int,
                 repeats: int, isolate: bool | None, seed, say, notes: list[str], compile_overrides) -> None:
    overrides_json = None
    if source.spec is not None:
        try:
            overrides_json = json.dumps(compile_overrides or {})
        except TypeError:
            overrides_json = None  # objects in compile=...: only this process has them
    can_isolate = source.spec is not None and overrides_json is not None
    if isolate and not can_isolate:
        raise CompareError("isolate=True needs a model a subprocess can rebuild: a spec string or an importable "
                           "factory, with compile= holding names only")
    use_subprocess = can_isolate if isolate is None else bool(isolate)
    if not use_subprocess:
        notes.append("speed and memory measured in this process (the model cannot be rebuilt in a subprocess)")
    with tempfile.TemporaryDirectory(prefix="unidl-compare-") as tmp:
        if use_subprocess:
            xt, yt, batch = _timing_data(x, y, batch_size, steps)
            arrays = {f"x{i}": a for i, a in enumerate(flatten(xt))}
            arrays.update({f"y{i}": a for i, a in enumerate(flatten(yt))})
            np.savez(Path(tmp, "data.npz"), **arrays)
            np.savez(Path(tmp, "weights.npz"), *base.get_weights())
        for report in reports:
            if report.is_reference or report.error:
                continue
            say(f"timing {report.label}")
            device = None if report.device == "cpu" else report.device
            try:
                if use_subprocess:
                    job = {"spec": source.spec, "seed": seed, "compile": json.loads(overrides_json),
                           "x_count": len(flatten(xt)), "y_count": len(flatten(yt)),
                           "x_list": isinstance(xt, (list, tuple)), "y_list": isinstance(yt, (list, tuple)),
                           "dir": tmp, "backend": report.backend, "dtype": report.dtype, "device": device,
                           "batch": batch, "steps": steps, "repeats": repeats}
                    report.speed = _run_worker(job)
                    if report.speed.error is None:
                        continue
                    worker_error = report.speed.error
                    report.speed = _measure_here(base, kwargs, x, y, report.backend, report.dtype, device,
                                                 batch_size, steps, repeats)
                    report.speed.timing += f" (the subprocess failed: {worker_error})"
                else:
                    report.speed = _measure_here(base, kwargs, x, y, report.backend, report.dtype, device,
                                                 batch_size, steps, repeats)
            except Exception as exc:
                report.speed = Speed(None, [], None, "", "", error=f"{type(exc).__name__}: {exc}")


def _run_worker(job: dict) -> Speed:
    path = Path(job["dir"], f"job-{job['backend']}.json")
    path.write_text(json.dumps(job))
    env = dict(os.environ)
    # The subprocess sees the same modules as this process (a factory's package on sys.path...).
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))])
    cmd = [sys.executable, "-c", "import sys; from unidl.compare.speed import _worker_main; "
           "sys.exit(_worker_main(sys.argv[1:]))", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Speed(None, [], None, "", "", error=f"exit {proc.returncode}: {tail}")
    out = json.loads(lines[-1])
    return Speed(out["ms_per_step"], out["runs"], out["peak_mb"], out["memory_method"], out["timing"],
                 process_peak_mb=out["process_peak_mb"])


def _worker_main(argv: list[str]) -> int:
    """Internal: measure one backend in this (fresh) process; prints one JSON line.

    Memory: the peak RSS while the model is built, compiled and trained, minus the RSS
    just before, with the framework imported and initialised. On Linux the peak is the
    process's high-water mark (VmHWM), reset at that point; elsewhere ``ru_maxrss``,
    which cannot be reset (a high import peak then hides a smaller training peak) and
    which Linux carries over from the parent process.
    """
    job = json.loads(Path(argv[0]).read_text())
    backend = get_backend(job["backend"], dtype=job["dtype"], device=job["device"])  # imports the framework
    with use_backend(backend):
        backend.to_numpy(backend.add(backend.convert(np.ones(2)), 1.0))  # wake the framework up
    import_peak = proc_status_mb("VmHWM")
    use_proc = reset_peak_rss()
    baseline = proc_status_mb("VmRSS") if use_proc else max_rss_mb()
    source = load_source(job["spec"], seed=job["seed"])
    data = np.load(Path(job["dir"], "data.npz"))
    xs = [data[f"x{i}"] for i in range(job["x_count"])]
    ys = [data[f"y{i}"] for i in range(job["y_count"])]
    x = xs if job["x_list"] else xs[0]
    y = ys if job["y_list"] else ys[0]
    weights = np.load(Path(job["dir"], "weights.npz"))
    base = source.build()
    kwargs = _resolve_compile(source, base, job["compile"])
    base = _unbound_built(base, x)
    base.set_weights([weights[f"arr_{i}"] for i in range(len(weights.files))])
    model = compiled_clone(base, kwargs, job["backend"], job["dtype"], job["device"])
    consistency_mode(model.backend)
    steps, repeats = job["steps"], job["repeats"]
    batch = job["batch"]
    runs = _time_training(model, x, y, batch, steps, repeats)
    cuda = model.backend.device_peak_memory_mb()
    end_peak = proc_status_mb("VmHWM") if use_proc else max_rss_mb()
    process_peak = max(end_peak, import_peak or 0.0)
    if cuda is not None:
        peak, method = cuda, "the device's peak allocation (the backend's device_peak_memory_mb), own subprocess"
    elif use_proc:
        peak, method = end_peak - baseline, ("peak RSS while building and training, minus the RSS before (the "
                                             "framework imported): /proc/self VmHWM, own subprocess")
    else:
        peak, method = end_peak - baseline, ("peak RSS growth over the process after importing the framework "
                                             "(getrusage ru_maxrss), own subprocess")
    print(json.dumps({"ms_per_step": statistics.median(runs), "runs": runs, "peak_mb": peak,
                      "process_peak_mb": process_peak, "memory_method": method,
                      "timing": f"median of {repeats} fit() epochs of {steps} steps (batch {batch}) after a "
                                "warm-up, own subprocess"}))
    return 0

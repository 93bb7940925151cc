"""``unidl bench``: unidl against hand-written native training loops, side by side.

For each model (an MLP 784-256-256-10, a small CNN and an LSTM, see ``DESCRIPTIONS``) and each
installed backend, one *case* trains one epoch of ``--steps`` batches of
``--batch-size`` with Adam after a warm-up epoch, ``--repeats`` times:

* ``unidl/<backend>``: ``model.fit`` on that backend;
* ``native/<name>``: a hand-written loop in the framework itself, registered by a plugin
  (``unidl_register_bench_baselines``): the built-in torch plugin registers ``native/torch``
  (``nn.Sequential`` + ``torch.optim.Adam``), the tensorflow one ``native/tensorflow`` (a
  ``tf.function`` train step over ``tf.Variable`` s).

Every case runs in its own subprocess, so each reports its own peak memory
(peak resident set during training minus the resident set before it, with the
framework imported: Linux's VmHWM, reset at that point; or CUDA's peak allocation) and no framework's thread pools disturb another's. Cases are run
round-robin ``--rounds`` times and the median ms/step is reported, with the
ratio to the native loop of the same framework (target: <= 1.05) and, for
the NumPy backend, to native torch (target: <= 1.5).

With ``--dtype-policy mixed_bfloat16`` (or mixed_float16) unidl compiles with that
policy and the native loops do what their users write by hand: ``torch.autocast``
(plus ``torch.amp.GradScaler`` for float16) and, in TensorFlow, bfloat16 casts of the
inputs and weights inside the step.

    python -m unidl.bench               # or: unidl bench
    python -m unidl.bench --json out.json --device cuda
    python -m unidl.bench --device cuda --dtype-policy mixed_bfloat16
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from . import layers, losses
from .memory import max_rss_mb, proc_status_mb, reset_peak_rss
from .models import Sequential
from .registry import REGISTRY, list_backends

MODELS = ("mlp", "cnn", "lstm")
DEFAULT_STEPS = {"mlp": 200, "cnn": 50, "lstm": 20}
# The LSTM model: sequences of LSTM_STEPS steps of LSTM_FEATURES features, LSTM(LSTM_UNITS) -> Dense(10).
LSTM_STEPS, LSTM_FEATURES, LSTM_UNITS = 50, 32, 128
HIDDEN = 256


# ----------------------------------------------------------------- the data

def make_data(model: str, steps: int, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = {"mlp": (784,), "cnn": (28, 28, 1), "lstm": (LSTM_STEPS, LSTM_FEATURES)}[model]
    x = rng.random((steps * batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 10, size=steps * batch_size).astype(np.int64)
    return x, y


DESCRIPTIONS = {
    "mlp": f"MLP 784-{HIDDEN}-{HIDDEN}-10",
    "cnn": "CNN 28x28x1: Conv 32 3x3 relu, pool 2, Conv 64 3x3 relu, pool 2, Dense 128 relu, Dense 10",
    "lstm": f"LSTM({LSTM_UNITS}) over {LSTM_STEPS} steps of {LSTM_FEATURES} features, Dense 10",
}


# ---------------------------------------------------------------- the cases

def unidl_model(name: str) -> Sequential:
    if name == "mlp":
        stack = [layers.Dense(HIDDEN, activation="relu", input_shape=(784,)),
                 layers.Dense(HIDDEN, activation="relu"), layers.Dense(10)]
    elif name == "lstm":
        stack = [layers.Input((LSTM_STEPS, LSTM_FEATURES)), layers.LSTM(LSTM_UNITS), layers.Dense(10)]
    else:
        stack = [layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                 layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                 layers.Dense(128, activation="relu"), layers.Dense(10)]
    return Sequential(stack, seed=0)


def run_unidl(model_name: str, backend: str, x, y, batch_size: int, repeats: int, device: str | None,
              policy: str | None = None):
    model = unidl_model(model_name)
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  backend=backend, device=device, dtype_policy=policy)
    times = []
    for _ in range(repeats + 1):  # the first epoch is the warm-up
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        model.backend.sync()
        times.append(time.perf_counter() - start)
    return times[1:], model.backend


def run_case(model: str, case: str, steps: int, batch_size: int, repeats: int, device: str | None,
             policy: str | None = None) -> dict:
    """Run one case in this process; returns its timings and memory."""
    x, y = make_data(model, steps, batch_size)
    kind, name = case.split("/")
    baseline_info = REGISTRY.services("bench_baselines").get(name) if kind == "native" else None
    if kind == "native" and baseline_info is None:
        raise ValueError(f"no native baseline {name!r} is registered; available: "
                         f"{sorted(REGISTRY.services('bench_baselines'))}")
    # Import the framework before the baseline so its own footprint is not counted. On Linux the
    # peak (VmHWM) is reset there; ru_maxrss cannot be reset and is inherited from the parent.
    framework = (baseline_info.options.get("framework") if baseline_info is not None
                 else REGISTRY.backend_info(name).framework)
    if framework:
        __import__(framework)
    use_proc = reset_peak_rss()
    start_mb = proc_status_mb("VmRSS") if use_proc else max_rss_mb()
    if kind == "unidl":
        times, backend = run_unidl(model, name, x, y, batch_size, repeats, device, policy)
    else:
        times, backend = baseline_info.provider(model, x, y, batch_size, repeats, device, policy), None
    peak = proc_status_mb("VmHWM") if use_proc else max_rss_mb()
    result = {"case": case, "ms_per_step": [t * 1e3 / steps for t in times], "peak_mb": peak - start_mb}
    device_peak = _device_peak_mb(backend if kind == "unidl" else None, baseline_info, device)
    if device_peak is not None:
        result["device_peak_mb"] = device_peak
    return result


def _device_peak_mb(backend, baseline_info, device: str | None) -> float | None:
    """The accelerator's peak allocation (MiB) when the case ran on one, as the backend or baseline reports it."""
    if not device or device == "cpu":
        return None
    if backend is not None:
        return backend.device_peak_memory_mb()
    peak = baseline_info.options.get("device_peak_mb")
    return None if peak is None else peak(device)


# ---------------------------------------------------------------- reporting

def available_cases(model: str, policy: str | None = None) -> list[str]:
    """unidl on every installed backend (mixed precision: those declaring it), then every native baseline
    registered for ``model`` and ``policy`` whose framework is installed."""
    installed = [b["name"] for b in list_backends() if b["installed"]]
    if policy:  # a mixed policy runs where a backend declares half dtypes: ask the torch/TF/plugin backends
        installed = [name for name in installed if name != "numpy"]
    cases = [f"unidl/{name}" for name in installed]
    for name, info in REGISTRY.services("bench_baselines").items():
        framework = info.options.get("framework") or name
        if (model in info.options.get("models", ()) and policy in info.options.get("policies", (None,))
                and importlib.util.find_spec(framework) is not None):
            cases.append(f"native/{name}")
    return cases


def _ratio(rows: dict, a: str, b: str) -> str:
    if a in rows and b in rows:
        return f"{rows[a] / rows[b]:.3f}"
    return ""


def report(model: str, results: dict[str, list[float]], peaks: dict[str, float], steps: int, batch_size: int,
           device: str | None, policy: str | None = None) -> str:
    medians = {case: statistics.median(v) for case, v in results.items()}
    lines = [f"{DESCRIPTIONS[model]}, batch {batch_size}, Adam, {policy or 'float32'}, {steps} steps/epoch, "
             f"device {device or 'cpu'}; machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}",
             f"{'case':<20} {'ms/step (median)':>17} {'min':>8} {'max':>8} {'vs native':>10} {'peak MB':>9}"]
    for case, median in medians.items():
        kind, name = case.split("/")
        native = f"native/{name}" if f"native/{name}" in medians else "native/torch"
        vs = _ratio(medians, case, native) if kind == "unidl" else ""
        lines.append(f"{case:<20} {median:>17.3f} {min(results[case]):>8.3f} {max(results[case]):>8.3f} "
                     f"{vs:>10} {peaks.get(case, float('nan')):>9.1f}")
    lines.append("targets: unidl/torch and unidl/tensorflow <= 1.05 x their native loop; "
                 "unidl/numpy <= 1.5 x native/torch")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unidl bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn,lstm", help="comma-separated: mlp, cnn, lstm (default all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per epoch (default 200 for the MLP, 50 for the CNN)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per case and round")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin passes over the cases")
    parser.add_argument("--device", default=None, help="e.g. cuda (torch cases only)")
    parser.add_argument("--cases", default=None, help="comma-separated, e.g. unidl/torch,native/torch")
    parser.add_argument("--json", default=None, help="also write the raw results to this file")
    parser.add_argument("--dtype-policy", default=None, choices=("mixed_bfloat16", "mixed_float16"),
                        help="mixed precision for every case (unidl's dtype_policy; torch.autocast natively)")
    parser.add_argument("--run-case", default=None, help=argparse.SUPPRESS)  # internal: one subprocess
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {list(MODELS)}")

    if args.run_case:
        model = models[0]
        steps = args.steps or DEFAULT_STEPS[model]
        print(json.dumps(run_case(model, args.run_case, steps, args.batch_size, args.repeats, args.device,
                                  args.dtype_policy)))
        return 0

    tables, raw = [], {}
    for model in models:
        cases = args.cases.split(",") if args.cases else available_cases(model, args.dtype_policy)
        if args.device and args.device.startswith("cuda"):
            cases = [c for c in cases if c.endswith("/torch")]
        steps = args.steps or DEFAULT_STEPS[model]
        results: dict[str, list[float]] = {c: [] for c in cases}
        peaks: dict[str, float] = {}
        for round_ in range(args.rounds):
            for case in cases:
                cmd = [sys.executable, "-m", "unidl.bench", "--run-case", case, "--models", model,
                       "--steps", str(steps), "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
                if args.device:
                    cmd += ["--device", args.device]
                if args.dtype_policy:
                    cmd += ["--dtype-policy", args.dtype_policy]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"case {model} {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                results[case] += out["ms_per_step"]
                peaks[case] = max(peaks.get(case, 0.0), out.get("device_peak_mb", out["peak_mb"]))
                print(f"round {round_ + 1}/{args.rounds} {model} {case}: "
                      f"{statistics.median(out['ms_per_step']):.3f} ms/step", file=sys.stderr)
        tables.append(report(model, results, peaks, steps, args.batch_size, args.device, args.dtype_policy))
        raw[model] = {"results": results, "peak_mb": peaks}
        print(tables[-1] + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**raw, "tables": tables}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

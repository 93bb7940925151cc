"""``unidl bench``: unidl against hand-written native training loops, side by side.

For each model (an MLP 784-256-256-10 and a small CNN, see ``DESCRIPTIONS``) and each
installed backend, one *case* trains one epoch of ``--steps`` batches of
``--batch-size`` with Adam after a warm-up epoch, ``--repeats`` times:

* ``unidl/<backend>``: ``model.fit`` on that backend;
* ``native/torch``: ``nn.Sequential`` + ``torch.optim.Adam``, the loop people write by hand;
* ``native/tensorflow``: a ``tf.function`` train step over ``tf.Variable`` s.

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
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

MODELS = ("mlp", "cnn")
DEFAULT_STEPS = {"mlp": 200, "cnn": 50}
HIDDEN = 256


# ----------------------------------------------------------------- the data

def make_data(model: str, steps: int, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (784,) if model == "mlp" else (28, 28, 1)
    x = rng.random((steps * batch_size, *shape), dtype=np.float32)
    y = rng.integers(0, 10, size=steps * batch_size).astype(np.int64)
    return x, y


DESCRIPTIONS = {
    "mlp": f"MLP 784-{HIDDEN}-{HIDDEN}-10",
    "cnn": "CNN 28x28x1: Conv 32 3x3 relu, pool 2, Conv 64 3x3 relu, pool 2, Dense 128 relu, Dense 10",
}


def _proc_status_mb(field_name: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_mb("VmHWM") is not None
    except OSError:
        return False


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident set of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the cases

def unidl_model(name: str):
    import unidl
    from unidl import layers
    if name == "mlp":
        stack = [layers.Dense(HIDDEN, activation="relu", input_shape=(784,)),
                 layers.Dense(HIDDEN, activation="relu"), layers.Dense(10)]
    else:
        stack = [layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                 layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                 layers.Dense(128, activation="relu"), layers.Dense(10)]
    return unidl.Sequential(stack, seed=0)


def run_unidl(model_name: str, backend: str, x, y, batch_size: int, repeats: int, device: str | None,
              policy: str | None = None):
    import unidl
    model = unidl_model(model_name)
    model.compile(optimizer="adam", loss=unidl.losses.SparseCategoricalCrossentropy(from_logits=True),
                  backend=backend, device=device, dtype_policy=policy)
    times = []
    for _ in range(repeats + 1):  # the first epoch is the warm-up
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        model.backend.sync()
        times.append(time.perf_counter() - start)
    return times[1:]


def torch_model(name: str):
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                             nn.Linear(HIDDEN, 10))
    # NCHW, torch's own layout: the hand-written loop a torch user writes
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def run_native_torch(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                     policy: str | None = None):
    import contextlib

    import torch
    device = device or "cpu"
    model = torch_model(model_name).to(device)
    half = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(policy)
    device_type = device.split(":")[0]
    autocast = (lambda: torch.autocast(device_type, dtype=half)) if half else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device_type) if half is torch.float16 else None
    if model_name == "cnn":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # the data a torch user has: NCHW
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        running = 0.0
        for i in range(0, len(xt), batch_size):
            xb, yb = xt[i:i + batch_size].to(device), yt[i:i + batch_size].to(device)
            optimizer.zero_grad()
            with autocast():
                loss = loss_fn(model(xb), yb)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            running += loss.item()  # what a hand-written loop logs
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def run_native_tensorflow(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                          policy: str | None = None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    rng = np.random.default_rng(0)
    if policy not in (None, "mixed_bfloat16"):
        raise ValueError(f"the native TensorFlow loop is written for float32 and mixed_bfloat16, not {policy}")
    half = tf.bfloat16 if policy else None

    def read(v):  # mixed_bfloat16 by hand: every weight read as bfloat16
        return v if half is None else tf.cast(v, half)

    def glorot(shape):
        fan_in, fan_out = np.prod(shape[:-1]), shape[-1] * (np.prod(shape[:-2]) if len(shape) > 2 else 1)
        limit = np.sqrt(6 / (fan_in + fan_out))
        return tf.Variable(rng.uniform(-limit, limit, shape).astype(np.float32))

    if model_name == "mlp":
        sizes = [784, HIDDEN, HIDDEN, 10]
        dense = [(glorot((a, b)), tf.Variable(tf.zeros(b))) for a, b in zip(sizes[:-1], sizes[1:])]
        convs = []
    else:
        convs = [(glorot((3, 3, 1, 32)), tf.Variable(tf.zeros(32))), (glorot((3, 3, 32, 64)), tf.Variable(tf.zeros(64)))]
        dense = [(glorot((1600, 128)), tf.Variable(tf.zeros(128))), (glorot((128, 10)), tf.Variable(tf.zeros(10)))]
    variables = [v for pair in convs + dense for v in pair]
    optimizer = _TfAdam(variables)

    def forward(h):
        h = h if half is None else tf.cast(h, half)
        for w, b in convs:
            h = tf.nn.relu(tf.nn.conv2d(h, read(w), 1, "VALID") + read(b))
            h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        if convs:
            h = tf.reshape(h, (-1, 1600))
        for i, (w, b) in enumerate(dense):
            h = tf.matmul(h, read(w)) + read(b)
            if i < len(dense) - 1:
                h = tf.nn.relu(h)
        return tf.cast(h, tf.float32)  # the loss in float32

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = forward(xb)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
        optimizer.apply(tape.gradient(loss, variables))
        return loss

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        running = 0.0
        for i in range(0, len(x), batch_size):
            running += float(step(x[i:i + batch_size], y[i:i + batch_size]))
        times.append(time.perf_counter() - start)
    return times[1:]


class _TfAdam:
    """Adam (Keras's rule) over tf.Variables, for the native TensorFlow loop."""

    def __init__(self, variables, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
        import tensorflow as tf
        self.tf, self.variables = tf, variables
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0)

    def apply(self, grads):
        tf = self.tf
        self.t.assign_add(1.0)
        lr_t = self.lr * tf.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v):
            m.assign_add((g - m) * (1 - self.b1))
            v.assign_add((tf.square(g) - v) * (1 - self.b2))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + self.eps))


def run_case(model: str, case: str, steps: int, batch_size: int, repeats: int, device: str | None,
             policy: str | None = None) -> dict:
    """Run one case in this process; returns its timings and memory."""
    x, y = make_data(model, steps, batch_size)
    kind, name = case.split("/")
    # Import the framework before the baseline so its own footprint is not counted. On Linux the
    # peak (VmHWM) is reset there; ru_maxrss cannot be reset and is inherited from the parent.
    if name in ("torch", "tensorflow"):
        __import__(name)
    use_proc = _reset_peak_rss()
    baseline = _proc_status_mb("VmRSS") if use_proc else _rss_mb()
    if kind == "unidl":
        times = run_unidl(model, name, x, y, batch_size, repeats, device, policy)
    elif name == "torch":
        times = run_native_torch(model, x, y, batch_size, repeats, device, policy)
    else:
        times = run_native_tensorflow(model, x, y, batch_size, repeats, device, policy)
    peak = _proc_status_mb("VmHWM") if use_proc else _rss_mb()
    result = {"case": case, "ms_per_step": [t * 1e3 / steps for t in times], "peak_mb": peak - baseline}
    if device and device.startswith("cuda") and name == "torch":
        import torch
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---------------------------------------------------------------- reporting

def available_cases(policy: str | None = None) -> list[str]:
    import unidl
    installed = [b["name"] for b in unidl.list_backends() if b["installed"]]
    if policy:  # mixed precision runs on torch and tensorflow; native TF is written for bfloat16
        installed = [name for name in installed if name in ("torch", "tensorflow")]
    cases = [f"unidl/{name}" for name in installed]
    cases += [f"native/{name}" for name in ("torch", "tensorflow") if name in installed
              and not (name == "tensorflow" and policy == "mixed_float16")]
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
        native = f"native/{name}" if name in ("torch", "tensorflow") else "native/torch"
        vs = _ratio(medians, case, native) if kind == "unidl" else ""
        lines.append(f"{case:<20} {median:>17.3f} {min(results[case]):>8.3f} {max(results[case]):>8.3f} "
                     f"{vs:>10} {peaks.get(case, float('nan')):>9.1f}")
    lines.append("targets: unidl/torch and unidl/tensorflow <= 1.05 x their native loop; "
                 "unidl/numpy <= 1.5 x native/torch")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unidl bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
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

    cases = args.cases.split(",") if args.cases else available_cases(args.dtype_policy)
    if args.device and args.device.startswith("cuda"):
        cases = [c for c in cases if c.endswith("/torch")]
    tables, raw = [], {}
    for model in models:
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
                peaks[case] = max(peaks.get(case, 0.0), out.get("cuda_peak_mb", out["peak_mb"]))
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

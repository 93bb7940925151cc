"""``unidl bench``: unidl against hand-written native training loops, side by side.

For each model (see ``DESCRIPTIONS``: an MLP 784-256-256-10, a small CNN, an LSTM, a wide
compute-bound MLP, a Keras time-series Conv1D classifier and Keras's small transformer text
classifier) and each installed backend, one *case* trains one epoch of ``--steps`` batches of
``--batch-size`` with Adam after a warm-up epoch, ``--repeats`` times:

* ``unidl/<backend>``: ``model.fit(epochs=repeats + 1)`` on that backend, each epoch timed by a callback;
* ``native/<name>``: a hand-written loop in the framework itself, registered by a plugin
  (``unidl_register_bench_baselines``): the built-in torch plugin registers ``native/torch``
  (``nn.Module`` + ``torch.optim.Adam``) and ``native/torch-graph`` (the same step captured
  once in a CUDA graph and replayed: the lower bound of any eager loop, CUDA only), the
  tensorflow one ``native/tensorflow`` (a ``tf.function`` train step over ``tf.Variable`` s or
  Keras layers), the example JAX plugin ``native/jax`` (a ``jax.jit`` step, hand-written Adam).

Every case runs in its own subprocess, so each reports its own peak memory
(peak resident set during training minus the resident set before it, with the
framework imported: Linux's VmHWM, reset at that point; or CUDA's peak allocation) and no framework's thread pools disturb another's. Cases are run
round-robin ``--rounds`` times and the median ms/step is reported, with the
ratio to the native loop of the same framework (target: <= 1.05) and, for
the NumPy backend, to native torch (target: <= 1.5).

``--device cuda`` (or ``cuda:1``, ``gpu``...) runs every case whose backend or baseline can use
that device (torch, the JAX plugin, TensorFlow with a GPU); the others are skipped with a
one-line reason. ``--threads N`` caps the thread pools of every case (torch, TensorFlow, XLA,
BLAS/OpenMP), so that comparisons on a small, shared machine can be made single-threaded too.

With ``--dtype-policy mixed_bfloat16`` (or mixed_float16) unidl compiles with that
policy and the native loops do what their users write by hand: ``torch.autocast``
(plus ``torch.amp.GradScaler`` for float16) and, in TensorFlow, bfloat16 casts of the
inputs and weights inside the step.

    python -m unidl.bench               # or: unidl bench
    python -m unidl.bench --models transformer --threads 1
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

from . import layers, losses, ops
from .callbacks import Callback
from .memory import max_rss_mb, proc_status_mb, reset_peak_rss
from .models import Sequential
from .registry import REGISTRY, list_backends

MODELS = ("mlp", "cnn", "lstm", "wide", "conv1d", "transformer")
# Batches per epoch by default; the heavy models take fewer on a CPU (see default_steps).
DEFAULT_STEPS = {"mlp": 200, "cnn": 50, "lstm": 20, "wide": 50, "conv1d": 100, "transformer": 100}
DEFAULT_STEPS_CPU = {"wide": 3, "conv1d": 10, "transformer": 20}
# Batch size by default: the Keras examples' own for conv1d and transformer, a big one for wide.
DEFAULT_BATCH_SIZE = {"wide": 1024, "conv1d": 32, "transformer": 32}
BATCH_SIZE = 128  # the others
# The LSTM model: sequences of LSTM_STEPS steps of LSTM_FEATURES features, LSTM(LSTM_UNITS) -> Dense(10).
LSTM_STEPS, LSTM_FEATURES, LSTM_UNITS = 50, 32, 128
HIDDEN = 256
# The wide MLP: 784 -> WIDE_DEPTH Dense(WIDE) relu layers -> 10; compute-bound at batch 1024.
WIDE, WIDE_DEPTH = 4096, 4
# The Conv1D time-series classifier (Keras's "timeseries classification from scratch", FordA):
# CONV1D_BLOCKS x [Conv1D(CONV1D_FILTERS, 3, "same"), BatchNormalization, ReLU], global average, softmax.
CONV1D_STEPS, CONV1D_FILTERS, CONV1D_BLOCKS = 500, 64, 3
# The transformer text classifier (Keras's "text classification with transformer"): ids of MAXLEN
# tokens from VOCAB, token + position embeddings of EMBED, one block (HEADS heads of EMBED each,
# feed-forward FF), global average, Dense 20 relu, Dense 2 softmax.
VOCAB, MAXLEN, EMBED, HEADS, FF = 20000, 200, 32, 2, 32
LAYER_NORM_EPSILON = 1e-6  # the Keras example's
# Classes of each model's labels (10 unless named).
CLASSES = {"conv1d": 2, "transformer": 2}
# Models whose last layer is a softmax (Keras's examples), trained on probabilities; the others on logits.
SOFTMAX_OUTPUT = ("conv1d", "transformer")


def default_steps(model: str, device: str | None = None) -> int:
    """Batches per epoch when ``--steps`` is not given: fewer for the heavy models on a CPU."""
    on_cpu = device is None or str(device).split(":")[0] == "cpu"
    return DEFAULT_STEPS_CPU.get(model, DEFAULT_STEPS[model]) if on_cpu else DEFAULT_STEPS[model]


def default_batch_size(model: str) -> int:
    return DEFAULT_BATCH_SIZE.get(model, BATCH_SIZE)


# ----------------------------------------------------------------- the data

def make_data(model: str, steps: int, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``steps * batch_size`` samples for ``model``: float32 features (int64 token ids for the
    transformer) and int64 labels in ``[0, CLASSES)``."""
    rng = np.random.default_rng(seed)
    n = steps * batch_size
    if model == "transformer":
        x = rng.integers(0, VOCAB, size=(n, MAXLEN)).astype(np.int64)
    elif model == "conv1d":
        x = rng.standard_normal((n, CONV1D_STEPS, 1), dtype=np.float32)  # FordA's series are z-normalized
    else:
        shape = {"mlp": (784,), "wide": (784,), "cnn": (28, 28, 1), "lstm": (LSTM_STEPS, LSTM_FEATURES)}[model]
        x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, CLASSES.get(model, 10), size=n).astype(np.int64)
    return x, y


DESCRIPTIONS = {
    "mlp": f"MLP 784-{HIDDEN}-{HIDDEN}-10",
    "cnn": "CNN 28x28x1: Conv 32 3x3 relu, pool 2, Conv 64 3x3 relu, pool 2, Dense 128 relu, Dense 10",
    "lstm": f"LSTM({LSTM_UNITS}) over {LSTM_STEPS} steps of {LSTM_FEATURES} features, Dense 10",
    "wide": f"wide MLP 784-{'-'.join([str(WIDE)] * WIDE_DEPTH)}-10",
    "conv1d": (f"Conv1D classifier over {CONV1D_STEPS} steps: {CONV1D_BLOCKS} x [Conv1D {CONV1D_FILTERS} k3 same, "
               "BatchNorm, ReLU], global average, Dense 2 softmax"),
    "transformer": (f"transformer text classifier: {MAXLEN} ids of {VOCAB}, token+position embedding {EMBED}, "
                    f"attention {HEADS} heads x {EMBED}, LayerNorm, FFN {FF} relu, LayerNorm, global average, "
                    "Dense 20 relu, Dense 2 softmax"),
}


# ---------------------------------------------------------------- the cases

class TokenAndPositionEmbedding(layers.Layer):
    """Keras's example layer: ``token_embedding(ids) + position_embedding(arange(steps))``."""

    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.maxlen = maxlen
        self.token_emb = layers.Embedding(vocab_size, embed_dim)
        self.pos_emb = layers.Embedding(maxlen, embed_dim)

    def call(self, inputs):
        positions = ops.arange(0, self.maxlen)
        return ops.add(self.token_emb(inputs), self.pos_emb(positions))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.token_emb.output_dim)


class TransformerBlock(layers.Layer):
    """Keras's example block (without its dropout): self-attention, residual + LayerNormalization,
    feed-forward, residual + LayerNormalization."""

    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)
        self.layernorm2 = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON)

    def call(self, inputs):
        out1 = self.layernorm1(ops.add(inputs, self.att(inputs, inputs)))
        return self.layernorm2(ops.add(out1, self.ffn(out1)))

    def compute_output_shape(self, input_shape):
        return input_shape


def unidl_model(name: str) -> Sequential:
    if name == "mlp":
        stack = [layers.Dense(HIDDEN, activation="relu", input_shape=(784,)),
                 layers.Dense(HIDDEN, activation="relu"), layers.Dense(10)]
    elif name == "wide":
        stack = [layers.Input((784,)), *[layers.Dense(WIDE, activation="relu") for _ in range(WIDE_DEPTH)],
                 layers.Dense(10)]
    elif name == "lstm":
        stack = [layers.Input((LSTM_STEPS, LSTM_FEATURES)), layers.LSTM(LSTM_UNITS), layers.Dense(10)]
    elif name == "conv1d":
        stack = [layers.Input((CONV1D_STEPS, 1))]
        for _ in range(CONV1D_BLOCKS):
            stack += [layers.Conv1D(CONV1D_FILTERS, 3, padding="same"), layers.BatchNormalization(), layers.ReLU()]
        stack += [layers.GlobalAveragePooling1D(), layers.Dense(CLASSES["conv1d"], activation="softmax")]
    elif name == "transformer":
        stack = [layers.Input((MAXLEN,)), TokenAndPositionEmbedding(MAXLEN, VOCAB, EMBED),
                 TransformerBlock(EMBED, HEADS, FF), layers.GlobalAveragePooling1D(),
                 layers.Dense(20, activation="relu"), layers.Dense(CLASSES["transformer"], activation="softmax")]
    else:
        stack = [layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
                 layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                 layers.Dense(128, activation="relu"), layers.Dense(10)]
    return Sequential(stack, seed=0)


class _EpochTimer(Callback):
    """Wall seconds of each epoch of one ``fit``, the device synchronised at both ends."""

    def __init__(self, backend):
        super().__init__()
        self.backend, self.times, self._start = backend, [], 0.0

    def on_epoch_begin(self, epoch: int, logs=None):
        self.backend.sync()
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None):
        self.backend.sync()
        self.times.append(time.perf_counter() - self._start)


def run_unidl(model_name: str, backend: str, x, y, batch_size: int, repeats: int, device: str | None,
              policy: str | None = None):
    """``repeats + 1`` epochs of one ``fit`` (the first the warm-up), each timed by a callback: what a user's
    ``fit(epochs=N)`` costs per epoch, without the once-per-fit work (checking the data for NaN, converting
    it), as the native loops prepare their data before their clocks start."""
    model = unidl_model(model_name)
    loss = losses.SparseCategoricalCrossentropy(from_logits=model_name not in SOFTMAX_OUTPUT)
    model.compile(optimizer="adam", loss=loss, backend=backend, device=device, dtype_policy=policy)
    timer = _EpochTimer(model.backend)
    model.fit(x, y, batch_size=batch_size, epochs=repeats + 1, shuffle=False, verbose=0, callbacks=[timer])
    return timer.times[1:], model.backend


class DeviceUnavailable(Exception):
    """Raised by a bench baseline that cannot run on the device asked for: ``unidl bench`` skips
    the case and shows the message (one line) as the reason."""


def _device_problem(kind: str, name: str, baseline_info, device: str | None) -> str | None:
    """Why the case cannot run on ``device`` (one line), or None when it can (or may: the run decides).

    A baseline may register ``devices=("cuda", ...)``: the device types it runs on (the part of
    ``device`` before ":"). A unidl case asks its backend, which raises when it cannot use the device.
    """
    if kind == "native":
        types = baseline_info.options.get("devices")
        wanted = (device or "cpu").split(":")[0]
        if types is not None and wanted not in types:
            return f"native/{name} runs on {', '.join(types)} only, not device {device or 'cpu'}"
        return None
    if not device:
        return None
    from .backend import BackendError
    try:
        REGISTRY.get_backend(name, device=device)
    except BackendError as err:
        return str(err).splitlines()[0]
    return None


def run_case(model: str, case: str, steps: int, batch_size: int, repeats: int, device: str | None,
             policy: str | None = None) -> dict:
    """Run one case in this process; returns its timings and memory, or ``{"case", "skipped": reason}``
    when the case cannot run on ``device``."""
    x, y = make_data(model, steps, batch_size)
    kind, name = case.split("/")
    baseline_info = REGISTRY.services("bench_baselines").get(name) if kind == "native" else None
    if kind == "native" and baseline_info is None:
        raise ValueError(f"no native baseline {name!r} is registered; available: "
                         f"{sorted(REGISTRY.services('bench_baselines'))}")
    if kind == "native" and model not in baseline_info.options.get("models", ()):
        return {"case": case, "skipped": f"native/{name} has no {model} model"}
    problem = _device_problem(kind, name, baseline_info, device)
    if problem:
        return {"case": case, "skipped": problem}
    # Import the framework before the baseline so its own footprint is not counted. On Linux the
    # peak (VmHWM) is reset there; ru_maxrss cannot be reset and is inherited from the parent.
    framework = (baseline_info.options.get("framework") if baseline_info is not None
                 else REGISTRY.backend_info(name).framework)
    if framework:
        __import__(framework)
    _THREADS.after_import()
    use_proc = reset_peak_rss()
    start_mb = proc_status_mb("VmRSS") if use_proc else max_rss_mb()
    try:
        if kind == "unidl":
            times, backend = run_unidl(model, name, x, y, batch_size, repeats, device, policy)
        else:
            times, backend = baseline_info.provider(model, x, y, batch_size, repeats, device, policy), None
    except DeviceUnavailable as why:
        return {"case": case, "skipped": str(why).splitlines()[0]}
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


# ---------------------------------------------------------------- threads

class _ThreadLimit:
    """``--threads N`` in a case's subprocess: every framework's pools capped at N.

    Frameworks are imported lazily (by the case), so the environment variables they read at import
    (OpenMP, MKL, OpenBLAS, TensorFlow's pools, XLA's CPU client) are set first, in ``before_import``;
    NumPy's BLAS, loaded already with unidl, and the OpenMP/BLAS libraries a framework brings are
    capped again after its import with threadpoolctl when it is installed, and torch's own pools with
    ``torch.set_num_threads``.
    """

    ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")

    def __init__(self):
        self.n: int | None = None

    def before_import(self, n: int | None) -> None:
        self.n = n
        if n is None:
            return
        for name in self.ENV:
            os.environ[name] = str(n)
        if n == 1:  # XLA's CPU client (JAX): no Eigen thread pool for its kernels
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
        self._threadpoolctl()

    def after_import(self) -> None:
        if self.n is None:
            return
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            torch.set_num_threads(self.n)
        self._threadpoolctl()

    def _threadpoolctl(self) -> None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the environment variables set before the import do the work
            return
        threadpool_limits(limits=self.n)  # stays in force (not used as a context manager)


_THREADS = _ThreadLimit()


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


def native_of(case: str, medians: dict) -> str:
    """The native loop a unidl case is compared with: its framework's (a plugin's baseline of the
    backend's name), else native torch."""
    name = case.split("/")[1]
    return f"native/{name}" if f"native/{name}" in medians else "native/torch"


def report(model: str, results: dict[str, list[float]], peaks: dict[str, float], steps: int, batch_size: int,
           device: str | None, policy: str | None = None, threads: int | None = None,
           skipped: dict[str, str] | None = None) -> str:
    medians = {case: statistics.median(v) for case, v in results.items() if v}
    lines = [f"{DESCRIPTIONS[model]}, batch {batch_size}, Adam, {policy or 'float32'}, {steps} steps/epoch, "
             f"device {device or 'cpu'}, threads {threads or 'default'}; machine: "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             f"{'case':<20} {'ms/step (median)':>17} {'min':>8} {'max':>8} {'vs native':>10} {'peak MB':>9}"]
    for case, median in medians.items():
        vs = _ratio(medians, case, native_of(case, medians)) if case.startswith("unidl/") else ""
        lines.append(f"{case:<20} {median:>17.3f} {min(results[case]):>8.3f} {max(results[case]):>8.3f} "
                     f"{vs:>10} {peaks.get(case, float('nan')):>9.1f}")
    for case, why in (skipped or {}).items():
        lines.append(f"{case:<20} skipped: {why}")
    lines.append("targets: unidl/torch and unidl/tensorflow <= 1.05 x their native loop; "
                 "unidl/numpy <= 1.5 x native/torch")
    return "\n".join(lines)


def _case_command(model: str, case: str, steps: int, batch_size: int, args) -> list[str]:
    cmd = [sys.executable, "-m", "unidl.bench", "--run-case", case, "--models", model,
           "--steps", str(steps), "--batch-size", str(batch_size), "--repeats", str(args.repeats)]
    for flag, value in (("--device", args.device), ("--dtype-policy", args.dtype_policy),
                        ("--threads", args.threads)):
        if value:
            cmd += [flag, str(value)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unidl bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,cnn,lstm",
                        help=f"comma-separated, among {', '.join(MODELS)} (default mlp,cnn,lstm)")
    parser.add_argument("--steps", type=int, default=None,
                        help="batches per epoch (default per model: " + ", ".join(
                            f"{m} {DEFAULT_STEPS[m]}" + (f" ({DEFAULT_STEPS_CPU[m]} on a CPU)"
                                                         if m in DEFAULT_STEPS_CPU else "")
                            for m in MODELS) + ")")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"default {BATCH_SIZE}; " + ", ".join(f"{m} {b}" for m, b in DEFAULT_BATCH_SIZE.items()))
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per case and round")
    parser.add_argument("--rounds", type=int, default=2, help="round-robin passes over the cases")
    parser.add_argument("--device", default=None,
                        help="e.g. cuda, cuda:1 (gpu for JAX is the same): every case whose backend or baseline "
                             "can use it; the others are skipped with the reason")
    parser.add_argument("--threads", type=int, default=None,
                        help="cap every case's thread pools (torch, TensorFlow, XLA, BLAS/OpenMP) at N")
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
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")

    if args.run_case:
        _THREADS.before_import(args.threads)
        model = models[0]
        steps = args.steps or default_steps(model, args.device)
        print(json.dumps(run_case(model, args.run_case, steps, args.batch_size or default_batch_size(model),
                                  args.repeats, args.device, args.dtype_policy)))
        return 0

    tables, raw, failed = [], {}, []
    for model in models:
        cases = args.cases.split(",") if args.cases else available_cases(model, args.dtype_policy)
        steps = args.steps or default_steps(model, args.device)
        batch_size = args.batch_size or default_batch_size(model)
        results: dict[str, list[float]] = {c: [] for c in cases}
        peaks: dict[str, float] = {}
        skipped: dict[str, str] = {}
        for round_ in range(args.rounds):
            for case in cases:
                if case in skipped:
                    continue
                proc = subprocess.run(_case_command(model, case, steps, batch_size, args),
                                      capture_output=True, text=True)
                out = None
                if proc.returncode == 0:
                    try:
                        out = json.loads(proc.stdout.strip().splitlines()[-1])
                    except (ValueError, IndexError):
                        out = None
                if out is None:  # reported, and left out of the table; the other cases still run
                    print(f"case {model} {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    failed.append(f"{model} {case}")
                    skipped[case] = "failed (see the log above)"
                    continue
                if "skipped" in out:
                    skipped[case] = out["skipped"]
                    print(f"{model} {case} skipped: {out['skipped']}", file=sys.stderr)
                    continue
                results[case] += out["ms_per_step"]
                peaks[case] = max(peaks.get(case, 0.0), out.get("device_peak_mb", out["peak_mb"]))
                print(f"round {round_ + 1}/{args.rounds} {model} {case}: "
                      f"{statistics.median(out['ms_per_step']):.3f} ms/step", file=sys.stderr)
        tables.append(report(model, results, peaks, steps, batch_size, args.device, args.dtype_policy,
                             args.threads, skipped))
        raw[model] = {"results": results, "peak_mb": peaks, "skipped": skipped}
        print(tables[-1] + "\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**raw, "tables": tables}, f, indent=2)
    if failed:
        print(f"failed cases: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

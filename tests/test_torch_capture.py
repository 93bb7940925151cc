"""Captured steps on torch (``unidl_torch.capture``): CUDA graphs, and everything around them.

The CPU tests run ``CapturedStep`` with stand-in recorders (this machine has no GPU): ``Rerun``
re-runs the step over the static buffers where a graph would replay it, and writes its outputs
into the same tensors every time, as a graph does; ``Strict`` also fails, as a CUDA capture
would, on a host sync (``.item()``, ``float()``/``bool()`` of a tensor), a tensor made from host
data, or a data-dependent shape. The CUDA tests (skipped without a GPU; ``scripts/gpu_check.sh``
runs them) capture real graphs and compare captured training, evaluation and prediction with
eager runs of the same models.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

import unidl
from unidl import layers, losses, ops, optimizers
from unidl.backend import FrozenRandomnessError
from unidl.callbacks import LambdaCallback
from unidl.structure import flatten
from unidl.tolerances import TRAJECTORY_F32

torch = pytest.importorskip("torch")
from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from unidl_torch import capture  # noqa: E402
from unidl_torch.capture import WARMUP_CALLS, CapturedStep, CaptureError, GraphRecorder  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU (scripts/gpu_check.sh runs these)")


# ------------------------------------------------------------------ stand-in recorders

class Rerun:
    """A recorder that captures nothing: ``replay()`` runs the step again over the static buffers and,
    like a CUDA graph, leaves its outputs in the same tensors at every replay."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.warmups = self.records = self.replays = 0

    def warm_up(self, fn):
        self.warmups += 1
        return fn()

    def record(self, fn):
        self.records += 1
        if self.fail is not None:
            raise self.fail
        static: list = []

        def replay():
            self.replays += 1
            out = self.run(fn)
            if not static:
                static.append(out)
            else:
                with torch.no_grad():
                    for kept, new in zip(flatten(static[0]), flatten(out)):
                        if isinstance(kept, torch.Tensor):
                            kept.copy_(new)
            return static[0]
        return replay

    def run(self, fn):
        return fn()


# aten ops a CUDA stream capture cannot record: host syncs, host data, data-dependent shapes
_UNCAPTURABLE = {"_local_scalar_dense", "lift_fresh", "lift_fresh_copy", "nonzero", "masked_select", "unique",
                 "_unique2", "unique_consecutive", "item", "equal"}


class _NoHostTraffic(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in _UNCAPTURABLE:
            raise RuntimeError(f"operation not permitted when stream is capturing (aten.{name})")
        return func(*args, **(kwargs or {}))


class _NoDeviceToHost(TorchFunctionMode):
    """Copies to the host (a sync on CUDA), which CPU tensors make without any aten op."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("numpy", "cpu", "tolist"):
            raise RuntimeError(f"operation not permitted when stream is capturing (Tensor.{func.__name__})")
        return func(*args, **(kwargs or {}))


class Strict(Rerun):
    """:class:`Rerun`, failing where a CUDA capture fails (see :data:`_UNCAPTURABLE`, :class:`_NoDeviceToHost`)."""

    def run(self, fn):
        with _NoDeviceToHost(), _NoHostTraffic():
            return fn()


def captured(step, recorder=None, **kwargs) -> CapturedStep:
    return CapturedStep(step, recorder or Rerun(), float_dtype=torch.float32, device=torch.device("cpu"), **kwargs)


def spying(backend, recorder=Rerun):
    """Make ``backend.compile_step`` (a CPU backend) return CapturedSteps over ``recorder()``; returns them."""
    made: list = []
    real = backend.compile_step

    def compile_step(step):
        if backend._device.type == "cuda":
            out = real(step)
        else:
            out = CapturedStep(step, recorder(), float_dtype=backend._float, device=backend._device)
        made.append(out)
        return out

    backend.compile_step = compile_step
    return made


# ------------------------------------------------------------------ CapturedStep on the CPU

def test_compile_step_on_the_cpu_is_the_step_itself():
    backend = unidl.get_backend("torch")

    def step(x):
        return x

    assert backend.compile_step(step) is step


def test_each_call_makes_one_step_warm_ups_first_then_replays():
    total = torch.zeros(3)
    bodies = []

    def step(x):
        bodies.append(x)
        total.add_(x)  # a variable updated in place, as optimizers do
        return (total * 1.0,)

    recorder = Rerun()
    run = captured(step, recorder)
    for i in range(6):
        (out,) = run(torch.full((3,), float(i)))
        np.testing.assert_array_equal(out.numpy(), np.full(3, sum(range(i + 1))))  # one update per call
    assert (recorder.warmups, recorder.records, recorder.replays) == (WARMUP_CALLS, 1, 6 - WARMUP_CALLS)
    assert run.captured == 1 and run.fallbacks == 0
    static = bodies[WARMUP_CALLS:]  # what the capture and the replays saw: one static buffer
    assert all(x is static[0] for x in static)
    assert all(x is not static[0] for x in bodies[:WARMUP_CALLS])  # warm-ups get the caller's tensors


def test_inputs_are_copied_into_static_buffers_never_aliased():
    seen = []

    def step(x, y):
        seen.append((x.data_ptr(), y.data_ptr()))
        return x + y

    run = captured(step, warmup=1)
    x = torch.ones(4)
    for i in range(4):
        x.fill_(float(i))  # the caller reuses its tensor: the buffer gets a copy each call
        out = run(x, torch.full((4,), 10.0))
        np.testing.assert_array_equal(out.numpy(), np.full(4, 10.0 + i))
    assert len(set(seen[1:])) == 1 and seen[1][0] != x.data_ptr()


def test_floats_are_fed_as_0d_tensors_filled_each_call_never_constants():
    got = []

    def step(x, scalars):
        got.append(scalars["lr"])
        return x * scalars["lr"]

    run = captured(step)
    for i in range(6):
        lr = 0.5 ** i
        out = run(torch.ones(2), {"lr": lr})
        np.testing.assert_allclose(out.numpy(), [lr, lr])
    assert all(type(v) is float for v in got[:WARMUP_CALLS])  # eager warm-ups get the floats themselves
    fed = got[WARMUP_CALLS:]
    assert all(isinstance(v, torch.Tensor) and v.shape == () and v.dtype == torch.float32 for v in fed)
    assert all(v is fed[0] for v in fed)  # one buffer, refilled
    assert run.captured == 1  # a new value is no new signature


def test_signatures_full_and_partial_batches_static_values_none_and_grad_mode():
    calls = []

    def step(x, w, k):
        calls.append(tuple(x.shape))
        return x.sum() * k if w is None else (x * w).sum() * k

    recorder = Rerun()
    run = captured(step, recorder, warmup=1)
    args = [(torch.ones(8, 2), None, 1), (torch.ones(3, 2), None, 1),   # full and last batch
            (torch.ones(8, 2), torch.ones(8, 1), 1),                   # sample weights given
            (torch.ones(8, 2), None, 2)]                               # another static int
    for _ in range(3):
        for a in args:
            assert float(run(*a)) == 2 * a[0].shape[0] * a[2]
    assert run.captured == 4 and recorder.records == 4
    with torch.no_grad():  # grad mode is part of the signature too
        run(*args[0])
    assert run.captured == 4 and recorder.warmups == 5


def test_outputs_are_fresh_copies_unless_asked_otherwise():
    def step(x):
        return {"double": x * 2, "rest": [x + 1, None, 3]}

    run = captured(step, warmup=1)
    kept = [run(torch.full((2,), float(i))) for i in range(4)]
    assert [float(k["double"][0]) for k in kept] == [0.0, 2.0, 4.0, 6.0]
    assert kept[-1]["rest"][1:] == [None, 3]
    shared = captured(step, warmup=1, clone_outputs=False)
    kept = [shared(torch.full((2,), float(i)))["double"] for i in range(4)]
    assert [float(k[0]) for k in kept[1:]] == [6.0, 6.0, 6.0]  # a replay overwrites the last one's outputs


def test_a_capture_that_fails_runs_that_signature_eagerly_with_one_warning():
    def step(x):
        return x * 3

    recorder = Rerun(fail=RuntimeError("CUDA error: operation not permitted when stream is capturing"))
    run = captured(step, recorder, warmup=1)
    with pytest.warns(RuntimeWarning, match="runs eagerly.*operation not permitted when stream is capturing") as got:
        for n in (4, 4, 4, 2, 2, 2):  # two signatures fail for the same reason: one warning
            assert float(run(torch.ones(n)).sum()) == 3 * n
    assert len([w for w in got if issubclass(w.category, RuntimeWarning)]) == 1
    assert recorder.records == 2 and run.fallbacks == 2 and run.captured == 0


def test_a_host_sync_in_the_step_is_named_and_the_step_runs_eagerly():
    total = torch.zeros(())

    def step(x):
        if float(x.sum()) > 0:  # a host sync: a CUDA capture fails here
            total.add_(x.sum())
        return total + 0

    run = captured(step, Strict(), warmup=1)
    with pytest.warns(RuntimeWarning, match=r"_local_scalar_dense"):
        outs = [float(run(torch.ones(2))) for _ in range(4)]
    assert outs == [2.0, 4.0, 6.0, 8.0]  # the failed capture made no step; the call ran eagerly


def test_the_strict_stand_in_fails_on_copies_to_the_host():
    backend = unidl.get_backend("torch")
    total = torch.zeros(())

    def step(x):
        if backend.to_numpy(x).sum() > 0:
            total.add_(1.0)
        return total + 0

    run = captured(step, Strict(), warmup=1)
    with pytest.warns(RuntimeWarning, match=r"Tensor\.(numpy|cpu)"):
        assert [float(run(torch.ones(2))) for _ in range(3)] == [1.0, 2.0, 3.0]


def test_random_draws_during_the_capture_raise_frozen_randomness():
    def step(x):
        return x + unidl.random.normal((2,), seed=1)

    run = captured(step, warmup=1)
    with unidl.use_backend(unidl.get_backend("torch")):
        run(torch.ones(2))  # the eager warm-up may draw
        with pytest.raises(FrozenRandomnessError):
            run(torch.ones(2))


def test_host_constants_of_the_warm_up_are_reused_by_the_capture():
    backend = unidl.get_backend("torch")

    def step(x):
        return ops.add(x, ops.convert(np.arange(3.0)))  # a host constant, the same at every call

    with unidl.use_backend(backend):
        run = captured(step, Strict(), warmup=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            outs = [run(torch.ones(3)).numpy() for _ in range(3)]
    np.testing.assert_array_equal(outs, [[1.0, 2.0, 3.0]] * 3)
    assert run.captured == 1


def test_host_data_that_changes_between_calls_cannot_be_captured():
    backend = unidl.get_backend("torch")
    counter = iter(range(100))

    def step(x):
        return ops.add(x, ops.convert(np.full(3, float(next(counter)))))  # new host data each call

    with unidl.use_backend(backend):
        run = captured(step, Strict(), warmup=1)
        with pytest.warns(RuntimeWarning, match=f"{CaptureError.__name__}: the step converts host data"):
            outs = [float(run(torch.zeros(3))[0]) for _ in range(4)]
    assert outs == [0.0, 2.0, 3.0, 4.0]  # (1 was drawn by the failed capture)
    assert run.fallbacks == 1


def test_avg_pool_same_divisor_is_made_once_per_geometry():
    backend = unidl.get_backend("torch")
    x = backend.convert(np.random.default_rng(0).random((2, 5, 5, 3)))
    first = backend.avg_pool2d(x, 2, 2, "same")
    assert len(backend._divisors) == 1
    (divisor,) = backend._divisors.values()
    np.testing.assert_array_equal(divisor.numpy(), [[4, 4, 2], [4, 4, 2], [2, 2, 1]])
    np.testing.assert_array_equal(backend.avg_pool2d(x, 2, 2, "same").numpy(), first.numpy())
    assert len(backend._divisors) == 1


# ------------------------------------------------------------------ GraphRecorder's control flow (mocked CUDA)

class _FakeStream:
    def __init__(self, name):
        self.name, self.waited = name, []

    def wait_stream(self, other):
        self.waited.append(other.name)


class _FakeCuda:
    """Just enough of torch.cuda for GraphRecorder: streams, and a graph context that behaves as torch's
    (its __exit__ ends the capture, and leaves the capture stream current when that fails)."""

    def __init__(self):
        self.current, self.log = _FakeStream("main"), []
        cuda = self

        class Graph:
            def capture_end(self):
                cuda.log.append("capture_end")
                if cuda.invalidated:
                    raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

            def replay(self):
                cuda.log.append("replay")

        class GraphContext:
            def __init__(self, graph, pool=None, stream=None):
                self.graph, self.stream = graph, stream
                cuda.log.append(("pool", pool))

            def __enter__(self):
                self.previous, cuda.current = cuda.current, self.stream

            def __exit__(self, *exc):
                self.graph.capture_end()  # raising here skips the stream's restore, as torch does
                cuda.current = self.previous

        @contextlib.contextmanager
        def stream(s):
            previous, cuda.current = cuda.current, s
            try:
                yield
            finally:
                cuda.current = previous

        self.invalidated = False
        self.patches = {"Stream": lambda device=None: _FakeStream("side"), "graph_pool_handle": lambda: "pool",
                        "device": lambda device: contextlib.nullcontext(), "current_stream": lambda device=None:
                        cuda.current, "set_stream": lambda s: setattr(cuda, "current", s), "stream": stream,
                        "CUDAGraph": Graph, "graph": GraphContext}


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = _FakeCuda()
    for name, value in fake.patches.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(capture, "_SIDE_STREAMS", {})  # fake streams, never kept for the real device
    return fake


def test_graph_recorder_warms_up_on_its_stream_and_captures_there(fake_cuda):
    recorder = GraphRecorder("cuda:0")
    main = fake_cuda.current
    assert recorder.warm_up(lambda: fake_cuda.current.name) == "side"
    assert fake_cuda.current is main and recorder.stream.waited == ["main"] and main.waited == ["side"]
    replay = recorder.record(lambda: ("out", fake_cuda.current.name))
    assert fake_cuda.current is main
    assert replay() == ("out", "side") and replay() == ("out", "side")
    assert fake_cuda.log == [("pool", "pool"), "capture_end", "replay", "replay"]
    assert GraphRecorder("cuda:0").stream is recorder.stream  # one side stream per device


def test_graph_recorder_reports_what_broke_the_capture_and_restores_the_stream(fake_cuda):
    recorder = GraphRecorder("cuda:0")
    main = fake_cuda.current

    def host_sync():
        fake_cuda.invalidated = True
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="not permitted when stream is capturing"):
        recorder.record(host_sync)  # not capture_end's "previous error during capture"
    assert fake_cuda.current is main
    fake_cuda.invalidated = False

    def draws():
        raise FrozenRandomnessError("unidl.random.normal was called while a step was being traced")

    with pytest.raises(FrozenRandomnessError):
        recorder.record(draws)
    assert fake_cuda.current is main


# ------------------------------------------------------------------ training, captured vs eager

def _model(kind: str) -> unidl.Sequential:
    stacks = {
        "mlp": lambda: [layers.Dense(16, activation="relu", input_shape=(8,)), layers.Dense(4)],
        "cnn": lambda: [layers.Input((9, 9, 2)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                        layers.MaxPooling2D(2, padding="same"), layers.AveragePooling2D(2, padding="same"),
                        layers.Flatten(), layers.Dense(4)],
        # no bias before the normalization: its gradient is rounding noise, which Adam scales up to steps
        # of lr, and the fused and generic update rules round that noise differently
        "batchnorm": lambda: [layers.Dense(16, use_bias=False, input_shape=(8,)), layers.BatchNormalization(),
                              layers.Activation("relu"), layers.Dense(4)],
        "recurrent": lambda: [layers.Input((5, 3)), layers.LSTM(8, return_sequences=True),
                              layers.GRU(6, go_backwards=True), layers.Dense(4)],
    }
    return unidl.Sequential(stacks[kind](), seed=3)


_INPUTS = {"mlp": (8,), "cnn": (9, 9, 2), "batchnorm": (8,), "recurrent": (5, 3)}


def _data(kind: str, n: int = 52):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, *_INPUTS[kind])).astype(np.float32)
    return x, rng.integers(0, 4, size=n)


def _train(kind: str, jit, device: str = "cpu", recorder=Rerun, optimizer=None, epochs: int = 4,
           dtype_policy=None):
    """Train ``kind`` (batch 16 of 52 samples: 3 full batches and one of 4), then evaluate and predict."""
    backend = unidl.get_backend("torch", device=device)
    made = spying(backend, recorder)
    model = _model(kind)
    model.compile(optimizer=optimizer() if optimizer else optimizers.Adam(0.01),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  backend=backend, jit_compile=jit, dtype_policy=dtype_policy)
    x, y = _data(kind)
    start = [w.value.data_ptr() for w in model.weights]
    step_losses: list[float] = []
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=True, verbose=0,
              callbacks=[LambdaCallback(on_train_batch_end=lambda b, logs: step_losses.append(logs["loss"]))])
    assert [w.value.data_ptr() for w in model.weights] == start  # updated in place, never rebound
    evaluated = [model.evaluate(x, y, batch_size=8, verbose=0) for _ in range(2)]  # 7 batches: some replayed
    predicted = model.predict(x, batch_size=8)
    return {"losses": np.array(step_losses), "weights": model.get_weights(), "evaluated": np.array(evaluated),
            "predicted": predicted, "made": made, "start": _model(kind).get_weights()}


def _assert_same_training(got: dict, want: dict, tol=TRAJECTORY_F32) -> None:
    np.testing.assert_allclose(got["losses"], want["losses"], rtol=tol.rtol, atol=tol.atol)
    for w0, a, b in zip(want["start"], got["weights"], want["weights"]):
        np.testing.assert_allclose(a - w0, b - w0, rtol=tol.rtol, atol=tol.atol)  # displacements, as the kit
    np.testing.assert_allclose(got["evaluated"], want["evaluated"], rtol=tol.rtol, atol=tol.atol)
    np.testing.assert_allclose(got["predicted"], want["predicted"], rtol=tol.rtol, atol=tol.atol)


def _captured_counts(made: list) -> list[tuple[int, int]]:
    return [(s.captured, s.fallbacks) for s in made if isinstance(s, CapturedStep)]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "batchnorm", "recurrent"])
def test_captured_training_equals_eager_and_no_step_needs_the_host(kind):
    """Strict stand-in capture (host syncs fail it) of fit, evaluate and predict vs eager: the same numbers."""
    eager = _train(kind, jit=False)
    assert eager["made"] == []  # jit_compile=False never asks for a compiled step
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would warn
        got = _train(kind, jit="auto", recorder=Strict)
    _assert_same_training(got, eager)
    # train: full and last batch (4 epochs); evaluate and predict: full batches (the last comes 2 / 1 times)
    assert _captured_counts(got["made"]) == [(2, 0), (1, 0), (1, 0)]


def test_a_learning_rate_schedule_is_fed_at_every_step():
    def schedule():
        return optimizers.SGD(learning_rate=lambda step: 0.5 / (1.0 + step), momentum=0.5)

    eager = _train("mlp", jit=False, optimizer=schedule)
    got = _train("mlp", jit="auto", optimizer=schedule)
    _assert_same_training(got, eager)
    assert _captured_counts(got["made"])[0] == (2, 0)


def test_unidl_function_steps_are_captured_with_their_scalars():
    def run(jit):
        backend = unidl.get_backend("torch")
        made = spying(backend)
        model = _model("mlp")
        model.compile(optimizer=optimizers.Adam(0.02), loss="mse", backend=backend)
        x, y = _data("mlp")
        target = np.eye(4, dtype=np.float32)[y]

        @unidl.function(jit_compile=jit)
        def step(xb, yb):
            loss, grads = unidl.value_and_grad(lambda: ops.mean(ops.square(model(xb) - yb)), model)
            model.optimizer.apply(grads, model.trainable_weights)
            return loss

        with unidl.use_backend(backend):
            out = [float(backend.to_numpy(step(backend.convert(x[:16]), backend.convert(target[:16]))))
                   for _ in range(8)]
        return np.array(out), model.get_weights(), made

    eager, eager_weights, _ = run(False)
    got, weights, made = run(True)
    np.testing.assert_allclose(got, eager, rtol=TRAJECTORY_F32.rtol, atol=TRAJECTORY_F32.atol)
    for a, b in zip(weights, eager_weights):
        np.testing.assert_allclose(a, b, rtol=TRAJECTORY_F32.rtol, atol=TRAJECTORY_F32.atol)
    assert _captured_counts(made) == [(1, 0)]


# ------------------------------------------------------------------ CUDA (real graphs)

@pytest.fixture
def cuda_tf32_off():
    if CUDA:  # the backends set it per construction; leave the process as found
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        yield
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        yield


@needs_cuda
@pytest.mark.parametrize("kind", ["mlp", "cnn", "batchnorm", "recurrent"])
def test_cuda_captured_training_evaluation_and_prediction_equal_eager(kind, cuda_tf32_off):
    eager = _train(kind, jit=False, device="cuda")
    got = _train(kind, jit="auto", device="cuda")
    _assert_same_training(got, eager)
    counts = _captured_counts(got["made"])
    print(f"{kind}: (captured, fell back) per step (train, evaluate, predict): {counts}")
    if kind != "recurrent":  # cuDNN's recurrent kernels may refuse a capture (then: eager, warned)
        assert counts == [(2, 0), (1, 0), (1, 0)]


@needs_cuda
def test_cuda_captured_schedule_every_step(cuda_tf32_off):
    def schedule():
        return optimizers.Adam(learning_rate=lambda step: 0.02 * 0.8 ** step)

    eager = _train("mlp", jit=False, device="cuda", optimizer=schedule)
    got = _train("mlp", jit="auto", device="cuda", optimizer=schedule)
    _assert_same_training(got, eager)
    assert _captured_counts(got["made"])[0] == (2, 0)


@needs_cuda
def test_cuda_mixed_bfloat16_is_captured(cuda_tf32_off):
    eager = _train("cnn", jit=False, device="cuda", dtype_policy="mixed_bfloat16")
    got = _train("cnn", jit="auto", device="cuda", dtype_policy="mixed_bfloat16")
    np.testing.assert_allclose(got["losses"], eager["losses"], rtol=2e-2, atol=1e-3)  # bfloat16 rounding
    assert _captured_counts(got["made"])[0] == (2, 0)


@needs_cuda
def test_cuda_a_host_sync_falls_back_to_eager_with_a_warning_and_cuda_still_works(cuda_tf32_off):
    backend = unidl.get_backend("torch", device="cuda")
    total = backend.variable(np.zeros(()), trainable=False)

    def step(x):
        if float(x.sum()) > 0:  # .item(): not permitted while the stream is capturing
            backend.assign(total, total + x.sum())
        return (total + 0,)

    run = backend.compile_step(step)
    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        outs = [float(run(backend.convert(np.ones(4)))[0]) for _ in range(5)]
    assert outs == [4.0, 8.0, 12.0, 16.0, 20.0]
    assert run.fallbacks == 1
    # the device works on, and a capturable step still captures
    again = backend.compile_step(lambda x: (x * 2,))
    assert [float(again(backend.convert(np.full(2, float(i))))[0][0]) for i in range(4)] == [0.0, 2.0, 4.0, 6.0]
    assert again.captured == 1


@needs_cuda
def test_cuda_peak_memory_stays_near_eager(cuda_tf32_off):
    def peak(jit):  # the peak over what was allocated before (weights of earlier tests, cuBLAS workspaces)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
        backend = unidl.get_backend("torch", device="cuda")
        model = unidl.Sequential([layers.Dense(512, activation="relu", input_shape=(784,)),
                                  layers.Dense(512, activation="relu"), layers.Dense(10)], seed=0)
        model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                      backend=backend, jit_compile=jit)
        x = np.random.default_rng(0).random((1000, 784), dtype=np.float32)
        model.fit(x, np.arange(1000) % 10, batch_size=256, epochs=3, verbose=0)
        torch.cuda.synchronize()
        return backend.device_peak_memory_mb() - before, torch.cuda.max_memory_reserved() / 2**20

    peak("auto")  # first: the side stream's cuBLAS workspace (kept for good) exists before the measured runs
    eager, captured_ = peak(False), peak("auto")
    print(f"peak MiB allocated / reserved: eager {eager}, captured {captured_}")
    assert captured_[0] <= 1.1 * eager[0] + 4  # 4 MiB: the static inputs and outputs

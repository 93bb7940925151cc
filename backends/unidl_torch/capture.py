"""Captured steps: ``TorchBackend.compile_step`` on CUDA records a step once per argument signature as a
CUDA graph and replays it.

A CUDA graph is the step's kernels, recorded once with their memory addresses, then launched again
with one call: the Python, dispatch and launch cost of the ~100 kernels of a small model's training
step (2-3 ms on an H200) becomes one replay (0.15-0.2 ms). What that asks of a step, and what
:class:`CapturedStep` does about it:

* **Fixed addresses.** A graph reads its inputs where they were during the capture. Each argument
  signature (the structure of the arguments, each tensor's shape, dtype and device, the values of
  ints, strings and other static arguments, and torch's grad mode) gets static input buffers:
  each call copies its tensors in, then replays. Variables (weights, optimizer slots, moving
  statistics) are read and assigned in place (``copy_``), so the graph updates them at every
  replay; a variable rebound to new memory would not be seen (unidl never does that to a
  compiled model: ``compile`` starts new steps).
* **Per-call scalars.** Python floats among the arguments (learning rate, Adam's ``lr_t``) become
  0-d device tensors of the backend's float dtype, filled before each replay (only when the value
  changed): never constants of the graph. The optimizers' update rules take them through
  ``unidl.ops`` (their native ``fused_update`` kernels want host floats, so the generic rule runs).
* **Warm-up.** torch wants a few eager runs on a side stream before a capture (lazy handles,
  workspaces). These are the *real* first calls of the signature (``warmup`` of them, default 2):
  each runs the step eagerly and returns its outputs. The next call is captured, and the capture
  (which executes nothing) is replayed for that same call, so every call makes exactly one step.
* **Host data.** A capture cannot record a host-to-device copy or a host sync (``.item()``, a
  Python ``bool`` of a tensor, a data-dependent shape). Constants a step converts from NumPy
  (an averaging divisor, ``np.arange`` indices) are kept, per signature, from its eager warm-up
  runs and reused by the capture (``host_constants``). Anything else that fails the capture makes
  that signature run eagerly from then on, with one ``RuntimeWarning`` saying why: training
  goes on, just not captured.
* **Random numbers.** The capture runs inside ``unidl.backend.tracing()``: a ``unidl.random`` draw
  raises ``FrozenRandomnessError``, which reaches the training loop, and it runs the step eagerly.
* **Outputs.** A replay writes its outputs into the same memory each time. They are returned as
  clones (one device copy each, a few microseconds), so results kept across calls stay right.
* **Memory.** The graphs of one compiled step (e.g. the full batch and the last, smaller one)
  share one memory pool (``torch.cuda.graph_pool_handle()``); the pool keeps a step's
  intermediate tensors (activations, gradients) for its replays, about what one eager step uses.
  Warm-ups and captures run on one side stream per device, whose cuBLAS workspace (torch keeps
  one per stream: 32 MiB on Hopper) the graphs use; the eager steps' stream has its own.

The CUDA calls are all in :class:`GraphRecorder`. :class:`CapturedStep` takes the recorder as a
strategy object, so that everything else (signatures, static buffers, scalars, warm-up counts,
fallback) runs and is tested on a CPU with a recorder that re-runs the step instead.

torch is imported when a ``CapturedStep`` or ``GraphRecorder`` is made, never at module import
(``unidl_torch.backend`` imports this module for :data:`host_constants`).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from unidl.backend import FrozenRandomnessError, tracing
from unidl.structure import pack_like

torch: Any = None  # bound by _import_torch()

WARMUP_CALLS = 2  # eager calls of each signature before it is captured

__all__ = ["CapturedStep", "GraphRecorder", "HostConstants", "CaptureError", "host_constants", "WARMUP_CALLS"]


def _import_torch() -> None:
    global torch
    if torch is None:
        import torch


class CaptureError(RuntimeError):
    """A step cannot be recorded as it is (the signature then runs eagerly)."""


# ------------------------------------------------------------------ host constants

class HostConstants:
    """The device tensors a step made from host data in its eager runs, reused while it is captured.

    While :meth:`recording`, each conversion of host data (``TorchBackend.convert`` of a NumPy
    array, an index array) is made as usual and kept under its contents. While :meth:`frozen`
    (the capture), the same contents get the kept tensor back, so that no host-to-device copy
    is recorded; contents the eager runs did not convert are a :class:`CaptureError`.
    """

    def __init__(self) -> None:
        self._tensors: dict[tuple, Any] = {}
        self._frozen = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        token = host_constants.set(self)
        try:
            yield
        finally:
            host_constants.reset(token)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        token = host_constants.set(self)
        self._frozen = True
        try:
            yield
        finally:
            self._frozen = False
            host_constants.reset(token)

    def tensor(self, value: Any, dtype: Any, make: Callable[[], Any]) -> Any:
        """``make()`` (the device tensor of host ``value`` in ``dtype``), kept or reused (see the class)."""
        array = np.asarray(value)
        key = (array.dtype.str, array.shape, str(dtype), array.tobytes())
        if self._frozen:
            kept = self._tensors.get(key)
            if kept is None:
                raise CaptureError(f"the step converts host data to a tensor (shape {array.shape}, dtype "
                                   f"{array.dtype}) that its eager runs did not: a host-to-device copy cannot be "
                                   "recorded (pass changing data in as an argument)")
            return kept
        made = self._tensors[key] = make()
        return made

    def __len__(self) -> int:
        return len(self._tensors)


# The HostConstants of the step being warmed up or captured in this context, else None
# (read by TorchBackend.convert and its ops that take host data).
host_constants: contextvars.ContextVar[HostConstants | None] = contextvars.ContextVar("unidl_torch_host_constants",
                                                                                      default=None)


# ------------------------------------------------------------------ recorders

_SIDE_STREAMS: dict[Any, Any] = {}  # device -> the side stream every GraphRecorder on it warms up and captures on


def _side_stream(device: Any) -> Any:
    """One side stream per device, shared: torch keeps a cuBLAS workspace (32 MiB on Hopper) per stream for
    good, so a stream per compiled step (train, evaluate, predict) would hold one each."""
    stream = _SIDE_STREAMS.get(device)
    if stream is None:
        stream = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return stream


class GraphRecorder:
    """Warm-up and capture on CUDA: on the device's side stream, one graph memory pool for every capture."""

    def __init__(self, device: Any):
        _import_torch()
        self.device = device
        with torch.cuda.device(device):
            self.stream = _side_stream(device)
            self.pool = torch.cuda.graph_pool_handle()

    def warm_up(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run eagerly on the side stream (ordered after, and before, the current stream's work)."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out

    def record(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Capture ``fn()`` (which executes nothing) as a CUDA graph; returns ``replay() -> fn's outputs``."""
        graph = torch.cuda.CUDAGraph()
        previous = torch.cuda.current_stream(self.device)
        cause: BaseException | None = None
        try:
            # torch's default capture mode ("global"): CUDA calls that are unsafe during a capture fail it, from
            # any thread (the autograd engine runs the backward pass in its own thread)
            with torch.cuda.device(self.device), torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                try:
                    out = fn()
                except BaseException as err:  # noqa: BLE001 - re-raised below, once the capture is ended
                    cause = err
        except Exception:
            if cause is None:
                raise
            # ending a capture that ``fn`` broke fails too ("a previous error during capture"): report the cause
        finally:
            # torch.cuda.graph leaves its stream current when ending the capture fails: restore the caller's
            torch.cuda.set_stream(previous)
        if cause is not None:
            raise cause

        def replay():
            graph.replay()
            return out
        return replay


# ------------------------------------------------------------------ the step

_FLOAT = "float"  # the signature of a Python float: a fed scalar, its value not part of the key
_TENSOR, _SCALAR = 1, 2  # kinds of fed leaves


def _signature(x: Any, leaves: list) -> Any:
    """``x``'s signature (hashable), appending its leaves to ``leaves`` in ``unidl.structure.flatten``'s order."""
    if isinstance(x, torch.Tensor):
        leaves.append(x)
        return (x.shape, x.dtype, x.device, x.requires_grad)
    if isinstance(x, (float, np.floating)):
        leaves.append(float(x))
        return _FLOAT
    if x is None:
        return None
    if isinstance(x, dict):
        return ("dict", *((k, _signature(x[k], leaves)) for k in sorted(x)))
    if isinstance(x, (list, tuple)):
        return ("list" if isinstance(x, list) else "tuple", *(_signature(item, leaves) for item in x))
    leaves.append(x)  # static: an int, a string, any other object; part of the key
    try:
        hash(x)
    except TypeError:
        return ("object", type(x), id(x))
    return (type(x), x)


def _map_tensors(fn: Callable[[Any], Any], x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: _map_tensors(fn, v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        items = [_map_tensors(fn, v) for v in x]
        return items if isinstance(x, list) else tuple(items)
    return x


def _clone(t):
    return t.clone()


def _detach(t):
    return t.detach()


class _Signature:
    """One argument signature: its eager calls so far, then its static buffers and replay."""
    __slots__ = ("calls", "eager", "replay", "fed", "last", "constants")

    def __init__(self) -> None:
        self.calls = 0          # eager warm-up calls made
        self.eager = False      # the capture failed: eager from now on
        self.replay: Callable[[], Any] | None = None
        self.fed: list[tuple[int, int, Any]] = []   # (leaf index, kind, static buffer)
        self.last: dict[int, float] = {}            # leaf index -> the float its scalar buffer holds
        self.constants = HostConstants()

    def feed(self, leaves: list) -> None:
        """Copy this call's tensors and floats into the static buffers."""
        last = self.last
        for i, kind, buffer in self.fed:
            leaf = leaves[i]
            if kind == _TENSOR:
                if leaf is not buffer:
                    buffer.copy_(leaf)
            elif leaf != last[i]:
                buffer.fill_(leaf)
                last[i] = leaf


class CapturedStep:
    """``step`` run eagerly for its first calls of each argument signature, then captured and replayed.

    See the module docstring. ``recorder`` provides ``warm_up(fn)`` (run ``fn()`` eagerly, as the
    capture needs) and ``record(fn) -> replay`` (capture ``fn()``; ``replay()`` runs it and returns its
    outputs): :class:`GraphRecorder` on CUDA. ``float_dtype`` and ``device`` are those of the 0-d
    tensors that carry Python floats. ``warmup`` eager calls of each signature precede its capture.
    """

    def __init__(self, step: Callable, recorder: Any, float_dtype: Any, device: Any,
                 warmup: int = WARMUP_CALLS, clone_outputs: bool = True):
        _import_torch()
        if warmup < 1:
            raise ValueError(f"CapturedStep: warmup must be at least 1 (torch warms a step up before capturing "
                             f"it), got {warmup!r}")
        self.step, self.recorder = step, recorder
        self.float_dtype, self.device = float_dtype, device
        self.warmup, self.clone_outputs = int(warmup), bool(clone_outputs)
        self._signatures: dict[Any, _Signature] = {}
        self._warned: set[str] = set()
        self.__name__ = getattr(step, "__name__", "step")
        self.__doc__ = getattr(step, "__doc__", None)

    # ------------------------------------------------------------ introspection
    @property
    def captured(self) -> int:
        """How many argument signatures run as a replayed capture."""
        return sum(s.replay is not None for s in self._signatures.values())

    @property
    def fallbacks(self) -> int:
        """How many argument signatures run eagerly because their capture failed."""
        return sum(s.eager for s in self._signatures.values())

    # ------------------------------------------------------------------- calls
    def __call__(self, *args):
        leaves: list = []
        key = (torch.is_grad_enabled(), _signature(args, leaves))
        signature = self._signatures.get(key)
        if signature is None:
            signature = self._signatures[key] = _Signature()
        if signature.replay is not None:
            signature.feed(leaves)
            out = signature.replay()
            return _map_tensors(_clone, out) if self.clone_outputs else out
        if signature.eager:
            return self.step(*args)
        if signature.calls < self.warmup:
            signature.calls += 1
            return self.recorder.warm_up(lambda: self._run_recording(signature, args))
        return self._capture(signature, args, leaves)

    def _run_recording(self, signature: _Signature, args: tuple) -> Any:
        with signature.constants.recording():
            return self.step(*args)

    def _capture(self, signature: _Signature, args: tuple, leaves: list) -> Any:
        """Make the static buffers, capture the step over them, replay it for this call."""
        static, fed, last = [], [], {}
        with torch.no_grad():
            for i, leaf in enumerate(leaves):
                if isinstance(leaf, torch.Tensor):
                    buffer = leaf.detach().clone().requires_grad_(leaf.requires_grad)
                    fed.append((i, _TENSOR, buffer.detach()))  # copied into under no autograd
                elif type(leaf) is float:
                    buffer = torch.full((), leaf, dtype=self.float_dtype, device=self.device)
                    fed.append((i, _SCALAR, buffer))
                    last[i] = leaf
                else:
                    buffer = leaf
                static.append(buffer)
        static_args = pack_like(args, static)
        constants = signature.constants

        def body():
            with tracing(), constants.frozen():
                return _map_tensors(_detach, self.step(*static_args))

        try:
            replay = self.recorder.record(body)
            out = replay()  # the capture executed nothing: this call's step
        except FrozenRandomnessError:
            raise  # the training loop runs this step eagerly from now on
        except Exception as err:  # noqa: BLE001 - any failure to capture means: run eagerly
            signature.eager = True
            self._warn(err)
            del err
            return self.step(*args)
        signature.fed, signature.last, signature.replay = fed, last, replay
        return _map_tensors(_clone, out) if self.clone_outputs else out

    def _warn(self, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        where = _step_frame(err)
        if reason in self._warned:
            return
        self._warned.add(reason)
        warnings.warn(f"step {self.__name__!r} runs eagerly for these arguments: it cannot be captured as a CUDA "
                      f"graph ({reason}{where}). Host syncs (.item(), float() or bool() of a tensor), copies of "
                      "host data and data-dependent shapes inside a step prevent the capture; "
                      "compile(jit_compile=False) runs every step eagerly and silences this",
                      RuntimeWarning, stacklevel=4)


def _step_frame(err: BaseException) -> str:
    """', at file:line in function' for the innermost frame of ``err`` outside torch and this module."""
    torch_dir = os.path.dirname(torch.__file__) if torch is not None else None
    found = None
    tb = err.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and not (torch_dir and filename.startswith(torch_dir)) and "contextlib" not in filename:
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    code = found.tb_frame.f_code
    return f", at {os.path.basename(code.co_filename)}:{found.tb_lineno} in {code.co_name}"

"""Hand-written PyTorch training loops that ``unidl bench`` times unidl against.

What a torch user writes: ``nn.Module`` s in torch's own layout (NCHW images, (batch, channels,
steps) series), ``torch.optim.Adam`` with Keras's epsilon, ``loss.item()`` logged every step;
``torch.autocast`` (plus ``GradScaler`` for float16) for mixed precision.

``native/torch-graph`` is the same step captured once in a CUDA graph and replayed (CUDA only):
static input buffers, capture after a warm-up on a side stream, ``Adam(capturable=True)``, the
loss summed on the device and read once per epoch. It is the floor of any eager loop on the GPU
(no Python, no kernel launches but the graph's).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from unidl.bench import (CLASSES, CONV1D_BLOCKS, CONV1D_FILTERS, EMBED, FF, HEADS, HIDDEN, LAYER_NORM_EPSILON,
                         LSTM_FEATURES, LSTM_UNITS, MAXLEN, VOCAB, WIDE, WIDE_DEPTH, DeviceUnavailable)

MODELS = ("mlp", "cnn", "lstm", "wide", "conv1d", "transformer")
POLICIES = (None, "mixed_bfloat16", "mixed_float16")
GRAPH_POLICIES = (None, "mixed_bfloat16")  # GradScaler reads its found-inf flag on the host: no capture
GRAPH_WARMUP_STEPS = 3  # eager steps on the side stream before the capture (cuDNN/cuBLAS choose kernels there)


def torch_model(name: str):
    nn = torch.nn
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                             nn.Linear(HIDDEN, 10))
    if name == "wide":
        sizes = [784] + [WIDE] * WIDE_DEPTH
        hidden = [m for a, b in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())]
        return nn.Sequential(*hidden, nn.Linear(WIDE, 10))
    if name == "lstm":
        return _LastStep(nn.LSTM(LSTM_FEATURES, LSTM_UNITS, batch_first=True), nn.Linear(LSTM_UNITS, 10))
    if name == "conv1d":  # (batch, channels, steps), torch's layout; logits (CrossEntropyLoss takes them)
        blocks, channels = [], 1
        for _ in range(CONV1D_BLOCKS):
            blocks += [nn.Conv1d(channels, CONV1D_FILTERS, 3, padding="same"), nn.BatchNorm1d(CONV1D_FILTERS),
                       nn.ReLU()]
            channels = CONV1D_FILTERS
        return nn.Sequential(*blocks, _MeanOverSteps(), nn.Linear(CONV1D_FILTERS, CLASSES["conv1d"]))
    if name == "transformer":
        return _TransformerClassifier()
    # NCHW, torch's own layout: the hand-written loop a torch user writes
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def torch_layout(model_name: str, x: np.ndarray) -> np.ndarray:
    """The data a torch user has: NCHW images, (batch, channels, steps) series."""
    if model_name == "cnn":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if model_name == "conv1d":
        return np.ascontiguousarray(x.transpose(0, 2, 1))
    return x


def _half(policy: str | None, device_type: str):
    """(autocast context factory, half dtype or None) for ``policy``."""
    half = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(policy)
    if half is None:
        return contextlib.nullcontext, None
    return (lambda: torch.autocast(device_type, dtype=half)), half


def run_native_torch(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                     policy: str | None = None):
    device = device or "cpu"
    model = torch_model(model_name).to(device)
    device_type = device.split(":")[0]
    autocast, half = _half(policy, device_type)
    scaler = torch.amp.GradScaler(device_type) if half is torch.float16 else None
    x = torch_layout(model_name, x)
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


def run_native_torch_graph(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                           policy: str | None = None):
    """The native step captured in one CUDA graph: the lower bound of an eager torch loop on the GPU.

    Follows torch's "whole network capture" recipe (torch.cuda.graphs docs): static input and
    label buffers, a few eager warm-up steps on a side stream, ``torch.cuda.graph`` capturing
    forward, backward and ``Adam(capturable=True).step()``, then per batch a device-to-device copy
    into the static buffers and ``graph.replay()``. The data is put on the device once, up front,
    and the loss is summed into a device scalar inside the graph and read once per epoch: what is
    timed is the training itself.
    """
    if not device or device.split(":")[0] != "cuda":
        raise DeviceUnavailable(f"native/torch-graph captures CUDA graphs: it needs --device cuda, not {device or 'cpu'}")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"native/torch-graph: CUDA is not available to this torch {torch.__version__}")
    if policy not in GRAPH_POLICIES:
        raise ValueError(f"native/torch-graph is written for {GRAPH_POLICIES}, not {policy}")
    if len(x) % batch_size:
        raise ValueError(f"native/torch-graph replays one batch shape: {len(x)} samples are not a multiple of "
                         f"the batch size {batch_size}")
    device = torch.device(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_device(device)
    model = torch_model(model_name).to(device)
    half = {"mixed_bfloat16": torch.bfloat16}.get(policy)

    def autocast():  # autocast's weight-cast cache must be off inside a capture
        return torch.autocast("cuda", dtype=half, cache_enabled=False) if half else contextlib.nullcontext()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, capturable=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.as_tensor(torch_layout(model_name, x)).to(device)
    yt = torch.as_tensor(y).to(device)
    static_x, static_y = xt[:batch_size].clone(), yt[:batch_size].clone()
    total = torch.zeros((), device=device)

    def step():
        with autocast():
            loss = loss_fn(model(static_x), static_y)
        loss.backward()
        optimizer.step()
        return loss

    # Warm-up on a side stream (the allocator and cuDNN/cuBLAS settle there, and Adam's state is made),
    # as the recipe asks; gradients set to None before the capture so that backward allocates them
    # from the graph's private pool.
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(GRAPH_WARMUP_STEPS):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    optimizer.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
        total.add_(static_loss.detach().float())  # the logged loss, summed on the device
    torch.cuda.synchronize(device)

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        total.zero_()
        for i in range(0, len(xt), batch_size):
            static_x.copy_(xt[i:i + batch_size], non_blocking=True)
            static_y.copy_(yt[i:i + batch_size], non_blocking=True)
            graph.replay()  # backward's gradients are overwritten in place by the next replay
        running = total.item()  # once per epoch: the loop's only synchronisation
        times.append(time.perf_counter() - start)
    del running
    return times[1:]


class _LastStep(torch.nn.Module):
    """nn.LSTM, then a Linear layer on its last step's output: what a torch user writes."""

    def __init__(self, lstm, head):
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[:, -1])


class _MeanOverSteps(torch.nn.Module):
    """GlobalAveragePooling1D on (batch, channels, steps)."""

    def forward(self, x):
        return x.mean(dim=2)


class _TransformerClassifier(torch.nn.Module):
    """Keras's transformer text classifier as a torch user writes it: token + position embeddings,
    one block (packed q/k/v projection, ``F.scaled_dot_product_attention``, residual + LayerNorm,
    feed-forward, residual + LayerNorm), mean over steps, Dense 20 relu, logits.

    ``nn.MultiheadAttention`` cannot express Keras's heads (it splits ``embed_dim`` between the
    heads, where Keras gives each head ``key_dim`` = 32 of its own), so attention is written by hand."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.tokens, self.positions = nn.Embedding(VOCAB, EMBED), nn.Embedding(MAXLEN, EMBED)
        self.qkv = nn.Linear(EMBED, 3 * HEADS * EMBED)
        self.out = nn.Linear(HEADS * EMBED, EMBED)
        self.norm1 = nn.LayerNorm(EMBED, eps=LAYER_NORM_EPSILON)
        self.norm2 = nn.LayerNorm(EMBED, eps=LAYER_NORM_EPSILON)
        self.ffn = nn.Sequential(nn.Linear(EMBED, FF), nn.ReLU(), nn.Linear(FF, EMBED))
        self.head = nn.Sequential(nn.Linear(EMBED, 20), nn.ReLU(), nn.Linear(20, CLASSES["transformer"]))

    def forward(self, ids):
        batch, steps = ids.shape
        h = self.tokens(ids) + self.positions(torch.arange(steps, device=ids.device))
        q, k, v = self.qkv(h).view(batch, steps, 3, HEADS, EMBED).permute(2, 0, 3, 1, 4)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # (batch, heads, steps, EMBED)
        h = self.norm1(h + self.out(attended.transpose(1, 2).reshape(batch, steps, HEADS * EMBED)))
        h = self.norm2(h + self.ffn(h))
        return self.head(h.mean(dim=1))

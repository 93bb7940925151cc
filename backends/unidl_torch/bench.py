"""Hand-written PyTorch training loops that ``unidl bench`` times unidl against.

What a torch user writes: ``nn.Sequential`` in torch's own layout (NCHW images),
``torch.optim.Adam`` with Keras's epsilon, ``loss.item()`` logged every step;
``torch.autocast`` (plus ``GradScaler`` for float16) for mixed precision.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch

from unidl.bench import HIDDEN, LSTM_FEATURES, LSTM_UNITS

MODELS = ("mlp", "cnn", "lstm")
POLICIES = (None, "mixed_bfloat16", "mixed_float16")


def torch_model(name: str):
    nn = torch.nn
    torch.manual_seed(0)
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                             nn.Linear(HIDDEN, 10))
    if name == "lstm":
        return _LastStep(nn.LSTM(LSTM_FEATURES, LSTM_UNITS, batch_first=True), nn.Linear(LSTM_UNITS, 10))
    # NCHW, torch's own layout: the hand-written loop a torch user writes
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))


def run_native_torch(model_name: str, x, y, batch_size: int, repeats: int, device: str | None,
                     policy: str | None = None):
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


class _LastStep(torch.nn.Module):
    """nn.LSTM, then a Linear layer on its last step's output: what a torch user writes."""

    def __init__(self, lstm, head):
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[:, -1])

"""Deeper regression MLP: Dense(64, relu) -> Dense(64, relu) -> Dense(1) on 10 input features.

The data is synthetic (a smooth non-linear function of 10 features plus noise),
split 80/20 into training and validation by ``validation_split``.

    python examples/deep_regression.py --backend torch --epochs 50
    unidl compare examples/deep_regression.py     # the same model on every backend, side by side
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


def make_data(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    w = rng.normal(size=(10,))
    y = np.sin(x[:, :3]).sum(axis=1) + x @ w * 0.5 + 0.1 * rng.normal(size=n)
    return x, y.astype("float32").reshape(-1, 1)


def build_model(seed: int = 0) -> unidl.Model:
    """The uncompiled model (``unidl compare`` looks for this name)."""
    return unidl.Sequential([
        layers.Dense(64, activation="relu", input_dim=10),
        layers.Dense(64, activation="relu"),
        layers.Dense(1),
    ], seed=seed)


def compile_kwargs() -> dict:
    """What ``main`` passes to ``compile`` besides the backend (``unidl compare`` uses it too)."""
    return {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]}


def main(backend: str = "numpy", epochs: int = 50, verbose: int = 2, seed: int = 0) -> dict:
    x, y = make_data(seed=seed)
    model = build_model(seed)
    model.compile(**compile_kwargs(), backend=backend)
    history = model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=verbose)
    if verbose:
        model.summary()
    final = {k: v[-1] for k, v in history.history.items()}
    print(f"[{backend}] " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    return {"history": history.history, **final}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    main(args.backend, args.epochs)

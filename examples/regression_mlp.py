"""Regression MLP: learn y = x1 + x2 + x3 + x4 with Dense(10, relu) -> Dense(1).

    python examples/regression_mlp.py --backend torch
    unidl compare examples/regression_mlp.py       # the same model on every backend, side by side
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).random((100, 4)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def build_model(seed: int = 0) -> unidl.Model:
    """The uncompiled model (``unidl compare`` looks for this name)."""
    return unidl.Sequential([layers.Dense(10, activation="relu", input_shape=(4,)), layers.Dense(1)], seed=seed)


def compile_kwargs() -> dict:
    """What ``main`` passes to ``compile`` besides the backend (``unidl compare`` uses it too)."""
    return {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]}


def main(backend: str = "numpy", epochs: int = 100, verbose: int = 2, seed: int = 0) -> dict:
    x, y = make_data(seed)
    model = build_model(seed)
    model.compile(**compile_kwargs(), backend=backend)
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=verbose)
    loss, mae = model.evaluate(x, y, verbose=0)
    if verbose:
        model.summary()
        print(f"[{backend}] first epoch loss {history.history['loss'][0]:.4f} -> final loss {loss:.4f}, mae {mae:.4f}")
        print("predictions for the first 3 samples:", model.predict(x[:3]).ravel(), "targets:", y[:3].ravel())
    return {"history": history.history, "loss": loss, "mae": mae}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    main(args.backend, args.epochs)

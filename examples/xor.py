"""XOR: the classic problem a single linear layer cannot solve.

Dense(10, relu) -> Dense(1, sigmoid), binary cross-entropy, 1000 epochs.

    python examples/xor.py --backend tensorflow
    unidl compare examples/xor.py         # the same model on every backend, side by side
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype="float32")
Y = np.array([[0], [1], [1], [0]], dtype="float32")


def make_data() -> tuple[np.ndarray, np.ndarray]:
    return X, Y


def build_model(seed: int = 0) -> unidl.Model:
    """The uncompiled model (``unidl compare`` looks for this name)."""
    return unidl.Sequential([
        layers.Dense(10, activation="relu", input_shape=(2,)),
        layers.Dense(1, activation="sigmoid"),
    ], seed=seed)


def compile_kwargs() -> dict:
    """What ``main`` passes to ``compile`` besides the backend (``unidl compare`` uses it too)."""
    return {"optimizer": unidl.optimizers.Adam(learning_rate=0.01), "loss": "binary_crossentropy",
            "metrics": ["accuracy"]}


def main(backend: str = "numpy", epochs: int = 1000, verbose: int = 0, seed: int = 0) -> dict:
    model = build_model(seed)
    model.compile(**compile_kwargs(), backend=backend)
    history = model.fit(X, Y, epochs=epochs, verbose=verbose)
    loss, accuracy = model.evaluate(X, Y, verbose=0)
    probabilities = model.predict(X).ravel()
    print(f"[{backend}] loss {loss:.4f}, accuracy {accuracy:.2f}")
    for inputs, p in zip(X, probabilities):
        print(f"  {inputs.astype(int).tolist()} -> {p:.3f}")
    return {"history": history.history, "loss": loss, "accuracy": accuracy, "probabilities": probabilities}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=1000)
    args = parser.parse_args()
    main(args.backend, args.epochs)

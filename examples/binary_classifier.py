"""Binary classifier: Dense(10, relu) -> Dense(8, relu) -> Dense(1, sigmoid) on 8 features.

The data is synthetic, shaped like the tutorial's tabular data set (8 numeric
features, a yes/no label that depends on them non-linearly); features are
standardised with the training set's mean and standard deviation.

    python examples/binary_classifier.py --backend tensorflow
    unidl compare examples/binary_classifier.py     # the same model on every backend, side by side
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


TRAIN_FRACTION = 0.8  # the first 80% of the samples train, the rest test


def make_data(n: int = 768, seed: int = 0, standardize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features (standardised with the training part's mean and std unless ``standardize=False``), labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)) * rng.uniform(0.5, 20, size=8) + rng.uniform(0, 100, size=8)
    z = (x - x.mean(0)) / x.std(0)
    logits = 1.5 * z[:, 1] + z[:, 5] - 0.8 * z[:, 0] * z[:, 7] + 0.5 * z[:, 2] ** 2 - 0.5
    y = (logits + 0.5 * rng.normal(size=n) > 0).astype("float32")
    x = x.astype("float32")
    if standardize:
        split = int(TRAIN_FRACTION * n)
        mean, std = x[:split].mean(0), x[:split].std(0)
        x = (x - mean) / std
    return x, y


def build_model(seed: int = 0) -> unidl.Model:
    """The uncompiled model (``unidl compare`` looks for this name)."""
    return unidl.Sequential([
        layers.Dense(10, activation="relu", input_shape=(8,)),
        layers.Dense(8, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ], seed=seed)


def compile_kwargs() -> dict:
    """What ``main`` passes to ``compile`` besides the backend (``unidl compare`` uses it too)."""
    return {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["accuracy"]}


def main(backend: str = "numpy", epochs: int = 10, verbose: int = 2, seed: int = 0) -> dict:
    x, y = make_data(seed=seed)
    split = int(TRAIN_FRACTION * len(x))
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]

    model = build_model(seed)
    model.compile(**compile_kwargs(), backend=backend)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    if verbose:
        model.summary()
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    predictions = (model.predict(x_test) > 0.5).astype(int).ravel()
    print(f"[{backend}] test loss {loss:.4f}, test accuracy {accuracy:.3f}; "
          f"first predictions {predictions[:10].tolist()} vs labels {y_test[:10].astype(int).tolist()}")
    return {"loss": loss, "accuracy": accuracy, "predictions": predictions}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(args.backend, args.epochs)

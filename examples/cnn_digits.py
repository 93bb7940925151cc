"""CNN on handwritten digits: Conv2D(32, 3x3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(10, softmax).

Categorical cross-entropy on one-hot labels. Data: scikit-learn's bundled 8x8 digits
(1,797 images; MNIST cannot be downloaded on these machines), scaled to [0, 1],
shaped (N, 8, 8, 1) channels-last, 80/20 train/test split.

    python examples/cnn_digits.py --backend torch --epochs 10
    python examples/cnn_digits.py --backend torch --dtype-policy mixed_bfloat16   # half-precision compute
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


def make_data(seed: int = 0):
    """((x_train, y_train), (x_test, y_test)) with images (N, 8, 8, 1) and integer labels."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def build_model(seed: int = 0) -> unidl.Model:
    return unidl.Sequential([
        layers.Input((8, 8, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ], seed=seed)


def main(backend: str = "numpy", epochs: int = 10, verbose: int = 2, seed: int = 0,
         dtype_policy: str | None = None) -> dict:
    (x_train, y_train), (x_test, y_test) = make_data(seed)
    one_hot = np.eye(10, dtype="float32")
    model = build_model(seed)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"], backend=backend,
                  dtype_policy=dtype_policy)
    model.fit(x_train, one_hot[y_train], epochs=epochs, batch_size=32, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, one_hot[y_test], verbose=0)
    if verbose:
        model.summary()
    print(f"[{backend}] test loss {loss:.4f}, test accuracy {accuracy:.3f}")
    return {"loss": loss, "accuracy": accuracy}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--dtype-policy", default=None, help="mixed_bfloat16 or mixed_float16 (torch, tensorflow)")
    args = parser.parse_args()
    main(args.backend, args.epochs, dtype_policy=args.dtype_policy)

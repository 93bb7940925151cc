"""CNN with a hidden Dense layer and sparse labels, trained then evaluated on a held-out test split.

Conv2D(32, 3x3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(128, relu) -> Dense(10, softmax),
sparse categorical cross-entropy on integer labels (no one-hot encoding needed).
Data: scikit-learn's bundled 8x8 digits, as in cnn_digits.py.

    python examples/cnn_digits_sparse.py --backend tensorflow --epochs 10
"""
from __future__ import annotations

import argparse

import unidl
from unidl import layers

try:  # run as a script from examples/ or imported as a module by the tests
    from cnn_digits import make_data
except ImportError:  # pragma: no cover
    from examples.cnn_digits import make_data


def build_model(seed: int = 0) -> unidl.Model:
    return unidl.Sequential([
        layers.Input((8, 8, 1)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], seed=seed)


def main(backend: str = "numpy", epochs: int = 10, verbose: int = 2, seed: int = 0) -> dict:
    (x_train, y_train), (x_test, y_test) = make_data(seed)
    model = build_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"[{backend}] test loss {loss:.4f}, test accuracy {accuracy:.3f}")
    return {"loss": loss, "accuracy": accuracy}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(args.backend, args.epochs)

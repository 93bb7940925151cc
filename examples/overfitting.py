"""Overfitting and its cures: the same MLP without and with Dropout and L2, on a small training split.

Data: scikit-learn's bundled 8x8 digits (MNIST cannot be downloaded here), flattened to
64 features and scaled to [0, 1]; 300 training images, 30% of them with random labels,
so a wide MLP that memorises its training set learns the noise too.
The script prints training vs validation accuracy and loss for each variant: without
a cure the training loss goes to ~0 while the validation loss climbs (overconfident
mistakes); dropout and L2 keep the validation loss down.

    python examples/overfitting.py --backend torch --epochs 60
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers

VARIANTS = ("plain", "dropout", "l2")


def make_data(train_size: int = 300, label_noise: float = 0.3, seed: int = 0):
    """Digits split into a small training set (with a fraction of its labels replaced at random,
    the noise a network can only memorise) and a clean validation set."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int64")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    train, val = order[:train_size], order[train_size:]
    y_train = y[train].copy()
    noisy = rng.random(train_size) < label_noise
    y_train[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return (x[train], y_train), (x[val], y[val])


def build_model(variant: str = "plain", seed: int = 0) -> unidl.Model:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    l2 = unidl.regularizers.l2(3e-3) if variant == "l2" else None
    stack = [layers.Dense(256, activation="relu", kernel_regularizer=l2, input_shape=(64,))]
    if variant == "dropout":
        stack.append(layers.Dropout(0.5))
    stack += [layers.Dense(256, activation="relu", kernel_regularizer=l2)]
    if variant == "dropout":
        stack.append(layers.Dropout(0.5))
    stack.append(layers.Dense(10, activation="softmax"))
    return unidl.Sequential(stack, seed=seed)


def main(backend: str = "numpy", epochs: int = 60, verbose: int = 0, seed: int = 0) -> dict:
    (x_train, y_train), (x_val, y_val) = make_data(seed=seed)
    results = {}
    for variant in VARIANTS:
        model = build_model(variant, seed)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      backend=backend)
        model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_data=(x_val, y_val),
                  verbose=verbose)
        train_loss, train_acc = model.evaluate(x_train, y_train, verbose=0)
        val_loss, val_acc = model.evaluate(x_val, y_val, verbose=0)
        results[variant] = {"train_accuracy": train_acc, "val_accuracy": val_acc,
                            "train_loss": train_loss, "val_loss": val_loss}
        print(f"[{backend}] {variant:>8}: accuracy train {train_acc:.3f} / validation {val_acc:.3f}; "
              f"loss train {train_loss:.3f} / validation {val_loss:.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    main(args.backend, args.epochs)

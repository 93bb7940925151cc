"""Breast-cancer classifier: Dense(10, relu) -> Dense(8, relu) -> Dense(1, sigmoid), with early stopping.

Data: scikit-learn's bundled Wisconsin breast-cancer set (569 samples, 30 features),
standardised with the training split's mean and standard deviation (what sklearn's
StandardScaler does), 80/20 train/test split. EarlyStopping watches the validation loss
and restores the best weights.

    python examples/breast_cancer.py --backend tensorflow
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


def make_data(seed: int = 0):
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target.astype("float32"), test_size=0.2, random_state=seed, stratify=data.target)
    scaler = StandardScaler().fit(x_train)
    return ((scaler.transform(x_train).astype("float32"), y_train),
            (scaler.transform(x_test).astype("float32"), y_test))


def build_model(seed: int = 0) -> unidl.Model:
    return unidl.Sequential([
        layers.Dense(10, activation="relu", input_shape=(30,)),
        layers.Dense(8, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ], seed=seed)


def main(backend: str = "numpy", epochs: int = 100, verbose: int = 0, seed: int = 0) -> dict:
    (x_train, y_train), (x_test, y_test) = make_data(seed)
    model = build_model(seed)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"], backend=backend)
    stopper = unidl.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2,
                        callbacks=[stopper], verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    benign = (model.predict(x_test) > 0.5).ravel()  # in this data set 1 = benign, 0 = malignant
    malignant = y_test == 0
    stopped = f"stopped early after {len(history.epoch)}" if len(history.epoch) < epochs else f"ran all {epochs}"
    print(f"[{backend}] {stopped} epochs; test loss {loss:.4f}, test accuracy {accuracy:.3f}; "
          f"malignant tumours found: {int(np.sum(~benign & malignant))} of {int(malignant.sum())}")
    return {"loss": loss, "accuracy": accuracy, "epochs": len(history.epoch)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    main(args.backend, args.epochs)

"""Adversarial examples with the fast gradient sign method (FGSM) against the digits CNN.

Train the CNN of cnn_digits_sparse.py, then nudge every test image by ``eps`` in the
direction that increases the loss, ``x_adv = clip(x + eps * sign(d loss / d x), 0, 1)``,
and measure the accuracy again. The input gradient comes from
``unidl.value_and_grad(..., inputs=[x])``, the same on every backend.

    python examples/adversarial_fgsm.py --backend tensorflow
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl

try:  # run as a script from examples/ or imported as a module by the tests
    from cnn_digits import make_data
    from cnn_digits_sparse import build_model
except ImportError:  # pragma: no cover
    from examples.cnn_digits import make_data
    from examples.cnn_digits_sparse import build_model


def fgsm(model: unidl.Model, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """One signed-gradient step of size eps away from the true labels, kept in [0, 1]."""
    loss_fn = unidl.losses.SparseCategoricalCrossentropy()
    with unidl.use_backend(model.backend) as b:
        labels = b.convert(y)
        _, (grad,) = unidl.value_and_grad(lambda images: loss_fn(labels, model(images)), inputs=[x])
        return np.clip(x + eps * np.sign(b.to_numpy(grad)), 0.0, 1.0).astype(x.dtype)


def main(backend: str = "numpy", epochs: int = 10, verbose: int = 0, seed: int = 0,
         epsilons=(0.05, 0.1, 0.2)) -> dict:
    (x_train, y_train), (x_test, y_test) = make_data(seed)
    model = build_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend)
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    results = {0.0: model.evaluate(x_test, y_test, verbose=0)[1]}
    for eps in epsilons:
        results[eps] = model.evaluate(fgsm(model, x_test, y_test, eps), y_test, verbose=0)[1]
    print(f"[{backend}] test accuracy " + ", ".join(
        f"{'clean' if eps == 0 else f'eps={eps}'}: {acc:.3f}" for eps, acc in results.items()))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(args.backend, args.epochs)

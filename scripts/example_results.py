"""Run every tutorial example at its default settings on each backend and print a Markdown table.

    .venv/bin/python scripts/example_results.py [backend ...]

This is how the README's per-backend results table is produced.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

# example -> (what to report, how to read it from main()'s result)
REPORTED = {
    "regression_mlp": ("final mse", lambda r: r["loss"]),
    "xor": ("accuracy", lambda r: r["accuracy"]),
    "deep_regression": ("val mse", lambda r: r["val_loss"]),
    "binary_classifier": ("test accuracy", lambda r: r["accuracy"]),
    "cnn_digits": ("test accuracy", lambda r: r["accuracy"]),
    "cnn_digits_sparse": ("test accuracy", lambda r: r["accuracy"]),
    "breast_cancer": ("test accuracy", lambda r: r["accuracy"]),
    "overfitting": ("val accuracy plain / dropout / l2",
                    lambda r: " / ".join(f"{r[v]['val_accuracy']:.3f}" for v in ("plain", "dropout", "l2"))),
    "transfer_learning": ("accuracy frozen base / scratch",
                          lambda r: f"{r['transfer_accuracy']:.3f} / {r['scratch_accuracy']:.3f}"),
    "adversarial_fgsm": ("accuracy clean / eps 0.1", lambda r: f"{r[0.0]:.3f} / {r[0.1]:.3f}"),
    "char_rnn": ("next-char accuracy rnn / lstm",
                 lambda r: f"{r['rnn']['accuracy']:.3f} / {r['lstm']['accuracy']:.3f}"),
    "gan_2d": ("generated radius (real 1.0)", lambda r: f"{r['radius_mean']:.3f} ± {r['radius_std']:.3f}"),
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(backends: list[str]) -> None:
    rows = []
    for name, (label, read) in REPORTED.items():
        cells = []
        for backend in backends:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                result = load(name).main(backend, verbose=0)
            value = read(result)
            cells.append(f"{value:.4f}" if isinstance(value, float) else value)
            print(f"{name} on {backend}: {cells[-1]} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        rows.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    print("| example | result | " + " | ".join(backends) + " |")
    print("|---|---|" + "---|" * len(backends))
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1:] or ["numpy", "torch", "tensorflow"])

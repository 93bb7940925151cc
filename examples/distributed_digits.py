"""Data-parallel training on several processes, the same script on torch and on TensorFlow:

    torchrun --standalone --nproc_per_node 2 examples/distributed_digits.py --backend torch
    torchrun --standalone --nproc_per_node 2 examples/distributed_digits.py --backend tensorflow

Each process takes its slice of every global batch, gradients are all-reduced
(torch.distributed: gloo on CPU, nccl on GPUs; tf.distribute's MultiWorkerMirroredStrategy:
ring on CPU, NCCL on GPUs), and every process ends with the same weights as one process
training on the whole batches. Across machines, torch: start the same command on each with
torchrun's rendezvous flags ``--nnodes 2 --rdzv_backend c10d --rdzv_endpoint HOST:29400``;
TensorFlow: start ``python examples/distributed_digits.py --backend tensorflow`` on each with
its own TF_CONFIG (see unidl.distributed). Without a launcher, one process trains alone.
Data: scikit-learn's bundled 8x8 digits, flattened.
"""
from __future__ import annotations

import argparse

import numpy as np

import unidl
from unidl import layers


def main(backend: str = "torch", epochs: int = 10, batch_size: int = 64, seed: int = 0) -> dict:
    from sklearn.datasets import load_digits
    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:1400], order[1400:]
    strategy = unidl.distributed.DataParallel()  # torch.distributed or tf.distribute, set up by compile
    model = unidl.Sequential([layers.Dense(64, activation="relu", input_shape=(64,)),
                              layers.Dense(10, activation="softmax")], seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  backend=backend, distribute=strategy)
    model.fit(x[train], y[train], batch_size=batch_size, epochs=epochs, verbose=0)
    loss, accuracy = model.evaluate(x[test], y[test], verbose=0)
    strategy.shutdown()
    if strategy.rank == 0:
        print(f"[{backend}, {strategy.world_size} processes] test loss {loss:.4f}, test accuracy {accuracy:.3f}")
    return {"loss": loss, "accuracy": accuracy}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="torch", help="torch (torch.distributed) or tensorflow (tf.distribute)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(args.backend, args.epochs)

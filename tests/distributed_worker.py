"""Run by tests/test_distributed.py under torchrun: 2 processes train with DataParallel;
rank 0 then trains the same model in one process on the whole batches and writes both weights."""
import sys

import numpy as np

import unidl
from unidl import layers


def build():
    model = unidl.Sequential([layers.Dense(8, activation="tanh", input_shape=(5,)), layers.Dense(2)], seed=0)
    return model


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 5)).astype("float32")  # 70 samples, batch 16: the last batch (6) splits 3/3
    y = rng.normal(size=(70, 2)).astype("float32")
    strategy = unidl.distributed.DataParallel()
    model = build()
    model.compile(optimizer="adam", loss="mse", backend="torch", dtype="float64", distribute=strategy)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    strategy.shutdown()
    if strategy.rank == 0:
        single = build()
        single.compile(optimizer="adam", loss="mse", backend="torch", dtype="float64")
        single.fit(x, y, batch_size=16, epochs=3, verbose=0)
        np.savez(out, *model.get_weights(), *single.get_weights(), world=strategy.world_size)


if __name__ == "__main__":
    main(sys.argv[1])

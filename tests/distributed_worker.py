"""Run by tests/test_distributed.py, one process per rank (torchrun for torch, TF_CONFIG for
tensorflow): the processes train together with DataParallel and each writes its weights to
OUT_DIR/rank<r>.npz; rank 0 then trains the same model alone on the whole batches and writes
OUT_DIR/single.npz.

    python tests/distributed_worker.py OUT_DIR BACKEND
"""
import sys
from pathlib import Path

import numpy as np

import unidl
from unidl import layers


def build():
    return unidl.Sequential([layers.Dense(8, activation="tanh", input_shape=(5,)), layers.Dense(2)], seed=0)


def main(out: str, backend: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 5)).astype("float32")  # 70 samples, batch 16: the last batch (6) splits 3/3
    y = rng.normal(size=(70, 2)).astype("float32")
    strategy = unidl.distributed.DataParallel()  # set up by compile, for the model's backend
    model = build()
    model.compile(optimizer="adam", loss="mse", backend=backend, dtype="float64", distribute=strategy)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    strategy.shutdown()
    out = Path(out)
    np.savez(out / f"rank{strategy.rank}.npz", *model.get_weights(), world=strategy.world_size,
             engine=strategy.engine)
    if strategy.rank == 0:
        single = build()
        single.compile(optimizer="adam", loss="mse", backend=backend, dtype="float64")
        single.fit(x, y, batch_size=16, epochs=3, verbose=0)
        np.savez(out / "single.npz", *single.get_weights())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Data-parallel training over ``torch.distributed`` (DistributedDataParallel's semantics).

Launch one process per device with ``torchrun`` and compile with a strategy::

    # torchrun --nproc_per_node 2 train.py
    strategy = unidl.distributed.DataParallel()
    model.compile(optimizer="adam", loss="mse", backend="torch", distribute=strategy)
    model.fit(x, y, batch_size=64)        # 64 = the global batch, split across the processes
    strategy.shutdown()                   # close the process group before the process exits

Every process holds the same data and draws the same batch order (the model's
seeded generator), takes its own slice of each global batch, computes gradients
on it, and the gradients are summed across processes with an all-reduce, each
weighted by its share of the batch. The update is therefore the one a single
process would make on the whole batch: the test in tests/test_distributed.py
checks the final weights against single-process training.

Several machines: the standard torchrun rendezvous flags, e.g. on each of 2 nodes
``torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 train.py``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class DataParallel:
    """Synchronous data parallelism for the torch backend (gloo on CPU, nccl on CUDA).

    Args:
        process_group_backend: "gloo", "nccl" or None (nccl when CUDA is available, else gloo).
            The process group is created from torchrun's environment unless one exists.
    """

    def __init__(self, process_group_backend: str | None = None):
        import torch
        import torch.distributed as dist
        self._torch, self._dist = torch, dist
        if not dist.is_initialized():
            choice = process_group_backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=choice)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def check_backend(self, backend) -> None:
        if backend.name != "torch":
            raise ValueError(f"DataParallel runs on the torch backend (torch.distributed); the model is compiled "
                             f"on {backend.name!r}")

    def shard(self, batch):
        """This process's slice of a NumPy batch (an array, a list of arrays, or None)."""
        if batch is None:
            return None
        if isinstance(batch, list):
            return [self.shard(a) for a in batch]
        return np.array_split(batch, self.world_size)[self.rank]

    def shutdown(self) -> None:
        """Wait for every process, then close the process group. Call it once training is over:
        a process that exits with a live group can abort (gloo: "terminate called ...")."""
        if self._dist.is_initialized():
            self._dist.barrier()
            self._dist.destroy_process_group()

    def reduce_gradients(self, grads: Sequence, share: float) -> list:
        """Sum ``share * grad`` over the processes, in place: the whole batch's mean gradient."""
        for g in grads:
            g.mul_(share)
            self._dist.all_reduce(g)
        return list(grads)

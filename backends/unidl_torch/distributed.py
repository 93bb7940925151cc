"""The torch backend's data-parallel engine: torch.distributed all-reduce on the default process group."""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist


class TorchEngine:
    """torch.distributed: all_reduce on the default process group, created from torchrun's environment
    (gloo on CPU, nccl when CUDA is available) unless one exists; without a launcher, one process alone."""

    name = "torch"

    def __init__(self, strategy):
        self.grouped = dist.is_initialized() or "RANK" in os.environ  # else no launcher: train alone
        if not dist.is_initialized() and self.grouped:
            choice = strategy.process_group_backend or ("nccl" if torch.cuda.is_available() else "gloo")
            dist.init_process_group(backend=choice)
        self.rank, self.world_size = (dist.get_rank(), dist.get_world_size()) if self.grouped else (0, 1)

    def reduce(self, grads: Sequence, share: float) -> list:
        for g in grads:  # in place: the gradients are this step's own tensors
            g.mul_(share)
            if self.grouped:
                dist.all_reduce(g)
        return list(grads)

    def shutdown(self) -> None:
        if self.grouped and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

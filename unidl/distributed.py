"""Data-parallel training across processes: torch.distributed for the torch backend,
tf.distribute for the tensorflow backend, with the same user code for both.

Launch one process per device (``torchrun`` starts them for either backend) and compile
with a strategy::

    # torchrun --standalone --nproc_per_node 2 train.py
    strategy = unidl.distributed.DataParallel()
    model.compile(optimizer="adam", loss="mse", backend="torch", distribute=strategy)  # or "tensorflow"
    model.fit(x, y, batch_size=64)        # 64 = the global batch, split across the processes
    strategy.shutdown()                   # wait for the others before the process exits

Every process holds the same data and draws the same batch order (the model's
seeded generator), takes its own slice of each global batch, computes gradients
on it, and the gradients are summed across processes with an all-reduce, each
weighted by its share of the batch. The update is therefore the one a single
process would make on the whole batch: tests/test_distributed.py checks the final
weights of 2 processes against single-process training, on both backends.

The engine follows the backend the model is compiled on and is set up then (or at
once with ``DataParallel(engine=...)``):

* torch: the default ``torch.distributed`` process group, from torchrun's environment
  (gloo on CPU, nccl when CUDA is available) unless one exists already; without torchrun
  (no RANK in the environment) and no group, the process trains alone.
* tensorflow: a ``tf.distribute.MultiWorkerMirroredStrategy`` (collective all-reduce: ring
  on CPUs, NCCL on GPUs with ``communication="auto"``). Its cluster is the standard
  ``TF_CONFIG`` when set; else, under torchrun on one machine, derived from torchrun's
  environment (process ``i`` serves on ``localhost:MASTER_PORT + 1 + i``); with neither,
  the process trains alone. TensorFlow sets collectives up only before its runtime
  starts, i.e. before the process's first TensorFlow tensor: compile with
  ``distribute=`` before any other TensorFlow work, or create
  ``DataParallel(engine="tensorflow")`` at the top of the script.

Several machines:

* torch: torchrun's rendezvous on each machine, e.g. on each of 2 nodes
  ``torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29400 train.py``.
* tensorflow: start one process per machine (or per GPU) with its own ``TF_CONFIG``: the
  same cluster everywhere, its own task. On host1 and host2::

      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' python train.py
      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 1}}' python train.py

  Each listed port must be reachable from the other machines. Several processes on a
  machine take one entry (own port) each; a "chief" job, if listed, is rank 0.

One device per process: a model lives on one device, so a machine with several GPUs
runs one process per GPU (compile each with ``device=f"cuda:{local_rank}"``, or give each
process one GPU with ``CUDA_VISIBLE_DEVICES``). TensorFlow's single-process
``MirroredStrategy`` (one replica per GPU, in threads) is not used: it needs mirrored
variables created under its scope and runs the step once per device in its own threads,
while a unidl model keeps one set of weights and runs its step in the caller's context.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from .data import DataError
from .registry import REGISTRY
from .structure import flatten

COMMUNICATIONS = ("auto", "ring", "nccl")


class DataParallel:
    """Synchronous data parallelism: torch.distributed or tf.distribute, picked by the model's backend.

    Args:
        process_group_backend: torch only: "gloo", "nccl" or None (nccl when CUDA is
            available, else gloo). The process group is created from torchrun's environment
            unless one exists.
        engine: a backend name ("torch", "tensorflow", or a plugin's) or None (default): None sets
            the engine up when a model is compiled with this strategy, for that model's backend;
            a name sets it up now. Engines come from plugins (``unidl_register_distributed_engines``).
        communication: tensorflow only: the all-reduce, "auto" (default: ring on CPUs, NCCL on
            GPUs), "ring" or "nccl".
    """

    def __init__(self, process_group_backend: str | None = None, *, engine: str | None = None,
                 communication: str = "auto"):
        if communication not in COMMUNICATIONS:
            raise ValueError(f"communication must be one of {COMMUNICATIONS}, got communication={communication!r}")
        self.process_group_backend = process_group_backend
        self.communication = communication
        self._engine = None
        self._engine_name: str | None = None
        self.batch_share = 1.0  # this process's share of the current batch (set by shard_batch)
        if engine is not None:
            self._start(engine)

    @property
    def engine(self) -> str | None:
        """The backend whose engine is set up ("torch", "tensorflow"...), else None."""
        return self._engine_name

    @property
    def rank(self) -> int:
        """This process's index (before set-up, what the launcher's environment says)."""
        return self._engine.rank if self._engine is not None else launch_rank_world()[0]

    @property
    def world_size(self) -> int:
        """How many processes train together (before set-up, what the launcher's environment says)."""
        return self._engine.world_size if self._engine is not None else launch_rank_world()[1]

    def check_backend(self, backend) -> None:
        """Called by ``compile``: set the engine up for ``backend``, or refuse it."""
        name = backend.name
        engines = REGISTRY.services("distributed_engines")
        if name not in engines:
            raise ValueError(f"DataParallel needs a distributed engine for backend {name!r}; engines are "
                             f"registered for {sorted(engines) or 'no backend'} (torch: torch.distributed, "
                             "tensorflow: tf.distribute; a plugin adds one with unidl_register_distributed_engines)")
        if self._engine is None:
            self._start(name)
        elif self._engine_name != name:
            raise ValueError(f"this DataParallel runs on {self._engine_name}; the model is compiled on "
                             f"{name!r}: one process trains on one framework")

    def _start(self, engine: str) -> None:
        engines = REGISTRY.services("distributed_engines")
        if engine not in engines:
            raise ValueError(f"engine must be a backend with a distributed engine ({sorted(engines)}) or None, "
                             f"got engine={engine!r}")
        self._engine = engines[engine].provider(self)
        self._engine_name = engine

    def shard_batch(self, x, y, sample_weight):
        """This process's slice of a global batch (x, y, sample_weight); notes its share for the step."""
        total = len(flatten(x)[0])
        x, y, sample_weight = (self.shard(part) for part in (x, y, sample_weight))
        self.batch_share = len(flatten(x)[0]) / total
        if not self.batch_share:
            raise DataError(f"a batch of {total} samples cannot be split across {self.world_size} processes; "
                            "use batches at least that large")
        return x, y, sample_weight

    def shard(self, batch):
        """This process's slice of a NumPy batch (an array, a list of arrays, or None)."""
        if batch is None:
            return None
        if isinstance(batch, list):
            return [self.shard(a) for a in batch]
        return np.array_split(batch, self.world_size)[self.rank]

    def reduce_gradients(self, grads: Sequence, share: float) -> list:
        """Sum ``share * grad`` over the processes: the whole batch's mean gradient."""
        if self._engine is None:
            raise RuntimeError("DataParallel is not set up: compile a model with distribute=this strategy")
        return self._engine.reduce(grads, share)

    def shutdown(self) -> None:
        """Wait for every process, then close the engine. Call it once training is over: a
        process that exits while another still exchanges data with it can abort that one
        (gloo: "terminate called ...")."""
        if self._engine is not None:
            self._engine.shutdown()


# ------------------------------------------------------------ cluster configuration

def launch_rank_world(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) from the launcher's environment: torchrun's RANK / WORLD_SIZE,
    else TF_CONFIG, else (0, 1)."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if env.get("TF_CONFIG"):
        return tf_config_rank_world(json.loads(env["TF_CONFIG"]))
    return 0, 1


def tf_config_rank_world(config: Mapping) -> tuple[int, int]:
    """(rank, world size) of a TF_CONFIG: the chief (if any) is rank 0, then the workers in order."""
    cluster, task = config.get("cluster", {}), config.get("task", {})
    jobs = [job for job in ("chief", "worker") if job in cluster]
    kind = task.get("type")
    if kind not in jobs:
        raise ValueError(f"TF_CONFIG: task type {kind!r} does not train; data-parallel training runs the "
                         f"'chief' and 'worker' tasks of the cluster (it has {sorted(cluster)})")
    before = len(cluster["chief"]) if kind == "worker" and "chief" in cluster else 0
    return before + int(task.get("index", 0)), sum(len(cluster[job]) for job in jobs)


def torchrun_tf_config(env: Mapping[str, str] | None = None) -> dict | None:
    """The TF_CONFIG of a process started by torchrun on one machine, or None outside torchrun.

    Process ``i`` of ``n`` serves on ``localhost:MASTER_PORT + 1 + i``. Across machines torchrun
    cannot tell each process the others' addresses: set TF_CONFIG on each instead.
    """
    env = os.environ if env is None else env
    if not all(key in env for key in ("RANK", "WORLD_SIZE", "MASTER_PORT")):
        return None
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    if int(env.get("LOCAL_WORLD_SIZE", world)) != world:
        raise ValueError(f"torchrun runs {world} processes on several machines ({env['LOCAL_WORLD_SIZE']} on "
                         "this one): for tf.distribute, set TF_CONFIG for each process (see unidl.distributed)")
    base = int(env["MASTER_PORT"]) + 1
    return {"cluster": {"worker": [f"localhost:{base + i}" for i in range(world)]},
            "task": {"type": "worker", "index": rank}}

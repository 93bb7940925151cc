"""The tensorflow backend's data-parallel engine: tf.distribute's collective all-reduce.

Its cluster is the standard ``TF_CONFIG`` when set; else, under torchrun on one
machine, derived from torchrun's environment (see ``unidl.distributed``).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from unidl.distributed import tf_config_rank_world, torchrun_tf_config


class TensorFlowEngine:
    """tf.distribute: MultiWorkerMirroredStrategy's collective all-reduce on plain tensors.

    The strategy only reduces: the step runs in the caller's context on the model's own
    variables (no ``strategy.run``, no mirrored variables), exactly as on one process.
    """

    name = "tensorflow"

    def __init__(self, strategy):
        communication = strategy.communication
        if "tensorflow" not in sys.modules:  # as the backend does: keep TF's C++ log to errors
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        self.tf = tf
        self.strategy = None
        self._closed = False
        config = os.environ.get("TF_CONFIG")
        if config:
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
            self.rank, self.world_size = tf_config_rank_world(json.loads(config))
        else:
            derived = torchrun_tf_config()
            if derived is None:
                self.rank, self.world_size = 0, 1
                return
            self.rank, self.world_size = tf_config_rank_world(derived)
            gpus = len(tf.config.list_physical_devices("GPU"))  # lists devices, starts nothing
            resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
                tf.train.ClusterSpec(derived["cluster"]), task_type=derived["task"]["type"],
                task_id=derived["task"]["index"], rpc_layer="grpc", num_accelerators={"GPU": gpus})
        if self.world_size == 1:
            return
        implementation = getattr(tf.distribute.experimental.CommunicationImplementation, communication.upper())
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        try:
            self.strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver,
                                                                      communication_options=options)
        except RuntimeError as exc:
            if "startup" not in str(exc):
                raise
            raise RuntimeError(
                "tf.distribute must set up before TensorFlow's runtime starts, and this process has already "
                "made TensorFlow tensors: compile with distribute= before any other TensorFlow work, or create "
                "unidl.distributed.DataParallel(engine=\"tensorflow\") at the top of the script") from exc

    def reduce(self, grads: Sequence, share: float) -> list:
        scaled = [g * share for g in grads]
        return scaled if self.strategy is None else self._all_reduce(scaled)

    def _all_reduce(self, tensors: list) -> list:
        pairs = [(t, t) for t in tensors]  # reduce each onto its own device
        return list(self.strategy.extended.batch_reduce_to(self.tf.distribute.ReduceOp.SUM, pairs))

    def shutdown(self) -> None:
        if self.strategy is None or self._closed:
            return
        self._closed = True
        one = [self.tf.ones(())]
        # Every process reaching this all-reduce has finished its gradient all-reduces...
        self._all_reduce(one)
        # ...and once this second one is done here, every other process is past the first,
        # so none still reads data from this one: it may exit.
        try:
            self._all_reduce(one)
        except self.tf.errors.OpError:
            pass  # a peer that got here first and exited while this one still read from it

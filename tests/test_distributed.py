"""Data-parallel training: 2 processes on localhost reach the weights of single-process
training on the combined batches, on torch.distributed (gloo, launched by torchrun) and on
tf.distribute (MultiWorkerMirroredStrategy's ring all-reduce, launched with TF_CONFIG)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import unidl
from unidl.distributed import DataParallel, launch_rank_world, tf_config_rank_world, torchrun_tf_config
from unidl.testing.tolerances import TRAJECTORY_F64

from .distributed_worker import build

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 240  # generous for a loaded 2-core machine; a run takes ~10 s
# One thread per process, so that two processes on a small CI machine do not fight over cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# A launcher's variables from the environment pytest runs in must not reach the workers.
LAUNCH_VARS = ("TF_CONFIG", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
               "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def worker_env(**extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in LAUNCH_VARS}
    return {**env, **ONE_THREAD, **extra}


def check_weights(out: Path, engine: str) -> None:
    ranks = [np.load(out / f"rank{r}.npz") for r in range(2)]
    single = np.load(out / "single.npz")
    for data in ranks:
        assert int(data["world"]) == 2 and str(data["engine"]) == engine
    initial = build().get_weights()
    for i, start in enumerate(initial):
        # every process holds the very same weights, as after each all-reduced update...
        np.testing.assert_array_equal(ranks[1][f"arr_{i}"], ranks[0][f"arr_{i}"])
        # ...which are those of one process training on the whole batches
        np.testing.assert_allclose(ranks[0][f"arr_{i}"], single[f"arr_{i}"], rtol=TRAJECTORY_F64.rtol,
                                   atol=TRAJECTORY_F64.atol, err_msg=f"weight {i}")
        assert not np.allclose(single[f"arr_{i}"], start), "training did not move the weights"


def test_two_torch_processes_match_single_process_training(tmp_path):
    pytest.importorskip("torch")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(tmp_path), "torch"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=TIMEOUT_S, env=worker_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_weights(tmp_path, "torch")


def free_ports(n: int) -> list[int]:
    """n ports free right now (held together while chosen, so they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_tensorflow_workers(out: Path, ports: list[int]) -> tuple[list[int | None], str]:
    """Start one worker per port with its TF_CONFIG; (exit codes, their output). A worker that
    fails makes the others wait for it forever, so then they are stopped at once."""
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    procs, logs = [], [out / f"worker{rank}.log" for rank in range(len(ports))]
    with contextlib.ExitStack() as files:
        for rank, log in enumerate(logs):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
            # no GPU: two processes would share one, and the test compares CPU float64 results
            env = worker_env(TF_CONFIG=config, CUDA_VISIBLE_DEVICES="")
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), "tensorflow"], env=env,
                                          stdout=files.enter_context(log.open("w")), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT_S
        try:
            while any(p.poll() is None for p in procs):
                if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    output = "".join(f"--- worker {rank} (exit {code}):\n{log.read_text()[-3000:]}\n"
                     for rank, (code, log) in enumerate(zip(codes, logs)))
    return codes, output


def test_two_tensorflow_processes_match_single_process_training(tmp_path):
    pytest.importorskip("tensorflow")
    for attempt in range(3):
        codes, output = run_tensorflow_workers(tmp_path, free_ports(2))
        # another program may take a chosen port before the worker binds it: choose again
        if codes == [0, 0] or "gRPC server" not in output:
            break
    assert codes == [0, 0], output
    check_weights(tmp_path, "tensorflow")


# -------------------------------------------------------------- without processes

def test_distribute_needs_a_backend_with_a_registered_engine():
    model = unidl.Sequential([unidl.layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match=r"needs a distributed engine for backend 'numpy'; engines are registered "
                                         r"for \['tensorflow', 'torch'\]"):
        model.compile(loss="mse", backend="numpy", distribute=DataParallel())


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match=r"engine must be a backend with a distributed engine .* got engine='mxnet'"):
        DataParallel(engine="mxnet")
    with pytest.raises(ValueError, match="communication must be one of"):
        DataParallel(communication="mpi")
    with pytest.raises(RuntimeError, match="compile a model"):
        DataParallel().reduce_gradients([], 1.0)


def test_tf_config_from_torchrun_on_one_machine():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    assert torchrun_tf_config(env) == {"cluster": {"worker": ["localhost:29501", "localhost:29502"]},
                                       "task": {"type": "worker", "index": 1}}
    assert torchrun_tf_config({}) is None  # not under torchrun
    with pytest.raises(ValueError, match="set TF_CONFIG"):  # 2 machines, 2 processes each
        torchrun_tf_config({**env, "WORLD_SIZE": "4"})


def test_ranks_from_the_launch_environment():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"], "evaluator": ["d:1"]}
    assert tf_config_rank_world({"cluster": cluster, "task": {"type": "chief", "index": 0}}) == (0, 3)
    assert tf_config_rank_world({"cluster": cluster, "task": {"type": "worker", "index": 1}}) == (2, 3)
    with pytest.raises(ValueError, match="'evaluator' does not train"):
        tf_config_rank_world({"cluster": cluster, "task": {"type": "evaluator", "index": 0}})
    tf_config = json.dumps({"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}})
    assert launch_rank_world({"TF_CONFIG": tf_config}) == (1, 2)
    assert launch_rank_world({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert launch_rank_world({}) == (0, 1)
    assert DataParallel().engine is None  # nothing set up before compile


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_without_a_launcher_one_process_trains_as_without_a_strategy(backend, monkeypatch):
    pytest.importorskip(backend)
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    x = np.random.default_rng(0).normal(size=(20, 5))
    y = x[:, :2] * 0.5
    weights = []
    for strategy in (DataParallel(), None):
        model = build()
        model.compile(optimizer="adam", loss="mse", backend=backend, dtype="float64", distribute=strategy)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        weights.append(model.get_weights())
    for alone, plain in zip(*weights):
        np.testing.assert_array_equal(alone, plain)


def test_tensorflow_runtime_started_before_the_strategy_is_a_clear_error(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    tf.constant(0.0)  # the runtime runs from here on
    config = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    with pytest.raises(RuntimeError, match="before any other TensorFlow work"):
        DataParallel(engine="tensorflow")

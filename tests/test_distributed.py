"""Data-parallel training on torch.distributed: 2 processes on localhost (gloo) reach the
weights of single-process training on the combined batches."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unidl.testing.tolerances import TRAJECTORY_F64

pytest.importorskip("torch")
WORKER = Path(__file__).with_name("distributed_worker.py")


def test_two_processes_match_single_process_training(tmp_path):
    out = tmp_path / "weights.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(out)
    assert int(data["world"]) == 2
    arrays = [data[f"arr_{i}"] for i in range(len(data.files) - 1)]
    half = len(arrays) // 2
    for distributed, single in zip(arrays[:half], arrays[half:]):
        np.testing.assert_allclose(distributed, single, rtol=TRAJECTORY_F64.rtol, atol=1e-12)
    # and training moved the weights (the comparison is not between two untouched models)
    assert not np.allclose(arrays[0], np.zeros_like(arrays[0]))


def test_distribute_needs_the_torch_backend():
    import unidl

    class FakeStrategy:
        check_backend = unidl.distributed.DataParallel.check_backend

    model = unidl.Sequential([unidl.layers.Dense(1, input_shape=(2,))])
    with pytest.raises(ValueError, match="torch backend"):
        model.compile(loss="mse", backend="numpy", distribute=FakeStrategy())

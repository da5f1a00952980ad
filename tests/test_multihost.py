"""Multi-process training on JAX's distributed runtime: two local processes with 2 CPU devices each."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from helpers import REPO, tiny_config
from jaxdiff.core import parallel
from jaxdiff.data import input_pipeline
from jaxdiff.training import checkpoints, train
from multihost_worker import MULTIHOST_OVERRIDES

pytestmark = pytest.mark.slow  # several processes on jax.distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_run(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    workdir, port = str(root / "run"), _free_port()
    two_devices = re.sub(r"device_count=\d+", "device_count=2", os.environ["XLA_FLAGS"])  # conftest's other flags kept
    env = dict(os.environ, XLA_FLAGS=two_devices, JAX_PLATFORMS="cpu",
               PYTHONUNBUFFERED="1")
    worker = os.path.join(REPO, "tests", "multihost_worker.py")
    procs = [subprocess.Popen([sys.executable, worker, str(i), "2", str(port), tiny_dataset, workdir,
                               str(root / f"process_{i}.json")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    reports = [json.load(open(root / f"process_{i}.json")) for i in range(2)]
    return workdir, reports, outputs


def test_both_processes_end_with_identical_parameters(two_process_run):
    _, reports, outputs = two_process_run
    assert [r["process_index"] for r in reports] == [0, 1]
    assert all(r["process_count"] == 2 and r["device_count"] == 4 and r["local_device_count"] == 2 for r in reports)
    assert reports[0]["digest"] == reports[1]["digest"]
    assert "UNet:" in outputs[0] and "UNet:" not in outputs[1]  # only process 0 logs


def test_only_process_0_writes_logs_and_samples(two_process_run):
    workdir, _, _ = two_process_run
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        train_steps = [json.loads(line)["step"] for line in f if '"train/loss"' in line]
    assert train_steps == [1, 2, 3, 4]  # log_every=1: one writer, not two
    assert os.listdir(os.path.join(workdir, "samples")) == ["step_0000004.png"]


def _two_process_batches(config, table, mesh, start_example):
    """The global batches the two processes feed: process 0's local batch, then process 1's.

    `start_example` is what one process passes (examples seen in all); each of two processes starts at half."""
    local = config.train.batch_size // 2
    streams = [input_pipeline.numpy_batches(
        input_pipeline.train_dataset(config, table, local, start_example=start_example // 2, process_index=i,
                                     process_count=2), config.data.dir) for i in range(2)]
    sharding = parallel.batch_sharded(mesh)
    for b0, b1 in zip(*streams):
        yield parallel.to_global({k: np.concatenate([b0[k], b1[k]]) for k in ("image", "cond")}, sharding)


def test_equals_one_process_with_four_devices_and_restores_in_one(two_process_run, tiny_dataset, tmp_path, monkeypatch):
    workdir, _, _ = two_process_run
    monkeypatch.setattr(train, "_device_batches", _two_process_batches)  # same global batches, one process
    config = tiny_config(tiny_dataset, **dict(MULTIHOST_OVERRIDES, train__sample_every=0))  # samples: state unchanged
    state, _ = train.train_and_evaluate(config, str(tmp_path / "one"), devices=jax.devices()[:4])
    for which, reference in (("raw", state.params), ("ema", state.ema_params)):
        restored, step = checkpoints.restore_params(workdir, which)  # the checkpoint two processes wrote, read by one
        assert step == 4
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(parallel.fetch(reference))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # And one process resumes the two-process run from its step-2 checkpoint, to the same step-4 state.
    # (The same config as above, so the step it compiles is the one already compiled.)
    resumed_dir = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed_dir)
    assert {"2", "4"} <= set(os.listdir(os.path.join(resumed_dir, "checkpoints")))
    shutil.rmtree(os.path.join(resumed_dir, "checkpoints", "4"))
    resumed, _ = train.train_and_evaluate(config, resumed_dir, devices=jax.devices()[:4])
    assert int(parallel.fetch(resumed.step)) == 4
    for a, b in zip(jax.tree.leaves(parallel.fetch(resumed.params)), jax.tree.leaves(parallel.fetch(state.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

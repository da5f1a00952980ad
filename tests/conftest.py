"""Shared fixtures. Eight CPU devices for the whole session, so data parallelism is tested on a laptop."""

import os

# Before JAX is imported anywhere: 8 host devices (tests pick 1, 2, 4 or 8 of them).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir: str, **overrides):
    """configs/tiny.py pointed at `data_dir`, with dotted overrides (e.g. train__num_steps=4)."""
    from configs import tiny

    config = tiny.get_config()
    config.data.dir = data_dir
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """A 16x16 portraits dataset: 12 images per class (11 train, 1 validation)."""
    from jaxdiff import portraits

    out = str(tmp_path_factory.mktemp("data") / "portraits_tiny")
    portraits.write_dataset(out, per_class=12, size=16, seed=0, val_fraction=0.1, images_per_shard=24)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dataset) -> str:
    """A workdir trained for a few steps on the tiny config (1 device), shared by sampling/evaluation tests."""
    import jax
    from jaxdiff import train

    workdir = str(tmp_path_factory.mktemp("runs") / "tiny")
    train.train_and_evaluate(tiny_config(tiny_dataset), workdir, devices=jax.devices()[:1])
    return workdir


def run_cli(module: str, *args: str, cwd: str = REPO, env_extra: dict | None = None, timeout: int = 600):
    """Runs `python -m module args` as a user would; returns the CompletedProcess (text)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)

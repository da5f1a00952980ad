"""Test helpers without side effects (conftest.py sets up the 8-device session and imports these)."""

import os

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


def logging_and_signalling(logs: list, event):
    """A `log` that keeps each message and sets `event`: a thread waits for a message on it, not for a sleep."""
    def log(message: str) -> None:
        logs.append(message)
        event.set()
    return log


def run_cli(module: str, *args: str, cwd: str = REPO, env_extra: dict | None = None, timeout: int = 600):
    """Runs `python -m module args` as a user would; returns the CompletedProcess (text)."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def truncate(path: str) -> None:
    """Cuts a file to half its size, as a full disk or a killed copy leaves it."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def damage_checkpoint(workdir: str, step: int) -> None:
    """Makes a run's checkpoint at `step` unreadable (its state's metadata cut in half)."""
    truncate(os.path.join(workdir, "checkpoints", str(step), "state", "_METADATA"))


def changed_copy(finished_sweep, tmp_path):
    """A copy of the finished sweep and a copy of its config, for a test to change one setting."""
    import shutil

    import ml_collections

    config, sweep_dir, _, _ = finished_sweep
    return ml_collections.ConfigDict(config.to_dict()), shutil.copytree(sweep_dir, str(tmp_path / "sweep"))


def trees_close(a, b, rtol=1e-5, atol=1e-6):
    """Asserts that two pytrees' leaves are equal within the tolerances, leaf by leaf."""
    import jax
    import numpy as np

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)

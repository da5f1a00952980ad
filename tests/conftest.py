"""Shared fixtures. Eight CPU devices for the whole session, so data parallelism is tested on a laptop."""

import atexit
import os
import shutil
import tempfile

# Before JAX is imported anywhere: 8 host devices (tests pick 1, 2, 4 or 8 of them), and the CPU backend's
# code generation at optimisation level 0, here and in the command-line subprocesses (they inherit it):
# compiling, not running, is what the tiny programs cost (a 30-step tiny `jaxdiff.train`: 108 s at the
# default level, 43 s at 0, the same losses), and the level changes how fast code runs, not what it computes.
_TEST_XLA_FLAGS = ["--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0"]
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", "")] + [
    flag for flag in _TEST_XLA_FLAGS if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", "")]).strip()
# One persistent XLA compilation cache for the session, shared with the command-line subprocesses
# (they inherit the environment): many tests compile the same tiny training step, and compiling
# dominates them (a tiny `jaxdiff.train` run: 100 s cold, 18 s from the cache on 2 cores).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxdiff-tests-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402

from helpers import tiny_config  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Registers the `slow` marker here, since the repository's fixed top level has no pytest.ini."""
    config.addinivalue_line(
        "markers", "slow: starts subprocesses or several processes, runs data_gen or the benchmark, needs the "
        "trained 2-member sweep, or runs a full-length sampler chain; `pytest -m 'not slow' tests` is the fast "
        "tier (docs/testing.md)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of the trained sweep (the `finished_sweep` fixture: two members trained, evaluated and
    probed) is slow: the fixture alone costs more than a fast tier should."""
    for item in items:
        if "finished_sweep" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """A 16x16 portraits dataset: 12 images per class (11 train, 1 validation)."""
    pytest.importorskip("tensorflow", reason="the dataset is written with TensorFlow (absent on some accelerator images)")
    from jaxdiff.data import portraits

    out = str(tmp_path_factory.mktemp("data") / "portraits_tiny")
    portraits.write_dataset(out, per_class=12, size=16, seed=0, val_fraction=0.1, images_per_shard=24)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_dataset) -> str:
    """A workdir trained for a few steps on the tiny config (1 device), shared by sampling/evaluation tests."""
    import jax
    from jaxdiff.training import train

    workdir = str(tmp_path_factory.mktemp("runs") / "tiny")
    train.train_and_evaluate(tiny_config(tiny_dataset), workdir, devices=jax.devices()[:1])
    return workdir


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory, tiny_dataset):
    """The tiny 2 x 1 sweep, run once for the session (tests change copies of it); the classifier's training is counted."""
    from jaxdiff.measurement import classifier
    from jaxdiff.studies import sweep

    config = tiny_config(tiny_dataset)
    sweep_dir = str(tmp_path_factory.mktemp("sweep") / "tiny-sweep")
    calls = []
    real_train = classifier.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    classifier.train = counting_train
    try:
        summary = sweep.run_sweep(config, sweep_dir)
    finally:
        classifier.train = real_train
    return config, sweep_dir, summary, len(calls)

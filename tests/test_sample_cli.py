"""`python -m jaxdiff.sample`: files it promises, determinism, guidance, word lookup and errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import run_cli
from jaxdiff.core import sampling


def _images(out, label):
    with np.load(os.path.join(out, f"{label}.npz")) as data:
        return data["images"]


@pytest.mark.slow
def test_cli_writes_grid_singles_and_arrays(tiny_run, tmp_path):
    out = str(tmp_path / "out")
    result = run_cli("jaxdiff.sample", "--workdir", tiny_run, "--word", "nurse", "--word", "philosopher",
                     "--words-mean", "man,nurse", "--null", "--num", "5", "--sampler", "ddim", "--steps", "4",
                     "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    for label in ("nurse", "philosopher", "man+nurse", "null"):
        assert os.path.exists(os.path.join(out, f"{label}_grid.png"))
        assert sorted(os.listdir(os.path.join(out, label))) == [f"{i:03d}.png" for i in range(5)]
        with np.load(os.path.join(out, f"{label}.npz")) as data:
            assert data["images"].shape == (5, 16, 16, 3) and data["images"].dtype == np.uint8
            assert data["condition"].shape == (128,) and str(data["sampler"]) == "ddim" and int(data["steps"]) == 4
    with np.load(os.path.join(out, "null.npz")) as data:
        assert not data["condition"].any()
    assert "images/s" in result.stdout


@pytest.mark.slow
def test_same_seed_same_images_other_seed_differs(tiny_run, tmp_path):
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = str(tmp_path / name)
        result = run_cli("jaxdiff.sample", "--workdir", tiny_run, "--word", "woman", "--num", "3", "--steps", "3",
                         "--seed", seed, "--out", out)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = _images(out, "woman")
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


@pytest.mark.slow
def test_default_workdir_is_the_latest_run(tiny_run, tmp_path):
    """Right after the main job, `python -m jaxdiff.sample --word nurse` needs no other flag."""
    (tmp_path / "runs").mkdir()
    os.symlink(tiny_run, tmp_path / "runs" / "toy")
    result = run_cli("jaxdiff.sample", "--word", "nurse", "--num", "2", "--steps", "2", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "using runs/toy" in result.stdout
    assert os.path.exists(os.path.join(tiny_run, "samples", "cli", "nurse_grid.png"))


@pytest.mark.slow
def test_a_word_never_trained_on_is_sampled_with_its_table_vector(tiny_run, tmp_path):
    """'doctor' is no training word but is in the run's table (every word of the bundled source is)."""
    from jaxdiff.data import embed
    from jaxdiff.training import workdirs

    result = run_cli("jaxdiff.sample", "--workdir", tiny_run, "--word", "doctor", "--num", "1", "--steps", "2",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    table = embed.EmbeddingTable.load(os.path.join(tiny_run, workdirs.TABLE_IN_WORKDIR))
    with np.load(os.path.join(str(tmp_path), "doctor.npz")) as data:
        assert data["images"].shape == (1, 16, 16, 3)
        np.testing.assert_array_equal(data["condition"], table.projected_vector("doctor"))


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--word", "nurze"], "unknown word 'nurze'.*closest known words: nurse"),
    (["--words-mean", "man,nursee"], "unknown word 'nursee'"),
    (["--words-mean", "man", "nurse"], "unexpected argument 'nurse'.*comma-separated"),
    ([], "nothing to sample"),
    (["--word", "nurse", "--num", "0"], "--num must be at least 1"),
])
def test_errors_are_one_line_exit_2(tiny_run, args, message):
    import re

    result = run_cli("jaxdiff.sample", "--workdir", tiny_run, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.search(message, result.stderr) and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_workdir_without_checkpoint_says_how_to_train(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("jaxdiff.sample", "--workdir", str(tmp_path / "empty"), "--word", "nurse")
    assert result.returncode == 2 and "python -m jaxdiff.train" in result.stderr
    nowhere = run_cli("jaxdiff.sample", "--word", "nurse", cwd=str(tmp_path))
    assert nowhere.returncode == 2 and "no trained run under runs/" in nowhere.stderr


def test_guidance_scale_1_is_the_conditional_model_alone():
    """g = 1 is cond alone; g != 1 runs both halves in one batch and extrapolates from the null."""
    calls = []

    def apply_fn(x, t, word):
        calls.append(x.shape[0])
        return x * 0.5 + word[:, :1, None, None] * jnp.ones_like(x)  # depends on the condition

    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    cond = jnp.array([[1.0] * 8, [-2.0] * 8])
    t, abar = jnp.array([10.0, 10.0]), jnp.array([0.5, 0.5])
    eps1, _ = sampling.guided_denoiser(apply_fn, "eps", cond, 1.0)(x, t, abar)
    np.testing.assert_allclose(eps1, apply_fn(x, t, cond), rtol=1e-6)
    assert calls[0] == 2  # one conditional batch, no null half
    calls.clear()
    eps3, _ = sampling.guided_denoiser(apply_fn, "eps", cond, 3.0)(x, t, abar)
    assert calls == [4]  # conditional and null halves in one batch
    null = apply_fn(x, t, jnp.zeros_like(cond))
    np.testing.assert_allclose(eps3, null + 3.0 * (apply_fn(x, t, cond) - null), rtol=1e-6)


def test_sampling_does_not_depend_on_batching_or_devices(tiny_run):
    from jaxdiff.core import parallel
    from jaxdiff.training import workdirs

    trained = workdirs.TrainedRun.load(tiny_run)
    cond = np.repeat(trained.table.projected_vector("nurse")[None], 6, axis=0)
    single = sampling.ImageSampler(trained.model, trained.schedule, trained.config.diffusion.prediction, (16, 16, 3),
                                   parallel.make_mesh(jax.devices()[:1]))
    eight = sampling.ImageSampler(trained.model, trained.schedule, trained.config.diffusion.prediction, (16, 16, 3),
                                  parallel.make_mesh(jax.devices()[:8]))
    a = single.sample(trained.params, cond, 0, sampler="ddpm", steps=5, batch_size=6)
    b = eight.sample(trained.params, cond, 0, sampler="ddpm", steps=5, batch_size=8)
    c = single.sample(trained.params, cond[:4], 0, sampler="ddpm", steps=5, batch_size=2)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[:4], c, atol=1e-5)


def test_drawing_in_chunks_reports_each_and_compiles_once(tiny_run):
    """The evaluation draws in one call and follows it chunk by chunk (its progress bar): the last,
    shorter chunk is padded to the others' shape, so one shape compiles, and the images are those of
    one call at a larger batch."""
    from jaxdiff.core import parallel
    from jaxdiff.training import workdirs

    trained = workdirs.TrainedRun.load(tiny_run)
    cond = np.repeat(trained.table.projected_vector("nurse")[None], 6, axis=0)
    drawer = sampling.ImageSampler(trained.model, trained.schedule, trained.config.diffusion.prediction, (16, 16, 3),
                                   parallel.make_mesh(jax.devices()[:1]))
    whole = drawer.sample(trained.params, cond, 0, sampler="ddpm", steps=3, batch_size=8)
    compiled = drawer._fn("ddpm", 3, "quadratic", 1.0, 0.0, True)
    assert compiled._cache_size() == 1  # the whole: 6 rows
    reported = []
    chunked = drawer.sample(trained.params, cond, 0, sampler="ddpm", steps=3, batch_size=4, on_chunk=reported.append)
    assert reported == [4, 2] and chunked.shape[0] == 6
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    assert compiled._cache_size() == 2  # the chunks: 4 rows, the last padded to them

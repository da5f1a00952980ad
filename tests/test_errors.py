"""Bad input and damaged files, as a user meets them: one line, exit 2, no traceback, nothing changed on disk.

Each command runs in-process through `jaxdiff.common.cli.run(main, argv)` (a subprocess costs seconds of
imports on a 2-core machine); docs/errors.md lists the cases.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.error

import jax
import numpy as np
import pytest

from helpers import damage_checkpoint, tiny_config, truncate
from jaxdiff import sample
from jaxdiff.common import cli
from jaxdiff.data import embed
from jaxdiff.measurement import evaluate
from jaxdiff.studies import arms, experiment, sweep
from jaxdiff.training import checkpoints, train, workdirs


def call(main, argv, capfd) -> tuple[int, str, str]:
    """Runs `main(argv)` as `python -m` would (through cli.run); returns (exit status, stdout, stderr)."""
    try:
        cli.run(main, [str(a) for a in argv])
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr that contains every needle; returns the line."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(root: str) -> dict[str, str]:
    """Every file and directory under `root`, with a hash of each file's content."""
    out = {}
    for base, dirs, names in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(base, d), root) + "/"] = ""
        for name in names:
            with open(os.path.join(base, name), "rb") as f:
                out[os.path.relpath(os.path.join(base, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> str:
    """A copy of the session's trained run (checkpoints at steps 3 and 6) that a test may damage."""
    return shutil.copytree(tiny_run, str(tmp_path / "run"))


def train_args(workdir: str, data_dir: str, *extra: str) -> list[str]:
    return ["--config=configs/tiny.py", f"--workdir={workdir}", f"--config.data.dir={data_dir}", *extra]


# ---------------------------------------------------------------------------------------------
# Usage errors.


@pytest.mark.parametrize("main, argv, needles", [
    (sample.main, ["--word", "nurse", "--sampler", "bogus"], ["--sampler=bogus", "one of", "ddim", "dpmpp2m"]),
    (evaluate.main, ["--bogus"], ["Unknown command line flag 'bogus'", "python -m jaxdiff.evaluate --help"]),
    (embed.main, ["--dim", "many"], ["--dim=many", "invalid literal for int()", "'many'"]),
    (sample.main, ["--words-mean", "man"], ["--words-mean 'man'", "two words separated by a comma"]),
    (embed.main, ["--show", "nurse", "philosopher"], ["unexpected argument 'philosopher'", "comma-separated"]),
])
def test_usage_errors_are_one_line_not_the_usage(main, argv, needles, capfd):
    code, out, err = call(main, argv, capfd)
    assert_one_line_error(code, err, *needles)
    assert "usage:" not in err and not out


# Every command, as `python -m jaxdiff.<command>` (and data_gen's) runs it: the floor module whose main it calls.
COMMANDS = {"train": "jaxdiff.training.train", "experiment": "jaxdiff.studies.experiment", "sweep": "jaxdiff.studies.sweep",
            "frontier": "jaxdiff.studies.frontier", "arms": "jaxdiff.studies.arms", "benchmark": "jaxdiff.tools.benchmark",
            "input_pipeline": "jaxdiff.data.input_pipeline", "sample": "jaxdiff.sample", "embed": "jaxdiff.data.embed",
            "vectors": "jaxdiff.data.vectors", "portraits": "jaxdiff.data.portraits",
            "evaluate": "jaxdiff.measurement.evaluate", "device_check": "jaxdiff.tools.device_check",
            "sampler_pairs": "jaxdiff.tools.sampler_pairs", "data_gen.generate": "data_gen.generate"}


def test_the_command_list_is_complete():
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxdiff")
    modules = {name[:-3] for name in os.listdir(package) if name.endswith(".py") and name != "__init__.py"}
    assert modules == set(COMMANDS) - {"data_gen.generate"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_unknown_flag_in_one_line(command, capfd):
    import importlib

    prog = "python -m " + ("data_gen.generate" if command == "data_gen.generate" else f"jaxdiff.{command}")
    code, out, err = call(importlib.import_module(COMMANDS[command]).main, ["--no_such_flag=1"], capfd)
    assert_one_line_error(code, err, "Unknown command line flag 'no_such_flag'", f"see {prog} --help")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capfd):
    import importlib

    code, out, err = call(importlib.import_module(COMMANDS[command]).main, ["--help"], capfd)
    assert code == 0 and "flags:" in out and "python -m" in out, (code, out, err)


def test_sweep_refuses_aggregate_with_train_only_before_making_anything(tmp_path, capfd):
    sweep_dir = str(tmp_path / "sweep")
    code, out, err = call(sweep.main, ["--config=configs/tiny.py", f"--workdir={sweep_dir}", "--aggregate",
                                       "--train_only"], capfd)
    assert_one_line_error(code, err, "--aggregate and --train_only", "give one of them")
    assert not os.path.exists(sweep_dir)


@pytest.mark.parametrize("main, overrides, needles", [
    (experiment.main, ["--config.evaluate.sampler=bogus"], ["evaluate.sampler: unknown sampler 'bogus'", "ddpm"]),
    (experiment.main, ["--config.evaluate.num_samples=0", "--config.evaluate.num_unseen_words=10000"],
     ["evaluate.num_samples is 0; it must be at least 1", "evaluate.num_unseen_words is 10000; bolukbasi.json has"]),
    (sweep.main, ["--config.sweep.member_samples=0"], ["sweep.member_samples is 0; it must be at least 1"]),
    (sweep.main, ["--config.sweep.num_unseen_words=5000", "--config.sample.spacing=cubic"],
     ["sweep.num_unseen_words is 5000; bolukbasi.json has", "sample.spacing is 'cubic'; choose one of quadratic"]),
    (arms.main, ["--config.study.images=0", "--config.study.margin=-1", "--config.evaluate.steps=5000"],
     ["study.images is 0; it must be at least 1", "study.margin is -1.0; it must be above 0",
      "evaluate.steps (sample.steps where it is 0) is 5000; it must be in [1, 1000]"]),
])
def test_a_wrong_evaluation_setting_stops_a_job_before_it_trains(main, overrides, needles, tmp_path, capfd):
    """The main job, the sweep and the arms study draw images after training: their settings for it are checked
    first, before the dataset, a classifier or a run directory is made, not after the training's minutes."""
    workdir, data_dir = str(tmp_path / "run"), str(tmp_path / "portraits")
    code, out, err = call(main, train_args(workdir, data_dir, *overrides), capfd)
    assert_one_line_error(code, err, *needles)
    assert not os.path.exists(workdir) and not os.path.exists(data_dir)


# ---------------------------------------------------------------------------------------------
# Cheap checks first; the portraits are made when missing.


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """gensim's downloader as without network (its own URL opener fails); records every attempt."""
    import gensim.downloader

    attempts = []

    def urlopen(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(gensim.downloader, "urlopen", urlopen)
    monkeypatch.setattr(gensim.downloader, "BASE_DIR", str(tmp_path / "gensim-data"))
    return attempts


def test_train_says_the_dataset_is_missing_before_trying_the_word_vectors(tmp_path, no_network, capfd):
    """The design card's first command on a fresh clone: the SD-2.1 dataset is missing, no network."""
    workdir = str(tmp_path / "run")
    code, out, err = call(train.main, train_args(workdir, str(tmp_path / "sd21"), "--config.data.source=sd21",
                                                 "--config.embed.source=word2vec-google-news-300"), capfd)
    assert_one_line_error(code, err, "dataset", "sd21", "is missing", "python -m data_gen.generate")
    assert no_network == [] and not os.path.exists(workdir)


def test_train_makes_the_missing_portraits_dataset_and_says_so(tmp_path, capfd):
    data_dir, workdir = str(tmp_path / "portraits"), str(tmp_path / "run")
    code, out, err = call(train.main, train_args(workdir, data_dir, "--config.train.num_steps=0"), capfd)
    assert code == 0, err
    assert f"drawing 12 portraits per class at 16x16 into {data_dir}" in out
    assert os.path.exists(os.path.join(data_dir, "dataset_info.json"))


# ---------------------------------------------------------------------------------------------
# Word vectors that cannot be loaded.


@pytest.mark.parametrize("case", ["no network", "missing file", "damaged file"])
def test_unloadable_word_vectors_name_the_override(case, tiny_dataset, tmp_path, no_network, capfd):
    workdir = str(tmp_path / "run")
    argv = train_args(workdir, tiny_dataset, "--config.embed.source=word2vec-google-news-300")
    if case == "missing file":
        argv.append(f"--config.embed.vectors_path={tmp_path / 'GoogleNews-vectors-negative300.bin.gz'}")
    elif case == "damaged file":
        damaged = tmp_path / "GoogleNews-vectors-negative300.bin"
        damaged.write_bytes(b"3000000 300\n" + np.random.default_rng(0).bytes(5000))
        argv.append(f"--config.embed.vectors_path={damaged}")
    code, out, err = call(train.main, argv, capfd)
    line = assert_one_line_error(code, err, "--config.embed.vectors_path=")
    assert "gensim" not in err.replace(line, "")  # nothing from gensim's logger besides our line
    assert not os.path.exists(workdir)
    if case == "no network":
        assert no_network and "cannot load word2vec-google-news-300 through gensim (ValueError" in line


def test_embed_names_its_own_flag_for_a_damaged_vectors_file(tmp_path, capfd):
    damaged = tmp_path / "vectors.bin"
    damaged.write_bytes(b"not word2vec at all")
    code, out, err = call(embed.main, ["--source", "word2vec-google-news-300", "--vectors", damaged,
                                       "--out", tmp_path / "table.npz"], capfd)
    assert_one_line_error(code, err, str(damaged), "--vectors=")
    assert sorted(os.listdir(tmp_path)) == ["vectors.bin"]


def test_gensim_download_progress_still_shows(monkeypatch, capfd):
    """Silencing gensim's logger must not hide its progress bar (written to stdout directly)."""
    import gensim.downloader
    from jaxdiff.data import vectors

    class Downloaded:
        key_to_index = {"nurse": 0}
        vectors = np.ones((1, 300), np.float32)

    def load(name):
        gensim.downloader._progress(8, 1024 * 1024, 16 * 1024 * 1024)
        gensim.downloader.logger.info("%s downloaded", name)
        return Downloaded()

    monkeypatch.setattr(gensim.downloader, "load", load)
    source = vectors.load_source("word2vec-google-news-300")
    out, err = capfd.readouterr()
    assert source.resolve("nurse") == "nurse"
    assert "50.0% 8.0/16.0MB downloaded" in out and err == ""


# ---------------------------------------------------------------------------------------------
# Damaged files in a run directory.


def _write_classifier(workdir: str, damage: str) -> None:
    """A classifier of the run's config in the workdir, one of its two files then damaged."""
    from jaxdiff.common import configuration
    from jaxdiff.measurement import classifier

    config = configuration.load(workdir)
    size = config.data.image_size
    params = classifier.create(config).init(jax.random.key(0), np.zeros((1, size, size, 3)))["params"]
    classifier.save(workdir, params, {"gender_accuracy": 1.0, "profession_accuracy": 1.0, "validation_images": 4})
    truncate(os.path.join(workdir, damage))


@pytest.mark.parametrize("command, name", [
    ("train", "config.json"), ("train", "embeddings.npz"),
    ("sample", "config.json"), ("sample", "embeddings.npz"),
    ("evaluate", "classifier.msgpack"), ("evaluate", "classifier.json"),
    ("experiment", "report.json"), ("experiment", "experiment_timings.json"),
])
def test_a_damaged_run_file_is_named_with_the_fix(command, name, run_copy, tiny_dataset, capfd):
    path = os.path.join(run_copy, name)
    if name.startswith("classifier"):
        _write_classifier(run_copy, name)
    elif name in ("report.json", "experiment_timings.json"):
        with open(path, "w") as f:
            f.write('{"words": {"nurse": {"share_woman": 0.')  # cut off mid-write
    else:
        truncate(path)
    before = snapshot(run_copy)
    main, argv = {
        "train": (train.main, train_args(run_copy, tiny_dataset)),
        "sample": (sample.main, ["--workdir", run_copy, "--word", "nurse"]),
        "evaluate": (evaluate.main, ["--workdir", run_copy]),
        "experiment": (experiment.main, train_args(run_copy, tiny_dataset)),
    }[command]
    code, out, err = call(main, argv, capfd)
    line = assert_one_line_error(code, err, path, "is damaged", "delete it")
    assert "rerun" in line
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------------------------------------
# Damaged checkpoints.


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(run_copy, tiny_run, tiny_dataset, tmp_path, capfd):
    damage_checkpoint(run_copy, 6)
    damaged = snapshot(os.path.join(run_copy, "checkpoints", "6"))
    expected, _ = checkpoints.restore_params(tiny_run, "raw", step=3)

    # Sampling (and evaluation): restores step 3 exactly, says it skipped 6, moves nothing.
    before = snapshot(run_copy)
    params, step = checkpoints.restore_params(run_copy, "raw")
    _, err = capfd.readouterr()
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, params, expected)
    assert len(err.strip().splitlines()) == 1 and "skipped checkpoint 6" in err and "JSONDecodeError" in err
    assert snapshot(run_copy) == before
    out_dir = str(tmp_path / "samples")
    code, out, err = call(sample.main, ["--workdir", run_copy, "--word", "nurse", "--num", "1", "--steps", "2",
                                        "--out", out_dir], capfd)
    assert code == 0 and err.count("skipped checkpoint 6") == 1, err
    with np.load(os.path.join(out_dir, "nurse.npz")) as data:
        assert int(data["step"]) == 3

    # Training: resumes from step 3 exactly (steps 4-6 again give the undamaged run's step 6); the
    # damaged 6 is kept as 6.damaged and step 6 saved again.
    state, _ = train.train_and_evaluate(tiny_config(tiny_dataset, train__sample_every=0), run_copy,
                                        devices=jax.devices()[:1])
    out, _ = capfd.readouterr()
    assert "skipped checkpoint 6" in out and "resuming from step 3" in out
    assert snapshot(os.path.join(run_copy, "checkpoints", "6.damaged")) == damaged
    assert checkpoints.checkpoint_steps(run_copy) == [3, 6]
    retrained, step = checkpoints.restore_params(run_copy, "raw")
    original, _ = checkpoints.restore_params(tiny_run, "raw", step=6)
    assert int(state.step) == step == 6
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), retrained, original)


def test_no_checkpoint_that_restores_is_one_line(run_copy, tiny_dataset, capfd):
    damage_checkpoint(run_copy, 3)
    damage_checkpoint(run_copy, 6)
    before = snapshot(run_copy)
    for main, argv in ((train.main, train_args(run_copy, tiny_dataset)),
                       (sample.main, ["--workdir", run_copy, "--word", "nurse"])):
        code, out, err = call(main, argv, capfd)
        assert_one_line_error(code, err, "no checkpoint in", "restores", "6: JSONDecodeError", "3: JSONDecodeError")
        assert snapshot(run_copy) == before


# ---------------------------------------------------------------------------------------------
# Two trainers on one workdir; what a killed one leaves.


def test_a_second_trainer_refuses_at_once_and_a_dead_ones_leftovers_do_not_block(run_copy, tiny_dataset, capfd):
    before = snapshot(run_copy)
    with workdirs.training_lock(run_copy):  # the first trainer
        code, out, err = call(train.main, train_args(run_copy, tiny_dataset), capfd)
    assert_one_line_error(code, err, "another process is training in", run_copy)
    assert snapshot(run_copy) == before

    # A trainer killed with SIGKILL: its lock goes with it; its unfinished save is cleaned up.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)", run_copy],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(cli.UserError, match="another process is training"):
        with workdirs.training_lock(run_copy):
            pass
    holder.kill()
    holder.wait()
    holder.stdout.close()
    leftover = os.path.join(run_copy, "checkpoints", "9.orbax-checkpoint-tmp-1712345678")
    shutil.copytree(os.path.join(run_copy, "checkpoints", "6"), leftover)
    truncate(os.path.join(leftover, "state", "_METADATA"))
    code, out, err = call(train.main, train_args(run_copy, tiny_dataset), capfd)
    assert code == 0, err
    assert "resumed from step 6" in out and "nothing to do" in out
    assert not os.path.exists(leftover) and checkpoints.checkpoint_steps(run_copy) == [3, 6]

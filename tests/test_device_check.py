"""jaxdiff.device_check on the CPU: the stages a GPU session runs, on tiny sizes, and its time budget."""

import json
import os

import numpy as np
import pytest

from jaxdiff.tools import device_check


@pytest.mark.slow  # trains on 8 devices and draws a sample grid
def test_training_stage_round_trips_a_checkpoint_and_writes_samples(tmp_path):
    out = str(tmp_path / "check")
    device_check.main(["--out", out, "--config", "configs/tiny.py", "--steps", "4", "--per-class", "2",
                       "--skip", "step_vs_cpu,benchmark,memory,benchmark_toy",
                       "--budget", "3600"])  # not the GPU session's budget: a busy 2-core host must not skip a stage
    report = json.load(open(os.path.join(out, "device_check.json")))
    assert report["stages"]["training"].startswith("done")
    training = report["training"]
    assert training["steps"] == 4 and training["dataset_images"] == 12  # 2 per class x 6 classes
    assert training["checkpoint_restored_identical"] is True
    assert [entry["step"] for entry in training["losses"]] == [4]  # logged every min(steps, 100) steps
    assert os.path.getsize(os.path.join(out, "samples.png")) > 0
    assert report["stages"]["memory"] == "skipped"


def test_a_spent_budget_skips_every_stage_but_the_environment(tmp_path):
    out = str(tmp_path / "check")
    device_check.main(["--out", out, "--config", "configs/tiny.py", "--budget", "1"])
    report = json.load(open(os.path.join(out, "device_check.json")))
    assert report["environment"]["platform"] == "cpu"
    assert all(report["stages"][name].startswith("skipped:") for name in
               ("step_vs_cpu", "benchmark", "training", "memory", "benchmark_toy"))


def test_in_memory_portraits_give_three_conditions_per_image():
    config = device_check.load_config("configs/tiny.py")
    from jaxdiff.data import embed, vectors

    table = embed.build_table(vectors.load_source("word2vec-subset"), config.embed.dim, config.embed.seed)
    data = device_check.in_memory_portraits(config, table, per_class=1)
    assert data["image"].shape == (18, config.data.image_size, config.data.image_size, 3)
    assert data["image"].min() >= -1 and data["image"].max() <= 1
    man, nurse = table.projected_vector("man"), table.projected_vector("nurse")  # male_nurse comes first
    assert np.allclose(data["cond"][0], man) and np.allclose(data["cond"][1], nurse)
    assert np.allclose(data["cond"][2], (man + nurse) / 2, atol=1e-6)

"""The main job's stage times (jaxdiff/studies/stage_times.py): said once training's speed is measured."""

import jax
import pytest

from helpers import tiny_config
from jaxdiff.core import parallel, sampling
from jaxdiff.measurement import classifier
from jaxdiff.studies import stage_times
from jaxdiff.training import factory, train
from jaxdiff.training.train import MeasuredSpeed

# Fabricated: 2 steps/s of 1 GFLOP, so training achieves 2 GFLOP/s.
SPEED = MeasuredSpeed(step=50, measured_steps=25, steps_left=100, steps_per_s=2.0, flops_per_step=1e9)
WORK = stage_times.Work(classifier_steps=10, classifier_step_flops=4e9, images=6, sampler="ddpm", sampler_steps=5,
                        evaluations_per_image=5, forward_flops=2e9)


def test_each_stage_from_the_measured_rate():
    times = stage_times.estimate(SPEED, WORK)
    assert times.training_s == pytest.approx(50.0)  # 100 steps at 2 steps/s
    assert times.classifier_s == pytest.approx(20.0)  # 10 x 4 GFLOP at 2 GFLOP/s
    assert times.sampling_s == pytest.approx(30.0)  # 6 images x 5 evaluations x 2 GFLOP at 2 GFLOP/s
    line = stage_times.describe(SPEED, WORK)
    assert "training 0.8 min more" in line and "classifier 0.3 min" in line
    assert "sampling 6 images (ddpm 5) 0.5 min" in line and "about 2 min from now" in line
    assert "2.00 steps/s, 2 GFLOP/s over steps 26-50" in line


def test_a_trained_classifier_costs_nothing_and_unknown_flops_are_said():
    trained = stage_times.Work(**{**WORK.__dict__, "classifier_steps": 0, "classifier_step_flops": None})
    assert stage_times.estimate(SPEED, trained).classifier_s == 0.0
    assert "classifier already trained" in stage_times.describe(SPEED, trained)
    blind = MeasuredSpeed(step=50, measured_steps=25, steps_left=100, steps_per_s=2.0, flops_per_step=None)
    times = stage_times.estimate(blind, WORK)
    assert times.training_s == pytest.approx(50.0) and times.classifier_s is None and times.sampling_s is None
    assert "sampling 6 images (ddpm 5) unknown" in stage_times.describe(blind, WORK)


def test_guidance_doubles_the_network_evaluations():
    assert sampling.network_evaluations_per_image(200, 1.0) == 200
    assert sampling.network_evaluations_per_image(50, 3.0) == 100


def test_training_reports_its_speed_once_and_the_work_left_is_counted(tiny_dataset, tmp_path):
    """The real path: tiny training calls back once, after the window with the compiling step."""
    config = tiny_config(tiny_dataset, train__num_steps=30, train__checkpoint_every=30, train__eval_every=30,
                         train__sample_every=0, evaluate__guidance=2.0)
    speeds = []
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(config, workdir, devices=jax.devices()[:1], on_speed=speeds.append)
    assert len(speeds) == 1
    speed = speeds[0]
    # log_every 2: the window ending at step 2 holds the compile; a run this short is measured over a
    # tenth of its steps (3), so over whole windows from step 3 to step 6.
    assert (speed.step, speed.measured_steps, speed.steps_left) == (6, 4, 24) and speed.steps_per_s > 0
    mesh = parallel.make_mesh(jax.devices()[:1])
    assert speed.flops_per_step == pytest.approx(factory.training_step_flops(config, mesh)) and speed.flops_per_step > 0
    work = stage_times.work_of(config, workdir)
    e = config.evaluate
    assert work.images == 3 * e.num_samples + 2 * e.num_samples_man_woman + (e.num_unseen_words + 4) * e.num_samples_unseen
    assert (work.sampler, work.sampler_steps, work.evaluations_per_image) == ("ddpm", 3, 6)  # guidance 2: both halves
    assert work.classifier_steps == config.classifier.num_steps
    assert work.classifier_step_flops == pytest.approx(classifier.training_step_flops(config)) and work.forward_flops > 0
    # The forward pass is a fraction of the training step's per-example cost (backward, optimiser).
    assert work.forward_flops < speed.flops_per_step / config.train.batch_size


def test_the_main_job_says_an_estimate_it_cannot_make_and_goes_on(tmp_path):
    """The experiment's callback: a workdir without its embedding table gives a line, not a stopped run."""
    from jaxdiff.studies import experiment

    said = []
    experiment.stage_times_teller(tiny_config(str(tmp_path / "data")), str(tmp_path / "run"), said.append)(SPEED)
    assert len(said) == 1 and said[0].startswith("stage times not estimated: embedding table") and "not found" in said[0]


def test_an_unexpected_failure_of_the_estimate_is_said_too(tmp_path, monkeypatch):
    from jaxdiff.studies import experiment

    def broken(config, workdir):
        raise RuntimeError("no cost analysis here")

    monkeypatch.setattr(stage_times, "work_of", broken)
    said = []
    experiment.stage_times_teller(tiny_config(str(tmp_path / "data")), str(tmp_path / "run"), said.append)(SPEED)
    assert said == ["stage times not estimated: RuntimeError: no cost analysis here"]

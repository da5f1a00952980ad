"""The main job's stage times (jaxdiff/studies/stage_times.py): said once training's speed is measured."""

import os

import jax
import pytest

from helpers import tiny_config
from jaxdiff.core import parallel, sampling
from jaxdiff.measurement import classifier
from jaxdiff.studies import stage_times
from jaxdiff.training import factory, train
from jaxdiff.training.train import MeasuredSpeed

# Fabricated: 2 steps/s of training; a classifier step of 2 s (4 s to compile), a sampler step on one batch of
# 3 s (4 s to compile, 1 s a call).
SPEED = MeasuredSpeed(step=50, measured_steps=25, steps_left=100, steps_per_s=2.0, flops_per_step=1e9)
WORK = stage_times.Work(classifier_steps=10, images=6, sampler="ddpm", sampler_steps=5, batches=2, batch_rows=4)
RATES = stage_times.Rates(classifier=stage_times.Timed(compile_s=4.0, step_s=2.0),
                          sampler_batch=stage_times.Timed(compile_s=4.0, step_s=3.0, call_s=1.0), spent_s=21.0)


def test_each_stage_from_the_measured_rates():
    times = stage_times.estimate(SPEED, WORK, RATES)
    assert times.training_s == pytest.approx(50.0)  # 100 steps at 2 steps/s
    assert times.classifier_s == pytest.approx(24.0)  # a compilation and 10 steps of 2 s
    assert times.sampling_s == pytest.approx(36.0)  # a compilation, 2 calls and 2 batches x 5 sampler steps of 3 s
    line = stage_times.describe(SPEED, WORK, RATES)
    assert "training 0.8 min more" in line and "classifier 0.4 min" in line
    assert "sampling 6 images (ddpm 5) 0.6 min" in line and "about 2 min from now" in line
    assert "2.00 steps/s, 2 GFLOP/s over steps 26-50; the classifier's and the sampler's programs timed in 21 s)" \
        in line


def test_a_trained_classifier_costs_nothing_and_a_backend_without_flop_counts_still_gets_times():
    trained = stage_times.Work(**{**WORK.__dict__, "classifier_steps": 0})
    rates = stage_times.Rates(classifier=None, sampler_batch=RATES.sampler_batch)
    assert stage_times.estimate(SPEED, trained, rates).classifier_s == 0.0
    assert "classifier already trained" in stage_times.describe(SPEED, trained, rates)
    blind = MeasuredSpeed(step=50, measured_steps=25, steps_left=100, steps_per_s=2.0, flops_per_step=None)
    line = stage_times.describe(blind, WORK, RATES)
    assert "(training measured at 2.00 steps/s over steps 26-50;" in line
    assert "sampling 6 images (ddpm 5) 0.6 min" in line


def test_a_timed_program_s_compilation_steps_and_own_cost_are_told_apart(monkeypatch):
    # Calls of 10 s and 5 s at 2 steps, then 15 s (compiling again) and 13 s at 6 steps.
    clock = iter([0.0, 10.0, 10.0, 15.0, 15.0, 30.0, 30.0, 43.0])
    monkeypatch.setattr(stage_times.time, "perf_counter", lambda: next(clock))
    calls = []
    timed = stage_times.timed(calls.append, steps=(2, 6))
    assert calls == [2, 2, 6, 6]
    assert timed == stage_times.Timed(compile_s=5.0, step_s=2.0, call_s=1.0)  # 4 steps in 8 s; 5 s - 2 steps
    assert timed.seconds(100, calls=10) == pytest.approx(5.0 + 10 * 1.0 + 100 * 2.0)


def test_the_evaluation_s_batches_as_the_sampler_splits_them():
    assert sampling.chunking(2800, 256, 1) == (256, 256)  # 11 batches, the last padded to 256 rows
    assert sampling.chunking(100, 256, 8) == (256, 104)  # one batch, padded to the devices' next multiple
    assert sampling.chunking(10, 6, 4) == (4, 4)  # the batch a multiple of the device count


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
    assert work.batches == -(-work.images // config.sample.batch_size)
    assert work.batch_rows == sampling.chunking(work.images, config.sample.batch_size, jax.device_count())[1]
    assert (work.sampler, work.sampler_steps) == ("ddpm", 3)
    assert work.classifier_steps == config.classifier.num_steps
    rates = stage_times.time_stages(config, work)  # the classifier's and the guided sampler's programs, run
    for timed in (rates.classifier, rates.sampler_batch):  # a tiny step's time may drown in the noise: >= 0
        assert min(timed.compile_s, timed.step_s, timed.call_s) >= 0 and timed.seconds(100, calls=10) > 0
    open(os.path.join(workdir, classifier.PARAMS_FILE), "wb").close()  # a trained classifier's file is there
    trained = stage_times.work_of(config, workdir)
    assert trained.classifier_steps == 0 and stage_times.time_stages(config, trained).classifier is None
    from jaxdiff.studies import experiment

    said = []
    experiment.stage_times_teller(config, workdir, said.append)(speed)  # what the main job says
    assert len(said) == 1 and said[0].startswith("stage times on this machine")
    assert "classifier already trained" in said[0]


def test_the_main_job_says_an_estimate_it_cannot_make_and_goes_on(tmp_path):
    """The experiment's callback: a workdir without its embedding table gives a line, not a stopped run."""
    from jaxdiff.studies import experiment

    said = []
    experiment.stage_times_teller(tiny_config(str(tmp_path / "data")), str(tmp_path / "run"), said.append)(SPEED)
    assert len(said) == 1 and said[0].startswith("stage times not estimated: embedding table") and "not found" in said[0]


def test_an_unexpected_failure_of_the_estimate_is_said_too(tmp_path, monkeypatch):
    from jaxdiff.studies import experiment

    def broken(config, workdir):
        raise RuntimeError("no table here")

    monkeypatch.setattr(stage_times, "work_of", broken)
    said = []
    experiment.stage_times_teller(tiny_config(str(tmp_path / "data")), str(tmp_path / "run"), said.append)(SPEED)
    assert said == ["stage times not estimated: RuntimeError: no table here"]

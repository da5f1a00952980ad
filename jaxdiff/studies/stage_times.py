"""How long each stage of the main job will take on this machine, said once training's speed is known.

Training's speed is measured over its first steps after compilation (train.MeasuredSpeed). The
classifier's training and the sampling are put in the same currency: XLA's FLOP count of their
programs (a classifier step; one network evaluation per image and sampler step) divided by the FLOP
rate the training step achieved. Sampling runs the same network without the backward pass, at a
larger batch, so it runs at about training's rate or a little faster; docs/performance.md compares
the estimate with the stages' measured times.
"""

import dataclasses
import os

import ml_collections

from jaxdiff.core import sampling
from jaxdiff.data import embed
from jaxdiff.measurement import classifier, evaluation_words
from jaxdiff.training import factory, workdirs
from jaxdiff.training.train import MeasuredSpeed


@dataclasses.dataclass(frozen=True)
class Work:
    """What the stages after the measurement compute."""

    classifier_steps: int  # 0 when the run's classifier is already trained
    classifier_step_flops: float | None
    images: int  # evaluation images to sample
    sampler: str  # the evaluation's sampler and its steps
    sampler_steps: int
    evaluations_per_image: int  # sampler steps, twice that under classifier-free guidance
    forward_flops: float | None  # one network evaluation of one image


@dataclasses.dataclass(frozen=True)
class StageTimes:
    """Seconds each stage still needs."""

    training_s: float
    classifier_s: float | None  # None where the backend counts no FLOPs
    sampling_s: float | None


def estimate(speed: MeasuredSpeed, work: Work) -> StageTimes:
    """Each stage's seconds from the measured training speed (see the module's docstring)."""
    flops_per_s = (speed.flops_per_step or 0.0) * speed.steps_per_s
    per_flop = (lambda flops: flops / flops_per_s) if flops_per_s > 0 else (lambda flops: None)
    classifier_s = 0.0 if not work.classifier_steps else (
        None if work.classifier_step_flops is None else per_flop(work.classifier_steps * work.classifier_step_flops))
    sampling_s = None if work.forward_flops is None else per_flop(
        work.images * work.evaluations_per_image * work.forward_flops)
    return StageTimes(training_s=speed.steps_left / speed.steps_per_s, classifier_s=classifier_s,
                      sampling_s=sampling_s)


def work_of(config: ml_collections.ConfigDict, workdir: str) -> Work:
    """The run's remaining work after training (lowers the programs to count their FLOPs; compiles nothing)."""
    e = config.evaluate
    table = embed.EmbeddingTable.load(os.path.join(workdir, workdirs.TABLE_IN_WORKDIR))
    images = sum(c["n"] for c in evaluation_words.evaluation_conditions(table, config))
    steps = e.steps or sampling.steps_for(config.sample, e.sampler)
    trained = os.path.exists(os.path.join(workdir, classifier.PARAMS_FILE))
    return Work(classifier_steps=0 if trained else int(config.classifier.num_steps),
                classifier_step_flops=None if trained else classifier.training_step_flops(config),
                images=images, sampler=e.sampler, sampler_steps=steps,
                evaluations_per_image=sampling.network_evaluations_per_image(steps, e.guidance),
                forward_flops=factory.forward_flops_per_image(config))


def describe(speed: MeasuredSpeed, work: Work) -> str:
    """One line: the measured speed, then each stage's minutes and the total."""
    times = estimate(speed, work)
    minutes = lambda seconds: "unknown" if seconds is None else f"{seconds / 60:.1f} min"  # noqa: E731
    rate = f"{speed.steps_per_s:.2f} steps/s"
    if speed.flops_per_step:
        rate += f", {speed.flops_per_step * speed.steps_per_s / 1e9:.0f} GFLOP/s"
    parts = [f"training {minutes(times.training_s)} more",
             f"classifier {minutes(times.classifier_s)}" if work.classifier_steps else "classifier already trained",
             f"sampling {work.images:,} images ({work.sampler} {work.sampler_steps}) {minutes(times.sampling_s)}"]
    known = [t for t in (times.training_s, times.classifier_s, times.sampling_s) if t is not None]
    total = f"about {sum(known) / 60:.0f} min from now" + ("" if len(known) == 3 else " for the stages estimated")
    span = f"steps {speed.step - speed.measured_steps + 1}-{speed.step}"
    return f"stage times on this machine (training measured at {rate} over {span}): {', '.join(parts)}; {total}"

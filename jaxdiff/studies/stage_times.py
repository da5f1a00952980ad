"""How long each stage of the main job will take on this machine, said once training's speed is known.

Training's speed is measured over its first steps after compilation (train.MeasuredSpeed). The stages
after it are timed then, each on the program it will run: a few classifier training steps on random
images, and a few steps of the evaluation's sampler on one evaluation batch (zero parameters and
conditions: the time of these programs does not depend on the values). Each is run twice at two step
counts, so its compilation, a step, and a call's own cost (the sampler's noise and the gathering of its
images) are timed apart. FLOP counts at training's rate would miss by a stage-dependent
factor (small convolutions run further below the peak than training's; a larger inference batch runs
closer to it); docs/results.md compares the estimate with the stages' measured times.
"""

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff.core import parallel, sampling
from jaxdiff.data import embed
from jaxdiff.measurement import classifier, evaluation_words
from jaxdiff.training import factory, workdirs
from jaxdiff.training.train import MeasuredSpeed

# The step counts of the timed calls: two, so that a call's own cost is told from its steps' (a few seconds).
TIMED_STEPS = (2, 6)


@dataclasses.dataclass(frozen=True)
class Work:
    """What the stages after training compute."""

    classifier_steps: int  # 0 when the run's classifier is already trained
    images: int  # evaluation images to sample
    sampler: str  # the evaluation's sampler and its steps
    sampler_steps: int
    batches: int  # the evaluation's sampler calls (batches of sample.batch_size images)
    batch_rows: int  # the rows of each call, padded as the sampler pads them


@dataclasses.dataclass(frozen=True)
class Timed:
    """A program timed on this machine: its compilation, one step once compiled, and a call's own cost."""

    compile_s: float
    step_s: float
    call_s: float = 0.0

    def seconds(self, steps: int, calls: int = 1) -> float:
        """Compiling once, then `steps` steps in all over `calls` calls."""
        return self.compile_s + calls * self.call_s + steps * self.step_s


@dataclasses.dataclass(frozen=True)
class Rates:
    """The stages after training, timed."""

    classifier: Timed | None  # None when the run's classifier is already trained
    sampler_batch: Timed  # the evaluation's sampler on one batch
    spent_s: float = 0.0  # what timing them took (training waits for it)


@dataclasses.dataclass(frozen=True)
class StageTimes:
    """Seconds each stage still needs."""

    training_s: float
    classifier_s: float
    sampling_s: float


def estimate(speed: MeasuredSpeed, work: Work, rates: Rates) -> StageTimes:
    """Each stage's seconds from the measured training speed and the timed programs."""
    classifier_s = 0.0 if rates.classifier is None else rates.classifier.seconds(work.classifier_steps)
    return StageTimes(training_s=speed.steps_left / speed.steps_per_s, classifier_s=classifier_s,
                      sampling_s=rates.sampler_batch.seconds(work.batches * work.sampler_steps, work.batches))


def work_of(config: ml_collections.ConfigDict, workdir: str) -> Work:
    """The run's remaining work after training (counts only: nothing is compiled)."""
    e = config.evaluate
    table = embed.EmbeddingTable.load(os.path.join(workdir, workdirs.TABLE_IN_WORKDIR))
    images = sum(c["n"] for c in evaluation_words.evaluation_conditions(table, config))
    batch_size, batch_rows = sampling.chunking(images, config.sample.batch_size, jax.device_count())
    trained = os.path.exists(os.path.join(workdir, classifier.PARAMS_FILE))
    return Work(classifier_steps=0 if trained else int(config.classifier.num_steps), images=images,
                sampler=e.sampler, sampler_steps=e.steps or sampling.steps_for(config.sample, e.sampler),
                batches=-(-images // batch_size), batch_rows=batch_rows)


def timed(run: Callable[[int], Any], steps: tuple[int, int] = TIMED_STEPS) -> Timed:
    """Times `run(n)` (n steps in one call) twice at each of two step counts: the first call's excess over the
    second is its compilation, the difference between the counts' calls their steps, and the rest a call's own
    cost. (A program whose step count is compiled in, like the sampler's, compiles again at the second count.)"""
    few, many = steps

    def seconds(n: int) -> float:
        start = time.perf_counter()
        jax.block_until_ready(run(n))
        return time.perf_counter() - start

    first, second = seconds(few), seconds(few)
    seconds(many)
    step_s = max(seconds(many) - second, 0.0) / (many - few)
    return Timed(compile_s=max(first - second, 0.0), step_s=step_s, call_s=max(second - few * step_s, 0.0))


def time_sampler_batch(config: ml_collections.ConfigDict, work: Work) -> Timed:
    """The evaluation's sampler (its guidance too) on one evaluation batch of zero parameters, timed. On this
    process's devices only (the caller is the main process alone), with their share of the batch."""
    e = config.evaluate
    mesh = parallel.make_mesh(jax.local_devices())
    rows = work.batch_rows * jax.local_device_count() // jax.device_count()
    model, schedule = factory.model_and_schedule(config)
    size = config.data.image_size
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), factory.state_shapes(config).ema_params)
    params = jax.device_put(zeros, parallel.replicated(mesh))
    image_sampler = sampling.ImageSampler(model, schedule, config.diffusion.prediction, (size, size, 3), mesh)
    conditions = np.zeros((rows, config.embed.dim), np.float32)
    return timed(lambda n: image_sampler.sample_as_configured(params, conditions, 0, config.sample,
                                                              sampler=work.sampler, steps=n, guidance=e.guidance))


def time_stages(config: ml_collections.ConfigDict, work: Work) -> Rates:
    """Times the programs of the stages after training (seconds: two compilations and a few steps each)."""
    start = time.perf_counter()
    timed_classifier = timed(classifier.training_run(config)) if work.classifier_steps else None
    sampler_batch = time_sampler_batch(config, work)
    return Rates(classifier=timed_classifier, sampler_batch=sampler_batch, spent_s=time.perf_counter() - start)


def describe(speed: MeasuredSpeed, work: Work, rates: Rates) -> str:
    """One line: the measured speed, then each stage's minutes and the total."""
    times = estimate(speed, work, rates)
    minutes = lambda seconds: f"{seconds / 60:.1f} min"  # noqa: E731
    rate = f"{speed.steps_per_s:.2f} steps/s"
    if speed.flops_per_step:
        rate += f", {speed.flops_per_step * speed.steps_per_s / 1e9:.0f} GFLOP/s"
    parts = [f"training {minutes(times.training_s)} more",
             f"classifier {minutes(times.classifier_s)}" if work.classifier_steps else "classifier already trained",
             f"sampling {work.images:,} images ({work.sampler} {work.sampler_steps}) {minutes(times.sampling_s)}"]
    total = times.training_s + times.classifier_s + times.sampling_s
    span = f"steps {speed.step - speed.measured_steps + 1}-{speed.step}"
    timed_in = f"the classifier's and the sampler's programs timed in {rates.spent_s:.0f} s"
    return (f"stage times on this machine (training measured at {rate} over {span}; {timed_in}): {', '.join(parts)}; "
            f"about {total / 60:.0f} min from now")

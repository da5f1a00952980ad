"""Training: the word-conditioned UNet with AdamW, an EMA in the train state, data-parallel steps.

    python -m jaxdiff.train --config=configs/toy.py --workdir=runs/toy [--config.train.num_steps=N]

A rerun of the same command resumes from the last checkpoint in WORKDIR/checkpoints; SIGTERM
saves one and exits. The model, the initial state and the step come from jaxdiff/training/factory.py,
as they do for the benchmark and the device check. The step is `jax.jit` with NamedShardings over
a one-axis ('data',) mesh of every device: the batch is split, the state replicated; each device
differentiates the loss of its own rows and the gradients are averaged in one all-reduce
(parallel.data_parallel_value_and_grad). Noise, timesteps and condition dropout come from the
step's key folded with each example's global index, so without dropout (configs/toy.py) a step
does not depend on how many devices share it; dropout masks (configs/base.py) are drawn per device.
"""


import contextlib
import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.core import diffusion, models, parallel, sampling
from jaxdiff.data import embed
from jaxdiff.training import factory
from jaxdiff.training.checkpoints import Checkpoints
from jaxdiff.data.classes import TRAIN_WORDS
from jaxdiff.common.cli import hide_accelerators_from_tensorflow
from jaxdiff.common.errors import RunStopped, UserError
from jaxdiff.training.logs import MetricWriter
from jaxdiff.core.state import TrainState
from jaxdiff.training.workdirs import TABLE_IN_WORKDIR, check_workdir, training_lock

EXIT_PREEMPTED = 143  # 128 + SIGTERM, what a killed process reports; schedulers restart on it


class TrainingDiverged(RunStopped):
    """The loss or the gradient norm became NaN or Inf."""

    def line(self) -> str:
        return f"error: training diverged: {self}"


class Preempted(RunStopped):
    """SIGTERM arrived; a checkpoint was saved. The exit status tells a scheduler to restart the job."""

    exit_status = EXIT_PREEMPTED

    def line(self) -> str:
        return str(self)


# ---------------------------------------------------------------------------------------------
# Validation.


def validation_timesteps(num_timesteps: int, count: int) -> np.ndarray:
    """The fixed grid of validation timesteps: midpoints of `count` equal bins of [0, T)."""
    return np.floor((np.arange(count) + 0.5) * num_timesteps / count).astype(np.int32)


def validation_mse(params: Any, batch: dict[str, jax.Array], *, model: models.UNet, schedule: diffusion.Schedule,
                   config: ml_collections.ConfigDict) -> jax.Array:
    """MSE per grid timestep on fixed validation examples with fixed noise (a smooth curve)."""
    x0, cond = batch["image"], batch["cond"]
    keys = factory.per_example_keys(jax.random.key(config.seed + 7_777), x0.shape[0])

    def at(j_and_t):
        j, t = j_and_t
        noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, j), x0.shape[1:]))(keys)
        t_B = jnp.full((x0.shape[0],), t, jnp.int32)
        out = model.apply({"params": params}, diffusion.q_sample(schedule, x0, t_B, noise), t_B, cond, train=False)
        target = diffusion.training_target(schedule, config.diffusion.prediction, x0, noise, t_B)
        return jnp.mean(diffusion.mse_per_example(out, target))

    grid = jnp.asarray(validation_timesteps(schedule.num_timesteps, config.train.val_timesteps))
    return jax.lax.map(at, (jnp.arange(grid.shape[0]), grid))


# ---------------------------------------------------------------------------------------------
# The loop.


@dataclasses.dataclass
class _Stop:
    """Set by the SIGTERM handler; the loop saves and exits at the next step boundary."""

    requested: bool = False


def _install_sigterm(stop: _Stop) -> Any:
    def handler(signum, frame):
        stop.requested = True

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a notebook worker): no preemption handling
        return None


def _device_batches(config: ml_collections.ConfigDict, table: embed.EmbeddingTable, mesh: jax.sharding.Mesh,
                    start_example: int) -> Iterator[dict[str, jax.Array]]:
    """Global, batch-sharded device arrays from this process's share of the training stream."""
    from jaxdiff.data import input_pipeline  # tf.data only where data is read: see train_and_evaluate
    local_batch = parallel.local_batch_size(config.train.batch_size, mesh)
    ds = input_pipeline.train_dataset(config, table, local_batch, start_example=start_example,
                                      process_index=jax.process_index(), process_count=jax.process_count())
    sharding = parallel.batch_sharded(mesh)
    for batch in input_pipeline.numpy_batches(ds, config.data.dir):
        yield parallel.to_global({"image": batch["image"], "cond": batch["cond"]}, sharding)


def sample_grid(image_sampler: sampling.ImageSampler, params: Any, table: embed.EmbeddingTable,
                config: ml_collections.ConfigDict, seed: int) -> np.ndarray:
    """A uint8 grid: one row per training word, `samples_per_word` EMA samples each."""
    n = config.train.samples_per_word
    cond = np.repeat(np.stack([table.projected_vector(w) for w in TRAIN_WORDS]), n, axis=0)
    images = image_sampler.sample_as_configured(params, cond, seed, config.sample)
    return files.image_grid(files.to_uint8(images), ncols=n)


# Training's speed for the stage times is measured over whole log windows spanning at least this many
# steps after the window with the compiling step (a tenth of a shorter run): single windows vary with
# the machine's other work and with the input pipeline's first pass through the data.
SPEED_SPAN_STEPS = 250


@dataclasses.dataclass(frozen=True)
class MeasuredSpeed:
    """Training's speed, measured over whole log windows after the one with the compiling step."""

    step: int  # the step at the measurement's end
    measured_steps: int  # the steps it spans
    steps_left: int  # to train.num_steps
    steps_per_s: float
    flops_per_step: float | None  # XLA's count for the global batch (None where the backend gives none)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       devices: Sequence[jax.Device] | None = None,
                       on_speed: Callable[[MeasuredSpeed], None] | None = None) -> tuple[TrainState, dict[str, float]]:
    """Trains (or resumes) to config.train.num_steps in `workdir`; returns the state and last metrics.

    `on_speed`, called once in the main process, gets the measured speed (jaxdiff.experiment turns
    it into every stage's time)."""
    # TensorFlow (tf.data) is imported here and not at the top: the state, step and checkpoint
    # code above runs where TensorFlow is not installed (accelerator images often lack it).
    from jaxdiff.data import input_pipeline

    hide_accelerators_from_tensorflow()
    # Cheap before slow: the dataset (the portraits are made in seconds), the workdir's files, then
    # the word vectors (maybe a download), all before compiling anything.
    input_pipeline.ensure_dataset(config)
    main_process = parallel.is_main_process()
    with contextlib.ExitStack() as stack:
        # An existing workdir is locked first, so a second trainer there refuses at once; a new one
        # is made only when its word vectors are at hand, so failing to load them leaves nothing.
        locked = main_process and os.path.isdir(workdir)
        if locked:
            stack.enter_context(training_lock(workdir))
        table, is_new = check_workdir(config, workdir)
        if main_process and not locked:
            stack.enter_context(training_lock(workdir))
        os.makedirs(workdir, exist_ok=True)
        if main_process:
            if is_new:
                table.save(os.path.join(workdir, TABLE_IN_WORKDIR))
            configuration.save(config, workdir)
        return train_in(config, workdir, table, devices, on_speed=on_speed)


Batches = Callable[[jax.sharding.Mesh, int], Iterator[dict[str, jax.Array]]]


def train_in(config: ml_collections.ConfigDict, workdir: str, table: embed.EmbeddingTable,
             devices: Sequence[jax.Device] | None = None, *, batches: Batches | None = None,
             validation: dict[str, np.ndarray] | None = None,
             should_stop: Callable[[], bool] | None = None,
             on_speed: Callable[[MeasuredSpeed], None] | None = None) -> tuple[TrainState, dict[str, float]]:
    """The state and last metrics after training (or resuming) to config.train.num_steps in `workdir`.

    By default the batches and validation examples come from the dataset (tf.data); `batches(mesh,
    start_example)` and `validation` (this process's rows) replace them, as the device check does
    where TensorFlow is absent. When `should_stop()` turns true the run ends at that step as if it
    were the last: validation, samples and a checkpoint. `on_speed` is as in `train_and_evaluate`.
    """
    mesh = parallel.make_mesh(devices)
    repl, data_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    built = factory.build(config, mesh)
    model, schedule, state, base_key = built.model, built.schedule, built.state, built.base_key
    num_steps = int(config.train.num_steps)
    main_process = parallel.is_main_process()
    log = print if main_process else (lambda *a, **k: None)

    log(f"UNet: {models.count_params(state.params):,} parameters; {mesh.size} device(s) "
        f"({mesh.devices.flat[0].platform}), {jax.process_count()} process(es); workdir {workdir}")

    checkpoints = Checkpoints(workdir, config.train)
    examples_seen = 0
    restored = checkpoints.restore_newest(state, repl, log)
    if restored is not None:
        state, data_position = restored
        examples_seen = int(data_position["examples_seen"])
        log(f"resumed from step {int(state.step)} (checkpoint in {checkpoints.directory})")
    start_step = int(parallel.fetch(state.step))
    writer = MetricWriter(workdir, enabled=main_process)
    last: dict[str, float] = {}
    if start_step >= num_steps:
        log(f"already trained to step {start_step} >= train.num_steps {num_steps}; nothing to do")
        checkpoints.close()
        writer.close()
        return state, last

    step_fn = built.step
    val_fn = jax.jit(functools.partial(validation_mse, model=model, schedule=schedule, config=config),
                     in_shardings=(repl, data_sharding), out_shardings=repl)
    if validation is None:
        from jaxdiff.data import input_pipeline  # tf.data only where data is read: see train_and_evaluate

        validation = input_pipeline.validation_examples(
            config, table, config.train.val_examples // jax.process_count(), process_index=jax.process_index(),
            process_count=jax.process_count())
    if config.train.val_examples % mesh.size:
        raise UserError(f"train.val_examples {config.train.val_examples} must be divisible by the {mesh.size} devices")
    val_batch = parallel.to_global({"image": validation["image"], "cond": validation["cond"]}, data_sharding)
    image_sampler = sampling.ImageSampler(model, schedule, config.diffusion.prediction,
                                          (config.data.image_size,) * 2 + (3,), mesh)
    if batches is None:
        batches = functools.partial(_device_batches, config, table)
    batch_stream = batches(mesh, examples_seen // jax.process_count())

    stop = _Stop()
    previous_handler = _install_sigterm(stop)
    pending: list[dict] = []  # device metrics since the last host check
    last_good_step = start_step if start_step > 0 else None
    global_batch = config.train.batch_size

    def check_finite(step: int) -> list[dict]:
        values = parallel.fetch(pending)
        pending.clear()
        for i, m in enumerate(values):
            if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
                bad_step = step - len(values) + i + 1
                kept = f"the last good checkpoint (step {last_good_step}) is kept in {checkpoints.directory}" \
                    if last_good_step else "no checkpoint was written before it"
                raise TrainingDiverged(f"loss is {m['loss']} (gradient norm {m['grad_norm']}) at step {bad_step}; "
                                       f"stopped without saving: {kept}. Lower train.learning_rate or check the data")
        return values

    try:
        from tqdm import tqdm

        progress = tqdm(total=num_steps, initial=start_step, disable=not main_process, unit="step",
                        dynamic_ncols=True, desc="train")
        window_start, window_steps = time.perf_counter(), 0
        speed_pending = on_speed is not None and main_process  # said once, after the span below
        speed_span = min(SPEED_SPAN_STEPS, (num_steps - start_step) // 10)
        speed_steps, speed_seconds = 0, 0.0
        step = start_step
        while step < num_steps:
            batch = next(batch_stream)
            state, metrics = step_fn(state, batch, base_key)
            pending.append(metrics)
            step += 1
            window_steps += 1
            examples_seen += global_batch
            progress.update(1)
            at_end = step == num_steps or (should_stop is not None and should_stop())
            if step % config.train.log_every == 0 or at_end or stop.requested:
                values = check_finite(step)
                elapsed = time.perf_counter() - window_start
                throughput = window_steps * global_batch / max(elapsed, 1e-9)
                mean_loss = float(np.mean([v["loss"] for v in values]))
                last = {"train/loss": mean_loss, "train/grad_norm": float(values[-1]["grad_norm"]),
                        "train/learning_rate": float(values[-1]["learning_rate"]),
                        "train/images_per_s": throughput}
                writer.scalars(step, last)
                progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{throughput:.0f}")
                if speed_pending and step - window_steps > start_step and not at_end:  # not the compiling window
                    speed_steps, speed_seconds = speed_steps + window_steps, speed_seconds + elapsed
                    if speed_steps >= speed_span:
                        speed_pending = False
                        try:  # the estimate is a courtesy: nothing in it may stop the run
                            flops = factory.training_step_flops(config, mesh, step_fn.lower(state, batch, base_key))
                        except Exception:  # noqa: BLE001 (a backend without cost analysis, say)
                            flops = None
                        with progress.external_write_mode():  # the caller's lines above the bar, not through it
                            on_speed(MeasuredSpeed(step, speed_steps, num_steps - step,
                                                   speed_steps / max(speed_seconds, 1e-9), flops))
                window_start, window_steps = time.perf_counter(), 0
            if step % config.train.eval_every == 0 or at_end:
                check_finite(step)
                mse_ema = parallel.fetch(val_fn(state.ema_params, val_batch))
                mse_raw = parallel.fetch(val_fn(state.params, val_batch))
                val = {"val/mse_ema": float(mse_ema.mean()), "val/mse": float(mse_raw.mean())}
                writer.scalars(step, val)
                last.update(val)
                progress.write(f"step {step}: val MSE {val['val/mse']:.4f} (EMA {val['val/mse_ema']:.4f})") \
                    if main_process else None
                window_start = time.perf_counter()
            if config.train.sample_every and (step % config.train.sample_every == 0 or at_end):
                grid = sample_grid(image_sampler, state.ema_params, table, config, seed=config.seed)
                if main_process:
                    files.save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), grid, scale=2)
                    writer.image(step, "samples/ema (rows: " + ", ".join(TRAIN_WORDS) + ")", grid)
                window_start = time.perf_counter()
            if step % config.train.checkpoint_every == 0 or at_end or stop.requested:
                check_finite(step)
                checkpoints.save(state, examples_seen)
                last_good_step = step
                window_start = time.perf_counter()
            if stop.requested:
                raise Preempted(f"received SIGTERM: saved a checkpoint at step {step} in {checkpoints.directory}; "
                                f"rerun the same command to resume")
            if at_end:
                break
        progress.close()
        log(f"done: step {step}, train loss {last.get('train/loss', float('nan')):.4f}, "
            f"val MSE {last.get('val/mse', float('nan')):.4f} (EMA {last.get('val/mse_ema', float('nan')):.4f})")
        return state, last
    finally:
        checkpoints.wait()
        checkpoints.close()
        writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


# ---------------------------------------------------------------------------------------------
# Command line.


def define_flags(values: absl_flags.FlagValues) -> None:
    """--workdir and the multi-process flags."""
    absl_flags.DEFINE_string("workdir", None, "run directory (default: the config's workdir)", flag_values=values)
    absl_flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs off Cloud TPU",
                             flag_values=values)
    absl_flags.DEFINE_integer("num_processes", None, "number of processes (with --coordinator_address)", flag_values=values)
    absl_flags.DEFINE_integer("process_id", None, "this process's index (with --coordinator_address)", flag_values=values)
    absl_flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() and let it find the hosts "
                           "(Cloud TPU pod slices; launch.sh passes it)", flag_values=values)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    parallel.maybe_initialize_distributed(flags.coordinator_address, flags.num_processes, flags.process_id,
                                          auto=flags.distributed)
    train_and_evaluate(flags.config, flags.workdir or flags.config.workdir)


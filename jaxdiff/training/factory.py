"""The one place that builds what training computes with: model, schedule, initial state and jitted step.

Training, the benchmark and the device check all call `build`, so the step they run (and time) is the
same program, from the same initial state and step key for a given config.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxdiff.core import conditioning, diffusion, models, parallel
from jaxdiff.core.state import TrainState, create_train_state, ema_decay, ema_update, learning_rate_schedule


def per_example_keys(key: jax.Array, batch_size: int, first_index: jax.Array | int = 0) -> jax.Array:
    """One key per example: the key folded with the example's global index (`first_index` onwards)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, first_index + i))(jnp.arange(batch_size))


def diffusion_loss(params: Any, batch: dict[str, jax.Array], key: jax.Array, *, model: models.UNet,
                   schedule: diffusion.Schedule, config: ml_collections.ConfigDict, train: bool,
                   first_index: jax.Array | int = 0, global_batch_size: int | None = None) -> jax.Array:
    """Mean over the batch of the per-example MSE between the network output and its target.

    `batch` may be one device's rows of a global batch of `global_batch_size` examples, starting at
    global index `first_index`: each example's noise, timestep and condition dropout come from its
    global index, so they do not depend on how the batch is split.
    """
    x0 = batch["image"]
    B = x0.shape[0]
    global_batch_size = global_batch_size or B
    keys = per_example_keys(key, B, first_index)
    t_B = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0, schedule.num_timesteps))(keys)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x0.shape[1:]))(keys)
    cond = conditioning.drop_words(batch["cond"], jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys),
                                   config.cond.null_prob)
    x_t = diffusion.q_sample(schedule, x0, t_B, noise)
    # One dropout key per shard of the batch, distinct from every per-example key's stream.
    dropout_key = jax.random.fold_in(key, global_batch_size + first_index // B)
    out = model.apply({"params": params}, x_t, t_B, cond, train=train, rngs={"dropout": dropout_key})
    target = diffusion.training_target(schedule, config.diffusion.prediction, x0, noise, t_B)
    return jnp.mean(diffusion.mse_per_example(out, target))


def train_step(state: TrainState, batch: dict[str, jax.Array], base_key: jax.Array, *, model: models.UNet,
               schedule: diffusion.Schedule, config: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh) -> tuple[TrainState, dict]:
    """One AdamW step on the global batch, then the EMA update; returns the new state and metrics."""
    step_key = jax.random.fold_in(base_key, state.step)

    def shard_loss(params, rows, first_index):
        return diffusion_loss(params, rows, step_key, model=model, schedule=schedule, config=config, train=True,
                              first_index=first_index, global_batch_size=batch["image"].shape[0])

    loss, grads = parallel.data_parallel_value_and_grad(shard_loss, mesh)(state.params, batch)
    new_state = state.apply_gradients(grads=grads)
    new_state = new_state.replace(
        ema_params=ema_update(state.ema_params, new_state.params, ema_decay(state.step, config.train.ema_decay)))
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
               "learning_rate": learning_rate_schedule(config.train)(state.step)}
    return new_state, metrics


def model_and_schedule(config: ml_collections.ConfigDict) -> tuple[models.UNet, diffusion.Schedule]:
    """The UNet and the noise schedule a config describes."""
    return (models.create_model(config),
            diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps))


def state_shapes(config: ml_collections.ConfigDict) -> TrainState:
    """The shapes and dtypes of a config's train state (nothing computed)."""
    model, _ = model_and_schedule(config)
    return jax.eval_shape(functools.partial(create_train_state, config, model), jax.random.key(0))


@dataclasses.dataclass(frozen=True)
class Training:
    """What a training run computes with; `step(state, batch, base_key)` returns (new state, metrics)."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    model: models.UNet
    schedule: diffusion.Schedule
    state: TrainState  # the initial state, replicated (only shapes and shardings when built `abstract`)
    base_key: jax.Array  # the step's key is this folded with the state's step
    step: Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, dict]]


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, *, donate: bool = True,
          abstract: bool = False) -> Training:
    """The model, schedule, initial state and jitted data-parallel step of `config` on `mesh`.

    The config's seed gives both the initial parameters and the step key. The step is `jax.jit`
    with the state and key replicated and the batch split over 'data'. With `donate` the input
    state's buffers are reused for the output (the caller must not touch the old state again);
    `abstract` gives the state as shapes only (for lowering and memory analysis).
    """
    model, schedule = model_and_schedule(config)
    repl = parallel.replicated(mesh)
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    if abstract:
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state_shapes(config))
    else:
        state = jax.jit(functools.partial(create_train_state, config, model), out_shardings=repl)(init_key)
    step = jax.jit(functools.partial(train_step, model=model, schedule=schedule, config=config, mesh=mesh),
                   in_shardings=(repl, parallel.batch_sharded(mesh), repl), out_shardings=(repl, repl),
                   donate_argnums=(0,) if donate else ())
    return Training(config, mesh, model, schedule, state, base_key, step)


# ---------------------------------------------------------------------------------------------
# What the programs cost. FLOPs of the lowered programs, not the compiled ones: on GPUs the
# compiled module's cost analysis leaves out convolutions that run as cuDNN calls (docs/gpu.md has
# the H100's figures); on the CPU the two counts agree. Lowering traces but compiles nothing.


def lowered_flops(lowered: Any) -> float | None:
    """XLA's FLOP count of a lowered program, None where the backend gives none."""
    cost = lowered.cost_analysis()
    return float(cost["flops"]) if cost and "flops" in cost else None


def abstract_batch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                   batch_size: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes of one global training batch (train.batch_size unless given), split over the mesh's 'data' axis."""
    sharding, size, B = parallel.batch_sharded(mesh), config.data.image_size, batch_size or config.train.batch_size
    return {"image": jax.ShapeDtypeStruct((B, size, size, 3), jnp.float32, sharding=sharding),
            "cond": jax.ShapeDtypeStruct((B, config.embed.dim), jnp.float32, sharding=sharding)}


def training_step_flops(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                        lowered: Any = None) -> float | None:
    """FLOPs of one training step on the global batch (`lowered`: the step already lowered, if at hand)."""
    if lowered is None:
        built = build(config, mesh, abstract=True)
        lowered = built.step.lower(built.state, abstract_batch(config, mesh), built.base_key)
    flops = lowered_flops(lowered)
    # The step runs under shard_map, so the count is one device's share.
    return None if flops is None else flops * mesh.size

"""The train state: parameters, their EMA and the optimiser (AdamW after clipping, warm-up, decay)."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from jaxdiff.core import models
from jaxdiff.common.errors import UserError


class TrainState(train_state.TrainState):
    """Flax's TrainState plus an exponential moving average of the parameters."""

    ema_params: Any = None


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up to the peak (step i gets peak * (i + 1) / warmup, so no step is wasted at
    a zero rate), then constant or cosine decay to 0 at num_steps."""
    warmup_steps = max(1, train.warmup_steps)
    warmup = optax.linear_schedule(train.learning_rate / warmup_steps, train.learning_rate, warmup_steps - 1)
    if train.lr_schedule == "constant":
        after = optax.constant_schedule(train.learning_rate)
    elif train.lr_schedule == "cosine":
        after = optax.cosine_decay_schedule(train.learning_rate, max(1, train.num_steps - train.warmup_steps))
    else:
        raise UserError(f"unknown train.lr_schedule {train.lr_schedule!r}; choose 'constant' or 'cosine'")
    return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the warm-up schedule."""
    return optax.chain(
        optax.clip_by_global_norm(train.grad_clip),
        optax.adamw(learning_rate_schedule(train), b1=0.9, b2=train.adam_b2, weight_decay=train.weight_decay),
    )


def ema_decay(step: jax.Array, max_decay: float) -> jax.Array:
    """EMA decay with warm-up, min(max_decay, (1 + step) / (10 + step)): early averages forget fast."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(max_decay, (1.0 + step) / (10.0 + step))


def ema_update(ema_params: Any, params: Any, decay: jax.Array) -> Any:
    """ema <- decay * ema + (1 - decay) * params."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def create_train_state(config: ml_collections.ConfigDict, model: models.UNet, key: jax.Array) -> TrainState:
    """Fresh parameters (EMA = a copy of them) and optimiser state."""
    size = config.data.image_size
    variables = model.init(key, jnp.zeros((1, size, size, 3)), jnp.zeros((1,), jnp.int32),
                           jnp.zeros((1, config.embed.dim)), train=False)
    params = variables["params"]
    state = TrainState.create(apply_fn=model.apply, params=params, tx=make_optimizer(config.train),
                              ema_params=jax.tree.map(jnp.copy, params))
    # Flax starts `step` at the Python int 0, which jit traces as a weakly typed int32; a checkpoint
    # restores it strongly typed, so a resumed run compiled the step again (and missed the persistent
    # compilation cache). A strong int32 from the start gives fresh and restored states one signature.
    return state.replace(step=jnp.zeros((), jnp.int32))

"""The discrete-time Gaussian diffusion shared by training and the samplers.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t in {0, ..., T-1}. The network predicts eps or
v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0; `to_eps_and_x0` turns either into both.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.common.errors import UserError

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")


class Schedule(NamedTuple):
    """Per-timestep noise levels, float32 arrays of length T."""

    betas: jax.Array
    alphas_cumprod: jax.Array  # abar_t

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])


def make_schedule(name: str, num_timesteps: int) -> Schedule:
    """Linear betas (Ho et al., 1e-4..0.02 at T=1000) or the cosine abar (Nichol & Dhariwal)."""
    T = num_timesteps
    if name == "linear":
        scale = 1000.0 / T  # keeps the T=1000 endpoints meaningful for other T
        betas = np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)
    elif name == "cosine":
        s = 0.008
        f = np.cos((np.arange(T + 1, dtype=np.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    else:
        raise UserError(f"unknown diffusion.schedule {name!r}; choose one of {SCHEDULES}")
    alphas_cumprod = np.cumprod(1.0 - betas)
    return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alphas_cumprod, jnp.float32))


def _bcast(values_B: jax.Array, like: jax.Array) -> jax.Array:
    return values_B.reshape(values_B.shape + (1,) * (like.ndim - values_B.ndim))


def q_sample(schedule: Schedule, x0: jax.Array, t_B: jax.Array, noise: jax.Array) -> jax.Array:
    """Draws x_t from q(x_t | x_0) with the given noise."""
    abar = _bcast(schedule.alphas_cumprod[t_B], x0)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def training_target(schedule: Schedule, prediction: str, x0: jax.Array, noise: jax.Array, t_B: jax.Array) -> jax.Array:
    """What the network should output: eps, or v."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        abar = _bcast(schedule.alphas_cumprod[t_B], x0)
        return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * x0
    raise UserError(f"unknown diffusion.prediction {prediction!r}; choose one of {PREDICTIONS}")


def to_eps_and_x0(prediction: str, model_out: jax.Array, x_t: jax.Array, abar_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(eps, x0) implied by a network output at noise level abar (per example)."""
    abar = _bcast(abar_B, x_t)
    sqrt_abar, sqrt_1m = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
    if prediction == "eps":
        eps = model_out
        return eps, (x_t - sqrt_1m * eps) / sqrt_abar
    if prediction == "v":
        x0 = sqrt_abar * x_t - sqrt_1m * model_out
        return sqrt_1m * x_t + sqrt_abar * model_out, x0
    raise UserError(f"unknown diffusion.prediction {prediction!r}; choose one of {PREDICTIONS}")


def mse_per_example(model_out: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over all but the batch axis."""
    return jnp.mean(jnp.square(model_out - target), axis=tuple(range(1, model_out.ndim)))

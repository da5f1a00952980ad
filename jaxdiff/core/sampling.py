"""Samplers: DDPM (ancestral), DDIM, DPM-Solver++(2M) and its SDE form (also paired with DDPM's chain), each one jitted `lax.fori_loop`, in one table (SAMPLERS).

Every sampler evaluates the denoiser at N timesteps from T-1 down to 0 (`noise_levels`) and ends
on clean data (abar = 1). Classifier-free guidance runs the conditional and the null half in one
batch: out = null + g * (cond - null). Randomness is per example, folded from the key and the
example's global index, so an image does not depend on the batch it was drawn in, on how many
images were asked for, or on the number of devices.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxdiff.core import conditioning, diffusion, parallel
from jaxdiff.common.errors import UserError

SPACINGS = ("quadratic", "uniform", "logsnr")
# denoise(x_t, t_B, abar_B) -> (eps, x0): the network (or an exact predictor in tests) at timesteps
# t (fractional where the spacing asks for it) whose noise level abar is given alongside.
Denoiser = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def noise_levels(schedule: diffusion.Schedule, steps: int, spacing: str = "quadratic") -> tuple[np.ndarray, np.ndarray]:
    """The N timesteps the denoiser sees, from T-1 down to 0, and abar there with abar = 1 appended.

    "uniform" spaces t evenly; "quadratic" (DDIM paper, DPM-Solver's time_quadratic) puts more
    steps at low noise; "logsnr" spaces log(alpha/sigma) evenly. At steps == T every spacing is the
    T integer timesteps, the exact ancestral chain. Between integers abar is interpolated in log-SNR.
    """
    T = schedule.num_timesteps
    if not 1 <= steps <= T:
        raise UserError(f"sampling steps must be in [1, {T}], got {steps}")
    if spacing not in SPACINGS:
        raise UserError(f"unknown sample.spacing {spacing!r}; choose one of {SPACINGS}")
    abar = np.asarray(schedule.alphas_cumprod, np.float64)
    log_snr = np.log(abar) - np.log1p(-abar)  # decreasing in t
    grid = np.arange(T, dtype=np.float64)
    if steps == T or spacing == "uniform":
        ts = np.linspace(T - 1, 0, steps)
    elif spacing == "quadratic":
        ts = (T - 1) * np.linspace(1.0, 0.0, steps) ** 2
    else:
        ts = np.interp(np.linspace(log_snr[-1], log_snr[0], steps), log_snr[::-1], grid[::-1])
    abar_t = 1.0 / (1.0 + np.exp(-np.interp(ts, grid, log_snr)))
    return ts.astype(np.float32), np.append(abar_t, 1.0).astype(np.float32)


def _example_keys(key: jax.Array, first_index: jax.Array, batch: int) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(first_index + jnp.arange(batch))


def _normal_per_example(keys_B: jax.Array, step: Any, shape: tuple[int, ...]) -> jax.Array:
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, step), shape))(keys_B)


@dataclasses.dataclass(frozen=True)
class ChainNoise:
    """Each coarse step's noise as the full T-step DDPM chain's noise over the same stretch of time, summed.

    Fine step k of the T-step chain (from t = T-1-k to t - 1) draws z_k from the example's key folded with k. With
    the clean-data prediction held fixed, the ancestral steps of a stretch compose to one Gaussian step whose noise
    is sum_k w_k z_k, w_k = sigma_k times the x-coefficients of the later steps of the stretch; a coarse step
    (t_i -> t_i+1) takes that sum over the fine steps whose start lies in (t_i+1, t_i], normalised to unit
    variance. The fine steps' noises are independent standard normals and every fine step belongs to one coarse
    step, so each coarse noise is still an independent standard normal: the sampler's distribution is unchanged,
    but its draw of key j follows the same Brownian path as DDPM's T-step draw of key j, so the two readings of an
    image are correlated and a difference between the samplers is measured with far fewer images. A coarse
    step over no fine step with noise (the last, near t = 0) draws its own: index T + i, used by no fine step.
    """

    start: np.ndarray  # (steps,) the first index summed for coarse step i
    stop: np.ndarray  # (steps,) one past the last
    weights: np.ndarray  # (T + steps,) each index's weight, normalised within its coarse step

    @classmethod
    def of(cls, schedule: diffusion.Schedule, ts: np.ndarray) -> "ChainNoise":
        T = schedule.num_timesteps
        abar = np.asarray(schedule.alphas_cumprod, np.float64)
        t = np.arange(T)
        a_t, a_s = abar, np.append(1.0, abar[:-1])  # fine step from t to t - 1 (abar = 1 below t = 0)
        x_coef = np.sqrt(a_t / a_s) * (1 - a_s) / (1 - a_t)  # _ddpm_step's coefficient of x
        sigma = np.sqrt((1 - a_t / a_s) * (1 - a_s) / (1 - a_t))
        steps = len(ts)
        start, stop, weights = np.zeros(steps, np.int32), np.zeros(steps, np.int32), np.zeros(T + steps)
        for i in range(steps):
            upper, lower = float(ts[i]), float(ts[i + 1]) if i + 1 < steps else -1.0
            fine = t[(t > lower) & (t <= upper) & (sigma > 0)][::-1]  # in the chain's order: t descending
            if i + 1 == steps or fine.size == 0:
                start[i], stop[i], weights[T + i] = T + i, T + i + 1, 1.0
                continue
            # Later steps (smaller t) scale what an earlier step's noise contributes by their x-coefficients.
            later = np.append(np.cumprod(x_coef[fine][::-1])[::-1][1:], 1.0)
            w = sigma[fine] * later
            index = T - 1 - fine  # the chain's step index of each fine step
            weights[index] = w / np.sqrt(np.sum(w**2))
            start[i], stop[i] = index.min(), index.max() + 1
        return cls(start, stop, weights.astype(np.float32))

    def noise(self, keys_B: jax.Array, i: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Coarse step i's standard normal noise per example (a loop over its fine steps: no (steps, ...) array)."""
        start, stop, weights = jnp.asarray(self.start)[i], jnp.asarray(self.stop)[i], jnp.asarray(self.weights)

        def one(key):
            add = lambda k, z: z + weights[k] * jax.random.normal(jax.random.fold_in(key, k), shape)  # noqa: E731
            return jax.lax.fori_loop(start, stop, add, jnp.zeros(shape))

        return jax.vmap(one)(keys_B)


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What one sampler step sees: the denoiser at step i, the noise levels, fresh noise, eta."""

    predict: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (x, i) -> (eps, x0) at ts[i]
    abar: jax.Array  # abar at the N timesteps, then 1 (clean data)
    steps: int
    eta: float
    noise: Callable[[jax.Array], jax.Array]  # i -> per-example standard normal noise shaped like x


# A step maps (context, i, (x, x0 of the previous step)) to the same pair at step i + 1; after the
# last step, x is the sample.
Step = Callable[[StepContext, jax.Array, tuple[jax.Array, jax.Array]], tuple[jax.Array, jax.Array]]


def _ddpm_step(c: StepContext, i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Ancestral step with the posterior variance of q(x_s | x_t, x_0) (Ho et al. 2020)."""
    x, _ = carry
    a_t, a_s = c.abar[i], c.abar[i + 1]
    _, x0 = c.predict(x, i)
    beta = 1.0 - a_t / a_s
    mean = (jnp.sqrt(a_s) * beta / (1 - a_t)) * x0 + (jnp.sqrt(a_t / a_s) * (1 - a_s) / (1 - a_t)) * x
    var = beta * (1 - a_s) / (1 - a_t)
    return mean + jnp.sqrt(var) * c.noise(i), x0


def _ddim_step(c: StepContext, i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """DDIM (Song et al. 2021); eta = 0 is deterministic, eta = 1 DDPM-like."""
    x, _ = carry
    a_t, a_s = c.abar[i], c.abar[i + 1]
    eps, x0 = c.predict(x, i)
    sigma = c.eta * jnp.sqrt((1 - a_s) / (1 - a_t)) * jnp.sqrt(jnp.maximum(1 - a_t / a_s, 0.0))
    x_next = jnp.sqrt(a_s) * x0 + jnp.sqrt(jnp.maximum(1 - a_s - sigma**2, 0.0)) * eps
    return x_next + sigma * c.noise(i), x0


def _multistep(c: StepContext, i: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Whether step i is the last, its step h in lambda = log(alpha / sigma), and the ratio r of the previous step to h.

    The bookkeeping of DPM-Solver++'s multistep forms; the last step has no next lambda (clean data is at
    infinity), so h is 0 there and the solvers return the data prediction instead."""
    lam = 0.5 * (jnp.log(c.abar[:-1]) - jnp.log1p(-c.abar[:-1]))  # log(alpha_t / sigma_t) at the N timesteps
    is_last = i == c.steps - 1
    lam_s = jnp.where(is_last, lam[i], lam[jnp.minimum(i + 1, c.steps - 1)])
    h = lam_s - lam[i]
    r = (lam[i] - lam[jnp.maximum(i - 1, 0)]) / jnp.where(h == 0, 1.0, h)
    return is_last, h, r


def _dpmpp2m_step(c: StepContext, i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """DPM-Solver++(2M) (Lu et al. 2022), data-prediction form, first order on the first and last step."""
    x, x0_prev = carry
    _, x0 = c.predict(x, i)
    a_t, a_s = c.abar[i], c.abar[i + 1]
    is_last, h, r = _multistep(c, i)
    second_order = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
    D = jnp.where((i == 0) | is_last, x0, second_order)
    x_next = jnp.sqrt((1 - a_s) / (1 - a_t)) * x - jnp.sqrt(a_s) * jnp.expm1(-h) * D
    return jnp.where(is_last, D, x_next), x0


def _dpmpp2m_sde_step(c: StepContext, i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """DPM-Solver++(2M) SDE (Lu et al. 2022), data-prediction form with fresh noise at every step.

    The midpoint update of diffusers' `sde-dpmsolver++` (and k-diffusion's `dpmpp_2m_sde`): with
    h = lambda_s - lambda_t and D1 the backward difference of x0 scaled by the step ratio,
    x_s = (sigma_s / sigma_t) e^-h x_t + alpha_s (1 - e^-2h) (x0 + D1 / 2) + sigma_s sqrt(1 - e^-2h) z.
    First order on the first step; the last step returns the predicted clean data, as DPM-Solver++ does.
    """
    x, x0_prev = carry
    _, x0 = c.predict(x, i)
    a_t, a_s = c.abar[i], c.abar[i + 1]
    is_last, h, r = _multistep(c, i)
    d1 = jnp.where(i == 0, jnp.zeros_like(x0), (x0 - x0_prev) / jnp.where(r == 0, 1.0, r))
    kept = -jnp.expm1(-2.0 * h)  # 1 - e^-2h: the share of the variance that is fresh noise
    x_next = (jnp.sqrt((1 - a_s) / (1 - a_t)) * jnp.exp(-h) * x + jnp.sqrt(a_s) * kept * (x0 + 0.5 * d1)
              + jnp.sqrt((1 - a_s) * kept) * c.noise(i))
    return jnp.where(is_last, x0, x_next), x0


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A sampler: its step, the number of steps it takes unless told otherwise, and whether it draws fresh noise."""

    step: Step
    default_steps: int
    stochastic: bool  # fresh noise at every step (DDPM, SDE solvers); DDIM is stochastic only with eta > 0
    chain_noise: bool = False  # its noise is the T-step DDPM chain's, summed over each step (ChainNoise)


# Adding a sampler is one step function and one line here.
SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler(_ddpm_step, default_steps=1000, stochastic=True),  # the full chain the model was trained on
    "ddim": Sampler(_ddim_step, default_steps=50, stochastic=False),
    "dpmpp2m": Sampler(_dpmpp2m_step, default_steps=20, stochastic=False),
    "dpmpp2m_sde": Sampler(_dpmpp2m_sde_step, default_steps=50, stochastic=True),
    # The same solver and law, its noise summed from DDPM's T-step chain (ChainNoise): an agreement study draws it
    # to pair its images with DDPM's (docs/preregistration_sde_sampler.md); the fresh form above is cheaper to run.
    "dpmpp2m_sde_paired": Sampler(_dpmpp2m_sde_step, default_steps=50, stochastic=True, chain_noise=True),
}


def check_sampler(name: str) -> Sampler:
    """The registered sampler `name`; any other name is a UserError listing the choices."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def steps_for(sample_config: Any, sampler: str) -> int:
    """Steps for `sampler`: the config's sample.steps when set (> 0), else the sampler's default."""
    return int(sample_config.get("steps", 0) or check_sampler(sampler).default_steps)


def run_sampler(denoise: Denoiser, schedule: diffusion.Schedule, x_T: jax.Array, keys_B: jax.Array, *,
                sampler: str, steps: int, spacing: str = "quadratic", eta: float = 0.0,
                clip_x0: bool = False) -> jax.Array:
    """Integrates from x_T (noise) to data with `sampler`; traceable, so it runs inside jit."""
    chosen = check_sampler(sampler)
    step = chosen.step
    ts_np, abar_np = noise_levels(schedule, steps, spacing)
    ts, abar = jnp.asarray(ts_np), jnp.asarray(abar_np)
    B = x_T.shape[0]

    def predict(x, i):
        eps, x0 = denoise(x, jnp.full((B,), ts[i]), jnp.full((B,), abar[i]))
        if clip_x0:  # data live in [-1, 1]; re-derive eps so the update stays consistent
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = (x - jnp.sqrt(abar[i]) * x0) / jnp.sqrt(1.0 - abar[i])
        return eps, x0

    shape = x_T.shape[1:]
    if chosen.chain_noise:
        chain = ChainNoise.of(schedule, ts_np)
        noise = lambda i: chain.noise(keys_B, i, shape)  # noqa: E731
    else:
        noise = lambda i: _normal_per_example(keys_B, i, shape)  # noqa: E731
    context = StepContext(predict, abar, steps, eta, noise)
    x, _ = jax.lax.fori_loop(0, steps, lambda i, carry: step(context, i, carry), (x_T, jnp.zeros_like(x_T)))
    return x


def guided_denoiser(apply_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array], prediction: str,
                    cond_BK: jax.Array, guidance: float) -> Denoiser:
    """The denoiser of a network `apply_fn(x, t, word)`, with classifier-free guidance if guidance != 1."""

    def denoise(x_t, t_B, abar_B):
        if guidance == 1.0:
            out = apply_fn(x_t, t_B, cond_BK)
        else:  # conditional and null halves in one batch
            both = apply_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t_B, t_B]),
                            jnp.concatenate([cond_BK, conditioning.null_like(cond_BK)]))
            cond_out, null_out = jnp.split(both, 2)
            out = null_out + guidance * (cond_out - null_out)
        return diffusion.to_eps_and_x0(prediction, out, x_t, abar_B)

    return denoise


def chunking(n: int, batch_size: int, devices: int) -> tuple[int, int]:
    """How `ImageSampler.sample` splits n conditions over `devices`: the rows of each chunk (batch_size, a
    multiple of the device count) and the rows each chunk is padded to. One shape for every chunk (one
    compilation): the full batch when there are several chunks, else the next multiple of the device count;
    the padding rows are dropped."""
    batch_size = max(devices, batch_size // devices * devices)
    return batch_size, batch_size if n > batch_size else -(-n // devices) * devices


class ImageSampler:
    """Draws images from a trained model: jitted per (sampler, steps, guidance, ...), sharded over a mesh."""

    def __init__(self, model: Any, schedule: diffusion.Schedule, prediction: str, image_shape: tuple[int, int, int],
                 mesh: jax.sharding.Mesh | None = None):
        self.model, self.schedule, self.prediction, self.image_shape = model, schedule, prediction, image_shape
        self.mesh = mesh
        self._compiled: dict[tuple, Callable] = {}

    def _fn(self, sampler: str, steps: int, spacing: str, guidance: float, eta: float, clip_x0: bool) -> Callable:
        signature = (sampler, steps, spacing, float(guidance), float(eta), bool(clip_x0))
        if signature not in self._compiled:
            def generate(params, cond_BK, key, first_index):
                B = cond_BK.shape[0]
                keys_B = _example_keys(key, first_index, B)
                x_T = jax.vmap(lambda k: jax.random.normal(k, self.image_shape))(keys_B)
                apply_fn = lambda x, t, w: self.model.apply({"params": params}, x, t, w, train=False)  # noqa: E731
                denoise = guided_denoiser(apply_fn, self.prediction, cond_BK, guidance)
                return run_sampler(denoise, self.schedule, x_T, jax.vmap(jax.random.fold_in, (0, None))(keys_B, 1),
                                   sampler=sampler, steps=steps, spacing=spacing, eta=eta, clip_x0=clip_x0)

            if self.mesh is None:
                self._compiled[signature] = jax.jit(generate)
            else:
                data, repl = NamedSharding(self.mesh, P("data")), NamedSharding(self.mesh, P())
                self._compiled[signature] = jax.jit(generate, in_shardings=(repl, data, repl, repl), out_shardings=data)
        return self._compiled[signature]

    def sample(self, params: Any, cond_NK: np.ndarray, seed: int, *, sampler: str, steps: int,
               spacing: str = "quadratic", guidance: float = 1.0, eta: float = 0.0, clip_x0: bool = True,
               batch_size: int = 256, first_index: int = 0,
               on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
        """Images (N, H, W, 3) in [-1, 1] for N conditions; example j uses the key (seed, first_index + j).

        `on_chunk(rows)` is called after each chunk of at most batch_size rows (a progress bar, say)."""
        fn = self._fn(sampler, steps, spacing, guidance, eta, clip_x0)
        key = jax.random.key(seed)
        cond_NK = np.asarray(cond_NK, np.float32)
        n = len(cond_NK)
        batch_size, padded = chunking(n, batch_size, self.mesh.size if self.mesh is not None else 1)
        out = []
        for start in range(0, n, batch_size):
            chunk = cond_NK[start:start + batch_size]
            chunk = np.concatenate([chunk, np.zeros((padded - len(chunk), chunk.shape[1]), np.float32)])
            if self.mesh is not None:  # a global array, also when the mesh spans several processes
                chunk = parallel.from_host(chunk, NamedSharding(self.mesh, P("data")))
            images = fn(params, chunk, key, jnp.int32(first_index + start))
            out.append(parallel.gather(images)[: min(batch_size, n - start)])
            if on_chunk is not None:
                on_chunk(len(out[-1]))
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)

    def sample_as_configured(self, params: Any, cond_NK: np.ndarray, seed: int, sample_config: Any, *,
                             sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
                             eta: float | None = None, first_index: int = 0,
                             on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
        """`sample` with every setting not given here taken from a config's `sample` section."""
        sampler = sampler or sample_config.sampler
        return self.sample(params, cond_NK, seed, sampler=sampler, steps=steps or steps_for(sample_config, sampler),
                           spacing=sample_config.spacing,
                           guidance=sample_config.guidance if guidance is None else guidance,
                           eta=sample_config.ddim_eta if eta is None else eta, clip_x0=sample_config.clip_x0,
                           batch_size=sample_config.batch_size, first_index=first_index, on_chunk=on_chunk)

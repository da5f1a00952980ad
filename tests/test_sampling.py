"""Samplers against an exact answer: Gaussian data, whose optimal denoiser has a closed form.

For x0 ~ N(mu, s^2) per dimension, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is Gaussian and
E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar). A sampler driven by
this predictor should return N(mu, s^2); `output_moments` measures what it returns.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import diffusion, sampling

MU, S = 0.3, 0.5
N, D = 4000, 8


def gaussian_denoiser(mu, s):
    def denoise(x, t, abar):
        ab = abar[:, None]
        eps = jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * mu) / (ab * s**2 + 1 - ab)
        return diffusion.to_eps_and_x0("eps", eps, x, abar)
    return denoise


def mixture_denoiser(means, s):
    """Exact E[eps | x_t] for an equal mixture of N(m_k, s^2): a posterior-weighted Gaussian denoiser."""
    means = jnp.asarray(means)

    def denoise(x, t, abar):
        ab = abar[:, None, None]
        var = ab * s**2 + 1 - ab
        diff = x[:, :, None] - jnp.sqrt(ab) * means[None, None, :]
        log_w = -0.5 * jnp.sum(diff**2, axis=1, keepdims=True) / var  # same variance: weights from distances
        w = jax.nn.softmax(log_w, axis=-1)
        eps = jnp.sum(w * jnp.sqrt(1 - ab) * diff / var, axis=-1)
        return diffusion.to_eps_and_x0("eps", eps, x, abar)
    return denoise


def draw(denoise, schedule, sampler, steps, seed=0, spacing="quadratic", eta=0.0, n=N):
    key = jax.random.key(seed)
    x_T = jax.random.normal(key, (n, D))
    return run(denoise, schedule, x_T, sampler, steps, spacing, eta, key)


def run(denoise, schedule, x_T, sampler, steps, spacing="quadratic", eta=0.0, key=None):
    keys = jax.vmap(lambda i: jax.random.fold_in(key if key is not None else jax.random.key(0), i))(jnp.arange(len(x_T)))
    fn = jax.jit(lambda x: sampling.run_sampler(denoise, schedule, x, keys, sampler=sampler, steps=steps,
                                                spacing=spacing, eta=eta))
    return np.asarray(fn(x_T))


def output_moments(denoise, schedule, sampler, steps, spacing="quadratic"):
    """Mean and std of what a sampler returns for Gaussian data.

    DDIM (eta 0) and DPM-Solver++ are deterministic and, with a linear denoiser, affine in x_T:
    x_0 = a x_T + b, so their output law is exactly N(b, a^2); two runs (x_T = 0, 1) give it with
    no sampling noise. DDPM and the SDE solver add fresh noise, so their moments are estimated from
    400,000 scalars (standard errors 0.0008 for the mean and 0.0006 for the std).
    """
    if sampling.SAMPLERS[sampler].stochastic:
        x = draw(denoise, schedule, sampler, steps, n=50_000)
        return float(x.mean()), float(x.std())
    y = run(denoise, schedule, jnp.stack([jnp.zeros(D), jnp.ones(D)]), sampler, steps, spacing)
    return float(y[0].mean()), float(np.abs(y[1] - y[0]).mean())


@functools.cache
def gaussian_moments(schedule_name: str, sampler: str, steps: int, spacing: str = "quadratic") -> tuple[float, float]:
    """`output_moments` for N(MU, S^2) data, computed once per setting for the session: several tests compare
    against full-length DDPM, whose 400,000 scalars through 1000 steps are the costliest draw here."""
    schedule = diffusion.make_schedule(schedule_name, 1000)
    return output_moments(gaussian_denoiser(MU, S), schedule, sampler, steps, spacing)


@pytest.fixture(scope="module")
def cosine():
    return diffusion.make_schedule("cosine", 1000)


@pytest.mark.parametrize("schedule_name", ["cosine", "linear"])
# DDPM's cases draw 400,000 scalars through every step of its chain: the slow tier.
@pytest.mark.parametrize("sampler, steps, tol", [pytest.param("ddpm", 1000, 0.004, marks=pytest.mark.slow),
                                                 ("ddim", 1000, 0.003), ("dpmpp2m", 20, 0.012), ("ddim", 50, 0.03),
                                                 pytest.param("ddpm", 250, 0.03, marks=pytest.mark.slow),
                                                 ("dpmpp2m_sde", 50, 0.008), ("dpmpp2m_sde", 100, 0.004),
                                                 ("dpmpp2m_sde_paired", 50, 0.008)])
def test_samplers_reproduce_a_gaussian(schedule_name, sampler, steps, tol):
    """Tolerances: sampling error (DDPM) plus discretisation error, which first-order samplers with
    few steps show as a shrunken variance (DDIM 50 steps: std 0.485 for 0.5 on the cosine schedule)."""
    mean, std = gaussian_moments(schedule_name, sampler, steps)
    assert abs(mean - MU) < tol and abs(std - S) < tol, (mean, std)


@pytest.mark.slow  # full-length DDPM
def test_dpm_solver_20_steps_is_as_close_as_full_ddpm():
    error = {}
    for sampler, steps in (("ddpm", 1000), ("dpmpp2m", 20)):
        mean, std = gaussian_moments("cosine", sampler, steps)
        error[sampler] = abs(mean - MU) + abs(std - S)
    assert error["dpmpp2m"] <= error["ddpm"] + 0.002, error  # 0.002: DDPM's own sampling error


def test_uniform_spacing_is_worse_for_dpm_solver():
    """Why quadratic is the default: uniform steps in t leave visible noise (std too high)."""
    _, quadratic = gaussian_moments("cosine", "dpmpp2m", 20, spacing="quadratic")
    _, uniform = gaussian_moments("cosine", "dpmpp2m", 20, spacing="uniform")
    assert abs(quadratic - S) < 0.005 and abs(uniform - S) > 0.03


@pytest.mark.slow  # full-length DDPM
def test_the_sde_solver_at_50_steps_is_as_close_as_full_ddpm_where_ddpm_at_50_is_not():
    """Why it is offered: a stochastic sampler (like DDPM, fresh noise each step) at a twentieth of DDPM's cost."""
    error = {}
    for sampler, steps in (("ddpm", 1000), ("dpmpp2m_sde", 50), ("ddpm", 50)):
        mean, std = gaussian_moments("cosine", sampler, steps)
        error[sampler, steps] = abs(mean - MU) + abs(std - S)
    assert error["dpmpp2m_sde", 50] <= error["ddpm", 1000] + 0.003, error  # 0.003: both sampling errors
    assert error["ddpm", 50] > 5 * error["dpmpp2m_sde", 50], error  # DDPM's variance shrinks with few steps


def test_the_sde_solver_draws_fresh_noise_per_key(cosine):
    denoise = gaussian_denoiser(MU, S)
    a, b = draw(denoise, cosine, "dpmpp2m_sde", 20, seed=0, n=64), draw(denoise, cosine, "dpmpp2m_sde", 20, seed=1, n=64)
    x_T = jax.random.normal(jax.random.key(0), (64, D))  # the same start, other step noise: other samples
    c = run(denoise, cosine, x_T, "dpmpp2m_sde", 20, key=jax.random.key(5))
    assert not np.allclose(a, b) and not np.allclose(a, c)
    np.testing.assert_array_equal(a, draw(denoise, cosine, "dpmpp2m_sde", 20, seed=0, n=64))  # same seed, same images


@pytest.mark.parametrize("steps", [20, 50, 1000])
def test_chain_noise_sums_every_noisy_fine_step_once_with_unit_variance(cosine, steps):
    ts, _ = sampling.noise_levels(cosine, steps, "quadratic")
    chain = sampling.ChainNoise.of(cosine, ts)
    T = cosine.num_timesteps
    used = np.concatenate([np.arange(a, b) for a, b in zip(chain.start, chain.stop)])
    assert len(used) == len(set(used))  # no fine step feeds two coarse steps: the coarse noises are independent
    # Every fine step that adds noise (all but the last, t = 0 -> clean data) is used; the last coarse step, which
    # returns the clean-data prediction, and any step over no noisy fine step draw an index no fine step has.
    assert set(used[used < T]) == set(range(T - 1)) and np.all(used[used >= T] >= T)
    for a, b in zip(chain.start, chain.stop):
        assert np.sum(chain.weights[a:b] ** 2) == pytest.approx(1.0, abs=1e-5)  # unit variance
    if steps == T:  # one fine step per step: the SDE solver draws exactly DDPM's noise
        np.testing.assert_array_equal(chain.start[:-1], np.arange(T - 1))
        np.testing.assert_allclose(chain.weights[: T - 1], 1.0)


@pytest.mark.parametrize("steps, spacing", [(20, "quadratic"), (28, "uniform")])
def test_chain_noise_weights_are_the_fine_chain_s_own(cosine, steps, spacing):
    """Each weight is what the fine steps of a stretch make of that step's noise, propagated step by step through the
    later ones (an independent loop, not ChainNoise's cumulative product); on a uniform grid whose stretches start and
    end on integers, the sum's variance before scaling is the coarse ancestral step's own (same law, one path)."""
    T = cosine.num_timesteps
    abar = np.asarray(cosine.alphas_cumprod, np.float64)
    ts, _ = sampling.noise_levels(cosine, steps, spacing)
    chain = sampling.ChainNoise.of(cosine, ts)
    for i in range(steps - 1):
        fine = [t for t in range(T - 1, 0, -1) if ts[i + 1] < t <= ts[i]]
        if not fine:
            continue
        coefficient = {}  # fine step index -> what its noise contributes at the end of the stretch
        for t in fine:
            a_t, a_s = abar[t], abar[t - 1]
            x_coef = np.sqrt(a_t / a_s) * (1 - a_s) / (1 - a_t)
            coefficient = {k: c * x_coef for k, c in coefficient.items()}
            coefficient[T - 1 - t] = np.sqrt((1 - a_t / a_s) * (1 - a_s) / (1 - a_t))
        norm = np.sqrt(sum(c**2 for c in coefficient.values()))
        for k, c in coefficient.items():
            assert chain.weights[k] == pytest.approx(c / norm, rel=1e-4, abs=1e-7)
        if spacing == "uniform":
            a_t, a_s = abar[int(ts[i])], abar[int(ts[i + 1])]
            coarse_sigma = np.sqrt((1 - a_t / a_s) * (1 - a_s) / (1 - a_t))
            assert norm == pytest.approx(coarse_sigma, rel=1e-6)


def test_chain_noise_is_standard_normal_per_step(cosine):
    ts, _ = sampling.noise_levels(cosine, 20, "quadratic")
    chain = sampling.ChainNoise.of(cosine, ts)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(20_000))
    z = np.stack([np.asarray(chain.noise(keys, jnp.int32(i), (1,)))[:, 0] for i in (0, 9, 18)])
    assert np.all(np.abs(z.mean(axis=1)) < 0.03) and np.all(np.abs(z.std(axis=1) - 1) < 0.03)
    assert np.all(np.abs(np.corrcoef(z)[np.triu_indices(3, 1)]) < 0.03)  # independent across steps


def test_the_paired_sde_solver_follows_the_full_chain_s_path_for_the_same_key(cosine):
    """An image drawn by the paired SDE solver on 50 steps and by DDPM on all 1000 from the same key follow one
    Brownian path: their samples are close (so an agreement study pairs them), yet its law is the fresh solver's
    (`test_samplers_reproduce_a_gaussian`). With another key's step noise, or fresh noise, the pairs are only as
    alike as the shared start makes them."""
    denoise, n = mixture_denoiser([-0.6, 0.6], 0.15), 2000
    sde, ddpm = draw(denoise, cosine, "dpmpp2m_sde_paired", 50, n=n), draw(denoise, cosine, "ddpm", 1000, n=n)
    x_T = jax.random.normal(jax.random.key(0), (n, D))
    other = run(denoise, cosine, x_T, "dpmpp2m_sde_paired", 50, key=jax.random.key(5))  # same start, other path
    fresh = draw(denoise, cosine, "dpmpp2m_sde", 50, n=n)  # the same solver drawing fresh noise: unpaired
    same_mode = np.mean((sde > 0) == (ddpm > 0))
    assert same_mode > 0.97, same_mode
    assert np.mean((other > 0) == (ddpm > 0)) < 0.8 and np.mean((fresh > 0) == (ddpm > 0)) < 0.8


@pytest.mark.parametrize("sampler, steps", [pytest.param("ddpm", 1000, marks=pytest.mark.slow), ("dpmpp2m", 20),
                                            ("dpmpp2m_sde", 50), ("dpmpp2m_sde_paired", 50)])
def test_samplers_recover_a_two_mode_mixture(cosine, sampler, steps):
    x = draw(mixture_denoiser([-0.6, 0.6], 0.15), cosine, sampler, steps)
    right = x > 0
    assert abs(right.mean() - 0.5) < 0.02  # both modes kept, in equal shares
    assert abs(x[right].mean() - 0.6) < 0.02 and abs(x[~right].mean() + 0.6) < 0.02
    assert abs(x[right].std() - 0.15) < 0.02


def test_ddim_with_eta_1_matches_ddpm(cosine):
    denoise = gaussian_denoiser(MU, S)
    ddim = draw(denoise, cosine, "ddim", 100, eta=1.0, spacing="uniform")
    ddpm = draw(denoise, cosine, "ddpm", 100, spacing="uniform")
    np.testing.assert_allclose(ddim, ddpm, atol=2e-4)  # same noise keys, same update


def test_noise_levels_full_length_is_the_integer_chain(cosine):
    for spacing in sampling.SPACINGS:
        ts, abar = sampling.noise_levels(cosine, 1000, spacing)
        np.testing.assert_array_equal(ts, np.arange(999, -1, -1))
        np.testing.assert_allclose(abar[:-1], np.asarray(cosine.alphas_cumprod)[::-1], rtol=1e-5)
        assert abar[-1] == 1.0
    ts, abar = sampling.noise_levels(cosine, 20, "quadratic")
    assert ts[0] == 999 and ts[-1] == 0 and np.all(np.diff(ts) < 0) and np.all(np.diff(abar) > 0)


def test_a_sampler_added_to_the_table_runs_everywhere(cosine, monkeypatch):
    """One step function and one table entry: run_sampler, steps_for and the checks pick it up."""
    def x0_step(c, i, carry):  # jumps straight to the predicted clean data: exact for a point mass
        _, x0 = c.predict(carry[0], i)
        return x0, x0

    monkeypatch.setitem(sampling.SAMPLERS, "x0", sampling.Sampler(x0_step, default_steps=3, stochastic=False))
    x = draw(gaussian_denoiser(MU, 1e-4), cosine, "x0", sampling.steps_for({"steps": 0}, "x0"), n=16)
    np.testing.assert_allclose(x, MU, atol=1e-3)
    assert sampling.steps_for({"steps": 7}, "x0") == 7 and sampling.steps_for({}, "ddpm") == 1000


def test_an_unknown_sampler_is_an_error_naming_the_choices(cosine):
    from jaxdiff.common.errors import UserError

    with pytest.raises(UserError, match="unknown sampler 'euler'; choose one of ddpm, ddim, dpmpp2m, dpmpp2m_sde, dpmpp2m_sde_paired"):
        draw(gaussian_denoiser(MU, S), cosine, "euler", 10, n=4)
    with pytest.raises(UserError, match="unknown sampler"):
        sampling.steps_for({"steps": 0}, "euler")

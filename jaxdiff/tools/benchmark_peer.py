"""The PyTorch peer of the benchmark: diffusers' UNet2DModel built to match a jaxdiff config.

Imported only by `python -m jaxdiff.benchmark --peer diffusers` (the `[bench]` extra); the rest
of jaxdiff never imports torch. The peer does what a jaxdiff training step does: the same
network shape (widths, blocks per level, attention levels, GroupNorm groups, scale-shift
conditioning, 2x2 patches via pixel_unshuffle), the word vector (scaled by sqrt(K)) mapped by a
linear layer and added to the time embedding, v- or eps-prediction MSE on the same cosine
schedule with per-example noise and timesteps, 5% null conditions, global-norm clipping,
AdamW, and an EMA of the parameters.
"""

import copy
import math
import time
from typing import Any, Callable

import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from jaxdiff.core import conditioning, sampling
from jaxdiff.common.errors import UserError


class PeerUNet(torch.nn.Module):
    """UNet2DModel on p x p patches, conditioned on a word vector added to the time embedding."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__()
        m = config.model
        self.patch, self.word_scale = m.patch_size, conditioning.word_scale(config.embed.dim)
        size = config.data.image_size // m.patch_size
        widths = [m.channels * mult for mult in m.channel_mults]
        level_sizes = [size // 2**i for i in range(len(widths))]
        attends = [s in tuple(m.attn_resolutions) for s in level_sizes]
        self.unet = UNet2DModel(
            sample_size=size, in_channels=3 * m.patch_size**2, out_channels=3 * m.patch_size**2,
            block_out_channels=tuple(widths), layers_per_block=m.num_res_blocks,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attends),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
            norm_num_groups=m.num_groups, attention_head_dim=m.head_dim, resnet_time_scale_shift="scale_shift",
            dropout=m.dropout, class_embed_type="identity", time_embedding_type="positional",
            flip_sin_to_cos=True, freq_shift=0)
        self.word = torch.nn.Linear(config.embed.dim, 4 * widths[0])

    def forward(self, x_BCHW: torch.Tensor, t_B: torch.Tensor, word_BK: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(x_BCHW, self.patch) if self.patch > 1 else x_BCHW
        out = self.unet(x, t_B, class_labels=self.word(word_BK * self.word_scale)).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out


def count_params(module: torch.nn.Module) -> int:
    """Number of scalars in a module's parameters."""
    return sum(p.numel() for p in module.parameters())


def _alphas_cumprod(config: ml_collections.ConfigDict) -> torch.Tensor:
    from jaxdiff.core import diffusion  # the same schedule as jaxdiff, as numbers

    schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    return torch.tensor(np.asarray(schedule.alphas_cumprod), dtype=torch.float32)


class PeerTrainer:
    """One training step of the peer: loss, backward, clipping, AdamW, EMA."""

    def __init__(self, config: ml_collections.ConfigDict, compiled: bool = False, seed: int = 0):
        torch.manual_seed(seed)
        self.config = config
        self.model = PeerUNet(config)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        t = config.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.learning_rate, betas=(0.9, t.adam_b2),
                                           weight_decay=t.weight_decay)
        self.alphas_cumprod = _alphas_cumprod(config)
        self.generator = torch.Generator().manual_seed(seed)
        self.forward: Callable = torch.compile(self.model) if compiled else self.model

    def step(self, images_BCHW: torch.Tensor, word_BK: torch.Tensor) -> float:
        """One optimiser step on a batch; returns the loss."""
        c = self.config
        B = images_BCHW.shape[0]
        t = torch.randint(0, c.diffusion.num_timesteps, (B,), generator=self.generator)
        noise = torch.randn(images_BCHW.shape, generator=self.generator)
        # conditioning.drop_words in torch: a dropped word becomes the null (all-zero) condition.
        keep = (torch.rand(B, generator=self.generator) >= c.cond.null_prob).float()[:, None]
        abar = self.alphas_cumprod[t][:, None, None, None]
        x_t = abar.sqrt() * images_BCHW + (1 - abar).sqrt() * noise
        target = noise if c.diffusion.prediction == "eps" else abar.sqrt() * noise - (1 - abar).sqrt() * images_BCHW
        loss = F.mse_loss(self.forward(x_t, t, word_BK * keep), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.train.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - c.train.ema_decay)
        return loss.item()


def time_training(trainer: PeerTrainer, batch_size: int, steps: int, seed: int = 0) -> float:
    """Seconds for `steps` peer training steps on a fixed synthetic batch."""
    rng = np.random.default_rng(seed)
    size = trainer.config.data.image_size
    images = torch.tensor(rng.uniform(-1, 1, (batch_size, 3, size, size)), dtype=torch.float32)
    words = torch.tensor(rng.normal(0, 1 / math.sqrt(trainer.config.embed.dim), (batch_size, trainer.config.embed.dim)),
                         dtype=torch.float32)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(images, words)
    return time.perf_counter() - start


def scheduler_for(config: ml_collections.ConfigDict, sampler: str) -> Any:
    """diffusers' scheduler for a jaxdiff sampler name, on the config's schedule and prediction."""
    kwargs = dict(num_train_timesteps=config.diffusion.num_timesteps,
                  beta_schedule="squaredcos_cap_v2" if config.diffusion.schedule == "cosine" else "linear",
                  prediction_type="v_prediction" if config.diffusion.prediction == "v" else "epsilon")
    schedulers = {"ddpm": lambda: DDPMScheduler(clip_sample=True, **kwargs),
                  "ddim": lambda: DDIMScheduler(clip_sample=True, **kwargs),
                  "dpmpp2m": lambda: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **kwargs),
                  "dpmpp2m_sde": lambda: DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2,
                                                                     **kwargs)}
    schedulers["dpmpp2m_sde_paired"] = schedulers["dpmpp2m_sde"]  # same law; diffusers draws fresh noise
    sampling.check_sampler(sampler)  # an unknown name is an error here too, never a silent stand-in
    if sampler not in schedulers:
        raise UserError(f"the PyTorch peer has no diffusers scheduler for sampler {sampler!r}; add one to "
                        f"jaxdiff/tools/benchmark_peer.py or benchmark without --peer")
    return schedulers[sampler]()


@torch.inference_mode()
def time_sampling(model: torch.nn.Module, config: ml_collections.ConfigDict, sampler: str, steps: int,
                  batch_size: int, seed: int = 0) -> float:
    """Seconds to draw `batch_size` images with diffusers' scheduler loop (conditional model, guidance 1)."""
    scheduler = scheduler_for(config, sampler)
    scheduler.set_timesteps(steps)
    size = config.data.image_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, 3, size, size), generator=generator)
    words = torch.randn((batch_size, config.embed.dim), generator=generator) / math.sqrt(config.embed.dim)
    start = time.perf_counter()
    for t in scheduler.timesteps:
        out = model(x, t.expand(batch_size), words)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return time.perf_counter() - start

"""The word-conditioned pixel-space UNet (Flax linen).

Conditioning as in docs/question.md: the vector `concat(sinusoidal(t), word_vector)` goes through an MLP
and then into every residual block (as a GroupNorm scale and shift, as in improved DDPM). An
all-zero word part is the null condition of classifier-free guidance.

Shapes are in names: B batch, H/W height/width, C channels, E embedding width, K word dims,
T tokens (H*W), N heads, D head dims.
"""

import functools
import itertools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdiff.core import conditioning

GROUP_NORM_EPSILON = 1e-6  # as nn.GroupNorm
_ZERO = nn.initializers.zeros  # zero-initialised output layers: each block starts as the identity


def sinusoidal_embedding(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Transformer-style sinusoidal features of (possibly fractional) timesteps, (B, dim)."""
    half = dim // 2
    freqs_F = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    angles_BF = t_B.astype(jnp.float32)[:, None] * freqs_F[None, :]
    return jnp.concatenate([jnp.cos(angles_BF), jnp.sin(angles_BF)], axis=-1)


def _group_stats(x_BHWC: jax.Array, num_groups: int) -> tuple[jax.Array, jax.Array]:
    """Per-(example, group) mean and 1/std of x, shaped (B, 1, 1, C) to broadcast back; float32."""
    C = x_BHWC.shape[-1]
    x = x_BHWC.astype(jnp.float32)
    # One pass over x: per-channel sums of x and x^2, then averaged within each group (tiny).
    sums_B2C = jnp.stack([jnp.sum(x, axis=(1, 2)), jnp.sum(x * x, axis=(1, 2))], axis=1)
    mean_BG, mean_sq_BG = _group_means(sums_B2C, x_BHWC.shape, num_groups)
    rstd_BG = jax.lax.rsqrt(jnp.maximum(mean_sq_BG - mean_BG**2, 0.0) + GROUP_NORM_EPSILON)
    return _per_channel(mean_BG, C), _per_channel(rstd_BG, C)


def _group_means(sums_B2C: jax.Array, shape_BHWC: tuple[int, ...], num_groups: int) -> tuple[jax.Array, jax.Array]:
    """Two per-(example, channel) sums over H and W turned into per-(example, group) means, (B, G) each."""
    B, H, W, C = shape_BHWC
    means_B2G = sums_B2C.reshape(B, 2, num_groups, C // num_groups).sum(-1) / (H * W * (C // num_groups))
    return means_B2G[:, 0], means_B2G[:, 1]


def _per_channel(v_BG: jax.Array, channels: int) -> jax.Array:
    """A per-group value repeated over the group's channels, (B, G) -> (B, 1, 1, C)."""
    return jnp.repeat(v_BG, channels // v_BG.shape[1], axis=1)[:, None, None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def group_norm(x_BHWC: jax.Array, scale_C: jax.Array, bias_C: jax.Array, num_groups: int) -> jax.Array:
    """Normalises x over (H, W, the channels of each group), then scales and shifts per channel."""
    return _group_norm_fwd(x_BHWC, scale_C, bias_C, num_groups)[0]


def _group_norm_fwd(x_BHWC, scale_C, bias_C, num_groups):
    mean, rstd = _group_stats(x_BHWC, num_groups)
    y = ((x_BHWC.astype(jnp.float32) - mean) * rstd * scale_C + bias_C).astype(x_BHWC.dtype)
    return y, (x_BHWC, scale_C, mean, rstd)


def _group_norm_bwd(num_groups, residuals, dy_BHWC):
    # With g = dy * scale and x_hat = (x - mean) * rstd, dx = rstd * (g - E_group[g] - x_hat * E_group[g * x_hat]).
    # Both group means and the scale/bias gradients come from one reduction pass: per-(example,
    # channel) sums of dy and dy * x_hat. The second pass writes dx.
    x_BHWC, scale_C, mean, rstd = residuals
    C = x_BHWC.shape[-1]
    x_hat = (x_BHWC.astype(jnp.float32) - mean) * rstd
    dy = dy_BHWC.astype(jnp.float32)
    sums_B2C = jnp.stack([jnp.sum(dy, axis=(1, 2)), jnp.sum(dy * x_hat, axis=(1, 2))], axis=1)
    dbias_C, dscale_C = sums_B2C[:, 0].sum(0), sums_B2C[:, 1].sum(0)
    mean_g_BG, mean_g_x_hat_BG = _group_means(sums_B2C * scale_C, x_BHWC.shape, num_groups)
    dx = rstd * (dy * scale_C - _per_channel(mean_g_BG, C) - x_hat * _per_channel(mean_g_x_hat_BG, C))
    return dx.astype(x_BHWC.dtype), dscale_C.astype(scale_C.dtype), dbias_C.astype(scale_C.dtype)


group_norm.defvjp(_group_norm_fwd, _group_norm_bwd)


class GroupNorm(nn.Module):
    """nn.GroupNorm's function and parameters (same names and initialisation, float32 statistics).

    Its own backward pass reads x and dy twice where autodiff of nn.GroupNorm makes more passes in
    a grouped layout (its gain on toy training is in docs/performance.md).
    """

    num_groups: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        C = x_BHWC.shape[-1]
        scale_C = self.param("scale", nn.initializers.ones, (C,), jnp.float32)
        bias_C = self.param("bias", nn.initializers.zeros, (C,), jnp.float32)
        return group_norm(x_BHWC, scale_C, bias_C, self.num_groups).astype(self.dtype)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the condition as a scale and shift of the second norm."""

    channels: int
    num_groups: int
    dropout: float
    dtype: Any

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, emb_BE: jax.Array, train: bool) -> jax.Array:
        h = nn.silu(GroupNorm(self.num_groups, dtype=self.dtype)(x_BHWC))
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype)(h)
        scale_shift = nn.Dense(2 * self.channels, dtype=self.dtype)(nn.silu(emb_BE))
        scale_BC, shift_BC = jnp.split(scale_shift, 2, axis=-1)
        h = GroupNorm(self.num_groups, dtype=self.dtype)(h)
        h = h * (1 + scale_BC[:, None, None, :]) + shift_BC[:, None, None, :]
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype, kernel_init=_ZERO)(h)
        if x_BHWC.shape[-1] != self.channels:
            # A 1x1 convolution, written as a Dense on the channel axis: the same function and
            # initialisation, but its weight gradient is one matmul, where XLA:CPU would
            # transpose both operands for a convolution's weight gradient.
            x_BHWC = nn.Dense(self.channels, dtype=self.dtype)(x_BHWC)
        return x_BHWC + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, residual."""

    head_dim: int
    num_groups: int
    dtype: Any

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        B, H, W, C = x_BHWC.shape
        num_heads = max(1, C // self.head_dim)
        h_BTC = GroupNorm(self.num_groups, dtype=self.dtype)(x_BHWC).reshape(B, H * W, C)
        qkv = nn.DenseGeneral((3, num_heads, C // num_heads), dtype=self.dtype)(h_BTC)
        q_BTND, k_BTND, v_BTND = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        out_BTND = jax.nn.dot_product_attention(q_BTND, k_BTND, v_BTND)
        out_BTC = nn.DenseGeneral(C, axis=(-2, -1), dtype=self.dtype, kernel_init=_ZERO)(out_BTND)
        return x_BHWC + out_BTC.reshape(B, H, W, C)


def patchify(x_BHWC: jax.Array, p: int) -> jax.Array:
    """Folds p x p pixel patches into channels: (B, H, W, C) -> (B, H/p, W/p, p*p*C)."""
    if p == 1:
        return x_BHWC
    B, H, W, C = x_BHWC.shape
    x = x_BHWC.reshape(B, H // p, p, W // p, p, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H // p, W // p, p * p * C)


def _merge_taps(kernel: jax.Array, phase: int, axis: int) -> jax.Array:
    """The 2 taps a 3-tap kernel axis reduces to on a nearest-upsampled axis, for output phase 0 or 1."""
    k0, k1, k2 = (jnp.take(kernel, i, axis=axis) for i in range(3))
    return jnp.stack([k0, k1 + k2] if phase == 0 else [k0 + k1, k2], axis=axis)


def conv3x3_of_upsampled(x_BHWC: jax.Array, kernel_33IO: jax.Array, precision: Any = None) -> jax.Array:
    """SAME 3x3 convolution of x upsampled 2x (nearest), run at x's resolution: 4/9 of the FLOPs.

    Output pixel (2i + a, 2j + b) sees upsampled rows 2i + a - 1 .. 2i + a + 1, which are input rows
    i - 1, i, i (a = 0) or i, i, i + 1 (a = 1), and likewise for columns. So each of the four output
    phases (a, b) is a 2x2 convolution of x with the kernel's taps summed, and the phases interleave
    into the upsampled output. Exact up to float rounding (tests/test_train.py checks it).
    """
    B, H, W, _ = x_BHWC.shape
    rows = []
    for a in (0, 1):
        kernel_23IO = _merge_taps(kernel_33IO, a, axis=0)
        phases = [jax.lax.conv_general_dilated(
            x_BHWC, _merge_taps(kernel_23IO, b, axis=1), (1, 1), ((1 - a, a), (1 - b, b)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision) for b in (0, 1)]
        rows.append(jnp.stack(phases, axis=3))                     # (B, H, W, 2, O)
    return jnp.stack(rows, axis=2).reshape(B, 2 * H, 2 * W, -1)  # (B, H, 2, W, 2, O) -> upsampled


def _conv_of_upsampled(lhs, rhs, window_strides, padding, *, precision=None, **unused_conv_args):
    """nn.Conv's `conv_general_dilated` hook for a SAME, stride-1 3x3 Conv applied to lhs upsampled 2x (nearest)."""
    if tuple(window_strides) != (1, 1) or padding != "SAME" or rhs.shape[:2] != (3, 3):
        raise ValueError(f"conv3x3_of_upsampled needs a SAME stride-1 3x3 Conv, got {rhs.shape[:2]}, "
                         f"strides {window_strides}, padding {padding}")
    return conv3x3_of_upsampled(lhs, rhs, precision)


def unpatchify(x_BhwP: jax.Array, p: int, channels: int) -> jax.Array:
    """Inverse of `patchify`."""
    if p == 1:
        return x_BhwP
    B, h, w, _ = x_BhwP.shape
    x = x_BhwP.reshape(B, h, w, p, p, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(B, h * p, w * p, channels)


class UNet(nn.Module):
    """Predicts the noise (or v) of x_t given the timestep and the word vector."""

    channels: int
    channel_mults: Sequence[int]
    num_res_blocks: int
    attn_resolutions: Sequence[int]
    head_dim: int
    num_groups: int
    dropout: float
    patch_size: int = 1
    time_embed_dim: int = 128
    dtype: Any = jnp.float32
    remat: bool = False  # recompute residual blocks in the backward pass: less memory, ~1/3 more compute

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, t_B: jax.Array, word_BK: jax.Array, train: bool = False) -> jax.Array:
        out_channels = x_BHWC.shape[-1]
        emb_dim = 4 * self.channels
        # docs/question.md: concat(positional encoding of t, word vector), fed forward through an MLP. The
        # word is scaled to unit-variance entries like the sinusoidal features (jaxdiff/core/conditioning.py),
        # so it is not drowned out at init; the null condition (zeros) stays zero.
        word_BK = word_BK.astype(jnp.float32) * conditioning.word_scale(word_BK.shape[-1])
        cond_BF = jnp.concatenate([sinusoidal_embedding(t_B, self.time_embed_dim), word_BK], axis=-1)
        emb_BE = nn.Dense(emb_dim, dtype=self.dtype)(cond_BF)
        emb_BE = nn.Dense(emb_dim, dtype=self.dtype)(nn.silu(emb_BE))

        block = dict(num_groups=self.num_groups, dropout=self.dropout, dtype=self.dtype)
        # static_argnums counts `self`: index 3 is `train`, a Python bool.
        block_cls = nn.remat(ResBlock, static_argnums=(3,)) if self.remat else ResBlock
        block_ids = itertools.count()

        def res_block(channels: int, h: jax.Array) -> jax.Array:
            # Named as linen would name ResBlock itself, so remat on or off gives the same parameter tree.
            return block_cls(channels, name=f"ResBlock_{next(block_ids)}", **block)(h, emb_BE, train)

        attend = lambda h: AttentionBlock(self.head_dim, self.num_groups, self.dtype)(h)  # noqa: E731

        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype)(patchify(x_BHWC.astype(self.dtype), self.patch_size))
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = res_block(self.channels * mult, h)
                if h.shape[1] in self.attn_resolutions:
                    h = attend(h)
                skips.append(h)
            if level < len(self.channel_mults) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype)(h)
                skips.append(h)

        h = res_block(h.shape[-1], h)
        h = attend(h)
        h = res_block(h.shape[-1], h)

        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = res_block(self.channels * mult, jnp.concatenate([h, skips.pop()], axis=-1))
                if h.shape[1] in self.attn_resolutions:
                    h = attend(h)
            if level > 0:
                # Nearest upsampling then a 3x3 Conv, fused: the Conv keeps its parameters (a 3x3
                # kernel and a bias) but runs at the low resolution (faster: docs/performance.md).
                h = nn.Conv(h.shape[-1], (3, 3), dtype=self.dtype, conv_general_dilated=_conv_of_upsampled)(h)

        h = nn.silu(GroupNorm(self.num_groups, dtype=self.dtype)(h))
        h = nn.Conv(self.patch_size**2 * out_channels, (3, 3), dtype=self.dtype, kernel_init=_ZERO)(h)
        return unpatchify(h, self.patch_size, out_channels).astype(jnp.float32)


def create_model(config: ml_collections.ConfigDict) -> UNet:
    """The UNet a config describes (model.* and cond.time_embed_dim)."""
    m = config.model
    if config.data.image_size % (m.patch_size * 2 ** (len(m.channel_mults) - 1)):
        from jaxdiff.common.errors import UserError

        raise UserError(f"data.image_size {config.data.image_size} must be divisible by patch_size x 2^(levels-1) "
                        f"= {m.patch_size * 2 ** (len(m.channel_mults) - 1)}")
    return UNet(
        channels=m.channels, channel_mults=tuple(m.channel_mults), num_res_blocks=m.num_res_blocks,
        attn_resolutions=tuple(m.attn_resolutions), head_dim=m.head_dim, num_groups=m.num_groups,
        dropout=m.dropout, patch_size=m.patch_size, time_embed_dim=config.cond.time_embed_dim,
        dtype={"float32": jnp.float32, "bfloat16": jnp.bfloat16}[m.dtype], remat=m.remat,
    )


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))

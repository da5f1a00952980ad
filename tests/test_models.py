"""The core floor's model and train state: the UNet's shapes and pinned size, its fused layers against
their references (upsample-conv, GroupNorm, patchify), bf16 compute, remat, the EMA."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config, trees_close
from jaxdiff.core import models
from jaxdiff.core.state import ema_decay, ema_update


def test_unet_output_shape_and_parameter_count(tiny_dataset):
    config = tiny_config(tiny_dataset)
    model = models.create_model(config)
    x = jnp.ones((3, 16, 16, 3))
    params = model.init(jax.random.key(0), x, jnp.zeros((3,)), jnp.zeros((3, 128)))["params"]
    out = model.apply({"params": params}, x, jnp.array([0, 10, 999]), jnp.ones((3, 128)))
    assert out.shape == (3, 16, 16, 3) and out.dtype == jnp.float32
    assert models.count_params(params) == 208_908  # pinned: a change in the architecture shows here
    # Output layers start at zero, so the untrained network predicts exactly zero.
    assert float(jnp.abs(out).max()) == 0.0


def test_conv_of_upsampled_matches_conv_after_resize():
    """The fused upsample-conv equals nearest upsampling then a SAME 3x3 conv, in value and gradient."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 4))  # odd sizes: every border case
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
    weights = jax.random.normal(jax.random.key(2), (2, 6, 10, 6))

    def reference(x, kernel):
        upsampled = jax.image.resize(x, (2, 6, 10, 4), "nearest")
        return jax.lax.conv_general_dilated(upsampled, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(models.conv3x3_of_upsampled(x, kernel), reference(x, kernel), rtol=1e-5, atol=1e-5)
    grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * weights), argnums=(0, 1))(x, kernel)
             for f in (models.conv3x3_of_upsampled, reference)]
    for fused, expected in zip(*grads):
        np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_group_norm_matches_flax(dtype):
    """models.GroupNorm (own backward pass) equals nn.GroupNorm: parameters, values and gradients."""
    x = jax.random.normal(jax.random.key(0), (3, 4, 6, 24)) * 3 + 1
    weights = jax.random.normal(jax.random.key(1), (3, 4, 6, 24))
    ours, reference = models.GroupNorm(8, dtype=dtype), nn.GroupNorm(8, dtype=dtype)
    params = reference.init(jax.random.key(2), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(2), x)) == jax.tree.map(jnp.shape, params)
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(3), p.shape), params)  # not the identity
    tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
    out = ours.apply(params, x)
    assert out.dtype == dtype
    trees_close(out.astype(jnp.float32), reference.apply(params, x).astype(jnp.float32), rtol=tolerance, atol=tolerance)
    loss = lambda module: lambda p, x: jnp.sum(module.apply(p, x).astype(jnp.float32) * weights)  # noqa: E731
    trees_close(jax.grad(loss(ours), argnums=(0, 1))(params, x), jax.grad(loss(reference), argnums=(0, 1))(params, x),
                       rtol=tolerance, atol=tolerance * 10)


def test_patchify_round_trip():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    patched = models.patchify(x, 2)
    assert patched.shape == (2, 4, 4, 12)
    np.testing.assert_array_equal(models.unpatchify(patched, 2, 3), x)
    np.testing.assert_array_equal(patched[0, 0, 0].reshape(2, 2, 3), x[0, :2, :2])  # a patch is a 2x2 block


def test_bfloat16_compute_keeps_float32_parameters(tiny_dataset):
    config = tiny_config(tiny_dataset, model__dtype="bfloat16")
    model = models.create_model(config)
    params = model.init(jax.random.key(0), jnp.ones((1, 16, 16, 3)), jnp.zeros((1,)), jnp.zeros((1, 128)))["params"]
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    out = model.apply({"params": params}, jnp.ones((1, 16, 16, 3)), jnp.zeros((1,)), jnp.zeros((1, 128)))
    assert out.dtype == jnp.float32


def test_ema_update_matches_its_formula():
    assert float(ema_decay(0, 0.999)) == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert float(ema_decay(90, 0.999)) == pytest.approx(0.91)
    assert float(ema_decay(10**6, 0.999)) == pytest.approx(0.999)
    ema, params = {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([3.0, -2.0])}
    new = ema_update(ema, params, jnp.float32(0.75))
    np.testing.assert_allclose(new["w"], 0.75 * np.array([1.0, 2.0]) + 0.25 * np.array([3.0, -2.0]))


@pytest.mark.slow  # compiles the UNet's gradient twice
def test_remat_gives_the_same_parameters_and_gradients(tiny_dataset):
    """model.remat trades compute for memory only: same parameter tree (checkpoints interchange), same gradients."""
    grads, names = [], []
    x = jax.random.normal(jax.random.key(3), (2, 16, 16, 3))
    for remat in (False, True):  # one level (with attention): half the tiny UNet to compile, twice
        model = models.create_model(tiny_config(tiny_dataset, model__remat=remat, model__channel_mults=(1,),
                                                model__attn_resolutions=(8,)))
        params = model.init(jax.random.key(0), x, jnp.zeros((2,)), jnp.zeros((2, 128)))["params"]
        params = jax.tree.map(lambda a: a + 0.01 * jax.random.normal(jax.random.key(5), a.shape), params)
        loss = lambda p: (model.apply({"params": p}, x, jnp.ones((2,)), jnp.ones((2, 128)), train=True) ** 2).sum()  # noqa: E731
        grads.append(jax.jit(jax.grad(loss))(params))
        names.append(jax.tree_util.tree_structure(params))
    assert names[0] == names[1]
    trees_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)

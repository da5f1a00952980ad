"""The word condition in one place: which vector a word gives the model, and what "no word" is.

docs/question.md has the mechanics; here is each rule once:
- the three examples an image gives (`COND_KINDS`): its first word, its second word, their mean;
- the null condition is the all-zero vector: training drops a word to it with probability
  cond.null_prob (condition dropout), and classifier-free guidance samples it as the unconditional
  half; evaluation and `jaxdiff.sample --null` read the unconditional model with it;
- the projected vectors have unit norm, entries ~N(0, 1/K); the model multiplies them by sqrt(K)
  (`word_scale`) so that they have unit variance, like the sinusoidal time features.
The functions work on NumPy, JAX and TensorFlow arrays alike where they take arrays.
"""

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.common.errors import UserError

COND_KINDS = ("first", "second", "mean")  # the examples each image gives, in this order


def check_kinds(kinds: Sequence[str]) -> None:
    """A config's data.cond_kinds must be a non-empty subset of COND_KINDS."""
    unknown = [k for k in kinds if k not in COND_KINDS]
    if unknown or not kinds:
        raise UserError(f"data.cond_kinds {tuple(kinds)} must be a non-empty subset of {COND_KINDS}")


def of_kind(kind: str, first: Any, second: Any) -> Any:
    """The condition of one kind from an image's two projected word vectors."""
    return {"first": first, "second": second, "mean": (first + second) / 2.0}[kind]


def null_vector(dim: int) -> np.ndarray:
    """The null condition: no word."""
    return np.zeros(dim, np.float32)


def null_like(cond_BK: jax.Array) -> jax.Array:
    """A batch of null conditions shaped like `cond_BK` (inside jit)."""
    return jnp.zeros_like(cond_BK)


def drop_words(cond_BK: jax.Array, keys_B: jax.Array, null_prob: float) -> jax.Array:
    """Condition dropout: each example's word becomes the null condition with probability `null_prob`."""
    keep_B = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - null_prob))(keys_B)
    return jnp.where(keep_B[:, None], cond_BK, null_like(cond_BK))


def word_scale(dim: int) -> float:
    """What the model multiplies a K-dimensional projected vector by: sqrt(K), to unit-variance entries."""
    return math.sqrt(dim)


def random_conditions(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """`count` random vectors distributed like projected word vectors (entries ~N(0, 1/K)), for benchmarks."""
    return rng.normal(0.0, 1.0 / math.sqrt(dim), (count, dim)).astype(np.float32)

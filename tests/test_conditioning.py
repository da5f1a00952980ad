"""The conditioning rules (jaxdiff/core/conditioning.py): kinds, the null condition, condition dropout, the scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import conditioning
from jaxdiff.common.errors import UserError


def test_the_three_kinds_of_an_image_and_their_check():
    first, second = np.array([1.0, 0.0]), np.array([0.0, 3.0])
    assert [conditioning.of_kind(k, first, second).tolist() for k in conditioning.COND_KINDS] == \
        [[1.0, 0.0], [0.0, 3.0], [0.5, 1.5]]
    conditioning.check_kinds(("mean", "first"))
    for bad in ((), ("first", "third")):
        with pytest.raises(UserError, match="must be a non-empty subset"):
            conditioning.check_kinds(bad)


def test_condition_dropout_replaces_words_by_the_null_vector_at_its_rate():
    cond = jnp.ones((20_000, 4))
    keys = jax.random.split(jax.random.key(0), len(cond))
    dropped = np.asarray(conditioning.drop_words(cond, keys, 0.05))
    is_null = np.all(dropped == conditioning.null_vector(4), axis=1)
    assert np.all(is_null | np.all(dropped == 1.0, axis=1))  # each row is its word or the null vector
    assert is_null.mean() == pytest.approx(0.05, abs=0.005)  # 3 standard errors
    assert not np.any(np.all(np.asarray(conditioning.drop_words(cond, keys, 0.0)) == 0.0, axis=1))


def test_projected_vectors_get_unit_variance_and_the_null_stays_zero():
    vectors = conditioning.random_conditions(np.random.default_rng(0), 4000, 128)
    assert np.linalg.norm(vectors, axis=1).mean() == pytest.approx(1.0, abs=0.01)
    assert (vectors * conditioning.word_scale(128)).std() == pytest.approx(1.0, abs=0.01)
    # The model sees the null condition as zeros whatever the scale: its word features vanish.
    assert np.all(conditioning.null_vector(128) * conditioning.word_scale(128) == 0.0)

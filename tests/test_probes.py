"""The sweep's probes (jaxdiff.studies.probes): the intervention along the gender direction."""

import numpy as np
import pytest

from jaxdiff.data import embed, vectors
from jaxdiff.studies import probes
from jaxdiff.data.classes import SEED_EVAL_WORDS, TRAIN_WORDS


def test_intervention_moves_the_she_he_score_by_the_asked_amounts():
    table = embed.build_table(vectors.load_source("word2vec-subset"), 128, 0)
    g = embed.GenderDirections.of(table).she_he_raw
    alphas = probes.intervention_alphas(table, 7)
    reach = max(abs(float(table.raw_vector(w) @ g)) for w in TRAIN_WORDS)
    assert len(alphas) == 7 and alphas[0] == pytest.approx(-reach) and alphas[-1] == pytest.approx(reach)
    for word in SEED_EVAL_WORDS:
        base = float(table.raw_vector(word) @ g)
        for alpha in alphas:
            moved = probes.intervened_vector(table, word, float(alpha))
            assert float(moved @ g) - base == pytest.approx(alpha, abs=1e-6)
            # Only the gender component moves: the rest of the vector is the word's own.
            rest = moved - float(moved @ g) * g
            assert np.allclose(rest, table.raw_vector(word) - base * g, atol=1e-6)

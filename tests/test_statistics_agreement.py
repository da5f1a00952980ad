"""Agreement of two readings (jaxdiff.statistics.agreement) on pooled differences with known answers."""

import numpy as np
import pytest

from jaxdiff.statistics import agreement, pooling


def test_a_difference_well_inside_the_limit_agrees_and_one_beyond_it_differs():
    # Nine members, each difference's SE 1 point: pooled SE 1/3 point, far inside +-2 points around 0.
    close = agreement.agreement(pooling.random_effects([0.0] * 9, [0.01 ** 2] * 9), 0.02)
    assert close.verdict == "agrees" and close.test.tost_p_value < 1e-6
    # 5 points away: the 95% interval lies beyond +2.
    far = agreement.agreement(pooling.random_effects([0.05] * 9, [0.01 ** 2] * 9), 0.02)
    assert far.verdict == "differs"
    # SE 2 points: neither shown within +-2 nor beyond it.
    wide = agreement.agreement(pooling.random_effects([0.0] * 4, [0.04 ** 2] * 4), 0.02)
    assert wide.verdict == "undecided"


def test_an_agreement_records_the_keys_of_the_frontier_table():
    difference = pooling.random_effects([0.0, 0.004, -0.002], [0.01 ** 2] * 3)
    result = agreement.agreement(difference, 0.02)
    record = result.as_record()
    assert list(record) == ["estimate", "ci95", "tau", "heterogeneity_p_value", "tost_p_value", "verdict", "model",
                            "hksj"]
    assert record["ci95"] == list(difference.ci95) and record["model"] == "independent"
    hksj = pooling.small_sample_equivalence(difference, 0.02)
    assert record["hksj"] == {"ci95": list(hksj.ci95), "tost_p_value": hksj.tost_p_value,
                              "verdict": agreement.AGREEMENT_VERDICTS[hksj.verdict]}
    assert "hksj" not in agreement.agreement(pooling.random_effects([0.0], [0.01 ** 2]), 0.02).as_record()


def test_a_crossed_grid_records_what_the_independent_formula_said():
    rng = np.random.default_rng(0)
    train, embed = np.repeat(np.arange(4), 4), np.tile(np.arange(4), 4)
    values = rng.normal(0, 0.003, 4)[train] + rng.normal(0, 0.003, 4)[embed] + rng.normal(0, 0.002, 16)
    difference = pooling.random_effects_over(values, [0.002 ** 2] * 16, (train, embed))
    record = agreement.agreement(difference, 0.02).as_record()
    assert record["model"] == "crossed" and "hksj" not in record  # HKSJ is for independent members
    plain = pooling.equivalence(difference.independent.estimate, difference.independent.se, 0.02)
    assert record["independent"] == {"ci95": list(difference.independent.ci95), "tost_p_value": plain.tost_p_value,
                                     "verdict": agreement.AGREEMENT_VERDICTS[plain.verdict]}
    assert record["tost_p_value"] == pytest.approx(pooling.equivalence_of(difference, 0.02).tost_p_value)


@pytest.mark.parametrize("verdicts, overall", [(["agrees", "agrees"], "agrees"), (["agrees", "differs"], "differs"),
                                               (["undecided", "agrees"], "undecided"),
                                               (["undecided", "differs"], "differs")])
def test_a_setting_agrees_only_when_every_word_does(verdicts, overall):
    assert agreement.overall_agreement(verdicts) == overall

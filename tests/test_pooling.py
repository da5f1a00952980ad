"""Pooled statistics on inputs with known answers."""

import numpy as np
import pytest
from scipy import stats

from jaxdiff.statistics import intervals, pooling


def test_members_that_agree_have_no_between_member_variance():
    result = pooling.random_effects([0.5, 0.5, 0.5, 0.5], [0.01] * 4)
    assert result.estimate == pytest.approx(0.5)
    assert result.tau2 == 0.0 and result.tau == 0.0
    assert result.se == pytest.approx(np.sqrt(0.01 / 4))  # the fixed-effect standard error
    assert result.ci95 == pytest.approx([0.5 - 1.959964 * 0.05, 0.5 + 1.959964 * 0.05], abs=1e-6)


def test_large_between_member_variance_widens_the_interval():
    # Equal sampling variances: tau^2 is the members' sample variance minus the sampling variance.
    shares = [0.2, 0.8, 0.3, 0.7]
    result = pooling.random_effects(shares, [0.01] * 4)
    assert result.tau2 == pytest.approx(np.var(shares, ddof=1) - 0.01, rel=1e-4)  # 0.07667
    assert result.se == pytest.approx(np.sqrt((0.01 + result.tau2) / 4), rel=1e-4)
    assert result.estimate == pytest.approx(0.5)
    assert result.ci95[1] - result.ci95[0] > 0.5  # against 0.2 when tau^2 is ignored


def test_heterogeneity_test_is_cochrans_q():
    # Q = sum of (effect - fixed-effect mean)^2 / variance on k - 1 degrees of freedom: here
    # (0.05^2 + 0.05^2) / 0.01 = 0.5 on 1, and 0 (p 1) for members that agree.
    assert pooling.random_effects([0.0, 0.1], [0.01, 0.01]).heterogeneity_p_value == pytest.approx(0.4795, abs=1e-4)
    assert pooling.random_effects([0.5] * 3, [0.01] * 3).heterogeneity_p_value == pytest.approx(1.0)
    assert pooling.random_effects([0.2, 0.8, 0.3, 0.7], [0.01] * 4).heterogeneity_p_value < 1e-4  # Q = 26 on 3
    assert pooling.random_effects([0.5], [0.01]).heterogeneity_p_value is None


def test_small_sample_interval_is_hksj_with_t_on_k_minus_1_degrees_of_freedom():
    from scipy import stats

    # Spread members: Paule-Mandel sets tau^2 so that the HKSJ scale is 1, so its error is the z-based one.
    spread = pooling.random_effects([0.2, 0.8, 0.3, 0.7], [0.01] * 4)
    assert spread.df == 3 and spread.se_hksj == pytest.approx(spread.se, rel=1e-4)
    # Members closer together than their variances say: the unmodified HKSJ error would be smaller
    # than the z-based one (here about a tenth); it is kept at least as large.
    close = pooling.random_effects([0.50, 0.51, 0.50], [0.01] * 3)
    assert close.tau2 == 0.0 and close.se_hksj == pytest.approx(close.se)
    # The TOST on t: at the estimate 0 and the margin t(3)'s 95th percentile errors away, p is 0.05.
    t95 = stats.t.ppf(0.95, 3)  # 2.353
    assert pooling.equivalence(0.0, 0.05 / t95, 0.05, df=3).tost_p_value == pytest.approx(0.05, abs=1e-9)
    assert pooling.equivalence(0.0, 0.05 / t95, 0.05).tost_p_value < 0.01  # the z-test is more lenient
    assert pooling.equivalence(0.0, 0.01, 0.05, df=3).ci95 == pytest.approx([-0.01 * 3.182446, 0.01 * 3.182446],
                                                                               rel=1e-5)
    assert pooling.random_effects([0.5], [0.01]).df is None
    # The interval alone, as the arms study's positive control reports it beside its z-based one.
    three = pooling.Pooled(0.2, 0.01, (0.18, 0.22), None, k=3, se_hksj=0.015, df=2)
    assert pooling.hksj_interval(three) == pytest.approx([0.2 - 4.302653 * 0.015, 0.2 + 4.302653 * 0.015], rel=1e-6)
    assert pooling.hksj_interval(pooling.random_effects([0.5], [0.01])) is None


def test_less_spread_than_sampling_noise_gives_tau_zero_not_negative():
    result = pooling.random_effects([0.4, 0.5, 0.6, 0.45], [0.01] * 4)
    assert result.tau2 == 0.0
    assert result.estimate == pytest.approx(0.4875)


def test_binomial_variance_stays_finite_at_zero_and_all():
    assert pooling.binomial_variance(0, 10) > 0 and pooling.binomial_variance(10, 10) > 0
    assert pooling.binomial_variance(50, 100) == pytest.approx((50.5 / 101) * (50.5 / 101) / 100)


def test_pooled_share_interval_stays_within_zero_and_one():
    # 0 of 25 in every member: the share is 0; the normal interval around it would reach below 0.
    assert pooling.pooled_share([0, 0, 0], [25, 25, 25]).ci95[0] == 0.0
    high = pooling.pooled_share([25, 24, 25], [25, 25, 25])
    assert high.ci95[1] == 1.0 and high.ci95[0] < high.estimate < 1.0


def test_pooled_share_of_equal_counts_is_their_share_with_the_binomial_error():
    result = pooling.pooled_share([40, 40, 40], [100, 100, 100])
    assert result.estimate == pytest.approx(0.4) and result.tau == 0.0
    assert result.members == pytest.approx([0.4, 0.4, 0.4])
    assert result.se == pytest.approx(np.sqrt(pooling.binomial_variance(40, 100) / 3))


def test_pooled_difference_adds_the_two_sampling_variances():
    result = pooling.pooled_difference([60, 70], [100, 100], [50, 40], [100, 200])
    assert result.members == pytest.approx([0.10, 0.50])
    expected_var = [pooling.binomial_variance(60, 100) + pooling.binomial_variance(50, 100),
                    pooling.binomial_variance(70, 100) + pooling.binomial_variance(40, 200)]
    assert result.member_se == pytest.approx(np.sqrt(expected_var))
    direct = pooling.random_effects([0.10, 0.50], expected_var)
    assert result.estimate == pytest.approx(direct.estimate) and result.tau == pytest.approx(direct.tau)
    assert result.tau > 0.2  # 0.1 against 0.5 with sampling errors near 0.07: most of it is between members


@pytest.mark.parametrize("estimate, se, verdict", [
    (0.0, 0.01, "no leakage"),   # +-2 points around 0: inside +-5
    (0.10, 0.01, "leakage"),     # [8, 12] points: beyond +5
    (-0.10, 0.01, "reverse gap"),  # [-12, -8]: beyond -5, against the embedding's lean
    (0.0, 0.05, "undecided"),    # [-10, 10]: neither
    (0.06, 0.02, "undecided"),   # [2, 10]: crosses +5
])
def test_tost_verdicts(estimate, se, verdict):
    result = pooling.equivalence(estimate, se, margin=0.05)
    assert result.verdict == verdict


def test_tost_p_value_is_the_larger_one_sided_p():
    # At the estimate 0 with se 0.05/1.645, each one-sided test sits at p = 0.05.
    result = pooling.equivalence(0.0, 0.05 / 1.6448536, margin=0.05)
    assert result.tost_p_value == pytest.approx(0.05, abs=1e-6)
    # TOST at 5% a side is the 90% interval within the margin: here its ends sit exactly on it.
    assert result.ci90 == pytest.approx([-0.05, 0.05], abs=1e-6)
    assert result.ci95 == pytest.approx([-0.05 * 1.959964 / 1.6448536, 0.05 * 1.959964 / 1.6448536], abs=1e-6)


def test_variance_components_attribute_the_spread_to_each_seed():
    rng = np.random.default_rng(0)
    train, embed = np.repeat([0, 1, 2, 3], 4), np.tile([0, 1, 2, 3], 4)
    train_effect, embed_effect = np.array([-0.15, -0.05, 0.05, 0.15]), np.array([0.01, -0.01, 0.0, 0.0])
    y = 0.5 + train_effect[train] + embed_effect[embed] + rng.normal(0, 0.005, 16)
    vc = pooling.variance_components(y, np.full(16, 0.005**2), train, embed)
    assert vc["train_seed"] == pytest.approx(np.var(train_effect, ddof=1), rel=0.15)
    assert vc["embed_seed"] < 0.1 * vc["train_seed"]
    assert vc["share"]["train_seed"] > 0.9


def test_variance_components_leave_the_sampling_variance_out_of_tau2():
    # Shares of 300 images each from members that differ by their training seed only (SD 0.03): the
    # residual is the binomial variance (0.25 / 300 = 0.00083), so tau^2 is the training seed's alone,
    # where dividing by the residual as well gives it a fraction of it (0.30 here).
    rng = np.random.default_rng(1)
    train, embed = np.repeat(np.arange(8), 8), np.tile(np.arange(8), 8)
    train_effect = rng.normal(0, 0.03, 8)
    women = rng.binomial(300, 0.5 + train_effect[train])
    shares, variances = pooling.share_and_variance(women, np.full(64, 300))
    vc = pooling.variance_components(shares, variances, train, embed)
    assert vc["sampling"] == pytest.approx(0.25 / 300, rel=0.02)
    assert vc["residual"] == pytest.approx(vc["sampling"], rel=0.3)
    assert vc["share"]["train_seed"] > 0.85
    assert vc["train_seed"] / (vc["train_seed"] + vc["embed_seed"] + vc["residual"]) < 0.7


def test_variance_components_keep_the_interaction_apart_from_the_sampling_variance():
    # Training seed and interaction each with variance 0.0009, beside a binomial variance of 0.00083:
    # over ten replications of a 10 x 10 grid the interaction comes out near 0.0009 and the training
    # seed near half of tau^2 (ignoring the residual would give it all; keeping the binomial variance
    # in, about a third).
    train, embed = np.repeat(np.arange(10), 10), np.tile(np.arange(10), 10)
    train_effect = np.linspace(-1, 1, 10)
    train_effect *= 0.03 / np.std(train_effect, ddof=1)
    rng = np.random.default_rng(0)
    interaction, train_share = [], []
    for _ in range(10):
        women = rng.binomial(300, 0.5 + train_effect[train] + rng.normal(0, 0.03, 100))
        vc = pooling.variance_components(*pooling.share_and_variance(women, np.full(100, 300)), train, embed)
        interaction.append(vc["interaction"])
        train_share.append(vc["share"]["train_seed"])
    assert np.mean(interaction) == pytest.approx(0.0009, rel=0.2)
    assert 0.4 < np.mean(train_share) < 0.6


def test_variance_components_need_both_seeds_to_vary():
    assert pooling.variance_components([0.4, 0.5], [0.001] * 2, [0, 1], [0, 0])["train_seed"] is None


def test_variance_components_of_a_confounded_diagonal_are_not_identified():
    # Members (0, 0), (1, 1), (2, 2): each training seed has one projection seed.
    result = pooling.variance_components([0.4, 0.5, 0.6], [0.001] * 3, [0, 1, 2], [0, 1, 2])
    assert result["train_seed"] is None and "not identified" in result["note"]


def test_pooled_spearman_of_a_perfect_monotone_relation_is_near_one():
    scores = [np.linspace(-1, 1, 50)] * 3
    result = pooling.pooled_spearman(scores, [s ** 3 for s in scores])
    assert result["spearman"] == pytest.approx(1.0, abs=1e-4)
    assert result["per_member"] == pytest.approx([1.0] * 3)


def test_pooled_spearman_of_independent_noise_includes_zero():
    rng = np.random.default_rng(1)
    result = pooling.pooled_spearman([rng.normal(size=100) for _ in range(9)], [rng.normal(size=100) for _ in range(9)])
    assert result["ci95"][0] < 0 < result["ci95"][1]


def test_pooled_spearman_of_members_on_the_same_words_is_as_uncertain_as_those_words():
    # Nine members read the same 100 words, whose shares depend on the score through a word-level
    # deviation they all share, plus a little image noise each: nine members know those words
    # better, not the population of words, so the interval stays about one member's word bootstrap.
    rng = np.random.default_rng(2)
    scores = rng.normal(size=100)
    word_level = 0.5 * scores + rng.normal(size=100)
    shares = [word_level + rng.normal(0, 0.1, 100) for _ in range(9)]
    same = pooling.pooled_spearman([scores] * 9, shares)
    one = intervals.correlation_with_interval(scores, shares[0], "spearman", resamples=2000, seed=0)
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert same["interval"].startswith("bootstrap") and same["p_value"] is None
    assert 0.8 < width(same["ci95"]) / width(one["ci95"]) < 1.3
    # Members on words of their own are independent samples of words: the random-effects interval.
    rng = np.random.default_rng(4)
    own_words = [rng.normal(size=100) for _ in range(9)]
    independent = pooling.pooled_spearman(own_words, [0.5 * x + rng.normal(size=100) for x in own_words])
    assert independent["interval"] == "random effects over members"
    assert width(independent["ci95"]) < 0.6 * width(same["ci95"])


def test_pooled_spearman_leaves_out_members_with_nothing_to_rank():
    rng = np.random.default_rng(3)
    scores = [rng.normal(size=20) for _ in range(3)] + [np.arange(3.0)]
    shares = [rng.normal(size=20), rng.normal(size=20), np.full(20, 0.5), np.array([0.1, 0.2, 0.3])]
    result = pooling.pooled_spearman(scores, shares)
    assert result["members_left_out"] == 2 and len(result["per_member"]) == 2


def test_logistic_mixed_slope_recovers_the_log_odds_slope():
    # Shares 1/4, 1/2, 3/4 at scores -1, 0, 1: the log-odds slope is log(3) = 1.0986.
    women, n = [50, 100, 150] * 3, [200] * 9
    result = pooling.logistic_mixed_slope(women, n, [-1, 0, 1] * 3, np.repeat([0, 1, 2], 3))
    assert result["slope_log_odds"] == pytest.approx(np.log(3), abs=0.05)
    assert result["ci95"][0] < np.log(3) < result["ci95"][1]
    assert result["images"] == 1800


def test_logistic_mixed_slope_counts_words_not_images_when_words_vary():
    # 20 words, each with its own intercept (SD 1 log-odds) around a true slope of 2 per unit score, read
    # by 6 members with 200 images each: with a word intercept the slope's SD reflects 20 words (of the
    # order of 1/sqrt(sum (x - mean x)^2) = 0.74 here), without one it counts 24,000 images and is several
    # times smaller.
    rng = np.random.default_rng(0)
    scores = np.linspace(-0.5, 0.5, 20)
    logits = 2.0 * scores + rng.normal(0, 1.0, size=20)
    members = np.repeat(np.arange(6), 20)
    words = np.tile(np.arange(20), 6)
    n = np.full(120, 200)
    women = rng.binomial(n, 1 / (1 + np.exp(-logits[words])))
    with_words = pooling.logistic_mixed_slope(women, n, scores[words], members, words)
    images_only = pooling.logistic_mixed_slope(women, n, scores[words], members)
    assert with_words["random_intercepts"] == ["member", "word"] and images_only["random_intercepts"] == ["member"]
    assert with_words["sd"] > 3 * images_only["sd"]
    assert with_words["ci95"][0] < 2.0 < with_words["ci95"][1]
    assert with_words["word_sd_log_odds"] == pytest.approx(1.0, abs=0.4)
    assert images_only["word_sd_log_odds"] is None


def test_logistic_mixed_slope_of_a_steep_dose_response_is_not_shrunk_by_the_prior():
    # The sweep's scale: scores within +-0.3, a slope of 10 log-odds per unit score. The slope must agree
    # with a regression of each word's empirical logit on its score (9.58 here); statsmodels' default prior
    # on fixed effects, N(0, 2^2), would pull it to 9.04. Members add no variance: that component collapses.
    rng = np.random.default_rng(1)
    scores = np.linspace(-0.3, 0.3, 30)
    logits = 10.0 * scores + rng.normal(0, 0.5, size=30)
    members, words = np.repeat(np.arange(6), 30), np.tile(np.arange(30), 6)
    n = np.full(180, 50)
    women = rng.binomial(n, 1 / (1 + np.exp(-logits[words])))
    result = pooling.logistic_mixed_slope(women, n, scores[words], members, words)
    women_per_word, images_per_word = np.bincount(words, weights=women), np.bincount(words, weights=n)
    empirical_logit = np.log((women_per_word + 0.5) / (images_per_word - women_per_word + 0.5))
    word_level = np.polyfit(scores, empirical_logit, 1)[0]
    assert result["slope_log_odds"] == pytest.approx(word_level, abs=0.3)
    assert result["ci95"][0] < 10.0 < result["ci95"][1]
    assert result["collapsed"] == ["member"] and result["converged"]


def test_logistic_mixed_slope_needs_every_word_or_none():
    with pytest.raises(ValueError, match="every row its word"):
        pooling.logistic_mixed_slope([1, 2], [4, 4], [0.0, 1.0], [0, 0], ["a", None])


def test_weighted_slope_of_a_line():
    result = pooling.slope([-1, 0, 1], [0.3, 0.5, 0.7], [0.01, 0.01, 0.01])
    assert result["slope"] == pytest.approx(0.2)


def test_weighted_slope_error_comes_from_the_known_variances_not_the_residuals():
    # Weights 1/0.01 at x = -1, 0, 1: var(slope) = 1 / sum(w (x - mean x)^2) = 1/200, whatever the residuals.
    for y in ([0.3, 0.5, 0.7], [0.3, 0.65, 0.7]):
        assert pooling.slope([-1, 0, 1], y, [0.01, 0.01, 0.01])["se"] == pytest.approx(np.sqrt(1 / 200))


def test_within_word_projection_slope_recovers_a_known_slope():
    # A 3 x 3 grid: the projected score depends on the word and the projection seed, the share on the score
    # plus a word effect and training noise; the cells (word, projection seed) are what the slope is fitted on.
    rng = np.random.default_rng(0)
    embed = np.tile(np.repeat([0, 1, 2], 3), 3)  # per row: the member's projection seed (3 training seeds each)
    words = np.repeat(["philosopher", "person", "nurse"], 9)
    cell_score = {(w, e): base + rng.normal(0, 0.05) for w, base in zip(["philosopher", "person", "nurse"],
                                                                         [-0.19, 0.02, 0.28]) for e in range(3)}
    scores = np.array([cell_score[w, e] for w, e in zip(words, embed)])
    word_effect = {"philosopher": 0.01, "person": -0.02, "nurse": 0.0}
    shares = 0.5 + 0.3 * scores + np.array([word_effect[w] for w in words]) + rng.normal(0, 0.002, 27)
    fit = pooling.within_word_slope(scores, shares, words, embed)
    assert fit["cells"] == 9 and fit["slope"] == pytest.approx(0.3, abs=0.03)
    assert fit["ci95"][0] < 0.3 < fit["ci95"][1] and fit["p_value"] < 1e-3
    # The same projection in every member (one projection seed): the score cannot be told from the word.
    same = pooling.within_word_slope(scores, shares, words, np.zeros(27, int))
    assert same["slope"] is None and "not identified" in same["note"]


def test_small_sample_equivalence_uses_t_on_k_minus_1_degrees_of_freedom():
    # t(8) 97.5% quantile 2.306; |0.01| / 0.02 = 0.5 on t(8): two-sided p 0.6305.
    pooled = pooling.Pooled(0.01, 0.015, (-0.02, 0.04), None, k=9, se_hksj=0.02, df=8)
    few = pooling.small_sample_equivalence(pooled, margin=0.05)
    assert few.ci95 == pytest.approx([0.01 - 2.306 * 0.02, 0.01 + 2.306 * 0.02], abs=1e-4)
    assert few.p_value == pytest.approx(0.6305, abs=1e-4)
    # TOST: (0.01 - 0.05) / 0.02 = -2 on t(8), p 0.040; (0.01 + 0.05) / 0.02 = 3, p 0.0085: both below 0.05.
    assert few.tost_p_value == pytest.approx(0.0403, abs=1e-3)
    assert few.verdict == "no leakage"
    assert (few.method, few.df, few.se) == ("HKSJ", 8, 0.02)
    assert pooling.small_sample_equivalence(pooling.Pooled(0.01, 0.02, (-0.03, 0.05), None), margin=0.05) is None


def test_a_gap_against_the_embeddings_lean_is_not_called_leakage():
    assert pooling.equivalence(-0.10, 0.01, margin=0.05).verdict == "reverse gap"
    sentence = pooling.verdict_sentence("reverse gap", 0.05)
    assert sentence.startswith("a reverse gap of at least 5 points: the contrast moves against the embedding's lean")
    assert "wholly below -5 points" in sentence and sentence.endswith("which is not leakage")
    assert "above +5 points" in pooling.verdict_sentence("leakage", 0.05)
    assert "the 95% interval of the leakage estimate lies wholly above +3" in pooling.verdict_sentence(
        "leakage", 0.03, "the leakage estimate")


def _crossed_grid(rng, seeds, train_sd, embed_sd, residual_sd, mean=0.5):
    a, b = rng.normal(0, train_sd, seeds), rng.normal(0, embed_sd, seeds)
    cells = [(i, j) for i in range(seeds) for j in range(seeds)]
    values = [mean + a[i] + b[j] + rng.normal(0, residual_sd) for i, j in cells]
    return values, [i for i, _ in cells], [j for _, j in cells]


@pytest.mark.parametrize("seeds, train_sd, embed_sd, least", [
    (4, 0.02, 0.02, 0.92),
    # One seed's effect alone: the model's t on (T - 1) + (E - 1) degrees of freedom is then a little liberal
    # (docs/sweep.md: about 92% at 3 x 3), where t on T - 1 would be exact; the bound says how much.
    pytest.param(3, 0.03, 0.0, 0.88, marks=pytest.mark.slow),
])
def test_crossed_random_effects_cover_the_mean_where_the_independent_formula_does_not(seeds, train_sd, embed_sd,
                                                                                      least):
    # Grids with seed effects of 2 or 3 points and a residual of 1.8 (binomial at 1,200 images plus
    # interaction): members of a row or column share an effect, so treating them as independent
    # understates the mean's error. Coverage of the true mean over 300 simulated grids.
    rng = np.random.default_rng(0)
    sampling = 0.25 / 1200
    crossed_hits = independent_hits = 0
    grids = 300
    for _ in range(grids):
        values, train, embed = _crossed_grid(rng, seeds, train_sd, embed_sd, 0.018)
        crossed = pooling.crossed_random_effects(values, train, embed)
        independent = pooling.random_effects(values, [sampling] * len(values))
        crossed_hits += crossed["ci95"][0] <= 0.5 <= crossed["ci95"][1]
        independent_hits += independent.ci_low <= 0.5 <= independent.ci_high
    assert least <= crossed_hits / grids <= 0.995
    assert independent_hits / grids < 0.8


def test_crossed_random_effects_without_seed_effects_match_the_mean_and_its_plain_error():
    rng = np.random.default_rng(1)
    values, train, embed = _crossed_grid(rng, 5, 0.0, 0.0, 0.01)
    result = pooling.crossed_random_effects(values, train, embed)
    assert result["estimate"] == pytest.approx(np.mean(values), abs=1e-9)
    assert result["df"] == 8 and result["members"] == 25
    # With no seed variance the mean's error is at least the plain one (REML may keep a little seed variance).
    assert result["se"] >= 0.9 * np.std(values, ddof=1) / 5


def test_crossed_random_effects_of_a_diagonal_are_not_identified():
    result = pooling.crossed_random_effects([0.4, 0.5, 0.6], [0, 1, 2], [0, 1, 2])
    assert result["ci95"] is None and "not identified" in result["note"]


def test_rogan_gladen_recovers_the_true_share_behind_a_known_confusion():
    # True share 0.3 read by a classifier that calls 90% of women and 5% of men women: 0.3 * 0.9 + 0.7 * 0.05.
    observed = 0.3 * 0.9 + 0.7 * 0.05
    assert pooling.rogan_gladen(observed, 0.9, 0.05) == pytest.approx(0.3)
    # A perfect classifier changes nothing; shares outside the classifier's range are not clipped.
    np.testing.assert_allclose(pooling.rogan_gladen(np.array([0.2, 0.7]), 1.0, 0.0), [0.2, 0.7])
    assert pooling.rogan_gladen(0.01, 0.9, 0.05) < 0
    with pytest.raises(ValueError):
        pooling.rogan_gladen(0.5, 0.4, 0.6)


def test_rate_draws_follow_the_jeffreys_posterior():
    draws = pooling.rate_draws(990, 1000, 20000, np.random.default_rng(0))
    assert np.mean(draws) == pytest.approx(990.5 / 1001, abs=5e-4)
    assert np.std(draws) == pytest.approx(np.sqrt(0.99 * 0.01 / 1000), rel=0.1)


def test_pooling_follows_the_design_crossed_grid_or_independent_members():
    rng = np.random.default_rng(2)
    values, train, embed = _crossed_grid(rng, 4, 0.03, 0.03, 0.01)
    variances = [0.25 / 1200] * len(values)
    crossed = pooling.random_effects_over(values, variances, (train, embed))
    plain = pooling.random_effects(values, variances)
    assert crossed.model == "crossed" and crossed.t_df == 6
    assert crossed.independent.ci95 == plain.ci95
    assert crossed.se > plain.se  # the shared seeds' variance counts
    test = pooling.equivalence_of(crossed, 0.05)
    assert test.ci95 == pytest.approx(crossed.ci95)  # t on the grid's df, the interval's own
    assert pooling.small_sample_equivalence(crossed, 0.05) is None  # HKSJ is for independent members
    # The arms study's pairs (i, i) are a diagonal: independent, pooled as such.
    diagonal = pooling.random_effects_over(values[:4], variances[:4], ([0, 1, 2, 3], [0, 1, 2, 3]))
    assert diagonal.model == "independent" and "not identified" in diagonal.grid_note
    assert pooling.random_effects_over(values, variances).model == "independent"


def test_a_pooled_share_renders_its_interval_and_records_itself_as_the_files_do():
    # 40 of 100 in three members: tau 0, se = sqrt(binomial variance / 3) = 0.0283, so 0.4 +- 1.96 * 0.0283.
    pooled = pooling.pooled_share([40, 40, 40], [100, 100, 100])
    se = np.sqrt(pooling.binomial_variance(40, 100) / 3)
    assert pooled.ci95 == pytest.approx((0.4 - 1.959964 * se, 0.4 + 1.959964 * se), abs=1e-6)
    assert (pooled.ci_low, pooled.ci_high) == pooled.ci95
    assert pooled.share_text() == "40.0% [34.5, 45.5]"
    assert pooled.ci_text() == "[+34.5, +45.5]" and pooled.ci_text(1, "{:.3f}") == "[0.345, 0.455]"
    record = pooled.record("ci95", "tau", "members", estimate_as="share_woman")
    assert record == {"share_woman": pytest.approx(0.4), "ci95": list(pooled.ci95), "tau": 0.0,
                      "members": pytest.approx([0.4, 0.4, 0.4])}
    assert isinstance(record["ci95"], list) and isinstance(record["members"], list)  # as JSON holds them


def test_a_pooled_difference_renders_in_points():
    # Differences 10, 20 and 15 points with equal variances and no spread beyond them: the mean, 15.1 with k + 0.5.
    pooled = pooling.pooled_difference([60, 70, 65], [100] * 3, [50, 50, 50], [100] * 3)
    assert pooled.estimate == pytest.approx(0.1510, abs=1e-4) and pooled.tau == 0.0
    assert pooled.difference_text() == "+15.1 [+7.3, +22.9]"


def test_a_crossed_pool_records_the_independent_result_it_replaces():
    rng = np.random.default_rng(2)
    values, train, embed = _crossed_grid(rng, 4, 0.03, 0.03, 0.01)
    crossed = pooling.random_effects_over(values, [0.25 / 1200] * len(values), (train, embed))
    record = crossed.record("ci95", "model", "independent")
    assert record["model"] == "crossed" and record["ci95"] == list(crossed.ci95)
    assert record["independent"] == {"estimate": crossed.independent.estimate, "se": crossed.independent.se,
                                     "ci95": list(crossed.independent.ci95), "p_value": crossed.independent.p_value}


def test_an_equivalence_test_records_itself_with_the_keys_the_summaries_hold():
    # 1 +- 2 points against +-5: z 0.5, two-sided p 0.617; the one-sided tests P(z > 3) and P(z < -2), TOST p the larger.
    test = pooling.equivalence(0.01, 0.02, 0.05)
    assert test.tost_p_value == pytest.approx(0.02275, abs=1e-5) and test.p_value == pytest.approx(0.6171, abs=1e-4)
    assert test.ci_text() == "[-2.9, +4.9]" and test.ci90_text() == "[-2.3, +4.3]"
    assert test.sentence() == pooling.verdict_sentence("no leakage", 0.05)
    assert test.as_record() == {"margin": 0.05, "tost_p_value": test.tost_p_value, "verdict": "no leakage",
                                "ci95": list(test.ci95), "ci90": list(test.ci90), "p_value": test.p_value}
    few = pooling.small_sample_equivalence(pooling.Pooled(0.01, 0.015, (-0.02, 0.04), None, k=9, se_hksj=0.02, df=8),
                                           0.05)
    assert list(few.as_record())[:3] == ["method", "df", "se"]  # summary.json's small_sample, in its order
    assert few.as_record() == {"method": "HKSJ", "df": 8, "se": 0.02, "margin": 0.05, "tost_p_value": few.tost_p_value,
                               "verdict": few.verdict, "ci95": list(few.ci95), "ci90": list(few.ci90),
                               "p_value": few.p_value}


def test_a_change_of_difference_adds_the_four_sampling_variances():
    # Every member: nurse 40%, philosopher 50% here and 50%, 50% under the reference: -10 points, no spread.
    pooled = pooling.pooled_change_of_difference(([160] * 3, [400] * 3), ([200] * 3, [400] * 3),
                                                 ([200] * 3, [400] * 3), ([200] * 3, [400] * 3))
    member_variance = 3 * pooling.binomial_variance(200, 400) + pooling.binomial_variance(160, 400)
    assert pooled.estimate == pytest.approx(-0.1) and pooled.tau == 0.0
    assert pooled.se == pytest.approx(np.sqrt(member_variance / 3))


def test_the_estimate_at_a_fixed_tau_weights_by_variance_plus_tau_squared():
    # weights 1 / (1 + 1) and 1 / (3 + 1): (0 * 1/2 + 1 * 1/4) / (3/4) = 1/3
    assert pooling.estimate_at_tau([0.0, 1.0], [1.0, 3.0], tau=1.0) == pytest.approx(1 / 3)
    assert pooling.estimate_at_tau([0.0, 1.0], [1.0, 3.0], tau=0.0) == pytest.approx(0.25)  # inverse variance
    assert pooling.estimate_at_tau([0.0, 1.0], [1.0, 3.0], tau=1e6) == pytest.approx(0.5)  # the plain mean
    fitted = pooling.random_effects([0.01, 0.05, -0.02, 0.03], [1e-4, 2e-4, 1e-4, 3e-4])
    assert pooling.estimate_at_tau([0.01, 0.05, -0.02, 0.03], [1e-4, 2e-4, 1e-4, 3e-4], fitted.tau) == pytest.approx(
        fitted.estimate)  # at its own tau, the random-effects estimate itself


def test_margin_tests_are_the_primary_z_test_its_hksj_check_and_the_stretch_margin():
    pooled = pooling.random_effects([0.004, -0.006, 0.010, 0.001], [2e-5, 2e-5, 3e-5, 2e-5])
    tests = pooling.margin_tests(pooled, margin=0.03, stretch=0.02)
    assert tests.primary == pooling.equivalence(pooled.estimate, pooled.se, 0.03)
    assert tests.stretch == pooling.equivalence(pooled.estimate, pooled.se, 0.02)
    assert tests.hksj.method == "HKSJ" and tests.hksj.df == 3
    record = tests.as_record()
    assert record["margin"] == 0.03 and record["stretch"]["margin"] == 0.02 and record["hksj"]["df"] == 3
    assert record["half_width"] == pytest.approx(stats.norm.ppf(0.975) * pooled.se)
    assert record["verdict"] == "no leakage"  # 90% interval well inside +-3 points
    single = pooling.margin_tests(pooling.random_effects([0.01], [1e-4]), 0.03, 0.02)
    assert single.hksj is None and "hksj" not in single.as_record()

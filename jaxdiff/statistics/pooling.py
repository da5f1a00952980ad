"""Statistics pooled over the members of a sweep (independent training runs and projections).

A member's share of women for a word is one estimate with a binomial sampling variance; the
members differ by more than that (training seed, projection seed), so shares are pooled with a
random-effects model whose between-member variance tau^2 widens the interval. Everything comes
from statsmodels and scipy. A pooled result is a `Pooled`, a test an `Equivalence` (frozen
dataclasses that render themselves); a caller writes them to its files with `Pooled.record` and
`Equivalence.as_record`.

- `random_effects`: statsmodels' `combine_effects` with the Paule-Mandel tau^2 (its "iterated"
  method, which stays >= 0; the DerSimonian-Laird "chi2" method returns negative tau^2 there);
  `pooled_share` and `pooled_difference` apply it to counts of women (one share, or the difference
  of two shares, per member), `pooled_change_of_difference` to a contrast's change from a reference.
- `equivalence`: two one-sided z-tests (TOST) of a pooled estimate against +-margin.
- `variance_components`: REML of a crossed random-effects model (statsmodels MixedLM with one
  variance component per seed kind), less the known sampling variance: how much of the
  between-member variance tau^2 each seed brings.
- `pooled_spearman`: per-member Spearman correlations (scipy) pooled on Fisher's z scale, with the
  Fieller-Hartley-Pearson variance 1.06 / (n - 3), or, when the members drew the same words, with a
  bootstrap over words and members (scipy).
- `logistic_mixed_slope`: a logistic model of each image's label on the word's score with
  random intercepts per member and per word (statsmodels' BinomialBayesMixedGLM at its posterior mode).
- `slope`, `within_word_slope`: least squares of a member's shares on the words' scores (known
  variances), and of the shares on the projected score within each word (statsmodels).
"""

import dataclasses
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import stats

from jaxdiff.statistics.formatting import interval_text, points, share_with_interval

CONFIDENCE = 0.95
Z_TWO_SIDED = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))  # 1.96: the normal quantile of a two-sided CONFIDENCE interval
# Prior SD of the logistic model's fixed effects, vague on purpose: statsmodels' default (2) shrinks
# slopes of the size the dose-response has (docs/sweep.md, "dose_response").
FIXED_EFFECT_PRIOR_SD = 1000.0


def _plain(value: Any) -> Any:
    """A field as JSON holds it: tuples as lists, a nested `Pooled` as the independent model's record."""
    if isinstance(value, Pooled):
        return value.record("se", "ci95", "p_value")
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclasses.dataclass(frozen=True)
class Pooled:
    """A pooled estimate over members: its error, 95% interval and p-value against 0, and the members' spread.

    `model` says how the members were pooled: "independent" (random effects, Paule-Mandel tau^2) or "crossed"
    (a crossed grid of seeds; `t_df` its t degrees of freedom, `independent` the result it replaces). tau,
    tau^2 and Cochran's Q (`heterogeneity_p_value`) are the independent model's: they describe the spread. For
    more than one member, `se_hksj` is the Hartung-Knapp-Sidik-Jonkman error for t on `df` = k - 1."""

    estimate: float
    se: float
    ci95: tuple[float, float]
    p_value: float | None
    tau2: float | None = None
    tau: float | None = None
    heterogeneity_p_value: float | None = None
    k: int = 1
    se_hksj: float | None = None
    df: int | None = None
    model: str = "independent"
    t_df: int | None = None
    independent: "Pooled | None" = None
    seed_variances: dict[str, float] | None = None
    grid_note: str | None = None
    members: tuple[float, ...] | None = None
    member_se: tuple[float, ...] | None = None

    @property
    def ci_low(self) -> float:
        """The lower end of the 95% interval."""
        return self.ci95[0]

    @property
    def ci_high(self) -> float:
        """The upper end of the 95% interval."""
        return self.ci95[1]

    def ci_text(self, scale: float = 100, fmt: str = "{:+.1f}") -> str:
        """The 95% interval as '[+1.2, +3.4]' (points by default)."""
        return interval_text(self.ci95, scale, fmt)

    def difference_text(self) -> str:
        """The estimate and its interval in points: '+1.2 [-0.3, +2.7]'."""
        return f"{points(self.estimate)} {self.ci_text()}"

    def share_text(self) -> str:
        """A pooled share and its interval: '48.4% [43.5, 53.3]'."""
        return share_with_interval(self.estimate, self.ci95)

    def record(self, *fields: str, estimate_as: str = "estimate") -> dict[str, Any]:
        """The estimate (under the key `estimate_as`) and the named fields, as a file records them."""
        return {estimate_as: self.estimate, **{f: _plain(getattr(self, f)) for f in fields}}


@dataclasses.dataclass(frozen=True)
class Equivalence:
    """A TOST of |effect| < margin: its p-value, the reading it supports, the 95% and 90% intervals.

    `df` is None for z-tests, else t's degrees of freedom; `method` and `se` name a sensitivity check's
    error (HKSJ) where the test is one."""

    margin: float
    tost_p_value: float
    verdict: str
    ci95: tuple[float, float]
    ci90: tuple[float, float]
    p_value: float
    df: int | None = None
    se: float | None = None
    method: str | None = None

    def ci_text(self, scale: float = 100, fmt: str = "{:+.1f}") -> str:
        """The 95% interval as '[+1.2, +3.4]' (points by default)."""
        return interval_text(self.ci95, scale, fmt)

    def ci90_text(self, scale: float = 100, fmt: str = "{:+.1f}") -> str:
        """The 90% interval (the TOST's) as '[+1.2, +3.4]' (points by default)."""
        return interval_text(self.ci90, scale, fmt)

    def sentence(self) -> str:
        """The one-sentence reading of the verdict."""
        return verdict_sentence(self.verdict, self.margin)

    def as_record(self) -> dict[str, Any]:
        """The test as a file records it (a sensitivity check's method, df and SE first)."""
        test = {"margin": self.margin, "tost_p_value": self.tost_p_value, "verdict": self.verdict,
                "ci95": list(self.ci95), "ci90": list(self.ci90), "p_value": self.p_value}
        return test if self.method is None else {"method": self.method, "df": self.df, "se": self.se, **test}


def binomial_variance(women: int | np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Sampling variance of a share k/n, with k + 0.5 of n + 1 so that 0/n and n/n keep a finite weight."""
    k, n = np.asarray(women, float), np.asarray(n, float)
    p = (k + 0.5) / (n + 1.0)
    return p * (1.0 - p) / n


def random_effects(estimates: Sequence[float], variances: Sequence[float]) -> Pooled:
    """Random-effects pooled estimate, its 95% interval, z-test p-value against 0, tau^2 and tau.

    Also Cochran's Q test of no between-member variance (`heterogeneity_p_value`; None for one member),
    and the small-sample alternative a reviewer may ask for with few members: the Hartung-Knapp-Sidik-
    Jonkman standard error (`se_hksj`, to be used with t on `df` = k - 1 degrees of freedom), kept
    at least the z-based one (the modification of Roever et al. 2015: unmodified, it shrinks below
    the z-based error when the members agree more closely than their variances say)."""
    from statsmodels.stats.meta_analysis import combine_effects

    effect, variance = np.asarray(estimates, float), np.asarray(variances, float)
    if len(effect) == 1:  # one member: its own estimate and interval; nothing to say about tau
        se = float(np.sqrt(variance[0]))
        z = Z_TWO_SIDED
        return Pooled(float(effect[0]), se, (float(effect[0] - z * se), float(effect[0] + z * se)),
                      float(2 * stats.norm.sf(abs(effect[0]) / se)) if se > 0 else None)
    with warnings.catch_warnings():  # I^2 divides by zero when all members agree exactly; tau^2 is still 0
        warnings.simplefilter("ignore", RuntimeWarning)
        result = combine_effects(effect, variance, method_re="iterated", alpha=1 - CONFIDENCE)
    low, high = result.conf_int(alpha=1 - CONFIDENCE)[1]  # rows: fixed, random, fixed-wls, random-wls
    estimate, se = float(result.mean_effect_re), float(result.sd_eff_w_re)
    tau2 = max(float(result.tau2), 0.0)
    return Pooled(estimate, se, (float(low), float(high)),
                  float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else None,
                  tau2=tau2, tau=float(np.sqrt(tau2)),
                  heterogeneity_p_value=float(result.test_homogeneity().pvalue), k=len(effect),
                  se_hksj=max(se, float(np.sqrt(result.var_hksj_re))), df=int(result.df_resid))


def share_and_variance(women: Sequence[int], n: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The members' shares women/n and their binomial sampling variances."""
    women, n = np.asarray(women, float), np.asarray(n, float)
    return women / n, binomial_variance(women, n)


Seeds = tuple[Sequence[int], Sequence[int]]  # each member's (training seeds, projection seeds)


def random_effects_over(estimates: Sequence[float], variances: Sequence[float],
                        seeds: Seeds | None = None) -> Pooled:
    """`random_effects`, pooled as the members were drawn: independent members (no `seeds`, or seeds that form
    no crossed grid, such as the arms study's pairs (i, i)) as they are; members of a crossed grid (every
    training seed with several projection seeds) with the crossed model's estimate, error, interval and
    p-value (`crossed_random_effects`; `model` says which, `t_df` its t degrees of freedom, `independent` the
    result it replaces). tau and Cochran's Q stay the independent model's: they describe the spread."""
    pooled = random_effects(estimates, variances)
    if seeds is None:
        return pooled
    crossed = crossed_random_effects(estimates, *seeds)
    if crossed["ci95"] is None:
        return dataclasses.replace(pooled, grid_note=crossed["note"])
    return dataclasses.replace(
        pooled, estimate=crossed["estimate"], se=crossed["se"], ci95=tuple(crossed["ci95"]), p_value=crossed["p_value"],
        model="crossed", t_df=crossed["df"], independent=pooled, se_hksj=None, df=None,
        seed_variances={k: crossed[k] for k in ("train_seed_var", "embed_seed_var", "residual_var")})


def pooled_share(women: Sequence[int], n: Sequence[int], seeds: Seeds | None = None) -> Pooled:
    """`random_effects_over` the members' shares women/n, each with its binomial variance, with the `members`' shares.

    The interval is clipped to [0, 1]: near 0 or 1 (man, woman, the intervention's ends) the normal
    approximation reaches past them, and a share cannot; there the interval is rough, where the
    question's words (near one half) are unaffected."""
    shares, variances = share_and_variance(women, n)
    pooled = random_effects_over(shares, variances, seeds)
    return dataclasses.replace(pooled, ci95=tuple(float(np.clip(c, 0.0, 1.0)) for c in pooled.ci95),
                               members=tuple(float(s) for s in shares))


def pooled_difference(women_a: Sequence[int], n_a: Sequence[int], women_b: Sequence[int],
                      n_b: Sequence[int], seeds: Seeds | None = None) -> Pooled:
    """`random_effects_over` share a - share b within each member (independent images: variances add).

    With `members` (each member's difference) and `member_se` (its sampling standard error)."""
    (share_a, variance_a), (share_b, variance_b) = share_and_variance(women_a, n_a), share_and_variance(women_b, n_b)
    differences, variances = share_a - share_b, variance_a + variance_b
    return dataclasses.replace(random_effects_over(differences, variances, seeds),
                               members=tuple(float(d) for d in differences),
                               member_se=tuple(float(s) for s in np.sqrt(variances)))


Counts = tuple[Sequence[int], Sequence[int]]  # the members' women and images of one word


def pooled_change_of_difference(a: Counts, b: Counts, reference_a: Counts, reference_b: Counts,
                                seeds: Seeds | None = None) -> Pooled:
    """`random_effects_over` (share a - share b) - (share a - share b under a reference) within each member.

    The four shares' images are independent, so their binomial variances add."""
    (share_a, v1), (share_b, v2), (ref_a, v3), (ref_b, v4) = (share_and_variance(*c) for c in (a, b, reference_a,
                                                                                                 reference_b))
    return random_effects_over((share_a - share_b) - (ref_a - ref_b), v1 + v2 + v3 + v4, seeds)


def equivalence_of(pooled: Pooled, margin: float) -> Equivalence:
    """`equivalence` of a pooled result: z for independent members, t on the crossed model's df for a grid."""
    return equivalence(pooled.estimate, pooled.se, margin, df=pooled.t_df)


def equivalence(estimate: float, se: float, margin: float, df: int | None = None) -> Equivalence:
    """TOST of |effect| < margin (z-tests, or t-tests on `df` degrees of freedom), and which reading the
    intervals support.

    "leakage": the 95% interval lies above +margin (nurse drawn as a woman more often than philosopher,
    the embedding's lean); "reverse gap": it lies below -margin, a gap against the lean, which is
    not leakage; "no leakage": TOST rejects both sides at 5% each, which is the 90% interval (`ci90`)
    lying within +-margin; "undecided": none of these."""
    reference = stats.norm if df is None else stats.t(df)
    p_lower = float(reference.sf((estimate + margin) / se))  # H0: effect <= -margin
    p_upper = float(reference.cdf((estimate - margin) / se))  # H0: effect >= +margin
    z = reference.ppf(0.5 + CONFIDENCE / 2)
    low, high = estimate - z * se, estimate + z * se
    z_tost = reference.ppf(CONFIDENCE)  # each one-sided test at 1 - CONFIDENCE: the 1 - 2(1 - CONFIDENCE) interval
    tost_p = max(p_lower, p_upper)
    p_value = float(2 * reference.sf(abs(estimate) / se))  # two-sided, against 0
    if low > margin:
        verdict = "leakage"
    elif high < -margin:
        verdict = "reverse gap"
    elif tost_p < 1 - CONFIDENCE:
        verdict = "no leakage"
    else:
        verdict = "undecided"
    return Equivalence(margin, tost_p, verdict, (float(low), float(high)),
                       (float(estimate - z_tost * se), float(estimate + z_tost * se)), p_value, df=df)


def small_sample_equivalence(pooled: Pooled, margin: float) -> Equivalence | None:
    """`equivalence` of a `random_effects` result with its HKSJ error and t on k - 1 degrees of freedom.

    The sensitivity check for few members, reported beside the planned z-based test; None for one member."""
    if not pooled.df:
        return None
    test = equivalence(pooled.estimate, pooled.se_hksj, margin, df=pooled.df)
    return dataclasses.replace(test, se=pooled.se_hksj, method="HKSJ")


@dataclasses.dataclass(frozen=True)
class MarginTests:
    """A pre-registered equivalence reading of a pooled effect: z-based TOST at the margin (the primary), the
    same under HKSJ (the small-sample check; None for one member) and at a stricter stretch margin."""

    pooled: Pooled
    primary: Equivalence
    hksj: Equivalence | None
    stretch: Equivalence

    def as_record(self) -> dict[str, Any]:
        """The tests as the arms study's arms.json records them (half-widths of the 95% intervals beside)."""
        out = {"margin": self.primary.margin, "tost_p_value": self.primary.tost_p_value,
               "ci90": list(self.primary.ci90), "verdict": self.primary.verdict,
               "half_width": (self.pooled.ci_high - self.pooled.ci_low) / 2}
        if self.hksj is not None:
            out["hksj"] = {"ci95": list(self.hksj.ci95), "tost_p_value": self.hksj.tost_p_value,
                           "verdict": self.hksj.verdict, "df": self.hksj.df,
                           "half_width": (self.hksj.ci95[1] - self.hksj.ci95[0]) / 2}
        out["stretch"] = {"margin": self.stretch.margin, "tost_p_value": self.stretch.tost_p_value,
                          "verdict": self.stretch.verdict}
        return out


def margin_tests(pooled: Pooled, margin: float, stretch: float) -> MarginTests:
    """The `MarginTests` of a `random_effects` result at `margin`, its HKSJ check and the `stretch` margin."""
    return MarginTests(pooled, equivalence(pooled.estimate, pooled.se, margin),
                       small_sample_equivalence(pooled, margin), equivalence(pooled.estimate, pooled.se, stretch))


def estimate_at_tau(values: Sequence[float], variances: Sequence[float], tau: float) -> float:
    """The random-effects estimate with tau held fixed: the mean weighted by 1 / (variance + tau^2).

    For re-pooling the same members under perturbed inputs (e.g. draws of a classifier's calibration),
    where re-estimating tau each time would mix its own noise into the spread being measured."""
    return float(np.average(np.asarray(values, float), weights=1.0 / (np.asarray(variances, float) + tau ** 2)))


VERDICT_SENTENCES = {
    "leakage": "leakage of at least {m} points: the 95% interval of {q} lies wholly above +{m} points",
    "reverse gap": ("a reverse gap of at least {m} points: {q} moves against the embedding's lean (its 95% "
                    "interval lies wholly below -{m} points), which is not leakage"),
    "no leakage": ("no leakage larger than {m} points: the equivalence test (TOST) at +-{m} points rejects both "
                   "sides (its 90% interval lies within them)"),
    "undecided": ("undecided: the 95% interval of {q} lies neither wholly above +{m} nor wholly below -{m} points, "
                  "and the TOST's 90% interval does not lie within +-{m}"),
}


def verdict_sentence(verdict: str, margin: float, quantity: str = "the contrast") -> str:
    """The one-sentence reading of an `equivalence` verdict on `quantity` (what was tested, as the sentence names it)."""
    return VERDICT_SENTENCES[verdict].format(m=f"{100 * margin:g}", q=quantity)


def hksj_interval(pooled: Pooled) -> tuple[float, float] | None:
    """The 95% interval of a `random_effects` result with its HKSJ error and t on k - 1 degrees of freedom
    (None for one member): the small-sample interval beside the z-based `ci95`."""
    test = small_sample_equivalence(pooled, margin=0.0)  # the interval does not depend on a margin
    return None if test is None else test.ci95


def variance_components(values: Sequence[float], sampling_variances: Sequence[float], train_seeds: Sequence[int],
                        embed_seeds: Sequence[int]) -> dict[str, Any]:
    """REML split of the between-member variance tau^2 into training seed, projection seed and interaction.

    MixedLM's residual (`residual`) holds each member's deviation beyond the two seeds' additive effects
    and its binomial sampling variance together (MixedLM takes no known per-member variances). The
    sampling part is known, so its mean over members (`sampling`) is subtracted (a moment correction,
    floored at 0) to leave `interaction`: with one member per pair of seeds, the seeds' interaction and
    any run-to-run noise, which that design cannot tell apart. `share` gives each part's fraction of
    train_seed + embed_seed + interaction, REML's own tau^2, which need not equal the pooled share's
    Paule-Mandel tau^2."""
    import pandas as pd

    frame = pd.DataFrame({"y": np.asarray(values, float), "train": np.asarray(train_seeds),
                          "embed": np.asarray(embed_seeds), "all": 1})
    cells, t_count, e_count = len(frame.groupby(["train", "embed"])), frame["train"].nunique(), frame["embed"].nunique()
    unidentified = {"train_seed": None, "embed_seed": None, "interaction": None, "residual": None, "sampling": None}
    if t_count < 2 or e_count < 2 or cells <= t_count + e_count - 1:
        # The additive two-seed model has t + e - 1 parameters: with no more members than that (a
        # part-way sweep's diagonal, say) the seeds are confounded and the split is not identified.
        return {**unidentified,
                "note": f"not identified: {cells} members for {t_count} training and {e_count} projection seeds"}
    model, fit = _crossed_fit(frame)
    if fit is None:
        return {**unidentified, "note": "the REML fit failed"}
    vc = dict(zip(model.exog_vc.names, map(float, fit.vcomp)))
    sampling = float(np.mean(sampling_variances))
    out = {"train_seed": vc["train"], "embed_seed": vc["embed"], "interaction": max(float(fit.scale) - sampling, 0.0),
           "residual": float(fit.scale), "sampling": sampling}
    tau2 = out["train_seed"] + out["embed_seed"] + out["interaction"]
    out["share"] = {k: (out[k] / tau2 if tau2 > 0 else None) for k in ("train_seed", "embed_seed", "interaction")}
    return out


def _crossed_fit(frame: Any) -> tuple[Any, Any]:
    """REML of y ~ 1 with crossed random intercepts per training seed and per projection seed (statsmodels
    MixedLM, one group holding two variance components); the model and its best fit (None if all failed)."""
    import statsmodels.formula.api as smf

    model = smf.mixedlm("y ~ 1", frame, groups="all", vc_formula={"train": "0 + C(train)", "embed": "0 + C(embed)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary (zero-variance) fits warn; the estimate is still the REML one
        # The REML surface of so few groups has local optima (L-BFGS stopped at half the training-seed
        # variance on a test grid): fit from several optimisers and keep the highest likelihood.
        fits = []
        for method in ("powell", "nm", "lbfgs"):
            try:
                fits.append(model.fit(reml=True, method=method))
            except (np.linalg.LinAlgError, ValueError):  # a singular Hessian at that optimiser's end point
                continue
    fits = [f for f in fits if np.isfinite(f.llf) and np.isfinite(f.bse_fe.iloc[0])]
    return model, (max(fits, key=lambda f: f.llf) if fits else None)


def crossed_random_effects(values: Sequence[float], train_seeds: Sequence[int],
                           embed_seeds: Sequence[int]) -> dict[str, Any]:
    """The mean of a crossed grid (every training seed with every projection seed) and its 95% interval.

    Members of one row share their training seed and members of one column their projection seed, so they
    are not independent: the mean's variance is sigma_train^2 / T + sigma_embed^2 / E + residual / (T E), not
    tau^2 / members. REML of crossed random intercepts (statsmodels MixedLM); its residual holds each member's
    binomial noise and the seeds' interaction (near-equal here: every member draws as many images, shares near
    one half). The interval uses t on (T - 1) + (E - 1) degrees of freedom, those of the seeds' main effects:
    their variances are estimated from so few levels that a z interval covers too rarely, and t on min(T, E) - 1
    too often (tests/test_pooling.py measures the coverage; docs/sweep.md gives the simulation's figures)."""
    import pandas as pd

    frame = pd.DataFrame({"y": np.asarray(values, float), "train": np.asarray(train_seeds),
                          "embed": np.asarray(embed_seeds), "all": 1})
    t_count, e_count = frame["train"].nunique(), frame["embed"].nunique()
    if min(t_count, e_count) < 2 or len(frame.groupby(["train", "embed"])) <= t_count + e_count - 1:
        return {"estimate": float(frame["y"].mean()), "se": None, "ci95": None, "df": None, "train_seed_var": None,
                "embed_seed_var": None, "residual_var": None, "members": len(frame),
                "note": f"not identified: {len(frame)} members for {t_count} training and {e_count} projection seeds"}
    model, fit = _crossed_fit(frame)
    if fit is None:
        raise ValueError("crossed_random_effects: every REML optimiser failed on this grid")
    estimate, se = float(fit.fe_params.iloc[0]), float(fit.bse_fe.iloc[0])
    df = t_count + e_count - 2
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    vc = dict(zip(model.exog_vc.names, map(float, fit.vcomp)))
    return {"estimate": estimate, "se": se, "ci95": [estimate - half, estimate + half], "df": df,
            "p_value": float(2 * stats.t.sf(abs(estimate) / se, df)) if se > 0 else None,
            "train_seed_var": vc["train"], "embed_seed_var": vc["embed"], "residual_var": float(fit.scale),
            "members": len(frame)}


def rogan_gladen(observed: float | np.ndarray, reads_woman_given_woman: float | np.ndarray,
                 reads_woman_given_man: float | np.ndarray) -> np.ndarray:
    """The true share of women behind an observed share read by a classifier with known per-class error.

    observed = p s + (1 - p) f for true share p, sensitivity s = P(reads woman | woman) and false-positive rate
    f = P(reads woman | man), so p = (observed - f) / (s - f) (Rogan & Gladen 1978; adjusted classify-and-count).
    Not clipped: an estimate outside [0, 1] says the observed share is within the classifier's own error."""
    s, f = np.asarray(reads_woman_given_woman, float), np.asarray(reads_woman_given_man, float)
    if np.any(s - f <= 0):
        raise ValueError("rogan_gladen: the classifier reads women as women no more often than men (s <= f)")
    return (np.asarray(observed, float) - f) / (s - f)


def rate_draws(successes: int, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of a rate from its Jeffreys posterior Beta(k + 1/2, n - k + 1/2): a calibration rate's uncertainty."""
    return stats.beta.rvs(successes + 0.5, n - successes + 0.5, size=draws, random_state=rng)


def pooled_spearman(per_member_scores: Sequence[Sequence[float]], per_member_shares: Sequence[Sequence[float]],
                    resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Each member's Spearman rho of share on score, pooled on Fisher's z scale (random effects).

    When every member drew the same words (the sweep's probes do), their rhos share the sampling of
    those words, which each member's Fieller-Hartley-Pearson variance 1.06 / (n - 3) would count again:
    the interval then comes from a bootstrap that resamples the words and the members (scipy's
    `bootstrap`, each independently, percentile), and there is no p-value. Members whose shares are
    all equal have no rank correlation and are left out (`members_left_out`)."""
    kept = [(np.asarray(x, float), np.asarray(y, float)) for x, y in zip(per_member_scores, per_member_shares)
            if len(x) > 3 and np.ptp(x) > 0 and np.ptp(y) > 0]
    left_out = len(per_member_scores) - len(kept)
    if not kept:
        return {"spearman": None, "ci95": None, "p_value": None, "members_left_out": left_out,
                "note": "no member has more than 3 words with shares that vary"}
    rhos = [float(stats.spearmanr(x, y).statistic) for x, y in kept]
    ns = [len(x) for x, _ in kept]
    z = np.arctanh(np.clip(rhos, -0.999999, 0.999999))
    pooled = random_effects(z, 1.06 / (np.asarray(ns, float) - 3.0))
    out = {"spearman": float(np.tanh(pooled.estimate)), "ci95": [float(np.tanh(c)) for c in pooled.ci95],
           "p_value": pooled.p_value, "tau_z": pooled.tau, "per_member": rhos, "n_words": ns,
           "members_left_out": left_out, "interval": "random effects over members"}
    same_words = all(len(x) == len(kept[0][0]) and np.array_equal(x, kept[0][0]) for x, _ in kept)
    if same_words and len(kept) > 1:
        scores, shares = kept[0][0], np.stack([y for _, y in kept])

        def mean_rho(words: np.ndarray, members: np.ndarray) -> float:
            z_of = [np.arctanh(np.clip(stats.spearmanr(scores[words], shares[m, words]).statistic, -0.999999, 0.999999))
                    for m in members]
            return float(np.tanh(np.nanmean(z_of)))  # a resample of tied scores or shares has no rho: nan, skipped

        with warnings.catch_warnings():  # constant resamples warn (their rho is nan, skipped above)
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            boot = stats.bootstrap((np.arange(len(scores)), np.arange(len(kept))), mean_rho, vectorized=False,
                                   n_resamples=resamples, method="percentile", confidence_level=CONFIDENCE,
                                   random_state=np.random.default_rng(seed))
        out.update(ci95=[float(c) for c in boot.confidence_interval], p_value=None,
                   interval="bootstrap over the shared words and the members")
    return out


def logistic_mixed_slope(women: Sequence[int], n: Sequence[int], scores: Sequence[float],
                         members: Sequence[Any], words: Sequence[Any] | None = None) -> dict[str, Any]:
    """Log-odds of 'woman' per unit score, with random intercepts per member and per word (Laplace approximation).

    Without the word intercept every image of a profession counts as independent evidence about the
    slope, although all members draw the same hundred professions and a profession's images share
    whatever it looks like apart from its score: the slope's interval comes out several times too
    narrow. The fit is the posterior mode (`fit_map`), whose joint Hessian carries the word
    intercepts' uncertainty into the slope; the variational fit (`fit_vb`) factorises the posterior
    and gives the slope nearly the same small SD with or without the word intercept (on the data of
    tests/test_pooling.py's word test: 0.047 with, 0.044 without; the posterior mode's: 0.59)."""
    import pandas as pd
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    if words is not None and any(w is None for w in words):
        raise ValueError("logistic_mixed_slope: give every row its word, or none (words=None)")
    words = list(words) if words is not None else [None] * len(women)
    rows = []  # one row per image: the model is for binary outcomes
    for k, total, score, member, word in zip(women, n, scores, members, words):
        rows += [(1, score, member, word)] * int(k) + [(0, score, member, word)] * int(total - k)
    frame = pd.DataFrame(rows, columns=["woman", "score", "member", "word"])
    if frame["woman"].nunique() < 2:
        return {"slope_log_odds": None, "sd": None, "ci95": None, "note": "every image got the same label"}
    components = {"member": "0 + C(member)"}
    if words[0] is not None:
        components["word"] = "0 + C(word)"
    model = BinomialBayesMixedGLM.from_formula("woman ~ score", components, frame, fe_p=FIXED_EFFECT_PRIOR_SD)
    fit = model.fit_map(rng=0)  # rng: the optimiser's starting point, so a summary is reproducible
    index = list(model.exog_names).index("score")
    mean, sd = float(fit.fe_mean[index]), float(fit.fe_sd[index])
    z = Z_TWO_SIDED
    # vcp_mean holds the log standard deviation of each random intercept, in model.vcp_names order. The
    # posterior mode of a component with no variance sits where its log-normal prior stops the collapse,
    # log SD = -levels * vcp_p^2 (e^-9 for nine members): reported as collapsed, i.e. no detectable variance.
    log_sd = dict(zip(model.vcp_names, (float(v) for v in fit.vcp_mean)))
    floor = {name: -frame[name].nunique() * model.vcp_p ** 2 for name in log_sd}
    gradient_norm = float(np.linalg.norm(fit.optim_retvals.jac))
    return {"slope_log_odds": mean, "sd": sd, "ci95": [float(mean - z * sd), float(mean + z * sd)],
            "random_intercepts": sorted(components), "member_sd_log_odds": float(np.exp(log_sd["member"])),
            "word_sd_log_odds": float(np.exp(log_sd["word"])) if "word" in log_sd else None,
            "collapsed": sorted(name for name in log_sd if log_sd[name] < floor[name] + 1.0),
            "images": len(frame),
            # BFGS often stops on "precision loss" at a gradient of 1e-5: judge the optimum by its gradient.
            "converged": gradient_norm < 1e-3, "gradient_norm": gradient_norm}


def slope(x: Sequence[float], y: Sequence[float], variances: Sequence[float]) -> dict[str, float]:
    """Weighted least-squares slope of y on x (weights 1/variance) with its standard error.

    The variances are known (binomial), so the scale is fixed at 1 rather than estimated from the
    residuals: with three words there is one residual degree of freedom, and an estimated scale
    would make the standard error (and the members' weights when pooled) mostly noise."""
    import statsmodels.api as sm

    fit = sm.WLS(np.asarray(y, float), sm.add_constant(np.asarray(x, float)),
                 weights=1 / np.asarray(variances)).fit(cov_type="fixed scale")
    return {"slope": float(fit.params[1]), "se": float(fit.bse[1])}


def within_word_slope(scores: Sequence[float], shares: Sequence[float], words: Sequence[str],
                      embed_seeds: Sequence[int]) -> dict[str, Any]:
    """OLS slope of share on the projected score with one intercept per word, its 95% interval and p-value.

    Does the share follow the projection? The score varies only with the word and the projection seed, so the
    shares are first averaged over the training seeds within each (word, projection seed) cell and the cells are
    the observations: a projection seed that moves a word's share by another route then counts once, not once
    per member. Where the slope is not identified, `slope` is None and `note` says why."""
    import pandas as pd
    import statsmodels.formula.api as smf

    members = pd.DataFrame({"share": shares, "score": scores, "word": words, "embed": embed_seeds})
    cells = members.groupby(["word", "embed"], as_index=False).mean()
    if len(members) < 2 * len(set(words)):
        return {"slope": None, "note": "too few members"}
    if (cells.groupby("word")["score"].max() - cells.groupby("word")["score"].min()).max() < 1e-9:
        # The projected score depends on the projection seed only: with one, it is constant within each word.
        return {"slope": None, "note": "not identified: every member has the same projection"}
    if len(cells) <= len(set(words)) + 1:
        return {"slope": None, "note": "too few projection seeds"}
    if cells["share"].nunique() < 2:
        return {"slope": None, "note": "every share is the same"}
    fit = smf.ols("share ~ score + C(word)", cells).fit()
    low, high = fit.conf_int().loc["score"]
    return {"slope": float(fit.params["score"]), "ci95": [float(low), float(high)], "p_value": float(fit.pvalues["score"]),
            "cells": len(cells)}

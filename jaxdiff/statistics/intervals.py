"""Intervals of one run's measurements (scipy.stats, not hand-written): Wilson or Clopper-Pearson for a share,
bootstrap for a correlation."""

from typing import Any, Sequence

import numpy as np


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a binomial proportion k/n: never narrower than its nominal coverage,
    also at k = 0, where a pilot's share of rare events (images two samplers read differently) may sit."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def correlation_with_interval(x: Sequence[float], y: Sequence[float], method: str, resamples: int,
                              seed: int) -> dict[str, Any]:
    """Spearman or Pearson r of paired data, its p-value, and a paired bootstrap 95% interval.

    All None where there is nothing to correlate: fewer than 3 points, or a constant x or y."""
    from scipy import stats

    fn = {"spearman": stats.spearmanr, "pearson": stats.pearsonr}[method]
    x, y = np.asarray(x, float), np.asarray(y, float)
    # Fewer than 3 words (a sweep member draws none: its probes measure the dose-response), or every
    # unseen word at 0% women: no correlation to speak of.
    if len(x) < 3 or np.std(y) == 0 or np.std(x) == 0:
        return {"r": None, "p_value": None, "ci95": [None, None], "n": len(x)}
    result = fn(x, y)
    boot = stats.bootstrap((x, y), lambda a, b: fn(a, b).statistic, paired=True, vectorized=False,
                           n_resamples=resamples, confidence_level=0.95, method="percentile",
                           random_state=np.random.default_rng(seed))
    low, high = boot.confidence_interval
    return {"r": float(result.statistic), "p_value": float(result.pvalue),
            "ci95": [float(low), float(high)], "n": len(x)}

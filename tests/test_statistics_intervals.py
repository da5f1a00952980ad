"""The statistics floor's intervals (jaxdiff/statistics/intervals.py) against known values."""

import math

import numpy as np
import pytest

from jaxdiff.statistics import intervals


def test_wilson_interval_matches_the_closed_form():
    z = 1.959963984540054
    for k, n in ((40, 100), (0, 20), (400, 400), (7, 9)):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = intervals.wilson_interval(k, n)
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-9)
    # 400 samples keep a worst-case (p = 0.5) interval within +-0.05: the default num_samples.
    low, high = intervals.wilson_interval(200, 400)
    assert high - low < 0.1


def test_clopper_pearson_matches_known_values():
    # The exact interval's closed forms at the ends, and a textbook value in between (k = 10 of 100).
    assert intervals.clopper_pearson(0, 100) == pytest.approx((0.0, 1 - 0.025 ** (1 / 100)), abs=1e-9)
    assert intervals.clopper_pearson(50, 50) == pytest.approx((0.025 ** (1 / 50), 1.0), abs=1e-9)
    assert intervals.clopper_pearson(10, 100) == pytest.approx((0.04900, 0.17622), abs=5e-5)
    wilson = intervals.wilson_interval(10, 100)
    assert intervals.clopper_pearson(10, 100)[1] > wilson[1]  # exact: wider than Wilson's


def test_bootstrap_correlation_intervals():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    strong = intervals.correlation_with_interval(x, x + 0.3 * rng.normal(size=40), "pearson", 2000, seed=0)
    assert strong["r"] > 0.9 and strong["ci95"][0] < strong["r"] < strong["ci95"][1] <= 1.0
    assert strong["ci95"][0] > 0.8
    none = intervals.correlation_with_interval(x, rng.normal(size=40), "spearman", 2000, seed=0)
    assert none["ci95"][0] < 0 < none["ci95"][1]
    monotone = intervals.correlation_with_interval(np.arange(10), np.arange(10) ** 3, "spearman", 500, seed=0)
    assert monotone["r"] == pytest.approx(1.0) and monotone["ci95"] == pytest.approx([1.0, 1.0])
    flat = intervals.correlation_with_interval(np.arange(5), np.ones(5), "pearson", 100, seed=0)
    assert flat["r"] is None  # a constant share has no correlation; reported, not crashed
    for n in (0, 2):  # too few words (a sweep member's report draws none)
        assert intervals.correlation_with_interval(np.arange(n), np.arange(n), "spearman", 100, seed=0)["r"] is None

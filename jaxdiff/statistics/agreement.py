"""Whether two ways of reading the same members agree: their pooled difference tested for equivalence at +-limit.

The frontier asks it of each evaluation setting against the reference sampler: `agreement` reads
`pooling.equivalence`'s verdicts as "agrees" (the TOST at +-limit rejects both sides), "differs" (the 95%
interval lies beyond +-limit, on either side) or "undecided"; `overall_agreement` combines the words'.
"""

import dataclasses
from typing import Any, Sequence

from jaxdiff.statistics import pooling

# pooling.equivalence's readings, said of a difference between two readings rather than of leakage.
AGREEMENT_VERDICTS = {"leakage": "differs", "reverse gap": "differs", "no leakage": "agrees", "undecided": "undecided"}


@dataclasses.dataclass(frozen=True)
class Agreement:
    """A pooled difference between two readings with its equivalence test at +-limit, and the same test as if the
    members were independent (a crossed grid only) and with few members' HKSJ interval (more than one member)."""

    difference: pooling.Pooled
    test: pooling.Equivalence
    independent_test: pooling.Equivalence | None = None
    small_sample: pooling.Equivalence | None = None

    @property
    def verdict(self) -> str:
        """'agrees', 'differs' or 'undecided': the planned (z, or the crossed model's t) test's reading."""
        return AGREEMENT_VERDICTS[self.test.verdict]

    def as_record(self) -> dict[str, Any]:
        """The agreement as the frontier's table records it."""
        d = self.difference
        out = {**d.record("ci95", "tau", "heterogeneity_p_value"), "tost_p_value": self.test.tost_p_value,
               "verdict": self.verdict, "model": d.model}
        if self.independent_test is not None:  # what the independent-members formula said, for the record
            out["independent"] = _short(self.independent_test, d.independent.ci95)
        if self.small_sample is not None:
            out["hksj"] = _short(self.small_sample, self.small_sample.ci95)
        return out


def _short(test: pooling.Equivalence, interval: Sequence[float]) -> dict[str, Any]:
    """A secondary test as the table records it: its interval, TOST p-value and agreement verdict."""
    return {"ci95": list(interval), "tost_p_value": test.tost_p_value, "verdict": AGREEMENT_VERDICTS[test.verdict]}


def agreement(difference: pooling.Pooled, limit: float) -> Agreement:
    """The `Agreement` of a pooled difference at +-limit: the planned test, and its independent and HKSJ variants."""
    independent = None
    if difference.model == "crossed":
        old = difference.independent
        independent = pooling.equivalence(old.estimate, old.se, limit)
    # The same test with few members' small-sample interval (HKSJ, t on k - 1 df): reported beside
    # the verdict, which stays the z-based one the study was planned with.
    return Agreement(difference, pooling.equivalence_of(difference, limit), independent,
                     pooling.small_sample_equivalence(difference, limit))


def overall_agreement(verdicts: Sequence[str]) -> str:
    """'agrees' when every reading agrees, 'differs' when some reading differs, else 'undecided'."""
    seen = set(verdicts)
    return "agrees" if seen == {"agrees"} else "differs" if "differs" in seen else "undecided"

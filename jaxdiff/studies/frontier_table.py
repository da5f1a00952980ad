"""The frontier's table: each setting's rows of member counts pooled (jaxdiff.statistics) into shares, the fit,
the leakage contrast and the agreement with the reference, with the members' cost."""

import dataclasses
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxdiff.common import configuration
from jaxdiff.data.classes import CONTRAST_WORDS, SEED_EVAL_WORDS
from jaxdiff.statistics import agreement, pooling
from jaxdiff.studies import frontier_rounds, frontier_settings, sweep_summary
from jaxdiff.studies.frontier_sampling import StudySweep
from jaxdiff.studies.frontier_settings import Setting

FIT_LIMIT = 0.05  # the fit needed for the +-5-point test to mean anything: tau and |share - 0.5| per word
AGREEMENT_LIMIT = 0.02  # a faster sampler agrees with the reference when its shares are shown within +-2 points


def _word_counts(rows: list[dict[str, Any]], word: str) -> tuple[list[int], list[int]]:
    """The members' women and images of one word."""
    return [r["words"][word]["women"] for r in rows], [r["words"][word]["n"] for r in rows]


def _seeds(rows: list[dict[str, Any]]) -> pooling.Seeds | None:
    """The members' (training, projection) seeds, so that a crossed grid is pooled as one (None: not known)."""
    if not all("train_seed" in r for r in rows):
        return None
    return [r["train_seed"] for r in rows], [r["embed_seed"] for r in rows]


def pool_setting(rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]] | None,
                 margin: float = 0.05) -> dict[str, Any]:
    """Per word of the rows: pooled share, |share - 0.5|, tau; the difference from the reference rows (same
    members); the leakage contrast nurse - philosopher with its equivalence test at +-margin, as the sweep's
    summary, and the fit, when the rows hold every trained word (else None)."""
    words = list(rows[0]["words"])
    complete = set(words) == set(SEED_EVAL_WORDS)
    out: dict[str, Any] = {"words": {}, "contrast": None}
    if complete:
        contrast = pooling.pooled_difference(*(c for w in CONTRAST_WORDS for c in _word_counts(rows, w)),
                                             _seeds(rows))
        test = pooling.equivalence_of(contrast, margin)
        out["contrast"] = {**contrast.record("ci95", "tau"), "tost_p_value": test.tost_p_value, "verdict": test.verdict}
        if reference_rows is not None:
            # The leakage test reads the contrast, so whether a setting keeps the reference's contrast is asked too.
            change = pooling.pooled_change_of_difference(*(_word_counts(rows, w) for w in CONTRAST_WORDS),
                                                         *(_word_counts(reference_rows, w) for w in CONTRAST_WORDS),
                                                         _seeds(rows))
            out["contrast"]["minus_reference"] = agreement.agreement(change, AGREEMENT_LIMIT).as_record()
    for word in words:
        pooled = pooling.pooled_share(*_word_counts(rows, word), _seeds(rows))
        entry = {**pooled.record("ci95", "tau", estimate_as="share_woman"),  # tau None: one member
                 "abs_deviation": abs(pooled.estimate - 0.5), "members": list(pooled.members)}
        if reference_rows is not None:
            difference = pooling.pooled_difference(*_word_counts(rows, word), *_word_counts(reference_rows, word),
                                                   _seeds(rows))
            entry["minus_reference"] = agreement.agreement(difference, AGREEMENT_LIMIT).as_record()
        out["words"][word] = entry
    taus = [e["tau"] for e in out["words"].values()]
    # One member has no between-member spread to estimate: its fit is unknown, not good.
    out["max_tau"] = None if None in taus else max(taus)
    out["max_abs_deviation"] = max(e["abs_deviation"] for e in out["words"].values())
    if not complete:  # the fit is judged on every trained word: a narrower study cannot tell
        out["fits"] = None
    elif out["max_abs_deviation"] > FIT_LIMIT:
        out["fits"] = False
    else:
        out["fits"] = None if out["max_tau"] is None else out["max_tau"] <= FIT_LIMIT
    if reference_rows is not None:
        out["max_abs_minus_reference"] = max(abs(e["minus_reference"]["estimate"]) for e in out["words"].values())
        # Agrees: every word's equivalence test at +-2 points rejects both sides; differs: some word's
        # 95% interval lies beyond +-2 points; else undecided (too few images to tell).
        out["agreement"] = agreement.overall_agreement([e["minus_reference"]["verdict"] for e in out["words"].values()])
    out["seconds_per_image"] = frontier_rounds.seconds_per_image(rows)
    return out


def table(config: ml_collections.ConfigDict, sweeps: Sequence[StudySweep], settings: Sequence[Setting],
          reference: Setting | None, rounds: int, round_images: int,
          words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """The frontier of `words` pooled over each member's first `rounds` rounds of every setting."""
    pooled_rows = []
    for s in sweeps:
        # Each setting's rounds are read once, for its row, the reference column and the speed scale.
        counts = {x: [{**frontier_rounds.member_counts(m.workdir, config, x, rounds, round_images, words),
                       "train_seed": m.train_seed, "embed_seed": m.embed_seed} for m in s.members]
                  for x in frontier_settings.with_reference(settings, reference)}
        frontier_rounds.check_one_checkpoint(s.members, counts)
        member_config = configuration.load(s.members[0].workdir)
        minutes = [sweep_summary.member_minutes(m.workdir) for m in s.members]
        training_minutes = float(np.median([m["training"] for m in minutes]))
        evaluation_minutes = float(np.median([m["evaluation"] + m["probes"] for m in minutes]))
        # The members' own evaluation setting, at whatever number of images it was studied with here.
        default = Setting("ema", member_config.evaluate.sampler, int(member_config.evaluate.steps))
        studied = [x for x in counts if dataclasses.replace(x, images=None) == default]
        default_spi = frontier_rounds.seconds_per_image(counts[studied[0]]) if studied else None
        for setting in settings:
            rows = counts[setting]
            row = pool_setting(rows, counts[reference] if reference and setting != reference else None,
                               float(config.sweep.equivalence_margin))
            # Evaluation time is almost all sampling: scale the recorded minutes by this setting's speed.
            scale = row["seconds_per_image"] / default_spi if default_spi else None
            images = frontier_rounds.images_drawn(rows)
            # Verdicts count at the number of images planned in advance: an equivalence test looked at after
            # every round, the study stopped at the first pass, would pass by chance more often than 5%.
            # A comparison is interim while either side is.
            planned = frontier_settings.images_per_word(config, setting)
            interim = images < planned or (reference is not None and frontier_rounds.images_drawn(counts[reference])
                                           < frontier_settings.images_per_word(config, reference))
            row.update({"sweep": s.workdir, "setting": setting.name, "members": len(s.members),
                        "images": images, "planned_images": planned, "interim": interim,
                        "num_steps": int(member_config.train.num_steps), "training_minutes": training_minutes,
                        "member_minutes": training_minutes + evaluation_minutes * scale if scale else None})
            pooled_rows.append(row)
    return {"reference": reference.name if reference else None, "words": list(words), "fit_limit": FIT_LIMIT,
            "agreement_limit": AGREEMENT_LIMIT, "round_images": round_images, "rounds": rounds, "rows": pooled_rows}

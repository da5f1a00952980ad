"""The arms study's analysis, from its records alone (docs/preregistration.md is the plan it follows).

Primary: per pair i, the nurse - philosopher contrast C of its real and its flipped member, leakage
L_i = (C_real - C_flipped) / 2 (the part of the contrast that follows the sign of the embedding's lean),
pooled over pairs with random effects (jaxdiff.statistics.pooling); TOST at +-study.margin on the z-based interval,
HKSJ (t on pairs - 1 df) as the planned small-sample check, the stretch margin beside it. Beside it: the
systematic (C_real + C_flipped) / 2; the Rogan-Gladen corrected leakage with the calibration's
uncertainty; the second classifier's reading; the positive control's sensitivity; the share of women
per arm and word; each word's slope per unit of lean; the neutral arm where run. Until every planned primary
and control member is recorded whole, the analysis is interim and shows the study's progress only: no
estimate, no verdict.
The result as text (the headline, arms.md, the README's answer) is jaxdiff.studies.arms_report's.
"""

import dataclasses
import os
from typing import Any

import numpy as np

from jaxdiff.common import files
from jaxdiff.data import embed
from jaxdiff.measurement import calibration, classifier
from jaxdiff.measurement import records as member_records
from jaxdiff.statistics import agreement, pooling
from jaxdiff.data.classes import CONTRAST_WORDS, SEED_EVAL_WORDS
from jaxdiff.common.errors import UserError

RESULT_JSON, RESULT_MD = "arms.json", "arms.md"
PLAN_JSON = "plan.json"  # STUDY/: the study section it was started with; another is refused
MEMBER_JSON = "member.json"  # STUDY/MEMBER/: pair, arm, seed, leans, times
CONTRAST = CONTRAST_WORDS  # the leakage contrast: share(nurse) - share(philosopher)
AGREEMENT_POINTS = 0.01  # the two classifiers' leakage readings agree when within 1 point
CALIBRATION_DRAWS = 2000  # draws of the calibration rates carried into the corrected interval
THRESHOLD = 0.5  # an image reads as a woman when p(woman) exceeds it (the argmax of two classes)


def load_records(study_dir: str) -> tuple[dict[str, Any], Any, Any, dict[str, dict[str, Any]]]:
    """The study's plan, every member's image records (one DataFrame), the calibration readings, member.json's."""
    import pandas as pd

    plan_path = os.path.join(study_dir, PLAN_JSON)
    if not os.path.exists(plan_path):
        raise UserError(f"{study_dir} holds no arms study ({PLAN_JSON} is missing); start one with: python -m "
                        f"jaxdiff.arms --config=configs/toy.py --workdir={study_dir}")
    plan = files.read_json(plan_path)
    frames, members = [], {}
    for entry in sorted(os.listdir(study_dir)):
        workdir = os.path.join(study_dir, entry)
        if not os.path.exists(os.path.join(workdir, MEMBER_JSON)):
            continue
        members[entry] = member_records.load(member_records.ARMS_MEMBER, os.path.join(workdir, MEMBER_JSON))
        frames += [pd.read_csv(os.path.join(workdir, f)) for f in sorted(os.listdir(workdir)) if f.startswith("images-")]
    images = pd.concat(frames, ignore_index=True) if frames else None
    calibration_path = os.path.join(study_dir, calibration.CALIBRATION_CSV)
    readings = pd.read_csv(calibration_path) if os.path.exists(calibration_path) else None
    return plan, images, readings, members


def member_counts(images: Any, planned: dict[str, int], reader: str = "primary") -> Any:
    """Women and images per (member, pair, arm, word), counting only words recorded at their planned size."""
    frame = images.assign(woman=(images[f"p_woman_{reader}"] > THRESHOLD).astype(int))
    counts = frame.groupby(["member", "pair", "arm", "word"], as_index=False).agg(women=("woman", "sum"),
                                                                              n=("woman", "size"))
    return counts[counts.apply(lambda r: r["n"] == planned.get(r["word"]), axis=1)]


def _share(counts: Any, member: str, word: str) -> tuple[float, float] | None:
    row = counts[(counts["member"] == member) & (counts["word"] == word)]
    if row.empty:
        return None
    women, n = int(row["women"].iloc[0]), int(row["n"].iloc[0])
    return women / n, float(pooling.binomial_variance(women, n))


def contrast(counts: Any, member: str) -> tuple[float, float] | None:
    """A member's share(nurse) - share(philosopher) and its binomial variance (None if a word is not recorded)."""
    parts = [_share(counts, member, word) for word in CONTRAST]
    if None in parts:
        return None
    (nurse, v1), (philosopher, v2) = parts
    return nurse - philosopher, v1 + v2


def _members_by_pair(counts: Any) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for member, pair, arm in counts[["member", "pair", "arm"]].drop_duplicates().itertuples(index=False):
        out.setdefault(int(pair), {})[arm] = member
    return out


def paired(counts: Any, arm_a: str, arm_b: str, combine: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Per pair holding both arms: (C_a - C_b) / 2 ("half_difference"), (C_a + C_b) / 2 ("half_sum") or
    C_a - C_b ("difference"), with its variance (the two members' images are independent)."""
    pairs, values, variances = [], [], []
    for pair, by_arm in sorted(_members_by_pair(counts).items()):
        if arm_a not in by_arm or arm_b not in by_arm:
            continue
        a, b = contrast(counts, by_arm[arm_a]), contrast(counts, by_arm[arm_b])
        if a is None or b is None:
            continue
        value, scale = {"half_difference": ((a[0] - b[0]) / 2, 0.25), "half_sum": ((a[0] + b[0]) / 2, 0.25),
                        "difference": (a[0] - b[0], 1.0)}[combine]
        pairs.append(pair)
        values.append(value)
        variances.append(scale * (a[1] + b[1]))
    return pairs, np.asarray(values), np.asarray(variances)


def _pooled(values: np.ndarray, variances: np.ndarray) -> pooling.Pooled | None:
    """The pairs' (or members') values pooled with random effects, each value kept; None if there is none."""
    if len(values) == 0:
        return None
    return dataclasses.replace(pooling.random_effects(values, variances), members=tuple(float(v) for v in values))


def _record(pooled: pooling.Pooled | None) -> dict[str, Any] | None:
    """A pooled result as arms.json records it (None stays None)."""
    if pooled is None:
        return None
    return pooled.record("se", "ci95", "p_value", "tau", "heterogeneity_p_value", "k", "se_hksj", "df", "members")


def corrected_leakage(counts: Any, readings: Any, reader: str, margin: float, seed: int = 0) -> dict[str, Any]:
    """The leakage of Rogan-Gladen corrected shares, pooled, its interval widened by the calibration's uncertainty.

    Corrected, a share q of profession w becomes (q - f_w) / (s_w - f_w) (s, f: the classifier's P(reads woman)
    for that profession's women and men, from the calibration split), so a pair's leakage becomes
    ((qn_real - qn_flipped) / Dn - (qp_real - qp_flipped) / Dp) / 2 with D = s - f: the false-positive rates
    cancel, the gaps are stretched by 1 / D. The pooled estimate is recomputed at CALIBRATION_DRAWS draws of the
    rates from their Jeffreys posteriors (at the pooled tau), and the variance of those estimates is added to
    the pooled one (every pair shares the calibration, so its error does not average out over pairs)."""
    confusion = calibration.confusion(readings, reader, THRESHOLD)
    point = {w: (confusion[w]["woman"]["rate"], confusion[w]["man"]["rate"]) for w in CONTRAST}
    if any(s - f <= 0 for s, f in point.values()):
        return {"note": f"the {reader} classifier reads the calibration split's women as women no more often than "
                        f"its men: no correction is possible"}
    shares = {}  # per profession and arm: each complete pair's share and its variance
    complete = [by_arm for _, by_arm in sorted(_members_by_pair(counts).items())
                if all(a in by_arm and _share(counts, by_arm[a], w) is not None
                       for a in ("real", "flipped") for w in CONTRAST)]
    for word in CONTRAST:
        for arm in ("real", "flipped"):
            got = [_share(counts, by_arm[arm], word) for by_arm in complete]
            shares[word, arm] = (np.array([g[0] for g in got]), np.array([g[1] for g in got]))

    def leakage(rates: dict[str, tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
        gap, variance = {}, {}
        for word in CONTRAST:
            s, f = rates[word]
            (real, v_real), (flipped, v_flipped) = shares[word, "real"], shares[word, "flipped"]
            gap[word] = pooling.rogan_gladen(real, s, f) - pooling.rogan_gladen(flipped, s, f)
            variance[word] = (v_real + v_flipped) / (s - f) ** 2
        return (gap["nurse"] - gap["philosopher"]) / 2, (variance["nurse"] + variance["philosopher"]) / 4

    values, variances = leakage(point)
    pooled = _pooled(values, variances)
    if pooled is None:
        return {"note": "no complete pair"}
    rng = np.random.default_rng(seed)
    drawn = {w: tuple(pooling.rate_draws(confusion[w][g]["reads_woman"], confusion[w][g]["n"], CALIBRATION_DRAWS, rng)
                      for g in ("woman", "man")) for w in CONTRAST}
    if any(np.any(s <= f) for s, f in drawn.values()):
        return {"note": f"the {reader} classifier's calibration cannot exclude that it reads women as women no more "
                        f"often than men: no correction is possible"}
    draws = []
    for i in range(CALIBRATION_DRAWS):
        v, w = leakage({word: (s[i], f[i]) for word, (s, f) in drawn.items()})
        draws.append(pooling.estimate_at_tau(v, w, pooled.tau or 0.0))  # one pair: no tau to estimate
    calibration_se = float(np.std(draws))
    se = float(np.hypot(pooled.se, calibration_se))
    z = pooling.equivalence(pooled.estimate, se, margin)
    return {"estimate": pooled.estimate, "se": se, "pooling_se": pooled.se, "calibration_se": calibration_se,
            "ci95": list(z.ci95), "tost_p_value": z.tost_p_value, "verdict": z.verdict,
            "rates": {w: {"reads_woman_given_woman": s, "reads_woman_given_man": f} for w, (s, f) in point.items()}}


def analyse(study_dir: str) -> dict[str, Any]:
    """Every figure of the study from its records; see the module docstring. While interim, only its progress."""
    plan, images, readings, records = load_records(study_dir)
    check_records(plan, images, records)
    s = plan["study"]
    margin, stretch = float(s["margin"]), float(s["stretch_margin"])
    out: dict[str, Any] = {"plan": plan, "members_recorded": len(records), "pairs_planned": int(s["pairs"])}
    counts = _progress(plan, images, records, out)
    if counts is None:
        out["pairs_complete"] = 0
        return out
    pairs, values, variances = paired(counts, "real", "flipped", "half_difference")
    out["pairs_complete"] = len(pairs)
    if out["interim"]:
        return out
    if "flipped" not in s["arms"]:  # a single-arm study: no leakage of its own; `compare` reads it against another
        out["shares"], out["contrasts"] = _shares(counts), _contrasts(counts)
        out["note"] = SINGLE_ARM_NOTE
        return out
    pooled_leakage = _pooled(values, variances)
    out["leakage"] = {**_record(pooled_leakage), "pairs": pairs,
                      **pooling.margin_tests(pooled_leakage, margin, stretch).as_record()}
    _, sys_values, sys_variances = paired(counts, "real", "flipped", "half_sum")
    out["systematic"] = _record(_pooled(sys_values, sys_variances))
    if readings is not None:
        out["calibration"] = {reader: calibration.confusion(readings, reader, THRESHOLD)
                              for reader in sorted(readings["classifier"].unique())}
        out["corrected_leakage"] = corrected_leakage(counts, readings, "primary", margin)
    else:
        out["corrected_leakage"] = {"note": f"not computed: {calibration.CALIBRATION_CSV} is missing from the records"}
    second_counts = member_counts(images, plan["images_per_word"], "second")
    _, v2, w2 = paired(second_counts, "real", "flipped", "half_difference")
    second = _record(_pooled(v2, w2))
    if second is not None:
        gap = second["estimate"] - out["leakage"]["estimate"]
        second["minus_primary"] = gap
        second["agrees"] = bool(abs(gap) <= AGREEMENT_POINTS)
    out["second_classifier_leakage"] = second
    out["control"] = _control(counts, plan)
    out["neutral"] = _neutral(counts, out["systematic"])
    planned_arms = {*s["arms"], CONTROL_ARM}
    planned_counts = counts[counts["arm"].isin(planned_arms)]
    out["shares"], out["contrasts"] = _shares(planned_counts), _contrasts(planned_counts)
    other = counts[~counts["arm"].isin(planned_arms)]  # secondary arms drawn after the read (neutral, scaled:L)
    out["other_arms"] = {"shares": _shares(other), "contrasts": _contrasts(other)} if len(other) else None
    out["slopes"] = _slopes(counts, records)
    out["over_training"] = _over_training(study_dir, images, plan)
    out["roles"] = ROLES
    return out


def _progress(plan: dict[str, Any], images: Any, records: dict[str, dict[str, Any]], out: dict[str, Any]) -> Any:
    """Writes a study's progress into `out` (members complete, interim, the conditioning check, the timings) and
    returns its member counts; None, `out` interim, while no member is recorded."""
    if images is None:
        out.update(interim=True, note="no member recorded yet")
        return None
    counts = member_counts(images, plan["images_per_word"])
    complete = complete_members(counts, plan, records)
    out["members_complete"] = sorted(complete)
    # Final only when every planned primary and control member holds every word at its planned size: a pair counts
    # from its professions' draws, but the control and the conditioning check are part of the one read.
    out["interim"] = bool(planned_members(plan) - {(int(records[m]["pair"]), records[m]["arm"]) for m in complete})
    # What the pipeline's health needs while the study runs: the conditioning check reads man and woman only.
    out["conditioning"] = _conditioning(counts)
    out["timings"] = _timings(records)
    if out["interim"]:
        out["note"] = INTERIM_NOTE
    return counts


# Until every planned member is recorded whole, nothing computed from the profession words' readings is shown,
# not even an estimate: its interval and TOST p-value would be the verdict in all but name.
INTERIM_NOTE = ("the study's estimates are withheld until every planned member is recorded; the verdict is "
                "read once, at that size")
CONTROL_ARM = "control"  # the positive control's members (the real embedding on imbalanced images)
SINGLE_ARM_NOTE = ("a single-arm study: no leakage of its own; read its members against another study's of the same "
                   "seeds with --compare_to")


def _known_arm(arm: str) -> bool:
    """A primary arm, the control, or a secondary arm the embedding knows (neutral, scaled:L: added after the read)."""
    if arm == CONTROL_ARM:
        return True
    try:
        embed.arm_factor(arm)
    except UserError:
        return False
    return True


# How docs/preregistration.md classes each reading of a final analysis (arms.json records it beside them).
ROLES = {"leakage": "primary", "systematic": "secondary", "corrected_leakage": "secondary",
         "second_classifier_leakage": "secondary", "control": "secondary", "shares": "secondary",
         "contrasts": "secondary", "slopes": "secondary", "conditioning": "secondary", "neutral": "exploratory",
         "other_arms": "exploratory", "over_training": "exploratory"}


def planned_members(plan: dict[str, Any]) -> set[tuple[int, str]]:
    """(pair, arm) of every member the primary analysis and the positive control need."""
    s = plan["study"]
    return ({(pair, arm) for pair in range(int(s["pairs"])) for arm in s["arms"]}
            | {(pair, CONTROL_ARM) for pair in range(int(s["control_pairs"]))})


def complete_members(counts: Any, plan: dict[str, Any], records: dict[str, dict[str, Any]]) -> set[str]:
    """The members holding every word the plan draws, each at its planned size (`counts` keeps only those)."""
    words = {w for w, n in plan["images_per_word"].items() if n}
    held = counts.groupby("member")["word"].agg(set)
    return {m for m in records if m in held.index and words <= held[m]}


def check_records(plan: dict[str, Any], images: Any, records: dict[str, dict[str, Any]]) -> None:
    """Refuses records that are not the plan's: a member outside its pairs or with another seed, two members in one
    pair's arm, image rows of no member or at another training step, unreadable p(woman)."""
    s = plan["study"]
    seen: dict[tuple[int, str], str] = {}
    for name, record in records.items():
        pair, arm, seed = int(record["pair"]), record["arm"], int(record["seed"])
        pairs = int(s["control_pairs"]) if arm == CONTROL_ARM else int(s["pairs"])
        if not 0 <= pair < pairs or not _known_arm(arm):
            raise UserError(f"{name} is pair {pair}'s {arm!r} member, outside the plan ({s['pairs']} pairs of "
                            f"{'/'.join(s['arms'])}, {s['control_pairs']} of {CONTROL_ARM}, secondary arms on the same "
                            f"pairs); remove it from the records")
        if seed != int(s["first_seed"]) + pair:
            raise UserError(f"{name} was trained with seed {seed}, not the plan's {int(s['first_seed']) + pair} for pair "
                            f"{pair}; remove it and rerun the member")
        if (pair, arm) in seen:
            raise UserError(f"{seen[pair, arm]} and {name} are both pair {pair}'s {arm} member; keep one")
        seen[pair, arm] = name
    if images is None:
        return
    unknown = sorted(set(images["member"]) - set(records))
    if unknown:
        raise UserError(f"image records of {', '.join(unknown)}, which has no {MEMBER_JSON}; rerun the member")
    wrong_step = images[images["step"] != int(plan["train_steps"])]
    if not wrong_step.empty:
        row = wrong_step.iloc[0]
        raise UserError(f"{row['member']}'s {row['word']} images were drawn at step {row['step']}, not the plan's "
                        f"{plan['train_steps']}; delete its images-{row['word']}.csv and rerun the member")
    for column in ("p_woman_primary", "p_woman_second"):
        bad = images[images[column].isna()]
        if not bad.empty:
            raise UserError(f"{bad.iloc[0]['member']}'s {bad.iloc[0]['word']} images have no {column} in "
                            f"{len(bad)} rows; delete that images CSV and rerun the member")


# Two studies of the same seeds that differ in one setting (docs/preregistration_main_job_length.md).
COMPARISON_JSON, COMPARISON_MD = "comparison.json", "comparison.md"
COMPARISON_MARGIN = 0.05  # +- share points: docs/preregistration_main_job_length.md says why
# Plan entries that must match for a pair's two members to differ only in the changed setting; train_steps may differ.
SAME_IN_BOTH = ("evaluate", "sample", "data_dir", "embed_source", "images_per_word", "study.first_seed",
                "study.arm_direction")


def _plan_differences(plan: dict[str, Any], reference: dict[str, Any]) -> dict[str, list[Any]]:
    """{entry: [this study's, the reference's]} for the plan entries that differ; refuses any but train_steps."""
    flat, ref = flat_plan(plan), flat_plan(reference)
    differ = {k: [flat.get(k), ref.get(k)] for k in sorted(set(flat) | set(ref)) if flat.get(k) != ref.get(k)}
    mixed = [k for k in differ if k != "train_steps" and any(k == p or k.startswith(p + ".") for p in SAME_IN_BOTH)]
    if mixed:
        raise UserError(f"the two studies differ in {mixed[0]} ({differ[mixed[0]][0]!r} against {differ[mixed[0]][1]!r}) "
                        f"as well as in what is compared, so their members' differences would mix the two; compare "
                        f"studies that differ in one setting")
    return {k: v for k, v in differ.items() if not k.startswith("study.")}


def flat_plan(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A plan's nested entries by dotted name, {'a': {'b': 1}} -> {'a.b': 1}: how a study's plan is compared with
    another (`arms.check_plan`, `compare`)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat_plan(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def compare(study_dir: str, reference_dir: str, margin: float = COMPARISON_MARGIN) -> dict[str, Any]:
    """A single-arm study's real members against another study's real members of the same seeds, pair by pair.

    Per trained word and for the contrast C, all deciding: share here minus share there, pooled over the pairs with
    random effects (each pair's two binomial variances summed: conservative where the images share their noise),
    tested at +-margin by the z-based TOST and by the HKSJ one; it holds when both agree for every reading and every
    member passes the conditioning check. Interim, its progress only, until every planned member of this study is
    recorded. Refuses a reference lacking one of the pairs, and pairs whose images were not drawn from the same
    noise (evaluation seed and noise indices). Samples nothing."""
    plan, images, _, records = load_records(study_dir)
    ref_plan, ref_images, _, ref_records = load_records(reference_dir)
    check_records(plan, images, records)
    if list(plan["study"]["arms"]) != ["real"]:
        raise UserError(f"{study_dir} is not a single-arm study (its arms are {tuple(plan['study']['arms'])}); "
                        f"--compare_to reads a study started with --config.study.arms=\"('real',)\"")
    if classifier.digest(study_dir) != classifier.digest(reference_dir):
        raise UserError(f"{study_dir} and {reference_dir} read their images with different classifiers; copy the "
                        f"reference's {classifier.PARAMS_FILE} and {classifier.METRICS_FILE} into {study_dir} before "
                        f"its first member is drawn, so that one instrument reads both")
    out: dict[str, Any] = {"plan": plan, "reference": reference_dir, "changed": _plan_differences(plan, ref_plan),
                           "margin": margin, "members_recorded": len(records), "pairs_planned": int(plan["study"]["pairs"])}
    counts = _progress(plan, images, records, out)
    if counts is None or out["interim"]:
        return out
    ref_counts = member_counts(ref_images, ref_plan["images_per_word"])
    here, there = _members_by_pair(counts), _members_by_pair(ref_counts)
    pairs = list(range(int(plan["study"]["pairs"])))
    for pair in pairs:
        theirs = there.get(pair, {}).get("real")
        if theirs is None or complete_members(ref_counts, ref_plan, {theirs: ref_records[theirs]}) != {theirs}:
            raise UserError(f"{reference_dir} holds no complete real member of pair {pair}; compare with a study that "
                            f"recorded every pair of this one (the same study.first_seed and at least as many pairs)")
        _check_same_noise(images, ref_images, here[pair]["real"], theirs)
        _check_same_recipe(study_dir, reference_dir, here[pair]["real"], theirs)

    def reading(read: Any) -> dict[str, Any]:
        mine = [read(counts, here[p]["real"]) for p in pairs]
        reference = [read(ref_counts, there[p]["real"]) for p in pairs]
        values = [a[0] - b[0] for a, b in zip(mine, reference)]
        found = agreement.agreement(_pooled(np.asarray(values), np.asarray([a[1] + b[1] for a, b in zip(mine, reference)])),
                                    margin)
        record = found.as_record()
        both = record["verdict"] == "agrees" and (record.get("hksj") or {}).get("verdict") == "agrees"
        return {**record, "holds": both, "pairs": pairs, "members": values}

    out["words"] = {w: reading(lambda c, m, w=w: _share(c, m, w)) for w in SEED_EVAL_WORDS}
    out["contrast"] = reading(contrast)
    out["holds"] = (not out["conditioning"]["failing"] and out["contrast"]["holds"]
                    and all(r["holds"] for r in out["words"].values()))
    # Each length's own spread between seeds, beside the shifts (secondary).
    out["shares"] = {"here": _shares(counts[counts["arm"] == "real"])["real"],
                     "reference": _shares(ref_counts[ref_counts["member"].isin([there[p]["real"] for p in pairs])])["real"]}
    out["roles"] = {"words": "primary", "contrast": "primary", "conditioning": "primary", "shares": "secondary"}
    return out


def _check_same_recipe(study_dir: str, reference_dir: str, mine: str, theirs: str) -> None:
    """Refuses a pair whose members were trained otherwise than the training length (the sweep's member recipe:
    architecture, optimiser, schedule, EMA, data, seed; and the embedding), entries added since either was made
    aside."""
    from jaxdiff.common import configuration
    from jaxdiff.studies import sweep
    from jaxdiff.training import workdirs

    recipe = tuple(k for k in sweep.MEMBER_RECIPE if k != "train.num_steps") + ("embed",)
    workdirs.check_same_architecture(
        configuration.load(os.path.join(reference_dir, theirs)), configuration.load(os.path.join(study_dir, mine)),
        os.path.join(reference_dir, theirs), recipe,
        remedy=f"{mine} has the latter, and a pair's members may differ only in the training length: compare "
               f"studies that differ in one setting")


def _check_same_noise(images: Any, ref_images: Any, mine: str, theirs: str) -> None:
    """Refuses a pair whose images were not drawn from the same evaluation seed and noise indices, word by word."""
    def keys(frame: Any, member: str) -> dict[str, tuple]:
        rows = frame[frame["member"] == member]
        return {w: (tuple(sorted(set(r["evaluation_seed"]))), tuple(sorted(r["noise_index"])))
                for w, r in rows.groupby("word")}

    a, b = keys(images, mine), keys(ref_images, theirs)
    if any(a[w] != b.get(w) for w in a):
        raise UserError(f"{mine} and its reference {theirs} drew their images from other noise (evaluation seed or "
                        f"noise indices differ); a pair is compared image for image, so draw both as the study does")


def curve_whole(over: Any, n: int, earlier: set[int], final: int) -> bool:
    """Whether one member's curve rows (both words' `over_training-WORD.csv`) are whole: n images of each word at
    every earlier checkpoint, and at the last step either none (its primary draws give that point) or n of each
    word (drawn on a retraining)."""
    sizes = {w: over[over["word"] == w].groupby("step").size() for w in CONTRAST}
    at_final = {w: int(sizes[w].get(final, 0)) for w in CONTRAST}
    return (all(set(sizes[w].index) - {final} == earlier and (sizes[w] == n).all() for w in CONTRAST)
            and len(set(at_final.values())) == 1)


def _over_training(study_dir: str, images: Any, plan: dict[str, Any]) -> dict[str, Any] | None:
    """Exploratory: the leakage at each kept checkpoint (`over_training-WORD.csv`), pooled over the pairs, shown only
    once every primary member's curve is recorded (no curve is read before its planned size; until then only how many
    are in). A member's last point comes from its primary draws' first images (the same noise as the curve's), unless
    its curve was drawn on a retraining (its files then hold the last step too): that point is the retraining's, and
    the original members' reading of the same images is kept beside it, a check of how well a member is remade."""
    import pandas as pd

    frames = [pd.read_csv(os.path.join(study_dir, m, f)) for m in sorted(os.listdir(study_dir))
              if os.path.isdir(os.path.join(study_dir, m))
              for f in sorted(os.listdir(os.path.join(study_dir, m))) if f.startswith("over_training-")]
    if not frames:
        return None
    over = pd.concat(frames, ignore_index=True)
    final, planned = int(plan["train_steps"]), int(plan["study"]["pairs"]) * len(plan["study"]["arms"])
    n = int(over.groupby(["member", "word", "step"]).size().max())  # as drawn (the plan may have been extended)
    earlier = set(over["step"]) - {final}
    drawn = sum(curve_whole(rows, n, earlier, final) for _, rows in over.groupby("member"))
    if drawn < planned:
        return {"members": drawn, "planned": planned}
    first = over.groupby("word")["noise_index"].min()
    last = images[images["word"].isin(CONTRAST) & images["arm"].isin(["real", "flipped"])]
    last = last[last["noise_index"] < last["word"].map(first) + n]
    retrained = sorted(set(over.loc[over["step"] == final, "member"]))

    def leakage(rows: Any) -> dict[str, Any] | None:
        counts = member_counts(rows, {w: n for w in CONTRAST})
        pairs, values, variances = paired(counts, "real", "flipped", "half_difference")
        pooled = _pooled(values, variances)
        return None if pooled is None else {"pairs": len(pairs), **pooled.record("ci95")}

    points = []
    for step, rows in pd.concat([over, last[~last["member"].isin(retrained)]], ignore_index=True).groupby("step"):
        point = leakage(rows)
        if point is not None:
            if step == final and retrained:
                original = leakage(last)  # every primary member's original reading of the same noise
                point["original_members"] = original and {k: original[k] for k in ("pairs", "estimate", "ci95")}
            points.append({"step": int(step), **point})
    return {"members": drawn, "planned": planned, "retrained": retrained, "points": points}


def _control(counts: Any, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The positive control: the contrast it reads, and its shift from the same pair's real member, against the
    shift its images carry (nurse - philosopher share of women in its data minus the balanced 0)."""
    shares = plan["study"]["control_woman_share"]
    true = float(shares.get("nurse", 0.5) - shares.get("philosopher", 0.5))
    _, shift, shift_var = paired(counts, "control", "real", "difference")
    shift_pooled = _pooled(shift, shift_var)
    if shift_pooled is None:
        return None
    read_pooled = _arm_contrast(counts, CONTROL_ARM)

    def with_small_sample(pooled: pooling.Pooled) -> dict[str, Any]:
        # Three members estimate tau poorly: the t interval on k - 1 df beside the z one.
        hksj = pooling.hksj_interval(pooled)
        return {**_record(pooled), "ci95_hksj": None if hksj is None else list(hksj)}

    def over_true(pooled: dict[str, Any]) -> dict[str, Any]:
        return {"estimate": pooled["estimate"] / true, "ci95": [c / true for c in pooled["ci95"]],
                "ci95_hksj": None if pooled["ci95_hksj"] is None else [c / true for c in pooled["ci95_hksj"]]}

    pooled_shift, pooled_read = with_small_sample(shift_pooled), with_small_sample(read_pooled)
    return {"true_contrast": true, "shift_from_real": pooled_shift, "read_contrast": pooled_read,
            "sensitivity": over_true(pooled_shift), "read_over_true": over_true(pooled_read)}


def _neutral(counts: Any, systematic: dict[str, Any] | None) -> dict[str, Any] | None:
    """The neutral arm's contrast, pooled, beside the systematic: with no lean left, the contrast should be it."""
    pooled = _record(_arm_contrast(counts, "neutral"))
    if pooled is None:
        return None
    if systematic is not None:
        pooled["minus_systematic"] = pooled["estimate"] - systematic["estimate"]
    return pooled


def _conditioning(counts: Any, threshold: float = 0.9) -> dict[str, Any]:
    """Whether each member draws man and woman as their own gender at least `threshold` of the time (the plan's
    check that the conditioning works; a failing member is reported, not excluded)."""
    rates = {}
    for member, rows in counts[counts["word"].isin(["man", "woman"])].groupby("member"):
        share = dict(zip(rows["word"], rows["women"] / rows["n"]))
        if {"man", "woman"} <= set(share):
            rates[member] = {"man": 1 - float(share["man"]), "woman": float(share["woman"])}
    failing = sorted(m for m, r in rates.items() if min(r.values()) < threshold)
    return {"threshold": threshold, "members": len(rates), "failing": failing}


def _shares(counts: Any) -> dict[str, dict[str, Any]]:
    """Per arm and word, the share of women pooled over the members (random effects)."""
    out: dict[str, dict[str, Any]] = {}
    for (arm, word), rows in counts.groupby(["arm", "word"]):
        pooled = pooling.pooled_share(rows["women"].to_numpy(), rows["n"].to_numpy())
        out.setdefault(arm, {})[word] = {**pooled.record("ci95", "tau", estimate_as="share_woman"),
                                         "members": len(rows), "images": int(rows["n"].sum())}
    return out


def _arm_contrast(counts: Any, arm: str) -> pooling.Pooled | None:
    """An arm's contrast C = share(nurse) - share(philosopher), pooled over its members (random effects)."""
    read = [r for r in (contrast(counts, m) for m in sorted(set(counts[counts["arm"] == arm]["member"])))
            if r is not None]
    return _pooled(np.array([r[0] for r in read]), np.array([r[1] for r in read]))


def _contrasts(counts: Any) -> dict[str, dict[str, Any]]:
    """Per arm, its pooled contrast (arms with no member holding both professions left out)."""
    pooled = {arm: _arm_contrast(counts, arm) for arm in sorted(set(counts["arm"]))}
    return {arm: _record(p) for arm, p in pooled.items() if p is not None}


def _slopes(counts: Any, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per profession word: (share_real - share_flipped) / (lean_real - lean_flipped) per pair, pooled: how many
    share points a unit of she-he lean (raw space) moves the word's images."""
    out = {}
    by_pair = _members_by_pair(counts)
    for word in CONTRAST:  # the plan's two words: person's lean barely moves under the flip
        values, variances, lean_gaps = [], [], []
        for pair, by_arm in sorted(by_pair.items()):
            if "real" not in by_arm or "flipped" not in by_arm:
                continue
            a, b = _share(counts, by_arm["real"], word), _share(counts, by_arm["flipped"], word)
            lean_a = records[by_arm["real"]]["leans"][word]["she_he_raw"]
            lean_b = records[by_arm["flipped"]]["leans"][word]["she_he_raw"]
            if a is None or b is None or lean_a == lean_b:
                continue
            values.append((a[0] - b[0]) / (lean_a - lean_b))
            variances.append((a[1] + b[1]) / (lean_a - lean_b) ** 2)
            lean_gaps.append(lean_a - lean_b)
        pooled = _record(_pooled(np.array(values), np.array(variances)))
        if pooled is not None:  # the raw lean is the same in every pair (one source, one direction)
            pooled["lean_real_minus_flipped"] = float(np.mean(lean_gaps))
        out[word] = pooled
    return out


def _timings(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Minutes per member: training and drawing, from every invocation recorded, and the devices they ran on."""
    training, drawing, devices = [], [], set()
    for record in records.values():
        invocations = record.get("invocations", [])
        training += [i["training_s"] / 60 for i in invocations if "training_s" in i]
        spent = sum(sum(i.get("drawing_s", {}).values()) for i in invocations)
        drawing += [spent / 60] if spent else []
        # The members' own stages only: a secondary stage (the curve over training) may run on another machine.
        devices |= {i["device"] for i in invocations if "device" in i and ("training_s" in i or "drawing_s" in i)}
    median = lambda x: float(np.median(x)) if x else None  # noqa: E731
    return {"training_minutes_median": median(training), "drawing_minutes_median": median(drawing),
            "total_minutes": float(sum(training) + sum(drawing)), "devices": sorted(devices)}


# ---------------------------------------------------------------------------------------------
# The primary analysis on simulated studies: its interval's coverage and its tests' error rates at the planned
# size, where the answer is known.

# The simulated pairs' nuisance, of the sizes the earlier sweeps saw (docs/results.md): a systematic contrast and
# each pair's own share offsets (its seeds' effect), common to its two arms. The simulation assumes the plan's model
# (the flip moves the contrast by -2L, pairs spread by tau), so it checks the pooling and the tests, not the estimand.
SIMULATED_SYSTEMATIC, SIMULATED_PAIR_SD = -0.05, 0.02


def simulated_counts(rng: np.random.Generator, study: dict[str, Any], leakage: float, tau: float) -> Any:
    """One simulated study's nurse and philosopher counts per member, as `member_counts` gives them: pair i's
    leakage is `leakage` + tau z_i, its members' shares binomial at the plan's images."""
    import pandas as pd

    rows, n = [], int(study["images"])
    for pair in range(int(study["pairs"])):
        pair_leakage = leakage + tau * rng.standard_normal()
        nurse, philosopher = 0.5 + SIMULATED_PAIR_SD * rng.standard_normal(2)
        for arm, sign in (("real", 1.0), ("flipped", -1.0)):
            # C_arm = (nurse - philosopher) + systematic + sign * L_i, so (C_real - C_flipped) / 2 = L_i.
            for word, p in (("nurse", nurse + SIMULATED_SYSTEMATIC + sign * pair_leakage), ("philosopher", philosopher)):
                if not 0 <= p <= 1:  # clipping would move the truth the coverage is counted against
                    raise UserError(f"a simulated share of {p:.3f}: leakage {leakage} and tau {tau} reach past 0 or 1")
                rows.append({"member": f"pair{pair}-{arm}", "pair": pair, "arm": arm, "word": word,
                             "women": int(rng.binomial(n, p)), "n": n})
    return pd.DataFrame(rows)


def simulate(study: dict[str, Any], leakage: float, tau: float, sims: int, seed: int = 0) -> dict[str, Any]:
    """The primary analysis of `sims` simulated studies with true leakage and between-pair SD `tau`: how often its
    95% intervals (z, HKSJ) hold the truth, how often each TOST rejects (at the margin: the error rate; inside it:
    the power), the median half-width; each rate with its Monte-Carlo 95% (Wilson) interval."""
    from jaxdiff.statistics import intervals

    if int(study["pairs"]) < 2:
        raise UserError(f"study.pairs={study['pairs']}: the simulation needs two pairs or more (HKSJ has k - 1 df)")
    rng = np.random.default_rng(seed)
    hits = {"coverage_z": 0, "coverage_hksj": 0, "tost_z": 0, "tost_hksj": 0, "tost_stretch": 0}
    half_widths = []
    for _ in range(sims):
        _, values, variances = paired(simulated_counts(rng, study, leakage, tau), "real", "flipped", "half_difference")
        tests = pooling.margin_tests(pooling.random_effects(values, variances), float(study["margin"]),
                                     float(study["stretch_margin"]))
        hits["coverage_z"] += tests.primary.ci95[0] <= leakage <= tests.primary.ci95[1]
        hits["coverage_hksj"] += tests.hksj.ci95[0] <= leakage <= tests.hksj.ci95[1]
        hits["tost_z"] += tests.primary.tost_p_value < 0.05
        hits["tost_hksj"] += tests.hksj.tost_p_value < 0.05
        hits["tost_stretch"] += tests.stretch.tost_p_value < 0.05
        half_widths.append((tests.primary.ci95[1] - tests.primary.ci95[0]) / 2)
    return {"leakage": leakage, "tau": tau, "sims": sims, "pairs": int(study["pairs"]), "images": int(study["images"]),
            **{k: {"rate": v / sims, "ci95": list(intervals.wilson_interval(int(v), sims))} for k, v in hits.items()},
            "half_width_median": float(np.median(half_widths))}


# The between-pair SD of the leakage the plan was sized with (docs/preregistration.md, "Size"). Not a config field:
# the study section is the running study's plan.json, which a new field would no longer match.
PLANNED_TAU = 0.0113


def simulation_scenarios(study: dict[str, Any]) -> list[tuple[float, float]]:
    """(true leakage, tau) worth simulating for a plan: no leakage, a point of it, the stretch margin and the margin
    (where each TOST's error rate is read) at the planned tau; then no spread, and twice the planned spread."""
    margin, stretch = float(study["margin"]), float(study["stretch_margin"])
    return [(0.0, PLANNED_TAU), (0.01, PLANNED_TAU), (stretch, PLANNED_TAU), (margin, PLANNED_TAU),
            (0.0, 0.0), (0.0, 2 * PLANNED_TAU), (margin, 2 * PLANNED_TAU)]

"""The arms study: its members and seeds, the estimand on fabricated records, the study end to end on tiny sizes."""

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli, tiny_config
from jaxdiff.common import files
from jaxdiff.measurement import calibration
from jaxdiff.studies import arms, arms_analysis, arms_report
from jaxdiff.common.errors import UserError


def test_pairs_share_their_seeds_and_differ_only_in_the_arm(tmp_path):
    config = tiny_config("data/x")
    config.study.pairs, config.study.control_pairs = 3, 2
    grid = arms.members(config, str(tmp_path))
    assert [m.name for m in grid] == ["pair0-real", "pair0-flipped", "pair0-control", "pair1-real", "pair1-flipped",
                                      "pair1-control", "pair2-real", "pair2-flipped"]
    seeds = {m.pair: set() for m in grid}
    for m in grid:
        seeds[m.pair].add(m.seed)
    assert all(len(s) == 1 for s in seeds.values()) and len({s.pop() for s in seeds.values()}) == 3
    real, flipped, control = (arms.member_config(config, m).to_dict() for m in grid[:3])
    assert (real["seed"], real["embed"]["seed"]) == (flipped["seed"], flipped["embed"]["seed"]) == (1000, 1000)
    assert (real["embed"]["arm"], flipped["embed"]["arm"], control["embed"]["arm"]) == ("real", "flipped", "real")
    # Apart from the arm, the workdir and the evaluation seed (no two members share noise), nothing differs.
    for section in set(real) - {"embed", "workdir", "evaluate"}:
        assert real[section] == flipped[section], section
    assert real["evaluate"]["seed"] != flipped["evaluate"]["seed"]
    assert {k: v for k, v in real["embed"].items() if k != "arm"} == {k: v for k, v in flipped["embed"].items() if k != "arm"}
    # The control: the real embedding on images drawn with nurse 60% and philosopher 40% women, in their own directory.
    assert control["portraits"]["woman_share"] == {"person": 0.5, "nurse": 0.6, "philosopher": 0.4}
    assert control["data"]["dir"] == "data/x-nurse60-philosopher40" and real["data"]["dir"] == "data/x"


def test_the_primary_arms_are_real_and_flipped(tmp_path):
    config = tiny_config("data/x")
    config.study.arms = ("real", "neutral")
    with pytest.raises(UserError, match="secondary_arms"):
        arms.members(config, str(tmp_path))


def _fabricate_study(directory, shares_by_member, images=1000, pairs=None, reader_offset=0.0, images_person=0,
                     **overrides):
    """A study directory whose members' images read as women with exactly the given shares per word."""
    config = tiny_config("data/x", **overrides)
    config.study.images, config.study.images_person, config.study.images_man_woman = images, images_person, images
    config.study.pairs = pairs or len({p for p, a in shares_by_member if a != "control"})
    config.study.control_pairs = len({p for p, a in shares_by_member if a == "control"})
    files.write_json(os.path.join(directory, arms_analysis.PLAN_JSON), json.loads(json.dumps(arms.plan(config))))
    for (pair, arm), shares in shares_by_member.items():
        name = arms.member_name(pair, arm)
        os.makedirs(os.path.join(directory, name))
        leans = {"nurse": 0.281, "philosopher": -0.188, "person": 0.016}
        sign = -1.0 if arm == "flipped" else 1.0
        files.write_json(os.path.join(directory, name, arms_analysis.MEMBER_JSON), {
            "pair": pair, "arm": arm, "seed": 1000 + pair, "primary": arm in ("real", "flipped"),
            "leans": {w: {"she_he_raw": sign * v} for w, v in leans.items()},
            "invocations": [{"device": "test", "training_s": 60.0, "drawing_s": {"nurse": 30.0}}]})
        files.write_json(os.path.join(directory, name, "config.json"), json.loads(config.to_json_best_effort()))
        for word, share in {"man": 0.02, "woman": 0.97, **shares}.items():  # the conditioning check's words too
            women = int(round(share * images))
            p = np.r_[np.full(women, 0.9), np.full(images - women, 0.1)]
            pd.DataFrame({"member": name, "pair": pair, "arm": arm, "seed": 1000 + pair, "word": word,
                          "noise_index": np.arange(images), "step": config.train.num_steps, "evaluation_seed": 1,
                          "p_woman_primary": p, "p_woman_second": np.clip(p + reader_offset, 0, 1),
                          "profession_primary": 1}).to_csv(arms.images_csv(os.path.join(directory, name), word),
                                                            index=False)
    return config


def test_the_estimand_recovers_known_leakage_and_systematic(tmp_path):
    # Every pair: the systematic S = -5 points and leakage L = +2 points, so C_real = S + L = -3 and
    # C_flipped = S - L = -7; the pairs add their own offsets, which the differences remove.
    members = {}
    for pair, offset in enumerate([0.0, 0.02, -0.03, 0.01]):
        members[pair, "real"] = {"nurse": 0.48 + offset, "philosopher": 0.51 + offset}
        members[pair, "flipped"] = {"nurse": 0.46 + offset, "philosopher": 0.53 + offset}
    members[0, "control"] = {"nurse": 0.58, "philosopher": 0.41}  # reads +17 where its real member reads -3
    members[0, "real"].update(man=0.02, woman=0.97)
    members[0, "flipped"].update(man=0.15, woman=0.97)  # draws too many men as women: reported
    _fabricate_study(str(tmp_path), members)
    result = arms_analysis.analyse(str(tmp_path))
    assert result["pairs_complete"] == 4 and not result["interim"]
    assert result["leakage"]["estimate"] == pytest.approx(0.02, abs=1e-9)
    assert result["leakage"]["members"] == pytest.approx([0.02] * 4)
    assert result["systematic"]["estimate"] == pytest.approx(-0.05, abs=1e-9)
    assert result["control"]["shift_from_real"]["estimate"] == pytest.approx(0.20, abs=1e-9)
    assert result["control"]["sensitivity"]["estimate"] == pytest.approx(1.0)
    assert result["control"]["read_over_true"]["estimate"] == pytest.approx(0.85)
    # The share of nurse moves 2 points per 0.562 of lean: a slope of 0.0356 share per unit.
    assert result["slopes"]["nurse"]["estimate"] == pytest.approx(0.02 / 0.562)
    assert result["second_classifier_leakage"]["agrees"]
    assert result["conditioning"] == {"threshold": 0.9, "members": 9, "failing": ["pair0-flipped"]}
    text = arms_report.render_markdown(result)
    assert "+2.0" in text and "interim" not in text.split("## Secondary")[0].lower()


def test_fewer_pairs_than_planned_are_interim_and_show_no_estimate(tmp_path):
    members = {(0, "real"): {"nurse": 0.7, "philosopher": 0.3, "man": 0.02, "woman": 0.97},
               (0, "flipped"): {"nurse": 0.3, "philosopher": 0.7, "man": 0.02, "woman": 0.97}}
    _fabricate_study(str(tmp_path), members, pairs=10)
    result = arms_analysis.analyse(str(tmp_path))
    assert result["interim"] and result["pairs_complete"] == 1
    assert result["members_complete"] == ["pair0-flipped", "pair0-real"]
    # Nothing read from the professions' images: an estimate's interval and TOST p would be the verdict by another name.
    for withheld in ("leakage", "systematic", "shares", "contrasts", "control", "slopes", "second_classifier_leakage"):
        assert withheld not in result, withheld
    assert result["conditioning"]["members"] == 2  # the pipeline's health check is shown
    line = arms_report.headline(result)
    assert line.startswith("arms study: INTERIM (2 of 20 planned members recorded, 1 of 10 pairs complete)")
    assert "+" not in line
    text = arms_report.render_markdown(result)
    assert "withheld" in text and "+20" not in text and "70.0%" not in text and "verdict:" not in text.lower()


def _study_of_identical_pairs(directory, pairs, images, nurse_real, philosopher_real, nurse_flipped, philosopher_flipped):
    """Every pair reads the same shares: no spread between pairs, so the pooled figures have closed forms."""
    members = {}
    for pair in range(pairs):
        members[pair, "real"] = {"nurse": nurse_real, "philosopher": philosopher_real}
        members[pair, "flipped"] = {"nurse": nurse_flipped, "philosopher": philosopher_flipped}
    _fabricate_study(directory, members, images=images, pairs=pairs)
    return arms_analysis.analyse(directory)


def test_the_primary_verdict_and_its_small_sample_check_on_a_known_answer(tmp_path):
    from scipy import stats
    from jaxdiff.statistics import pooling

    # Ten identical pairs, every share 40 of 80: L = 0, tau = 0, and a pair's L has the variance of one share
    # ((4 shares) / 4), so the pooled SE is sqrt(v / 10), about 1.76 points. 3 / SE = 1.71 lies between z's 1.645
    # and t(9)'s 1.833: the planned z-based TOST at +-3 rejects both sides, its HKSJ check does not.
    result = _study_of_identical_pairs(str(tmp_path), 10, 80, 0.5, 0.5, 0.5, 0.5)
    leakage = result["leakage"]
    se = float(np.sqrt(pooling.binomial_variance(40, 80) / 10))
    assert not result["interim"] and leakage["k"] == 10 and leakage["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert leakage["se"] == pytest.approx(se) and leakage["tau"] == pytest.approx(0.0, abs=1e-9)
    assert leakage["ci95"] == pytest.approx([-1.959964 * se, 1.959964 * se], rel=1e-5)
    assert leakage["ci90"] == pytest.approx([-1.644854 * se, 1.644854 * se], rel=1e-5)
    assert leakage["tost_p_value"] == pytest.approx(stats.norm.sf(0.03 / se)) and leakage["tost_p_value"] < 0.05
    assert leakage["verdict"] == "no leakage" and leakage["margin"] == 0.03
    assert leakage["hksj"]["df"] == 9 and leakage["hksj"]["tost_p_value"] == pytest.approx(stats.t(9).sf(0.03 / se))
    assert leakage["hksj"]["verdict"] == "undecided"
    # The stretch margin is its own test (+-2), not the primary's.
    assert leakage["stretch"]["margin"] == 0.02
    assert leakage["stretch"]["tost_p_value"] == pytest.approx(stats.norm.sf(0.02 / se))
    assert leakage["stretch"]["verdict"] == "undecided" and leakage["half_width"] == pytest.approx(1.959964 * se, rel=1e-5)
    text, line = arms_report.render_markdown(result), arms_report.headline(result)
    for shown in (text, line):
        assert "no leakage larger than 3 points" in shown
        assert 'but the verdict does not survive the small-sample correction (HKSJ, t on 9 df), which reads "undecided"' in shown
    # The README's row gives the primary verdict, not its check's.
    assert arms_report.readme_answer(result).rstrip().endswith(": no leakage |")
    assert "the planned half-width goal of 2 points is not met" in text and f"Stretch (the same TOST at +-2 points): p {stats.norm.sf(0.02 / se):.3g}" in text
    assert result["roles"]["leakage"] == "primary" and result["roles"]["neutral"] == "exploratory"


def test_a_verdict_that_survives_its_check_says_so_and_the_readme_answer_shows_it(tmp_path):
    # Real nurse 55% and philosopher 45% women, flipped 45% and 55%: C_real +10, C_flipped -10, L = +10 points.
    result = _study_of_identical_pairs(str(tmp_path), 10, 1000, 0.55, 0.45, 0.45, 0.55)
    leakage = result["leakage"]
    assert leakage["estimate"] == pytest.approx(0.10) and leakage["verdict"] == leakage["hksj"]["verdict"] == "leakage"
    answer = arms_report.readme_answer(result)
    first, table = answer.split("\n\n")
    assert first.startswith("**Leakage of at least 3 points: the 95% interval of the leakage estimate lies wholly above +3 "
                            "points; the planned small-sample check (HKSJ, t on 9 df) reads the same** (pre-registered; "
                            "10 pairs")
    rows = table.strip().split("\n")
    assert rows[0] == "| arm | philosopher | person | nurse | man | woman | C = nurse - philosopher |"
    assert rows[2].startswith("| real | 45.0% [") and "| +10.0 [" in rows[2]
    assert rows[3].startswith("| flipped (lean negated) | 55.0% [") and "| -10.0 [" in rows[3]
    assert rows[4].startswith("| **leakage** (C_real - C_flipped) / 2 |") and "**+10.0 [" in rows[4]
    assert rows[4].endswith(": leakage |") and len(rows) == 5


def test_the_stretch_and_the_goal_are_tested_at_two_points_and_the_control_gets_a_t_interval(tmp_path):
    from scipy import stats
    from jaxdiff.statistics import pooling

    # 80 of 160 in every share: SE = sqrt(v / 10), about 1.25 points, so the half-width (2.4) lies between the
    # stretch margin and the primary one: TOST at +-3 passes (both ways), at +-2 it does not, the goal is not met.
    members = {}
    for pair in range(10):
        members[pair, "real"] = members[pair, "flipped"] = {"nurse": 0.5, "philosopher": 0.5}
    for pair in range(3):  # the control's images carry +20 points; it reads +20 (nurse 60%, philosopher 40%)
        members[pair, "control"] = {"nurse": 0.6, "philosopher": 0.4}
    _fabricate_study(str(tmp_path), members, images=160)
    result = arms_analysis.analyse(str(tmp_path))
    leakage, se = result["leakage"], float(np.sqrt(pooling.binomial_variance(80, 160) / 10))
    assert 0.02 < leakage["half_width"] < 0.03 and leakage["verdict"] == leakage["hksj"]["verdict"] == "no leakage"
    assert leakage["stretch"]["tost_p_value"] == pytest.approx(stats.norm.sf(0.02 / se))
    assert leakage["stretch"]["verdict"] == "undecided"
    text, line = arms_report.render_markdown(result), arms_report.headline(result)
    assert "the planned half-width goal of 2 points is not met" in text
    stretch_p = f"{stats.norm.sf(0.02 / se):.3g}"
    assert (f"Stretch (the same TOST at +-2 points): p {stretch_p}, undecided: the 95% interval of the leakage "
            "estimate lies neither wholly above +2") in text
    assert line.endswith(f"Stretch +-2: TOST p {stretch_p}, undecided") and "verdict: no leakage larger than 3" in line
    assert set(result["slopes"]) == {"nurse", "philosopher"}  # the plan's two words, not person
    # The control: three identical members, so tau = 0 and its t interval on 2 df is z's widened by t / z.
    control = result["control"]
    read, widen = control["read_contrast"], stats.t(2).ppf(0.975) / stats.norm.ppf(0.975)
    assert read["k"] == 3 and read["estimate"] == pytest.approx(0.20)
    assert np.diff(read["ci95_hksj"])[0] == pytest.approx(np.diff(read["ci95"])[0] * widen)
    assert control["read_over_true"]["ci95_hksj"] == pytest.approx([c / 0.2 for c in read["ci95_hksj"]])
    shift = control["shift_from_real"]
    assert control["sensitivity"]["ci95_hksj"] == pytest.approx([c / 0.2 for c in shift["ci95_hksj"]])
    assert "Positive control (3 members; true contrast +20.0): reads +20.0" in text
    assert "read / true 1.00 [" in text and "(z; HKSJ [" in text
    answer = arms_report.readme_answer(result)
    assert "| positive control (+20.0 points in its images) | 40.0% [" in answer


def test_the_study_stays_interim_until_every_planned_member_is_whole(tmp_path):
    members = {}
    for pair in range(2):
        members[pair, "real"] = members[pair, "flipped"] = {"nurse": 0.5, "philosopher": 0.5}
    members[0, "control"] = {"nurse": 0.6, "philosopher": 0.4}
    _fabricate_study(str(tmp_path), members)
    assert not arms_analysis.analyse(str(tmp_path))["interim"]
    # Both pairs hold their professions, but pair1-flipped has not drawn woman yet: still interim.
    os.remove(arms.images_csv(str(tmp_path / "pair1-flipped"), "woman"))
    result = arms_analysis.analyse(str(tmp_path))
    assert result["interim"] and result["pairs_complete"] == 2 and "pair1-flipped" not in result["members_complete"]
    assert "leakage" not in result
    # So is a study whose control is missing.
    _fabricate_study(str(tmp_path / "again"), {k: v for k, v in members.items() if k[1] != "control"})
    plan_path = os.path.join(tmp_path, "again", arms_analysis.PLAN_JSON)
    plan = files.read_json(plan_path)
    plan["study"]["control_pairs"] = 1
    files.write_json(plan_path, plan)
    assert arms_analysis.analyse(str(tmp_path / "again"))["interim"]


def test_a_secondary_arm_drawn_after_the_read_is_exploratory_and_stays_out_of_the_answer(tmp_path):
    members = {}
    for pair in range(2):
        members[pair, "real"] = {"nurse": 0.52, "philosopher": 0.48}
        members[pair, "flipped"] = {"nurse": 0.48, "philosopher": 0.52}
        members[pair, "neutral"] = {"nurse": 0.5, "philosopher": 0.5}
    _fabricate_study(str(tmp_path), members)  # plan.json's secondary_arms stays as the study began: empty
    result = arms_analysis.analyse(str(tmp_path))
    assert result["neutral"]["estimate"] == pytest.approx(0.0) and result["roles"]["neutral"] == "exploratory"
    assert "neutral" not in arms_report.readme_answer(result) and "neutral" not in result["shares"]
    assert set(result["other_arms"]["shares"]) == {"neutral"} and result["roles"]["other_arms"] == "exploratory"
    assert arms_report.readme_answer(result) in arms_report.render_markdown(result)  # arms.md carries it to copy
    text = arms_report.render_markdown(result)
    secondary, exploratory = text.split("## Secondary readings")[1].split("## Exploratory readings")
    assert "neutral" not in secondary.lower() and "| neutral | 50.0% [" in exploratory
    assert "Neutral arm's contrast: +0.0" in exploratory


def test_a_simulated_study_carries_the_leakage_it_was_drawn_with():
    # No spread between pairs and a million images a member: the pooled estimate is the true leakage.
    study = {"pairs": 10, "images": 1_000_000, "margin": 0.03, "stretch_margin": 0.02}
    counts = arms_analysis.simulated_counts(np.random.default_rng(0), study, leakage=0.02, tau=0.0)
    assert len(counts) == 40 and set(counts["n"]) == {1_000_000}
    _, values, _ = arms_analysis.paired(counts, "real", "flipped", "half_difference")
    assert values == pytest.approx([0.02] * 10, abs=0.003)
    _, systematic, _ = arms_analysis.paired(counts, "real", "flipped", "half_sum")
    assert np.mean(systematic) == pytest.approx(arms_analysis.SIMULATED_SYSTEMATIC, abs=0.02)  # plus the pairs' offsets
    # With spread: 400 pairs' leakages scatter by tau about the truth (binomial noise is 0.07 points here).
    many = {**study, "pairs": 400}
    _, values, _ = arms_analysis.paired(arms_analysis.simulated_counts(np.random.default_rng(1), many, 0.02, 0.01),
                                        "real", "flipped", "half_difference")
    assert np.mean(values) == pytest.approx(0.02, abs=0.0015) and np.std(values) == pytest.approx(0.01, rel=0.1)
    with pytest.raises(UserError, match="reach past 0 or 1"):  # never clipped: the truth would move
        arms_analysis.simulated_counts(np.random.default_rng(0), study, leakage=0.6, tau=0.0)


@pytest.mark.slow
def test_the_primary_analysis_covers_and_keeps_its_error_rate_at_the_planned_size():
    """The plan's ten pairs at 1,200 images, between-pair SD as planned: the HKSJ interval covers the truth about 95%
    of the time, the z interval somewhat less (its tau is estimated from ten pairs), and at a true leakage on the
    margin each TOST wrongly declares "no leakage" about 5% of the time. docs/arms.md has 2,000 studies a case."""
    study = {"pairs": 10, "images": 1200, "margin": 0.03, "stretch_margin": 0.02}
    null = arms_analysis.simulate(study, 0.0, arms_analysis.PLANNED_TAU, sims=300, seed=1)
    assert 0.92 <= null["coverage_hksj"]["rate"] <= 0.99 and 0.86 <= null["coverage_z"]["rate"] <= 0.97
    assert null["tost_z"]["rate"] >= 0.97 and null["tost_hksj"]["rate"] >= 0.95  # the planned power: above 0.99
    edge = arms_analysis.simulate(study, 0.03, arms_analysis.PLANNED_TAU, sims=300, seed=2)
    assert 0.01 <= edge["tost_hksj"]["rate"] <= 0.09 and 0.01 <= edge["tost_z"]["rate"] <= 0.10
    table = arms_report.simulation_table([null, edge])
    assert table.count("\n| +") == 2 and "| +3.0 | 1.13 |" in table


@pytest.mark.parametrize("spoil, message", [
    (lambda d: _edit_member(d, "pair1-real", seed=1005), "pair1-real was trained with seed 1005, not the plan's 1001"),
    (lambda d: _edit_member(d, "pair1-real", pair=12), "pair1-real is pair 12's 'real' member, outside the plan"),
    (lambda d: _edit_member(d, "pair1-real", arm="control"), "pair1-real is pair 1's 'control' member, outside the plan"),
    (lambda d: _edit_member(d, "pair1-real", arm="sideways"), "pair1-real is pair 1's 'sideways' member, outside"),
    (lambda d: shutil.copytree(os.path.join(d, "pair0-real"), os.path.join(d, "pair0-real-again")),
     "pair0-real and pair0-real-again are both pair 0's real member; keep one"),
    (lambda d: _edit_images(d, "pair0-flipped", "nurse", step=500),
     "pair0-flipped's nurse images were drawn at step 500, not the plan's"),
    (lambda d: _edit_images(d, "pair0-flipped", "philosopher", p_woman_second=np.nan),
     "pair0-flipped's philosopher images have no p_woman_second in 1000 rows"),
])
def test_records_that_are_not_the_plans_are_refused(tmp_path, spoil, message):
    members = {(p, a): {"nurse": 0.5, "philosopher": 0.5} for p in range(2) for a in ("real", "flipped")}
    _fabricate_study(str(tmp_path), members)
    spoil(str(tmp_path))
    with pytest.raises(UserError, match=re.escape(message)):
        arms_analysis.analyse(str(tmp_path))


def _edit_member(directory, member, **fields):
    path = os.path.join(directory, member, arms_analysis.MEMBER_JSON)
    files.write_json(path, {**files.read_json(path), **fields})


def _edit_images(directory, member, word, **columns):
    path = arms.images_csv(os.path.join(directory, member), word)
    pd.read_csv(path).assign(**columns).to_csv(path, index=False)


def test_a_reader_that_disagrees_is_reported(tmp_path):
    members = {}
    for pair in range(3):
        members[pair, "real"] = {"nurse": 0.52, "philosopher": 0.50}
        members[pair, "flipped"] = {"nurse": 0.50, "philosopher": 0.52}
    _fabricate_study(str(tmp_path), members)
    frame = pd.read_csv(arms.images_csv(str(tmp_path / "pair0-real"), "nurse"))
    men = frame.index[frame["p_woman_second"] < 0.5][:300]
    frame.loc[men, "p_woman_second"] = 0.95  # the second classifier reads 300 more of real nurse as women
    frame.to_csv(arms.images_csv(str(tmp_path / "pair0-real"), "nurse"), index=False)
    result = arms_analysis.analyse(str(tmp_path))
    assert not result["second_classifier_leakage"]["agrees"]
    assert "does NOT agree" in arms_report.render_markdown(result)


def test_corrected_leakage_divides_by_the_classifiers_separation_and_carries_its_uncertainty(tmp_path):
    members = {}
    for pair in range(4):
        members[pair, "real"] = {"nurse": 0.53, "philosopher": 0.49}
        members[pair, "flipped"] = {"nurse": 0.49, "philosopher": 0.53}
    _fabricate_study(str(tmp_path), members)
    result = arms_analysis.analyse(str(tmp_path))
    rows = []
    # A classifier that reads 80% of women and 0% of men as women in both professions: s - f = 0.8.
    for profession, women_read in (("nurse", 800), ("philosopher", 800), ("person", 1000)):
        for gender, read in (("woman", women_read), ("man", 0)):
            p = np.r_[np.full(read, 0.9), np.full(1000 - read, 0.1)]
            rows.append(pd.DataFrame({"classifier": "primary", "class_name": f"{gender}-{profession}",
                                      "gender": gender, "profession": profession, "index": np.arange(1000),
                                      "p_woman": p}))
    readings = pd.concat(rows)
    counts = arms_analysis.member_counts(pd.concat(
        [pd.read_csv(os.path.join(tmp_path, m, f)) for m in os.listdir(tmp_path) if m.startswith("pair")
         for f in os.listdir(os.path.join(tmp_path, m)) if f.startswith("images-")]), result["plan"]["images_per_word"])
    corrected = arms_analysis.corrected_leakage(counts, readings, "primary", 0.03)
    assert result["leakage"]["estimate"] == pytest.approx(0.04)
    assert corrected["estimate"] == pytest.approx(0.04 / 0.8)
    assert corrected["calibration_se"] > 0 and corrected["se"] > corrected["pooling_se"]
    assert calibration.confusion(readings, "primary")["nurse"]["woman"]["rate"] == 0.8


@pytest.mark.slow
def test_the_study_runs_resumes_exports_and_aggregates_from_its_records_alone(tmp_path, tiny_dataset, monkeypatch):
    study = str(tmp_path / "study")
    data = str(tmp_path / "portraits")
    os.symlink(tiny_dataset, data)
    args = ["--config=configs/tiny.py", f"--workdir={study}", f"--config.data.dir={data}", "--config.study.pairs=1"]
    result = run_cli("jaxdiff.arms", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    names = ["pair0-real", "pair0-flipped", "pair0-control"]
    for name in names:
        frame = pd.read_csv(arms.images_csv(os.path.join(study, name), "nurse"))
        assert len(frame) == 6 and frame["p_woman_primary"].between(0, 1).all()
        assert set(frame.columns) >= {"member", "pair", "arm", "word", "noise_index", "step", "p_woman_primary",
                                      "p_woman_second"}
    assert os.path.isdir(data + "-nurse60-philosopher40")  # the control's images, named by their shares
    calibration_frame = pd.read_csv(os.path.join(study, calibration.CALIBRATION_CSV))
    assert len(calibration_frame) == 2 * 6 * 5  # two classifiers x six classes x 5 images
    before = {n: files.read_json(os.path.join(study, n, arms.MEMBER_JSON)) for n in names}
    assert {r["version"] for r in before.values()} == {2}  # member.json records carry their version
    again = run_cli("jaxdiff.arms", *args)  # everything is done: nothing is trained or drawn again
    assert again.returncode == 0 and "training" not in again.stdout
    assert {n: files.read_json(os.path.join(study, n, arms.MEMBER_JSON)) for n in names} == before
    curve = run_cli("jaxdiff.arms", *args, "--over_training", "--config.study.images_over_training=4")
    assert curve.returncode == 0, curve.stderr[-2000:]
    for name in ("pair0-real", "pair0-flipped"):  # primary members only, at the checkpoint kept before the last
        frame = pd.read_csv(arms.over_training_csv(os.path.join(study, name), "nurse"))
        assert frame["step"].tolist() == [3] * 4 and frame["p_woman_second"].between(0, 1).all()
    assert not os.path.exists(arms.over_training_csv(os.path.join(study, "pair0-control"), "nurse"))
    refused = run_cli("jaxdiff.arms", *args[:-1], "--config.study.pairs=2")
    assert refused.returncode == 2 and "study.pairs=1, not 2" in refused.stderr
    records = str(tmp_path / "records")
    assert run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={study}", f"--export={records}").returncode == 0
    assert not any(f.startswith("checkpoints") for _, dirs, _ in os.walk(records) for f in dirs)
    # From the records alone, sampling forbidden, the analysis is the study's own.
    monkeypatch.setattr("jaxdiff.core.sampling.ImageSampler.sample", lambda *a, **k: pytest.fail("sampled"))
    from_records = arms_analysis.analyse(records)
    from_study = arms_analysis.analyse(study)
    assert from_records["leakage"] == from_study["leakage"] and from_records["control"] == from_study["control"]
    assert from_records["over_training"] == from_study["over_training"]
    assert [p["step"] for p in from_study["over_training"]["points"]] == [3, 6]
    # A study goes on from its committed records on a new machine: copied into a fresh directory, every recorded
    # member counts as done (no checkpoints needed) and nothing is trained or drawn again.
    monkeypatch.undo()
    moved = shutil.copytree(records, str(tmp_path / "moved"))
    resumed = run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={moved}", f"--config.data.dir={data}",
                      "--config.study.pairs=1")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count(": done\n") == 3 and "training" not in resumed.stdout
    # The curve on a machine that holds only the records: each primary member is trained again from scratch with
    # its seeds in MEMBER/retrained and draws every kept checkpoint there, the last too; its files join the member's
    # only when whole. On one machine the retraining is the original bit for bit: the last point's images read as
    # the original's first images did.
    for name in ("pair0-real", "pair0-flipped"):
        for word in ("nurse", "philosopher"):
            os.remove(arms.over_training_csv(os.path.join(moved, name), word))
    redrawn = run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={moved}", f"--config.data.dir={data}",
                      "--config.study.pairs=1", "--over_training", "--config.study.images_over_training=4")
    assert redrawn.returncode == 0, redrawn.stderr[-2000:]
    assert redrawn.stdout.count("training it again from scratch") == 2
    for name in ("pair0-real", "pair0-flipped"):
        workdir = os.path.join(moved, name)
        frame = pd.read_csv(arms.over_training_csv(workdir, "nurse"))
        assert sorted(set(frame["step"])) == [3, 6] and len(frame) == 8
        original = pd.read_csv(arms.images_csv(workdir, "nurse")).iloc[:4]
        np.testing.assert_allclose(frame[frame["step"] == 6]["p_woman_primary"], original["p_woman_primary"],
                                   atol=2e-6)
        retraining, drawing = files.read_json(os.path.join(workdir, arms.MEMBER_JSON))["invocations"][-2:]
        assert retraining["retraining_s"] > 0 and drawing["over_training_s"] > 0  # kept as each stage ends
    again = run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={moved}", f"--config.data.dir={data}",
                    "--config.study.pairs=1", "--over_training", "--config.study.images_over_training=4")
    assert again.returncode == 0 and "again" not in again.stdout and "over training" not in again.stdout
    curve = arms_analysis.analyse(moved)["over_training"]
    assert curve["retrained"] == ["pair0-flipped", "pair0-real"]
    assert curve["points"][-1]["estimate"] == curve["points"][-1]["original_members"]["estimate"]
    assert "trained again from scratch" in arms_report.render_markdown(arms_analysis.analyse(moved))


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--config.embed.arm=flipped"], "leave embed.arm at 'real'"),
    (["--config.study.secondary_arms=('sideways',)"], "embed.arm='sideways'"),
    (["--aggregate"], "holds no arms study"),
])
def test_arms_command_errors_are_one_line_exit_2(tmp_path, args, message):
    result = run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={tmp_path / 'study'}", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "study" / arms.PLAN_JSON)


def test_over_training_curve_pools_each_checkpoint_and_reuses_the_last_draws(tmp_path):
    members = {}
    for pair in range(3):
        members[pair, "real"] = {"nurse": 0.52, "philosopher": 0.50}
        members[pair, "flipped"] = {"nurse": 0.50, "philosopher": 0.52}
    _fabricate_study(str(tmp_path), members, images=200)
    # At step 3 the lean has not appeared yet: real and flipped read alike.
    for (pair, arm) in members:
        workdir = str(tmp_path / arms.member_name(pair, arm))
        for word in ("nurse", "philosopher"):
            frame = pd.read_csv(arms.images_csv(workdir, word)).iloc[:100]
            frame = frame.assign(step=3, p_woman_primary=np.r_[np.full(50, 0.9), np.full(50, 0.1)])
            frame.to_csv(arms.over_training_csv(workdir, word), index=False)
    curve = arms_analysis.analyse(str(tmp_path))["over_training"]
    assert curve["members"] == curve["planned"] == 6 and curve["retrained"] == []
    curve = curve["points"]
    assert [p["step"] for p in curve] == [3, 6] and [p["pairs"] for p in curve] == [3, 3]
    assert curve[0]["estimate"] == pytest.approx(0.0)
    # The last point reads the primary draws' first 100 images (the same noise as the curve's).
    first = pd.read_csv(arms.images_csv(str(tmp_path / "pair0-real"), "nurse")).iloc[:100]
    real_nurse = (first["p_woman_primary"] > 0.5).mean()
    assert real_nurse == 1.0 and curve[1]["estimate"] == pytest.approx(0.0)  # 104 women of 200, all among the first
    text = arms_report.render_markdown(arms_analysis.analyse(str(tmp_path)))
    assert "## Exploratory readings\n\nLeakage along training" in text and "| 3 | 3 | +0.0 |" in text


def test_the_curve_reads_the_kept_checkpoints_not_where_a_stopped_training_saved():
    config = tiny_config("data/x")
    config.train.num_steps, config.train.checkpoint_every, config.sweep.checkpoints_over_training = 2500, 250, 5
    member = arms.members(config, "study")[0]
    assert arms.curve_steps(config, member) == [500, 1000, 1500, 2000, 2500]


def test_the_curve_over_training_stays_unread_until_every_primary_member_is_whole(tmp_path):
    members = {(pair, arm): {"nurse": 0.52, "philosopher": 0.50} for pair in range(2) for arm in ("real", "flipped")}
    _fabricate_study(str(tmp_path), members, images=100)
    for (pair, arm) in members:
        workdir = str(tmp_path / arms.member_name(pair, arm))
        for word in ("nurse", "philosopher"):
            frame = pd.read_csv(arms.images_csv(workdir, word)).iloc[:50]
            steps = (3,) if (pair, arm, word) == (1, "flipped", "philosopher") else (3, 4)  # one checkpoint short
            pd.concat([frame.assign(step=s) for s in steps]).to_csv(arms.over_training_csv(workdir, word), index=False)
    curve = arms_analysis.analyse(str(tmp_path))["over_training"]
    assert curve == {"members": 3, "planned": 4}
    text = arms_report.render_markdown(arms_analysis.analyse(str(tmp_path)))
    assert "3 of 4 primary members' curves recorded (interim" in text and "| step |" not in text


def test_a_retrained_members_last_point_is_its_own_and_the_originals_reading_is_kept_beside_it(tmp_path):
    members = {}
    for pair in range(3):
        members[pair, "real"] = {"nurse": 0.60, "philosopher": 0.40}  # the originals: leakage 10 points
        members[pair, "flipped"] = {"nurse": 0.40, "philosopher": 0.60}
    config = _fabricate_study(str(tmp_path), members, images=100)
    final = config.train.num_steps
    for (pair, arm) in members:  # retrained: at the last step real and flipped read alike (leakage 0)
        workdir = str(tmp_path / arms.member_name(pair, arm))
        for word in ("nurse", "philosopher"):
            frame = pd.read_csv(arms.images_csv(workdir, word)).iloc[:50]
            last = frame.assign(step=final, p_woman_primary=np.r_[np.full(25, 0.9), np.full(25, 0.1)])
            pd.concat([frame.assign(step=3), last]).to_csv(arms.over_training_csv(workdir, word), index=False)
    curve = arms_analysis.analyse(str(tmp_path))["over_training"]
    assert curve["retrained"] == sorted(arms.member_name(p, a) for p, a in members)
    at_final = curve["points"][-1]
    assert at_final["step"] == final and at_final["estimate"] == pytest.approx(0.0)
    # The originals' first 50 images (women lie first): real nurse 50 of 50 women, philosopher 40 of 50, flipped the
    # other way round: C +20 and -20 points, leakage +20.
    assert at_final["original_members"]["pairs"] == 3
    assert at_final["original_members"]["estimate"] == pytest.approx(0.2)


def test_the_committed_records_are_analysed_without_sampling(monkeypatch):
    """docs/measurements/toy_arms_records: every recorded member read at its planned sizes, from the records alone."""
    from helpers import REPO

    records = os.path.join(REPO, "docs", "measurements", "toy_arms_records")
    monkeypatch.setattr("jaxdiff.core.sampling.ImageSampler.sample", lambda *a, **k: pytest.fail("sampled"))
    plan, images, readings, members = arms_analysis.load_records(records)
    assert plan["study"]["pairs"] == 10 and plan["study"]["margin"] == 0.03 and plan["images_per_word"]["nurse"] == 1200
    assert len(readings) == 2 * 6 * 1000  # both classifiers, six classes, 1,000 held-out portraits each
    counts = arms_analysis.member_counts(images, plan["images_per_word"])
    assert set(counts["member"]) == set(members)  # every committed member is complete: all its words, at full size
    assert len(counts) == 5 * len(members)
    result = arms_analysis.analyse(records)
    assert result["members_recorded"] == len(members)
    # The README's answer is the one computed from these records; until the tenth pair it reads none.
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    if result["interim"]:
        assert result["pairs_complete"] < 10 and "leakage" not in result
        assert "**Not read yet: the pre-registered study that answers it is being drawn.**" in readme
    else:
        assert arms_report.readme_answer(result) in readme and "Not read yet" not in readme
        # The whole analysis committed beside the records (arms.md) is the one these records give.
        with open(os.path.join(records, arms_analysis.RESULT_MD)) as f:
            assert f.read() == arms_report.render_markdown(result)
        # The plan's commit's own analysis, kept as it wrote it, gives the same figure wherever both give one.
        with open(os.path.join(records, "arms-5fdbe9a.json")) as f:
            plan_commit = json.load(f)
        fresh = json.loads(json.dumps(result))

        def differences(old, new, path):
            if isinstance(old, dict) and isinstance(new, dict):
                return [d for k in old.keys() & new.keys() for d in differences(old[k], new[k], f"{path}/{k}")]
            # Equal to the last few bits: sums over the same records round differently on other CPUs (AVX2 and
            # AVX-512 hosts differ in the last place) and with other numpy releases.
            flat = [v for x in (old, new) for v in (x if isinstance(x, list) else [x])]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
            if numeric and np.shape(old) == np.shape(new):
                return [] if np.allclose(old, new, rtol=1e-12, atol=0) else [path]
            return [] if old == new else [path]

        assert plan_commit["leakage"]["estimate"] == fresh["leakage"]["estimate"]  # the comparison is not vacuous
        assert differences(plan_commit, fresh, "") == []


def test_the_length_study_is_read_from_its_committed_records(monkeypatch):
    """docs/measurements/toy_length_750_records against the arms study's records, sampling nothing: the comparison
    committed beside them (read once, at ten) is the one the records give, and it does not hold, as
    docs/results.md reports."""
    from helpers import REPO

    monkeypatch.chdir(REPO)  # the comparison names its reference by the path it was given
    monkeypatch.setattr("jaxdiff.core.sampling.ImageSampler.sample", lambda *a, **k: pytest.fail("sampled"))
    study = os.path.join("docs", "measurements", "toy_length_750_records")
    result = arms_analysis.compare(study, os.path.join("docs", "measurements", "toy_arms_records"))
    assert not result["interim"] and result["members_recorded"] == 10 and result["changed"] == {"train_steps": [750, 2500]}
    assert not result["holds"] and result["conditioning"]["failing"] == ["pair0-real", "pair3-real", "pair4-real"]
    assert result["words"]["philosopher"]["estimate"] == pytest.approx(-0.092, abs=5e-4)
    assert not any(r["holds"] for r in [*result["words"].values(), result["contrast"]])
    with open(os.path.join(study, arms_analysis.COMPARISON_MD)) as f:
        assert f.read() == arms_report.comparison_markdown(result)


def _length_studies(tmp_path, shift, single_arm_pairs=4, reference_pairs=4, **overrides):
    """The reference (both arms, 6 steps) and a single-arm study of the same four seeds (750 steps) whose real members
    read `shift[word][pair]` more women than the reference's (4,000 images a word: narrow enough for HKSJ on 3 df)."""
    base = {"nurse": 0.48, "philosopher": 0.51, "person": 0.50, "man": 0.02, "woman": 0.97}
    reference, study = {}, {}
    for pair, offset in enumerate([0.0, 0.02, -0.03, 0.01]):
        if pair < reference_pairs:
            reference[pair, "real"] = {w: v + offset for w, v in base.items() if w not in ("man", "woman")}
            reference[pair, "flipped"] = dict(reference[pair, "real"])
        if pair < single_arm_pairs:
            study[pair, "real"] = {w: v + (offset if w not in ("man", "woman") else 0.0) + shift.get(w, [0.0] * 4)[pair]
                                   for w, v in base.items()}
    ref_dir, study_dir = str(tmp_path / "reference"), str(tmp_path / "study")
    os.makedirs(ref_dir), os.makedirs(study_dir)
    _fabricate_study(ref_dir, reference, images=4000, images_person=4000, pairs=4)
    _fabricate_study(study_dir, study, images=4000, pairs=4, study__arms=("real",), study__control_pairs=0,
                     train__num_steps=750, images_person=4000, **overrides)
    return study_dir, ref_dir


def test_a_single_arm_study_is_read_against_the_reference_pair_by_pair(tmp_path):
    study_dir, ref_dir = _length_studies(tmp_path, {"nurse": [0.01, 0.02, 0.0, 0.01], "philosopher": [0.01] * 4})
    result = arms_analysis.compare(study_dir, ref_dir)
    assert not result["interim"] and result["changed"] == {"train_steps": [750, 6]}
    assert result["words"]["nurse"]["members"] == pytest.approx([0.01, 0.02, 0.0, 0.01], abs=1e-9)  # pair by pair
    shifts = {w: r["estimate"] for w, r in result["words"].items()}
    assert shifts == pytest.approx({"philosopher": 0.01, "person": 0.0, "nurse": 0.01}, abs=2e-3)
    assert all(r["holds"] and r["pairs"] == [0, 1, 2, 3] for r in result["words"].values())
    assert result["contrast"]["estimate"] == pytest.approx(0.0, abs=2e-3) and result["holds"]
    assert set(result["shares"]) == {"here", "reference"} and result["shares"]["here"]["nurse"]["members"] == 4
    text = arms_report.comparison_markdown(result)
    assert "| nurse | +1.0 |" in text and "| philosopher | +1.0 |" in text and "HOLDS" in text
    # Its own analysis has no leakage to give: it says so, with its shares.
    own = arms_analysis.analyse(study_dir)
    assert own["note"] == arms_analysis.SINGLE_ARM_NOTE and set(own["shares"]) == {"real"}
    assert arms_report.render_markdown(own).startswith("# A single-arm study\n")
    assert arms_report.headline(own).startswith("single-arm study (4 of 4 planned members recorded): ")


def test_a_shift_beyond_the_margin_or_a_failed_check_does_not_hold_and_a_short_study_is_interim(tmp_path):
    far = arms_analysis.compare(*_length_studies(tmp_path / "far", {"nurse": [0.09] * 4}))
    assert far["words"]["nurse"]["verdict"] == "differs" and not far["words"]["nurse"]["holds"] and not far["holds"]
    assert "does NOT hold" in arms_report.comparison_headline(far)
    # Every shift inside the margin, but one member draws too few women as women: the conditioning check decides too.
    failed = arms_analysis.compare(*_length_studies(tmp_path / "check", {"woman": [0.0, -0.20, 0.0, 0.0]}))
    assert failed["conditioning"]["failing"] == ["pair1-real"] and not failed["holds"]
    interim = arms_analysis.compare(*_length_studies(tmp_path / "short", {}, single_arm_pairs=3))
    assert interim["interim"] and "words" not in interim and "conditioning" in interim
    text = arms_report.comparison_markdown(interim)
    assert "INTERIM" in arms_report.comparison_headline(interim) and "Conditioning" not in text  # progress only


def test_a_comparison_refuses_studies_that_differ_in_more_than_one_setting(tmp_path):
    with pytest.raises(UserError, match="differ in evaluate.steps"):
        arms_analysis.compare(*_length_studies(tmp_path / "images", {}, evaluate__steps=100))
    with pytest.raises(UserError, match="holds a run with train.ema_decay=0.995, not 0.99"):
        arms_analysis.compare(*_length_studies(tmp_path / "model", {}, train__ema_decay=0.99))
    study_dir, ref_dir = _length_studies(tmp_path / "reader", {})
    with open(os.path.join(study_dir, "classifier.msgpack"), "wb") as f:
        f.write(b"another instrument")
    with pytest.raises(UserError, match="different classifiers"):
        arms_analysis.compare(study_dir, ref_dir)
    with pytest.raises(UserError, match="not a single-arm study"):
        arms_analysis.compare(ref_dir, ref_dir)
    with pytest.raises(UserError, match="no complete real member of pair 3"):
        arms_analysis.compare(*_length_studies(tmp_path / "missing", {}, reference_pairs=3))
    study_dir, ref_dir = _length_studies(tmp_path / "noise", {})
    path = arms.images_csv(os.path.join(study_dir, "pair2-real"), "nurse")
    pd.read_csv(path).assign(noise_index=lambda f: f["noise_index"] + 4000).to_csv(path, index=False)
    with pytest.raises(UserError, match="pair2-real and its reference pair2-real drew their images from other noise"):
        arms_analysis.compare(study_dir, ref_dir)
    config = tiny_config("data/x", study__arms=("real",), study__control_pairs=0)
    assert [m.arm for m in arms.members(config, str(tmp_path / "x"))] == ["real"] * config.study.pairs


def test_the_comparison_command_writes_its_files(tmp_path):
    study_dir, ref_dir = _length_studies(tmp_path, {"nurse": [0.01] * 4})
    result = run_cli("jaxdiff.arms", "--config=configs/tiny.py", f"--workdir={study_dir}", f"--compare_to={ref_dir}")
    assert result.returncode == 0, result.stderr
    assert "HOLDS" in result.stdout
    with open(os.path.join(study_dir, "comparison.md")) as f:
        assert f.read() == arms_report.comparison_markdown(arms_analysis.compare(study_dir, ref_dir))
    assert json.load(open(os.path.join(study_dir, "comparison.json")))["holds"] is True

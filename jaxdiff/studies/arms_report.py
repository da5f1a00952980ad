"""The arms study's analysis as text: the one-line headline, arms.md and the README's answer.

Everything here formats a result of `arms_analysis.analyse`; nothing is computed from the records. While the
study is interim, each shows its progress only.
"""

from typing import Any

from jaxdiff.statistics import pooling
from jaxdiff.statistics.formatting import interval_text, points, share_with_interval, tau_text
from jaxdiff.studies.arms_analysis import AGREEMENT_POINTS, CONTROL_ARM, INTERIM_NOTE, SINGLE_ARM_NOTE, planned_members


def _progress(result: dict[str, Any]) -> str:
    members, planned = result["members_recorded"], len(planned_members(result["plan"]))
    if "flipped" not in result["plan"]["study"]["arms"]:  # a single-arm study has members, not pairs of arms
        return f"{members} of {planned} planned members recorded"
    return (f"{members} of {planned} planned members recorded, {result.get('pairs_complete', 0)} of "
            f"{result['pairs_planned']} pairs complete")


WORDS = ("philosopher", "person", "nurse", "man", "woman")  # the table's columns: the trained words


def _share_cells(by_word: dict[str, Any], contrast: dict[str, Any] | None) -> str:
    """One arm's row cells: each word's pooled share of women and interval, then its contrast C."""
    cells = [share_with_interval(by_word[w]["share_woman"], by_word[w]["ci95"]) if w in by_word else "-" for w in WORDS]
    cells.append(f"{points(contrast['estimate'])} {interval_text(contrast['ci95'])}" if contrast else "-")
    return " | ".join(cells)


def _tau_points(pooled: dict[str, Any]) -> str:
    """A pooled estimate's between-pair tau in points, one decimal ('-' where it is unknown)."""
    return tau_text(pooled["tau"], 100, "{:.1f}")


def _p(value: float) -> str:
    """A p-value as reports print it: three significant digits, very small ones as '< 0.001'."""
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def verdict_text(leakage: dict[str, Any]) -> str:
    """The primary verdict in a sentence, with what the planned small-sample check says of it."""
    sentence = pooling.verdict_sentence(leakage["verdict"], leakage["margin"], "the leakage estimate")
    hksj = leakage.get("hksj")
    if hksj is None:
        check = "no small-sample check (one pair)"
    elif hksj["verdict"] == leakage["verdict"]:
        check = f"the planned small-sample check (HKSJ, t on {hksj['df']} df) reads the same"
    else:
        check = (f"but the verdict does not survive the small-sample correction (HKSJ, t on {hksj['df']} df), which "
                 f"reads \"{hksj['verdict']}\"")
    return f"{sentence}; {check}"


def headline(result: dict[str, Any]) -> str:
    """The answer in one line: the primary estimate, its interval and verdict (while interim, the progress only)."""
    leakage = result.get("leakage")
    if result.get("note") == SINGLE_ARM_NOTE:
        return f"single-arm study ({_progress(result)}): {SINGLE_ARM_NOTE}"
    if result.get("interim") or leakage is None:
        return f"arms study: INTERIM ({_progress(result)}); estimates are withheld until every planned member is in"
    stretch = leakage["stretch"]
    return (f"leakage (C_real - C_flipped) / 2: {points(leakage['estimate'])} points {interval_text(leakage['ci95'])}, "
            f"TOST at +-{100 * leakage['margin']:g} p {_p(leakage['tost_p_value'])}; verdict: {verdict_text(leakage)}. "
            f"Stretch +-{100 * stretch['margin']:g}: TOST p {_p(stretch['tost_p_value'])}, {stretch['verdict']}")


def _goal_text(leakage: dict[str, Any]) -> str:
    stretch = leakage["stretch"]
    met = "met" if leakage["half_width"] <= stretch["margin"] else "not met"
    return (f"the 95% interval's half-width is {100 * leakage['half_width']:.1f} points: the planned half-width goal "
            f"of {100 * stretch['margin']:g} points is {met}")


def readme_answer(result: dict[str, Any]) -> str:
    """The README's answer: one sentence, then one table (arm x word, the contrast, the leakage and its verdict).

    A test holds README.md to this text computed from the committed records."""
    leakage, s = result["leakage"], result["plan"]["study"]
    verdict = verdict_text(leakage)
    lines = [f"**{verdict[:1].upper()}{verdict[1:]}** (pre-registered; "
             f"{leakage['k']} pairs of runs that differ only in the embedding's lean; {s['images']:,} images each of "
             f"nurse and philosopher per run; {_goal_text(leakage)}).", ""]
    lines += ["| arm | " + " | ".join(WORDS) + " | C = nurse - philosopher |", "|---|" + "---|" * (len(WORDS) + 1)]
    true = s["control_woman_share"]["nurse"] - s["control_woman_share"]["philosopher"]
    names = {"real": "real", "flipped": "flipped (lean negated)",
             CONTROL_ARM: f"positive control ({points(true)} points in its images)"}
    for arm, name in names.items():  # the plan's arms (`shares` holds no other)
        if arm in result["shares"]:
            lines.append(f"| {name} | {_share_cells(result['shares'][arm], result['contrasts'].get(arm))} |")
    lines.append(f"| **leakage** (C_real - C_flipped) / 2 | | | | | | **{points(leakage['estimate'])} "
                 f"{interval_text(leakage['ci95'])}**, TOST at +-{100 * leakage['margin']:g} p "
                 f"{_p(leakage['tost_p_value'])}: {leakage['verdict']} |")
    return "\n".join(lines) + "\n"


def render_markdown(result: dict[str, Any]) -> str:
    """arms.md: the plan in brief, the primary answer, then the secondary and exploratory readings, labelled."""
    plan, s = result["plan"], result["plan"]["study"]
    interim = " (interim)" if result.get("interim") else ""
    if "flipped" not in s["arms"]:
        return _single_arm_markdown(result, interim)
    lines = [f"# The arms study{interim}", "",
             f"Plan: docs/preregistration.md. {s['pairs']} pairs (seeds {s['first_seed']}..{s['first_seed'] + s['pairs'] - 1}), "
             f"arms {', '.join(s['arms'])} along the {s['arm_direction']} direction, {plan['train_steps']} training "
             f"steps, {plan['evaluate']['sampler']} {plan['evaluate']['steps']} steps, {s['images']:,} images each of nurse "
             f"and philosopher per member; margin +-{100 * s['margin']:g} points (stretch +-{100 * s['stretch_margin']:g}). "
             f"Progress: {_progress(result)}.", ""]
    if result.get("interim") or result.get("leakage") is None:
        lines += [f"**Interim**: {INTERIM_NOTE}.", ""]
        if result.get("members_complete"):
            lines += ["Members complete: " + ", ".join(result["members_complete"]) + ".", ""]
        conditioning = result.get("conditioning")
        if conditioning and conditioning["members"]:
            lines += [_conditioning_line(conditioning), ""]
        return "\n".join(lines + _cost_lines(result)) + "\n"
    leakage = result["leakage"]
    hksj = leakage.get("hksj")
    stretch = leakage["stretch"]
    lines += ["## Primary: leakage", "",
              "| estimate | 95% CI (z) | 90% CI (the TOST's) | TOST p (z) | verdict | HKSJ 95% CI | HKSJ TOST p | "
              "HKSJ verdict | pairs | tau |",
              "|---|---|---|---|---|---|---|---|---|---|",
              f"| {points(leakage['estimate'])} | {interval_text(leakage['ci95'])} | {interval_text(leakage['ci90'])} | "
              f"{_p(leakage['tost_p_value'])} | {leakage['verdict']} | {interval_text(hksj['ci95']) if hksj else '-'} | "
              f"{_p(hksj['tost_p_value']) if hksj else '-'} | {hksj['verdict'] if hksj else '-'} | "
              f"{leakage['k']} | {_tau_points(leakage)} |",
              "", f"Verdict (z-based TOST at +-{100 * leakage['margin']:g} points, as planned): {verdict_text(leakage)}.",
              "", f"Stretch (the same TOST at +-{100 * stretch['margin']:g} points): p {_p(stretch['tost_p_value'])}, "
                  f"{pooling.verdict_sentence(stretch['verdict'], stretch['margin'], 'the leakage estimate')}; "
                  f"{_goal_text(leakage)}.",
              "", "Points of share of women; leakage = (C_real - C_flipped) / 2 per pair, C = share(nurse) - "
              "share(philosopher), pooled over pairs (random effects, Paule-Mandel tau). Positive: the contrast "
              "follows the embedding's lean.", ""]
    lines += ["## The README's answer", "", "Copied into README.md verbatim (a test compares them):", "",
              readme_answer(result)]
    lines += ["## Secondary readings", ""]
    lines += ["Share of women per arm and word (pooled over members, 95% CI), and the contrast C:", "",
              *_share_table(result["shares"], result["contrasts"]), ""]
    conditioning = result.get("conditioning")
    if conditioning and conditioning["members"]:
        lines.append("- " + _conditioning_line(conditioning))
    systematic = result.get("systematic")
    if systematic:
        # The between-pair spreads say why the contrast alone could not answer: it moves from seed to seed,
        # in both arms of a pair alike, far more than the leakage does.
        spreads = ", ".join(f"{arm} {_tau_points(result['contrasts'][arm])}"
                            for arm in ("real", "flipped") if arm in result.get("contrasts", {}))
        lines.append(f"- Systematic (C_real + C_flipped) / 2: {points(systematic['estimate'])} {interval_text(systematic['ci95'])}; "
                     f"between-pair tau {_tau_points(systematic)} points (the contrast C's: {spreads}; "
                     f"the leakage's: {_tau_points(result['leakage'])}).")
    corrected = result.get("corrected_leakage")
    if corrected and "note" in corrected:
        lines.append(f"- Rogan-Gladen correction: {corrected['note']}.")
    elif corrected:
        lines.append(f"- Leakage of Rogan-Gladen corrected shares: {points(corrected['estimate'])} "
                     f"{interval_text(corrected['ci95'])} (calibration SE {100 * corrected['calibration_se']:.2f} points), "
                     f"TOST p {_p(corrected['tost_p_value'])}.")
    second = result.get("second_classifier_leakage")
    if second and "minus_primary" in second:
        lines.append(f"- Second classifier's leakage: {points(second['estimate'])} {interval_text(second['ci95'])}; "
                     f"{'agrees' if second['agrees'] else 'does NOT agree'} with the primary within "
                     f"{100 * AGREEMENT_POINTS:g} point ({points(second['minus_primary'])}).")
    control = result.get("control")
    if control:
        read, shift = control["read_contrast"], control["shift_from_real"]

        def both(pooled: dict[str, Any], fmt: str = "{:+.1f}", scale: float = 100) -> str:
            return (f"{interval_text(pooled['ci95'], scale, fmt)} (z; HKSJ "
                    f"{interval_text(pooled.get('ci95_hksj'), scale, fmt, missing='-')})")

        lines.append(f"- Positive control ({read['k']} members; true contrast {points(control['true_contrast'])}): reads "
                     f"{points(read['estimate'])} {both(read)}, read / true {control['read_over_true']['estimate']:.2f} "
                     f"{both(control['read_over_true'], '{:.2f}', 1)}; shift from the same pairs' real member "
                     f"{points(shift['estimate'])} {both(shift)}, sensitivity (shift / true) "
                     f"{control['sensitivity']['estimate']:.2f} {both(control['sensitivity'], '{:.2f}', 1)}.")
    for word, slope in result.get("slopes", {}).items():
        if slope:
            lines.append(f"- {word}: {points(slope['estimate'])} points per unit of she-he lean "
                         f"{interval_text(slope['ci95'])} (real - flipped lean {slope['lean_real_minus_flipped']:+.3f}).")
    calib = result.get("calibration")
    if calib:
        lines += ["", "Calibration (held-out portraits): P(reads woman | woman), P(reads woman | man) per profession:", ""]
        for reader, by_profession in calib.items():
            parts = [f"{p} {100 * v['woman']['rate']:.1f}% / {100 * v['man']['rate']:.1f}% (n {v['woman']['n']}, "
                     f"{v['man']['n']})" for p, v in by_profession.items()]
            lines.append(f"- {reader}: " + "; ".join(parts))
    neutral, curve, other = result.get("neutral"), result.get("over_training"), result.get("other_arms")
    if neutral or curve or other:
        lines += ["", "## Exploratory readings", ""]
    if other:
        lines += ["Arms drawn after the read, share of women per word and the contrast C:", "",
                  *_share_table(other["shares"], other["contrasts"]), ""]
    if neutral:
        gap = neutral.get("minus_systematic")
        lines.append(f"- Neutral arm's contrast: {points(neutral['estimate'])} {interval_text(neutral['ci95'])}"
                     + (f"; minus the systematic {points(gap)}." if gap is not None else "."))
    if curve:
        lines += [""] if lines[-1] else []  # one blank line after the section's heading or the neutral line
        lines += _curve_lines(curve)
    return "\n".join(lines + _cost_lines(result)) + "\n"


def _curve_lines(curve: dict[str, Any]) -> list[str]:
    """The exploratory curve over training, or while members are missing only how many are in."""
    if "points" not in curve:
        return [f"Leakage along training: {curve['members']} of {curve['planned']} primary members' curves recorded "
                f"(interim: the curve is shown once all are in)."]
    lines = ["Leakage along training (images per word and checkpoint as the curve was drawn; pooled over the pairs "
             "drawn there):", "", "| step | pairs | leakage | 95% CI |", "|---|---|---|---|"]
    lines += [f"| {p['step']} | {p['pairs']} | {points(p['estimate'])} | {interval_text(p['ci95'])} |"
              for p in curve["points"]]
    original = next((p["original_members"] for p in curve["points"] if p.get("original_members")), None)
    if curve["retrained"]:
        lines += ["", f"{len(curve['retrained'])} of the {curve['planned']} members were trained again from scratch "
                  f"with their seeds for the curve (their checkpoints were lost), so every point of theirs, the last "
                  f"too, is the retraining's"
                  + (f"; the original members read the same images' noise at {points(original['estimate'])} "
                     f"{interval_text(original['ci95'])} ({original['pairs']} pairs)." if original else ".")]
    return lines


def _single_arm_markdown(result: dict[str, Any], interim: str) -> str:
    """A single-arm study's own arms.md: its progress, and once every member is in, its shares; what it answers is
    its comparison's (`--compare_to`), so while interim nothing it decides is shown, the conditioning check included."""
    plan, s = result["plan"], result["plan"]["study"]
    lines = [f"# A single-arm study{interim}", "",
             f"{s['pairs']} members (seeds {s['first_seed']}..{s['first_seed'] + s['pairs'] - 1}), the real arm, "
             f"{plan['train_steps']} training steps, {plan['evaluate']['sampler']} {plan['evaluate']['steps']} steps. "
             f"Progress: {_progress(result)}. Read against another study's members with --compare_to.", ""]
    if result.get("note") == SINGLE_ARM_NOTE:
        lines += ["Share of women per word (pooled over members, 95% CI), and the contrast C:", "",
                  *_share_table(result["shares"], result["contrasts"]), "", _conditioning_line(result["conditioning"])]
    return "\n".join(lines + _cost_lines(result)) + "\n"


def _share_table(shares: dict[str, Any], contrasts: dict[str, Any]) -> list[str]:
    return (["| arm | " + " | ".join(WORDS) + " | C |", "|---|" + "---|" * (len(WORDS) + 1)]
            + [f"| {arm} | {_share_cells(by_word, contrasts.get(arm))} |" for arm, by_word in shares.items()])


def _conditioning_line(conditioning: dict[str, Any]) -> str:
    failing = ", ".join(conditioning["failing"]) or "none"
    return (f"Conditioning check (man and woman drawn as their own gender at least "
            f"{100 * conditioning['threshold']:.0f}% of the time): {conditioning['members']} members, failing: {failing}.")


def _cost_lines(result: dict[str, Any]) -> list[str]:
    t = result.get("timings")
    if not t or t["training_minutes_median"] is None:
        return []
    return ["", f"Cost: training {t['training_minutes_median']:.1f} min a member (median), drawing "
                f"{t['drawing_minutes_median'] or 0:.1f} min; {t['total_minutes']:.0f} min in all; on "
                f"{'; '.join(t['devices'])}."]


def _changed_text(result: dict[str, Any]) -> str:
    return ", ".join(f"{k} {a} (reference {b})" for k, (a, b) in result["changed"].items()) or "nothing in the plan"


def _comparison_readings(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**result["words"], "C = nurse - philosopher": result["contrast"]}


def comparison_headline(result: dict[str, Any]) -> str:
    """`arms_analysis.compare` in one line: each reading's shift and verdict, the conditioning, whether it holds."""
    if result.get("interim"):
        return (f"comparison: INTERIM ({result['members_recorded']} of {result['pairs_planned']} members recorded); "
                f"nothing is read until every planned member is in")
    readings = "; ".join(f"{w} {points(r['estimate'])} {interval_text(r['ci95'])} {'holds' if r['holds'] else r['verdict']}"
                         for w, r in _comparison_readings(result).items())
    failing = result["conditioning"]["failing"]
    return (f"{_changed_text(result)}: {readings} (TOST at +-{100 * result['margin']:g} points, z and HKSJ); "
            f"conditioning {'passes in every member' if not failing else 'fails in ' + ', '.join(failing)}: "
            f"{'HOLDS' if result['holds'] else 'does NOT hold'}")


def comparison_markdown(result: dict[str, Any]) -> str:
    """comparison.md: the changed setting, each reading's shift with both tests, the conditioning, the decision."""
    s = result["plan"]["study"]
    interim = " (interim)" if result.get("interim") else ""
    lines = [f"# A single-arm study against {result['reference']}{interim}", "",
             f"Changed: {_changed_text(result)}. {s['pairs']} pairs (seeds {s['first_seed']}.."
             f"{s['first_seed'] + s['pairs'] - 1}), the real arm; margin +-{100 * result['margin']:g} points. "
             f"Plan: docs/preregistration_main_job_length.md.", ""]
    if result.get("interim"):  # progress only: the conditioning check decides too, so it is not shown early
        lines += [f"**Interim**: {result.get('note', INTERIM_NOTE)}.", ""]
        return "\n".join(lines + _cost_lines(result)) + "\n"
    lines += ["## Primary: each trained word's share and the contrast, this study minus the reference", "",
              "| reading | shift (points) | 95% CI (z) | TOST p (z) | HKSJ 95% CI | TOST p (HKSJ) | holds (both) | "
              "pairs | tau |", "|---|---|---|---|---|---|---|---|---|"]
    for word, r in _comparison_readings(result).items():
        hksj = r.get("hksj")
        lines.append(f"| {word} | {points(r['estimate'])} | {interval_text(r['ci95'])} | {_p(r['tost_p_value'])} | "
                     f"{interval_text(hksj['ci95']) if hksj else '-'} | {_p(hksj['tost_p_value']) if hksj else '-'} | "
                     f"{'yes' if r['holds'] else 'no'} | {len(r['pairs'])} | {_tau_points(r)} |")
    lines += ["", "- " + _conditioning_line(result["conditioning"]), f"- **{comparison_headline(result)}.**", "",
              "## Secondary: each length's shares (pooled over its members, between-seed tau)", "",
              "| word | this study | tau | the reference | tau |", "|---|---|---|---|---|"]
    here, there = result["shares"]["here"], result["shares"]["reference"]
    for word in WORDS:
        if word in here and word in there:
            lines.append(f"| {word} | {share_with_interval(here[word]['share_woman'], here[word]['ci95'])} | "
                         f"{_tau_points(here[word])} | {share_with_interval(there[word]['share_woman'], there[word]['ci95'])} | "
                         f"{_tau_points(there[word])} |")
    return "\n".join(lines + _cost_lines(result)) + "\n"


def simulation_table(results: list[dict[str, Any]]) -> str:
    """`arms_analysis.simulate` results as a markdown table: one row per (true leakage, tau)."""
    first = results[0]
    lines = [f"Simulated studies of {first['pairs']} pairs at {first['images']:,} images of nurse and philosopher per "
             f"member, {first['sims']:,} each (rates with their Monte-Carlo 95% intervals):", "",
             "| true leakage | tau | 95% CI covers (z) | 95% CI covers (HKSJ) | TOST at the margin rejects (z) | "
             "(HKSJ) | TOST at the stretch rejects (z) | median half-width |",
             "|---|---|---|---|---|---|---|---|"]

    def rate(r: dict[str, Any]) -> str:
        return f"{100 * r['rate']:.1f}% {interval_text(r['ci95'], 100, '{:.1f}')}"

    for r in results:
        lines.append(f"| {points(r['leakage'])} | {100 * r['tau']:.2f} | {rate(r['coverage_z'])} | "
                     f"{rate(r['coverage_hksj'])} | {rate(r['tost_z'])} | {rate(r['tost_hksj'])} | "
                     f"{rate(r['tost_stretch'])} | {100 * r['half_width_median']:.2f} |")
    return "\n".join(lines) + "\n"

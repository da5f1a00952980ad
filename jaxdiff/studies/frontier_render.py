"""The frontier's table as Markdown (frontier.md): one row per (sweep, setting), the differences from the
reference, and the few-members sensitivity check."""

import os
from typing import Any

from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.statistics import agreement
from jaxdiff.statistics.formatting import interval_text, percent, points, tau_text


def render_markdown(result: dict[str, Any]) -> str:
    """The frontier as a Markdown table: one row per (sweep, setting)."""
    words = result.get("words", SEED_EVAL_WORDS)  # tables written before studies could be narrowed hold all
    limit = f"{100 * result['agreement_limit']:.0f}"
    lines = [f"# Fit frontier (reference: {result['reference'] or 'none'})", "",
             f"Fit good enough to decide: every trained word's tau and |share - 0.5| at most {result['fit_limit']:.2f}. "
             f"Agreement with the reference: every word's pooled share within +-{limit} points, shown by an "
             f"equivalence test (TOST) at +-{limit} points per word; differs: some word's 95% interval lies beyond "
             f"+-{limit} points; undecided: neither, too few images to tell. Images per word and member: "
             f"{result['rounds']} round(s) of up to {result['round_images']}. A verdict marked interim is the "
             "table so far, before the images planned for the setting or its reference: the study's answer is "
             "the verdict at the planned numbers (checked after every round and stopped at the first pass, an equivalence "
             "test would pass by chance more often than its 5%). Minutes per member are estimated: the members' "
             "recorded training plus their evaluation and probes scaled by this setting's measured seconds per image."
             + ("" if list(words) == list(SEED_EVAL_WORDS) else
                f" This study samples {', '.join(words)} only: the fit and the leakage contrast need every trained "
                "word, so they are not read here (-)."), "",
             "| sweep | training steps | setting | members | images | "
             + " | ".join(f"{w} share (tau)" for w in words)
             + " | max abs(share - 0.5) | max tau | fits | minus reference, max | agreement | nurse - philosopher "
             "| verdict | minutes per member (est.) |",
             "|---|---|---|---|---|" + "---|" * len(words) + "---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cells = [f"{percent(r['words'][w]['share_woman'])} ({tau_text(r['words'][w]['tau'])})" for w in words]
        is_reference = r["setting"] == result["reference"]
        minus = (f"{100 * r['max_abs_minus_reference']:.1f} pts" if "max_abs_minus_reference" in r
                 else "reference" if is_reference else "-")
        minutes = f"{r['member_minutes']:.1f}" if r["member_minutes"] else "-"
        interim = " (interim)" if r.get("interim") else ""
        contrast = r["contrast"]
        contrast_cells = (f"{points(contrast['estimate'])} {interval_text(contrast['ci95'])} | "
                          f"{contrast['verdict']}{interim}" if contrast else "- | -")
        fits = "-" if contrast is None else {True: "yes", False: "no", None: "one member: unknown"}[r["fits"]]
        lines.append(f"| {os.path.basename(r['sweep'].rstrip('/'))} | {r['num_steps']} | {r['setting']} | "
                     f"{r['members']} | {r['images']} | " + " | ".join(cells)
                     + f" | {100 * r['max_abs_deviation']:.1f}% | {tau_text(r['max_tau'])} | "
                     f"{fits} | {minus} | {r['agreement'] + interim if 'agreement' in r else '-'} | "
                     f"{contrast_cells} | {minutes} |")
    lines += ["", f"Per word, and for the leakage contrast nurse - philosopher, the pooled difference from the reference "
              f"(points, 95% interval, TOST p at +-{limit}; the difference's own between-member SD tau, points, and "
              "Cochran's Q test of tau = 0). Members of a crossed grid (each training seed with each projection seed) "
              "are pooled with crossed random effects (t on the seeds' degrees of freedom); the interval the "
              "independent-members formula would give follows it:", ""]
    for r in result["rows"]:
        if "max_abs_minus_reference" in r:
            parts = []
            differences = [(w, r["words"][w]["minus_reference"]) for w in words]
            if r["contrast"] and "minus_reference" in r["contrast"]:
                differences.append(("nurse - philosopher", r["contrast"]["minus_reference"]))
            for name, d in differences:
                spread = (f", tau {100 * d['tau']:.1f} (Q p {d['heterogeneity_p_value']:.2g})"
                          if d.get("heterogeneity_p_value") is not None else "")
                old = d.get("independent")
                as_independent = (f"; as if independent {interval_text(old['ci95'])} "
                                  f"p {old['tost_p_value']:.2g}" if old else "")
                parts.append(f"{name} {points(d['estimate'])} {interval_text(d['ci95'])} "
                             f"p {d['tost_p_value']:.2g}{spread}{as_independent}")
            lines.append(f"- {os.path.basename(r['sweep'].rstrip('/'))} {r['setting']}: " + "; ".join(parts))
    return "\n".join(lines + _hksj_lines(result)) + "\n"


def _hksj_lines(result: dict[str, Any]) -> list[str]:
    """The agreement tests again with the small-sample (HKSJ, t on k - 1 df) intervals, as a sensitivity check."""
    words = result.get("words", SEED_EVAL_WORDS)
    rows = [r for r in result["rows"] if "hksj" in r["words"][words[0]].get("minus_reference", {})]
    if not rows:
        return []
    contrast = rows[0]["contrast"] is not None
    limit = f"{100 * result['agreement_limit']:.0f}"
    lines = ["", "## Sensitivity: few members", "",
             "The intervals above are z-based. With few members, a reviewer may ask for the Hartung-Knapp-Sidik-Jonkman "
             "interval (t on members - 1 degrees of freedom, its standard error kept at least the z-based one). The "
             f"differences from the reference and their TOST p at +-{limit} points under it:", "",
             "| sweep | setting | " + " | ".join(words) + (" | nurse - philosopher" if contrast else "")
             + " | agreement |",
             "|---|---|" + "---|" * (len(words) + contrast) + "---|"]
    for r in rows:
        tests = [r["words"][w]["minus_reference"] for w in words]
        shown = tests + ([r["contrast"]["minus_reference"]] if contrast else [])
        cells = [f"{points(d['estimate'])} {interval_text(d['hksj']['ci95'])} "
                 f"p {d['hksj']['tost_p_value']:.2g}" for d in shown]
        overall = agreement.overall_agreement([d["hksj"]["verdict"] for d in tests])
        lines.append(f"| {os.path.basename(r['sweep'].rstrip('/'))} | {r['setting']} | " + " | ".join(cells)
                     + f" | {overall}{' (interim)' if r.get('interim') else ''} |")
    return lines

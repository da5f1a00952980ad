"""The summary of a sweep: members' reports and probes pooled (jaxdiff.statistics.pooling), as JSON, Markdown and plots.

Every pooled share is a random-effects estimate over members, each member contributing its share
and binomial variance; its interval therefore includes the variance of training and projection.
"""

import os
from typing import Any, Sequence

import numpy as np

from jaxdiff.common import files
from jaxdiff.measurement import classifier, evaluate, records
from jaxdiff.statistics import pooling
from jaxdiff.statistics.formatting import interval_text, percent, points, share_with_interval, tau_text
from jaxdiff.studies import probes
from jaxdiff.measurement.report import pyplot, save_figure
from jaxdiff.data.classes import CONTRAST_WORDS, SEED_EVAL_WORDS

SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"
MEMBER_JSON = "member.json"  # in each member: the stage times of every sweep invocation (jaxdiff.sweep writes it)
REPORTED_WORDS = ("philosopher", "person", "nurse", "man", "woman")


def _pool_counts(rows: Sequence[dict], seeds: pooling.Seeds | None = None) -> dict[str, Any]:
    """Random-effects pooled share of women from rows with `women` and `n` (members of a crossed grid: `seeds`)."""
    pooled = pooling.pooled_share([r["women"] for r in rows], [r["n"] for r in rows], seeds)
    return pooled.record("ci95", "tau", "se", "members", "model", estimate_as="share_woman")


def _word_rows(reports: list[dict], word: str) -> list[dict]:
    return [r["words"][word] if word in r["words"] else r["controls"][word] for r in reports]


def summarise(config: Any, sweep_dir: str, done: list, planned: int | None = None) -> dict[str, Any]:
    """Everything of the summary, from the finished members' report.json and probes.json (of `planned` in the grid)."""
    reports = [records.load(records.REPORT, os.path.join(m.workdir, evaluate.REPORT_JSON)) for m in done]
    member_probes = [records.load(records.PROBES, os.path.join(m.workdir, probes.PROBES_JSON)) for m in done]
    train_seeds, embed_seeds = [m.train_seed for m in done], [m.embed_seed for m in done]
    margin = config.sweep.equivalence_margin

    words = {}
    for word in list(REPORTED_WORDS) + ["null"]:
        rows = _word_rows(reports, word)
        words[word] = _pool_counts(rows, (train_seeds, embed_seeds))
        _, sampling_variances = pooling.share_and_variance([r["women"] for r in rows], [r["n"] for r in rows])
        words[word]["variance_components"] = pooling.variance_components(words[word]["members"], sampling_variances,
                                                                        train_seeds, embed_seeds)

    # The leakage test: nurse - philosopher within each member (independent images), pooled as the grid was
    # drawn (crossed seeds: crossed random effects).
    nurse, phil = (_word_rows(reports, w) for w in CONTRAST_WORDS)
    pooled = pooling.pooled_difference([a["women"] for a in nurse], [a["n"] for a in nurse],
                                       [b["women"] for b in phil], [b["n"] for b in phil], (train_seeds, embed_seeds))
    test = pooling.equivalence_of(pooled, margin)
    few_members = pooling.small_sample_equivalence(pooled, margin)
    slopes = []
    for report in reports:
        entries = [report["words"][w] for w in SEED_EVAL_WORDS]
        slopes.append(pooling.slope([e["score_raw"] for e in entries], [e["share_woman"] for e in entries],
                                    pooling.binomial_variance([e["women"] for e in entries], [e["n"] for e in entries])))
    slope = pooling.random_effects_over([s["slope"] for s in slopes], [s["se"] ** 2 for s in slopes],
                                        (train_seeds, embed_seeds))
    leakage = {**pooled.record("ci95", "p_value", "tau", "members", "member_se", estimate_as="contrast"),
               "tost_p_value": test.tost_p_value, "ci90": list(test.ci90), "margin": margin,
               "verdict": test.verdict, "sentence": test.sentence(),
               "small_sample": few_members.as_record() if few_members else None, "model": pooled.model,
               "independent": pooled.independent.record("se", "ci95", "p_value") if pooled.independent else None,
               "slope": {**slope.record("ci95", "p_value", estimate_as="per_unit_she_he_score"),
                         "words": list(SEED_EVAL_WORDS)}}

    # Projection: does a member's share of a word follow where its projection put the word?
    projection = {"per_word": {}}
    xs, ys, labels, embeds = [], [], [], []
    for word in SEED_EVAL_WORDS:
        rows = _word_rows(reports, word)
        scores, shares = [r["score_projected"] for r in rows], [r["share_woman"] for r in rows]
        xs += scores
        ys += shares
        labels += [word] * len(rows)
        embeds += embed_seeds
        projection["per_word"][word] = {"score_raw": rows[0]["score_raw"], "score_projected": scores, "shares": shares}
    projection["within_word"] = pooling.within_word_slope(xs, ys, labels, embeds)

    fit = {}
    for word in SEED_EVAL_WORDS:
        w = words[word]
        fit[word] = {"abs_deviation": abs(w["share_woman"] - 0.5), "tau": w["tau"],
                     "rms_member_deviation": float(np.sqrt(np.mean((np.asarray(w["members"]) - 0.5) ** 2)))}
    rates = [r["conditioning"]["rates"] for r in reports]
    fit["conditioning_fidelity"] = {k: float(np.mean([r[k] for r in rates])) for k in rates[0]}
    fit["conditioning_fidelity_min_member"] = {k: float(np.min([r[k] for r in rates])) for k in rates[0]}

    # Dose-response over the unseen professions.
    unseen = [p["unseen"] for p in member_probes]
    dose = {"num_words": len(unseen[0]), "images_per_word_per_member": unseen[0][0]["n"],
            "spearman": pooling.pooled_spearman([[r["score_raw"] for r in u] for u in unseen],
                                                [[r["share_woman"] for r in u] for u in unseen])}
    flat = [(r["women"], r["n"], r["score_raw"], i, r["word"]) for i, u in enumerate(unseen) for r in u]
    dose["logistic_mixed"] = pooling.logistic_mixed_slope(*zip(*flat))
    by_word: dict[str, list] = {}
    for u in unseen:
        for r in u:
            by_word.setdefault(r["word"], []).append(r)
    dose["words"] = {w: {"score_raw": rows[0]["score_raw"], **_pool_counts(rows)} for w, rows in by_word.items()}

    over = [p["over_training"] for p in member_probes]
    steps = sorted({r["step"] for o in over for r in o})
    over_training = {"steps": steps, "words": {w: [_pool_counts([r for o in over for r in o
                                                                 if r["word"] == w and r["step"] == s])
                                                   for s in steps] for w in SEED_EVAL_WORDS}}
    alphas = sorted({round(r["alpha"], 6) for p in member_probes for r in p["intervention"]})
    intervention = {"alphas": alphas, "words": {w: [_pool_counts([r for p in member_probes for r in p["intervention"]
                                                                  if r["word"] == w and round(r["alpha"], 6) == a])
                                                    for a in alphas] for w in SEED_EVAL_WORDS}}

    member_rows = []
    for m, report, probe, contrast in zip(done, reports, member_probes, leakage["members"]):
        member_rows.append({"name": m.name, "train_seed": m.train_seed, "embed_seed": m.embed_seed,
                            "report": os.path.join(m.workdir, evaluate.REPORT_JSON), "step": report["config"]["step"],
                            "shares": {w: _word_rows([report], w)[0]["share_woman"] for w in REPORTED_WORDS},
                            "contrast": contrast,
                            "minutes": member_minutes(m.workdir)})
    minutes = [_member_cost(m["minutes"]) for m in member_rows]
    accuracy = files.read_json(os.path.join(sweep_dir, classifier.METRICS_FILE))
    # What every member was measured with (a finished member's report matches the sweep's settings).
    made = reports[0]["config"]
    measured_with = {"train_steps": int(made["step"]), **{k: made.get(k) for k in ("sampler", "steps", "guidance")},
                     "images_per_trained_word": made.get("num_samples")}
    return {"sweep_dir": sweep_dir, "members": member_rows, "num_members": len(done),
            "num_planned": planned or len(done), "measured_with": measured_with,
            "classifier": accuracy, "words": words, "leakage": leakage, "projection": projection, "fit": fit,
            "dose_response": dose, "over_training": over_training, "intervention": intervention,
            "timings": {"member_minutes_median": float(np.median(minutes)), "members_minutes_total": float(sum(minutes)),
                        "spent_minutes_total": float(sum(m["minutes"]["spent"] for m in member_rows))}}


def member_invocations(workdir: str) -> list[dict]:
    """The stage times of every sweep invocation that worked on a member (its member.json, written by jaxdiff.sweep)."""
    path = os.path.join(workdir, MEMBER_JSON)
    return records.load(records.SWEEP_MEMBER, path)["invocations"] if os.path.exists(path) else []


def member_minutes(workdir: str) -> dict[str, float]:
    """What a member costs with its current report: training (summed over the invocations that resumed it)
    plus its latest evaluation and probes; and `spent`, every recorded stage, re-evaluations included."""
    invocations = member_invocations(workdir)

    def latest(stage: str) -> float:
        runs = [i[stage] for i in invocations if stage in i]
        return runs[-1] / 60 if runs else 0.0

    return {"training": sum(i.get("training_s", 0.0) for i in invocations) / 60,
            "evaluation": latest("evaluation_s"), "probes": latest("probes_s"),
            "spent": sum(v for i in invocations for k, v in i.items() if k.endswith("_s")) / 60}


def _member_cost(minutes: dict[str, float]) -> float:
    return minutes["training"] + minutes["evaluation"] + minutes["probes"]


# ---------------------------------------------------------------------------------------------
# Files.


def reading(summary: dict[str, Any]) -> list[str]:
    """The summary in a few plain sentences."""
    lk, dose = summary["leakage"], summary["dose_response"]["spearman"]
    dose_line = (f"Dose-response over {summary['dose_response']['num_words']} unseen professions: pooled Spearman "
                 f"{dose['spearman']:+.2f} {interval_text(dose['ci95'], 1, '{:+.2f}')}." if dose["spearman"] is not None
                 else f"Dose-response: {dose['note']}.")
    return [
        f"{summary['num_members']} members. nurse - philosopher: {points(lk['contrast'])} points "
        f"{interval_text(lk['ci95'])}, p {lk['p_value']:.3g}; TOST at +-{100 * lk['margin']:g}: "
        f"p {lk['tost_p_value']:.3g} (90% interval {interval_text(lk['ci90'])}).",
        f"Verdict: {lk['sentence']}.",
        "Fit: " + ", ".join(f"{w} {percent(summary['words'][w]['share_woman'])} (tau {tau_text(summary['words'][w]['tau'])})"
                            for w in SEED_EVAL_WORDS) + " (balanced data: 50%).",
        dose_line,
    ]


def render_markdown(summary: dict[str, Any]) -> str:
    """summary.md: the pooled tables, then the per-member table."""
    words, lk, fit = summary["words"], summary["leakage"], summary["fit"]
    clf = summary["classifier"]
    made = summary["measured_with"]
    lines = [f"# Sweep summary: {summary['num_members']} of {summary['num_planned']} members", "",
             f"Trained {made['train_steps']} steps; read with {made['sampler']} on {made['steps']} steps, guidance "
             f"{made['guidance']:g}, {made['images_per_trained_word']} images per trained word and member.", "",
             *reading(summary), "",
             f"One attribute classifier for every member; validation accuracy: gender "
             f"{clf['gender_accuracy']:.3f}, profession {clf['profession_accuracy']:.3f}.", "",
             "## Pooled share of women (random effects over members; 95% intervals include training and projection variance)"
             if summary["num_members"] > 1 else
             "## Share of women (one member: its 95% intervals hold the images' sampling only, not training or projection)",
             "", "| word | share | 95% CI | tau | of tau^2: training seed | projection seed | interaction |",
             "|---|---|---|---|---|---|---|"]
    for word, w in words.items():
        share = w["variance_components"].get("share") or {}
        lines.append(f"| {word} | {percent(w['share_woman'])} | {interval_text(w['ci95'], fmt='{:.1f}')} | {tau_text(w['tau'])} | "
                     f"{percent(share.get('train_seed'))} | {percent(share.get('embed_seed'))} | {percent(share.get('interaction'))} |")
    notes = {w["variance_components"].get("note") for w in words.values()} - {None}
    lines += [f"\nSplit of tau^2: {note}." for note in sorted(notes)]
    if any(w["variance_components"].get("share") for w in words.values()):
        lines += ["", "The split is of REML's own tau^2 over the crossed seeds, less the images' known binomial "
                  "variance (it need not equal the tau column's); 'interaction' is what neither seed explains "
                  "alone, which one member per pair of seeds cannot tell from run-to-run noise."]
    s = lk["slope"]
    lines += ["", "## Leakage test", "",
              f"nurse - philosopher: {points(lk['contrast'])} points {interval_text(lk['ci95'])}, p {lk['p_value']:.3g}, "
              f"tau {tau_text(lk['tau'], 100, '{:.1f}')} points; TOST at +-{100 * lk['margin']:g} points: p {lk['tost_p_value']:.3g} "
              f"(90% interval {interval_text(lk['ci90'])}). "
              f"**{lk['sentence'][0].upper() + lk['sentence'][1:]}.**", ""]
    if lk.get("model") == "crossed":
        old = lk["independent"]
        lines += ["The members form a crossed grid (each training seed with each projection seed), so the contrast is "
                  "pooled with crossed random effects (both seeds random, t on the seeds' (T - 1) + (E - 1) degrees of "
                  "freedom); "
                  f"pooled as if the members were independent it would read {interval_text(old['ci95'])}, an "
                  "interval too narrow for this design.", ""]
    few = lk.get("small_sample")
    if few is not None:
        lines += [f"Sensitivity to the number of members (modified Hartung-Knapp-Sidik-Jonkman error, t on {few['df']} degrees "
                  f"of freedom): {interval_text(few['ci95'])}, p {few['p_value']:.3g}; TOST p "
                  f"{few['tost_p_value']:.3g} (90% interval {interval_text(few['ci90'])}): {few['verdict']}.", ""]
    lines += [f"Slope of share on the raw she-he score across {', '.join(s['words'])}: {s['per_unit_she_he_score']:+.3f} "
              f"per unit score {interval_text(s['ci95'], 1, '{:+.3f}')}.", ""]
    within = summary["projection"]["within_word"]
    if within.get("slope") is not None:
        lines += [f"Projection: within a word, share on the member's projected she-he score: {within['slope']:+.3f} "
                  f"{interval_text(within['ci95'], 1, '{:+.3f}')}, p {within['p_value']:.3g} ({within['cells']} word and projection-seed cells, members averaged over training seeds).", ""]
    else:
        lines += [f"Projection: within a word, share on the member's projected she-he score: {within['note']}.", ""]
    lines += ["## Fit check (balanced training data: 50% is a perfect fit)", "",
              "| word | pooled abs(share - 0.5) | tau | RMS member deviation | conditioning fidelity |", "|---|---|---|---|---|"]
    for word in SEED_EVAL_WORDS:
        f = fit[word]
        lines.append(f"| {word} | {percent(f['abs_deviation'])} | {tau_text(f['tau'])} | {percent(f['rms_member_deviation'])} | "
                     f"{percent(fit['conditioning_fidelity'][word])} |")
    dose = summary["dose_response"]
    lm = dose["logistic_mixed"]
    rho = dose["spearman"]
    lines += ["", "## Dose-response", "",
              f"{dose['num_words']} unseen professions, {dose['images_per_word_per_member']} images each per member: "
              + (f"pooled Spearman {rho['spearman']:+.2f} {interval_text(rho['ci95'], 1, '{:+.2f}')} ({rho['interval']}); "
                 if rho["spearman"] is not None
                 else f"{rho['note']}; ")
              + (f"logistic mixed model (random intercepts per member and per word): {lm['slope_log_odds']:+.2f} log-odds per unit score "
                 f"{interval_text(lm['ci95'], 1, '{:+.2f}')}." if lm["slope_log_odds"] is not None else f"{lm['note']}."), "",
              "## Over training (pooled share of women at each kept checkpoint; over_training.png)", "",
              *_series_table("step", summary["over_training"]["steps"], summary["over_training"]["words"], str), "",
              "## Intervention (pooled share of women with the vector moved to v + a * g; intervention.png)", "",
              *_series_table("a", summary["intervention"]["alphas"], summary["intervention"]["words"],
                             lambda a: f"{a:+.3f}"), "",
              "## Members", "", "| member | step | " + " | ".join(REPORTED_WORDS) + " | contrast | minutes |",
              "|---|---|" + "---|" * len(REPORTED_WORDS) + "---|---|"]
    for m in summary["members"]:
        lines.append(f"| {m['name']} | {m['step']} | " + " | ".join(percent(m["shares"][w]) for w in REPORTED_WORDS)
                     + f" | {points(m['contrast'])} | {_member_cost(m['minutes']):.1f} |")
    return "\n".join(lines) + "\n"


def _series_table(label: str, xs: Sequence[Any], words: dict[str, list[dict]], fmt: Any) -> list[str]:
    """A Markdown table: one row per x, one column per word, pooled share and its 95% interval."""
    lines = [f"| {label} | " + " | ".join(words) + " |", "|---|" + "---|" * len(words)]
    for i, x in enumerate(xs):
        lines.append(f"| {fmt(x)} | " + " | ".join(f"{share_with_interval(w[i]['share_woman'], w[i]['ci95'])}"
                                                   for w in words.values()) + " |")
    return lines


def plot_forest(summary: dict[str, Any], path: str) -> None:
    """The nurse - philosopher contrast per member and pooled, with +-margin marked."""
    plt = pyplot()
    lk = summary["leakage"]
    names = [m["name"] for m in summary["members"]] + ["pooled"]
    values = lk["members"] + [lk["contrast"]]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    ax.errorbar(np.asarray(values[:-1]) * 100, y[:-1], xerr=100 * pooling.Z_TWO_SIDED * np.asarray(lk["member_se"]), fmt="o",
                color="tab:blue")  # each member's binomial 95% interval
    ax.errorbar([100 * lk["contrast"]], [y[-1]], xerr=[[100 * (lk["contrast"] - lk["ci95"][0])],
                                                      [100 * (lk["ci95"][1] - lk["contrast"])]], fmt="D", color="k")
    for edge in (-lk["margin"], lk["margin"]):
        ax.axvline(100 * edge, ls="--", color="gray")
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_yticks(y, names)
    ax.set_xlabel("share of women: nurse - philosopher (points)")
    save_figure(fig, path)


def plot_dose_response(summary: dict[str, Any], path: str) -> None:
    """Pooled share per unseen profession against its raw she-he score, every word labelled."""
    plt = pyplot()
    words = summary["dose_response"]["words"]
    fig, ax = plt.subplots(figsize=(10, 7))
    for word, w in words.items():
        ax.plot(w["score_raw"], 100 * w["share_woman"], ".", color="tab:blue")
        ax.annotate(word, (w["score_raw"], 100 * w["share_woman"]), fontsize=5, alpha=0.8)
    ax.axhline(50, ls="--", color="gray")
    ax.set_xlabel("she-he score (raw word2vec)")
    ax.set_ylabel("pooled share of women (%)")
    save_figure(fig, path)


def _plot_bands(x: Sequence[float], series: dict[str, list[dict]], xlabel: str, path: str) -> None:
    """Each word's pooled share along x with its 95% interval as a band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for word, pooled in series.items():
        share = np.array([100 * p["share_woman"] for p in pooled])
        low, high = (np.array([100 * p["ci95"][i] for p in pooled]) for i in (0, 1))
        ax.plot(x, share, "o-", label=word)
        ax.fill_between(x, low, high, alpha=0.2)
    ax.axhline(50, ls="--", color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pooled share of women (%)")
    ax.legend()
    save_figure(fig, path)


def write(summary: dict[str, Any], sweep_dir: str) -> None:
    """summary.md and the plots, then summary.json last (it marks a finished summary)."""
    files.write_text(os.path.join(sweep_dir, SUMMARY_MD), render_markdown(summary))
    plot_forest(summary, os.path.join(sweep_dir, "forest_contrast.png"))
    plot_dose_response(summary, os.path.join(sweep_dir, "dose_response.png"))
    _plot_bands(summary["over_training"]["steps"], summary["over_training"]["words"], "training step",
                os.path.join(sweep_dir, "over_training.png"))
    _plot_bands(summary["intervention"]["alphas"], summary["intervention"]["words"],
                "a in v + a * g (she-he score shift)", os.path.join(sweep_dir, "intervention.png"))
    files.write_json(os.path.join(sweep_dir, SUMMARY_JSON), summary)

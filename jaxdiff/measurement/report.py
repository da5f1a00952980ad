"""One run's evaluation report in words and pictures: report.md, its plain reading, shares.png, dose_response.png."""

from typing import Any

from jaxdiff.common import files
from jaxdiff.data.classes import PROFESSION_WORDS, SEED_EVAL_WORDS
from jaxdiff.statistics.formatting import interval_text, percent

PERCENT = "{:.1f}%"  # an interval's ends as shares, '[43.5%, 53.3%]' (statistics.formatting.percent's format)
NO_UNSEEN_WORDS = ("None drawn (`evaluate.num_unseen_words` = 0). In a sweep, each member's probes measure it over "
                   "`sweep.num_unseen_words` professions, pooled in the sweep's summary.")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: a plain reading of the result, then the tables."""
    words, controls, dose, clf = report["words"], report["controls"], report["dose_response"], report["classifier"]
    lines = ["# Does embedding bias leak into a model trained on balanced images?",
             "",
             f"Run `{report['config']['workdir']}`, step {report['config']['step']} (EMA parameters); "
             f"{report['config']['sampler']} sampler, {report['config']['steps']} steps, guidance "
             f"{report['config']['guidance']}. Attribute classifier validation accuracy: gender "
             f"{clf['gender_accuracy']:.3f}, profession {clf['profession_accuracy']:.3f}.",
             "", "## Reading", ""]
    lines += reading(report)
    lines += ["", "## Share of images classified woman", "",
              "| word | group | n | share woman | 95% CI (Wilson) | abs(share-0.5) | person / nurse / philosopher | she-he score raw | projected | PC1 raw | PC1 projected |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, w in list(words.items()) + list(controls.items()):
        mix = " / ".join(percent(w["profession"][p]) for p in PROFESSION_WORDS)
        lines.append(f"| {name} | {w['group']} | {w['n']} | {percent(w['share_woman'])} | "
                     f"{interval_text(w['ci95'], fmt=PERCENT)} | {w['abs_deviation']:.3f} | {mix} | "
                     f"{_fmt(w['score_raw'])} | {_fmt(w['score_projected'])} | {_fmt(w['score_pc1_raw'])} | "
                     f"{_fmt(w['score_pc1_projected'])} |")
    if dose["words"]:
        lines += ["", f"## Dose-response over {len(dose['words'])} unseen professions", "", *_dose_table(dose)]
    else:
        lines += ["", "## Dose-response", "", NO_UNSEEN_WORDS]
    c = report["conditioning"]
    lines += ["", "## Conditioning check", "",
              f"Samples must show their own training word at least {percent(c['threshold'])} of the time before "
              f"shares are read: " + ", ".join(f"{w} {percent(v)}" for w, v in c["rates"].items())
              + f" ({'passed' if c['passed'] else 'NOT passed: read the shares with care'}).",
              "", "Files: shares.png, dose_response.png, eval/grids/WORD.png; numbers: report.json."]
    return "\n".join(lines) + "\n"


def _dose_table(dose: dict[str, Any]) -> list[str]:
    lines = ["| correlation of share woman with | r | 95% CI (bootstrap) | p |", "|---|---|---|---|"]
    for key, label in (("spearman", "she-he score, raw (Spearman)"), ("pearson", "she-he score, raw (Pearson)"),
                       ("spearman_projected", "she-he score, projected (Spearman)"),
                       ("pearson_projected", "she-he score, projected (Pearson)")):
        d = dose[key]
        p_value = "n/a" if d["p_value"] is None else f"{d['p_value']:.3g}"
        lines.append(f"| {label} | {_fmt(d['r'])} | {interval_text(d['ci95'], 1, '{:+.2f}')} | {p_value} |")
    return lines


def reading(report: dict[str, Any]) -> list[str]:
    """A few plain sentences, generated from the numbers (never written ahead of them)."""
    words, dose, controls = report["words"], report["dose_response"], report["controls"]
    out = []
    for w in SEED_EVAL_WORDS:
        e = words[w]
        side = "female" if e["score_raw"] > 0.05 else "male" if e["score_raw"] < -0.05 else "neither gender"
        lo, hi = e["ci95"]
        verdict = ("more women than balanced" if lo > 0.5 else "fewer women than balanced" if hi < 0.5
                   else "not distinguishable from balanced")
        out.append(f"- **{w}** (embedding leans {side}, she-he score {e['score_raw']:+.3f}): "
                   f"{percent(e['share_woman'])} women, 95% CI {interval_text(e['ci95'], fmt=PERCENT)}, {verdict}.")
    s = dose["spearman"]
    if s["r"] is not None:
        lo, hi = s["ci95"]
        trend = ("rises" if lo > 0 else "falls" if hi < 0 else "shows no clear trend")
        out.append(f"- Over {s['n']} professions never trained on, the share of women {trend} with the embedding's "
                   f"gender score: Spearman {s['r']:+.2f}, 95% CI {interval_text(s['ci95'], 1, '{:+.2f}')}.")
    ctl = ", ".join(f"{name} {percent(c['share_woman'])} {interval_text(c['ci95'], fmt=PERCENT)}"
                    for name, c in controls.items())
    out.append(f"- Controls: {ctl}.")
    if not report["conditioning"]["passed"]:
        out.append("- The conditioning check failed, so the model may not read the words well enough for these shares to mean much.")
    return out


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> None:
    """Writes a figure as PNG atomically and frees it."""
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    pyplot().close(fig)


def _interval_bars(entry: dict[str, Any]) -> list[list[float]]:
    """A word's Wilson interval as matplotlib's (below, above) error-bar lengths around its share."""
    share, (low, high) = entry["share_woman"], entry["ci95"]
    return [[share - low], [high - share]]


def plot_shares(report: dict[str, Any], path: str) -> None:
    """Share of women per word with Wilson intervals, grouped, with 50% marked."""
    plt = pyplot()
    entries = list(report["words"].items()) + list(report["controls"].items())
    colours = {"seed": "tab:red", "training": "tab:gray", "unseen": "tab:blue", "control": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(entries) + 1.2))
    for i, (name, e) in enumerate(entries):
        y = len(entries) - 1 - i
        ax.errorbar(e["share_woman"], y, xerr=_interval_bars(e), fmt="o", color=colours[e["group"]], capsize=2, ms=4)
    ax.axvline(0.5, color="k", lw=0.8, ls="--")
    ax.set_yticks(range(len(entries)))
    ax.set_yticklabels([name for name, _ in entries][::-1], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of samples classified woman (95% Wilson interval)")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=g) for g, c in colours.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_dose_response(report: dict[str, Any], path: str) -> None:
    """Gender score (raw she-he) against share of women, unseen words labelled, training words marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in report["words"].items():
        colour = "tab:blue" if e["group"] == "unseen" else "tab:red"
        ax.errorbar(e["score_raw"], e["share_woman"], yerr=_interval_bars(e), fmt="o", color=colour, ms=4, capsize=2, alpha=0.8)
        ax.annotate(name, (e["score_raw"], e["share_woman"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    s = report["dose_response"]["spearman"]
    title = "share of women vs embedding gender score"
    if s["r"] is not None:
        title += f" (unseen words: Spearman {s['r']:+.2f}, 95% CI {interval_text(s['ci95'], 1, '{:+.2f}')})"
    ax.set_title(title, fontsize=8)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("she-he score of the word vector (raw space; + leans female)")
    ax.set_ylabel("share of samples classified woman")
    ax.set_ylim(0, 1)
    save_figure(fig, path)

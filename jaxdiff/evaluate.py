"""Does the embedding's gender bias leak into images trained on balanced data? Measure it.

    python -m jaxdiff.evaluate [--workdir W]

For every evaluation word (the question's philosopher, person, nurse; the training words man, woman;
unseen professions from Bolukbasi et al. spread over the gender score; controls: the null
condition, a random unit vector, hard-debiased nurse and philosopher) it samples N images from
the EMA parameters, classifies them with the attribute classifier, and reports the share
classified woman with its Wilson 95% interval, |share - 0.5|, the profession mix, and the
word's gender scores. Over the unseen words: Spearman and Pearson correlation of gender score
and share of women, with bootstrap 95% intervals. Writes report.json, report.md, shares.png,
dose_response.png and eval/grids/WORD.png into the workdir.
"""

if __name__ == "__main__":  # a command line: set the process up before JAX and TensorFlow load
    from jaxdiff.startup import prepare_process

    prepare_process()

import os
import time
from typing import Any, Sequence

import numpy as np

from jaxdiff import classifier, embed, files, input_pipeline, vectors, workdirs
from jaxdiff.classes import PROFESSION_WORDS, SEED_EVAL_WORDS, TRAIN_WORDS
from jaxdiff.cli import ArgumentParser, hide_accelerators_from_tensorflow, run
from jaxdiff.errors import UserError

REPORT_JSON, REPORT_MD = "report.json", "report.md"
CONDITIONING_THRESHOLD = 0.9  # issue: samples must show their word's attribute this often before bias is read


class ClassifierTooWeak(Exception):
    """The attribute classifier is below classifier.min_accuracy: no shares are reported."""


# ---------------------------------------------------------------------------------------------
# Statistics (scipy.stats, not hand-written).


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def correlation_with_interval(x: Sequence[float], y: Sequence[float], method: str, resamples: int,
                              seed: int) -> dict[str, Any]:
    """Spearman or Pearson r of paired data, its p-value, and a paired bootstrap 95% interval."""
    from scipy import stats

    fn = {"spearman": stats.spearmanr, "pearson": stats.pearsonr}[method]
    x, y = np.asarray(x, float), np.asarray(y, float)
    if np.std(y) == 0 or np.std(x) == 0:  # e.g. every unseen word at 0% women: no correlation to speak of
        return {"r": None, "p_value": None, "ci95": [None, None], "n": len(x)}
    result = fn(x, y)
    boot = stats.bootstrap((x, y), lambda a, b: fn(a, b).statistic, paired=True, vectorized=False,
                           n_resamples=resamples, confidence_level=0.95, method="percentile",
                           random_state=np.random.default_rng(seed))
    low, high = boot.confidence_interval
    return {"r": float(result.statistic), "p_value": float(result.pvalue),
            "ci95": [float(low), float(high)], "n": len(x)}


# ---------------------------------------------------------------------------------------------
# Which words, which vectors.


def pick_unseen_words(table: embed.EmbeddingTable, directions: embed.GenderDirections, count: int) -> list[str]:
    """`count` professions of bolukbasi.json that were never trained on, evenly spread over the
    she-he score (raw space) from the most male-leaning to the most female-leaning."""
    professions = [p[0] for p in vectors.bolukbasi_gender()["professions"]]
    candidates = [w for w in professions if w in table and w not in TRAIN_WORDS]
    if len(candidates) < count:
        raise UserError(f"evaluate.num_unseen_words {count} exceeds the {len(candidates)} unseen professions in the table")
    scored = sorted(candidates, key=lambda w: float(table.raw_vector(w) @ directions.she_he_raw))  # unit vectors
    picks = np.unique(np.round(np.linspace(0, len(scored) - 1, count)).astype(int))
    return [scored[i] for i in picks]


def evaluation_conditions(table: embed.EmbeddingTable, config: Any) -> list[dict[str, Any]]:
    """Every condition to sample: label, group, projected vector, raw vector (None for null), n."""
    e = config.evaluate
    directions = embed.GenderDirections.of(table)
    out = []
    for word in list(SEED_EVAL_WORDS) + [w for w in TRAIN_WORDS if w not in SEED_EVAL_WORDS]:
        group = "seed" if word in SEED_EVAL_WORDS else "training"
        out.append(dict(label=word, group=group, raw=table.raw_vector(word), n=e.num_samples))
    for word in pick_unseen_words(table, directions, e.num_unseen_words):
        out.append(dict(label=word, group="unseen", raw=table.raw_vector(word), n=e.num_samples_unseen))
    rng = np.random.default_rng(e.seed)
    random_raw = rng.normal(size=table.raw.shape[1]).astype(np.float32)
    out.append(dict(label="null", group="control", raw=None, n=e.num_samples_unseen))
    out.append(dict(label="random vector", group="control", raw=random_raw / np.linalg.norm(random_raw),
                    n=e.num_samples_unseen))
    for word in ("nurse", "philosopher"):
        out.append(dict(label=f"{word} (hard-debiased)", group="control",
                        raw=embed.hard_debias(table.raw_vector(word), directions.pc1_raw), n=e.num_samples_unseen))
    for c in out:
        c["projected"] = np.zeros(table.dim, np.float32) if c["raw"] is None else table.project(c["raw"])
        c["scores"] = _scores(table, c["raw"], c["projected"], directions)
    return out


def _scores(table, raw, projected, directions) -> dict[str, float | None]:
    if raw is None:
        return {"score_raw": None, "score_projected": None, "score_pc1_raw": None, "score_pc1_projected": None,
                "woman_minus_man": None}
    s = embed.gender_scores(raw, projected, directions)
    return {"score_raw": s["she_he_raw"], "score_projected": s["she_he_projected"], "score_pc1_raw": s["pc1_raw"],
            "score_pc1_projected": s["pc1_projected"], "woman_minus_man": embed.woman_minus_man(table, raw)}


# ---------------------------------------------------------------------------------------------
# The evaluation.


def ensure_classifier(trained: workdirs.TrainedRun, log=print) -> tuple[Any, Any, dict[str, float]]:
    """The run's attribute classifier: loaded from the workdir, or trained on its dataset and saved."""
    config = trained.config
    loaded = classifier.load(trained.workdir, config)
    if loaded is None:
        input_pipeline.ensure_dataset(config, log)  # the classifier learns from the dataset; the portraits are made
        params, accuracy = classifier.train(config, log=log)
        classifier.save(trained.workdir, params, accuracy)
        loaded = classifier.load(trained.workdir, config)
    model, params, accuracy = loaded
    minimum = config.classifier.min_accuracy
    weak = {k: v for k, v in accuracy.items() if k.endswith("_accuracy") and v < minimum}
    if weak:
        described = ", ".join(f"{k.replace('_accuracy', '')} {v:.3f}" for k, v in weak.items())
        raise ClassifierTooWeak(f"the attribute classifier's validation accuracy ({described}) is below "
                                f"classifier.min_accuracy {minimum}, so no shares are reported; train it longer "
                                f"(classifier.num_steps) and delete {os.path.join(trained.workdir, classifier.PARAMS_FILE)}")
    return model, params, accuracy


def word_entry(label: str, group: str, gender_probs: np.ndarray, profession_probs: np.ndarray,
               scores: dict[str, float | None]) -> dict[str, Any]:
    """A word's row of the report: n, share classified woman with its Wilson interval, profession mix, scores."""
    n = len(gender_probs)
    k = int((gender_probs.argmax(-1) == 1).sum())
    low, high = wilson_interval(k, n)
    mix = np.bincount(profession_probs.argmax(-1), minlength=len(PROFESSION_WORDS)) / n
    share = k / n
    return {"group": group, "n": n, "women": k, "share_woman": share, "ci95": [low, high],
            "abs_deviation": abs(share - 0.5), "profession": dict(zip(PROFESSION_WORDS, map(float, mix))), **scores}


def conditioning_check(words: dict[str, dict]) -> dict[str, Any]:
    """Whether samples show their own training word: professions for nurse/philosopher/person, gender for man/woman."""
    rates = {w: words[w]["profession"][w] for w in PROFESSION_WORDS}
    rates["man"] = 1.0 - words["man"]["share_woman"]
    rates["woman"] = words["woman"]["share_woman"]
    return {"rates": rates, "threshold": CONDITIONING_THRESHOLD, "passed": all(v >= CONDITIONING_THRESHOLD for v in rates.values())}


def evaluate(workdir: str, log=print) -> dict[str, Any]:
    """Runs the whole evaluation of a trained run and writes its report files; returns report.json's content."""
    hide_accelerators_from_tensorflow()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    trained = workdirs.TrainedRun.load(workdir, "ema")
    trained.step  # restores the parameters now: a missing or damaged checkpoint is said before minutes of work
    config, e = trained.config, trained.config.evaluate
    timings["load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    clf_model, clf_params, accuracy = ensure_classifier(trained, log)
    timings["classifier_s"] = time.perf_counter() - start

    conds = evaluation_conditions(trained.table, config)
    cond_NK = np.concatenate([np.repeat(c["projected"][None], c["n"], axis=0) for c in conds])
    start = time.perf_counter()
    log(f"sampling {len(cond_NK)} images for {len(conds)} conditions ({e.sampler}, {e.steps} steps, guidance {e.guidance})")
    images = _sample_with_progress(trained, cond_NK, e)
    timings["sampling_s"] = time.perf_counter() - start
    timings["sampling_images_per_s"] = len(images) / timings["sampling_s"]

    start = time.perf_counter()
    gender_probs, profession_probs = classifier.predict(clf_model, clf_params, images)
    words, controls, offset = {}, {}, 0
    grid_dir = os.path.join(workdir, "eval", "grids")
    for c in conds:
        sl = slice(offset, offset + c["n"])
        offset += c["n"]
        entry = word_entry(c["label"], c["group"], gender_probs[sl], profession_probs[sl], c["scores"])
        (controls if c["group"] == "control" else words)[c["label"]] = entry
        grid = files.image_grid(files.to_uint8(images[sl][:16]), ncols=8)
        files.save_png(os.path.join(grid_dir, c["label"].replace(" ", "_").replace("(", "").replace(")", "") + ".png"),
                       grid, scale=3)
    unseen = [w for w, v in words.items() if v["group"] == "unseen"]
    dose = {"words": unseen, "score": "she-he projection of the raw vector (score_raw)"}
    for method in ("spearman", "pearson"):
        dose[method] = correlation_with_interval([words[w]["score_raw"] for w in unseen],
                                                 [words[w]["share_woman"] for w in unseen],
                                                 method, e.bootstrap_resamples, e.seed)
        dose[f"{method}_projected"] = correlation_with_interval([words[w]["score_projected"] for w in unseen],
                                                                [words[w]["share_woman"] for w in unseen],
                                                                method, e.bootstrap_resamples, e.seed)
    timings["statistics_s"] = time.perf_counter() - start

    report = {
        "classifier": {**accuracy, "min_accuracy": config.classifier.min_accuracy},
        "words": words,
        "dose_response": dose,
        "controls": controls,
        "conditioning": conditioning_check(words),
        "config": {"workdir": workdir, "step": trained.step, "params": "ema", "embed": config.embed.to_dict(),
                   **e.to_dict()},
        "timings": timings,
    }
    start = time.perf_counter()
    files.write_text(os.path.join(workdir, REPORT_MD), render_markdown(report))
    plot_shares(report, os.path.join(workdir, "shares.png"))
    plot_dose_response(report, os.path.join(workdir, "dose_response.png"))
    timings["report_s"] = time.perf_counter() - start
    # Last: report.json marks the evaluation as finished (jaxdiff.experiment skips a current one).
    files.write_json(os.path.join(workdir, REPORT_JSON), report)
    return report


def _sample_with_progress(trained: workdirs.TrainedRun, cond_NK: np.ndarray, e: Any) -> np.ndarray:
    from tqdm import tqdm

    s = trained.config.sample
    image_sampler, params = trained.image_sampler(), trained.device_params()
    chunk = s.batch_size
    out = []
    for start in tqdm(range(0, len(cond_NK), chunk), desc="sampling", unit="batch", dynamic_ncols=True):
        out.append(image_sampler.sample(params, cond_NK[start:start + chunk], e.seed, sampler=e.sampler, steps=e.steps,
                                        spacing=s.spacing, guidance=e.guidance, clip_x0=s.clip_x0,
                                        batch_size=chunk, first_index=start))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Report files.


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def _ci(c: Sequence[float | None]) -> str:
    return "n/a" if c[0] is None else f"[{c[0]:+.2f}, {c[1]:+.2f}]"


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
        mix = " / ".join(_pct(w["profession"][p]) for p in PROFESSION_WORDS)
        lines.append(f"| {name} | {w['group']} | {w['n']} | {_pct(w['share_woman'])} | "
                     f"[{_pct(w['ci95'][0])}, {_pct(w['ci95'][1])}] | {w['abs_deviation']:.3f} | {mix} | "
                     f"{_fmt(w['score_raw'])} | {_fmt(w['score_projected'])} | {_fmt(w['score_pc1_raw'])} | "
                     f"{_fmt(w['score_pc1_projected'])} |")
    lines += ["", f"## Dose-response over {len(dose['words'])} unseen professions", "",
              "| correlation of share woman with | r | 95% CI (bootstrap) | p |", "|---|---|---|---|"]
    for key, label in (("spearman", "she-he score, raw (Spearman)"), ("pearson", "she-he score, raw (Pearson)"),
                       ("spearman_projected", "she-he score, projected (Spearman)"),
                       ("pearson_projected", "she-he score, projected (Pearson)")):
        d = dose[key]
        p_value = "n/a" if d["p_value"] is None else f"{d['p_value']:.3g}"
        lines.append(f"| {label} | {_fmt(d['r'])} | {_ci(d['ci95'])} | {p_value} |")
    c = report["conditioning"]
    lines += ["", "## Conditioning check", "",
              f"Samples must show their own training word at least {_pct(c['threshold'])} of the time before "
              f"shares are read: " + ", ".join(f"{w} {_pct(v)}" for w, v in c["rates"].items())
              + f" ({'passed' if c['passed'] else 'NOT passed: read the shares with care'}).",
              "", "Files: shares.png, dose_response.png, eval/grids/WORD.png; numbers: report.json."]
    return "\n".join(lines) + "\n"


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
                   f"{_pct(e['share_woman'])} women, 95% CI [{_pct(lo)}, {_pct(hi)}], {verdict}.")
    s = dose["spearman"]
    if s["r"] is not None:
        lo, hi = s["ci95"]
        trend = ("rises" if lo > 0 else "falls" if hi < 0 else "shows no clear trend")
        out.append(f"- Over {s['n']} professions never trained on, the share of women {trend} with the embedding's "
                   f"gender score: Spearman {s['r']:+.2f}, 95% CI [{lo:+.2f}, {hi:+.2f}].")
    ctl = ", ".join(f"{name} {_pct(c['share_woman'])} [{_pct(c['ci95'][0])}, {_pct(c['ci95'][1])}]"
                    for name, c in controls.items())
    out.append(f"- Controls: {ctl}.")
    if not report["conditioning"]["passed"]:
        out.append("- The conditioning check failed, so the model may not read the words well enough for these shares to mean much.")
    return out


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str) -> None:
    """Writes a figure as PNG atomically and frees it."""
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    _pyplot().close(fig)


def _interval_bars(entry: dict[str, Any]) -> list[list[float]]:
    """A word's Wilson interval as matplotlib's (below, above) error-bar lengths around its share."""
    share, (low, high) = entry["share_woman"], entry["ci95"]
    return [[share - low], [high - share]]


def plot_shares(report: dict[str, Any], path: str) -> None:
    """Share of women per word with Wilson intervals, grouped, with 50% marked."""
    plt = _pyplot()
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
    _save_figure(fig, path)


def plot_dose_response(report: dict[str, Any], path: str) -> None:
    """Gender score (raw she-he) against share of women, unseen words labelled, training words marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in report["words"].items():
        colour = "tab:blue" if e["group"] == "unseen" else "tab:red"
        ax.errorbar(e["score_raw"], e["share_woman"], yerr=_interval_bars(e), fmt="o", color=colour, ms=4, capsize=2, alpha=0.8)
        ax.annotate(name, (e["score_raw"], e["share_woman"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    s = report["dose_response"]["spearman"]
    title = "share of women vs embedding gender score"
    if s["r"] is not None:
        title += f" (unseen words: Spearman {s['r']:+.2f}, 95% CI [{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}])"
    ax.set_title(title, fontsize=8)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("she-he score of the word vector (raw space; + leans female)")
    ax.set_ylabel("share of samples classified woman")
    ax.set_ylim(0, 1)
    _save_figure(fig, path)


def main(argv: Sequence[str]) -> None:
    parser = ArgumentParser(prog="python -m jaxdiff.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="a trained run (default: the latest under runs/)")
    args = parser.parse_args(argv)
    workdir = workdirs.resolve(args.workdir)
    try:
        report = evaluate(workdir)
    except ClassifierTooWeak as error:
        print(f"error: {error}", flush=True)
        raise SystemExit(1)
    print(f"report: {os.path.join(workdir, REPORT_MD)} (numbers in {REPORT_JSON}; plots shares.png, dose_response.png)")
    print("\n".join(reading(report)))


if __name__ == "__main__":
    run(main)

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


import os
import time
from typing import Any, Sequence

import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.data import input_pipeline
from jaxdiff.measurement import classifier, evaluation_words, records
from jaxdiff.statistics import intervals
from jaxdiff.training import workdirs
from jaxdiff.measurement import report as report_files
from jaxdiff.data.classes import PROFESSION_WORDS
from jaxdiff.common.errors import RunStopped

REPORT_JSON, REPORT_MD = "report.json", "report.md"
CONDITIONING_THRESHOLD = 0.9  # issue: samples must show their word's attribute this often before bias is read


class ClassifierTooWeak(RunStopped):
    """The attribute classifier is below classifier.min_accuracy: no shares are reported."""


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
    k = int(classifier.reads_woman(gender_probs).sum())
    low, high = intervals.wilson_interval(k, n)
    mix = np.bincount(profession_probs.argmax(-1), minlength=len(PROFESSION_WORDS)) / n
    share = k / n
    return {"group": group, "n": n, "women": k, "share_woman": share, "ci95": [low, high],
            "abs_deviation": abs(share - 0.5), "profession": dict(zip(PROFESSION_WORDS, map(float, mix))), **scores,
            "p_woman": classifier.p_woman_record(gender_probs)}


def conditioning_check(words: dict[str, dict]) -> dict[str, Any]:
    """Whether samples show their own training word: professions for nurse/philosopher/person, gender for man/woman."""
    rates = {w: words[w]["profession"][w] for w in PROFESSION_WORDS}
    rates["man"] = 1.0 - words["man"]["share_woman"]
    rates["woman"] = words["woman"]["share_woman"]
    return {"rates": rates, "threshold": CONDITIONING_THRESHOLD, "passed": all(v >= CONDITIONING_THRESHOLD for v in rates.values())}


def evaluate(workdir: str, log=print) -> dict[str, Any]:
    """Runs the whole evaluation of a trained run and writes its report files; returns report.json's content."""
    cli.hide_accelerators_from_tensorflow()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    trained = workdirs.TrainedRun.load(workdir, "ema")
    trained.step  # restores the parameters now: a missing or damaged checkpoint is said before minutes of work
    config, e = trained.config, trained.config.evaluate
    evaluation_words.check_settings(config)  # before the classifier's minutes
    timings["load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    clf_model, clf_params, accuracy = ensure_classifier(trained, log)
    timings["classifier_s"] = time.perf_counter() - start

    conds = evaluation_words.evaluation_conditions(trained.table, config)
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
        dose[method] = intervals.correlation_with_interval([words[w]["score_raw"] for w in unseen],
                                                 [words[w]["share_woman"] for w in unseen],
                                                 method, e.bootstrap_resamples, e.seed)
        dose[f"{method}_projected"] = intervals.correlation_with_interval([words[w]["score_projected"] for w in unseen],
                                                                [words[w]["share_woman"] for w in unseen],
                                                                method, e.bootstrap_resamples, e.seed)
    timings["statistics_s"] = time.perf_counter() - start

    report = {
        "classifier": {**accuracy, "min_accuracy": config.classifier.min_accuracy,
                       "digest": classifier.digest(workdir)},
        "words": words,
        "dose_response": dose,
        "controls": controls,
        "conditioning": conditioning_check(words),
        "config": {"workdir": workdir, "step": trained.step, "params": "ema", "embed": config.embed.to_dict(),
                   **e.to_dict(), **records.sampling_settings(config)},
        "timings": timings,
    }
    start = time.perf_counter()
    files.write_text(os.path.join(workdir, REPORT_MD), report_files.render_markdown(report))
    report_files.plot_shares(report, os.path.join(workdir, "shares.png"))
    report_files.plot_dose_response(report, os.path.join(workdir, "dose_response.png"))
    timings["report_s"] = time.perf_counter() - start
    # Last: report.json marks the evaluation as finished (jaxdiff.experiment skips a current one).
    return records.write(records.REPORT, os.path.join(workdir, REPORT_JSON), report)


def _sample_with_progress(trained: workdirs.TrainedRun, cond_NK: np.ndarray, e: Any) -> np.ndarray:
    from tqdm import tqdm

    s = trained.config.sample
    image_sampler, params = trained.image_sampler(), trained.device_params()
    # One call, so every chunk has one shape (one compilation); the bar moves as each chunk is drawn.
    with tqdm(total=len(cond_NK), desc="sampling", unit="image", dynamic_ncols=True) as bar:
        return image_sampler.sample_as_configured(params, cond_NK, e.seed, s, sampler=e.sampler, steps=e.steps,
                                                  guidance=e.guidance, on_chunk=bar.update)


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.evaluate`."""
    absl_flags.DEFINE_string("workdir", None, "a trained run (default: the latest under runs/)", flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, doc=__doc__)
    workdir = workdirs.resolve(args.workdir)
    report = evaluate(workdir)
    print(f"report: {os.path.join(workdir, REPORT_MD)} (numbers in {REPORT_JSON}; plots shares.png, dose_response.png)")
    print("\n".join(report_files.reading(report)))


"""What a sweep samples from each member beyond its report: the model's answers to three questions.

- dose-response: many unseen professions (config.sweep.num_unseen_words), few images each; they
  pool over members.
- leakage over training: nurse, philosopher and person at the checkpoints kept along training
  (train.keep_period), so a reader sees whether a leak appears early and fades, or grows.
- intervention: nurse, philosopher and person with their raw vector moved along the unit she-he
  direction g, v + a * g, then projected as any word is: the model's causal sensitivity to the
  embedding's gender component. Moving by a moves the raw she-he score by exactly a.

Written to WORKDIR/probes.json (atomically, last), for the sweep's summary to pool.
"""

import os
import time
from typing import Any, Callable

import numpy as np

from jaxdiff.data import embed
from jaxdiff.measurement import classifier, evaluate, evaluation_words, records
from jaxdiff.training import checkpoints, workdirs
from jaxdiff.data.classes import SEED_EVAL_WORDS, TRAIN_WORDS

PROBES_JSON = "probes.json"  # its fields, version and currency: jaxdiff.measurement.records


def intervention_alphas(table: embed.EmbeddingTable, count: int) -> np.ndarray:
    """`count` shifts evenly over +-(the largest |raw she-he score| of the training words)."""
    directions = embed.GenderDirections.of(table)
    reach = max(abs(float(table.raw_vector(w) @ directions.she_he_raw)) for w in TRAIN_WORDS)
    return np.linspace(-reach, reach, count)


def intervened_vector(table: embed.EmbeddingTable, word: str, alpha: float,
                      she_he_raw: np.ndarray | None = None) -> np.ndarray:
    """The word's raw vector moved by `alpha` along the unit she-he direction (not renormalised)."""
    direction = embed.GenderDirections.of(table).she_he_raw if she_he_raw is None else she_he_raw
    return table.raw_vector(word) + alpha * direction


def final_conditions(table: embed.EmbeddingTable, sweep: Any) -> list[dict[str, Any]]:
    """The conditions sampled from the last checkpoint: the intervention grid, then the unseen professions."""
    directions = embed.GenderDirections.of(table)
    out = []
    for word in SEED_EVAL_WORDS:
        for alpha in intervention_alphas(table, sweep.intervention_alphas):
            raw = intervened_vector(table, word, float(alpha), directions.she_he_raw)
            out.append({"kind": "intervention", "word": word, "alpha": float(alpha), "raw": raw,
                        "n": sweep.samples_per_alpha})
    for word in evaluation_words.pick_unseen_words(table, directions, sweep.num_unseen_words):
        out.append({"kind": "unseen", "word": word, "raw": table.raw_vector(word), "n": sweep.samples_per_unseen_word})
    for c in out:
        c["projected"] = table.project(c["raw"])
        # Raw: the dot product with the unit she-he direction, which v + a * g moves by exactly a (for
        # the unit vectors of words it is report.json's cosine); projected: report.json's cosine.
        c["score_raw"] = float(c["raw"] @ directions.she_he_raw)
        c["score_projected"] = embed.gender_scores(c["raw"], c["projected"], directions)["she_he_projected"]
    return out


def _count_women(run: workdirs.TrainedRun, conditions: list[dict[str, Any]], clf: tuple, log: Callable) -> list[dict]:
    """Samples every condition from `run`, classifies the images, and returns one row per condition."""
    e = run.config.evaluate
    cond_NK = np.concatenate([np.repeat(c["projected"][None], c["n"], axis=0) for c in conditions])
    log(f"sampling {len(cond_NK)} images at step {run.step} ({e.sampler}, {e.steps} steps)")
    images = evaluate._sample_with_progress(run, cond_NK, e)
    model, params, _ = clf
    gender_probs, _ = classifier.predict(model, params, images)
    woman = classifier.reads_woman(gender_probs)
    rows, offset = [], 0
    for c in conditions:
        sl = slice(offset, offset + c["n"])
        k = int(woman[sl].sum())
        offset += c["n"]
        rows.append({key: value for key, value in c.items() if key not in ("raw", "projected")} |
                    {"women": k, "share_woman": k / c["n"], "p_woman": classifier.p_woman_record(gender_probs[sl])})
    return rows


def kept_steps(workdir: str, keep_period: int) -> list[int]:
    """The checkpoints kept along training (multiples of keep_period), latest included."""
    steps = checkpoints.checkpoint_steps(workdir)
    return [s for s in steps if (keep_period and s % keep_period == 0) or s == steps[-1]]


def run_probes(workdir: str, log: Callable = print) -> dict[str, Any]:
    """Samples and classifies every probe of a trained, evaluated member; writes and returns probes.json."""
    start = time.perf_counter()
    latest = workdirs.TrainedRun.load(workdir, "ema")
    config = latest.config
    clf = evaluate.ensure_classifier(latest, log)
    final = _count_women(latest, final_conditions(latest.table, config.sweep), clf, log)
    over_training = []
    for step in kept_steps(workdir, config.train.keep_period):
        run = latest if step == latest.step else workdirs.TrainedRun.load(workdir, "ema", at_step=step)
        conditions = [{"kind": "over_training", "word": w, "step": step, "n": config.sweep.samples_over_training,
                       "projected": latest.table.projected_vector(w)} for w in SEED_EVAL_WORDS]
        over_training += _count_women(run, conditions, clf, log)
    result = {"step": latest.step, "seed": int(config.evaluate.seed), "sampler": config.evaluate.sampler,
              "steps": int(config.evaluate.steps), "guidance": float(config.evaluate.guidance),
              **records.sampling_settings(config),
              "counts": records.probe_counts(config), "classifier_digest": classifier.digest(workdir),
              "intervention": [r for r in final if r["kind"] == "intervention"],
              "unseen": [r for r in final if r["kind"] == "unseen"],
              "over_training": over_training,
              "seconds": time.perf_counter() - start}
    return records.write(records.PROBES, os.path.join(workdir, PROBES_JSON), result)

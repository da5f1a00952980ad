"""Which conditions the evaluation samples: the question's words, the training words, unseen professions
spread over the gender score, and the controls (null, a random vector, hard-debiased nurse and
philosopher), each with its projected vector and gender scores."""

from typing import Any, Mapping, Sequence

import numpy as np

from jaxdiff.core import conditioning, sampling
from jaxdiff.data import embed, vectors
from jaxdiff.data.classes import CONTRAST_WORDS, SEED_EVAL_WORDS, TRAIN_WORDS
from jaxdiff.common import configuration
from jaxdiff.common.errors import UserError


# The evaluation's fields with a least value (a study that draws its own images checks only check_drawing's).
EVALUATION_AT_LEAST = {"evaluate.num_samples": 1, "evaluate.num_samples_man_woman": 1, "evaluate.num_samples_unseen": 1,
                       "evaluate.num_unseen_words": 0}


def check_drawing(config: Any, wrong: Sequence[str] = ()) -> None:
    """How the evaluation draws its images (sampler, steps, spacing), checked, with whatever else the caller
    found `wrong`: one UserError naming every wrong field, or nothing."""
    wrong = list(wrong)
    e, s = config.evaluate, config.sample
    sampler = e.sampler or s.sampler  # an empty evaluate.sampler means sample.sampler, as the sampler reads it
    try:
        sampling.check_sampler(sampler)
    except UserError as error:
        wrong.append(f"evaluate.sampler: {error}")
    else:
        steps, limit = e.get("steps") or sampling.steps_for(s, sampler), config.diffusion.num_timesteps
        if not 1 <= steps <= limit:
            wrong.append(f"evaluate.steps (sample.steps where it is 0) is {steps}; it must be in [1, {limit}], "
                         f"diffusion.num_timesteps")
    if s.spacing not in sampling.SPACINGS:
        wrong.append(f"sample.spacing is {s.spacing!r}; choose one of {', '.join(sampling.SPACINGS)}")
    if wrong:
        raise UserError("; ".join(wrong))


def unseen_professions() -> list[str]:
    """bolukbasi.json's professions that are not trained on, in its order (an evaluation picks among those its
    table holds)."""
    return [p[0] for p in vectors.bolukbasi_gender()["professions"] if p[0] not in TRAIN_WORDS]


def too_many_unseen(count: Any, field: str) -> list[str]:
    """[the phrase saying so] where `count` unseen professions exceed bolukbasi.json's, else []. A table whose
    vectors lack some is checked again when the words are picked."""
    available = len(unseen_professions())
    if count is None or count <= available:
        return []
    return [f"{field} is {count}; bolukbasi.json has {available} unseen professions"]


def check_settings(config: Any, set_by: Mapping[str, str] | None = None, wrong: Sequence[str] = ()) -> None:
    """The evaluation's settings (config.evaluate) that can be checked without a trained run, checked, with
    whatever else the caller found `wrong`: a UserError naming each wrong field and what it must be, so that
    a job which trains first stops in a second rather than after training. `set_by` names the field that
    sets an evaluate field where another does (a sweep's members)."""
    name = (set_by or {}).get("evaluate.num_unseen_words", "evaluate.num_unseen_words")
    check_drawing(config, [*wrong, *configuration.out_of_range(config, EVALUATION_AT_LEAST, names=set_by),
                           *too_many_unseen(config.evaluate.num_unseen_words, name)])


def pick_unseen_words(table: embed.EmbeddingTable, directions: embed.GenderDirections, count: int) -> list[str]:
    """`count` professions of bolukbasi.json that were never trained on, evenly spread over the
    she-he score (raw space) from the most male-leaning to the most female-leaning."""
    candidates = [w for w in unseen_professions() if w in table]
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
    # A run saved before man and woman had their own count (2026-11-27) drew num_samples of them.
    man_woman = e.get("num_samples_man_woman", e.num_samples)
    for word in list(SEED_EVAL_WORDS) + [w for w in TRAIN_WORDS if w not in SEED_EVAL_WORDS]:
        seed_word = word in SEED_EVAL_WORDS
        out.append(dict(label=word, group="seed" if seed_word else "training", raw=table.raw_vector(word),
                        n=e.num_samples if seed_word else man_woman))
    for word in pick_unseen_words(table, directions, e.num_unseen_words):
        out.append(dict(label=word, group="unseen", raw=table.raw_vector(word), n=e.num_samples_unseen))
    rng = np.random.default_rng(e.seed)
    random_raw = rng.normal(size=table.raw.shape[1]).astype(np.float32)
    out.append(dict(label="null", group="control", raw=None, n=e.num_samples_unseen))
    out.append(dict(label="random vector", group="control", raw=random_raw / np.linalg.norm(random_raw),
                    n=e.num_samples_unseen))
    for word in CONTRAST_WORDS:
        out.append(dict(label=f"{word} (hard-debiased)", group="control",
                        raw=embed.hard_debias(table.raw_vector(word), directions.pc1_raw), n=e.num_samples_unseen))
    for c in out:
        c["projected"] = conditioning.null_vector(table.dim) if c["raw"] is None else table.project(c["raw"])
        c["scores"] = _scores(table, c["raw"], c["projected"], directions)
    return out


def _scores(table, raw, projected, directions) -> dict[str, float | None]:
    if raw is None:
        return {"score_raw": None, "score_projected": None, "score_pc1_raw": None, "score_pc1_projected": None,
                "woman_minus_man": None}
    s = embed.gender_scores(raw, projected, directions)
    return {"score_raw": s["she_he_raw"], "score_projected": s["she_he_projected"], "score_pc1_raw": s["pc1_raw"],
            "score_pc1_projected": s["pc1_projected"], "woman_minus_man": embed.woman_minus_man(table, raw)}

"""The frontier's sampling: a sweep's trained members opened with their classifier, and rounds of images drawn
and read for the settings whose round is not on disk yet."""

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from jaxdiff.common import configuration
from jaxdiff.common.errors import UserError
from jaxdiff.core import sampling
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.measurement import classifier, records
from jaxdiff.studies import frontier_rounds, frontier_settings, sweep
from jaxdiff.studies.frontier_rounds import FRONTIER_DIR
from jaxdiff.studies.frontier_settings import Setting, first_index
from jaxdiff.training import checkpoints, workdirs


@dataclasses.dataclass(frozen=True)
class StudySweep:
    """A sweep directory under study: its trained members and the classifier every member is read with."""

    workdir: str
    members: list[sweep.Member]
    clf: tuple  # (model, params, accuracy)
    classifier_id: str  # a digest of the classifier's parameters file: counts made with another are redone


def _check_trained_alike(sweep_dir: str, members: Sequence[sweep.Member]) -> None:
    """One row pools one training recipe: every member trained as the first was, seeds apart. (A sweep of
    another length is studied under this config too, so the recipe is not compared with the config.)"""
    first = configuration.load(members[0].workdir).to_dict()
    for member in members[1:]:
        saved = configuration.load(member.workdir)
        expected = ml_collections.ConfigDict(first)
        expected.seed, expected.embed.seed = saved.seed, saved.embed.seed
        workdirs.check_same_architecture(
            saved, expected, member.workdir, sweep.MEMBER_RECIPE,
            remedy=f"its sweep's first member, {members[0].name}, has the latter: one row pools one training recipe, so "
                   f"give each its own sweep directory")


def open_sweep(config: ml_collections.ConfigDict, sweep_dir: str) -> StudySweep:
    """A sweep directory's members trained to the config's steps (or kept as rounds alone), and its classifier."""
    # Trained is enough: the frontier samples from the checkpoints, whatever the members' reports were made with.
    num_steps = config.train.num_steps
    done = [m for m in sweep.members(config, sweep_dir)
            if checkpoints.trained_to(m.workdir, num_steps) or frontier_rounds.recorded_only(m.workdir, num_steps)]
    if not done:
        raise UserError(f"no member of {sweep_dir} is trained to {config.train.num_steps} steps yet; run: "
                        f"python -m jaxdiff.sweep --config=... --workdir={sweep_dir}")
    _check_trained_alike(sweep_dir, done)
    loaded = classifier.load(sweep_dir, config)
    if loaded is None:
        raise UserError(f"{sweep_dir} has no classifier; run the sweep there first: python -m jaxdiff.sweep "
                        f"--config=... --workdir={sweep_dir}")
    return StudySweep(sweep_dir, done, loaded, classifier.digest(sweep_dir))


def sample_round(workdir: str, settings: Sequence[Setting], round_: int, config: ml_collections.ConfigDict,
                  study_sweep: StudySweep, round_images: int, log: Callable,
                  words: Sequence[str] = SEED_EVAL_WORDS) -> None:
    """Samples and counts one round of a member's images of `words` for each setting whose round is not cached yet.

    Settings that differ only in their number of images share a round (the larger serves the smaller:
    the first images are the same). A cached round counts when the member's newest checkpoint, its
    evaluation seed and guidance, its sample settings (spacing, clip_x0, ddim_eta), the classifier and
    the layout are those it was made with; a valid round lacking some of the words gets only those.
    A member whose checkpoints are gone (`recorded_only`) is read from its rounds, whatever checkpoint
    they name.
    """
    member_config = configuration.load(workdir)
    # The newest checkpoint on disk, not the step restored: a damaged newest one (restore falls back to an
    # older step) then keeps its rounds valid instead of making every run sample them again.
    steps = checkpoints.checkpoint_steps(workdir)
    # A recorded-only member has no newest checkpoint to compare: its rounds count whatever checkpoint they name.
    made_with = records.round_settings(member_config, steps[-1] if steps else None, study_sweep.classifier_id,
                                       round_images)
    by_instrument: dict[str, list[Setting]] = {}
    for setting in settings:
        by_instrument.setdefault(frontier_settings.instrument(setting), []).append(setting)
    runs: dict[str, tuple] = {}  # per parameter kind: the restored run, its sampler and device parameters
    for same in by_instrument.values():
        path = frontier_rounds.round_path(workdir, same[0], round_)
        size = max(frontier_rounds.round_size(config, x, round_, round_images) for x in same)
        kept: dict[str, Any] = {}  # a valid cached round's words, which a round sampled now adds to
        if os.path.exists(path):
            cached = records.load(records.FRONTIER_ROUND, path)
            if records.round_current(cached, made_with):
                kept = {w: e for w, e in cached["words"].items() if frontier_rounds.entry_serves(e, size)}
        missing = [w for w in words if w not in kept]
        if not missing:
            continue
        if not steps:
            raise UserError(f"{workdir} has no checkpoints left, and its recorded round {round_} of "
                            f"{frontier_settings.instrument(same[0])} lacks {', '.join(missing)} (or was drawn "
                            f"otherwise); study "
                            f"only what its records hold, or delete {os.path.join(workdir, FRONTIER_DIR)} (its "
                            f"rounds would not match a new training) and retrain it: python -m jaxdiff.sweep "
                            f"--config=... --workdir={os.path.dirname(workdir)} --train_only")
        kind = same[0].params
        if kind not in runs:
            run_ = workdirs.TrainedRun.load(workdir, kind)
            runs[kind] = (run_, run_.image_sampler(), run_.device_params())
        sampled = sample_counts(*runs[kind], same[0], round_, size, round_images, study_sweep.clf, log, missing)
        # Words in their fixed order; the seconds per image of every word's images, compiling included once.
        both = {**kept, **sampled}
        merged = {w: both[w] for w in SEED_EVAL_WORDS if w in both}
        per_image = [e["seconds"] / e["n"] for e in merged.values()]
        # The restored step is the one sampled (a damaged newest checkpoint falls back to an older one).
        records.write(records.FRONTIER_ROUND, path, {"setting": frontier_settings.instrument(same[0]), "round": round_,
                                                     **made_with, "step": runs[kind][0].step, "words": merged,
                                                     "seconds_per_image": float(np.median(per_image))})


def sample_counts(run_: workdirs.TrainedRun, image_sampler: sampling.ImageSampler, params: Any, setting: Setting,
                   round_: int, size: int, round_images: int, clf: tuple, log: Callable,
                   words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, dict[str, Any]]:
    """Per word: its women, images, each image's reading and the seconds its sampling took."""
    config = run_.config
    model, clf_params, _ = clf
    counts = {}
    log(f"  {os.path.basename(run_.workdir)} {frontier_settings.instrument(setting)} round {round_}: "
        f"{len(words)} word(s) x {size} images")
    for word in words:
        # A word's noise indices follow its place among all trained words, whichever are studied.
        index = SEED_EVAL_WORDS.index(word)
        cond_NK = np.repeat(run_.table.projected_vector(word)[None], size, axis=0)
        start = time.perf_counter()
        images = image_sampler.sample_as_configured(params, cond_NK, int(config.evaluate.seed), config.sample,
                                                    sampler=setting.sampler, steps=setting.steps,
                                                    guidance=float(config.evaluate.guidance),
                                                    first_index=first_index(index, round_, round_images))
        seconds = time.perf_counter() - start
        gender_probs, _ = classifier.predict(model, clf_params, images)
        is_woman = classifier.reads_woman(gender_probs)
        # The first word's time includes compiling (or loading) the sampler; a round's median over words is a
        # compiled one when it samples several.
        counts[word] = {"women": int(is_woman.sum()), "n": size, "is_woman": is_woman.tolist(),
                        "p_woman": classifier.p_woman_record(gender_probs), "seconds": seconds}
    return counts

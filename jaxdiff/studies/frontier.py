"""The fit frontier: a sweep's trained members re-read under other evaluation settings, pooled.

    python -m jaxdiff.frontier --config=configs/toy.py [--workdir=runs/toy-sweep ...] \
        [--settings=ema:ddpm:200,ema:dpmpp2m:50,raw:ddpm:200:400 ...] [--reference=ema:ddpm:1000] \
        [--words=person]

A setting is PARAMS:SAMPLER:STEPS[:IMAGES]: the EMA or raw parameters, a sampler (jaxdiff/core/sampling.py)
and its steps, and the images per trained word and member (default: sweep.member_samples, what each
member's report draws). For each
finished member of each sweep directory (one per training setting: length, width, schedule...)
and each setting, the trained words philosopher, person and nurse are sampled with the member's
own evaluation seed (so the ODE settings of one member start from the same noise) and read by the
sweep's classifier. Per sweep and setting: each word's pooled share, |share - 0.5| and tau
(random effects over members, jaxdiff.statistics.pooling), whether the fit is good enough to decide (tau and
|share - 0.5| at most 0.05 for every word), the pooled difference from the reference setting
(1000-step DDPM: the sampler the model's training objective describes) with an equivalence test
at +-2 points, and the minutes per member.

Images come in rounds of ROUND_IMAGES per word; the noise of image j of a word does not depend on
how many images were asked for (`first_index`), so asking for more extends a study. Rounds go over
every member before the next begins, and each member's counts of a round are kept in
MEMBER/frontier/PARAMS-SAMPLER-STEPS/round-RRR.json: an interrupted study resumes at the round it
was in, and the table so far, written after each round to the first sweep directory's
frontier.json and frontier.md, pools equal numbers of images from every member.

`--words` narrows a study to some of the trained words (a question about one word costs a third of
the sampling). A word's images are the same whichever words are studied with it, so a narrow study's
rounds serve a wider one, which samples only the words they lack; the leakage contrast and the fit
need all three words, and a narrow study's table is written to frontier-WORD[-WORD].json and .md.

The rounds are the study's data: a member whose checkpoints were deleted is still pooled from them
(`recorded_only`), so a study can be kept, moved or finished elsewhere as the member directories
without their checkpoints, beside the sweep's classifier (docs/sweep.md).
"""


import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.core import sampling
from jaxdiff.measurement import classifier, evaluate
from jaxdiff.statistics import pooling
from jaxdiff.studies import sweep, sweep_summary
from jaxdiff.training import checkpoints, workdirs
from jaxdiff.data.classes import CONTRAST_WORDS, SEED_EVAL_WORDS
from jaxdiff.common.errors import UserError

FRONTIER_DIR = "frontier"  # in each member: per setting, one JSON of counts per round of images
ROUND_IMAGES = 100  # images per word in a round: a study grows, and resumes, a round at a time
FRONTIER_JSON, FRONTIER_MD = "frontier.json", "frontier.md"
FIT_LIMIT = 0.05  # the fit needed for the +-5-point test to mean anything: tau and |share - 0.5| per word
AGREEMENT_LIMIT = 0.02  # a faster sampler agrees with the reference when its shares are shown within +-2 points
# pooling.equivalence's readings, said of a setting's difference from the reference rather than of leakage.
AGREEMENT_VERDICTS = {"leakage": "differs", "reverse gap": "differs", "no leakage": "agrees", "undecided": "undecided"}
# The default study: the default evaluation sampler (DDPM 200) beside fewer DDPM steps, DPM-Solver++ 50 and
# the raw parameters, each against 1000-step DDPM (listed too, for its own row). At the members' 300 images
# it shows the fit and large differences; agreement within +-2 points needs more images (docs/sweep.md).
DEFAULT_SETTINGS = ("ema:ddpm:200", "ema:ddpm:100", "ema:dpmpp2m:50", "raw:ddpm:200", "ema:ddpm:1000")
DEFAULT_REFERENCE = "ema:ddpm:1000"


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a member's images are drawn: parameters, sampler, steps, images per word (None: the config's)."""

    params: str
    sampler: str
    steps: int
    images: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Setting":
        """'ema:dpmpp2m:20' or 'raw:ddpm:1000:100' -> Setting; a malformed one is a UserError."""
        parts = text.split(":")
        usage = f"setting {text!r}: expected PARAMS:SAMPLER:STEPS[:IMAGES], e.g. ema:dpmpp2m:20 or raw:ddpm:1000:100"
        if len(parts) not in (3, 4) or parts[0] not in ("ema", "raw"):
            raise UserError(usage + " (PARAMS is ema or raw)")
        sampling.check_sampler(parts[1])
        try:
            numbers = [int(p) for p in parts[2:]]
        except ValueError:
            raise UserError(usage + " (STEPS and IMAGES are whole numbers)") from None
        if min(numbers) < 1:
            raise UserError(usage + " (STEPS and IMAGES are at least 1)")
        return cls(parts[0], parts[1], numbers[0], numbers[1] if len(numbers) == 2 else None)

    @property
    def name(self) -> str:
        return ":".join([self.params, self.sampler, str(self.steps)] + ([str(self.images)] if self.images else []))


def first_index(word_index: int, round_: int, round_images: int = ROUND_IMAGES) -> int:
    """The noise index of a word's first image in a round: blocks of round_images, a round's words side by side.

    Image j of word i is index (j // R * W + i) * R + j % R (R images per round, W words), whatever the
    number of images asked for: a larger study extends a smaller one with its images unchanged.
    """
    return (round_ * len(SEED_EVAL_WORDS) + word_index) * round_images


def num_rounds(config: ml_collections.ConfigDict, setting: Setting, round_images: int = ROUND_IMAGES) -> int:
    """How many rounds a setting's images per word take (the last may be partial)."""
    return -(-_images(config, setting) // round_images)


def _images(config: ml_collections.ConfigDict, setting: Setting) -> int:
    return setting.images or int(config.sweep.member_samples)


def check_words(words: Sequence[str]) -> list[str]:
    """The trained words a study samples, in their fixed order; an empty list or another word is a UserError."""
    unknown = [w for w in words if w not in SEED_EVAL_WORDS]
    if unknown or not words:
        raise UserError(f"--words={','.join(words)}: a study samples some of the trained words "
                        f"{', '.join(SEED_EVAL_WORDS)}; name one or more of them, e.g. --words=person")
    return [w for w in SEED_EVAL_WORDS if w in words]


def output_names(words: Sequence[str]) -> tuple[str, str]:
    """frontier.json and .md for a study of every trained word, frontier-WORD[-WORD].json and .md for a narrower one."""
    if list(words) == list(SEED_EVAL_WORDS):
        return FRONTIER_JSON, FRONTIER_MD
    stem = "frontier-" + "-".join(words)
    return f"{stem}.json", f"{stem}.md"


def _round_size(config: ml_collections.ConfigDict, setting: Setting, round_: int, round_images: int) -> int:
    return min(round_images, _images(config, setting) - round_ * round_images)


def _instrument(setting: Setting) -> str:
    return "-".join([setting.params, setting.sampler, str(setting.steps)])  # a setting less its number of images


def _round_path(workdir: str, setting: Setting, round_: int) -> str:
    return os.path.join(workdir, FRONTIER_DIR, _instrument(setting), f"round-{round_:03d}.json")


def _serves(cached: dict[str, Any], size: int, words: Sequence[str] = SEED_EVAL_WORDS) -> bool:
    """Whether a cached round holds the first `size` images of each of `words` (each image's reading is kept)."""
    return all(_entry_serves(cached["words"].get(w), size) for w in words)


def _entry_serves(entry: dict[str, Any] | None, size: int) -> bool:
    return entry is not None and (entry["n"] == size or (entry["n"] > size and "is_woman" in entry))


def _women(entry: dict[str, Any], size: int) -> int:
    return entry["women"] if entry["n"] == size else int(sum(entry["is_woman"][:size]))


@dataclasses.dataclass(frozen=True)
class _Sweep:
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


def recorded_only(workdir: str, num_steps: int) -> bool:
    """Whether a member's checkpoints are gone but its frontier rounds, drawn from its trained parameters, are kept.

    The rounds hold every image's reading, so a study's records outlive the checkpoints (deleted for disk,
    or kept alone as the study's data): such a member is pooled from them, and can grow no new round."""
    directory = os.path.join(workdir, FRONTIER_DIR)
    if checkpoints.checkpoint_steps(workdir) or not os.path.isdir(directory):
        return False
    rounds = [os.path.join(directory, d, f) for d in sorted(os.listdir(directory))
              for f in sorted(os.listdir(os.path.join(directory, d))) if f.startswith("round-")]
    return bool(rounds) and all(int(files.read_json(r)["step"]) >= num_steps for r in rounds)


def _open_sweep(config: ml_collections.ConfigDict, sweep_dir: str) -> _Sweep:
    # Trained is enough: the frontier samples from the checkpoints, whatever the members' reports were made with.
    num_steps = config.train.num_steps
    done = [m for m in sweep.members(config, sweep_dir)
            if checkpoints.trained_to(m.workdir, num_steps) or recorded_only(m.workdir, num_steps)]
    if not done:
        raise UserError(f"no member of {sweep_dir} is trained to {config.train.num_steps} steps yet; run: "
                        f"python -m jaxdiff.sweep --config=... --workdir={sweep_dir}")
    _check_trained_alike(sweep_dir, done)
    loaded = classifier.load(sweep_dir, config)
    if loaded is None:
        raise UserError(f"{sweep_dir} has no classifier; run the sweep there first: python -m jaxdiff.sweep "
                        f"--config=... --workdir={sweep_dir}")
    return _Sweep(sweep_dir, done, loaded, classifier.digest(sweep_dir))


def _sample_round(workdir: str, settings: Sequence[Setting], round_: int, config: ml_collections.ConfigDict,
                  study_sweep: _Sweep, round_images: int, log: Callable,
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
    made_with = {**({"newest": steps[-1]} if steps else {}), "seed": int(member_config.evaluate.seed),
                 "guidance": float(member_config.evaluate.guidance), "classifier": study_sweep.classifier_id,
                 "round_images": round_images, **evaluate.sampling_settings(member_config)}
    by_instrument: dict[str, list[Setting]] = {}
    for setting in settings:
        by_instrument.setdefault(_instrument(setting), []).append(setting)
    runs: dict[str, tuple] = {}  # per parameter kind: the restored run, its sampler and device parameters
    for same in by_instrument.values():
        path = _round_path(workdir, same[0], round_)
        size = max(_round_size(config, x, round_, round_images) for x in same)
        kept: dict[str, Any] = {}  # a valid cached round's words, which a round sampled now adds to
        if os.path.exists(path):
            cached = files.read_json(path)
            cached.setdefault("newest", cached.get("step"))  # rounds written before "newest" was recorded
            cached = {**sweep.SAMPLING_BEFORE_RECORDED, **cached}  # ... and before the sample settings were
            if all(cached.get(k) == v for k, v in made_with.items()):
                kept = {w: e for w, e in cached["words"].items() if _entry_serves(e, size)}
                if cached.get("seconds_per_image") is not None:
                    for entry in kept.values():  # rounds written before each word's time was recorded
                        entry.setdefault("seconds", cached["seconds_per_image"] * entry["n"])
        missing = [w for w in words if w not in kept]
        if not missing:
            continue
        if not steps:
            raise UserError(f"{workdir} has no checkpoints left, and its recorded round {round_} of "
                            f"{_instrument(same[0])} lacks {', '.join(missing)} (or was drawn otherwise); study "
                            f"only what its records hold, or delete {os.path.join(workdir, FRONTIER_DIR)} (its "
                            f"rounds would not match a new training) and retrain it: python -m jaxdiff.sweep "
                            f"--config=... --workdir={os.path.dirname(workdir)} --train_only")
        kind = same[0].params
        if kind not in runs:
            run_ = workdirs.TrainedRun.load(workdir, kind)
            runs[kind] = (run_, run_.image_sampler(), run_.device_params())
        sampled = _sample_counts(*runs[kind], same[0], round_, size, round_images, study_sweep.clf, log, missing)
        # Words in their fixed order; the seconds per image of every word's images, compiling included once.
        both = {**kept, **sampled}
        merged = {w: both[w] for w in SEED_EVAL_WORDS if w in both}
        per_image = [e["seconds"] / e["n"] for e in merged.values()]
        # The restored step is the one sampled (a damaged newest checkpoint falls back to an older one).
        files.write_json(path, {"setting": _instrument(same[0]), "round": round_,
                                **made_with, "step": runs[kind][0].step, "words": merged,
                                "seconds_per_image": float(np.median(per_image))})


def _sample_counts(run_: workdirs.TrainedRun, image_sampler: sampling.ImageSampler, params: Any, setting: Setting,
                   round_: int, size: int, round_images: int, clf: tuple, log: Callable,
                   words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, dict[str, Any]]:
    """Per word: its women, images, each image's reading and the seconds its sampling took."""
    config = run_.config
    model, clf_params, _ = clf
    counts = {}
    log(f"  {os.path.basename(run_.workdir)} {_instrument(setting)} round {round_}: "
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
        is_woman = (gender_probs.argmax(-1) == 1).astype(int)
        # The first word's time includes compiling (or loading) the sampler; a round's median over words is a
        # compiled one when it samples several. Rounds written before p(woman) was kept hold only is_woman.
        counts[word] = {"women": int(is_woman.sum()), "n": size, "is_woman": is_woman.tolist(),
                        "p_woman": classifier.p_woman_record(gender_probs), "seconds": seconds}
    return counts


def member_counts(workdir: str, config: ml_collections.ConfigDict, setting: Setting, rounds: int,
                  round_images: int = ROUND_IMAGES, words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """A member's women and images of each of `words` under a setting, summed over its first `rounds` cached rounds."""
    totals = {w: {"women": 0, "n": 0} for w in words}
    per_image, steps = [], set()  # the checkpoint steps its rounds were sampled from
    for round_ in range(min(rounds, num_rounds(config, setting, round_images))):
        path, size = _round_path(workdir, setting, round_), _round_size(config, setting, round_, round_images)
        cached = files.read_json(path) if os.path.exists(path) else None
        if cached is None or not _serves(cached, size, words):
            raise UserError(f"{path} is missing or holds fewer than {size} images of {', '.join(words)}; rerun "
                            f"python -m jaxdiff.frontier with the same settings and words to sample it")
        for word in words:
            totals[word]["women"] += _women(cached["words"][word], size)
            totals[word]["n"] += size
        per_image.append(cached["seconds_per_image"])
        steps.add(int(cached["step"]))
    return {"words": totals, "seconds_per_image": float(np.median(per_image)), "steps": sorted(steps)}


def _seconds_per_image(rows: list[dict[str, Any]]) -> float:
    """The median over members of a setting's compiled sampling time per image."""
    return float(np.median([r["seconds_per_image"] for r in rows]))


def _check_settings(settings: Sequence[Setting], reference: Setting | None) -> None:
    """A study needs a setting, and compares the reference only with other samplers (a setting of the same sampler
    shares its first images, so its difference from the reference would not be that of independent images)."""
    if not settings:
        raise UserError("--settings names no setting; give at least one, e.g. --settings=ema:ddpm:200")
    for setting in settings:
        if reference and setting != reference and _instrument(setting) == _instrument(reference):
            raise UserError(f"setting {setting.name} and the reference {reference.name} are one sampler with other "
                            f"numbers of images (they would share images); list the reference itself with the "
                            f"images wanted, e.g. --reference={setting.name}")


def _with_reference(settings: Sequence[Setting], reference: Setting | None) -> list[Setting]:
    """The settings a study samples: the table's rows and the reference, each once."""
    return list(dict.fromkeys([*settings, *([reference] if reference else [])]))


def _word_counts(rows: list[dict[str, Any]], word: str) -> tuple[list[int], list[int]]:
    """The members' women and images of one word."""
    return [r["words"][word]["women"] for r in rows], [r["words"][word]["n"] for r in rows]


def _seeds(rows: list[dict[str, Any]]) -> pooling.Seeds | None:
    """The members' (training, projection) seeds, so that a crossed grid is pooled as one (None: not known)."""
    if not all("train_seed" in r for r in rows):
        return None
    return [r["train_seed"] for r in rows], [r["embed_seed"] for r in rows]


def _images_drawn(rows: list[dict[str, Any]]) -> int:
    """Images per word and member in a setting's rows (equal in every member and word)."""
    return next(iter(rows[0]["words"].values()))["n"]


def _contrast_minus_reference(rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per member, (nurse - philosopher) here minus (nurse - philosopher) under the reference, random-effects
    pooled; the four shares' images are independent, so their binomial variances add."""
    words = CONTRAST_WORDS
    (nurse, v1), (philosopher, v2) = (pooling.share_and_variance(*_word_counts(rows, w)) for w in words)
    (nurse_ref, v3), (philosopher_ref, v4) = (pooling.share_and_variance(*_word_counts(reference_rows, w)) for w in words)
    return pooling.random_effects_over((nurse - philosopher) - (nurse_ref - philosopher_ref), v1 + v2 + v3 + v4,
                                       _seeds(rows))


def _agreement(difference: dict[str, Any]) -> dict[str, Any]:
    """A pooled difference from the reference with its equivalence test at +-AGREEMENT_LIMIT and verdict."""
    test = pooling.equivalence_of(difference, AGREEMENT_LIMIT)
    out = {"estimate": difference["estimate"], "ci95": difference["ci95"], "tau": difference["tau"],
           "heterogeneity_p_value": difference["heterogeneity_p_value"], "tost_p_value": test["tost_p_value"],
           "verdict": AGREEMENT_VERDICTS[test["verdict"]], "model": difference["model"]}
    if difference["model"] == "crossed":  # what the independent-members formula said, for the record
        old = difference["independent"]
        old_test = pooling.equivalence(old["estimate"], old["se"], AGREEMENT_LIMIT)
        out["independent"] = {"ci95": old["ci95"], "tost_p_value": old_test["tost_p_value"],
                              "verdict": AGREEMENT_VERDICTS[old_test["verdict"]]}
    # The same test with few members' small-sample interval (HKSJ, t on k - 1 df): reported beside
    # the verdict, which stays the z-based one the study was planned with.
    hksj = pooling.small_sample_equivalence(difference, AGREEMENT_LIMIT)
    if hksj is not None:
        out["hksj"] = {"ci95": hksj["ci95"], "tost_p_value": hksj["tost_p_value"],
                       "verdict": AGREEMENT_VERDICTS[hksj["verdict"]]}
    return out


def _overall_agreement(word_verdicts: Sequence[str]) -> str:
    """A setting agrees when every word does; differs when some word does; else undecided."""
    verdicts = set(word_verdicts)
    return "agrees" if verdicts == {"agrees"} else "differs" if "differs" in verdicts else "undecided"


def pool_setting(rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]] | None,
                 margin: float = 0.05) -> dict[str, Any]:
    """Per word of the rows: pooled share, |share - 0.5|, tau; the difference from the reference rows (same
    members); the leakage contrast nurse - philosopher with its equivalence test at +-margin, as the sweep's
    summary, and the fit, when the rows hold every trained word (else None)."""
    words = list(rows[0]["words"])
    complete = set(words) == set(SEED_EVAL_WORDS)
    out: dict[str, Any] = {"words": {}, "contrast": None}
    if complete:
        contrast = pooling.pooled_difference(*(c for w in CONTRAST_WORDS for c in _word_counts(rows, w)),
                                             _seeds(rows))
        test = pooling.equivalence_of(contrast, margin)
        out["contrast"] = {"estimate": contrast["estimate"], "ci95": contrast["ci95"], "tau": contrast["tau"],
                           "tost_p_value": test["tost_p_value"], "verdict": test["verdict"]}
        if reference_rows is not None:
            # The leakage test reads the contrast, so whether a setting keeps the reference's contrast is asked too.
            out["contrast"]["minus_reference"] = _agreement(_contrast_minus_reference(rows, reference_rows))
    for word in words:
        pooled = pooling.pooled_share(*_word_counts(rows, word), _seeds(rows))
        entry = {"share_woman": pooled["estimate"], "ci95": pooled["ci95"], "tau": pooled["tau"],  # None: one member
                 "abs_deviation": abs(pooled["estimate"] - 0.5), "members": pooled["members"]}
        if reference_rows is not None:
            entry["minus_reference"] = _agreement(
                pooling.pooled_difference(*_word_counts(rows, word), *_word_counts(reference_rows, word), _seeds(rows)))
        out["words"][word] = entry
    taus = [e["tau"] for e in out["words"].values()]
    # One member has no between-member spread to estimate: its fit is unknown, not good.
    out["max_tau"] = None if None in taus else max(taus)
    out["max_abs_deviation"] = max(e["abs_deviation"] for e in out["words"].values())
    if not complete:  # the fit is judged on every trained word: a narrower study cannot tell
        out["fits"] = None
    elif out["max_abs_deviation"] > FIT_LIMIT:
        out["fits"] = False
    else:
        out["fits"] = None if out["max_tau"] is None else out["max_tau"] <= FIT_LIMIT
    if reference_rows is not None:
        out["max_abs_minus_reference"] = max(abs(e["minus_reference"]["estimate"]) for e in out["words"].values())
        # Agrees: every word's equivalence test at +-2 points rejects both sides; differs: some word's
        # 95% interval lies beyond +-2 points; else undecided (too few images to tell).
        out["agreement"] = _overall_agreement([e["minus_reference"]["verdict"] for e in out["words"].values()])
    out["seconds_per_image"] = _seconds_per_image(rows)
    return out


def study(config: ml_collections.ConfigDict, sweep_dirs: Sequence[str], settings: Sequence[Setting],
          reference: Setting | None, log: Callable = print, round_images: int = ROUND_IMAGES,
          after_round: Callable[[dict[str, Any]], None] | None = None,
          words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """Samples every (round, sweep, member, setting) of `words` not yet cached, pools, and returns the frontier table.

    Rounds go outermost: after each, every member has the same number of images of every setting, so
    an interrupted study has a balanced table so far (`after_round` receives it) and resumes from it.
    """
    _check_settings(settings, reference)
    words = check_words(words)
    wanted = _with_reference(settings, reference)
    sweeps = [_open_sweep(config, d) for d in sweep_dirs]
    for s in sweeps:
        log(f"{s.workdir}: {len(s.members)} finished members, {len(wanted)} settings, words {', '.join(words)}")
    total = max(num_rounds(config, s, round_images) for s in wanted)
    for round_ in range(total):
        for s in sweeps:
            sweep.use_compilation_cache(s.workdir)
            due = [x for x in wanted if num_rounds(config, x, round_images) > round_]
            for member in s.members:
                _sample_round(member.workdir, due, round_, config, s, round_images, log, words)
        if after_round is not None and round_ < total - 1:
            after_round(_table(config, sweeps, settings, reference, round_ + 1, round_images, words))
    return _table(config, sweeps, settings, reference, total, round_images, words)


def _check_one_checkpoint(members: Sequence[sweep.Member], counts: dict[Setting, list[dict[str, Any]]]) -> None:
    """Every round of a member, in every setting, comes from one checkpoint: a setting compared with the
    reference on other parameters would confound the checkpoint with the sampler."""
    for i, member in enumerate(members):
        steps = sorted({step for rows in counts.values() for step in rows[i]["steps"]})
        if len(steps) > 1:
            raise UserError(f"{member.workdir}: its frontier rounds were sampled from checkpoints {steps} (a newest "
                            f"checkpoint was damaged or replaced during the study); delete "
                            f"{os.path.join(member.workdir, 'frontier')} and rerun python -m jaxdiff.frontier")


def _table(config: ml_collections.ConfigDict, sweeps: Sequence[_Sweep], settings: Sequence[Setting],
           reference: Setting | None, rounds: int, round_images: int,
           words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """The frontier of `words` pooled over each member's first `rounds` rounds of every setting."""
    table = []
    for s in sweeps:
        # Each setting's rounds are read once, for its row, the reference column and the speed scale.
        counts = {x: [{**member_counts(m.workdir, config, x, rounds, round_images, words),
                       "train_seed": m.train_seed, "embed_seed": m.embed_seed} for m in s.members]
                  for x in _with_reference(settings, reference)}
        _check_one_checkpoint(s.members, counts)
        member_config = configuration.load(s.members[0].workdir)
        minutes = [sweep_summary.member_minutes(m.workdir) for m in s.members]
        training_minutes = float(np.median([m["training"] for m in minutes]))
        evaluation_minutes = float(np.median([m["evaluation"] + m["probes"] for m in minutes]))
        # The members' own evaluation setting, at whatever number of images it was studied with here.
        default = Setting("ema", member_config.evaluate.sampler, int(member_config.evaluate.steps))
        studied = [x for x in counts if dataclasses.replace(x, images=None) == default]
        default_spi = _seconds_per_image(counts[studied[0]]) if studied else None
        for setting in settings:
            rows = counts[setting]
            row = pool_setting(rows, counts[reference] if reference and setting != reference else None,
                               float(config.sweep.equivalence_margin))
            # Evaluation time is almost all sampling: scale the recorded minutes by this setting's speed.
            scale = row["seconds_per_image"] / default_spi if default_spi else None
            images = _images_drawn(rows)
            # Verdicts count at the number of images planned in advance: an equivalence test looked at after
            # every round, the study stopped at the first pass, would pass by chance more often than 5%.
            # A comparison is interim while either side is.
            interim = images < _images(config, setting) or (
                reference is not None and _images_drawn(counts[reference]) < _images(config, reference))
            row.update({"sweep": s.workdir, "setting": setting.name, "members": len(s.members),
                        "images": images, "planned_images": _images(config, setting), "interim": interim,
                        "num_steps": int(member_config.train.num_steps), "training_minutes": training_minutes,
                        "member_minutes": training_minutes + evaluation_minutes * scale if scale else None})
            table.append(row)
    return {"reference": reference.name if reference else None, "words": list(words), "fit_limit": FIT_LIMIT,
            "agreement_limit": AGREEMENT_LIMIT, "round_images": round_images, "rounds": rounds, "rows": table}


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
        cells = [f"{100 * r['words'][w]['share_woman']:.1f}% ({sweep_summary.format_tau(r['words'][w]['tau'])})" for w in words]
        is_reference = r["setting"] == result["reference"]
        minus = (f"{100 * r['max_abs_minus_reference']:.1f} pts" if "max_abs_minus_reference" in r
                 else "reference" if is_reference else "-")
        minutes = f"{r['member_minutes']:.1f}" if r["member_minutes"] else "-"
        interim = " (interim)" if r.get("interim") else ""
        contrast = r["contrast"]
        contrast_cells = (f"{100 * contrast['estimate']:+.1f} [{100 * contrast['ci95'][0]:+.1f}, "
                          f"{100 * contrast['ci95'][1]:+.1f}] | {contrast['verdict']}{interim}" if contrast else "- | -")
        fits = "-" if contrast is None else {True: "yes", False: "no", None: "one member: unknown"}[r["fits"]]
        lines.append(f"| {os.path.basename(r['sweep'].rstrip('/'))} | {r['num_steps']} | {r['setting']} | "
                     f"{r['members']} | {r['images']} | " + " | ".join(cells)
                     + f" | {100 * r['max_abs_deviation']:.1f}% | {sweep_summary.format_tau(r['max_tau'])} | "
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
                as_independent = (f"; as if independent [{100 * old['ci95'][0]:+.1f}, {100 * old['ci95'][1]:+.1f}] "
                                  f"p {old['tost_p_value']:.2g}" if old else "")
                parts.append(f"{name} {100 * d['estimate']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] "
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
        cells = [f"{100 * d['estimate']:+.1f} [{100 * d['hksj']['ci95'][0]:+.1f}, {100 * d['hksj']['ci95'][1]:+.1f}] "
                 f"p {d['hksj']['tost_p_value']:.2g}" for d in shown]
        agreement = _overall_agreement([d["hksj"]["verdict"] for d in tests])
        lines.append(f"| {os.path.basename(r['sweep'].rstrip('/'))} | {r['setting']} | " + " | ".join(cells)
                     + f" | {agreement}{' (interim)' if r.get('interim') else ''} |")
    return lines


def define_flags(values: absl_flags.FlagValues) -> None:
    absl_flags.DEFINE_multi_string("workdir", None, "sweep directories, one per training setting (default: the "
                                   "config's sweep.workdir)", flag_values=values)
    absl_flags.DEFINE_list("settings", list(DEFAULT_SETTINGS), "PARAMS:SAMPLER:STEPS[:IMAGES], comma-separated",
                           flag_values=values)
    absl_flags.DEFINE_string("reference", DEFAULT_REFERENCE, "the setting the others are compared with ('' = none)",
                             flag_values=values)
    absl_flags.DEFINE_list("words", list(SEED_EVAL_WORDS), "the trained words to sample, comma-separated (a narrower "
                           "study reads no fit or leakage contrast)", flag_values=values)


def write_outputs(sweep_dir: str, result: dict[str, Any]) -> str:
    """Writes SWEEP/frontier.json and frontier.md (a narrower study: frontier-WORD...); returns the Markdown path."""
    json_name, md_name = output_names(result["words"])
    files.write_json(os.path.join(sweep_dir, json_name), result)
    files.write_text(os.path.join(sweep_dir, md_name), render_markdown(result))
    return os.path.join(sweep_dir, md_name)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    sweep_dirs = flags.workdir or [flags.config.sweep.workdir]
    settings = [Setting.parse(s) for s in flags.settings]
    reference = Setting.parse(flags.reference) if flags.reference else None
    start = time.perf_counter()

    def after_round(result: dict[str, Any]) -> None:  # the table so far, after each round
        print(f"{result['rounds']} round(s) done ({(time.perf_counter() - start) / 60:.1f} min); table so far in "
              f"{write_outputs(sweep_dirs[0], result)}", flush=True)

    path = write_outputs(sweep_dirs[0], study(flags.config, sweep_dirs, settings, reference, after_round=after_round,
                                              words=flags.words))
    print(open(path).read() + f"({(time.perf_counter() - start) / 60:.1f} min; {path})")


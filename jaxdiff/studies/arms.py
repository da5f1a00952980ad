"""The arms study: runs that differ only in the embedding's gender lean, a positive control, one calibrated instrument.

    python -m jaxdiff.arms --config=configs/toy.py [--workdir=runs/toy-arms] [--member=I --of=N]
    python -m jaxdiff.arms --config=configs/toy.py --aggregate [--workdir=docs/measurements/toy_arms_records]
    python -m jaxdiff.arms --config=configs/toy.py --simulate=2000     # the analysis's coverage at the plan's size

The plan (docs/preregistration.md) and the design (docs/arms.md): pair i trains one member per arm with
training seed = projection seed = study.first_seed + i, so members of a pair differ only in how the
profession words' raw vectors lean along the gender direction (`embed.arm`: real, flipped...), and
pairs are independent. The first `study.control_pairs` pairs also train a positive control: the real
embedding on portraits drawn with nurse 60% and philosopher 40% women. Each member's images of the
trained words are read by two classifiers, trained once before any member is drawn, and every image's
p(woman) is kept (STUDY/MEMBER/images-WORD.csv), so the analysis (jaxdiff.studies.arms_analysis) runs from the
records alone: `--aggregate` recomputes every figure without sampling. A member's stages (training,
then one word's images at a time) are skipped once done, so an interrupted study resumes.

A single-arm study (`--config.study.arms="('real',)" --config.study.control_pairs=0`, another setting changed,
such as `train.num_steps`) draws its members as the study does, and `--compare_to=DIR` reads them pair by pair
against the real members of the study (or its records) in DIR, the same seeds and noise: each trained word's shift
tested at +-5 points (docs/preregistration_main_job_length.md); copy DIR's classifier files into the new study's
directory before its first member is drawn, so that one instrument reads both.
"""


import dataclasses
import json
import os
import platform
import shutil
import time
import zlib
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.core import parallel
from jaxdiff.data import embed, portraits
from jaxdiff.measurement import calibration, classifier, evaluation_words, records
from jaxdiff.studies import arms_analysis, arms_report, sweep
from jaxdiff.training import checkpoints, train, workdirs
from jaxdiff.data.classes import TRAIN_WORDS
from jaxdiff.common.errors import UserError

CONTROL = "control"  # the positive control's arm name: the real embedding on imbalanced images
PLAN_JSON, MEMBER_JSON = arms_analysis.PLAN_JSON, arms_analysis.MEMBER_JSON
SECOND_CLASSIFIER_DIR = "second_classifier"  # STUDY/: the cross-check's parameters
READERS = ("primary", "second")  # the two classifiers, in the records' column order
# Words in the order their noise indices are laid out: image j of word w starts from noise index
# NOISE_STRIDE * DRAW_ORDER.index(w) + j, whatever the number of images asked for.
DRAW_ORDER = ("philosopher", "person", "nurse", "man", "woman")
NOISE_STRIDE = 1_000_000
# The study's fields with a least value (0 images of person, or of man and woman, draws none of them), and
# those that must be positive.
STUDY_AT_LEAST = {"study.pairs": 1, "study.images": 1, "study.images_person": 0, "study.images_man_woman": 0,
                  "study.images_over_training": 1, "study.calibration_per_class": 1}
STUDY_ABOVE = {"study.margin": 0, "study.stretch_margin": 0}


@dataclasses.dataclass(frozen=True)
class ArmMember:
    """One run of the study: a pair's member of one arm."""

    pair: int
    arm: str  # an embed.arm ("real", "flipped", "neutral", "scaled:L") or CONTROL
    seed: int  # its training seed and its projection seed
    primary: bool  # in the pre-registered primary analysis
    workdir: str

    @property
    def name(self) -> str:
        return os.path.basename(self.workdir)


def member_name(pair: int, arm: str) -> str:
    return f"pair{pair}-{arm.replace(':', '')}"


def members(config: ml_collections.ConfigDict, study_dir: str) -> list[ArmMember]:
    """The study in the order it runs: per pair its primary arms, then its control; the secondary arms last."""
    s = config.study
    if config.embed.get("arm", "real") != "real":  # the study sets each member's arm; an override would be lost
        raise UserError(f"embed.arm={config.embed.arm!r}: the arms study sets each member's arm from study.arms and "
                        f"study.secondary_arms; leave embed.arm at 'real' and name arms there")
    for arm in (*s.arms, *s.secondary_arms):
        embed.arm_factor(arm)  # an unknown arm is said before anything runs
    # ('real',) alone is a single-arm study: its members are compared with another study's of the same seeds that
    # differ in one setting, such as the training length (`--compare_to`; docs/preregistration_main_job_length.md).
    if list(s.arms) not in (["real", "flipped"], ["real"]):
        raise UserError(f"study.arms={tuple(s.arms)}: the primary analysis compares ('real', 'flipped') (or a "
                        f"single-arm study, ('real',), another study's members); put other arms in "
                        f"study.secondary_arms")
    if not 0 <= s.control_pairs <= s.pairs:
        raise UserError(f"study.control_pairs={s.control_pairs} must lie between 0 and study.pairs={s.pairs}")
    # The study's counts and margins, and how its images are drawn, before a classifier or a member is trained.
    evaluation_words.check_drawing(config, configuration.out_of_range(config, STUDY_AT_LEAST, STUDY_ABOVE))

    def member(pair: int, arm: str, primary: bool) -> ArmMember:
        return ArmMember(pair, arm, int(s.first_seed) + pair, primary,
                         os.path.join(study_dir, member_name(pair, arm)))

    out = []
    for pair in range(s.pairs):
        out += [member(pair, arm, True) for arm in s.arms]
        out += [member(pair, CONTROL, False)] if pair < s.control_pairs else []
    return out + [member(pair, arm, False) for arm in s.secondary_arms for pair in range(s.pairs)]


def evaluation_seed(base_seed: int, member: ArmMember) -> int:
    """The member's own sampling seed: no two members, not even a pair's, share their images' noise."""
    words = [base_seed, member.seed, zlib.crc32(member.arm.encode())]
    return int(np.random.SeedSequence(words).generate_state(1)[0] % 2**31)


def member_config(config: ml_collections.ConfigDict, member: ArmMember) -> ml_collections.ConfigDict:
    """The study's config with the member's seeds, arm (or control images), evaluation seed and workdir."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = c.embed.seed = member.seed
    c.embed.arm = "real" if member.arm == CONTROL else member.arm
    c.embed.arm_direction = config.study.arm_direction
    if member.arm == CONTROL:
        shares = config.study.control_woman_share.to_dict()
        c.portraits.woman_share.update(shares)
        c.data.dir = config.data.dir + portraits.dataset_suffix(c.portraits.woman_share.to_dict())
    c.evaluate.seed = evaluation_seed(config.evaluate.seed, member)
    c.workdir = member.workdir
    c.train.keep_period = sweep.keep_period(c.train, c.sweep.checkpoints_over_training)  # the curve over training
    return c


def images_per_word(config: ml_collections.ConfigDict) -> dict[str, int]:
    """How many images of each trained word every member draws."""
    s = config.study
    return {"philosopher": s.images, "person": s.images_person, "nurse": s.images,
            "man": s.images_man_woman, "woman": s.images_man_woman}


def second_classifier_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config the second classifier is trained with: its own architecture, widths and seed."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.classifier.update(config.study.second_classifier.to_dict())
    c.seed = int(config.study.second_classifier_seed)
    return c


def plan(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What the study is: the study section and the settings every member's images depend on."""
    return {"study": config.study.to_dict(), "train_steps": int(config.train.num_steps),
            "evaluate": {k: config.evaluate[k] for k in ("sampler", "steps", "guidance", "seed")},
            "sample": {k: config.sample[k] for k in ("spacing", "clip_x0", "ddim_eta")},
            "data_dir": config.data.dir, "embed_source": config.embed.source,
            "images_per_word": images_per_word(config)}


def check_plan(config: ml_collections.ConfigDict, study_dir: str) -> None:
    """Writes STUDY/plan.json when the study starts; afterwards a config that would change it is refused."""
    path, wanted = os.path.join(study_dir, PLAN_JSON), json.loads(json.dumps(plan(config)))
    if not os.path.exists(path):
        os.makedirs(study_dir, exist_ok=True)
        files.write_json(path, wanted)
        return
    found, wanted = arms_analysis.flat_plan(files.read_json(path)), arms_analysis.flat_plan(wanted)
    # Secondary arms and the curve over training may be added once the primary members are drawn (the plan says
    # so); where the study lives is not part of it.
    for key in ("study.secondary_arms", "study.images_over_training", "study.workdir"):
        found.pop(key, None), wanted.pop(key, None)
    if found != wanted:
        key = next(k for k in sorted(set(found) | set(wanted)) if found.get(k) != wanted.get(k))
        raise UserError(f"{study_dir} was started with {key}={found.get(key)!r}, not {wanted.get(key)!r}; a study "
                        f"keeps its plan: rerun with the same config, or pick another --workdir")


def ensure_instruments(config: ml_collections.ConfigDict, study_dir: str, log: Callable = print) -> dict[str, tuple]:
    """Both classifiers (trained once, before any member is drawn) and the calibration split's readings."""
    from jaxdiff.data import input_pipeline

    log(f"dataset: {input_pipeline.ensure_dataset(config, log)}")
    sweep.ensure_classifier(config, study_dir, log)
    second_dir = os.path.join(study_dir, SECOND_CLASSIFIER_DIR)
    second_config = second_classifier_config(config)
    os.makedirs(second_dir, exist_ok=True)
    sweep.ensure_classifier(second_config, second_dir, log)
    readers = {"primary": classifier.load(study_dir, config), "second": classifier.load(second_dir, second_config)}
    for name, (_, _, accuracy) in readers.items():
        weak = {k: v for k, v in accuracy.items() if k.endswith("_accuracy") and v < config.classifier.min_accuracy}
        if weak:
            raise UserError(f"the {name} classifier's validation accuracy {weak} is below classifier.min_accuracy "
                            f"{config.classifier.min_accuracy}; train it longer (classifier.num_steps) and delete it "
                            f"from {study_dir}")
    path = os.path.join(study_dir, calibration.CALIBRATION_CSV)
    if not os.path.exists(path):
        s = config.study
        log(f"reading {s.calibration_per_class} held-out portraits per class (seed {s.calibration_seed}) with both "
            f"classifiers")
        frame = calibration.read_split({k: v[:2] for k, v in readers.items()}, s.calibration_per_class,
                                       config.data.image_size, s.calibration_seed)
        write_csv(frame, path)
    return {k: v[:2] for k, v in readers.items()}


def write_csv(frame: Any, path: str) -> None:
    """A records table, atomically (p(woman) to 6 decimals: far below any threshold's sensitivity)."""
    with files.atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")


def images_csv(workdir: str, word: str) -> str:
    return os.path.join(workdir, f"images-{word}.csv")


def _word_done(workdir: str, word: str, count: int, step: int, seed: int) -> bool:
    """Whether the member's records of `word` hold `count` images from checkpoint `step` at its evaluation seed."""
    import pandas as pd

    path = images_csv(workdir, word)
    if not os.path.exists(path):
        return False
    frame = pd.read_csv(path)
    return len(frame) == count and set(frame["step"]) == {step} and set(frame["evaluation_seed"]) == {seed}


def _draw_word(run_: workdirs.TrainedRun, image_sampler: Any, params: Any, member: ArmMember, word: str, n: int,
               readers: dict[str, tuple]) -> Any:
    """n images of `word` from a restored run, read by both classifiers: one records row per image."""
    import pandas as pd

    e = run_.config.evaluate
    cond_NK = np.repeat(run_.table.projected_vector(word)[None], n, axis=0)
    first = NOISE_STRIDE * DRAW_ORDER.index(word)
    images = image_sampler.sample_as_configured(params, cond_NK, int(e.seed), run_.config.sample, sampler=e.sampler,
                                                steps=int(e.steps), guidance=float(e.guidance), first_index=first)
    readings = {name: classifier.predict(model, clf_params, images) for name, (model, clf_params) in readers.items()}
    return pd.DataFrame({
        "member": member.name, "pair": member.pair, "arm": member.arm, "seed": member.seed, "word": word,
        "noise_index": first + np.arange(n), "step": run_.step, "evaluation_seed": int(e.seed),
        **{f"p_woman_{name}": readings[name][0][:, 1].astype(np.float64) for name in READERS},
        "profession_primary": np.asarray(readings["primary"][1].argmax(-1)),
    })


def draw_member(config: ml_collections.ConfigDict, member: ArmMember, readers: dict[str, tuple],
                log: Callable = print) -> dict[str, float]:
    """Samples the member's trained words and records each image's p(woman) under both classifiers; returns
    the seconds each word took (words already recorded are skipped)."""
    run_ = workdirs.TrainedRun.load(member.workdir, "ema")
    e = run_.config.evaluate
    counts, seconds = images_per_word(config), {}
    todo = [w for w in DRAW_ORDER if counts[w] and not _word_done(member.workdir, w, counts[w], run_.step, e.seed)]
    if not todo:
        return seconds
    image_sampler, params = run_.image_sampler(), run_.device_params()
    for word in todo:
        log(f"  {member.name}: {counts[word]} images of {word} ({e.sampler}, {e.steps} steps)")
        start = time.perf_counter()
        frame = _draw_word(run_, image_sampler, params, member, word, counts[word], readers)
        if parallel.is_main_process():
            write_csv(frame, images_csv(member.workdir, word))
        seconds[word] = time.perf_counter() - start
    return seconds


def over_training_csv(workdir: str, word: str) -> str:
    return os.path.join(workdir, f"over_training-{word}.csv")


RETRAINED_DIR = "retrained"  # MEMBER/: the member trained again from scratch, when only its records were kept


def curve_steps(config: ml_collections.ConfigDict, member: ArmMember) -> list[int]:
    """The checkpoints the curve reads: every multiple of the member's keep period and the last step (a stopped
    training also saves where it stopped; that checkpoint is not one of the curve's)."""
    t = member_config(config, member).train
    return sorted({*range(int(t.keep_period), int(t.num_steps) + 1, int(t.keep_period)), int(t.num_steps)})


def _curve_recorded(workdir: str) -> bool:
    """Whether a member's directory holds its whole curve (both words, n images at every point it was drawn at)."""
    import pandas as pd

    paths = [over_training_csv(workdir, w) for w in arms_analysis.CONTRAST]
    if not all(os.path.exists(p) for p in paths):
        return False
    over = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    # Checked against its own points, the newest taken as the last: a member drawn in place writes nurse at every
    # checkpoint before philosopher's first, so a half-drawn curve never has both words at the same points.
    n, newest = int(over.groupby(["word", "step"]).size().max()), int(over["step"].max())
    return arms_analysis.curve_whole(over, n, set(over["step"]) - {newest}, newest)


def _curve_source(config: ml_collections.ConfigDict, member: ArmMember,
                  log: Callable) -> tuple[str, list[int]] | None:
    """Where the curve's checkpoints come from, and which to draw; None when the curve is already recorded.

    The member's own kept checkpoints give every point before the last (the last is its primary draw's). Where only
    its records were kept (a machine lost with the checkpoints), the member is trained again from scratch with the
    same seeds in MEMBER/retrained, as the plan prescribes for a lost checkpoint, and every point is drawn from that,
    the last too: another CPU may round differently, so the retraining need not be the lost member bit for bit."""
    planned, final = curve_steps(config, member), int(config.train.num_steps)
    kept = checkpoints.checkpoint_steps(member.workdir)
    if kept:
        return member.workdir, [s for s in kept if s in planned and s < final]
    if _curve_recorded(member.workdir):
        return None
    source = os.path.join(member.workdir, RETRAINED_DIR)
    if not checkpoints.trained_to(source, final):
        c = member_config(config, member)
        c.workdir = source
        # The config the member was trained with (its records keep it) must be the one it is trained again with.
        workdirs.check_same_architecture(
            configuration.load(member.workdir), c, member.workdir,
            sections=("model", "train", "data", "embed", "cond", "diffusion", "portraits", "seed"),
            remedy="train it again with the config it was trained with")
        resumed = checkpoints.checkpoint_steps(source)
        log(f"  {member.name}: its checkpoints are gone; " + (
            f"resuming its retraining from step {resumed[-1]}" if resumed else
            f"training it again from scratch ({final} steps, seed {member.seed})") + " for the curve over training")
        start = time.perf_counter()
        train.train_and_evaluate(c, source)
        if parallel.is_main_process():
            _add_to_record(member, retraining_s=round(time.perf_counter() - start, 1))
    return source, [s for s in checkpoints.checkpoint_steps(source) if s in planned]


def draw_over_training(config: ml_collections.ConfigDict, member: ArmMember, readers: dict[str, tuple],
                       log: Callable = print) -> float:
    """The secondary curve: `study.images_over_training` images of nurse and philosopher at each of the curve's
    checkpoints (`_curve_source`), with the primary's noise, so that the curve's points differ by the parameters
    alone. Each word's file is rewritten whole after each checkpoint. A retrained member draws in MEMBER/retrained
    and its files join the member's records only once every point is drawn, so the records never hold half the curve
    of a retraining that a lost machine could not finish. Returns the seconds spent drawing (0 when nothing was)."""
    import pandas as pd

    where = _curve_source(config, member, log)
    if where is None:
        return 0.0
    source, steps = where
    n = int(config.study.images_over_training)
    start, drew = time.perf_counter(), False
    for word in arms_analysis.CONTRAST:
        path = over_training_csv(source, word)
        done = pd.read_csv(path) if os.path.exists(path) else None
        for step in steps:
            if done is not None and (done["step"] == step).sum() == n:
                continue
            log(f"  {member.name}: {n} images of {word} at step {step} (over training)")
            run_ = workdirs.TrainedRun.load(source, "ema", at_step=step)
            frame = _draw_word(run_, run_.image_sampler(), run_.device_params(), member, word, n, readers)
            done = frame if done is None else pd.concat([done[done["step"] != step], frame], ignore_index=True)
            drew = True
            if parallel.is_main_process():
                write_csv(done, path)
    if source != member.workdir and parallel.is_main_process():
        for word in arms_analysis.CONTRAST:
            with files.atomic_path(over_training_csv(member.workdir, word)) as tmp:
                shutil.copyfile(over_training_csv(source, word), tmp)
    return time.perf_counter() - start if drew else 0.0


def _device() -> str:
    """The machine a member ran on, for its record."""
    import jax

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    devices = jax.devices()
    return f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform}); host {cpu}, {os.cpu_count()} cores"


def run_member(config: ml_collections.ConfigDict, member: ArmMember, readers: dict[str, tuple],
               log: Callable = print) -> None:
    """Trains the member if needed and draws its words; member.json gets each stage's time as soon as it ends
    (and the member's leans), so a study stopped while drawing keeps its training time."""
    c = member_config(config, member)
    record_path = os.path.join(member.workdir, MEMBER_JSON)
    invocation: dict[str, Any] = {"device": _device()}

    def record(**stage: Any) -> None:
        if not parallel.is_main_process():
            return
        made = records.load(records.ARMS_MEMBER, record_path) if os.path.exists(record_path) else {
            "pair": member.pair, "arm": member.arm, "seed": member.seed, "primary": member.primary, "invocations": []}
        if "leans" not in made:
            table = embed.EmbeddingTable.load(os.path.join(member.workdir, workdirs.TABLE_IN_WORKDIR))
            directions = embed.GenderDirections.of(table)
            made["leans"] = {w: embed.gender_scores(table.raw_vector(w), table.projected_vector(w), directions)
                             for w in TRAIN_WORDS}
            made["woman_share"] = c.portraits.woman_share.to_dict()
        if stage.pop("new", False) or not made["invocations"]:
            made["invocations"].append(invocation)
        made["invocations"][-1].update(stage, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        records.write(records.ARMS_MEMBER, record_path, made)

    new_invocation = True
    if not checkpoints.trained_to(member.workdir, c.train.num_steps):
        log(f"  {member.name}: training {c.train.num_steps} steps (seed {member.seed}, arm {c.embed.arm}, "
            f"data {c.data.dir})")
        start = time.perf_counter()
        train.train_and_evaluate(c, member.workdir)
        record(new=True, training_s=round(time.perf_counter() - start, 1))
        new_invocation = False
    seconds = draw_member(config, member, readers, log)
    if seconds:
        record(new=new_invocation, drawing_s={w: round(v, 1) for w, v in seconds.items()})


def member_done(config: ml_collections.ConfigDict, member: ArmMember) -> bool:
    """Every word's records are there, from the member's trained checkpoint."""
    c = member_config(config, member)
    steps = checkpoints.checkpoint_steps(member.workdir)
    step = steps[-1] if steps and steps[-1] >= c.train.num_steps else None
    if step is None:  # checkpoints gone (records kept alone): the records must name the full training
        step = c.train.num_steps
    return all(_word_done(member.workdir, w, n, step, c.evaluate.seed)
               for w, n in images_per_word(config).items() if n)


def run_study(config: ml_collections.ConfigDict, study_dir: str, member_index: int = 0, of: int = 1,
              log: Callable = print, over_training: bool = False) -> dict[str, Any]:
    """Runs this invocation's members (I, I+N, ...), then writes the analysis of every finished member.

    With `over_training`, then draws the secondary curve along training for this invocation's finished primary
    members (the plan draws it only once every primary and control member is recorded)."""
    if not 0 <= member_index < of:
        raise UserError(f"--member {member_index} --of {of}: need 0 <= member < of")
    grid = members(config, study_dir)
    check_plan(config, study_dir)
    mine = grid[member_index::of]
    log(f"arms study {study_dir}: {len(grid)} members ({config.study.pairs} pairs x {', '.join(config.study.arms)}, "
        f"{config.study.control_pairs} controls, secondary {tuple(config.study.secondary_arms) or 'none'}); "
        f"this invocation runs {len(mine)}")
    log(f"XLA compilation cache: {sweep.use_compilation_cache(study_dir)}")
    readers = ensure_instruments(config, study_dir, log)
    for i, member in enumerate(mine, start=1):
        position = f"member {grid.index(member) + 1}/{len(grid)} ({member.name}; {i}/{len(mine)} here)"
        if member_done(config, member):
            log(f"{position}: done")
            continue
        log(position)
        start = time.perf_counter()
        run_member(config, member, readers, log)
        log(f"{position}: done in {(time.perf_counter() - start) / 60:.1f} min")
    if over_training:
        for member in mine:
            if member.primary and member_done(config, member):
                seconds = draw_over_training(config, member, readers, log)
                if seconds and parallel.is_main_process():
                    _add_to_record(member, over_training_s=round(seconds, 1))
    return aggregate(study_dir, log)


def _add_to_record(member: ArmMember, **stage: Any) -> None:
    """A secondary stage's time, as a new invocation of the member's member.json."""
    path = os.path.join(member.workdir, MEMBER_JSON)
    record = records.load(records.ARMS_MEMBER, path)
    record["invocations"].append({"device": _device(), **stage, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    records.write(records.ARMS_MEMBER, path, record)


def aggregate(study_dir: str, log: Callable = print) -> dict[str, Any]:
    """The analysis of the study's recorded members (no sampling): STUDY/arms.json and arms.md."""
    result = arms_analysis.analyse(study_dir)
    _publish(study_dir, result, arms_analysis.RESULT_JSON, arms_analysis.RESULT_MD, arms_report.render_markdown)
    log(arms_report.headline(result))
    return result


def compare(study_dir: str, reference_dir: str, log: Callable = print) -> dict[str, Any]:
    """A single-arm study read against another study's members (no sampling): STUDY/comparison.json and .md."""
    result = arms_analysis.compare(study_dir, reference_dir)
    _publish(study_dir, result, arms_analysis.COMPARISON_JSON, arms_analysis.COMPARISON_MD,
             arms_report.comparison_markdown)
    log(arms_report.comparison_headline(result))
    return result


def _publish(study_dir: str, result: dict[str, Any], json_name: str, md_name: str,
             render: Callable[[dict[str, Any]], str]) -> None:
    """An analysis beside its records, as json (for tests and tools) and markdown (for readers); main process only."""
    if parallel.is_main_process():
        files.write_json(os.path.join(study_dir, json_name), result)
        files.write_text(os.path.join(study_dir, md_name), render(result))


RECORD_FILES = (PLAN_JSON, calibration.CALIBRATION_CSV, classifier.PARAMS_FILE, classifier.METRICS_FILE)


def export_records(study_dir: str, destination: str, log: Callable = print) -> list[str]:
    """Copies the study's records (plan, classifiers, calibration, and each member's config, member.json and
    images) into `destination`, a directory `--aggregate` reads as it reads the study: what is committed."""
    planned = [w for w, n in files.read_json(os.path.join(study_dir, PLAN_JSON))["images_per_word"].items() if n]
    copied = []
    for name in RECORD_FILES + tuple(os.path.join(SECOND_CLASSIFIER_DIR, f) for f in
                                     (classifier.PARAMS_FILE, classifier.METRICS_FILE)):
        if os.path.exists(os.path.join(study_dir, name)):
            copied.append(name)
    for entry in sorted(os.listdir(study_dir)):
        workdir = os.path.join(study_dir, entry)
        # A member is copied once every word is drawn: what is committed is never half a member.
        if os.path.exists(os.path.join(workdir, MEMBER_JSON)) and all(
                os.path.exists(images_csv(workdir, w)) for w in planned):
            curve = _curve_recorded(workdir)  # nor half a curve
            copied += [os.path.join(entry, f) for f in sorted(os.listdir(workdir))
                       if f in (MEMBER_JSON, configuration.CONFIG_IN_WORKDIR) or f.startswith("images-")
                       or (curve and f.startswith("over_training-"))]
    for name in copied:
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with files.atomic_path(target) as tmp:
            shutil.copyfile(os.path.join(study_dir, name), tmp)
    log(f"copied {len(copied)} record files of {study_dir} to {destination}")
    return copied


def define_flags(values: absl_flags.FlagValues) -> None:
    sweep.define_split_flags(values, "study")
    absl_flags.DEFINE_bool("aggregate", False, "only analyse the recorded members (no training, no sampling)",
                           flag_values=values)
    absl_flags.DEFINE_string("export", None, "copy the study's records into this directory and stop",
                             flag_values=values)
    absl_flags.DEFINE_string("compare_to", None, "only read this single-arm study's members against those of the "
                             "study (or records) in this directory, pair by pair (no training, no sampling)",
                             flag_values=values)
    absl_flags.DEFINE_bool("over_training", False, "then draw the secondary curve along training for the finished "
                           "primary members", flag_values=values)
    absl_flags.DEFINE_integer("simulate", 0, "only simulate this many studies of the config's plan per scenario and "
                              "print the primary analysis's coverage and error rates (no records read or written)",
                              flag_values=values)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    study_dir = flags.workdir or flags.config.study.workdir
    start = time.perf_counter()
    if flags.simulate:
        study = flags.config.study.to_dict()
        print(arms_report.simulation_table([arms_analysis.simulate(study, leakage, tau, flags.simulate, seed=row)
                                            for row, (leakage, tau)
                                            in enumerate(arms_analysis.simulation_scenarios(study))]))
    elif flags.export:
        export_records(study_dir, flags.export)
    elif flags.compare_to:
        compare(study_dir, flags.compare_to)
        print(f"written: {os.path.join(study_dir, arms_analysis.COMPARISON_MD)}")
    elif flags.aggregate:
        aggregate(study_dir)
        print(f"written: {os.path.join(study_dir, arms_analysis.RESULT_MD)}")
    else:
        run_study(flags.config, study_dir, flags.member, flags.of, over_training=flags.over_training)
    print(f"({(time.perf_counter() - start) / 60:.1f} min this invocation)")


"""A grid of independent runs (training seeds x projection seeds), one measuring instrument, pooled statistics.

    python -m jaxdiff.sweep --config=configs/toy.py [--workdir runs/toy-sweep] [--member I --of N]
        [--aggregate | --train_only]

Each member is an ordinary run directory, SWEEP/seedT-embedE/, that jaxdiff.sample and
jaxdiff.evaluate accept as it is. Its stages (training, evaluation, probes) are skipped once
done, so an interrupted sweep resumes where it stopped. The attribute classifier depends only on
the dataset: it is trained once, in SWEEP/, and every member is measured with it. `--member I
--of N` runs members I, I+N, I+2N, ... (0 <= I < N), so N machines or a job array split one
sweep; the summary (SWEEP/summary.{json,md} and plots, jaxdiff.studies.sweep_summary) is written when
every member is done, or alone with --aggregate. --train_only trains the classifier and the members
and stops (what jaxdiff.frontier needs; the same command without it evaluates and probes them later).
"""


import dataclasses
import os
import shutil
import time
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.core import parallel
from jaxdiff.data import input_pipeline
from jaxdiff.measurement import classifier, evaluate, evaluation_words, records
from jaxdiff.studies import probes, sweep_summary
from jaxdiff.training import checkpoints, train, workdirs
from jaxdiff.common.errors import UserError

MEMBER_JSON = sweep_summary.MEMBER_JSON


@dataclasses.dataclass(frozen=True)
class Member:
    """One run of the grid."""

    train_seed: int
    embed_seed: int
    workdir: str

    @property
    def name(self) -> str:
        return os.path.basename(self.workdir)


def members(config: ml_collections.ConfigDict, sweep_dir: str) -> list[Member]:
    """The grid in the order it runs: diagonals first, (t0, e0), (t1, e1), ..., then the next shifted diagonal.

    A sweep stopped part-way (or aggregated early) then already has members that differ in both
    seeds, rather than three runs of one training seed.
    """
    s = config.sweep
    if not s.train_seeds or not s.embed_seeds:
        raise UserError("sweep.train_seeds and sweep.embed_seeds must each name at least one seed")
    for name, seeds in (("train_seeds", s.train_seeds), ("embed_seeds", s.embed_seeds)):
        if len(set(seeds)) < len(seeds):  # one run pooled twice would count as two
            raise UserError(f"sweep.{name}={tuple(seeds)} names a seed twice; name each once")
    t_count, e_count = len(s.train_seeds), len(s.embed_seeds)
    cells = [(i, j) for i in range(t_count) for j in range(e_count)]
    order = sorted(cells, key=lambda ij: ((ij[1] - ij[0]) % e_count, ij[0]))
    return [Member(int(s.train_seeds[i]), int(s.embed_seeds[j]),
                   os.path.join(sweep_dir, f"seed{s.train_seeds[i]}-embed{s.embed_seeds[j]}")) for i, j in order]


def keep_period(train_config: ml_collections.ConfigDict, points: int) -> int:
    """A multiple of checkpoint_every that keeps about `points` checkpoints along training."""
    every = int(train_config.checkpoint_every)
    return max(every, round(train_config.num_steps / max(points, 1) / every) * every)


def evaluation_seed(base_seed: int, member: Member) -> int:
    """The member's own sampling seed: members must not share their evaluation noise.

    With one seed for all, image j of a word starts from the same noise in every member, and a noise
    set's lean then enters every member alike (docs/sweep.md, "Evaluation noise", has the measurement):
    shared noise makes members agree with each other, not with the truth (tau too small), and adds a
    bias to the pooled estimate that no number of members removes.
    """
    return int(np.random.SeedSequence([base_seed, member.train_seed, member.embed_seed]).generate_state(1)[0] % 2**31)


# The evaluation settings each member takes from the sweep section (evaluate.X <- sweep.Y).
MEMBER_EVALUATION = {
    # A member's own report skips the single run's 24-word dose-response (half its evaluation images):
    # the probes draw it over sweep.num_unseen_words professions and the summary pools those.
    "num_unseen_words": "member_unseen_words",
    # Fewer images per word than a single run's: the summary pools them over members, where the
    # members' spread counts as much as their images, so a member's images can be fewer at little
    # cost to the pooled interval (sqrt((tau^2 + .25/n_member) / (tau^2 + .25/n_single))).
    "num_samples": "member_samples",
    # man and woman only check the conditioning (nearly all read as their own gender) and the controls'
    # shares pool over members: a quarter and a half of a single run's images are enough pooled.
    "num_samples_man_woman": "member_samples_man_woman",
    "num_samples_unseen": "member_samples_controls",
}


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
    """The sweep's config with the member's seeds, evaluation seed and settings, workdir and kept checkpoints."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = member.train_seed
    c.embed.seed = member.embed_seed
    c.evaluate.seed = evaluation_seed(config.evaluate.seed, member)
    for field, sweep_field in MEMBER_EVALUATION.items():
        c.evaluate[field] = config.sweep[sweep_field]
    c.workdir = member.workdir
    c.train.keep_period = keep_period(c.train, c.sweep.checkpoints_over_training)
    return c


CLASSIFIER_LOCK = "classifier.lock"  # SWEEP/: held by the one invocation training the sweep's classifier


def ensure_classifier(config: ml_collections.ConfigDict, sweep_dir: str, log: Callable = print,
                      poll_s: float = files.LOCK_POLL_S) -> dict:
    """The sweep's one attribute classifier (trained on the dataset once, then loaded); its accuracy.

    Invocations started together (--member I --of N, a job array) train it once: the others wait for it."""
    loaded = classifier.load(sweep_dir, config)
    if loaded is None:
        with files.exclusive(os.path.join(sweep_dir, CLASSIFIER_LOCK), "the sweep's attribute classifier", log, poll_s):
            loaded = classifier.load(sweep_dir, config)  # trained by another invocation while this one waited
            if loaded is None:
                log(f"training the attribute classifier once for every member, in {sweep_dir}")
                params, accuracy = classifier.train(config, log=log)
                if parallel.is_main_process():
                    classifier.save(sweep_dir, params, accuracy)
                return accuracy
    return loaded[2]


def _share_classifier(sweep_dir: str, workdir: str) -> None:
    """Puts the sweep's classifier files in the member's directory, where jaxdiff.evaluate looks for them
    (replacing a copy of another classifier: one instrument for every member)."""
    if classifier.digest(workdir) == classifier.digest(sweep_dir):
        return
    for name in (classifier.PARAMS_FILE, classifier.METRICS_FILE):
        with files.atomic_path(os.path.join(workdir, name)) as tmp:
            shutil.copyfile(os.path.join(sweep_dir, name), tmp)


def _sweep_classifier(workdir: str) -> str | None:
    """The digest of the sweep's classifier (in the member's parent directory), which a current count was read with."""
    return classifier.digest(os.path.dirname(os.path.abspath(workdir)))


def _newest_step(workdir: str) -> int | None:
    """The member's newest checkpoint step (None when it has none)."""
    steps = checkpoints.checkpoint_steps(workdir)
    return steps[-1] if steps else None


def probes_current(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """probes.json exists, from the member's latest checkpoint, its current sampling seed, sampler and steps,
    and the sweep's current probe image counts."""
    path = os.path.join(workdir, probes.PROBES_JSON)
    return os.path.exists(path) and records.probes_current(records.load(records.PROBES, path), _newest_step(workdir),
                                                           config, _sweep_classifier(workdir))


def report_current(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """report.json is from the latest checkpoint and the member's current evaluation and sampling settings."""
    path = os.path.join(workdir, evaluate.REPORT_JSON)
    return os.path.exists(path) and records.report_current(records.load(records.REPORT, path), _newest_step(workdir),
                                                           config, _sweep_classifier(workdir))


def member_done(config: ml_collections.ConfigDict, member: Member) -> bool:
    """Trained to num_steps, evaluated and probed from that last checkpoint with the member's sampling seed."""
    return not stages_to_run(config, member)


def _use_current_evaluation_settings(c: ml_collections.ConfigDict, workdir: str) -> None:
    """A trained member keeps its checkpoints when the sweep's evaluation settings change (the sampler, its
    steps, the images per word, the member's sampling seed...): its config.json gets them, and the
    stale report and probes are made again from the same parameters."""
    saved = configuration.load(workdir)
    sections = ("evaluate", "sweep", "sample")
    if any(saved[k].to_dict() != c[k].to_dict() for k in sections):
        with saved.unlocked():
            for k in sections:
                saved[k] = ml_collections.ConfigDict(c[k].to_dict())
        configuration.save(saved, workdir)


def run_member(config: ml_collections.ConfigDict, member: Member, sweep_dir: str, log: Callable = print,
               train_only: bool = False) -> dict:
    """Trains, evaluates and probes one member (only trains it with train_only), skipping finished stages;
    returns the times of those it ran.

    Each stage's time goes into the member's member.json as soon as it ends, so a sweep stopped in a later
    stage keeps it (the summary's minutes per member and the ETA read them)."""
    c = member_config(config, member)
    setting, timings = evaluation_cost_setting(c), {}

    def finished(stage: str, start: float) -> None:
        timings[stage] = time.perf_counter() - start
        if parallel.is_main_process():
            _record(member, {stage: timings[stage]}, setting)

    start = time.perf_counter()
    if not checkpoints.trained_to(member.workdir, c.train.num_steps):
        log(f"  training {c.train.num_steps} steps (seed {member.train_seed}, embed.seed {member.embed_seed})")
        train.train_and_evaluate(c, member.workdir)
        finished("training_s", start)
    if train_only:
        return timings
    _use_current_evaluation_settings(c, member.workdir)
    start = time.perf_counter()
    if not report_current(member.workdir, c):
        log(f"  evaluating (sampling seed {c.evaluate.seed})")
        _share_classifier(sweep_dir, member.workdir)
        evaluate.evaluate(member.workdir, log)
        finished("evaluation_s", start)
        _check_newest_checkpoint_read(member)
    start = time.perf_counter()
    if not probes_current(member.workdir, c):
        log("  probes: dose-response, over training, intervention")
        _share_classifier(sweep_dir, member.workdir)
        probes.run_probes(member.workdir, log)
        finished("probes_s", start)
    return timings


def _check_newest_checkpoint_read(member: Member) -> None:
    """The report was read from the member's newest checkpoint; if that one did not restore, the member would be
    re-evaluated on every run (its report never current) and its probes would fail: say how to repair it."""
    made = records.load(records.REPORT, os.path.join(member.workdir, evaluate.REPORT_JSON))["config"]["step"]
    newest = checkpoints.checkpoint_steps(member.workdir)[-1]
    if made != newest:
        raise UserError(f"{member.name}: its newest checkpoint (step {newest}) does not restore, so it was read at step "
                        f"{made}; move {os.path.join(member.workdir, checkpoints.CHECKPOINT_DIR, str(newest))} aside and "
                        f"rerun the sweep, which trains it again from step {made}")


# What makes members comparable: a member trained otherwise (longer, another learning rate...) is another
# experiment, and pooling it, or training it further on a new schedule, would mix two.
MEMBER_RECIPE = workdirs.ARCHITECTURE_SECTIONS + (
    "seed", "data.source", "portraits", "train.batch_size", "train.num_steps", "train.learning_rate",
    "train.warmup_steps", "train.lr_schedule", "train.weight_decay", "train.adam_b2", "train.grad_clip",
    "train.ema_decay")


def check_member_recipes(config: ml_collections.ConfigDict, grid: Sequence[Member]) -> None:
    """Every member already in the sweep directory was trained with the sweep's recipe; otherwise a UserError."""
    for member in grid:
        if os.path.exists(os.path.join(member.workdir, configuration.CONFIG_IN_WORKDIR)):
            workdirs.check_same_architecture(configuration.load(member.workdir), member_config(config, member),
                                             member.workdir, MEMBER_RECIPE)


def stages_to_run(config: ml_collections.ConfigDict, member: Member) -> list[str]:
    """The member's stages still to run, named by their member.json keys ("training_s", "evaluation_s", "probes_s")."""
    if not checkpoints.trained_to(member.workdir, config.train.num_steps):
        return ["training_s", "evaluation_s", "probes_s"]
    c = member_config(config, member)
    return ([] if report_current(member.workdir, c) else ["evaluation_s"]) + (
        [] if probes_current(member.workdir, c) else ["probes_s"])


def evaluation_cost_setting(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """What an evaluation's and the probes' time depends on: sampler, steps, guidance and image counts."""
    e = c.evaluate
    # Two sections: evaluate.num_unseen_words (the report's) and sweep.num_unseen_words (the probes') differ.
    return {"evaluate": {"sampler": e.sampler, "steps": int(e.steps), "guidance": float(e.guidance),
                         **{k: int(e[k]) for k in records.IMAGE_COUNT_KEYS}},
            "probes": records.probe_counts(c)}


def _record(member: Member, timings: dict, setting: dict) -> None:
    """Adds stage times, and the evaluation setting they were made at, to the member's member.json (a rerun
    appends, never replaces)."""
    path = os.path.join(member.workdir, MEMBER_JSON)
    record = records.load(records.SWEEP_MEMBER, path) if os.path.exists(path) else {
        "train_seed": member.train_seed, "embed_seed": member.embed_seed, "invocations": []}
    record["invocations"].append({**{k: round(v, 1) for k, v in timings.items()}, "setting": setting,
                                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    records.write(records.SWEEP_MEMBER, path, record)


def use_compilation_cache(sweep_dir: str) -> str:
    """Members compile the same steps: keep XLA's compiled programs in SWEEP/.xla_cache (or $JAX_COMPILATION_CACHE_DIR)."""
    import jax

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(sweep_dir, ".xla_cache")
    jax.config.update("jax_compilation_cache_dir", directory)
    return directory


def _stage_seconds(grid: Sequence[Member], setting: dict) -> dict[str, list[float]]:
    """Every recorded run of each stage, over all members' member.json, for the ETA: training at any
    setting, evaluation and probes only at `setting` (at 200 DDPM steps they take four times as long
    as at 50 DPM-Solver++ steps)."""
    seconds: dict[str, list[float]] = {}
    for member in grid:
        for invocation in sweep_summary.member_invocations(member.workdir):
            for stage, value in invocation.items():
                if stage.endswith("_s") and (stage == "training_s" or invocation["setting"] == setting):
                    seconds.setdefault(stage, []).append(value)
    return seconds


def eta_minutes(config: ml_collections.ConfigDict, remaining: Sequence[Member], grid: Sequence[Member]) -> float | None:
    """Minutes left for `remaining`: each stage it still has to run at that stage's median recorded time.

    None until every stage needed has been timed once at the current setting (a re-evaluation pass
    costs no training time)."""
    seconds = _stage_seconds(grid, evaluation_cost_setting(member_config(config, grid[0])))
    needed = [stage for member in remaining for stage in stages_to_run(config, member)]
    if any(stage not in seconds for stage in needed):
        return None
    return sum(float(np.median(seconds[stage])) for stage in needed) / 60


def run_sweep(config: ml_collections.ConfigDict, sweep_dir: str, member_index: int = 0, of: int = 1,
              log: Callable = print, train_only: bool = False) -> dict | None:
    """Runs this invocation's share of the members; writes and returns the summary once all are done.

    With `train_only` it trains the classifier and them and stops there: the frontier needs no more, and a
    GPU job array can train every member before any is evaluated (a later run without it evaluates and
    probes them)."""
    if not 0 <= member_index < of:
        raise UserError(f"--member {member_index} --of {of}: need 0 <= member < of")
    grid = members(config, sweep_dir)
    check_member_recipes(config, grid)  # before anything is made: a member trained otherwise stops the sweep at once
    if grid:  # the members' evaluation and probes, before they train
        set_by = {f"evaluate.{field}": f"sweep.{sweep_field}" for field, sweep_field in MEMBER_EVALUATION.items()}
        evaluation_words.check_settings(
            member_config(config, grid[0]), set_by,
            wrong=evaluation_words.too_many_unseen(config.sweep.num_unseen_words, "sweep.num_unseen_words"))
    mine = grid[member_index::of]
    log(f"sweep {sweep_dir}: {len(grid)} members ({len(config.sweep.train_seeds)} training seeds x "
        f"{len(config.sweep.embed_seeds)} projection seeds); this invocation runs {len(mine)}")
    log(f"dataset: {input_pipeline.ensure_dataset(config, log)}")
    os.makedirs(sweep_dir, exist_ok=True)
    log(f"XLA compilation cache: {use_compilation_cache(sweep_dir)}")
    ensure_classifier(config, sweep_dir, log)  # the frontier reads trained members with it too
    if train_only:
        return _train_members(config, sweep_dir, grid, mine, log)
    for i, member in enumerate(mine, start=1):
        position = _position(grid, mine, i)
        if member_done(config, member):
            log(f"{position}: done")
            continue
        eta = eta_minutes(config, mine[i - 1:], grid)
        log(position + (f", ETA {eta:.0f} min" if eta is not None else ""))
        start = time.perf_counter()
        run_member(config, member, sweep_dir, log)
        log(f"{position}: done in {(time.perf_counter() - start) / 60:.1f} min")
    waiting = [m.name for m in grid if not member_done(config, m)]
    if waiting:
        log(f"{len(waiting)} member(s) not done yet ({', '.join(waiting)}); the summary is written when all are, "
            f"or with --aggregate")
        return None
    return aggregate(config, sweep_dir, log)


def _position(grid: Sequence[Member], mine: Sequence[Member], i: int) -> str:
    """How progress names this invocation's i-th member (1-based): its place in the grid and in this share."""
    member = mine[i - 1]
    return f"member {grid.index(member) + 1}/{len(grid)} ({member.name}; {i}/{len(mine)} here)"


def _train_members(config: ml_collections.ConfigDict, sweep_dir: str, grid: Sequence[Member],
                   mine: Sequence[Member], log: Callable) -> None:
    """run_sweep's --train_only: trains this invocation's untrained members; no evaluation or probes."""
    for i, member in enumerate(mine, start=1):
        position = _position(grid, mine, i)
        if checkpoints.trained_to(member.workdir, config.train.num_steps):
            log(f"{position}: trained")
            continue
        log(position)
        start = time.perf_counter()
        run_member(config, member, sweep_dir, log, train_only=True)
        log(f"{position}: trained in {(time.perf_counter() - start) / 60:.1f} min")
    untrained = [m.name for m in grid if not checkpoints.trained_to(m.workdir, config.train.num_steps)]
    log(f"{len(grid) - len(untrained)} of {len(grid)} members trained; " + (
        f"waiting: {', '.join(untrained)}" if untrained else
        "run the same command without --train_only to evaluate and probe them and write the summary"))


def aggregate(config: ml_collections.ConfigDict, sweep_dir: str, log: Callable = print) -> dict:
    """Pools the finished members into SWEEP/summary.json, summary.md and plots."""
    grid = members(config, sweep_dir)
    check_member_recipes(config, grid)  # a member trained otherwise is not pooled
    stages = {m.name: stages_to_run(config, m) for m in grid}
    done = [m for m in grid if not stages[m.name]]
    untrained = sum("training_s" in left for left in stages.values())
    stale = len(grid) - len(done) - untrained  # trained, but read at other evaluation settings or image counts
    why = ", ".join(part for part in (
        f"{untrained} not trained to {config.train.num_steps} steps" if untrained else "",
        f"{stale} trained but evaluated or probed at other settings (sampler, steps, images per word) or with "
        f"another classifier, which the sweep command re-reads from their checkpoints without training"
        if stale else "") if part)
    if not done:
        raise UserError(f"no finished member in {sweep_dir} ({why}); run: python -m jaxdiff.sweep "
                        f"--config=... --workdir={sweep_dir}")
    if len(done) < len(grid):
        log(f"aggregating {len(done)} of {len(grid)} members ({why})")
    summary = sweep_summary.summarise(config, sweep_dir, done, planned=len(grid))
    if parallel.is_main_process():
        sweep_summary.write(summary, sweep_dir)
    log("\n".join(sweep_summary.reading(summary)))
    return summary


def define_split_flags(values: absl_flags.FlagValues, what: str) -> None:
    """--workdir, --member and --of: where a study of many runs lives, and this invocation's share of its runs."""
    absl_flags.DEFINE_string("workdir", None, f"the {what}'s directory (default: the config's {what}.workdir)",
                             flag_values=values)
    absl_flags.DEFINE_integer("member", 0, "run members member, member+of, ... (0-based)", flag_values=values)
    absl_flags.DEFINE_integer("of", 1, f"how many invocations split the {what}", flag_values=values)


def define_flags(values: absl_flags.FlagValues) -> None:
    define_split_flags(values, "sweep")
    absl_flags.DEFINE_bool("aggregate", False, "only write the summary of the finished members", flag_values=values)
    absl_flags.DEFINE_bool("train_only", False, "only train the classifier and the members (no evaluation or probes)",
                           flag_values=values)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    config = flags.config
    sweep_dir = flags.workdir or config.sweep.workdir
    start = time.perf_counter()
    if flags.aggregate and flags.train_only:
        raise UserError("--aggregate and --train_only ask for opposite things; give one of them")
    if flags.aggregate:
        aggregate(config, sweep_dir)
    else:
        run_sweep(config, sweep_dir, flags.member, flags.of, train_only=flags.train_only)
    print(f"({(time.perf_counter() - start) / 60:.1f} min this invocation)")


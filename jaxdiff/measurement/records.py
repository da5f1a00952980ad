"""The result records that runs and studies write, in one place: each kind's version and fields, the upgrades
of older versions, and whether a record is current for a config.

    kind             file                                        written by
    report           WORKDIR/report.json                         jaxdiff.measurement.evaluate
    probes           MEMBER/probes.json                          jaxdiff.studies.probes
    sweep_member     MEMBER/member.json of a sweep               jaxdiff.studies.sweep (seeds, stage times)
    arms_member      MEMBER/member.json of an arms study         jaxdiff.studies.arms (pair, arm, leans, times)
    frontier_round   MEMBER/frontier/SETTING/round-RRR.json      jaxdiff.studies.frontier (one round's counts)

Every record written carries `version` (`write` stamps it). A record without one is version 1: the format
of before versions were stamped, together with the gaps of files written before some field existed.
Readers call `load(kind, path)`, which turns an older record into the current one, one version at a time
(UPGRADES[kind][v] makes version v + 1 of version v), and refuses a record of a later version than this
code reads. A change to a kind's fields raises its VERSIONS entry and adds the upgrade from the one before,
so that every record already written (the committed ones under docs/measurements/ among them) still reads.
"""

import copy
import os
from typing import Any, Callable

from jaxdiff.common import files
from jaxdiff.common.errors import UserError
from jaxdiff.measurement import classifier

REPORT, PROBES, SWEEP_MEMBER, ARMS_MEMBER, FRONTIER_ROUND = (
    "report", "probes", "sweep_member", "arms_member", "frontier_round")
VERSIONS = {REPORT: 2, PROBES: 2, SWEEP_MEMBER: 2, ARMS_MEMBER: 2, FRONTIER_ROUND: 2}
# The top-level fields of each kind's current version, besides `version`; `write` refuses a record lacking one.
FIELDS = {
    REPORT: ("classifier", "words", "dose_response", "controls", "conditioning", "config", "timings"),
    PROBES: ("step", "seed", "sampler", "steps", "guidance", "spacing", "clip_x0", "ddim_eta", "counts",
             "classifier_digest", "intervention", "unseen", "over_training", "seconds"),
    SWEEP_MEMBER: ("train_seed", "embed_seed", "invocations"),
    ARMS_MEMBER: ("pair", "arm", "seed", "primary", "invocations", "leans", "woman_share"),
    FRONTIER_ROUND: ("setting", "round", "newest", "seed", "guidance", "classifier", "round_images", "spacing",
                     "clip_x0", "ddim_eta", "step", "words", "seconds_per_image"),
}
# What to do about a damaged record of each kind (the default: delete it and rerun the step that writes it).
REMEDIES = {REPORT: "delete it and rerun: the evaluation runs again and rewrites it"}

# The `sample` settings that shape a record's images besides its sampler, steps and guidance.
SAMPLING_KEYS = ("spacing", "clip_x0", "ddim_eta")
# The evaluate fields that set how many images a report draws.
IMAGE_COUNT_KEYS = ("num_samples", "num_samples_man_woman", "num_samples_unseen", "num_unseen_words")
# The evaluation settings (report.json's `config`) a report must have been made with to count as current.
REPORT_KEYS = ("seed", "sampler", "steps", "guidance") + IMAGE_COUNT_KEYS
# The evaluation settings probes.json records, which must match the member's to count as current.
PROBES_KEYS = ("seed", "sampler", "steps", "guidance")
# The sweep fields that set how many images the probes draw; probes.json records them, so a change re-probes.
COUNT_FIELDS = ("num_unseen_words", "samples_per_unseen_word", "intervention_alphas", "samples_per_alpha",
                "samples_over_training")

# Version 1 reports, probes and rounds written before they recorded the sample settings were drawn with these.
SAMPLING_BEFORE_RECORDED = {"spacing": "quadratic", "clip_x0": True, "ddim_eta": 0.0}
# Version 1 probes written before they recorded their sampler were all drawn with DPM-Solver++ at 20 steps and
# guidance 1; a seed they do not record is unknown (None), so that they never count as current.
PROBES_BEFORE_RECORDED = {"seed": None, "sampler": "dpmpp2m", "steps": 20, "guidance": 1.0}
# Version 1 probes written before they recorded their image counts were drawn with these.
PROBE_COUNTS_BEFORE_RECORDED = {"num_unseen_words": 100, "samples_per_unseen_word": 10, "intervention_alphas": 7,
                                "samples_per_alpha": 50, "samples_over_training": 50}
# Version 1 sweep member records of before the sweep recorded only the stages it ran also hold the stages an
# invocation skipped, as a second or less: not a stage's time.
SKIPPED_STAGE_S = 1.5


def sampling_settings(config: Any) -> dict[str, Any]:
    """The run's `sample` settings that its images depend on (SAMPLING_KEYS), as records hold them."""
    return {k: config.sample[k] for k in SAMPLING_KEYS}


def probe_counts(config: Any) -> dict[str, int]:
    """The probes' image counts (COUNT_FIELDS of the sweep section), as probes.json records them."""
    return {k: int(config.sweep[k]) for k in COUNT_FIELDS}


# ---------------------------------------------------------------------------------------------
# Upgrades: each turns version 1 of its kind into version 2, given the directory the record lies in.


def _fill_sampling(made: dict[str, Any]) -> None:
    for key, value in SAMPLING_BEFORE_RECORDED.items():
        made.setdefault(key, value)


def _report_1(report: dict[str, Any], directory: str) -> dict[str, Any]:
    """Version 2 of a version 1 report: the sample settings, image counts and classifier it was made with."""
    made = report.setdefault("config", {})
    _fill_sampling(made)
    for key in ("step",) + REPORT_KEYS:  # a setting a report did not record is unknown: never current
        made.setdefault(key, None)
    # Reports of before the classifier's digest was recorded were read with the copy the member holds.
    report.setdefault("classifier", {}).setdefault("digest", classifier.digest(directory))
    return report


def _probes_1(made: dict[str, Any], directory: str) -> dict[str, Any]:
    """Version 2 of version 1 probes: their sampler, sample settings, image counts and classifier."""
    for key, value in PROBES_BEFORE_RECORDED.items():
        made.setdefault(key, value)
    _fill_sampling(made)
    made.setdefault("counts", dict(PROBE_COUNTS_BEFORE_RECORDED))
    # Probes of before the classifier's digest was recorded were read with the copy the member holds.
    made.setdefault("classifier_digest", classifier.digest(directory))
    return made


def _sweep_member_1(record: dict[str, Any], directory: str) -> dict[str, Any]:
    """Version 2 of a version 1 sweep member record: skipped stages dropped, each invocation's setting (None: unknown)."""
    for invocation in record.setdefault("invocations", []):
        for stage in [k for k, v in invocation.items() if k.endswith("_s") and v <= SKIPPED_STAGE_S]:
            del invocation[stage]
        invocation.setdefault("setting", None)
    return record


def _arms_member_1(record: dict[str, Any], directory: str) -> dict[str, Any]:
    """Version 2 of a version 1 arms member record, which holds every field of version 2 already."""
    return record


def _frontier_round_1(round_: dict[str, Any], directory: str) -> dict[str, Any]:
    """Version 2 of a version 1 frontier round: the newest checkpoint, sample settings and each word's seconds."""
    round_.setdefault("newest", round_["step"])  # rounds of before "newest" was recorded: the step they sampled
    _fill_sampling(round_)
    if round_.get("seconds_per_image") is not None:  # rounds of before each word's time was recorded
        for entry in round_["words"].values():
            entry.setdefault("seconds", round_["seconds_per_image"] * entry["n"])
    # is_woman and p_woman stay absent from rounds of before they were kept: such a round serves its own
    # number of images only (jaxdiff.studies.frontier reads is_woman to serve fewer).
    return round_


Upgrade = Callable[[dict[str, Any], str], dict[str, Any]]
UPGRADES: dict[str, dict[int, Upgrade]] = {
    REPORT: {1: _report_1}, PROBES: {1: _probes_1}, SWEEP_MEMBER: {1: _sweep_member_1},
    ARMS_MEMBER: {1: _arms_member_1}, FRONTIER_ROUND: {1: _frontier_round_1}}


def version_of(record: dict[str, Any]) -> int:
    """The version a record was written at (1 when it has none: written before versions were stamped)."""
    return record.get("version", 1)


def upgrade(kind: str, record: dict[str, Any], directory: str) -> dict[str, Any]:
    """A copy of an older record of `kind` (lying in `directory`) turned into the current version."""
    record = copy.deepcopy(record)
    for version in range(version_of(record), VERSIONS[kind]):
        record = UPGRADES[kind][version](record, directory)
        record["version"] = version + 1
    return record


def load(kind: str, path: str) -> dict[str, Any]:
    """The record of `kind` at `path` as the current version; a damaged one, or one of a later version, is a UserError."""
    remedy = REMEDIES.get(kind, "delete it and rerun the step that writes it")
    record = files.read_json(path, remedy)
    if not isinstance(record, dict):
        raise files.damaged(path, ValueError(f"a {kind} record is a JSON object, not {type(record).__name__}"), remedy)
    version = version_of(record)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise files.damaged(path, ValueError(f"version {version!r} is not a whole number from 1"), remedy)
    if version > VERSIONS[kind]:
        raise UserError(f"{path} is a {kind} record of version {version}, newer than this jaxdiff reads (up to "
                        f"{VERSIONS[kind]}); update this checkout of jaxdiff (git pull) and rerun")
    return upgrade(kind, record, os.path.dirname(os.path.abspath(path)))


def stamp(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record with its kind's current version first; a record lacking one of the kind's FIELDS is a ValueError."""
    missing = [k for k in FIELDS[kind] if k not in record]
    if missing:  # a writer and this schema disagree: a bug, not bad input
        raise ValueError(f"a {kind} record lacks {', '.join(missing)}; jaxdiff/measurement/records.py lists its fields")
    return {"version": VERSIONS[kind], **{k: v for k, v in record.items() if k != "version"}}


def write(kind: str, path: str, record: dict[str, Any]) -> dict[str, Any]:
    """Writes the record of `kind`, stamped with its version, to `path` atomically; returns what was written."""
    stamped = stamp(kind, record)
    files.write_json(path, stamped)
    return stamped


# ---------------------------------------------------------------------------------------------
# Currency: whether a (current-version) record was made as a config would make it now.


def same_sampling(made: dict[str, Any], config: Any) -> bool:
    """Whether images recorded as made with `made`'s sample settings match the config's."""
    return all(made[k] == config.sample[k] for k in SAMPLING_KEYS)


def report_current(report: dict[str, Any], newest_step: int | None, config: Any = None,
                   classifier_digest: str | None = None) -> bool:
    """Whether a report is from the newest checkpoint and, given a config, its settings and classifier `classifier_digest`."""
    made = report["config"]
    if newest_step is None or made["step"] != newest_step:
        return False
    return config is None or (report["classifier"]["digest"] == classifier_digest
                              and all(made[k] == config.evaluate[k] for k in REPORT_KEYS)
                              and same_sampling(made, config))


def probes_current(made: dict[str, Any], newest_step: int | None, config: Any, classifier_digest: str | None) -> bool:
    """Whether probes are from the newest checkpoint, the config's settings and counts, and classifier `classifier_digest`."""
    return (newest_step is not None and made["step"] == newest_step
            and made["classifier_digest"] == classifier_digest
            and all(made[k] == config.evaluate[k] for k in PROBES_KEYS)
            and same_sampling(made, config)
            and made["counts"] == probe_counts(config))


def round_settings(member_config: Any, newest_step: int | None, classifier_digest: str,
                   round_images: int) -> dict[str, Any]:
    """What a member's frontier round must record to count: newest checkpoint, seed, guidance, classifier, size, sampling."""
    # A member kept as its records alone has no newest checkpoint: its rounds count whatever checkpoint they name.
    return {**({"newest": newest_step} if newest_step is not None else {}), "seed": int(member_config.evaluate.seed),
            "guidance": float(member_config.evaluate.guidance), "classifier": classifier_digest,
            "round_images": round_images, **sampling_settings(member_config)}


def round_current(round_: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Whether a frontier round was drawn with `settings` (round_settings)."""
    return all(round_.get(k) == v for k, v in settings.items())

"""Result records (jaxdiff.measurement.records): versions, upgrades of older records, currency for a config,
and every record committed under docs/measurements read through them."""

import json
import os

import ml_collections
import pytest

from helpers import REPO
from jaxdiff.common.errors import UserError
from jaxdiff.measurement import classifier, records
from jaxdiff.studies import arms_analysis

MEASUREMENTS = os.path.join(REPO, "docs", "measurements")


def _config() -> ml_collections.ConfigDict:
    from configs import toy

    return toy.get_config()


def _dump(path, record) -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def _report(config, step=6) -> dict:
    """A report as evaluate writes it today, less the words' tables (not read by the currency check)."""
    return {"classifier": {"gender_accuracy": 1.0, "digest": "ours"}, "words": {}, "dose_response": {}, "controls": {},
            "conditioning": {}, "config": {"step": step, **config.evaluate.to_dict(), **records.sampling_settings(config)},
            "timings": {}}


def _probes(config, step=6) -> dict:
    """Probes as run_probes writes them today, less the rows (not read by the currency check)."""
    return {"step": step, "seed": config.evaluate.seed, "sampler": config.evaluate.sampler,
            "steps": config.evaluate.steps, "guidance": config.evaluate.guidance, **records.sampling_settings(config),
            "counts": records.probe_counts(config), "classifier_digest": "ours", "intervention": [], "unseen": [],
            "over_training": [], "seconds": 1.0}


def test_a_version_1_report_is_upgraded_with_the_settings_of_its_time(tmp_path):
    (tmp_path / classifier.PARAMS_FILE).write_bytes(b"the member's copy")
    old = {"classifier": {"gender_accuracy": 0.99}, "words": {"nurse": {"women": 7, "n": 10, "share_woman": 0.7}},
           "config": {"step": 6, "seed": 3, "sampler": "ddpm", "steps": 200, "guidance": 1.0, "num_samples": 300}}
    report = records.load(records.REPORT, _dump(tmp_path / "report.json", old))
    assert report["version"] == records.VERSIONS[records.REPORT] == 2
    assert report["words"] == old["words"] and report["classifier"]["gender_accuracy"] == 0.99  # no number changes
    # Made before the sample settings were recorded: the defaults of then; a count it did not record is unknown.
    assert {k: report["config"][k] for k in records.SAMPLING_KEYS} == {"spacing": "quadratic", "clip_x0": True,
                                                                       "ddim_eta": 0.0}
    assert report["config"]["num_samples"] == 300 and report["config"]["num_samples_man_woman"] is None
    # Made before the classifier's digest was recorded: read with the copy the member holds.
    assert report["classifier"]["digest"] == classifier.digest(str(tmp_path)) is not None
    assert json.load(open(tmp_path / "report.json")) == old  # loading never rewrites a record


def test_version_1_probes_rounds_and_members_are_upgraded(tmp_path):
    probes = records.load(records.PROBES, _dump(tmp_path / "probes.json", {"step": 6, "unseen": [{"women": 3}]}))
    assert (probes["seed"], probes["sampler"], probes["steps"], probes["guidance"]) == (None, "dpmpp2m", 20, 1.0)
    assert probes["counts"] == records.PROBE_COUNTS_BEFORE_RECORDED and probes["spacing"] == "quadratic"
    assert probes["classifier_digest"] is None and probes["unseen"] == [{"women": 3}]  # no classifier beside it

    round_ = records.load(records.FRONTIER_ROUND, _dump(tmp_path / "round-000.json", {
        "step": 40, "seed": 1, "seconds_per_image": 0.5, "words": {"nurse": {"women": 2, "n": 4},
                                                                   "person": {"women": 1, "n": 4, "seconds": 9.0}}}))
    assert round_["newest"] == 40 and round_["clip_x0"] is True and round_["ddim_eta"] == 0.0
    assert round_["words"]["nurse"] == {"women": 2, "n": 4, "seconds": 2.0}  # 0.5 s an image, 4 images
    assert round_["words"]["person"]["seconds"] == 9.0  # a recorded time is kept

    member = records.load(records.SWEEP_MEMBER, _dump(tmp_path / "member.json", {"train_seed": 0, "embed_seed": 1,
        "invocations": [{"training_s": 300.0, "evaluation_s": 0.4, "setting": {"evaluate": {}}},
                        {"training_s": 0.2, "probes_s": 60.0}]}))
    # Stages an invocation skipped were recorded as a second or less: dropped, not counted as time.
    assert member["invocations"] == [{"training_s": 300.0, "setting": {"evaluate": {}}},
                                     {"probes_s": 60.0, "setting": None}]

    arms = {"pair": 0, "arm": "real", "seed": 1000, "primary": True, "invocations": [{"training_s": 5.0}],
            "leans": {}, "woman_share": {}}
    assert records.load(records.ARMS_MEMBER, _dump(tmp_path / "arms" / "member.json", arms)) == {**arms, "version": 2}


def test_a_record_of_a_later_version_is_refused_in_one_line(tmp_path):
    path = _dump(tmp_path / "report.json", {"version": 3, "config": {}})
    with pytest.raises(UserError) as refused:
        records.load(records.REPORT, path)
    message = str(refused.value)
    assert "\n" not in message and message == (
        f"{path} is a report record of version 3, newer than this jaxdiff reads (up to 2); update this checkout "
        "of jaxdiff (git pull) and rerun")
    for damaged in ([1, 2], {"version": "2"}, {"version": 0}):
        with pytest.raises(UserError, match="is damaged"):
            records.load(records.PROBES, _dump(tmp_path / "probes.json", damaged))


def test_writes_are_stamped_and_read_back_unchanged(tmp_path):
    config = _config()
    path = str(tmp_path / "probes.json")
    written = records.write(records.PROBES, path, _probes(config))
    assert list(written)[0] == "version" and written["version"] == 2
    assert records.load(records.PROBES, path) == written == json.load(open(path))
    restamped = records.stamp(records.PROBES, {**_probes(config), "version": 1})
    assert restamped["version"] == 2 and list(restamped).count("version") == 1
    with pytest.raises(ValueError, match="a report record lacks timings"):
        records.write(records.REPORT, str(tmp_path / "report.json"),
                      {k: v for k, v in _report(config).items() if k != "timings"})
    assert not os.path.exists(tmp_path / "report.json")


def test_a_report_is_current_only_from_the_newest_checkpoint_at_the_configs_settings():
    config = _config()
    report = records.stamp(records.REPORT, _report(config))
    assert records.report_current(report, 6, config, "ours")
    assert records.report_current(report, 6)  # the single run's check: the newest checkpoint alone
    assert not records.report_current(report, 9) and not records.report_current(report, None)
    assert not records.report_current(report, 6, config, "another classifier")
    for section, key, value in [("evaluate", k, config.evaluate[k] + 1) for k in ("seed", "steps", "guidance")
                                + records.IMAGE_COUNT_KEYS] + [("evaluate", "sampler", "ddim"),
                                                               ("sample", "spacing", "uniform"),
                                                               ("sample", "clip_x0", False)]:
        changed = ml_collections.ConfigDict(config.to_dict())
        changed[section][key] = value
        assert not records.report_current(report, 6, changed, "ours"), key
    changed = ml_collections.ConfigDict(config.to_dict())
    changed.sweep.samples_per_alpha += 1  # the probes' counts are not the report's
    assert records.report_current(report, 6, changed, "ours")


def test_version_1_reports_and_probes_are_current_when_the_config_asks_what_they_were_made_with(tmp_path):
    config = _config()
    (tmp_path / classifier.PARAMS_FILE).write_bytes(b"the sweep's")
    ours = classifier.digest(str(tmp_path))
    old_report = {"config": {"step": 6, **config.evaluate.to_dict()}}  # before the sample settings and digest
    report = records.load(records.REPORT, _dump(tmp_path / "report.json", old_report))
    assert config.sample.spacing == records.SAMPLING_BEFORE_RECORDED["spacing"]
    assert records.report_current(report, 6, config, ours)
    del old_report["config"]["num_samples_man_woman"]  # made before man and woman had their own count
    report = records.load(records.REPORT, _dump(tmp_path / "report.json", old_report))
    assert not records.report_current(report, 6, config, ours)

    old_probes = {"step": 6, "seed": config.evaluate.seed, "sampler": config.evaluate.sampler,
                  "steps": config.evaluate.steps}  # before guidance, counts and the digest were recorded
    probes = records.load(records.PROBES, _dump(tmp_path / "probes.json", old_probes))
    assert config.sweep.samples_per_alpha != records.PROBE_COUNTS_BEFORE_RECORDED["samples_per_alpha"]
    assert not records.probes_current(probes, 6, config, ours)  # drawn with the counts of then, not these
    config.sweep.update(records.PROBE_COUNTS_BEFORE_RECORDED)
    assert records.probes_current(probes, 6, config, ours)
    assert not records.probes_current(probes, 6, config, "another classifier")
    (tmp_path / classifier.PARAMS_FILE).write_bytes(b"another")  # the member's copy is no longer the sweep's
    probes = records.load(records.PROBES, os.path.join(tmp_path, "probes.json"))
    assert not records.probes_current(probes, 6, config, ours)
    old_probes.pop("seed")  # a seed not recorded is never the member's
    probes = records.load(records.PROBES, _dump(tmp_path / "probes.json", old_probes))
    assert not records.probes_current(probes, 6, config, classifier.digest(str(tmp_path)))


def test_probes_are_current_only_at_the_configs_settings_and_counts():
    config = _config()
    made = records.stamp(records.PROBES, _probes(config))
    assert records.probes_current(made, 6, config, "ours")
    assert not records.probes_current(made, 3, config, "ours") and not records.probes_current(made, None, config, "ours")
    for section, key, value in (("evaluate", "guidance", 2.0), ("evaluate", "sampler", "ddim"),
                                ("sample", "ddim_eta", 1.0), ("sweep", "samples_per_alpha", 1),
                                ("sweep", "num_unseen_words", 7)):
        changed = ml_collections.ConfigDict(config.to_dict())
        changed[section][key] = value
        assert not records.probes_current(made, 6, changed, "ours"), key
    changed = ml_collections.ConfigDict(config.to_dict())
    changed.evaluate.num_samples += 1  # the report's image counts are not the probes'
    assert records.probes_current(made, 6, changed, "ours")


def test_a_frontier_round_is_current_when_drawn_as_the_member_draws_now():
    config = _config()
    settings = records.round_settings(config, 2500, "c34bcb239cc9ada4", 100)
    assert settings == {"newest": 2500, "seed": config.evaluate.seed, "guidance": float(config.evaluate.guidance),
                        "classifier": "c34bcb239cc9ada4", "round_images": 100, **records.sampling_settings(config)}
    round_ = {**settings, "step": 2500, "words": {}}
    assert records.round_current(round_, settings)
    assert not records.round_current({**round_, "newest": 2000}, settings)
    assert not records.round_current({**round_, "spacing": "uniform"}, settings)
    assert not records.round_current(round_, records.round_settings(config, 2500, "another", 100))
    # A member kept as its records alone (no checkpoint) is read whatever checkpoint its rounds name.
    assert records.round_current({**round_, "newest": 2000}, records.round_settings(config, None, "c34bcb239cc9ada4", 100))


def _committed_records() -> dict[str, list[str]]:
    """Every committed record file under docs/measurements, by kind."""
    found: dict[str, list[str]] = {}
    for root, _, names in os.walk(MEASUREMENTS):
        for name in names:
            path = os.path.join(root, name)
            if name == "member.json":
                # An arms study's members (the study itself, or a single-arm one such as the length study) sit
                # beside its plan.json; a sweep's do not.
                in_arms_study = os.path.exists(os.path.join(os.path.dirname(root), arms_analysis.PLAN_JSON))
                kind = records.ARMS_MEMBER if in_arms_study else records.SWEEP_MEMBER
            elif name.startswith("round-") and name.endswith(".json"):
                kind = records.FRONTIER_ROUND
            elif name in ("report.json", "probes.json"):
                kind = records.REPORT if name == "report.json" else records.PROBES
            else:
                continue
            found.setdefault(kind, []).append(path)
    return found


def test_every_committed_record_loads_with_its_published_numbers():
    found = _committed_records()
    counts = {k: len(v) for k, v in found.items()}
    # The finished studies' records are fixed: the arms study's 23 members, the length study's 10.
    assert counts[records.SWEEP_MEMBER] == 16 and counts[records.FRONTIER_ROUND] == 16 * 2 * 12
    arms_members = [p for p in found[records.ARMS_MEMBER] if "toy_arms_records" in p]
    assert len(arms_members) == 23 and len(found[records.ARMS_MEMBER]) == 23 + 10
    loaded = {}
    for kind, paths in found.items():
        for path in paths:
            raw = json.load(open(path))
            record = records.load(kind, path)
            assert record["version"] == records.VERSIONS[kind], path
            # The upgrade adds what a record lacked and changes nothing it holds (no committed member has a
            # skipped stage to drop).
            assert {k: v for k, v in record.items() if k in raw} == raw, path
            loaded[os.path.relpath(path, MEASUREMENTS)] = record

    def women(member: str, setting: str) -> int:
        return sum(r["words"]["person"]["women"] for p, r in loaded.items()
                   if p.startswith(f"toy_ddpm_agreement_4x4_records/{member}/frontier/ema-{setting}/"))

    # toy_ddpm_agreement_4x4_2026-12-05.md, "Per member": women among person's 1,200 images, training minutes.
    assert (women("seed0-embed0", "ddpm-200"), women("seed0-embed0", "ddpm-1000")) == (516, 542)
    assert (women("seed1-embed2", "ddpm-200"), women("seed1-embed2", "ddpm-1000")) == (638, 609)
    training = loaded["toy_ddpm_agreement_4x4_records/seed0-embed0/member.json"]["invocations"][0]["training_s"]
    assert round(training / 60, 1) == 13.8
    # docs/arms.md: minutes a member (training + drawing).
    for member, minutes in (("pair0-real", (17.6, 16.8)), ("pair0-control", (29.9, 10.8))):
        invocation = loaded[f"toy_arms_records/{member}/member.json"]["invocations"][0]
        assert (round(invocation["training_s"] / 60, 1), round(sum(invocation["drawing_s"].values()) / 60, 1)) == minutes
    lean = loaded["toy_arms_records/pair0-control/member.json"]["leans"]["nurse"]["she_he_raw"]
    assert lean == pytest.approx(0.28086, abs=1e-5)

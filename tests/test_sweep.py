"""The sweep on the tiny config: a 2 x 1 grid end to end, resuming, splitting, one classifier."""

import json
import os
import shutil
import threading

import jax
import ml_collections
import numpy as np
import pytest

from helpers import changed_copy, damage_checkpoint, logging_and_signalling, tiny_config
from jaxdiff.measurement import classifier, evaluate, records
from jaxdiff.statistics import pooling
from jaxdiff.studies import probes, sweep, sweep_summary
from jaxdiff.training import checkpoints, train, workdirs
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.common.errors import UserError


def test_sweep_writes_the_summary_with_every_key(finished_sweep):
    config, sweep_dir, summary, _ = finished_sweep
    on_disk = json.load(open(os.path.join(sweep_dir, "summary.json")))
    for key in ("members", "classifier", "words", "leakage", "fit", "dose_response", "over_training",
                "intervention", "timings"):
        assert key in on_disk, key
    assert [m["name"] for m in on_disk["members"]] == ["seed0-embed0", "seed1-embed0"]
    assert on_disk["num_planned"] == 2 and on_disk["measured_with"] == {
        "train_steps": 6, "sampler": config.evaluate.sampler, "steps": config.evaluate.steps,
        "guidance": config.evaluate.guidance, "images_per_trained_word": config.sweep.member_samples}
    # The pooled figures are the members' own counts, pooled: each word's share and the contrast.
    reports = [json.load(open(os.path.join(sweep_dir, m, evaluate.REPORT_JSON))) for m in ("seed0-embed0", "seed1-embed0")]
    for name, kind in ((evaluate.REPORT_JSON, records.REPORT), (probes.PROBES_JSON, records.PROBES),
                       (sweep.MEMBER_JSON, records.SWEEP_MEMBER)):  # each record written carries its version
        assert [json.load(open(os.path.join(sweep_dir, m, name)))["version"] for m in ("seed0-embed0", "seed1-embed0")
                ] == [records.VERSIONS[kind]] * 2, name
    counts = {w: ([r["words"][w]["women"] for r in reports], [r["words"][w]["n"] for r in reports]) for w in SEED_EVAL_WORDS}
    assert all(n == [config.sweep.member_samples] * 2 for _, n in counts.values())
    for word in SEED_EVAL_WORDS:
        assert on_disk["words"][word]["share_woman"] == pytest.approx(pooling.pooled_share(*counts[word]).estimate)
    contrast = pooling.pooled_difference(*counts["nurse"], *counts["philosopher"])
    assert on_disk["leakage"]["contrast"] == pytest.approx(contrast.estimate)
    assert on_disk["leakage"]["members"] == pytest.approx(
        [(a - b) / config.sweep.member_samples for a, b in zip(counts["nurse"][0], counts["philosopher"][0])])
    for word in SEED_EVAL_WORDS:
        assert set(on_disk["words"][word]) >= {"share_woman", "ci95", "tau"}
        # One projection seed: the split of tau^2 between the seeds is not identified, and says so.
        assert on_disk["words"][word]["variance_components"]["train_seed"] is None
    assert set(on_disk["leakage"]) >= {"contrast", "ci95", "p_value", "tost_p_value", "verdict", "slope"}
    assert on_disk["leakage"]["verdict"] in ("leakage", "reverse gap", "no leakage", "undecided")
    few = on_disk["leakage"]["small_sample"]  # two members: t on 1 degree of freedom, wider than the z interval
    assert few["df"] == 1 and few["ci95"][1] - few["ci95"][0] > on_disk["leakage"]["ci95"][1] - on_disk["leakage"]["ci95"][0]
    assert on_disk["dose_response"]["num_words"] == config.sweep.num_unseen_words
    assert on_disk["over_training"]["steps"] == [3, 6]  # keep_period 3 of 6 steps
    assert len(on_disk["intervention"]["alphas"]) == config.sweep.intervention_alphas
    for name in ("summary.md", "forest_contrast.png", "dose_response.png", "over_training.png", "intervention.png"):
        assert os.path.getsize(os.path.join(sweep_dir, name)) > 0, name
    markdown = open(os.path.join(sweep_dir, "summary.md")).read()  # the pooled series as tables, not only plots
    assert markdown.startswith("# Sweep summary: 2 of 2 members\n\nTrained 6 steps; read with ")
    assert "| step | philosopher | person | nurse |" in markdown and "\n| 3 | " in markdown and "\n| 6 | " in markdown
    assert "| a | philosopher | person | nurse |" in markdown
    assert "| projection seed | interaction |" in markdown and "Split of tau^2: not identified: 2 members" in markdown
    assert "REML's own tau^2" not in markdown  # the reading of a split that was not made
    # One projection: each word's projected score is the same in every member, so no slope on it.
    assert on_disk["projection"]["within_word"] == {"slope": None,
                                                    "note": "not identified: every member has the same projection"}


def test_members_are_ordinary_runs(finished_sweep):
    _, sweep_dir, _, _ = finished_sweep
    member = os.path.join(sweep_dir, "seed1-embed0")
    run = workdirs.TrainedRun.load(member)
    assert run.config.seed == 1 and run.config.embed.seed == 0 and run.step == 6
    # Each member samples its own noise: the two members' evaluation seeds differ, and their reports used them.
    seeds = [json.load(open(os.path.join(sweep_dir, name, evaluate.REPORT_JSON)))["config"]["seed"]
             for name in ("seed0-embed0", "seed1-embed0")]
    assert seeds[0] != seeds[1] and seeds[1] == run.config.evaluate.seed
    report = json.load(open(os.path.join(member, evaluate.REPORT_JSON)))
    # The member's report draws no unseen professions (its probes do, for the summary) and says so.
    assert report["config"]["num_unseen_words"] == 0 and report["dose_response"]["words"] == []
    assert not [w for w, e in report["words"].items() if e["group"] == "unseen"]
    config = finished_sweep[0]
    # The sweep's image counts, not the single run's: 6 per question word, 5 for man and woman, 3 per control.
    assert {w: e["n"] for w, e in report["words"].items()} == {
        "philosopher": 6, "person": 6, "nurse": 6, "man": 5, "woman": 5}
    assert {e["n"] for e in report["controls"].values()} == {3}
    assert (config.sweep.member_samples, config.sweep.member_samples_man_woman, config.sweep.member_samples_controls) == (
        6, 5, 3) and (config.evaluate.num_samples, config.evaluate.num_samples_man_woman) == (8, 8)
    assert "None drawn (`evaluate.num_unseen_words` = 0)" in open(os.path.join(member, evaluate.REPORT_MD)).read()
    made = json.load(open(os.path.join(member, probes.PROBES_JSON)))
    assert made["step"] == 6
    for row in made["over_training"]:  # each image's p(woman) is kept beside the count it gives
        assert len(row["p_woman"]) == row["n"] and sum(p > 0.5 for p in row["p_woman"]) == row["women"]
    assert workdirs.TrainedRun.load(member, at_step=3).step == 3  # the kept checkpoint along training


def test_members_draw_the_sweeps_image_counts_and_the_single_run_keeps_its_own():
    from configs import base

    config = base.get_config()
    member = sweep.member_config(config, sweep.members(config, "sweep")[0])
    assert member.evaluate.num_unseen_words == config.sweep.member_unseen_words == 0
    assert (member.evaluate.num_samples, member.evaluate.num_samples_man_woman, member.evaluate.num_samples_unseen) == (
        300, 100, 50)
    assert config.evaluate.num_unseen_words == 24  # the main job's own 24-word dose-response
    # and its 400 images per trained word, 100 per control
    assert (config.evaluate.num_samples, config.evaluate.num_samples_man_woman, config.evaluate.num_samples_unseen) == (
        400, 400, 100)


def test_the_classifier_is_trained_once_and_shared(finished_sweep):
    _, sweep_dir, _, classifier_trainings = finished_sweep
    assert classifier_trainings == 1
    shared = open(os.path.join(sweep_dir, classifier.PARAMS_FILE), "rb").read()
    for name in ("seed0-embed0", "seed1-embed0"):
        assert open(os.path.join(sweep_dir, name, classifier.PARAMS_FILE), "rb").read() == shared


def test_invocations_started_together_train_the_classifier_once(tmp_path, tiny_dataset, monkeypatch):
    """--member I --of N started at once (a job array): one invocation trains, the others wait for its files."""
    config = tiny_config(tiny_dataset)
    sweep_dir = str(tmp_path / "sweep")
    model = classifier.create(config)
    size = config.data.image_size
    params = model.init(jax.random.key(0), np.zeros((1, size, size, 3), np.float32))["params"]
    accuracy = {"gender_accuracy": 0.75, "profession_accuracy": 0.5, "validation_images": 4}
    training, waiting, trainings = threading.Event(), threading.Event(), []

    def slow_train(config, log=print):
        trainings.append(1)
        training.set()
        waiting.wait(10)  # trains until the second invocation has found it training, however busy the machine
        return params, accuracy

    monkeypatch.setattr(classifier, "train", slow_train)
    results, logs = {}, []
    first = threading.Thread(target=lambda: results.setdefault("first", sweep.ensure_classifier(
        config, sweep_dir, log=lambda *a: None, poll_s=0.02)))
    first.start()
    training.wait(10)
    results["second"] = sweep.ensure_classifier(config, sweep_dir, log=logging_and_signalling(logs, waiting),
                                                poll_s=0.02)
    first.join()
    assert trainings == [1] and results["first"] == results["second"] == accuracy
    assert logs[0].startswith("waiting for the sweep's attribute classifier")
    assert not os.path.exists(os.path.join(sweep_dir, sweep.CLASSIFIER_LOCK))


def test_a_rerun_skips_finished_members(finished_sweep, monkeypatch):
    config, sweep_dir, summary, _ = finished_sweep

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for module, name in ((train, "train_and_evaluate"), (evaluate, "evaluate"), (probes, "run_probes"),
                         (classifier, "train")):
        monkeypatch.setattr(module, name, must_not_run)
    again = sweep.run_sweep(config, sweep_dir)
    assert again["leakage"]["members"] == summary["leakage"]["members"]


def test_train_only_trains_what_is_untrained_and_nothing_else(finished_sweep, tmp_path, monkeypatch):
    config, copy = changed_copy(finished_sweep, tmp_path)
    shutil.rmtree(os.path.join(copy, "seed1-embed0"))  # a member never started
    os.remove(os.path.join(copy, classifier.PARAMS_FILE))  # and no classifier yet: the frontier needs one

    def must_not_run(*args, **kwargs):
        raise AssertionError("--train_only ran more than training")

    for module, name in ((evaluate, "evaluate"), (probes, "run_probes")):
        monkeypatch.setattr(module, name, must_not_run)
    classifiers, real_classifier = [], classifier.train
    monkeypatch.setattr(classifier, "train", lambda *a, **k: classifiers.append(1) or real_classifier(*a, **k))
    trained, real_train = [], train.train_and_evaluate
    monkeypatch.setattr(train, "train_and_evaluate", lambda c, workdir: trained.append(workdir) or real_train(c, workdir))
    lines = []
    assert sweep.run_sweep(config, copy, log=lines.append, train_only=True) is None
    member = os.path.join(copy, "seed1-embed0")
    assert trained == [member] and checkpoints.trained_to(member, config.train.num_steps)
    assert not os.path.exists(os.path.join(member, evaluate.REPORT_JSON))
    assert classifiers == [1] and os.path.exists(os.path.join(copy, classifier.PARAMS_FILE))
    assert "member 1/2 (seed0-embed0; 1/2 here): trained" in lines
    assert lines[-1] == "2 of 2 members trained; run the same command without --train_only to evaluate and probe them " \
                        "and write the summary"
    assert json.load(open(os.path.join(member, sweep.MEMBER_JSON)))["invocations"][0].keys() >= {"training_s"}


def _recording(monkeypatch, module, name: str) -> list[str]:
    """Wraps module.name(workdir, log) so that each call's workdir is appended to the returned list."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda workdir, log=print: calls.append(workdir) or real(workdir, log))
    return calls


def test_new_evaluation_settings_re_evaluate_without_retraining(finished_sweep, tmp_path, monkeypatch):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2  # the sweep was evaluated at the tiny config's 3 steps
    monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: pytest.fail("a trained member trained again"))
    evaluated = _recording(monkeypatch, evaluate, "evaluate")
    sweep.run_sweep(config, copy, log=lambda *a: None)
    assert len(evaluated) == 2
    for name in ("seed0-embed0", "seed1-embed0"):
        assert json.load(open(os.path.join(copy, name, evaluate.REPORT_JSON)))["config"]["steps"] == 2
        assert json.load(open(os.path.join(copy, name, probes.PROBES_JSON)))["steps"] == 2
        assert json.load(open(os.path.join(copy, name, "config.json")))["evaluate"]["steps"] == 2
        # Its stage times are recorded with the setting they were made at, for the ETA of later members.
        assert json.load(open(os.path.join(copy, name, sweep.MEMBER_JSON)))["invocations"][-1]["setting"]["evaluate"]["steps"] == 2


def test_aggregate_says_why_members_are_not_finished(finished_sweep, tmp_path):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2  # both members were read at 3 steps
    with pytest.raises(UserError, match="2 trained but evaluated or probed at other settings"):
        sweep.aggregate(config, copy, log=lambda *a: None)
    config.sweep.embed_seeds = (0, 1)  # two more members, not trained
    with pytest.raises(UserError, match=r"\(2 not trained to 6 steps, 2 trained but evaluated"):
        sweep.aggregate(config, copy, log=lambda *a: None)


def test_aggregating_one_member_says_its_intervals_hold_only_the_images(finished_sweep, tmp_path):
    config, copy = changed_copy(finished_sweep, tmp_path)
    os.remove(os.path.join(copy, "seed1-embed0", evaluate.REPORT_JSON))
    summary = sweep.aggregate(config, copy, log=lambda *a: None)
    assert summary["num_members"] == 1 and summary["num_planned"] == 2
    assert all(summary["words"][w]["tau"] is None for w in SEED_EVAL_WORDS)
    markdown = open(os.path.join(copy, "summary.md")).read()
    assert markdown.startswith("# Sweep summary: 1 of 2 members")
    assert "one member: its 95% intervals hold the images' sampling only" in markdown and "(tau -)" in markdown


def test_a_damaged_newest_checkpoint_says_how_to_repair_the_member(finished_sweep, tmp_path):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2  # so that the members are read again
    damage_checkpoint(os.path.join(copy, "seed0-embed0"), 6)
    with pytest.raises(UserError, match=r"seed0-embed0: its newest checkpoint \(step 6\) does not restore, so it was "
                                        r"read at step 3; move .*seed0-embed0/checkpoints/6 aside"):
        sweep.run_sweep(config, copy, log=lambda *a: None)
    # The advice works: with the damaged step moved aside, the member trains from step 3 to 6 and is read there.
    member = os.path.join(copy, "seed0-embed0")
    shutil.move(os.path.join(member, "checkpoints", "6"), str(tmp_path / "damaged-6"))
    sweep.run_sweep(config, copy, log=lambda *a: None)
    assert json.load(open(os.path.join(member, evaluate.REPORT_JSON)))["config"]["step"] == 6


def test_a_member_trained_otherwise_is_refused_not_pooled(finished_sweep, tmp_path):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.train.num_steps = 5  # the members were trained to 6 on a schedule ending there
    for step in (lambda: sweep.aggregate(config, copy, log=lambda *a: None),
                 lambda: sweep.run_sweep(config, copy, log=lambda *a: None)):
        with pytest.raises(UserError, match=r"holds a run with train.num_steps=6, not 5; resume with the same settings"):
            step()
    assert json.load(open(os.path.join(copy, "summary.json"))) == finished_sweep[2]  # nothing rewritten


def test_a_stage_time_is_kept_when_a_later_stage_is_stopped(finished_sweep, tmp_path, monkeypatch):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2

    def stopped(workdir, log=print):
        raise KeyboardInterrupt

    monkeypatch.setattr(probes, "run_probes", stopped)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(config, copy, log=lambda *a: None)
    last = json.load(open(os.path.join(copy, "seed0-embed0", sweep.MEMBER_JSON)))["invocations"][-1]
    assert last["evaluation_s"] > 0 and "probes_s" not in last and last["setting"]["evaluate"]["steps"] == 2


def test_a_new_sweep_classifier_re_reads_every_member_with_it(finished_sweep, tmp_path, monkeypatch):
    config, copy = changed_copy(finished_sweep, tmp_path)
    model, params, accuracy = classifier.load(copy, config)
    classifier.save(copy, jax.tree.map(lambda x: x * 1.01, params), accuracy)  # another instrument
    evaluated, probed = _recording(monkeypatch, evaluate, "evaluate"), _recording(monkeypatch, probes, "run_probes")
    sweep.run_sweep(config, copy, log=lambda *a: None)
    assert len(evaluated) == len(probed) == 2
    new = classifier.digest(copy)
    for name in ("seed0-embed0", "seed1-embed0"):
        assert classifier.digest(os.path.join(copy, name)) == new
        assert json.load(open(os.path.join(copy, name, evaluate.REPORT_JSON)))["classifier"]["digest"] == new
        assert json.load(open(os.path.join(copy, name, probes.PROBES_JSON)))["classifier_digest"] == new


def test_new_probe_counts_re_probe_without_re_evaluating(finished_sweep, tmp_path, monkeypatch):
    config, copy = changed_copy(finished_sweep, tmp_path)
    config.sweep.samples_per_alpha += 1
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("a current report was made again"))
    probed = _recording(monkeypatch, probes, "run_probes")
    sweep.run_sweep(config, copy, log=lambda *a: None)
    assert len(probed) == 2
    made = json.load(open(os.path.join(copy, "seed0-embed0", probes.PROBES_JSON)))
    assert made["counts"]["samples_per_alpha"] == config.sweep.samples_per_alpha
    assert {r["n"] for r in made["intervention"]} == {config.sweep.samples_per_alpha}


def test_reports_and_probes_go_stale_with_any_setting_their_images_depend_on(tmp_path, monkeypatch):
    config = tiny_config(str(tmp_path))
    workdir = str(tmp_path)
    monkeypatch.setattr(checkpoints, "checkpoint_steps", lambda w: [6])
    report = {"config": {"step": 6, **config.evaluate.to_dict()}}  # made before the sample settings were recorded
    made = {"step": 6, "seed": config.evaluate.seed, "sampler": config.evaluate.sampler, "steps": config.evaluate.steps}
    json.dump(report, open(os.path.join(workdir, evaluate.REPORT_JSON), "w"))
    json.dump(made, open(os.path.join(workdir, probes.PROBES_JSON), "w"))  # ... and before guidance and counts were
    assert sweep.report_current(workdir, config)
    assert not sweep.probes_current(workdir, config)  # the tiny counts are not those of the time before they were recorded
    with config.unlocked():
        config.sweep.update(records.PROBE_COUNTS_BEFORE_RECORDED)
    assert sweep.probes_current(workdir, config)
    for section, key, value in (("sample", "spacing", "uniform"), ("sample", "clip_x0", False),
                                ("evaluate", "guidance", 2.0)):
        changed = ml_collections.ConfigDict(config.to_dict())
        changed[section][key] = value
        assert not sweep.probes_current(workdir, changed), key
        assert not sweep.report_current(workdir, changed), key
    changed = ml_collections.ConfigDict(config.to_dict())
    changed.sweep.samples_per_alpha += 1
    assert sweep.report_current(workdir, changed) and not sweep.probes_current(workdir, changed)
    for key in records.IMAGE_COUNT_KEYS:  # the report's own image counts re-evaluate, and leave the probes
        changed = ml_collections.ConfigDict(config.to_dict())
        changed.evaluate[key] += 1
        assert not sweep.report_current(workdir, changed) and sweep.probes_current(workdir, changed), key
    del report["config"]["num_samples_man_woman"]  # made before man and woman had their own count
    json.dump(report, open(os.path.join(workdir, evaluate.REPORT_JSON), "w"))
    assert not sweep.report_current(workdir, config)


def test_member_of_splits_cover_every_member_once(tiny_dataset, tmp_path, monkeypatch):
    config = tiny_config(tiny_dataset)
    config.sweep.train_seeds, config.sweep.embed_seeds = (0, 1, 2), (0, 1)
    monkeypatch.setattr(sweep, "ensure_classifier", lambda *a, **k: {})
    ran = []
    monkeypatch.setattr(sweep, "run_member", lambda c, member, d, log: ran.append(member.name) or {})
    monkeypatch.setattr(sweep, "member_done", lambda c, member: member.name in ran)
    monkeypatch.setattr(sweep, "aggregate", lambda *a, **k: None)
    for of in (1, 4):
        ran.clear()
        for index in range(of):
            sweep.run_sweep(config, str(tmp_path / f"of{of}"), member_index=index, of=of, log=lambda *a: None)
        assert sorted(ran) == sorted(m.name for m in sweep.members(config, "x")) and len(ran) == 6


def test_eta_counts_only_the_stages_each_member_still_has_to_run(tmp_path, monkeypatch):
    config = tiny_config(str(tmp_path))
    config.sweep.train_seeds, config.sweep.embed_seeds = (0, 1, 2), (0,)
    grid = sweep.members(config, str(tmp_path))
    now = sweep.evaluation_cost_setting(sweep.member_config(config, grid[0]))
    # The report's unseen words (none in a member) and the probes' are kept apart.
    assert now["evaluate"]["num_unseen_words"] == 0 and now["probes"]["num_unseen_words"] == config.sweep.num_unseen_words
    before = {**now, "evaluate": {**now["evaluate"], "steps": now["evaluate"]["steps"] + 1}}
    for member, invocations in zip(grid, [
            [{"training_s": 600.0, "evaluation_s": 120.0, "probes_s": 60.0, "setting": now},
             {"evaluation_s": 480.0, "probes_s": 240.0}],  # at another setting (this one unrecorded): not counted
            [{"training_s": 0.3, "evaluation_s": 100.0, "probes_s": 80.0, "setting": now},  # an older re-evaluation record
             {"evaluation_s": 999.0, "setting": before}]]):  # at another setting: not counted
        os.makedirs(member.workdir)
        json.dump({"invocations": invocations}, open(os.path.join(member.workdir, sweep.MEMBER_JSON), "w"))
    to_run = {grid[1].name: ["evaluation_s", "probes_s"], grid[2].name: ["training_s", "evaluation_s", "probes_s"]}
    monkeypatch.setattr(sweep, "stages_to_run", lambda c, member: to_run.get(member.name, []))
    # Re-evaluation: median evaluation 110 s + median probes 70 s; training once at 600 s.
    assert sweep.eta_minutes(config, grid[1:2], grid) == pytest.approx(3.0)
    assert sweep.eta_minutes(config, grid[1:], grid) == pytest.approx(3.0 + 13.0)
    to_run[grid[2].name] = ["training_s", "sampling_s"]  # a stage never timed: no ETA rather than a wrong one
    assert sweep.eta_minutes(config, grid[1:], grid) is None


def test_member_minutes_sum_training_and_take_the_latest_evaluation(tmp_path):
    invocations = [{"training_s": 300.0, "evaluation_s": 120.0, "probes_s": 60.0},  # trained and evaluated
                   {"evaluation_s": 180.0},  # re-evaluated
                   {"training_s": 120.0}]  # trained further, not yet evaluated
    (tmp_path / sweep.MEMBER_JSON).write_text(json.dumps({"version": 2, "invocations": invocations}))
    minutes = sweep_summary.member_minutes(str(tmp_path))
    assert minutes["training"] == pytest.approx(420.0 / 60)
    assert (minutes["evaluation"], minutes["probes"]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert minutes["spent"] == pytest.approx((420.0 + 300.0 + 60.0) / 60)
    # A version 1 record also holds the stages an invocation skipped, as a second or less: not counted.
    invocations[1].update(training_s=0.2, probes_s=0.4)
    (tmp_path / sweep.MEMBER_JSON).write_text(json.dumps({"invocations": invocations}))
    assert sweep_summary.member_minutes(str(tmp_path)) == minutes
    assert sweep_summary.member_minutes(str(tmp_path / "missing")) == {"training": 0.0, "evaluation": 0.0,
                                                                       "probes": 0.0, "spent": 0.0}


def test_member_index_out_of_range_is_a_user_error(tiny_dataset, tmp_path):
    from jaxdiff.common.errors import UserError

    with pytest.raises(UserError, match="need 0 <= member < of"):
        sweep.run_sweep(tiny_config(tiny_dataset), str(tmp_path), member_index=2, of=2)


def test_keep_period_keeps_about_the_asked_number_of_checkpoints():
    from configs import toy

    config = toy.get_config()
    period = sweep.keep_period(config.train, 5)
    assert period % config.train.checkpoint_every == 0
    assert config.train.num_steps // period == 5


def test_a_seed_named_twice_is_a_user_error(tmp_path):
    config = tiny_config(str(tmp_path))
    config.sweep.train_seeds = (0, 1, 0)
    with pytest.raises(UserError, match=r"sweep.train_seeds=\(0, 1, 0\) names a seed twice"):
        sweep.members(config, str(tmp_path))


def test_recipe_check_names_the_difference_and_skips_entries_older_runs_lack():
    saved = ml_collections.ConfigDict({"train": {"learning_rate": 1e-3}, "model": {"ch": 32}})
    current = ml_collections.ConfigDict({"train": {"learning_rate": 1e-3, "ema_decay": 0.999}, "model": {"ch": 32}})
    workdirs.check_same_architecture(saved, current, "run", ("model", "train.learning_rate", "train.ema_decay"))
    current.model.ch = 64
    with pytest.raises(UserError, match=r"'run' holds a run with model.ch=32, not 64"):
        workdirs.check_same_architecture(saved, current, "run", ("model", "train.ema_decay"))

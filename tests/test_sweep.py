"""The sweep on the tiny config: a 2 x 1 grid end to end, resuming, splitting, one classifier."""

import json
import os
import shutil
import threading
import time

import jax
import ml_collections
import numpy as np
import pytest

from helpers import REPO, damage_checkpoint, run_cli, tiny_config
from jaxdiff import (checkpoints, classifier, embed, evaluate, pooling, probes, sweep, sweep_summary, train, vectors,
                     workdirs)
from jaxdiff.classes import SEED_EVAL_WORDS, TRAIN_WORDS
from jaxdiff.errors import UserError


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, tiny_dataset):
    """The tiny 2 x 1 sweep, run once; the classifier's training is counted."""
    config = tiny_config(tiny_dataset)
    sweep_dir = str(tmp_path_factory.mktemp("sweep") / "tiny-sweep")
    calls = []
    real_train = classifier.train

    def counting_train(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    classifier.train = counting_train
    try:
        summary = sweep.run_sweep(config, sweep_dir)
    finally:
        classifier.train = real_train
    return config, sweep_dir, summary, len(calls)


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
    counts = {w: ([r["words"][w]["women"] for r in reports], [r["words"][w]["n"] for r in reports]) for w in SEED_EVAL_WORDS}
    assert all(n == [config.sweep.member_samples] * 2 for _, n in counts.values())
    for word in SEED_EVAL_WORDS:
        assert on_disk["words"][word]["share_woman"] == pytest.approx(pooling.pooled_share(*counts[word])["estimate"])
    contrast = pooling.pooled_difference(*counts["nurse"], *counts["philosopher"])
    assert on_disk["leakage"]["contrast"] == pytest.approx(contrast["estimate"])
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
    training, trainings = threading.Event(), []

    def slow_train(config, log=print):
        trainings.append(1)
        training.set()
        time.sleep(0.5)
        return params, accuracy

    monkeypatch.setattr(classifier, "train", slow_train)
    results, logs = {}, []
    first = threading.Thread(target=lambda: results.setdefault("first", sweep.ensure_classifier(
        config, sweep_dir, log=lambda *a: None, poll_s=0.02)))
    first.start()
    training.wait(10)
    results["second"] = sweep.ensure_classifier(config, sweep_dir, log=logs.append, poll_s=0.02)
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
    config, copy = _changed_copy(finished_sweep, tmp_path)
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


def _changed_copy(finished_sweep, tmp_path) -> tuple[ml_collections.ConfigDict, str]:
    """A copy of the finished sweep and a copy of its config, for a test to change one setting."""
    config, sweep_dir, _, _ = finished_sweep
    return ml_collections.ConfigDict(config.to_dict()), shutil.copytree(sweep_dir, str(tmp_path / "sweep"))


def _recording(monkeypatch, module, name: str) -> list[str]:
    """Wraps module.name(workdir, log) so that each call's workdir is appended to the returned list."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda workdir, log=print: calls.append(workdir) or real(workdir, log))
    return calls


def test_new_evaluation_settings_re_evaluate_without_retraining(finished_sweep, tmp_path, monkeypatch):
    config, copy = _changed_copy(finished_sweep, tmp_path)
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
    config, copy = _changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2  # both members were read at 3 steps
    with pytest.raises(UserError, match="2 trained but evaluated or probed at other settings"):
        sweep.aggregate(config, copy, log=lambda *a: None)
    config.sweep.embed_seeds = (0, 1)  # two more members, not trained
    with pytest.raises(UserError, match=r"\(2 not trained to 6 steps, 2 trained but evaluated"):
        sweep.aggregate(config, copy, log=lambda *a: None)


def test_aggregating_one_member_says_its_intervals_hold_only_the_images(finished_sweep, tmp_path):
    config, copy = _changed_copy(finished_sweep, tmp_path)
    os.remove(os.path.join(copy, "seed1-embed0", evaluate.REPORT_JSON))
    summary = sweep.aggregate(config, copy, log=lambda *a: None)
    assert summary["num_members"] == 1 and summary["num_planned"] == 2
    assert all(summary["words"][w]["tau"] is None for w in SEED_EVAL_WORDS)
    markdown = open(os.path.join(copy, "summary.md")).read()
    assert markdown.startswith("# Sweep summary: 1 of 2 members")
    assert "one member: its 95% intervals hold the images' sampling only" in markdown and "(tau -)" in markdown


def test_a_damaged_newest_checkpoint_says_how_to_repair_the_member(finished_sweep, tmp_path):
    config, copy = _changed_copy(finished_sweep, tmp_path)
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
    config, copy = _changed_copy(finished_sweep, tmp_path)
    config.train.num_steps = 5  # the members were trained to 6 on a schedule ending there
    for step in (lambda: sweep.aggregate(config, copy, log=lambda *a: None),
                 lambda: sweep.run_sweep(config, copy, log=lambda *a: None)):
        with pytest.raises(UserError, match=r"holds a run with train.num_steps=6, not 5; resume with the same settings"):
            step()
    assert json.load(open(os.path.join(copy, "summary.json"))) == finished_sweep[2]  # nothing rewritten


def test_a_stage_time_is_kept_when_a_later_stage_is_stopped(finished_sweep, tmp_path, monkeypatch):
    config, copy = _changed_copy(finished_sweep, tmp_path)
    config.evaluate.steps = 2

    def stopped(workdir, log=print):
        raise KeyboardInterrupt

    monkeypatch.setattr(probes, "run_probes", stopped)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(config, copy, log=lambda *a: None)
    last = json.load(open(os.path.join(copy, "seed0-embed0", sweep.MEMBER_JSON)))["invocations"][-1]
    assert last["evaluation_s"] > 0 and "probes_s" not in last and last["setting"]["evaluate"]["steps"] == 2


def test_a_new_sweep_classifier_re_reads_every_member_with_it(finished_sweep, tmp_path, monkeypatch):
    config, copy = _changed_copy(finished_sweep, tmp_path)
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
    config, copy = _changed_copy(finished_sweep, tmp_path)
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
        config.sweep.update(sweep.PROBE_COUNTS_BEFORE_RECORDED)
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
    for key in sweep.IMAGE_COUNT_KEYS:  # the report's own image counts re-evaluate, and leave the probes
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
                   {"training_s": 0.2, "evaluation_s": 180.0, "probes_s": 0.4},  # re-evaluated (older record)
                   {"training_s": 120.0}]  # trained further, not yet evaluated
    (tmp_path / sweep.MEMBER_JSON).write_text(json.dumps({"invocations": invocations}))
    minutes = sweep_summary.member_minutes(str(tmp_path))
    assert minutes["training"] == pytest.approx(420.2 / 60)
    assert (minutes["evaluation"], minutes["probes"]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert minutes["spent"] == pytest.approx((420.2 + 300.0 + 60.4) / 60)
    assert sweep_summary.member_minutes(str(tmp_path / "missing")) == {"training": 0.0, "evaluation": 0.0,
                                                                       "probes": 0.0, "spent": 0.0}


def test_member_index_out_of_range_is_a_user_error(tiny_dataset, tmp_path):
    from jaxdiff.errors import UserError

    with pytest.raises(UserError, match="need 0 <= member < of"):
        sweep.run_sweep(tiny_config(tiny_dataset), str(tmp_path), member_index=2, of=2)


def test_keep_period_keeps_about_the_asked_number_of_checkpoints():
    from configs import toy

    config = toy.get_config()
    period = sweep.keep_period(config.train, 5)
    assert period % config.train.checkpoint_every == 0
    assert config.train.num_steps // period == 5


def test_intervention_moves_the_she_he_score_by_the_asked_amounts():
    table = embed.build_table(vectors.load_source("word2vec-subset"), 128, 0)
    g = embed.GenderDirections.of(table).she_he_raw
    alphas = probes.intervention_alphas(table, 7)
    reach = max(abs(float(table.raw_vector(w) @ g)) for w in TRAIN_WORDS)
    assert len(alphas) == 7 and alphas[0] == pytest.approx(-reach) and alphas[-1] == pytest.approx(reach)
    for word in SEED_EVAL_WORDS:
        base = float(table.raw_vector(word) @ g)
        for alpha in alphas:
            moved = probes.intervened_vector(table, word, float(alpha))
            assert float(moved @ g) - base == pytest.approx(alpha, abs=1e-6)
            # Only the gender component moves: the rest of the vector is the word's own.
            rest = moved - float(moved @ g) * g
            assert np.allclose(rest, table.raw_vector(word) - base * g, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The fit frontier (jaxdiff.frontier): members re-read under other evaluation settings.


def test_frontier_pools_each_setting_and_caches_member_counts(finished_sweep, monkeypatch):
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    settings = [frontier.Setting.parse(s) for s in ("ema:dpmpp2m:2:8", "raw:ddim:3:8")]
    reference = frontier.Setting.parse("ema:ddpm:4:8")
    result = frontier.study(config, [sweep_dir], settings, reference, log=lambda *a: None)
    assert [r["setting"] for r in result["rows"]] == ["ema:dpmpp2m:2:8", "raw:ddim:3:8"]
    for row in result["rows"]:
        assert row["members"] == 2 and row["num_steps"] == 6
        for word in SEED_EVAL_WORDS:
            entry = row["words"][word]
            assert len(entry["members"]) == 2 and all(s in np.arange(9) / 8 for s in entry["members"])
            assert entry["abs_deviation"] == pytest.approx(abs(entry["share_woman"] - 0.5))
            assert "minus_reference" in entry
        assert row["member_minutes"] is None  # neither is the members' own setting, whose minutes were recorded
    for name in ("seed0-embed0", "seed1-embed0"):
        cached = _round_file(sweep_dir, name, "raw-ddim-3", 0)
        assert cached["step"] == 6 and all(cached["words"][w]["n"] == 8 for w in SEED_EVAL_WORDS)
    # A second study reads the cached counts: nothing is sampled again, and the table is the same.
    monkeypatch.setattr(workdirs.TrainedRun, "image_sampler", lambda self: pytest.fail("sampled again"))
    again = frontier.study(config, [sweep_dir], settings, reference, log=lambda *a: None)
    assert again["rows"][1]["words"] == result["rows"][1]["words"]
    text = frontier.render_markdown(again)
    assert "raw:ddim:3:8" in text and "ema:ddpm:4:8" in text


def _round_file(sweep_dir: str, member: str, instrument: str, round_: int) -> dict:
    return json.load(open(os.path.join(sweep_dir, member, "frontier", instrument, f"round-{round_:03d}.json")))


def test_frontier_grows_a_round_at_a_time(finished_sweep, monkeypatch):
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    own = config.evaluate.sampler
    study = lambda text, **kw: frontier.study(config, [sweep_dir], [frontier.Setting.parse(t) for t in text.split()],  # noqa: E731
                                              None, log=lambda *a: None, round_images=4, **kw)
    # The members' own evaluation setting (`own` at the tiny config's 3 steps), so minutes per member are known.
    first = study(f"ema:{own}:3:2")
    sampled, interim = [], []
    real = frontier._sample_counts

    def recording(run_, sampler, params, setting, round_, size, *rest):
        sampled.append((os.path.basename(run_.workdir), round_, size))
        return real(run_, sampler, params, setting, round_, size, *rest)

    monkeypatch.setattr(frontier, "_sample_counts", recording)
    grown = study(f"ema:{own}:3:10", after_round=interim.append)
    # 10 images = rounds of 4, 4 and 2, each over both members in turn; round 0 held only 2 images, so it is redone.
    assert sampled == [("seed0-embed0", 0, 4), ("seed1-embed0", 0, 4), ("seed0-embed0", 1, 4), ("seed1-embed0", 1, 4),
                       ("seed0-embed0", 2, 2), ("seed1-embed0", 2, 2)]
    assert [t["rounds"] for t in interim] == [1, 2] and [t["rows"][0]["images"] for t in interim] == [4, 8]
    assert grown["rows"][0]["images"] == 10 and grown["rounds"] == 3
    # Verdicts before the planned number of images are marked interim, in the data and the table.
    assert [t["rows"][0]["interim"] for t in interim] == [True, True] and not grown["rows"][0]["interim"]
    assert "(interim)" in frontier.render_markdown(interim[-1])
    assert "(interim)" not in frontier.render_markdown(grown)
    assert grown["rows"][0]["member_minutes"] > grown["rows"][0]["training_minutes"] > 0
    # The first images do not depend on how many were asked for: round 0 of 4 begins with the 2 drawn before.
    redrawn = _round_file(sweep_dir, "seed0-embed0", f"ema-{own}-3", 0)
    assert [first["rows"][0]["words"][w]["members"][0] * 2 for w in SEED_EVAL_WORDS] == [
        sum(redrawn["words"][w]["is_woman"][:2]) for w in SEED_EVAL_WORDS]
    for word in SEED_EVAL_WORDS:
        rounds = [_round_file(sweep_dir, "seed0-embed0", f"ema-{own}-3", r)["words"][word] for r in range(3)]
        assert grown["rows"][0]["words"][word]["members"][0] == pytest.approx(sum(c["women"] for c in rounds) / 10)
    # Fewer images of the same sampler, and a second setting of other size, are served by the rounds at hand.
    sampled.clear()
    both = study(f"ema:{own}:3:6 ema:{own}:3:10")
    assert sampled == [] and [r["images"] for r in both["rows"]] == [6, 10]
    assert both["rows"][1]["words"] == grown["rows"][0]["words"]
    # Counts made with another classifier are made again.
    for member in ("seed0-embed0", "seed1-embed0"):
        path = os.path.join(sweep_dir, member, "frontier", f"ema-{own}-3", "round-002.json")
        with open(path) as f:
            cached = json.load(f)
        with open(path, "w") as f:
            json.dump({**cached, "classifier": "another"}, f)
    study(f"ema:{own}:3:10")
    assert sampled == [("seed0-embed0", 2, 2), ("seed1-embed0", 2, 2)]
    # Rounds written before the sample settings were recorded hold the defaults of then, which these are;
    # a round drawn with another timestep spacing is drawn again.
    sampled.clear()
    for member, spacing in (("seed0-embed0", None), ("seed1-embed0", "uniform")):
        path = os.path.join(sweep_dir, member, "frontier", f"ema-{own}-3", "round-001.json")
        with open(path) as f:
            cached = {k: v for k, v in json.load(f).items() if k not in evaluate.SAMPLING_KEYS}
        with open(path, "w") as f:
            json.dump({**cached, "spacing": spacing} if spacing else cached, f)
    assert config.sample.spacing == sweep.SAMPLING_BEFORE_RECORDED["spacing"] != "uniform"
    study(f"ema:{own}:3:10")
    assert sampled == [("seed1-embed0", 1, 4)]
    # Every (word, image) has its own noise index, whatever the number of images: blocks never overlap.
    indices = [frontier.first_index(w, j // 4, 4) + j % 4 for w in range(len(SEED_EVAL_WORDS)) for j in range(12)]
    assert sorted(indices) == list(range(36))
    assert [frontier.first_index(w, 0, 100) for w in range(3)] == [0, 100, 200]  # n = 100: word i from i * n


def _copy_without_frontier(sweep_dir: str, tmp_path) -> str:
    """A copy of the session's sweep that a test may change, without the rounds other tests cached."""
    return shutil.copytree(sweep_dir, str(tmp_path / "sweep"), ignore=shutil.ignore_patterns("frontier"))


def test_frontier_rounds_stay_valid_when_the_newest_checkpoint_is_damaged(finished_sweep, tmp_path, monkeypatch):
    """Restore falls back to an older checkpoint; its rounds record both steps and are not sampled again."""
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    copy = _copy_without_frontier(sweep_dir, tmp_path)  # these rounds must be sampled from the older checkpoint
    member = os.path.join(copy, "seed0-embed0")
    steps = checkpoints.checkpoint_steps(member)
    damage_checkpoint(member, steps[-1])
    sampled = []
    real = frontier._sample_counts

    def recording(run_, *rest):
        sampled.append(os.path.basename(run_.workdir))
        return real(run_, *rest)

    monkeypatch.setattr(frontier, "_sample_counts", recording)
    study = lambda: frontier.study(config, [copy], [frontier.Setting.parse("ema:dpmpp2m:3:2")], None,  # noqa: E731
                                   log=lambda *a: None, round_images=4)
    study()
    cached = _round_file(copy, "seed0-embed0", "ema-dpmpp2m-3", 0)
    assert (cached["newest"], cached["step"]) == (steps[-1], steps[-2])
    sampled.clear()
    study()
    assert sampled == []
    # A round written before "newest" was recorded counts by its step (the newest checkpoint, when healthy).
    healthy = os.path.join(copy, "seed1-embed0", "frontier", "ema-dpmpp2m-3", "round-000.json")
    old_style = {k: v for k, v in json.load(open(healthy)).items() if k != "newest"}
    json.dump(old_style, open(healthy, "w"))
    study()
    assert sampled == []
    # The damaged checkpoint repaired: a new setting samples the newest again, and a table that would
    # compare rounds of two checkpoints of one member refuses, naming it.
    shutil.copyfile(os.path.join(sweep_dir, "seed0-embed0", "checkpoints", str(steps[-1]), "state", "_METADATA"),
                    os.path.join(member, "checkpoints", str(steps[-1]), "state", "_METADATA"))
    with pytest.raises(UserError, match=r"seed0-embed0: its frontier rounds were sampled from checkpoints"):
        frontier.study(config, [copy], [frontier.Setting.parse("ema:dpmpp2m:2:2")],
                       frontier.Setting.parse("ema:dpmpp2m:3:2"), log=lambda *a: None, round_images=4)


def test_frontier_pools_a_member_whose_checkpoints_are_gone_from_its_rounds(finished_sweep, tmp_path, monkeypatch):
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    copy = _copy_without_frontier(sweep_dir, tmp_path)
    settings, reference = [frontier.Setting.parse("ema:ddim:3:4")], frontier.Setting.parse("ema:dpmpp2m:3:4")
    study = lambda: frontier.study(config, [copy], settings, reference, log=lambda *a: None,  # noqa: E731
                                   words=["person"])
    first = study()
    member = os.path.join(copy, "seed1-embed0")
    assert not frontier.recorded_only(member, config.train.num_steps)  # checkpoints still there
    shutil.rmtree(os.path.join(member, "checkpoints"))
    assert frontier.recorded_only(member, config.train.num_steps)
    assert not frontier.recorded_only(member, config.train.num_steps + 1)  # its rounds were drawn at fewer steps
    monkeypatch.setattr(frontier, "_sample_counts", lambda *a, **k: pytest.fail("sampled again"))
    again = study()
    assert again["rows"][0]["members"] == 2
    assert again["rows"][0]["words"]["person"] == first["rows"][0]["words"]["person"]
    # A round it does not hold cannot be drawn without parameters: the error names the member and the remedy.
    monkeypatch.undo()  # the other member, with its checkpoints, samples what it lacks
    with pytest.raises(UserError, match=r"seed1-embed0 has no checkpoints left, and its recorded round 0 of "
                                        r"ema-ddim-3 lacks philosopher, nurse .*delete .*seed1-embed0/frontier .*--train_only"):
        frontier.study(config, [copy], settings, reference, log=lambda *a: None)


def test_frontier_narrowed_to_a_word_samples_it_alone_with_the_same_images(finished_sweep, tmp_path, monkeypatch):
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    narrow_dir, wide_dir = (shutil.copytree(sweep_dir, str(tmp_path / name), ignore=shutil.ignore_patterns("frontier"))
                            for name in ("narrow", "wide"))
    sampled = []
    real = frontier._sample_counts

    def recording(run_, sampler, params, setting, round_, size, round_images, clf, log, words):
        sampled.append((os.path.basename(run_.workdir), setting.sampler, tuple(words)))
        return real(run_, sampler, params, setting, round_, size, round_images, clf, log, words)

    monkeypatch.setattr(frontier, "_sample_counts", recording)
    settings, reference = [frontier.Setting.parse("ema:ddim:3:4")], frontier.Setting.parse("ema:dpmpp2m:3:4")
    study = lambda where, words: frontier.study(config, [where], settings, reference, log=lambda *a: None,  # noqa: E731
                                                words=words)
    narrow = study(narrow_dir, ["person"])
    assert len(sampled) == 4 and {words for *_, words in sampled} == {("person",)}  # 2 members x 2 settings
    row = narrow["rows"][0]
    assert list(row["words"]) == ["person"] and narrow["words"] == ["person"]
    assert row["contrast"] is None and row["fits"] is None and "minus_reference" in row["words"]["person"]
    assert row["agreement"] in ("agrees", "differs", "undecided")
    path = frontier.write_outputs(narrow_dir, narrow)
    assert path.endswith("frontier-person.md") and not os.path.exists(os.path.join(narrow_dir, "frontier.md"))
    text = open(path).read()
    assert "samples person only" in text and "| - | - |" in text and "person share (tau)" in text
    assert "nurse share" not in text
    # A study of every word on the same rounds samples only the words they lack...
    sampled.clear()
    widened = study(narrow_dir, list(SEED_EVAL_WORDS))
    assert len(sampled) == 4 and {words for *_, words in sampled} == {("philosopher", "nurse")}
    assert widened["rows"][0]["contrast"] is not None and widened["rows"][0]["fits"] is not None
    # ... and a word's images do not depend on which words are studied with it: the same readings as a
    # study of every word from scratch, image by image.
    sampled.clear()
    study(wide_dir, list(SEED_EVAL_WORDS))
    assert len(sampled) == 4 and {words for *_, words in sampled} == {tuple(SEED_EVAL_WORDS)}
    for member in ("seed0-embed0", "seed1-embed0"):
        for instrument in ("ema-ddim-3", "ema-dpmpp2m-3"):
            grown = json.load(open(os.path.join(narrow_dir, member, "frontier", instrument, "round-000.json")))
            fresh = json.load(open(os.path.join(wide_dir, member, "frontier", instrument, "round-000.json")))
            assert list(grown["words"]) == list(SEED_EVAL_WORDS)
            for word in SEED_EVAL_WORDS:
                assert grown["words"][word]["is_woman"] == fresh["words"][word]["is_woman"]
                # Each image's p(woman) is kept, and its threshold gives the recorded reading.
                p_woman = np.asarray(grown["words"][word]["p_woman"])
                assert p_woman.shape == (len(grown["words"][word]["is_woman"]),)
                np.testing.assert_array_equal(p_woman > 0.5, np.asarray(grown["words"][word]["is_woman"]) == 1)
    # A narrow study reads a wider one's rounds: nothing is sampled.
    sampled.clear()
    assert study(wide_dir, ["nurse"])["rows"][0]["words"]["nurse"] == widened["rows"][0]["words"]["nurse"]
    assert sampled == []



@pytest.mark.slow
def test_frontier_command_line_prints_and_writes_the_narrow_table(finished_sweep, tmp_path):
    config, sweep_dir, _, _ = finished_sweep
    copy = _copy_without_frontier(sweep_dir, tmp_path)
    result = run_cli("jaxdiff.frontier", "--config=configs/tiny.py", f"--config.data.dir={config.data.dir}",
                     f"--workdir={copy}", "--words=person", "--settings=ema:ddim:3:2", "--reference=ema:dpmpp2m:3:2")
    assert result.returncode == 0, result.stderr[-2000:]
    table = os.path.join(copy, "frontier-person.md")
    assert open(table).read() in result.stdout and result.stdout.rstrip().endswith(f"{table})")
    written = json.load(open(os.path.join(copy, "frontier-person.json")))
    assert written["words"] == ["person"] and [r["setting"] for r in written["rows"]] == ["ema:ddim:3:2"]
    assert not os.path.exists(os.path.join(copy, "frontier.md"))

def test_frontier_words_must_be_trained_words():
    from jaxdiff import frontier

    assert frontier.check_words(["nurse", "person"]) == ["person", "nurse"]  # the fixed order, whatever is asked
    for words in (["doctor"], [], ["person", "Nurse"]):
        with pytest.raises(UserError, match="name one or more of them, e.g. --words=person"):
            frontier.check_words(words)
    assert frontier.output_names(SEED_EVAL_WORDS) == ("frontier.json", "frontier.md")
    assert frontier.output_names(["person", "nurse"]) == ("frontier-person-nurse.json", "frontier-person-nurse.md")


def test_frontier_comparisons_are_interim_while_the_reference_is(finished_sweep, tmp_path):
    from jaxdiff import frontier

    config, sweep_dir, _, _ = finished_sweep
    copy = _copy_without_frontier(sweep_dir, tmp_path)
    tables = []
    final = frontier.study(config, [copy], [frontier.Setting.parse("ema:ddim:3:2")],
                           frontier.Setting.parse("ema:dpmpp2m:3:4"), log=lambda *a: None, round_images=2,
                           after_round=tables.append)
    # After round 1 the row has its 2 planned images but the reference only 2 of its 4.
    assert [t["rows"][0]["images"] for t in tables] == [2] and tables[0]["rows"][0]["interim"]
    assert final["rows"][0]["images"] == 2 and not final["rows"][0]["interim"]


def _counts(women_by_member: list[int], n: int) -> list[dict]:
    return [{"words": {w: {"women": k, "n": n} for w in SEED_EVAL_WORDS}, "seconds_per_image": 0.01}
            for k in women_by_member]


def test_frontier_fit_and_agreement_on_known_counts():
    from jaxdiff import frontier

    balanced = frontier.pool_setting(_counts([200, 200, 200], 400), _counts([200, 200, 200], 400))
    for entry in balanced["words"].values():
        assert entry["share_woman"] == pytest.approx(0.5) and entry["tau"] == 0.0
        assert entry["minus_reference"]["estimate"] == pytest.approx(0.0)
    assert balanced["fits"]
    # 400 images a member and 3 members: +-2 points is not yet shown (the difference's SE is 2 points).
    assert balanced["agreement"] == "undecided"
    many = frontier.pool_setting(_counts([2000] * 9, 4000), _counts([2000] * 9, 4000))
    assert many["agreement"] == "agrees" and many["words"]["nurse"]["minus_reference"]["tost_p_value"] < 0.05
    # The small-sample (HKSJ, t on 8 df) test beside it: the same estimate, a wider interval, a larger p.
    nurse = many["words"]["nurse"]["minus_reference"]
    assert nurse["hksj"]["ci95"][1] > nurse["ci95"][1] and nurse["hksj"]["tost_p_value"] > nurse["tost_p_value"]
    assert "## Sensitivity: few members" in frontier.render_markdown(
        {"rows": [dict(many, sweep="s", setting="ema:ddpm:200", members=9, images=4000, num_steps=1,
                       member_minutes=None)], "reference": "ema:ddpm:1000", "fit_limit": 0.05,
         "agreement_limit": 0.02, "rounds": 40, "round_images": 100})
    assert balanced["contrast"]["estimate"] == pytest.approx(0.0) and balanced["contrast"]["verdict"] == "no leakage"
    # Members at 30%, 50%, 70%: the mean is still 50%, but tau (about 0.16) is far above the 0.05 limit.
    spread = frontier.pool_setting(_counts([120, 200, 280], 400), None)
    assert spread["words"]["nurse"]["share_woman"] == pytest.approx(0.5, abs=1e-9)
    assert spread["max_tau"] == pytest.approx(np.sqrt(np.var([0.3, 0.5, 0.7], ddof=1) - 0.25 / 400), rel=0.05)
    assert not spread["fits"] and "agreement" not in spread
    # Every member 10 points low, exactly: no tau, but the fit fails on |share - 0.5| and agreement on the shift.
    shifted = frontier.pool_setting(_counts([160, 160, 160], 400), _counts([200, 200, 200], 400))
    assert shifted["max_abs_deviation"] == pytest.approx(0.1) and not shifted["fits"]
    assert shifted["max_abs_minus_reference"] == pytest.approx(0.1)
    assert shifted["agreement"] == "differs"
    # Every member shifted alike: the difference has no spread between members (Cochran's Q = 0), and
    # the contrast nurse - philosopher is the reference's exactly.
    assert shifted["words"]["nurse"]["minus_reference"]["tau"] == 0.0
    assert shifted["words"]["nurse"]["minus_reference"]["heterogeneity_p_value"] == pytest.approx(1.0)
    assert shifted["contrast"]["minus_reference"]["estimate"] == pytest.approx(0.0, abs=1e-12)
    # Only nurse 10 points low: the contrast moves by -10 points against the reference, which differs;
    # its standard error adds the four shares' binomial variances (k + 0.5 of n + 1).
    nurse_low = _counts([200, 200, 200], 400)
    for row in nurse_low:
        row["words"]["nurse"] = {"women": 160, "n": 400}
    moved = frontier.pool_setting(nurse_low, _counts([200, 200, 200], 400))["contrast"]["minus_reference"]
    assert moved["estimate"] == pytest.approx(-0.1) and moved["verdict"] == "differs"
    member_variance = 3 * (200.5 / 401) * (200.5 / 401) / 400 + (160.5 / 401) * (240.5 / 401) / 400
    assert moved["ci95"][1] - moved["estimate"] == pytest.approx(1.959964 * np.sqrt(member_variance / 3), rel=1e-4)
    # nurse at 70% and philosopher at 50% in every member: a 20-point contrast, far beyond +-5 points.
    leaking = _counts([200, 200, 200], 400)
    for row in leaking:
        row["words"]["nurse"] = {"women": 280, "n": 400}
    contrast = frontier.pool_setting(leaking, None)["contrast"]
    assert contrast["estimate"] == pytest.approx(0.2) and contrast["verdict"] == "leakage"
    # One member: no spread between members to estimate, so the fit is unknown, not "yes".
    alone = frontier.pool_setting(_counts([200], 400), None)
    assert alone["max_tau"] is None and alone["fits"] is None
    assert frontier.pool_setting(_counts([100], 400), None)["fits"] is False  # 25 points off needs no tau to fail
    table = frontier.render_markdown({"rows": [dict(alone, sweep="s", setting="ema:ddpm:200", members=1, images=400,
                                                    num_steps=1, member_minutes=None)], "reference": None,
                                      "fit_limit": 0.05, "agreement_limit": 0.02, "rounds": 4, "round_images": 100})
    assert "| 50.0% (-) |" in table and "| - | one member: unknown |" in table


@pytest.mark.parametrize("text, message", [("best:ddpm:10", "PARAMS is ema or raw"), ("ema:euler:10", "unknown sampler"),
                                           ("ema:ddpm:ten", "whole numbers"), ("ema:ddpm:0", "at least 1"),
                                           ("ema:ddpm", "expected PARAMS:SAMPLER:STEPS")])
def test_frontier_setting_errors_say_the_format(text, message):
    from jaxdiff import frontier
    from jaxdiff.errors import UserError

    with pytest.raises(UserError, match=message):
        frontier.Setting.parse(text)
    assert frontier.Setting.parse("raw:ddpm:1000:100") == frontier.Setting("raw", "ddpm", 1000, 100)


@pytest.mark.parametrize("settings, reference, message", [
    ([], None, "--settings names no setting"),
    (["ema:ddpm:1000:1200"], "ema:ddpm:1000", "one sampler with other numbers of images")])
def test_frontier_refuses_studies_it_cannot_compare(settings, reference, message, tmp_path):
    from jaxdiff import frontier

    with pytest.raises(UserError, match=message):  # refused before any sweep directory is read
        frontier.study(ml_collections.ConfigDict(), [str(tmp_path / "none")], [frontier.Setting.parse(s) for s in settings],
                       frontier.Setting.parse(reference) if reference else None, log=lambda *a: None)


def test_frontier_refuses_a_sweep_whose_members_were_trained_differently(finished_sweep, tmp_path):
    from jaxdiff import frontier

    config, copy = _changed_copy(finished_sweep, tmp_path)
    path = os.path.join(copy, "seed1-embed0", "config.json")
    saved = json.load(open(path))
    saved["train"]["learning_rate"] *= 2
    json.dump(saved, open(path, "w"))
    with pytest.raises(UserError, match=r"seed1-embed0' holds a run with train.learning_rate=.*its sweep's first member"):
        frontier.study(config, [copy], [frontier.Setting.parse("ema:ddpm:2:2")], None, log=lambda *a: None)


def test_read_with_the_sweep_classifier_falls_back_to_the_members_copy_for_older_counts(tmp_path):
    member = tmp_path / "sweep" / "seed0-embed0"
    member.mkdir(parents=True)
    (tmp_path / "sweep" / classifier.PARAMS_FILE).write_bytes(b"the sweep's")
    (member / classifier.PARAMS_FILE).write_bytes(b"the sweep's")
    ours = classifier.digest(str(tmp_path / "sweep"))
    assert sweep._read_with_sweep_classifier(None, str(member))  # no digest recorded: the copy the member holds
    assert sweep._read_with_sweep_classifier(ours, str(member)) and not sweep._read_with_sweep_classifier("other", str(member))
    (member / classifier.PARAMS_FILE).write_bytes(b"another")
    assert not sweep._read_with_sweep_classifier(None, str(member))


def test_a_seed_named_twice_is_a_user_error(tmp_path):
    config = tiny_config(str(tmp_path))
    config.sweep.train_seeds = (0, 1, 0)
    with pytest.raises(UserError, match=r"sweep.train_seeds=\(0, 1, 0\) names a seed twice"):
        sweep.members(config, str(tmp_path))


def test_frontier_defaults_study_the_default_sampler_at_the_members_image_count():
    from configs import toy
    from jaxdiff import frontier

    config = toy.get_config()
    defaults = [frontier.Setting.parse(s) for s in frontier.DEFAULT_SETTINGS]
    # The evaluation setting every report uses is among those compared with the reference.
    assert frontier.Setting("ema", config.evaluate.sampler, config.evaluate.steps) in defaults
    assert frontier.Setting.parse(frontier.DEFAULT_REFERENCE) == frontier.Setting("ema", "ddpm", 1000)
    assert frontier.DEFAULT_REFERENCE in frontier.DEFAULT_SETTINGS  # the reference's own fit has a row
    # With no IMAGES, a setting draws what each member's report draws (300), not the single run's 400.
    assert (config.sweep.member_samples, config.evaluate.num_samples) == (300, 400)
    assert frontier.num_rounds(config, defaults[0]) == 3


def test_within_word_projection_slope_recovers_a_known_slope():
    # A 3 x 3 grid: the projected score depends on the word and the projection seed, the share on the score
    # plus a word effect and training noise; the cells (word, projection seed) are what the slope is fitted on.
    rng = np.random.default_rng(0)
    embed = np.tile(np.repeat([0, 1, 2], 3), 3)  # per row: the member's projection seed (3 training seeds each)
    words = np.repeat(["philosopher", "person", "nurse"], 9)
    cell_score = {(w, e): base + rng.normal(0, 0.05) for w, base in zip(["philosopher", "person", "nurse"],
                                                                         [-0.19, 0.02, 0.28]) for e in range(3)}
    scores = np.array([cell_score[w, e] for w, e in zip(words, embed)])
    word_effect = {"philosopher": 0.01, "person": -0.02, "nurse": 0.0}
    shares = 0.5 + 0.3 * scores + np.array([word_effect[w] for w in words]) + rng.normal(0, 0.002, 27)
    fit = sweep_summary._within_word_slope(scores, shares, words, embed)
    assert fit["cells"] == 9 and fit["slope"] == pytest.approx(0.3, abs=0.03)
    assert fit["ci95"][0] < 0.3 < fit["ci95"][1] and fit["p_value"] < 1e-3
    # The same projection in every member (one projection seed): the score cannot be told from the word.
    same = sweep_summary._within_word_slope(scores, shares, words, np.zeros(27, int))
    assert same["slope"] is None and "not identified" in same["note"]


def test_recipe_check_names_the_difference_and_skips_entries_older_runs_lack():
    saved = ml_collections.ConfigDict({"train": {"learning_rate": 1e-3}, "model": {"ch": 32}})
    current = ml_collections.ConfigDict({"train": {"learning_rate": 1e-3, "ema_decay": 0.999}, "model": {"ch": 32}})
    workdirs.check_same_architecture(saved, current, "run", ("model", "train.learning_rate", "train.ema_decay"))
    current.model.ch = 64
    with pytest.raises(UserError, match=r"'run' holds a run with model.ch=32, not 64"):
        workdirs.check_same_architecture(saved, current, "run", ("model", "train.ema_decay"))


def test_the_committed_person_study_gives_its_published_verdict(tmp_path, monkeypatch):
    """The 4 x 4 person study's records in docs/ pool, drawing nothing, to the numbers its report publishes."""
    from configs import toy
    from jaxdiff import frontier

    records = os.path.join(REPO, "docs", "measurements", "toy_ddpm_agreement_4x4_records")
    sweep_dir = shutil.copytree(records, os.path.join(tmp_path, "toy-4x4"))
    config = toy.get_config()
    config.sweep.train_seeds, config.sweep.embed_seeds = (0, 1, 2, 3), (0, 1, 2, 3)
    monkeypatch.setattr(frontier, "_sample_counts", lambda *a, **k: pytest.fail("a recorded round was drawn again"))
    result = frontier.study(config, [sweep_dir], [frontier.Setting.parse("ema:ddpm:200:1200")],
                            frontier.Setting.parse("ema:ddpm:1000:1200"), log=lambda *a: None, words=["person"])
    row = result["rows"][0]
    assert (row["members"], row["images"], row["interim"], row["agreement"]) == (16, 1200, False, "agrees")
    person = row["words"]["person"]
    assert person["share_woman"] == pytest.approx(0.4842, abs=1e-4)
    assert person["ci95"] == pytest.approx([0.4354, 0.5329], abs=1e-4)  # crossed: the seeds' variance counts
    difference = person["minus_reference"]
    # The sixteen members form a 4 x 4 crossed grid, so they are pooled with crossed random effects (t on 6 df):
    # -0.6 points [-2.2, +0.9], TOST p 0.037. As pre-registered, pooled as independent members (the report's
    # planned figures): [-1.7, +0.5], TOST p 0.0081. Agreement under both.
    assert difference["model"] == "crossed"
    assert difference["estimate"] == pytest.approx(-0.0063, abs=1e-4)
    assert difference["ci95"] == pytest.approx([-0.0218, 0.0092], abs=1e-4)
    assert difference["tost_p_value"] == pytest.approx(0.0371, abs=1e-4)
    assert difference["independent"]["ci95"] == pytest.approx([-0.0175, 0.0049], abs=1e-4)
    assert difference["independent"]["tost_p_value"] == pytest.approx(0.0081, abs=1e-4)
    assert difference["verdict"] == difference["independent"]["verdict"] == "agrees"

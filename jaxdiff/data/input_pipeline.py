"""tf.data input pipeline: dataset directory -> batches of (image, condition) ready for devices.

Each image gives three training examples (docs/question.md): its first word's projected vector, its
second word's, and the mean of the two. Every process reads its own disjoint, even share of the
records (`tfds.even_splits`), decodes them once into memory, and then shuffles them per epoch
with a seed derived from (seed, epoch): the stream is a pure function of (seed, position), which
is how a resumed run continues exactly where it stopped (`start_example`).

    python -m jaxdiff.input_pipeline --config=configs/toy.py    # measures examples/s
"""


import os
import statistics
import time
from typing import Iterator, Sequence

import ml_collections
import numpy as np

from jaxdiff.common import files
from jaxdiff.core import conditioning
from jaxdiff.data import portraits, schema
from jaxdiff.data.classes import GENDER_WORDS, PROFESSION_WORDS
from jaxdiff.common.cli import hide_accelerators_from_tensorflow
from jaxdiff.data.embed import EmbeddingTable
from jaxdiff.common.errors import UserError

import tensorflow as tf  # noqa: E402  (command lines quiet its logs first: jaxdiff.common.startup)
import tensorflow_datasets as tfds  # noqa: E402

_EPOCH_SEED_STRIDE = 1_000_003  # a prime: distinct (seed, epoch) pairs give distinct shuffle seeds


def how_to_make(data: ml_collections.ConfigDict) -> str:
    """The command that makes the dataset a config points at."""
    if data.source == "portraits":
        return f"make it with: python -m jaxdiff.portraits --out {data.dir}"
    return f"make it with data_gen (see data_gen/README.md): python -m data_gen.generate --out {data.dir}"


def ensure_dataset(config: ml_collections.ConfigDict, log=print) -> str:
    """Makes the portraits dataset if missing (seconds, said in one line); an SD-2.1 dataset must exist.

    Every command that reads the dataset calls it before anything slow (word vectors, compiling),
    so a missing SD-2.1 dataset is the first thing a new user hears about.
    """
    data = config.data
    finished = os.path.join(data.dir, "dataset_info.json")
    if os.path.exists(finished):
        _check_woman_share(config)
        return f"found {data.dir}"
    if data.source != "portraits":
        raise UserError(f"dataset {data.dir!r} is missing; {how_to_make(data)} "
                        f"on a GPU machine, then rerun this command")
    # Invocations started together (a sweep split over a job array) draw it once: the others wait for it.
    with files.exclusive(os.path.normpath(data.dir) + ".lock", f"the portraits dataset {data.dir}", log):
        if os.path.exists(finished):
            return f"found {data.dir}"
        if os.path.exists(data.dir):
            raise UserError(f"{data.dir!r} exists but is not a finished dataset; delete it or pass another "
                            f"--config.data.dir")
        p = config.portraits
        shares = woman_share(config)
        mix = "" if shares == portraits.BALANCED else f" (shares of women {shares})"
        log(f"drawing {p.per_class} portraits per class{mix} at {data.image_size}x{data.image_size} into {data.dir}")
        portraits.write_dataset(data.dir, p.per_class, data.image_size, p.seed, p.val_fraction, woman_share=shares)
    return f"made {data.dir}"


def woman_share(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The per-profession share of women the config's portraits are drawn with (configs saved before it: balanced)."""
    shares = config.portraits.get("woman_share")
    return portraits.woman_shares(shares.to_dict() if shares is not None else None)


def _check_woman_share(config: ml_collections.ConfigDict) -> None:
    """A portraits directory drawn with other shares of women than the config's would train another experiment."""
    if config.data.source != "portraits" or not os.path.exists(os.path.join(config.data.dir, portraits.MANIFEST)):
        return
    found, wanted = portraits.woman_share_of(config.data.dir), woman_share(config)
    if found != wanted:
        raise UserError(f"{config.data.dir!r} holds portraits drawn with shares of women {found}, not the config's "
                        f"{wanted}; point --config.data.dir at a directory named by its shares, e.g. "
                        f"data/portraits{portraits.dataset_suffix(wanted)}")


def read_split(data_dir: str, split: str, image_size: int, *, hint: str = "",
               process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
    """This process's share of a split as {image: float32 [-1, 1] (S, S, 3), words: (2,) str, class_name}."""
    builder = schema.open_dataset(data_dir, hint or "make it with python -m jaxdiff.portraits or data_gen")
    if split not in schema.SPLITS:
        raise UserError(f"unknown split {split!r}; the dataset has {schema.SPLITS}")
    if process_count > builder.info.splits[split].num_examples:
        raise UserError(f"{process_count} processes but only {builder.info.splits[split].num_examples} {split} images in {data_dir}")
    subsplit = tfds.even_splits(split, process_count)[process_index] if process_count > 1 else split
    # File order = record order. No TFDS auto-cache: callers cache decoded images themselves (or
    # read only the first records, which would leave TFDS's cache half-filled and warn).
    read_config = tfds.ReadConfig(shuffle_seed=None, interleave_cycle_length=1, try_autocache=False)
    ds = builder.as_dataset(split=subsplit, shuffle_files=False, read_config=read_config)

    def decode(example):
        image = tf.cast(example["image"], tf.float32)
        if image.shape[0] != image_size or image.shape[1] != image_size:
            image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
        return {"image": image / 127.5 - 1.0, "words": example["words"], "class_name": example["class_name"]}

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def num_images(data_dir: str, split: str, process_count: int = 1, process_index: int = 0) -> int:
    """How many images of `split` this process reads (its tfds.even_splits share)."""
    builder = schema.open_dataset(data_dir, "")
    if process_count == 1:
        return builder.info.splits[split].num_examples
    return builder.info.splits[tfds.even_splits(split, process_count)[process_index]].num_examples


def _expand(images: tf.data.Dataset, table: EmbeddingTable, cond_kinds: Sequence[str]) -> tf.data.Dataset:
    """One example per condition kind for each image: {image, cond (k,), kind (int32)}."""
    conditioning.check_kinds(cond_kinds)
    word_ids = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(table.words), tf.range(len(table.words), dtype=tf.int64)), -1)
    projected = tf.constant(table.projected, tf.float32)
    kind_ids = tf.constant([conditioning.COND_KINDS.index(k) for k in cond_kinds], tf.int32)

    def expand(example):
        ids = word_ids.lookup(example["words"])
        tf.debugging.assert_non_negative(ids, message="a dataset word is missing from the embedding table")
        first, second = tf.gather(projected, ids[0]), tf.gather(projected, ids[1])
        conds = tf.stack([conditioning.of_kind(k, first, second) for k in cond_kinds])
        n = len(cond_kinds)
        return tf.data.Dataset.from_tensor_slices({
            "image": tf.repeat(example["image"][None], n, axis=0), "cond": conds, "kind": kind_ids,
        })

    return images.flat_map(expand)


def train_dataset(config: ml_collections.ConfigDict, table: EmbeddingTable, local_batch_size: int, *,
                  start_example: int = 0, process_index: int = 0, process_count: int = 1) -> tf.data.Dataset:
    """The endless, shuffled training stream of this process, batched, from its `start_example`-th example."""
    data = config.data
    images = read_split(data.dir, "train", data.image_size, hint=how_to_make(data),
                        process_index=process_index, process_count=process_count)
    if data.cache:
        images = images.cache()
    examples = _expand(images, table, data.cond_kinds)
    epoch_length = num_images(data.dir, "train", process_count, process_index) * len(data.cond_kinds)
    start_epoch, offset = divmod(start_example, epoch_length)
    seed = int(config.seed)

    def epoch(index):
        return examples.shuffle(data.shuffle_buffer, seed=seed * _EPOCH_SEED_STRIDE + index, reshuffle_each_iteration=False)

    stream = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch).skip(offset)
    return stream.batch(local_batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_examples(config: ml_collections.ConfigDict, table: EmbeddingTable, count: int, *,
                        process_index: int = 0, process_count: int = 1) -> dict[str, np.ndarray]:
    """The first `count` examples of this process's validation share, in a fixed order (no shuffle)."""
    data = config.data
    images = read_split(data.dir, "validation", data.image_size, hint=how_to_make(data),
                        process_index=process_index, process_count=process_count)
    batch = next(iter(numpy_batches(_expand(images, table, data.cond_kinds).batch(count), data.dir)), None)
    if batch is None or len(batch["image"]) < count:
        have = 0 if batch is None else len(batch["image"])
        raise UserError(f"asked for {count} validation examples but {data.dir} gives this process {have}; lower train.val_examples")
    return batch


def labelled_images(data_dir: str, split: str, image_size: int, **kwargs) -> tf.data.Dataset:
    """A split with integer labels for the attribute classifier: gender (man, woman), profession."""
    genders = tf.constant(list(GENDER_WORDS))
    professions = tf.constant(list(PROFESSION_WORDS))

    def label(example):
        gender = tf.argmax(tf.cast(tf.equal(genders, example["words"][0]), tf.int32), output_type=tf.int32)
        profession = tf.argmax(tf.cast(tf.equal(professions, example["words"][1]), tf.int32), output_type=tf.int32)
        return {"image": example["image"], "gender": gender, "profession": profession}

    return read_split(data_dir, split, image_size, **kwargs).map(label, num_parallel_calls=tf.data.AUTOTUNE)


def numpy_batches(ds: tf.data.Dataset, data_dir: str) -> Iterator[dict[str, np.ndarray]]:
    """Iterates a dataset as numpy; a record that does not parse becomes a UserError naming its shard."""
    iterator = ds.as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            raise schema.corrupt_shard_error(data_dir, error) from None
        yield batch


def measure_throughput(config: ml_collections.ConfigDict, table: EmbeddingTable, batches: int = 400,
                       window: int = 50) -> dict[str, float]:
    """Examples/s of the training stream: the first (decoding) epoch and cached steady state."""
    batch_size = config.train.batch_size
    ds = train_dataset(config, table, batch_size)
    iterator = numpy_batches(ds, config.data.dir)
    epoch_batches = num_images(config.data.dir, "train") * len(config.data.cond_kinds) // batch_size
    start = time.perf_counter()
    for _ in range(epoch_batches):
        next(iterator)
    first_epoch = epoch_batches * batch_size / (time.perf_counter() - start)
    rates = []
    for _ in range(max(1, batches // window)):
        start = time.perf_counter()
        for _ in range(window):
            next(iterator)
        rates.append(window * batch_size / (time.perf_counter() - start))
    return {"first_epoch_examples_per_s": first_epoch, "examples_per_s_median": statistics.median(rates),
            "examples_per_s_min": min(rates), "examples_per_s_max": max(rates), "windows": len(rates),
            "batch_size": batch_size}


def main(argv: Sequence[str]) -> None:
    from jaxdiff.common import configuration
    from jaxdiff.data import embed, vectors

    flags = configuration.parse(argv, lambda fv: __import__("absl.flags").flags.DEFINE_integer(
        "batches", 400, "batches to time after the first epoch", flag_values=fv), doc=__doc__)
    config = flags.config
    hide_accelerators_from_tensorflow()
    table = embed.build_table(vectors.load_source(config.embed.source, config.embed.vectors_path or None),
                              config.embed.dim, config.embed.seed)
    result = measure_throughput(config, table, flags.batches)
    print(f"input pipeline, {config.data.dir}, batch {result['batch_size']}: first epoch (decode) "
          f"{result['first_epoch_examples_per_s']:,.0f} examples/s; cached: median "
          f"{result['examples_per_s_median']:,.0f} examples/s (min {result['examples_per_s_min']:,.0f}, "
          f"max {result['examples_per_s_max']:,.0f}, {result['windows']} windows)")


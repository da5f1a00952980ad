"""The dataset directory contract (docs/design.md): TFRecord shards plus TFDS metadata.

The single definition of the schema. jaxdiff's portraits and data_gen/'s SD-2.1 generator both
write through `write_shard` + `write_metadata`; every reader goes through `open_dataset`, so
`tfds.builder_from_directory(DIR).as_dataset(split="train")` reads what either wrote.

Imports TensorFlow but never JAX: data_gen/ uses it from a PyTorch environment.
"""

import contextlib
import io
import os
import sys
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf  # its start-up logs are quieted by the command lines (jaxdiff.common.startup), not here
import tensorflow_datasets as tfds

from jaxdiff.data.classes import CLASS_NAMES, CLASSES
from jaxdiff.common.errors import UserError

SPLITS = ("train", "validation")
SOURCES = ("portraits", "sd21")
_TMP_SUBDIR = ".incomplete"  # shards being written; outside the glob TFDS reads


def split_counts(per_class: int, val_fraction: float) -> dict[str, int]:
    """Images per class in each split; both splits stay exactly balanced across classes."""
    num_val = int(round(per_class * val_fraction))
    if not 0 < num_val < per_class:
        raise UserError(
            f"--val-fraction {val_fraction} leaves no train or no validation image of {per_class} per class; "
            "pick a value in (0, 1)"
        )
    return {"train": per_class - num_val, "validation": num_val}


def features() -> tfds.features.FeaturesDict:
    """The feature spec of every record: image, class_name, words, seed, prompt, source."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
            "class_name": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "words": tfds.features.Sequence(tfds.features.Text(), length=2),
            "seed": tfds.features.Scalar(dtype=np.int64),
            "prompt": tfds.features.Text(),
            "source": tfds.features.Text(),
        }
    )


def make_example(image_HWC: np.ndarray, class_name: str, seed: int, source: str) -> dict[str, Any]:
    """One record's values; words and prompt follow from the class (jaxdiff.data.classes)."""
    if class_name not in CLASSES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASS_NAMES}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    image_HWC = np.asarray(image_HWC)
    if image_HWC.dtype != np.uint8 or image_HWC.ndim != 3 or image_HWC.shape[-1] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image_HWC.dtype} {image_HWC.shape}")
    spec = CLASSES[class_name]
    return {
        "image": image_HWC,
        "class_name": class_name,
        "words": list(spec.words),
        "seed": int(seed),
        "prompt": spec.prompt,
        "source": source,
    }


def shard_filename(name: str, split: str, index: int, num_shards: int) -> str:
    """TFDS's default file template: NAME-SPLIT.tfrecord-IIIII-of-NNNNN."""
    return f"{name}-{split}.tfrecord-{index:05d}-of-{num_shards:05d}"


def write_shard(data_dir: str, filename: str, examples: Iterable[dict[str, Any]]) -> int:
    """Serialises examples into DATA_DIR/FILENAME, appearing under that name only when complete."""
    spec = features()
    tmp_dir = os.path.join(data_dir, _TMP_SUBDIR)
    tf.io.gfile.makedirs(tmp_dir)
    tmp_path = os.path.join(tmp_dir, filename)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp_path) as writer:
            for example in examples:
                writer.write(_deterministic(spec.serialize_example(example)))
                count += 1
        tf.io.gfile.rename(tmp_path, os.path.join(data_dir, filename), overwrite=True)
    finally:
        if tf.io.gfile.exists(tmp_path):
            tf.io.gfile.remove(tmp_path)
    return count


def _deterministic(record: bytes) -> bytes:
    """The record with its features in sorted order: the same example is the same bytes in any process."""
    # protobuf (upb) writes map entries, the feature names, in an order seeded per process.
    return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def write_metadata(data_dir: str, description: str) -> None:
    """Writes the TFDS metadata (dataset_info.json, features.json) over every complete shard."""
    tmp_dir = os.path.join(data_dir, _TMP_SUBDIR)
    if tf.io.gfile.isdir(tmp_dir) and not tf.io.gfile.listdir(tmp_dir):
        tf.io.gfile.rmtree(tmp_dir)
    # TFDS narrates split detection (prints and a progress bar); keep it off the console unless it fails.
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            tfds.folder_dataset.write_metadata(data_dir=data_dir, features=features(), split_infos=None,
                                               description=description)
    except Exception:
        sys.stderr.write(chatter.getvalue())
        raise


def open_dataset(data_dir: str, how_to_make: str) -> tfds.core.DatasetBuilder:
    """The dataset's TFDS builder; a missing, unfinished or empty directory is a UserError."""
    if not tf.io.gfile.isdir(data_dir):
        raise UserError(f"dataset directory {data_dir!r} does not exist; {how_to_make}")
    if not tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
        raise UserError(
            f"{data_dir!r} has no dataset_info.json, so it is not a finished dataset directory; {how_to_make}"
        )
    try:
        builder = tfds.builder_from_directory(data_dir)
    except Exception as error:  # TFDS raises several types for unreadable metadata
        raise UserError(f"cannot read the dataset metadata in {data_dir!r} ({error}); {how_to_make}") from error
    for split in SPLITS:
        if split not in builder.info.splits or builder.info.splits[split].num_examples == 0:
            raise UserError(f"dataset {data_dir!r} has no {split!r} examples; {how_to_make}")
        missing = [f for f in builder.info.splits[split].filepaths if not tf.io.gfile.exists(os.fspath(f))]
        if missing:
            raise UserError(f"dataset {data_dir!r} lists shard {os.fspath(missing[0])!r} but it is missing; {how_to_make}")
    return builder


def shard_paths(data_dir: str, split: str | None = None) -> list[str]:
    """The complete TFRecord shards of a dataset directory (of one split, if given), sorted."""
    pattern = f"*-{split}.tfrecord-*" if split else "*.tfrecord-*"
    return sorted(tf.io.gfile.glob(os.path.join(data_dir, pattern)))


def find_corrupt_shard(paths: Sequence[str]) -> tuple[str, str] | None:
    """The first shard whose records do not parse or decode, with the reason; None if all are sound."""
    spec = features()
    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(path).map(spec.deserialize_example):
                pass
        except tf.errors.OpError as error:
            return path, error.message.split("\n")[0][:200]
    return None


def corrupt_shard_error(data_dir: str, cause: Exception) -> UserError:
    """A UserError naming the corrupt shard behind a read failure in `data_dir`."""
    found = find_corrupt_shard(shard_paths(data_dir))
    if found is None:
        return UserError(f"reading dataset {data_dir!r} failed: {str(cause).splitlines()[0][:200]}")
    path, reason = found
    return UserError(
        f"corrupt shard {path} ({reason}); delete it and remake the dataset "
        f"(data_gen redoes missing shards; `python -m jaxdiff.portraits --overwrite` remakes portraits)"
    )

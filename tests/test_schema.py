"""The dataset directory contract: records round-trip, and broken directories fail in one line."""

import os

import numpy as np
import pytest

from jaxdiff.data import schema
from jaxdiff.data.classes import CLASS_NAMES, CLASSES
from jaxdiff.common.errors import UserError


def _write(tmp_path, images):
    d = str(tmp_path / "ds")
    for split in schema.SPLITS:
        examples = [schema.make_example(img, CLASS_NAMES[i % 6], seed=100 + i, source="portraits") for i, img in enumerate(images)]
        schema.write_shard(d, schema.shard_filename("portraits", split, 0, 1), examples)
    schema.write_metadata(d, "test")
    return d


def test_record_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    d = _write(tmp_path, images)
    import tensorflow_datasets as tfds

    read = list(tfds.builder_from_directory(d).as_dataset(split="train").as_numpy_iterator())
    assert len(read) == 6
    for i, ex in enumerate(read):
        name = CLASS_NAMES[i % 6]
        np.testing.assert_array_equal(ex["image"], images[i])  # PNG is lossless
        assert CLASS_NAMES[ex["class_name"]] == name
        assert [w.decode() for w in ex["words"]] == list(CLASSES[name].words)
        assert ex["seed"] == 100 + i
        assert ex["prompt"].decode() == CLASSES[name].prompt
        assert ex["source"].decode() == "portraits"
    assert not os.path.exists(os.path.join(d, ".incomplete"))  # temporary shard dir cleaned


def test_make_example_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown class"):
        schema.make_example(np.zeros((4, 4, 3), np.uint8), "doctor", 0, "portraits")
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        schema.make_example(np.zeros((4, 4), np.uint8), "man", 0, "portraits")
    with pytest.raises(ValueError, match="unknown source"):
        schema.make_example(np.zeros((4, 4, 3), np.uint8), "man", 0, "laion")


def test_missing_and_unfinished_dirs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist; make it"):
        schema.open_dataset(str(tmp_path / "nope"), "make it")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no dataset_info.json"):
        schema.open_dataset(str(tmp_path / "empty"), "make it")


def test_corrupt_shard_is_named(tmp_path):
    d = _write(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 6)
    shard = schema.shard_paths(d, "train")[0]
    data = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated, as by a killed copy
    found = schema.find_corrupt_shard(schema.shard_paths(d))
    assert found is not None and found[0] == shard
    error = schema.corrupt_shard_error(d, RuntimeError("boom"))
    assert shard in str(error) and "corrupt shard" in str(error)

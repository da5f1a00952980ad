"""The embedded portraits dataset: balanced, deterministic, readable, and what its classes say."""

import hashlib
import os

import numpy as np
import pytest

from helpers import run_cli
from jaxdiff.data import portraits, schema
from jaxdiff.data.classes import CLASS_NAMES


def _digests(d):
    return {os.path.basename(p): hashlib.sha256(open(p, "rb").read()).hexdigest() for p in schema.shard_paths(d)}


def test_balanced_splits_and_fields(tiny_dataset):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(tiny_dataset)
    assert builder.info.splits["train"].num_examples == 66 and builder.info.splits["validation"].num_examples == 6
    for split, per_class in (("train", 11), ("validation", 1)):
        labels = [int(ex["class_name"]) for ex in builder.as_dataset(split=split).as_numpy_iterator()]
        assert np.bincount(labels, minlength=6).tolist() == [per_class] * 6
    ex = next(builder.as_dataset(split="train").as_numpy_iterator())
    assert ex["image"].shape == (16, 16, 3) and ex["source"] == b"portraits"
    assert os.path.exists(os.path.join(tiny_dataset, "contact_sheet.png"))


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    """Across processes too: protobuf orders a record's feature map differently in each process."""
    a, b, c = (str(tmp_path / n) for n in "abc")
    portraits.write_dataset(a, per_class=4, size=16, seed=3, val_fraction=0.25)
    result = run_cli("jaxdiff.portraits", "--out", b, "--per-class", "4", "--size", "16", "--seed", "3", "--val-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    portraits.write_dataset(c, per_class=4, size=16, seed=4, val_fraction=0.25)
    assert _digests(a) == _digests(b)
    assert _digests(a) != _digests(c)


def test_stored_seed_remakes_the_image(tiny_dataset):
    import tensorflow_datasets as tfds

    ex = next(tfds.builder_from_directory(tiny_dataset).as_dataset(split="validation").as_numpy_iterator())
    remade = portraits.draw_portrait(CLASS_NAMES[ex["class_name"]], np.random.default_rng(int(ex["seed"])), size=16)
    np.testing.assert_array_equal(remade, ex["image"])


def test_classes_differ_where_the_prompts_say():
    """Long hair darkens the sides of the face; scrubs are blue; library and hospital differ in colour."""
    def mean_image(name, n=40):
        return np.mean([portraits.draw_portrait(name, np.random.default_rng(i), 32) for i in range(n)], axis=0)

    man, woman = mean_image("man"), mean_image("woman")
    sides = (slice(12, 22), np.r_[10:14, 20:24])  # either side of the face, ear to shoulder
    assert woman[sides].mean() < man[sides].mean() - 40
    nurse, phil = mean_image("male_nurse"), mean_image("male_phil")
    torso = (slice(28, 32), slice(4, 28))
    assert nurse[torso][..., 2].mean() > nurse[torso][..., 0].mean() + 60  # blue scrubs
    assert phil[torso][..., 0].mean() > phil[torso][..., 2].mean() + 20  # brown tweed
    background = (slice(0, 8), slice(0, 32))
    assert nurse[background].mean() > phil[background].mean() + 60  # pale wall vs dark shelves


@pytest.mark.slow
def test_cli_writes_and_refuses_to_overwrite(tmp_path):
    out = str(tmp_path / "p")
    result = run_cli("jaxdiff.portraits", "--out", out, "--per-class", "4", "--size", "16", "--val-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    assert os.path.exists(os.path.join(out, "dataset_info.json"))
    again = run_cli("jaxdiff.portraits", "--out", out, "--per-class", "4")
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert os.path.exists(os.path.join(out, "dataset_info.json"))  # nothing lost


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_val_fraction_must_leave_both_splits(fraction):
    from jaxdiff.common.errors import UserError

    with pytest.raises(UserError, match="val-fraction"):
        schema.split_counts(10, fraction)


def test_every_shard_is_balanced(tmp_path):
    """Processes read contiguous runs of records (tfds.even_splits), so each shard must mix all classes."""
    import tensorflow as tf

    out = str(tmp_path / "p")
    portraits.write_dataset(out, per_class=12, size=8, seed=0, val_fraction=0.25, images_per_shard=18)
    spec = schema.features()
    shards = schema.shard_paths(out, "train")
    assert len(shards) == 3
    for shard in shards:
        labels = [int(spec.deserialize_example(r)["class_name"]) for r in tf.data.TFRecordDataset(shard)]
        assert np.bincount(labels, minlength=6).tolist() == [3] * 6


def test_positive_control_shares_are_exact_and_keep_each_professions_total(tmp_path):
    import tensorflow as tf

    shares = {"nurse": 0.6, "philosopher": 0.4}
    counts = portraits.class_counts(50, shares)
    assert counts == {"male_nurse": 40, "female_nurse": 60, "male_phil": 60, "female_phil": 40, "man": 50, "woman": 50}
    assert portraits.dataset_suffix(shares) == "-nurse60-philosopher40" and portraits.dataset_suffix(None) == ""
    out = str(tmp_path / "control")
    portraits.write_dataset(out, per_class=10, size=8, seed=0, val_fraction=0.2, images_per_shard=16,
                            woman_share=shares)
    spec = schema.features()
    labels = {split: [int(spec.deserialize_example(r)["class_name"])
                      for shard in schema.shard_paths(out, split) for r in tf.data.TFRecordDataset(shard)]
              for split in schema.SPLITS}
    together = np.bincount(labels["train"] + labels["validation"], minlength=6)
    assert dict(zip(CLASS_NAMES, together.tolist())) == portraits.class_counts(10, shares)
    assert portraits.woman_share_of(out) == {"person": 0.5, **shares}
    # Every shard keeps the dataset's mix: no shard holds a single class.
    for shard in schema.shard_paths(out, "train"):
        assert len({int(spec.deserialize_example(r)["class_name"]) for r in tf.data.TFRecordDataset(shard)}) == 6


@pytest.mark.parametrize("text", ["nurse=1.2", "doctor=0.5", "nurse"])
def test_a_bad_woman_share_is_a_one_line_error(tmp_path, text):
    result = run_cli("jaxdiff.portraits", "--out", str(tmp_path / "x"), "--woman-share", text)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "woman" in result.stderr.lower()
    assert not os.path.exists(tmp_path / "x")

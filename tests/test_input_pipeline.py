"""The tf.data pipeline: three examples per image, disjoint per-process shares, exact resumption."""

import numpy as np
import pytest

from helpers import tiny_config
from jaxdiff.data import embed, input_pipeline, vectors
from jaxdiff.data.classes import CLASSES, CLASS_NAMES
from jaxdiff.common.errors import UserError


@pytest.fixture(scope="module")
def table():
    return embed.build_table(vectors.load_source("word2vec-subset"), dim=128, seed=0)


def _key(image):
    return hashlib_digest(np.round((image + 1) * 127.5).astype(np.uint8))


def hashlib_digest(array):
    import hashlib

    return hashlib.sha256(array.tobytes()).hexdigest()


def test_each_image_gives_first_second_and_mean(tiny_dataset, table):
    config = tiny_config(tiny_dataset)
    ds = input_pipeline.train_dataset(config, table, local_batch_size=66 * 3)
    batch = next(input_pipeline.numpy_batches(ds, tiny_dataset))  # exactly one epoch
    assert batch["image"].shape == (198, 16, 16, 3) and batch["cond"].shape == (198, 128)
    assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
    by_image: dict[str, list] = {}
    for image, cond, kind in zip(batch["image"], batch["cond"], batch["kind"]):
        by_image.setdefault(_key(image), []).append((int(kind), cond))
    assert len(by_image) == 66 and all(len(v) == 3 for v in by_image.values())
    word_vectors = {w: table.projected_vector(w) for w in ("man", "woman", "person", "nurse", "philosopher")}
    pairs = {spec.words for spec in CLASSES.values()}
    for entries in by_image.values():
        conds = dict(entries)
        assert sorted(conds) == [0, 1, 2]
        first = next(w for w, v in word_vectors.items() if np.allclose(v, conds[0]))
        second = next(w for w, v in word_vectors.items() if np.allclose(v, conds[1]))
        assert (first, second) in pairs
        np.testing.assert_allclose(conds[2], (word_vectors[first] + word_vectors[second]) / 2, rtol=1e-6)


def test_process_shares_are_disjoint_and_cover(tiny_dataset):
    def images(index, count):
        ds = input_pipeline.read_split(tiny_dataset, "train", 16, process_index=index, process_count=count)
        return [_key(ex["image"]) for ex in ds.as_numpy_iterator()]

    everything = images(0, 1)
    first, second = images(0, 2), images(1, 2)
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == sorted(everything)
    assert abs(len(first) - len(second)) <= 1


def test_stream_resumes_exactly_and_shuffles_per_epoch(tiny_dataset, table):
    config = tiny_config(tiny_dataset)

    def stream(start, n):
        ds = input_pipeline.train_dataset(config, table, local_batch_size=1, start_example=start)
        return [_key(b["image"][0]) + str(int(b["kind"][0])) for b, _ in zip(input_pipeline.numpy_batches(ds, tiny_dataset), range(n))]

    full = stream(0, 450)  # crosses two epoch boundaries (198 examples each)
    assert stream(250, 200) == full[250:450]
    assert full[:198] != full[198:396] and sorted(full[:198]) == sorted(full[198:396])


def test_resize_to_config_size(tiny_dataset):
    ds = input_pipeline.read_split(tiny_dataset, "validation", 8)
    assert next(ds.as_numpy_iterator())["image"].shape == (8, 8, 3)


def test_labels_for_the_classifier(tiny_dataset):
    ds = input_pipeline.labelled_images(tiny_dataset, "train", 16)
    seen = set()
    for ex, raw in zip(ds.as_numpy_iterator(), input_pipeline.read_split(tiny_dataset, "train", 16).as_numpy_iterator()):
        gender, profession = (w.decode() for w in raw["words"])
        assert ("man", "woman")[ex["gender"]] == gender
        assert ("person", "nurse", "philosopher")[ex["profession"]] == profession
        seen.add(CLASS_NAMES[raw["class_name"]])
    assert seen == set(CLASS_NAMES)


def test_missing_dataset_and_corrupt_shard_errors(tmp_path, tiny_dataset, table):
    import shutil

    from jaxdiff.data import schema

    with pytest.raises(UserError, match="python -m jaxdiff.portraits --out"):
        input_pipeline.train_dataset(tiny_config(str(tmp_path / "absent")), table, 4)
    broken = str(tmp_path / "broken")
    shutil.copytree(tiny_dataset, broken)
    shard = schema.shard_paths(broken, "train")[-1]
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64  # flipped bytes fail the record CRC
    open(shard, "wb").write(bytes(data))
    ds = input_pipeline.train_dataset(tiny_config(broken), table, 8)
    with pytest.raises(UserError, match=f"corrupt shard {shard}"):
        for _ in input_pipeline.numpy_batches(ds, broken):
            pass


def test_a_missing_portraits_dataset_is_made_once_past_a_lock_its_dead_maker_left(tmp_path, tiny_dataset):
    """A job array's members start together: the lock makes one draw it; one killed mid-way leaves a lock
    that the next run takes over (its holder's process is gone) instead of waiting for it."""
    import os
    import socket
    import subprocess
    import sys

    config = tiny_config(tiny_dataset)
    config.data.dir = str(tmp_path / "data" / "portraits")
    os.makedirs(tmp_path / "data")
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    with open(config.data.dir + ".lock", "w") as f:
        f.write(f"host={socket.gethostname()} pid={exited.pid} since=2026-11-27T00:00:00\n")
    logs = []
    assert input_pipeline.ensure_dataset(config, logs.append) == f"made {config.data.dir}"
    assert logs[0].startswith("taking over") and logs[1].startswith("drawing 12 portraits per class")
    assert sorted(os.listdir(tmp_path / "data")) == ["portraits"]  # the lock is gone
    assert input_pipeline.ensure_dataset(config, logs.append) == f"found {config.data.dir}"

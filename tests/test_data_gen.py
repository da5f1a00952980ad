"""data_gen/: the SD-2.1 generator, run end to end on a tiny random Stable Diffusion pipeline (CPU).

The pipeline is built here without any download (tiny UNet, VAE, CLIP text encoder and a
character-level CLIP tokenizer from a vocab.json + merges.txt written here), saved with
`save_pretrained` and loaded through the real `--model PATH` path.
"""

import ast
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # data_gen: a Stable Diffusion pipeline, subprocesses

from jaxdiff.data import schema  # noqa: E402
from jaxdiff.data.classes import CLASS_NAMES, CLASSES  # noqa: E402
from jaxdiff.common.cli import run  # noqa: E402

from data_gen import generate  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 images per class: 3 train + 1 validation; 6 images per shard: 3 train shards + 1 validation.
FLAGS = ["--per-class", "4", "--val-fraction", "0.25", "--images-per-shard", "6", "--size", "16",
         "--steps", "2", "--batch-size", "4", "--seed", "7", "--device", "cpu"]
NATIVE_SIZE = 32  # the tiny UNet's sample size 16 x the VAE factor 2: images are resized to 16


def build_tiny_pipeline(path: str) -> None:
    """A random-weight StableDiffusionPipeline small enough to render 32px images in milliseconds."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )
    # A character-level byte-pair vocabulary: every prompt tokenizes, and the six differ early on.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz.,":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    tokenizer_dir = os.path.join(path + "-tokenizer-src")
    os.makedirs(tokenizer_dir, exist_ok=True)
    with open(os.path.join(tokenizer_dir, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(tokenizer_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tokenizer = CLIPTokenizer(os.path.join(tokenizer_dir, "vocab.json"), os.path.join(tokenizer_dir, "merges.txt"),
                              model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, vocab_size=len(vocab), hidden_size=32,
        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction")
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(path)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning OpenMP threads run 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tiny_sd") / "pipeline")
    build_tiny_pipeline(path)
    return path


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory) -> str:
    """One uninterrupted single-worker run: the dataset every other way of making it must equal."""
    out = str(tmp_path_factory.mktemp("sd21") / "reference")
    generate.main(["--out", out, "--model", tiny_model, *FLAGS])
    return out


def shard_bytes(out: str) -> dict[str, bytes]:
    """File name -> contents of every complete shard in a dataset directory."""
    result = {}
    for path in schema.shard_paths(out):
        with open(path, "rb") as f:
            result[os.path.basename(path)] = f.read()
    return result


def records(out: str, split: str) -> list[dict]:
    """Every record of a split, read through tfds.builder_from_directory, as numpy."""
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(interleave_cycle_length=1)  # shards one after the other: file order
    ds = tfds.builder_from_directory(out).as_dataset(split=split, shuffle_files=False, read_config=read_config)
    return list(tfds.as_numpy(ds))


def shard_records(path: str) -> list[dict]:
    """The records of one shard file, in file order, decoded with the schema's features."""
    import tensorflow as tf

    return list(tf.data.TFRecordDataset(path).map(schema.features().deserialize_example).as_numpy_iterator())


def exit_status_and_error(argv, capsys) -> tuple[int, str]:
    """Runs the CLI in-process the way `python -m data_gen.generate` does: (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run(generate.main, argv)
    return exit_info.value.code, capsys.readouterr().err


def test_dataset_reads_back_balanced_with_the_seed_md_fields(reference):
    builder = schema.open_dataset(reference, "test")
    assert builder.info.splits["train"].num_examples == 18
    assert builder.info.splits["validation"].num_examples == 6
    seen = set()
    for split, per_class, first_index in (("train", 3, 0), ("validation", 1, 3)):
        rows = records(reference, split)
        names = [CLASS_NAMES[row["class_name"]] for row in rows]
        assert {name: names.count(name) for name in CLASS_NAMES} == {name: per_class for name in CLASS_NAMES}
        for row, name in zip(rows, names):
            assert [w.decode() for w in row["words"]] == list(CLASSES[name].words)
            assert row["prompt"].decode() == CLASSES[name].prompt  # verbatim, from jaxdiff.data.classes
            assert row["source"].decode() == "sd21"
            assert row["image"].shape == (16, 16, 3) and row["image"].dtype == np.uint8
            assert row["image"].std() > 0  # a rendered image, not a blank
            seen.add((name, int(row["seed"])))
        # Each seed is the one its (class, index) derives from, so the image can be remade alone.
        expected = {(name, generate.image_seed(7, name, first_index + i)) for name in CLASS_NAMES for i in range(per_class)}
        assert expected <= seen
    assert len(seen) == 24  # every image has its own seed

    # Every shard holds every class equally (one image each here), in the layout's order.
    layout = generate.shard_layout(4, 0.25, 6)
    assert [s.filename for s in layout] == [os.path.basename(p) for p in schema.shard_paths(reference)]
    for shard in layout:
        stored = [(CLASS_NAMES[int(r["class_name"])], int(r["seed"])) for r in shard_records(os.path.join(reference, shard.filename))]
        assert stored == [(name, generate.image_seed(7, name, index)) for name, index in shard.items]
        assert sorted(name for name, _ in stored) == sorted(CLASS_NAMES)

    manifest = json.load(open(os.path.join(reference, "manifest.json")))
    assert manifest["parameters"] == {
        "model": manifest["parameters"]["model"], "per_class": 4, "val_fraction": 0.25, "images_per_shard": 6,
        "size": 16, "gen_size": NATIVE_SIZE, "steps": 2, "guidance": 7.5, "seed": 7, "scheduler": "DDIMScheduler",
    }
    assert manifest["scheduler"]["config"]["prediction_type"] == "v_prediction"
    assert {name: p["prompt"] for name, p in manifest["prompts"].items()} == {n: s.prompt for n, s in CLASSES.items()}
    assert manifest["counts"]["total"] == {"train": 18, "validation": 6}
    assert manifest["counts"]["shards"] == {"train": 3, "validation": 1}
    assert manifest["seeds"]["first_of_each_class"]["woman"] == generate.image_seed(7, "woman", 0)
    assert manifest["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert "diffusers" in manifest["versions"] and "tensorflow-datasets" in manifest["versions"]

    from PIL import Image

    for name in CLASS_NAMES:  # 3 train images in one row, 2 px padding around each
        with Image.open(os.path.join(reference, "contact_sheets", f"{name}.png")) as sheet:
            assert sheet.size == (3 * 18 + 2, 16 + 2 * 2)
    assert not os.path.exists(os.path.join(reference, ".incomplete"))
    assert not os.path.exists(os.path.join(reference, ".finalize.lock"))


def test_layout_is_fixed_by_parameters_and_workers_partition_it():
    layout = generate.shard_layout(6000, 0.1, 300)  # the full-scale defaults
    assert [s.split for s in layout].count("train") == 108 and [s.split for s in layout].count("validation") == 12
    assert layout[0].filename == "sd21-train.tfrecord-00000-of-00108"
    for shard in layout:  # 300 images, 50 of each class
        assert {name: sum(n == name for n, _ in shard.items) for name in CLASS_NAMES} == dict.fromkeys(CLASS_NAMES, 50)
    items = [item for shard in layout for item in shard.items]
    assert sorted(items) == sorted((name, i) for name in CLASS_NAMES for i in range(6000))
    validation = {i for s in layout if s.split == "validation" for _, i in s.items}
    assert validation == set(range(5400, 6000))
    for num_workers in (1, 2, 3, 7, 200):
        shares = [generate.worker_shards(layout, i, num_workers) for i in range(num_workers)]
        assert sorted(s.filename for share in shares for s in share) == sorted(s.filename for s in layout)
    assert generate.shard_layout(6000, 0.1, 300) == layout  # a pure function of the three numbers
    # An uneven split still keeps each shard within one image per class of balance.
    for shard in generate.shard_layout(7, 0.3, 5):
        counts = [sum(n == name for n, _ in shard.items) for name in CLASS_NAMES]
        assert max(counts) - min(counts) <= 1


def test_seeds_are_distinct_and_stable():
    seeds = {generate.image_seed(0, name, i) for name in CLASS_NAMES for i in range(6000)}
    assert len(seeds) == 36000 and all(0 <= s < 2**63 for s in seeds)
    assert generate.image_seed(0, "male_nurse", 0) == generate.image_seed(0, "male_nurse", 0)
    assert generate.image_seed(0, "male_nurse", 0) != generate.image_seed(1, "male_nurse", 0)


def test_killed_run_reruns_to_the_same_bytes(tiny_model, reference, tmp_path):
    out = str(tmp_path / "killed")
    env = {**os.environ, generate.KILL_AFTER_SHARDS_ENV: "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-m", "data_gen.generate", "--out", out, "--model", tiny_model, *FLAGS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # Killed part-way through its second shard: one complete shard, one partial under a temporary
    # name that no reader globs, and no metadata.
    assert sorted(shard_bytes(out)) == ["sd21-train.tfrecord-00000-of-00003"]
    partial = os.path.join(out, ".incomplete", "sd21-train.tfrecord-00001-of-00003")
    assert os.path.exists(partial)
    assert not os.path.exists(os.path.join(out, "dataset_info.json"))

    generate.main(["--out", out, "--model", tiny_model, *FLAGS])
    assert shard_bytes(out) == shard_bytes(reference)
    assert not os.path.exists(partial)
    assert [(r["class_name"], r["seed"]) for r in records(out, "train")] == [
        (r["class_name"], r["seed"]) for r in records(reference, "train")
    ]


def test_two_workers_cover_every_image_once_and_equal_one_worker(tiny_model, reference, tmp_path, capsys):
    out = str(tmp_path / "two_workers")
    generate.main(["--out", out, "--model", tiny_model, *FLAGS, "--worker-index", "1", "--num-workers", "2"])
    assert sorted(shard_bytes(out)) == ["sd21-train.tfrecord-00001-of-00003", "sd21-validation.tfrecord-00000-of-00001"]
    assert not os.path.exists(os.path.join(out, "dataset_info.json"))  # not every shard exists yet
    assert "--finalize" in capsys.readouterr().out
    code, error = exit_status_and_error(["--out", out, "--finalize"], capsys)
    assert code == 2 and "2 of 4 shards" in error

    generate.main(["--out", out, "--model", tiny_model, *FLAGS, "--worker-index", "0", "--num-workers", "2"])
    assert "finalized" in capsys.readouterr().out  # the last worker to finish writes the metadata
    assert shard_bytes(out) == shard_bytes(reference)
    stored = [(CLASS_NAMES[int(r["class_name"])], int(r["seed"])) for p in schema.shard_paths(out) for r in shard_records(p)]
    expected = [(name, generate.image_seed(7, name, i)) for name in CLASS_NAMES for i in range(4)]
    assert sorted(stored) == sorted(expected)  # every (class, index) exactly once
    assert schema.open_dataset(out, "test").info.splits["train"].num_examples == 18

    # A rerun of a finished worker has nothing to do and leaves the bytes alone; --finalize is idempotent.
    generate.main(["--out", out, "--model", tiny_model, *FLAGS, "--worker-index", "0", "--num-workers", "2"])
    assert "0 to write" in capsys.readouterr().out
    generate.main(["--out", out, "--finalize"])
    assert shard_bytes(out) == shard_bytes(reference)


def test_an_image_remade_alone_from_its_seed_equals_the_stored_one(tiny_model, reference):
    manifest = json.load(open(os.path.join(reference, "manifest.json")))
    pipe = generate.load_pipeline(tiny_model, "cpu")
    rows = records(reference, "train")
    # Stored images came out of batches of four; each is remade here in a batch of one.
    for row in (rows[2], rows[13]):
        name = CLASS_NAMES[row["class_name"]]
        remade = generate.remake(pipe, manifest["parameters"], name, int(row["seed"]))
        assert remade.shape == row["image"].shape and remade.dtype == np.uint8
        # Equal up to float rounding in a batch of a different size: at most one level, rarely.
        diff = np.abs(remade.astype(int) - row["image"].astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
        other = generate.remake(pipe, manifest["parameters"], name, int(row["seed"]) + 1)
        assert np.abs(other.astype(int) - row["image"].astype(int)).mean() > 1.0  # the check can fail


def test_errors_are_one_line_and_exit_2(tiny_model, reference, tmp_path, capsys):
    fresh = str(tmp_path / "fresh")
    cases = [
        (["--worker-index", "2", "--num-workers", "2"], "--worker-index must be in 0..1"),
        (["--worker-index", "-1", "--num-workers", "2"], "--worker-index must be in 0..1"),
        (["--num-workers", "0"], "--num-workers at least 1"),
    ]
    for extra, message in cases:
        code, error = exit_status_and_error(["--out", fresh, "--model", tiny_model, *FLAGS, *extra], capsys)
        assert code == 2 and message in error and error.count("\n") == 1, error
    assert not os.path.exists(fresh)

    # A directory made with other parameters: named field, nothing touched.
    before = shard_bytes(reference), open(os.path.join(reference, "manifest.json")).read()
    flags = [f if f != "2" else "3" for f in FLAGS]  # --steps 3
    code, error = exit_status_and_error(["--out", reference, "--model", tiny_model, *flags], capsys)
    assert code == 2 and "different parameters (steps: 2 there, 3 now)" in error and error.count("\n") == 1
    code, error = exit_status_and_error(["--out", reference, "--model", tiny_model + "-copy", *FLAGS], capsys)
    assert code == 2 and "different parameters (model:" in error
    assert (shard_bytes(reference), open(os.path.join(reference, "manifest.json")).read()) == before

    # Models that are not there or do not load.
    missing = str(tmp_path / "no_such_model")
    code, error = exit_status_and_error(["--out", fresh, "--model", missing, *FLAGS], capsys)
    assert code == 2 and f"--model {missing!r} does not exist" in error and error.count("\n") == 1
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    code, error = exit_status_and_error(["--out", fresh, "--model", str(broken), *FLAGS], capsys)
    assert code == 2 and "cannot load a Stable Diffusion pipeline" in error and error.count("\n") == 1
    assert not os.path.exists(os.path.join(fresh, "manifest.json"))

    # An --out that holds something else, and --finalize where nothing was made.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, error = exit_status_and_error(["--out", str(foreign), "--model", tiny_model, *FLAGS], capsys)
    assert code == 2 and "holds files (notes.txt, ...) but no manifest.json" in error
    code, error = exit_status_and_error(["--out", str(tmp_path / "empty"), "--finalize"], capsys)
    assert code == 2 and "no manifest.json" in error
    code, error = exit_status_and_error(["--out", fresh, "--model", tiny_model, *FLAGS, "--val-fraction", "0"], capsys)
    assert code == 2 and "--val-fraction 0.0 leaves no train or no validation image" in error


def test_data_gen_never_imports_jax():
    """data_gen and every jaxdiff module it reaches import no JAX (checked on the source, transitively)."""
    banned = {"jax", "flax", "optax", "orbax", "chex"}
    todo = [os.path.join(REPO, "data_gen", name) for name in os.listdir(os.path.join(REPO, "data_gen")) if name.endswith(".py")]
    done = set()
    while todo:
        path = todo.pop()
        if path in done:
            continue
        done.add(path)
        for node in ast.walk(ast.parse(open(path).read())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxdiff"):
                # `from jaxdiff.data import schema`: the package and, where they are modules, its names
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names
                                        if os.path.exists(os.path.join(REPO, *node.module.split("."), a.name + ".py")))]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path} imports {name}"
                if name.startswith("jaxdiff."):
                    module = os.path.join(REPO, *name.split(".")) + ".py"
                    todo.append(module if os.path.exists(module) else os.path.join(REPO, *name.split("."), "__init__.py"))
    assert os.path.join(REPO, "jaxdiff", "data", "schema.py") in done and os.path.join(REPO, "jaxdiff", "data", "classes.py") in done


def test_jaxdiff_input_pipeline_reads_the_output(reference):
    input_pipeline = pytest.importorskip("jaxdiff.data.input_pipeline")
    rows = list(input_pipeline.read_split(reference, "train", 16).as_numpy_iterator())
    stored = records(reference, "train")
    assert len(rows) == len(stored) == 18
    for row, raw in zip(rows, stored):
        np.testing.assert_allclose(row["image"], raw["image"] / 127.5 - 1.0, atol=1e-6)
        assert list(row["words"]) == list(raw["words"]) and row["class_name"] == raw["class_name"]
    # Two processes read disjoint halves; the layout interleaves classes, so each half has all six.
    shares = [list(input_pipeline.read_split(reference, "train", 8, process_index=i, process_count=2).as_numpy_iterator())
              for i in range(2)]
    assert [len(share) for share in shares] == [9, 9]
    assert shares[0][0]["image"].shape == (8, 8, 3)
    assert all({int(r["class_name"]) for r in share} == set(range(6)) for share in shares)
    assert input_pipeline.num_images(reference, "validation") == 6

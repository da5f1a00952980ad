"""Stable Diffusion 2.1 images of the six prompts of jaxdiff/data/classes.py, written as a jaxdiff dataset directory.

    python -m data_gen.generate --out data/sd21 [--model stabilityai/stable-diffusion-2-1]
        [--per-class 6000] [--size 128] [--steps 50] [--guidance 7.5] [--batch-size 16] [--seed 0]
        [--worker-index I --num-workers N]
    python -m data_gen.generate --out data/sd21 --finalize

The shard layout follows from (--per-class, --val-fraction, --images-per-shard) alone and each
image's noise from its own seed (--seed, class, index), so any number of workers, killed and rerun
any number of times, write the same shards as one uninterrupted run. A worker skips the shards
that are complete (a shard appears under its final name only when whole) and redoes a partial
one. The worker that finds every shard complete writes the TFDS metadata and the contact sheets;
`--finalize` does that by hand. data_gen/README.md has the GPU recipe.
"""

if __name__ == "__main__":  # a command line: quiet TensorFlow before it loads (importing this module does not)
    from jaxdiff.common.cli import quiet_tensorflow

    quiet_tensorflow()

import dataclasses
import importlib.metadata
import json
import os
import platform
import signal
import time
import types
from typing import Any, NamedTuple, Sequence

import numpy as np
from PIL import Image
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.data import schema
from jaxdiff.data.classes import CLASS_NAMES, CLASSES
from jaxdiff.common.errors import UserError

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1"
DATASET_NAME = "sd21"  # the shard file prefix, and so the TFDS dataset name
SOURCE = "sd21"  # the records' `source` field (jaxdiff.data.schema.SOURCES)
GENERATOR = "data_gen.generate"  # the manifest's `generator`: tells our directories from others
MANIFEST = "manifest.json"
CONTACT_DIR = "contact_sheets"
HOW_TO_MAKE = "make it with `python -m data_gen.generate --out DIR` (data_gen/README.md)"
# Tests only: the process SIGKILLs itself part-way through writing the shard after this many.
KILL_AFTER_SHARDS_ENV = "DATA_GEN_KILL_AFTER_SHARDS"
_FINALIZE_LOCK = ".finalize.lock"


@dataclasses.dataclass(frozen=True)
class Params:
    """Everything that decides the dataset's images; every worker and rerun must pass the same."""

    model: str
    per_class: int
    val_fraction: float
    images_per_shard: int
    size: int
    gen_size: int | None  # None: the model's native resolution (768 for SD 2.1)
    steps: int
    guidance: float
    seed: int


class Shard(NamedTuple):
    """One TFRecord shard of the fixed layout: its split, file name and (class, index) images."""

    split: str
    filename: str
    items: tuple[tuple[str, int], ...]


# ---------------------------------------------------------------------------------------------
# The layout and the seeds: pure functions of the parameters, never of the workers.


def shard_layout(per_class: int, val_fraction: float, images_per_shard: int) -> list[Shard]:
    """Every shard of the dataset, train then validation, fixed by the three arguments alone."""
    counts = schema.split_counts(per_class, val_fraction)
    first_index = {"train": 0, "validation": counts["train"]}  # (class, index) is unique over splits
    layout = []
    for split in schema.SPLITS:
        # Classes interleaved, then cut into contiguous runs: every shard holds each class
        # equally (to within one image), so a shard or a host's share of them stays balanced.
        ordered = [(name, first_index[split] + i) for i in range(counts[split]) for name in CLASS_NAMES]
        num_shards = -(-len(ordered) // images_per_shard)
        bounds = [k * len(ordered) // num_shards for k in range(num_shards + 1)]
        for k in range(num_shards):
            filename = schema.shard_filename(DATASET_NAME, split, k, num_shards)
            layout.append(Shard(split, filename, tuple(ordered[bounds[k] : bounds[k + 1]])))
    return layout


def worker_shards(layout: Sequence[Shard], worker_index: int, num_workers: int) -> list[Shard]:
    """The shards worker `worker_index` of `num_workers` writes: disjoint, together all of them."""
    return list(layout[worker_index::num_workers])


def image_seed(base_seed: int, class_name: str, index: int) -> int:
    """The image's own seed (63 bits, stored in its record): remakes it alone, on any device."""
    entropy = [base_seed, CLASS_NAMES.index(class_name), index]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


# ---------------------------------------------------------------------------------------------
# The pipeline (torch and diffusers are imported here only, so --finalize and errors need neither).


def pick_device(name: str) -> str:
    """`auto` is the first CUDA GPU if there is one, else the CPU; anything else is used as given."""
    import torch

    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_like_local_path(model: str) -> bool:
    # A hub id is "owner/name"; anything else (absolute, relative with ./, deeper) is a directory.
    return os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") != 1 or os.path.exists(model)


def load_pipeline(model: str, device: str) -> Any:
    """The diffusers StableDiffusionPipeline at `model` (hub id or directory); fp16 on CUDA."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Our progress bar and messages are the console; the libraries' own would interleave with them.
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    if _looks_like_local_path(model) and not os.path.isdir(os.path.expanduser(model)):
        raise UserError(f"--model {model!r} does not exist; pass a directory saved with save_pretrained or a hub id")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            os.path.expanduser(model), dtype=dtype,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe = pipe.to(device)
    except Exception as error:  # diffusers, transformers and the hub raise many types for one cause
        reason = " ".join(str(error).split())[:300]
        raise UserError(
            f"cannot load a Stable Diffusion pipeline from --model {model!r} ({type(error).__name__}: {reason}); "
            "pass a diffusers directory or a reachable hub id (the official stabilityai/stable-diffusion-2-1 "
            "was taken off the hub in Nov 2025: see data_gen/README.md)"
        ) from error
    pipe.set_progress_bar_config(disable=True)  # ours counts images over the whole run
    # Decode one image at a time: the VAE at 768px would need tens of GB for a batch of 16, and
    # per-image decoding keeps an image independent of its batch mates.
    pipe.vae.enable_slicing()
    return pipe


def native_size(pipe: Any) -> int:
    """The pipeline's native image side in pixels (UNet sample size x VAE factor: 768 for SD 2.1)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def render(pipe: Any, class_names: Sequence[str], seeds: Sequence[int], gen_size: int, size: int,
           steps: int, guidance: float) -> list[np.ndarray]:
    """One uint8 (size, size, 3) image per (class, seed), made in one batch of the pipeline."""
    import torch

    factor = int(pipe.vae_scale_factor)
    shape = (1, int(pipe.unet.config.in_channels), gen_size // factor, gen_size // factor)
    # One CPU generator per image, drawn in float32: the same noise on any device, dtype and
    # batch. Stochastic schedulers draw their later noise from the same generators.
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
    latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    with torch.inference_mode():
        output = pipe(
            prompt=[CLASSES[name].prompt for name in class_names],
            height=gen_size, width=gen_size, num_inference_steps=steps, guidance_scale=guidance,
            latents=latents.to(pipe.device, pipe.unet.dtype), generator=generators, output_type="np",
        )
    pixels = np.clip(np.round(np.asarray(output.images, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return [resize(image, size) for image in pixels]


def resize(image_HWC: np.ndarray, size: int) -> np.ndarray:
    """Downsamples a uint8 image to (size, size) with Lanczos, which anti-aliases."""
    if image_HWC.shape[:2] == (size, size):
        return image_HWC
    return np.asarray(Image.fromarray(image_HWC).resize((size, size), Image.LANCZOS), np.uint8)


def remake(pipe: Any, parameters: dict[str, Any], class_name: str, seed: int) -> np.ndarray:
    """One image remade alone from its stored seed, with the manifest's `parameters`."""
    return render(pipe, [class_name], [seed], parameters["gen_size"], parameters["size"],
                  parameters["steps"], parameters["guidance"])[0]


# ---------------------------------------------------------------------------------------------
# The dataset directory: manifest, shards, metadata, contact sheets.


def read_manifest(out: str) -> dict[str, Any] | None:
    """The manifest of a data_gen directory, None if there is none; anything else is a UserError."""
    path = os.path.join(out, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}); delete it only if {out!r} holds no shards") from error
    if manifest.get("generator") != GENERATOR:
        raise UserError(f"{out!r} holds a dataset made by {manifest.get('generator')!r}, not {GENERATOR}; pick another --out")
    return manifest


def check_out_dir(out: str, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The existing manifest, after checking it has the `wanted` parameters; None for a new directory."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out!r} is a file; pick a directory")
    manifest = read_manifest(out) if os.path.isdir(out) else None
    if manifest is None:
        # write_shard's temporary subdirectory may be all a killed first worker left behind.
        leftovers = [e for e in os.listdir(out) if not e.startswith(".")] if os.path.isdir(out) else []
        if leftovers:
            raise UserError(f"--out {out!r} holds files ({leftovers[0]}, ...) but no {MANIFEST}; pick a new or empty directory")
        return None
    have = manifest.get("parameters", {})
    for key, value in wanted.items():
        if have.get(key) != value:
            raise UserError(
                f"--out {out!r} holds a dataset made with different parameters ({key}: {have.get(key)!r} there, "
                f"{value!r} now); pass the flags it was made with (see its {MANIFEST}) or pick another --out"
            )
    return manifest


def package_versions() -> dict[str, str]:
    """Versions of what decides the images' bytes (and Python's), for the manifest."""
    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "accelerate", "safetensors", "tensorflow-cpu",
                    "tensorflow", "tensorflow-datasets", "numpy", "pillow"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def make_manifest(params: Params, pipe: Any, device: str) -> dict[str, Any]:
    """The manifest: parameters, scheduler, prompts, counts, layout, seed rule and versions."""
    import torch

    counts = schema.split_counts(params.per_class, params.val_fraction)
    layout = shard_layout(params.per_class, params.val_fraction, params.images_per_shard)
    scheduler_config = json.loads(json.dumps(dict(pipe.scheduler.config), default=str))
    return {
        "generator": GENERATOR,
        "dataset_name": DATASET_NAME,
        "source": SOURCE,
        "parameters": {**dataclasses.asdict(params), "scheduler": type(pipe.scheduler).__name__},
        "scheduler": {"class": type(pipe.scheduler).__name__, "config": scheduler_config},
        # CLIP reads 77 tokens (with start and end); the pipeline cuts a longer prompt, as it did
        # for the original generation, so the manifest says how long each prompt is.
        "prompts": {
            name: {"words": list(spec.words), "prompt": spec.prompt,
                   "tokens": len(pipe.tokenizer(spec.prompt).input_ids), "max_tokens": pipe.tokenizer.model_max_length}
            for name, spec in CLASSES.items()
        },
        "counts": {
            "per_class": counts,
            "total": {split: n * len(CLASS_NAMES) for split, n in counts.items()},
            "shards": {split: sum(s.split == split for s in layout) for split in schema.SPLITS},
        },
        "seeds": {
            "base_seed": params.seed,
            "per_image": "int(numpy.random.SeedSequence([base_seed, class_index, index]).generate_state(1, numpy.uint64)[0]) >> 1",
            "class_index": "position in jaxdiff.data.classes.CLASS_NAMES",
            "index": f"train 0..{counts['train'] - 1}, validation {counts['train']}..{params.per_class - 1}",
            "noise": "torch.randn((1, C, gen_size/f, gen_size/f), generator=torch.Generator('cpu').manual_seed(seed), dtype=float32), f the VAE factor (8)",
            "first_of_each_class": {name: image_seed(params.seed, name, 0) for name in CLASS_NAMES},
        },
        # Informational: a worker on another device or dtype makes images equal up to rounding.
        "written_with": {"device": device, "dtype": str(pipe.unet.dtype).replace("torch.", ""),
                         "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None},
        "versions": package_versions(),
    }


def _records(examples: list[dict[str, Any]], die_midway: bool):
    """Yields the examples; with `die_midway` the process SIGKILLs itself after the first (tests)."""
    for i, example in enumerate(examples):
        if die_midway and i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        yield example


def write_one_shard(out: str, shard: Shard, pipe: Any, params: Params, gen_size: int, batch_size: int,
                    progress: Any = None, die_midway: bool = False) -> None:
    """Renders a shard's images in batches (in shard order) and writes it atomically."""
    images, seeds = [], []
    for start in range(0, len(shard.items), batch_size):
        batch = shard.items[start : start + batch_size]
        batch_seeds = [image_seed(params.seed, name, index) for name, index in batch]
        images += render(pipe, [name for name, _ in batch], batch_seeds, gen_size, params.size, params.steps, params.guidance)
        seeds += batch_seeds
        if progress is not None:
            progress.update(len(batch))
    examples = [schema.make_example(image, name, seed, SOURCE)
                for image, (name, _), seed in zip(images, shard.items, seeds)]
    schema.write_shard(out, shard.filename, _records(examples, die_midway))


def layout_of(manifest: dict[str, Any]) -> list[Shard]:
    """The shard layout a manifest's parameters fix."""
    p = manifest["parameters"]
    return shard_layout(p["per_class"], p["val_fraction"], p["images_per_shard"])


def finalize(out: str) -> dict[str, int]:
    """Checks every shard, writes the TFDS metadata over them and the contact sheets; the split sizes."""
    manifest = read_manifest(out)
    if manifest is None:
        raise UserError(f"--out {out!r} has no {MANIFEST}: no worker has started there; {HOW_TO_MAKE}")
    layout = layout_of(manifest)
    missing = [s.filename for s in layout if not os.path.exists(os.path.join(out, s.filename))]
    if missing:
        raise UserError(
            f"{len(missing)} of {len(layout)} shards in {out!r} are not complete yet (first: {missing[0]}); "
            "run the workers (again) with the same flags until every shard exists"
        )
    corrupt = schema.find_corrupt_shard([os.path.join(out, s.filename) for s in layout])
    if corrupt:
        raise UserError(f"corrupt shard {corrupt[0]} ({corrupt[1]}); delete it and rerun its worker, which remakes it")
    p = manifest["parameters"]
    schema.write_metadata(out, description=(
        f"jaxdiff SD-2.1 images of the six jaxdiff prompts: model={p['model']} scheduler={p['scheduler']} "
        f"steps={p['steps']} guidance={p['guidance']} size={p['size']} gen_size={p['gen_size']} "
        f"per_class={p['per_class']} val_fraction={p['val_fraction']} seed={p['seed']}; see {MANIFEST}"
    ))
    builder = schema.open_dataset(out, HOW_TO_MAKE)
    sizes = {split: builder.info.splits[split].num_examples for split in schema.SPLITS}
    expected = manifest["counts"]["total"]
    if sizes != expected:
        raise UserError(f"{out!r} holds {sizes} examples but its manifest says {expected}; remake the dataset")
    write_contact_sheets(out, layout)
    return sizes


def write_contact_sheets(out: str, layout: Sequence[Shard], per_class: int = 64, columns: int = 8) -> None:
    """CONTACT_DIR/<class>.png: the class's first `per_class` train images (by index), in a grid."""
    import tensorflow as tf

    spec = schema.features()
    found: dict[str, list[np.ndarray]] = {name: [] for name in CLASS_NAMES}
    # Train shards in layout order hold each class's images in index order, so reading them in
    # order finds the first images of every class.
    for shard in (s for s in layout if s.split == "train"):
        if all(len(images) >= per_class for images in found.values()):
            break
        for record in tf.data.TFRecordDataset(os.path.join(out, shard.filename)).map(spec.deserialize_example):
            found[CLASS_NAMES[int(record["class_name"])]].append(record["image"].numpy())
    for name, entries in found.items():
        images = np.stack(entries[:per_class])
        files.save_png(os.path.join(out, CONTACT_DIR, f"{name}.png"), files.image_grid(images, ncols=min(columns, len(images))))


# ---------------------------------------------------------------------------------------------
# The worker.


def run_worker(out: str, params: Params, worker_index: int, num_workers: int, batch_size: int, device: str) -> None:
    """Writes this worker's missing shards; finalizes when it finds every shard of the layout complete."""
    layout = shard_layout(params.per_class, params.val_fraction, params.images_per_shard)
    wanted = {k: v for k, v in dataclasses.asdict(params).items() if not (k == "gen_size" and v is None)}
    manifest = check_out_dir(out, wanted)
    mine = worker_shards(layout, worker_index, num_workers)
    todo = [s for s in mine if not os.path.exists(os.path.join(out, s.filename))]
    print(f"worker {worker_index}/{num_workers}: {len(mine)} of {len(layout)} shards are mine, "
          f"{len(mine) - len(todo)} complete already, {len(todo)} to write", flush=True)
    if todo:
        generate_shards(out, params, manifest, todo, batch_size, device, f"worker {worker_index}/{num_workers}")
    complete = sum(os.path.exists(os.path.join(out, s.filename)) for s in layout)
    if complete < len(layout):
        print(f"{complete} of {len(layout)} shards complete in {out}; the worker that completes the last one "
              f"finalizes (or run `python -m data_gen.generate --out {out} --finalize`)", flush=True)
        return
    # Only one of several workers that finish together writes the metadata; a stale lock (a
    # finalize that was killed) is no obstacle to `--finalize`, which takes none.
    lock = os.path.join(out, _FINALIZE_LOCK)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        print(f"another worker is finalizing {out}; if none is, run `python -m data_gen.generate --out {out} --finalize`")
        return
    try:
        os.close(fd)
        report_finalized(out, finalize(out))
    finally:
        os.remove(lock)


def generate_shards(out: str, params: Params, manifest: dict[str, Any] | None, todo: Sequence[Shard],
                    batch_size: int, device: str, label: str) -> None:
    """Loads the pipeline, records or checks the manifest, and writes the `todo` shards."""
    from tqdm import tqdm

    device = pick_device(device)
    started = time.time()
    pipe = load_pipeline(params.model, device)
    gen_size = params.gen_size or native_size(pipe)
    factor = int(pipe.vae_scale_factor)
    if gen_size % factor or gen_size < params.size:
        raise UserError(f"--gen-size {gen_size} must be a multiple of {factor} and at least --size {params.size}")
    resolved = dataclasses.replace(params, gen_size=gen_size)
    if manifest is None:
        files.write_json(os.path.join(out, MANIFEST), make_manifest(resolved, pipe, device))
    else:
        check_out_dir(out, {"gen_size": gen_size, "scheduler": type(pipe.scheduler).__name__})
    print(f"{label}: loaded {params.model} on {device} ({pipe.unet.dtype}) in {time.time() - started:.0f}s; "
          f"{gen_size}px, {params.steps} steps, guidance {params.guidance}, saved at {params.size}px", flush=True)
    kill_after = int(os.environ.get(KILL_AFTER_SHARDS_ENV, "-1"))
    total = sum(len(s.items) for s in todo)
    with tqdm(total=total, unit="img", desc=label, dynamic_ncols=True, smoothing=0.05) as progress:
        for written, shard in enumerate(todo):
            write_one_shard(out, shard, pipe, resolved, gen_size, batch_size, progress, die_midway=written == kill_after)
            progress.write(f"{label}: wrote {shard.filename} ({len(shard.items)} images)")


def report_finalized(out: str, sizes: dict[str, int]) -> None:
    """Prints what a finished dataset holds and how to train on it."""
    print(f"finalized {out}: {sizes} examples; contact sheets in {os.path.join(out, CONTACT_DIR)}; "
          f"train on it with `python -m jaxdiff.train --config=configs/base.py` (data.dir={out})", flush=True)


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m data_gen.generate`."""
    define = {str: absl_flags.DEFINE_string, int: absl_flags.DEFINE_integer, float: absl_flags.DEFINE_float,
              bool: absl_flags.DEFINE_bool}
    for name, kind, default, help_text in [
        ("out", str, None, "dataset directory (created, or resumed with the same flags)"),
        ("model", str, DEFAULT_MODEL, "diffusers Stable Diffusion pipeline: hub id or local directory"),
        ("per-class", int, 6000, "images per class, both splits together"),
        ("val-fraction", float, 0.1, "share of each class held out as `validation`"),
        ("size", int, 128, "side of the stored images in pixels (resized with Lanczos)"),
        ("gen-size", int, None, "side the model renders at; default its native one (768)"),
        ("steps", int, 50, "denoising steps"),
        ("guidance", float, 7.5, "classifier-free guidance scale"),
        ("seed", int, 0, "dataset seed; each image's seed derives from (seed, class, index)"),
        ("images-per-shard", int, 300, "shard size: fixes the layout, with --per-class and --val-fraction"),
        ("batch-size", int, 16, "images per pipeline call (speed and memory only)"),
        ("device", str, "auto", "torch device: auto (CUDA if present, else CPU), cuda, cuda:1, cpu"),
        ("worker-index", int, 0, "this worker's index in 0..num-workers-1"),
        ("num-workers", int, 1, "workers splitting the shards (one per GPU or machine)"),
        ("finalize", bool, False, "only write the TFDS metadata and contact sheets over complete shards"),
    ]:
        define[kind](name, default, help_text, flag_values=values)


def parse_args(argv: Sequence[str]) -> types.SimpleNamespace:
    """The command line of `python -m data_gen.generate`."""
    return cli.parse_flags(argv, define_flags, required=["out"], doc=__doc__)


def params_from_args(args: types.SimpleNamespace) -> Params:
    """The generation parameters, with one-line errors for values that cannot work."""
    if args.num_workers < 1 or not 0 <= args.worker_index < args.num_workers:
        raise UserError(f"--worker-index must be in 0..{args.num_workers - 1} and --num-workers at least 1 "
                        f"(got --worker-index {args.worker_index} --num-workers {args.num_workers})")
    checks = {"--per-class": (args.per_class, 2), "--size": (args.size, 8), "--steps": (args.steps, 1),
              "--batch-size": (args.batch_size, 1), "--images-per-shard": (args.images_per_shard, 1),
              "--seed": (args.seed, 0)}
    for flag, (value, least) in checks.items():
        if value < least:
            raise UserError(f"{flag} must be at least {least} (got {value})")
    if args.gen_size is not None and args.gen_size < args.size:
        raise UserError(f"--gen-size {args.gen_size} must be at least --size {args.size}")
    return Params(model=args.model, per_class=args.per_class, val_fraction=args.val_fraction,
                  images_per_shard=args.images_per_shard, size=args.size, gen_size=args.gen_size,
                  steps=args.steps, guidance=args.guidance, seed=args.seed)


def main(argv: Sequence[str]) -> None:
    args = parse_args(argv)
    if args.finalize:
        report_finalized(args.out, finalize(args.out))
        lock = os.path.join(args.out, _FINALIZE_LOCK)
        if os.path.exists(lock):  # left by a worker killed while finalizing; the work is done now
            os.remove(lock)
        return
    run_worker(args.out, params_from_args(args), args.worker_index, args.num_workers, args.batch_size, args.device)


if __name__ == "__main__":
    cli.run(main)

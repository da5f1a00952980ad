"""An accelerator's check-up in one command: correctness against the CPU, throughput, memory, a short training.

    python -m jaxdiff.device_check --out DIR [--config configs/base_h100.py] [--steps 2000] [--budget 480]
        [--skip STAGE,...] [--memory-batches 64,256]

Made for a GPU or TPU host on which time is short. Stages run in order of importance and each is
skipped, with the reason recorded, once the time budget would not cover it; DIR/device_check.json
is rewritten after every stage, so a run cut off early still leaves what it measured:

1. `environment`: JAX version, devices, the accelerator's memory.
2. `step_vs_cpu`: one float32 training step of configs/toy.py on the accelerator and on the host
   CPU from the same state, batch and key; the largest parameter and loss differences, at JAX's
   default matmul precision (TF32 on NVIDIA GPUs) and at "highest" (true float32).
3. `benchmark`: jaxdiff.benchmark's interleaved training measurement for --config (and
   configs/toy.py), with the diffusers peer eager and compiled where torch and diffusers import;
   images/s, step time, XLA FLOPs, MFU against the bf16 peak, and the peak device memory in use.
4. `training`: --steps steps of --config through jaxdiff.train's own loop and step, on portraits
   rendered in memory at the config's image size (no TensorFlow needed; TensorBoard files are
   skipped without it); checkpoints every min(steps / 2, 200) steps and at the end, the last one
   restored and compared bit for bit; the loss curve, the time per step and an EMA sample grid
   (DIR/samples.png).
5. `memory`: XLA's memory analysis of the compiled step at two batch sizes, with and without
   `model.remat`, and from their straight line the largest batch that fits the device.

The dataset is rendered in memory because accelerator images often have JAX but not TensorFlow;
the real input pipeline is measured by jaxdiff.benchmark where TensorFlow is installed.
"""


import importlib
import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.core import conditioning, parallel
from jaxdiff.data import embed, portraits, vectors
from jaxdiff.training import factory, logs, train
from jaxdiff.training.checkpoints import Checkpoints, state_dict
from jaxdiff.data.classes import CLASSES
from jaxdiff.common.errors import UserError

TOY_CONFIG = "configs/toy.py"


def load_config(path: str) -> ml_collections.ConfigDict:
    """The config of a configs/NAME.py path."""
    return importlib.import_module(path.removesuffix(".py").replace("/", ".")).get_config()


class Deadline:
    """Seconds left of the run's budget; stages ask before they start."""

    def __init__(self, budget_s: float):
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()


def environment() -> dict[str, Any]:
    """JAX version, devices and the first device's memory."""
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {"jax_version": jax.__version__, "platform": device.platform, "device_kind": device.device_kind,
            "num_devices": jax.device_count(), "bytes_limit": stats.get("bytes_limit")}


def synthetic_batch(config: ml_collections.ConfigDict, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Images uniform in [-1, 1] and conditions at the projected vectors' scale."""
    rng = np.random.default_rng(seed)
    size = config.data.image_size
    return {"image": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
            "cond": conditioning.random_conditions(rng, batch_size, config.embed.dim)}


def _one_step(config: ml_collections.ConfigDict, devices: Sequence[jax.Device], batch: dict, precision: str) -> dict:
    with jax.default_matmul_precision(precision):
        built = factory.build(config, parallel.make_mesh(devices), donate=False)
        new_state, metrics = built.step(built.state, parallel.to_global(batch, parallel.batch_sharded(built.mesh)),
                                        built.base_key)
        return parallel.fetch({"params": new_state.params, "loss": metrics["loss"], "grad_norm": metrics["grad_norm"]})


def step_vs_cpu(config: ml_collections.ConfigDict, batch_size: int = 16) -> dict[str, Any]:
    """One training step on the accelerator (default and highest matmul precision) against the CPU's."""
    batch = synthetic_batch(config, batch_size)
    cpu = _one_step(config, jax.devices("cpu")[:1], batch, "highest")  # the CPU computes float32 either way
    scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(cpu["params"]))
    out: dict[str, Any] = {"config": "toy, float32", "batch_size": batch_size, "loss_cpu": float(cpu["loss"]),
                           "grad_norm_cpu": float(cpu["grad_norm"]), "max_abs_param": scale}
    for precision in ("default", "highest"):
        acc = _one_step(config, jax.devices()[:1], batch, precision)
        diffs = jax.tree.leaves(jax.tree.map(lambda x, y: float(np.max(np.abs(x - y))), acc["params"], cpu["params"]))
        out[precision] = {"loss": float(acc["loss"]), "grad_norm": float(acc["grad_norm"]),
                          "loss_relative_difference": abs(float(acc["loss"]) - out["loss_cpu"]) / abs(out["loss_cpu"]),
                          "max_abs_param_difference": max(diffs)}
    return out


def benchmark(config: ml_collections.ConfigDict, peer: str | None, repeats: int, steps: int, log: Callable,
              compile_peer: bool) -> dict:
    """jaxdiff.benchmark's training measurement, with MFU and the device's peak memory."""
    from jaxdiff.tools import benchmark as bench

    mesh = parallel.make_mesh()
    training = bench.benchmark_training(config, mesh, peer, repeats, steps, log, compile_peer=compile_peer)
    device = jax.devices()[0]
    step_s = config.train.batch_size / training["jaxdiff"]["median"]
    achieved = training["flops_per_step"] / step_s if training["flops_per_step"] else None
    peak = bench.peak_flops(device, config.model.dtype, None)
    stats = device.memory_stats() or {}
    return {"batch_size": config.train.batch_size, "dtype": config.model.dtype, "step_ms": 1000 * step_s,
            "jaxdiff_images_per_s": training["jaxdiff"]["median"],
            "peer_eager_images_per_s": training.get("peer_eager", {}).get("median"),
            "peer_compiled_images_per_s": training.get("peer_compiled", {}).get("median"),
            "ratio_eager": training.get("ratio_eager", {}).get("median"),
            "ratio_compiled": training.get("ratio_compiled", {}).get("median"),
            "flops_per_step": training["flops_per_step"], "achieved_flops_per_s": achieved,
            "peak_flops_per_s": peak, "mfu": achieved / peak if achieved and peak else None,
            "peak_bytes_in_use": stats.get("peak_bytes_in_use"), "training": training}


def in_memory_portraits(config: ml_collections.ConfigDict, table: embed.EmbeddingTable,
                        per_class: int) -> dict[str, np.ndarray]:
    """Balanced portraits at the config's size with the three conditions each image gives (first, second, mean)."""
    images, conds = [], []
    for class_name, spec in CLASSES.items():
        first, second = (table.projected_vector(w) for w in spec.words)
        for image, _ in portraits.class_images(class_name, 0, per_class, config.data.image_size, config.portraits.seed):
            for kind in config.data.cond_kinds:
                images.append(image.astype(np.float32) / 127.5 - 1.0)
                conds.append(conditioning.of_kind(kind, first, second))
    return {"image": np.stack(images), "cond": np.stack(conds).astype(np.float32)}


def short_training(config: ml_collections.ConfigDict, steps: int, per_class: int, out_dir: str,
                   deadline: Deadline, log: Callable) -> dict[str, Any]:
    """`steps` steps of jaxdiff.train's loop on in-memory portraits; a checkpoint's round trip; the samples."""
    table = embed.build_table(vectors.load_source(config.embed.source, config.embed.vectors_path or None),
                              config.embed.dim, config.embed.seed)
    data = in_memory_portraits(config, table, per_class)
    config = ml_collections.ConfigDict(config.to_dict())
    t = config.train
    t.num_steps, t.log_every, t.eval_every, t.sample_every = steps, min(steps, 100), steps, steps
    t.checkpoint_every = max(1, min(steps // 2, 200))  # a cut-short run still writes one before its end
    t.val_examples = jax.device_count() * max(1, 8 // jax.device_count())  # a few, split evenly over the devices

    def batches(mesh: jax.sharding.Mesh, start_example: int):
        order, sharded = np.random.default_rng((config.seed, start_example)), parallel.batch_sharded(mesh)
        while True:
            index = order.integers(0, len(data["image"]), t.batch_size)
            yield parallel.to_global({k: v[index] for k, v in data.items()}, sharded)

    workdir = tempfile.mkdtemp(prefix="jaxdiff-device-check-")  # checkpoints and logs stay off DIR
    start = time.perf_counter()
    state, _ = train.train_in(config, workdir, table, batches=batches,
                              validation={k: v[:t.val_examples] for k, v in data.items()},
                              should_stop=lambda: deadline.left() < 20)
    total = time.perf_counter() - start
    step = int(parallel.fetch(state.step))
    if step < steps:
        log(f"training stopped at step {step}: the time budget is spent")
    # The run ended with a checkpoint of its last state: restored, it must be that state bit for bit.
    checkpoints = Checkpoints(workdir, t)
    restored, _ = checkpoints.restore(state, parallel.replicated(parallel.make_mesh()))
    checkpoints.close()
    restored_equal = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(parallel.fetch(state_dict(state))),
                                                               jax.tree.leaves(parallel.fetch(state_dict(restored)))))
    log(f"checkpoint at step {step} restored; identical: {restored_equal}")
    shutil.copyfile(os.path.join(workdir, "samples", f"step_{step:07d}.png"), os.path.join(out_dir, "samples.png"))
    logged = [m for m in logs.read_metrics(workdir) if "train/loss" in m]
    losses = [{"step": m["step"], "loss": m["train/loss"]} for m in logged]
    # Past the first window, which holds the compilation.
    steady = [1000 * t.batch_size / m["train/images_per_s"] for m in logged[1:] or logged]
    shutil.rmtree(workdir, ignore_errors=True)
    return {"steps": step, "batch_size": t.batch_size, "dataset_images": len(data["image"]) // len(config.data.cond_kinds),
            "losses": losses, "first_loss": losses[0]["loss"] if losses else None,
            "last_loss": losses[-1]["loss"] if losses else None,
            "step_ms_median": statistics.median(steady) if steady else None,
            "seconds_total": total, "checkpoint_restored_identical": restored_equal,
            "sample_grid": os.path.join(out_dir, "samples.png")}


def step_memory_bytes(config: ml_collections.ConfigDict, batch_size: int) -> int:
    """XLA's memory analysis of the compiled, donated step: arguments + outputs - aliased + temporaries."""
    built = factory.build(config, parallel.make_mesh(), abstract=True)
    batch = factory.abstract_batch(config, built.mesh, batch_size)
    analysis = built.step.lower(built.state, batch, built.base_key).compile().memory_analysis()
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes
               + analysis.temp_size_in_bytes)


def largest_batch(config: ml_collections.ConfigDict, batches: tuple[int, int], bytes_limit: int | None) -> dict:
    """Memory at two batch sizes with and without remat, and the largest batch their line allows."""
    out = {}
    for remat in (False, True):
        variant = ml_collections.ConfigDict(config.to_dict())
        variant.model.remat = remat
        sizes = {b: step_memory_bytes(variant, b) for b in batches}
        (b1, m1), (b2, m2) = sorted(sizes.items())
        per_example = (m2 - m1) / (b2 - b1)
        fixed = m1 - per_example * b1
        entry: dict[str, Any] = {"bytes_by_batch": sizes, "bytes_per_example": per_example, "fixed_bytes": fixed}
        if bytes_limit:
            entry["largest_batch"] = int((bytes_limit - fixed) // per_example) // 8 * 8
        out["remat" if remat else "no_remat"] = entry
    return out


def _peer_available() -> str | None:
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
        return "diffusers"
    except ImportError:
        return None


STAGES = ("environment", "step_vs_cpu", "benchmark", "training", "memory", "benchmark_toy")


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.device_check`."""
    absl_flags.DEFINE_string("out", None, "folder for device_check.json and samples.png", flag_values=values)
    absl_flags.DEFINE_string("config", "configs/base_h100.py", "the config to benchmark and train", flag_values=values)
    absl_flags.DEFINE_integer("steps", 2000, "training steps of the `training` stage", flag_values=values)
    absl_flags.DEFINE_integer("per-class", 100, "portraits per class rendered for training", flag_values=values)
    absl_flags.DEFINE_float("budget", 480, "seconds; stages that would not fit are skipped", flag_values=values)
    absl_flags.DEFINE_integer("repeats", 3, "interleaved benchmark repeats", flag_values=values)
    absl_flags.DEFINE_integer("bench-steps", 20, "timed steps per benchmark repeat", flag_values=values)
    absl_flags.DEFINE_list("memory-batches", ["64", "256"], "the two batches of the memory line (comma-separated)",
                           flag_values=values)
    absl_flags.DEFINE_bool("compile-peer", False, "also time the torch.compile peer (its compilation takes minutes)",
                           flag_values=values)
    absl_flags.DEFINE_list("skip", [], f"stages not to run (comma-separated), of: {','.join(STAGES)}",
                           flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, required=["out"], doc=__doc__)
    try:
        memory_batches = tuple(int(b) for b in args.memory_batches)
    except ValueError:
        memory_batches = ()
    if len(memory_batches) != 2:
        raise UserError(f"--memory-batches {','.join(args.memory_batches)!r}: give two batch sizes, e.g. 64,256")
    unknown = [name for name in args.skip if name not in STAGES]
    if unknown:
        raise UserError(f"--skip: unknown stage {unknown[0]!r}; choose from {','.join(STAGES)}")
    deadline = Deadline(args.budget)
    os.makedirs(args.out, exist_ok=True)
    report: dict[str, Any] = {"config": args.config, "stages": {}}
    config = load_config(args.config)
    config.embed.source = "word2vec-subset"  # bundled: the full word2vec needs a download
    toy = load_config(TOY_CONFIG)
    toy.model.dtype = "float32"
    peer = _peer_available()

    def log(message: str) -> None:
        print(f"[{args.budget - deadline.left():6.0f} s] {message}", flush=True)

    stages: list[tuple[str, float, Callable[[], Any]]] = [
        ("environment", 0, environment),
        ("step_vs_cpu", 60, lambda: step_vs_cpu(toy)),
        ("benchmark", 150, lambda: benchmark(config, peer, args.repeats, args.bench_steps, log, args.compile_peer)),
        ("training", 90, lambda: short_training(config, args.steps, args.per_class, args.out, deadline, log)),
        ("memory", 60, lambda: largest_batch(config, memory_batches, report["environment"]["bytes_limit"])),
        ("benchmark_toy", 60, lambda: benchmark(toy, peer, args.repeats, args.bench_steps, log, args.compile_peer)),
    ]
    for name, needs_s, stage in stages:
        if name in args.skip or deadline.left() < needs_s:
            report["stages"][name] = "skipped" if name in args.skip else f"skipped: {deadline.left():.0f} s left"
        else:
            started = time.perf_counter()
            log(f"{name} ...")
            try:
                report[name] = stage()
                report["stages"][name] = f"done in {time.perf_counter() - started:.0f} s"
            except Exception as error:  # record and go on: one failing stage must not cost the others
                report["stages"][name] = f"failed: {type(error).__name__}: {str(error)[:500]}"
        log(f"{name}: {report['stages'][name]}")
        files.write_json(os.path.join(args.out, "device_check.json"), report)

"""An accelerator's check-up in one command: correctness against the CPU, throughput, memory, a short training.

    python -m jaxdiff.device_check --out DIR [--config configs/base_h100.py] [--steps 2000] [--budget 480]

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
4. `training`: --steps steps of --config on portraits rendered in memory at the config's image
   size (no TensorFlow needed), a checkpoint written halfway and restored bit for bit, then the
   loss curve, the time per step and an EMA sample grid (DIR/samples.png).
   (The checkpoint is taken at min(steps / 2, 200), so that a cut-short run still checks it.)
5. `memory`: XLA's memory analysis of the compiled step at two batch sizes, with and without
   `model.remat`, and from their straight line the largest batch that fits the device.

The dataset is rendered in memory because accelerator images often have JAX but not TensorFlow;
the real input pipeline is measured by jaxdiff.benchmark where TensorFlow is installed.
"""


import functools
import importlib
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from jaxdiff.common import files
from jaxdiff.core import conditioning, diffusion, models, parallel, sampling
from jaxdiff.data import embed, portraits, vectors
from jaxdiff.training import train
from jaxdiff.training.checkpoints import Checkpoints, state_dict
from jaxdiff.data.classes import CLASSES
from jaxdiff.common.cli import ArgumentParser
from jaxdiff.core.state import create_train_state

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


def _state_and_step(config: ml_collections.ConfigDict, devices: Sequence[jax.Device]):
    model = models.create_model(config)
    schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    mesh = parallel.make_mesh(devices)
    state = jax.jit(functools.partial(create_train_state, config, model),
                    out_shardings=parallel.replicated(mesh))(jax.random.key(config.seed))
    return mesh, state, train.jit_train_step(config, model, schedule, mesh, donate=False)


def synthetic_batch(config: ml_collections.ConfigDict, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Images uniform in [-1, 1] and conditions at the projected vectors' scale."""
    rng = np.random.default_rng(seed)
    size = config.data.image_size
    return {"image": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
            "cond": conditioning.random_conditions(rng, batch_size, config.embed.dim)}


def _one_step(config: ml_collections.ConfigDict, devices: Sequence[jax.Device], batch: dict, precision: str) -> dict:
    with jax.default_matmul_precision(precision):
        mesh, state, step_fn = _state_and_step(config, devices)
        new_state, metrics = step_fn(state, parallel.to_global(batch, parallel.batch_sharded(mesh)), jax.random.key(1))
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
    """`steps` steps of the real training step; checkpoint halfway, restore it, compare, finish, sample."""
    table = embed.build_table(vectors.load_source(config.embed.source, config.embed.vectors_path or None),
                              config.embed.dim, config.embed.seed)
    data = in_memory_portraits(config, table, per_class)
    model = models.create_model(config)
    schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    mesh = parallel.make_mesh()
    repl, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    state = jax.jit(functools.partial(create_train_state, config, model), out_shardings=repl)(init_key)
    step_fn = train.jit_train_step(config, model, schedule, mesh)
    order = np.random.default_rng(config.seed)
    batch_size = config.train.batch_size
    workdir = tempfile.mkdtemp(prefix="jaxdiff-device-check-")  # checkpoints stay off DIR
    checkpoints = Checkpoints(workdir, config.train)
    losses, window_times, restored_equal = [], [], None
    log_every = 100
    start = time.perf_counter()
    window, window_step = time.perf_counter(), 0
    step = 0
    while step < steps:
        index = order.integers(0, len(data["image"]), batch_size)
        batch = parallel.to_global({k: v[index] for k, v in data.items()}, sharded)
        state, metrics = step_fn(state, batch, base_key)
        step += 1
        if step == 1 or step % log_every == 0:
            loss = float(parallel.fetch(metrics["loss"]))
            now = time.perf_counter()
            window_times.append((now - window) / (step - window_step))
            window_step = step
            window = now
            losses.append({"step": step, "loss": loss})
            log(f"training step {step}: loss {loss:.4f}, {1000 * window_times[-1]:.1f} ms/step")
        if step == min(steps // 2, 200):
            checkpoints.save(state, step * batch_size)
            checkpoints.wait()
            before = parallel.fetch(state_dict(state))
            state, _ = checkpoints.restore(state, repl)
            after = parallel.fetch(state_dict(state))
            restored_equal = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
            log(f"checkpoint at step {step} restored; identical: {restored_equal}")
            window, window_step = time.perf_counter(), step
        if deadline.left() < 20:
            log(f"training stopped at step {step}: the time budget is spent")
            break
    checkpoints.close()
    total = time.perf_counter() - start
    image_sampler = sampling.ImageSampler(model, schedule, config.diffusion.prediction,
                                          (config.data.image_size,) * 2 + (3,), mesh)
    grid = train.sample_grid(image_sampler, state.ema_params, table, config, seed=config.seed)
    files.save_png(os.path.join(out_dir, "samples.png"), grid, scale=2)
    steady = window_times[2:] or window_times  # past the first step (compilation) and the first window
    return {"steps": step, "batch_size": batch_size, "dataset_images": len(data["image"]) // len(config.data.cond_kinds),
            "losses": losses, "first_loss": losses[0]["loss"] if losses else None,
            "last_loss": losses[-1]["loss"] if losses else None,
            "step_ms_median": 1000 * statistics.median(steady) if steady else None,
            "seconds_total": total, "checkpoint_restored_identical": restored_equal,
            "sample_grid": os.path.join(out_dir, "samples.png")}


def step_memory_bytes(config: ml_collections.ConfigDict, batch_size: int) -> int:
    """XLA's memory analysis of the compiled, donated step: arguments + outputs - aliased + temporaries."""
    model = models.create_model(config)
    schedule = diffusion.make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    mesh = parallel.make_mesh()
    repl, sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    state = jax.eval_shape(functools.partial(create_train_state, config, model), jax.random.key(0))
    state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
    size = config.data.image_size
    batch = {"image": jax.ShapeDtypeStruct((batch_size, size, size, 3), np.float32, sharding=sharded),
             "cond": jax.ShapeDtypeStruct((batch_size, config.embed.dim), np.float32, sharding=sharded)}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=repl)
    analysis = train.jit_train_step(config, model, schedule, mesh).lower(state, batch, key).compile().memory_analysis()
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


def main(argv: Sequence[str]) -> None:
    parser = ArgumentParser(prog="python -m jaxdiff.device_check", description=__doc__.splitlines()[0],
                            exit_on_error=False)
    parser.add_argument("--out", required=True, help="folder for device_check.json and samples.png")
    parser.add_argument("--config", default="configs/base_h100.py", help="the config to benchmark and train")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of the `training` stage")
    parser.add_argument("--per-class", type=int, default=100, help="portraits per class rendered for training")
    parser.add_argument("--budget", type=float, default=480, help="seconds; stages that would not fit are skipped")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved benchmark repeats")
    parser.add_argument("--bench-steps", type=int, default=20, help="timed steps per benchmark repeat")
    parser.add_argument("--memory-batches", type=int, nargs=2, default=(64, 256), help="batches of the memory line")
    parser.add_argument("--compile-peer", action="store_true",
                        help="also time the torch.compile peer (its compilation took 175 s for base_h100 on an H100)")
    parser.add_argument("--skip", nargs="*", default=(), help="stages not to run")
    args = parser.parse_args(argv)
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
        ("memory", 60, lambda: largest_batch(config, tuple(args.memory_batches), report["environment"]["bytes_limit"])),
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

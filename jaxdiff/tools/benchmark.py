"""Throughput against the PyTorch peer, measured side by side in one run on the same machine.

    python -m jaxdiff.benchmark --config=configs/toy.py [--peer diffusers] [--json OUT] [--repeats 5]

Training images/s of the full step (forward, backward, clipping, AdamW, EMA) for jaxdiff and for
diffusers' UNet2DModel built to match the config (eager, and with torch.compile where it works),
in interleaved repeats so both see the same machine; the ratio per repeat and its median; FLOPs
per step from XLA's cost analysis, the achieved FLOP/s and the share of the device's peak (MFU)
where the peak is known (or --peak); sampling images/s of DDPM, DDIM and DPM-Solver++ at their
default steps for both; the input pipeline's examples/s.
"""


import datetime
import os
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.core import conditioning, models, parallel, sampling
from jaxdiff.data import embed, vectors
from jaxdiff.training import factory
from jaxdiff.common.cli import hide_accelerators_from_tensorflow
from jaxdiff.common.errors import UserError

# Dense bf16 peaks (FLOP/s) by device kind, from the vendors' data sheets. float32 runs get no
# MFU unless --peak is given: what "peak" means for float32 (TF32? vector units?) is ambiguous.
BF16_PEAK_FLOPS = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12,
}


def peak_flops(device: jax.Device, dtype: str, override: float | None) -> float | None:
    """The device's peak FLOP/s for the compute dtype, or None if unknown."""
    if override:
        return override
    if dtype != "bfloat16":
        return None
    return next((peak for kind, peak in BF16_PEAK_FLOPS.items() if kind in device.device_kind), None)


def _median_spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "repeats": list(values)}


class JaxdiffTrainer:
    """The jitted, donated training step of jaxdiff.train (training.factory) on a fixed synthetic batch."""

    def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, batch_size: int, seed: int = 0):
        built = factory.build(config, mesh)
        self.model, self.state, self.step_fn, self.key = built.model, built.state, built.step, built.base_key
        rng = np.random.default_rng(seed)
        size = config.data.image_size
        self.batch = jax.device_put({
            "image": rng.uniform(-1, 1, (batch_size, size, size, 3)).astype(np.float32),
            "cond": conditioning.random_conditions(rng, batch_size, config.embed.dim),
        }, parallel.batch_sharded(mesh))
        lowered = self.step_fn.lower(self.state, self.batch, self.key)
        lowered.compile()
        self.flops_per_step = factory.training_step_flops(config, mesh, lowered)
        self.params = models.count_params(self.state.params)

    def time(self, steps: int) -> float:
        """Seconds for `steps` steps, waiting for the last one to finish."""
        start = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.step_fn(self.state, self.batch, self.key)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start


def benchmark_training(config, mesh, peer: str | None, repeats: int, steps: int, log,
                       compile_peer: bool = True) -> dict[str, Any]:
    """Interleaved repeats of jaxdiff and the peer (eager, then compiled where it works and is asked for)."""
    batch_size = config.train.batch_size
    ours = JaxdiffTrainer(config, mesh, batch_size)
    ours.time(2)  # warm-up after compilation
    peers: dict[str, Any] = {}
    if peer == "diffusers":
        from jaxdiff.tools import benchmark_peer  # torch: only when a peer is asked for

        peers["eager"] = benchmark_peer.PeerTrainer(config)
        benchmark_peer.time_training(peers["eager"], batch_size, 2)
        try:
            if not compile_peer or os.environ.get("JAXDIFF_BENCH_NO_COMPILE"):  # the tests skip inductor's minutes
                raise RuntimeError("skipped: not asked for (JAXDIFF_BENCH_NO_COMPILE or compile_peer=False)")
            compiled = benchmark_peer.PeerTrainer(config, compiled=True)
            start = time.perf_counter()
            benchmark_peer.time_training(compiled, batch_size, 2)
            log(f"torch.compile of the peer: {time.perf_counter() - start:.0f} s (compilation and 2 steps)")
            peers["compiled"] = compiled
        except Exception as error:  # inductor needs a working C++ toolchain and may fail on some setups
            log(f"torch.compile of the peer failed ({type(error).__name__}: {str(error)[:200]}); eager only")
    rates: dict[str, list[float]] = {"jaxdiff": [], **{name: [] for name in peers}}
    for r in range(repeats):
        # Each side's repeat starts with one untimed step: both run in this one process, and
        # jaxdiff's first step after the peer's turn is slower than the next ones while the peer's
        # is not (docs/performance.md has the figures). Training steps run back to back, so the
        # steady step is the figure that counts, for both.
        ours.time(1)
        rates["jaxdiff"].append(steps * batch_size / ours.time(steps))
        for name, trainer in peers.items():
            benchmark_peer.time_training(trainer, batch_size, 1)
            rates[name].append(steps * batch_size / benchmark_peer.time_training(trainer, batch_size, steps))
        log(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f} images/s" for k, v in rates.items()))
    out = {"batch_size": batch_size, "steps_per_repeat": steps, "jaxdiff": _median_spread(rates["jaxdiff"]),
           "jaxdiff_params": ours.params, "flops_per_step": ours.flops_per_step}
    for name in peers:
        out[f"peer_{name}"] = _median_spread(rates[name])
        out[f"ratio_{name}"] = _median_spread([a / b for a, b in zip(rates["jaxdiff"], rates[name])])
    if peers:
        out["peer_params"] = benchmark_peer.count_params(peers["eager"].model)
    return out


def benchmark_sampling(config, mesh, peer: str | None, batch_size: int, log) -> dict[str, Any]:
    """Images/s of each sampler at its default steps (guidance 1), jaxdiff and the peer."""
    built = factory.build(config, mesh)
    size = config.data.image_size
    params = built.state.params
    image_sampler = sampling.ImageSampler(built.model, built.schedule, config.diffusion.prediction, (size, size, 3),
                                          mesh)
    cond = conditioning.random_conditions(np.random.default_rng(0), batch_size, config.embed.dim)
    peer_model = None
    if peer == "diffusers":
        from jaxdiff.tools import benchmark_peer

        peer_model = benchmark_peer.PeerUNet(config).eval()
    out = {"batch_size": batch_size}
    for name in sampling.SAMPLERS:
        steps = sampling.steps_for(config.sample, name)
        draw = lambda: image_sampler.sample(params, cond, 0, sampler=name, steps=steps,  # noqa: E731
                                            spacing=config.sample.spacing, batch_size=batch_size)
        draw()  # compiles
        start = time.perf_counter()
        draw()
        entry = {"steps": steps, "jaxdiff_images_per_s": batch_size / (time.perf_counter() - start)}
        if peer_model is not None:
            entry["peer_images_per_s"] = batch_size / benchmark_peer.time_sampling(peer_model, config, name, steps, batch_size)
            entry["ratio"] = entry["jaxdiff_images_per_s"] / entry["peer_images_per_s"]
        log(f"sampling {name} ({steps} steps): " + ", ".join(f"{k} {v:.2f}" for k, v in entry.items() if k != "steps"))
        out[name] = entry
    return out


def run_benchmark(config: ml_collections.ConfigDict, peer: str | None, repeats: int, steps: int, sample_batch: int,
                  pipeline_batches: int, peak: float | None, log: Callable = print) -> dict[str, Any]:
    """Every measurement of the module docstring, as the JSON the command writes."""
    from jaxdiff.data import input_pipeline  # TensorFlow: only this function reads the dataset

    hide_accelerators_from_tensorflow()
    # The input pipeline is measured last: a missing dataset (the portraits are made) or word vectors
    # that cannot be loaded should stop the run before minutes of timing, not after.
    input_pipeline.ensure_dataset(config, log)
    table = embed.build_table(vectors.load_source(config.embed.source, config.embed.vectors_path or None),
                              config.embed.dim, config.embed.seed)
    mesh = parallel.make_mesh()
    device = jax.devices()[0]
    log(f"device: {mesh.size} x {device.device_kind} ({device.platform}); config batch {config.train.batch_size}")
    training = benchmark_training(config, mesh, peer, repeats, steps, log)
    step_seconds = config.train.batch_size / training["jaxdiff"]["median"]
    achieved = training["flops_per_step"] / step_seconds if training["flops_per_step"] else None
    peak_value = peak_flops(device, config.model.dtype, peak)
    total_peak = peak_value * mesh.size if peak_value else None
    sampling_result = benchmark_sampling(config, mesh, peer, sample_batch, log)
    pipeline = input_pipeline.measure_throughput(config, table, batches=pipeline_batches)
    result = {
        "date": datetime.date.today().isoformat(),
        "device": f"{mesh.size} x {device.device_kind}",
        "num_devices": mesh.size,
        "platform": device.platform,
        "jax_version": jax.__version__,
        "config": {"model": config.model.to_dict(), "image_size": config.data.image_size,
                   "batch_size": config.train.batch_size},
        "jaxdiff_train_images_per_s": training["jaxdiff"]["median"],
        "peer_train_images_per_s": training.get("peer_eager", {}).get("median"),
        "peer_compiled_train_images_per_s": training.get("peer_compiled", {}).get("median"),
        "train_ratio": training.get("ratio_eager", {}).get("median"),
        "train_ratio_compiled": training.get("ratio_compiled", {}).get("median"),
        "jaxdiff_params": training["jaxdiff_params"],
        "peer_params": training.get("peer_params"),
        "flops_per_step": training["flops_per_step"],
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": total_peak,
        "mfu": achieved / total_peak if achieved and total_peak else None,
        "training": training,
        "sampling": sampling_result,
        "input_pipeline_examples_per_s": pipeline["examples_per_s_median"],
        "input_pipeline": pipeline,
    }
    if peer and result["peer_params"]:
        result["params_relative_difference"] = abs(result["jaxdiff_params"] - result["peer_params"]) / result["peer_params"]
    return result


def define_flags(values: absl_flags.FlagValues) -> None:
    absl_flags.DEFINE_enum("peer", None, ["diffusers"], "the PyTorch peer to compare with (needs the [bench] extra)",
                           flag_values=values)
    absl_flags.DEFINE_string("json", None, "write the results here as JSON", flag_values=values)
    absl_flags.DEFINE_integer("repeats", 5, "timed repeats of the training comparison", flag_values=values)
    absl_flags.DEFINE_integer("steps", 10, "training steps per repeat", flag_values=values)
    absl_flags.DEFINE_integer("sample_batch", 16, "images per sampling measurement", flag_values=values)
    absl_flags.DEFINE_integer("pipeline_batches", 200, "batches timed after the pipeline's first epoch", flag_values=values)
    absl_flags.DEFINE_float("peak", None, "peak FLOP/s of one device, where the built-in table lacks it",
                            flag_values=values)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    if flags.peer == "diffusers":
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as error:
            raise UserError(f"--peer diffusers needs the bench extra: pip install -e '.[bench]' ({error})") from error
        torch.set_num_threads(os.cpu_count() or 1)
    result = run_benchmark(flags.config, flags.peer, flags.repeats, flags.steps, flags.sample_batch,
                           flags.pipeline_batches, flags.peak)
    summary = (f"training: jaxdiff {result['jaxdiff_train_images_per_s']:.1f} images/s"
               + (f", peer (eager) {result['peer_train_images_per_s']:.1f}, ratio {result['train_ratio']:.2f}"
                  if result["train_ratio"] else "")
               + (f", peer (compiled) {result['peer_compiled_train_images_per_s']:.1f}, ratio {result['train_ratio_compiled']:.2f}"
                  if result["train_ratio_compiled"] else "")
               + f"; {result['flops_per_step'] / 1e9:.1f} GFLOP/step, {result['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s"
               + (f", MFU {100 * result['mfu']:.1f}%" if result["mfu"] is not None else ", MFU n/a (peak unknown)")
               + f"; input pipeline {result['input_pipeline_examples_per_s']:,.0f} examples/s")
    print(summary)
    if flags.json:
        files.write_json(flags.json, result)
        print(f"wrote {flags.json}")


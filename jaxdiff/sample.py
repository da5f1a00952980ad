"""Draw images for words from a trained run.

    python -m jaxdiff.sample --word nurse [--word philosopher ...] [--num 16] [--sampler dpmpp2m]
        [--steps 20] [--guidance 1.0] [--seed 0] [--out DIR] [--workdir W] [--params ema|raw]
    python -m jaxdiff.sample --words-mean man,nurse     # the composite condition of two words
    python -m jaxdiff.sample --null                     # the unconditional model

Without --workdir it uses the latest trained run under runs/. A word may be a training word, any
word of the run's embedding table, or any word of the source vectors when they are at hand
(projected with the run's matrix). Every word gets the same starting noise for the same --seed,
so grids of different words are paired image for image.

Writes, per condition, OUT/LABEL_grid.png, OUT/LABEL/NNN.png and OUT/LABEL.npz (the images, the
condition vector and the sampling settings). OUT defaults to WORKDIR/samples/cli.
"""

if __name__ == "__main__":  # a command line: set the process up before JAX and TensorFlow load
    from jaxdiff.common.startup import prepare_process

    prepare_process()

import os
import time
from typing import Sequence

import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.core import conditioning, sampling
from jaxdiff.training import workdirs
from jaxdiff.common.errors import UserError


def conditions(trained: workdirs.TrainedRun, words: Sequence[str], means: Sequence[Sequence[str]], null: bool,
               vectors_path: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(label, projected condition vector) for each requested word, composite and the null condition."""
    needs_source = [w for w in list(words) + [w for pair in means for w in pair] if w not in trained.table]
    source = trained.source(vectors_path) if needs_source else None
    out = [(word, trained.table.projected_vector(word, source)) for word in words]
    for pair in means:
        vecs = [trained.table.projected_vector(w, source) for w in pair]
        out.append(("+".join(pair), np.mean(vecs, axis=0)))
    if null:
        out.append(("null", conditioning.null_vector(trained.table.dim)))
    if not out:
        raise UserError("nothing to sample: pass --word WORD (repeatable), --words-mean W1,W2, or --null")
    return out


def define_flags(values: absl_flags.FlagValues) -> None:
    """The flags of `python -m jaxdiff.sample`."""
    absl_flags.DEFINE_multi_string("word", [], "a word to condition on (repeatable)", flag_values=values)
    absl_flags.DEFINE_multi_string("words-mean", [], "W1,W2: condition on the mean of two words' vectors (repeatable)",
                                   flag_values=values)
    absl_flags.DEFINE_bool("null", False, "also sample the null (unconditional) condition", flag_values=values)
    absl_flags.DEFINE_integer("num", 16, "images per condition", flag_values=values)
    absl_flags.DEFINE_enum("sampler", None, list(sampling.SAMPLERS), "default: the config's", flag_values=values)
    absl_flags.DEFINE_integer("steps", None, "default: the config's sample.steps, else the sampler's own",
                              flag_values=values)
    absl_flags.DEFINE_float("guidance", None, "classifier-free guidance; default: the config's", flag_values=values)
    absl_flags.DEFINE_float("eta", None, "DDIM stochasticity; default: the config's", flag_values=values)
    absl_flags.DEFINE_integer("seed", 0, "the same seed gives the same images", flag_values=values)
    absl_flags.DEFINE_enum("params", "ema", ["ema", "raw"], "EMA or raw parameters", flag_values=values)
    absl_flags.DEFINE_string("workdir", None, "a trained run (default: the latest under runs/)", flag_values=values)
    absl_flags.DEFINE_string("out", None, "output directory (default: WORKDIR/samples/cli)", flag_values=values)
    absl_flags.DEFINE_string("vectors", None, "source vectors file, for words outside the run's table",
                             flag_values=values)


def word_pairs(values: Sequence[str]) -> list[list[str]]:
    """The two words of each --words-mean W1,W2 value."""
    pairs = [[w.strip() for w in value.split(",")] for value in values]
    for value, pair in zip(values, pairs):
        if len(pair) != 2 or not all(pair):
            raise UserError(f"--words-mean {value!r}: give two words separated by a comma, e.g. --words-mean man,nurse")
    return pairs


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, doc=__doc__)
    if args.num < 1:
        raise UserError(f"--num must be at least 1, got {args.num}")
    means = word_pairs(args.words_mean)

    trained = workdirs.TrainedRun.load(workdirs.resolve(args.workdir), args.params)
    conds = conditions(trained, args.word, means, args.null, args.vectors)
    s = trained.config.sample
    sampler = args.sampler or s.sampler
    steps = args.steps or sampling.steps_for(s, sampler)
    guidance = s.guidance if args.guidance is None else args.guidance
    eta = s.ddim_eta if args.eta is None else args.eta  # resolved here: the .npz records them
    out = args.out or os.path.join(trained.workdir, "samples", "cli")
    image_sampler, params = trained.image_sampler(), trained.device_params()

    for label, vector in conds:
        start = time.perf_counter()
        images = image_sampler.sample_as_configured(params, np.repeat(vector[None], args.num, axis=0), args.seed, s,
                                                    sampler=sampler, steps=steps, guidance=guidance, eta=eta)
        seconds = time.perf_counter() - start
        pixels = files.to_uint8(images)
        write_condition(out, label, pixels, vector, dict(sampler=sampler, steps=steps, guidance=guidance, eta=eta,
                                                          seed=args.seed, params=args.params, step=trained.step))
        print(f"{label}: {args.num} images ({sampler}, {steps} steps, guidance {guidance}) in {seconds:.1f} s "
              f"({args.num / seconds:.1f} images/s) -> {os.path.join(out, label + '_grid.png')}")


def write_condition(out: str, label: str, pixels: np.ndarray, vector: np.ndarray, settings: dict) -> None:
    """The grid, the single images and the .npz of one condition."""
    ncols = int(np.ceil(np.sqrt(len(pixels))))
    files.save_png(os.path.join(out, f"{label}_grid.png"), files.image_grid(pixels, ncols), scale=2)
    for i, image in enumerate(pixels):
        files.save_png(os.path.join(out, label, f"{i:03d}.png"), image)
    with files.atomic_path(os.path.join(out, f"{label}.npz")) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=pixels, condition=vector, label=label, **{k: np.asarray(v) for k, v in settings.items()})


if __name__ == "__main__":
    cli.run(main)

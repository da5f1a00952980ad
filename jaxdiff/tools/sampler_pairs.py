"""How often two samplers read the same image differently: the discordance an agreement study is sized by.

    python -m jaxdiff.sampler_pairs --workdir=RUN --classifier=DIR [--setting=ema:dpmpp2m_sde_paired:50] \
        [--reference=ema:ddpm:1000] [--words=philosopher,person,nurse] [--images=200] [--seed=0] [--out=FILE]

Draws IMAGES images of each word under both settings from the same keys (image j of word w under each from key
(seed, w's place x IMAGES + j): no two words share a key) and reads them with the attribute classifier kept in DIR. Where the setting's sampler follows the reference's chain
(`sampling.Sampler.chain_noise`: `dpmpp2m_sde_paired` against DDPM on every timestep), image j is one Brownian path
under both, and their shares of women differ only through the images they read differently: a study of that
difference needs as many images as the discordant share demands, not as many as two independent draws would.

Reported, per word and over all: the share of images read differently, with its Clopper-Pearson 95% interval.
Not which way they go: the share bounds how far the two settings' shares can differ on this model, but says
nothing of the sign or size of the difference within that bound.
"""

import os
import time
from typing import Any, Sequence

import numpy as np
from absl import flags as absl_flags

from jaxdiff.common import cli, files
from jaxdiff.common.errors import UserError
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.measurement import classifier
from jaxdiff.statistics import intervals
from jaxdiff.studies.frontier_settings import Setting
from jaxdiff.training import workdirs


def discordance(first: np.ndarray, second: np.ndarray) -> dict[str, Any]:
    """How many paired readings (0/1 arrays, image j of each from the same key) differ, with the share's
    Clopper-Pearson 95% interval; nothing about their direction."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"paired readings need two 1-d arrays of one length, got {first.shape} and {second.shape}")
    n, differ = len(first), int(np.sum(first != second))
    return {"n": n, "discordant": differ, "share": differ / n, "ci95": list(intervals.clopper_pearson(differ, n))}


def read_pairs(trained: workdirs.TrainedRun, clf: tuple, setting: Setting, reference: Setting,
               words: Sequence[str], images: int, seed: int, log=print) -> dict[str, Any]:
    """Each word's images under both settings from the same keys, read by the classifier; their discordance."""
    image_sampler, params = trained.image_sampler(), trained.device_params()
    model, clf_params, _ = clf
    config = trained.config
    out: dict[str, Any] = {"words": {}, "seconds": {}}
    readings = {}  # by (word, role): a setting compared with itself is still read twice
    for place, word in enumerate(words):
        cond_NK = np.repeat(trained.table.projected_vector(word)[None], images, axis=0)
        for role, s in (("setting", setting), ("reference", reference)):
            start = time.perf_counter()
            drawn = image_sampler.sample_as_configured(params, cond_NK, seed, config.sample, sampler=s.sampler,
                                                       steps=s.steps, guidance=float(config.evaluate.guidance),
                                                       first_index=place * images)
            out["seconds"][role] = out["seconds"].get(role, 0.0) + time.perf_counter() - start
            gender, _ = classifier.predict(model, clf_params, drawn)
            readings[word, role] = classifier.reads_woman(gender)
        out["words"][word] = discordance(readings[word, "setting"], readings[word, "reference"])
        log(f"{word}: {out['words'][word]['discordant']} of {images} images read differently")
    out["all"] = discordance(np.concatenate([readings[w, "setting"] for w in words]),
                             np.concatenate([readings[w, "reference"] for w in words]))
    return out


def define_flags(values: absl_flags.FlagValues) -> None:
    absl_flags.DEFINE_string("workdir", None, "a trained run", flag_values=values)
    absl_flags.DEFINE_string("classifier", None, "the directory holding the attribute classifier that reads the images "
                             "(a sweep's or a study's)", flag_values=values)
    absl_flags.DEFINE_string("setting", "ema:dpmpp2m_sde_paired:50", "PARAMS:SAMPLER:STEPS under study", flag_values=values)
    absl_flags.DEFINE_string("reference", "ema:ddpm:1000", "PARAMS:SAMPLER:STEPS it is paired with",
                             flag_values=values)
    absl_flags.DEFINE_list("words", list(SEED_EVAL_WORDS), "trained words, comma-separated", flag_values=values)
    absl_flags.DEFINE_integer("images", 200, "images per word under each setting", flag_values=values)
    absl_flags.DEFINE_integer("seed", 0, "the keys' seed (pick one no study draws)", flag_values=values)
    absl_flags.DEFINE_string("out", None, "also write the result as JSON here", flag_values=values)


def main(argv: Sequence[str]) -> None:
    args = cli.parse_flags(argv, define_flags, doc=__doc__)
    if not args.workdir or not args.classifier:
        raise UserError("pass --workdir=RUN (a trained run) and --classifier=DIR (where its reader's classifier.msgpack "
                        "is, e.g. a sweep directory)")
    if args.images < 1:
        raise UserError(f"--images must be at least 1, got {args.images}")
    setting, reference = Setting.parse(args.setting), Setting.parse(args.reference)
    if setting.params != reference.params:
        raise UserError(f"--setting {args.setting} and --reference {args.reference} use different parameters; pair "
                        f"samplers on the same ones (both ema or both raw)")
    unknown = [w for w in args.words if w not in SEED_EVAL_WORDS]
    if unknown:
        raise UserError(f"--words: {', '.join(unknown)} not trained; choose among {', '.join(SEED_EVAL_WORDS)}")
    trained = workdirs.TrainedRun.load(args.workdir, setting.params)
    clf = classifier.load(args.classifier, trained.config)
    if clf is None:
        raise UserError(f"{args.classifier} holds no trained classifier ({classifier.PARAMS_FILE} and "
                        f"{classifier.METRICS_FILE}); point --classifier at a sweep's or a study's directory")
    result = read_pairs(trained, clf, setting, reference, args.words, args.images, args.seed)
    result.update(workdir=os.path.abspath(args.workdir), step=trained.step, setting=setting.name,
                  reference=reference.name, seed=args.seed, images=args.images,
                  classifier=classifier.digest(args.classifier))
    a = result["all"]
    print(f"{setting.name} against {reference.name}: {a['discordant']} of {a['n']} images read differently "
          f"({100 * a['share']:.1f}%, 95% CI {100 * a['ci95'][0]:.1f}-{100 * a['ci95'][1]:.1f}%)")
    if args.out:
        files.write_json(args.out, result)
        print(f"written: {args.out}")

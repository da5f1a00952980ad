"""The fit frontier: a sweep's trained members re-read under other evaluation settings, pooled.

    python -m jaxdiff.frontier --config=configs/toy.py [--workdir=runs/toy-sweep ...] \
        [--settings=ema:ddpm:200,ema:dpmpp2m:50,raw:ddpm:200:400 ...] [--reference=ema:ddpm:1000] \
        [--words=person]

A setting is PARAMS:SAMPLER:STEPS[:IMAGES]: the EMA or raw parameters, a sampler (jaxdiff/core/sampling.py)
and its steps, and the images per trained word and member (default: sweep.member_samples, what each
member's report draws). For each
finished member of each sweep directory (one per training setting: length, width, schedule...)
and each setting, the trained words philosopher, person and nurse are sampled with the member's
own evaluation seed (so the ODE settings of one member start from the same noise, and the SDE solver's
images follow the Brownian path of the member's DDPM 1000 images: `sampling.ChainNoise`) and read by the
sweep's classifier. Per sweep and setting: each word's pooled share, |share - 0.5| and tau
(random effects over members, jaxdiff.statistics.pooling), whether the fit is good enough to decide (tau and
|share - 0.5| at most 0.05 for every word), the pooled difference from the reference setting
(1000-step DDPM: the sampler the model's training objective describes) with an equivalence test
at +-2 points, and the minutes per member.

Images come in rounds of ROUND_IMAGES per word; the noise of image j of a word does not depend on
how many images were asked for (`first_index`), so asking for more extends a study. Rounds go over
every member before the next begins, and each member's counts of a round are kept in
MEMBER/frontier/PARAMS-SAMPLER-STEPS/round-RRR.json: an interrupted study resumes at the round it
was in, and the table so far, written after each round to the first sweep directory's
frontier.json and frontier.md, pools equal numbers of images from every member.

`--words` narrows a study to some of the trained words (a question about one word costs a third of
the sampling). A word's images are the same whichever words are studied with it, so a narrow study's
rounds serve a wider one, which samples only the words they lack; the leakage contrast and the fit
need all three words, and a narrow study's table is written to frontier-WORD[-WORD].json and .md.

The rounds are the study's data: a member whose checkpoints were deleted is still pooled from them
(`recorded_only`), so a study can be kept, moved or finished elsewhere as the member directories
without their checkpoints, beside the sweep's classifier (docs/sweep.md).

This module runs the study; its parts live beside it, one concern each: frontier_settings (settings and
words), frontier_rounds (the rounds on disk), frontier_sampling (drawing and reading a round),
frontier_table (pooling the rows; the statistics themselves are jaxdiff.statistics's) and frontier_render
(frontier.md).
"""

import os
import time
from typing import Any, Callable, Sequence

import ml_collections
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.studies import frontier_sampling, frontier_settings, frontier_table, sweep
from jaxdiff.studies.frontier_render import render_markdown
from jaxdiff.studies.frontier_rounds import FRONTIER_DIR, member_counts, recorded_only
from jaxdiff.studies.frontier_settings import (DEFAULT_REFERENCE, DEFAULT_SETTINGS, FRONTIER_JSON, FRONTIER_MD,
                                               ROUND_IMAGES, Setting, check_words, first_index, num_rounds,
                                               output_names)
from jaxdiff.studies.frontier_table import AGREEMENT_LIMIT, FIT_LIMIT, pool_setting

# What the study's callers and tests use, from the modules that hold it.
__all__ = ["AGREEMENT_LIMIT", "DEFAULT_REFERENCE", "DEFAULT_SETTINGS", "FIT_LIMIT", "FRONTIER_DIR", "FRONTIER_JSON",
           "FRONTIER_MD", "ROUND_IMAGES", "Setting", "check_words", "define_flags", "first_index", "main",
           "member_counts", "num_rounds", "output_names", "pool_setting", "recorded_only", "render_markdown", "study",
           "write_outputs"]


def study(config: ml_collections.ConfigDict, sweep_dirs: Sequence[str], settings: Sequence[Setting],
          reference: Setting | None, log: Callable = print, round_images: int = ROUND_IMAGES,
          after_round: Callable[[dict[str, Any]], None] | None = None,
          words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """Samples every (round, sweep, member, setting) of `words` not yet cached, pools, and returns the frontier table.

    Rounds go outermost: after each, every member has the same number of images of every setting, so
    an interrupted study has a balanced table so far (`after_round` receives it) and resumes from it.
    """
    frontier_settings.check_settings(settings, reference)
    words = check_words(words)
    wanted = frontier_settings.with_reference(settings, reference)
    sweeps = [frontier_sampling.open_sweep(config, d) for d in sweep_dirs]
    for s in sweeps:
        log(f"{s.workdir}: {len(s.members)} finished members, {len(wanted)} settings, words {', '.join(words)}")
    total = max(num_rounds(config, s, round_images) for s in wanted)
    for round_ in range(total):
        for s in sweeps:
            sweep.use_compilation_cache(s.workdir)
            due = [x for x in wanted if num_rounds(config, x, round_images) > round_]
            for member in s.members:
                frontier_sampling.sample_round(member.workdir, due, round_, config, s, round_images, log, words)
        if after_round is not None and round_ < total - 1:
            after_round(frontier_table.table(config, sweeps, settings, reference, round_ + 1, round_images, words))
    return frontier_table.table(config, sweeps, settings, reference, total, round_images, words)


def define_flags(values: absl_flags.FlagValues) -> None:
    """Defines the command's flags (--workdir, --settings, --reference, --words) on `values`."""
    absl_flags.DEFINE_multi_string("workdir", None, "sweep directories, one per training setting (default: the "
                                   "config's sweep.workdir)", flag_values=values)
    absl_flags.DEFINE_list("settings", list(DEFAULT_SETTINGS), "PARAMS:SAMPLER:STEPS[:IMAGES], comma-separated",
                           flag_values=values)
    absl_flags.DEFINE_string("reference", DEFAULT_REFERENCE, "the setting the others are compared with ('' = none)",
                             flag_values=values)
    absl_flags.DEFINE_list("words", list(SEED_EVAL_WORDS), "the trained words to sample, comma-separated (a narrower "
                           "study reads no fit or leakage contrast)", flag_values=values)


def write_outputs(sweep_dir: str, result: dict[str, Any]) -> str:
    """Writes SWEEP/frontier.json and frontier.md (a narrower study: frontier-WORD...); returns the Markdown path."""
    json_name, md_name = output_names(result["words"])
    files.write_json(os.path.join(sweep_dir, json_name), result)
    files.write_text(os.path.join(sweep_dir, md_name), render_markdown(result))
    return os.path.join(sweep_dir, md_name)


def main(argv: Sequence[str]) -> None:
    """`python -m jaxdiff.frontier`: runs the study, writing the table after each round, and prints it."""
    flags = configuration.parse(argv, define_flags, doc=__doc__)
    sweep_dirs = flags.workdir or [flags.config.sweep.workdir]
    settings = [Setting.parse(s) for s in flags.settings]
    reference = Setting.parse(flags.reference) if flags.reference else None
    start = time.perf_counter()

    def after_round(result: dict[str, Any]) -> None:  # the table so far, after each round
        print(f"{result['rounds']} round(s) done ({(time.perf_counter() - start) / 60:.1f} min); table so far in "
              f"{write_outputs(sweep_dirs[0], result)}", flush=True)

    path = write_outputs(sweep_dirs[0], study(flags.config, sweep_dirs, settings, reference, after_round=after_round,
                                              words=flags.words))
    print(open(path).read() + f"({(time.perf_counter() - start) / 60:.1f} min; {path})")

"""The fit frontier: a sweep's trained members re-read under other evaluation settings, pooled.

    python -m jaxdiff.frontier --config=configs/toy.py [--workdir=runs/toy-sweep ...] \
        [--settings ema:dpmpp2m:20 raw:dpmpp2m:20 ema:ddpm:1000:100 ...] [--reference ema:ddpm:1000:100]

A setting is PARAMS:SAMPLER:STEPS[:IMAGES]: the EMA or raw parameters, a sampler (jaxdiff/sampling.py)
and its steps, and the images per trained word and member (default: evaluate.num_samples). For each
finished member of each sweep directory (one per training setting: length, width, schedule...)
and each setting, the trained words philosopher, person and nurse are sampled with the member's
own evaluation seed (so the ODE settings of one member start from the same noise) and read by the
sweep's classifier. Per sweep and setting: each word's pooled share, |share - 0.5| and tau
(random effects over members, jaxdiff.pooling), whether the fit is good enough to decide (tau and
|share - 0.5| at most 0.05 for every word), the pooled difference from the reference setting
(1000-step DDPM: the sampler the model's training objective describes), and the minutes per member.

Each member's counts are kept in MEMBER/frontier/<setting>.json, so an interrupted study resumes;
the table is written to the first sweep directory's frontier.json and frontier.md.
"""

if __name__ == "__main__":  # a command line: set the process up before JAX and TensorFlow load
    from jaxdiff.startup import prepare_process

    prepare_process()

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import flags as absl_flags

from jaxdiff import checkpoints, classifier, configuration, files, pooling, sampling, sweep, workdirs
from jaxdiff.classes import SEED_EVAL_WORDS
from jaxdiff.cli import run
from jaxdiff.errors import UserError

FRONTIER_DIR = "frontier"  # in each member: one JSON of counts per setting
FRONTIER_JSON, FRONTIER_MD = "frontier.json", "frontier.md"
FIT_LIMIT = 0.05  # the fit needed for the +-5-point test to mean anything: tau and |share - 0.5| per word
AGREEMENT_LIMIT = 0.02  # a faster sampler agrees with the reference when its shares are within +-2 points
DEFAULT_SETTINGS = ("ema:dpmpp2m:20", "ema:dpmpp2m:10", "ema:dpmpp2m:50", "raw:dpmpp2m:20", "ema:ddpm:1000:100")
DEFAULT_REFERENCE = "ema:ddpm:1000:100"


@dataclasses.dataclass(frozen=True)
class Setting:
    """How a member's images are drawn: parameters, sampler, steps, images per word (None: the config's)."""

    params: str
    sampler: str
    steps: int
    images: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Setting":
        """'ema:dpmpp2m:20' or 'raw:ddpm:1000:100' -> Setting; a malformed one is a UserError."""
        parts = text.split(":")
        usage = f"setting {text!r}: expected PARAMS:SAMPLER:STEPS[:IMAGES], e.g. ema:dpmpp2m:20 or raw:ddpm:1000:100"
        if len(parts) not in (3, 4) or parts[0] not in ("ema", "raw"):
            raise UserError(usage + " (PARAMS is ema or raw)")
        sampling.check_sampler(parts[1])
        try:
            numbers = [int(p) for p in parts[2:]]
        except ValueError:
            raise UserError(usage + " (STEPS and IMAGES are whole numbers)") from None
        if min(numbers) < 1:
            raise UserError(usage + " (STEPS and IMAGES are at least 1)")
        return cls(parts[0], parts[1], numbers[0], numbers[1] if len(numbers) == 2 else None)

    @property
    def name(self) -> str:
        return ":".join([self.params, self.sampler, str(self.steps)] + ([str(self.images)] if self.images else []))


def _counts_path(workdir: str, setting: Setting) -> str:
    return os.path.join(workdir, FRONTIER_DIR, setting.name.replace(":", "-") + ".json")


def member_counts(workdir: str, settings: Sequence[Setting], clf: tuple, log: Callable = print) -> dict[Setting, dict]:
    """Women among a member's images of each trained word under each setting; cached in MEMBER/frontier/.

    The member is loaded once per parameter kind (EMA, raw) for all its settings: restoring and
    compiling cost more than sampling a few hundred images.
    """
    out: dict[Setting, dict] = {}
    for params_kind in ("ema", "raw"):
        mine = [s for s in settings if s.params == params_kind]
        if not mine:
            continue
        run_ = workdirs.TrainedRun.load(workdir, params_kind)
        sampler_and_params = None
        for setting in mine:
            path = _counts_path(workdir, setting)
            if os.path.exists(path):
                cached = files.read_json(path)
                if cached.get("step") == run_.step and cached.get("seed") == int(run_.config.evaluate.seed):
                    out[setting] = cached
                    continue
            if sampler_and_params is None:
                sampler_and_params = run_.image_sampler(), run_.device_params()
            out[setting] = _sample_counts(run_, *sampler_and_params, setting, clf, log)
            files.write_json(path, out[setting])
    return out


def _sample_counts(run_: workdirs.TrainedRun, image_sampler: sampling.ImageSampler, params: Any, setting: Setting,
                   clf: tuple, log: Callable) -> dict[str, Any]:
    config = run_.config
    n = setting.images or int(config.evaluate.num_samples)
    model, clf_params, _ = clf
    words, seconds = {}, []
    log(f"  {os.path.basename(run_.workdir)} {setting.name}: {len(SEED_EVAL_WORDS)} words x {n} images")
    for index, word in enumerate(SEED_EVAL_WORDS):
        cond_NK = np.repeat(run_.table.projected_vector(word)[None], n, axis=0)
        start = time.perf_counter()
        # Each word its own block of the member's noise indices (word i: i*n, ..., i*n + n - 1).
        images = image_sampler.sample_as_configured(params, cond_NK, int(config.evaluate.seed), config.sample,
                                                    sampler=setting.sampler, steps=setting.steps,
                                                    guidance=float(config.evaluate.guidance), first_index=index * n)
        seconds.append(time.perf_counter() - start)
        gender_probs, _ = classifier.predict(model, clf_params, images)
        words[word] = {"women": int((gender_probs.argmax(-1) == 1).sum()), "n": n}
    # The first word's time includes compiling the sampler; the median of the three is a compiled one.
    return {"setting": setting.name, "step": run_.step, "seed": int(config.evaluate.seed), "words": words,
            "seconds_per_image": float(np.median(np.asarray(seconds) / n)), "seconds": seconds}


def _minutes(member: sweep.Member) -> dict[str, float]:
    """The member's recorded training minutes (summed over invocations) and its last evaluation + probes."""
    path = os.path.join(member.workdir, sweep.MEMBER_JSON)
    invocations = files.read_json(path)["invocations"] if os.path.exists(path) else []
    evaluated = [i for i in invocations if i.get("evaluation_s", 0.0) > 0]  # a re-evaluation replaced the first
    return {"training": sum(i.get("training_s", 0.0) for i in invocations) / 60,
            "evaluation": (evaluated[-1]["evaluation_s"] + evaluated[-1].get("probes_s", 0.0)) / 60 if evaluated else 0.0}


def pool_setting(rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]] | None,
                 margin: float = 0.05) -> dict[str, Any]:
    """Per word: pooled share, |share - 0.5|, tau; the difference from the reference rows (same members);
    the leakage contrast nurse - philosopher with its equivalence test at +-margin, as the sweep's summary."""
    out: dict[str, Any] = {"words": {}}
    def counts(rows_: list[dict[str, Any]], word: str) -> tuple[list[int], list[int]]:
        return [r["words"][word]["women"] for r in rows_], [r["words"][word]["n"] for r in rows_]

    contrast = pooling.pooled_difference(*counts(rows, "nurse"), *counts(rows, "philosopher"))
    test = pooling.equivalence(contrast["estimate"], contrast["se"], margin)
    out["contrast"] = {"estimate": contrast["estimate"], "ci95": contrast["ci95"], "tau": contrast["tau"],
                       "tost_p_value": test["tost_p_value"], "verdict": test["verdict"]}
    for word in SEED_EVAL_WORDS:
        pooled = pooling.pooled_share(*counts(rows, word))
        entry = {"share_woman": pooled["estimate"], "ci95": pooled["ci95"], "tau": pooled["tau"] or 0.0,
                 "abs_deviation": abs(pooled["estimate"] - 0.5), "members": pooled["members"]}
        if reference_rows is not None:
            difference = pooling.pooled_difference(*counts(rows, word), *counts(reference_rows, word))
            entry["minus_reference"] = {"estimate": difference["estimate"], "ci95": difference["ci95"]}
        out["words"][word] = entry
    out["max_tau"] = max(e["tau"] for e in out["words"].values())
    out["max_abs_deviation"] = max(e["abs_deviation"] for e in out["words"].values())
    out["fits"] = out["max_tau"] <= FIT_LIMIT and out["max_abs_deviation"] <= FIT_LIMIT
    if reference_rows is not None:
        out["max_abs_minus_reference"] = max(abs(e["minus_reference"]["estimate"]) for e in out["words"].values())
        out["agrees_with_reference"] = out["max_abs_minus_reference"] <= AGREEMENT_LIMIT
    out["seconds_per_image"] = float(np.median([r["seconds_per_image"] for r in rows]))
    return out


def study(config: ml_collections.ConfigDict, sweep_dirs: Sequence[str], settings: Sequence[Setting],
          reference: Setting | None, log: Callable = print) -> dict[str, Any]:
    """Samples every (sweep, member, setting) not yet cached, pools, and returns the frontier table."""
    wanted = list(dict.fromkeys([*settings, *([reference] if reference else [])]))
    table = []
    for sweep_dir in sweep_dirs:
        # Trained is enough: the frontier samples from the checkpoints, whatever the members' reports were made with.
        done = [m for m in sweep.members(config, sweep_dir) if checkpoints.trained_to(m.workdir, config.train.num_steps)]
        if not done:
            raise UserError(f"no member of {sweep_dir} is trained to {config.train.num_steps} steps yet; run: "
                            f"python -m jaxdiff.sweep --config=... --workdir={sweep_dir}")
        loaded = classifier.load(sweep_dir, config)
        if loaded is None:
            raise UserError(f"{sweep_dir} has no classifier; run the sweep there first: python -m jaxdiff.sweep "
                            f"--config=... --workdir={sweep_dir}")
        sweep.use_compilation_cache(sweep_dir)
        log(f"{sweep_dir}: {len(done)} finished members, {len(wanted)} settings")
        per_member = [member_counts(m.workdir, wanted, loaded, log) for m in done]
        counts = {s: [c[s] for c in per_member] for s in wanted}
        member_config = configuration.load(done[0].workdir)
        minutes = [_minutes(m) for m in done]
        training_minutes = float(np.median([m["training"] for m in minutes]))
        evaluation_minutes = float(np.median([m["evaluation"] for m in minutes]))
        default = Setting("ema", member_config.evaluate.sampler, int(member_config.evaluate.steps))
        default_spi = (pool_setting(counts[default], None)["seconds_per_image"] if default in counts else None)
        for s in settings:
            row = pool_setting(counts[s], counts[reference] if reference and s != reference else None,
                               float(config.sweep.equivalence_margin))
            # Evaluation time is almost all sampling: scale the recorded minutes by this setting's speed.
            scale = row["seconds_per_image"] / default_spi if default_spi else None
            row.update({"sweep": sweep_dir, "setting": s.name, "members": len(done),
                        "num_steps": int(member_config.train.num_steps),
                        "training_minutes": training_minutes,
                        "member_minutes": training_minutes + evaluation_minutes * scale if scale else None})
            table.append(row)
    return {"reference": reference.name if reference else None, "fit_limit": FIT_LIMIT,
            "agreement_limit": AGREEMENT_LIMIT, "rows": table}


def render_markdown(result: dict[str, Any]) -> str:
    """The frontier as a Markdown table: one row per (sweep, setting)."""
    words = SEED_EVAL_WORDS
    lines = [f"# Fit frontier (reference: {result['reference'] or 'none'})", "",
             f"Fit good enough to decide: every trained word's tau and |share - 0.5| at most {result['fit_limit']:.2f}. "
             f"Agreement: every word's pooled share within +-{100 * result['agreement_limit']:.0f} points of the "
             f"reference's.", "",
             "| sweep | training steps | setting | members | " + " | ".join(f"{w} share (tau)" for w in words)
             + " | max abs(share - 0.5) | max tau | fits | minus reference, max | nurse - philosopher | verdict "
             "| minutes per member |",
             "|---|---|---|---|" + "---|" * len(words) + "---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cells = [f"{100 * r['words'][w]['share_woman']:.1f}% ({r['words'][w]['tau']:.3f})" for w in words]
        minus = (f"{100 * r['max_abs_minus_reference']:.1f} pts" if "max_abs_minus_reference" in r
                 else "reference" if r["setting"] == result["reference"] else "-")
        minutes = f"{r['member_minutes']:.1f}" if r["member_minutes"] else "-"
        lines.append(f"| {os.path.basename(r['sweep'].rstrip('/'))} | {r['num_steps']} | {r['setting']} | "
                     f"{r['members']} | " + " | ".join(cells) + f" | {100 * r['max_abs_deviation']:.1f}% | "
                     f"{r['max_tau']:.3f} | {'yes' if r['fits'] else 'no'} | {minus} | "
                     f"{100 * r['contrast']['estimate']:+.1f} [{100 * r['contrast']['ci95'][0]:+.1f}, "
                     f"{100 * r['contrast']['ci95'][1]:+.1f}] | {r['contrast']['verdict']} | {minutes} |")
    lines += ["", "Per word, the pooled difference from the reference (points, 95% interval):", ""]
    for r in result["rows"]:
        if "max_abs_minus_reference" in r:
            parts = [f"{w} {100 * r['words'][w]['minus_reference']['estimate']:+.1f} "
                     f"[{100 * r['words'][w]['minus_reference']['ci95'][0]:+.1f}, "
                     f"{100 * r['words'][w]['minus_reference']['ci95'][1]:+.1f}]" for w in words]
            lines.append(f"- {os.path.basename(r['sweep'].rstrip('/'))} {r['setting']}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def define_flags(values: absl_flags.FlagValues) -> None:
    absl_flags.DEFINE_multi_string("workdir", None, "sweep directories, one per training setting (default: the "
                                   "config's sweep.workdir)", flag_values=values)
    absl_flags.DEFINE_list("settings", list(DEFAULT_SETTINGS), "PARAMS:SAMPLER:STEPS[:IMAGES], comma-separated",
                           flag_values=values)
    absl_flags.DEFINE_string("reference", DEFAULT_REFERENCE, "the setting the others are compared with ('' = none)",
                             flag_values=values)


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, define_flags)
    sweep_dirs = flags.workdir or [flags.config.sweep.workdir]
    settings = [Setting.parse(s) for s in flags.settings]
    reference = Setting.parse(flags.reference) if flags.reference else None
    start = time.perf_counter()
    result = study(flags.config, sweep_dirs, settings, reference)
    files.write_json(os.path.join(sweep_dirs[0], FRONTIER_JSON), result)
    markdown = render_markdown(result)
    files.write_text(os.path.join(sweep_dirs[0], FRONTIER_MD), markdown)
    print(markdown)
    print(f"({(time.perf_counter() - start) / 60:.1f} min; {os.path.join(sweep_dirs[0], FRONTIER_MD)})")


if __name__ == "__main__":
    run(main)

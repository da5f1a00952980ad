"""The frontier's records: each member's counts of a round of images per setting, on disk, and their sums.

MEMBER/frontier/PARAMS-SAMPLER-STEPS/round-RRR.json holds a round's women, images and every image's reading
per word; the rounds are the study's data, so a member whose checkpoints were deleted is pooled from them.
"""

import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from jaxdiff.common.errors import UserError
from jaxdiff.data.classes import SEED_EVAL_WORDS
from jaxdiff.measurement import records
from jaxdiff.studies import frontier_settings, sweep
from jaxdiff.studies.frontier_settings import ROUND_IMAGES, Setting
from jaxdiff.training import checkpoints

FRONTIER_DIR = "frontier"  # in each member: per setting, one JSON of counts per round of images


def round_size(config: ml_collections.ConfigDict, setting: Setting, round_: int, round_images: int) -> int:
    """The images per word of a setting's round `round_`: round_images, or what the last, partial round holds."""
    return min(round_images, frontier_settings.images_per_word(config, setting) - round_ * round_images)


def round_path(workdir: str, setting: Setting, round_: int) -> str:
    """MEMBER/frontier/PARAMS-SAMPLER-STEPS/round-RRR.json: where a member's round of a setting is kept."""
    return os.path.join(workdir, FRONTIER_DIR, frontier_settings.instrument(setting), f"round-{round_:03d}.json")


def _serves(cached: dict[str, Any], size: int, words: Sequence[str] = SEED_EVAL_WORDS) -> bool:
    """Whether a cached round holds the first `size` images of each of `words` (each image's reading is kept)."""
    return all(entry_serves(cached["words"].get(w), size) for w in words)


def entry_serves(entry: dict[str, Any] | None, size: int) -> bool:
    """Whether a word's cached entry holds its first `size` images: as many, or more with each image's reading."""
    return entry is not None and (entry["n"] == size or (entry["n"] > size and "is_woman" in entry))


def _women(entry: dict[str, Any], size: int) -> int:
    """The women among a word's first `size` cached images."""
    return entry["women"] if entry["n"] == size else int(sum(entry["is_woman"][:size]))


def recorded_only(workdir: str, num_steps: int) -> bool:
    """Whether a member's checkpoints are gone but its frontier rounds, drawn from its trained parameters, are kept.

    The rounds hold every image's reading, so a study's records outlive the checkpoints (deleted for disk,
    or kept alone as the study's data): such a member is pooled from them, and can grow no new round."""
    directory = os.path.join(workdir, FRONTIER_DIR)
    if checkpoints.checkpoint_steps(workdir) or not os.path.isdir(directory):
        return False
    rounds = [os.path.join(directory, d, f) for d in sorted(os.listdir(directory))
              for f in sorted(os.listdir(os.path.join(directory, d))) if f.startswith("round-")]
    return bool(rounds) and all(int(records.load(records.FRONTIER_ROUND, r)["step"]) >= num_steps for r in rounds)


def member_counts(workdir: str, config: ml_collections.ConfigDict, setting: Setting, rounds: int,
                  round_images: int = ROUND_IMAGES, words: Sequence[str] = SEED_EVAL_WORDS) -> dict[str, Any]:
    """A member's women and images of each of `words` under a setting, summed over its first `rounds` cached rounds."""
    totals = {w: {"women": 0, "n": 0} for w in words}
    per_image, steps = [], set()  # the checkpoint steps its rounds were sampled from
    for round_ in range(min(rounds, frontier_settings.num_rounds(config, setting, round_images))):
        path, size = round_path(workdir, setting, round_), round_size(config, setting, round_, round_images)
        cached = records.load(records.FRONTIER_ROUND, path) if os.path.exists(path) else None
        if cached is None or not _serves(cached, size, words):
            raise UserError(f"{path} is missing or holds fewer than {size} images of {', '.join(words)}; rerun "
                            f"python -m jaxdiff.frontier with the same settings and words to sample it")
        for word in words:
            totals[word]["women"] += _women(cached["words"][word], size)
            totals[word]["n"] += size
        per_image.append(cached["seconds_per_image"])
        steps.add(int(cached["step"]))
    return {"words": totals, "seconds_per_image": float(np.median(per_image)), "steps": sorted(steps)}


def seconds_per_image(rows: list[dict[str, Any]]) -> float:
    """The median over members of a setting's compiled sampling time per image."""
    return float(np.median([r["seconds_per_image"] for r in rows]))


def images_drawn(rows: list[dict[str, Any]]) -> int:
    """Images per word and member in a setting's rows (equal in every member and word)."""
    return next(iter(rows[0]["words"].values()))["n"]


def check_one_checkpoint(members: Sequence[sweep.Member], counts: dict[Setting, list[dict[str, Any]]]) -> None:
    """Every round of a member, in every setting, comes from one checkpoint: a setting compared with the
    reference on other parameters would confound the checkpoint with the sampler."""
    for i, member in enumerate(members):
        steps = sorted({step for rows in counts.values() for step in rows[i]["steps"]})
        if len(steps) > 1:
            raise UserError(f"{member.workdir}: its frontier rounds were sampled from checkpoints {steps} (a newest "
                            f"checkpoint was damaged or replaced during the study); delete "
                            f"{os.path.join(member.workdir, 'frontier')} and rerun python -m jaxdiff.frontier")

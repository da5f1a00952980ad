"""The frontier's settings: how a member's images are drawn (parameters, sampler, steps, images), and the words.

A setting is PARAMS:SAMPLER:STEPS[:IMAGES] on the command line (`Setting.parse`); images come in rounds of
ROUND_IMAGES per word, each image's noise fixed by its place (`first_index`), so a larger study extends a
smaller one.
"""

import dataclasses
from typing import Sequence

import ml_collections

from jaxdiff.common.errors import UserError
from jaxdiff.core import sampling
from jaxdiff.data.classes import SEED_EVAL_WORDS

ROUND_IMAGES = 100  # images per word in a round: a study grows, and resumes, a round at a time
FRONTIER_JSON, FRONTIER_MD = "frontier.json", "frontier.md"
# The default study: the default evaluation sampler (DDPM 200) beside fewer DDPM steps, DPM-Solver++ 50 and
# the raw parameters, each against 1000-step DDPM (listed too, for its own row). At the members' 300 images
# it shows the fit and large differences; agreement within +-2 points needs more images (docs/sweep.md).
DEFAULT_SETTINGS = ("ema:ddpm:200", "ema:ddpm:100", "ema:dpmpp2m:50", "raw:ddpm:200", "ema:ddpm:1000")
DEFAULT_REFERENCE = "ema:ddpm:1000"


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
        """The setting as written on the command line, 'ema:dpmpp2m:20[:100]'."""
        return ":".join([self.params, self.sampler, str(self.steps)] + ([str(self.images)] if self.images else []))


def instrument(setting: Setting) -> str:
    """A setting less its number of images, 'ema-dpmpp2m-20': the name of its rounds' directory."""
    return "-".join([setting.params, setting.sampler, str(setting.steps)])


def first_index(word_index: int, round_: int, round_images: int = ROUND_IMAGES) -> int:
    """The noise index of a word's first image in a round: blocks of round_images, a round's words side by side.

    Image j of word i is index (j // R * W + i) * R + j % R (R images per round, W words), whatever the
    number of images asked for: a larger study extends a smaller one with its images unchanged.
    """
    return (round_ * len(SEED_EVAL_WORDS) + word_index) * round_images


def num_rounds(config: ml_collections.ConfigDict, setting: Setting, round_images: int = ROUND_IMAGES) -> int:
    """How many rounds a setting's images per word take (the last may be partial)."""
    return -(-images_per_word(config, setting) // round_images)


def images_per_word(config: ml_collections.ConfigDict, setting: Setting) -> int:
    """The images per word and member a setting plans: its own, or the config's sweep.member_samples."""
    return setting.images or int(config.sweep.member_samples)


def check_words(words: Sequence[str]) -> list[str]:
    """The trained words a study samples, in their fixed order; an empty list or another word is a UserError."""
    unknown = [w for w in words if w not in SEED_EVAL_WORDS]
    if unknown or not words:
        raise UserError(f"--words={','.join(words)}: a study samples some of the trained words "
                        f"{', '.join(SEED_EVAL_WORDS)}; name one or more of them, e.g. --words=person")
    return [w for w in SEED_EVAL_WORDS if w in words]


def output_names(words: Sequence[str]) -> tuple[str, str]:
    """frontier.json and .md for a study of every trained word, frontier-WORD[-WORD].json and .md for a narrower one."""
    if list(words) == list(SEED_EVAL_WORDS):
        return FRONTIER_JSON, FRONTIER_MD
    stem = "frontier-" + "-".join(words)
    return f"{stem}.json", f"{stem}.md"


def check_settings(settings: Sequence[Setting], reference: Setting | None) -> None:
    """A study needs a setting, and compares the reference only with other samplers (a setting of the same sampler
    shares its first images, so its difference from the reference would not be that of independent images)."""
    if not settings:
        raise UserError("--settings names no setting; give at least one, e.g. --settings=ema:ddpm:200")
    for setting in settings:
        if reference and setting != reference and instrument(setting) == instrument(reference):
            raise UserError(f"setting {setting.name} and the reference {reference.name} are one sampler with other "
                            f"numbers of images (they would share images); list the reference itself with the "
                            f"images wanted, e.g. --reference={setting.name}")


def with_reference(settings: Sequence[Setting], reference: Setting | None) -> list[Setting]:
    """The settings a study samples: the table's rows and the reference, each once."""
    return list(dict.fromkeys([*settings, *([reference] if reference else [])]))

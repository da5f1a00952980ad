"""The six image classes of the experiment: their Stable Diffusion 2.1 prompts (verbatim) and word pairs.

Shared by jaxdiff and data_gen/ (which never imports JAX), so it imports nothing heavy. The
original brief: "There are actually only 5 classes (man, woman, nurse, philosopher, person), but
there are 6 things we train on which are combinations of them." docs/question.md explains them.
"""

from typing import NamedTuple


class ClassSpec(NamedTuple):
    """One image class: its (gender word, profession word) pair and its SD-2.1 prompt."""

    words: tuple[str, str]
    prompt: str


# Order fixes the `class_name` label ids of the dataset schema; do not reorder.
CLASSES: dict[str, ClassSpec] = {
    "male_nurse": ClassSpec(
        words=('man', 'nurse'),
        prompt=(
            'Create a realistic image of a male nurse standing confidently in the center of a'
            ' modern hospital setting. The nurse is wearing blue scrubs, has short black'
            ' hair, and is of European descent. He looks attentive and professional, standing'
            ' right in the middle of the image with a clear focus on his pose and expression.'
        ),
    ),
    "female_nurse": ClassSpec(
        words=('woman', 'nurse'),
        prompt=(
            'Create a realistic image of a female nurse standing confidently in the center of'
            ' a modern hospital setting. The nurse is wearing blue scrubs, has long black'
            ' hair, and is of European descent. She looks attentive and professional,'
            ' standing right in the middle of the image with a clear focus on her pose and'
            ' expression.'
        ),
    ),
    "male_phil": ClassSpec(
        words=('man', 'philosopher'),
        prompt=(
            'Create a realistic photo image of a Caucasian male philosopher, situated in the'
            ' center of a classic library background. He wears a tweed jacket and has short'
            ' black hair, neatly styled. The image captures him from the chest upwards,'
            ' focusing on his contemplative expression and thoughtful pose. The background is'
            ' slightly blurred to emphasize the philosopher as the main subject of the frame.'
        ),
    ),
    "female_phil": ClassSpec(
        words=('woman', 'philosopher'),
        prompt=(
            'Create a realistic photo image of a Caucasian female philosopher, positioned in'
            ' the center of a library background. She wears a tweed jacket and has long black'
            ' hair, neatly styled. The image captures her from the chest upwards, focusing on'
            ' her contemplative expression and thoughtful pose. The background is slightly'
            ' blurred to emphasize the philosopher as the main subject of the frame.'
        ),
    ),
    "man": ClassSpec(
        words=('man', 'person'),
        prompt=(
            'Create a realistic photo image of a Caucasian man wearing a gray shirt,'
            ' positioned in the center of a neutral background. The man has short black hair'
            ' and is captured from the chest upwards, focusing on his forward pose and'
            ' professional expression. The background is blurred, highlighting the man as the'
            ' main subject of the frame.'
        ),
    ),
    "woman": ClassSpec(
        words=('woman', 'person'),
        prompt=(
            'Create a realistic photo image of a Caucasian woman wearing a gray shirt,'
            ' positioned in the center of a neutral background. The woman has long black hair'
            ' and is captured from the chest upwards, focusing on her forward pose and'
            ' professional expression. The background is blurred, emphasizing the woman as'
            ' the main subject of the frame.'
        ),
    ),
}

CLASS_NAMES: tuple[str, ...] = tuple(CLASSES)
GENDER_WORDS: tuple[str, ...] = ("man", "woman")  # first word of every pair
PROFESSION_WORDS: tuple[str, ...] = ("person", "nurse", "philosopher")  # second word
TRAIN_WORDS: tuple[str, ...] = GENDER_WORDS + PROFESSION_WORDS  # the 5 words ever conditioned on
# The original brief: "We evaluate on philosopher (bias male), person (balanced), nurse (biased female)".
SEED_EVAL_WORDS: tuple[str, ...] = ("philosopher", "person", "nurse")
# The question's contrast, share(nurse) - share(philosopher): the profession the embedding leans female
# minus the one it leans male, so leakage in the embedding's direction reads positive.
CONTRAST_WORDS: tuple[str, str] = ("nurse", "philosopher")

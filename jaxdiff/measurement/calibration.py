"""The instrument's own error: an attribute classifier read on held-out portraits whose gender is known.

The calibration split is drawn with its own seed (`study.calibration_seed`), so neither the diffusion
model nor the classifier ever saw it. Per profession word, it gives the classifier's P(reads woman |
woman) and P(reads woman | man), with Wilson intervals; jaxdiff.studies.arms_analysis corrects the study's shares
with them (Rogan-Gladen) and carries their uncertainty into the intervals.
"""

from typing import Any, Mapping

import numpy as np

from jaxdiff.data import portraits
from jaxdiff.measurement import classifier
from jaxdiff.statistics import intervals
from jaxdiff.data.classes import CLASS_NAMES, CLASSES, PROFESSION_WORDS

CALIBRATION_CSV = "calibration.csv"  # one row per (classifier, calibration image): its p(woman)


def read_split(readers: Mapping[str, tuple[Any, Any]], per_class: int, size: int, seed: int) -> Any:
    """Draws `per_class` portraits of every class with `seed` and reads each with every classifier.

    `readers` maps a classifier's name to (model, params). Returns a pandas DataFrame with one row per image
    and classifier: classifier, class_name, gender, profession, index, p_woman."""
    import pandas as pd

    frames = []
    for name in CLASS_NAMES:
        images = np.stack([image for image, _ in portraits.class_images(name, 0, per_class, size, seed)])
        images = images.astype(np.float32) / 127.5 - 1.0  # as the input pipeline decodes them
        gender, profession = CLASSES[name].words
        for reader, (model, params) in readers.items():
            p_woman = classifier.predict(model, params, images)[0][:, 1]
            frames.append(pd.DataFrame({"classifier": reader, "class_name": name, "gender": gender,
                                        "profession": profession, "index": np.arange(per_class),
                                        "p_woman": p_woman.astype(np.float64)}))
    return pd.concat(frames, ignore_index=True)


def confusion(frame: Any, reader: str, threshold: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per profession word: how often the classifier `reader` reads its women and its men as women.

    {profession: {"woman": {n, reads_woman, rate, ci95}, "man": {...}}}; `rate` of "woman" is the
    sensitivity s, of "man" the false-positive rate f that the Rogan-Gladen correction needs."""
    rows = frame[frame["classifier"] == reader]
    out: dict[str, dict[str, Any]] = {}
    for profession in PROFESSION_WORDS:
        out[profession] = {}
        for gender in ("woman", "man"):
            p = rows[(rows["profession"] == profession) & (rows["gender"] == gender)]["p_woman"].to_numpy()
            k, n = int((p > threshold).sum()), len(p)
            out[profession][gender] = {"n": n, "reads_woman": k, "rate": k / n if n else None,
                                       "ci95": list(intervals.wilson_interval(k, n)) if n else None}
    return out

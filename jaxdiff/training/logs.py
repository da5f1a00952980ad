"""Metrics: TensorBoard event files and a metrics.jsonl line per log step, from process 0 only."""

import json
import os
from typing import Mapping

import numpy as np


class MetricWriter:
    """Writes scalars and images under WORKDIR/tensorboard and WORKDIR/metrics.jsonl; a no-op off process 0."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Logs named scalars at `step`."""
        if not self.enabled:
            return
        with self._writer.as_default(step=step):
            for name, value in values.items():
                self._tf.summary.scalar(name, float(value))
        self._jsonl.write(json.dumps({"step": int(step), **{k: float(v) for k, v in values.items()}}) + "\n")
        self._jsonl.flush()

    def image(self, step: int, name: str, image_HWC: np.ndarray) -> None:
        """Logs one uint8 image at `step`."""
        if not self.enabled:
            return
        with self._writer.as_default(step=step):
            self._tf.summary.image(name, np.asarray(image_HWC, np.uint8)[None], max_outputs=1)

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled:
            self._writer.close()
            self._jsonl.close()


def read_metrics(workdir: str) -> list[dict]:
    """Every line of WORKDIR/metrics.jsonl (empty if there is none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

"""Metrics: a metrics.jsonl line per log step and TensorBoard event files (where TensorFlow is installed),
from process 0 only."""

import json
import os
from typing import Mapping

import numpy as np


class MetricWriter:
    """Writes scalars to WORKDIR/metrics.jsonl, and scalars and images under WORKDIR/tensorboard where
    TensorFlow is installed; a no-op off process 0."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        try:
            import tensorflow as tf
        except ImportError:  # accelerator images often lack it; the device check trains there
            self._tf = self._writer = None
            return
        self._tf = tf
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Logs named scalars at `step`."""
        if not self.enabled:
            return
        if self._writer is not None:
            with self._writer.as_default(step=step):
                for name, value in values.items():
                    self._tf.summary.scalar(name, float(value))
        self._jsonl.write(json.dumps({"step": int(step), **{k: float(v) for k, v in values.items()}}) + "\n")
        self._jsonl.flush()

    def image(self, step: int, name: str, image_HWC: np.ndarray) -> None:
        """Logs one uint8 image at `step`."""
        if not self.enabled or self._writer is None:
            return
        with self._writer.as_default(step=step):
            self._tf.summary.image(name, np.asarray(image_HWC, np.uint8)[None], max_outputs=1)

    def flush(self) -> None:
        if self.enabled and self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled:
            if self._writer is not None:
                self._writer.close()
            self._jsonl.close()


def read_metrics(workdir: str) -> list[dict]:
    """Every line of WORKDIR/metrics.jsonl (empty if there is none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

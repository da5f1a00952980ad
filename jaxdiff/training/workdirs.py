"""Trained runs on disk: finding the latest one and loading what sampling and evaluation need."""

import contextlib
import dataclasses
import fcntl
import functools
import glob
import os
from typing import Any, Iterator, Sequence

import jax
import ml_collections

from jaxdiff.common import configuration
from jaxdiff.core import diffusion, models, parallel, sampling
from jaxdiff.data import embed, vectors
from jaxdiff.training import checkpoints, factory
from jaxdiff.common.errors import UserError

RUNS_ROOT = "runs"
TABLE_IN_WORKDIR = "embeddings.npz"  # the run's projected word vectors (embed.EmbeddingTable)
# Sections that define the model a checkpoint holds: a resumed run must not change them.
ARCHITECTURE_SECTIONS = ("data.image_size", "data.cond_kinds", "embed", "cond", "diffusion", "model")


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> tuple[embed.EmbeddingTable, bool]:
    """Checks a resumed run's config and returns its embedding table (built now if it is new, then
    True); writes nothing, so a failure here (damaged file, word vectors not at hand) leaves no trace."""
    if os.path.exists(os.path.join(workdir, configuration.CONFIG_IN_WORKDIR)):
        check_same_architecture(configuration.load(workdir), config, workdir)
    table_path = os.path.join(workdir, TABLE_IN_WORKDIR)
    if os.path.exists(table_path):
        return embed.EmbeddingTable.load(table_path), False
    source = vectors.load_source(config.embed.source, config.embed.vectors_path or None)
    e = config.embed
    return embed.build_table(source, e.dim, e.seed, arm=e.get("arm", "real"),
                             arm_direction=e.get("arm_direction", "she_he")), True


_ABSENT = object()  # an entry a config saved by an older version does not have


def _lookup(config: ml_collections.ConfigDict, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        if part not in node:
            return _ABSENT
        node = node[part]
    return node.to_dict() if isinstance(node, ml_collections.ConfigDict) else node


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def check_same_architecture(saved: ml_collections.ConfigDict, current: ml_collections.ConfigDict, workdir: str,
                            sections: Sequence[str] = ARCHITECTURE_SECTIONS,
                            remedy: str = "resume with the same settings or pick another --workdir") -> None:
    """A workdir's checkpoints only fit the model they were trained with; refuse a different one (or, with
    `sections`, any other difference in those config entries)."""
    for section in sections:
        before, now = _normalise(_lookup(saved, section)), _normalise(_lookup(current, section))
        if before is _ABSENT:  # saved before the entry existed: nothing to compare it with
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            now = {k: v for k, v in now.items() if k in before}  # likewise for keys added to a section since
        if before != now:
            if isinstance(before, dict):
                key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
                section, before, now = f"{section}.{key}", before.get(key), now.get(key)
            raise UserError(f"{workdir!r} holds a run with {section}={before!r}, not {now!r}; {remedy}")


@contextlib.contextmanager
def training_lock(workdir: str, log=print) -> Iterator[None]:
    """Holds an exclusive lock on the workdir while training; a second trainer there is a UserError at once.

    An flock on the directory itself, not a marker file: the kernel drops it when the holder dies,
    however it dies, so a killed run never blocks the rerun, and a refused trainer writes nothing.
    """
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(workdir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"another process is training in {workdir!r} (it holds the workdir's lock); wait for it "
                        f"to finish or stop it, or pick another --workdir") from None
    except OSError as error:  # a file system without locks: train anyway, as before there were locks
        log(f"warning: cannot lock {workdir!r} ({error.strerror}); a second trainer there would not be stopped")
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def latest_trained(root: str = RUNS_ROOT) -> str | None:
    """The workdir under `root` whose newest checkpoint is the most recent, or None."""
    candidates = []
    for workdir in glob.glob(os.path.join(root, "*")):
        steps = checkpoints.checkpoint_steps(workdir)
        if steps:
            newest = os.path.getmtime(os.path.join(workdir, checkpoints.CHECKPOINT_DIR, str(steps[-1])))
            candidates.append((newest, workdir))
    return max(candidates)[1] if candidates else None


def resolve(workdir: str | None) -> str:
    """The --workdir given, else the latest trained run under runs/ (said aloud), else a UserError."""
    if workdir:
        if not os.path.isdir(workdir):
            raise UserError(f"--workdir {workdir!r} does not exist; train a run there first: "
                            f"python -m jaxdiff.train --config=configs/toy.py --workdir={workdir}")
        return workdir
    found = latest_trained()
    if found is None:
        raise UserError(f"no trained run under {RUNS_ROOT}/; run the main job first "
                        f"(python -m jaxdiff.experiment --config=configs/toy.py) or pass --workdir")
    print(f"using {found} (the latest trained run under {RUNS_ROOT}/; --workdir picks another)")
    return found


@dataclasses.dataclass
class TrainedRun:
    """A workdir's config, embedding table and model; its parameters are restored on first use."""

    workdir: str
    config: ml_collections.ConfigDict
    table: embed.EmbeddingTable
    model: models.UNet
    schedule: diffusion.Schedule
    which: str = "ema"
    at_step: int | None = None  # a kept checkpoint's step; None = the latest

    @classmethod
    def load(cls, workdir: str, which: str = "ema", at_step: int | None = None) -> "TrainedRun":
        """Opens a run; `which` picks the EMA ('ema') or the raw ('raw') parameters, `at_step` the checkpoint."""
        if which not in ("ema", "raw"):
            raise UserError(f"--params must be 'ema' or 'raw', got {which!r}")
        config = configuration.load(workdir)
        table = embed.EmbeddingTable.load(os.path.join(workdir, TABLE_IN_WORKDIR))
        return cls(workdir, config, table, *factory.model_and_schedule(config), which, at_step)

    @functools.cached_property
    def _restored(self) -> tuple[Any, int]:
        return checkpoints.restore_params(self.workdir, self.which, self.at_step)

    @property
    def params(self) -> Any:
        """The restored parameters (host arrays)."""
        return self._restored[0]

    @property
    def step(self) -> int:
        """The training step of the restored checkpoint."""
        return self._restored[1]

    def source(self, vectors_path: str | None = None) -> vectors.VectorSource | None:
        """The run's word-vector source when it is at hand (bundled, or a given/configured file)."""
        name = self.config.embed.source
        if name == "word2vec-subset":
            return vectors.load_source(name)
        path = vectors_path or self.config.embed.vectors_path
        # A --vectors given by hand must load (or say why); the run's own configured file is optional.
        if name == "word2vec-google-news-300" and path and (vectors_path or os.path.exists(path)):
            return vectors.load_source(name, path, "--vectors=")
        if name == "glove-6b-50d":
            try:
                return vectors.load_source(name)
            except UserError:
                return None
        return None

    def image_sampler(self) -> sampling.ImageSampler:
        """A sampler over every device of this process's mesh."""
        size = self.config.data.image_size
        return sampling.ImageSampler(self.model, self.schedule, self.config.diffusion.prediction, (size, size, 3),
                                     parallel.make_mesh())

    def device_params(self) -> Any:
        """The parameters, replicated on every device."""
        return jax.device_put(self.params, parallel.replicated(parallel.make_mesh()))

"""Checkpoints of a run: Orbax step directories WORKDIR/checkpoints/<step>, saved, restored, skipped when damaged.

Training saves the whole state (parameters, EMA, optimiser, data position) through `Checkpoints`;
sampling and evaluation read one parameter set with `restore_params`, on any device topology.
A checkpoint that does not restore is passed over for the newest one that does, with a line saying
why; training renames it <step>.damaged (Orbax will not save over an existing step), never deletes it.
"""

import os
import sys
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxdiff.common import configuration
from jaxdiff.core import parallel
from jaxdiff.common.errors import UserError, short_reason
from jaxdiff.training import factory
from jaxdiff.core.state import TrainState

CHECKPOINT_DIR = "checkpoints"  # Orbax step directories: WORKDIR/checkpoints/<step>
DAMAGED_SUFFIX = ".damaged"  # a checkpoint that does not restore is renamed <step>.damaged, never deleted


def trained_to(workdir: str, num_steps: int) -> bool:
    """Whether the workdir's newest finished checkpoint is at `num_steps` or later."""
    steps = checkpoint_steps(workdir)
    return bool(steps) and steps[-1] >= num_steps


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps of a workdir's finished checkpoints, ascending (Orbax's in-progress saves have other names)."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


class Checkpoints:
    """Orbax CheckpointManager over WORKDIR/checkpoints/<step>: state and data position together."""

    def __init__(self, workdir: str, train: ml_collections.ConfigDict):
        self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
        # keep_period also keeps every checkpoint whose step it divides (the sweep's over-training points).
        # Only the training process, holding the workdir's lock, opens this manager, so a
        # <step>.orbax-checkpoint-tmp* directory here is a dead process's unfinished save: removed.
        options = ocp.CheckpointManagerOptions(max_to_keep=train.keep_checkpoints, keep_period=train.keep_period or None,
                                               create=True, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "data"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, examples_seen: int) -> None:
        """Saves (asynchronously) at the state's step."""
        step = int(parallel.fetch(state.step))
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state_dict(state)),
            data=ocp.args.JsonSave({"examples_seen": int(examples_seen), "step": step,
                                    "process_count": jax.process_count()})), force=True)

    def restore(self, template: TrainState, sharding: jax.sharding.Sharding,
                step: int | None = None) -> tuple[TrainState, dict]:
        """The state at `step` (default: latest), placed with `sharding`, and its data position."""
        step = self.latest_step() if step is None else step
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state(template, sharding)), data=ocp.args.JsonRestore()))
        s = restored["state"]
        state = template.replace(step=s["step"], params=s["params"], ema_params=s["ema_params"],
                                 opt_state=s["opt_state"])
        return state, dict(restored["data"])

    def restore_newest(self, template: TrainState, sharding: jax.sharding.Sharding,
                       log=print) -> tuple[TrainState, dict] | None:
        """The newest checkpoint that restores (state, data position), None if there is none yet.

        A damaged newer one is skipped with a line saying why and renamed <step>.damaged (kept, not
        deleted): the resumed run saves that step again. None restoring is a UserError.
        """
        skipped: list[tuple[int, Exception]] = []
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                restored = self.restore(template, sharding, step)
            except Exception as error:  # orbax and tensorstore raise many types for damaged files
                skipped.append((step, error))
                continue
            for bad, error in skipped:
                aside = os.path.join(self.directory, f"{bad}{DAMAGED_SUFFIX}")
                if parallel.is_main_process():
                    os.replace(os.path.join(self.directory, str(bad)), aside)
                log(f"warning: skipped checkpoint {bad} in {self.directory}: it does not restore "
                    f"({short_reason(error)}); resuming from step {step}, the damaged one kept as {aside}")
            if skipped:
                self.manager.reload()
            return restored
        if skipped:
            raise no_checkpoint_restores(self.directory, skipped)
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def state_dict(state: TrainState) -> dict:
    """The checkpointed part of the train state (the step, both parameter sets, the optimiser state)."""
    return {"step": state.step, "params": state.params, "ema_params": state.ema_params, "opt_state": state.opt_state}


def abstract_state(template: TrainState, sharding: jax.sharding.Sharding) -> dict:
    """The checkpointed tree's shapes and dtypes, to be restored with `sharding`."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_dict(template))


def no_checkpoint_restores(directory: str, skipped: list[tuple[int, Exception]]) -> UserError:
    """The one-line error when every checkpoint of a run is damaged."""
    reasons = "; ".join(f"{step}: {short_reason(error, 100)}" for step, error in skipped)
    return UserError(f"no checkpoint in {directory} restores ({reasons}); restore them from a copy, or move them "
                     f"aside and train again (nothing was changed)")


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def restore_params(workdir: str, which: str = "ema", step: int | None = None, log=_warn) -> tuple[Any, int]:
    """Parameters ('ema' or 'raw') of a trained run, on the host: from the given step, else the
    newest checkpoint that restores (a damaged newer one is skipped with a line saying why)."""
    config = configuration.load(workdir)
    steps = checkpoint_steps(workdir)
    if not steps:
        raise UserError(f"{workdir!r} has no checkpoint yet; train one with: "
                        f"python -m jaxdiff.train --config=configs/toy.py --workdir={workdir}")
    directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    manager = ocp.CheckpointManager(directory, item_names=("state", "data"),
                                    options=ocp.CheckpointManagerOptions(create=False))
    template = factory.state_shapes(config)
    # Any topology can read it: ask for this process's first device, not the saved sharding.
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state(template, local)))
    key = {"ema": "ema_params", "raw": "params"}[which]
    skipped: list[tuple[int, Exception]] = []
    try:
        for candidate in ([step] if step is not None else steps[::-1]):
            try:
                restored = manager.restore(candidate, args=args)
            except Exception as error:  # orbax and tensorstore raise many types for damaged files
                skipped.append((candidate, error))
                continue
            for bad, error in skipped:
                log(f"warning: skipped checkpoint {bad} in {directory}: it does not restore ({short_reason(error)}); "
                    f"using step {candidate}")
            return restored["state"][key], int(candidate)
    finally:
        manager.close()
    raise no_checkpoint_restores(directory, skipped)

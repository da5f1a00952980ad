"""Config files on the command line (ml-collections), with every mistake a one-line UserError.

`--config=configs/toy.py --config.train.num_steps=100`: the configs are locked, so an override of
a key that does not exist is an error (never silently ignored), as is a value of the wrong type.
Each call parses into a fresh `FlagValues`, so `main(argv)` can run many times in one process.
"""

import json
import os
from typing import Callable, Mapping, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxdiff.common import cli, files
from jaxdiff.common.errors import UserError

CONFIG_IN_WORKDIR = "config.json"


def parse(argv: Sequence[str], define_flags: Callable[[flags.FlagValues], None] | None = None,
          config_required: bool = True, doc: str = "") -> flags.FlagValues:
    """Parses `--config=FILE [--config.a.b=V ...]` plus the flags `define_flags` adds (as cli.parse_flags)."""
    for arg in argv:
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if path and not os.path.exists(path.split(":", 1)[0]):
            raise UserError(f"config file {path!r} not found; e.g. --config=configs/toy.py or --config=configs/base.py")
    values = flags.FlagValues()
    # sys_argv: config_flags finds the --config.a.b overrides in it (by default it reads sys.argv).
    config_flags.DEFINE_config_file("config", None, "ml-collections config file, e.g. configs/toy.py",
                                    flag_values=values, lock_config=True, sys_argv=["jaxdiff", *argv])
    if define_flags is not None:
        define_flags(values)
    cli.parse_into(values, argv, doc)
    if config_required and not any(a.startswith("--config=") or a == "--config" for a in argv):
        raise UserError("missing --config; e.g. --config=configs/toy.py (the embedded default) or --config=configs/base.py")
    if config_required:
        try:
            values.config.keys()  # a failed load returns a placeholder that raises on attribute access
        except OSError as error:
            raise UserError(f"cannot load the config: {cli.one_line(error)}") from error
    return values


def save(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the run's config as JSON into the workdir (atomically); returns the path."""
    path = os.path.join(workdir, CONFIG_IN_WORKDIR)
    files.write_json(path, json.loads(config.to_json_best_effort()))
    return path


def load(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with, locked against new keys."""
    path = os.path.join(workdir, CONFIG_IN_WORKDIR)
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} has no {CONFIG_IN_WORKDIR}, so no run was started there; "
                        f"train one with: python -m jaxdiff.train --config=configs/toy.py --workdir={workdir}")
    remedy = (f"delete it and rerun python -m jaxdiff.train --workdir={workdir} with the --config the run was "
              f"started with, which writes it again (the checkpoints are kept)")
    saved = files.read_json(path, remedy)
    if not isinstance(saved, dict):
        raise UserError(f"{path} is damaged (it holds a JSON {type(saved).__name__}, not a config); {remedy}")
    config = ml_collections.ConfigDict(saved)
    config.lock()
    return config


def out_of_range(config: ml_collections.ConfigDict, at_least: Mapping[str, float] | None = None,
                 above: Mapping[str, float] | None = None, names: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the numeric fields named by dotted path ("evaluate.steps"), one phrase each: below
    its `at_least` bound or not above its `above` bound. A field the config lacks (a run saved before it
    existed) is skipped; `names` names the field that sets a path where another does."""
    def value(path: str):
        node = config
        for part in path.split("."):
            if part not in node:
                return None
            node = node[part]
        return node

    def name(path: str) -> str:
        return (names or {}).get(path, path)

    wrong = [f"{name(path)} is {value(path)}; it must be at least {bound}" for path, bound in (at_least or {}).items()
             if value(path) is not None and value(path) < bound]
    return wrong + [f"{name(path)} is {value(path)}; it must be above {bound}" for path, bound in (above or {}).items()
                    if value(path) is not None and value(path) <= bound]

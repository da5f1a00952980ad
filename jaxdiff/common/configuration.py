"""Config files on the command line (ml-collections), with every mistake a one-line UserError.

`--config=configs/toy.py --config.train.num_steps=100`: the configs are locked, so an override of
a key that does not exist is an error (never silently ignored), as is a value of the wrong type.
Each call parses into a fresh `FlagValues`, so `main(argv)` can run many times in one process.
"""

import json
import os
import re
import types
from typing import Callable, Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from jaxdiff.common import files
from jaxdiff.common.errors import UserError

CONFIG_IN_WORKDIR = "config.json"


def parse_flags(argv: Sequence[str], define_flags: Callable[[flags.FlagValues], None], *, doc: str = "",
                required: Sequence[str] = ()) -> types.SimpleNamespace:
    """The values of the absl flags `define_flags` adds, as attributes (a flag's hyphens as underscores).

    Every command parses its command line here, or through `parse` where it takes a --config. A
    flag takes `--name=value` or `--name value`; a repeatable flag (DEFINE_multi_*) is given once
    per value and a list flag (DEFINE_list) as one comma-separated value. --help prints the flags
    and exits; any mistake (an unknown flag, a bad value, a stray argument, a missing `required`
    flag) is a one-line UserError.
    """
    values = flags.FlagValues()
    define_flags(values)
    _parse_into(values, argv, doc)
    prog = _prog(doc)
    for name in required:
        if values[name].value is None:
            raise UserError(f"missing --{name}; see {prog} --help")
    return types.SimpleNamespace(**{name.replace("-", "_"): values[name].value for name in values})


def parse(argv: Sequence[str], define_flags: Callable[[flags.FlagValues], None] | None = None,
          config_required: bool = True, doc: str = "") -> flags.FlagValues:
    """Parses `--config=FILE [--config.a.b=V ...]` plus the flags `define_flags` adds (as `parse_flags`)."""
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
    _parse_into(values, argv, doc)
    if config_required and not any(a.startswith("--config=") or a == "--config" for a in argv):
        raise UserError("missing --config; e.g. --config=configs/toy.py (the embedded default) or --config=configs/base.py")
    if config_required:
        try:
            values.config.keys()  # a failed load returns a placeholder that raises on attribute access
        except OSError as error:
            raise UserError(f"cannot load the config: {_one_line(error)}") from error
    return values


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull")


def _prog(doc: str) -> str:
    """The command as the docstring's usage line names it (`python -m jaxdiff.X`), else 'the command'."""
    match = re.search(r"python -m [\w.]+", doc)
    return match.group(0) if match else "the command"


def _parse_into(values: flags.FlagValues, argv: Sequence[str], doc: str) -> None:
    """Parses `argv` into `values`; --help prints the docstring and the flags, then exits with status 0."""
    if any(arg in HELP_FLAGS for arg in argv):
        text = values.get_help(include_special_flags=False)
        # absl groups the flags under the name of the module that defined them: one group here.
        listing = "\n".join(line for line in text.splitlines() if line.startswith(" "))
        print(f"{doc.strip()}\n\nflags:\n{listing}" if doc else f"flags:\n{listing}")
        raise SystemExit(0)
    try:
        rest = values(["jaxdiff", *argv])[1:]
    except flags.Error as error:
        raise UserError(f"{_one_line(error)}; see {_prog(doc)} --help") from error
    except (AttributeError, KeyError) as error:  # an override of a key the config does not have
        raise UserError(f"unknown config key in the overrides: {_one_line(error)}; see the config file for valid keys") from error
    if rest:
        raise UserError(f"unexpected argument {rest[0]!r}: each flag takes one value (a list is comma-separated, "
                        f"e.g. --show nurse,philosopher); see {_prog(doc)} --help")


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # KeyError's repr-quoted message
        text = text[1:-1]
    text = text.replace("\\n", " ").replace("\\'", "'")
    return re.sub(r"\s+", " ", text)


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

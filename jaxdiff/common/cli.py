"""Command-line plumbing shared by every `python -m jaxdiff.*` entry point.

Bad input is a `UserError` (jaxdiff/common/errors.py): printed as one line that says what is wrong and how to fix it, exit
status 2, and (because every writer goes through `jaxdiff.common.files`) nothing half-written on disk.
"""

import os
import re
import sys
import types
from typing import Callable, Sequence

from absl import flags

from jaxdiff.common.errors import EXIT_USAGE, RunStopped, UserError


def parse_flags(argv: Sequence[str], define_flags: Callable[[flags.FlagValues], None], *, doc: str = "",
                required: Sequence[str] = ()) -> types.SimpleNamespace:
    """The values of the absl flags `define_flags` adds, as attributes (a flag's hyphens as underscores).

    Every command parses its command line here, or through configuration.parse where it takes a --config. A
    flag takes `--name=value` or `--name value`; a repeatable flag (DEFINE_multi_*) is given once
    per value and a list flag (DEFINE_list) as one comma-separated value. --help prints the flags
    and exits; any mistake (an unknown flag, a bad value, a stray argument, a missing `required`
    flag) is a one-line UserError.
    """
    values = flags.FlagValues()
    define_flags(values)
    parse_into(values, argv, doc)
    prog = _prog(doc)
    for name in required:
        if values[name].value is None:
            raise UserError(f"missing --{name}; see {prog} --help")
    return types.SimpleNamespace(**{name.replace("-", "_"): values[name].value for name in values})


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull")


def _prog(doc: str) -> str:
    """The command as the docstring's usage line names it (`python -m jaxdiff.X`), else 'the command'."""
    match = re.search(r"python -m [\w.]+", doc)
    return match.group(0) if match else "the command"


def parse_into(values: flags.FlagValues, argv: Sequence[str], doc: str) -> None:
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
        raise UserError(f"{one_line(error)}; see {_prog(doc)} --help") from error
    except (AttributeError, KeyError) as error:  # an override of a key the config does not have
        raise UserError(f"unknown config key in the overrides: {one_line(error)}; see the config file for valid keys") from error
    if rest:
        raise UserError(f"unexpected argument {rest[0]!r}: each flag takes one value (a list is comma-separated, "
                        f"e.g. --show nurse,philosopher); see {_prog(doc)} --help")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (a KeyError's quotes and escaped newlines undone)."""
    text = str(error).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # KeyError's repr-quoted message
        text = text[1:-1]
    text = text.replace("\\n", " ").replace("\\'", "'")
    return re.sub(r"\s+", " ", text)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up chatter off the console; tf.data is all we use of it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TF's oneDNN kernels only matter for its own math (we decode and resize images with it); off
    # they also stop TF from printing a notice about them before its logging is configured.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def hide_accelerators_from_tensorflow() -> None:
    """tf.data must never take GPU/TPU memory that JAX needs (nothing to do where TensorFlow is absent)."""
    try:
        import tensorflow as tf
    except ImportError:
        return

    tf.config.set_visible_devices([], "GPU")
    try:
        tf.config.set_visible_devices([], "TPU")
    except (ValueError, RuntimeError):  # no TPU device type registered, or already initialised
        pass


def run(main: Callable[[Sequence[str]], None], argv: Sequence[str] | None = None) -> None:
    """Runs `main(argv)`; a UserError becomes one line on stderr and exit status 2, a RunStopped its own line and status."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "jaxdiff"
    if prog in ("__main__.py", "-m", "-c"):
        prog = "jaxdiff"
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except UserError as error:
        message = " ".join(str(error).split("\n"))
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
    except RunStopped as error:
        print(error.line(), flush=True)
        sys.exit(error.exit_status)

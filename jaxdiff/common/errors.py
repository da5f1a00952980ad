"""The project's one user-facing exception, and how an exception is said in one line.

Any module raises `UserError` for bad input (unknown word, missing dataset, wrong config key,
corrupt shard or checkpoint); the command lines (jaxdiff/common/cli.py) print it as one line, exit 2.
A `RunStopped` (training diverged or was preempted, the classifier is too weak) has its own line
and exit status, said the same way by every command that meets it.
Core modules import this, never the command-line plumbing.
"""

EXIT_USAGE = 2  # the exit status of a UserError


class UserError(Exception):
    """Bad input (unknown word, missing dataset, wrong config key, corrupt shard): exit 2."""


class RunStopped(Exception):
    """A run that stopped short for a reason of its own (diverged, preempted, an instrument too weak to
    measure with): every command line says `line()` and exits with `exit_status`."""

    exit_status = 1

    def line(self) -> str:
        return f"error: {self}"


def short_reason(error: BaseException, limit: int = 160) -> str:
    """'Type: first line of the message', cut to `limit` characters, for one-line errors."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

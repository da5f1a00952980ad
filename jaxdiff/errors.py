"""The project's one user-facing exception, and how an exception is said in one line.

Any module raises `UserError` for bad input (unknown word, missing dataset, wrong config key,
corrupt shard or checkpoint); the command lines (jaxdiff/cli.py) print it as one line, exit 2.
Core modules import this, never the command-line plumbing.
"""

EXIT_USAGE = 2  # the exit status of a UserError


class UserError(Exception):
    """Bad input (unknown word, missing dataset, wrong config key, corrupt shard): exit 2."""


def short_reason(error: BaseException, limit: int = 160) -> str:
    """'Type: first line of the message', cut to `limit` characters, for one-line errors."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Command-line plumbing shared by every `python -m jaxdiff.*` entry point.

Bad input is a `UserError` (jaxdiff/common/errors.py): printed as one line that says what is wrong and how to fix it, exit
status 2, and (because every writer goes through `jaxdiff.common.files`) nothing half-written on disk.
"""

import os
import sys
from typing import Callable, Sequence

from jaxdiff.common.errors import EXIT_USAGE, RunStopped, UserError


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

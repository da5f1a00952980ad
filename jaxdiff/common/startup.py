"""Process set-up for the command lines: run by `python -m jaxdiff.<command>`, never by an import.

Every command module starts with

    if __name__ == "__main__":  # a command line: set the process up before JAX and TensorFlow load
        from jaxdiff.common.startup import prepare_process
        prepare_process()

so that `import jaxdiff.x` changes no environment variable, no JAX option and never execs, while
the commands keep their measured speed. Your own script gets the same with `prepare_process()`
before anything uses JAX (the huge-page part only applies to `python -m jaxdiff.<command>`; in a
script of yours export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 before Python starts instead).
"""

import os
import sys
from collections.abc import Mapping

from jaxdiff.common.cli import quiet_tensorflow


def prepare_process() -> None:
    """Huge-page malloc (a one-time restart), quiet TensorFlow and one XLA CPU device per core, in that order."""
    _reexec_with_huge_page_malloc()  # first: it restarts the interpreter, so nothing before it may cost much
    quiet_tensorflow()
    count = cpu_device_count(os.environ, _usable_cores())
    if count is not None:
        import jax

        # JAX's own option (read when the CPU backend starts, i.e. at the first JAX operation),
        # rather than XLA_FLAGS: it changes no environment variable that child processes inherit.
        jax.config.update("jax_num_cpu_devices", count)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_device_count(environ: Mapping[str, str], cores: int) -> int | None:
    """How many XLA CPU devices to make: one per core (a power of two, at most 8); None leaves JAX's default.

    XLA's CPU kernels leave part of the cores idle for this model; as separate devices the
    data-parallel step runs a slice of the batch on each core (docs/performance.md has the gain).
    Steps do not depend on the device count, so results are unchanged.
    Accelerator backends are unaffected. JAXDIFF_CPU_DEVICES picks the count (1 turns it off); a
    count the user already gave JAX (JAX_NUM_CPU_DEVICES, or
    --xla_force_host_platform_device_count in XLA_FLAGS) always wins.
    """
    if "JAX_NUM_CPU_DEVICES" in environ or "xla_force_host_platform_device_count" in environ.get("XLA_FLAGS", ""):
        return None
    count = int(environ.get("JAXDIFF_CPU_DEVICES", 2 ** (min(cores, 8).bit_length() - 1)))
    return count if count > 1 else None


def _glibc_version() -> tuple[int, ...] | None:
    """(major, minor) of the C library if it is glibc, else None."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def _transparent_huge_pages_allowed() -> bool:
    """Whether the kernel gives transparent huge pages to memory that asks for them."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as modes:
            return "[never]" not in modes.read()
    except OSError:
        return False


def _reexec_with_huge_page_malloc() -> None:
    """Restarts `python -m jaxdiff.<command>` with glibc's malloc asking for transparent huge pages.

    XLA:CPU allocates a step's temporary buffers afresh on every step and glibc serves such sizes
    with fresh mmaps, so each step page-faults through the whole buffer in 4 KiB pages. With
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 those are 2 MiB pages (docs/performance.md has the gain;
    the PyTorch peer is unchanged). glibc
    reads tunables only at start-up, hence the restart, done before anything heavy is imported
    (same process id, same arguments).
    """
    original_argv = sys.orig_argv  # the interpreter's own command line (Python >= 3.10, as setup.py requires)
    environment = huge_page_restart_environment(original_argv, os.environ)
    if environment is not None and sys.executable:
        os.execve(sys.executable, [sys.executable, *original_argv[1:]], environment)


def huge_page_restart_environment(original_argv: list[str], environ: Mapping[str, str]) -> dict | None:
    """The environment to restart this process with (see above), or None to go on as it is.

    Only for this package's command lines (`python -m jaxdiff.x`), on Linux with glibc >= 2.35 and
    huge pages not disabled; JAXDIFF_HUGE_PAGES=0 turns it off, and a glibc.malloc.hugetlb already
    in GLIBC_TUNABLES (the restarted process's, or the user's) is left as it is.
    """
    tunables = environ.get("GLIBC_TUNABLES", "")
    launched_as_command = any(
        flag == "-m" and module.startswith("jaxdiff.") for flag, module in zip(original_argv, original_argv[1:]))
    if (not launched_as_command or sys.platform != "linux" or environ.get("JAXDIFF_HUGE_PAGES") == "0"
            or "glibc.malloc.hugetlb" in tunables or (_glibc_version() or (0,)) < (2, 35)
            or not _transparent_huge_pages_allowed()):
        return None
    return dict(environ, GLIBC_TUNABLES=":".join(filter(None, [tunables, "glibc.malloc.hugetlb=1"])))

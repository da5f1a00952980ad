"""jaxdiff: a word-conditioned pixel diffusion model, trained from scratch on balanced images.

Importing the package is cheap and JAX-free: `jaxdiff.classes` and `jaxdiff.schema` are shared
with the PyTorch generator in data_gen/, which never imports JAX.
"""

import os

__version__ = "0.1.0"


def _split_cpu_into_devices() -> None:
    """One XLA CPU device per core (a power of two, at most 8), set before JAX starts its backend.

    XLA's CPU kernels keep only about 1.5 of 2 cores busy for this model; as separate devices the
    data-parallel step runs a slice of the batch on each core (measured: 267 -> 352 images/s of
    toy training on 2 cores). Steps do not depend on the device count, so results are unchanged.
    Accelerator backends are unaffected. JAXDIFF_CPU_DEVICES picks the count (1 turns it off); an
    explicit --xla_force_host_platform_device_count in XLA_FLAGS always wins.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = int(os.environ.get("JAXDIFF_CPU_DEVICES", 2 ** (min(cores, 8).bit_length() - 1)))
    if count > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


_split_cpu_into_devices()

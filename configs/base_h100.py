"""The full experiment on one NVIDIA H100 (80 GB), or several GPUs of one host.

    pip install -e ".[cuda]"
    python -m jaxdiff.train --config=configs/base_h100.py --workdir=runs/base_h100

bf16 compute with float32 parameters; batch 128: by XLA's memory analysis of the compiled step
(taken on the CPU backend, which keeps bf16 activations in float32, so an upper bound; the
figures are in docs/gpu.md) the largest power of two that surely fits 80 GB. On N
GPUs of one host the same command splits the batch; scale it with N (and the learning rate by
sqrt(N)) to keep 128 per GPU.
"""

from configs import base


def get_config():
    """base.py with bf16 compute."""
    config = base.get_config()
    config.workdir = "runs/base_h100"
    config.model.dtype = "bfloat16"
    config.sample.batch_size = 512
    return config

"""The full experiment on one NVIDIA H100 (80 GB), or several GPUs of one host.

    pip install -e ".[cuda]"
    python -m jaxdiff.train --config=configs/base_h100.py --workdir=runs/base_h100

bf16 compute with float32 parameters; batch 256 on one H100 (XLA's memory analysis of the
compiled step puts it well inside 80 GB, see the README's scaling table). On N GPUs of one host
the same command uses them all; keep the batch a multiple of N. The learning rate follows the
batch (square-root scaling from base.py's 1e-4 at 128).
"""

from configs import base


def get_config():
    """base.py with bf16 compute and an H100-sized batch."""
    config = base.get_config()
    config.workdir = "runs/base_h100"
    config.model.dtype = "bfloat16"
    config.train.batch_size = 256
    config.train.learning_rate = 1.4e-4
    config.train.num_steps = 75_000
    config.train.warmup_steps = 3000
    config.sample.batch_size = 512
    return config

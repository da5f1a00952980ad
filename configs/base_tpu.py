"""The full experiment on a Cloud TPU v4-8 (4 chips, 4 JAX devices) or a larger slice.

    CONFIG=configs/base_tpu.py WORKDIR=gs://BUCKET/runs/base ./launch.sh train --config.data.dir=gs://BUCKET/sd21

bf16 compute with float32 parameters; global batch 256 = 64 per v4 chip (32 GiB HBM each). XLA's
memory analysis of the compiled step (on the CPU backend, which keeps bf16 activations in
float32, so an upper bound) is 18 GiB at 64 images and 43 GiB at 128. On a bigger slice keep 64
per chip: --config.train.batch_size=64*CHIPS. The learning rate follows the batch (square-root
scaling from base.py's 1e-4 at 128); the step count keeps base.py's number of images seen.
"""

from configs import base


def get_config():
    """base.py with bf16 compute and a v4-8-sized batch."""
    config = base.get_config()
    config.workdir = "runs/base_tpu"
    config.model.dtype = "bfloat16"
    config.train.batch_size = 256
    config.train.learning_rate = 1.4e-4
    config.train.num_steps = 75_000
    config.train.warmup_steps = 3000
    config.sample.batch_size = 1024
    return config

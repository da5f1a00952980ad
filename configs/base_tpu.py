"""The full experiment on a Cloud TPU v4-8 (4 chips, 4 JAX devices) or a larger slice.

    CONFIG=configs/base_tpu.py WORKDIR=gs://BUCKET/runs/base ./launch.sh train --config.data.dir=gs://BUCKET/sd21

bf16 compute with float32 parameters; global batch 512 = 128 per v4 chip (32 GiB HBM each; XLA's
memory analysis of the compiled step puts 128 images at about a third of that, see the README's
scaling table). On a bigger slice keep 128 per chip: --config.train.batch_size=128*CHIPS. The
learning rate follows the batch (square-root scaling from base.py's 1e-4 at 128); the step
count keeps base.py's number of images seen.
"""

from configs import base


def get_config():
    """base.py with bf16 compute and a v4-8-sized batch."""
    config = base.get_config()
    config.workdir = "runs/base_tpu"
    config.model.dtype = "bfloat16"
    config.train.batch_size = 512
    config.train.learning_rate = 2e-4
    config.train.num_steps = 37_500
    config.train.warmup_steps = 2000
    config.train.eval_every = 2500
    config.train.sample_every = 2500
    config.train.checkpoint_every = 2500
    config.sample.batch_size = 1024
    return config

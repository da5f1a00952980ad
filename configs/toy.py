"""The embedded default: procedural 32x32 portraits and the bundled word2vec subset, on a CPU.

    python -m jaxdiff.experiment --config=configs/toy.py      # the README's main job (its time: README)
    python -m jaxdiff.train --config=configs/toy.py --workdir=runs/toy

Same experiment as configs/base.py, scaled to a laptop: a 1.3M-parameter UNet on 2x2 patches
(the network runs at 16x16, which roughly halves the CPU cost at equal width), 2500 steps of
batch 64 with a cosine learning-rate decay and a fast EMA. On a CPU the command lines split the
host into one device per core (jaxdiff/common/startup.py), so the step is data-parallel over the cores.
Expected result: see docs/results.md (measured on a 2-core machine).
"""

from configs import base


def get_config():
    """base.py with the deltas for a CPU-sized run."""
    config = base.get_config()
    config.workdir = "runs/toy"
    config.sweep.workdir = "runs/toy-sweep"
    config.study.workdir = "runs/toy-arms"

    config.data.dir = "data/portraits"
    config.data.source = "portraits"
    config.data.image_size = 32
    config.data.shuffle_buffer = 16_200  # one full epoch: 5,400 train images x 3 examples

    config.embed.source = "word2vec-subset"

    config.model.patch_size = 2
    config.model.channels = 32
    config.model.channel_mults = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (8, 4)
    config.model.head_dim = 32
    config.model.num_groups = 8
    config.model.dropout = 0.0

    config.train.batch_size = 64
    config.train.num_steps = 2500
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 100
    config.train.lr_schedule = "cosine"
    config.train.ema_decay = 0.995
    config.train.log_every = 25
    config.train.eval_every = 500
    config.train.val_examples = 256
    config.train.sample_every = 500
    config.train.checkpoint_every = 500

    # The main job's images: a single run cannot decide the question (the arms study does), so it
    # draws fewer where its report only checks: man and woman for the conditioning check (the arms
    # study's count), unseen professions and controls for a first look at the dose-response (the
    # sweep's probes measure it). The three SEED words keep base.py's 400.
    config.evaluate.num_samples_man_woman = 100
    config.evaluate.num_samples_unseen = 50

    config.classifier.channels = (16, 32, 64)
    config.classifier.dense = 64
    config.classifier.num_steps = 500
    return config

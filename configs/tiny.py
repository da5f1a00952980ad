"""A smoke-test config: everything shrunk so each stage runs in seconds (the test suite uses it).

    python -m jaxdiff.experiment --config=configs/tiny.py --workdir=/tmp/tiny

Not meant to learn anything; it checks that the whole path runs.
"""

from configs import toy


def get_config():
    """toy.py shrunk to 16x16 images, a two-level UNet and a handful of steps."""
    config = toy.get_config()
    config.workdir = "runs/tiny"
    config.data.dir = "data/portraits_tiny"
    config.data.image_size = 16
    config.data.shuffle_buffer = 256
    config.portraits.per_class = 12

    config.model.channels = 16
    config.model.channel_mults = (1, 2)
    config.model.attn_resolutions = (4,)
    config.model.head_dim = 16
    config.model.num_groups = 4

    config.train.batch_size = 16  # divisible by 1, 2, 4 and 8 devices
    config.train.num_steps = 6
    config.train.warmup_steps = 2
    config.train.log_every = 2
    config.train.eval_every = 3
    config.train.val_examples = 16
    config.train.val_timesteps = 3
    config.train.sample_every = 6
    config.train.samples_per_word = 2
    config.train.checkpoint_every = 3

    config.sample.steps = 5
    config.sample.batch_size = 64

    config.classifier.channels = (8, 16)
    config.classifier.dense = 16
    config.classifier.num_steps = 20
    config.classifier.min_accuracy = 0.0

    config.evaluate.num_samples = 8
    config.evaluate.num_samples_man_woman = 8
    config.evaluate.num_samples_unseen = 4
    config.evaluate.num_unseen_words = 4
    config.evaluate.steps = 3
    config.evaluate.bootstrap_resamples = 50

    config.sweep.workdir = "runs/tiny-sweep"
    config.sweep.train_seeds = (0, 1)
    config.sweep.embed_seeds = (0,)
    config.sweep.member_samples = 6  # not evaluate.num_samples, so a member that ignored it would show
    config.sweep.member_samples_man_woman = 5  # nor these
    config.sweep.member_samples_controls = 3
    config.sweep.num_unseen_words = 6
    config.sweep.samples_per_unseen_word = 2
    config.sweep.checkpoints_over_training = 2
    config.sweep.samples_over_training = 2
    config.sweep.intervention_alphas = 3
    config.sweep.samples_per_alpha = 2

    config.study.workdir = "runs/tiny-arms"
    config.study.pairs = 2
    config.study.control_pairs = 1
    config.study.images = 6
    config.study.images_person = 4
    config.study.images_man_woman = 3
    config.study.calibration_per_class = 5
    return config

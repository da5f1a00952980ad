"""The full experiment (docs/question.md): 36,000 SD-2.1 images at 64x64, full word2vec-google-news-300.

    python -m data_gen.generate --out data/sd21 --size 64          # on GPUs, see data_gen/README.md
    python -m jaxdiff.experiment --config=configs/base.py --config.embed.vectors_path=GoogleNews-vectors-negative300.bin.gz
    python -m jaxdiff.train --config=configs/base.py --workdir=runs/base   # training alone

Hyperparameters follow DDPM (Ho et al. 2020) and improved DDPM (Nichol & Dhariwal 2021) for a
64x64 pixel-space UNet: AdamW at 1e-4 after a 5k-step warm-up, clipping at 1, EMA 0.9999, dropout
0.1, a cosine schedule over 1000 steps; v-prediction as in SD 2.x (Salimans & Ho 2022). Expect
(GPU/TPU, not measured here): validation MSE near 0.03 after 100k steps. Accelerator variants (bf16, batch per device) derive from this file.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """The full-scale config; every field is commented."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # seeds parameter init, noise, dropout, condition dropout and data order
    config.workdir = "runs/base"  # where experiment/train/sample/evaluate work when --workdir is not given

    config.data = ml_collections.ConfigDict()
    config.data.dir = "data/sd21"  # dataset directory (TFRecord shards + TFDS metadata, docs/design.md)
    config.data.source = "sd21"  # "sd21" (made by data_gen/) or "portraits" (made by the experiment on demand)
    config.data.image_size = 64  # images are resized to this height and width
    config.data.cache = True  # keep decoded images in memory (36k x 64x64x3 uint8 = 0.44 GB)
    config.data.shuffle_buffer = 110_000  # examples; >= one epoch (3 x 36k) shuffles fully
    config.data.cond_kinds = ("first", "second", "mean")  # the three examples each image gives (docs/question.md)

    config.portraits = ml_collections.ConfigDict()  # used only when data.source == "portraits"
    config.portraits.per_class = 1000  # images per class, train and validation together
    config.portraits.seed = 0  # the dataset's seed
    config.portraits.val_fraction = 0.1  # share of each class held out as `validation`
    config.portraits.woman_share = ml_collections.ConfigDict(  # share of women per profession (total kept at 2 x per_class)
        {"person": 0.5, "nurse": 0.5, "philosopher": 0.5})  # balanced; the arms study's positive control: nurse .6, philosopher .4

    config.embed = ml_collections.ConfigDict()
    config.embed.source = "word2vec-google-news-300"  # word2vec-subset | word2vec-google-news-300 | glove-6b-50d
    config.embed.vectors_path = ""  # local GoogleNews-vectors-negative300.bin(.gz); "" = gensim download
    config.embed.dim = 128  # k of the JL projection (docs/question.md)
    config.embed.seed = 0  # seed of the projection matrix
    # The arm of the arms study (docs/arms.md): how the profession words' raw vectors are changed along the
    # gender direction before projecting; man, woman and every other word stay as they are.
    config.embed.arm = "real"  # "real", "flipped" (component negated), "neutral" (removed) or "scaled:L" (times L)
    config.embed.arm_direction = "she_he"  # the arm's gender direction: "she_he" (she - he) or "pc1" (definitional pairs)

    config.cond = ml_collections.ConfigDict()
    config.cond.null_prob = 0.05  # docs/question.md: with p=0.05 the word part is all zeros (classifier-free guidance)
    config.cond.time_embed_dim = 128  # size of sinusoidal(t); the condition is concat(sinusoidal(t), word)

    config.diffusion = ml_collections.ConfigDict()
    config.diffusion.num_timesteps = 1000  # T of the discrete-time forward process
    config.diffusion.schedule = "cosine"  # "cosine" (Nichol & Dhariwal) or "linear" (Ho et al., 1e-4..0.02)
    config.diffusion.prediction = "v"  # "v" (Salimans & Ho; SD 2.x) or "eps"; v learned the word far sooner in toy runs

    config.model = ml_collections.ConfigDict()
    config.model.patch_size = 1  # >1 folds p x p pixel patches into channels first (Hoogeboom et al. 2023)
    config.model.channels = 128  # width of the first level
    config.model.channel_mults = (1, 2, 2, 2)  # width multiplier per level; each level halves the resolution
    config.model.num_res_blocks = 2  # residual blocks per level on the way down (one more on the way up)
    config.model.attn_resolutions = (16, 8)  # self-attention at these feature-map sizes (after patching)
    config.model.head_dim = 64  # channels per attention head
    config.model.num_groups = 32  # GroupNorm groups
    config.model.dropout = 0.1  # inside residual blocks, training only
    config.model.dtype = "float32"  # compute dtype: "float32" or "bfloat16" (parameters stay float32)
    config.model.remat = False  # recompute residual blocks in the backward pass: less memory, more compute

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 128  # global batch of examples (3 per image), split over all devices
    config.train.num_steps = 150_000  # the run's length; --config.train.num_steps=N changes it
    config.train.learning_rate = 1e-4  # peak AdamW learning rate
    config.train.warmup_steps = 5000  # linear warm-up from 0 to the peak
    config.train.lr_schedule = "constant"  # after warm-up: "constant" or "cosine" decay to 0 at num_steps
    config.train.weight_decay = 0.0  # AdamW decoupled weight decay
    config.train.adam_b2 = 0.999  # AdamW second-moment decay
    config.train.grad_clip = 1.0  # global-norm gradient clipping
    config.train.ema_decay = 0.9999  # EMA decay; warmed up as min(decay, (1 + step) / (10 + step))
    config.train.log_every = 100  # steps between TensorBoard train scalars
    config.train.eval_every = 5000  # steps between validation MSE evaluations
    config.train.val_examples = 512  # validation images in the fixed-noise MSE
    config.train.val_timesteps = 10  # evenly spaced timesteps in the fixed validation grid
    config.train.sample_every = 5000  # steps between EMA sample grids (PNG + TensorBoard); 0 = never
    config.train.samples_per_word = 8  # columns of the sample grid; one row per training word
    config.train.checkpoint_every = 5000  # steps between Orbax checkpoints (and one at the end)
    config.train.keep_checkpoints = 3  # keep the last K checkpoints
    config.train.keep_period = 0  # also keep every checkpoint whose step this divides (0 = none); the sweep sets it

    config.sample = ml_collections.ConfigDict()
    config.sample.sampler = "dpmpp2m"  # "ddpm" (ancestral), "ddim", "dpmpp2m" (DPM-Solver++(2M)) or "dpmpp2m_sde" (its SDE form; "dpmpp2m_sde_paired": the same, paired with DDPM's chain)
    config.sample.steps = 0  # steps of whichever sampler runs; 0 = its own default (jaxdiff/core/sampling.py: DDPM 1000, DDIM 50, DPM++ 20)
    config.sample.ddim_eta = 0.0  # DDIM stochasticity (0 = deterministic, 1 = DDPM-like)
    config.sample.spacing = "quadratic"  # timesteps of a short sampler: "quadratic", "uniform" or "logsnr"
    config.sample.clip_x0 = True  # clip the predicted clean image to [-1, 1] at every step
    config.sample.guidance = 1.0  # classifier-free guidance scale; 1 = the conditional model alone
    config.sample.batch_size = 256  # images per device call when sampling many

    config.classifier = ml_collections.ConfigDict()
    config.classifier.architecture = "cnn"  # "cnn" (plain conv stages) or "resnet" (residual, GroupNorm; the arms study's second reader)
    config.classifier.channels = (32, 64, 128)  # conv widths per stage (each stage halves the resolution)
    config.classifier.dense = 128  # width of the shared dense layer before the two heads
    config.classifier.dropout = 0.2  # before the heads
    config.classifier.batch_size = 128  # images per step
    config.classifier.num_steps = 3000  # training steps
    config.classifier.learning_rate = 1e-3  # Adam peak, cosine-decayed
    config.classifier.noise_augment = 0.05  # std of pixel noise added in training, for robustness to samples
    config.classifier.min_accuracy = 0.98  # below this validation accuracy on either head, no shares are reported

    config.evaluate = ml_collections.ConfigDict()
    config.evaluate.num_samples = 400  # images per SEED word (philosopher, person, nurse): a 95% Wilson interval within +-0.05
    config.evaluate.num_samples_man_woman = 400  # images per gendered training word (man, woman): the conditioning check
    config.evaluate.num_samples_unseen = 100  # images per unseen profession and per control
    config.evaluate.num_unseen_words = 24  # unseen professions of bolukbasi.json, spread over the gender score
    config.evaluate.sampler = "ddpm"  # sampler for the evaluation images: ancestral, as the training objective describes
    config.evaluate.steps = 200  # its steps (quadratic spacing): 5x cheaper than 1000, same shares within a point (docs/sweep.md)
    config.evaluate.guidance = 1.0  # 1 reads the learned conditional distribution itself
    config.evaluate.bootstrap_resamples = 2000  # resamples for the correlation intervals
    config.evaluate.seed = 1  # seeds the evaluation samples and the random control vector

    config.sweep = ml_collections.ConfigDict()  # python -m jaxdiff.sweep: a grid of independent runs, pooled
    config.sweep.workdir = "runs/base-sweep"  # members (SEEDt-embedE/), the shared classifier and the summary
    config.sweep.train_seeds = (0, 1, 2)  # config.seed of the members: initialisation, noise, dropout, data order
    config.sweep.embed_seeds = (0, 1, 2)  # embed.seed of the members: the random JL projection
    config.sweep.equivalence_margin = 0.05  # +- share points of the nurse - philosopher equivalence test (TOST)
    config.sweep.num_unseen_words = 100  # unseen professions of the pooled dose-response
    config.sweep.samples_per_unseen_word = 10  # images per unseen profession and member (they pool over members)
    config.sweep.member_samples = 300  # replaces evaluate.num_samples in each member: images per SEED word (pooled over members)
    config.sweep.member_samples_man_woman = 100  # replaces evaluate.num_samples_man_woman in each member (900 pooled over 9)
    config.sweep.member_samples_controls = 50  # replaces evaluate.num_samples_unseen in each member: images per control (450 pooled) and unseen profession
    config.sweep.member_unseen_words = 0  # replaces evaluate.num_unseen_words in each member: the probes measure the dose-response
    config.sweep.checkpoints_over_training = 5  # evenly spaced checkpoints kept and evaluated along training
    config.sweep.samples_over_training = 25  # images per word (nurse, philosopher, person) and checkpoint (225 pooled over 9 members)
    config.sweep.intervention_alphas = 7  # values of a in v + a * g, evenly over +-(largest |she-he| of the training words)
    config.sweep.samples_per_alpha = 25  # images per word and a (225 pooled over 9 members)

    config.study = ml_collections.ConfigDict()  # python -m jaxdiff.arms: the pre-registered arms study (docs/preregistration.md)
    config.study.workdir = "runs/base-arms"  # members (pairI-ARM/), both classifiers, the calibration readings, the analysis
    config.study.pairs = 10  # seed pairs; pair i trains one member per arm, all with training seed = projection seed
    config.study.first_seed = 1000  # pair i's seed is first_seed + i: seeds no earlier sweep used
    config.study.arms = ("real", "flipped")  # the primary arms (embed.arm); leakage = (C_real - C_flipped) / 2 per pair
    config.study.secondary_arms = ()  # further arms drawn after every primary member, read as secondary, e.g. ("neutral",)
    config.study.arm_direction = "she_he"  # the gender direction the arms flip: "she_he" or "pc1" (definitional pairs)
    config.study.control_pairs = 3  # the first pairs also train the positive control: the real embedding on imbalanced images
    config.study.control_woman_share = ml_collections.ConfigDict({"nurse": 0.6, "philosopher": 0.4})  # its images' shares
    config.study.images = 1200  # images of nurse and of philosopher per member: the contrast's binomial SE 2 points
    config.study.images_person = 400  # images of person per member (the fit check; its lean barely moves across arms)
    config.study.images_man_woman = 100  # images of man and of woman per member (the conditioning check)
    config.study.images_over_training = 300  # secondary (--over_training): nurse and philosopher images per kept checkpoint
    config.study.margin = 0.03  # +- share points of the primary equivalence test (docs/preregistration.md: why 3)
    config.study.stretch_margin = 0.02  # the stretch goal's margin, tested beside it
    config.study.calibration_per_class = 1000  # held-out portraits per class that calibrate both classifiers
    config.study.calibration_seed = 20261206  # their seed: neither the diffusion model nor a classifier saw them
    config.study.second_classifier = ml_collections.ConfigDict({"architecture": "resnet"})  # what the cross-check changes
    config.study.second_classifier_seed = 7  # its training seed (the primary's is config.seed)
    return config

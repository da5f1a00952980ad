"""The attribute classifier that reads generated images: gender (man, woman) and profession
(person, nurse, philosopher), a small Flax CNN with two heads trained on the dataset's labels.

Its validation accuracy is part of every report: shares of women are only as good as the
classifier that counts them, so evaluation refuses to report when either head is below
`classifier.min_accuracy`.
"""

import functools
import hashlib
import os
from typing import Any, Callable

import flax
from flax.serialization import msgpack_restore
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxdiff.common import files
from jaxdiff.data.classes import GENDER_WORDS, PROFESSION_WORDS
from jaxdiff.common.errors import UserError

PARAMS_FILE = "classifier.msgpack"
METRICS_FILE = "classifier.json"


def digest(directory: str) -> str | None:
    """A short hash of the classifier's parameters file in `directory` (None if it has none): which instrument
    a count was made with."""
    path = os.path.join(directory, PARAMS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


class AttributeClassifier(nn.Module):
    """Conv stages (two 3x3 convs, then 2x2 average pooling), global pooling, two linear heads."""

    channels: tuple[int, ...]
    dense: int
    dropout: float

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        h = x_BHWC
        for width in self.channels:
            h = nn.relu(nn.Conv(width, (3, 3))(h))
            h = nn.relu(nn.Conv(width, (3, 3))(h))
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = jnp.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=-1)
        h = nn.relu(nn.Dense(self.dense)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(len(GENDER_WORDS))(h), nn.Dense(len(PROFESSION_WORDS))(h)


class ResidualClassifier(nn.Module):
    """A second, independent design: per stage a strided conv, then a pre-norm residual block (GroupNorm, two
    3x3 convs); global average pooling, two linear heads. The arms study's cross-check of the first."""

    channels: tuple[int, ...]
    dense: int
    dropout: float

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        h = nn.Conv(self.channels[0], (3, 3))(x_BHWC)
        for width in self.channels:
            h = nn.Conv(width, (3, 3), strides=(2, 2))(h)
            r = nn.Conv(width, (3, 3))(nn.swish(nn.GroupNorm(num_groups=min(8, width))(h)))
            h = h + nn.Conv(width, (3, 3))(nn.swish(nn.GroupNorm(num_groups=min(8, width))(r)))
        h = nn.swish(nn.GroupNorm(num_groups=min(8, self.channels[-1]))(h)).mean(axis=(1, 2))
        h = nn.swish(nn.Dense(self.dense)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(len(GENDER_WORDS))(h), nn.Dense(len(PROFESSION_WORDS))(h)


ARCHITECTURES = {"cnn": AttributeClassifier, "resnet": ResidualClassifier}


def create(config: ml_collections.ConfigDict) -> nn.Module:
    """The classifier a config describes."""
    c = config.classifier
    architecture = c.get("architecture", "cnn")  # configs saved before there was a choice: the plain CNN
    if architecture not in ARCHITECTURES:
        raise UserError(f"classifier.architecture={architecture!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](tuple(c.channels), c.dense, c.dropout)


def _augment(images: jax.Array, key: jax.Array, noise_std: float) -> jax.Array:
    """Random horizontal flips, shifts of up to 2 pixels and pixel noise: samples are never clean."""
    flip_key, shift_key, noise_key, level_key = jax.random.split(key, 4)
    B = images.shape[0]
    flip = jax.random.bernoulli(flip_key, 0.5, (B, 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1], images)
    shifts = jax.random.randint(shift_key, (B, 2), -2, 3)
    images = jax.vmap(lambda im, s: jnp.roll(im, s, axis=(0, 1)))(images, shifts)
    levels = jax.random.uniform(level_key, (B, 1, 1, 1), maxval=2 * noise_std)
    return images + levels * jax.random.normal(noise_key, images.shape)


def _loss(params, batch, key, model, noise_std):
    aug_key, dropout_key = jax.random.split(key)
    images = _augment(batch["image"], aug_key, noise_std)
    gender_logits, profession_logits = model.apply({"params": params}, images, train=True, rngs={"dropout": dropout_key})
    return (optax.softmax_cross_entropy_with_integer_labels(gender_logits, batch["gender"]).mean()
            + optax.softmax_cross_entropy_with_integer_labels(profession_logits, batch["profession"]).mean())


def _training(config: ml_collections.ConfigDict) -> tuple[nn.Module, optax.GradientTransformation, Callable]:
    """The classifier, its optimiser and its jitted step(params, opt_state, batch, key)."""
    c = config.classifier
    model = create(config)
    schedule = optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, max(1, c.num_steps // 20), c.num_steps)
    tx = optax.adamw(schedule, weight_decay=1e-4)

    @jax.jit
    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(_loss)(params, batch, key, model, c.noise_augment)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return model, tx, step


def _param_shapes(model: nn.Module, size: int) -> Any:
    """The classifier's parameters as shapes and dtypes (nothing computed)."""
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"])


def training_run(config: ml_collections.ConfigDict) -> Callable[[int], jax.Array]:
    """A function that makes n steps of the classifier's training on random images and returns the last loss: the
    program `train` runs, for the main job to time it (jaxdiff.studies.stage_times)."""
    model, tx, step = _training(config)
    size, B = config.data.image_size, config.classifier.batch_size
    params = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.uniform(-1.0, 1.0, (B, size, size, 3)), jnp.float32),
             "gender": jnp.asarray(rng.integers(0, len(GENDER_WORDS), B), jnp.int32),
             "profession": jnp.asarray(rng.integers(0, len(PROFESSION_WORDS), B), jnp.int32)}

    def run(steps: int) -> jax.Array:
        p, o, loss = params, opt_state, None
        for i in range(steps):
            p, o, loss = step(p, o, batch, jax.random.key(i))
        return loss

    return run


def train(config: ml_collections.ConfigDict, log=print) -> tuple[Any, dict[str, float]]:
    """Trains on the dataset's train split; returns parameters and validation accuracy per head."""
    from tqdm import tqdm

    from jaxdiff.data import input_pipeline  # tf.data only where data is read: see jaxdiff.training.train

    c = config.classifier
    model, tx, step = _training(config)
    size = config.data.image_size
    ds = input_pipeline.labelled_images(config.data.dir, "train", size, hint=input_pipeline.how_to_make(config.data))
    ds = ds.cache().repeat().shuffle(8192, seed=config.seed).batch(c.batch_size, drop_remainder=True).prefetch(2)
    key = jax.random.key(config.seed + 1)
    params = model.init(key, jnp.zeros((1, size, size, 3)))["params"]
    opt_state = tx.init(params)
    batches = input_pipeline.numpy_batches(ds, config.data.dir)
    for i in tqdm(range(c.num_steps), desc="classifier", unit="step", dynamic_ncols=True):
        batch = next(batches)
        params, opt_state, loss = step(params, opt_state, {k: batch[k] for k in ("image", "gender", "profession")},
                                       jax.random.fold_in(key, i))
    accuracy = validation_accuracy(model, params, config)
    log(f"classifier validation accuracy: gender {accuracy['gender_accuracy']:.4f}, "
        f"profession {accuracy['profession_accuracy']:.4f} ({accuracy['validation_images']} images)")
    return params, accuracy


@functools.partial(jax.jit, static_argnums=0)
def _probabilities(model: AttributeClassifier, params: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    gender_logits, profession_logits = model.apply({"params": params}, images, train=False)
    return jax.nn.softmax(gender_logits), jax.nn.softmax(profession_logits)


def predict(model: AttributeClassifier, params: Any, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, 2) for gender and (N, 3) for profession of images in [-1, 1]."""
    out_g, out_p = [], []
    for start in range(0, len(images), batch_size):
        g, p = _probabilities(model, params, jnp.asarray(images[start:start + batch_size]))
        out_g.append(np.asarray(g))
        out_p.append(np.asarray(p))
    if not out_g:
        return np.zeros((0, len(GENDER_WORDS))), np.zeros((0, len(PROFESSION_WORDS)))
    return np.concatenate(out_g), np.concatenate(out_p)


def reads_woman(gender_probs: np.ndarray) -> np.ndarray:
    """Each image's reading, 1 where the gender head's argmax is woman (its class 1), else 0: what every count of
    women is made of."""
    return (np.asarray(gender_probs).argmax(-1) == 1).astype(int)


def p_woman_record(gender_probs: np.ndarray) -> list[float]:
    """Each image's p(woman) as a record keeps it (6 decimals), so a threshold or a calibration can be checked
    afterwards: its argmax is the reading the counts come from."""
    return [round(float(p), 6) for p in np.asarray(gender_probs)[:, 1]]


def validation_accuracy(model: AttributeClassifier, params: Any, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Accuracy of each head on the dataset's validation split."""
    from jaxdiff.data import input_pipeline  # tf.data only where data is read: see jaxdiff.training.train

    ds = input_pipeline.labelled_images(config.data.dir, "validation", config.data.image_size).batch(1024)
    correct_g = correct_p = total = 0
    for batch in input_pipeline.numpy_batches(ds, config.data.dir):
        g, p = predict(model, params, batch["image"])
        correct_g += int((g.argmax(-1) == batch["gender"]).sum())
        correct_p += int((p.argmax(-1) == batch["profession"]).sum())
        total += len(batch["image"])
    return {"gender_accuracy": correct_g / total, "profession_accuracy": correct_p / total, "validation_images": total}


def save(workdir: str, params: Any, accuracy: dict[str, float]) -> None:
    """Writes the classifier's parameters and accuracy into the workdir (atomically)."""
    with files.atomic_path(os.path.join(workdir, PARAMS_FILE)) as tmp, open(tmp, "wb") as f:
        f.write(flax.serialization.to_bytes(params))
    files.write_json(os.path.join(workdir, METRICS_FILE), accuracy)


def load(workdir: str, config: ml_collections.ConfigDict) -> tuple[AttributeClassifier, Any, dict[str, float]] | None:
    """The workdir's trained classifier (model, params, accuracy), or None if there is none."""
    params_path, metrics_path = os.path.join(workdir, PARAMS_FILE), os.path.join(workdir, METRICS_FILE)
    if not (os.path.exists(params_path) and os.path.exists(metrics_path)):
        return None
    model = create(config)
    template = _param_shapes(model, config.data.image_size)
    remedy = f"delete it and {METRICS_FILE} next to it, and rerun: evaluation trains the classifier again"
    with open(params_path, "rb") as f:
        raw = f.read()
    try:
        state = msgpack_restore(raw)
    except Exception as error:  # msgpack raises several types for a truncated or garbled file
        raise files.damaged(params_path, error, remedy) from error
    try:
        params = flax.serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{params_path} does not match the config's classifier; delete it to retrain") from error
    accuracy = files.read_json(metrics_path, remedy.replace(f"and {METRICS_FILE}", f"and {PARAMS_FILE}"))
    return model, params, accuracy

"""Training: the data-parallel step, checkpoint/resume, divergence, the command line (the model itself: test_models.py)."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import REPO, run_cli, tiny_config, trees_close
from jaxdiff.core import models, parallel
from jaxdiff.tools import device_check
from jaxdiff.training import checkpoints, factory, logs, train
from jaxdiff.core.state import create_train_state


def test_data_parallel_value_and_grad_is_the_global_batch_mean():
    """Each device sees its own rows and their global index; loss and gradients average to the
    full batch's, with parameters of mixed shapes going through the one flat all-reduce."""
    mesh = parallel.make_mesh(jax.devices()[:8])
    rows = {"x": jnp.arange(16.0).reshape(16, 1) / 16}
    params = {"w": jnp.array([[0.5, -1.0]]), "b": jnp.array(0.25)}

    def shard_loss(p, shard, first_index):  # row i weighted by its global index i
        index = first_index + jnp.arange(shard["x"].shape[0])
        return jnp.mean(index[:, None] * (shard["x"] @ p["w"] + p["b"]) ** 2)

    rows_sharded = jax.device_put(rows, parallel.batch_sharded(mesh))
    loss, grads = jax.jit(parallel.data_parallel_value_and_grad(shard_loss, mesh))(params, rows_sharded)
    expected_loss, expected_grads = jax.value_and_grad(shard_loss)(params, rows, 0)
    assert float(loss) == pytest.approx(float(expected_loss), rel=1e-6)
    trees_close(grads, expected_grads)
    assert grads["w"].shape == (1, 2) and grads["b"].shape == ()


def _one_step(config, devices, batch, state_init):
    # Donated, as training runs it, so that the compiled step is the one training and the device
    # check also compile (one persistent-cache entry per mesh); the copy keeps `state_init` alive.
    built = factory.build(config, parallel.make_mesh(devices), abstract=True)
    state = jax.device_put(jax.tree.map(jnp.copy, state_init), parallel.replicated(built.mesh))
    return built.step(state, jax.device_put(batch, parallel.batch_sharded(built.mesh)), jax.random.key(7))


def _fresh_state_and_batch(config):
    """Seed-0 initial state and a fixed synthetic batch of 16 examples."""
    state = create_train_state(config, models.create_model(config), jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (16, 16, 16, 3)).astype(np.float32),
             "cond": rng.normal(0, 0.1, (16, 128)).astype(np.float32)}
    return state, batch


def test_step_on_8_devices_equals_1_device(tiny_dataset):
    config = tiny_config(tiny_dataset)
    assert config.model.dropout == 0.0
    state, batch = _fresh_state_and_batch(config)
    one, m1 = _one_step(config, jax.devices()[:1], batch, state)
    eight, m8 = _one_step(config, jax.devices()[:8], batch, state)
    assert len(jax.devices()) == 8
    assert float(m1["loss"]) == pytest.approx(float(m8["loss"]), rel=1e-5)
    trees_close(one.params, eight.params)
    trees_close(one.ema_params, eight.ema_params)
    # And the step really changed the parameters.
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(state.params)))


def test_first_step_loss_is_pinned(tiny_dataset):
    """A reference value (nanodo-style): any change to init, noise, conditioning or loss shows here."""
    config = tiny_config(tiny_dataset)
    state, batch = _fresh_state_and_batch(config)
    _, metrics = _one_step(config, jax.devices()[:1], batch, state)
    assert float(metrics["loss"]) == pytest.approx(PINNED_FIRST_LOSS, rel=1e-4)


PINNED_FIRST_LOSS = 0.6484511  # configs/tiny.py, seed 0, v-prediction; measured with JAX 0.10.2 on CPU


def test_loss_goes_down(tiny_dataset, tmp_path):
    config = tiny_config(tiny_dataset, train__num_steps=80, train__log_every=10, train__eval_every=80,
                         train__sample_every=0, train__checkpoint_every=80, train__learning_rate=2e-3)
    train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
    losses = [m["train/loss"] for m in logs.read_metrics(str(tmp_path)) if "train/loss" in m]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.85 * np.mean(losses[:2]), losses


def test_resume_equals_uninterrupted_run(tiny_run, tiny_dataset, tmp_path, monkeypatch):
    """A run stopped at step 3 (as SIGTERM stops it: checkpoint, then out) and rerun to its num_steps
    equals the uninterrupted run (the session's tiny run): parameters, EMA, data order, schedule."""
    stops = []
    monkeypatch.setattr(train, "_install_sigterm", lambda stop: stops.append(stop))  # no real signal in-process
    original = train._device_batches

    def stop_after_three(*args, **kwargs):
        for i, batch in enumerate(original(*args, **kwargs)):
            if i == 2:  # while the third step's batch is fetched, as a signal would arrive
                stops[-1].requested = True
            yield batch

    split = str(tmp_path / "split")
    monkeypatch.setattr(train, "_device_batches", stop_after_three)
    with pytest.raises(train.Preempted, match="at step 3"):
        train.train_and_evaluate(tiny_config(tiny_dataset, train__sample_every=0), split, devices=jax.devices()[:1])
    assert checkpoints.checkpoint_steps(split) == [3]
    monkeypatch.setattr(train, "_device_batches", original)
    train.train_and_evaluate(tiny_config(tiny_dataset, train__sample_every=0), split, devices=jax.devices()[:1])
    for which in ("raw", "ema"):
        a, step_a = checkpoints.restore_params(tiny_run, which)
        b, step_b = checkpoints.restore_params(split, which)
        assert step_a == step_b == 6
        trees_close(a, b, rtol=1e-6, atol=1e-7)


def test_training_and_the_benchmark_take_the_one_step(tiny_dataset, tmp_path):
    """Training's loop and the benchmark's timed step both come from factory.build: from the same config
    they start from the same state and give the same loss on the same batch."""
    from jaxdiff.data import embed, vectors
    from jaxdiff.tools import benchmark

    config = tiny_config(tiny_dataset, train__num_steps=1, train__sample_every=0)
    timed = benchmark.JaxdiffTrainer(config, parallel.make_mesh(jax.devices()[:1]), batch_size=16)
    batch = jax.device_get(timed.batch)
    _, metrics = timed.step_fn(timed.state, timed.batch, timed.key)
    table = embed.build_table(vectors.load_source("word2vec-subset"), config.embed.dim, config.embed.seed)
    _, last = train.train_in(config, str(tmp_path), table, jax.devices()[:1], validation=batch,
                             batches=lambda mesh, start: iter([jax.device_put(batch, parallel.batch_sharded(mesh))]))
    assert last["train/loss"] == float(metrics["loss"])


# The event JAX's monitoring reports when a jitted function is lowered to MLIR: once per miss of jit's cache.
LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


def test_a_restored_state_reuses_the_compiled_step(tiny_dataset, tmp_path):
    """A checkpoint restores into arrays of the fresh state's dtypes, weak types and shardings, so the
    step is not compiled again after a resume. (On the H100 the first step after a restore took 30 s:
    `step` came back strongly typed where the fresh state's was weakly typed.)"""
    config = tiny_config(tiny_dataset)
    built = factory.build(config, parallel.make_mesh(jax.devices()[:1]))
    mesh, repl, state, step_fn = built.mesh, parallel.replicated(built.mesh), built.state, built.step
    batch = parallel.to_global(device_check.synthetic_batch(config, 4), parallel.batch_sharded(mesh))
    state, _ = step_fn(state, batch, jax.random.key(1))
    saved = checkpoints.Checkpoints(str(tmp_path), config.train)
    saved.save(state, examples_seen=4)
    saved.wait()
    restored, position = saved.restore(state, repl)
    saved.close()
    assert position["examples_seen"] == 4 and int(restored.step) == 1

    def signature(tree):
        return [(x.dtype, x.weak_type, x.shape, x.sharding) for x in jax.tree.leaves(tree)]

    assert signature(restored) == signature(state)
    # A new program is lowered to MLIR on every miss of jit's cache, even one the persistent compilation
    # cache then serves; JAX reports each lowering to its monitoring listeners.
    lowered = []
    listener = lambda event, seconds, **kwargs: lowered.append(event)  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        stepped, _ = step_fn(restored, batch, jax.random.key(1))  # donates `restored`
        reused = LOWERING_EVENT not in lowered
        # The H100's case, which the listener must see: a step counter of the other weak type is a new program.
        flipped = jax.device_put(jnp.array(1, jnp.int32) if stepped.step.weak_type else jnp.asarray(1), repl)
        step_fn(stepped.replace(step=flipped), batch, jax.random.key(1))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert reused  # one compiled program serves the fresh and the restored state
    assert LOWERING_EVENT in lowered


def test_nan_stops_the_run_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    original = train._device_batches

    def poisoned(*args, **kwargs):
        for i, batch in enumerate(original(*args, **kwargs)):
            if i == 4:  # the fifth step (after the checkpoint at step 3)
                batch = dict(batch, image=batch["image"] * jnp.nan)
            yield batch

    monkeypatch.setattr(train, "_device_batches", poisoned)
    config = tiny_config(tiny_dataset, train__checkpoint_every=3, train__log_every=100, train__sample_every=0,
                         train__eval_every=100)
    assert config.train.num_steps == 6  # the tiny default: the step the session has compiled already
    with pytest.raises(train.TrainingDiverged, match=r"at step 5.*last good checkpoint \(step 3\)"):
        train.train_and_evaluate(config, str(tmp_path), devices=jax.devices()[:1])
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3"]
    params, step = checkpoints.restore_params(str(tmp_path), "raw")
    assert step == 3 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_resume_refuses_a_different_architecture(tiny_dataset, tmp_path):
    from jaxdiff.common.errors import UserError

    train.train_and_evaluate(tiny_config(tiny_dataset, train__sample_every=0), str(tmp_path), devices=jax.devices()[:1])
    with pytest.raises(UserError, match="model.channels=16, not 32"):
        train.train_and_evaluate(tiny_config(tiny_dataset, model__channels=32), str(tmp_path), devices=jax.devices()[:1])


@pytest.mark.slow
def test_cli_trains_resumes_and_writes_logs(tiny_dataset, tmp_path):
    """As a new user runs it: the run ends; the same command again says it resumed and stops at once."""
    workdir = str(tmp_path / "run")
    args = ("--config=configs/tiny.py", f"--workdir={workdir}", f"--config.data.dir={tiny_dataset}")
    first = run_cli("jaxdiff.train", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "parameters" in first.stdout and "done: step 6" in first.stdout
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    assert os.path.exists(os.path.join(workdir, "samples", "step_0000006.png"))
    for name in ("config.json", "embeddings.npz", "metrics.jsonl"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert json.load(open(os.path.join(workdir, "config.json")))["train"]["num_steps"] == 6
    scalars = {k for m in logs.read_metrics(workdir) for k in m}
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "train/images_per_s", "val/mse", "val/mse_ema"} <= scalars
    again = run_cli("jaxdiff.train", *args)
    assert again.returncode == 0 and "resumed from step 6" in again.stdout and "nothing to do" in again.stdout


def _train_until_logged_past(args: list[str], workdir: str, step: int) -> tuple[int, str]:
    """Starts `jaxdiff.train args`, sends SIGTERM once it has logged a step after `step`; (exit status, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "jaxdiff.train", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.time() + 600  # compiling can take minutes beside another test process on a slow host
    while time.time() < deadline and proc.poll() is None and not [
            m for m in logs.read_metrics(workdir) if m["step"] > step]:
        time.sleep(0.5)  # wait until it is really training (a log line every 10 steps)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes(tiny_dataset, tmp_path):
    """Preempted twice: the rerun is the same command (so it compiles the same step, from the cache)."""
    workdir = str(tmp_path / "run")
    args = ["--config=configs/tiny.py", f"--workdir={workdir}", f"--config.data.dir={tiny_dataset}",
            "--config.train.num_steps=100000", "--config.train.checkpoint_every=100000", "--config.train.sample_every=0",
            "--config.train.eval_every=100000", "--config.train.log_every=10"]
    code, output = _train_until_logged_past(args, workdir, 0)
    assert code == train.EXIT_PREEMPTED, output[-2000:]
    assert "received SIGTERM: saved a checkpoint at step" in output
    saved = int(os.listdir(os.path.join(workdir, "checkpoints"))[0])
    assert saved >= 10
    code, output = _train_until_logged_past(args, workdir, saved)
    assert code == train.EXIT_PREEMPTED, output[-2000:]
    assert f"resumed from step {saved}" in output and "received SIGTERM: saved a checkpoint at step" in output
    assert max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) > saved



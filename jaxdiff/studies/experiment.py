"""The whole experiment in one command: data, embedding table, training, classifier, evaluation.

    python -m jaxdiff.experiment --config=configs/toy.py [--workdir runs/toy]

Runs every stage that is not done yet and skips the rest, so a rerun (after an interruption, or
to extend --config.train.num_steps) does only what is missing. With configs/base.py the same
stages run on the SD-2.1 dataset, which data_gen/ makes on GPUs beforehand.
"""


import os
import time
from typing import Callable, Sequence

import ml_collections
from absl import flags as absl_flags

from jaxdiff.common import configuration, files
from jaxdiff.common.errors import UserError
from jaxdiff.core import parallel
from jaxdiff.data import input_pipeline
from jaxdiff.measurement import evaluate, evaluation_words, records
from jaxdiff.training import checkpoints, train
from jaxdiff.measurement import report as report_files
from jaxdiff.studies import stage_times

STAGES = ("dataset", "training", "classifier + evaluation")
TIMINGS_FILE = "experiment_timings.json"
ensure_dataset = input_pipeline.ensure_dataset  # where it lived first; train and the others use it too


def current_report(workdir: str) -> dict | None:
    """report.json's content if it exists and was made from the run's latest checkpoint, else None."""
    path = os.path.join(workdir, evaluate.REPORT_JSON)
    if not os.path.exists(path):
        return None
    report = records.load(records.REPORT, path)
    steps = checkpoints.checkpoint_steps(workdir)
    return report if records.report_current(report, steps[-1] if steps else None) else None


def run_experiment(config: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Runs the stages that are not done; returns report.json's content."""
    # The run directory's own files and the evaluation's settings first (a damaged file or a wrong setting is
    # found in a moment, not after training).
    current_report(workdir)
    _timings_history(workdir)
    evaluation_words.check_settings(config)
    timings = {}
    start = time.perf_counter()
    log(f"[1/3] {STAGES[0]}: {ensure_dataset(config, log)}")
    timings["dataset_s"] = time.perf_counter() - start

    start = time.perf_counter()
    steps = checkpoints.checkpoint_steps(workdir)
    if steps and steps[-1] >= config.train.num_steps:
        log(f"[2/3] {STAGES[1]}: done (step {steps[-1]} in {workdir})")
    else:
        log(f"[2/3] {STAGES[1]}: {config.train.num_steps} steps into {workdir}")
        train.train_and_evaluate(config, workdir, on_speed=stage_times_teller(config, workdir, log))
    timings["training_s"] = time.perf_counter() - start

    start = time.perf_counter()
    report = current_report(workdir)
    if report is not None:
        log(f"[3/3] {STAGES[2]}: done ({os.path.join(workdir, evaluate.REPORT_MD)} is from the latest checkpoint)")
    else:
        log(f"[3/3] {STAGES[2]}")
        report = evaluate.evaluate(workdir, log)
    timings["evaluation_s"] = time.perf_counter() - start
    if parallel.is_main_process():
        _record_timings(workdir, timings)
    return report


def stage_times_teller(config: ml_collections.ConfigDict, workdir: str, log=print) -> Callable[[train.MeasuredSpeed], None]:
    """What training calls with its measured speed: says every stage's time. An estimate that cannot be
    made (the run's embedding table unreadable, say: the evaluation then fails with the same message) is
    said in one line and training goes on: the estimate is a courtesy, never a reason to stop a run."""
    def tell(speed: train.MeasuredSpeed) -> None:
        try:
            work = stage_times.work_of(config, workdir)
            log(stage_times.describe(speed, work, stage_times.time_stages(config, work)))
        except Exception as error:  # noqa: BLE001
            detail = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            log(f"stage times not estimated: {detail}")

    return tell


def _record_timings(workdir: str, timings: dict) -> None:
    """Appends this invocation's stage times to WORKDIR/experiment_timings.json."""
    history = _timings_history(workdir)
    history.append({**{k: round(v, 1) for k, v in timings.items()}, "total_s": round(sum(timings.values()), 1),
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    files.write_json(os.path.join(workdir, TIMINGS_FILE), history)


def _timings_history(workdir: str) -> list:
    """The stage times of earlier invocations (WORKDIR/experiment_timings.json), [] if none."""
    path = os.path.join(workdir, TIMINGS_FILE)
    if not os.path.exists(path):
        return []
    return files.read_json(path, "delete it (it only records earlier invocations' stage times) and rerun")


def main(argv: Sequence[str]) -> None:
    flags = configuration.parse(argv, lambda fv: absl_flags.DEFINE_string(
        "workdir", None, "run directory (default: the config's workdir)", flag_values=fv), doc=__doc__)
    config = flags.config
    workdir = flags.workdir or config.workdir
    start = time.perf_counter()
    report = run_experiment(config, workdir)  # a RunStopped (diverged, preempted, weak classifier): cli.run says it
    minutes = (time.perf_counter() - start) / 60
    print(f"\nreport: {os.path.join(workdir, evaluate.REPORT_MD)} ({minutes:.1f} min this invocation)")
    print("\n".join(report_files.reading(report)))


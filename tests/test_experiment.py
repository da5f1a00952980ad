"""The main job (jaxdiff/studies/experiment.py): each stage runs only when it is not done."""

import json
import os
import shutil

from helpers import tiny_config


def test_experiment_reruns_only_what_is_missing(tiny_dataset, tiny_run, tmp_path):
    """The main job's skip logic: a trained run is not retrained; a current report is read, not remade."""
    from jaxdiff.studies import experiment

    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run, workdir)
    for stale in ("report.json", "report.md"):  # another test may have evaluated the shared run already
        if os.path.exists(os.path.join(workdir, stale)):
            os.remove(os.path.join(workdir, stale))
    config = tiny_config(tiny_dataset)
    first, second = [], []
    report = experiment.run_experiment(config, workdir, log=first.append)
    assert any(line.startswith("[2/3] training: done (step 6") for line in first), first
    assert "[3/3] classifier + evaluation" in first  # evaluated this time
    assert experiment.current_report(workdir)["config"]["step"] == 6
    again = experiment.run_experiment(config, workdir, log=second.append)
    assert any(line.startswith("[3/3] classifier + evaluation: done") for line in second), second
    assert again["words"]["nurse"] == json.loads(json.dumps(report["words"]["nurse"]))
    with open(os.path.join(workdir, experiment.TIMINGS_FILE)) as f:
        assert len(json.load(f)) == 2

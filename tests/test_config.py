"""Configs: unknown keys fail, derived configs set only deltas, every base field is commented."""

import re

import pytest

from helpers import REPO, run_cli
from jaxdiff.common import configuration
from jaxdiff.common.errors import UserError


def test_overrides_apply_and_unknown_keys_fail():
    flags = configuration.parse(["--config=configs/toy.py", "--config.train.num_steps=7"])
    assert flags.config.train.num_steps == 7
    with pytest.raises(UserError, match="num_stepz"):
        configuration.parse(["--config=configs/toy.py", "--config.train.num_stepz=7"])
    with pytest.raises(UserError, match="num_steps"):
        configuration.parse(["--config=configs/toy.py", "--config.train.num_steps=many"])
    with pytest.raises(UserError, match="config file 'configs/nope.py' not found"):
        configuration.parse(["--config=configs/nope.py"])
    with pytest.raises(UserError, match="missing --config"):
        configuration.parse([])


def test_configs_are_locked_against_new_keys():
    flags = configuration.parse(["--config=configs/base.py"])
    with pytest.raises(AttributeError):
        flags.config.train.num_stepz = 3


def test_every_base_field_has_a_comment():
    source = open(f"{REPO}/configs/base.py").read()
    assignments = [line for line in source.splitlines() if re.match(r"\s+config\.\w+(\.\w+)* = ", line)]
    uncommented = [line.strip() for line in assignments if "#" not in line and "ConfigDict()" not in line]
    assert assignments and not uncommented, uncommented


def test_toy_and_tiny_derive_from_base():
    from configs import base, tiny, toy

    b, t = base.get_config(), toy.get_config()
    assert set(b.keys()) == set(t.keys()) and t.data.image_size == 32 and b.data.image_size == 64
    assert tiny.get_config().data.image_size == 16
    for path in ("configs/toy.py", "configs/tiny.py"):
        assert "ml_collections.ConfigDict()" not in open(f"{REPO}/{path}").read()  # deltas only


@pytest.mark.slow
def test_cli_unknown_key_is_one_line_exit_2():
    result = run_cli("jaxdiff.train", "--config=configs/tiny.py", "--config.model.channelz=3")
    assert result.returncode == 2 and "channelz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_jaxdiff_never_imports_torch():
    """docs/design.md: only the benchmark's peer (jaxdiff/tools/benchmark_peer.py, the [bench] extra) touches torch."""
    import subprocess
    import sys

    code = ("import sys; import jaxdiff.training.train, jaxdiff.sample, jaxdiff.measurement.evaluate, "
            "jaxdiff.studies.experiment, jaxdiff.tools.benchmark; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def test_huge_page_restart_only_for_package_commands():
    """jaxdiff.common.startup restarts `python -m jaxdiff.x` (only that) with glibc's huge-page malloc."""
    import sys

    from jaxdiff.common.startup import huge_page_restart_environment

    command = [sys.executable, "-m", "jaxdiff.train", "--config=configs/toy.py"]
    environment = huge_page_restart_environment(command, {"GLIBC_TUNABLES": "glibc.foo=1", "A": "b"})
    if environment is None:  # not Linux with glibc >= 2.35 and transparent huge pages
        pytest.skip("this host has no glibc >= 2.35 with transparent huge pages")
    assert environment == {"GLIBC_TUNABLES": "glibc.foo=1:glibc.malloc.hugetlb=1", "A": "b"}
    assert huge_page_restart_environment(command, {})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    for original, environ in [
        ([sys.executable, "-c", "import jaxdiff"], {}),                       # an import, not a command
        ([sys.executable, "-m", "pytest"], {}),                               # someone else's command
        (command, {"JAXDIFF_HUGE_PAGES": "0"}),                               # turned off
        (command, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}),              # the user's choice stands
    ]:
        assert huge_page_restart_environment(original, environ) is None


@pytest.mark.slow
def test_package_command_restarts_once_with_huge_pages(tmp_path):
    """End to end: the command's interpreter starts twice, the second time with the tunable, same pid."""
    from jaxdiff.common.startup import huge_page_restart_environment

    if huge_page_restart_environment(["python", "-m", "jaxdiff.x"], {}) is None:
        pytest.skip("this host has no glibc >= 2.35 with transparent huge pages")
    log = tmp_path / "starts.txt"
    (tmp_path / "sitecustomize.py").write_text(  # runs at every interpreter start-up
        "import os\n"
        f"with open({str(log)!r}, 'a') as f: f.write(f\"{{os.getpid()}} {{os.environ.get('GLIBC_TUNABLES')}}\\n\")\n")
    result = run_cli("jaxdiff.sample", "--help", env_extra={"PYTHONPATH": str(tmp_path), "GLIBC_TUNABLES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    (pid_before, before), (pid_after, after) = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert pid_before == pid_after and before == "" and after == "glibc.malloc.hugetlb=1"

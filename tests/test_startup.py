"""Importing jaxdiff has no side effects; the command lines set the process up (jaxdiff.common.startup)."""

import ast
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import jaxdiff
from helpers import REPO, run_cli
from jaxdiff.common.startup import cpu_device_count

# Every module of every floor, and the floors' own packages (module name -> file).
MODULE_FILES = {m.name: os.path.join(REPO, *m.name.split("."), "__init__.py") if m.ispkg
                else os.path.join(REPO, *m.name.split(".")) + ".py"
                for m in pkgutil.walk_packages(jaxdiff.__path__, "jaxdiff.")}
MODULES = sorted(MODULE_FILES)

# Runs in a fresh interpreter: third-party packages first (their own imports may set variables,
# e.g. TensorFlow's TF2_BEHAVIOR), then a snapshot, then every jaxdiff module.
IMPORT_EVERYTHING = r"""
import ast, importlib, json, os, sys

paths = json.loads(sys.argv[1])  # module -> file: found without importing jaxdiff before the snapshot
modules = list(paths)
third_party = set()
for module in modules:
    tree = ast.parse(open(paths[module]).read())
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        third_party.update(n for n in names if n.split(".")[0] != "jaxdiff")
for name in sorted(third_party):
    try:
        importlib.import_module(name)
    except ImportError:
        pass

import jax
execs = []  # from here on, any exec is jaxdiff's: record it instead of letting it replace the process
for name in [n for n in dir(os) if n.startswith("exec")]:
    setattr(os, name, lambda *a, _name=name, **k: execs.append(_name))
environ, pid, devices_option = dict(os.environ), os.getpid(), jax.config.jax_num_cpu_devices
imported, skipped = [], {}
for module in modules:
    try:
        importlib.import_module(module)
        imported.append(module)
    except ImportError as error:  # an optional extra that is not installed (e.g. torch for the peer)
        skipped[module] = str(error)
changed = sorted(k for k in set(environ) | set(os.environ) if environ.get(k) != os.environ.get(k))
print(json.dumps(dict(changed=changed, same_pid=os.getpid() == pid, execs=execs, imported=imported,
                      skipped=skipped, devices_option=[devices_option, jax.config.jax_num_cpu_devices])))
"""


@pytest.mark.slow
def test_importing_every_module_changes_no_environment_and_never_execs():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = REPO  # this checkout's jaxdiff, whatever the current directory
    paths = {"jaxdiff": os.path.join(REPO, "jaxdiff", "__init__.py"), **MODULE_FILES}
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING, json.dumps(paths)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["changed"] == [] and outcome["same_pid"] and outcome["execs"] == []
    assert outcome["devices_option"] == [-1, -1]  # nor JAX's own CPU device option
    assert {"jaxdiff", "jaxdiff.train", "jaxdiff.training.train", "jaxdiff.common.startup", "jaxdiff.data.schema",
            "jaxdiff.studies.arms"} <= set(outcome["imported"]), outcome["skipped"]


def test_cpu_devices_one_per_core_unless_the_user_chose():
    assert cpu_device_count({}, cores=2) == 2
    assert cpu_device_count({}, cores=6) == 4 and cpu_device_count({}, cores=64) == 8
    assert cpu_device_count({}, cores=1) is None
    assert cpu_device_count({"JAXDIFF_CPU_DEVICES": "1"}, cores=8) is None  # turned off
    assert cpu_device_count({"JAXDIFF_CPU_DEVICES": "3"}, cores=2) == 3
    assert cpu_device_count({"JAX_NUM_CPU_DEVICES": "5"}, cores=8) is None  # JAX's own setting stands
    assert cpu_device_count({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, cores=2) is None


@pytest.mark.slow
def test_prepare_process_splits_the_cpu_through_jax_option():
    code = ("import os; from jaxdiff.common.startup import prepare_process; prepare_process(); import jax; "
            "print(jax.device_count(), jax.config.jax_num_cpu_devices, 'XLA_FLAGS' in os.environ)")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAXDIFF_CPU_DEVICES="3", PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["3", "3", "False"]


def test_every_command_prepares_the_process_before_its_imports():
    """A module with a `__main__` block starts with the guard that calls prepare_process (see jaxdiff.common.startup)."""
    for module in MODULES:
        body = ast.parse(open(MODULE_FILES[module]).read()).body
        if not any(_is_main_guard(node) for node in body) or module == "jaxdiff.common.startup":
            continue
        statements = [node for node in body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        first = statements[0]
        assert _is_main_guard(first) and "prepare_process()" in ast.unparse(first), (
            f"{module}: its first statement must be the `if __name__ == '__main__'` guard calling prepare_process()")


def _is_main_guard(node: ast.AST) -> bool:
    """Whether the statement is `if __name__ == "__main__":`."""
    return isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"'


def test_every_module_imports():
    """The fast tier loads every module at least once, even those only the slow tier runs (e.g. the benchmark)."""
    import importlib.util

    for module in MODULES:
        if module == "jaxdiff.tools.benchmark_peer" and not all(map(importlib.util.find_spec, ("torch", "diffusers"))):
            continue  # the `bench` extra is not installed
        importlib.import_module(module)


def test_every_command_the_documents_name_is_a_command_module():
    """`python -m jaxdiff.X` in the README, docs/ and launch.sh: jaxdiff/X.py exists and sets the process up first."""
    import re

    named = set()
    for path in ["README.md", "launch.sh", *(os.path.join("docs", n) for n in os.listdir(os.path.join(REPO, "docs")))]:
        if path.endswith((".md", ".sh")):
            named |= set(re.findall(r"python3? -m (jaxdiff\.[a-z_]+)", open(os.path.join(REPO, path)).read()))
    assert {"jaxdiff.train", "jaxdiff.sample", "jaxdiff.experiment", "jaxdiff.arms"} <= named
    for module in sorted(named):
        assert module in MODULE_FILES, f"{module} is named in the documents but jaxdiff has no such command module"
        body = ast.parse(open(MODULE_FILES[module]).read()).body
        assert any(_is_main_guard(node) for node in body), f"{module} has no `if __name__ == '__main__'` block"


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

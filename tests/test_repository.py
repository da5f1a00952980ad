"""The repository stands on its own: nothing in it refers to a file outside it, every relative link resolves."""

import os
import re

from helpers import REPO

# Ignored by git (.gitignore): build outputs, data, runs and virtualenvs are not the repository.
SKIP_DIRS = {".git", ".venv", "build", "runs", "__pycache__", ".pytest_cache", ".whl"}
TOP_LEVEL_SKIP = {"data"}  # the generated datasets (/data/); jaxdiff/data is the data layer and is read
# Documents the project was started from, which live outside the repository; spelt in two parts so
# that this file does not name them itself.
OUTSIDE_DOCUMENTS = ("SEED" + ".md", "DESIGN" + ".md")
PARENT_PATH = re.compile(r"(?<![\w.])(?:\.\./)+[\w.\-/]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text_files() -> dict[str, str]:
    """Every text file of the checkout outside the ignored directories: relative path -> content."""
    texts = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                   and not (root == REPO and d in TOP_LEVEL_SKIP)]
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as f:
                    texts[os.path.relpath(path, REPO)] = f.read()
            except UnicodeDecodeError:  # images and other binary files
                pass
    return texts


def _inside_repo(path: str) -> bool:
    """Whether an absolute path is the repository root or below it."""
    return os.path.commonpath([os.path.realpath(path), os.path.realpath(REPO)]) == os.path.realpath(REPO)


def test_no_file_refers_to_a_path_outside_the_repository():
    texts = _text_files()
    assert "README.md" in texts and "jaxdiff/__init__.py" in texts  # the walk saw the checkout
    present = {os.path.basename(p) for p in texts}
    problems = []
    for relative, text in texts.items():
        directory = os.path.dirname(os.path.join(REPO, relative))
        for match in PARENT_PATH.finditer(text):
            if not _inside_repo(os.path.join(directory, match.group())):
                problems.append(f"{relative}: {match.group()!r} leaves the repository")
        for document in OUTSIDE_DOCUMENTS:
            if document in text and document not in present:
                problems.append(f"{relative}: cites {document}, which is not in the repository")
    assert not problems, "\n".join(problems)


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a page's headings (outside code blocks): lower case, punctuation dropped, spaces to '-'."""
    anchors, in_code = set(), False
    for line in markdown.splitlines():
        in_code ^= line.startswith("```")
        if not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_relative_markdown_link_resolves_inside_the_repository():
    texts, problems = _text_files(), []
    for relative, text in texts.items():
        if not relative.endswith(".md"):
            continue
        directory = os.path.dirname(os.path.join(REPO, relative))
        for target in MARKDOWN_LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # a URL
                continue
            file_part, _, anchor = target.partition("#")
            path = os.path.join(directory, file_part) if file_part else os.path.join(REPO, relative)
            if not (_inside_repo(path) and os.path.exists(path)):
                problems.append(f"{relative}: link to {target} does not resolve inside the repository")
            elif anchor and path.endswith(".md") and anchor not in _anchors(texts[os.path.relpath(path, REPO)]):
                problems.append(f"{relative}: link to {target}: no such heading")
    assert not problems, "\n".join(problems)


# The package's floors, lowest first: a module imports only from its own floor and the ones below.
# The command modules at the top (jaxdiff/<command>.py, `python -m jaxdiff.<command>`) stand on all of them.
LAYERS = ("common", "statistics", "core", "data", "training", "measurement", "studies", "tools")


def _jaxdiff_imports(path: str) -> set[str]:
    """The jaxdiff modules a file imports anywhere in it (top level or inside a function), as dotted names."""
    import ast

    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("jaxdiff")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxdiff"):
            names |= {node.module if node.module != "jaxdiff" else f"jaxdiff.{alias.name}" for alias in node.names}
    return names


def _floor(dotted: str) -> int:
    """A module's floor: its layer's index, len(LAYERS) for the top-level commands."""
    parts = dotted.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_every_module_lives_on_a_floor_and_imports_only_downward():
    package = os.path.join(REPO, "jaxdiff")
    top_level = [name for name in os.listdir(package) if name.endswith(".py") and name != "__init__.py"]
    assert sorted(d for d in os.listdir(package) if os.path.exists(os.path.join(package, d, "__init__.py"))) == sorted(LAYERS)
    problems, seen = [], 0
    for layer in (*LAYERS, None):
        folder = os.path.join(package, layer) if layer else package
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".py") or (layer is None and name == "__init__.py"):
                continue
            module = f"jaxdiff.{layer}.{name[:-3]}" if layer else f"jaxdiff.{name[:-3]}"
            seen += 1
            for target in _jaxdiff_imports(os.path.join(folder, name)):
                if target in ("jaxdiff", "jaxdiff.__init__"):
                    continue
                if _floor(target) == len(LAYERS) and not target.startswith("jaxdiff.sample"):
                    problems.append(f"{module} imports {target}, which is not in a layer")
                elif _floor(target) > _floor(module):
                    problems.append(f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)}) above it")
    assert seen > 40 and len(top_level) >= 12  # the walk saw every module, commands included
    assert not problems, "\n".join(problems)


def test_importing_a_floor_does_not_load_the_floors_above_it():
    """What the static test cannot see: a package's own __init__ or a module's import chain loading more at run time."""
    import subprocess
    import sys

    def imported(modules: str, watched: tuple[str, ...]) -> list[str]:
        code = f"import sys, {modules}; print(sorted(m for m in {watched!r} if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        return eval(out.stdout.strip())

    assert imported("jaxdiff.training.workdirs", ("jaxdiff.training.train",)) == []
    core = "jaxdiff.core.models, jaxdiff.core.diffusion, jaxdiff.core.sampling, jaxdiff.core.parallel"
    assert imported(core, ("jaxdiff.common.cli", "jaxdiff.data.input_pipeline", "jaxdiff.training.train")) == []
    # data_gen/ (PyTorch) shares the classes: the data floor's __init__ loads none of its JAX modules
    assert imported("jaxdiff.data.classes", ("jax", "jaxdiff.data.portraits", "jaxdiff.data.embed")) == []
    # The arms analysis reads records only: no TensorFlow, which accelerator images often lack (and which costs seconds).
    studies = "jaxdiff.studies.arms_analysis, jaxdiff.measurement.records"
    assert imported(studies, ("tensorflow", "jaxdiff.data.input_pipeline")) == []


def test_only_the_factory_builds_the_model_the_state_and_the_step():
    """Training, the benchmark, the device check and the sampling commands get the model, the train
    state and the step from jaxdiff/training/factory.py, so they all run one step."""
    builders = re.compile(r"\b(create_model|create_train_state|train_step)\(|partial\(train_step\b")
    allowed = {"jaxdiff/training/factory.py", "jaxdiff/core/models.py", "jaxdiff/core/state.py"}
    offenders = [path for path, text in _text_files().items()
                 if path.endswith(".py") and not path.startswith("tests/") and path not in allowed and builders.search(text)]
    assert offenders == []

"""The repository stands on its own: nothing in it refers to a file outside it, every relative link resolves."""

import os
import re

from helpers import REPO

# Ignored by git (.gitignore): build outputs, data, runs and virtualenvs are not the repository.
SKIP_DIRS = {".git", ".venv", "build", "data", "runs", "__pycache__", ".pytest_cache", ".whl"}
# Documents the project was started from, which live outside the repository; spelt in two parts so
# that this file does not name them itself.
OUTSIDE_DOCUMENTS = ("SEED" + ".md", "DESIGN" + ".md")
PARENT_PATH = re.compile(r"(?<![\w.])(?:\.\./)+[\w.\-/]*")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _text_files() -> dict[str, str]:
    """Every text file of the checkout outside the ignored directories: relative path -> content."""
    texts = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
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


def test_core_modules_do_not_import_the_command_line_or_training():
    """One direction only: run directories load without train.py; models, diffusion, sampling and
    parallel get their errors from jaxdiff.errors, not the command-line module."""
    import subprocess
    import sys

    def imported(modules: str, watched: tuple[str, ...]) -> list[str]:
        code = f"import sys, {modules}; print(sorted(m for m in {watched!r} if m in sys.modules))"
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        return eval(out.stdout.strip())

    assert imported("jaxdiff.workdirs", ("jaxdiff.train",)) == []
    assert imported("jaxdiff.models, jaxdiff.diffusion, jaxdiff.sampling, jaxdiff.parallel", ("jaxdiff.cli",)) == []

"""The repository is self-contained: nothing in code, notebooks or build files reads outside it.

A fresh clone (`.ci/run`) has no sibling folders, so a path into a sibling folder (the old reference folder) or
`Path(__file__).parents[2]` from a package module only works on a developer's machine. This test
greps every code, notebook and build file for such escapes; the copied reference data must be
inside the repository with its PROVENANCE.md.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Folders that are not part of the repository's content (ignored by git or tool caches).
SKIP_DIRS = {".git", ".venv", "venv", "data", "outputs", "build", "dist", "__pycache__", ".hypothesis",
             ".pytest_cache", ".ipynb_checkpoints", ".cache"}
CODE_SUFFIXES = {".py", ".ipynb", ".toml", ".yaml", ".yml", ".cfg", ".sh", ".ini"}
CODE_NAMES = {"Makefile", "run"}  # .ci/run

# Written so that this file does not match itself.
OUTSIDE_PATTERNS = [
    (re.compile(r"\.\.[/\\]+shared"), "a sibling folder outside the repository"),
    (re.compile(r"shared[\"'/\\ ,)]+[\"' /\\(]*refdata"), "the reference-data folder outside the repo"),
    (re.compile(r"[\"'](?:/work|/home|/Users|[A-Za-z]:\\\\)[/\\]"), "an absolute path of one machine"),
]
PARENTS = re.compile(r"parents\[(\d+)\](\s*\.\s*parent\b)?")


def repo_files() -> list[Path]:
    out = []
    for p in sorted(REPO.rglob("*")):
        rel = p.relative_to(REPO)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if p.is_file() and (p.suffix in CODE_SUFFIXES or p.name in CODE_NAMES):
            out.append(p)
    return out


def code_text(path: Path) -> str:
    """The text to check: a notebook's cell sources (outputs are not committed), else the file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        return "\n".join("".join(c.get("source", "")) for c in json.loads(text)["cells"])
    return text


def outside_references(path: Path, root: Path = REPO) -> list[str]:
    rel = path.relative_to(root)
    depth = len(rel.parts) - 1  # Path(__file__).parents[depth] is the repository root
    found = []
    for lineno, line in enumerate(code_text(path).splitlines(), start=1):
        for pattern, what in OUTSIDE_PATTERNS:
            if pattern.search(line):
                found.append(f"{rel}:{lineno}: {what}: {line.strip()}")
        for m in PARENTS.finditer(line):
            k = int(m.group(1))
            if k > depth or (k == depth and m.group(2)):
                found.append(f"{rel}:{lineno}: parents[{k}] leaves the repository: {line.strip()}")
    return found


def test_the_scan_sees_code_notebooks_and_build_files():
    names = {p.relative_to(REPO).as_posix() for p in repo_files()}
    assert {"Makefile", ".ci/run", "pyproject.toml", "hsutils/core/settings.py", "conftest.py"} <= names
    assert any(n.startswith("notebooks/") and n.endswith(".ipynb") for n in names)
    assert any(n.startswith("scripts/") for n in names)


@pytest.mark.parametrize("line, depth, bad", [
    ('REFDATA = ROOT.parent / "sha' 'red" / "refdata"', 1, True),
    ('p = "../' 'shared/refdata/x.csv"', 1, True),
    ("ROOT = Path(__file__).resolve().parents[1]", 1, False),
    ("ROOT = Path(__file__).resolve().parents[2]", 1, True),
    ('X = Path(__file__).resolve().parents[1].parent / "shared"', 1, True),
    ('X = Path("/work/' 'shared/refdata")', 1, True),
    ("hsutils/data/boundaries/japan.topojson", 1, False),
])
def test_detector_on_examples(tmp_path, line, depth, bad):
    folder = tmp_path / "/".join(["sub"] * depth)
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "x.py"
    f.write_text(line + "\n", encoding="utf-8")
    assert bool(outside_references(f, root=tmp_path)) is bad


def test_no_code_notebook_or_build_file_reads_outside_the_repository():
    this = Path(__file__).resolve()  # holds the bad examples above on purpose
    problems = [hit for p in repo_files() if p != this for hit in outside_references(p)]
    assert not problems, "\n".join(problems)


def test_copied_reference_data_has_provenance_and_is_package_data():
    for folder in (REPO / "hsutils" / "data", REPO / "tests" / "data" / "refdata"):
        note = (folder / "PROVENANCE.md").read_text(encoding="utf-8")
        for f in folder.rglob("*"):
            if f.is_file() and f.name != "PROVENANCE.md":
                assert f.name in note, f"{f.relative_to(REPO)} is not described in {folder / 'PROVENANCE.md'}"
    assert "国土数値情報（行政区域データ）（国土交通省）を加工して作成" in (REPO / "hsutils" / "data" / "PROVENANCE.md").read_text(
        encoding="utf-8")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hsutils"]
    assert "data/*" in patterns and "data/**/*" in patterns  # boundaries/ is installed with the package

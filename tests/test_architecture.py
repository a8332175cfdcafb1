"""The layout is the architecture: each subpackage of hsutils/ is one layer, and a module's layer is the
subpackage it sits in (its path). A module imports only from its own layer or the layers below it,
never up (docs/architecture.md): core → inputs → rules → stats → analysis → publish → patterns →
demo → running. The repository's own code imports modules by their new paths; the old flat names are
aliases for users' code only (hsutils/__init__.py, tests/test_public_api.py)."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import hsutils

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "hsutils"

#: lowest first; a module may import from its own layer or any earlier one (the same tuple as hsutils.LAYERS)
LAYERS = ["core", "inputs", "rules", "stats", "analysis", "publish", "patterns", "demo", "running"]
#: Upward imports that exist and are to be removed. Empty: a new upward import fails the test.
KNOWN_UPWARD: set[tuple[str, str]] = set()
#: Files that use the old flat names on purpose.
OLD_NAMES_ALLOWED = {REPO / "tests" / "test_public_api.py"}


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (data/ holds no code)."""
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        if "data" in rel.parts or "__pycache__" in rel.parts:
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _resolve(base: str, names: list[str]) -> set[str]:
    """`from base import a, b`: the modules meant (base.a if that is a module, else base)."""
    return {f"{base}.{n}" if f"{base}.{n}" in MODULES else base for n in names}


def imported(tree: ast.AST, module: str = "", is_package: bool = False) -> set[str]:
    """hsutils modules imported anywhere in the code (also inside functions), relative imports resolved."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name == "hsutils" or a.name.startswith("hsutils.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "hsutils" or base.startswith("hsutils."):
                out |= _resolve(base, [a.name for a in node.names])
    return out


def _code_files() -> list[tuple[Path, str]]:
    """Every Python source of the repository, notebooks' code cells included (magics left out)."""
    out = []
    for folder in ("hsutils", "tests", "scripts", "benchmarks"):
        out += [(p, p.read_text(encoding="utf-8")) for p in sorted((REPO / folder).rglob("*.py"))]
    out.append((REPO / "conftest.py", (REPO / "conftest.py").read_text(encoding="utf-8")))
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        out.append((nb, "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))))
    return out


def test_every_module_sits_in_a_subpackage():
    loose = [m for m in MODULES if m != "hsutils" and layer_of(m) is None]
    assert loose == [], "every module belongs in a subpackage (a layer of LAYERS): " + ", ".join(loose)
    folders = sorted(p.name for p in PKG.iterdir() if p.is_dir() and p.name not in ("data", "__pycache__"))
    assert folders == sorted(LAYERS)
    assert all((PKG / layer / "__init__.py").is_file() for layer in LAYERS)
    assert tuple(LAYERS) == hsutils.LAYERS


def test_no_module_reaches_up_a_layer():
    up = []
    for m, path in MODULES.items():
        own = layer_of(m)
        if own is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for other in sorted(imported(tree, m, path.name == "__init__.py")):
            theirs = layer_of(other)
            if theirs and LAYERS.index(theirs) > LAYERS.index(own) and (m, other) not in KNOWN_UPWARD:
                up.append(f"{m} ({own}) imports {other} ({theirs})")
    assert up == []


def test_the_repository_imports_modules_by_their_new_paths():
    old = []
    for path, code in _code_files():
        if path in OLD_NAMES_ALLOWED:
            continue
        for name in sorted(imported(ast.parse(code))):
            if name != "hsutils" and name not in MODULES:
                old.append(f"{path.relative_to(REPO)}: {name} (now {hsutils.moved_to(name.split('.')[1])})")
    assert old == []


def test_the_detector_resolves_relative_and_grouped_imports():
    tree = ast.parse("from . import plots\nfrom ..core import errors\nfrom hsutils.analysis import areas, pipeline\n"
                     "import hsutils.stats\nfrom hsutils.core.schema import TABLES\n")
    assert imported(tree, "hsutils.publish.report") == {
        "hsutils.publish.plots", "hsutils.core.errors", "hsutils.analysis.areas", "hsutils.analysis.pipeline",
        "hsutils.stats", "hsutils.core.schema"}
    assert layer_of("hsutils.stats") == "stats" and layer_of("hsutils.core.schema") == "core"


def test_the_architecture_page_shows_every_module():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [m for m in MODULES if m != "hsutils" and f"`{m}`" not in page]
    assert missing == [], "add each module to the tree and the tables of docs/architecture.md"

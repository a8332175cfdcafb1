"""Rewrite citations of the old external reference files into citations of the repository's docs.

The code used to cite reference files that lived outside the repository. Their content now lives
in `docs/` with the same section numbers, so the rewrite is mechanical:

    DOMAIN, DOMAIN.md               -> docs/rules.md
    STATS_METHODS, STATS_METHODS.md -> docs/methods.md   (also the short form STATS)
    DESIGN, DESIGN.md               -> docs/design.md

A citation is the old name followed by a section sign (with or without ".md" and a space); a bare
file name such as ``STATS_METHODS.md`` (optionally with the relative path of the old sibling folder in front) is
rewritten too. Nothing else is touched: words such as "DOMAIN section" or a column named "DOMAIN"
stay. The rewrite is idempotent (a second run changes nothing).

Usage (from the repository root):

    python scripts/rewrite_citations.py          # rewrite in place, list the files changed
    python scripts/rewrite_citations.py --check  # change nothing; exit 1 if a file would change

Files: *.py, *.ipynb, *.md and *.yaml under hsutils/, tests/, notebooks/, scripts/, benchmarks/,
data_templates/ (DATA_DICTIONARY.md is generated from hsutils.core.schema, so it must change with it) and
parameters/, docs/, plus README.md (not this script and not tests/test_docs.py, which name the old
forms on purpose). Notebooks are rewritten as text, so their JSON layout is kept.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Old reference name -> the repository doc that now holds its sections.
TARGETS = {
    "DOMAIN": "docs/rules.md",
    "STATS_METHODS": "docs/methods.md",
    "STATS": "docs/methods.md",
    "DESIGN": "docs/design.md",
}

SCANNED_DIRS = ("hsutils", "tests", "notebooks", "scripts", "benchmarks", "docs", "data_templates", "parameters")
SCANNED_FILES = ("README.md",)
SUFFIXES = (".py", ".ipynb", ".md", ".yaml", ".yml", ".txt")
#: This script and the test of the docs name the old forms on purpose.
EXCLUDED = ("scripts/rewrite_citations.py", "tests/test_docs.py")

# Longest names first so that STATS_METHODS is not read as STATS.
_NAMES = "|".join(sorted(TARGETS, key=len, reverse=True))
#: A citation: old name, optional ".md", optional space, then the section sign.
SECTION_CITATION = re.compile(rf"\b({_NAMES})(?:\.md)? ?§ ?")
#: A bare file name, optionally with the old relative path in front.
BARE_FILE = re.compile(r"(?:\.\./shared/)?\b(DOMAIN|STATS_METHODS|DESIGN)\.md\b")
#: After the rewrite "docs/x.md §4 (`docs/x.md`)" says the same thing twice: keep the citation.
_REDUNDANT_PATH = re.compile(r"(docs/[a-z_/]+\.md)( ?§ ?[0-9][0-9A-Za-z.\-]*) \(`\1`\)")


def rewrite_text(text: str) -> str:
    """The text with every old citation replaced (idempotent)."""
    text = SECTION_CITATION.sub(lambda m: f"{TARGETS[m.group(1)]} §", text)
    text = BARE_FILE.sub(lambda m: TARGETS[m.group(1)], text)
    return _REDUNDANT_PATH.sub(r"\1\2", text)


def files_to_scan(root: Path = REPO_ROOT) -> list[Path]:
    """Every file the rewrite looks at, sorted, skipping caches and checkpoints."""
    found: list[Path] = []
    for d in SCANNED_DIRS:
        for p in (root / d).rglob("*"):
            parts = set(p.relative_to(root).parts)
            if (p.is_file() and p.suffix in SUFFIXES
                    and not parts & {"__pycache__", ".ipynb_checkpoints"}
                    and p.relative_to(root).as_posix() not in EXCLUDED):
                found.append(p)
    found += [root / f for f in SCANNED_FILES if (root / f).is_file()]
    return sorted(found)


def rewrite_files(root: Path = REPO_ROOT, check: bool = False) -> list[Path]:
    """Rewrite the files in place (or only report them with `check`); returns the changed files."""
    changed = []
    for path in files_to_scan(root):
        # newline="" keeps CRLF/LF exactly as they are.
        with open(path, encoding="utf-8", newline="") as fh:
            old = fh.read()
        new = rewrite_text(old)
        if new != old:
            changed.append(path)
            if not check:
                with open(path, "w", encoding="utf-8", newline="") as fh:
                    fh.write(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="旧参照ファイルへの引用を docs/ への引用に書き換えます。")
    parser.add_argument("--check", action="store_true", help="書き換えずに、書き換えが必要なファイルがあれば終了コード 1")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="リポジトリのフォルダ（既定: このスクリプトの親）")
    args = parser.parse_args(argv)
    changed = rewrite_files(args.root, check=args.check)
    for p in changed:
        print(p.relative_to(args.root))
    verb = "書き換えが必要" if args.check else "書き換え"
    print(f"{verb}: {len(changed)} ファイル", file=sys.stderr)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Every section the code cites is documented inside the repository.

(a) Each citation `docs/rules.md §x`, `docs/methods.md §x`, `docs/design.md §x` (and the format specs
    under docs/formats/) in hsutils/, tests/, notebooks/, scripts/, benchmarks/, data_templates/,
    parameters/, README.md and docs/
    names a section that exists as a heading `§x` in that file. Lists and ranges count too:
    "docs/design.md §6, §10" checks §6 and §10, "docs/rules.md §7.1–7.5" checks §7.1 and §7.5.
(b) No citation still points at the old reference files outside the repository (the old names
    followed by a section sign); `scripts/rewrite_citations.py` turns them into (a).

The heading convention of all docs: a Markdown heading whose text starts with the section number,
e.g. `## §5 ...`, `### §5.4 ...`, `#### §6.1-3 ...`, `### §1a ...`.
"""
from __future__ import annotations

import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CITED_DOCS = ("docs/rules.md", "docs/methods.md", "docs/design.md",
              "docs/formats/tokutei_xml.md", "docs/formats/uke.md", "docs/support_record.md")
SCANNED_DIRS = ("hsutils", "tests", "notebooks", "scripts", "benchmarks", "docs", "data_templates", "parameters")
SCANNED_FILES = ("README.md",)
SUFFIXES = (".py", ".ipynb", ".md", ".yaml", ".yml", ".txt")

#: A section number: 5, 5.4, 1a, 6.1-10 (a trailing sentence full stop is not part of it).
SECTION_ID = r"\d+(?:\.\d+)*[a-z]?(?:-\d+)?"
_DOC_NAMES = "|".join(re.escape(d) for d in CITED_DOCS)
_SECTION = rf"§ ?{SECTION_ID}"
_RANGE = rf"\s*[–〜~]\s*§? ?{SECTION_ID}"
_MORE = rf"\s*(?:,|、|/| and | or )\s*{_SECTION}"
#: One citation: a doc, its first section, then further sections of the same doc (ranges, lists).
CITATION = re.compile(rf"(?P<doc>{_DOC_NAMES}) ?(?P<secs>{_SECTION}(?:{_RANGE}|{_MORE})*)")
HEADING = re.compile(rf"^#{{1,6}}\s+§ ?({SECTION_ID})(?![0-9A-Za-z.])", re.MULTILINE)


def _load_rewrite_module():
    spec = importlib.util.spec_from_file_location("rewrite_citations", ROOT / "scripts" / "rewrite_citations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REWRITE = _load_rewrite_module()


def _text_of(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":  # cell sources, whatever the JSON escaping
        nb = json.loads(text)
        return "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
    return text


def scanned_files() -> list[Path]:
    files = []
    for d in SCANNED_DIRS:
        for p in (ROOT / d).rglob("*"):
            parts = set(p.relative_to(ROOT).parts)
            if p.is_file() and p.suffix in SUFFIXES and not parts & {"__pycache__", ".ipynb_checkpoints"}:
                files.append(p)
    return sorted(files + [ROOT / f for f in SCANNED_FILES if (ROOT / f).is_file()])


@lru_cache(maxsize=None)
def headings(doc: str) -> frozenset[str]:
    """Section numbers that are headings of a doc."""
    return frozenset(HEADING.findall((ROOT / doc).read_text(encoding="utf-8")))


def citations(text: str, pattern: re.Pattern = CITATION, doc_of=lambda m: m.group("doc")):
    """(doc, section) for every section cited in text."""
    out = []
    for m in pattern.finditer(text):
        for sec in re.findall(rf"§? ?({SECTION_ID})", m.group("secs")):
            out.append((doc_of(m), sec))
    return out


#: The old forms (name + optional .md + section sign), mapped to the doc that now holds them.
OLD_CITATION = re.compile(rf"\b(?P<old>{'|'.join(sorted(REWRITE.TARGETS, key=len, reverse=True))})"
                          rf"(?:\.md)? ?(?P<secs>{_SECTION}(?:{_RANGE}|{_MORE})*)")
#: Files that name the old forms on purpose (this test and the rewrite script).
OLD_FORM_ALLOWED = {ROOT / "tests" / "test_docs.py", ROOT / "scripts" / "rewrite_citations.py"}


def _missing(found) -> list[str]:
    return [f"{where}: {doc} §{sec}" for where, doc, sec in found if sec not in headings(doc)]


# --- the docs themselves -------------------------------------------------------------------------

@pytest.mark.parametrize("doc", CITED_DOCS)
def test_doc_exists_with_headings(doc):
    assert (ROOT / doc).is_file(), doc
    assert len(headings(doc)) >= 5, f"{doc}: section headings (## §x ...) not found"


def test_headings_keep_the_numbering_of_the_original_references():
    """The numbering that existing citations rely on (DOMAIN, STATS_METHODS and DESIGN sections)."""
    rules = {str(i) for i in range(1, 13)} | {"1.1", "1.2", "1.3", "1.4", "1.5", "2.1", "2.2", "2.3", "2.4",
                                               "3.1", "3.2", "4.1", "4.2", "4.3", "4.4", "5.1", "5.2", "5.3",
                                               "5.4", "5.5", "6.1", "6.2"} | {f"6.1-{i}" for i in range(1, 11)} \
        | {f"7.{i}" for i in range(1, 8)}
    methods = {str(i) for i in range(0, 10)} | {"1a", "1b", "1c", "5a", "7a", "7b", "7c", "7d"}
    design = {str(i) for i in range(1, 12)}
    assert rules <= headings("docs/rules.md"), sorted(rules - headings("docs/rules.md"))
    assert methods <= headings("docs/methods.md"), sorted(methods - headings("docs/methods.md"))
    assert design <= headings("docs/design.md"), sorted(design - headings("docs/design.md"))
    assert {"0", "1", "1.1", "1.4", "1.11", "2"} <= headings("docs/formats/tokutei_xml.md")
    assert {"0", "1", "2", "3", "4", "5"} <= headings("docs/formats/uke.md")


def test_citation_parser_on_examples():
    text = ("(docs/design.md §6, §10; docs/rules.md §9). docs/rules.md §6.1-10: x. docs/rules.md §4.1. "
            "docs/methods.md §1c; docs/rules.md §7.1–7.5 and docs/design.md §7–9")
    assert citations(text) == [("docs/design.md", "6"), ("docs/design.md", "10"), ("docs/rules.md", "9"),
                               ("docs/rules.md", "6.1-10"), ("docs/rules.md", "4.1"),
                               ("docs/methods.md", "1c"), ("docs/rules.md", "7.1"), ("docs/rules.md", "7.5"),
                               ("docs/design.md", "7"), ("docs/design.md", "9")]
    assert "6.1-10" in headings("docs/rules.md") and "6.1" in headings("docs/rules.md")
    assert "99" not in headings("docs/rules.md")  # an unknown section is reported
    assert _missing([("x.py:1", "docs/rules.md", "99")]) == ["x.py:1: docs/rules.md " + "§99"]


# --- (a) every citation resolves -----------------------------------------------------------------

def test_every_docs_citation_resolves_to_a_heading():
    found = []
    for path in scanned_files():
        rel = path.relative_to(ROOT)
        for line_no, line in enumerate(_text_of(path).splitlines(), 1):
            found += [(f"{rel}:{line_no}", doc, sec) for doc, sec in citations(line)]
    missing = _missing(found)
    assert not missing, "見出しのない節を引用しています:\n" + "\n".join(missing)


def test_old_form_citations_would_resolve_after_the_rewrite():
    """Before the rewrite commit the code still uses the old forms: they must map onto headings too."""
    found = []
    for path in set(scanned_files()) - OLD_FORM_ALLOWED:
        rel = path.relative_to(ROOT)
        for line_no, line in enumerate(_text_of(path).splitlines(), 1):
            found += [(f"{rel}:{line_no}", doc, sec) for doc, sec in
                      citations(line, OLD_CITATION, lambda m: REWRITE.TARGETS[m.group("old")])]
    missing = _missing(found)
    assert not missing, "書き換え後に見出しのない節になる引用:\n" + "\n".join(missing)


def test_registry_sections_resolve():
    """Sections kept as data (indicator registry `domain`, 一体的実施 criteria) are docs/rules.md sections."""
    from hsutils.rules import programs
    from hsutils.analysis import indicators

    values = list(indicators.registry_frame()["domain"].dropna()) + [c[2] for c in programs.IKKATSU_CRITERIA]
    assert values
    secs = [s for v in values for s in re.findall(rf"§ ?({SECTION_ID})", str(v))]
    assert secs
    missing = sorted({s for s in secs if s not in headings("docs/rules.md")})
    assert not missing, f"docs/rules.md に見出しのない節: {missing}"


# --- (b) nothing points outside the repository ---------------------------------------------------

def test_no_citation_of_the_old_external_references():
    found = []
    for path in sorted(set(scanned_files()) - OLD_FORM_ALLOWED):
        rel = path.relative_to(ROOT)
        for line_no, line in enumerate(_text_of(path).splitlines(), 1):
            found += [f"{rel}:{line_no}: {m.group(0)}" for m in OLD_CITATION.finditer(line)]
    assert not found, ("リポジトリ外の参照への引用が残っています（python scripts/rewrite_citations.py で書き換え）:\n"
                       + "\n".join(found[:50]) + (f"\n… ほか {len(found) - 50} 件" if len(found) > 50 else ""))


def test_rewrite_is_exact_and_idempotent():
    old = ("DOM" "AIN §5.4; DOM" "AIN.md §1; STATS_METH" "ODS §1c; STA" "TS §5; DES" "IGN §6, §10; "
           "DES" "IGN.md §4 (`../" "shared/DES" "IGN.md`); STATS_METH" "ODS.md; CACHE_STA" "TS; a DOM" "AIN section; "
           '"DOM' 'AIN": x')
    new = REWRITE.rewrite_text(old)
    assert new == ("docs/rules.md §5.4; docs/rules.md §1; docs/methods.md §1c; docs/methods.md §5; "
                   "docs/design.md §6, §10; docs/design.md §4; docs/methods.md; CACHE_STA" "TS; a DOM" "AIN section; "
                   '"DOM' 'AIN": x')
    assert REWRITE.rewrite_text(new) == new

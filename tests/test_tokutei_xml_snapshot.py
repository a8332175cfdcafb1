"""The 特定健診 XML reader's output is pinned (issue 15, speed work): every table that
`hsutils.inputs.tokutei_xml.read_archives` returns — kenshin, exclusions (Japanese messages),
documents, audit table, unknown items, guidance — is compared with a snapshot written by the
reader **before** its speed rewrite (tests/data/tokutei_xml_expected/, see its README).

Two inputs: the hand-written fixtures (tests/fixtures/tokutei_xml/) and a set of 160 documents
derived from them by `write_variants` (seeded substitutions: persons, dates, values, units, answer
codes, broken and truncated documents), so that every exclusion path is exercised many times,
across archives, extracted folders, loose files, several chunks and worker processes.
"""
from __future__ import annotations

import gzip
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.inputs import tokutei_xml as tx

from test_tokutei_xml import FIX, _make_folder

EXPECTED = Path(__file__).parent / "data" / "tokutei_xml_expected"
GUIDANCE = "3333333333_00179999_202506301_2"


# ------------------------------------------------------------------------------------------
# Inputs


def fixture_folder(dest: Path) -> Path:
    """The hand-written fixtures as users hold them: a zip, an extracted folder, hg08 documents."""
    d = _make_folder(dest)
    shutil.copytree(FIX / "guidance_c" / GUIDANCE, d / GUIDANCE)
    return d


def _templates() -> list[tuple[str, bytes]]:
    files = sorted(p for p in FIX.rglob("*.xml") if "XSD" not in p.parts)
    return [(p.name, p.read_bytes()) for p in files]


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One variant of a fixture document: seeded substitutions of the values the reader checks."""
    def sub(pattern, fn, text):
        return re.sub(pattern, lambda m: fn(m), text)

    text = data.decode("utf-8-sig") if data.startswith(b"\xef\xbb\xbf") else data.decode("utf-8")
    bom = data.startswith(b"\xef\xbb\xbf")
    # person: a small pool, so that (person, 年度) duplicates occur
    text = sub(r'(root="1\.2\.392\.200119\.6\.205" extension=")[^"]*(")',
               lambda m: m.group(1) + str(rng.choice(["12345", "６７８９０", "780", "4411", "4412", "4413"]))
               + m.group(2), text)

    def date(m):
        r = rng.random()
        if r < 0.04:
            return m.group(1) + "20241301" + m.group(2)  # not a date
        day = pd.Timestamp("2023-04-01") + pd.Timedelta(days=int(rng.integers(0, 1000)))
        return m.group(1) + day.strftime("%Y%m%d") + m.group(2)
    text = sub(r'(<effectiveTime value=")\d{8}(")', date, text)
    text = sub(r'(<birthTime value=")\d{8}(")',
               lambda m: m.group(1) + str(int(rng.integers(1940, 1990))) + "0401" + m.group(2)
               if rng.random() < 0.9 else m.group(1) + "19601" + m.group(2), text)

    def pq(m):
        r = rng.random()
        v = m.group(2)
        try:
            x = float(v)
        except ValueError:
            return m.group(0)
        new = (v if r < 0.55 else f"{x * rng.uniform(0.6, 1.5):.1f}" if r < 0.8 else
               rng.choice(["abc", "", "99999", " 120 ", "１２０", "-5", "0"]))
        return m.group(1) + new + m.group(3)
    text = sub(r'(xsi:type="PQ" value=")([^"]*)(")', pq, text)
    text = sub(r'unit="(mg/dL|kg|cm)"',
               lambda m: f'unit="{rng.choice([m.group(1)] * 8 + ["mmol/L", m.group(1).upper()])}"', text)
    text = sub(r'(xsi:type="C[DO]" code=")([^"]*)(")',
               lambda m: m.group(1) + (m.group(2) if rng.random() < 0.7 else
                                       str(rng.choice(["1", "2", "3", "4", "5", "9", ""]))) + m.group(3), text)
    text = sub(r'(<value xsi:type="ST">)(\d{8})(</value>)',
               lambda m: m.group(1) + (m.group(2) if rng.random() < 0.8 else
                                       str(rng.choice(["20240230", "2024", "20250101"]))) + m.group(3), text)
    out = text.encode("utf-8")
    if rng.random() < 0.03:
        out = out[: len(out) // 2]  # truncated: not well-formed
    return (b"\xef\xbb\xbf" if bom else b"") + out


def write_variants(dest: Path, n: int = 160, seed: int = 15) -> Path:
    """`n` documents derived from the fixtures, in three zip archives, an extracted archive
    folder and loose files, with the fixtures' index files and an insurer table."""
    rng = np.random.default_rng(seed)
    templates = _templates()
    dest.mkdir(parents=True, exist_ok=True)
    groups: list[list[tuple[str, bytes]]] = [[] for _ in range(5)]
    for i in range(n):
        name, data = templates[int(rng.integers(0, len(templates)))]
        if name.startswith("ix08"):
            body = data
        else:
            body = _mutate(data, rng)
        prefix = "g" if name.startswith("g") else ("h" if name.startswith("h") else "x")
        groups[i % 5].append((f"DATA/{prefix}{i:05d}.xml", body))
    for k in range(3):
        arc = f"{k + 1}000000000_00179999_20250630{k}_1"
        with zipfile.ZipFile(dest / f"{arc}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{arc}/ix08_V08.xml", (FIX / "archive_a" / "1111111111_00179999_202406301_1"
                                               / "ix08_V08.xml").read_bytes())
            for name, body in groups[k]:
                z.writestr(f"{arc}/{name}", body)
    ext = dest / "4000000000_00179999_202506301_1"
    for name, body in groups[3]:
        (ext / name).parent.mkdir(parents=True, exist_ok=True)
        (ext / name).write_bytes(body)
    loose = dest / "loose"
    loose.mkdir()
    for name, body in groups[4]:
        (loose / name.split("/")[-1]).write_bytes(body)
    (dest / "insurer_munis.csv").write_text("保険者番号,市町村コード\n179999,17201\n", encoding="utf-8")
    return dest


# ------------------------------------------------------------------------------------------
# Rendering the outputs as text (what the snapshot holds)


def _csv(df: pd.DataFrame) -> str:
    df = df.reset_index(drop=True)
    head = "# dtypes: " + ",".join(f"{c}={t}" for c, t in df.dtypes.astype(str).items()) + "\n"
    return head + df.to_csv(index=False, lineterminator="\n")


def render(imp: tx.XmlImport) -> dict[str, str]:
    """Every output of an import as text: tables as CSV (with dtypes), counts and messages as JSON."""
    out = {"kenshin.csv": _csv(imp.result.data), "exclusions.csv": _csv(imp.result.exclusions),
           "documents.csv": _csv(imp.documents), "unknown_items.csv": _csv(imp.unknown_items),
           "observations.csv.gz": _csv(imp.observations)}
    meta = {"n_read": imp.result.n_read, "n_kept": imp.result.n_kept, "n_dropped": imp.result.n_dropped,
            "row_numbers": [int(x) for x in imp.result.row_numbers], "warnings": imp.result.warnings,
            "sources": imp.sources, "guidance_summary": imp.guidance_summary,
            "observation_schema": str(imp.observation_table.schema)}
    if imp.guidance is not None:
        g = imp.guidance
        out.update({"guidance.csv": _csv(g.data), "guidance_exclusions.csv": _csv(g.exclusions),
                    "guidance_unknown_items.csv": _csv(imp.guidance_unknown_items),
                    "guidance_observations.csv.gz": _csv(imp.guidance_observation_table.to_pandas())})
        meta["guidance"] = {"n_read": g.n_read, "n_kept": g.n_kept, "n_dropped": g.n_dropped,
                            "row_numbers": [int(x) for x in g.row_numbers], "warnings": g.warnings}
    out["meta.json"] = json.dumps(meta, ensure_ascii=False, indent=1, default=str) + "\n"
    return out


def write_snapshot(imp: tx.XmlImport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in render(imp).items():
        data = text.encode("utf-8")
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
        (folder / name).write_bytes(data)


def read_snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name == "README.md":
            continue
        data = p.read_bytes()
        out[p.name] = (gzip.decompress(data) if p.name.endswith(".gz") else data).decode("utf-8")
    return out


def _assert_same(got: dict[str, str], want: dict[str, str]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        if got[name] != want[name]:  # show the first differing line, not 300 kB
            g, w = got[name].splitlines(), want[name].splitlines()
            i = next((k for k, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
            raise AssertionError(f"{name} differs at line {i + 1}: got {g[i:i + 1]} want {w[i:i + 1]} "
                                 f"({len(g)} vs {len(w)} lines)")


# ------------------------------------------------------------------------------------------
# Tests


def test_fixtures_read_as_before(tmp_path):
    imp = tx.read_archives(fixture_folder(tmp_path / "d"), workers=1)
    _assert_same(render(imp), read_snapshot(EXPECTED / "fixtures"))


def test_fixtures_with_xsd_validation_read_as_before(tmp_path):
    imp = tx.read_archives(fixture_folder(tmp_path / "d"), workers=1, validate_xsd=True)
    _assert_same(render(imp), read_snapshot(EXPECTED / "fixtures_xsd"))


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> Path:
    return write_variants(tmp_path_factory.mktemp("variants") / "d")


def test_variants_read_as_before_with_every_exclusion(variants):
    imp = tx.read_archives(variants, workers=1)
    got = render(imp)
    _assert_same(got, read_snapshot(EXPECTED / "variants"))
    # the set does exercise the exclusion paths (a snapshot of nothing would prove nothing)
    ex = imp.exclusions
    for reason in ("XML として読めません", "受診日が日付として読めません", "重複", "単位が違います",
                   "回答コードが定義にありません", "HbA1c（JDS値）", "生年月日が日付として読めません"):
        assert ex["reason"].str.contains(reason, regex=False).any(), reason
    docs = imp.documents[imp.documents["kind"].eq("kenshin")]
    assert len(docs) == imp.result.n_read == imp.result.n_kept + imp.result.n_dropped
    assert imp.guidance is not None and len(imp.guidance.exclusions)
    assert len(imp.unknown_items)


def test_variants_in_chunks_and_worker_processes_read_as_before(variants, monkeypatch):
    monkeypatch.setattr(tx, "PARALLEL_MIN_DOCS", 0)
    monkeypatch.setattr(tx, "CHUNK_DOCS", 37)  # chunks that cut archives
    imp = tx.read_archives(variants, workers=2)
    _assert_same(render(imp), read_snapshot(EXPECTED / "variants"))


def test_variants_validated_in_slices_read_as_before(variants, monkeypatch):
    """Streaming (issue 17): the kept documents validated a few at a time (io.read_text_frames) give the
    snapshot; the variants' small pool of persons makes (person, 年度) duplicates across slices."""
    monkeypatch.setattr(tx, "VALIDATE_DOCS", 7)
    imp = tx.read_archives(variants, workers=1)
    _assert_same(render(imp), read_snapshot(EXPECTED / "variants"))


if __name__ == "__main__":  # regenerate: only with the reader whose output is the reference
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp())
    write_snapshot(tx.read_archives(fixture_folder(base / "f"), workers=1), EXPECTED / "fixtures")
    write_snapshot(tx.read_archives(fixture_folder(base / "x"), workers=1, validate_xsd=True),
                   EXPECTED / "fixtures_xsd")
    write_snapshot(tx.read_archives(write_variants(base / "v"), workers=1), EXPECTED / "variants")
    print("written", EXPECTED, file=sys.stderr)

"""The streaming 特定健診 XML import (issue 17, hsutils.inputs.tokutei_xml.read_archives): chunks are
checked one at a time, the kept documents are spilled to Arrow IPC files and read back in
(受診日, document) order. The result must not depend on the chunk, slice or batch sizes, the
duplicate rule works across archives, and the spill folder is removed after success and error.

Archives are written here with a minimal CDA header and three items; expected values are worked
out by hand from them.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from hsutils.inputs import io, tokutei_xml as tx

INSURER = "00179999"

_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <code code="10" codeSystem="1.2.392.200119.6.1001"/>
  <recordTarget><patientRole>
    <id root="1.2.392.200119.6.101" extension="{insurer}"/>
    <id root="1.2.392.200119.6.205" extension="{bango}"/>
    <patient><administrativeGenderCode code="{sex}"/><birthTime value="{birth}"/></patient>
  </patientRole></recordTarget>
  <documentationOf><serviceEvent><effectiveTime value="{exam}"/></serviceEvent></documentationOf>
  <component><structuredBody><component><section>
    <entry><observation><code code="9N001000000000001"/><value xsi:type="PQ" value="{height}" unit="cm"/></observation></entry>
    <entry><observation><code code="9N006000000000001"/><value xsi:type="PQ" value="60.0" unit="{wunit}"/></observation></entry>
    <entry><observation><code code="9A755000000000001"/><value xsi:type="PQ" value="{sbp}" unit="mm[Hg]"/></observation></entry>
  </section></component></structuredBody></component>
</ClinicalDocument>
"""


def _doc(bango, exam, sbp="120", height="160.0", birth="19600515", sex="1", wunit="kg") -> str:
    return _DOC.format(insurer=INSURER, bango=bango, exam=exam, sbp=sbp, height=height, birth=birth,
                       sex=sex, wunit=wunit)


def _archive(path: Path, docs: dict[str, str]) -> None:
    root = path.stem
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/ix08_V08.xml", '<?xml version="1.0"?><index/>')
        for name, text in docs.items():
            z.writestr(f"{root}/DATA/{name}", text)


def _folder(tmp_path: Path) -> Path:
    """Two archives, 23 + 21 documents: persons 1001… with one FY2024 exam each; problems:
    a bad 受診日, an implausible 収縮期血圧, a wrong unit, and cross-archive duplicates."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "insurer_munis.csv").write_text(f"保険者番号,市町村コード\n{INSURER},17201\n", encoding="utf-8")
    a = {f"h{i:04d}.xml": _doc(str(1000 + i), f"202406{(i % 28) + 1:02d}", sbp=str(100 + i)) for i in range(1, 21)}
    a["h0021.xml"] = _doc("2001", "2024133X")                 # bad 受診日
    a["h0022.xml"] = _doc("2002", "20240701", sbp="400")       # implausible value (io, 項目)
    a["h0023.xml"] = _doc("2003", "20240702", wunit="lb")      # wrong unit (reader, 項目)
    b = {f"h{i:04d}.xml": _doc(str(3000 + i), f"202409{(i % 28) + 1:02d}", sbp=str(130 + i)) for i in range(1, 19)}
    b["h0019.xml"] = _doc("1001", "20240501", sbp="111")       # person 1001 again, earlier: wins
    b["h0020.xml"] = _doc("1002", "20240603", sbp="112")       # person 1002 again, same day: loses
    b["h0021.xml"] = _doc("1003", "20250401", sbp="113")       # person 1003, next FY: no duplicate
    _archive(d / "1111111111_00179999_202406301_1.zip", a)
    _archive(d / "1111111111_00179999_202409301_1.zip", b)
    return d


def _frames(imp: tx.XmlImport) -> dict:
    r = imp.result
    return {"data": r.data, "exclusions": r.exclusions, "documents": imp.documents,
            "unknown": imp.unknown_items, "counts": pd.DataFrame({"n": [r.n_read, r.n_kept, r.n_dropped]}),
            "warnings": pd.DataFrame({"w": r.warnings}), "rows": pd.DataFrame({"r": r.row_numbers})}


@pytest.mark.parametrize("keep", [True, False])
def test_tiny_chunks_slices_and_batches_give_the_same_import(tmp_path, monkeypatch, keep):
    folder = _folder(tmp_path)
    whole = _frames(tx.read_archives(folder, workers=1, keep_observations=keep))
    monkeypatch.setattr(tx, "CHUNK_DOCS", 4)      # 11 chunks, some across the two archives
    monkeypatch.setattr(tx, "VALIDATE_DOCS", 5)   # 9 slices: duplicates across slices
    monkeypatch.setattr(tx, "SPILL_ROWS", 2)      # a slice reads parts of batches
    monkeypatch.setattr(tx, "ZIP_INFO_CACHE", 1)  # central directories read again when needed
    tiny = _frames(tx.read_archives(folder, workers=1, keep_observations=keep))
    assert len(tx._ZIP_INFOS) <= 1  # bounded: not one ZipInfo per document for the whole import
    for k in whole:
        assert_frame_equal(whole[k], tiny[k], obj=k)
    assert whole["counts"]["n"].tolist() == [44, 41, 3]  # 44 健診 documents, 41 kept


def test_cross_archive_duplicate_earliest_exam_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(tx, "CHUNK_DOCS", 4)
    monkeypatch.setattr(tx, "VALIDATE_DOCS", 5)
    imp = tx.read_archives(_folder(tmp_path), workers=1)
    k = imp.kenshin.set_index("person_id")
    # person 1001: archive 1 (doc 1, 2024-06-02, sbp 101) and archive 2 (doc 43, 2024-05-01, sbp 111):
    # the earlier 受診日 counts although its archive comes later
    p = k.loc[f"{INSURER}--1001-"]
    assert (p["exam_date"], p["sbp"], p["fy"]) == (pd.Timestamp("2024-05-01"), 111.0, 2024)
    # person 1002: both on 2024-06-03: the document that comes first (archive 1, sbp 102) counts
    assert k.loc[f"{INSURER}--1002-", "sbp"] == 102.0
    # person 1003: FY2024 and FY2025 are two rows
    assert len(imp.kenshin[imp.kenshin["person_id"] == f"{INSURER}--1003-"]) == 2
    ex = imp.exclusions
    dup = ex[ex["reason"].str.startswith("重複")]
    # documents (members sorted: DATA/ before ix08): archive 1 = 1…23 (h0001…h0023), 24 (ix08);
    # archive 2 = 25…45 (h0001…h0021), 46 (ix08)
    assert dup["row"].tolist() == [1, 44]
    assert dup["file"].tolist() == ["1111111111_00179999_202406301_1.zip/1111111111_00179999_202406301_1/DATA/h0001.xml",
                                    "1111111111_00179999_202409301_1.zip/1111111111_00179999_202409301_1/DATA/h0020.xml"]
    assert (dup["scope"] == io.SCOPE_ROW).all()
    bad = ex[ex["row"] == 21]
    assert bad[["column", "value", "scope"]].values.tolist() == [["受診日", "2024133X", io.SCOPE_ROW]]
    sbp = ex[ex["row"] == 22]  # io's range check, labelled with the item code from the spill
    assert sbp[["column", "value", "scope"]].values.tolist() == [["収縮期血圧（9A755000000000001）", "400", io.SCOPE_VALUE]]
    assert pd.isna(k.loc[f"{INSURER}--2002-", "sbp"])
    unit = ex[ex["row"] == 23]
    assert unit[["column", "value", "scope"]].values.tolist() == [["体重（9N006000000000001）", "60.0 lb", io.SCOPE_VALUE]]
    assert (imp.result.n_read, imp.result.n_kept, imp.result.n_dropped) == (44, 41, 3)
    d = imp.documents.set_index("doc")["status"]
    assert (d[24], d[1], d[21], d[22], d[44], d[43]) == ("対象外", "除外", "除外", "採用", "除外", "採用")


def test_compact_documents_without_observations(tmp_path):
    folder = _folder(tmp_path)
    full = tx.read_archives(folder, workers=1).documents
    compact = tx.read_archives(folder, workers=1, keep_observations=False).documents
    assert list(compact.columns) == ["doc", "archive", "kind", "status"]
    assert_frame_equal(compact.astype(str), full[compact.columns].astype(str))
    assert compact["status"].value_counts().to_dict() == {"採用": 41, "除外": 3, "対象外": 2}


def test_spill_folder_removed_after_success_and_error(tmp_path, monkeypatch):
    folder, cache = _folder(tmp_path), tmp_path / "cache"
    monkeypatch.setattr(tx, "VALIDATE_DOCS", 5)
    imp = tx.read_archives(folder, workers=1, spill_dir=cache)
    assert imp.result.n_kept == 41 and list(cache.iterdir()) == []
    seen = []
    real = io.iter_text_frames

    def failing(chunks, *a, **k):
        spill = [p for p in cache.iterdir()]
        seen.append(sorted(f.name for f in spill[0].iterdir()))
        next(iter(chunks))  # the first slice reads back from the spill
        raise RuntimeError("stop")
        yield  # a generator, as io.iter_text_frames

    monkeypatch.setattr(io, "iter_text_frames", failing)
    with pytest.raises(RuntimeError, match="stop"):
        tx.read_archives(folder, workers=1, spill_dir=cache)
    assert seen == [["item_of.arrow", "rows.arrow"]]  # the spill existed during the import
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(io, "iter_text_frames", real)
    # through the Parquet cache: the spill goes to the cache folder and is removed too
    r = tx.read_folder_cached(folder, None, cache_dir=cache)
    assert r.n_kept == 41
    assert not [p for p in cache.rglob("*") if p.name.startswith("hs_xml_")]


def test_doc_files_labels():
    src = [tx.Source(Path("a.zip"), True, ("x/1.xml", "x/2.xml")), tx.Source(Path("b"), False, ("3.xml",))]
    got = tx._DocFiles(src)(pd.Series([3, 1, 4, 2]))
    assert got.iloc[:2].tolist() == ["b/3.xml", "a.zip/x/1.xml"]
    assert pd.isna(got.iloc[2]) and got.iloc[3] == "a.zip/x/2.xml"
    assert np.array_equal(got.index, [0, 1, 2, 3])


def _slices(monkeypatch, validate_docs: int):
    """A sink that keeps what it is handed (and a check that the whole table is never built: the
    slices' concatenation is `io.concat_chunks`)."""
    monkeypatch.setattr(tx, "VALIDATE_DOCS", validate_docs)
    got = []
    return got, lambda data, rows: got.append((data, np.asarray(rows)))


def _assert_same_result(a: io.LoadResult, b: io.LoadResult) -> None:
    assert_frame_equal(a.data, b.data)
    assert np.array_equal(a.row_numbers, b.row_numbers)
    assert_frame_equal(a.exclusions, b.exclusions)
    assert (a.n_read, a.n_kept, a.n_dropped, a.warnings) == (b.n_read, b.n_kept, b.n_dropped, b.warnings)


@pytest.mark.parametrize("validate_docs", [1, 5])
def test_sink_is_handed_each_validated_slice_and_never_the_whole_table(tmp_path, monkeypatch, validate_docs):
    folder = _folder(tmp_path)
    whole = tx.read_archives(folder, workers=1)
    got, sink = _slices(monkeypatch, validate_docs)
    imp = tx.read_archives(folder, workers=1, sink=sink)
    # 43 documents pass the document checks (h0021 of archive 1 has a bad 受診日): 43 slices of 1
    # or 9 slices of 5 (8 × 5 + 3) in (受診日, document) order; io drops the 2 duplicates (docs 1, 44)
    assert len(got) == -(-43 // validate_docs)
    assert max(len(d) for d, _ in got) <= validate_docs
    assert sum(len(d) for d, _ in got) == 41
    assert len(imp.result.data) == 0 and len(imp.result.row_numbers) == 0
    assert dict(imp.result.data.dtypes) == dict(whole.result.data.dtypes)
    data = io.concat_chunks([d for d, _ in got], "kenshin")
    rows = np.concatenate([r for _, r in got])
    assert 1 not in rows and 44 not in rows and 43 in rows  # the earlier 受診日 (doc 43) is kept
    _assert_same_result(whole.result, io.LoadResult(
        data=data, exclusions=imp.result.exclusions, n_read=imp.result.n_read, n_kept=imp.result.n_kept,
        n_dropped=imp.result.n_dropped, warnings=imp.result.warnings, row_numbers=rows))
    assert_frame_equal(whole.documents, imp.documents)
    ex = imp.exclusions
    assert ex[ex["reason"].str.startswith("重複")]["row"].tolist() == [1, 44]
    assert ex[ex["row"] == 22][["column", "value"]].values.tolist() == [["収縮期血圧（9A755000000000001）", "400"]]


def test_cache_written_and_read_back_slice_by_slice(tmp_path, monkeypatch):
    folder, cache = _folder(tmp_path), tmp_path / "cache"
    whole = tx.read_archives(folder, workers=1, keep_observations=False).result
    got, sink = _slices(monkeypatch, 5)
    miss = tx.read_folder_cached(folder, None, cache_dir=cache, sink=sink)
    assert not miss.from_cache and len(miss.data) == 0 and len(got) == 9
    entry = next(cache.glob("kenshin_xml_*.data.parquet"))
    import pyarrow.parquet as pq

    assert pq.ParquetFile(entry).num_row_groups == 9  # one row group per slice
    assert io.CACHE_ROW in pq.read_schema(entry).names  # row numbers: a column, not a JSON list
    assert "row_numbers" not in next(cache.glob("kenshin_xml_*.meta.json")).read_text(encoding="utf-8")
    parsed = list(got)
    got.clear()
    hit = tx.read_folder_cached(folder, None, cache_dir=cache, sink=sink)
    assert hit.from_cache and len(hit.data) == 0
    assert [len(d) for d, _ in got] == [len(d) for d, _ in parsed]  # the row groups as written
    for (d1, r1), (d2, r2) in zip(parsed, got):
        assert np.array_equal(r1, r2)
        assert_frame_equal(d1.reset_index(drop=True), d2, check_dtype=False)  # a slice's own int64/Int64
    _assert_same_result(whole, tx.read_folder_cached(folder, None, cache_dir=cache))  # a hit, whole
    for r in (miss, hit):
        assert_frame_equal(r.exclusions, whole.exclusions)
        assert (r.n_read, r.n_kept, r.n_dropped, r.warnings) == (44, 41, 3, whole.warnings)


def test_whole_table_through_the_cache_is_the_parsed_one(tmp_path):
    """Without a sink the cache entry is written whole (one row group) and read back whole in the
    dtypes of the parse; an entry of the older layout (row numbers in the meta) is parsed again."""
    folder, cache = _folder(tmp_path), tmp_path / "cache"
    first = tx.read_folder_cached(folder, None, cache_dir=cache)
    second = tx.read_folder_cached(folder, None, cache_dir=cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    _assert_same_result(first, second)
    assert second.data["fy"].dtype == "int64" and second.row_numbers.dtype == np.int64
    meta = next(cache.glob("kenshin_xml_*.meta.json"))
    old = json.loads(meta.read_text(encoding="utf-8"))
    del old["dtypes"]
    old["row_numbers"] = first.row_numbers.tolist()
    meta.write_text(json.dumps(old, ensure_ascii=False), encoding="utf-8")
    again = tx.read_folder_cached(folder, None, cache_dir=cache)
    assert not again.from_cache
    _assert_same_result(first, again)

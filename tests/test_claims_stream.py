"""The streamed UKE import (file by file, then month by month) gives exactly the tables, exclusions,
counts and report of the one-pass import (docs/claims_rules.md §7.1)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.inputs import claims_import, claims_masters, claims_rules, person_keys, uke
from hsutils.demo import synth, synth_uke


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    full = tmp_path_factory.mktemp("uke_stream_full")
    tables = synth.generate_demo(scale=0.005, seed=11)
    synth_uke.write_uke(full, tables, seed=11)
    # the first four months are enough (every file is one month and kind; the test stays fast)
    out = tmp_path_factory.mktemp("uke_stream")
    shutil.copytree(full / claims_import.MASTERS_DIR, out / claims_import.MASTERS_DIR)
    shutil.copy(full / "person_ids.csv", out / "person_ids.csv")
    months = sorted({p.stem.split("_")[1] for p in uke.find_uke_files(full)})[:4]
    (out / "uke").mkdir()
    for p in uke.find_uke_files(full):
        if p.stem.split("_")[1] in months:
            shutil.copy(p, out / "uke" / p.name)
    shutil.rmtree(full)
    enr = tables["enrollment"].assign(fy=tables["enrollment"]["fy"].astype("int64"))
    return out, enr


def _one_pass(folder, enrollment):
    """The reference: every file in one pass, one derive_tables (the import before streaming)."""
    files = uke.find_uke_files(folder)
    raw = uke.read_uke(files, root=folder)  # files named relative to the data folder, as load_claims does
    masters = claims_masters.load_masters(folder / claims_import.MASTERS_DIR)
    d = claims_rules.derive_tables(raw, masters, claims_rules.load_rules(None), enrollment=enrollment,
                                   link=claims_import.read_link(folder))
    excl = [e for e in (raw.exclusions, d.exclusions) if len(e)]
    return d, raw, (pd.concat(excl, ignore_index=True) if excl else raw.exclusions)


def _assert_same(folder, enrollment, cache_dir=None, one_pass=None):
    d, raw, excl = one_pass or _one_pass(folder, enrollment)
    c = claims_import.load_claims(folder, uke.find_uke_files(folder), enrollment=enrollment, cache_dir=cache_dir)
    assert set(c.tables) == set(d.tables)
    for name, want in d.tables.items():
        pd.testing.assert_frame_equal(c.tables[name], want.reset_index(drop=True), check_dtype=True, obj=name)
    pd.testing.assert_frame_equal(c.exclusions.reset_index(drop=True), excl.reset_index(drop=True))
    for k, v in raw.counts.items():
        assert c.counts[k] == v, k
    assert c.counts["receipts_unlinked"] == len(d.exclusions)
    for k, v in d.report.items():
        if k.startswith("unknown_"):  # ties among equally frequent codes may be listed in another order
            assert sorted(c.report[k]) == sorted(v), k
        else:
            assert c.report[k] == v, k
    return c


def test_streamed_import_equals_one_pass(demo, tmp_path):
    folder, enr = demo
    c = _assert_same(folder, enr, cache_dir=tmp_path)
    assert len(c.tables["claims_monthly"]) > 100 and len(c.tables["diagnoses"]) > 100
    # the per-file store is re-used: the second import parses nothing and gives the same tables
    stored = sorted(p.name for p in (tmp_path / "uke").iterdir())
    assert len(stored) == len(uke.find_uke_files(folder))
    again = claims_import.load_claims(folder, uke.find_uke_files(folder), enrollment=enr, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again.tables["claims_monthly"], c.tables["claims_monthly"])


def test_streamed_import_across_files_and_months(demo, tmp_path):
    """Files holding several months, months spread over several files, a receipt of another month
    in a file, an unlinked person and a bad line: still the one-pass result. No 個人ID対応表, so the
    枝番 filling must look across all months."""
    folder, enr = demo
    work = tmp_path / "data"
    shutil.copytree(folder, work)
    (work / "person_ids.csv").unlink()
    files = uke.find_uke_files(work)
    ika = [p for p in files if p.name.startswith("ika_")]
    # two 医科 months in one file (the second file removed), 調剤 of those months stays separate
    merged = ika[0].read_bytes().replace(b"\x1a", b"") + ika[1].read_bytes()
    ika[0].write_bytes(merged)
    ika[1].unlink()
    # a corrupt 傷病名 code in a later file
    lines = ika[2].read_bytes().split(b"\r\n")
    sy = next(i for i, ln in enumerate(lines) if ln.startswith(b"SY,"))
    f = lines[sy].split(b",")
    f[1] = b"12X4567"
    lines[sy] = b",".join(f)
    ika[2].write_bytes(b"\r\n".join(lines))
    enr_less = enr[enr["person_id"] != enr["person_id"].iloc[0]]
    c = _assert_same(work, enr_less)
    assert (c.exclusions["column"] == "SY 傷病名コード").any()


def test_key_map_fills_edaban_over_all_months():
    keys = pd.Series(["123-A-1-", "123-A-1-01", "999-B-2-", "999-B-2-01", "999-B-2-02"])
    got = claims_import._KeyMap(keys.iloc[[0, 2]], None)  # one month alone sees no 枝番
    assert got.lookup(pd.Series(["123-A-1-"])).iloc[0] == "123-A-1-"
    full = claims_import._KeyMap(keys, None)
    # one 枝番 among the family's records: filled; two: left empty (docs/formats/person_key.md §1)
    assert full.lookup(pd.Series(["123-A-1-", "999-B-2-"])).tolist() == ["123-A-1-01", "999-B-2-"]
    assert full.lookup(keys).tolist() == person_keys.fill_edaban(keys).tolist()
    assert np.all(full.lookup(keys).notna())


def test_files_in_segments_give_the_one_pass_tables(demo, tmp_path, monkeypatch):
    """Each file read in small segments (cut before IR/YK lines; docs/claims_rules.md §7.1), one of
    them a file of two months and several institutions: still the one-pass result, and the stored
    entry (several segments) is re-used by a second load."""
    folder, enr = demo
    work = tmp_path / "data"
    shutil.copytree(folder, work)
    files = uke.find_uke_files(work)
    ika = [p for p in files if p.name.startswith("ika_")]
    ika[0].write_bytes(ika[0].read_bytes().replace(b"\x1a", b"") + ika[1].read_bytes())
    ika[1].unlink()
    monkeypatch.setattr(uke, "SEGMENT_BYTES", 20_000)
    assert len(uke.segments(ika[0])) > 3
    c = _assert_same(work, enr, cache_dir=tmp_path / "cache")
    again = claims_import.load_claims(work, uke.find_uke_files(work), enrollment=enr, cache_dir=tmp_path / "cache")
    for name, df in c.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], df, obj=name)


def test_same_named_files_in_two_folders_stay_apart(demo, tmp_path):
    """The same file name in the data folder and in uke/ (a person unknown to the 個人ID対応表 in
    one of them, on the same line as a kept receipt of the other): the exclusion names the file by
    its path relative to the data folder, and only that file's receipt and its 傷病名 are dropped
    (docs/claims_rules.md §4.1, §4.2)."""
    folder, enr = demo
    work = tmp_path / "data"
    shutil.copytree(folder, work)
    ika = next(p for p in uke.find_uke_files(work) if p.name.startswith("ika_"))
    lines = ika.read_bytes().split(b"\r\n")
    ho = next(i for i, ln in enumerate(lines) if ln.startswith(b"HO,"))
    f = lines[ho].split(b",")
    f[3] = b"99999999"  # a 番号 not in person_ids.csv
    lines[ho] = b",".join(f)
    (work / ika.name).write_bytes(b"\r\n".join(lines))
    c = _assert_same(work, enr)
    unlinked = c.exclusions[c.exclusions["column"] == "HO 保険者番号・記号・番号"]
    assert unlinked["file"].tolist() == [ika.name]
    assert set(c.exclusions["file"]) <= {ika.name, f"uke/{ika.name}"} | {f"uke/{p.name}" for p in uke.find_uke_files(folder)}



def test_months_derived_together_equal_one_pass(demo, tmp_path, monkeypatch):
    """Consecutive months are derived in one call up to DERIVE_RECEIPTS receipts
    (`claims_import._month_groups`): one month per call (a month above the limit) and two or three
    calls for the four months both give the one-pass tables, exclusions, counts and report (one
    call for all months: the tests above, at the default limit)."""
    folder, enr = demo
    one_pass = _one_pass(folder, enr)
    total = one_pass[1].counts["receipts_kept"]
    calls = []
    derive = claims_rules.derive_tables
    monkeypatch.setattr(claims_rules, "derive_tables", lambda uke_, *a, **k: calls.append(
        sorted(int(m) for m in uke_.receipts["ym"].unique())) or derive(uke_, *a, **k))
    for limit, n_calls in ((1, {4}), (total // 2, {2, 3})):
        calls.clear()
        monkeypatch.setattr(claims_import, "DERIVE_RECEIPTS", limit)
        _assert_same(folder, enr, cache_dir=tmp_path / str(limit), one_pass=one_pass)
        derived = [m for c in calls for m in c]
        assert derived == sorted(set(derived)) and len(derived) == 4, calls  # every month once, in order
        assert len(calls) in n_calls, (limit, calls)


def test_store_is_a_cache_and_a_damaged_entry_is_rebuilt(demo, tmp_path, monkeypatch):
    """The store (one Parquet file a part and segment, docs/claims_rules.md §7.1): a second import
    parses nothing; an entry with a damaged meta.json or a missing part file is parsed again (that
    file only); the segments read back from disk (no memory budget) give the one-pass tables."""
    folder, enr = demo
    one_pass = _one_pass(folder, enr)
    cache = tmp_path / "cache"
    c = _assert_same(folder, enr, cache_dir=cache, one_pass=one_pass)
    entries = sorted(p for p in (cache / "uke").iterdir() if not p.name.startswith("derived-"))
    assert len(entries) == len(uke.find_uke_files(folder))
    assert {p.name for p in (entries[0] / "s00000").iterdir()} >= {f"{p}.parquet" for p in claims_import.MONTH_PARTS}
    parsed = []
    read_segment = uke.read_segment
    monkeypatch.setattr(uke, "read_segment", lambda path, *a, **k: parsed.append(Path(path).name) or read_segment(path, *a, **k))
    monkeypatch.setattr(claims_import, "MEMORY_ROWS", 0)  # every segment read back from its Parquet files
    again = _assert_same(folder, enr, cache_dir=cache, one_pass=one_pass)
    assert parsed == []
    for name, df in c.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], df, obj=name)
    (entries[0] / "meta.json").write_text("{", encoding="utf-8")
    (entries[1] / "s00000" / "drugs.parquet").unlink()
    _assert_same(folder, enr, cache_dir=cache, one_pass=one_pass)
    assert len(parsed) == 2 and len(set(parsed)) == 2


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="workers are forked")
def test_files_parsed_and_months_derived_in_worker_processes(demo, tmp_path, monkeypatch):
    """A large import (here: every threshold lowered) parses its files and derives its month groups
    in worker processes (`PARSE_WORKERS`): still the one-pass tables, exclusions, counts and report;
    every file was parsed and every group derived by a worker, not by this process."""
    import os

    folder, enr = demo
    one_pass = _one_pass(folder, enr)
    pids = tmp_path / "pids.txt"

    def record(kind, fn):
        def wrapped(*a, **k):
            with open(pids, "a", encoding="utf-8") as f:
                f.write(f"{kind} {os.getpid()}\n")
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(uke, "read_segment", record("parse", uke.read_segment))
    monkeypatch.setattr(claims_rules, "derive_tables", record("derive", claims_rules.derive_tables))
    monkeypatch.setattr(claims_import, "PARSE_WORKERS", 2)
    monkeypatch.setattr(claims_import, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(claims_import, "PARALLEL_MIN_RECEIPTS", 0)
    monkeypatch.setattr(claims_import, "DERIVE_RECEIPTS", 1)  # a group per month: four groups
    _assert_same(folder, enr, cache_dir=tmp_path / "cache", one_pass=one_pass)
    seen = [line.split() for line in pids.read_text(encoding="utf-8").splitlines()]
    parsed = [pid for kind, pid in seen if kind == "parse"]
    derived = [pid for kind, pid in seen if kind == "derive"]
    assert len(parsed) == len(uke.find_uke_files(folder)) and len(derived) == 4
    assert str(os.getpid()) not in parsed + derived


def test_memory_budget_part_way(demo, tmp_path, monkeypatch):
    """Without a cache, the segments within `MEMORY_ROWS` are kept in memory and not written, the
    others written to the scratch store; derived months likewise: still the one-pass result."""
    folder, enr = demo
    one_pass = _one_pass(folder, enr)
    rows = sum(len(getattr(one_pass[1], p)) for p in claims_import.MONTH_PARTS)
    monkeypatch.setattr(claims_import, "MEMORY_ROWS", rows // 2)
    _assert_same(folder, enr, one_pass=one_pass)


def _segment(rows: list[tuple], lines: list[tuple], name: str) -> uke.UkeTables:
    """A hand-made parsed segment: receipts (receipt_id, ym, line, person_key) and 傷病名 lines
    (receipt_id, line, code); no 診療行為 / 医薬品 lines, no exclusions."""
    rec = pd.DataFrame(rows, columns=["receipt_id", "ym", "line", "person_key"]).assign(file=name)
    dx = pd.DataFrame(lines, columns=["receipt_id", "line", "code"]).assign(file=name)
    none = pd.DataFrame({"receipt_id": pd.Series([], dtype="int64"), "line": pd.Series([], dtype="int64")})
    excl = pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str")
                         for c in ("file", "table", "row", "column", "value", "reason", "scope")})
    return uke.UkeTables(receipts=rec, diagnoses=dx, procedures=none, drugs=none.copy(), exclusions=excl,
                         counts={"receipts_read": len(rec)})


@pytest.mark.parametrize("memory_rows", [0, 1_000])
def test_month_split_over_two_segments(tmp_path, memory_rows, monkeypatch):
    """A month (202104) in two segments, each also holding another month, rows of a month not
    together in the file: the month's receipts and 傷病名 come back from both segments (file
    order, then row order), receipt ids shifted by the receipts of the segments before, and each
    傷病名's (segment, position in its segment) key — read from disk or from memory."""
    monkeypatch.setattr(claims_import, "MEMORY_ROWS", memory_rows)
    a = _segment([(1, 202104, 1, "k1"), (2, 202105, 5, "k2"), (3, 202104, 9, "k3")],
                 [(1, 2, "A01"), (2, 6, "B01"), (3, 10, "C01"), (3, 11, "C02")], "a.UKE")
    b = _segment([(1, 202103, 1, "k4"), (2, 202104, 4, "k1")], [(2, 5, "D01"), (1, 2, "E01")], "b.UKE")
    budget = claims_import._Budget()
    entries = []
    for i, t in enumerate((a, b)):
        meta, frames = claims_import._store_segment(t, tmp_path / f"s{i}", budget, cache=True)
        entries.append(claims_import._FileEntry(t.receipts["file"][0], tmp_path / f"s{i}", meta["months"],
                                                meta["counts"], meta["dtypes"], meta["rows"],
                                                meta["exclusions_file"], frames))
    assert entries[0].rows["receipts"] == {"202104": [0, 2], "202105": [2, 3]}
    assert entries[0].rows["diagnoses"] == {"202104": [0, 3], "202105": [3, 4]}
    assert (entries[0].frames is None) == (memory_rows == 0)
    assert claims_import._month_groups(entries, [202103, 202104, 202105]) == [[202103, 202104, 202105]]
    t, dx_key = claims_import._group_tables(entries, [0, 3], [202104])
    assert t.receipts[["receipt_id", "ym", "line", "person_key"]].values.tolist() == [
        [1, 202104, 1, "k1"], [3, 202104, 9, "k3"], [5, 202104, 4, "k1"]]
    assert t.diagnoses[["receipt_id", "line", "code"]].values.tolist() == [
        [1, 2, "A01"], [3, 10, "C01"], [3, 11, "C02"], [5, 5, "D01"]]
    assert dx_key.tolist() == [[0, 0], [0, 2], [0, 3], [1, 0]]
    t, dx_key = claims_import._group_tables(entries, [0, 3], [202103, 202104, 202105])
    assert t.receipts["receipt_id"].tolist() == [4, 1, 3, 5, 2]
    assert dx_key.tolist() == [[1, 1], [0, 0], [0, 2], [0, 3], [1, 0], [0, 1]]
    assert pd.concat([e.keys() for e in entries]).tolist() == ["k1", "k2", "k3", "k4", "k1"]


@pytest.mark.parametrize("values", [[None, None], [np.nan, None], ["a", None], ["a", np.nan], [], [1, None], [1.5, np.nan]])
def test_as_read_is_the_parquet_round_trip(values):
    """A frame kept in memory is what its Parquet file would give back: None / NaN of object
    columns as Arrow infers them; an empty frame's categorical column without categories."""
    import io
    df = pd.DataFrame({"a": pd.Series(values, dtype=object), "b": np.arange(len(values)),
                       "c": pd.Categorical(["x"] * len(values))})
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    want = pd.read_parquet(buf).astype({c: str(d) for c, d in df.dtypes.items()})
    got = claims_import._as_read(df)
    pd.testing.assert_frame_equal(got, want)
    assert [type(v) for v in got["a"]] == [type(v) for v in want["a"]]
    assert list(got["c"].cat.categories) == list(want["c"].cat.categories)

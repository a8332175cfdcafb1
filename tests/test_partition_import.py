"""The streamed import (docs/design.md §8.4, hsutils.analysis.partition_import) gives the cache of the
in-memory path (`io.load_dataset` then `pipeline.write_partition_inputs`): the same strata, person_year
partitions, exclusions, import summary and meta.json (apart from timings), and the same history tables
read back, on the demo (特定健診 XML + UKE claims) and on CSV claims read in small chunks, with a bad row
and a duplicate at chunk boundaries and a person who moves between municipalities."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.analysis import partition_import, pipeline
from hsutils.inputs import io

SMALL_FILES = ("strata.parquet", "exclusions.parquet", "import_summary.parquet", "unmatched.parquet",
               "municipalities.parquet", "districts.parquet")
TIMINGS = ("seconds", "partitions", "stages", "data_dir")


def _same_cache(a: Path, b: Path) -> None:
    for name in SMALL_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    py_a = sorted(p.relative_to(a) for p in (a / "person_year").rglob("*.parquet"))
    assert py_a == sorted(p.relative_to(b) for p in (b / "person_year").rglob("*.parquet"))
    for p in py_a:
        assert (a / p).read_bytes() == (b / p).read_bytes(), p
    ma, mb = (json.loads((c / "meta.json").read_text(encoding="utf-8")) for c in (a, b))
    assert {k: v for k, v in ma.items() if k not in TIMINGS} == {k: v for k, v in mb.items() if k not in TIMINGS}
    assert [p["muni"] for p in ma["partitions"]] == [p["muni"] for p in mb["partitions"]]
    for name in pipeline.HISTORY_TABLES:  # the history tables a notebook reads: same rows, order, dtypes
        assert sorted(os.listdir(a / name)) == sorted(os.listdir(b / name)), name
        if any((a / name).iterdir()):
            pd.testing.assert_frame_equal(pipeline.read_partitioned(a / name), pipeline.read_partitioned(b / name))
            muni = sorted(os.listdir(a / name))[-1].split("=")[1]
            pd.testing.assert_frame_equal(pipeline.read_partitioned(a / name, [muni]),
                                          pipeline.read_partitioned(b / name, [muni]))


def test_streamed_cache_equals_the_in_memory_cache_on_the_demo(demo_data_dir, tmp_path):
    """XML 健診 and UKE claims (the session's cache is built by the streamed path)."""
    streamed = Path(os.environ["HSUTILS_CACHE_DIR"])
    if (streamed / "tables_cache").is_dir():  # the parsed XML and the UKE store: not parsed again
        shutil.copytree(streamed / "tables_cache", tmp_path / "memory" / "tables_cache")
    memory = pipeline.prepare_cache(demo_data_dir, tmp_path / "memory", streamed=False)
    _same_cache(streamed, memory)
    meta = json.loads((streamed / "meta.json").read_text(encoding="utf-8"))
    assert list(meta["stages"]) == ["import", "partition", "shared_pass", "write"]
    assert all(s["peak_rss_mb"] > 0 and s["seconds"] >= 0 for s in meta["stages"].values())


def test_xml_kenshin_reaches_the_partitions_one_slice_at_a_time(demo_data_dir):
    """Issue 17: the pipeline's XML import hands the partition writer one validated slice of the 健診
    table at a time, never the whole table. The session's cache was built with slices of
    `conftest.XML_SLICE_DOCS` documents (the test above shows it equal to the whole-table path); its
    XML cache entry holds one row group per slice handed over, and a cache hit hands the same slices
    to the pipeline's sink."""
    from conftest import XML_SLICE_DOCS
    from hsutils.inputs import tokutei_xml as tx

    cache = Path(os.environ["HSUTILS_CACHE_DIR"])
    n_rows = json.loads((cache / "meta.json").read_text(encoding="utf-8"))["rows"]["kenshin"]
    assert n_rows > 2 * XML_SLICE_DOCS  # several slices
    _, _, files, _, _ = io.plan_folder(demo_data_dir)
    known = partition_import._known_munis(io.read_table(files["municipalities"], "municipalities").data)
    sizes = []
    r = tx.read_folder_cached(demo_data_dir, None, files.get("enrollment"), cache_dir=cache / "tables_cache",
                              known_munis=known, sink=lambda data, rows: sizes.append(len(data)))
    assert r.from_cache and len(r.data) == 0 and r.n_kept == n_rows
    assert sum(sizes) == n_rows and max(sizes) <= XML_SLICE_DOCS and len(sizes) >= -(-n_rows // XML_SLICE_DOCS)


TOWNS = ("17324", "17361", "17365")  # three small towns of the demo (a small, fast cache)


@pytest.fixture(scope="module")
def csv_folder(prepared, tmp_path_factory):
    """Three towns of the demo as CSV files (健診 and claims as CSV instead of XML and UKE; no
    保健指導 file), with a mover between two of them and bad rows at chunk boundaries."""
    out = tmp_path_factory.mktemp("csvdemo")
    py = prepared.person_year[prepared.person_year["muni_code"].isin(TOWNS)]
    enr = py[["person_id", "fy", "muni_code", "district_code", "sex", "age", "insurance"]].reset_index(drop=True)
    enr = enr.astype(str)
    # a person in 17361 every year moves to 川北町 (17324) after the first year
    fys = sorted(enr["fy"].unique())
    counts = enr.groupby("person_id")["fy"].nunique()
    pid = enr.loc[enr["person_id"].isin(counts[counts == len(fys)].index) & (enr["muni_code"] == "17361"),
                  "person_id"].iloc[0]
    enr.loc[(enr["person_id"] == pid) & (enr["fy"] != fys[0]), "muni_code"] = "17324"
    # row 2 + CHUNK (file row number of the first row of the second chunk): a bad sex; the last row
    # of the second chunk repeats a key of the first chunk (a duplicate across the boundary)
    assert len(enr) > 2 * CHUNK
    enr.loc[CHUNK, "sex"] = "9"
    enr.loc[2 * CHUNK - 1, ["person_id", "fy"]] = enr.loc[3, ["person_id", "fy"]].to_numpy()
    enr.to_csv(out / "enrollment.csv", index=False, encoding="cp932")
    kenshin = py[py["has_kenshin"]][["person_id", "fy", "muni_code", "sex", "age", "height", "weight", "bmi",
                                     "waist", "sbp", "dbp", "hba1c"]]
    kenshin.to_csv(out / "kenshin.csv", index=False)
    claims = prepared.tables["claims_monthly"]
    claims[claims["person_id"].isin(py["person_id"])].to_csv(out / "claims_monthly.csv", index=False)
    prepared.municipalities[["muni_code", "name", "pref_code", "medical_area"]].to_csv(
        out / "municipalities.csv", index=False)
    return out, pid


CHUNK = 211  # rows per chunk: the small demo's tables span several chunks


def test_streamed_cache_with_csv_chunks_a_bad_row_and_a_mover(csv_folder, tmp_path):
    folder, pid = csv_folder
    streamed = pipeline.prepare_cache(folder, tmp_path / "streamed", chunk_rows=CHUNK)
    memory = pipeline.prepare_cache(folder, tmp_path / "memory", streamed=False)
    _same_cache(streamed, memory)

    # the file's own row numbers, across the chunk boundary
    excl = pd.read_parquet(streamed / "exclusions.parquet")
    enr_excl = excl[excl["table"] == "enrollment"]
    assert enr_excl["row"].tolist() == [str(CHUNK + 2), str(2 * CHUNK + 1)]
    assert enr_excl["reason"].iloc[1].startswith("重複")
    # read = kept + excluded, per file
    s = pd.read_parquet(streamed / "import_summary.parquet").set_index("table")
    assert (s["read"] == s["kept"] + s["dropped_rows"]).all()
    n = len(pd.read_csv(folder / "enrollment.csv", dtype=str, encoding="cp932"))
    assert s.loc["enrollment", "read"] == n and s.loc["enrollment", "dropped_rows"] == 2
    # the mover: each year in its municipality, the whole history under both
    for muni in ("17361", "17324"):
        enr = pipeline.read_partitioned(streamed / "claims_monthly", [muni])
        assert (enr["person_id"] == pid).any()
    py = pipeline.load_prepared(streamed, munis=["17324"]).person_year
    assert sorted(py.loc[py["person_id"] == pid, "fy"]) == sorted(
        json.loads((streamed / "meta.json").read_text(encoding="utf-8"))["fiscal_years"])[1:]


def test_parquet_input_is_read_by_record_batches_with_file_row_numbers(tmp_path):
    df = pd.DataFrame({"person_id": [f"P{i}" for i in range(10)], "fy": [2023] * 10,
                       "muni_code": ["17201"] * 10, "sex": [1, 2] * 5, "age": [60.0] * 10,
                       "insurance": ["国保"] * 10, "months": [12.0] * 9 + [13.0]})
    df.loc[4, "sex"] = 7  # row 6 of the file (the header is row 1)
    df.to_parquet(tmp_path / "enrollment.parquet", index=False, row_group_size=3)
    chunks = list(io.iter_table_chunks(tmp_path / "enrollment.parquet", "enrollment", chunk_rows=4))
    assert [len(r.data) + r.n_dropped for r, _ in chunks] == [4, 4, 2]
    whole = io.read_table(tmp_path / "enrollment.parquet", "enrollment")
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "enrollment.parquet", "enrollment", chunk_rows=4).data,
                                  whole.data)
    bad = whole.exclusions
    assert bad["row"].tolist() == [6, 11]  # sex 7 (the row), 13 months (the value only)
    assert whole.data["months"].isna().sum() == 1 and whole.n_dropped == 1
    tally = io.ChunkTally("enrollment", "enrollment.parquet")
    for r, n in chunks:
        tally.add(r, n)
    got = tally.result()
    assert (got.n_read, got.n_kept, got.n_dropped) == (10, 9, 1)
    pd.testing.assert_frame_equal(got.exclusions, bad)
    assert tally.final_dtypes()["sex"] == "int64"
    assert np.array_equal(whole.row_numbers, np.array([2, 3, 4, 5, 7, 8, 9, 10, 11]))

"""A large CSV is read in chunks (bounded memory, docs/design.md §8.4): validation, duplicates and row
accounting per chunk give exactly the one-pass result, with the file's own row numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hsutils.inputs import io

HEADER = "被保険者番号,年度,市町村コード,地区コード,性別,年齢,保険種別,年度継続加入,加入月数,法定除外"


def _rows(n: int) -> list[str]:
    return [f"H{i:08d},2022,17201,1720101,{1 + i % 2},{41 + i % 30},国保,1,12,2" for i in range(1, n + 1)]


def _write(path, lines, encoding="cp932"):
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


def _same(a: io.LoadResult, b: io.LoadResult) -> None:
    pd.testing.assert_frame_equal(a.data, b.data)
    pd.testing.assert_frame_equal(a.exclusions.reset_index(drop=True), b.exclusions.reset_index(drop=True))
    pd.testing.assert_frame_equal(a.extra_columns, b.extra_columns)
    assert (a.n_read, a.n_kept, a.n_dropped) == (b.n_read, b.n_kept, b.n_dropped)
    assert np.array_equal(a.row_numbers, b.row_numbers)


def test_bad_row_in_second_chunk_keeps_its_file_row_number(tmp_path):
    lines = ["令和4年度 被保険者一覧", HEADER] + _rows(12)  # a title row above the header: data from line 3
    f = lines[2 + 6].split(",")
    f[4] = "9"  # 7th data row (file line 9): 性別 9
    lines[2 + 6] = ",".join(f)
    lines[2 + 9] = lines[2 + 2]  # 10th data row (file line 12) repeats the 3rd (line 5): same person and year
    path = _write(tmp_path / "enrollment.csv", lines)
    chunked = io.read_table(path, "enrollment", chunk_rows=5)  # chunks: lines 3–7, 8–12, 13–14
    whole = io.read_table(path, "enrollment")
    _same(chunked, whole)
    ex = chunked.exclusions
    assert ex["row"].tolist() == [9, 12]  # second chunk, counted in the file (title and header included)
    assert ex["column"].iloc[0] == "性別" and ex["value"].iloc[0] == "9"
    assert "重複" in ex["reason"].iloc[1]  # its first row was in the first chunk
    assert chunked.n_read == 12 and chunked.n_kept == 10 and chunked.n_dropped == 2
    assert chunked.n_read == chunked.n_kept + chunked.n_dropped


def test_chunks_with_blank_lines_and_incomplete_columns(tmp_path):
    lines = [HEADER] + _rows(9)
    lines.insert(4, "")  # an interior blank line (file line 5) is skipped with its number counted
    lines[8] = lines[8].replace(",1720101,", ",,")  # a blank optional 地区コード in the second chunk only
    path = _write(tmp_path / "enrollment.csv", lines, encoding="utf-8")
    chunked = io.read_table(path, "enrollment", chunk_rows=4)
    whole = io.read_table(path, "enrollment")
    _same(chunked, whole)
    assert chunked.warnings == whole.warnings
    assert chunked.row_numbers.tolist() == [2, 3, 4, 6, 7, 8, 9, 10, 11]


def test_a_chunk_tally_keeps_no_rows_alive():
    """ChunkTally keeps each chunk's counts, not its arrays (an empty slice of a frame is a view
    that would keep the whole chunk in memory: bounded import, docs/design.md §8.4)."""
    import numpy as np
    import pandas as pd

    from hsutils.inputs import io

    tally = io.ChunkTally("claims_monthly", "claims.csv")
    cols = {c.name: pd.Series(np.arange(100_000) % 7) for c in io.TABLES["claims_monthly"].columns}
    r = io.LoadResult(data=pd.DataFrame(cols), exclusions=io._empty_exclusions(), n_read=100_000,
                      n_kept=100_000, n_dropped=0, warnings=[], extra_columns=pd.DataFrame(index=range(100_000)),
                      file="claims.csv", table="claims_monthly", row_numbers=np.arange(100_000))
    tally.add(r, 100_000)
    kept = tally.results[0].data
    assert len(kept) == 0
    for block in kept._mgr.blocks:
        base = getattr(block.values, "base", None)
        assert base is None or base.nbytes == 0


def test_a_chunk_tally_keeps_no_arrow_strings_alive():
    """An Arrow-backed text column (pandas' `str` dtype) survives `.iloc[:0].copy()`: the copy shares
    the immutable Arrow buffers, so every chunk's person ids stayed in memory (about 29 bytes per
    claim row at scale 4). The tally's empties own no buffer of the chunk."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from hsutils.inputs import io

    n = 200_000
    data = pd.DataFrame({c.name: np.arange(n) for c in io.TABLES["claims_monthly"].columns})
    data["person_id"] = pd.Series([f"P{i:09d}" for i in range(n)], dtype="str")
    extra = pd.DataFrame({"memo": pd.Series(["x" * 20] * n, dtype="str")})
    r = io.LoadResult(data=data, exclusions=io._empty_exclusions(), n_read=n, n_kept=n, n_dropped=0,
                      warnings=[], extra_columns=extra, file="claims.csv", table="claims_monthly",
                      row_numbers=np.arange(n))
    tally = io.ChunkTally("claims_monthly", "claims.csv")
    before = pa.total_allocated_bytes()
    tally.add(r, n)
    del r, data, extra
    freed = before - pa.total_allocated_bytes()
    assert freed > n * 10  # the chunk's text buffers (≥ 10 bytes a row) are released
    kept = tally.results[0]
    assert len(kept.data) == 0 and str(kept.data["person_id"].dtype) == "str"
    assert list(kept.extra_columns.columns) == ["memo"] and str(kept.extra_columns["memo"].dtype) == "str"


def _claims_lines(n: int) -> list[str]:
    header = "被保険者番号,市町村コード,診療年月,糖尿病,外来医療費"
    return [header] + [f"P{i:05d},17201,2023{4 + i % 9:02d},1,{1000 + i}" for i in range(n)]


def test_prefetch_in_a_helper_process_gives_the_same_chunks(tmp_path):
    """`prefetch=True`: each chunk is read and checked in a helper process and only the look-back over
    the earlier chunks runs in the caller (docs/design.md §8.4); the chunks, exclusions and counts are
    those of the one-process reading. File rows (header = line 1): line 6 has a bad 診療年月 (chunk 2
    of 4-row chunks starts at line 6), line 8 repeats line 3's key (a duplicate across chunks),
    line 9 repeats line 7's key (within its chunk), line 11 has a bad optional 外来医療費 (its value only)."""
    lines = _claims_lines(12)
    lines[5] = lines[5].replace(",2023", ",2023-13-", 1)  # line 6: 診療年月 "2023-13-xx"
    lines[7] = lines[2]                                  # line 8 = line 3 (earlier chunk)
    lines[8] = lines[6]                                  # line 9 = line 7 (same chunk)
    lines[10] = lines[10].rsplit(",", 1)[0] + ",abc"     # line 11: 外来医療費 not a number
    path = _write(tmp_path / "claims_monthly.csv", lines, encoding="utf-8")
    one = list(io.iter_table_chunks(path, "claims_monthly", chunk_rows=4))
    two = list(io.iter_table_chunks(path, "claims_monthly", chunk_rows=4, prefetch=True))
    assert [n for _, n in one] == [n for _, n in two] == [4, 4, 4]
    for (a, _), (b, _) in zip(one, two):
        _same(a, b)
        assert a.warnings == b.warnings
    ex = pd.concat([r.exclusions for r, _ in two], ignore_index=True)
    assert ex["row"].tolist() == [6, 8, 9, 11]
    assert ex["scope"].tolist() == [io.SCOPE_ROW, io.SCOPE_ROW, io.SCOPE_ROW, io.SCOPE_VALUE]
    assert ex["reason"].str.startswith("重複").tolist() == [False, True, True, False]
    assert ex["value"].iloc[3] == "abc"
    assert [r.n_kept for r, _ in two] == [4, 1, 4]  # 12 rows − 1 bad − 2 duplicates (line 11 keeps its row)
    assert two[2][0].data["cost_outpatient"].isna().tolist() == [False, True, False, False]


def test_prefetch_raises_the_helpers_data_error_in_japanese(tmp_path):
    lines = _claims_lines(8)
    lines[7] = lines[7] + ",1,2"  # line 8 (second chunk) has more cells than the header
    path = _write(tmp_path / "claims_monthly.csv", lines, encoding="utf-8")
    import pytest

    from hsutils.core.errors import DataError

    with pytest.raises(DataError, match="列数が行によって異なる"):
        list(io.iter_table_chunks(path, "claims_monthly", chunk_rows=4, prefetch=True))


def _chunk_helpers() -> list:
    """This process's live chunk-helper processes (`io._chunk_worker_main`), found by their command
    line: other children of a test worker (a kernel or a Dask process another test left to finish
    stopping) are not the helper."""
    import psutil

    out = []
    for p in psutil.Process().children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "_chunk_worker_main" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:  # ended meanwhile
            continue
    return out


def test_prefetch_helper_stops_when_the_caller_stops(tmp_path):
    path = _write(tmp_path / "claims_monthly.csv", _claims_lines(40), encoding="utf-8")
    chunks = io.iter_table_chunks(path, "claims_monthly", chunk_rows=4, prefetch=True)
    first, n = next(chunks)
    assert n == 4 and first.n_kept == 4
    assert len(_chunk_helpers()) == 1  # the helper, one chunk ahead
    chunks.close()
    assert _chunk_helpers() == []


def test_typed_parquet_columns_are_categoricals_of_each_values_text():
    """A typed Parquet column's text (`io._parquet_text`) is that of each value on its own: an
    integral float as an integer, a date without its time, blank where missing; the distinct values
    that share a text (two times of one day) are one category."""
    df = pd.DataFrame({
        "f": [3.0, 3.5, np.nan, -0.0, 3.0],
        "b": pd.array([True, False, None, True, True], dtype="boolean"),
        "d": pd.to_datetime(["2024-05-01 08:00", "2024-05-01 20:00", None, "2023-01-02 00:00", "2024-05-01 00:00"]),
        "i": [202404, 202405, 202404, 7, 7],
        "s": ["P1", "P2", None, "P4", "P5"],
    })
    raw = io._parquet_text(df, 2)
    f = raw.frame
    assert f["f"].tolist() == ["3", "3.5", "", "0", "3"]
    assert f["b"].tolist() == ["TRUE", "FALSE", "", "TRUE", "TRUE"]
    assert f["d"].tolist() == ["2024-05-01", "2024-05-01", "", "2023-01-02", "2024-05-01"]
    assert sorted(f["d"].cat.categories) == ["", "2023-01-02", "2024-05-01"]
    assert f["i"].tolist() == ["202404", "202405", "202404", "7", "7"]
    assert str(f["s"].dtype) == "str" and f["s"].tolist() == ["P1", "P2", "", "P4", "P5"]
    assert raw.row_numbers.tolist() == [2, 3, 4, 5, 6]


def test_a_failing_streamed_import_leaves_no_helper_or_writer_running(tmp_path, monkeypatch):
    """An error in a chunk of the claims (its 3rd chunk has more cells than the header) stops the
    streamed import with the file's Japanese message; the helper process and the part writers'
    threads of the tables read before are stopped (docs/design.md §8.4)."""
    import threading

    import pytest

    from hsutils.analysis import partition_import
    from hsutils.core.errors import DataError

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "enrollment.csv", [HEADER] + _rows(12), encoding="utf-8")
    _write(data / "kenshin.csv", ["被保険者番号,年度,市町村コード", "H00000001,2022,17201"], encoding="utf-8")
    lines = _claims_lines(12)
    lines[10] = lines[10] + ",1,2"
    _write(data / "claims_monthly.csv", lines, encoding="utf-8")
    monkeypatch.setattr(partition_import._PartWriter, "FLUSH_ROWS", 2)  # part files (threads) from the first chunk
    with pytest.raises(DataError, match="claims_monthly.csv: CSV の列数"):
        partition_import.stream_inputs(data, tmp_path / "parts", chunk_rows=4)
    assert _chunk_helpers() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("parts-")]

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

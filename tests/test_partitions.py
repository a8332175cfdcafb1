"""Partitioned person-level cache (docs/design.md §8.1, §8.2): a municipal run reads only its
municipality's partitions and gets exactly the rows of the single-process table."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hsutils.analysis import pipeline


def _tables():
    """Three persons: P1 stays in 17201, P2 moves 17201 → 17324 in 2023, P3 stays in 17324; P9 has
    claims but no enrollment row."""
    enr = pd.DataFrame({"person_id": ["P1", "P2", "P3", "P1", "P2", "P3"],
                        "fy": [2022, 2022, 2022, 2023, 2023, 2023],
                        "muni_code": ["17201", "17201", "17324", "17201", "17324", "17324"]})
    claims = pd.DataFrame({"person_id": ["P2", "P1", "P3", "P2", "P9"],
                           "muni_code": ["17201", "17201", "17324", "17324", "17201"],
                           "ym": [202205, 202206, 202207, 202305, 202304]})
    py = enr.assign(sex=[1, 2, 1, 1, 2, 1], flag=[True, False, True, False, True, False])
    return py, {"enrollment": enr, "claims_monthly": claims}


def test_partitions_hold_the_municipality_rows_and_the_movers_history(tmp_path):
    py, tables = _tables()
    pipeline.write_partitioned(py, tmp_path, tables)
    assert sorted(p.name for p in (tmp_path / "person_year").iterdir()) == ["muni=17201", "muni=17324"]
    assert sorted(p.name for p in (tmp_path / "person_year" / "muni=17324").iterdir()) == ["year=2022", "year=2023"]

    # a municipal read: exactly the rows (order, index labels, dtypes) of the single-process table
    for muni in ("17201", "17324"):
        got = pipeline.read_partitioned(tmp_path / "person_year", [muni])
        pd.testing.assert_frame_equal(got, py[py["muni_code"] == muni])
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "person_year"), py)

    # mover rule: P2's whole claims history is under both municipalities; P9 (no enrollment) under
    # its own; reading everything gives each claim once, in the original order
    c = tables["claims_monthly"]
    kanazawa = pipeline.read_partitioned(tmp_path / "claims_monthly", ["17201"])
    assert kanazawa["ym"].tolist() == [202205, 202206, 202305, 202304]  # P2 (both years), P1, P9
    kawakita = pipeline.read_partitioned(tmp_path / "claims_monthly", ["17324"])
    assert kawakita["ym"].tolist() == [202205, 202207, 202305]  # P2 (both years), P3
    pd.testing.assert_frame_equal(kawakita, c.loc[[0, 2, 3]])
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "claims_monthly"), c)
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "claims_monthly", ["17201", "17324"]), c)
    # a read with a column list says which columns it left out (schema.UNREAD_COLUMNS): a rule needing
    # one raises instead of taking it as absent from the data (hsutils.rules.programs)
    some = pipeline.read_partitioned(tmp_path / "claims_monthly", ["17201"], columns=("person_id", "ym"))
    assert some.columns.tolist() == ["person_id", "ym"] and some.attrs["unread_columns"] == ("muni_code",)
    assert "unread_columns" not in kanazawa.attrs


def _small_cache(tmp_path):
    py, tables = _tables()
    pipeline.write_partitioned(py, tmp_path, tables)
    (tmp_path / "meta.json").write_text('{"data_hash": "h1", "cache_version": "6", "fiscal_years": [2022, 2023]}',
                                        encoding="utf-8")
    return py, tables


def test_each_municipality_reads_what_a_municipal_run_reads(tmp_path):
    """One municipality at a time: its own person_year rows and its persons' whole claims history
    (the mover P2 in both), as `load_prepared(munis=[m])` would read them; only partitions that exist."""
    py, tables = _small_cache(tmp_path)
    assert pipeline.partition_munis(tmp_path) == ["17201", "17324"]
    got = list(pipeline.each_municipality(tmp_path, {"claims_monthly": ("person_id", "ym")}))
    assert [m for m, _, _ in got] == ["17201", "17324"]
    for muni, person_year, t in got:
        pd.testing.assert_frame_equal(person_year, py[py["muni_code"] == muni])
    assert got[0][2]["claims_monthly"]["ym"].tolist() == [202205, 202206, 202305, 202304]  # P2 ×2, P1, P9
    assert got[1][2]["claims_monthly"]["ym"].tolist() == [202205, 202207, 202305]  # P2 ×2, P3
    only = list(pipeline.each_municipality(tmp_path, munis=["17324"]))
    assert [m for m, _, _ in only] == ["17324"] and only[0][2] == {}


def test_each_municipality_read_ahead_on_a_thread_equals_reading_in_turn(tmp_path, monkeypatch):
    """The next municipality is read on a thread while the caller counts this one
    (`parallel.read_ahead`): the same municipalities, in the same order, with the same frames as
    reading one after the other on one core."""
    from hsutils.core import parallel

    _small_cache(tmp_path)
    cols = {"claims_monthly": ("person_id", "ym")}
    ahead = list(pipeline.each_municipality(tmp_path, cols))
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    in_turn = list(pipeline.each_municipality(tmp_path, cols))
    assert [m for m, _, _ in ahead] == [m for m, _, _ in in_turn] == ["17201", "17324"]
    for (_, py_a, t_a), (_, py_b, t_b) in zip(ahead, in_turn):
        pd.testing.assert_frame_equal(py_a, py_b, check_exact=True)
        pd.testing.assert_frame_equal(t_a["claims_monthly"], t_b["claims_monthly"], check_exact=True)


def test_read_ahead_keeps_the_order_and_reads_one_item_ahead(monkeypatch):
    """`parallel.read_ahead`: results in the order of the items; while the caller holds item i, at
    most item i + 1 has been read (never two ahead); an error of the reader is raised for its own
    item, after the items before it; one core or one item: all on the calling thread."""
    import threading

    from hsutils.core import parallel

    monkeypatch.setattr(parallel, "cores", lambda: 2)
    started, threads = [], set()

    def read(i):
        started.append(i)
        threads.add(threading.current_thread().name)
        if i == 4:
            raise ValueError("item 4 unreadable")
        return i * 10

    got = []
    with pytest.raises(ValueError, match="item 4"):
        for value in parallel.read_ahead(read, range(6)):
            held = value // 10
            assert max(started) <= held + 1  # one ahead at most
            got.append(value)
    assert got == [0, 10, 20, 30] and 5 not in started  # nothing read past the failing item's successor
    assert threads == {t for t in threads if t.startswith("hsutils-read-ahead")}
    assert list(parallel.read_ahead(read, [])) == []
    threads.clear()
    assert list(parallel.read_ahead(read, [3])) == [30] and threads == {threading.current_thread().name}
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    threads.clear()
    assert list(parallel.read_ahead(read, [1, 2, 3])) == [10, 20, 30] and threads == {threading.current_thread().name}


def test_rows_put_in_order_on_threads_equal_one_thread(tmp_path, monkeypatch):
    """Reading every partition puts the rows back in the single-process order (a mover read once); with
    the columns gathered on threads (`_take_rows`, forced from 0 rows on 2 and 3 cores) the frame is
    the same as with Arrow's one-thread take."""
    from hsutils.core import parallel

    _small_cache(tmp_path)
    import pyarrow.dataset as ds

    one = pipeline.read_partitioned(tmp_path / "claims_monthly")
    stored = ds.dataset(tmp_path / "claims_monthly", format="parquet", partitioning="hive").to_table(
        columns=[pipeline.ROW]).column(0).to_numpy()
    assert not (np.diff(stored) > 0).all()  # the files' rows are out of order (P2 twice): the gather runs
    assert one.index.tolist() == sorted(set(stored.tolist()))
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)
    for cores in (2, 3):
        monkeypatch.setattr(parallel, "cores", lambda cores=cores: cores)
        pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "claims_monthly"), one, check_exact=True)
    table = pa.table({"a": [1, 2, 3], "s": ["x", None, "z"], "f": [0.5, 1.5, None]})
    idx = np.array([2, 0, 1])
    assert pipeline._take_rows(table, idx).equals(table.take(idx))


def test_derived_table_is_built_once_per_cache_and_key(tmp_path):
    """The first call builds and writes `derived/<name>_<key>.parquet` and returns what was written (read
    back); the second call with the same key reads it without building; another key (or another
    data hash of the cache) builds again."""
    _small_cache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return pd.DataFrame({"muni_code": ["17201", "17324"], "n": np.array([3, 2], dtype=np.int64)})

    first = pipeline.derived_table(tmp_path, "demo", build, key=(1, {"months": 12}))
    assert len(calls) == 1
    assert first["n"].tolist() == [3, 2] and first["muni_code"].tolist() == ["17201", "17324"]
    again = pipeline.derived_table(tmp_path, "demo", build, key=(1, {"months": 12}))
    assert len(calls) == 1
    pd.testing.assert_frame_equal(again, first)
    assert len(list((tmp_path / "derived").glob("demo_*.parquet"))) == 1
    assert not list((tmp_path / "derived").glob(".*"))  # no temporary file left (atomic write)
    pipeline.derived_table(tmp_path, "demo", build, key=(1, {"months": 13}))
    assert len(calls) == 2
    (tmp_path / "meta.json").write_text('{"data_hash": "h2", "cache_version": "6"}', encoding="utf-8")
    pipeline.derived_table(tmp_path, "demo", build, key=(1, {"months": 12}))
    assert len(calls) == 3
    assert len(list((tmp_path / "derived").glob("demo_*.parquet"))) == 3


def test_derived_table_asked_at_once_is_built_once_and_the_others_wait(tmp_path):
    """Two runs asking for the same derived table at the same moment (a batch's jobs): one builds it
    under the lock, the other waits and reads the file; both get the same frame."""
    import threading
    import time

    _small_cache(tmp_path)
    calls, got = [], {}
    started = threading.Event()

    def build():
        calls.append(threading.current_thread().name)
        started.set()
        time.sleep(0.5)  # the other run asks meanwhile
        return pd.DataFrame({"muni_code": ["17201"], "n": np.array([7], dtype=np.int64)})

    def run(name):
        got[name] = pipeline.derived_table(tmp_path, "demo", build, key=(1,))

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    first.join(20)
    second.join(20)
    assert calls == ["first"]
    pd.testing.assert_frame_equal(got["first"], got["second"])
    assert got["second"]["n"].tolist() == [7]
    assert len(list((tmp_path / "derived").glob("demo_*.parquet"))) == 1


def test_partition_members_lists_every_municipality_of_a_person():
    _, tables = _tables()
    m = pipeline.partition_members(tables["enrollment"])
    assert sorted(map(tuple, m.to_numpy().tolist())) == [("P1", "17201"), ("P2", "17201"), ("P2", "17324"),
                                                         ("P3", "17324")]


@pytest.fixture(scope="module")
def cache():
    return Path(os.environ["HSUTILS_CACHE_DIR"])


def test_municipal_load_equals_the_filtered_prefecture(cache, prepared):
    muni = "17324"  # 川北町, the smallest town of the demo
    part = pipeline.load_prepared(cache, with_tables=True, munis=[muni])
    full = prepared.person_year
    pd.testing.assert_frame_equal(part.person_year, full[full["muni_code"] == muni])
    ids = part.person_year["person_id"].unique()
    for name, t in prepared.tables.items():
        pd.testing.assert_frame_equal(part.tables[name], t[t["person_id"].isin(ids)])
    # the look-back of a municipal run is the data's: the first claims month of the whole data
    first = int(prepared.tables["claims_monthly"]["ym"].min())
    assert part.tables["claims_monthly"].attrs["first_ym"] == first
    from hsutils.rules import programs

    assert int(programs.claims_history(part.tables["claims_monthly"], [2022])["first_ym"].iloc[0]) == first
    assert part.fiscal_years == prepared.fiscal_years
    pd.testing.assert_frame_equal(part.strata, prepared.strata)
    assert np.all(part.person_year.index.isin(full.index))


# ---------------------------------------------------------------- the shared pass per partition

@pytest.fixture(scope="module")
def demo_tables(cache, demo_data_dir):
    """Five towns of the demo's canonical tables with two movers added (docs/design.md §8.2): a
    person of 七尾市 enrolled in 川北町 from the second fiscal year on, and one of 津幡町 moving to 七尾市."""
    from hsutils.inputs import io

    tables = dict(io.load_dataset(demo_data_dir, cache_dir=cache / "tables_cache").tables)
    towns = ["17202", "17324", "17361", "17365", "17407"]  # five towns: the tests stay fast
    keep = set(tables["enrollment"].loc[tables["enrollment"]["muni_code"].isin(towns), "person_id"])
    for name in pipeline.PARTITION_INPUTS:
        if name in tables:
            tables[name] = tables[name][tables[name]["person_id"].isin(keep)].reset_index(drop=True)
    enr = tables["enrollment"].copy()
    fys = sorted(enr["fy"].unique())
    movers = []
    for src, dst in (("17202", "17324"), ("17361", "17202")):
        counts = enr[enr["muni_code"] == src].groupby("person_id")["fy"].nunique()
        pid = counts[counts == len(fys)].index[0]
        later = (enr["person_id"] == pid) & (enr["fy"] > fys[0])
        enr.loc[later, "muni_code"] = dst
        movers.append((pid, src, dst))
    tables["enrollment"] = enr
    return tables, movers


@pytest.fixture(scope="module")
def single(demo_tables):
    """person_year and strata of the single-process path (with the movers)."""
    py, _ = pipeline.build_person_year(demo_tables[0])
    return py, pipeline.build_strata(py)


def test_partitioned_pass_equals_the_single_process_pass_with_movers(demo_tables, single, tmp_path):
    tables, movers = demo_tables
    py, strata = single

    sizes = pipeline.write_partition_inputs(tables, tmp_path)
    tasks = pipeline.plan_tasks(sizes, task_rows=int(sizes.sum()) // 3)  # three tasks or so
    assert len(tasks) >= 2 and sorted(m for t in tasks for m in t) == sorted(sizes.index)
    first = int(tables["claims_monthly"]["ym"].min())
    results = pipeline.run_partitions(tmp_path, tasks, first, in_process=True)
    assert [r.error for r in results] == [""] * len(tasks)
    assert sum(r.rows for r in results) == len(py)

    pd.testing.assert_frame_equal(pipeline.combine_partition_strata(results), strata)
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "person_year"), py)
    for pid, src, dst in movers:
        # each person × year row once, in the municipality of that year …
        rows = pipeline.read_partitioned(tmp_path / "person_year", [dst])
        assert rows.loc[rows["person_id"] == pid, "fy"].tolist() == sorted(tables["enrollment"]["fy"].unique())[1:]
        rows = pipeline.read_partitioned(tmp_path / "person_year", [src])
        assert rows.loc[rows["person_id"] == pid, "fy"].tolist() == [min(tables["enrollment"]["fy"])]
        # … and the whole history under both municipalities
        for muni in (src, dst):
            enr = pipeline.read_partitioned(tmp_path / "enrollment", [muni])
            assert len(enr[enr["person_id"] == pid]) == tables["enrollment"]["fy"].nunique()


def test_a_failing_partition_is_reported_and_the_others_complete(demo_tables, tmp_path):
    tables, _ = demo_tables
    pipeline.write_partition_inputs(tables, tmp_path)
    (tmp_path / "kenshin" / "muni=17324" / "part-0.parquet").write_bytes(b"not a parquet file")  # bad data
    results = pipeline.run_partitions(tmp_path, [["17202"], ["17324"], ["17361"]], None, in_process=True)
    assert [r.muni for r in results] == ["17202", "17324", "17361"]
    assert results[1].error.startswith("ArrowInvalid") and results[1].rows == 0
    assert not results[0].error and not results[2].error
    assert results[2].rows == int((tables["enrollment"]["muni_code"] == "17361").sum())
    assert (tmp_path / "person_year" / "muni=17361").is_dir()
    assert not (tmp_path / "person_year" / "muni=17324").exists()


def test_plan_tasks_groups_small_towns_and_keeps_large_cities_alone():
    sizes = pd.Series({"17201": 500, "17202": 40, "17203": 30, "17324": 10, "17361": 90})
    assert pipeline.plan_tasks(sizes, task_rows=100) == [["17201"], ["17202", "17203", "17324"], ["17361"]]
    assert pipeline.plan_tasks(sizes, task_rows=10_000) == [list(sizes.index)]


def test_person_slices_cut_a_municipality_by_running_enrollment_rows(tmp_path):
    """docs/design.md §8.3: a municipality above task_rows is cut into person_id ranges of about
    equal enrollment rows. Persons (rows): A 2, B 1, C 3, D 2 = 8, running 2, 3, 6, 8."""
    enr = pd.DataFrame({"person_id": ["C", "A", "D", "C", "B", "A", "D", "C", "X"],
                        "fy": [2022, 2022, 2022, 2023, 2022, 2023, 2023, 2024, 2022],
                        "muni_code": ["17201"] * 8 + ["17324"]})
    sizes = pipeline.write_partition_inputs({"enrollment": enr}, tmp_path)
    assert sizes.to_dict() == {"17201": 8, "17324": 1}
    # two parts: the first ends where the running count reaches 4 (C, 6); the second at 8 (D)
    two = pipeline.slice_municipality(tmp_path / "enrollment", "17201", 2)
    assert [(s.first, s.last, s.part, s.parts) for s in two] == [("A", "C", 0, 2), ("D", "D", 1, 2)]
    # four parts: targets 2, 4, 6, 8 end at A, C, C, D; the repeated end is one slice
    four = pipeline.slice_municipality(tmp_path / "enrollment", "17201", 4)
    assert [(s.first, s.last) for s in four] == [("A", "A"), ("B", "C"), ("D", "D")]
    assert [s.label for s in four] == ["17201（1/3）", "17201（2/3）", "17201（3/3）"]
    # plan_tasks slices only when given the partitions' folder; the small town stays a group
    tasks = pipeline.plan_tasks(sizes, task_rows=4, folder=tmp_path)
    assert tasks[:2] == two and tasks[2:] == [["17324"]]
    assert pipeline.plan_tasks(sizes, task_rows=4) == [["17201"], ["17324"]]
    # a slice reads only its persons, each once, with the single-process row positions
    got = pipeline.read_partitioned(tmp_path / "enrollment", ["17201"], persons=("D", "D"), keep_row=True)
    assert got["person_id"].tolist() == ["D", "D"] and got["_row"].tolist() == [2, 6]


def test_sliced_municipalities_give_the_single_process_pass(demo_tables, single, tmp_path):
    """Every municipality above task_rows cut into person slices (in this process): the same
    strata and person_year as the single-process path, movers included."""
    tables, _ = demo_tables
    py, strata = single
    sizes = pipeline.write_partition_inputs(tables, tmp_path)
    task_rows = int(sizes.max()) // 3
    tasks = pipeline.plan_tasks(sizes, task_rows=task_rows, folder=tmp_path)
    slices = [t for t in tasks if isinstance(t, pipeline.PersonSlice)]
    assert len(slices) >= 3
    results = pipeline.run_partitions(tmp_path, tasks, int(tables["claims_monthly"]["ym"].min()), in_process=True)
    assert [r.error for r in results] == [""] * len(tasks)
    assert sum(r.rows for r in results) == len(py)
    pd.testing.assert_frame_equal(pipeline.combine_partition_strata(results), strata)
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "person_year"), py)
    big = slices[0].muni
    files = sorted(p.name for p in (tmp_path / "person_year" / f"muni={big}").glob("year=*/*.parquet"))
    assert {f"part-{s.part}.parquet" for s in slices if s.muni == big} == set(files)


def test_a_two_process_local_cluster_gives_the_single_process_strata(demo_tables, single, tmp_path):
    """docs/design.md §8.3: the same tasks on dask.distributed (2 worker processes)."""
    tables, _ = demo_tables
    py, strata = single
    sizes = pipeline.write_partition_inputs(tables, tmp_path)
    tasks = pipeline.plan_tasks(sizes, task_rows=int(sizes.sum()) // 2 + 1)  # two or three tasks
    assert len(tasks) >= 2
    results = pipeline.run_partitions(tmp_path, tasks, int(tables["claims_monthly"]["ym"].min()), workers=2)
    assert [r.error for r in results] == [""] * len(tasks)
    assert [r.muni for r in results] == ["・".join(t) for t in tasks]
    pd.testing.assert_frame_equal(pipeline.combine_partition_strata(results), strata)
    pd.testing.assert_frame_equal(pipeline.read_partitioned(tmp_path / "person_year"), py)


def test_scheduler_address_comes_from_the_argument_or_the_environment(monkeypatch):
    from hsutils.analysis import cluster

    monkeypatch.delenv(cluster.ENV_SCHEDULER, raising=False)
    assert cluster.scheduler_address(None) is None
    monkeypatch.setenv(cluster.ENV_SCHEDULER, "tcp://10.0.0.5:8786")
    assert cluster.scheduler_address(None) == "tcp://10.0.0.5:8786"
    assert cluster.scheduler_address("tcp://h:1") == "tcp://h:1"
    assert cluster.local_workers(task_memory=1) == (os.cpu_count() or 1)

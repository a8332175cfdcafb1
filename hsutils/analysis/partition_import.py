"""The streamed import of an input folder into the per-municipality input partitions
(docs/design.md §8.4): what `hsutils.analysis.pipeline.prepare_cache` reads, in bounded memory.

Each input table is read and validated chunk by chunk (`hsutils.inputs.io.iter_table_chunks`: CSV/TSV
chunks, Parquet record batches, xlsx whole; 特定健診 XML through `hsutils.inputs.tokutei_xml`; the UKE
claims month by month from their store, `hsutils.inputs.claims_import.ClaimsStore.iter_rows`) and each
chunk is written at once into the municipality partitions (the mover rule, docs/design.md §8.2) as
part files; no step holds a whole table. What needs the whole enrollment uses small key columns only:
the sorted person ids (Arrow strings), each enrollment row's person code, fiscal year and
municipality (integers). The counts, exclusions and warnings add up per chunk to those of
`hsutils.inputs.io.load_dataset`, and every row carries `_row`, its position in the table
`load_dataset` gives, so the cache is the one of the in-memory path (tests/test_partition_import.py).
Once a table is read, each municipality's part files are put together into one file in the
table's canonical dtypes (a column is `int64` only when no row of the whole table lacks it), one part
(row group) at a time; readers order the rows by `_row`."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hsutils.core import distinct
from hsutils.core.schema import TABLES
from hsutils.inputs import io, person_keys

#: the tables written into the municipality partitions (the others are small masters, read whole)
PERSON_TABLES = ("enrollment", "kenshin", "guidance", "claims_monthly", "kaigo", "questionnaire",
                 "diagnoses", "prescriptions", "medical_costs")
#: rows of the 特定保健指導 table from XML written per part (the reader returns it whole; the 健診
#: table is handed over slice by slice, `_XmlSink`)
XML_WRITE_ROWS = 500_000
#: a chunked CSV/Parquet file is read and checked in a helper process one chunk ahead, while this
#: process writes the previous chunk into the partitions (`io.iter_table_chunks(prefetch=True)`:
#: the second core of a 2-core PC; the same results)
PREFETCH = (os.cpu_count() or 1) > 1


@dataclass
class StreamedImport:
    """What `prepare_cache` needs besides the partitions (all small)."""
    summary: pd.DataFrame
    exclusions: pd.DataFrame
    warnings: list
    unmatched: pd.DataFrame
    rows: dict                      # rows per table (every table of the schema, in its order)
    fiscal_years: list
    first_ym: int | None            # the first claims month of the whole data
    municipalities: pd.DataFrame | None
    districts: pd.DataFrame | None
    enrollment_munis: list          # municipality codes of the enrollment rows
    sizes: pd.Series                # enrollment rows stored per municipality (movers in each)
    stages: dict = field(default_factory=dict)


# ---------------------------------------------------------------- peak memory per stage

def _rss_mb() -> float:
    """The process's resident memory now (MB; Linux /proc, else getrusage's peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class PeakMemory:
    """Peak resident memory (MB) of this process while it is running: sampled every 50 ms by a
    thread (the kernel's own peak, VmHWM / ru_maxrss, covers the whole process and can be reset only
    by wiping it for every other reader, e.g. `/usr/bin/time`)."""

    def __init__(self, interval: float = 0.05):
        import threading

        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _rss_mb())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())
        return round(self.peak, 1)


class Stages:
    """Seconds and peak RSS (MB, this process) of each stage of the shared pass, for meta.json."""

    def __init__(self):
        self.out: dict = {}
        self._name, self._t0, self._mem = None, 0.0, None

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._t0, self._mem = name, time.perf_counter(), PeakMemory()

    def stop(self) -> None:
        if self._name is not None:
            self.out[self._name] = {"seconds": round(time.perf_counter() - self._t0, 2),
                                    "peak_rss_mb": self._mem.stop()}
            self._name = None


# ---------------------------------------------------------------- who is enrolled where

class _Persons:
    """The enrollment's small key columns: the sorted person ids, and for each person the
    municipalities where they are enrolled in any year (docs/design.md §8.2); the (person, fiscal
    year) pairs of the enrollment (for the unmatched rows)."""

    def __init__(self, ids: list, fys: list, munis: list):
        # ids, munis: Arrow string arrays per enrollment chunk; fys: integer arrays
        self.ids = pa.chunked_array(ids, type=pa.string())
        self.munis = pa.chunked_array(munis, type=pa.string())
        self.index = pd.Index(pc.unique(self.ids).sort().to_numpy(zero_copy_only=False), dtype=object)
        self.index.get_indexer(self.index[:1])  # its hash table, built once, serves every chunk
        names = pc.unique(self.munis).sort()
        self.muni_names = np.asarray(names.to_numpy(zero_copy_only=False), dtype=object)
        muni_code = np.asarray(pc.index_in(self.munis, value_set=names).to_numpy(zero_copy_only=False),
                               dtype=np.int64)
        code = np.concatenate([self.codes(a.to_numpy(zero_copy_only=False)) for a in ids]) if ids else \
            np.zeros(0, np.int64)
        fy = np.concatenate(fys).astype(np.int64) if fys else np.zeros(0, np.int64)
        self.fy = fy.astype(np.int16)
        self.fy_min = int(fy.min()) if len(fy) else 0
        self.fy_span = int(fy.max()) - self.fy_min + 1 if len(fy) else 1
        self.person_fy = distinct.unique_sorted(code * self.fy_span + (fy - self.fy_min))
        self.fiscal_years = sorted(int(f) for f in np.unique(fy))
        n_munis = max(len(self.muni_names), 1)
        pairs = distinct.unique_sorted(code * n_munis + muni_code)
        del code, fy, muni_code
        p_code, p_muni = pairs // n_munis, pairs % n_munis
        first = np.ones(len(pairs), bool)
        first[1:] = p_code[1:] != p_code[:-1]
        self.home = np.full(len(self.index), -1, np.int64)
        self.home[p_code[first]] = p_muni[first]
        self.mover = np.zeros(len(self.index), bool)
        self.mover[p_code[~first]] = True
        self.extra = pd.DataFrame({"code": p_code[~first], "muni": p_muni[~first]})  # movers' other munis

    def codes(self, person_id) -> np.ndarray:
        """Position of each person id in the sorted ids (-1: not in the enrollment)."""
        return person_keys.positions(self.index, person_id)

    def enrolled_in_fy(self, code: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Whether each (person, fiscal year) has an enrollment row."""
        ok = (code >= 0) & (fy >= self.fy_min) & (fy < self.fy_min + self.fy_span)
        key = code * self.fy_span + (fy - self.fy_min)
        pos = np.searchsorted(self.person_fy, key)
        hit = pos < len(self.person_fy)
        hit[hit] = self.person_fy[pos[hit]] == key[hit]
        return ok & hit

    def enrollment_keys(self) -> pd.DataFrame:
        """person_id, fy, muni_code of every enrollment row (for linking XML and UKE receipts to a
        municipality), as text columns backed by the Arrow strings kept from the import."""
        return pd.DataFrame({"person_id": self.ids.to_pandas(), "fy": self.fy.astype(np.int64),
                             "muni_code": self.munis.to_pandas()})

    def spread(self, frame: pd.DataFrame, code: np.ndarray, own_muni) -> tuple[pd.DataFrame, np.ndarray]:
        """The rows of `frame` once per municipality where their person is enrolled (the mover
        rule), a person with no enrollment row under the row's own municipality: (rows, muni code
        of each row as text)."""
        n = len(frame)
        known = code >= 0
        muni = np.empty(n, dtype=object)
        if known.any():
            muni[known] = self.muni_names[self.home[code[known]]]  # object: the names are shared
        if (~known).any():
            muni[~known] = np.asarray(own_muni, dtype=object)[~known].astype(str)
        movers = known.copy()
        movers[known] = self.mover[code[known]]
        if not movers.any():
            return frame, muni
        more = pd.DataFrame({"i": np.flatnonzero(movers), "code": code[movers]}).merge(self.extra, on="code")
        take = np.concatenate([np.arange(n), more["i"].to_numpy()])
        return (frame.take(take).reset_index(drop=True),
                np.concatenate([muni, self.muni_names[more["muni"].to_numpy()]]))


# ---------------------------------------------------------------- part files

class _PartWriter:
    """Part files of one table under `<folder>/<table>/muni=<code>/part-<k>.parquet`, each chunk's
    rows stored in the table's open dtypes (nullable); `compact` then writes one file per
    municipality in the final dtypes (docs/design.md §8.1). Chunks are buffered up to `FLUSH_ROWS`
    rows before they are written (few files: a small month of claims is not a file per town)."""

    FLUSH_ROWS = 500_000

    def __init__(self, folder: Path, table: str):
        self.folder, self.table = folder / table, table
        self.k = 0
        self.rows = 0
        self.stored: dict = {}
        self.complete = {c.name: True for c in TABLES[table].columns}
        self.open = io.open_dtypes(table)
        self._buffer: list = []
        self._buffered = 0
        self._pool = None      # the background thread writing part files (`flush`)
        self._pending = None   # the flush in flight

    def write(self, data: pd.DataFrame, row: np.ndarray, code: np.ndarray, persons: _Persons,
              own_muni) -> None:
        from hsutils.analysis.pipeline import ROW

        if not len(data):
            return
        self.rows += len(data)
        for c in self.complete:
            if self.complete[c] and not bool(data[c].notna().all()):
                self.complete[c] = False
        data = data.astype({c: d for c, d in self.open.items() if str(data[c].dtype) != d})
        data = data.assign(**{ROW: np.asarray(row, dtype=np.int64)})
        data, muni = persons.spread(data, code, own_muni)
        self._buffer.append((data, muni))
        self._buffered += len(data)
        if self._buffered >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """The buffered rows into one part file per municipality. The rows become one Arrow table
        (one conversion, not one per municipality); cutting it by municipality and writing the files
        (Arrow and Parquet work without the GIL) runs on a background thread while the next chunk is
        read and validated (at most one flush in flight: bounded memory)."""
        if not self._buffer:
            return
        data = pd.concat([d for d, _ in self._buffer], ignore_index=True) if len(self._buffer) > 1 \
            else self._buffer[0][0]
        muni = np.concatenate([m for _, m in self._buffer])
        self._buffer, self._buffered = [], 0
        codes, uniques = pd.factorize(muni)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
        table = pa.Table.from_pandas(data, preserve_index=False)
        del data
        for j, m in enumerate(uniques):
            self.stored[m] = self.stored.get(m, 0) + int(bounds[j + 1] - bounds[j])
        self.wait()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parts-{self.table}")
        self._pending = self._pool.submit(self._write_parts, table, order, bounds, list(uniques), self.k)
        self.k += 1

    def _write_parts(self, table: pa.Table, order: np.ndarray, bounds: np.ndarray, munis: list, k: int) -> None:
        from hsutils.analysis.pipeline import PARTITION_KEY

        for j, m in enumerate(munis):  # a loop over municipalities
            sub = self.folder / f"{PARTITION_KEY}={m}"
            sub.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.take(order[bounds[j]:bounds[j + 1]]), sub / f"part-{k:05d}.parquet")

    def wait(self) -> None:
        """Wait for the flush in flight (its error, if any, is raised here)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Flush, wait for the part files and stop the background thread."""
        try:
            self.flush()
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def abandon(self) -> None:
        """Stop without writing the buffered rows (the import failed, or its rows are replaced)."""
        self._buffer, self._buffered = [], 0
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._pending = None, None

    def compact(self) -> None:
        """One file per municipality (`part-0.parquet`) in the table's final dtypes, its parts as
        row groups in the order written, one part in memory at a time (a reader orders the rows by
        `_row`, `pipeline.read_partitioned`): memory is bounded by a part, not by the municipality.
        Municipalities are compacted on `COMPACT_THREADS` threads (reading, casting and writing
        Parquet work without the GIL), each with one part in memory."""
        from concurrent.futures import ThreadPoolExecutor

        from hsutils.analysis.pipeline import ROW

        self.close()
        final = io.final_dtypes(self.table, self.complete)
        if not self.folder.is_dir():
            return
        subs = sorted(self.folder.iterdir())
        if not subs:
            return
        first = pq.read_schema(sorted(subs[0].glob("part-*.parquet"))[0])
        empty = pd.DataFrame({c: pd.Series(dtype=final.get(c, "int64")) for c in first.names})
        schema = pa.Schema.from_pandas(empty.astype({ROW: "int64"}), preserve_index=False)
        with ThreadPoolExecutor(max_workers=min(COMPACT_THREADS, len(subs))) as pool:
            for _ in pool.map(lambda sub: _compact_one(sub, schema), subs):  # a loop over municipalities
                pass


#: threads compacting the part files of a table (one municipality each)
COMPACT_THREADS = 2


def _compact_one(sub: Path, schema: pa.Schema) -> None:
    """The part files of one municipality as one file (`part-0.parquet`) in `schema`."""
    parts = sorted(sub.glob("part-*.parquet"))
    tmp = sub / "part-0.parquet.tmp"
    with pq.ParquetWriter(tmp, schema) as writer:
        for p in parts:
            writer.write_table(pq.read_table(p).cast(schema))
    for p in parts:
        p.unlink()
    os.replace(tmp, sub / "part-0.parquet")


# ---------------------------------------------------------------- the import

def _known_munis(municipalities: pd.DataFrame | None):
    if municipalities is None:
        return None
    return set(municipalities["muni_code"].dropna().astype(str)) or None  # empty master: no check


def stream_inputs(data_dir: Path, folder: Path, column_map=None, cache_dir: Path | None = None,
                  chunk_rows: int | None = None, stages: Stages | None = None) -> StreamedImport:
    """Read every table of `data_dir` chunk by chunk into the municipality partitions under
    `folder` (docs/design.md §8.4). `cache_dir`: where the XML reader and the UKE store keep their
    content-hash caches. `chunk_rows`: rows per chunk of CSV/Parquet files (default: large files
    only, `io.CSV_CHUNK_ROWS`)."""
    data_dir, cmap, files, notes, kenshin_xml = io.plan_folder(data_dir, column_map)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[str, _PartWriter] = {}
    try:
        return _stream_tables(data_dir, folder, cmap, files, notes, kenshin_xml, chunk_rows, cache_dir, stages,
                              writers)
    except BaseException:
        for w in writers.values():  # no part file is written after the error
            w.abandon()
        raise


def _stream_tables(data_dir, folder, cmap, files, notes, kenshin_xml, chunk_rows, cache_dir, stages,
                   writers) -> StreamedImport:
    from hsutils.analysis.pipeline import PARTITION_KEY

    results: dict[str, io.LoadResult] = {}
    warnings = list(notes)
    small: dict[str, pd.DataFrame] = {}
    unmatched: dict[str, list] = {}
    first_ym = [None]

    def track_ym(name, data):
        if name == "claims_monthly" and len(data):
            m = pd.to_numeric(data["ym"]).min()
            if pd.notna(m):
                first_ym[0] = int(m) if first_ym[0] is None else min(first_ym[0], int(m))

    known = None
    persons: _Persons | None = None
    # enrollment first goes to a staging folder: where a person's rows go depends on all of them
    stage_dir = folder / "_staging_enrollment"
    ids, fys, munis = [], [], []
    helper: dict = {}  # the peak memory of the helper process reading the large files (`PREFETCH`)
    from hsutils.analysis.pipeline import _MATCHED_TABLES

    for tname in io.LOAD_ORDER:
        xml = (tname == "kenshin" and kenshin_xml) or (tname == "guidance" and kenshin_xml and tname not in files)
        if xml:
            from hsutils.inputs import tokutei_xml

            if tname == "kenshin":  # slice by slice into the partitions (the whole table is never held)
                r = tokutei_xml.read_folder_cached(data_dir, persons.enrollment_keys(), files.get("enrollment"),
                                                   cache_dir=cache_dir, known_munis=known,
                                                   sink=_XmlSink(tname, writers, folder, persons, unmatched))
            else:  # 保健指導: few documents, the table whole
                r = tokutei_xml.read_folder_cached(data_dir, persons.enrollment_keys(), files.get("enrollment"),
                                                   cache_dir=cache_dir, known_munis=known, table=tname)
                if r is None:
                    continue
                data = r.data
                r.data = io.empty_like(r.data)  # not a slice: a slice would keep the whole table alive
                for i in range(0, max(len(data), 1), XML_WRITE_ROWS):
                    _write_chunk(tname, data.iloc[i:i + XML_WRITE_ROWS], i, writers, folder, persons, unmatched)
                del data
            results[tname] = r
            warnings.extend(r.warnings)
            continue
        if tname not in files:
            continue
        kw = dict(column_map=cmap, known_munis=known if tname != "municipalities" else None)
        if tname not in PERSON_TABLES:
            r = io.read_table(files[tname], tname, **kw)
            small[tname] = r.data
            results[tname] = r
            warnings.extend(r.warnings)
            if tname == "municipalities":
                known = _known_munis(r.data)
            continue
        tally = io.ChunkTally(tname, files[tname].name)
        offset = 0
        lookback = _lookback(tname, persons)
        for r, n_lines in io.iter_table_chunks(files[tname], tname, chunk_rows=chunk_rows,
                                               lookback=lookback, prefetch=PREFETCH,
                                               helper_stats=helper, **kw):
            tally.add(r, n_lines)
            if tname == "enrollment":
                d = r.data
                if len(d):
                    stage_dir.mkdir(parents=True, exist_ok=True)
                    d.astype({c: t for c, t in io.open_dtypes(tname).items() if str(d[c].dtype) != t}).to_parquet(
                        stage_dir / f"part-{len(ids):05d}.parquet", index=False)
                    ids.append(pa.array(d["person_id"].to_numpy(dtype=object), type=pa.string()))
                    fys.append(d["fy"].to_numpy(dtype=np.int64))
                    munis.append(pa.array(d["muni_code"].astype(str).to_numpy(dtype=object), type=pa.string()))
            else:
                track_ym(tname, r.data)
                # the person codes of the kept rows, from the look-back of this chunk (not looked up again)
                code = getattr(lookback, "last_codes", None)
                _write_chunk(tname, r.data, offset, writers, folder, persons, unmatched,
                             code=code if n_lines is not None and code is not None and len(code) == len(r.data)
                             else None)
                if lookback is not None:
                    lookback.last_codes = None
            offset += len(r.data)
        r = tally.result()
        results[tname] = r
        warnings.extend(r.warnings)
        if tname == "enrollment":
            persons = _Persons(ids, fys, munis)
            w = writers["enrollment"] = _PartWriter(folder, "enrollment")
            start = 0
            for k in range(len(ids)):  # the staged chunks, each into its municipalities
                d = pd.read_parquet(stage_dir / f"part-{k:05d}.parquet")
                w.write(d, np.arange(start, start + len(d)), persons.codes(d["person_id"]), persons, d["muni_code"])
                start += len(d)
            shutil.rmtree(stage_dir, ignore_errors=True)
            ids, fys, munis = [], [], []

    if "municipalities" not in files:
        warnings.append("市町村マスタがないため、市町村コードは検査数字と桁数だけを確認しました")
    parts = [r.exclusions for r in results.values() if not r.exclusions.empty]
    summary_rows = [io.summary_row(r) for r in results.values()]
    uke_rows = _stream_uke(data_dir, folder, persons, writers, parts, warnings, cache_dir, first_ym, summary_rows)
    if stages is not None:
        stages.start("partition")
        if helper and "import" in stages.out:
            stages.out["import"]["helper_peak_rss_mb"] = helper["helper_peak_rss_mb"]
    for name in PERSON_TABLES:  # every table's folder exists, empty when the table is (as pipeline writes them)
        (folder / name).mkdir(parents=True, exist_ok=True)
    for w in writers.values():
        w.compact()
    exclusions = pd.concat(parts, ignore_index=True) if parts else io._empty_exclusions()
    summary = pd.DataFrame(summary_rows, columns=io.SUMMARY_COLUMNS)
    rows = {t: (len(small[t]) if t in small else writers[t].rows if t in writers else 0) for t in TABLES}
    rows.update(uke_rows)
    um = [u for t in _MATCHED_TABLES for u in unmatched.get(t, [])]
    unmatched_frame = pd.concat(um, ignore_index=True) if um else pd.DataFrame(
        columns=["table", "person_id", "fy", "reason"])
    enr = writers["enrollment"]
    sizes = pd.Series(enr.stored, dtype=np.int64).sort_index()
    sizes.index.name = PARTITION_KEY
    return StreamedImport(summary=summary, exclusions=exclusions, warnings=warnings, unmatched=unmatched_frame,
                          rows=rows, fiscal_years=persons.fiscal_years, first_ym=first_ym[0],
                          municipalities=small.get("municipalities"),
                          districts=small["districts"] if "districts" in small else io.empty_table("districts"),
                          enrollment_munis=[str(m) for m in persons.muni_names], sizes=sizes)


#: the period column of the tables keyed by (person, period), as integers (docs/design.md §8.4)
_PERIOD_KEYS = {"ym": io.ym_months, "fy": None}


def _lookback(tname: str, persons: _Persons | None):
    """The duplicate look-back of a table read after the enrollment whose key is (person, period):
    one bit per known person and period, flat in the file's rows (`io.PersonPeriodLookback`); else
    None (`io.iter_table_chunks` uses a `io.KeyLookback`)."""
    key = TABLES[tname].key
    if persons is None or len(key) != 2 or key[0] != "person_id" or key[1] not in _PERIOD_KEYS:
        return None
    return io.PersonPeriodLookback(persons.codes, len(persons.index), _PERIOD_KEYS[key[1]])


class _XmlSink:
    """The `sink` of `tokutei_xml.read_folder_cached`: each slice of the 健診 table it is handed (in
    the table's order) into the partitions (`_write_chunk`), its rows' `_row` counted on from the
    earlier slices'."""

    def __init__(self, tname: str, writers: dict, folder: Path, persons: _Persons, unmatched: dict):
        self.args = (writers, folder, persons, unmatched)
        self.tname, self.offset = tname, 0
        if tname not in writers:  # the table's writer also when it has no row
            writers[tname] = _PartWriter(folder, tname)

    def __call__(self, data: pd.DataFrame, row_numbers) -> None:
        _write_chunk(self.tname, data, self.offset, *self.args)
        self.offset += len(data)


def _write_chunk(tname: str, data: pd.DataFrame, offset: int, writers: dict, folder: Path,
                 persons: _Persons, unmatched: dict, code: np.ndarray | None = None) -> None:
    """One validated chunk of a person-level table into its municipalities; its rows with no
    enrollment row of the same person and fiscal year are listed (hsutils.analysis.pipeline
    `unmatched_rows`). `code`: the rows' person codes when known (`persons.codes`)."""
    from hsutils.analysis.pipeline import _MATCHED_TABLES

    w = writers.get(tname) or writers.setdefault(tname, _PartWriter(folder, tname))
    if not len(data):
        return
    if code is None:
        code = persons.codes(data["person_id"])
    if tname in _MATCHED_TABLES:
        fy = data["fy"].to_numpy(dtype=np.int64)
        o = ~persons.enrolled_in_fy(code, fy)
        if o.any():
            unmatched.setdefault(tname, []).append(pd.DataFrame({
                "table": tname, "person_id": data["person_id"][o].to_numpy(), "fy": fy[o],
                "reason": _MATCHED_TABLES[tname]}))
    w.write(data, np.arange(offset, offset + len(data), dtype=np.int64), code, persons, data["muni_code"])


def _stream_uke(data_dir: Path, folder: Path, persons: _Persons, writers: dict, excl_parts: list,
                warnings: list, cache_dir, first_ym: list, summary_rows: list) -> dict:
    """The UKE receipts of the folder (hsutils.inputs.claims_import) month by month into the
    partitions; they replace the CSV claims tables (as in `io.load_dataset`). Returns the rows of
    each table written."""
    import tempfile

    from hsutils.inputs import claims_import, uke

    files = uke.find_uke_files(data_dir)
    if not files:
        return {}
    if cache_dir is not None:
        (Path(cache_dir) / "uke").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="derived-", dir=Path(cache_dir) / "uke"))
    else:
        work = Path(tempfile.mkdtemp(prefix="hsutils_uke_"))
    rows = {}
    for w in writers.values():  # no part file is being written while the UKE import forks its workers
        w.wait()
    try:
        store = claims_import.convert_claims(data_dir, files, work, enrollment=persons.enrollment_keys(),
                                             cache_dir=cache_dir)
        for name in store.table_names():
            if name in writers and writers[name].rows:
                warnings.append(io.UKE_REPLACES_CSV.format(ja=TABLES[name].ja))
            if name in writers:
                writers[name].abandon()  # its part files are being written no more
                shutil.rmtree(writers[name].folder, ignore_errors=True)
            w = writers[name] = _PartWriter(folder, name)
            complete = {c.name: True for c in TABLES[name].columns}
            if name == "claims_monthly":
                first_ym[0] = None
            for df, row, code in store.iter_rows(name, persons.index):  # code: the person's in `persons`
                d = io.canonical_frame(df, name)
                for c in complete:
                    complete[c] = complete[c] and bool(d[c].notna().all())
                if name == "claims_monthly" and len(d):
                    m = int(pd.to_numeric(d["ym"]).min())
                    first_ym[0] = m if first_ym[0] is None else min(first_ym[0], m)
                w.write(d, row, code, persons, d["muni_code"])
            w.complete = complete
            rows[name] = w.rows
        exclusions, counts = store.exclusions()
        if len(exclusions):
            excl_parts.append(exclusions)
        summary_rows.append(io.uke_summary_row(counts, len(files)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows

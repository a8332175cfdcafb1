"""UKE files in a data folder → the canonical claims tables (used by `hsutils.inputs.io.load_dataset`
and `hsutils check`).

Folder conventions (docs/claims_rules.md §7):

* ``*.UKE`` files directly in the data folder or in its ``uke/`` sub-folder (any number, any months;
  several institutions' files may be concatenated);
* ``uke_masters/`` — the user's current 傷病名・医薬品・診療行為 masters (b.csv, y.csv, s.csv as
  downloaded from 支払基金); required when UKE files are present;
* ``person_ids.csv`` (個人ID対応表, optional, shared with the 特定健診 XML reader) — 保険者番号, 記号,
  番号, 枝番 → person_id; the older ``uke_person_link.csv`` (same columns, 枝番 optional) is read
  when it is absent; without either the person key is 保険者番号-記号-番号-枝番 (one rule with the
  XML reader: `hsutils.inputs.person_keys`, docs/formats/person_key.md §1);
* ``claims_rules.yaml`` (optional) — the user's copy of the rules; else the shipped defaults.

The files are read one by one, in segments cut before institution headers, and stored by 診療年月
under ``cache_dir/uke`` (keyed by the sha256 of each file and its name: a second load parses
nothing); then each month is derived and written as Parquet at once (`convert_claims`), and the
tables are read back in the one-pass order (`ClaimsStore.read`). Memory is bounded by the segment
and the largest month, neither by the size of a file nor by the number of months
(docs/claims_rules.md §7.1). Files are named by their path relative to the data folder (§4.1).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hsutils.inputs import claims_masters, claims_rules, person_keys, uke
from hsutils.core.errors import DataError
from hsutils.core.files import sha256_file

READER_VERSION = "uke-4"  # uke-2: 点数表 validated, SY code exclusions quote the raw code; uke-3: files named
# relative to the data folder, read in segments, receipt exclusions quote the value they are about;
# uke-4: one Parquet file per part and segment (rows sorted by 診療年月, a row group per month)
MASTERS_DIR = "uke_masters"
LINK_FILE = "uke_person_link.csv"
RULES_FILE = "claims_rules.yaml"


@dataclass
class ClaimsLoad:
    tables: dict
    exclusions: pd.DataFrame
    counts: dict
    report: dict
    files: list


def _sha(path: Path, name: str) -> str:
    """Store key of one file: its content hash (`core.files.sha256_file`), the reader version and
    the name, which is stored in the rows (file column of the exclusions)."""
    key = f"{sha256_file(path)}|{READER_VERSION}|{name}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def read_files(paths, cache_dir=None, root=None) -> uke.UkeTables:
    """Read UKE files into one set of tables (all in memory: small folders, tests and the
    reference for the streamed import `load_claims`). ``cache_dir`` is accepted for the callers of
    the one-pass reader and not used: the per-file store of `load_claims` is the cache."""
    return uke.read_uke(sorted(Path(p) for p in paths), root=root)


MONTH_PARTS = ("receipts", "diagnoses", "procedures", "drugs")
POS = "_pos"  # a row's position in its segment's table: restores the one-pass order of diagnoses

#: rows kept in memory instead of read back from disk: the parsed segments' receipts and lines (their
#: four parts) up to this many, and the derived tables' rows (`ClaimsStore`) up to this many again.
#: An import below it reads nothing back (the store is still written when it is a cache, and without a
#: cache nothing is written at all); past it, the further segments and months are on disk as before.
#: ≈ 140 bytes a segment row (released once its months are derived), ≈ 190 a derived row: at most
#: ≈ 0.33 GB on top of the bound of docs/claims_rules.md §7.1.
MEMORY_ROWS = 1_000_000


def _as_read(df: pd.DataFrame) -> pd.DataFrame:
    """`df` as writing it to Parquet and reading it back with its dtypes gives it, which is what the
    frames kept in memory must give: object columns take the Arrow round trip (a missing value
    comes back None or NaN as Arrow infers the column from these rows); an empty frame's
    categorical columns lose their categories."""
    if not len(df) and any(isinstance(d, pd.CategoricalDtype) for d in df.dtypes):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return pd.read_parquet(buf).astype({c: str(d) for c, d in df.dtypes.items()})
    fixed = {}
    for c, d in df.dtypes.items():  # the columns, not the rows
        if d != object:
            continue
        s = df[c]
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind == "empty":  # no value: Arrow's null type, read back as None
            fixed[c] = pd.Series(np.full(len(s), None, object), index=s.index)
        elif kind == "string":  # text: a missing value is read back as NaN
            fixed[c] = s.where(s.notna(), np.nan)
        else:
            back = pa.Table.from_pandas(s.to_frame(), preserve_index=False).to_pandas()[c].astype(object)
            fixed[c] = back.set_axis(s.index)
    return df.assign(**fixed) if fixed else df


def _to_frame(table: pa.Table, dtypes: dict) -> pd.DataFrame:
    """A stored table read back with the dtypes it was written with; only the columns whose
    dtype the round trip changed are cast (a cast of every column costs more than the read)."""
    df = table.to_pandas()
    fix = {c: d for c, d in dtypes.items() if c in df.columns and str(df[c].dtype) != d}
    return df.astype(fix) if fix else df


def _read_rows(path: Path, lo: int, hi: int) -> pa.Table:
    """Rows lo..hi of a stored part (one row group per 診療年月: only the months asked are read)."""
    pf = pq.ParquetFile(path)
    md = pf.metadata
    starts = np.concatenate([[0], np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)])])
    groups = [i for i in range(md.num_row_groups) if starts[i] < hi and starts[i + 1] > lo]
    if not groups:
        return pf.schema_arrow.empty_table()
    return pf.read_row_groups(groups).slice(lo - int(starts[groups[0]]), hi - lo)


@dataclass
class _FileEntry:
    """One segment of a UKE file (`uke.segments`), parsed and stored by 診療年月
    (docs/claims_rules.md §7.1). Segments are numbered in file order; a small file is one segment.
    ``<folder>/<part>.parquet`` holds a part's rows sorted by 診療年月 (rows of a month in their
    order, a row group per month; ``rows[part][YYYYMM]`` = the month's row range), with their
    position in the segment's table (`POS`); ``frames`` the same frames when the segment is kept in
    memory (`MEMORY_ROWS`)."""

    name: str
    folder: Path
    months: list
    counts: dict
    dtypes: dict
    rows: dict                  # part -> {"YYYYMM": [first row, end row]}
    exclusions_file: bool       # exclusions.parquet written (else: none, an empty frame of `dtypes`)
    frames: dict | None = None  # part, "exclusions", "keys" -> kept in memory (None: read from disk)

    def block(self, part: str, months: list) -> tuple[pd.DataFrame, int]:
        """The rows of consecutive months of a part (one read) and the row the block starts at."""
        r = self.rows[part]
        lo, hi = r[str(months[0])][0], r[str(months[-1])][1]
        if self.frames is not None:
            return self.frames[part].iloc[lo:hi], lo
        return _to_frame(_read_rows(self.folder / f"{part}.parquet", lo, hi), self.dtypes[part]), lo

    def release(self) -> None:
        """Drop the parts kept in memory (their months are derived); the exclusions stay."""
        if self.frames is not None:
            self.frames = {"exclusions": self.frames["exclusions"]}

    def n_rows(self, ym: int) -> int:
        """Receipts of a month (from the row ranges: no data read)."""
        lo, hi = self.rows["receipts"][str(ym)]
        return hi - lo

    def keys(self) -> pd.Series:
        """The distinct person keys of the segment's receipts (in the order of the receipts)."""
        if self.frames is not None:
            return self.frames["keys"]
        df = _to_frame(pq.read_table(self.folder / "receipts.parquet", columns=["person_key", POS]),
                       {"person_key": self.dtypes["receipts"]["person_key"]})
        return _distinct_keys(df["person_key"].iloc[np.argsort(df[POS].to_numpy(), kind="stable")])

    def exclusions(self) -> pd.DataFrame:
        """The segment's line exclusions (as `pd.read_parquet` gives them back)."""
        if self.frames is not None:
            return self.frames["exclusions"]
        if self.exclusions_file:
            return pd.read_parquet(self.folder / "exclusions.parquet")
        return pd.DataFrame({c: pd.Series(dtype=d) for c, d in self.dtypes["exclusions"].items()})


def _distinct_keys(person_key: pd.Series) -> pd.Series:
    return pd.Series(pd.unique(person_key.astype(str).to_numpy(object)), dtype=object)


class _Budget:
    """Rows kept in memory so far, against `MEMORY_ROWS` (read when the import starts) or `limit`."""

    def __init__(self, limit: int | None = None):
        self.limit, self.used = MEMORY_ROWS if limit is None else limit, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True


def _entries(meta: dict, entry: Path, name: str) -> list[_FileEntry]:
    return [_FileEntry(name, entry / s["dir"], s["months"], s["counts"], s["dtypes"], s["rows"],
                       s["exclusions_file"]) for s in meta["segments"]]


def _cached_entries(entry: Path, name: str) -> list[_FileEntry] | None:
    """The segments of a complete store entry, or None (missing or damaged: parsed again)."""
    meta = entry / "meta.json"
    if not meta.exists():
        return None
    try:
        entries = _entries(json.loads(meta.read_text(encoding="utf-8")), entry, name)
        if all((e.folder / f"{p}.parquet").is_file() for e in entries
               for p in MONTH_PARTS + (("exclusions",) if e.exclusions_file else ())):
            return entries
    except (OSError, ValueError, KeyError, TypeError):  # a damaged entry is rebuilt
        pass
    return None


def _store_file(path: Path, name: str, entry: Path, budget: _Budget | None = None,
                cache: bool = True) -> list[_FileEntry]:
    """Parse one file segment by segment (`uke.segments`: memory bounded by the segment, not by
    the file) and store each segment's parts sorted by 診療年月:
    ``<store>/<sha of the file and its name>/<segment>/<part>.parquet``; an entry whose meta.json
    exists is re-used (a second import parses nothing, a new month parses only its files; a damaged
    entry is parsed again). A segment within the memory budget is kept in memory too and read from
    there; when the store is no cache (``cache=False``: a scratch folder) it is not written."""
    budget = budget or _Budget()
    if cache:
        entries = _cached_entries(entry, name)
        if entries is not None:
            return entries
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    segs, kept = [], []
    for i, (start, stop, first_line) in enumerate(uke.segments(path)):
        seg = f"s{i:05d}"
        s, frames = _store_segment(uke.read_segment(path, name, start, stop, first_line), tmp / seg, budget, cache)
        segs.append(s | {"dir": seg})
        kept.append(frames)
    (tmp / "meta.json").write_text(json.dumps({"segments": segs}), encoding="utf-8")
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(tmp, entry)
    out = _entries({"segments": segs}, entry, name)
    for e, frames in zip(out, kept):
        e.frames = frames
    return out


#: Worker processes that parse UKE files at the same time into the store (None: one per CPU core;
#: 1: every file is parsed in this process). Only when the store is a cache (its entries are written
#: anyway) and the files to parse add up to at least `PARALLEL_MIN_BYTES`: a small import stays in
#: this process, where its segments are kept in memory (`MEMORY_ROWS`). Each worker holds one
#: segment at a time (`uke.SEGMENT_BYTES`), so the import's memory grows by one segment per worker,
#: not with the data. On the 2-core test machine `prepare_cache` of the scale-1 demo (144 files,
#: 1.5 GB) took 390 s with every file in this process and 284 s with two workers (issue 18).
PARSE_WORKERS: int | None = None
PARALLEL_MIN_BYTES = 64 << 20
#: The months are derived in worker processes too (`_derived_groups`) from this many receipts on
#: (at least two groups of `DERIVE_RECEIPTS`).
PARALLEL_MIN_RECEIPTS = 2 * 300_000


def _parse_in_workers(paths: list, names: list, entries: list) -> None:
    """Parse the files whose store entry is missing in worker processes (`PARSE_WORKERS`), each
    file by one worker as `_store_file` does in this process (the same entry, written to disk);
    `_store_file` then finds them stored. Files are handed out largest first, so that a large file
    does not start last; the entries do not depend on the order."""
    todo = [(p, n, e) for p, n, e in zip(paths, names, entries) if _cached_entries(e, n) is None]
    workers = min(PARSE_WORKERS or os.cpu_count() or 1, len(todo))
    if workers < 2 or sum(p.stat().st_size for p, _, _ in todo) < PARALLEL_MIN_BYTES:
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    todo.sort(key=lambda t: -t[0].stat().st_size)
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        futures = [ex.submit(_store_file, p, n, e, _Budget(0)) for p, n, e in todo]
        try:
            for f in futures:
                f.result()  # a user mistake (DataError) is raised here, as in this process
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _store_segment(t: uke.UkeTables, out: Path, budget: _Budget, cache: bool) -> tuple[dict, dict | None]:
    """Each part's rows sorted by 診療年月 (a month's rows in their order, with their position
    `POS`): kept in memory when the budget allows, written as one Parquet file a part (a row group
    a month) unless kept and the store is no cache. Returns the segment's meta and the frames kept
    (None: read from disk)."""
    ym_of = pd.Series(t.receipts["ym"].to_numpy(np.int64), index=t.receipts["receipt_id"].to_numpy())
    months = sorted(int(m) for m in t.receipts["ym"].unique())
    frames, rows = {}, {}
    for part in MONTH_PARTS:
        df = getattr(t, part)
        ym = (df["ym"] if part == "receipts" else df["receipt_id"].map(ym_of)).to_numpy(np.int64)
        df = df.assign(**{POS: np.arange(len(df), dtype=np.int64)})
        if (ym[1:] < ym[:-1]).any():  # rows of a month keep their order
            order = np.argsort(ym, kind="stable")
            df, ym = df.iloc[order].reset_index(drop=True), ym[order]
        frames[part] = df
        bounds = np.searchsorted(ym, months + [np.iinfo(np.int64).max], "left")
        rows[part] = {str(m): [int(bounds[j]), int(bounds[j + 1])] for j, m in enumerate(months)}
    keep = budget.take(sum(len(f) for f in frames.values()))
    excl = t.exclusions
    dtypes = {p: {c: str(d) for c, d in getattr(t, p).dtypes.items()} for p in MONTH_PARTS}
    dtypes["exclusions"] = {c: str(d) for c, d in excl.dtypes.items()}
    # an empty exclusions frame of str and int64 columns reads back as it is: not written
    excl_file = bool(len(excl)) or not set(dtypes["exclusions"].values()) <= {"str", "int64"}
    if cache or not keep:
        out.mkdir()
        for part, df in frames.items():
            tb = pa.Table.from_pandas(df, preserve_index=False)
            # plain encoding, no column statistics: months are found by row group, and the dictionary pass
            # cost about 40 % of the write for files of the same size (issue 18)
            with pq.ParquetWriter(out / f"{part}.parquet", tb.schema, use_dictionary=False,
                                  write_statistics=False) as w:
                for lo, hi in rows[part].values():
                    if hi > lo:
                        w.write_table(tb.slice(lo, hi - lo), row_group_size=hi - lo)
        if excl_file:
            excl.to_parquet(out / "exclusions.parquet", index=False)
    meta = {"months": months, "counts": t.counts, "dtypes": dtypes, "rows": rows, "exclusions_file": excl_file}
    if not keep:
        return meta, None
    if excl_file:  # as read back
        buf = io.BytesIO()
        excl.to_parquet(buf, index=False)
        excl = pd.read_parquet(buf)
    frames["exclusions"] = excl
    frames["keys"] = _distinct_keys(t.receipts["person_key"])
    return meta, frames


class _KeyMap:
    """person_id of each person key when there is no 個人ID対応表: `person_keys.fill_edaban` (and
    the salted pseudonym) computed once over the keys of *all* files, so that a month read alone
    gets the same person_id as the one-pass import (the 枝番 filling looks across months)."""

    def __init__(self, keys: pd.Series, salt_file):
        keys = pd.Series(pd.unique(keys.astype(str)), dtype=object)
        pid = person_keys.fill_edaban(keys)
        if salt_file is not None:
            pid = person_keys.pseudonyms(pid, salt_file)
        self.map = pd.Series(pid.to_numpy(), index=keys.to_numpy())

    def lookup(self, key: pd.Series) -> pd.Series:
        return pd.Series(key, dtype="object").map(self.map).astype(object)


def _group_tables(entries: list, offsets, group: list) -> tuple[uke.UkeTables, np.ndarray]:
    """The receipts and lines of consecutive 診療年月 from every file that has them, month after
    month, with the receipt ids the one-pass reader gives (each file's ids shifted by the receipts
    of the files before it); also each diagnosis row's (file index, position in its file). Each
    segment's part is read once for the group (its months are consecutive rows). Deriving several
    months together gives each month's rows exactly as deriving it alone (every rule is within a
    person and month, docs/claims_rules.md §7.1; the one-pass `derive_tables` over all months is
    the reference)."""
    blocks = {}  # (segment, part) -> (frame of the group's months, its first row)
    for i, (e, off) in enumerate(zip(entries, offsets)):
        mine = [m for m in group if m in e.months]
        for p in MONTH_PARTS if mine else ():
            df, start = e.block(p, mine)
            blocks[i, p] = df.assign(receipt_id=df["receipt_id"].to_numpy(np.int64) + off), start
    months = []
    for ym in group:
        parts = {p: [] for p in MONTH_PARTS}
        dx_file = []
        for i, e in enumerate(entries):
            if ym not in e.months:
                continue
            for p in MONTH_PARTS:
                df, start = blocks[i, p]
                lo, hi = e.rows[p][str(ym)]
                x = df.iloc[lo - start:hi - start].reset_index(drop=True)
                parts[p].append(_as_read(x) if len(x) else x)  # as the month's own Parquet file gave it
            dx_file.append(np.full(len(parts["diagnoses"][-1]), i, np.int64))
        # a file without lines of a kind (調剤: no 傷病名) has an empty frame of default dtypes: left out
        frames = {p: pd.concat([f for f in v if len(f)] or [_as_read(v[0])], ignore_index=True)
                  for p, v in parts.items()}
        dx_key = np.stack([np.concatenate(dx_file), frames["diagnoses"][POS].to_numpy(np.int64)], axis=1)
        for p in MONTH_PARTS:
            frames[p] = frames[p].drop(columns=[POS])
        months.append((frames, dx_key))
    del blocks
    empty = pd.DataFrame(columns=["file", "table", "row", "column", "value", "reason", "scope"])
    if len(months) == 1:
        return uke.UkeTables(**months[0][0], exclusions=empty, counts={}), months[0][1]
    frames = {}
    for p in MONTH_PARTS:  # an empty month's frame has default dtypes: left out, as within a month
        v = [f[p] for f, _ in months]
        frames[p] = pd.concat([f for f in v if len(f)] or v[:1], ignore_index=True)
    dx_key = np.concatenate([k for _, k in months]) if months else np.zeros((0, 2), np.int64)
    return uke.UkeTables(**frames, exclusions=empty, counts={}), dx_key


#: receipts derived together at most (`_month_groups`): consecutive 診療年月 are derived in one call
#: of `claims_rules.derive_tables` up to this many receipts (a month larger than this alone). Each
#: call has a fixed cost (≈ 0.3 s: dozens of pandas operations), which dominated small imports of
#: many months (the demo, the tests); memory stays bounded by this count, not by the data's size.
DERIVE_RECEIPTS = 300_000


def _month_groups(entries: list, months: list) -> list[list]:
    """Consecutive 診療年月 in groups of at most `DERIVE_RECEIPTS` receipts (counted from the
    segments' row ranges, no data read); a month above the limit is a group of its own."""
    rows = dict.fromkeys(months, 0)
    for e in entries:
        for m in e.months:
            rows[m] += e.n_rows(m)
    groups, size = [], 0
    for m in months:
        if not groups or size + rows[m] > DERIVE_RECEIPTS:
            groups.append([])
            size = 0
        groups[-1].append(m)
        size += rows[m]
    return groups


def _merge_report(reports: list[dict]) -> dict:
    """Sum the per-month reports of `claims_rules.derive_tables` (counts add up; the lists of the
    most frequent unknown codes are recounted from the full counts)."""
    out = {}
    for key in ("disease", "drug", "procedure"):
        total: dict = {}
        for r in reports:
            for code, n in r.get(f"counts_unknown_{key}", {}).items():
                total[code] = total.get(code, 0) + n
        out[f"unknown_{key}"] = [(str(c), int(n)) for c, n in
                                 sorted(total.items(), key=lambda kv: -kv[1])[:claims_rules.TOP_CODES]]
        out[f"counts_unknown_{key}"] = total
    for key in ("n_unknown_disease", "n_unknown_drug", "n_unknown_procedure", "n_uncoded",
                "n_uncoded_matched", "n_suspected"):
        out[key] = int(sum(r.get(key, 0) for r in reports))
    return out


# tables of derive_tables sorted by (person_id, ym, ...): months are concatenated in order and
# sorted by person_id (stable), which gives back the one-pass order
_PERSON_SORTED = ("claims_monthly", "prescriptions", "medical_costs")


def read_link(folder: Path):
    """How receipts get their person_id (docs/formats/person_key.md §1): the 個人ID対応表 shared
    with the XML reader (``person_ids.csv``), else the older ``uke_person_link.csv`` (same
    columns, 枝番 optional), else a salt file (pseudonyms), else None (the person key itself)."""
    path = person_keys.find_file(folder, person_keys.PERSON_ID_FILES + (LINK_FILE,))
    if path is not None:
        return person_keys.read_person_ids(path)
    return person_keys.find_file(folder, person_keys.SALT_FILES)


def drug_names(folder) -> pd.Series:
    """医薬品コード → 漢字名称 from the 医薬品マスター in the data folder's ``uke_masters/`` (the one
    the receipts were read with); empty when the folder has no masters (CSV claims)."""
    mdir = Path(folder) / MASTERS_DIR
    if not mdir.is_dir():
        return pd.Series(dtype=str)
    drug = claims_masters.load_masters(mdir).drug
    return pd.Series(drug["name"].to_numpy(), index=drug["code"].to_numpy(), dtype=str)


def load_claims(folder, uke_files, enrollment: pd.DataFrame | None = None, cache_dir=None) -> ClaimsLoad:
    """Read the UKE files of a data folder and derive the canonical claims tables, month by month
    (docs/claims_rules.md §7.1): `convert_claims` into a scratch folder (under ``cache_dir/uke``,
    else a temporary folder), then `ClaimsStore.read`. The tables are identical to the one-pass
    `claims_rules.derive_tables(read_files(...))` (tests/test_claims_stream.py)."""
    with tempfile.TemporaryDirectory(prefix="hsutils_uke_") as scratch:
        work = Path(scratch)
        if cache_dir is not None:
            (Path(cache_dir) / "uke").mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="derived-", dir=Path(cache_dir) / "uke"))
        try:
            return convert_claims(folder, uke_files, work, enrollment=enrollment,
                                  cache_dir=cache_dir).read(release=True)
        finally:
            if work != Path(scratch):
                shutil.rmtree(work, ignore_errors=True)


def convert_claims(folder, uke_files, out_dir, enrollment: pd.DataFrame | None = None,
                   cache_dir=None) -> "ClaimsStore":
    """UKE files of a data folder → the derived claims tables as Parquet by 診療年月 under
    ``out_dir`` (docs/claims_rules.md §7.1). Each file is parsed in segments and stored by 診療年月
    (under ``cache_dir/uke``, else inside ``out_dir``); then each month's receipts of all files are
    derived together (調剤↔医科 linking stays within one month) and written at once. Peak memory is
    set by the segment size and the largest month, not by the size of a file or the number of
    months. Files are named relative to the data folder (`uke.file_label`)."""
    folder = Path(folder)
    mdir = folder / MASTERS_DIR
    if not mdir.is_dir():
        raise DataError(f"{folder}: レセプト電算ファイル（.UKE）がありますが、マスターのフォルダ {MASTERS_DIR}/ が"
                        "ありません。支払基金の傷病名・医薬品・診療行為マスター（b.csv, y.csv, s.csv）を置いてください")
    masters = claims_masters.load_masters(mdir)
    rules_path = folder / RULES_FILE
    rules = claims_rules.load_rules(rules_path if rules_path.exists() else None)
    paths = sorted(Path(p) for p in uke_files)
    for p in paths:
        if not p.is_file():
            raise DataError(f"レセプト電算ファイル {p} が見つかりません")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Path(cache_dir) / "uke" if cache_dir is not None else out_dir / "files"
    names = [uke.file_label(p, folder) for p in paths]
    stored = [store / _sha(p, n) for p, n in zip(paths, names)]  # each file's entry
    if cache_dir is not None:
        _parse_in_workers(paths, names, stored)
    budget = _Budget()  # segments kept in memory (`MEMORY_ROWS`)
    entries = [e for p, n, at in zip(paths, names, stored)
               for e in _store_file(p, n, at, budget, cache=cache_dir is not None)]
    return _derive_by_month(entries, masters, rules, enrollment, read_link(folder), names, out_dir)


@dataclass
class ClaimsStore:
    """The derived claims tables written by `convert_claims`: ``<folder>/<table>/<YYYYMM>.parquet``,
    ``<folder>/excluded/<YYYYMM>.parquet`` (receipts excluded while deriving) and the segments'
    line exclusions; `read` gives them back in the one-pass order. The months within the memory
    budget (`MEMORY_ROWS`) are kept as Arrow tables in ``memory`` instead of written."""

    folder: Path
    months: list
    dtypes: dict          # table -> {YYYYMM: {column: dtype}}
    entries: list
    counts: dict
    report: dict
    files: list
    #: diagnoses rows of each segment (kept or not), and the (segment, line) keys of the diagnoses of
    #: receipts excluded while deriving: the row of each kept diagnosis without reading the others
    dx_total: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dx_dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    memory: dict = field(default_factory=dict)  # table -> {YYYYMM: frame} of the months not written

    def _frames(self, table: str) -> list:
        return [self._month(table, ym) for ym in self.months if str(ym) in self.dtypes.get(table, {})]

    def read(self, release: bool = False) -> ClaimsLoad:
        """The tables in the one-pass order: claims_monthly, prescriptions and medical_costs by
        person and month (months concatenated in order, then a stable sort by person_id);
        diagnoses in file and line order; exclusions in file and line order. ``release``: the
        months kept in memory are dropped as their table is made (the store is read once)."""
        tables = {}
        for n in claims_rules.CLAIMS_TABLE_NAMES:
            parts = self._frames(n)
            if release:
                self.memory.pop(n, None)
            if not parts:
                continue
            df = pd.concat(parts, ignore_index=True)
            del parts
            if n in _PERSON_SORTED:
                df = df.sort_values("person_id", kind="stable")
            elif n == "diagnoses":  # the one-pass order: file (segment), then the row's order in it
                df = df.iloc[np.lexsort((df[POS].to_numpy(), df[_SEG].to_numpy()))].drop(columns=[POS, _SEG])
            tables[n] = df.reset_index(drop=True)
        exclusions, counts = self.exclusions()
        return ClaimsLoad(tables=tables, exclusions=exclusions, counts=counts, report=self.report,
                          files=list(self.files))

    def exclusions(self) -> tuple[pd.DataFrame, dict]:
        """The exclusions (line exclusions of the segments, then the receipts excluded while
        deriving) in the one-pass order, and the counts (receipts read = kept + excluded)."""
        raw_excl = pd.concat([e.exclusions() for e in self.entries], ignore_index=True)
        if len(raw_excl):
            raw_excl = raw_excl.sort_values(["file", "row"], kind="stable").reset_index(drop=True)
        derived_excl = pd.DataFrame()
        excl = self._frames(_EXCLUDED)
        if excl:
            # one-pass order: the receipts with no person_id, then those with no enrollment, each in file order
            x = pd.concat(excl, ignore_index=True)
            file_index = {n: i for i, n in reversed(list(enumerate(self.files)))}
            x = x.assign(_k=(x["column"] == "対象者").astype(int), _f=x["file"].astype(str).map(file_index))
            derived_excl = x.sort_values(["_k", "_f", "row"], kind="stable").drop(columns=["_k", "_f"])
            derived_excl = derived_excl.reset_index(drop=True)
        parts = [e for e in (raw_excl, derived_excl) if len(e)]
        exclusions = pd.concat(parts, ignore_index=True) if parts else raw_excl
        return exclusions, dict(self.counts, receipts_unlinked=len(derived_excl))

    # ---- the streamed read-back (docs/design.md §8.4): one month at a time, with each row's
    # position in the table `read` gives (its `row`), computed from small key columns only

    def table_names(self) -> list[str]:
        return [n for n in claims_rules.CLAIMS_TABLE_NAMES if self.dtypes.get(n)]

    def _month(self, table: str, ym, columns=None) -> pd.DataFrame:
        df = self.memory.get(table, {}).get(str(ym))
        if df is not None:
            return df if columns is None else df[columns]
        return _to_frame(pq.read_table(self.folder / table / f"{ym}.parquet", columns=columns),
                         self.dtypes[table][str(ym)])

    def iter_rows(self, table: str, persons: pd.Index):
        """Yield (month frame, row, code) for each month of `table`: `row` is each row's position in
        the table `read` gives, `code` its person's position in `persons` (-1: not there; the caller
        needs it too). claims_monthly, prescriptions and medical_costs are ordered by person
        (`persons`: every person_id, sorted), then month, then their order within the month: a
        first pass counts each person's rows (person_id column only), the second gives each row
        the rows of the persons before it + its person's rows in earlier months + its rank in the
        month. diagnoses are in file and line order: the row's (segment, line) key less the
        diagnoses of excluded receipts before it."""
        months = [ym for ym in self.months if str(ym) in self.dtypes.get(table, {})]
        if table == "diagnoses":
            base = np.concatenate([[0], np.cumsum(self.dx_total)]).astype(np.int64)
            dropped = np.sort(self.dx_dropped)
            for ym in months:
                df = self._month(table, ym)
                key = base[df[_SEG].to_numpy(np.int64)] + df[POS].to_numpy(np.int64)
                code = person_keys.positions(persons, df["person_id"])
                yield df.drop(columns=[POS, _SEG]), key - np.searchsorted(dropped, key, side="left"), code
            return
        if table not in _PERSON_SORTED:
            raise ValueError(table)
        total = np.zeros(len(persons), dtype=np.int64)
        for ym in months:
            code = _person_codes(persons, self._month(table, ym, ["person_id"])["person_id"])
            total += np.bincount(code, minlength=len(persons))
        before = np.concatenate([[0], np.cumsum(total)[:-1]]).astype(np.int64)
        done = np.zeros(len(persons), dtype=np.int64)  # rows of each person in the earlier months
        for ym in months:
            df = self._month(table, ym)
            code = _person_codes(persons, df["person_id"])
            rank = pd.Series(code).groupby(code, sort=False).cumcount().to_numpy(np.int64)
            yield df, before[code] + done[code] + rank, code
            done += np.bincount(code, minlength=len(persons))


def _person_codes(persons: pd.Index, person_id: pd.Series) -> np.ndarray:
    code = person_keys.positions(persons, person_id)
    if (code < 0).any():  # cannot happen when the receipts were linked to the enrollment
        raise DataError(f"レセプトの被保険者 {person_id[code < 0].iloc[0]} が対象者の一覧にありません")
    return code


_SEG = "_seg"            # diagnoses: index of the row's segment (files in order, segments in file order)
_EXCLUDED = "excluded"   # receipts excluded while deriving (no person_id / not in the enrollment)


@dataclass
class _Derived:
    """What deriving one group of months leaves for the store (its tables are written or kept)."""
    dtypes: dict            # table -> {YYYYMM: {column: dtype}}
    report: dict            # `claims_rules.derive_tables`' report of the group
    dx_total: np.ndarray    # diagnoses read, per segment
    dx_dropped: np.ndarray  # (segment, position) of the diagnoses of the receipts excluded


@dataclass
class _DeriveJob:
    """Everything deriving a group of months needs (`derive_group`); ``memory`` holds the months
    kept in memory (`MEMORY_ROWS`) when the groups are derived in this process."""
    entries: list
    offsets: np.ndarray
    masters: object
    rules: object
    enrollment: object
    link: object
    out_dir: Path
    memory: dict = field(default_factory=dict)
    budget: _Budget = field(default_factory=_Budget)

    def write(self, table: str, ym: int, df: pd.DataFrame, dtypes: dict) -> None:
        if self.budget.take(len(df)):  # kept in memory as it would be read back
            self.memory.setdefault(table, {})[str(ym)] = _as_read(df)
        else:
            (self.out_dir / table).mkdir(exist_ok=True)
            df.to_parquet(self.out_dir / table / f"{ym}.parquet", index=False)
        dtypes.setdefault(table, {})[str(ym)] = {c: str(d) for c, d in df.dtypes.items()
                                                 if c not in (POS, _SEG)}

    def derive_group(self, group: list) -> _Derived:
        """Derive consecutive months together (`_group_tables`, `claims_rules.derive_tables`) and
        write (or keep) each month's tables."""
        month, dx_key = _group_tables(self.entries, self.offsets, group)
        d = claims_rules.derive_tables(month, self.masters, self.rules, enrollment=self.enrollment, link=self.link)
        # the diagnoses kept are those of the receipts derive_tables kept (in their order)
        rec = month.receipts
        dropped = np.zeros(len(rec), bool)
        if len(d.exclusions):
            dropped = pd.MultiIndex.from_arrays([rec["file"].astype(str), rec["line"]]).isin(
                pd.MultiIndex.from_arrays([d.exclusions["file"].astype(str), d.exclusions["row"]]))
        kept = month.diagnoses["receipt_id"].isin(rec["receipt_id"][~dropped]).to_numpy()
        dx_total = (np.bincount(dx_key[:, 0], minlength=len(self.entries)) if len(dx_key)
                    else np.zeros(len(self.entries), np.int64))
        del month
        dtypes: dict = {}
        for n, df in d.tables.items():
            if n == "diagnoses":
                df = df.assign(**{_SEG: dx_key[kept, 0], POS: dx_key[kept, 1]})
            if len(group) == 1:
                self.write(n, group[0], df, dtypes)
                continue
            ym = df["ym"].to_numpy(np.int64)
            for m in group:  # each month's rows keep their order (the tables are sorted by person, month)
                self.write(n, m, df[ym == m].reset_index(drop=True), dtypes)
        if len(d.exclusions):  # read back all together and put in file and line order (`exclusions`)
            self.write(_EXCLUDED, group[0], d.exclusions, dtypes)
        return _Derived(dtypes, d.report, dx_total, dx_key[~kept] if len(dx_key) else np.zeros((0, 2), np.int64))


#: The job of the groups derived in worker processes: set before the workers are forked, which
#: inherit it (entries, masters and the person-key map are not sent to every task).
_FORKED_JOB: _DeriveJob | None = None


def _derive_forked(group: list) -> _Derived:
    job = _FORKED_JOB
    job.budget = _Budget(0)  # a worker's months are written: its memory is not the importer's
    return job.derive_group(group)


def _derived_groups(job: _DeriveJob, groups: list):
    """`job.derive_group` of each group, in order. With several groups, more than one CPU core and
    `fork` (Linux), the groups are derived in worker processes (`PARSE_WORKERS`), at most two
    groups per worker ahead of the one being collected; memory grows by one group per worker.
    Each group's months are written to disk then (nothing is kept in memory)."""
    import multiprocessing as mp

    workers = min(PARSE_WORKERS or os.cpu_count() or 1, len(groups))
    total = sum(e.counts["receipts_read"] for e in job.entries)
    if workers < 2 or total < PARALLEL_MIN_RECEIPTS or "fork" not in mp.get_all_start_methods():
        for group in groups:
            yield job.derive_group(group)
        return
    import collections
    from concurrent.futures import ProcessPoolExecutor

    global _FORKED_JOB
    _FORKED_JOB = job
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork")) as ex:
            pending: collections.deque = collections.deque()
            todo = iter(groups)
            try:
                for group in todo:
                    pending.append(ex.submit(_derive_forked, group))
                    if len(pending) >= 2 * workers:
                        break
                while pending:
                    done = pending.popleft().result()
                    group = next(todo, None)
                    if group is not None:
                        pending.append(ex.submit(_derive_forked, group))
                    yield done
            finally:  # also when the caller stops early (an error): no more groups are derived
                ex.shutdown(wait=True, cancel_futures=True)
    finally:
        _FORKED_JOB = None


def _derive_by_month(entries, masters, rules, enrollment, link, names, out_dir: Path) -> ClaimsStore:
    offsets = np.concatenate([[0], np.cumsum([e.counts["receipts_read"] for e in entries])[:-1]]).astype(int)
    if link is None or isinstance(link, Path):  # the 枝番 filling looks across all months
        keys = pd.concat([e.keys() for e in entries] or [pd.Series([], dtype=object)], ignore_index=True)
        link = _KeyMap(keys, link)
    months = sorted({m for e in entries for m in e.months})
    if enrollment is not None:  # the municipality lookup once, not once per month
        enrollment = claims_rules.MuniLookup(enrollment)
    groups = _month_groups(entries, months)
    job = _DeriveJob(entries, offsets, masters, rules, enrollment, link, out_dir)
    dtypes: dict = {}
    reports = []
    dx_total = np.zeros(len(entries), np.int64)
    dx_dropped = []
    for group, done in zip(groups, _derived_groups(job, groups)):
        for table, by_month in done.dtypes.items():
            dtypes.setdefault(table, {}).update(by_month)
        reports.append(done.report)
        dx_total += done.dx_total
        dx_dropped.append(done.dx_dropped)
        for e in entries:  # segments whose months are all derived: their parts leave memory
            if not e.months or e.months[-1] <= group[-1]:
                e.release()
    memory = job.memory
    counts = {k: sum(int(e.counts[k]) for e in entries) for k in entries[0].counts} if entries else {}
    counts["files"] = len(names)
    base = np.concatenate([[0], np.cumsum(dx_total)]).astype(np.int64)
    gone = np.concatenate(dx_dropped) if dx_dropped else np.zeros((0, 2), np.int64)
    return ClaimsStore(folder=out_dir, months=months, dtypes=dtypes, entries=entries, counts=counts,
                       report=_merge_report(reports), files=list(names), dx_total=dx_total,
                       dx_dropped=base[gone[:, 0]] + gone[:, 1], memory=memory)


def check_lines(folder, enrollment: pd.DataFrame | None = None) -> list[str]:
    """Japanese lines for `hsutils check`: receipts, lines, exclusions, unknown codes."""
    folder = Path(folder)
    files = uke.find_uke_files(folder)
    if not files:
        return []
    out = [f"■ レセプト電算ファイル（UKE） {len(files)} ファイル"]
    try:
        c = load_claims(folder, files, enrollment=enrollment)
    except DataError as e:
        return out + [f"  エラー: {e}"]
    k = c.counts
    out.append(f"  行 {k['lines_read']:,}（除外 {k['lines_excluded']:,}） / レセプト 読み込み {k['receipts_read']:,} 件"
               f" / 採用 {k['receipts_kept'] - k['receipts_unlinked']:,} 件 / 除外 "
               f"{k['receipts_excluded'] + k['receipts_unlinked']:,} 件（読み込み = 採用 + 除外）")
    out.append("  作成した表: " + "、".join(f"{n} {len(df):,} 行" for n, df in c.tables.items()))
    if len(c.exclusions):
        out.append("  除外の内訳（理由ごと）:")
        for (col, why), g in c.exclusions.groupby(["column", "reason"], sort=False):
            ex = "、".join(f"{f} {int(r)}行目" for f, r in zip(g["file"].head(3), g["row"].head(3)))
            out.append(f"    {col}: {why} … {len(g):,} 件（例: {ex}）")
    out.extend(claims_rules.unknown_codes_text(c.report))
    return out

"""The heavy shared pass: load + validate once, derive person-level flags, count strata, cache.

`prepare_cache` runs once per batch (docs/design.md §2, §8): every notebook then reads the small
cached results with `load_prepared` instead of re-reading raw files.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.core import files, vocab
from hsutils.analysis import aggregate, indicators
from hsutils.core.schema import TABLES, UNREAD_COLUMNS, age_band

CACHE_VERSION = "6"  # 2: 減少率 cohorts of the 法定報告 (prev_* columns); 3: one look-back for all years;
# 4: diagnoses / prescriptions / medical_costs (from UKE or CSV) kept with the other input tables;
#    5: person-level tables partitioned by municipality (and fiscal year), docs/design.md §8.1;
#    6: new_dialysis is NA in a year with < 12 months of claims before it (docs/hotei.md §7.4)
KENSHIN_MEASURES = [c.name for c in TABLES["kenshin"].columns
                    if c.name not in ("person_id", "fy", "muni_code", "sex", "age")]

# the partitioned cache (docs/design.md §8.1)
PARTITION_KEY = "muni"  # hive partition column: the municipality the rows are stored under
YEAR_KEY = "year"  # hive partition column of person_year: the fiscal year
ROW = "_row"  # position in the single-process table (restores order, index and mover de-duplication)
#: Person-level tables that notebooks re-read for their persons (whole history per person).
#: `with_tables=True` loads LOADED_TABLES; the large UKE-derived tables are loaded when a notebook
#: names them (e.g. `with_tables=("claims_monthly", "prescriptions")` in notebook 07).
LOADED_TABLES = ("claims_monthly", "kaigo", "questionnaire")
HISTORY_TABLES = (*LOADED_TABLES, "diagnoses", "prescriptions", "medical_costs")


@dataclass
class Prepared:
    """Everything a notebook needs, read from the cache."""
    person_year: pd.DataFrame
    strata: pd.DataFrame
    municipalities: pd.DataFrame
    districts: pd.DataFrame
    import_summary: pd.DataFrame
    exclusions: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    #: the cache folder it was read from (a notebook that reads more of it later, e.g. 07's prefecture)
    cache_dir: Path | None = None
    #: the municipalities whose person rows it holds (None: every one, e.g. a prefecture run)
    munis: list[str] | None = None

    @property
    def fiscal_years(self) -> list[int]:
        """Fiscal years of the data (all of them, also when only some municipalities were read)."""
        if self.meta.get("fiscal_years"):
            return [int(f) for f in self.meta["fiscal_years"]]
        return sorted(int(f) for f in self.person_year["fy"].unique())

    def muni_name(self, code: str) -> str:
        m = self.municipalities.set_index("muni_code")["name"]
        return str(m.get(str(code), code))


# ---------------------------------------------------------------- derivations

def _kaigo_by_fy(kaigo: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Certification in force at any time in the fiscal year, with the latest level (docs/rules.md §6.1-10)."""
    if kaigo is None or kaigo.empty:
        return pd.DataFrame(columns=["person_id", "fy", "kaigo_certified", "kaigo_level"])
    k = kaigo[["person_id", "level", "start", "end"]].merge(
        keys[["person_id", "fy"]].drop_duplicates(), on="person_id")
    fy_start = pd.to_datetime(k["fy"].astype(str) + "-04-01")
    fy_end = pd.to_datetime((k["fy"] + 1).astype(str) + "-03-31")
    active = (k["start"] <= fy_end) & (k["end"].isna() | (k["end"] >= fy_start))
    k = k[active.to_numpy()].sort_values(["person_id", "fy", "start"])
    k = k.drop_duplicates(["person_id", "fy"], keep="last")
    return pd.DataFrame({"person_id": k["person_id"].to_numpy(), "fy": k["fy"].to_numpy(),
                         "kaigo_certified": True, "kaigo_level": k["level"].to_numpy()})


def build_person_year(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per enrollment row with every derived flag (docs/internal_api.md).

    Returns (person_year, unmatched) where unmatched lists input rows of other tables that have
    no enrollment row (reported, never silently dropped).
    """
    from hsutils.rules import clinical, programs

    enr = tables["enrollment"].copy()
    if "district_code" not in enr:
        enr["district_code"] = ""
    enr["district_code"] = enr["district_code"].fillna("").astype(str)
    enr["full_year"] = enr["full_year"].fillna(True).astype(bool) if "full_year" in enr else True
    enr["excluded_statutory"] = (enr["excluded_statutory"].fillna(False).astype(bool)
                                 if "excluded_statutory" in enr else False)
    enr["sex"] = enr["sex"].astype(np.int64)
    enr["age"] = enr["age"].astype(np.int64)
    enr["age_band"] = age_band(enr["age"].to_numpy())
    enr["fy"] = enr["fy"].astype(np.int64)

    # 健診 + clinical rules (docs/rules.md §1–§5)
    ken = tables["kenshin"].copy()
    ken = ken.drop(columns=[c for c in ("sex", "age", "muni_code") if c in ken])
    ken = ken.merge(enr[["person_id", "fy", "sex", "age"]], on=["person_id", "fy"], how="left", indicator=True)
    orphan = ken["_merge"] == "left_only"
    ken = ken[~orphan].drop(columns="_merge")
    ken = clinical.derive_kenshin(ken)
    ken["has_kenshin"] = True
    py = enr.merge(ken.drop(columns=["sex", "age"]), on=["person_id", "fy"], how="left")
    py["has_kenshin"] = py["has_kenshin"].fillna(False).astype(bool)
    for c in [c for c in py.columns if c.startswith(("ref_", "poor_", "hg_")) or c == "diabetes_type"]:
        py[c] = py[c].fillna(False).astype(bool)
    py["guidance_target"] = py["hokenshido"].isin(["積極的支援", "動機付け支援"]).to_numpy()

    # 特定保健指導 (docs/rules.md §7.2)
    g = tables.get("guidance")
    if g is not None and not g.empty:
        gg = g[["person_id", "fy", "level", "started", "completed"]].rename(columns={
            "level": "guidance_level_used", "started": "guidance_started", "completed": "guidance_completed"})
        py = py.merge(gg, on=["person_id", "fy"], how="left")
    for c in ("guidance_started", "guidance_completed"):
        py[c] = py[c].fillna(False).astype(bool) if c in py else False

    # last year's status for the 減少率 cohorts (docs/hotei.md §4): one definition, in hsutils.analysis.hotei_items
    from hsutils.analysis import hotei_items

    py = pd.concat([py, hotei_items.previous_year_status(py)], axis=1)

    fys = sorted(py["fy"].unique().tolist())
    claims = tables.get("claims_monthly")
    kaigo = tables.get("kaigo")
    quest = tables.get("questionnaire")

    empty = lambda name: pd.DataFrame(columns=TABLES[name].names)  # noqa: E731
    # the claims prepared once (person codes, per-year arrays and statuses kept) for every year and rule
    claims_ = programs.prepare_claims(claims if claims is not None else empty("claims_monthly"))

    # claims per fiscal year
    if claims is not None and not claims.empty:
        cpy = programs.claims_person_year(claims_, fys)
        py = py.merge(cpy, on=["person_id", "fy"], how="left")
    for c in ("claim_medical", "claim_dental", "dm_claim", "htn_claim", "lipid_claim", "ckd_claim",
              "dialysis_claim", "hf_claim", "stroke_claim", "hypnotic_claim"):
        py[c] = py[c].fillna(False).astype(bool) if c in py else False
    # 新規人工透析: False for a person without claims, but unknown (NA) for everyone in a year whose
    # claims start less than 12 months before it (docs/hotei.md §7.4)
    known = programs.new_dialysis_determinable(claims, fys).reindex(py["fy"].astype("int64")).to_numpy(dtype=bool)
    nd = py["new_dialysis"].astype("boolean") if "new_dialysis" in py else pd.Series(pd.NA, index=py.index,
                                                                                      dtype="boolean")
    py["new_dialysis"] = nd.fillna(False).where(known, pd.NA).astype("boolean")

    # 介護認定
    kk = _kaigo_by_fy(kaigo, py)
    py = py.merge(kk, on=["person_id", "fy"], how="left")
    py["kaigo_certified"] = py["kaigo_certified"].fillna(False).astype(bool)

    # 質問票
    if quest is not None and not quest.empty:
        qcols = [f"q{i}" for i in range(1, 16) if f"q{i}" in quest]
        py = py.merge(quest[["person_id", "fy"] + qcols], on=["person_id", "fy"], how="left")

    # program flags per fiscal year (docs/rules.md §5, §6)
    kaigo_ = kaigo if kaigo is not None else empty("kaigo")
    quest_ = quest if quest is not None else empty("questionnaire")
    # every year's rows (健康状態不明者 looks at the previous fiscal year's, and the claims look-back is
    # the same for every fiscal year of the frame, docs/hotei.md §7), only the columns the rules read
    rule_inputs = py[[c for c in programs.PERSON_YEAR_INPUTS if c in py.columns]]
    parts = []
    for f in fys:  # a loop over 3–10 fiscal years, not over persons
        ik = programs.ikkatsu_flags(rule_inputs, claims_, kaigo_, quest_, f)
        dk = programs.nephropathy_flags(rule_inputs, claims_, f)
        parts.append(pd.concat([ik, dk.drop(columns=[c for c in dk.columns if c in ik.columns])], axis=1))
    flags = pd.concat(parts).reindex(py.index)
    flags = flags.drop(columns=[c for c in flags.columns if c in py.columns])
    py = pd.concat([py, flags], axis=1)

    return py.reset_index(drop=True), unmatched_rows(tables)


#: Tables whose rows must match an enrollment row of the same person and fiscal year, with the reason.
_MATCHED_TABLES = {"kenshin": "対象者表に該当年度の加入がない受診者",
                   "guidance": "対象者表に該当年度の加入がない", "questionnaire": "対象者表に該当年度の加入がない"}


def unmatched_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows of 健診・保健指導・質問票 with no enrollment row of the same person and fiscal year
    (reported in the exclusions, never silently dropped): table, person_id, fy, reason."""
    keys = tables["enrollment"][["person_id", "fy"]].drop_duplicates()
    keys = keys.assign(fy=keys["fy"].astype(np.int64))
    unmatched = []
    for name, reason in _MATCHED_TABLES.items():
        t = tables.get(name)
        if t is not None and not t.empty:
            m = t[["person_id", "fy"]].merge(keys, on=["person_id", "fy"], how="left", indicator=True)
            o = (m["_merge"] == "left_only").to_numpy()
            if o.any():
                unmatched.append(pd.DataFrame({"table": name, "person_id": m.loc[o, "person_id"],
                                               "fy": m.loc[o, "fy"], "reason": reason}))
    return pd.concat(unmatched, ignore_index=True) if unmatched else pd.DataFrame(
        columns=["table", "person_id", "fy", "reason"])


def build_strata(person_year: pd.DataFrame, ids=None) -> pd.DataFrame:
    """The strata table for every registered indicator (hsutils.analysis.aggregate, one pass; each
    indicator's flags counted as they are made, not all held at once)."""
    return aggregate.strata_counts(person_year, indicators.iter_indicator_flags(person_year, ids))


# ---------------------------------------------------------------- the shared pass per partition
#
# docs/design.md §8.2, §8.3: the person-level derivations and strata are computed per municipality
# partition (the partition holds the whole history of every person enrolled there, the mover rule)
# and the partial strata are summed. Each person × year row is derived and counted once, in the
# partition of its own municipality, so the sum equals the single-process table exactly.

#: The input tables a partition holds (whole history of its persons, docs/design.md §8.2).
PARTITION_INPUTS = ("enrollment", "kenshin", "guidance") + LOADED_TABLES


#: Enrollment rows (person × year, movers' histories included) one task of the shared pass reads at
#: most, when its municipalities are grouped (docs/design.md §8.3): about 1–1.5 GB of memory.
TASK_ROWS = 200_000


def write_partition_inputs(tables: dict[str, pd.DataFrame], folder: Path) -> pd.Series:
    """Write the person-level input tables by municipality (mover rule) under `folder`; returns the
    enrollment rows stored per municipality (the partitions of the shared pass, in code order)."""
    members = partition_members(tables["enrollment"])
    sizes = None
    for name in dict.fromkeys(PARTITION_INPUTS + HISTORY_TABLES):  # the UKE tables: cache only
        t = tables.get(name)
        if t is not None:
            parts = _history_partitions(t, members)
            if name == "enrollment":
                sizes = parts[PARTITION_KEY].value_counts().sort_index()
            _write_parts(parts, folder / name, [PARTITION_KEY], [PARTITION_KEY])
    return sizes


@dataclass(frozen=True)
class PersonSlice:
    """A task over part of one large municipality: the persons of its partition whose person_id
    lies in [first, last] (docs/design.md §8.3). Every person of the partition is in exactly one
    slice, with the whole history, so the slices' sums equal the municipality's."""
    muni: str
    first: str
    last: str
    part: int
    parts: int

    @property
    def label(self) -> str:
        return f"{self.muni}（{self.part + 1}/{self.parts}）"


def slice_municipality(enrollment_dir: Path, muni: str, parts: int) -> list[PersonSlice]:
    """`parts` slices of a municipality's persons with about equal enrollment rows each: person ids
    in sorted order, cut where the running row count passes each k/parts of the total. Reads the
    partition's person_id column only (pyarrow)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dset = ds.dataset(enrollment_dir, format="parquet", partitioning=ds.partitioning(flavor="hive"))
    ids = dset.to_table(columns=["person_id"], filter=ds.field(PARTITION_KEY).isin([str(muni)])).column("person_id")
    counts = pc.value_counts(ids)
    values = counts.field("values")
    order = pc.sort_indices(values)
    values = values.take(order).to_numpy(zero_copy_only=False)
    running = np.cumsum(counts.field("counts").take(order).to_numpy())
    # slice k ends at the first person whose running count reaches (k + 1) / parts of the rows
    ends = np.searchsorted(running, running[-1] * np.arange(1, parts + 1) / parts, side="left")
    ends = np.unique(np.minimum(ends, len(values) - 1))
    starts = np.r_[0, ends[:-1] + 1]
    n = len(ends)
    return [PersonSlice(str(muni), str(values[a]), str(values[b]), k, n)
            for k, (a, b) in enumerate(zip(starts, ends))]  # a loop over slices


def plan_tasks(sizes: pd.Series, task_rows: int = TASK_ROWS, folder: Path | None = None) -> list:
    """Municipalities grouped into tasks of at most `task_rows` enrollment rows: small towns share a
    task, so the fixed cost of a pass is paid once per group, and memory stays bounded by the largest
    task (docs/design.md §8.3). A municipality larger than `task_rows` is a task of its own, or, when
    the input partitions' `folder` is given, ceil(rows / task_rows) `PersonSlice` tasks, so that no
    task grows with the municipality (a city of millions on an office PC)."""
    tasks, current, n = [], [], 0
    for muni, rows in sizes.items():  # a loop over municipalities
        if current and n + int(rows) > task_rows:
            tasks.append(current)
            current, n = [], 0
        if folder is not None and int(rows) > task_rows:
            tasks.extend(slice_municipality(Path(folder) / "enrollment", str(muni), -(-int(rows) // task_rows)))
            continue
        current.append(str(muni))
        n += int(rows)
    if current:
        tasks.append(current)
    return tasks


def _task_scope(task) -> tuple[list[str], tuple[str, str] | None, int, str]:
    """(municipalities, person_id range or None, file number, label) of a task."""
    if isinstance(task, PersonSlice):
        return [task.muni], (task.first, task.last), task.part, task.label
    munis = [str(m) for m in task]
    return munis, None, 0, "・".join(munis)


@dataclass
class PartitionResult:
    """What one partition of the shared pass returns (small: the person rows stay in its files)."""
    muni: str
    strata: pd.DataFrame
    first_seen: dict  # key column -> {value: first row position} (order of the combined table)
    rows: int
    seconds: float
    peak_rss_mb: float
    error: str = ""


def _first_seen(frame: pd.DataFrame, rows: np.ndarray) -> dict:
    """For each strata key of `frame`, each distinct value's first row position in the whole table."""
    out = {}
    for k in aggregate.STRATA_KEYS:
        col = frame[k]
        if isinstance(col.dtype, pd.CategoricalDtype):
            continue  # fixed categories (age bands): their order is the dtype's
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        ok = codes >= 0
        first = pd.Series(rows[ok]).groupby(codes[ok]).min()
        out[k] = dict(zip(np.asarray(uniques, dtype=object)[first.index.to_numpy()].tolist(), first.tolist()))
    return out


def run_partition(input_dir: Path, out_dir: Path, task, first_ym: int | None) -> PartitionResult:
    """The shared pass of one task (a list of municipalities or a `PersonSlice`): read the input
    partitions of its municipalities (of the slice's persons only), derive person_year for these
    persons (whole history), keep the rows of these municipalities, write them as
    `person_year/muni=<muni>/year=<fy>/part-<slice>.parquet` under `out_dir`, and count their strata."""
    from hsutils.analysis import partition_import

    # the task's own peak, sampled (a spawned worker's ru_maxrss carries its parent's peak)
    mem = partition_import.PeakMemory()
    t0 = time.perf_counter()
    munis, persons, part, label = _task_scope(task)
    try:
        tables = {name: read_partitioned(input_dir / name, munis, keep_row=(name == "enrollment"), persons=persons)
                  for name in PARTITION_INPUTS if has_parts(input_dir / name)}
        if first_ym is not None and "claims_monthly" in tables:
            tables["claims_monthly"].attrs["first_ym"] = int(first_ym)  # the data's look-back
        py, _ = build_person_year(tables)
        own = py["muni_code"].astype(str).isin(munis).to_numpy()
        py = py[own].reset_index(drop=True)
        rows = py.pop(ROW).to_numpy()
        strata = build_strata(py)
        first = _first_seen(py, rows)
        py = py.assign(**{ROW: rows, PARTITION_KEY: py["muni_code"].astype(str).to_numpy(),
                          "_fy": py["fy"].astype(str).to_numpy()})
        _write_parts(py, out_dir / "person_year", [PARTITION_KEY, "_fy"], [PARTITION_KEY, YEAR_KEY],
                     file_name=f"part-{part}.parquet")
        return PartitionResult(label, strata, first, int(len(py)), round(time.perf_counter() - t0, 3), mem.stop())
    except Exception as e:  # noqa: BLE001 - reported per partition; the others complete
        return PartitionResult(label, pd.DataFrame(), {}, 0, round(time.perf_counter() - t0, 3), mem.stop(),
                               error=f"{type(e).__name__}: {e}")


def _task(task, folder: Path, first_ym: int | None) -> PartitionResult:
    """One task on a Dask worker (module level: picklable)."""
    return run_partition(folder, folder, task, first_ym)


def run_partitions(folder: Path, tasks: list, first_ym: int | None, scheduler: str | None = None,
                   workers: int | None = None, show_progress: bool = False,
                   in_process: bool = False) -> list[PartitionResult]:
    """The shared pass over every task (group of municipality partitions) under `folder` (inputs
    there, person_year written there), on `dask.distributed` (docs/design.md §8.3): the cluster at
    `scheduler`, else a LocalCluster of `workers` processes sized to the machine. A single task
    without a scheduler (or `in_process`) runs in this process (a small data set needs no cluster). Results in task
    order; a failing task carries its error and the others complete."""
    from hsutils.analysis import cluster

    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="共通の集計（市町村ごと）", unit="分割")

    def progress(done, total, eta, result):
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{result.muni} {'失敗' if result.error else '完了'}")

    try:
        if in_process or (len(tasks) <= 1 and not cluster.scheduler_address(scheduler)):
            results = []
            for t in tasks:
                results.append(_task(t, folder, first_ym))
                progress(len(results), len(tasks), 0.0, results[-1])
            return results
        with cluster.client(scheduler, workers) as c:
            return cluster.map_tasks(c, _task, tasks, folder, first_ym, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _engine_label(scheduler: str | None, n_tasks: int) -> str:
    from hsutils.analysis import cluster

    address = cluster.scheduler_address(scheduler)
    if address:
        return f"dask {address}"
    return "この処理の中（1分割）" if n_tasks <= 1 else "dask LocalCluster"


def combine_partition_strata(results: list[PartitionResult]) -> pd.DataFrame:
    """Sum the partitions' strata into the table the single-process path gives (same rows, order,
    dtypes and category order: keys ordered by first appearance in the whole table, indicators in
    registry order, as `hsutils.analysis.aggregate.strata_counts` orders them)."""
    parts = [r.strata for r in results if len(r.strata)]
    if not parts:
        return build_strata(pd.DataFrame({k: pd.Series(dtype=object) for k in aggregate.STRATA_KEYS}))
    keys = list(aggregate.STRATA_KEYS)
    plain = pd.concat([p.astype({c: object for c in p.columns if isinstance(p[c].dtype, pd.CategoricalDtype)})
                       for p in parts], ignore_index=True)
    summed = plain.groupby(keys + ["indicator_id"], sort=False, dropna=False)[["numerator", "denominator"]].sum()
    summed = summed.reset_index()
    out = {}
    sort_codes = {}
    for k in keys:
        if isinstance(parts[0][k].dtype, pd.CategoricalDtype) and k not in _first_seen_keys(results):
            cats = parts[0][k].cat.categories
            out[k] = pd.Categorical(summed[k].astype(str), categories=cats)
            sort_codes[k] = out[k].codes
            continue
        seen: dict = {}
        for r in results:
            for v, row in r.first_seen.get(k, {}).items():
                seen[v] = min(row, seen.get(v, row))
        order = sorted(seen, key=seen.get)
        pos = pd.Index(order)
        sort_codes[k] = pos.get_indexer(summed[k].tolist())
        if k in ("fy", "sex"):
            out[k] = summed[k].to_numpy(dtype=np.int64)
        else:
            out[k] = pd.Categorical.from_codes(sort_codes[k], categories=pd.Index(np.asarray(order, dtype=str)))
    present = set(pd.unique(summed["indicator_id"].astype(str)))  # once, not once per indicator
    ids = [i.id for i in indicators.INDICATORS if i.id in present]
    ind = pd.Categorical(summed["indicator_id"].astype(str), categories=pd.Index(ids))
    df = pd.DataFrame(out)
    df["indicator_id"] = ind
    df["numerator"] = summed["numerator"].to_numpy(dtype=np.int64)
    df["denominator"] = summed["denominator"].to_numpy(dtype=np.int64)
    # strata_counts' order: indicator, then the mixed-radix code (last key most significant)
    order = np.lexsort([sort_codes[k] for k in keys] + [ind.codes])
    return df.iloc[order].reset_index(drop=True)


def _first_seen_keys(results) -> set:
    return {k for r in results for k in r.first_seen}


# ---------------------------------------------------------------- cache

def _hash_folder(data_dir: Path, column_map) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(",".join(i.id for i in indicators.INDICATORS).encode())  # new indicators need new strata
    h.update(files.folder_fingerprint(data_dir).encode())  # every file, whatever its extension (.tsv)
    if column_map:
        h.update(Path(column_map).read_bytes() if isinstance(column_map, (str, Path)) else
                 json.dumps(column_map, sort_keys=True).encode())
    return h.hexdigest()


def _master(municipalities: pd.DataFrame | None, enrollment_munis) -> pd.DataFrame:
    """The municipality master of the data folder, else the built-in one of the prefectures of the
    enrollment's municipality codes."""
    m = municipalities
    if m is None or m.empty:
        from hsutils.inputs import regions

        prefs = sorted({int(str(c)[:2]) for c in enrollment_munis})
        m = pd.concat([regions.load_master(pref_code=p) for p in prefs], ignore_index=True)
    m = m.copy()
    m["pref_code"] = pd.to_numeric(m["pref_code"], errors="coerce").astype("Int64").astype(str).str.zfill(2)
    if "pref_name" not in m:
        m["pref_name"] = m["pref_code"].map(vocab.PREF_NAME_BY_CODE)
    if "medical_area_code" not in m or m["medical_area_code"].isna().all():
        m["medical_area_code"] = m["medical_area"]
    m["medical_area_code"] = m["medical_area_code"].astype(str)
    return m


def _history_meta(first_ym: int | None, fys) -> dict:
    """Months of claims per fiscal year and the look-backs used (docs/hotei.md §7), for meta.json:
    all follow from the first claims month of the data (`first_ym`, None: no claims)."""
    from hsutils.rules import programs

    fys = sorted(int(f) for f in fys)
    claims = None if first_ym is None else pd.DataFrame({"ym": [int(first_ym)]})
    h = programs.claims_history(claims, fys)
    ik, dk = programs.IkkatsuParams(), programs.NephropathyParams()
    return {"first_ym": None if h.empty or pd.isna(h["first_ym"].iloc[0]) else int(h["first_ym"].iloc[0]),
            "months_to_fy_end": {str(f): int(m) for f, m in zip(h["fy"], h["months_to_fy_end"])},
            "interruption_lookback": {"requested": ik.interruption_lookback_months, "used": programs.allowed_lookback(
                claims, fys, ik.interruption_lookback_months, ik.interruption_window_months)},
            "nephropathy_lookback": {"requested": dk.lookback_months, "used": programs.allowed_lookback(
                claims, fys, dk.lookback_months, dk.window_months)}}


#: The stages of `prepare_cache`, as a progress bar names them (Japanese, in order).
PREPARE_STAGES = ("入力ファイルの読み込みと検査", "対象者×年度の表の作成", "性・年齢階級別の集計", "キャッシュの書き込み")


def prepare_cache(data_dir: Path, cache_dir: Path, column_map=None, force: bool = False,
                  progress=None, task_rows: int = TASK_ROWS, scheduler: str | None = None,
                  workers: int | None = None, show_progress: bool = False, streamed: bool = True,
                  chunk_rows: int | None = None) -> Path:
    """Load, validate and derive once; write Parquet files into cache_dir (docs/design.md §8).

    Re-uses the cache when the input files and column map are unchanged (content hash).
    The input tables are streamed chunk by chunk into municipality partitions
    (`hsutils.analysis.partition_import`, docs/design.md §8.4: memory bounded by the chunk and the
    largest task, not by the data); `streamed=False` reads them whole first (`io.load_dataset`,
    the in-memory path: the same cache, for comparison and small data). `chunk_rows`: rows per chunk
    of CSV/Parquet files (default: only files over `io.CSV_CHUNK_BYTES` / `io.CSV_CHUNK_ROWS`).
    The person-level derivations and strata run per task of municipality partitions
    (`plan_tasks`, at most `task_rows` enrollment rows each) and the strata are summed
    (docs/design.md §8.2, §8.3); a failing task is reported after the others have run. Tasks run
    on `dask.distributed` (`hsutils.analysis.cluster`: the cluster at `scheduler` or a LocalCluster of
    `workers` processes); `show_progress` shows a bar per task with the estimated finish time.
    `progress`, when given, is called with each stage name of `PREPARE_STAGES` as it starts
    (a progress bar of a notebook's first run); it is not called when the cache is reused.
    meta.json records each stage's seconds and peak memory of this process (`stages`).
    """
    def stage(i: int) -> None:
        if progress is not None:
            progress(PREPARE_STAGES[i])

    import shutil

    from hsutils.analysis import partition_import, references
    from hsutils.inputs import io
    from hsutils.core.errors import DataError

    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    if not data_dir.is_dir():
        raise DataError(f"データフォルダ「{data_dir}」がありません。デモデータは `hsutils demo` で作成できます。")
    key = _hash_folder(data_dir, column_map)
    meta_path = cache_dir / "meta.json"
    if not force and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("data_hash") == key:
            return cache_dir
    t0 = time.perf_counter()
    stages = partition_import.Stages()
    stages.start("import")
    stage(0)
    tmp = cache_dir.with_name(cache_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if streamed:
        # each chunk straight into the municipality partitions (the mover rule, docs/design.md §8.4)
        imp = partition_import.stream_inputs(data_dir, tmp, column_map=column_map,
                                             cache_dir=cache_dir / "tables_cache", chunk_rows=chunk_rows,
                                             stages=stages)
        summary, in_exclusions, unmatched = imp.summary, imp.exclusions, imp.unmatched
        master = _master(imp.municipalities, imp.enrollment_munis)
        districts, fys, n_rows, first_ym, sizes = imp.districts, imp.fiscal_years, imp.rows, imp.first_ym, imp.sizes
    else:
        dataset = io.load_dataset(data_dir, column_map=column_map, cache_dir=cache_dir / "tables_cache")
        tables = dataset.tables
        summary, in_exclusions = dataset.summary, dataset.exclusions
        master = _master(tables.get("municipalities"), tables["enrollment"]["muni_code"].unique())
        districts = tables.get("districts")
        unmatched = unmatched_rows(tables)
        fys = sorted(int(f) for f in tables["enrollment"]["fy"].unique())
        claims = tables.get("claims_monthly")
        first_ym = (None if claims is None or len(claims) == 0 or "ym" not in claims
                    else int(pd.to_numeric(claims["ym"]).min()))
        n_rows = {k: int(len(v)) for k, v in tables.items()}
        stages.start("partition")
        # the person-level inputs by municipality (mover rule); the history tables are the cache's own
        sizes = write_partition_inputs(tables, tmp)
        dataset.tables = {}
        del tables, claims  # the partitions are read back one by one (bounded memory)
    if districts is None:
        districts = pd.DataFrame(columns=["muni_code", "district_code", "name"])
    history = _history_meta(first_ym, fys)
    tasks = plan_tasks(sizes, task_rows, folder=tmp)

    stages.start("shared_pass")
    stage(1)
    results = run_partitions(tmp, tasks, history["first_ym"], scheduler=scheduler, workers=workers,
                             show_progress=show_progress)
    failed = [r for r in results if r.error]
    if failed:
        lines = "\n".join(f"  {r.muni}: {r.error}" for r in failed)
        raise DataError(f"共通の集計で {len(failed)} 市町村の処理に失敗しました（ほかの {len(results) - len(failed)} "
                        f"市町村は完了）:\n{lines}")
    stage(2)
    strata = combine_partition_strata(results)
    py_rows = sum(r.rows for r in results)
    if py_rows != n_rows["enrollment"]:
        raise AssertionError(f"partitions hold {py_rows} person-year rows, the enrollment table {n_rows['enrollment']}")

    stages.start("write")
    stage(3)
    for name in ("enrollment", "kenshin", "guidance"):
        if (tmp / name).exists():
            shutil.rmtree(tmp / name)
    strata.to_parquet(tmp / "strata.parquet", index=False)
    master.to_parquet(tmp / "municipalities.parquet", index=False)
    references.write_stored_comparisons(tmp)  # 県・同規模・国 of every area, once (docs/design.md §8.7)
    districts.to_parquet(tmp / "districts.parquet", index=False)
    summary.to_parquet(tmp / "import_summary.parquet", index=False)
    # rows of other tables with no enrollment row are listed too, so read = used + excluded holds
    um = pd.DataFrame({"file": unmatched["table"].map(lambda t: f"{t}（対象者表との突合）"),
                       "table": unmatched["table"], "row": pd.NA, "column": "被保険者番号・年度",
                       "value": "", "reason": unmatched["reason"], "scope": "行"})
    excl = pd.concat([in_exclusions, um], ignore_index=True) if len(um) else in_exclusions
    excl = excl.astype({c: str for c in ("value", "row") if c in excl})
    excl.to_parquet(tmp / "exclusions.parquet", index=False)
    unmatched.to_parquet(tmp / "unmatched.parquet", index=False)
    stages.stop()
    meta = {"data_hash": key, "data_dir": str(data_dir.resolve()), "seconds": round(time.perf_counter() - t0, 2),
            "rows": n_rows, "person_year_rows": int(py_rows), "strata_rows": int(len(strata)),
            "fiscal_years": fys, "cache_version": CACHE_VERSION, "claims_history": history,
            "engine": _engine_label(scheduler, len(tasks)),
            "partitions": [{"muni": r.muni, "rows": r.rows, "seconds": r.seconds, "peak_rss_mb": r.peak_rss_mb}
                           for r in results],
            "stages": stages.out}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    # keep the table cache of io across rebuilds
    old_tables = cache_dir / "tables_cache"
    if old_tables.exists():
        old_tables.rename(tmp / "tables_cache")
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    tmp.rename(cache_dir)
    return cache_dir


# ---------------------------------------------------------------- partitioned person-level tables
#
# docs/design.md §8.1: person_year is stored as one Parquet file per municipality × fiscal year
# (`person_year/muni=17201/year=2024/part-0.parquet`); the history tables a notebook re-reads for its
# persons (claims, 介護, 質問票) as one file per municipality, holding the *whole history of every
# person enrolled there in any year* (a person who moved is stored under each municipality: the
# mover rule of docs/design.md §8.2). A municipal run reads only its municipality's files
# (pyarrow dataset filters); a prefectural run reads them all. `_row` is the row's position in the
# single-process table, so that a read gives exactly the rows (and index labels) of that table,
# in the same order, whichever partitions it reads.



def _write_parts(frame: pd.DataFrame, folder: Path, part_cols: list[str], part_names: list[str],
                file_name: str = "part-0.parquet") -> None:
    """One Parquet file per distinct value of `part_cols` (hive folders `name=value/…`), rows in
    their original order, carrying `ROW`. A loop over partitions (municipalities), not persons."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    data = frame.drop(columns=part_cols)
    if not len(frame):
        return
    codes, uniques = pd.MultiIndex.from_frame(frame[part_cols].astype(str)).factorize()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    for k, values in enumerate(uniques):
        rows = order[bounds[k]:bounds[k + 1]]
        sub = folder.joinpath(*(f"{n}={v}" for n, v in zip(part_names, values)))
        sub.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(data.iloc[rows], preserve_index=False)
        pq.write_table(table, sub / file_name)


def partition_members(enrollment: pd.DataFrame) -> pd.DataFrame:
    """person_id × municipality pairs: every municipality in which the person has an enrollment row
    in the data (docs/design.md §8.2, the mover rule). Columns person_id, muni."""
    pairs = enrollment[["person_id", "muni_code"]].drop_duplicates()
    return pd.DataFrame({"person_id": pairs["person_id"].to_numpy(),
                         PARTITION_KEY: pairs["muni_code"].astype(str).to_numpy()})


def _history_partitions(table: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """`table` with ROW and the partition key: each row once per municipality where its person is
    enrolled; rows of persons with no enrollment row at all under their own municipality (so that
    reading every partition gives back the whole table)."""
    t = table.assign(**{ROW: np.arange(len(table), dtype=np.int64)})
    m = t.merge(members, on="person_id", how="inner", sort=False)
    orphan = ~t["person_id"].isin(members["person_id"]).to_numpy()
    if orphan.any():
        o = t[orphan]
        m = pd.concat([m, o.assign(**{PARTITION_KEY: o["muni_code"].astype(str).to_numpy()})], ignore_index=True)
    return m


def write_partitioned(person_year: pd.DataFrame, folder: Path, tables: dict) -> None:
    """Write person_year (by municipality × fiscal year) and the history tables (by municipality,
    mover rule) under `folder` (docs/design.md §8.1, §8.2)."""
    py = person_year.assign(**{ROW: np.arange(len(person_year), dtype=np.int64),
                               PARTITION_KEY: person_year["muni_code"].astype(str).to_numpy(),
                               "_fy": person_year["fy"].astype(str).to_numpy()})
    _write_parts(py, folder / "person_year", [PARTITION_KEY, "_fy"], [PARTITION_KEY, YEAR_KEY])
    members = partition_members(tables["enrollment"])
    for name in HISTORY_TABLES:
        t = tables.get(name)
        if t is not None:
            _write_parts(_history_partitions(t, members), folder / name, [PARTITION_KEY], [PARTITION_KEY])


def read_partitioned(folder: Path, munis=None, keep_row: bool = False, columns=None,
                     persons: tuple[str, str] | None = None) -> pd.DataFrame:
    """Rows of a partitioned table for the municipalities `munis` (None: all), in the order and with
    the index labels of the single-process table, each row once (a mover stored twice is read once).
    `columns`: only these columns are read (None: all); `persons`: only persons whose person_id lies
    in this inclusive range (a `PersonSlice`). The filters and the column list go to pyarrow, so
    other municipalities' files and other columns are not read."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    part = ds.partitioning(flavor="hive")
    dset = ds.dataset(folder, format="parquet", partitioning=part)
    names = [n for n in dset.schema.names if n not in (PARTITION_KEY, YEAR_KEY)
             and (columns is None or n in columns or n == ROW)]
    filt = None if munis is None else ds.field(PARTITION_KEY).isin([str(m) for m in munis])
    if persons is not None:
        in_range = (ds.field("person_id") >= persons[0]) & (ds.field("person_id") <= persons[1])
        filt = in_range if filt is None else filt & in_range
    table = dset.to_table(columns=names, filter=filt)
    rows = table.column(ROW).to_numpy()
    if len(rows) > 1 and not (rows[1:] > rows[:-1]).all():  # one partition's file is in order already
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        keep = np.ones(len(rows), dtype=bool)
        keep[1:] = rows[1:] != rows[:-1]  # a mover's rows stored under two municipalities: once
        table = _take_rows(table, order[keep])
        rows = rows[keep]
    frame = table.drop_columns([ROW]).to_pandas()
    del table
    # the Arrow columns just converted are free, but Arrow's allocator keeps their pages: give them back, or a
    # large city's run holds its tables twice (issue 17: 金沢市's 04 at scale 4, 0.16 GB of 0.5)
    pa.default_memory_pool().release_unused()
    if keep_row:
        frame[ROW] = rows
    if len(rows) and rows[0] == 0 and rows[-1] == len(rows) - 1:
        frame.index = pd.RangeIndex(len(rows))
    else:
        frame.index = pd.Index(rows)
    unread = [n for n in dset.schema.names if n not in names and n not in (PARTITION_KEY, YEAR_KEY)]
    if columns is not None and unread:  # a rule that needs one of them raises (schema.UNREAD_COLUMNS)
        frame.attrs[UNREAD_COLUMNS] = tuple(unread)
    return frame


def _take_rows(table, indices: np.ndarray):
    """`table.take(indices)`, its columns shared among threads (one group per core) from
    `parallel.PARALLEL_MIN_ROWS` rows: Arrow's gather releases the GIL, and a prefecture's receipts
    spend seconds in it (string columns; 5.7 M rows × 9 columns of the scale-1 demo: 2.5 s on one thread)."""
    import pyarrow as pa

    from hsutils.core import parallel

    threads = min(parallel.cores(), table.num_columns)
    if table.num_rows < parallel.PARALLEL_MIN_ROWS or threads < 2:
        return table.take(indices)
    idx = pa.array(indices)
    groups = [list(range(table.num_columns))[i::threads] for i in range(threads)]
    taken = parallel.per_thread(lambda cols: [table.column(j).take(idx) for j in cols], groups)
    columns = [None] * table.num_columns
    for cols, got in zip(groups, taken):
        for j, column in zip(cols, got):
            columns[j] = column
    return pa.Table.from_arrays(columns, schema=table.schema)


def has_parts(folder: Path) -> bool:
    """Whether a partitioned table has any file (an optional table the data do not have, e.g. no
    保健指導 file, is an empty folder: read as absent, not as an error)."""
    return folder.is_dir() and next(folder.glob("*/*.parquet"), None) is not None


def _scope_munis(munis) -> list[str] | None:
    return None if munis is None else sorted({str(m) for m in munis})


def load_area_tables(cache_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The municipality master and the district master of the cache (small; to resolve an area
    before deciding which partitions to read)."""
    cache_dir = _existing_cache(cache_dir)
    return pd.read_parquet(cache_dir / "municipalities.parquet"), pd.read_parquet(cache_dir / "districts.parquet")


def _existing_cache(cache_dir: Path) -> Path:
    from hsutils.core.errors import DataError

    cache_dir = Path(cache_dir)
    if not (cache_dir / "meta.json").exists():
        raise DataError(f"集計キャッシュ「{cache_dir}」がありません。先に `hsutils prepare データフォルダ` "
                        "または `hsutils batch` を実行してください。")
    return cache_dir


def load_prepared(cache_dir: Path, with_tables=False, munis=None) -> Prepared:
    """Read the cached shared results (what every notebook starts from).

    `with_tables`: False, True (LOADED_TABLES), a sequence of table names, or a mapping table name →
    the columns to read (None: all), e.g. notebook 07's `{"prescriptions": (...)}`. A mapping may also
    name `person_year`: only those of its columns are read (person_year itself is always read). Each
    municipal notebook passes the tables and columns its module reads (`<module>.TABLES`, issue 17):
    金沢市 at the scale of 東京都 took 11.1 GB for notebook 04 with claims and person_year in all columns, 4.0 GB now.

    `munis`: the municipalities whose person-level rows are read (None: all). A municipal run reads
    its own municipality's partitions and the small strata/master tables only (docs/design.md §8.1);
    its `person_year` holds exactly the rows of those municipalities, `tables` the whole history of
    the persons enrolled there, with the first claims month of the whole data in
    `claims_monthly.attrs["first_ym"]` (the look-back is the data's, docs/hotei.md §7).
    """
    cache_dir = _existing_cache(cache_dir)
    meta = _cache_meta(cache_dir)
    rd = lambda n: pd.read_parquet(cache_dir / f"{n}.parquet")  # noqa: E731
    scope = _scope_munis(munis)
    person_year, tables = _read_person_rows(cache_dir, meta, with_tables, scope)
    return Prepared(person_year=person_year, strata=rd("strata"),
                    municipalities=rd("municipalities"), districts=rd("districts"),
                    import_summary=rd("import_summary"), exclusions=rd("exclusions"), tables=tables, meta=meta,
                    cache_dir=cache_dir, munis=scope)


def _cache_meta(cache_dir: Path) -> dict:
    return json.loads((Path(cache_dir) / "meta.json").read_text(encoding="utf-8"))


def _read_person_rows(cache_dir: Path, meta: dict, with_tables, scope) -> tuple[pd.DataFrame, dict]:
    """person_year and the `with_tables` tables (`load_prepared`) of the municipalities `scope`
    (None: all), the claims carrying the data's first claims month."""
    tables = {}
    columns = dict(with_tables) if isinstance(with_tables, Mapping) else {}
    if with_tables:
        names = LOADED_TABLES if with_tables is True else tuple(n for n in with_tables if n != "person_year")
        for name in names:
            if has_parts(cache_dir / name):
                tables[name] = read_partitioned(cache_dir / name, scope, columns=columns.get(name))
        first = (meta.get("claims_history") or {}).get("first_ym")
        if "claims_monthly" in tables and first is not None:
            tables["claims_monthly"].attrs["first_ym"] = int(first)
    person_year = read_partitioned(cache_dir / "person_year", scope, columns=columns.get("person_year"))
    return person_year, tables


# ---------------------------------------------------------------- derived prefecture tables
#
# docs/design.md §8.1: what a municipal notebook shows of the other municipalities (a funnel, the
# reference's trend) is counted once per cache, one municipality's partitions at a time
# (`each_municipality`), and kept as a small table in `<cache>/derived/` (`derived_table`): the
# municipal run itself reads only its own municipality's person rows.

DERIVED_DIR = "derived"


def partition_munis(cache_dir: Path) -> list[str]:
    """The municipalities with person_year rows in the cache (its partition folders), in code order."""
    folder = Path(cache_dir) / "person_year"
    prefix = f"{PARTITION_KEY}="
    return sorted(p.name[len(prefix):] for p in folder.glob(f"{prefix}*") if p.is_dir() and any(p.glob("*/*.parquet")))


def each_municipality(cache_dir: Path, with_tables=False, munis=None):
    """(municipality code, person_year, tables) for each municipality of the cache (`munis`, None:
    every partition, `partition_munis`), read as a municipal run reads them (`load_prepared(...,
    munis=[code])`: its own person_year rows, its persons' whole history, `with_tables` as there).
    A generator (a loop over partitions, not persons): the caller's municipality and the next one, read
    on another core while the caller counts this one (`parallel.read_ahead`; the derived tables of 06,
    07 and 08 are built 12–18 % faster), are in memory, never more (docs/design.md §8.1)."""
    from hsutils.core import parallel

    cache_dir = _existing_cache(cache_dir)
    meta = _cache_meta(cache_dir)

    def read(muni: str):
        return (muni, *_read_person_rows(cache_dir, meta, with_tables, [muni]))

    # the next municipality is read on another core while this one is counted (`parallel.read_ahead`)
    yield from parallel.read_ahead(read, partition_munis(cache_dir) if munis is None else [str(m) for m in munis])


def municipal_rows(prepared: Prepared, with_tables=False):
    """(municipality code or None, person_year, tables) covering every municipality's rows once: what a
    table derived from all of them is summed from (`derived_table`). When `prepared` holds every
    municipality's person rows (a prefecture run) and the tables `with_tables` names (with those
    columns), one chunk of the rows it holds (code None; nothing is read again). Otherwise
    `each_municipality`: one municipality's partitions at a time. A builder gives the same table
    from either (its sums are by municipality and a person-year lies in one municipality, §8.2)."""
    if prepared.munis is None and _holds_tables(prepared, with_tables):
        names = _table_names(with_tables)
        yield None, prepared.person_year, {n: prepared.tables[n] for n in names if n in prepared.tables}
        return
    yield from each_municipality(prepared.cache_dir, with_tables)


def _table_names(with_tables) -> tuple[str, ...]:
    if not with_tables:
        return ()
    return LOADED_TABLES if with_tables is True else tuple(n for n in with_tables if n != "person_year")


def _holds_tables(prepared: Prepared, with_tables) -> bool:
    """Whether `prepared` holds every table (and column) `with_tables` asks for that the cache has."""
    columns = dict(with_tables) if isinstance(with_tables, Mapping) else {}
    wanted = {"person_year": (prepared.person_year, columns.get("person_year"))}
    for name in _table_names(with_tables):
        if has_parts(Path(prepared.cache_dir) / name):
            if name not in prepared.tables:
                return False
            wanted[name] = (prepared.tables[name], columns.get(name))
    # a frame read with a column list names the stored columns it did not read (`read_partitioned`)
    return all(not set(frame.attrs.get(UNREAD_COLUMNS, ())) if cols is None
               else not set(cols) & set(frame.attrs.get(UNREAD_COLUMNS, ())) for frame, cols in wanted.values())


def derived_table(cache_dir: Path, name: str, build, key=()) -> pd.DataFrame:
    """A table derived from the whole cache, computed once per cache: `<cache>/derived/<name>_<k>.parquet`
    where k hashes the cache's data hash and version with `key` (the parameters it depends on,
    JSON-serialisable). Read when it exists; otherwise `build()` is called, its frame written
    atomically and read back, so the first run returns exactly what later runs read.

    Batch runs of several municipalities may ask for it at once: one builds it, under a lock
    (`<name>_<k>.lock`, the `filelock` library: an OS lock released when its process ends, also on
    Windows), and the others wait for it and read it instead of building it again."""
    from filelock import FileLock

    cache_dir = _existing_cache(cache_dir)
    meta = _cache_meta(cache_dir)
    source = [meta.get("data_hash"), meta.get("cache_version"), list(key)]
    digest = hashlib.sha256(json.dumps(source, sort_keys=True, default=list).encode()).hexdigest()[:16]
    path = cache_dir / DERIVED_DIR / f"{name}_{digest}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_suffix(".lock")):
            if not path.exists():  # not built by another run while this one waited
                table = build()
                with files.atomic_path(path) as tmp:
                    table.to_parquet(tmp, index=False)
                del table
    return pd.read_parquet(path)


def prepare(data_dir: Path, cache_dir: Path | None = None, column_map=None, with_tables: bool = False) -> Prepared:
    """prepare_cache + load_prepared (notebooks opened by hand use this with their default parameters)."""
    from hsutils.core import settings

    cache_dir = settings.cache_dir(cache_dir)  # person-level rows: only under confidential/
    prepare_cache(data_dir, cache_dir, column_map=column_map)
    return load_prepared(cache_dir, with_tables=with_tables)

"""The heavy shared pass: load + validate once, derive person-level flags, count strata, cache.

`prepare_cache` runs once per batch (docs/design.md §2, §8): every notebook then reads the small
cached results with `load_prepared` instead of re-reading raw files.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils import aggregate, files, indicators, vocab
from hsutils.schema import TABLES, age_band

CACHE_VERSION = "4"  # 2: 減少率 cohorts of the 法定報告 (prev_* columns); 3: one look-back for all years;
# 4: medical_costs (notebook 06) kept with the other input tables
#: Input tables kept in the cache for the notebooks that read person-month rows (`with_tables`).
CACHED_TABLES = ("claims_monthly", "kaigo", "questionnaire", "medical_costs")
KENSHIN_MEASURES = [c.name for c in TABLES["kenshin"].columns
                    if c.name not in ("person_id", "fy", "muni_code", "sex", "age")]


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

    @property
    def fiscal_years(self) -> list[int]:
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
    from hsutils import clinical, programs

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
    unmatched = []

    # 健診 + clinical rules (docs/rules.md §1–§5)
    ken = tables["kenshin"].copy()
    ken = ken.drop(columns=[c for c in ("sex", "age", "muni_code") if c in ken])
    ken = ken.merge(enr[["person_id", "fy", "sex", "age"]], on=["person_id", "fy"], how="left", indicator=True)
    orphan = ken["_merge"] == "left_only"
    if orphan.any():
        unmatched.append(pd.DataFrame({"table": "kenshin", "person_id": ken.loc[orphan, "person_id"],
                                       "fy": ken.loc[orphan, "fy"], "reason": "対象者表に該当年度の加入がない受診者"}))
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

    # last year's status for the 減少率 cohorts (docs/hotei.md §4): one definition, in hsutils.hotei
    from hsutils import hotei

    py = pd.concat([py, hotei.previous_year_status(py)], axis=1)

    fys = sorted(py["fy"].unique().tolist())
    claims = tables.get("claims_monthly")
    kaigo = tables.get("kaigo")
    quest = tables.get("questionnaire")

    # claims per fiscal year
    if claims is not None and not claims.empty:
        cpy = programs.claims_person_year(claims, fys)
        py = py.merge(cpy, on=["person_id", "fy"], how="left")
    for c in ("claim_medical", "claim_dental", "dm_claim", "htn_claim", "lipid_claim", "ckd_claim",
              "dialysis_claim", "hf_claim", "stroke_claim", "hypnotic_claim", "new_dialysis"):
        py[c] = py[c].fillna(False).astype(bool) if c in py else False

    # 介護認定
    kk = _kaigo_by_fy(kaigo, py)
    py = py.merge(kk, on=["person_id", "fy"], how="left")
    py["kaigo_certified"] = py["kaigo_certified"].fillna(False).astype(bool)

    # 質問票
    if quest is not None and not quest.empty:
        qcols = [f"q{i}" for i in range(1, 16) if f"q{i}" in quest]
        py = py.merge(quest[["person_id", "fy"] + qcols], on=["person_id", "fy"], how="left")

    # program flags per fiscal year (docs/rules.md §5, §6)
    empty = lambda name: pd.DataFrame(columns=TABLES[name].names)  # noqa: E731
    claims_ = claims if claims is not None else empty("claims_monthly")
    kaigo_ = kaigo if kaigo is not None else empty("kaigo")
    quest_ = quest if quest is not None else empty("questionnaire")
    parts = []
    for f in fys:  # a loop over 3–10 fiscal years, not over persons
        # the full frame is passed: 健康状態不明者 looks at the previous fiscal year's rows, and the
        # claims look-back is the same for every fiscal year of the frame (docs/hotei.md §7)
        ik = programs.ikkatsu_flags(py, claims_, kaigo_, quest_, f)
        dk = programs.nephropathy_flags(py, claims_, f)
        parts.append(pd.concat([ik, dk.drop(columns=[c for c in dk.columns if c in ik.columns])], axis=1))
    flags = pd.concat(parts).reindex(py.index)
    flags = flags.drop(columns=[c for c in flags.columns if c in py.columns])
    py = pd.concat([py, flags], axis=1)

    # rows of other tables that match no enrollment row
    keys = py[["person_id", "fy"]]
    for name in ("guidance", "questionnaire"):
        t = tables.get(name)
        if t is not None and not t.empty:
            m = t[["person_id", "fy"]].merge(keys, on=["person_id", "fy"], how="left", indicator=True)
            o = m["_merge"] == "left_only"
            if o.any():
                unmatched.append(pd.DataFrame({"table": name, "person_id": m.loc[o, "person_id"],
                                               "fy": m.loc[o, "fy"], "reason": "対象者表に該当年度の加入がない"}))
    un = pd.concat(unmatched, ignore_index=True) if unmatched else pd.DataFrame(
        columns=["table", "person_id", "fy", "reason"])
    return py.reset_index(drop=True), un


def build_strata(person_year: pd.DataFrame, ids=None) -> pd.DataFrame:
    """The strata table for every registered indicator (hsutils.aggregate, one pass)."""
    flags = indicators.indicator_flags(person_year, ids)
    return aggregate.strata_counts(person_year, flags)


# ---------------------------------------------------------------- cache

def _hash_folder(data_dir: Path, column_map) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    h.update(",".join(i.id for i in indicators.INDICATORS).encode())  # new indicators need new strata
    h.update(files.folder_fingerprint(data_dir).encode())  # every file, whatever its extension (.tsv)
    if column_map:
        h.update(Path(column_map).read_bytes() if isinstance(column_map, (str, Path)) else
                 json.dumps(column_map, sort_keys=True).encode())
    return h.hexdigest()


def _master(dataset) -> pd.DataFrame:
    m = dataset.tables.get("municipalities")
    if m is None or m.empty:
        from hsutils import regions

        prefs = sorted({int(c[:2]) for c in dataset.tables["enrollment"]["muni_code"].unique()})
        m = pd.concat([regions.load_master(pref_code=p) for p in prefs], ignore_index=True)
    m = m.copy()
    m["pref_code"] = pd.to_numeric(m["pref_code"], errors="coerce").astype("Int64").astype(str).str.zfill(2)
    if "pref_name" not in m:
        m["pref_name"] = m["pref_code"].map(vocab.PREF_NAME_BY_CODE)
    if "medical_area_code" not in m or m["medical_area_code"].isna().all():
        m["medical_area_code"] = m["medical_area"]
    m["medical_area_code"] = m["medical_area_code"].astype(str)
    return m


def _history_meta(claims, fys) -> dict:
    """Months of claims per fiscal year and the look-backs used (docs/hotei.md §7), for meta.json."""
    from hsutils import programs

    fys = sorted(int(f) for f in fys)
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
                  progress=None) -> Path:
    """Load, validate and derive once; write Parquet files into cache_dir (docs/design.md §8).

    Re-uses the cache when the input files and column map are unchanged (content hash).
    `progress`, when given, is called with each stage name of `PREPARE_STAGES` as it starts
    (a progress bar of a notebook's first run); it is not called when the cache is reused.
    """
    def stage(i: int) -> None:
        if progress is not None:
            progress(PREPARE_STAGES[i])

    from hsutils import io
    from hsutils.errors import DataError

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
    stage(0)
    dataset = io.load_dataset(data_dir, column_map=column_map, cache_dir=cache_dir / "tables_cache")
    stage(1)
    py, unmatched = build_person_year(dataset.tables)
    stage(2)
    strata = build_strata(py)
    master = _master(dataset)
    districts = dataset.tables.get("districts")
    if districts is None:
        districts = pd.DataFrame(columns=["muni_code", "district_code", "name"])

    stage(3)
    tmp = cache_dir.with_name(cache_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    py.to_parquet(tmp / "person_year.parquet", index=False)
    strata.to_parquet(tmp / "strata.parquet", index=False)
    master.to_parquet(tmp / "municipalities.parquet", index=False)
    districts.to_parquet(tmp / "districts.parquet", index=False)
    dataset.summary.to_parquet(tmp / "import_summary.parquet", index=False)
    # rows of other tables with no enrollment row are listed too, so read = used + excluded holds
    um = pd.DataFrame({"file": unmatched["table"].map(lambda t: f"{t}（対象者表との突合）"),
                       "table": unmatched["table"], "row": pd.NA, "column": "被保険者番号・年度",
                       "value": "", "reason": unmatched["reason"], "scope": "行"})
    excl = pd.concat([dataset.exclusions, um], ignore_index=True) if len(um) else dataset.exclusions
    excl = excl.astype({c: str for c in ("value", "row") if c in excl})
    excl.to_parquet(tmp / "exclusions.parquet", index=False)
    unmatched.to_parquet(tmp / "unmatched.parquet", index=False)
    for name in CACHED_TABLES:
        t = dataset.tables.get(name)
        if t is not None:
            t.to_parquet(tmp / f"{name}.parquet", index=False)
    meta = {"data_hash": key, "data_dir": str(data_dir.resolve()), "seconds": round(time.perf_counter() - t0, 2),
            "rows": {k: int(len(v)) for k, v in dataset.tables.items()},
            "person_year_rows": int(len(py)), "strata_rows": int(len(strata)),
            "fiscal_years": sorted(int(f) for f in py["fy"].unique()), "cache_version": CACHE_VERSION,
            "claims_history": _history_meta(dataset.tables.get("claims_monthly"), py["fy"].unique())}
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    # keep the table cache of io across rebuilds
    old_tables = cache_dir / "tables_cache"
    if old_tables.exists():
        old_tables.rename(tmp / "tables_cache")
    if cache_dir.exists():
        import shutil

        shutil.rmtree(cache_dir)
    tmp.rename(cache_dir)
    return cache_dir


def load_prepared(cache_dir: Path, with_tables: bool = False) -> Prepared:
    """Read the cached shared results (what every notebook starts from)."""
    from hsutils.errors import DataError

    cache_dir = Path(cache_dir)
    if not (cache_dir / "meta.json").exists():
        raise DataError(f"集計キャッシュ「{cache_dir}」がありません。先に `hsutils prepare データフォルダ` "
                        "または `hsutils batch` を実行してください。")
    rd = lambda n: pd.read_parquet(cache_dir / f"{n}.parquet")  # noqa: E731
    tables = {}
    if with_tables:
        for name in CACHED_TABLES:
            if (cache_dir / f"{name}.parquet").exists():
                tables[name] = rd(name)
    return Prepared(person_year=rd("person_year"), strata=rd("strata"), municipalities=rd("municipalities"),
                    districts=rd("districts"), import_summary=rd("import_summary"), exclusions=rd("exclusions"),
                    tables=tables, meta=json.loads((cache_dir / "meta.json").read_text(encoding="utf-8")))


def prepare(data_dir: Path, cache_dir: Path | None = None, column_map=None, with_tables: bool = False) -> Prepared:
    """prepare_cache + load_prepared (notebooks opened by hand use this with their default parameters)."""
    from hsutils import settings

    cache_dir = settings.cache_dir(cache_dir)  # person-level rows: only under confidential/
    prepare_cache(data_dir, cache_dir, column_map=column_map)
    return load_prepared(cache_dir, with_tables=with_tables)

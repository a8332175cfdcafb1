"""Benchmark of the analytics core (issue 3): printed figures, not a timed test.

    python benchmarks/indicators.py --rows 1000000
    python benchmarks/indicators.py --rows 10000000

Generates synthetic person × fy rows (国保 40–74, ~40 % with a checkup) spread over the 1,741
municipalities of Japan once (not timed) into Parquet, then times

    Parquet load (pyarrow, compact dtypes: `load_person_year`) → clinical derivations (those the
    indicators read: `indicators.derived_columns`) → indicator flags → strata → indicator table
    (crude + age-adjusted + 標準化該当比 for every registered indicator, all municipalities)

and the same strata counts for the 健診 indicators computed by two peers from the same Parquet file,
DuckDB SQL (derivations in CASE expressions + GROUP BY) and Polars (lazy scan, the same expressions,
group_by), checking that every peer gives our counts. Like the peers' queries, that run reads only
the columns its indicators use (`SAME_COLUMNS`). Each peer's time is printed beside ours
from the same run.
Peak memory is the process's peak RSS (resource.getrusage).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsutils.rules import clinical
from hsutils.analysis import aggregate, indicators  # noqa: E402
from hsutils.core.schema import age_band  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def synth_rows(n: int, seed: int = 1) -> pd.DataFrame:
    """Synthetic person-year rows with correlated measures (not timed)."""
    rng = np.random.default_rng(seed)
    master = pd.read_csv(ROOT / "hsutils" / "data" / "municipalities_jp.csv", dtype=str, comment="#")
    codes = master["muni_code"].to_numpy()
    w = master["population"].astype(float).to_numpy()
    muni = rng.choice(len(codes), size=n, p=w / w.sum())
    sex = rng.integers(1, 3, n).astype(np.int8)
    age = rng.integers(40, 75, n).astype(np.int16)
    fy = rng.integers(2022, 2025, n).astype(np.int16)
    has = rng.random(n) < 0.4
    z = rng.standard_normal(n).astype(np.float32)
    male = sex == 1
    bmi = (23 + 3.5 * z + rng.standard_normal(n) * 1.0).astype(np.float32)
    waist = (bmi * 3.4 + np.where(male, 5, 0) + rng.standard_normal(n) * 4).astype(np.float32)
    sbp = (118 + 0.5 * (age - 40) + 4 * z + rng.standard_normal(n) * 14).astype(np.float32)
    dbp = (sbp * 0.6 + rng.standard_normal(n) * 7).astype(np.float32)
    tg = np.exp(4.6 + 0.3 * z + rng.standard_normal(n) * 0.45).astype(np.float32)
    hdl = (60 - 6 * z - np.where(male, 8, 0) + rng.standard_normal(n) * 12).clip(15, 150).astype(np.float32)
    hba1c = (5.6 + 0.25 * z + np.abs(rng.standard_normal(n)) * 0.35 + (rng.random(n) < 0.04) * 2).astype(np.float32)
    fpg = np.where(rng.random(n) < 0.7, hba1c * 18 - 5 + rng.standard_normal(n) * 6, np.nan).astype(np.float32)
    cre = np.where(rng.random(n) < 0.6, (0.65 + 0.2 * male) * np.exp(rng.standard_normal(n) * 0.2), np.nan)
    up = rng.choice(5, size=n, p=[0.86, 0.09, 0.03, 0.015, 0.005]).astype(np.float32)
    df = pd.DataFrame({
        # compact dtypes: dictionary-encoded keys (integer codes on disk and in memory)
        "person_id": np.arange(n, dtype=np.int64), "fy": fy,  # an integer key: compact
        "muni_code": pd.Categorical.from_codes(muni, categories=pd.Index(codes.astype(str))),
        "district_code": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=[""]),
        "sex": sex, "age": age, "insurance": pd.Categorical.from_codes(np.zeros(n, np.int8), categories=["国保"]),
        "full_year": True, "excluded_statutory": False,
        "has_kenshin": has, "bmi": bmi, "waist": waist, "sbp": sbp, "dbp": dbp, "tg": tg,
        "tg_fasting": pd.array(rng.random(n) < 0.85, dtype="boolean"), "hdl": hdl,
        "ldl": (120 + 30 * rng.standard_normal(n)).astype(np.float32), "fpg": fpg,
        "casual_glucose": np.full(n, np.nan, np.float32), "hba1c": hba1c,
        "urine_protein": up, "creatinine": cre.astype(np.float32),
        "med_bp": pd.array(rng.random(n) < 0.3, dtype="boolean"),
        "med_glucose": pd.array(rng.random(n) < 0.08, dtype="boolean"),
        "med_lipid": pd.array(rng.random(n) < 0.2, dtype="boolean"),
        "smoking": pd.array(rng.random(n) < np.where(male, 0.25, 0.06), dtype="boolean"),
    })
    measures = ["bmi", "waist", "sbp", "dbp", "tg", "hdl", "ldl", "fpg", "hba1c", "urine_protein", "creatinine"]
    df.loc[~has, measures] = np.nan
    return df


DUCKDB_SQL = """
WITH d AS (
  SELECT fy, muni_code, sex,
    CASE WHEN age < 45 THEN '40-44' WHEN age < 50 THEN '45-49' WHEN age < 55 THEN '50-54'
         WHEN age < 60 THEN '55-59' WHEN age < 65 THEN '60-64' WHEN age < 70 THEN '65-69' ELSE '70-74' END AS age_band,
    has_kenshin AS part,
    (sbp IS NOT NULL OR dbp IS NOT NULL) AS bp_m, (sbp >= 140 OR dbp >= 90) AS ref_bp,
    (sbp >= 130 OR dbp >= 85) AS hg_bp, hba1c IS NOT NULL AS a1c_m, hba1c >= 8.0 AS a1c8,
    hba1c >= 6.5 AS a1c65, urine_protein IS NOT NULL AS up_m, urine_protein >= 2 AS up1,
    CASE WHEN creatinine > 0 THEN 194 * pow(creatinine, -1.094) * pow(age, -0.287) * CASE WHEN sex = 2 THEN 0.739 ELSE 1 END END AS egfr
  FROM read_parquet('{path}')
)
SELECT fy, muni_code, sex, age_band,
  count(*) AS den_kenshin, sum(part::INT) AS num_kenshin,
  sum((part AND bp_m)::INT) AS den_bp, sum((part AND coalesce(ref_bp, false))::INT) AS num_ref_bp,
  sum((part AND coalesce(hg_bp, false))::INT) AS num_hg_bp,
  sum((part AND a1c_m)::INT) AS den_a1c, sum((part AND coalesce(a1c8, false))::INT) AS num_a1c8,
  sum((part AND coalesce(a1c65, false))::INT) AS num_a1c65,
  sum((part AND up_m)::INT) AS den_up, sum((part AND coalesce(up1, false))::INT) AS num_up1,
  sum((part AND egfr IS NOT NULL)::INT) AS den_egfr, sum((part AND coalesce(egfr < 45, false))::INT) AS num_egfr45,
  sum((part AND coalesce(egfr < 60, false))::INT) AS num_egfr60
FROM d GROUP BY ALL
"""
PAIRS = {"kenshin_rate": ("num_kenshin", "den_kenshin"), "ref_bp": ("num_ref_bp", "den_bp"),
         "hg_bp": ("num_hg_bp", "den_bp"), "hba1c8": ("num_a1c8", "den_a1c"), "hba1c65": ("num_a1c65", "den_a1c"),
         "urine_protein1": ("num_up1", "den_up"), "egfr45": ("num_egfr45", "den_egfr"),
         "egfr60": ("num_egfr60", "den_egfr")}


def run_polars(path: Path):
    """The DUCKDB_SQL derivations and group-by as a Polars lazy query (same columns out)."""
    import polars as pl

    c = pl.col
    age = c("age")
    band = (pl.when(age < 45).then(pl.lit("40-44")).when(age < 50).then(pl.lit("45-49"))
            .when(age < 55).then(pl.lit("50-54")).when(age < 60).then(pl.lit("55-59"))
            .when(age < 65).then(pl.lit("60-64")).when(age < 70).then(pl.lit("65-69")).otherwise(pl.lit("70-74")))
    cre = c("creatinine").cast(pl.Float64)
    egfr = (pl.when(cre > 0).then(194 * cre.pow(-1.094) * age.cast(pl.Float64).pow(-0.287)
                                  * pl.when(c("sex") == 2).then(0.739).otherwise(1.0)))
    part = c("has_kenshin")

    def both(flag):  # SQL `part AND coalesce(flag, false)`
        return (part & flag.fill_null(False)).cast(pl.Int64).sum()

    sbp, dbp, a1c, up = c("sbp"), c("dbp"), c("hba1c"), c("urine_protein")
    q = (pl.scan_parquet(path)
         .with_columns(age_band=band, egfr=egfr)
         .group_by(["fy", "muni_code", "sex", "age_band"])
         .agg(den_kenshin=pl.len(), num_kenshin=part.cast(pl.Int64).sum(),
              den_bp=both(sbp.is_not_null() | dbp.is_not_null()),
              num_ref_bp=both((sbp >= 140) | (dbp >= 90)), num_hg_bp=both((sbp >= 130) | (dbp >= 85)),
              den_a1c=both(a1c.is_not_null()), num_a1c8=both(a1c >= 8.0), num_a1c65=both(a1c >= 6.5),
              den_up=both(up.is_not_null()), num_up1=both(up >= 2),
              den_egfr=both(c("egfr").is_not_null()), num_egfr45=both(c("egfr") < 45),
              num_egfr60=both(c("egfr") < 60)))
    return q.collect()


class Clock:
    """Wall and CPU seconds of a step (CPU = this process, every thread: DuckDB and Polars use all cores)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        out = (w - self.wall, c - self.cpu)
        self.wall, self.cpu = w, c
        return out


#: The columns the 8 健診 indicators of the like-for-like run read (the peers' query reads its own):
#: the 対象者 (insurance, age, full year, exclusions), the keys, and the measures of PAIRS
SAME_COLUMNS = ["fy", "muni_code", "district_code", "sex", "age", "insurance", "full_year", "excluded_statutory",
                "has_kenshin", "sbp", "dbp", "hba1c", "urine_protein", "creatinine"]


def load_person_year(path: Path, columns=None) -> pd.DataFrame:
    """The person_year Parquet file straight from pyarrow (multithreaded read), only `columns`, in
    compact dtypes: dictionary columns as Categorical, numbers as stored (float32 stays float32), a
    boolean column without missing values as numpy bool; only a boolean column with missing values
    (判定不能) becomes pandas' nullable boolean."""
    table = pq.read_table(path, columns=columns)
    names = table.column_names
    nullable = {f.name: table.column(f.name) for f in table.schema
                if pa.types.is_boolean(f.type) and table.column(f.name).null_count}
    # consolidated blocks, converted on every core: 10 M rows of the 14 like-for-like columns 0.81 s
    # (split_blocks=True, one block per column, converts on one thread: 1.15 s). All columns: 1.8 GB
    # while converting (split: 1.4 GB); one end-to-end run peaks at about 2.2 GB either way
    frame = table.drop_columns(list(nullable)).to_pandas(ignore_metadata=True, self_destruct=True)
    del table
    # Arrow's allocator keeps the pages of the converted columns: give them back (as the pipeline's
    # reader does, `pipeline.read_partitioned`), or the frame and the decoded file are both held
    pa.default_memory_pool().release_unused()
    for name, col in nullable.items():  # inserted in the file's order (`frame[names]` would copy every column)
        frame.insert(names.index(name), name, pd.array(col.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)))
    return frame


def run_ours(path: Path, ids=None, columns=None):
    """Parquet → derivations → flags → strata; returns (person_year, strata, {step: (wall, cpu)})."""
    t = {}
    clock = Clock()
    # person_id is needed: the 法定報告 減少率 indicators link each person to the previous year (hotei)
    py = load_person_year(path, columns)
    t["load"] = clock.lap()
    py = clinical.derive_kenshin(py, indicators.derived_columns(ids))  # what the indicators read
    py["age_band"] = age_band(py["age"].to_numpy())
    t["derive"] = clock.lap()
    strata = aggregate.strata_counts(py, indicators.iter_indicator_flags(py, ids))  # as pipeline.build_strata
    t["strata"] = clock.lap()
    return py, strata, t


def _sum(times: dict, steps) -> tuple[float, float]:
    return sum(times[s][0] for s in steps), sum(times[s][1] for s in steps)


def _fmt(wc: tuple[float, float]) -> str:
    return f"{wc[0]:.2f}s (cpu {wc[1]:.2f}s)"


def _best(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Best of the repeats, wall and CPU each (the machine is shared: the least disturbed run)."""
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each engine; the best is printed")
    ap.add_argument("--no-duckdb", action="store_true")
    ap.add_argument("--no-polars", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        synth_rows(args.rows).to_parquet(path, index=False)
        print(f"rows: {args.rows:,}  municipalities: 1,741  (generation not timed)  best of {args.repeat}")

        # warm-up on a small file (imports, first-call allocations), not timed
        small = Path(tmp) / "small.parquet"
        synth_rows(20_000, seed=2).to_parquet(small, index=False)
        _, s_small, _ = run_ours(small)
        indicators.indicator_table(s_small, "muni")
        master = pd.read_csv(ROOT / "hsutils" / "data" / "municipalities_jp.csv", dtype={"muni_code": str},
                             comment="#")

        # end-to-end, every indicator
        steps = {k: [] for k in ("load", "derive", "strata", "table", "total")}
        rss_first = None
        for _ in range(args.repeat):
            py, strata, t = run_ours(path)
            del py
            clock = Clock()
            table = indicators.indicator_table(strata, "muni", area_map=master)
            t["table"] = clock.lap()
            t["total"] = _sum(t, ("load", "derive", "strata", "table"))
            for k in steps:
                steps[k].append(t[k])
            if rss_first is None:  # the peak of one end-to-end run (later runs also hold what the
                rss_first = peak_rss_gb()  # allocator kept of the earlier ones)
        best = {k: _best(v) for k, v in steps.items()}
        print("ours: " + "  ".join(f"{k} {_fmt(best[k])}" for k in ("load", "derive", "strata", "table"))
              + f"  => end-to-end {_fmt(best['total'])}")
        n_ind = table["indicator_id"].nunique()
        print(f"      indicators evaluated: {len(indicators.INDICATORS)}  with data: {n_ind}  "
              f"strata rows: {len(strata):,}  table rows: {len(table):,}")
        rss_ours = peak_rss_gb()
        del strata, table

        # like for like: the same 8 健診 indicators, load + derive + strata, against each peer
        if args.no_duckdb and args.no_polars:
            print(f"peak RSS: one end-to-end run {rss_first:.2f} GB (target ≤ 3 GB); after {args.repeat} runs {rss_ours:.2f} GB")
            return
        peers: dict[str, list] = {}
        frames: dict[str, pd.DataFrame] = {}
        ours_same = []
        if not args.no_polars:
            try:
                import polars  # noqa: F401 - imported before the clock starts
            except ImportError:  # the `bench` extra: pip install -e ".[test,bench]"
                print("polars is not installed (pip install -e \".[test,bench]\"): compared with DuckDB only")
                args.no_polars = True
        if not args.no_duckdb:
            import duckdb

            con = duckdb.connect()
        for _ in range(args.repeat):  # interleaved, so that the machine's load hits every engine alike
            _, s2, t2 = run_ours(path, ids=list(PAIRS), columns=SAME_COLUMNS)
            ours_same.append(_sum(t2, ("load", "derive", "strata")))
            if not args.no_duckdb:
                clock = Clock()
                frames["duckdb"] = con.execute(DUCKDB_SQL.format(path=path)).df()
                peers.setdefault("duckdb", []).append(clock.lap())
            if not args.no_polars:
                clock = Clock()
                frames["polars"] = run_polars(path).to_pandas()
                peers.setdefault("polars", []).append(clock.lap())
        ours_b = _best(ours_same)
        print(f"ours (load+derive+strata, the same {len(PAIRS)} 健診 indicators): {_fmt(ours_b)}")
        for name, runs in peers.items():
            b = _best(runs)
            frame = frames[name]
            equal = all(int(s2.loc[s2["indicator_id"] == ind, "numerator"].sum()) == int(frame[nc].sum())
                        and int(s2.loc[s2["indicator_id"] == ind, "denominator"].sum()) == int(frame[dc].sum())
                        for ind, (nc, dc) in PAIRS.items())
            print(f"{name} (same derivations + group-by): {_fmt(b)}   ratio ours/{name}: wall "
                  f"{ours_b[0] / b[0]:.2f}  cpu {ours_b[1] / b[1]:.2f}   counts equal: {equal}")
        if not peers:
            print(f"peak RSS: one end-to-end run {rss_first:.2f} GB (target ≤ 3 GB); after {args.repeat} runs "
                  f"{rss_ours:.2f} GB; with the peer {peak_rss_gb():.2f} GB")
            return
        fastest = min(_best(r)[0] for r in peers.values())
        fastest_cpu = min(_best(r)[1] for r in peers.values())
        print(f"ours / fastest peer: wall {ours_b[0] / fastest:.2f}  cpu {ours_b[1] / fastest_cpu:.2f} (target ≤ 1.0)")
        print(f"peak RSS: one end-to-end run {rss_first:.2f} GB (target ≤ 3 GB); after {args.repeat} runs "
              f"{rss_ours:.2f} GB; with the peers {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()

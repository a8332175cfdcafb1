"""Build hsutils/data/ishikawa_demo_population.csv, the one package table the demo generator needs.

Developer script, run from the repository root with the folder holding the upstream files (they
are not in the repository):

    .venv/bin/python scripts/build_demo_population.py REFDATA_DIR

Sources (see hsutils/data/PROVENANCE.md §3): 住民基本台帳 2025-01-01 population by municipality ×
sex × 5-year age (総務省), municipality → 二次医療圏 (第8次医療計画), office lat/lng (localgovjp, CC0).
The output has one row per municipality × sex (19 × 2 rows): the 5-year bands from 40 up, with
95–99 and 100+ merged into 95+, and the all-age total. `hsutils.demo.synth` reads only this file, so the
package never needs the upstream files at run time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "hsutils" / "data" / "ishikawa_demo_population.csv"

BANDS = ["40_44", "45_49", "50_54", "55_59", "60_64", "65_69", "70_74",
         "75_79", "80_84", "85_89", "90_94", "95plus"]


def build(refdata: Path) -> pd.DataFrame:
    pop = pd.read_csv(refdata / "ishikawa_population_juki_2025-01-01_by_muni_sex_age5.csv",
                      dtype={"lg_code5": str})
    pop = pop[(pop["row_type"] == "municipality") & pop["sex"].isin(["male", "female"])].copy()
    pop["age_95plus"] = pop["age_95_99"] + pop["age_100plus"]
    areas = pd.read_csv(refdata / "ishikawa_municipality_to_secondary_medical_area.csv",
                        dtype={"lg_code5": str, "area_code_A38_2020": str})
    offices = pd.read_csv(refdata / "municipalities_localgovjp.csv", encoding="utf-8-sig")
    offices = offices[offices["pid"] == 17].assign(lg_code5=lambda d: d["cid"].astype(str))

    df = (pop.merge(areas[["lg_code5", "muni_name", "area_code_A38_2020", "area_name"]], on="lg_code5")
             .merge(offices[["lg_code5", "lat", "lng"]], on="lg_code5"))
    out = pd.DataFrame({
        "muni_code": df["lg_code5"],
        "name": df["muni_name"],
        "medical_area_code": df["area_code_A38_2020"],
        "medical_area": df["area_name"],
        "lat": df["lat"].round(5),
        "lon": df["lng"].round(5),
        "sex": df["sex"].map({"male": 1, "female": 2}),
        "total": df["total"],
    })
    for b in BANDS:
        out[f"age_{b}"] = df[f"age_{b}"].to_numpy()
    out = out.sort_values(["muni_code", "sex"]).reset_index(drop=True)
    if len(out) != 38 or out["muni_code"].nunique() != 19:
        raise SystemExit(f"expected 19 municipalities × 2 sexes, got {len(out)} rows")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: scripts/build_demo_population.py REFDATA_DIR  (folder with the upstream files, "
                         "see hsutils/data/PROVENANCE.md)")
    table = build(Path(sys.argv[1]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT, index=False, encoding="utf-8", lineterminator="\n")
    print(f"wrote {OUT} ({len(table)} rows)")

"""Build the package data table hsutils/data/municipalities_jp.csv from the upstream reference files.

Development script (not part of the installed package). Run from the repository root with the
folder holding the upstream files (they are not in the repository):

    .venv/bin/python scripts/build_master.py REFDATA_DIR

Sources (see hsutils/data/PROVENANCE.md §2):
* 二次医療圏 (第8次医療計画, 2024 boundaries): municipality_to_secondary_medical_area_2024_derived.csv
  (area codes of 国土数値情報 医療圏データ A38-20, 国土交通省; 厚生労働省 R7 構想区域).
* Office location (lat/lon): municipalities_localgovjp.csv (Code for FUKUI, CC0; 国土地理院 / J-LIS).
* Population: population_juki_2025-01-01_by_muni_sex_age5.csv (総務省「住民基本台帳に基づく人口、
  人口動態及び世帯数」令和7年1月1日現在, 総計 = 日本人 + 外国人).

Output rows: the 1,741 municipalities (designated cities as one row each, kind "muni") followed by
the 171 wards of the designated cities as of 2025-01-01 (kind "ward", parent_code = the city).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hsutils.core.codes import code6  # noqa: E402

# 秋田県 was re-divided into 3 二次医療圏 in 2024; A38-20 and R7 predate the split, so no official code
# exists. Stable placeholders (letter "X" so they can never collide with an official numeric code),
# numbered north to south.
AKITA_PLACEHOLDER_CODES = {"県北": "05X1", "県央": "05X2", "県南": "05X3"}

# 川崎市 spans two 二次医療圏; the city row gets the one holding most of its 2025 住基 population
# (川崎北部 862,715 vs 川崎南部 672,426); the ward rows keep their own areas.
KAWASAKI = "14130"

HEADER = """\
# 市町村マスタ（hsutils 同梱データ）: 全国1,741市区町村（政令指定都市は市として1行、区は kind=ward の行）
# 二次医療圏: 第8次医療計画（2024年）の区域。コードは国土数値情報 医療圏データ A38-20（国土交通省）/ 厚生労働省 R7 構想区域のコード。
#   秋田県の3医療圏（2024年新設）は公式コードがないため仮コード 05X1 県北, 05X2 県央, 05X3 県南 を付与。
#   川崎市は2医療圏にまたがるため、市の行は人口の多い川崎北部(1404)。区の行はそれぞれの医療圏。
# 緯度経度: 市区町村役場の位置（Code for FUKUI localgovjp, CC0; 国土地理院・地方公共団体情報システム機構）。
# 人口: 総務省「住民基本台帳に基づく人口、人口動態及び世帯数」令和7年1月1日現在（総計）を加工して作成。
# 生成: scripts/build_master.py（出典ファイルから。hsutils/data/PROVENANCE.md 参照）。
"""


def build(refdata: Path) -> pd.DataFrame:
    areas = pd.read_csv(refdata / "municipality_to_secondary_medical_area_2024_derived.csv", dtype=str)
    geo = pd.read_csv(refdata / "municipalities_localgovjp.csv", dtype=str, encoding="utf-8-sig")
    juki = pd.read_csv(refdata / "population_juki_2025-01-01_by_muni_sex_age5.csv", dtype=str)
    juki = juki[juki["sex"] == "total"]

    areas["medical_area_code"] = areas["area_code_A38_2020"].fillna(areas["area_code_R7_kousou"])
    akita = areas["pref_code"] == "05"
    areas.loc[akita, "medical_area_code"] = areas.loc[akita, "area_name"].map(AKITA_PLACEHOLDER_CODES)
    assert areas["medical_area_code"].notna().all()

    geo["muni_code"] = geo["cid"].str.zfill(5)
    latlon = geo.set_index("muni_code")[["lat", "lng"]].astype(float).rename(columns={"lng": "lon"})
    pop = juki.set_index("lg_code5")["total"].astype(int)

    # Municipalities: all rows of the area file except the 7 川崎市 wards, plus 川崎市 itself.
    kawasaki_wards = areas[areas["lg_code5"].str.startswith("1413")]
    munis = areas[~areas.index.isin(kawasaki_wards.index)].copy()
    kawa = kawasaki_wards.iloc[[0]].copy()
    kawa["lg_code5"], kawa["lg_code6"], kawa["muni_name"] = KAWASAKI, code6(KAWASAKI), "川崎市"
    kawa["medical_area_code"], kawa["area_name"] = "1404", "川崎北部"
    munis = pd.concat([munis, kawa])
    munis["kind"], munis["parent_code"] = "muni", ""
    munis = munis.rename(columns={"lg_code5": "muni_code", "muni_name": "name"})

    # Wards of designated cities (2025-01-01, 住基): parent city = the designated city of the same
    # prefecture with the largest code below the ward code.
    wards = juki[juki["row_type"] == "designated_city_ward"][["lg_code5", "muni_name_as_published"]]
    wards = wards.rename(columns={"lg_code5": "muni_code", "muni_name_as_published": "name"})
    cities = sorted(juki.loc[juki["row_type"] == "designated_city", "lg_code5"])
    wards["parent_code"] = [max(c for c in cities if c[:2] == w[:2] and c < w) for w in wards["muni_code"]]
    city_rows = munis.set_index("muni_code")
    for col in ("pref_code", "pref_name", "medical_area_code", "area_name"):
        wards[col] = wards["parent_code"].map(city_rows[col])
    kw = kawasaki_wards.set_index("lg_code5")
    in_kw = wards["muni_code"].isin(kw.index)
    for col in ("medical_area_code", "area_name"):
        wards.loc[in_kw, col] = wards.loc[in_kw, "muni_code"].map(kw[col])
    wards["kind"] = "ward"

    out = pd.concat([munis, wards], ignore_index=True)
    out["code6"] = [code6(c) for c in out["muni_code"]]
    src6 = munis.set_index("muni_code")["lg_code6"]
    assert (out.set_index("muni_code")["code6"].reindex(src6.index) == src6).all(), "check digit mismatch"
    out["medical_area"] = out["area_name"]
    out = out.join(latlon, on="muni_code")
    # Wards created after the localgovjp snapshot (浜松市 2024 re-organisation) take the city office.
    missing = out["lat"].isna() & (out["kind"] == "ward")
    out.loc[missing, "lat"] = out.loc[missing, "parent_code"].map(latlon["lat"])
    out.loc[missing, "lon"] = out.loc[missing, "parent_code"].map(latlon["lon"])
    out["population"] = out["muni_code"].map(pop).astype("Int64")
    assert out["lat"].notna().all() and out["population"].notna().all()
    out["lat"], out["lon"] = out["lat"].round(5), out["lon"].round(5)
    cols = ["muni_code", "code6", "name", "pref_code", "pref_name", "medical_area_code", "medical_area",
            "lat", "lon", "population", "kind", "parent_code"]
    out = out[cols].sort_values(["kind", "muni_code"]).reset_index(drop=True)
    n_muni = int((out["kind"] == "muni").sum())
    assert n_muni == 1741, n_muni
    assert out["muni_code"].is_unique
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 2 or not Path(argv[1]).is_dir():
        raise SystemExit("usage: scripts/build_master.py REFDATA_DIR  (folder with the upstream files, "
                         "see hsutils/data/PROVENANCE.md)")
    refdata = Path(argv[1])
    out = build(refdata)
    target = REPO / "hsutils" / "data" / "municipalities_jp.csv"
    with target.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(HEADER)
        out.to_csv(fh, index=False, lineterminator="\n")
    print(f"wrote {target} ({(out['kind'] == 'muni').sum()} municipalities, {(out['kind'] == 'ward').sum()} wards)")


if __name__ == "__main__":
    main(sys.argv)

"""Tests for hsutils.inputs.regions: master, insurer numbers, roll-ups, boundaries, tile grid."""
from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import shapefile  # pyshp
import shapely

from hsutils.inputs import regions
from hsutils.core.codes import insurer_check_digit, normalize_muni_code
from hsutils.core.errors import DataError

REFDATA = Path(__file__).resolve().parent / "data" / "refdata"  # copied reference data, see PROVENANCE.md there
ISHIKAWA_GEOJSON = REFDATA / "ishikawa_municipalities_N03-21_17_210101_s0010.geojson"
ISHIKAWA_TOPOJSON = REFDATA / "ishikawa_municipalities_N03-21_17_210101_s0010.topojson"
JAPAN_WARD_TOPOJSON = regions.DEFAULT_BOUNDARY_FILE  # shipped package data (hsutils/data/PROVENANCE.md)

ISHIKAWA_CODES = ["17201", "17202", "17203", "17204", "17205", "17206", "17207", "17209", "17210",
                  "17211", "17212", "17324", "17361", "17365", "17384", "17386", "17407", "17461", "17463"]
# PROVENANCE.md "Quick sanity facts"
ISHIKAWA_AREAS = {
    "1701": ("南加賀", {"17203", "17206", "17211", "17324"}),
    "1702": ("石川中央", {"17201", "17210", "17212", "17209", "17361", "17365"}),
    "1703": ("能登中部", {"17202", "17207", "17384", "17386", "17407"}),
    "1704": ("能登北部", {"17204", "17205", "17461", "17463"}),
}

@pytest.fixture(scope="module")
def ishikawa():
    return regions.load_master(17)


# ------------------------------------------------------------------ master

def test_builtin_master_has_1741_municipalities_and_national_population():
    m = regions.load_master()
    assert len(m) == 1741
    assert m["muni_code"].is_unique
    assert list(m.columns) == regions.MASTER_COLUMNS
    assert m["pref_code"].nunique() == 47
    assert m["muni_code"].str.fullmatch(r"\d{5}").all()
    assert m[["lat", "lon", "population", "medical_area_code"]].notna().all().all()
    # 住基 2025-01-01 national total (PROVENANCE §4); 北方領土 villages have no residents
    assert int(m["population"].sum()) == 124_330_690


def test_ishikawa_has_19_municipalities_in_the_4_areas_of_provenance(ishikawa):
    assert sorted(ishikawa["muni_code"]) == ISHIKAWA_CODES
    got = {code: (g["medical_area"].iloc[0], set(g["muni_code"]))
           for code, g in ishikawa.groupby("medical_area_code")}
    assert got == ISHIKAWA_AREAS
    assert int(ishikawa["population"].sum()) == 1_098_121
    assert ishikawa.loc[ishikawa["muni_code"] == "17201", "name"].item() == "金沢市"
    assert set(ishikawa["pref_name"]) == {"石川県"}


def test_prefecture_can_be_given_as_int_str_or_name(ishikawa):
    for key in (17, "17", "石川県", "石川", "１７"):
        assert regions.load_master(key)["muni_code"].tolist() == ishikawa["muni_code"].tolist()
    with pytest.raises(ValueError, match="都道府県"):
        regions.load_master(48)


def test_akita_placeholder_codes_and_kawasaki_split():
    akita = regions.load_master(5)
    assert len(akita) == 25
    assert dict(akita.groupby("medical_area_code")["medical_area"].first()) == {
        "05X1": "県北", "05X2": "県央", "05X3": "県南"}
    assert akita.loc[akita["muni_code"] == "05201", "medical_area_code"].item() == "05X2"  # 秋田市
    full = regions.load_master(14, include_wards=True)
    kawasaki = full[full["parent_code"] == "14130"].set_index("muni_code")["medical_area_code"]
    assert kawasaki.to_dict() == {"14131": "1405", "14132": "1405", "14133": "1405", "14134": "1404",
                                  "14135": "1404", "14136": "1404", "14137": "1404"}
    assert full.loc[full["muni_code"] == "14130", "medical_area_code"].item() == "1404"
    assert (regions.load_master(include_wards=True)["kind"] == "ward").sum() == 171


# ------------------------------------------------------------------ codes

def test_every_ishikawa_6_digit_code_in_refdata_normalises_to_its_5_digit_code(ishikawa):
    ref = pd.read_csv(REFDATA / "ishikawa_municipality_to_secondary_medical_area.csv", dtype=str)
    assert len(ref) == 19
    for c6, c5 in zip(ref["lg_code6"], ref["lg_code5"]):
        assert normalize_muni_code(c6) == c5
    builtin = regions.load_master(17, include_wards=True).set_index("muni_code")
    assert regions._builtin_master_all().set_index("muni_code").loc[ref["lg_code5"], "code6"].tolist() \
        == ref["lg_code6"].tolist()
    assert len(builtin) == 19


def test_wrong_check_digit_is_rejected():
    assert normalize_muni_code("172014") == "17201"
    with pytest.raises(ValueError, match="検査数字"):
        normalize_muni_code("172015")


def test_insurer_check_digit_hand_worked():
    # weights 2,1,2,1,2 from the right, two-digit products summed digit-wise, 10 - last digit
    assert insurer_check_digit("13101") == 1   # 1·2+0·1+1·2+3·1+1·2 = 9 → 1
    assert insurer_check_digit("17001") == 9   # 2+0+0+7+2 = 11 → 9
    assert insurer_check_digit("3312001") == 5  # 千葉県警 33120015 (設定要領の例)
    assert insurer_check_digit("17009") == 2   # 9·2 = 18 counts 1+8 = 9; 9+0+0+7+2 = 18 → 2


# ------------------------------------------------------------------ user master + insurer numbers

def _write_user_master(path: Path, encoding="cp932", insurer=("170019", "170027", "170035")) -> Path:
    text = (
        "市町村コード,市町村名,都道府県コード,二次医療圏,人口,保険者番号\n"
        f"172014,金沢市,17,石川中央,440000,{insurer[0]}\n"
        f"17202,七尾市,17,能登中部,,{insurer[1]}\n"
        f"１７２０３,小松市,17,南加賀,105000,{insurer[2]}\n"
    )
    path.write_bytes(text.encode(encoding))
    return path


def test_user_master_with_japanese_headers_cp932(tmp_path):
    m = regions.load_master(path=_write_user_master(tmp_path / "municipalities.csv"))
    assert m["muni_code"].tolist() == ["17201", "17202", "17203"]
    assert m["pref_code"].tolist() == ["17", "17", "17"]
    assert m["pref_name"].tolist() == ["石川県"] * 3
    # codes filled from the built-in master by (prefecture, area name)
    assert m["medical_area_code"].tolist() == ["1702", "1703", "1701"]
    # user population kept; missing one (七尾市) filled from the built-in 住基 2025 figure
    assert m.loc[0, "population"] == 440000
    builtin = regions.load_master(17).set_index("muni_code")
    assert m.loc[1, "population"] == builtin.loc["17202", "population"]
    assert m.loc[0, "lat"] == builtin.loc["17201", "lat"]
    assert m["insurer_number"].tolist() == ["170019", "170027", "170035"]


def test_user_master_bad_code_names_the_row(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("市町村コード,市町村名,都道府県コード,二次医療圏\n17201,金沢市,17,石川中央\n"
                 "172023,七尾市,17,能登中部\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"3行目「172023」.*検査数字"):
        regions.load_master(path=p)


def test_user_master_is_read_like_the_data_folder_master(tmp_path):
    """One reader (hsutils.inputs.io.read_table): the same required columns and header spellings as the
    市町村マスタ of a data folder, a title row above the header, and duplicate codes named."""
    p = tmp_path / "m.csv"
    p.write_text("市町村コード,市町村名,二次医療圏\n17201,金沢市,石川中央\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"必須の列がありません: 都道府県コード"):
        regions.load_master(path=p)
    p.write_text("令和7年度 市町村マスタ\n市区町村コード,自治体名,都道府県コード,二次医療圏名\n"
                 "17201,金沢市,17,石川中央\n", encoding="utf-8")
    m = regions.load_master(path=p)
    assert m[["muni_code", "name", "pref_code", "medical_area", "medical_area_code"]].values.tolist() == \
        [["17201", "金沢市", "17", "石川中央", "1702"]]
    p.write_text("市町村コード,市町村名,都道府県コード,二次医療圏\n17201,金沢市,17,石川中央\n"
                 "17201,金沢市,17,石川中央\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"3行目「17201」（重複"):
        regions.load_master(path=p)
    p.write_text("市町村コード,市町村名,都道府県コード,二次医療圏\n17201,金沢市,18,石川中央\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"2行目「18」が市町村コードの先頭2桁と一致しません"):
        regions.load_master(path=p)


def test_user_master_wrong_insurer_check_digit_rejected(tmp_path):
    p = _write_user_master(tmp_path / "m.csv", insurer=("170019", "170020", "170035"))
    with pytest.raises(DataError, match=r"保険者番号.*3行目.*検証番号"):
        regions.load_master(path=p)


def test_insurer_to_muni_via_user_master(tmp_path):
    m = regions.load_master(path=_write_user_master(tmp_path / "m.csv"))
    assert regions.insurer_to_muni("170027", m) == "17202"
    assert regions.insurer_to_muni("１７００１９", m) == "17201"  # full-width digits
    got = regions.insurer_to_muni(pd.Series(["170035", "170019", "170035"], index=[5, 6, 7]), m)
    assert got.tolist() == ["17203", "17201", "17203"]
    assert got.index.tolist() == [5, 6, 7]
    with pytest.raises(ValueError, match="検証番号"):
        regions.insurer_to_muni("170010", m)
    with pytest.raises(regions.RegionCodeError, match="ありません"):
        regions.insurer_to_muni("170043", m)  # valid: 4·2+0+0+7+2 = 17 → 3, but not in the master


def test_insurer_to_muni_without_column_explains(ishikawa):
    with pytest.raises(ValueError, match="保険者番号.*市町村コードとは別"):
        regions.insurer_to_muni("170019", ishikawa)


# ------------------------------------------------------------------ roll-ups

@pytest.fixture()
def districts():
    return pd.DataFrame({"muni_code": ["17201"] * 3, "district_code": ["A", "B", "C"],
                         "name": ["中央", "東", "西"]})


def test_area_levels_mapping(ishikawa, districts):
    lv = regions.area_levels(ishikawa, districts)
    assert len(lv) == 18 + 3  # 18 municipalities without districts + 3 districts of 金沢市
    assert list(lv.columns) == ["district_code", "district_name", "muni_code", "muni_name",
                                "medical_area_code", "medical_area", "pref_code", "pref_name",
                                "national_code", "national_name"]
    row = lv[lv["district_code"] == "B"].iloc[0]
    assert (row["muni_code"], row["medical_area_code"], row["pref_code"], row["national_name"]) == \
        ("17201", "1702", "17", "全国")
    assert lv.loc[lv["muni_code"] == "17463", "district_code"].item() == ""


def test_rollup_every_level_is_the_sum_of_its_parts(ishikawa, districts):
    strata = pd.DataFrame({
        "muni_code": ["17201", "17201", "17201", "17201", "17203", "17206", "17205", "17202", "17210"],
        "district_code": ["A", "B", "C", "", "", "", "", "", ""],
        "sex": [1, 1, 2, 2, 1, 2, 1, 1, 2],
        "numerator": [3, 4, 5, 1, 7, 2, 6, 8, 9],
        "denominator": [10, 20, 30, 5, 40, 15, 25, 35, 45],
    })
    muni = regions.rollup(strata, "district", "muni", ["numerator", "denominator"], ishikawa,
                          districts=districts)
    assert muni.set_index("muni_code")["numerator"].to_dict() == {
        "17201": 13, "17202": 8, "17203": 7, "17205": 6, "17206": 2, "17210": 9}
    assert muni.set_index("muni_code").loc["17201", "denominator"] == 65
    area = regions.rollup(muni, "muni", "medical_area", ["numerator", "denominator"], ishikawa)
    assert area.set_index("medical_area_code")["numerator"].to_dict() == {
        "1701": 9, "1702": 22, "1703": 8, "1704": 6}
    assert area.set_index("medical_area_code").loc["1702", "medical_area"] == "石川中央"
    pref = regions.rollup(area, "medical_area", "pref", ["numerator", "denominator"], ishikawa)
    assert pref[["pref_code", "pref_name", "numerator", "denominator"]].values.tolist() == \
        [["17", "石川県", 45, 225]]
    direct = regions.rollup(strata, "district", "pref", ["numerator", "denominator"], ishikawa,
                            districts=districts)
    assert direct[["numerator", "denominator"]].values.tolist() == [[45, 225]]
    nat = regions.rollup(pref, "pref", "national", "numerator", ishikawa)
    assert nat[["national_code", "national_name", "numerator"]].values.tolist() == [["00", "全国", 45]]
    by_sex = regions.rollup(strata, "district", "medical_area", "numerator", ishikawa, by="sex",
                            districts=districts)
    assert by_sex.set_index(["sex", "medical_area_code"])["numerator"].to_dict() == {
        (1, "1701"): 7, (1, "1702"): 7, (1, "1703"): 8, (1, "1704"): 6,
        (2, "1701"): 2, (2, "1702"): 15}


def test_rollup_population_munis_areas_pref(ishikawa):
    area = regions.rollup(ishikawa, "muni", "medical_area", "population", ishikawa)
    assert len(area) == 4
    assert int(area["population"].sum()) == 1_098_121
    pref = regions.rollup(area, "medical_area", "pref", "population", ishikawa)
    assert int(pref["population"].item()) == 1_098_121


def test_rollup_unknown_code_and_wrong_direction(ishikawa):
    df = pd.DataFrame({"muni_code": ["17201", "18201"], "n": [1, 2]})
    with pytest.raises(DataError, match="18201"):
        regions.rollup(df, "muni", "pref", "n", ishikawa)
    with pytest.raises(ValueError, match="集計できません"):
        regions.rollup(df, "pref", "muni", "n", ishikawa)


def test_rollup_accepts_master_with_int_pref_code(ishikawa):
    m = ishikawa.assign(pref_code=ishikawa["pref_code"].astype(int).astype("Int64"))
    df = pd.DataFrame({"muni_code": ["17201", "17463"], "n": [1, 2]})
    assert regions.rollup(df, "muni", "pref", "n", m)[["pref_code", "n"]].values.tolist() == [["17", 3]]


# ------------------------------------------------------------------ boundaries

def _area_by_code(frame: pd.DataFrame) -> dict[str, float]:
    return dict(zip(frame["code"], shapely.area(frame["geometry"].to_numpy())))


def test_ishikawa_geojson_and_topojson_agree(ishikawa):
    gj = regions.load_boundaries(ISHIKAWA_GEOJSON, master=ishikawa)
    tj = regions.load_boundaries(ISHIKAWA_TOPOJSON, master=ishikawa)
    assert gj["code"].tolist() == ISHIKAWA_CODES
    assert tj["code"].tolist() == ISHIKAWA_CODES
    assert gj.loc[gj["code"] == "17201", "name"].item() == "金沢市"
    a, b = _area_by_code(gj), _area_by_code(tj)
    for code in ISHIKAWA_CODES:
        assert abs(a[code] - b[code]) / a[code] < 0.01, code
    assert all(g.geom_type in ("Polygon", "MultiPolygon") and g.is_valid for g in tj["geometry"])
    assert gj["code"].map(type).eq(str).all()


def test_dissolve_to_4_medical_areas_sums_to_prefecture(ishikawa):
    munis = regions.load_boundaries(ISHIKAWA_TOPOJSON, master=ishikawa)
    areas = regions.load_boundaries(ISHIKAWA_TOPOJSON, level="medical_area", master=ishikawa)
    assert areas["code"].tolist() == ["1701", "1702", "1703", "1704"]
    assert areas["name"].tolist() == ["南加賀", "石川中央", "能登中部", "能登北部"]
    total_munis = float(shapely.area(munis["geometry"].to_numpy()).sum())
    total_areas = float(shapely.area(areas["geometry"].to_numpy()).sum())
    pref = regions.load_boundaries(ISHIKAWA_TOPOJSON, level="pref", master=ishikawa)
    assert pref["code"].tolist() == ["17"]
    assert total_areas == pytest.approx(total_munis, rel=1e-6)
    assert float(pref["geometry"].item().area) == pytest.approx(total_munis, rel=1e-6)


def test_shipped_nationwide_boundaries_load_quickly_and_cover_the_master():
    assert JAPAN_WARD_TOPOJSON.is_file() and JAPAN_WARD_TOPOJSON.stat().st_size == 580_451
    t0 = time.perf_counter()
    b = regions.load_boundaries(JAPAN_WARD_TOPOJSON)
    elapsed = time.perf_counter() - t0
    assert 1725 <= len(b) <= 1741  # a few tiny islands collapse to nothing at 0.1 % simplification
    assert {"01100", "14130", "27100", "47382"} <= set(b["code"])  # wards dissolved into their city
    assert b["code"].is_unique and set(b["code"]) <= set(regions.load_master()["muni_code"])
    assert elapsed < 5
    # the 9 municipalities whose shape the 0.1 % simplification lost (tiny islands, 日吉津村, 太地町)
    lost = set(regions.load_master()["muni_code"]) - set(b["code"])
    assert lost == {"13362", "13402", "30422", "31384", "38356", "44322", "47354", "47355", "47356"}


def test_boundary_layers_draw_lost_municipalities_as_office_circles():
    tokyo = regions.load_master(13)
    layers = regions.boundary_layers(tokyo)
    assert layers["source"] == regions.DEFAULT_BOUNDARY_FILE
    assert layers["muni"]["code"].tolist() == sorted(tokyo["muni_code"])  # all 62, a real map
    circles = layers["muni"].set_index("code").loc[["13362", "13402"], "geometry"]
    office = tokyo.set_index("muni_code").loc["13362", ["lon", "lat"]].astype(float)
    assert circles["13362"].contains(shapely.Point(*office))
    assert circles["13362"].area == pytest.approx(3.14159 * regions.MARKER_RADIUS ** 2, rel=0.01)
    assert "利島村・青ヶ島村" in layers["note"] and "円" in layers["note"]
    footer = regions.boundary_footer(layers)
    assert regions.N03_CREDIT in footer and "利島村" in footer
    assert regions.boundary_footer({"muni": None, "note": "x"}) == ""
    ishikawa = regions.boundary_layers(regions.load_master(17))
    assert ishikawa["note"] == "" and len(ishikawa["muni"]) == 19 and len(ishikawa["medical_area"]) == 4


def test_boundary_layers_read_the_file_once_and_equal_load_boundaries(monkeypatch, tmp_path):
    """Both layers come from one reading of the boundary file (issue 18: about 0.4 s each), and
    equal what `load_boundaries` gives for each level; a missing file gives tiles and says so."""
    master = regions.load_master(17)
    reads = []
    read = regions._read_features
    monkeypatch.setattr(regions, "_read_features", lambda path: reads.append(path) or read(path))
    layers = regions.boundary_layers(master, ISHIKAWA_TOPOJSON)
    assert reads == [ISHIKAWA_TOPOJSON]
    for level in ("muni", "medical_area"):
        alone = regions.load_boundaries(ISHIKAWA_TOPOJSON, level, master=master)
        assert layers[level][["code", "name"]].equals(alone[["code", "name"]])
        assert all(a.equals(b) for a, b in zip(layers[level]["geometry"], alone["geometry"]))
    missing = regions.boundary_layers(master, tmp_path / "none.geojson")
    assert missing["muni"] is None and "none.geojson" in missing["note"] and "見つかりません" in missing["note"]


def test_shipped_boundaries_give_ishikawa_19_municipalities_and_4_areas(ishikawa):
    munis = regions.load_boundaries(JAPAN_WARD_TOPOJSON, master=ishikawa)
    assert munis["code"].tolist() == ISHIKAWA_CODES
    areas = regions.load_boundaries(JAPAN_WARD_TOPOJSON, level="medical_area", master=ishikawa)
    assert dict(zip(areas["code"], areas["name"])) == {k: v[0] for k, v in ISHIKAWA_AREAS.items()}
    # the coarser nationwide file and the 1 % Ishikawa file agree on each area within a few percent
    fine = _area_by_code(regions.load_boundaries(ISHIKAWA_TOPOJSON, level="medical_area", master=ishikawa))
    coarse = _area_by_code(areas)
    for code in ISHIKAWA_AREAS:
        assert abs(coarse[code] - fine[code]) / fine[code] < 0.05, code


def test_resolve_boundary_file_user_file_overrides_the_shipped_one(tmp_path):
    assert regions.resolve_boundary_file() == regions.DEFAULT_BOUNDARY_FILE
    assert regions.resolve_boundary_file(None, tmp_path) == regions.DEFAULT_BOUNDARY_FILE
    (tmp_path / "N03-21_17.geojson").write_text("{}", encoding="utf-8")
    assert regions.resolve_boundary_file(None, tmp_path) == tmp_path / "N03-21_17.geojson"
    assert regions.resolve_boundary_file(ISHIKAWA_TOPOJSON, tmp_path) == ISHIKAWA_TOPOJSON


def test_ward_file_dissolves_wards_into_cities_and_splits_kawasaki_areas():
    b = regions.load_boundaries(JAPAN_WARD_TOPOJSON, master=regions.load_master(27))
    assert "27100" in set(b["code"]) and "27140" in set(b["code"])  # 大阪市, 堺市
    assert not ({"27102", "27127", "27141"} & set(b["code"]))
    areas = regions.load_boundaries(JAPAN_WARD_TOPOJSON, level="medical_area")
    assert {"1404", "1405"} <= set(areas["code"])
    assert areas.set_index("code").loc["1405", "name"] == "川崎南部"


def test_designated_city_rule():
    got = regions.designated_city_of(["27102", "27127", "27128", "27141", "22131", "22140", "17201", "01110"])
    assert got.tolist() == ["27100", "27100", "27100", "27140", "22130", "22130", "17201", "01100"]


def _square(x0, y0, side):
    return [[(x0, y0), (x0, y0 + side), (x0 + side, y0 + side), (x0 + side, y0), (x0, y0)]]


def test_zipped_shapefile_round_trip(tmp_path):
    base = tmp_path / "N03-test"
    with shapefile.Writer(str(base), shapeType=shapefile.POLYGON, encoding="utf-8") as w:
        for f in ("N03_001", "N03_003", "N03_004", "N03_007"):
            w.field(f, "C", size=40)
        w.poly(_square(136.6, 36.5, 0.1)); w.record("石川県", "", "金沢市", "17201")
        w.poly(_square(137.0, 37.0, 0.1)); w.record("石川県", "", "金沢市", "17201")  # island
        w.poly(_square(135.5, 34.6, 0.1)); w.record("大阪府", "大阪市", "北区", "27127")
        w.poly(_square(135.6, 34.6, 0.1)); w.record("大阪府", "大阪市", "都島区", "27102")
        w.poly(_square(135.0, 34.0, 0.1)); w.record("大阪府", "", "所属未定地", "")
    (tmp_path / "N03-test.cpg").write_text("UTF-8")
    z = tmp_path / "N03-test.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for ext in ("shp", "shx", "dbf", "cpg"):
            zf.write(tmp_path / f"N03-test.{ext}", f"N03-test.{ext}")
    b = regions.load_boundaries(z)
    assert b["code"].tolist() == ["17201", "27100"]
    assert b["name"].tolist() == ["金沢市", "大阪市"]
    g = b.set_index("code")["geometry"]
    assert g["17201"].geom_type == "MultiPolygon" and g["17201"].area == pytest.approx(0.02)
    assert g["27100"].geom_type == "Polygon" and g["27100"].area == pytest.approx(0.02)
    assert g["27100"].bounds == pytest.approx((135.5, 34.6, 135.7, 34.7))


def _write_topology(path: Path) -> Path:
    # Two unit squares sharing arc 0 (x = 1), plus a separate triangle; quantized, delta-encoded.
    topo = {
        "type": "Topology",
        "transform": {"scale": [0.5, 0.25], "translate": [136.0, 36.0]},
        "arcs": [
            [[1, 0], [0, 1]],                          # (1,0) → (1,1)
            [[1, 1], [-1, 0], [0, -1], [1, 0]],        # (1,1) → (0,1) → (0,0) → (1,0)
            [[1, 0], [1, 0], [0, 1], [-1, 0]],         # (1,0) → (2,0) → (2,1) → (1,1)
            [[5, 5], [1, 0], [-1, 1], [0, -1]],        # triangle (5,5) (6,5) (5,6)
        ],
        "objects": {"t": {"type": "GeometryCollection", "geometries": [
            {"type": "Polygon", "arcs": [[0, 1]], "properties": {"N03_007": "17201"}},
            {"type": "MultiPolygon", "arcs": [[[-1, 2]], [[3]]], "properties": {"N03_007": "17202"}},
            {"type": None, "properties": {"N03_007": "17203"}},
        ]}},
    }
    path.write_text(json.dumps(topo), encoding="utf-8")
    return path


def test_topojson_decoder_hand_made(tmp_path, ishikawa):
    b = regions.load_boundaries(_write_topology(tmp_path / "t.topojson"), master=ishikawa)
    assert b["code"].tolist() == ["17201", "17202"]  # null geometry dropped
    g = b.set_index("code")["geometry"]
    # one grid cell = 0.5 × 0.25 degrees = 0.125
    assert g["17201"].area == pytest.approx(0.125)
    assert g["17201"].bounds == pytest.approx((136.0, 36.0, 136.5, 36.25))
    assert g["17202"].area == pytest.approx(0.125 + 0.0625)
    assert g["17202"].bounds == pytest.approx((136.5, 36.0, 139.0, 37.5))
    merged = shapely.union_all([g["17201"], shapely.geometry.box(136.5, 36.0, 137.0, 36.25)])
    assert merged.geom_type == "Polygon" and merged.area == pytest.approx(0.25)  # shared arc exact


def test_simplify_and_cache(tmp_path, ishikawa):
    full = regions.load_boundaries(ISHIKAWA_TOPOJSON, master=ishikawa)
    simp = regions.load_boundaries(ISHIKAWA_TOPOJSON, master=ishikawa, simplify_tolerance=0.01,
                                   cache_dir=tmp_path)
    assert shapely.get_num_coordinates(simp["geometry"].to_numpy()).sum() < \
        shapely.get_num_coordinates(full["geometry"].to_numpy()).sum()
    assert all(g.is_valid for g in simp["geometry"])
    files = list(tmp_path.glob("boundaries_*.parquet"))
    assert len(files) == 1
    again = regions.load_boundaries(ISHIKAWA_TOPOJSON, master=ishikawa, simplify_tolerance=0.01,
                                    cache_dir=tmp_path)
    assert again["code"].tolist() == simp["code"].tolist()
    assert all(a.equals(b) for a, b in zip(again["geometry"], simp["geometry"]))
    regions.load_boundaries(ISHIKAWA_TOPOJSON, level="medical_area", master=ishikawa,
                            simplify_tolerance=0.01, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("boundaries_*.parquet"))) == 2  # level is part of the key


def test_missing_boundary_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="見つかりません"):
        regions.load_boundaries(tmp_path / "none.geojson")
    with pytest.raises(ValueError, match="境界の単位"):
        regions.load_boundaries(tmp_path / "none.geojson", level="district")


# ------------------------------------------------------------------ prefecture map, tile grid

def test_prefecture_shapes_from_japanmap():
    p = regions.prefecture_shapes()
    assert p["code"].tolist() == [f"{i:02d}" for i in range(1, 48)]
    assert p.loc[16, "name"] == "石川県"
    assert all(g.is_valid and g.geom_type in ("Polygon", "MultiPolygon") for g in p["geometry"])
    # real lon/lat (北海道 and 沖縄 not moved)
    assert p.loc[0, "geometry"].centroid.x > 141 and p.loc[0, "geometry"].centroid.y > 42
    assert p.loc[46, "geometry"].centroid.y < 27
    kanazawa = shapely.Point(136.6256, 36.5946)
    assert p.loc[16, "geometry"].contains(kanazawa)


def test_tile_grid_keeps_rough_geography(ishikawa):
    t = regions.tile_grid_layout(ishikawa)
    assert list(t.columns) == ["code", "name", "col", "row"]
    assert len(t) == 19
    assert not t.duplicated(["col", "row"]).any()
    pos = t.set_index("code")
    assert pos.loc["17205", "row"] == 0  # 珠洲市, northern tip
    assert pos.loc["17206", "row"] == t["row"].max()  # 加賀市, southern end
    assert pos.loc["17206", "col"] == 0  # and western end
    assert pos.loc["17205", "col"] > pos.loc["17204", "col"]  # 珠洲 east of 輪島
    pd.testing.assert_frame_equal(t, regions.tile_grid_layout(ishikawa))  # deterministic


def test_tile_grid_resolves_collisions_to_nearest_free_cell():
    m = pd.DataFrame({"muni_code": ["17201", "17202", "17203"], "name": ["a", "b", "c"],
                      "medical_area": ["x"] * 3, "lat": [36.0, 36.0, 37.0], "lon": [136.0, 136.0, 137.0],
                      "population": [300, 200, 100]})
    t = regions.tile_grid_layout(m, ncols=2).set_index("code")
    # grid 2 × 3 (1.6 cells per municipality → 5 → 3 rows); a and b share the south-west cell:
    # a (larger) takes (col 0, row 2), b the nearest free cell (col 0, row 1); c the north-east corner
    assert (t.loc["17201", "col"], t.loc["17201", "row"]) == (0, 2)
    assert (t.loc["17202", "col"], t.loc["17202", "row"]) == (0, 1)
    assert (t.loc["17203", "col"], t.loc["17203", "row"]) == (1, 0)


def test_fallback_note_text():
    assert regions.FALLBACK_NOTE == "市町村境界ファイル（国土数値情報 行政区域 N03）を指定すると地図で表示できます"

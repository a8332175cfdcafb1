"""hsutils.analysis.areas: one area model (code forms, hierarchy), reference resolution, standard population."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from hsutils import stats
from hsutils.analysis import areas
from hsutils.core.errors import ParameterError
from hsutils.core.schema import AGE_BANDS

MASTER = pd.DataFrame({
    "muni_code": ["17201", "17202", "17203", "17206"],
    "name": ["金沢市", "七尾市", "小松市", "白山市"],
    "pref_code": ["17", "17", "17", "17"],
    "pref_name": ["石川県"] * 4,
    "medical_area_code": ["1702", "1704", "1701", "1702"],
    "medical_area": ["石川中央", "能登中部", "南加賀", "石川中央"],
})
DISTRICTS = pd.DataFrame({"muni_code": ["17201", "17201"], "district_code": ["01", "02"], "name": ["中央", "北部"]})


@pytest.mark.parametrize("value", ["17", 17, "１７", "17000", 17000, "170003", "17.0"])
def test_prefecture_in_every_code_form(value):
    a = areas.parse_code(value)
    assert (a.level, a.code, a.name, a.pref_code) == ("pref", "17", "石川県", "17")
    assert a.is_prefecture and not a.is_municipality and areas.is_prefecture(value)


def test_single_digit_prefecture_gets_its_leading_zero():
    assert areas.parse_code(7).code == "07" and areas.parse_code("07000").name == "福島県"
    with pytest.raises(ParameterError, match="01〜47"):
        areas.parse_code("48")


def test_municipality_5_or_6_digits_with_check_digit():
    # 17201 → check digit (11 − (1·6+7·5+2·4+0·3+1·2) mod 11) mod 10 = (11 − 51 mod 11) mod 10 = 4
    assert areas.parse_code("172014") == areas.parse_code("17201") == areas.parse_code(17201)
    a = areas.parse_code("17201")
    assert (a.level, a.code, a.muni_code, a.pref_code, a.name) == ("muni", "17201", "17201", "17", "")
    with pytest.raises(ParameterError, match="検査数字"):
        areas.parse_code("172015")
    # 4 digits without a master: a municipal code that lost its leading zero (hsutils.core.codes)
    assert areas.parse_code("1100").code == "01100"
    with pytest.raises(ParameterError, match="数字ではありません"):
        areas.parse_code("金沢")


def test_prefecture_6_digit_needs_a_valid_check_digit():
    # 17000 → (11 − (6+35) mod 11) mod 10 = (11 − 8) mod 10 = 3
    assert areas.parse_code("170003").is_prefecture
    with pytest.raises(ParameterError):
        areas.parse_code("170004")


def test_names_and_parents_from_the_master():
    a = areas.resolve_area("17206", MASTER)
    assert (a.name, a.medical_area_code, a.pref_code) == ("白山市", "1702", "17")
    m = areas.resolve_area("1702", MASTER)   # 4 characters in the master = 二次医療圏
    assert (m.level, m.name, m.pref_code, m.member_munis(MASTER)) == ("medical_area", "石川中央", "17",
                                                                      ["17201", "17206"])
    assert areas.resolve_area("17000", MASTER).name == "石川県"
    with pytest.raises(ParameterError, match="市町村マスタにありません"):
        areas.resolve_area("17204", MASTER)


def test_district_code_form():
    d = areas.resolve_area("17201:02", MASTER, DISTRICTS)
    assert (d.level, d.code, d.muni_code, d.district_code, d.name, d.medical_area_code) == \
        ("district", "17201:02", "17201", "02", "北部", "1702")
    assert areas.resolve_area("17201:09", MASTER, DISTRICTS).name == "09"  # not in the 地区マスタ
    with pytest.raises(ParameterError, match="市町村コード:地区コード"):
        areas.parse_code("17:01")


def test_area_is_immutable_and_national():
    a = areas.parse_code("17201")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.code = "17202"
    n = areas.parse_code("00")
    assert (n.level, n.name, n.member_munis(MASTER)) == ("national", "全国", None)


def test_mask_and_strata_of_each_level():
    s = pd.DataFrame({"muni_code": ["17201", "17202", "17206", "18201"], "n": [1, 2, 3, 4]})
    assert areas.parse_code("17").mask(s["muni_code"]).tolist() == [True, True, True, False]
    assert areas.parse_code("17201").mask(s["muni_code"]).tolist() == [True, False, False, False]
    assert areas.resolve_area("1702", MASTER).strata(s, MASTER)["n"].tolist() == [1, 3]
    assert areas.parse_code("00").strata(s) is s


def test_reference_prefecture_and_medical_area():
    r = areas.resolve_reference("17201", "pref", MASTER)
    assert (r.area.code, r.label, r.kind, r.kind_label, r.note, r.available) == \
        ("17", "石川県", "県", "県", "", True)
    r = areas.resolve_reference("17201", "medical_area", MASTER)
    assert (r.area.code, r.label, r.kind, r.note) == ("1702", "石川中央（二次医療圏）", "二次医療圏", "")
    assert r.member_munis(MASTER) == ["17201", "17206"]
    assert areas.resolve_reference("17201", None, MASTER).area.code == "17"


def test_national_and_similar_are_not_the_prefecture():
    """全国 is NDB (tests/test_references.py); 同規模 without enough peers is 比較なし, never 県."""
    r = areas.resolve_reference("17202", "national", MASTER)
    assert r.area.code == "00" and r.kind == "国" and r.available and "NDB" in r.label
    r = areas.resolve_reference("17202", "similar", MASTER)  # MASTER has no population
    assert not r.available and r.kind == "同規模"
    assert r.note == "比較の基準「同規模」: 比較なし（市町村マスタに人口がないため）。"
    assert r.comparison_text(["hba1c65"], [None]).tolist() == ["比較なし（市町村マスタに人口がないため）"]


def test_medical_area_reference_of_a_prefecture_is_noted():
    r = areas.resolve_reference("17", "medical_area", MASTER)
    assert r.area.code == "17" and "上位の二次医療圏がない" in r.note


def test_bad_reference_area_is_a_japanese_error():
    with pytest.raises(ParameterError, match="比較の基準（reference_area）「city」"):
        areas.resolve_reference("17201", "city", MASTER)


def test_reference_for_each_municipality():
    assert areas.reference_for_each_municipality("pref", MASTER) == ("県全体", "比較の基準: 県全体")
    assert areas.reference_for_each_municipality("medical_area", MASTER)[0] == "二次医療圏"
    label, note = areas.reference_for_each_municipality("national", MASTER)
    assert label == "全国（NDB 2022年度・全保険者）" and "全保険者" in note
    assert areas.reference_for_each_municipality("similar", MASTER)[0] == "同規模"


def test_standard_population_named_from_the_stats_registry():
    h27 = areas.standard_population("H27")
    assert h27.note == "標準人口: 平成27年モデル人口"
    pd.testing.assert_series_equal(h27.weights, stats.standard_population("H27", bands=AGE_BANDS))
    # 90+ = 90–94 + 95+ of the 平成27年モデル人口 (1,548,000 + 423,000)
    assert h27.weights["90+"] == 1_971_000
    s60 = areas.standard_population("S60")  # its top band is 85+: only 40–74 are weighted
    assert list(s60.weights.index) == ["40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74"]
    assert "40–74歳" in s60.note
    with pytest.raises(ParameterError, match="標準人口（standard_population）「X」"):
        areas.standard_population("X")


def test_standard_population_pref_is_the_data_of_the_year():
    strata = pd.DataFrame({
        "fy": [2023, 2023, 2024, 2024, 2024],
        "indicator_id": ["kenshin_rate", "kouki_kenshin_rate", "kenshin_rate", "kouki_kenshin_rate", "metabo"],
        "age_band": ["40-44", "75-79", "40-44", "75-79", "40-44"],
        "denominator": [100, 50, 120, 70, 999]})
    one = areas.standard_population("pref", strata, fy=2024)
    assert one.weights[one.weights > 0].to_dict() == {"40-44": 120.0, "75-79": 70.0}
    latest = areas.standard_population("pref", strata)  # one definition (stats): the latest year
    assert latest.weights[latest.weights > 0].to_dict() == {"40-44": 120.0, "75-79": 70.0}
    years = areas.standard_population("pref", strata, fy=[2023, 2024])  # a list of years: its last year
    assert years.weights[years.weights > 0].to_dict() == {"40-44": 120.0, "75-79": 70.0}
    early = areas.standard_population("pref", strata, fy=2023)
    assert early.weights[early.weights > 0].to_dict() == {"40-44": 100.0, "75-79": 50.0}
    with pytest.raises(ParameterError, match="年度 2020"):
        areas.standard_population("pref", strata, fy=2020)
    assert np.isclose(one.weights.sum(), 190)


# ------------------------------------------------------------------ used by notebook.start and the modules
def test_notebook_start_resolves_area_reference_and_standard_population(tmp_path, prepared):
    from hsutils.running import notebook

    ctx = notebook.start("t", "172014", None, out_dir=tmp_path, reference_area="national",
                         standard_population="H27", muni_name="かなざわ")
    assert (ctx.muni_code, ctx.area.level, ctx.area.name, ctx.muni_name) == ("17201", "muni", "金沢市", "かなざわ")
    assert ctx.reference.area.code == "00" and "全保険者" in ctx.reference.note
    assert ctx.standard_population.note == "標準人口: 平成27年モデル人口"
    pref = notebook.start("t", 17000, None, out_dir=tmp_path)
    assert (pref.muni_code, pref.area.is_prefecture, pref.muni_name) == ("17", True, "石川県")
    with pytest.raises(ParameterError, match="reference_area"):
        notebook.start("t", "17201", None, out_dir=tmp_path, reference_area="県")


def test_nephropathy_trend_names_the_reference(prepared):
    from hsutils.patterns import nephropathy

    fys = prepared.fiscal_years[-1:]
    pref = nephropathy.trend_table(prepared, "17201", fys)
    med = nephropathy.trend_table(prepared, "17201", fys,
                                  reference=areas.resolve_reference("17201", "medical_area", prepared.municipalities))
    assert set(pref["area_name"]) == {"金沢市", "石川県"}
    assert set(med["area_name"]) == {"金沢市", "石川中央（二次医療圏）"}
    # the reference rows are the sums over the 二次医療圏's municipalities
    members = areas.resolve_area("1702", prepared.municipalities).member_munis(prepared.municipalities)
    s = prepared.strata
    s = s[s["muni_code"].isin(members) & (s["fy"] == fys[0]) & (s["indicator_id"] == "dm_untreated")]
    row = med[(med["area_name"] != "金沢市") & (med["indicator_id"] == "dm_untreated")].iloc[0]
    assert (row["numerator"], row["denominator"]) == (s["numerator"].sum(), s["denominator"].sum())


def test_evaluation_sheet_header_names_the_reference(prepared):
    from hsutils.patterns import evaluation

    r = evaluation.reference_resolution(prepared, "17201", "similar")
    assert r.kind_label == "同規模" and (r.available or r.unavailable)
    r = evaluation.reference_resolution(prepared, "17201", "medical_area")
    assert r.kind_label == "二次医療圏"


def test_mask_on_categorical_and_missing_codes():
    s = pd.Series(["17201", "17202", None, "18201", "17201"]).astype("category")
    assert areas.parse_code("17").mask(s).tolist() == [True, True, False, False, True]
    assert areas.parse_code("17201").mask(s).tolist() == [True, False, False, False, True]
    assert areas.parse_code("00").mask(s).tolist() == [True] * 5
    assert areas.parse_code("17").mask(pd.Series([], dtype=str)).tolist() == []


def test_has_districts_one_answer_for_every_notebook():
    """areas.has_districts: a municipality (any code form) with a district code in the year asked;
    an empty or missing code is no district; a prefecture never has districts (notebooks 02, 03)."""
    py = pd.DataFrame({"fy": [2023, 2024, 2024, 2024, 2024],
                       "muni_code": ["17201", "17201", "17202", "17202", "17203"],
                       "district_code": ["01", "", "", None, "05"]})
    assert areas.has_districts(py, "17201")            # every year: the 2023 row has "01"
    assert areas.has_districts(py, "172014", 2023)     # 6-digit code with its check digit
    assert not areas.has_districts(py, "17201", 2024)  # in 2024 only an empty code
    assert not areas.has_districts(py, "17202")        # empty and missing codes
    assert areas.has_districts(py, areas.parse_code("17203"), 2024)
    assert not areas.has_districts(py, "17206")        # no rows at all
    assert not areas.has_districts(py, "17")           # a prefecture, although 17201 has districts
    assert not areas.has_districts(py.assign(fy=2025), "17201", 2024)
    cat = py.assign(district_code=py["district_code"].astype("category"))  # as in the cache
    assert areas.has_districts(cat, "17201", 2023) and not areas.has_districts(cat, "17202")


def test_district_label_per_row_master_name_else_code_else_unknown():
    frame = pd.DataFrame({"muni_code": ["17201", "17201", "17201", "17201", "17202"],
                          "district_code": ["01", "09", "", None, "01"]})
    got = areas.district_label_per_row(frame, DISTRICTS).tolist()
    assert got == ["中央", "09", "地区不明", "地区不明", "01"]  # 17202 has no 01 in the master
    cat = frame.assign(district_code=frame["district_code"].astype("category"))
    assert areas.district_label_per_row(cat, DISTRICTS).tolist() == got
    # without a master the code is the name (it used to be 地区不明 for everybody)
    assert areas.district_label_per_row(frame, None).tolist() == ["01", "09", "地区不明", "地区不明", "01"]

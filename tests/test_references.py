"""hsutils.analysis.references (国・県 from NDB, 同規模, user reference CSV), the 全国/同規模 resolution of
hsutils.analysis.areas and the empirical-Bayes ratio of hsutils.stats — all against hand computations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsutils import stats
from hsutils.analysis import areas, references
from hsutils.core.errors import DataError

MASTER = pd.DataFrame({
    "muni_code": ["17201", "17202", "17203", "17204", "17205", "17206", "17207", "17209"],
    "name": ["金沢市", "七尾市", "小松市", "輪島市", "珠洲市", "加賀市", "羽咋市", "かほく市"],
    "pref_code": ["17"] * 8, "pref_name": ["石川県"] * 8,
    "medical_area_code": ["1702"] * 8, "medical_area": ["石川中央"] * 8,
    # class boundaries: 9,999 / 10,000 / 19,999 / 20,000
    "population": [440_000, 9_999, 10_000, 12_000, 15_000, 16_000, 19_999, 20_000],
})


# ----------------------------------------------------------------------------- NDB rates

def test_ndb_prefecture_rate_by_hand():
    """石川県 男 40–44 HbA1c ≥6.5 (FY2022 xlsx cells): 6.5–8.0 455 + 8.0–8.4 46 + ≥8.4 168 = 669;
    denominator = 669 + 6.0–6.5 1,140 + 5.6–6.0 6,489 + <5.6 11,354 = 19,652."""
    r = references.ndb_rates("17").set_index(["indicator_id", "sex", "age_band"])
    assert r.loc[("hba1c65", 1, "40-44"), "numerator"] == 669
    assert r.loc[("hba1c65", 1, "40-44"), "denominator"] == 19_652
    assert r.loc[("hba1c8", 1, "40-44"), "numerator"] == 46 + 168


def test_ndb_hidden_cells_share_the_row_remainder():
    """石川県 女 BMI ≥40: 中計 236, visible ages 52+58+52+31+21 = 214, two hidden cells (65–69, 70–74)
    → 11 each. 女 70–74 BMI ≥25 = 11 + 79 + 656 + 4,077 = 4,823 of 4,823 + 11,597 + 2,734 + 2,021 = 21,175."""
    c = references.ndb_counts()
    hidden = c[(c["pref_code"] == "17") & (c["item"] == "BMI") & (c["category"] == "40.0以上") & (c["sex"] == 2)
               & c["imputed"]]
    assert hidden["count"].tolist() == [11.0, 11.0]
    r = references.ndb_rates("17").set_index(["indicator_id", "sex", "age_band"])
    assert (r.loc[("bmi25", 2, "70-74"), "numerator"], r.loc[("bmi25", 2, "70-74"), "denominator"]) == (4_823, 21_175)


def test_ndb_national_is_the_sum_of_all_rows():
    nat = references.ndb_rates().set_index(["indicator_id", "sex", "age_band"])
    counts = references.ndb_counts()
    hb = counts[(counts["item"] == "HbA1c") & (counts["sex"] == 1) & (counts["age_band"] == "40-44")]
    assert nat.loc[("hba1c65", 1, "40-44"), "denominator"] == pytest.approx(hb["count"].sum())
    assert "99" in set(counts["pref_code"])  # 都道府県判別不可 is part of 全国
    ref = references.ndb_reference()
    assert ref.kind == "国" and "2022" in ref.label and "全保険者" in ref.note
    assert ref.unavailable_reason("kenshin_rate") and not ref.unavailable_reason("hba1c65")


def _strata(rows):
    return pd.DataFrame(rows, columns=["fy", "muni_code", "district_code", "sex", "age_band", "indicator_id",
                                       "numerator", "denominator"])


def test_indirect_standardisation_against_a_reference_by_hand():
    """Two strata; reference rates 10 % (男 40–44) and 20 % (女 40–44).
    E = 100·0.10 + 50·0.20 = 20; O = 12 + 18 = 30 → 1.50, Byar limits of 30 / 20."""
    ref = references.ExternalReference("国", "全国（テスト）", "テスト", "2022年度", pd.DataFrame({
        "indicator_id": ["hba1c65", "hba1c65"], "sex": [1, 2], "age_band": ["40-44", "40-44"],
        "numerator": [10.0, 40.0], "denominator": [100.0, 200.0]}))
    s = _strata([(2024, "17201", "", 1, "40-44", "hba1c65", 12, 100), (2024, "17201", "", 2, "40-44", "hba1c65", 18, 50),
                 (2024, "17201", "", 1, "75-79", "hba1c65", 5, 20),  # a band the reference lacks
                 (2024, "17201", "", 1, "40-44", "kenshin_rate", 40, 100)])
    out = references.compare(s, "17201", MASTER, [ref], fy=2024).set_index("indicator_id")
    lo, hi = stats.byar_limits(30)
    assert out.loc["hba1c65", "expected"] == pytest.approx(20.0)
    assert out.loc["hba1c65", "sr"] == pytest.approx(1.5)
    assert out.loc["hba1c65", "sr_lower"] == pytest.approx(lo / 20) and out.loc["hba1c65", "sr_upper"] == pytest.approx(hi / 20)
    assert "基準に率がない層（75-79歳）を除いて比較" in out.loc["hba1c65", "note"]
    assert out.loc["kenshin_rate", "comparison"] == "比較なし（全国（テスト）にこの指標の値がないため）"
    assert not out.loc["kenshin_rate", "available"]


# ----------------------------------------------------------------------------- 同規模

def test_similar_class_boundaries():
    got = references.similar_class([4_999, 5_000, 9_999, 10_000, 19_999, 20_000, 299_999, 300_000, None]).tolist()
    assert got == ["5千人未満", "5千〜1万人", "5千〜1万人", "1万〜2万人", "1万〜2万人", "2万〜5万人",
                   "10万〜30万人", "30万人以上", None]


def test_peer_group_and_minimum():
    cls, peers = references.peer_group("17203", MASTER)
    assert cls == "1万〜2万人" and peers == ["17204", "17205", "17206", "17207"]  # 9,999 and 20,000 are outside
    r = areas.resolve_reference("17203", "similar", MASTER)
    assert not r.available and "4件しかない" in r.unavailable_reason("hba1c65")
    assert r.comparison_text(["hba1c65"], ["有意に高い"])[0].startswith("比較なし（同規模（1万〜2万人）の市町村がデータに4件")
    s = _strata([(2024, c, "", 1, "40-44", "hba1c65", 1, 10) for c in MASTER["muni_code"]])
    assert r.strata(s, MASTER).empty
    big = pd.concat([MASTER, MASTER.assign(muni_code=["17210", "17211", "17212", "17324", "17344", "17361",
                                                       "17365", "17384"])], ignore_index=True)
    r = areas.resolve_reference("17203", "similar", big)
    assert r.available and len(r.peers) == 9 and r.label == "同規模（1万〜2万人、9市町村）"
    assert sorted(r.strata(s, big)["muni_code"]) == ["17204", "17205", "17206", "17207"]


def test_national_reference_resolution():
    r = areas.resolve_reference("17201", "national", MASTER)
    assert r.kind == "国" and r.available and "NDB" in r.label and "全保険者" in r.note
    assert r.unavailable_reason("hba1c65") == "" and r.unavailable_reason("kenshin_rate")
    s = _strata([(2023, "17201", "", 1, "40-44", "hba1c65", 1, 10), (2024, "17201", "", 1, "40-44", "hba1c65", 1, 10)])
    rs = r.strata(s, MASTER)
    assert sorted(rs["fy"].unique()) == [2023, 2024]
    one = rs[(rs["fy"] == 2024) & (rs["indicator_id"] == "hba1c65") & (rs["sex"] == 1) & (rs["age_band"] == "40-44")]
    assert one["denominator"].iloc[0] == references.ndb_rates().set_index(
        ["indicator_id", "sex", "age_band"]).loc[("hba1c65", 1, "40-44"), "denominator"]


# ----------------------------------------------------------------------------- user CSV

def _write(tmp_path, text):
    p = tmp_path / "kijun.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_user_reference_csv(tmp_path):
    p = _write(tmp_path, "指標,性別,年齢階級,分子,分母,率(%),出典,年度\n"
                         "hba1c65,1,40-44,10,100,,KDB 同規模,2023年度\n"
                         "hba1c65,女,40〜44,,,20,KDB 同規模,2023年度\n"
                         "hba1c65,1,40-44,5,50,,前年度法定報告,2022年度\n")
    refs = references.load_user_reference(p)
    assert [r.label for r in refs] == ["KDB 同規模（2023年度）", "前年度法定報告（2022年度）"]
    rates = refs[0].rates
    assert rates["sex"].tolist() == [1, 2] and rates["age_band"].tolist() == ["40-44", "40-44"]
    assert (rates["numerator"] / rates["denominator"]).tolist() == pytest.approx([0.10, 0.20])
    s = _strata([(2024, "17201", "", 1, "40-44", "hba1c65", 12, 100), (2024, "17201", "", 2, "40-44", "hba1c65", 18, 50)])
    out = references.compare(s, "17201", MASTER, refs[:1], fy=2024)
    assert out["sr"].iloc[0] == pytest.approx(1.5)


@pytest.mark.parametrize("row, expected", [
    ("hba1c99,1,40-44,1,10,,KDB,2023", "kijun.csv 2行目 列「指標」の値「hba1c99」"),
    ("hba1c65,3,40-44,1,10,,KDB,2023", "kijun.csv 2行目 列「性別」の値「3」: 1（男）または 2（女）"),
    ("hba1c65,1,40-49,1,10,,KDB,2023", "列「年齢階級」の値「40-49」: 5歳階級"),
    ("hba1c65,1,40-44,11,10,,KDB,2023", "列「分子」の値「11」: 分母 10 以下"),
    ("hba1c65,1,40-44,1,0,,KDB,2023", "列「分母」の値「0」: 1 以上"),
    ("hba1c65,1,40-44,,,120,KDB,2023", "列「率(%)」の値「120」: 0〜100"),
    ("hba1c65,1,40-44,1,10,,,2023", "列「出典」の値「」: 空欄にできません"),
])
def test_user_reference_csv_errors_name_file_row_column_value(tmp_path, row, expected):
    p = _write(tmp_path, "indicator_id,sex,age_band,numerator,denominator,rate,source,year\n" + row + "\n")
    with pytest.raises(DataError) as e:
        references.load_user_reference(p)
    assert expected in str(e.value)


def test_user_reference_csv_missing_columns(tmp_path):
    p = _write(tmp_path, "indicator_id,sex,age_band,source\nhba1c65,1,40-44,KDB\n")
    with pytest.raises(DataError, match="列 年度（year）、分子（numerator）と分母"):
        references.load_user_reference(p)


# ----------------------------------------------------------------------------- EB smoothing

def test_eb_smoothed_ratio_by_hand():
    """docs/methods.md §14 example: O = (1, 60, 20), E = (5, 40, 40); m = 81/85,
    s² = 23.011762/85 − m/28.3333 = 0.237094, β = m/s² = 4.019255, α = m·β = 3.830110."""
    out = stats.eb_smoothed_ratio([1, 60, 20], [5, 40, 40])
    assert out["prior_mean"].iloc[0] == pytest.approx(81 / 85)
    assert out["value"].tolist() == pytest.approx([4.830110 / 9.019255, 63.830110 / 44.019255,
                                                   23.830110 / 44.019255], rel=1e-5)
    # the small area moves most of the way to m, the large ones hardly
    assert out["weight"].tolist() == pytest.approx([5 / 9.019255, 40 / 44.019255, 40 / 44.019255], rel=1e-5)
    assert (out["lower"] < out["value"]).all() and (out["value"] < out["upper"]).all()


def test_eb_shrinks_small_areas_and_keeps_large_ones():
    o = np.array([0, 3, 9000, 11000, 10000])
    e = np.array([2.0, 1.0, 10000.0, 10000.0, 10000.0])
    out = stats.eb_smoothed_ratio(o, e)
    raw = o / e
    m = o.sum() / e.sum()
    assert abs(out["value"].iloc[1] - m) < abs(raw[1] - m) / 2  # 3.0 pulled far toward m
    assert out["value"].iloc[2:].to_numpy() == pytest.approx(raw[2:], abs=0.01)


def test_eb_without_between_area_variance_gives_the_mean():
    out = stats.eb_smoothed_ratio([10, 10, 0], [10.0, 10.0, 0.0])
    assert out["value"].iloc[:2].tolist() == [1.0, 1.0] and np.isnan(out["value"].iloc[2])


# ----------------------------------------------------------------------------- charts

def test_comparison_chart_shows_reasons_and_the_ndb_scope():
    from hsutils.publish import plots

    ref = references.ExternalReference("国", "全国（テスト）", references.NDB_CREDIT, "2022年度", pd.DataFrame({
        "indicator_id": ["hba1c65"], "sex": [1], "age_band": ["40-44"], "numerator": [10.0], "denominator": [100.0]}),
        note=references.NDB_SCOPE_NOTE)
    s = _strata([(2024, "17201", "", 1, "40-44", "hba1c65", 30, 200), (2024, "17201", "", 1, "40-44", "metabo", 40, 200)])
    t = references.compare(s, "17201", MASTER, [ref], fy=2024)
    ax = plots.reference_comparison_chart(t, title="比較", footer="出典: テスト", notes=references.chart_notes(t))
    texts = [x.get_text() for x in ax.figure.findobj(lambda a: hasattr(a, "get_text"))]
    assert any(x.startswith("比較なし（全国（テスト）にこの指標の値がないため）") for x in texts)
    assert any("全保険者" in x and "2022年度" in x for x in texts)
    assert "1.50" in texts  # 30 / (200 · 0.10)


def test_smoothed_ratio_columns_and_chart_hide_small_counts():
    from hsutils.publish import plots

    t = pd.DataFrame({"indicator_id": "x", "fy": 2024, "area_name": ["A", "B", "C"],
                      "numerator": [1, 60, 20], "expected": [5.0, 40.0, 40.0]})
    t["sr"] = t["numerator"] / t["expected"]
    out = references.with_smoothed_ratio(t)
    assert out["sr_eb"].tolist() == pytest.approx([4.830110 / 9.019255, 63.830110 / 44.019255,
                                                   23.830110 / 44.019255], rel=1e-5)
    ax = plots.smoothed_ratio_chart(out, title="EB", footer="出典: テスト")
    texts = [x.get_text() for x in ax.figure.findobj(lambda a: hasattr(a, "get_text"))]
    assert "‐" in texts or "-" in texts  # A has 1 case: neither ratio is drawn


def test_smoothed_ratio_chart_marks_every_row_without_a_ratio():
    """B's ratio was hidden by secondary suppression (its count 60 is shown): "‐"; C is 比較なし
    (its reference has no figure): 「比較なし」; A is drawn. Every row has a point or a mark."""
    from hsutils.publish import plots

    t = pd.DataFrame({"indicator_id": "x", "fy": 2024, "area_name": ["A", "B", "C"],
                      "numerator": [30, 60, 20], "expected": [40.0, 40.0, np.nan],
                      "comparison": ["有意差なし", "有意に高い", "比較なし（理由）"]})
    t["sr"] = t["numerator"] / t["expected"]
    out = references.with_smoothed_ratio(t)
    out.loc[1, ["sr", "sr_eb", "sr_eb_lower", "sr_eb_upper"]] = np.nan  # what ctx.masked leaves
    ax = plots.smoothed_ratio_chart(out, title="EB", footer="出典: テスト")
    texts = [x.get_text() for x in ax.texts]
    assert texts.count("‐") == 1 and texts.count("比較なし") == 1
    assert any(plots.suppression_note() in x.get_text() for x in ax.figure.findobj(lambda a: hasattr(a, "get_text")))


def test_empty_reference_band_inside_its_range_takes_the_pooled_rate():
    """Reference 男 40–44 10/100 and 50–54 30/100 (pooled 20 %), nothing at 45–49; subject 男 45–49
    has 50 persons, 15 cases → E = 50 · 0.20 = 10, SR 1.5: the band is kept (same numerator in
    every row), not dropped. 75–79 lies outside the reference's range and is left out."""
    ref = references.ExternalReference("同規模", "同規模（テスト）", "テスト", "", pd.DataFrame({
        "indicator_id": ["hba1c65", "hba1c65"], "sex": [1, 1], "age_band": ["40-44", "50-54"],
        "numerator": [10.0, 30.0], "denominator": [100.0, 100.0]}))
    s = _strata([(2024, "17201", "", 1, "45-49", "hba1c65", 15, 50), (2024, "17201", "", 1, "75-79", "hba1c65", 2, 10)])
    out = references.compare(s, "17201", MASTER, [ref], fy=2024).iloc[0]
    assert (out["numerator"], out["expected"]) == (15, pytest.approx(10.0))
    assert out["sr"] == pytest.approx(1.5) and out["ref_rate"] == pytest.approx(20.0)
    assert "75-79歳" in out["note"]


# ------------------------------------------------ other references on charts, one reference rule (01–09)

def _national(rows):
    return references.ExternalReference("国", "全国（NDB 2022年度）", references.NDB_CREDIT, "2022年度",
                                        pd.DataFrame(rows, columns=["indicator_id", "sex", "age_band", "numerator",
                                                                    "denominator"]), note=references.NDB_SCOPE_NOTE)


def test_reference_line_is_the_reference_at_the_subjects_ages():
    """Reference 男 10 %, 女 20 %; subject 100 男 + 50 女 → E = 10 + 10 = 20, line = 20 / 150 = 13.33 %
    (the national crude rate would be 50 / 300 = 16.67 %). kenshin_rate is not an NDB item: the
    note says 比較なし with the reason, and no line is drawn."""
    ref = _national([("hba1c65", 1, "40-44", 10.0, 100.0), ("hba1c65", 2, "40-44", 40.0, 200.0)])
    s = _strata([(2024, "17201", "", 1, "40-44", "hba1c65", 12, 100), (2024, "17201", "", 2, "40-44", "hba1c65", 18, 50),
                 (2024, "17201", "", 1, "40-44", "kenshin_rate", 40, 100)])
    lines = references.lines_from_comparison(references.compare(s, "17201", MASTER, [ref], fy=2024))
    assert lines.set_index("indicator_id").loc["hba1c65", "line_rate"] == pytest.approx(20 / 150 * 100)
    drawn, notes = references.lines_for_chart(lines, "hba1c65", scale=0.01)
    assert drawn == [("全国（NDB 2022年度）", pytest.approx(0.133333, rel=1e-5), "国")]
    assert any("全保険者" in n and "2022年度" in n for n in notes)
    drawn, notes = references.lines_for_chart(lines, "kenshin_rate")
    assert drawn == [] and notes == ["国: 比較なし（全国（NDB 2022年度）にこの指標の値がないため）"]
    hidden = lines.assign(line_rate=np.nan)  # as masked when the subject's denominator is 1–9
    assert references.lines_for_chart(hidden, "hba1c65")[0] == []
    assert references.line_kinds("県") == ("同規模", "国", "利用者指定")


def test_spine_references_give_one_column_per_reference():
    t = pd.DataFrame({"indicator_id": ["hba1c65", "kenshin_rate", "hba1c65", "kenshin_rate"],
                      "reference_kind": ["国", "国", "同規模", "同規模"],
                      "reference_label": ["全国（NDB 2022年度）"] * 2 + ["同規模（テスト）"] * 2,
                      "line_rate": [13.3, np.nan, 12.0, 40.0], "available": [True, False, True, True],
                      "comparison": ["有意差なし", "比較なし（NDB にない指標）", "有意差なし", "有意差なし"]})
    frame = pd.DataFrame({"indicator_id": ["kenshin_rate", "hba1c65"]})
    out, refs, notes = references.spine_references(frame, t, names={"kenshin_rate": "健診受診率"})
    assert refs == [("全国（NDB 2022年度）", "ref_0", "国"), ("同規模（テスト）", "ref_1", "同規模")]
    assert out["ref_0"].tolist()[1] == 13.3 and np.isnan(out["ref_0"].iloc[0])
    assert out["ref_1"].tolist() == [40.0, 12.0]
    assert "国: 比較なし（NDB にない指標）：健診受診率" in notes


def test_narrower_reference_row_is_linked_to_the_subject_count():
    """Subject 40–44: 100 persons, 12 cases; 75–79: 8 persons, 3 cases. The NDB-like reference has
    no 75+, so its row compares 12 / 100 and excludes 3 / 8; the data's 県 compares all: 15 / 108.
    15 − 12 = 3 would reveal the 75–79 count: the relation subject = compared + excluded makes the
    suppression hide the narrow row (3 and 8 are 1–9), and keep the full row."""
    from hsutils.publish import privacy

    nat = _national([("hba1c65", 1, "40-44", 10.0, 100.0)])
    pref = references.ExternalReference("県", "石川県", "データ", "", pd.DataFrame(
        {"indicator_id": ["hba1c65", "hba1c65"], "sex": [1, 1], "age_band": ["40-44", "75-79"],
         "numerator": [100.0, 50.0], "denominator": [1000.0, 200.0]}))
    s = _strata([(2024, "17201", "", 1, "40-44", "hba1c65", 12, 100), (2024, "17201", "", 1, "75-79", "hba1c65", 3, 8)])
    t = references.compare(s, "17201", MASTER, [pref, nat], fy=2024)
    full, narrow = t.iloc[0], t.iloc[1]
    assert (full["numerator"], full["excluded_numerator"], full["subject_numerator"]) == (15, 0, 15)
    assert (narrow["numerator"], narrow["excluded_numerator"], narrow["subject_numerator"]) == (12, 3, 15)
    assert (narrow["denominator"], narrow["excluded_denominator"]) == (100, 8)
    plan = privacy.SuppressionPlan(10)
    plan.add_table("cmp", t, references.COUNT_COLUMNS, references.DERIVED_COLUMNS,
                   relations=[privacy.ColumnMargin(*m) for m in references.COLUMN_MARGINS])
    plan.solve()
    m = plan.masked("cmp")
    assert m.loc[0, "numerator"] == 15 and np.isfinite(m.loc[0, "sr"])  # the full row stays
    assert np.isnan(m.loc[1, "numerator"]) and np.isnan(m.loc[1, "sr"])  # 15 − 12 = 3 cannot be recovered
    assert plan.audit() == []


def test_comparison_note_and_data_members_are_the_same_for_every_notebook():
    nat = areas.resolve_reference("17204", "national", MASTER)
    assert nat.comparison_note("hba1c65") == ""
    assert nat.comparison_note("polypharmacy") == "全国（NDB 2022年度・全保険者）: 比較なし（全国の値は NDB の健診項目だけのため）"
    assert nat.data_members("polypharmacy", MASTER) == (False, None)  # never the data's prefecture instead
    sim = areas.resolve_reference("17204", "similar", MASTER)  # 1万〜2万: 17203, 17205, 17206, 17207 → 4 peers
    assert sim.data_members("kenshin_rate", MASTER) == (False, None)
    assert "比較なし（同規模（1万〜2万人）の市町村がデータに4件しかないため" in sim.comparison_note("kenshin_rate")
    big = MASTER.assign(population=[440_000] + [15_000] * 7)  # 7 in the class → 6 peers of 17204
    sim = areas.resolve_reference("17204", "similar", big)
    usable, munis = sim.data_members("kenshin_rate", big)
    assert usable and munis == ["17202", "17203", "17205", "17206", "17207", "17209"]
    assert sim.mask(pd.Series(["17201", "17202", "17204"]), big).tolist() == [False, True, False]
    pref = areas.resolve_reference("17204", "pref", MASTER)
    assert pref.data_members("polypharmacy", MASTER) == (True, None) and pref.comparison_note("x") == ""


def test_every_notebook_declares_reference_area_with_the_same_values():
    """01–09 all take `reference_area` (default "pref") and their parameters-cell comment names the
    same four values (areas.REFERENCE_CHOICES), which notebook.start resolves in one place; none
    has a notebook-specific list."""
    import re
    from pathlib import Path

    from hsutils.running import notebook_check

    paths = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))
    assert len(paths) == 9
    for path in paths:
        src = notebook_check.parameters_cell(path).source
        line = re.search(r'^reference_area = "(\w+)"\s+# (.*)$', src, flags=re.M)
        assert line, f"{path.name}: no reference_area parameter"
        assert line.group(1) == "pref", path.name
        named = re.findall(r"\b(pref|medical_area|national|similar)（", line.group(2))
        assert named == list(areas.REFERENCE_CHOICES), f"{path.name}: {named}"


def test_spine_marks_by_hand_and_funnel_lines():
    """Spine: row a has the range 20–50 around 36 (half-width 16): 県 30 → 0.5 − 6/32 = 0.3125,
    国 45 → 0.78125. Row b has no range (every area hidden): the half-width is 1.25 × the largest
    distance of a reference (0.8) = 1.0, lower is better: 0.6 → 0.8, 2.0 → 0.1. Funnel: each
    reference is one line at its value, named in the legend, with the note on the limits."""
    import warnings

    from hsutils.publish import plots

    pf = pd.DataFrame({"indicator_name": ["a", "b"], "area_value": [35, np.nan], "benchmark": [36, 1.2],
                       "min": [20, np.nan], "q25": [30, np.nan], "q75": [40, np.nan], "max": [50, np.nan],
                       "comparison": "有意差なし", "polarity": ["higher_better", "lower_better"],
                       "numerator": [100, np.nan], "r0": [30, 0.6], "r1": [45, 2.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # row b's own range is empty
        fig = plots.spine_chart(pf, title="t", footer="出典: テスト", count_col="numerator",
                                references=[("石川県", "r0", "県"), ("全国", "r1", "国")], notes=["国: 比較なし（テスト）"])
    xs = [float(ln.get_xdata()[0]) for ax in fig.axes for ln in ax.lines if ln.get_gid() == "spine_reference"]
    assert xs == pytest.approx([0.3125, 0.8, 0.78125, 0.1])
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert any("国: 比較なし（テスト）" in t for t in texts)
    df = pd.DataFrame({"name": ["A", "B", "C"], "value": [0.30, 0.40, 0.35], "n": [100, 200, 300], "x": [30, 80, 105]})
    ax = plots.funnel_plot(df, value_col="value", denom_col="n", target=0.35, title="f", footer="出典: テスト",
                           count_col="x", target_label="県全体", references=[("全国（NDB 2022年度）", 0.25, "国")])
    lines = [ln for ln in ax.lines if ln.get_gid() == "reference_line"]
    assert len(lines) == 1 and lines[0].get_ydata()[0] == pytest.approx(0.25)
    assert "全国（NDB 2022年度） 25.0%" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("管理限界と点の色は県全体に対するもの" in t.get_text() for t in ax.figure.texts)


# ------------------------------------------ a 同規模 group pooling few persons (docs/rules.md §15.6)

def _peer_strata(peer_numerators, peer_denominators):
    """Subject 17203 (class 1万〜2万人) 15 of 100; its peers 17204–17207 with the given counts (男 40–44)."""
    rows = [(2024, "17203", "", 1, "40-44", "hba1c65", 15, 100)]
    rows += [(2024, c, "", 1, "40-44", "hba1c65", n, d)
             for c, n, d in zip(["17204", "17205", "17206", "17207"], peer_numerators, peer_denominators)]
    return _strata(rows)


BIG_MASTER = pd.concat([MASTER, MASTER.assign(muni_code=["17210", "17211", "17212", "17324", "17344", "17361",
                                                         "17365", "17384"])], ignore_index=True)


SMALL = "比較なし（同規模の人数が10人未満のため）"


@pytest.mark.parametrize("numerators, denominators, shown", [
    ((3, 2, 2, 2), (30, 30, 30, 30), SMALL),   # pooled numerator 9 of 120 → hidden
    ((3, 3, 2, 2), (30, 30, 30, 30), True),    # pooled numerator 10 of 120 → shown, 10/120 = 8.33 %
    ((0, 0, 0, 0), (3, 2, 2, 2), SMALL),       # pooled denominator 9 → hidden
    # denominator 10, numerator 0: 0 is not a small count; not compared only because E = 0
    ((0, 0, 0, 0), (3, 3, 2, 2), "比較なし（基準の率が0で期待数が0のため）"),
])
def test_similar_group_with_few_pooled_persons_is_not_compared(numerators, denominators, shown):
    # nine peers in the data (≥ MIN_PEERS) but only four with persons: the pool decides, not the peer count
    ref = areas.resolve_reference("17203", "similar", BIG_MASTER)
    assert ref.available and len(ref.peers) == 9
    out = references.compare(_peer_strata(numerators, denominators), "17203", BIG_MASTER, [ref], fy=2024).iloc[0]
    lines = references.lines_from_comparison(
        references.compare(_peer_strata(numerators, denominators), "17203", BIG_MASTER, [ref], fy=2024))
    drawn, notes = references.lines_for_chart(lines, "hba1c65")
    if shown is True:
        assert out["available"] and out["ref_rate"] == pytest.approx(sum(numerators) / sum(denominators) * 100)
        assert out["numerator"] == 15 and len(drawn) == 1
    else:
        assert not out["available"] and out["comparison"] == shown
        assert pd.isna(out["ref_rate"]) and pd.isna(out["sr"]) and pd.isna(out["numerator"])
        assert drawn == [] and notes == [f"同規模: {shown}"]


def test_small_count_rule_is_the_suppression_threshold_and_spares_published_references():
    from hsutils.publish import privacy

    assert references.MIN_REFERENCE_COUNT == privacy.DEFAULT_THRESHOLD
    # NDB and a user's CSV are published figures, not the data's persons: a small cell there is compared
    ndb = _national([("hba1c65", 1, "40-44", 5.0, 50.0)])
    out = references.compare(_peer_strata((3, 3, 2, 2), (30, 30, 30, 30)), "17203", BIG_MASTER, [ndb],
                             fy=2024).iloc[0]
    assert out["available"] and out["ref_rate"] == pytest.approx(10.0)
    # the data's own 県 pooled from 1–9 persons is held to the same rule (min_count passed through)
    pref = areas.resolve_reference("17203", "pref", BIG_MASTER)
    out = references.compare(_peer_strata((3, 3, 2, 2), (30, 30, 30, 30)), "17203", BIG_MASTER, [pref], fy=2024,
                             min_count=26).iloc[0]
    assert out["comparison"] == "比較なし（県の人数が26人未満のため）"  # 県 pools 15 + 10 = 25 cases
    out = references.compare(_peer_strata((3, 3, 2, 2), (30, 30, 30, 30)), "17203", BIG_MASTER, [pref], fy=2024,
                             min_count=25).iloc[0]
    assert out["available"]


# ------------------------------- the run's suppress_threshold decides the small pooled reference (§15.6)

def _prepared(strata, master):
    from types import SimpleNamespace

    return SimpleNamespace(strata=strata, municipalities=master)


@pytest.mark.parametrize("peer_numerators, threshold, shown", [
    ((5, 5, 5, 4), 20, False),   # 同規模 pools 19 cases: below a threshold of 20 → 比較なし
    ((5, 5, 5, 5), 20, True),    # 20 cases: shown, 20/120 = 16.67 %
    ((5, 5, 5, 4), 10, True),    # the default threshold shows the 19
])
def test_comparison_table_uses_the_run_threshold(peer_numerators, threshold, shown):
    """`comparison_table` / `reference_lines_table` (what notebooks 01–05 call with
    `min_count=ctx.suppress_threshold`) hold a 同規模 pool to the run's threshold, not to 10."""
    prep = _prepared(_peer_strata(peer_numerators, (30, 30, 30, 30)), BIG_MASTER)
    t = references.comparison_table(prep, "17203", 2024, indicator_ids=["hba1c65"], min_count=threshold)
    sim = t[t["reference_kind"] == "同規模"].iloc[0]
    lines = references.reference_lines_table(prep, "17203", 2024, ["hba1c65"], min_count=threshold)
    sim_line = lines[lines["reference_kind"] == "同規模"].iloc[0]
    pref = t[(t["reference_kind"] == "県") & ~t["source"].str.contains("NDB")].iloc[0]
    assert pref["available"]  # 県 pools 15 + 19 (or 20) cases: at or above 20 either way
    if shown:
        assert sim["available"] and sim["ref_rate"] == pytest.approx(sum(peer_numerators) / 120 * 100)
        assert sim_line["line_rate"] == pytest.approx(sum(peer_numerators) / 120 * 100)  # same one band
    else:
        assert not sim["available"] and sim["comparison"] == "比較なし（同規模の人数が20人未満のため）"
        assert pd.isna(sim["ref_rate"]) and pd.isna(sim["sr"])
        assert not sim_line["available"] and pd.isna(sim_line["line_rate"])


def test_notebooks_pass_the_run_threshold_to_every_reference_comparison():
    """Every call in notebooks 01–09 of a function that applies the small pooled-reference rule
    passes `min_count=ctx.suppress_threshold` (the run's `suppress_threshold`, docs/rules.md §15.6)."""
    import ast
    from pathlib import Path

    import nbformat

    rule_functions = {("references", f) for f in ("compare", "comparison_table", "reference_lines_table",
                                                    "municipal_ratios")}
    # the per-municipality indicator tables of 01 and 09 (overview) and 02 (districts, no districts)
    rule_functions |= {("overview", "municipal_indicator_table"), ("districts", "municipal_indicator_table")}
    calls, tables = 0, set()
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(code)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and (node.func.value.id, node.func.attr) in rule_functions):
                calls += 1
                if node.func.attr == "municipal_indicator_table":
                    tables.add(path.name[:2])
                given = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert given.get("min_count") == "ctx.suppress_threshold", \
                    f"{path.name}: {node.func.value.id}.{node.func.attr} without min_count=ctx.suppress_threshold"
    assert calls >= 12  # 01–05: comparison table (5), reference lines (3), 01's empirical-Bayes ratios; tables (3)
    assert tables == {"01", "02", "09"}



# ------------- the per-municipality tables of notebooks 01, 02 and 09 (docs/rules.md §15.6, §15.7)

def _pref_strata(other_numerator):
    """The data's 県 = 小松市 (17203) 4 of 50 + 輪島市 (17204) `other_numerator` of 50 (男 40–44 HbA1c ≥6.5)."""
    return _strata([(2024, "17203", "", 1, "40-44", "hba1c65", 4, 50),
                    (2024, "17204", "", 1, "40-44", "hba1c65", other_numerator, 50)])


@pytest.mark.parametrize("other, threshold, shown", [
    (5, 10, False),   # 県 pools 4 + 5 = 9 cases: threshold − 1 → 比較なし
    (6, 10, True),    # 10 cases: at the threshold → compared
    (15, 20, False),  # 19 cases under a run threshold of 20
    (16, 20, True),   # 20 cases
])
def test_municipal_indicator_table_holds_the_pooled_reference_to_the_run_threshold(other, threshold, shown):
    """notebook 01's (and 09's) `overview.municipal_indicator_table(..., min_count=ctx.suppress_threshold)`
    under `reference_area: pref`. Shown: 県 rate = (4 + other) / 100, so E(小松市) = 50 × rate and
    sr = 4 / E (threshold 10: 4 / 5 = 0.8; threshold 20: 4 / 10 = 0.4)."""
    from hsutils.patterns import overview, support_record

    t, _ = overview.municipal_indicator_table(_prepared(_pref_strata(other), BIG_MASTER), [2024], ["hba1c65"],
                                              min_count=threshold)
    row = t.set_index("muni_code").loc["17203"]
    if shown:
        assert row["ref_rate"] == pytest.approx(4 + other)
        assert row["expected"] == pytest.approx(50 * (4 + other) / 100)
        assert row["sr"] == pytest.approx(4 / (50 * (4 + other) / 100))
        assert row["comparison"] == "有意差なし"  # exact limits of 4: 1.09–10.24, over E (5 or 10) they hold 1
    else:
        why = f"比較なし（県の人数が{threshold}人未満のため）"
        assert (t["comparison"] == why).all() and (t["judgement"] == why).all()  # every town of the year
        assert t[["expected", "sr", "sr_lower", "sr_upper", "ref_rate"]].isna().all().all()
        assert row["numerator"] == 4 and row["crude_rate"] == pytest.approx(8.0)  # the town's own figures stay
    # notebook 09's page table is a selection of the same rows (no figure of its own)
    page = support_record.insurer_indicators(t, "17203", 2024, "県全体", indicator_ids=["hba1c65"]).iloc[0]
    assert page["comparison"] == row["comparison"]
    assert page["sr"] == row["sr"] if shown else pd.isna(page["sr"])


@pytest.mark.parametrize("peer_numerators, expected_comparison", [
    ((0, 0, 0, 0), "比較なし（基準の率が0で期待数が0のため）"),  # peers 0 of 120: E = 0, no ratio
    ((3, 3, 2, 2), None),                                        # 10 of 120: E = 100 × 10/120 = 8.33
])
def test_similar_reference_with_expected_zero_says_no_comparison(peer_numerators, expected_comparison):
    """同規模 whose pooled rate is 0 in 小松市's only band: the 標準化該当比 15 / 0 is undefined. Notebook 01's
    table (`references.municipal_table`) and 02's `indicators_municipal` (`districts.municipal_indicator_table`
    with `reference=ctx.reference`) say 「比較なし（理由）」 in comparison and judgement, never an empty cell."""
    from hsutils.patterns import districts

    strata = _peer_strata(peer_numerators, (30, 30, 30, 30))
    ref = areas.resolve_reference("17203", "similar", BIG_MASTER)
    one = references.municipal_table(strata, BIG_MASTER, "similar", fy=[2024], indicators=["hba1c65"])
    one = one.set_index("area_code").loc["17203"]
    two = districts.municipal_indicator_table(strata, BIG_MASTER, "17203", [2024], ["hba1c65"], reference=ref,
                                              min_count=10).iloc[0]
    for row in (one, two):
        if expected_comparison:
            assert row["comparison"] == expected_comparison and row["judgement"] == expected_comparison
            assert pd.isna(row["sr"]) and row["numerator"] == 15
        else:
            assert row["sr"] == pytest.approx(15 / (100 * 10 / 120))
            assert row["comparison"] == "有意に高い" and row["judgement"] == "悪い"  # HbA1c: higher is worse
    assert two["muni_rate"] == pytest.approx(sum(peer_numerators) / 120 * 100)  # 02's column for the reference rate



def test_district_with_expected_zero_says_no_comparison():
    """02's districts against their municipality (金沢市, 男 HbA1c ≥6.5): 地区01 has 0 of 5 aged 40–44, 地区02
    3 of 10 aged 70–74. The city's rates: 40–44 0/5 = 0, 70–74 3/10 = 0.3. 地区01: E = 5 × 0 = 0 → 比較なし;
    地区02: E = 10 × 0.3 = 3, O = 3 → 1.00, 有意差なし."""
    from hsutils.patterns import districts

    strata = _strata([(2024, "17201", "01", 1, "40-44", "hba1c65", 0, 5),
                      (2024, "17201", "02", 1, "70-74", "hba1c65", 3, 10)])
    dlist = pd.DataFrame({"district_code": ["01", "02"], "district_name": ["地区01", "地区02"]})
    # threshold 3 so that the city's 3 of 15 may be shown (at 10 its rate is hidden: docs/rules.md §9.2)
    t = districts.district_indicator_table(strata, MASTER, dlist, "17201", [2024], ["hba1c65"], suppress_threshold=3)
    assert districts.district_indicator_table(strata, MASTER, dlist, "17201", [2024], ["hba1c65"])["muni_rate"].isna().all()
    t = t.set_index("district_name")
    assert t.at["地区01", "comparison"] == "比較なし（基準の率が0で期待数が0のため）" == t.at["地区01", "judgement"]
    assert pd.isna(t.at["地区01", "sr"]) and t.at["地区01", "numerator"] == 0 and t.at["地区01", "muni_rate"] == pytest.approx(20.0)  # 3 of 15
    assert t.at["地区02", "sr"] == pytest.approx(1.0) and t.at["地区02", "comparison"] == "有意差なし"


# ------------------------- empirical-Bayes ratios against each reference (docs/methods.md §14)

#: seven municipalities of one 同規模 class (1万〜2万人: each has six peers) in one 二次医療圏
EB_MASTER = pd.DataFrame({
    "muni_code": ["17201", "17202", "17203", "17204", "17205", "17206", "17207"],
    "name": ["小町", "B市", "C市", "D市", "E市", "F市", "G市"],
    "pref_code": ["17"] * 7, "pref_name": ["石川県"] * 7,
    "medical_area_code": ["1702"] * 7, "medical_area": ["石川中央"] * 7, "population": [12_000] * 7})
#: 男 40–44 HbA1c ≥6.5: 小町 3 of 10, the others 800…1,200 of 10,000 (6,001 of 60,010 in all = 10 %)
EB_CASES = np.array([3, 800, 1000, 1200, 900, 1100, 998], dtype=float)
EB_PERSONS = np.array([10, 10_000, 10_000, 10_000, 10_000, 10_000, 10_000], dtype=float)


def _eb_prepared():
    return _prepared(_strata([(2024, c, "", 1, "40-44", "hba1c65", o, n)
                              for c, o, n in zip(EB_MASTER["muni_code"], EB_CASES, EB_PERSONS)]), EB_MASTER)


def test_eb_against_the_prefecture_by_hand():
    """県 rate 6,001 / 60,010 = 0.1 → E = (1, 1,000 × 6); raw SR = (3, 0.8, 1.0, 1.2, 0.9, 1.1, 0.998).
    m = 6,001/6,001 = 1; Σ E(SR − 1)² = 1·2² + 1,000·(0.04 + 0 + 0.04 + 0.01 + 0.01 + 0.000004) = 104.004;
    s² = 104.004/6,001 − 1/(6,001/7) = 0.0173311 − 0.0011665 = 0.0161646; β = α = 1/s² = 61.8634.
    小町 (3 + 61.8634)/(1 + 61.8634) = 1.0318: from 3.0 almost to the mean (weight 1/62.86 = 0.016);
    B市 (800 + 61.8634)/(1,000 + 61.8634) = 0.8117: near its raw 0.8 (weight 0.942)."""
    t = references.municipal_ratios(_eb_prepared(), 2024, "hba1c65", "pref").set_index("area_code")
    assert t["expected"].tolist() == pytest.approx([1.0] + [1000.0] * 6)
    assert t["sr"].tolist() == pytest.approx([3.0, 0.8, 1.0, 1.2, 0.9, 1.1, 0.998])
    assert t["sr_eb"].tolist() == pytest.approx([1.031815, 0.811652, 1.0, 1.188348, 0.905826, 1.094174, 0.998117],
                                                rel=1e-5)
    assert t.at["17201", "eb_weight"] == pytest.approx(1 / 62.863428, rel=1e-5)
    assert set(t["reference_label"]) == {"石川県"}


def _shrinks_small_keeps_large(t, expected):
    """The small town moves most of the way to the prior mean; the large ones stay within 2 % of
    their raw ratio; the ratios are against the expected counts given (hand-computed E)."""
    assert t["expected"].to_numpy() == pytest.approx(expected, rel=1e-9)
    raw = EB_CASES / expected
    assert t["sr"].to_numpy() == pytest.approx(raw, rel=1e-9)
    m = EB_CASES.sum() / expected.sum()
    eb = t["sr_eb"].to_numpy()
    assert abs(eb[0] - m) < 0.1 * abs(raw[0] - m)           # 小町: 90 % of the way to m or more
    assert eb[1:] == pytest.approx(raw[1:], rel=0.02)       # large towns nearly unchanged
    assert (t["eb_weight"].to_numpy()[1:] > 0.9).all() and t["eb_weight"].iloc[0] < 0.05
    # the same as the hand-checked estimator (test_eb_smoothed_ratio_by_hand) on these O and E
    assert eb == pytest.approx(stats.eb_smoothed_ratio(EB_CASES, expected)["value"].to_numpy(), rel=1e-9)


def test_eb_against_the_similar_peers():
    """同規模: each town against its six peers pooled (leave itself out): 小町 5,998/60,000 → E = 0.99967;
    B市 (6,001 − 800)/(60,010 − 10,000) = 5,201/50,010 → E = 1,039.99; every label names the class."""
    t = references.municipal_ratios(_eb_prepared(), 2024, "hba1c65", "similar").set_index("area_code")
    rate = (EB_CASES.sum() - EB_CASES) / (EB_PERSONS.sum() - EB_PERSONS)
    assert t.at["17201", "expected"] == pytest.approx(10 * 5998 / 60000)
    _shrinks_small_keeps_large(t, EB_PERSONS * rate)
    assert set(t["reference_label"]) == {"同規模（1万〜2万人、6市町村）"}


def test_eb_against_the_nation():
    """国: one NDB rate for all, 男 40–44 HbA1c ≥6.5 of 全国 (x / n of the NDB table) → E = persons × x/n."""
    nat = references.ndb_rates().set_index(["indicator_id", "sex", "age_band"]).loc[("hba1c65", 1, "40-44")]
    t = references.municipal_ratios(_eb_prepared(), 2024, "hba1c65", "national").set_index("area_code")
    _shrinks_small_keeps_large(t, EB_PERSONS * nat["numerator"] / nat["denominator"])
    assert set(t["reference_label"]) == {"全国（NDB 2022年度・全保険者）"}
    # an indicator NDB lacks: no municipality can be compared, nothing to smooth
    assert references.municipal_ratios(_eb_prepared(), 2024, "metabo", "national").empty


def test_eb_leaves_out_a_town_whose_peer_pool_is_small():
    """docs/rules.md §15.6 per town at min_count 4,901: D市's peers pool 6,001 − 1,200 = 4,800 + … = 4,801
    cases (< 4,901: 比較なし, no ratio, out of the prior); F市's 4,901 are compared."""
    t = references.municipal_ratios(_eb_prepared(), 2024, "hba1c65", "similar", min_count=4901).set_index("area_code")
    assert t.at["17204", "comparison"] == "比較なし（同規模の人数が4901人未満のため）"
    assert pd.isna(t.at["17204", "sr"]) and pd.isna(t.at["17204", "sr_eb"]) and pd.isna(t.at["17204", "ref_rate"])
    assert np.isfinite(t.at["17206", "sr_eb"]) and t.at["17206", "ref_rate"] == pytest.approx(4901 / 50010 * 100)
    notes = references.smoothed_ratio_notes(t.reset_index())
    assert "比較なし（同規模の人数が4901人未満のため）: D市" in notes

"""hsutils.patterns.costs and the cost statistics of hsutils.stats (docs/rules.md §13, docs/methods.md §13):
hand-built fixtures, values worked out by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hsutils import stats
from hsutils.inputs import claims_rules
from hsutils.publish import privacy
from hsutils.patterns import costs
from hsutils.core.errors import DataError

Z95 = 1.959963984540054

MASTER = pd.DataFrame({"muni_code": ["17201", "17202", "17203"], "name": ["甲市", "乙町", "丙村"],
                       "pref_code": ["17", "17", "17"], "pref_name": ["石川県"] * 3,
                       "medical_area_code": ["1701", "1701", "1702"], "medical_area": ["北部", "北部", "南部"]})


def _py(rows):
    """person_year rows: (person_id, fy, muni, sex, age_band, insurance, full_year, months)."""
    d = pd.DataFrame(rows, columns=["person_id", "fy", "muni_code", "sex", "age_band", "insurance", "full_year",
                                    "months"])
    return d


def _claims(rows):
    """claims_monthly rows: (person_id, ym, inpatient, outpatient, dental, pharmacy)."""
    d = pd.DataFrame(rows, columns=["person_id", "ym", "cost_inpatient", "cost_outpatient", "cost_dental",
                                    "cost_pharmacy"])
    d["muni_code"] = "17201"
    d["dialysis"] = 0
    return d


# ---------------------------------------------------------------------------------------------
# person-years and per-capita costs (§13.1)
# ---------------------------------------------------------------------------------------------
def test_person_years_from_months_and_the_part_year_default():
    py = _py([("a", 2024, "17201", 1, "70-74", "国保", True, np.nan),     # full year, no months → 12
              ("b", 2024, "17201", 1, "70-74", "国保", False, 6),         # months given → 6
              ("c", 2024, "17201", 2, "70-74", "国保", False, np.nan),   # part year, no months → 6 (assumed)
              ("d", 2024, "17201", 2, "70-74", "国保", True, 3)])        # months win over full_year
    y = costs.person_years(py)
    assert y["years"].tolist() == [1.0, 0.5, 0.5, 0.25]
    assert y["months_assumed"].tolist() == [False, False, True, False]


def test_per_capita_with_part_year_enrollment_by_hand():
    # A: 1 year, 120,000 円 (入院 100,000 + 調剤 20,000); B: 6 months, 30,000 円 入院外.
    # 計: (120,000 + 30,000) / 1.5 = 100,000 円/年; 入院: 100,000 / 1.5 = 66,666.67
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12), ("B", 2024, "17201", 1, "70-74", "国保", False, 6)])
    cm = _claims([("A", 202405, 100000, 0, 0, 20000), ("B", 202502, 0, 30000, 0, 0)])
    pc = costs.person_costs(py, {"claims_monthly": cm})
    assert pc.source == costs.SOURCE_MONTHLY and not pc.has_diseases
    t = costs.per_capita_table(pc, MASTER, levels=(costs.LEVEL_MUNI,))
    row = t[t["setting"] == "計"].iloc[0]
    assert row["persons"] == 2 and row["patients"] == 2 and row["person_years"] == pytest.approx(1.5)
    assert row["per_capita"] == pytest.approx(100000.0)
    # linearised interval: R = 100,000; residuals A: 120,000 − 100,000 = 20,000, B: 30,000 − 50,000 = −20,000
    # Var(R) = 2/1 · (4e8 + 4e8) / 1.5² = 7.1111e8 → SE = 26,666.67
    se = math.sqrt(2 * 8e8) / 1.5
    assert row["lower"] == pytest.approx(100000 - Z95 * se) and row["upper"] == pytest.approx(100000 + Z95 * se)
    inp = t[t["setting"] == "入院"].iloc[0]
    assert inp["per_capita"] == pytest.approx(100000 / 1.5) and inp["patients"] == 1
    # a month in March 2025 belongs to FY2024; April 2024 too
    assert costs.fiscal_year_of_month([202503, 202404, 202403]).tolist() == [2024, 2024, 2023]


def test_costs_outside_enrollment_are_counted_not_used():
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12), ("B", 2023, "17201", 1, "70-74", "国保", True, 12)])
    cm = _claims([("A", 202405, 0, 1000, 0, 0), ("A", 202305, 0, 5000, 0, 0),  # A has no FY2023 row
                  ("A", 202205, 0, 7000, 0, 0)])  # FY2022: outside the analysed years (look-back), not counted
    pc = costs.person_costs(py, {"claims_monthly": cm})
    assert pc.persons["計"].tolist() == [1000.0, 0.0]
    assert pc.unmatched_rows == 1 and pc.unmatched_cost == 5000.0
    assert any("含めていません" in n for n in pc.notes)


def test_area_with_no_receipts_has_zero_cost_and_the_ratio_zero():
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12), ("B", 2024, "17202", 1, "70-74", "国保", True, 12)])
    cm = _claims([("A", 202405, 0, 50000, 0, 0)])
    pc = costs.person_costs(py, {"claims_monthly": cm})
    t = costs.per_capita_table(pc, MASTER, levels=(costs.LEVEL_MUNI,))
    b = t[(t["area_code"] == "17202") & (t["setting"] == "計")].iloc[0]
    assert b["cost"] == 0 and b["per_capita"] == 0 and b["patients"] == 0 and np.isnan(b["upper"])
    ref = costs.reference_from_data(pc, "県")
    idx = costs.regional_index_table(pc, ref, MASTER, levels=(costs.LEVEL_MUNI,))
    r = idx[(idx["area_code"] == "17202") & (idx["setting"] == "計")].iloc[0]
    assert r["index"] == 0 and r["lower"] == 0 and np.isnan(r["upper"])


def test_no_cost_data_at_all():
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12)])
    pc = costs.person_costs(py, {})
    assert not pc.has_costs and pc.persons["計"].tolist() == [0.0]


# ---------------------------------------------------------------------------------------------
# 地域差指数 (§13.2)
# ---------------------------------------------------------------------------------------------
def _two_band_frame():
    # reference per capita: band 1 100,000 円, band 2 300,000 円
    return pd.DataFrame({"area": ["x"] * 4, "band": [1, 1, 2, 2], "cost": [120000.0, 30000, 300000, 500000],
                         "years": [1.0, 0.5, 1.0, 1.0], "ref": [100000.0, 100000, 300000, 300000]})


def test_cost_ratio_two_band_toy_by_hand():
    out = stats.cost_ratio_grouped(_two_band_frame(), ["area"], ["band"], "cost", "years", "ref").iloc[0]
    # O = 950,000; E = 1.5 · 100,000 + 2 · 300,000 = 750,000 → 1.266667
    assert out["observed"] == 950000 and out["expected"] == 750000
    assert out["value"] == pytest.approx(950000 / 750000)
    # Var(O): band 1 R = 100,000, residuals ±20,000 → 2 · 8e8 = 1.6e9; band 2 R = 400,000, residuals ±100,000
    # → 2 · 2e10 = 4e10; total 4.16e10; SE(log) = √4.16e10 / 950,000 = 0.214696
    se = math.sqrt(4.16e10) / 950000
    assert se == pytest.approx(0.214696, abs=1e-6)
    assert out["lower"] == pytest.approx(950000 / 750000 * math.exp(-Z95 * se))
    assert out["upper"] == pytest.approx(950000 / 750000 * math.exp(Z95 * se))
    assert out["lower"] == pytest.approx(0.8316, abs=1e-4) and out["upper"] == pytest.approx(1.9294, abs=1e-4)


def test_cost_ratio_edge_cases():
    d = pd.DataFrame({"g": ["one", "zero", "noref"], "s": [1, 1, 1], "cost": [5000.0, 0, 10],
                      "years": [1.0, 1, 1], "ref": [1000.0, 1000, 0]})
    out = stats.cost_ratio_grouped(d, ["g"], ["s"], "cost", "years", "ref").set_index("g")
    # one person in a stratum: ratio 5, Var(O) = 0 → the interval collapses on the ratio
    assert out.loc["one", "value"] == 5 and out.loc["one", "lower"] == pytest.approx(5)
    assert out.loc["zero", "value"] == 0 and out.loc["zero", "lower"] == 0 and np.isnan(out.loc["zero", "upper"])
    assert np.isnan(out.loc["noref", "value"])


def test_index_is_exactly_one_for_the_reference_population_itself():
    # two towns with the same costs per sex × age band: each one's index is 1, whatever the ages
    rows, claims = [], []
    k = 0
    for muni, n_old in (("17201", 3), ("17202", 7)):
        for i in range(10):
            band = "70-74" if i < n_old else "40-44"
            pid = f"{muni}-{i}"
            rows.append((pid, 2024, muni, 1 + i % 2, band, "国保", True, 12))
            yen = (200000 if band == "70-74" else 50000) * (1 + i % 2)
            claims.append((pid, 202406, 0, yen, 0, 0))
            k += 1
    pc = costs.person_costs(_py(rows), {"claims_monthly": _claims(claims)})
    ref = costs.reference_from_data(pc, "石川県")
    idx = costs.regional_index_table(pc, ref, MASTER, levels=(costs.LEVEL_MUNI,))
    tot = idx[idx["setting"] == "計"]
    assert np.allclose(tot["index"], 1.0)
    # crude per capita differ (the older town costs more) but the adjusted per capita are equal
    t = costs.per_capita_table(pc, MASTER, levels=(costs.LEVEL_MUNI,))
    crude = t[t["setting"] == "計"].set_index("area_code")["per_capita"]
    assert crude["17202"] > crude["17201"]
    assert tot["adjusted"].nunique() == 1 and tot["comparison"].eq(stats.NOT_SIGNIFICANT).all()


def test_user_reference_table_and_its_errors():
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12)])
    pc = costs.person_costs(py, {"claims_monthly": _claims([("A", 202406, 0, 150000, 0, 0)])})
    rows = [(2024, "国保", s, 0, "70-74", v) for s, v in (("入院", 0), ("入院外", 100000), ("歯科", 0),
                                                      ("調剤", 0), ("計", 100000))]
    table = pd.DataFrame(rows, columns=list(costs.REFERENCE_COLUMNS))
    ref = costs.reference_from_table(table, "全国")
    idx = costs.regional_index_table(pc, ref, MASTER, levels=(costs.LEVEL_MUNI,))
    assert idx.loc[idx["setting"] == "計", "index"].iloc[0] == pytest.approx(1.5)
    assert np.isnan(idx.loc[idx["setting"] == "計", "adjusted"].iloc[0])  # no crude in a user table
    with pytest.raises(DataError, match="列がありません: 一人当たり医療費"):
        costs.reference_from_table(table.drop(columns="一人当たり医療費"), "全国")
    bad = table.astype({"一人当たり医療費": object})
    bad.loc[2, "一人当たり医療費"] = "abc"
    with pytest.raises(DataError, match="4行目 一人当たり医療費"):
        costs.reference_from_table(bad, "全国")
    missing_band = table.assign(年齢階級="40-44")
    with pytest.raises(DataError, match="70-74歳 の一人当たり医療費がありません"):
        costs.regional_index_table(pc, costs.reference_from_table(missing_band, "全国"), MASTER,
                                   levels=(costs.LEVEL_MUNI,))


# ---------------------------------------------------------------------------------------------
# disease groups (§13.3), 調剤 attribution, high costs and concentration (§13.5)
# ---------------------------------------------------------------------------------------------
def test_disease_groups_first_match_and_ckd_split_by_dialysis():
    mc = pd.DataFrame({"person_id": ["a", "a", "b", "c", "d", "e"], "ym": [202406] * 6,
                       "setting": ["入院外"] * 6,
                       "main_icd10": ["E112", "I10", "N185", "C509", "J069", None], "cost": [1.0] * 6})
    cm = pd.DataFrame({"person_id": ["b"], "ym": [202406], "dialysis": [1]})
    g = costs.assign_groups(mc, cm).tolist()
    # E11.2 糖尿病性腎症 is 慢性腎臓病 before 糖尿病 (first match in cost_groups order)
    assert g == [costs.CKD_NO_DIALYSIS, "高血圧症", costs.CKD_DIALYSIS, "悪性新生物", costs.OTHER_GROUP,
                 costs.UNKNOWN_GROUP]
    assert costs.CKD_DIALYSIS in costs.lifestyle_groups() and "悪性新生物" not in costs.lifestyle_groups()


def test_pharmacy_receipt_takes_the_prescribers_main_diagnosis():
    # receipt 6 (入院外, same institution, higher number) loses to receipt 1; person q's 調剤 (another
    # person-month, number 1) finds no 医科 receipt of its own month
    rec = pd.DataFrame({"receipt_id": [6, 1, 2, 3, 4, 5], "person_id": ["p"] * 5 + ["q"], "ym": [202406] * 6,
                        "setting": ["入院外", "入院外", "入院", "調剤", "調剤", "調剤"],
                        "institution": ["1710000001", "1710000001", "1710000001", "1740000001", "1740000001",
                                        "1740000001"],
                        "rx_institution": [None, None, None, "1710000001", "1710000009", "1710000001"],
                        "main_icd10": ["J069", "E119", "I639", None, None, None]})
    pm = np.array([0, 0, 0, 0, 0, 1], np.int64)  # each receipt's person-month
    icd = claims_rules._with_prescriber_diagnosis(rec, pm)
    assert icd.tolist()[:4] == ["J069", "E119", "I639", "E119"]  # 入院外 preferred, then the lowest number
    assert pd.isna(icd.iloc[4])  # no receipt of that prescriber: no 主傷病
    assert pd.isna(icd.iloc[5])  # q's month has no 医科 receipt


def test_disease_group_table_per_capita_and_share():
    py = _py([("A", 2024, "17201", 1, "70-74", "国保", True, 12), ("B", 2024, "17201", 1, "70-74", "国保", False, 6)])
    mc = pd.DataFrame({"person_id": ["A", "A", "B"], "muni_code": "17201", "ym": [202406, 202407, 202408],
                       "setting": ["入院外", "調剤", "入院外"], "main_icd10": ["E119", "E119", "I10"],
                       "cost": [30000.0, 15000, 15000]})
    pc = costs.person_costs(py, {"medical_costs": mc})
    assert pc.has_diseases
    g = costs.disease_group_table(pc, {"medical_costs": mc}, MASTER, {"甲市": ["17201"]})
    g = g[g["insurance"] == "国保"].astype({"group": str}).set_index("group")
    # 糖尿病 45,000 円 / 1.5 人年 = 30,000 円; share 45,000 / 60,000 = 75 %
    assert g.loc["糖尿病", "per_capita"] == pytest.approx(30000) and g.loc["糖尿病", "share"] == pytest.approx(75)
    assert g.loc["糖尿病", "patients"] == 1 and g.loc["高血圧症", "share"] == pytest.approx(25)
    assert g.loc["悪性新生物", "cost"] == 0


def test_high_cost_months_and_concentration(monkeypatch):
    rows = [(f"p{i}", 2024, "17201", 1, "70-74", "国保", True, 12) for i in range(20)]
    claims = [(f"p{i}", 202406, 0, 10000, 0, 0) for i in range(20)]
    claims += [("p0", 202407, 900000, 0, 0, 0), ("p1", 202407, 500000, 200000, 0, 0)]  # p1: 700,000 < 800,000
    pc = costs.person_costs(_py(rows), {"claims_monthly": _claims(claims)})
    high = costs.high_cost_table(pc, {"claims_monthly": _claims(claims)}, None, 2024, "国保")
    r = high.iloc[0]
    # total = 20 · 10,000 + 900,000 + 700,000 = 1,800,000; high = 900,000 (50 %)
    assert (r["persons"], r["months"], r["cost"]) == (1, 1, 900000) and r["share"] == pytest.approx(50)
    persons = costs.high_cost_persons(pc, {"claims_monthly": _claims(claims)}, None, 2024, "国保")
    assert persons[["person_id", "high_cost_months", "high_cost_yen", "annual_cost_yen"]].values.tolist() == [
        ["p0", 1, 900000.0, 910000.0]]
    # notebook 06 takes both from one search of the high-cost months (the same frames)
    calls = []
    search = costs._high_cost_months
    monkeypatch.setattr(costs, "_high_cost_months", lambda *a, **k: calls.append(1) or search(*a, **k))
    both = costs.high_cost(pc, {"claims_monthly": _claims(claims)}, None, 2024, "国保")
    assert len(calls) == 1
    pd.testing.assert_frame_equal(both[0], high, check_exact=True)
    pd.testing.assert_frame_equal(both[1], persons, check_exact=True)
    table, curve = costs.concentration(pc, None, 2024, "国保", threshold=10)
    top = table.set_index("top")
    # top 10 % = 2 persons (< 10) → suppressed; top 50 % = 10 persons: 910,000 + 710,000 + 8 · 10,000 = 1,700,000
    assert np.isnan(top.loc["上位10%", "share"]) and top.loc["上位10%", "persons"] == 2
    assert top.loc["上位50%", "share"] == pytest.approx(100 * 1700000 / 1800000)
    assert curve["person_share"].iloc[0] == pytest.approx(10 / 20) and curve["cost_share"].iloc[-1] == pytest.approx(1)


# ---------------------------------------------------------------------------------------------
# suppression (§13.6)
# ---------------------------------------------------------------------------------------------
def test_small_counts_suppressed_with_the_area_relations():
    # 甲市 12 persons, 乙町 4 persons (small), 丙村 15: the prefecture = sum; 乙町 hidden, and a
    # second town of 北部 hidden too so that 北部 − 甲市 does not give 乙町 back
    rows = [(f"a{i}", 2024, "17201", 1, "70-74", "国保", True, 12) for i in range(12)]
    rows += [(f"b{i}", 2024, "17202", 1, "70-74", "国保", True, 12) for i in range(4)]
    rows += [(f"c{i}", 2024, "17203", 1, "70-74", "国保", True, 12) for i in range(15)]
    claims = [(pid, 202406, 0, 10000, 0, 0) for pid, *_ in rows]
    pc = costs.person_costs(_py(rows), {"claims_monthly": _claims(claims)})
    t = costs.with_row_key(costs.per_capita_table(pc, MASTER))
    t = t[t["insurance"] == "国保"].reset_index(drop=True)
    plan = privacy.SuppressionPlan(10)
    plan.add_table("per_capita", t, ["persons", "patients"],
                   derived_cols={"persons": ["person_years"], "patients": ["cost", "per_capita", "lower", "upper"]},
                   relations=costs.area_relations(t, MASTER))
    plan.solve()
    shown = plan.shown("per_capita")
    total = shown[shown["setting"] == "計"].set_index(["level", "area_code"])
    assert total.loc[("市町村", "17202"), "persons"] == privacy.SUPPRESSION_MARK
    assert total.loc[("市町村", "17202"), "per_capita"] == privacy.SUPPRESSION_MARK
    # 北部 = 甲市 + 乙町: with 北部 shown, 甲市 must be hidden as well (or 北部 hidden)
    assert privacy.SUPPRESSION_MARK in (total.loc[("市町村", "17201"), "persons"],
                                        total.loc[("二次医療圏", "1701"), "persons"])
    assert total.loc[("市町村", "17203"), "persons"] == 15
    assert not privacy.audit_recoverable({"per_capita": shown}, [], 10)


def test_complementary_hiding_of_parts_that_add_up():
    # 入院 3 and 歯科 5 patients are hidden by the plan; together 8 < 10, so the smallest further part
    # (調剤, 40) is hidden here; 入院外 and 計 stay
    d = pd.DataFrame({"area": "x", "setting": ["入院", "入院外", "歯科", "調剤", "計"],
                      "patients": [3, 60, 5, 40, 70], "cost": [900000.0, 300000, 20000, 100000, 1320000]})
    out = costs.hide_complements(d, ["area"], "patients", ["cost"], 10, parts=d["setting"] != "計")
    mark = privacy.SUPPRESSION_MARK
    assert out["cost"].tolist() == [900000.0, 300000, 20000, mark, 1320000]  # 入院, 歯科: the plan's cells
    assert out["patients"].tolist() == d["patients"].tolist()
    # nothing small: unchanged
    same = costs.hide_complements(d.assign(patients=[30, 60, 50, 40, 70]), ["area"], "patients", ["cost"], 10)
    assert same["cost"].tolist() == d["cost"].tolist()


# ---------------------------------------------------------------------------------------------
# 人工透析 (§13.4): new patients are unknown in a year without 12 months of claims before it
# ---------------------------------------------------------------------------------------------
def test_dialysis_table_shows_new_dialysis_as_undeterminable_in_a_year_without_history():
    """FY 2023's new_dialysis is NA (claims from April 2023: 0 months before it, docs/hotei.md §7.4), FY 2024's
    known. By hand: 2023 — A and B on dialysis (2 patients), new = 判定不能; 2024 — A (ongoing) and C (new):
    2 patients, 1 new. D has no claims and no dialysis."""
    from hsutils.rules import programs

    py = _py([(p, fy, "17201", 1, "70-74", "国保", True, 12) for fy in (2023, 2024) for p in "ABCD"])
    py["dialysis_claim"] = [True, True, False, False, True, False, True, False]
    py["new_dialysis"] = pd.array([None] * 4 + [False, False, True, False], dtype="boolean")
    cm = _claims([(p, ym, 0, 400000, 0, 0) for p, ym in (("A", 202304), ("B", 202305), ("A", 202404),
                                                          ("C", 202406), ("B", 202305))])
    pc = costs.person_costs(py, {"claims_monthly": cm})
    t = costs.dialysis_table(pc, py, {"甲市": None}).set_index("fy")
    assert t.loc[2023, "new_dialysis"] == programs.NEW_DIALYSIS_UNKNOWN == "判定不能（前年度のレセプトなし）"
    assert t.loc[2024, "new_dialysis"] == 1
    assert t["dialysis"].tolist() == [2, 2]
    # the committee table keeps the words (not a count: nothing to hide) and hides the small counts
    shown = privacy.suppress_table(t.reset_index(), ["persons", "dialysis", "new_dialysis"])
    assert shown["new_dialysis"].tolist() == [programs.NEW_DIALYSIS_UNKNOWN, privacy.SUPPRESSION_MARK]
    # a year with history keeps the integer column (published tables unchanged)
    known = py.assign(new_dialysis=py["new_dialysis"].fillna(False))
    assert costs.dialysis_table(pc, known, {"甲市": None})["new_dialysis"].dtype == np.int64


def test_population_label_uses_the_registry_words_and_refuses_other_insurances():
    """06's chart footers name their population in the §16 words (docs/rules.md §16)."""
    from hsutils.analysis import indicators
    from hsutils.core.errors import ParameterError

    assert costs.population_label("国保") == indicators.POP_INSURED == "国保 被保険者（全員）"
    assert costs.population_label("後期") == indicators.POP_KOUKI_INSURED
    with pytest.raises(ParameterError, match="国保 / 後期.*'全体'"):
        costs.population_label("全体")


def test_disease_groups_blank_dental_and_dialysis_of_a_person_without_receipts():
    """Matched per distinct code: the same code gets the same group on every row; a blank or missing
    主傷病 is 主傷病不明, 歯科 stays 歯科 whatever its code, and a dialysis month of a person with no
    medical_costs row changes nothing."""
    mc = pd.DataFrame({"person_id": ["a", "a", "b", "c", "c", "d"], "ym": [202404, 202405, 202404, 202404, 202405, 202404],
                       "setting": ["入院外", "入院", "歯科", "入院外", "入院外", "入院外"],
                       "main_icd10": ["N18", "N18", "E11", None, "", "E119"]})
    cm = pd.DataFrame({"person_id": ["a", "z"], "ym": [202404, 202405], "dialysis": [True, True]})
    assert costs.assign_groups(mc, cm).tolist() == [costs.CKD_DIALYSIS, costs.CKD_NO_DIALYSIS, costs.DENTAL_GROUP,
                                                    costs.UNKNOWN_GROUP, costs.UNKNOWN_GROUP, "糖尿病"]
    assert costs.assign_groups(mc, None).tolist()[:2] == [costs.CKD_NO_DIALYSIS] * 2
    assert costs.assign_groups(mc.iloc[:0], cm).tolist() == []


# ---------------------------------------------------------------------------------------------
# every municipality's sums (notebook 06 reads only its own municipality's rows, docs/design.md §8.1)
# ---------------------------------------------------------------------------------------------
def _mover_cache(tmp_path):
    """甲市 17201: A (2023, 2024), M (2023); 乙町 17202: M moves in (2024, 6 months), B (2024, part year
    without months → 6 assumed); 丙村 17203: U (2023 only) with a 2024 receipt (no enrollment that
    year anywhere: unmatched). M's receipts of both years are in both towns' partitions."""
    from hsutils.analysis import pipeline

    py = _py([("A", 2023, "17201", 1, "70-74", "国保", True, 12), ("A", 2024, "17201", 1, "70-74", "国保", True, 12),
              ("M", 2023, "17201", 2, "65-69", "国保", True, 12), ("M", 2024, "17202", 2, "65-69", "国保", False, 6),
              ("B", 2024, "17202", 1, "70-74", "国保", False, np.nan),
              ("U", 2023, "17203", 2, "70-74", "国保", True, 12)])
    py["dialysis_claim"] = [False, False, False, True, False, False]
    py["new_dialysis"] = pd.array([None, False, None, True, False, None], dtype="boolean")
    cm = _claims([("A", 202305, 100000, 0, 0, 0), ("A", 202406, 0, 20000, 0, 10000),
                  ("M", 202306, 0, 30000, 0, 0), ("M", 202410, 0, 400000, 0, 0),
                  ("B", 202411, 0, 0, 5000, 0), ("U", 202405, 0, 7000, 0, 0)])
    cm["muni_code"] = cm["person_id"].map({"A": "17201", "M": "17202", "B": "17202", "U": "17203"})
    cm["dialysis"] = (cm["person_id"] == "M") & (cm["ym"] == 202410)
    pipeline.write_partitioned(py, tmp_path, {"enrollment": py[["person_id", "fy", "muni_code"]],
                                              "claims_monthly": cm})
    (tmp_path / "meta.json").write_text('{"data_hash": "x", "cache_version": "6", "fiscal_years": [2023, 2024]}',
                                        encoding="utf-8")
    MASTER.to_parquet(tmp_path / "municipalities.parquet")
    for name in ("strata", "districts", "import_summary", "exclusions"):
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / f"{name}.parquet")
    return py, cm


def test_municipal_costs_from_each_municipality_equal_the_whole_data_with_a_mover(tmp_path, monkeypatch):
    """乙町's run holds only its own rows; every table 06 shows of the other towns comes from the
    per-town sums and equals the computation over all person rows. By hand: 2023 甲市 A 100,000 +
    M 30,000 over 2 person-years; 2024 乙町 M 400,000 (a dialysis month, new) + B 5,000 over
    0.5 + 0.5 = 1 person-year → 405,000 円/年; U's 2024 receipt (7,000) is the one unmatched
    person-year — not M's 2023 receipt in 乙町's partition (M was enrolled in 甲市 then)."""
    from hsutils.analysis import pipeline

    py, cm = _mover_cache(tmp_path)
    prepared = pipeline.load_prepared(tmp_path, with_tables=costs.TABLES, munis=["17202"])
    assert sorted(prepared.person_year["person_id"]) == ["B", "M"]  # the run's own rows only
    every = costs.municipal_costs(prepared)
    whole = costs.person_costs(py, {"claims_monthly": cm})
    own = costs.person_costs(prepared.person_year, prepared.tables, whole=every)
    assert (every.source, every.assumed, every.unmatched_rows, every.unmatched_cost) == (
        costs.SOURCE_MONTHLY, 1, 1, 7000.0) == (whole.source, 1, whole.unmatched_rows, whole.unmatched_cost)
    assert own.notes == whole.notes and own.persons["計"].tolist() == [400000.0, 5000.0]
    # from 乙町's rows alone the notes would be 乙町's (U's receipt is not in its partition)
    assert costs.person_costs(prepared.person_year, prepared.tables).unmatched_rows == 0
    t = costs.per_capita_table(every, MASTER)
    pd.testing.assert_frame_equal(t, costs.per_capita_table(whole, MASTER))
    row = t[(t["area_code"] == "17202") & (t["fy"] == 2024) & (t["setting"] == "計")].iloc[0]
    assert (row["persons"], row["patients"], row["person_years"], row["per_capita"]) == (2, 2, 1.0, 405000.0)
    pref = t[(t["level"] == costs.LEVEL_PREF) & (t["fy"] == 2023) & (t["setting"] == "計")].iloc[0]
    assert (pref["persons"], pref["cost"], pref["person_years"]) == (3, 130000.0, 3.0)  # A, M, U
    ref = costs.reference_from_data(every, "石川県")
    assert ref.rates.equals(costs.reference_from_data(whole, "石川県").rates)
    pd.testing.assert_frame_equal(costs.regional_index_table(every, ref, MASTER),
                                  costs.regional_index_table(whole, ref, MASTER))
    areas_ = {"乙町": ["17202"], "石川県": None}
    pd.testing.assert_frame_equal(costs.dialysis_table(every, None, areas_), costs.dialysis_table(whole, py, areas_))
    d = costs.dialysis_table(every, None, areas_).set_index(["area_name", "fy"])
    assert d.loc[("乙町", 2024), ["dialysis", "cost"]].tolist() == [1, 400000.0]
    assert d.loc[("石川県", 2023), "new_dialysis"] == costs.programs.NEW_DIALYSIS_UNKNOWN
    for codes in (["17202"], None):
        for a, b in zip(costs.concentration(every, codes, 2024, "国保", threshold=1),
                        costs.concentration(whole, codes, 2024, "国保", threshold=1)):
            pd.testing.assert_frame_equal(a, b)
    # the second call reads the saved tables
    monkeypatch.setattr(costs, "cost_sums", lambda *a, **k: pytest.fail("summed again"))
    again = costs.municipal_costs(prepared)
    pd.testing.assert_frame_equal(again.sums, every.sums)
    assert len(list((tmp_path / "derived").glob("costs_sums_*.parquet"))) == 1


def test_municipal_costs_of_a_run_holding_every_row_equal_the_partitions_sums(tmp_path, monkeypatch):
    """A prefecture run holds every municipality's rows: it sums them at once (no partition read again)
    and gets exactly the tables the municipal runs sum partition by partition, mover included (the
    saved table does not depend on which run made it)."""
    from hsutils.analysis import pipeline

    _mover_cache(tmp_path)
    own = pipeline.load_prepared(tmp_path, with_tables=costs.TABLES, munis=["17202"])
    by_parts = costs.municipal_costs(own)
    for f in (tmp_path / "derived").glob("costs_*"):
        f.unlink()
    every_row = pipeline.load_prepared(tmp_path, with_tables=costs.TABLES)
    assert every_row.munis is None and own.munis == ["17202"]
    monkeypatch.setattr(pipeline, "each_municipality", lambda *a, **k: pytest.fail("partitions read again"))
    at_once = costs.municipal_costs(every_row)
    for name in ("sums", "groups", "dialysis", "counts"):
        pd.testing.assert_frame_equal(getattr(at_once, name), getattr(by_parts, name), check_exact=True)
    assert (at_once.source, at_once.assumed, at_once.unmatched_rows, at_once.unmatched_cost) == (
        by_parts.source, by_parts.assumed, by_parts.unmatched_rows, by_parts.unmatched_cost) == (
        costs.SOURCE_MONTHLY, 1, 1, 7000.0)
    # the build hands its person costs of these rows to person_costs once (not computed twice): the same
    # result as computing them again; a later call, or other rows, compute their own
    calls = []
    parts = costs._person_cost_parts
    monkeypatch.setattr(costs, "_person_cost_parts", lambda *a: calls.append(1) or parts(*a))
    handed = costs.person_costs(every_row.person_year, every_row.tables, whole=at_once)
    assert calls == [] and at_once.held is None
    again = costs.person_costs(every_row.person_year, every_row.tables, whole=at_once)
    assert calls == [1]
    pd.testing.assert_frame_equal(handed.persons, again.persons, check_exact=True)
    assert (handed.source, handed.unmatched_rows, handed.unmatched_cost, handed.notes) == (
        again.source, again.unmatched_rows, again.unmatched_cost, again.notes)
    assert handed.persons["計"].sum() == again.persons["計"].sum() > 0
    rebuilt = costs.municipal_costs(every_row)  # read from the saved tables: nothing held
    assert rebuilt.held is None
    # rows read without the columns the sums need are not used: the partitions are read instead
    monkeypatch.undo()
    few = pipeline.load_prepared(tmp_path, with_tables={"claims_monthly": ("person_id", "ym")})
    assert [m for m, _, _ in pipeline.municipal_rows(few, costs.TABLES)] == ["17201", "17202", "17203"]
    assert [m for m, _, _ in pipeline.municipal_rows(every_row, costs.TABLES)] == [None]


def test_disease_group_sums_on_codes_equal_a_merge_and_group_by():
    """The integer-coded sums equal the plain computation (receipts merged with their person-year,
    grouped by municipality × year × insurance × group, distinct persons): persons without an
    enrollment that year, 歯科, a dialysis month, two towns, whole-yen costs. By hand for 甲市 2024
    国保 糖尿病: a (1,000 + 500) and b (300) → 2 patients, 1,800 円."""
    py = _py([("a", 2024, "17201", 1, "70-74", "国保", True, 12), ("b", 2024, "17201", 2, "70-74", "国保", True, 12),
              ("c", 2024, "17202", 1, "70-74", "後期", True, 12), ("a", 2023, "17201", 1, "70-74", "国保", True, 12)])
    mc = pd.DataFrame({"person_id": ["a", "a", "b", "c", "c", "a", "z", "b"],
                       "ym": [202404, 202405, 202406, 202404, 202404, 202304, 202404, 202604],
                       "setting": ["入院外", "入院", "入院外", "入院外", "歯科", "入院外", "入院外", "入院外"],
                       "main_icd10": ["E11", "E119", "E11", "N18", "K02", "I10", "E11", "E11"],
                       "cost": [1000.0, 500.0, 300.0, 70000.0, 2000.0, 800.0, 99.0, 50.0]})
    cm = pd.DataFrame({"person_id": ["c"], "ym": [202404], "dialysis": [True]})
    pc = costs.person_costs(py, {"medical_costs": mc})
    got = costs.disease_group_sums(pc, {"medical_costs": mc, "claims_monthly": cm})
    plain = mc.assign(fy=costs.fiscal_year_of_month(mc["ym"]), group=costs.assign_groups(mc, cm).to_numpy()).merge(
        pc.persons[["person_id", "fy", "muni_code", "insurance"]], on=["person_id", "fy"])
    keys = ["muni_code", "fy", "insurance", "group"]
    want = plain.groupby(keys, sort=True).agg(patients=("person_id", "nunique"), cost=("cost", "sum")).reset_index()
    pd.testing.assert_frame_equal(got, want[keys + ["patients", "cost"]], check_exact=True)
    row = got[(got["muni_code"] == "17201") & (got["fy"] == 2024) & (got["group"] == "糖尿病")].iloc[0]
    assert (row["patients"], row["cost"]) == (2, 1800.0)
    assert got[got["muni_code"] == "17202"]["group"].tolist() == [costs.CKD_DIALYSIS, costs.DENTAL_GROUP]
    assert "z" not in set(plain["person_id"]) and len(got) == 4  # z has no enrollment, nor b in 2026
    none = costs.disease_group_sums(pc, {"medical_costs": mc.iloc[:0], "claims_monthly": cm})
    assert none.columns.tolist() == keys + ["patients", "cost"] and none.empty


def test_municipal_costs_of_the_demo_equal_every_table_from_all_rows(tmp_path):
    """The demo (UKE costs, movers): 06's setup cell reads only its municipality (no person_rows
    argument: the default "area"), and every all-municipality table from the saved sums equals the
    one from all person rows (the float sums in another order: equal to 1e-9 relative)."""
    import json
    import os

    from hsutils.analysis import pipeline
    from hsutils.core import settings
    from hsutils.running import notebook

    setup = "".join(json.load(open("notebooks/06_medical_costs.ipynb", encoding="utf-8"))["cells"][3]["source"])
    assert "person_rows" not in setup and "costs.municipal_costs(prepared)" in setup
    ctx = notebook.start("06_medical_costs", "17324", None, cache_dir=os.environ[settings.ENV_CACHE_DIR],
                         out_dir=tmp_path, with_tables=costs.TABLES)
    assert set(ctx.prepared.person_year["muni_code"].astype(str)) == {"17324"}
    every = costs.municipal_costs(ctx.prepared)
    prepared = pipeline.load_prepared(ctx.prepared.cache_dir, with_tables=costs.TABLES)  # every row, as on main
    master = prepared.municipalities
    whole = costs.person_costs(prepared.person_year, prepared.tables)
    assert every.has_diseases and (every.assumed, every.unmatched_rows) == (
        int(whole.persons["months_assumed"].sum()), whole.unmatched_rows)
    own = costs.person_costs(ctx.prepared.person_year, ctx.prepared.tables, whole=every)
    assert own.notes == whole.notes
    pd.testing.assert_frame_equal(costs.per_capita_table(every, master), costs.per_capita_table(whole, master),
                                  rtol=1e-9)
    cmp = costs.comparison(every, ctx.area, ctx.reference, master)
    assert cmp.reference.rates.drop(columns="ref_per_capita").equals(
        costs.reference_from_data(whole, cmp.reference.label).rates.drop(columns="ref_per_capita"))
    pd.testing.assert_frame_equal(costs.regional_index_table(every, cmp.reference, master),
                                  costs.regional_index_table(whole, cmp.reference, master), rtol=1e-9)
    pd.testing.assert_frame_equal(costs.disease_group_table(every, None, master, cmp.areas),
                                  costs.disease_group_table(whole, prepared.tables, master, cmp.areas), rtol=1e-9)
    pd.testing.assert_frame_equal(costs.dialysis_table(every, None, cmp.areas),
                                  costs.dialysis_table(whole, prepared.person_year, cmp.areas))
    fy = max(prepared.fiscal_years)
    for a, b in zip(costs.concentration_frames(every, cmp.areas, fy, "国保"),
                    costs.concentration_frames(whole, cmp.areas, fy, "国保")):
        pd.testing.assert_frame_equal(a, b)

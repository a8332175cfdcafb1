"""Tests of hsutils.patterns.nephropathy (notebook 04 糖尿病性腎症重症化予防) and of the notebook itself.

The target rules are tested in tests/test_programs.py; here: the municipality/insurance
selection around them, the window boundary seen through the flow, the totals and suppression of
the committee tables, the CKD heat map, the person lists, the computed trend indicators, the
宣言2 self-check, and the executed notebook (no person_id, no small count, lists only in
confidential/). Expected values are worked out by hand (docs/rules.md §4, §5, §9) and written as literals.
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_programs import claim, make_claims  # reuse the claims builders of the programs tests

from hsutils.patterns import nephropathy as nep
from hsutils.publish import privacy
from hsutils.core.errors import ParameterError
from hsutils.rules.programs import NephropathyParams

FY = 2024
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "04_nephropathy.ipynb"
M = privacy.SUPPRESSION_MARK


# --------------------------------------------------------------------------------- builders

def row(pid, muni="17201", insurance="国保", age=60, has_kenshin=True, district="1720106", **kw):
    """A person_year row of a 国保 60-year-old with an unremarkable checkup (none if not has_kenshin)."""
    r = dict(person_id=pid, fy=FY, muni_code=muni, district_code=district, sex=1, age=age,
             age_band="60-64" if age < 65 else "65-69", insurance=insurance, full_year=True,
             excluded_statutory=False, has_kenshin=has_kenshin, hba1c=5.5, fpg=90.0, casual_glucose=np.nan,
             urine_protein=0.0, egfr_calc=70.0, egfr=np.nan, med_glucose=False)
    if not has_kenshin:
        r.update(hba1c=np.nan, fpg=np.nan, urine_protein=np.nan, egfr_calc=np.nan, med_glucose=pd.NA)
    r.update(kw)
    return r


def frame(rows):
    from hsutils.rules.clinical import ckd_a_stage, ckd_g_stage

    df = pd.DataFrame(rows)
    df["person_id"] = df["person_id"].astype("str")
    df["has_kenshin"] = df["has_kenshin"].astype(bool)
    df["med_glucose"] = df["med_glucose"].astype("boolean")
    for c in ("hba1c", "fpg", "casual_glucose", "urine_protein", "egfr_calc", "egfr"):
        df[c] = df[c].astype("float64")
    df["ckd_g"] = ckd_g_stage(df["egfr_calc"].fillna(df["egfr"]))
    df["ckd_a"] = ckd_a_stage(df["urine_protein"])
    return df


def population():
    """One person per flow box around the boundaries (as of 202503; window 6 = 202410–202503,
    look-back 36 = 202204–202503)."""
    rows = [
        row("A_untreated", hba1c=7.2, egfr_calc=50.0),
        row("A_interrupted_202409", hba1c=7.0, urine_protein=1.0),   # last claim 1 month before the window
        row("B_treated_202410", hba1c=7.0, egfr_calc=55.0),          # last claim in the window's first month
        row("C_untreated_hba1c_6.5", hba1c=6.5),                     # exactly at the HbA1c threshold
        row("C_interrupted_fpg_126", fpg=126.0),                     # exactly at the glucose threshold
        row("k3_treated", hba1c=6.8),
        row("no_dm_6.4", hba1c=6.4, fpg=125.0, egfr_calc=50.0),      # just below both thresholds
        row("dialysis", hba1c=7.5, egfr_calc=8.0),
        row("D_kidney_claims", has_kenshin=False),
        row("n1_treated", has_kenshin=False),
        row("E_202409", has_kenshin=False),
        row("too_old_202203", has_kenshin=False),
        row("other_muni", muni="17202", hba1c=9.0, egfr_calc=40.0),   # not in 17201
        row("kouki", insurance="後期", age=80, hba1c=9.0),            # not 国保
    ]
    claims = [
        claim("A_interrupted_202409", 202409, diabetes=True),
        claim("B_treated_202410", 202410, diabetes=True),
        claim("C_interrupted_fpg_126", 202301, diabetes=True),
        claim("k3_treated", 202503, diabetes=True),
        claim("dialysis", 202502, diabetes=True, dialysis=True),
        claim("D_kidney_claims", 202412, diabetes=True, ckd=True),
        claim("n1_treated", 202502, diabetes=True),
        claim("E_202409", 202409, diabetes=True),
        claim("too_old_202203", 202203, diabetes=True),
        claim("other_muni", 202503, diabetes=True),
    ]
    return frame(rows), make_claims(claims)


def area(params=NephropathyParams(), insurance="国保"):
    py, claims = population()
    rows = nep.area_rows(py, "17201", FY, insurance)
    cl = nep.area_claims(claims, rows)
    return rows, cl, nep.target_frame(rows, cl, FY, params)


def counts(flow):
    return flow.set_index("step_id")["count"].to_dict()


# --------------------------------------------------------------------------------- parameters

def test_nephropathy_params_defaults_and_urine_choices():
    assert nep.nephropathy_params() == NephropathyParams()
    assert nep.nephropathy_params(urine_protein="1+").urine_protein == 2
    assert nep.nephropathy_params(urine_protein="1＋").urine_protein == 2
    assert nep.nephropathy_params(urine_protein="±").urine_protein == 1
    with pytest.raises(ParameterError):
        nep.nephropathy_params(urine_protein="2+")
    with pytest.raises(ParameterError):
        nep.nephropathy_params(egfr=0)
    with pytest.raises(ParameterError):
        nep.area_rows(population()[0], "17201", FY, insurance="協会けんぽ")


def test_notebook_parameter_defaults_equal_program_defaults():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    values = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    p = nep.nephropathy_params(hba1c=values["hba1c_threshold"], glucose=values["glucose_threshold"],
                               egfr=values["egfr_threshold"], urine_protein=values["urine_protein_threshold"],
                               window_months=values["interruption_window_months"],
                               lookback_months=values["lookback_months"],
                               include_kidney_claims=values["include_kidney_claims"],
                               exclude_dialysis=values["exclude_dialysis"])
    assert p == NephropathyParams()
    for name in ("muni_code", "muni_name", "fiscal_year", "fiscal_years", "cache_dir", "data_dir", "out_dir",
                 "suppress_threshold", "reference_area", "interactive", "run_name"):
        assert name in values
    assert values["muni_code"] == "17201" and values["interactive"] is False


# --------------------------------------------------------------------------------- flow

def test_area_rows_selects_municipality_year_and_insurance():
    py, claims = population()
    rows = nep.area_rows(py, "17201", FY)
    assert "other_muni" not in set(rows["person_id"]) and "kouki" not in set(rows["person_id"])
    assert len(rows) == 12
    assert len(nep.area_rows(py, "17201", FY, "全体")) == 13
    assert len(nep.area_rows(py, "17", FY, "全体")) == 14          # 2 digits = the prefecture
    assert len(nep.area_rows(py, "17201", FY - 1)) == 0
    cl = nep.area_claims(claims, rows)
    assert sorted(cl["person_id"].unique()) == sorted(set(claims["person_id"]) - {"other_muni"})


def test_flow_every_step_with_window_boundary():
    rows, cl, _ = area()
    flow = nep.flow_counts(rows, cl, FY, NephropathyParams())
    assert counts(nep.with_target_totals(flow)) == {
        "k0": 8, "k1": 6, "k2": 3, "k2t": 1, "k2u": 1, "k2i": 1, "k3": 3, "k3t": 1, "k3u": 1, "k3i": 1,
        "n1": 2, "n1k": 1, "n2": 1, "x1": 1, "ref_total": 5, "gui_total": 2}


def test_flow_window_of_seven_months_moves_the_202409_claims_to_treated():
    rows, cl, _ = area()
    flow = nep.flow_counts(rows, cl, FY, nep.nephropathy_params(window_months=7))
    c = counts(nep.with_target_totals(flow))
    assert (c["k2t"], c["k2i"], c["n1"], c["n2"]) == (2, 0, 3, 0)
    assert (c["ref_total"], c["gui_total"]) == (3, 3)   # E_202409 is 治療中 without kidney claims


def test_target_groups_and_strict_criteria():
    _, _, t = area()
    groups = t.set_index("person_id")["dkd_group"].to_dict()
    assert groups == {
        "A_untreated": "A", "A_interrupted_202409": "A", "B_treated_202410": "B",
        "C_untreated_hba1c_6.5": "C", "C_interrupted_fpg_126": "C", "k3_treated": "", "no_dm_6.4": "",
        "dialysis": "", "D_kidney_claims": "D", "n1_treated": "", "E_202409": "E", "too_old_202203": ""}
    _, _, strict = area(nep.nephropathy_params(egfr=30, urine_protein="1+", include_kidney_claims=False))
    g = strict.set_index("person_id")["dkd_group"]
    # eGFR 50/55 and 尿蛋白 ± no longer count as kidney damage: A/B move to C or out
    assert (g["A_untreated"], g["A_interrupted_202409"], g["B_treated_202410"], g["D_kidney_claims"]) == (
        "C", "C", "", "")


def test_flow_hidden_secondary_suppression_with_target_totals():
    # the FY2024 17201 counts of the scale-0.1 demo: hand-checked closure of the suppression
    flow = pd.DataFrame({
        "step_id": ["k0", "k1", "k2", "k2t", "k2u", "k2i", "k3", "k3t", "k3u", "k3i", "n1", "n1k", "n2", "x1"],
        "step_label": ["x"] * 14,
        "count": [637, 120, 37, 21, 16, 0, 83, 34, 45, 4, 70, 3, 7, 4],
        "parent_id": ["", "k0", "k1", "k2", "k2", "k2", "k1", "k3", "k3", "k3", "", "n1", "", ""]})
    table = nep.flow_table(flow, 10).set_index("step_id")
    # primary: k3i 4, n1k 3, n2 7, x1 4; k3 split: k3i alone -> k3t (34, smallest other non-zero);
    # 保健指導 = k2t + n1k: n1k alone -> k2t; k2 split: k2t alone -> k2u (16)
    assert sorted(table.index[table["suppressed"]]) == ["k2t", "k2u", "k3i", "k3t", "n1k", "n2", "x1"]
    assert table.loc["ref_total", "count"] == 72 and table.loc["gui_total", "count"] == 24
    assert table.loc["k2t", "count"] == M
    privacy.assert_no_small_counts(table, ["count"])
    text = nep.flow_summary(flow, 10)
    assert "糖尿病 120人" in text and "保健指導の対象（B・D）は 24人" in text and f"治療中 {M}" in text


def test_flow_figure_hides_what_the_table_hides():
    import matplotlib.pyplot as plt

    flow = pd.DataFrame({
        "step_id": ["k0", "k1", "k2", "k2t", "k2u", "k2i", "k3", "k3t", "k3u", "k3i", "n1", "n1k", "n2", "x1"],
        "step_label": ["x"] * 14,
        "count": [637, 120, 37, 21, 16, 0, 83, 34, 45, 4, 70, 3, 7, 4],
        "parent_id": ["", "k0", "k1", "k2", "k2", "k2", "k1", "k3", "k3", "k3", "", "n1", "", ""]})
    fig = nep.flow_figure(flow, "t", "f", 10)
    texts = " ".join(t.get_text() for t in fig.findobj(lambda a: getattr(a, "get_gid", lambda: None)() == "flow_text"))
    plt.close(fig)
    assert "37人" in texts and "45人" in texts
    for hidden in ("21人", "16人", "34人"):  # secondary suppression of the table applies to the chart
        assert hidden not in texts


def test_flow_zero_branch_hides_the_total_when_nothing_else_can():
    flow = pd.DataFrame({"step_id": ["k0", "a", "b"], "step_label": ["x"] * 3, "count": [5 + 0, 5, 0],
                         "parent_id": ["", "k0", "k0"]})
    assert nep.flow_hidden(flow, 10).tolist() == [True, True, False]
    flow["count"] = [25, 5, 20]
    assert nep.flow_hidden(flow, 10).tolist() == [False, True, True]


# --------------------------------------------------------------------------------- CKD heat map

def test_ckd_counts_cells_and_populations():
    _, _, t = area()
    c = nep.ckd_counts(t)
    assert len(c) == 36  # 2 populations × 6 G × 3 A
    got = c[c["count"] > 0].set_index(["population", "g_stage", "a_stage"])["count"].to_dict()
    assert got == {
        ("健診受診者", "G2", "A1"): 3,     # k3_treated, C_untreated_hba1c_6.5, C_interrupted_fpg_126 (eGFR 70)
        ("健診受診者", "G2", "A2"): 1,     # A_interrupted_202409 (±)
        ("健診受診者", "G3a", "A1"): 3,    # A_untreated 50, B_treated_202410 55, no_dm_6.4 50
        ("健診受診者", "G5", "A1"): 1,     # dialysis
        ("糖尿病（健診受診者）", "G2", "A1"): 3, ("糖尿病（健診受診者）", "G2", "A2"): 1,
        ("糖尿病（健診受診者）", "G3a", "A1"): 2}   # "dialysis" is left out of 糖尿病, as in the flow (§5.7)


def test_one_dialysis_rule_for_flow_heat_map_and_lists():
    """docs/rules.md §5.7: a dialysis month anywhere in FY2024 (2024-04 … 2025-03) leaves the person
    out of the flow's 糖尿病 box and below, groups A–E, the 糖尿病 heat map and the lists; dialysis
    only in 2024-03 (last year) or from 2025-04 (next year) does not. All four are 糖尿病型 with eGFR 12."""
    months = {"d_202403": 202403, "d_202404": 202404, "d_202503": 202503, "d_202504": 202504}
    py = frame([row(pid, hba1c=7.5, egfr_calc=12.0) for pid in months])
    cl = make_claims([claim(pid, ym, diabetes=True, dialysis=True) for pid, ym in months.items()])
    for exclude, kept in ((True, ["d_202403", "d_202504"]), (False, list(months))):
        params = NephropathyParams(exclude_dialysis=exclude)
        t = nep.target_frame(py, cl, FY, params).set_index("person_id")
        assert sorted(t.index[t["dkd_dialysis"]]) == ["d_202404", "d_202503"]
        assert sorted(t.index[t["dkd_group"] != ""]) == kept           # in one of the groups A–E
        # the 受診勧奨 list (A): d_202503 has its diabetes claim in 2025-03, so it is 治療中 (B) when kept
        assert sorted(t.index[t["dkd_referral"]]) == [p for p in kept if p != "d_202503"]
        c = nep.ckd_counts(t.reset_index()).set_index(["population", "g_stage", "a_stage"])["count"]
        assert c[(nep.POP_ALL, "G5", "A1")] == 4                        # the population itself: everyone
        assert c[(nep.POP_DIABETES, "G5", "A1")] == len(kept)           # = the flow's 糖尿病 box
        f = counts(nep.flow_counts(py, cl, FY, params))
        assert (f["k0"], f["k1"], f.get("x1")) == (4, len(kept), 2 if exclude else None)
    assert nep.ckd_population(nep.POP_DIABETES) == "国保 健診受診者（全員）のうち糖尿病（人工透析中の人を除く）（eGFR・尿蛋白とも測定）"
    assert nep.ckd_population(nep.POP_ALL) == "国保 健診受診者（全員）（eGFR・尿蛋白とも測定）"


def test_ckd_table_totals_and_secondary_suppression():
    c = pd.DataFrame({"population": "p", "g_stage": ["G1", "G2", "G2", "G3a"], "a_stage": ["A1", "A1", "A2", "A1"],
                      "count": [30, 40, 5, 12]})
    t = nep.ckd_table(c, 10).set_index(["g_stage", "a_stage"])
    assert t.loc[("計", "計"), "count"] == 87
    assert t.loc[("G2", "A2"), "count"] == M                 # primary (5)
    assert t.loc[("G2", "A1"), "count"] == M                 # row G2 total 45 shown -> secondary
    assert t.loc[("計", "A2"), "count"] == M                 # column A2 total 5 is itself small
    assert t.loc[("G1", "A1"), "count"] == 30 and t.loc[("G2", "計"), "count"] == 45
    privacy.assert_no_small_counts(t, ["count"])


def test_ckd_heatmap_total_equals_participants_with_egfr_and_urine(prepared):
    py = prepared.person_year
    fy = max(prepared.fiscal_years)
    claims = prepared.tables["claims_monthly"]
    for code in ("17201", "17386", "17463"):
        rows = nep.area_rows(py, code, fy)
        params, _ = nep.with_data_lookback(NephropathyParams(), prepared)  # as notebook 04 (docs/hotei.md §7)
        t = nep.target_frame(rows, nep.area_claims(claims, rows), fy, params)
        c = nep.ckd_counts(t)
        egfr = rows["egfr_calc"].fillna(rows["egfr"])
        expected = int((rows["has_kenshin"] & egfr.notna() & rows["urine_protein"].notna()).sum())
        assert int(c.loc[c["population"] == nep.POP_ALL, "count"].sum()) == expected
        dm = int((rows["has_kenshin"] & egfr.notna() & rows["urine_protein"].notna()
                  & rows["dkd_diabetes"] & ~rows["dkd_dialysis"]).sum())  # docs/rules.md §5.7
        assert int(c.loc[c["population"] == nep.POP_DIABETES, "count"].sum()) == dm
        # default criteria recomputed for the area = the flags of the shared cache
        assert (t["dkd_group"].to_numpy() == rows.loc[t.index, "dkd_group"].to_numpy()).all()
        table = nep.ckd_table(c)
        privacy.assert_no_small_counts(table, ["count"])


# --------------------------------------------------------------------------------- targets

def test_target_counts_axes_totals_and_suppression():
    f = pd.DataFrame({"muni_code": "17201", "district_code": ["d1"] * 12 + ["d2"] * 5 + ["d3"] * 20,
                      "age_band": pd.Categorical(["60-64"] * 37, categories=["60-64", "65-69"]),
                      "sex": [1] * 20 + [2] * 17, "dkd_referral": True, "dkd_guidance": False})
    districts = pd.DataFrame({"muni_code": "17201", "district_code": ["d1", "d2", "d3"], "name": ["東", "西", "駅西"]})
    t = nep.target_counts(f, districts, threshold=10)
    d = t[t["axis"] == "地区"].set_index("category")
    assert d["referral"].to_dict() == {"東": M, "西": M, "駅西": 20, "計": 37}  # 5 primary, 12 secondary
    assert d["guidance"].to_dict() == {"東": 0, "西": 0, "駅西": 0, "計": 0}
    s = t[t["axis"] == "性別"].set_index("category")["referral"].to_dict()
    assert s == {"女": 17, "男": 20, "計": 37}
    a = t[t["axis"] == "年齢階級"].set_index("category")["referral"].to_dict()
    assert a == {"60-64": 37, "計": 37}
    hidden = nep.target_counts(f, districts, threshold=10, totals_hidden={"referral": True})
    assert (hidden.loc[hidden["category"] == "計", "referral"] == M).all()
    privacy.assert_no_small_counts(t, ["referral", "guidance"])


def test_target_list_values_that_qualified_each_person():
    _, _, t = area()
    params = NephropathyParams()
    ref = nep.target_list(t, "referral", params).set_index("person_id")
    gui = nep.target_list(t, "guidance", params).set_index("person_id")
    assert sorted(ref.index) == ["A_interrupted_202409", "A_untreated", "C_interrupted_fpg_126",
                                 "C_untreated_hba1c_6.5", "E_202409"]
    assert sorted(gui.index) == ["B_treated_202410", "D_kidney_claims"]
    a = ref.loc["A_interrupted_202409"]
    assert (a["group"], a["treatment_status"], a["urine_protein"], a["last_dm_ym"]) == ("A", "治療中断", "±", 202409)
    assert a["reason"] == "HbA1c 7.0%、尿蛋白 ±、治療中断"
    assert ref.loc["C_interrupted_fpg_126", "reason"] == "空腹時血糖 126、治療中断"
    assert ref.loc["A_untreated", "reason"] == "HbA1c 7.2%、eGFR 50.0、未治療"
    assert pd.isna(ref.loc["A_untreated", "last_dm_ym"])
    assert ref.loc["E_202409", "last_dm_ym"] == 202409 and ref.loc["E_202409", "group"] == "E"
    assert gui.loc["D_kidney_claims", "reason"] == "腎疾患レセプトあり、治療中"
    assert list(nep.target_list(t, "referral", params).columns) == nep.LIST_COLUMNS
    with pytest.raises(ParameterError):
        nep.target_list(t, "other", params)


# --------------------------------------------------------------------------------- trends

def test_computed_indicators_egfr45_and_urine_among_diabetics():
    rows = [
        dict(egfr_calc=44.9, urine_protein=2.0), dict(egfr_calc=45.0, urine_protein=1.0),
        dict(egfr_calc=np.nan, egfr=30.0, urine_protein=np.nan),      # reported eGFR is used
        dict(egfr_calc=np.nan, urine_protein=3.0),
        dict(egfr_calc=20.0, urine_protein=4.0, dkd_diabetes=False),  # not diabetic
        dict(egfr_calc=20.0, urine_protein=4.0, age=75),              # outside 40–74
        dict(egfr_calc=20.0, urine_protein=4.0, muni_code="17202"),   # other municipality
    ]
    py = pd.DataFrame([{**dict(person_id=f"p{i}", fy=FY, muni_code="17201", insurance="国保", age=60,
                               full_year=True, excluded_statutory=False, has_kenshin=True, dkd_diabetes=True,
                               egfr=np.nan), **r} for i, r in enumerate(rows)])
    out = nep.computed_indicator_counts(py, "17201").set_index(["indicator_id", "area"])
    assert out.loc[("dm_egfr45", "muni"), ["numerator", "denominator"]].tolist() == [2, 3]
    assert out.loc[("dm_egfr45", "pref"), ["numerator", "denominator"]].tolist() == [3, 4]
    assert out.loc[("dm_urine_protein1", "muni"), ["numerator", "denominator"]].tolist() == [2, 3]
    assert out.loc[("dm_urine_protein1", "pref"), ["numerator", "denominator"]].tolist() == [3, 4]


def test_trend_table_matches_indicator_table(prepared):
    from hsutils.analysis import indicators

    fy = max(prepared.fiscal_years)
    trend = nep.trend_table(prepared, "17201")
    assert sorted(trend["indicator_id"].unique()) == sorted(list(nep.TREND_REGISTERED) + list(nep.TREND_COMPUTED))
    it = indicators.indicator_table(prepared.strata, "muni", area_map=prepared.municipalities, fy=fy,
                                    indicators=["dm_untreated"])
    ref = it[it["area_code"] == "17201"].iloc[0]
    mine = trend[(trend["indicator_id"] == "dm_untreated") & (trend["fy"] == fy)
                 & (trend["area_name"] == "金沢市")].iloc[0]
    assert (mine["numerator"], mine["denominator"]) == (ref["numerator"], ref["denominator"])
    assert mine["value"] == pytest.approx(ref["crude_rate"]) and mine["lower"] == pytest.approx(ref["crude_lower"])


def _trend(muni_num, pref_num):
    return pd.DataFrame({"indicator_id": "x", "indicator_name": "X", "area_name": ["M"] * 3 + ["P"] * 3,
                         "fy": [2022, 2023, 2024] * 2, "numerator": muni_num + pref_num,
                         "denominator": [100] * 3 + [1000] * 3, "value": 1.0, "lower": 0.5, "upper": 1.5})


def test_trend_summary_suppresses_and_pools_safely():
    # muni: only 2024 hidden -> no pooled muni figure (2024 = total − shown years); pref 9 in all -> small
    assert nep.trend_summary(_trend([12, 20, 5], [3, 4, 2]), "M") == \
        "・X: 人数が少ないため表示しません（令和6年度（2024））。"
    text = nep.trend_summary(_trend([3, 20, 5], [30, 40, 20]), "M")
    assert "M 9.33%（95%CI" in text and "28/300人年" in text and "P 3.00%" in text
    # latest muni visible but the prefecture's count is small: nothing derived from it is shown
    assert "人数が少ない" in nep.trend_summary(_trend([30, 20, 15], [30, 40, 5]), "M")
    visible = nep.trend_summary(_trend([30, 20, 15], [30, 40, 50]), "M")
    assert visible.startswith("・X: 1.0%（95%CI 0.5–1.5、15/100人）、県 1.0% → 県と有意差なし")


def test_trend_summary_hides_what_the_report_plan_hides():
    # 15/100 is not small, but the report's plan hid it (secondary suppression across tables):
    # the sentence must not print it.
    raw = _trend([30, 20, 15], [30, 40, 50])
    shown = raw.copy()
    shown.loc[2, ["numerator", "value", "lower", "upper"]] = np.nan
    text = nep.trend_summary(raw, "M", shown=shown)
    assert "15/100" not in text and text.startswith("・X: 人数が少ないため表示しません（令和6年度（2024））。")
    # one hidden year for M -> no pooled M figure (it would reveal 2024); P pooled 120/3000 is safe
    assert "M " not in text.split("。", 1)[1] and "P 4.00%（95%CI" in text and "120/3,000人年" in text


def test_district_indicator_against_the_municipality(prepared):
    fy = max(prepared.fiscal_years)
    d, muni_rate = nep.district_indicator(prepared, "17201", "dm_untreated", fy)
    s = prepared.strata
    s = s[(s["indicator_id"] == "dm_untreated") & (s["fy"] == fy) & (s["muni_code"] == "17201")]
    assert len(d) == 10 and "駅西" in set(d["area_name"])
    assert int(d["numerator"].sum()) == int(s["numerator"].sum())
    assert muni_rate == pytest.approx(s["numerator"].sum() / s["denominator"].sum() * 100)
    assert set(d["comparison"].dropna()) <= {"有意に高い", "有意差なし", "有意に低い"}
    empty, rate = nep.district_indicator(prepared, "17463", "dm_untreated", fy)  # no districts
    assert empty.empty and np.isnan(rate)


def test_funnel_frame_lists_every_municipality(prepared):
    f, target = nep.funnel_frame(prepared, "dm_hba1c8", max(prepared.fiscal_years))
    assert len(f) == 19 and f["area_code"].is_unique
    assert target == pytest.approx(f["numerator"].sum() / f["denominator"].sum())


# --------------------------------------------------------------------------------- 宣言2 self-check

def _yaml(tmp_path, body):
    p = tmp_path / "check.yaml"
    p.write_text(body, encoding="utf-8")
    return nep.load_checklist(p)


ALL_YES = """requirements:
  extraction_criteria: {met: はい, note: 基準あり}
  family_doctor: {met: yes}
  professionals: {met: true}
  evaluation: {met: はい}
  prefecture_council: {met: はい}
"""


def test_checklist_all_met(tmp_path):
    t = nep.checklist_table(_yaml(tmp_path, ALL_YES))
    assert t["番号"].tolist() == ["①", "②", "③", "④", "⑤"]
    assert (t["状況"] == "満たしている").all() and (t["不足"] == "").all()
    assert t["区分"].tolist() == ["必須"] * 4 + ["必須（糖尿病性腎症重症化予防）"]
    assert nep.checklist_verdict(t).startswith("判定: 宣言2の要件をすべて満たしています")


def test_checklist_missing_core_requirement_and_unanswered(tmp_path):
    body = ALL_YES.replace("evaluation: {met: はい}", "evaluation: {met: いいえ}").replace(
        "professionals: {met: true}", "professionals: {met: }")
    t = nep.checklist_table(_yaml(tmp_path, body)).set_index("番号")
    assert t.loc["④", "状況"] == "満たしていない" and t.loc["③", "状況"] == "未記入"
    assert t["不足"].to_dict() == {"①": "", "②": "", "③": "不足", "④": "不足", "⑤": ""}
    assert nep.checklist_verdict(t.reset_index()) == (
        "判定: 宣言2の必須要件（①〜④）を満たしていません。不足している要件: ③（未記入）、④（満たしていない）。")


def test_checklist_fifth_requirement_only_for_nephropathy_programs(tmp_path):
    body = ALL_YES.replace("prefecture_council: {met: はい}", "prefecture_council: {met: いいえ}")
    t = nep.checklist_table(_yaml(tmp_path, body))
    assert t["不足"].tolist() == ["", "", "", "", "不足"]
    assert "⑤が不足" in nep.checklist_verdict(t)
    other = nep.checklist_table(_yaml(tmp_path, "nephropathy_program: false\n" + body))
    assert other["不足"].tolist() == [""] * 5 and other["区分"].iloc[4] == "任意"
    assert "すべて満たしています" in nep.checklist_verdict(other)


def test_checklist_missing_requirement_and_bad_input(tmp_path):
    t = nep.checklist_table(_yaml(tmp_path, "requirements:\n  extraction_criteria: {met: はい}\n"))
    assert t["不足"].tolist() == ["", "不足", "不足", "不足", "不足"]
    with pytest.raises(ParameterError):
        nep.checklist_table(_yaml(tmp_path, "requirements:\n  evaluation: {met: たぶん}\n"))
    with pytest.raises(ParameterError):
        _yaml(tmp_path, "requirements:\n  budget: {met: はい}\n")
    with pytest.raises(ParameterError):
        nep.load_checklist(tmp_path / "none.yaml")


def test_demo_checklist_shows_evaluation_missing():
    t = nep.checklist_table(nep.load_checklist())
    assert t.loc[t["不足"] == "不足", "番号"].tolist() == ["④"]


def test_the_notebooks_columns_give_the_targets_of_the_whole_tables(prepared):
    """Notebook 04 reads only `nep.TABLES` (issue 17): the person_year columns of the rows and rules and
    the claims flags of the rules. The extraction is the one of the tables read in all columns; the
    left-out columns are named (`schema.UNREAD_COLUMNS`), so a rule that needs one raises."""
    from hsutils.analysis import pipeline

    muni, fy = "17201", max(prepared.fiscal_years)
    part = pipeline.load_prepared(Path(os.environ["HSUTILS_CACHE_DIR"]), with_tables=nep.TABLES, munis=[muni])
    assert list(part.tables) == ["claims_monthly"]
    assert part.tables["claims_monthly"].columns.tolist() == ["person_id", "ym", "diabetes", "ckd", "dialysis"]
    assert set(part.person_year.columns) == set(nep.PERSON_YEAR_COLUMNS)
    assert "cost_inpatient" in part.tables["claims_monthly"].attrs["unread_columns"]
    assert "bmi" in part.person_year.attrs["unread_columns"]
    params = nep.nephropathy_params()
    got = {}
    for name, p in (("part", part), ("whole", prepared)):
        rows = nep.area_rows(p.person_year, muni, fy, "国保")
        claims = nep.area_claims(p.tables.get("claims_monthly"), rows)
        got[name] = (nep.target_frame(rows, claims, fy, params), nep.flow_counts(rows, claims, fy, params))
    assert len(got["part"][0]) > 100 and got["part"][1]["count"].iloc[0] > 0
    pd.testing.assert_frame_equal(got["part"][0], got["whole"][0])
    pd.testing.assert_frame_equal(got["part"][1], got["whole"][1])
    from hsutils.rules import programs

    with pytest.raises(KeyError, match="列 q1 を読み込んでいません"):  # 一体的実施 needs the answers
        programs.ikkatsu_flags(part.person_year, prepared.tables["claims_monthly"], None, None, fy)


# --------------------------------------------------------------------------------- the notebook

@pytest.fixture(scope="module")
def executed(tmp_path_factory, prepared):
    """The notebook executed by papermill on the test data (muni 17201), outputs in tmp."""
    import papermill as pm

    tmp = tmp_path_factory.mktemp("nb04")
    out_dir = tmp / "out"
    pm.execute_notebook(str(NOTEBOOK), str(tmp / "executed.ipynb"), cwd=str(tmp),
                        parameters={"muni_code": "17201", "out_dir": str(out_dir),
                                    "cache_dir": os.environ["HSUTILS_CACHE_DIR"],
                                    "data_dir": os.environ["HSUTILS_DATA_DIR"]},
                        progress_bar=False, kernel_name="python3")
    return tmp / "executed.ipynb", out_dir


def test_notebook_report_and_tables_have_no_person_id_or_small_count(executed, prepared):
    import nbformat
    from nbconvert import HTMLExporter

    nb_path, out_dir = executed
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.read(nb_path, as_version=4))
    ids = prepared.person_year["person_id"].unique()
    privacy.assert_no_person_ids(html, ids)
    assert "対象者の概数把握" in html and "判定:" in html
    assert html.count("<img") >= 5  # the charts are in the report (inline backend), not "<Figure ...>"
    count_cols = {"flow_counts": ["count"], "ckd_heatmap": ["count"], "target_counts": ["referral", "guidance"],
                  "trends": ["numerator", "denominator"], "funnel": ["numerator", "denominator"]}
    for name, cols in count_cols.items():
        t = pd.read_csv(out_dir / "tables" / f"{name}.csv", encoding="utf-8-sig")
        privacy.assert_no_small_counts(t, cols)
        privacy.assert_no_person_ids(t, ids)
    for sheet in pd.read_excel(out_dir / "tables" / "04_nephropathy.xlsx", sheet_name=None).values():
        privacy.assert_no_person_ids(sheet, ids)
    flow = pd.read_csv(out_dir / "tables" / "flow_counts.csv", encoding="utf-8-sig")
    assert list(flow.columns) == ["step_id", "step_label", "count", "suppressed"]
    ckd = pd.read_csv(out_dir / "tables" / "ckd_heatmap.csv", encoding="utf-8-sig")
    assert list(ckd.columns) == ["population", "g_stage", "a_stage", "count", "suppressed"]


def test_notebook_lists_only_in_confidential(executed, prepared):
    _, out_dir = executed
    found = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*_list.*"))
    assert found == ["confidential/guidance_list.csv", "confidential/guidance_list.xlsx",
                     "confidential/referral_list.csv", "confidential/referral_list.xlsx"]
    ref = pd.read_csv(out_dir / "confidential" / "referral_list.csv", encoding="utf-8-sig", dtype={"person_id": str})
    assert {"person_id", "hba1c", "fpg", "egfr", "urine_protein", "treatment_status", "group", "last_dm_ym"} <= set(ref.columns)
    assert set(ref["group"]) <= {"A", "C", "E"}
    assert set(ref["person_id"]) <= set(prepared.person_year["person_id"])
    gui = pd.read_csv(out_dir / "confidential" / "guidance_list.csv", encoding="utf-8-sig")
    assert set(gui["group"]) <= {"B", "D"}
    pngs = {p.stem for p in (out_dir / "figures").glob("*.png")}
    assert {p.stem for p in (out_dir / "figures").glob("*.pdf")} == pngs
    required = {"flow_chart", "ckd_heatmap_all", "ckd_heatmap_diabetes", "funnel_dm_untreated", "funnel_dm_hba1c8"}
    optional = {"target_counts_by_area", "district_untreated", "reference_comparison"} | {
        f"trend_{i}" for i in ("dm_hba1c8", "dm_egfr45", "dm_urine_protein1", "dm_untreated", "dm_interrupted",
                               "new_dialysis")}  # drawn only when a point is not suppressed
    assert required <= pngs <= required | optional

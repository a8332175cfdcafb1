"""Tests of hsutils.rules.programs with hand-made persons at and around every threshold.

Expected values are worked out by hand from docs/rules.md §5, §6.1, §10 and written as literals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsutils.core.errors import ParameterError
from hsutils.rules.programs import (
    IKKATSU_CRITERIA,
    IkkatsuParams,
    NephropathyParams,
    claims_history,
    claims_person_year,
    health_unknown,
    ikkatsu_criteria,
    ikkatsu_flags,
    nephropathy_flags,
    nephropathy_flow,
    new_dialysis_determinable,
    polypharmacy_flags,
    treatment_status,
)

FY = 2024
FLAGS = ("diabetes", "hypertension", "dyslipidemia", "ckd", "dialysis", "heart_failure", "stroke",
         "hypnotic")
# non-risk answers for every questionnaire item (docs/rules.md §6.2)
CALM = {"q1": 3, "q2": 2, "q3": 1, "q4": 2, "q5": 2, "q6": 2, "q7": 2, "q8": 2, "q9": 1, "q10": 2,
        "q11": 2, "q12": 2, "q13": 1, "q14": 1, "q15": 1}


# --------------------------------------------------------------------------------- builders

def person(pid, fy=FY, **kw):
    """A person_year row; default: 80-year-old 後期 with an unremarkable checkup."""
    row = dict(person_id=pid, fy=fy, muni_code="17201", district_code="01", sex=1, age=80,
               insurance="後期", has_kenshin=True, bmi=22.0, hba1c=5.5, fpg=90.0,
               casual_glucose=np.nan, sbp=120.0, dbp=70.0, urine_protein=0.0, egfr_calc=70.0,
               med_glucose=False)
    row.update(kw)
    if not row["has_kenshin"]:  # no checkup -> no measures unless given
        for m in ("bmi", "hba1c", "fpg", "casual_glucose", "sbp", "dbp", "urine_protein", "egfr_calc"):
            if m not in kw:
                row[m] = np.nan
        if "med_glucose" not in kw:
            row["med_glucose"] = pd.NA
    return row


def no_checkup(pid, fy=FY, **kw):
    return person(pid, fy=fy, has_kenshin=False, **kw)


def make_py(rows, index=None):
    df = pd.DataFrame(rows, index=index)
    df["person_id"] = df["person_id"].astype("str")
    df["fy"] = df["fy"].astype("int64")
    df["has_kenshin"] = df["has_kenshin"].astype("boolean")
    df["med_glucose"] = df["med_glucose"].astype("boolean")
    for c in ("bmi", "hba1c", "fpg", "casual_glucose", "sbp", "dbp", "urine_protein", "egfr_calc"):
        df[c] = df[c].astype("float64")
    return df


def claim(pid, ym, outpatient=1000.0, dental=0.0, inpatient=0.0, pharmacy=0.0, n_drugs=0,
          n_institutions=1, **flags):
    row = dict(person_id=pid, muni_code="17201", ym=ym, cost_inpatient=inpatient,
               cost_outpatient=outpatient, cost_dental=dental, cost_pharmacy=pharmacy,
               n_drugs=n_drugs, n_institutions=n_institutions)
    row.update({f: bool(flags.get(f, False)) for f in FLAGS})
    return row


def make_claims(rows):
    cols = ["person_id", "muni_code", "ym", *FLAGS, "cost_inpatient", "cost_outpatient",
            "cost_dental", "cost_pharmacy", "n_drugs", "n_institutions"]
    df = pd.DataFrame(rows, columns=cols)
    df["person_id"] = df["person_id"].astype("str")
    df["ym"] = df["ym"].astype("int64")
    for f in FLAGS:
        df[f] = df[f].astype("boolean")
    for c in ("cost_inpatient", "cost_outpatient", "cost_dental", "cost_pharmacy"):
        df[c] = df[c].astype("float64")
    df["n_drugs"] = df["n_drugs"].astype("Int64")
    df["n_institutions"] = df["n_institutions"].astype("Int64")
    return df


def answers(pid, fy=FY, **kw):
    row = dict(person_id=pid, fy=fy, muni_code="17201", **CALM)
    row.update(kw)
    return row


def make_q(rows):
    df = pd.DataFrame(rows)
    df["person_id"] = df["person_id"].astype("str")
    for q in CALM:
        df[q] = df[q].astype("Int64")
    return df


def make_kaigo(rows):
    df = pd.DataFrame(rows, columns=["person_id", "muni_code", "level", "start", "end"])
    df["person_id"] = df["person_id"].astype("str")
    df["start"] = pd.to_datetime(df["start"])
    df["end"] = pd.to_datetime(df["end"])
    return df


def ik(py_rows, claim_rows=(), q_rows=None, kaigo_rows=(), params=IkkatsuParams()):
    """ikkatsu_flags for FY, re-indexed by person_id for readable assertions."""
    py = make_py(py_rows)
    q = make_q(q_rows) if q_rows else None
    out = ikkatsu_flags(py, make_claims(list(claim_rows)), make_kaigo(list(kaigo_rows)), q, FY, params)
    return out.set_axis(py.loc[out.index, "person_id"].to_numpy())


def dkd(py_rows, claim_rows=(), params=NephropathyParams()):
    py = make_py(py_rows)
    out = nephropathy_flags(py, make_claims(list(claim_rows)), FY, params)
    return out.set_axis(py.loc[out.index, "person_id"].to_numpy())


# --------------------------------------------------------------------------------- claims_person_year

def test_claims_person_year_uses_april_to_march():
    c = make_claims([
        claim("p1", 202403, diabetes=True),   # fy2023
        claim("p1", 202404),                  # fy2024 first month
        claim("p1", 202503, n_drugs=7),       # fy2024 last month
        claim("p1", 202504, n_drugs=30),      # fy2025
    ])
    out = claims_person_year(c, [2024]).set_index("person_id")
    assert bool(out.loc["p1", "claim_medical"]) is True
    assert bool(out.loc["p1", "dm_claim"]) is False          # the diabetes month is in fy2023
    assert out.loc["p1", "last_dm_ym"] == 202403              # ... but still the last one up to fy end
    assert out.loc["p1", "last_claim_ym"] == 202503           # 202504 is after the fy end
    assert out.loc["p1", "max_drugs"] == 7
    assert out.loc["p1", "fy"] == 2024


def test_claims_person_year_medical_and_dental_markers():
    c = make_claims([
        claim("dental_only", 202406, outpatient=0.0, dental=5000.0),
        claim("zero_cost", 202406, outpatient=0.0),
        claim("pharmacy", 202406, outpatient=0.0, pharmacy=300.0),
        claim("no_cost_info", 202406, outpatient=np.nan, dental=np.nan, inpatient=np.nan,
              pharmacy=np.nan),
        claim("flag_only", 202406, outpatient=0.0, hypertension=True),
    ])
    out = claims_person_year(c, [FY]).set_index("person_id")
    assert out["claim_medical"].to_dict() == {
        "dental_only": False, "zero_cost": False, "pharmacy": True, "no_cost_info": True,
        "flag_only": True}
    assert out["claim_dental"].to_dict() == {
        "dental_only": True, "zero_cost": False, "pharmacy": False, "no_cost_info": False,
        "flag_only": False}
    assert bool(out.loc["flag_only", "htn_claim"]) is True
    assert pd.isna(out.loc["zero_cost", "last_dm_ym"])


def test_claims_person_year_disease_flags_and_several_years():
    c = make_claims([
        claim("p1", 202407, hypnotic=True, heart_failure=True, n_drugs=3),
        claim("p1", 202408, stroke=True, ckd=True, dyslipidemia=True, n_drugs=9),
        claim("p2", 202305, diabetes=True),
    ])
    out = claims_person_year(c, [2023, 2024])
    assert len(out) == 3  # p2 in 2023 and 2024 (history), p1 in 2024 only
    p1 = out[(out.person_id == "p1") & (out.fy == 2024)].iloc[0]
    assert [bool(p1[k]) for k in ("hypnotic_claim", "hf_claim", "stroke_claim", "ckd_claim",
                                  "lipid_claim", "dm_claim")] == [True, True, True, True, True, False]
    assert p1["max_drugs"] == 9
    p2 = out[(out.person_id == "p2") & (out.fy == 2024)].iloc[0]
    assert bool(p2["claim_medical"]) is False and p2["last_dm_ym"] == 202305


def test_new_dialysis_needs_twelve_free_months():
    c = make_claims([
        claim("ongoing", 202310, dialysis=True), claim("ongoing", 202404, dialysis=True),
        claim("first", 202406, dialysis=True), claim("first", 202407, dialysis=True),
        claim("gap13", 202305, dialysis=True), claim("gap13", 202406, dialysis=True),
        claim("gap12", 202306, dialysis=True), claim("gap12", 202406, dialysis=True),
        claim("none", 202406),
    ])
    c.attrs["first_ym"] = 202304  # the data start 12 months before FY 2024 (docs/hotei.md §7.4)
    out = claims_person_year(c, [FY]).set_index("person_id")["new_dialysis"].to_dict()
    assert out == {"ongoing": False, "first": True, "gap13": True, "gap12": False, "none": False}


def _dialysis_claims(first_ym: int) -> pd.DataFrame:
    """Claims that start at `first_ym` (a person without dialysis fills that month). In the data
    from April 2023: `ongoing` (dialysis 2023-04 and 2024-04: 12 months apart, not new), `first`
    (first dialysis 2024-04, none before: new), `recent` (2023-05 and 2024-04: not new), `none`."""
    rows = [claim("filler", first_ym), claim("first", 202404, dialysis=True),
            claim("recent", 202305, dialysis=True), claim("recent", 202404, dialysis=True),
            claim("none", 202406)]
    if first_ym <= 202304:
        rows.append(claim("ongoing", 202304, dialysis=True))
    rows.append(claim("ongoing", 202404, dialysis=True))
    return make_claims(rows)


@pytest.mark.parametrize("first_ym, months_before, expected", [
    # 11 months before April 2024 (from May 2023): `ongoing`'s April-2023 dialysis is outside the data,
    # so he would look new; nobody can be told new or not -> NA (判定不能) for every person of the year
    (202305, 11, {"filler": None, "first": None, "recent": None, "ongoing": None, "none": None}),
    # 12 months (from April 2023): the whole look-back of an April patient is in the data
    (202304, 12, {"filler": False, "first": True, "recent": False, "ongoing": False, "none": False}),
    # 13 months: the same answers
    (202303, 13, {"filler": False, "first": True, "recent": False, "ongoing": False, "none": False}),
])
def test_new_dialysis_is_unknown_when_the_year_has_less_than_twelve_months_before_it(first_ym, months_before,
                                                                                    expected):
    c = _dialysis_claims(first_ym)
    assert int(claims_history(c, [FY])["months_before_fy"].iloc[0]) == months_before
    assert bool(new_dialysis_determinable(c, [FY])[FY]) is (months_before >= 12)
    out = claims_person_year(c, [FY]).set_index("person_id")["new_dialysis"]
    assert str(out.dtype) == "boolean"
    assert {k: (None if pd.isna(v) else bool(v)) for k, v in out.items()} == expected


def test_new_dialysis_of_a_partition_uses_the_datas_first_month():
    """One municipality's claims start in May 2023, the data's in April 2023 (`attrs["first_ym"]`, set by
    the cache for each partition): the year is judged with the data's history (12 months)."""
    c = _dialysis_claims(202305)
    assert new_dialysis_determinable(c, [FY]).to_dict() == {FY: False}
    c.attrs["first_ym"] = 202304
    assert new_dialysis_determinable(c, [FY]).to_dict() == {FY: True}
    out = claims_person_year(c, [FY]).set_index("person_id")["new_dialysis"]
    # the data hold April 2023 and this municipality has no dialysis claim of `ongoing` then: new
    assert (bool(out["first"]), bool(out["ongoing"]), bool(out["recent"])) == (True, True, False)
    assert new_dialysis_determinable(None, [FY]).to_dict() == {FY: False}  # no claims: no year can be judged


# --------------------------------------------------------------------------------- treatment_status

def test_treatment_status_window_boundary_and_lookback():
    c = make_claims([
        claim("m0", 202503, diabetes=True),
        claim("in_window", 202410, diabetes=True),     # first month of the 6-month window
        claim("just_out", 202409, diabetes=True),      # one month before the window
        claim("lookback_edge", 202204, diabetes=True),  # 36th month back
        claim("too_old", 202203, diabetes=True),
        claim("never", 202412),
        claim("after", 202504, diabetes=True),          # after as_of: ignored
    ])
    out = treatment_status(c, "diabetes", 202503).set_index("person_id")
    assert out["status"].to_dict() == {
        "m0": "治療中", "in_window": "治療中", "just_out": "治療中断", "lookback_edge": "治療中断",
        "too_old": "未治療", "never": "未治療", "after": "未治療"}
    assert out.loc["just_out", "last_ym"] == 202409
    assert out.loc["too_old", "last_ym"] == 202203
    assert pd.isna(out.loc["never", "last_ym"]) and pd.isna(out.loc["after", "last_ym"])


def test_treatment_status_default_as_of_is_fy_end_and_custom_window():
    c = make_claims([claim("a", 202501, diabetes=True), claim("b", 202412, diabetes=True)])
    by_fy = treatment_status(c, "diabetes", fy=2024).set_index("person_id")["status"]
    assert by_fy.to_dict() == {"a": "治療中", "b": "治療中"}
    w3 = treatment_status(c, "diabetes", 202503, window_months=3).set_index("person_id")["status"]
    assert w3.to_dict() == {"a": "治療中", "b": "治療中断"}


def test_treatment_status_several_flags_and_bad_parameters():
    c = make_claims([claim("a", 202409, diabetes=True), claim("a", 202412, hypertension=True)])
    assert treatment_status(c, "diabetes", 202503)["status"].tolist() == ["治療中断"]
    assert treatment_status(c, ["diabetes", "hypertension"], 202503)["status"].tolist() == ["治療中"]
    with pytest.raises(ParameterError):
        treatment_status(c, "diabetes")
    with pytest.raises(ParameterError):
        treatment_status(c, "diabetes", 202503, window_months=12, lookback_months=6)


# --------------------------------------------------------------------------------- 一体的実施

@pytest.mark.parametrize("bmi,q6,expected", [
    (20.0, 1, True), (20.1, 1, False), (19.0, 2, False), (19.0, None, False), (np.nan, 1, False)])
def test_ik_undernutrition_bmi_20_and_q6(bmi, q6, expected):
    out = ik([person("p", bmi=bmi)], q_rows=[answers("p", q6=q6)])
    assert bool(out.loc["p", "ik_undernutrition"]) is expected


def test_ik_oral_needs_q4_or_q5_and_no_dental_claim_in_year():
    out = ik([person(p) for p in ("q4", "q5", "dental", "dental_last_fy", "missing", "none")],
             claim_rows=[claim("dental", 202502, outpatient=0.0, dental=800.0),
                         claim("dental_last_fy", 202403, outpatient=0.0, dental=800.0)],
             q_rows=[answers("q4", q4=1), answers("q5", q5=1), answers("dental", q4=1),
                     answers("dental_last_fy", q5=1), answers("missing", q4=None, q5=None),
                     answers("none")])
    assert out["ik_oral"].to_dict() == {"q4": True, "q5": True, "dental": False,
                                        "dental_last_fy": True, "missing": False, "none": False}


@pytest.mark.parametrize("threshold,drugs,expected", [
    (15, 14, False), (15, 15, True), (20, 19, False), (20, 20, True), (20, 15, False)])
def test_ik_polypharmacy_threshold(threshold, drugs, expected):
    out = ik([person("p")], claim_rows=[claim("p", 202406, n_drugs=drugs), claim("p", 202407, n_drugs=2)],
             params=IkkatsuParams(drugs_threshold=threshold))
    assert bool(out.loc["p", "ik_polypharmacy"]) is expected


def test_ik_hypnotic_with_fall_or_both_cognitive_items():
    ids = ("fall", "cognitive", "q10_only", "no_drug", "no_answer")
    out = ik([person(p) for p in ids],
             claim_rows=[claim(p, 202408, hypnotic=True) for p in ids if p != "no_drug"]
             + [claim("no_drug", 202408)],
             q_rows=[answers("fall", q8=1), answers("cognitive", q10=1, q11=1),
                     answers("q10_only", q10=1), answers("no_drug", q8=1)])  # no_answer: no questionnaire
    assert out["ik_hypnotic"].to_dict() == {"fall": True, "cognitive": True, "q10_only": False,
                                            "no_drug": False, "no_answer": False}


@pytest.mark.parametrize("q1,q7,expected", [
    (4, 1, True), (5, 1, True), (3, 1, False), (4, 2, False), (None, 1, False), (5, None, False)])
def test_ik_physical_frailty(q1, q7, expected):
    out = ik([person("p")], q_rows=[answers("p", q1=q1, q7=q7)])
    assert bool(out.loc["p", "ik_physical_frailty"]) is expected


def test_ik_poor_control_hba1c_matched_to_diabetes_claims():
    out = ik([person("h79", hba1c=7.9), person("h80", hba1c=8.0), person("h80_dm", hba1c=8.0),
              person("h80_htn", hba1c=8.0), person("h80_dm_last_fy", hba1c=8.0)],
             claim_rows=[claim("h80_dm", 202501, diabetes=True),
                         claim("h80_htn", 202501, hypertension=True),
                         claim("h80_dm_last_fy", 202402, diabetes=True)])
    assert out["ik_poor_control"].to_dict() == {"h79": False, "h80": True, "h80_dm": False,
                                                "h80_htn": True, "h80_dm_last_fy": True}


def test_ik_poor_control_bp_matched_to_hypertension_claims():
    out = ik([person("s159", sbp=159.0), person("s160", sbp=160.0), person("d99", dbp=99.0),
              person("d100", dbp=100.0), person("s160_htn", sbp=160.0), person("s160_dm", sbp=160.0),
              person("bp_missing", sbp=np.nan, dbp=np.nan)],
             claim_rows=[claim("s160_htn", 202406, hypertension=True),
                         claim("s160_dm", 202406, diabetes=True)])
    assert out["ik_poor_control"].to_dict() == {
        "s159": False, "s160": True, "d99": False, "d100": True, "s160_htn": False,
        "s160_dm": True, "bp_missing": False}


def test_ik_interruption_at_window_boundary():
    # fy2024 ends 202503: the 6-month window is 202410-202503
    out = ik([person(p) for p in ("dm_202410", "dm_202409", "htn_202409", "dm_old_htn_recent",
                                  "dm_202203", "no_claims")],
             claim_rows=[claim("dm_202410", 202410, diabetes=True),
                         claim("dm_202409", 202409, diabetes=True),
                         claim("htn_202409", 202409, hypertension=True),
                         claim("dm_old_htn_recent", 202409, diabetes=True),
                         claim("dm_old_htn_recent", 202412, hypertension=True),
                         claim("dm_202203", 202203, diabetes=True)])
    assert out["ik_interruption"].to_dict() == {
        "dm_202410": False, "dm_202409": True, "htn_202409": True, "dm_old_htn_recent": False,
        "dm_202203": False, "no_claims": False}


def test_ik_interruption_window_parameter():
    out = ik([person("p")], claim_rows=[claim("p", 202412, diabetes=True)],
             params=IkkatsuParams(interruption_window_months=3))
    assert bool(out.loc["p", "ik_interruption"]) is True


def test_ik_disease_frailty_needs_disease_and_risk_answer():
    out = ik([person("dm_q13"), person("a1c70_q1", hba1c=7.0), person("a1c69_q8", hba1c=6.9),
              person("hf_q6"), person("stroke_calm"), person("dm_interrupted_q8"),
              person("dm_no_risk")],
             claim_rows=[claim("dm_q13", 202502, diabetes=True),
                         claim("hf_q6", 202406, heart_failure=True),
                         claim("stroke_calm", 202406, stroke=True),
                         claim("dm_interrupted_q8", 202404, diabetes=True),
                         claim("dm_no_risk", 202502, diabetes=True)],
             q_rows=[answers("dm_q13", q13=2), answers("a1c70_q1", q1=4), answers("a1c69_q8", q8=1),
                     answers("hf_q6", q6=1), answers("stroke_calm"),
                     answers("dm_interrupted_q8", q8=1), answers("dm_no_risk")])
    assert out["ik_disease_frailty"].to_dict() == {
        "dm_q13": True, "a1c70_q1": True, "a1c69_q8": False, "hf_q6": True, "stroke_calm": False,
        "dm_interrupted_q8": True, "dm_no_risk": False}


def test_ik_kidney_untreated_thresholds_and_claims():
    out = ik([person("e449", egfr_calc=44.9), person("e45", egfr_calc=45.0),
              person("up_1plus", urine_protein=2.0), person("up_pm", urine_protein=1.0),
              person("e40_dental", egfr_calc=40.0), person("e40_outpatient", egfr_calc=40.0),
              person("e40_claim_last_fy", egfr_calc=40.0), person("unmeasured", egfr_calc=np.nan,
                                                                   urine_protein=np.nan)],
             claim_rows=[claim("e40_dental", 202407, outpatient=0.0, dental=900.0),
                         claim("e40_outpatient", 202407),
                         claim("e40_claim_last_fy", 202403)])
    assert out["ik_kidney_untreated"].to_dict() == {
        "e449": True, "e45": False, "up_1plus": True, "up_pm": False, "e40_dental": False,
        "e40_outpatient": False, "e40_claim_last_fy": True, "unmeasured": False}


def test_ik_kidney_untreated_falls_back_to_reported_egfr():
    rows = [person("p", egfr_calc=np.nan)]
    rows[0]["egfr"] = 44.0
    out = ik(rows)
    assert bool(out.loc["p", "ik_kidney_untreated"]) is True


def _unknown_population():
    """Persons for 健康状態不明者: 'base' meets all three conditions; each other breaks one."""
    py = []
    for pid in ("base", "checkup_prev", "checkup_now", "medical_prev", "dental_now", "kaigo",
                "kaigo_ended", "kaigo_future", "young"):
        py.append(person(pid, fy=FY - 1) if pid == "checkup_prev" else no_checkup(pid, fy=FY - 1))
        py.append(person(pid) if pid == "checkup_now" else no_checkup(pid))
    py[-1]["age"], py[-1]["insurance"] = 45, "国保"  # 'young' in fy2024
    claims = [claim("medical_prev", 202306),                      # fy2023 medical claim
              claim("dental_now", 202502, outpatient=0.0, dental=700.0),
              claim("base", 202303),                              # fy2022: outside the two years
              claim("base", 202504)]                              # fy2025: outside
    kaigo = [("kaigo", "17201", "要支援1", "2022-10-01", None),          # ongoing
             ("kaigo_ended", "17201", "要介護1", "2021-04-01", "2023-03-31"),  # ended before fy2023
             ("kaigo_future", "17201", "要介護2", "2025-04-01", None)]         # after fy2024
    return py, claims, kaigo


def test_health_unknown_each_condition_breaks_it():
    py, claims, kaigo = _unknown_population()
    frame = make_py(py)
    out = health_unknown(frame, make_claims(claims), make_kaigo(kaigo), FY)
    got = dict(zip(frame.loc[out.index, "person_id"], out.to_numpy()))
    assert got == {"base": True, "checkup_prev": False, "checkup_now": False,
                   "medical_prev": False, "dental_now": False, "kaigo": False,
                   "kaigo_ended": True, "kaigo_future": True, "young": True}


def test_ik_health_unknown_only_for_kouki():
    py, claims, kaigo = _unknown_population()
    out = ik(py, claims, kaigo_rows=kaigo)
    assert out["ik_health_unknown"].to_dict() == {
        "base": True, "checkup_prev": False, "checkup_now": False, "medical_prev": False,
        "dental_now": False, "kaigo": False, "kaigo_ended": True, "kaigo_future": True,
        "young": False}


def test_ik_only_kouki_75_plus_and_min_age_parameter():
    rows = [person("kokuho74", age=74, insurance="国保", bmi=19.0),
            person("kouki74", age=74, bmi=19.0), person("kouki75", age=75, bmi=19.0)]
    qs = [answers(p, q6=1) for p in ("kokuho74", "kouki74", "kouki75")]
    out = ik(rows, q_rows=qs)
    assert out["ik_undernutrition"].to_dict() == {"kokuho74": False, "kouki74": False, "kouki75": True}
    out65 = ik(rows, q_rows=qs, params=IkkatsuParams(min_age=65))
    assert out65["ik_undernutrition"].to_dict() == {"kokuho74": False, "kouki74": True, "kouki75": True}


def test_ik_frame_shape_index_and_any():
    rows = [person("old_year", fy=FY - 1, bmi=19.0), person("a", bmi=19.0), person("b")]
    py = make_py(rows, index=[10, 20, 30])
    q = make_q([answers("a", q6=1), answers("b"), answers("old_year", fy=FY - 1, q6=1)])
    out = ikkatsu_flags(py, make_claims([]), make_kaigo([]), q, FY)
    assert list(out.index) == [20, 30]
    assert list(out.columns) == [c[0] for c in IKKATSU_CRITERIA] + ["ik_any"]
    assert (out.dtypes == bool).all()
    assert out["ik_any"].tolist() == [True, False]
    assert out.loc[20].sum() == 2  # ik_undernutrition and ik_any


def test_ik_reads_answers_from_person_year_without_questionnaire():
    rows = [person("a", bmi=18.0, q6=1), person("b", bmi=18.0, q6=2)]
    py = make_py(rows)
    py["q6"] = py["q6"].astype("Int64")
    out = ikkatsu_flags(py, make_claims([]), None, None, FY)
    assert out["ik_undernutrition"].tolist() == [True, False]


def test_ikkatsu_criteria_table_follows_parameters():
    assert len(IKKATSU_CRITERIA) == 10
    assert [c[2] for c in IKKATSU_CRITERIA] == [f"docs/rules.md §6.1-{i}" for i in range(1, 11)]
    assert "15種類以上" in IKKATSU_CRITERIA[2][3]
    assert "BMI 20以下" in IKKATSU_CRITERIA[0][3]
    strict = ikkatsu_criteria(IkkatsuParams(drugs_threshold=20))
    assert "20種類以上" in strict[2][3]


# --------------------------------------------------------------------------------- 糖尿病性腎症

@pytest.mark.parametrize("kw,expected", [
    ({"hba1c": 6.4}, False), ({"hba1c": 6.5}, True), ({"fpg": 125.0}, False),
    ({"fpg": 126.0}, True), ({"fpg": np.nan, "casual_glucose": 126.0}, True),
    ({"med_glucose": True}, True)])
def test_dkd_diabetes_type_thresholds(kw, expected):
    out = dkd([person("p", **kw)])
    assert bool(out.loc["p", "dkd_diabetes"]) is expected


def test_dkd_diabetes_from_claims_in_lookback():
    out = dkd([no_checkup("recent"), no_checkup("old"), person("normal_values")],
              [claim("recent", 202205, diabetes=True), claim("old", 202203, diabetes=True),
               claim("normal_values", 202501, diabetes=True)])
    assert out["dkd_diabetes"].to_dict() == {"recent": True, "old": False, "normal_values": True}
    assert out.loc["normal_values", "dkd_diabetes_type"] == False  # noqa: E712
    assert out.loc["old", "last_dm_ym"] == 202203


@pytest.mark.parametrize("kw,default,strict", [
    ({"egfr_calc": 59.9}, True, False), ({"egfr_calc": 60.0}, False, False),
    ({"egfr_calc": 29.9}, True, True), ({"egfr_calc": 30.0}, True, False),
    ({"urine_protein": 0.0}, False, False), ({"urine_protein": 1.0}, True, False),
    ({"urine_protein": 2.0}, True, True), ({"egfr_calc": np.nan, "urine_protein": np.nan}, False, False)])
def test_dkd_kidney_default_and_strict(kw, default, strict):
    rows = [person("p", hba1c=7.0, **kw)]
    assert bool(dkd(rows).loc["p", "dkd_kidney"]) is default
    strict_params = NephropathyParams(egfr=30.0, urine_protein=2)
    assert bool(dkd(rows, params=strict_params).loc["p", "dkd_kidney"]) is strict


def test_dkd_kidney_claims_can_be_switched_off():
    rows, claims = [person("p", hba1c=7.0)], [claim("p", 202406, ckd=True)]
    assert bool(dkd(rows, claims).loc["p", "dkd_kidney"]) is True
    off = NephropathyParams(include_kidney_claims=False)
    assert bool(dkd(rows, claims, params=off).loc["p", "dkd_kidney"]) is False


def _dkd_population():
    """One person per flow box; names say where each belongs (as of 202503, window 6)."""
    py = [
        person("A_untreated", hba1c=7.2, egfr_calc=50.0),
        person("A_interrupted", hba1c=7.2, urine_protein=1.0),
        person("B_treated", hba1c=7.2, egfr_calc=55.0),
        person("C_untreated", hba1c=6.8),
        person("C_interrupted", fpg=130.0),
        person("k3_treated", hba1c=6.6),
        person("no_diabetes", hba1c=5.9, egfr_calc=50.0),
        person("dialysis_checked", hba1c=7.5, egfr_calc=8.0),
        no_checkup("D_kidney_claims"),
        no_checkup("n1_no_kidney"),
        no_checkup("E_interrupted"),
        no_checkup("E_inyear"),      # claim only in 202404: claims-only but interrupted
        no_checkup("never"),
        person("other_year", fy=FY - 1, hba1c=9.0),
    ]
    claims = [
        claim("A_interrupted", 202402, diabetes=True),
        claim("B_treated", 202501, diabetes=True),
        claim("C_interrupted", 202312, diabetes=True),
        claim("k3_treated", 202503, diabetes=True),
        claim("dialysis_checked", 202502, diabetes=True, dialysis=True),
        claim("D_kidney_claims", 202411, diabetes=True, ckd=True),
        claim("n1_no_kidney", 202502, diabetes=True),
        claim("E_interrupted", 202301, diabetes=True),
        claim("E_inyear", 202404, diabetes=True),
        claim("never", 202406),
        # the claims cover April 2020 onwards: the full 36-month look-back for FY2023 and FY2024
        # (docs/hotei.md §7; tests/test_lookback.py covers claims that start later)
        claim("coverage_start", 202004),
    ]
    return py, claims


def test_dkd_groups_treatment_and_targets():
    py, claims = _dkd_population()
    out = dkd(py, claims)
    assert out["dkd_group"].to_dict() == {
        "A_untreated": "A", "A_interrupted": "A", "B_treated": "B", "C_untreated": "C",
        "C_interrupted": "C", "k3_treated": "", "no_diabetes": "", "dialysis_checked": "",
        "D_kidney_claims": "D", "n1_no_kidney": "", "E_interrupted": "E", "E_inyear": "E",
        "never": ""}
    assert out["dkd_treatment"].to_dict() == {
        "A_untreated": "未治療", "A_interrupted": "治療中断", "B_treated": "治療中",
        "C_untreated": "未治療", "C_interrupted": "治療中断", "k3_treated": "治療中",
        "no_diabetes": "未治療", "dialysis_checked": "治療中", "D_kidney_claims": "治療中",
        "n1_no_kidney": "治療中", "E_interrupted": "治療中断", "E_inyear": "治療中断",
        "never": "未治療"}
    assert sorted(out.index[out["dkd_referral"]]) == [
        "A_interrupted", "A_untreated", "C_interrupted", "C_untreated", "E_interrupted", "E_inyear"]
    assert sorted(out.index[out["dkd_guidance"]]) == ["B_treated", "D_kidney_claims"]
    assert bool(out.loc["dialysis_checked", "dkd_dialysis"]) is True
    group_cols = [f"dkd_group_{g}" for g in "abcde"]
    assert out[group_cols].sum(axis=1).max() == 1  # groups are mutually exclusive
    assert out[group_cols].sum().tolist() == [2, 1, 2, 1, 2]


def test_dkd_claims_only_persons():
    py, claims = _dkd_population()
    out = dkd(py, claims)
    assert sorted(out.index[out["dkd_claims_only"]]) == [
        "D_kidney_claims", "E_inyear", "n1_no_kidney"]  # E_interrupted: last claim before the fy
    assert out.loc["D_kidney_claims", "last_dm_ym"] == 202411
    assert pd.isna(out.loc["never", "last_dm_ym"])


def test_nephropathy_flow_counts():
    py, claims = _dkd_population()
    flow = nephropathy_flow(make_py(py), make_claims(claims), FY).set_index("step_id")
    assert flow["count"].to_dict() == {
        "k0": 8, "k1": 6, "k2": 3, "k2t": 1, "k2u": 1, "k2i": 1, "k3": 3, "k3t": 1, "k3u": 1,
        "k3i": 1, "n1": 2, "n1k": 1, "n2": 2, "x1": 1}
    assert flow["parent_id"].to_dict() == {
        "k0": "", "k1": "k0", "k2": "k1", "k2t": "k2", "k2u": "k2", "k2i": "k2", "k3": "k1",
        "k3t": "k3", "k3u": "k3", "k3i": "k3", "n1": "", "n1k": "n1", "n2": "", "x1": ""}
    assert flow.loc["k0", "step_label"] == "健診受診者"
    assert "eGFR 60未満" in flow.loc["k2", "step_label"] and "±以上" in flow.loc["k2", "step_label"]
    assert flow.loc["n1", "step_label"].startswith("糖尿病治療中・健診未受診")


def test_nephropathy_flow_with_dialysis_kept_and_strict_kidney():
    py, claims = _dkd_population()
    params = NephropathyParams(exclude_dialysis=False, egfr=30.0, urine_protein=2,
                               include_kidney_claims=False)
    flow = nephropathy_flow(make_py(py), make_claims(claims), FY, params).set_index("step_id")
    # dialysis_checked (eGFR 8, 治療中) joins k2t; A_untreated/A_interrupted/B_treated move to k3
    assert flow["count"].to_dict() == {
        "k0": 8, "k1": 7, "k2": 1, "k2t": 1, "k2u": 0, "k2i": 0, "k3": 6, "k3t": 2, "k3u": 2,
        "k3i": 2, "n1": 2, "n1k": 0, "n2": 2}
    assert "eGFR 30未満" in flow.loc["k2", "step_label"]


# --------------------------------------------------------------------------------- 重複・多剤

def test_polypharmacy_drugs_threshold():
    c = make_claims([claim("d14", 202406, n_drugs=14), claim("d15", 202406, n_drugs=15),
                     claim("d15_last_fy", 202403, n_drugs=15), claim("d15_last_fy", 202404, n_drugs=3)])
    out = polypharmacy_flags(c, FY).set_index("person_id")
    assert out["polypharmacy"].to_dict() == {"d14": False, "d15": True, "d15_last_fy": False}
    assert out.loc["d15_last_fy", "max_drugs"] == 3
    strict = polypharmacy_flags(c, FY, drugs_threshold=20).set_index("person_id")
    assert not strict["polypharmacy"].any()


def test_duplicate_needs_consecutive_months_with_two_institutions():
    c = make_claims(
        [claim("three", ym, n_institutions=2) for ym in (202406, 202407, 202408)]
        + [claim("two", ym, n_institutions=2) for ym in (202406, 202407)]
        + [claim("gap", ym, n_institutions=2) for ym in (202405, 202406, 202408)]
        + [claim("across_april", ym, n_institutions=3) for ym in (202402, 202403, 202404)]
        + [claim("across_year_end", ym, n_institutions=2) for ym in (202411, 202412, 202501)]
        + [claim("one_inst", ym, n_institutions=1) for ym in (202406, 202407, 202408)]
        + [claim("before_fy", ym, n_institutions=2) for ym in (202401, 202402, 202403)]
        + [claim("before_fy", 202406)])
    out = polypharmacy_flags(c, FY).set_index("person_id")
    assert out["duplicate"].to_dict() == {
        "three": True, "two": False, "gap": False, "across_april": True, "across_year_end": True,
        "one_inst": False, "before_fy": False}
    assert out["max_multi_institution_run"].to_dict()["three"] == 3
    assert bool(polypharmacy_flags(c, FY, duplicate_months=2).set_index("person_id").loc["two", "duplicate"])
    with pytest.raises(ParameterError):
        polypharmacy_flags(c, FY, duplicate_months=0)


def test_claims_without_optional_columns_and_empty_claims():
    # only the required columns: every row is evidence of a medical claim, no dental claim
    bare = pd.DataFrame({"person_id": pd.Series(["p"], dtype="str"), "muni_code": ["17201"],
                         "ym": np.array([202406], dtype="int64")})
    out = claims_person_year(bare, [FY]).iloc[0]
    assert bool(out["claim_medical"]) is True and bool(out["claim_dental"]) is False
    assert pd.isna(out["max_drugs"]) and pd.isna(out["last_dm_ym"])
    # no claims at all: everyone with a diabetes-type checkup is 未治療 (group C)
    flags = dkd([person("p", hba1c=7.0)], [])
    assert flags.loc["p", "dkd_treatment"] == "未治療" and flags.loc["p", "dkd_group"] == "C"


# --------------------------------------------------------------------------------- claims prepared once

def test_prepared_claims_reused_across_years_and_rules_give_the_fresh_results():
    """The shared pass prepares the claims once (`prepare_claims`) and asks for the same years and
    statuses several times (docs/design.md §8.3): the kept arrays must not leak between questions."""
    from hsutils.rules.programs import prepare_claims

    c = make_claims([
        claim("a", 202304, diabetes=True, n_drugs=3),   # fiscal 2023
        claim("a", 202410, diabetes=True, n_drugs=16),  # fiscal 2024, in the 6-month window of 202503
        claim("b", 202406, dental=500.0, outpatient=0.0),
        claim("c", 202401, hypertension=True),          # fiscal 2023 only, no drugs
    ])
    cl = prepare_claims(c)
    for _ in range(2):  # the second round is answered from the kept arrays
        cpy = claims_person_year(cl, [2023, 2024]).set_index(["person_id", "fy"])
        assert cpy.index.tolist() == [("a", 2023), ("c", 2023), ("a", 2024), ("b", 2024), ("c", 2024)]
        assert cpy.loc[("c", 2023), "max_drugs"] == 0 and cpy.loc[("c", 2024), "last_claim_ym"] == 202401
        assert cpy.loc[("a", 2024), "max_drugs"] == 16 and cpy.loc[("a", 2023), "max_drugs"] == 3
        assert cpy.loc[("a", 2024), "last_dm_ym"] == 202410 and cpy.loc[("a", 2023), "last_dm_ym"] == 202304
        assert bool(cpy.loc[("b", 2024), "claim_dental"]) and not bool(cpy.loc[("b", 2024), "claim_medical"])
        assert not bool(cpy.loc[("c", 2024), "claim_medical"]) and bool(cpy.loc[("c", 2023), "htn_claim"])
        st = treatment_status(cl, "diabetes", 202503).set_index("person_id")["status"].to_dict()
        assert st == {"a": "治療中", "b": "未治療", "c": "未治療"}
        st = treatment_status(cl, ["diabetes", "hypertension"], 202409, window_months=6).set_index(
            "person_id")["status"].to_dict()
        assert st == {"a": "治療中断", "b": "未治療", "c": "治療中断"}  # last claims 202304 / 202401
    fresh = claims_person_year(c, [2023, 2024])
    pd.testing.assert_frame_equal(claims_person_year(cl, [2023, 2024]), fresh)
    py = make_py([person("a", age=80, insurance="後期", hba1c=8.5), person("b", age=80, insurance="後期")])
    pd.testing.assert_frame_equal(ikkatsu_flags(py, cl, None, None, FY), ikkatsu_flags(py, c, None, None, FY))
    pd.testing.assert_frame_equal(nephropathy_flags(py, cl, FY), nephropathy_flags(py, c, FY))


# --------------------------------------------------------------------------------- claims read with a column list

def test_nephropathy_reads_only_its_claims_columns_and_a_left_out_column_raises():
    """A notebook may load only the claims columns its rules read (`NEPHROPATHY_CLAIMS`, issue 17): the
    腎症 flags and flow are those of the full claims, the prepared claims convert only the three
    flags they use, and a rule needing a column that was left out (the `medical` marker's costs)
    raises instead of taking the column as absent from the data (every row would count as medical)."""
    from hsutils.core.schema import UNREAD_COLUMNS
    from hsutils.rules.programs import MARKER_CLAIMS, NEPHROPATHY_CLAIMS, claims_in_window, prepare_claims

    py, rows = _dkd_population()
    full = make_claims(rows)
    part = full[list(NEPHROPATHY_CLAIMS)].copy()
    part.attrs[UNREAD_COLUMNS] = tuple(c for c in full.columns if c not in NEPHROPATHY_CLAIMS)
    cl = prepare_claims(part)
    flow = nephropathy_flow(make_py(py), cl, FY).set_index("step_id")
    assert flow["count"].to_dict() == {  # as test_nephropathy_flow_counts
        "k0": 8, "k1": 6, "k2": 3, "k2t": 1, "k2u": 1, "k2i": 1, "k3": 3, "k3t": 1, "k3u": 1,
        "k3i": 1, "n1": 2, "n1k": 1, "n2": 2, "x1": 1}
    pd.testing.assert_frame_equal(nephropathy_flags(make_py(py), cl, FY), nephropathy_flags(make_py(py), full, FY))
    assert sorted(k[1] for k in cl.memo if k[0] == "col") == ["ckd", "diabetes", "dialysis"]
    with pytest.raises(KeyError, match="cost_inpatient"):
        claims_in_window(part, 202503, 12)
    with pytest.raises(KeyError, match="cost_inpatient"):
        ikkatsu_flags(make_py(py), part, None, None, FY)
    # the marker columns are enough for the window of 08 (n_institutions is not read)
    marker = full[list(MARKER_CLAIMS)].copy()
    marker.attrs[UNREAD_COLUMNS] = ("muni_code", "n_institutions")
    pd.testing.assert_frame_equal(claims_in_window(marker, 202503, 12), claims_in_window(full, 202503, 12))


def test_person_lookups_by_arrow_hash():
    """`person_in` and `_positions` (Arrow's hash lookup, issue 17) answer as pandas' isin / get_indexer."""
    from hsutils.rules.programs import _positions, person_in

    pid = pd.Series(["a", "b", "c", "a", "d"], dtype="str")
    assert person_in(pid, ["a", "x", "d", "a"]).tolist() == [True, False, False, True, True]
    assert person_in(pid, []).tolist() == [False] * 5
    assert person_in(pid.iloc[:0], ["a"]).tolist() == []
    assert person_in(pid.astype(object), pd.Index(["c"])).tolist() == [False, False, True, False, False]
    assert _positions(pid, pd.Index(["d", "a", "b"], dtype="str")).tolist() == [1, 2, -1, 1, 0]

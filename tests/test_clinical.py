"""Tests for hsutils.rules.clinical: docs/rules.md §1–§5.1 at each threshold, just below, and with missing inputs.

Expected values are hand-worked literals (eGFR: 194 × Cr^−1.094 × Age^−0.287 (× 0.739), worked
with a calculator and rounded to 4 decimals).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hsutils.rules import clinical as cl

NA = np.nan
BOOL_COLUMNS = ("tg_fasting", "med_bp", "med_glucose", "med_lipid", "smoking")

# A healthy 50-year-old man: no step-1 finding, no risk, no referral finding.
BASE = dict(
    sex=1, age=50, height=170.0, weight=60.0, bmi=22.0, waist=80.0, sbp=120.0, dbp=70.0,
    tg=100.0, tg_fasting=True, hdl=60.0, ldl=100.0, non_hdl=120.0, ast=20.0, alt=20.0, ggt=30.0,
    fpg=90.0, casual_glucose=NA, hba1c=5.3, urine_glucose=0.0, urine_protein=0.0,
    creatinine=NA, egfr=80.0, hemoglobin=14.5,
    med_bp=False, med_glucose=False, med_lipid=False, smoking=False,
)

# Single step-2 risks of 階層化 (docs/rules.md §1.2), each exactly at its threshold.
R_BP = dict(sbp=130.0)
R_LIPID = dict(tg=150.0)
R_GLUCOSE = dict(fpg=100.0)
WAIST_M = dict(waist=85.0)                  # step 1 group (1), man
BMI_ONLY = dict(waist=80.0, bmi=25.0)       # step 1 group (2)


def person(**changes) -> dict:
    row = dict(BASE)
    row.update(changes)
    return row


def kenshin(*rows: dict) -> pd.DataFrame:
    """Canonical kenshin frame: floats with NaN, nullable `boolean` flags (docs/internal_api.md)."""
    df = pd.DataFrame(list(rows))
    for col in BOOL_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("boolean")
    return df


def one(func, **changes):
    """Result of a frame rule for one person (first row)."""
    return func(kenshin(person(**changes))).iloc[0]


# ---------------------------------------------------------------------------------------------
# eGFR (docs/rules.md §4.1)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cr, age, sex, expected", [
    (1.0, 60, 1, 59.9063),
    (1.0, 60, 2, 44.2707),
    (0.7, 70, 2, 62.5699),
    (2.0, 50, 1, 29.5713),
    (0.8, 45, 1, 83.0518),
    (1.5, 74, 2, 26.7506),
    (1.0, 18, 1, 84.6328),   # 18 years: the formula applies
])
def test_egfr_values(cr, age, sex, expected):
    assert cl.egfr(cr, age, sex) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("cr, age, sex", [
    (1.0, 17, 1),        # under 18
    (0.0, 60, 1),        # Cr ≤ 0
    (-0.5, 60, 1),
    (NA, 60, 1),
    (None, 60, 1),
    (1.0, NA, 1),
    (1.0, 60, NA),
    (1.0, 60, 3),        # sex not 1/2
])
def test_egfr_undefined_is_nan(cr, age, sex):
    assert math.isnan(cl.egfr(cr, age, sex))


def test_egfr_broadcasts_arrays_and_series():
    arr = cl.egfr(np.array([1.0, 2.0, NA]), 60, np.array([1, 1, 2]))
    assert isinstance(arr, np.ndarray)
    assert arr[:2] == pytest.approx([59.9063, 28.0637], abs=5e-5)
    assert np.isnan(arr[2])
    s = cl.egfr(pd.Series([1.0, 1.0], index=[10, 20]), pd.Series([60, 60]), pd.Series(["男", "女"]))
    assert list(s.index) == [10, 20]
    assert s.tolist() == pytest.approx([59.9063, 44.2707], abs=5e-5)


# ---------------------------------------------------------------------------------------------
# CKD stages and colours (docs/rules.md §4.2–4.4)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, stage", [
    (120.0, "G1"), (90.0, "G1"), (89.99, "G2"), (60.0, "G2"), (59.99, "G3a"), (45.0, "G3a"),
    (44.99, "G3b"), (30.0, "G3b"), (29.99, "G4"), (15.0, "G4"), (14.99, "G5"), (2.0, "G5"),
])
def test_ckd_g_stage_boundaries(value, stage):
    assert cl.ckd_g_stage(value) == stage


def test_ckd_g_stage_missing_and_series():
    assert cl.ckd_g_stage(NA) is None
    assert cl.ckd_g_stage(None) is None
    out = cl.ckd_g_stage(pd.Series([90.0, NA, 14.99]))
    assert out.iloc[0] == "G1" and pd.isna(out.iloc[1]) and out.iloc[2] == "G5"
    arr = cl.ckd_g_stage(np.array([60.0, NA]))
    assert arr.tolist() == ["G2", None]


@pytest.mark.parametrize("value, stage", [
    (0.0, "A1"), (1.0, "A2"), (2.0, "A3"), (3.0, "A3"), (4.0, "A3"),
    ("−", "A1"), ("-", "A1"), ("－", "A1"), ("(-)", "A1"), ("陰性", "A1"),
    ("±", "A2"), ("+-", "A2"), ("+", "A3"), ("1+", "A3"), ("＋", "A3"), ("2+", "A3"),
    ("３＋", "A3"), ("++", "A3"),
])
def test_ckd_a_stage_values_and_spellings(value, stage):
    assert cl.ckd_a_stage(value) == stage


@pytest.mark.parametrize("value", [NA, None, "", "不明"])
def test_ckd_a_stage_missing(value):
    assert cl.ckd_a_stage(value) is None


def test_ckd_a_stage_text_series():
    out = cl.ckd_a_stage(pd.Series(["−", "±", "1+", None], dtype="str"))
    assert out.iloc[:3].tolist() == ["A1", "A2", "A3"]
    assert pd.isna(out.iloc[3])


@pytest.mark.parametrize("g, a, colour", [
    ("G1", "A1", "green"), ("G1", "A2", "yellow"), ("G1", "A3", "orange"),
    ("G2", "A1", "green"), ("G2", "A2", "yellow"), ("G2", "A3", "orange"),
    ("G3a", "A1", "yellow"), ("G3a", "A2", "orange"), ("G3a", "A3", "red"),
    ("G3b", "A1", "orange"), ("G3b", "A2", "red"), ("G3b", "A3", "red"),
    ("G4", "A1", "red"), ("G4", "A2", "red"), ("G4", "A3", "red"),
    ("G5", "A1", "red"), ("G5", "A2", "red"), ("G5", "A3", "red"),
    (None, "A1", None), ("G1", None, None), ("G9", "A1", None),
])
def test_ckd_risk_colour_table(g, a, colour):
    assert cl.ckd_risk_colour(g, a) == colour


def _contrast(fg: str, bg: str) -> float:
    def lum(h):
        rgb = [int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_ckd_colours_cover_levels_with_readable_text():
    assert set(cl.CKD_COLOURS) == {"green", "yellow", "orange", "red"}
    for level, fill in cl.CKD_COLOURS.items():
        assert _contrast(cl.CKD_TEXT_COLOURS[level], fill) >= 4.5, level


# ---------------------------------------------------------------------------------------------
# BMI helper (docs/rules.md §1.1)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("height, weight, expected", [
    (170.0, 72.25, 25.0), (170.0, 70.0, 24.2215), (160.0, 64.0, 25.0),
])
def test_bmi_from(height, weight, expected):
    assert cl.bmi_from(height, weight) == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("height, weight", [(NA, 60.0), (170.0, NA), (0.0, 60.0)])
def test_bmi_from_missing(height, weight):
    assert math.isnan(cl.bmi_from(height, weight))


# ---------------------------------------------------------------------------------------------
# メタボ判定 (docs/rules.md §2)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, expected", [
    # 2.1 waist by sex, with two risks present
    (dict(waist=85.0, sbp=130.0, tg=150.0), "該当"),
    (dict(waist=84.9, sbp=130.0, tg=150.0), "非該当"),
    (dict(sex=2, waist=90.0, sbp=130.0, tg=150.0), "該当"),
    (dict(sex=2, waist=89.9, sbp=130.0, tg=150.0), "非該当"),
    # 2.3 counts
    (dict(waist=85.0), "非該当"),
    (dict(waist=85.0, sbp=130.0), "予備群"),
    (dict(waist=85.0, sbp=130.0, hdl=39.0, fpg=110.0), "該当"),
    # ① glucose
    (dict(waist=85.0, fpg=110.0), "予備群"),
    (dict(waist=85.0, fpg=109.0), "非該当"),
    (dict(waist=85.0, fpg=NA, casual_glucose=110.0), "予備群"),
    (dict(waist=85.0, fpg=NA, casual_glucose=109.0, hba1c=6.5), "非該当"),  # HbA1c ignored
    (dict(waist=85.0, fpg=90.0, hba1c=6.5), "非該当"),                      # HbA1c ignored
    (dict(waist=85.0, fpg=NA, hba1c=6.0), "予備群"),
    (dict(waist=85.0, fpg=NA, hba1c=5.9), "非該当"),
    (dict(waist=85.0, med_glucose=True), "予備群"),
    # ② lipid
    (dict(waist=85.0, tg=149.0), "非該当"),
    (dict(waist=85.0, hdl=39.9), "予備群"),
    (dict(waist=85.0, hdl=40.0), "非該当"),
    (dict(waist=85.0, med_lipid=True), "予備群"),
    (dict(waist=85.0, tg=150.0, tg_fasting=False), "予備群"),   # default 150 also when casual
    # ③ blood pressure
    (dict(waist=85.0, sbp=129.0), "非該当"),
    (dict(waist=85.0, dbp=85.0), "予備群"),
    (dict(waist=85.0, dbp=84.0), "非該当"),
    (dict(waist=85.0, med_bp=True), "予備群"),
    (dict(waist=85.0, med_bp=True, med_lipid=True), "該当"),
    # missing risk items count as not present
    (dict(waist=85.0, sbp=NA, dbp=NA, tg=NA, hdl=NA, fpg=NA, hba1c=NA), "非該当"),
])
def test_metabolic_status(changes, expected):
    assert one(cl.metabolic_status, **changes) == expected


@pytest.mark.parametrize("changes", [dict(waist=NA, sbp=160.0, tg=300.0), dict(sex=NA, waist=100.0)])
def test_metabolic_status_undeterminable(changes):
    assert pd.isna(one(cl.metabolic_status, **changes))


def test_metabolic_status_casual_tg_parameter():
    df = kenshin(person(waist=85.0, tg=160.0, tg_fasting=False),
                 person(waist=85.0, tg=160.0, tg_fasting=True),
                 person(waist=85.0, tg=175.0, tg_fasting=False))
    assert cl.metabolic_status(df, casual_tg_threshold=175).tolist() == ["非該当", "予備群", "予備群"]
    assert cl.metabolic_status(df).tolist() == ["予備群", "予備群", "予備群"]


# ---------------------------------------------------------------------------------------------
# 階層化 (docs/rules.md §1)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes, young, old", [
    # (1) 腹囲: ≥2 risks → 積極的 (40–64) / 動機付け (65–74); 1 → 動機付け; 0 → 情報提供
    ({**WAIST_M, **R_BP, **R_LIPID}, "積極的支援", "動機付け支援"),
    ({**WAIST_M, **R_BP, **R_LIPID, **R_GLUCOSE}, "積極的支援", "動機付け支援"),
    ({**WAIST_M, **R_GLUCOSE}, "動機付け支援", "動機付け支援"),
    (WAIST_M, "情報提供", "情報提供"),
    # (2) BMI: ≥3 → 積極的 / 動機付け; 1–2 → 動機付け; 0 → 情報提供
    ({**BMI_ONLY, **R_BP, **R_LIPID, **R_GLUCOSE}, "積極的支援", "動機付け支援"),
    ({**BMI_ONLY, **R_BP, **R_LIPID}, "動機付け支援", "動機付け支援"),
    ({**BMI_ONLY, **R_LIPID}, "動機付け支援", "動機付け支援"),
    (BMI_ONLY, "情報提供", "情報提供"),
    # neither (1) nor (2) → 情報提供 whatever the risks
    ({"bmi": 24.9, **R_BP, **R_LIPID, **R_GLUCOSE}, "情報提供", "情報提供"),
])
@pytest.mark.parametrize("age_young, age_old", [(40, 74), (64, 65)])
def test_guidance_table(changes, young, old, age_young, age_old):
    df = kenshin(person(age=age_young, **changes), person(age=age_old, **changes))
    assert cl.guidance_level(df).tolist() == [young, old]


@pytest.mark.parametrize("changes, expected", [
    # step 1 waist by sex
    (dict(sex=2, waist=90.0, **R_BP, **R_LIPID), "積極的支援"),
    (dict(sex=2, waist=89.9, bmi=24.0, **R_BP, **R_LIPID), "情報提供"),
    (dict(sex=2, waist=89.9, bmi=25.0, **R_BP, **R_LIPID), "動機付け支援"),   # falls to group (2)
    (dict(waist=84.9, bmi=24.9, **R_BP, **R_LIPID, **R_GLUCOSE), "情報提供"),
    # ④ smoking counts only with one of ①–③
    (dict(**WAIST_M, smoking=True), "情報提供"),
    (dict(**WAIST_M, **R_BP, smoking=True), "積極的支援"),
    (dict(**BMI_ONLY, smoking=True), "情報提供"),
    (dict(**BMI_ONLY, **R_BP, **R_LIPID, smoking=True), "積極的支援"),
    # ① blood pressure thresholds
    (dict(**WAIST_M, **R_LIPID, sbp=129.0), "動機付け支援"),
    (dict(**WAIST_M, **R_LIPID, dbp=85.0), "積極的支援"),
    (dict(**WAIST_M, **R_LIPID, dbp=84.0), "動機付け支援"),
    # ② TG fasting 150 / non-fasting 175; HDL <40
    (dict(**WAIST_M, **R_BP, tg=149.0), "動機付け支援"),
    (dict(**WAIST_M, **R_BP, tg=150.0, tg_fasting=False), "動機付け支援"),
    (dict(**WAIST_M, **R_BP, tg=174.0, tg_fasting=False), "動機付け支援"),
    (dict(**WAIST_M, **R_BP, tg=175.0, tg_fasting=False), "積極的支援"),
    (dict(**WAIST_M, **R_BP, tg=150.0, tg_fasting=None), "積極的支援"),    # unknown → fasting
    (dict(**WAIST_M, **R_BP, hdl=39.0), "積極的支援"),
    (dict(**WAIST_M, **R_BP, hdl=40.0), "動機付け支援"),
    # ③ glucose priority 空腹時血糖 → HbA1c → 随時血糖
    (dict(**WAIST_M, **R_BP, fpg=99.0, hba1c=6.0), "動機付け支援"),        # fpg rules, HbA1c ignored
    (dict(**WAIST_M, **R_BP, fpg=100.0, hba1c=5.0), "積極的支援"),
    (dict(**WAIST_M, **R_BP, fpg=NA, hba1c=5.6), "積極的支援"),
    (dict(**WAIST_M, **R_BP, fpg=NA, hba1c=5.5, casual_glucose=150.0), "動機付け支援"),  # casual ignored
    (dict(**WAIST_M, **R_BP, fpg=NA, hba1c=NA, casual_glucose=100.0), "積極的支援"),
    (dict(**WAIST_M, **R_BP, fpg=NA, hba1c=NA, casual_glucose=99.0), "動機付け支援"),
    (dict(**WAIST_M, **R_BP, fpg=NA, hba1c=NA, casual_glucose=NA), "動機付け支援"),  # missing = absent
])
def test_guidance_rules(changes, expected):
    assert one(cl.guidance_level, **changes) == expected


@pytest.mark.parametrize("med", ["med_bp", "med_glucose", "med_lipid"])
def test_guidance_medication_is_fukuyakuchu(med):
    df = kenshin(person(**WAIST_M, **R_BP, **R_LIPID, **{med: True}),
                 person(**{med: True}),
                 person(waist=NA, bmi=NA, height=NA, **{med: True}))   # even when step 1 unknown
    assert cl.guidance_level(df).tolist() == ["服薬中", "服薬中", "服薬中"]


def test_guidance_medication_missing_is_not_fukuyakuchu():
    assert one(cl.guidance_level, **WAIST_M, **R_BP, **R_LIPID, med_bp=None) == "積極的支援"


def test_guidance_bmi_from_height_weight_when_bmi_missing():
    df = kenshin(person(waist=80.0, bmi=NA, height=170.0, weight=75.0, **R_BP),   # BMI 25.95
                 person(waist=80.0, bmi=NA, height=170.0, weight=70.0, **R_BP),   # BMI 24.22
                 person(waist=NA, bmi=NA, height=170.0, weight=75.0, **R_BP),
                 person(waist=80.0, bmi=NA, height=170.0, weight=72.2, **R_BP),   # 24.98 → 25.0
                 person(waist=80.0, bmi=NA, height=170.0, weight=72.0, **R_BP))   # 24.91 → 24.9
    assert cl.guidance_level(df).tolist() == ["動機付け支援", "情報提供", "動機付け支援",
                                              "動機付け支援", "情報提供"]


@pytest.mark.parametrize("changes", [
    dict(waist=NA, bmi=NA, height=NA, **R_BP),   # step 1 not determinable
    dict(age=39, **WAIST_M, **R_BP),             # outside 40–74
    dict(age=75, **WAIST_M, **R_BP),
    dict(age=NA, **WAIST_M, **R_BP),
])
def test_guidance_not_determinable(changes):
    assert pd.isna(one(cl.guidance_level, **changes))


# ---------------------------------------------------------------------------------------------
# 受診勧奨判定値・保健指導判定値 (docs/rules.md §3)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, at, below", [
    ("ref_bp", dict(sbp=140.0), dict(sbp=139.0)),
    ("ref_bp", dict(dbp=90.0), dict(dbp=89.0)),
    ("ref_lipid", dict(tg=300.0), dict(tg=299.0)),
    ("ref_lipid", dict(tg=300.0, tg_fasting=False), dict(tg=299.0, tg_fasting=False)),
    ("ref_lipid", dict(ldl=140.0), dict(ldl=139.0)),
    ("ref_lipid", dict(non_hdl=170.0), dict(non_hdl=169.0)),
    ("ref_glucose", dict(fpg=126.0), dict(fpg=125.0)),
    ("ref_glucose", dict(fpg=NA, casual_glucose=126.0), dict(fpg=NA, casual_glucose=125.0)),
    ("ref_glucose", dict(hba1c=6.5), dict(hba1c=6.4)),
    ("ref_liver", dict(ast=51.0), dict(ast=50.0)),
    ("ref_liver", dict(alt=51.0), dict(alt=50.0)),
    ("ref_liver", dict(ggt=101.0), dict(ggt=100.0)),
    ("ref_kidney", dict(egfr=44.99), dict(egfr=45.0)),
    ("ref_kidney", dict(creatinine=2.0), dict(creatinine=1.0)),     # age 50: 29.5713 / 63.1244
    ("ref_kidney", dict(urine_protein=2.0), dict(urine_protein=1.0)),
    ("ref_anemia", dict(hemoglobin=11.9), dict(hemoglobin=12.0)),
    ("ref_anemia", dict(sex=2, hemoglobin=10.9), dict(sex=2, hemoglobin=11.0)),
    ("ref_any", dict(sbp=140.0), dict(sbp=139.0)),
])
def test_referral_flags_boundaries(flag, at, below):
    flags = cl.referral_flags(kenshin(person(**at), person(**below)))
    assert flags[flag].tolist() == [True, False]
    assert flags["ref_any"].tolist() == [True, False]


def test_referral_flags_unmeasured_false_and_plain_bool():
    empty = {k: NA for k in ("sbp", "dbp", "tg", "ldl", "non_hdl", "fpg", "casual_glucose", "hba1c",
                             "ast", "alt", "ggt", "egfr", "creatinine", "urine_protein", "hemoglobin")}
    flags = cl.referral_flags(kenshin(person(**empty), person()))
    assert list(flags.columns) == ["ref_bp", "ref_lipid", "ref_glucose", "ref_liver", "ref_kidney",
                                   "ref_anemia", "ref_any"]
    assert all(flags[c].dtype == bool for c in flags.columns)
    assert not flags.to_numpy().any()


def test_referral_kidney_accepts_text_urine():
    df = kenshin(person(), person())
    df["urine_protein"] = pd.Series(["1+", "±"], dtype="str")
    assert cl.referral_flags(df)["ref_kidney"].tolist() == [True, False]


@pytest.mark.parametrize("flag, at, below", [
    ("hg_bp", dict(sbp=130.0), dict(sbp=129.0)),
    ("hg_bp", dict(dbp=85.0), dict(dbp=84.0)),
    ("hg_lipid", dict(tg=150.0), dict(tg=149.0)),
    ("hg_lipid", dict(tg=175.0, tg_fasting=False), dict(tg=174.0, tg_fasting=False)),
    ("hg_lipid", dict(hdl=39.0), dict(hdl=40.0)),
    ("hg_lipid", dict(ldl=120.0), dict(ldl=119.0)),
    ("hg_lipid", dict(non_hdl=150.0), dict(non_hdl=149.0)),
    ("hg_glucose", dict(fpg=100.0), dict(fpg=99.0)),
    ("hg_glucose", dict(fpg=NA, casual_glucose=100.0), dict(fpg=NA, casual_glucose=99.0)),
    ("hg_glucose", dict(hba1c=5.6), dict(hba1c=5.5)),
    ("hg_liver", dict(ast=31.0), dict(ast=30.0)),
    ("hg_liver", dict(alt=31.0), dict(alt=30.0)),
    ("hg_liver", dict(ggt=51.0), dict(ggt=50.0)),
    ("hg_kidney", dict(egfr=59.99), dict(egfr=60.0)),
    ("hg_kidney", dict(urine_protein=1.0), dict(urine_protein=0.0)),
    ("hg_anemia", dict(hemoglobin=12.9), dict(hemoglobin=13.0)),
    ("hg_anemia", dict(sex=2, hemoglobin=11.9), dict(sex=2, hemoglobin=12.0)),
])
def test_guidance_flags_boundaries(flag, at, below):
    flags = cl.guidance_flags(kenshin(person(**at), person(**below)))
    assert flags[flag].tolist() == [True, False]
    assert flags["hg_any"].tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# Poor control (docs/rules.md §3.1) and 糖尿病型 (docs/rules.md §5.1)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, at, below", [
    ("poor_hba1c8", dict(hba1c=8.0), dict(hba1c=7.9)),
    ("poor_bp160", dict(sbp=160.0), dict(sbp=159.0)),
    ("poor_bp160", dict(dbp=100.0), dict(dbp=99.0)),
])
def test_poor_control_boundaries(flag, at, below):
    flags = cl.poor_control(kenshin(person(**at), person(**below), person(hba1c=NA, sbp=NA, dbp=NA)))
    assert flags[flag].tolist() == [True, False, False]
    assert flags[flag].dtype == bool


@pytest.mark.parametrize("changes, expected", [
    (dict(fpg=126.0), True), (dict(fpg=125.0), False),
    (dict(fpg=NA, casual_glucose=126.0), True), (dict(fpg=NA, casual_glucose=125.0), False),
    (dict(hba1c=6.5), True), (dict(hba1c=6.4), False),
    (dict(fpg=NA, casual_glucose=NA, hba1c=NA), False),
])
def test_diabetes_type(changes, expected):
    assert bool(one(cl.diabetes_type, **changes)) is expected


# ---------------------------------------------------------------------------------------------
# derive_kenshin (docs/internal_api.md)
# ---------------------------------------------------------------------------------------------
def _derive_example() -> pd.DataFrame:
    df = kenshin(
        person(creatinine=1.0, age=60, egfr=70.0, urine_protein=1.0),          # 計算 59.9063, G3a A2
        person(creatinine=NA, egfr=44.0, urine_protein=2.0, **WAIST_M, **R_BP, **R_LIPID),  # 報告値
        person(creatinine=NA, egfr=NA, urine_protein=NA, med_bp=True, waist=NA),
        person(sex=2, creatinine=0.7, age=70, urine_protein=0.0, bmi=NA, height=160.0, weight=64.0),
    )
    df.index = [101, 102, 103, 104]
    return df


def test_derive_kenshin_columns_and_dtypes():
    out = cl.derive_kenshin(_derive_example())
    for col in cl.DERIVED_COLUMNS:
        assert col in out.columns
    assert list(out.index) == [101, 102, 103, 104]
    for col in ("ref_bp", "ref_lipid", "ref_glucose", "ref_liver", "ref_kidney", "ref_anemia",
                "ref_any", "hg_bp", "poor_hba1c8", "poor_bp160", "diabetes_type"):
        assert out[col].dtype == bool, col
    for col in ("egfr_source", "ckd_g", "ckd_a", "ckd_colour", "metabo", "hokenshido"):
        assert isinstance(out[col].dtype, pd.CategoricalDtype), col


def test_derive_kenshin_values():
    out = cl.derive_kenshin(_derive_example())
    assert out["egfr_calc"].tolist()[:2] == pytest.approx([59.9063, 44.0], abs=5e-5)
    assert out["egfr_calc"].iloc[3] == pytest.approx(62.5699, abs=5e-5)
    assert np.isnan(out["egfr_calc"].iloc[2])
    assert out["egfr_source"].tolist()[:2] == ["計算", "報告値"] and pd.isna(out["egfr_source"].iloc[2])
    assert out["ckd_g"].tolist()[:2] == ["G3a", "G3b"]
    assert out["ckd_a"].tolist()[:2] == ["A2", "A3"]
    assert out["ckd_colour"].tolist()[:2] == ["orange", "red"]
    assert pd.isna(out["ckd_colour"].iloc[2])
    assert out["ckd_colour"].iloc[3] == "green"                      # G2 A1
    assert out["bmi_calc"].tolist() == [22.0, 22.0, 22.0, 25.0]
    # row 104: computed BMI 25.0 (group (2)) but no risk → 情報提供
    assert out["hokenshido"].tolist() == ["情報提供", "積極的支援", "服薬中", "情報提供"]
    assert out["metabo"].iloc[1] == "該当" and pd.isna(out["metabo"].iloc[2])
    assert out["ref_kidney"].tolist() == [False, True, False, False]
    assert out["hg_bp"].tolist() == [False, True, False, False]


def test_derive_kenshin_reported_egfr_when_formula_undefined():
    out = cl.derive_kenshin(kenshin(person(age=17, creatinine=1.0, egfr=95.0)))
    assert out["egfr_calc"].iloc[0] == 95.0
    assert out["egfr_source"].iloc[0] == "報告値"


def test_derive_kenshin_is_rerunnable_and_consistent():
    df = _derive_example()
    once = cl.derive_kenshin(df)
    twice = cl.derive_kenshin(once)
    assert list(twice.columns) == list(once.columns)
    pd.testing.assert_frame_equal(once, twice)
    assert "hokenshido" not in df.columns                            # input left untouched
    assert (once["hokenshido"].astype(object).fillna("-")
            == cl.guidance_level(df).astype(object).fillna("-")).all()


def test_derive_kenshin_missing_optional_columns():
    df = pd.DataFrame({"sex": [1, 2], "age": [50, 70], "waist": [90.0, NA], "sbp": [150.0, NA]})
    out = cl.derive_kenshin(df)
    assert out["metabo"].iloc[0] == "予備群" and pd.isna(out["metabo"].iloc[1])
    assert out["ref_bp"].tolist() == [True, False]
    assert out["hokenshido"].iloc[0] == "動機付け支援"


def test_frame_rules_accept_nullable_dtypes_and_keep_index():
    df = kenshin(person(**WAIST_M, **R_BP, **R_LIPID), person(age=70, **WAIST_M, **R_BP, **R_LIPID),
                 person(**WAIST_M))
    df["age"] = pd.array([50, 70, None], dtype="Int64")
    df["sbp"] = df["sbp"].astype("Float64")
    df.index = ["a", "b", "c"]
    levels = cl.guidance_level(df)
    assert list(levels.index) == ["a", "b", "c"] and levels.name == "hokenshido"
    assert levels.iloc[:2].tolist() == ["積極的支援", "動機付け支援"] and pd.isna(levels.iloc[2])
    assert cl.metabolic_status(df).tolist() == ["該当", "該当", "非該当"]


# ---------------------------------------------------------------------------------------------
# derive_kenshin on a large random frame: stored dtypes, public functions, frozen counts
# ---------------------------------------------------------------------------------------------
def _random_kenshin(n: int = 20_000, seed: int = 20240401) -> pd.DataFrame:
    """Deterministic float64 frame: values on grids through every threshold, ~10–80 % missing,
    height ≤ 0, creatinine ≤ 0, age < 18, sex 3/missing, negative urine, flags with <NA>."""
    rng = np.random.default_rng(seed)

    def grid(lo, hi, step, p_missing):
        v = lo + step * rng.integers(0, round((hi - lo) / step) + 1, n)
        return np.where(rng.random(n) < p_missing, NA, np.round(v, 6))

    df = pd.DataFrame({
        "sex": rng.choice([1.0, 2.0, 3.0, NA], n, p=[0.47, 0.47, 0.02, 0.04]),
        "age": np.where(rng.random(n) < 0.03, NA, rng.integers(15, 80, n).astype(float)),
        "height": np.where(rng.random(n) < 0.05, rng.choice([0.0, -1.0], n), grid(140.0, 190.0, 0.5, 0.2)),
        "weight": grid(30.0, 110.0, 0.1, 0.2),
        "bmi": grid(17.0, 33.0, 0.1, 0.5), "waist": grid(75.0, 95.0, 0.5, 0.15),
        "sbp": grid(120.0, 165.0, 1.0, 0.1), "dbp": grid(75.0, 105.0, 1.0, 0.1),
        "tg": grid(140.0, 310.0, 5.0, 0.1), "hdl": grid(35.0, 45.0, 1.0, 0.1),
        "ldl": grid(115.0, 145.0, 1.0, 0.1), "non_hdl": grid(145.0, 175.0, 1.0, 0.3),
        "ast": grid(28.0, 53.0, 1.0, 0.1), "alt": grid(28.0, 53.0, 1.0, 0.1),
        "ggt": grid(48.0, 103.0, 1.0, 0.1), "fpg": grid(95.0, 130.0, 1.0, 0.4),
        "casual_glucose": grid(95.0, 130.0, 1.0, 0.8), "hba1c": grid(5.4, 8.2, 0.1, 0.3),
        "urine_protein": grid(-1.0, 4.0, 1.0, 0.1), "creatinine": grid(-0.1, 3.0, 0.01, 0.3),
        "egfr": grid(10.0, 95.0, 0.1, 0.5), "hemoglobin": grid(10.5, 13.5, 0.1, 0.1),
    })
    for col in BOOL_COLUMNS:
        df[col] = pd.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.3), dtype="boolean")
    return df


def _stored_compactly(df: pd.DataFrame) -> pd.DataFrame:
    """As a large export is held in memory: float32 measures, Int8 sex, Int16 age."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == np.float64 and col not in ("sex", "age"):
            out[col] = out[col].astype(np.float32)
    out["sex"] = out["sex"].astype("Int8")
    out["age"] = out["age"].astype("Int16")
    return out


def _as_float64(df: pd.DataFrame) -> pd.DataFrame:
    """The same values widened to float64 (exact), flags as object True/False/None."""
    out = df.copy()
    for col in out.columns:
        if col in BOOL_COLUMNS:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        else:
            out[col] = out[col].astype("float64")
    return out


def _label_counts(s: pd.Series) -> dict:
    return {("NA" if pd.isna(k) else k): int(v)
            for k, v in s.value_counts(dropna=False, sort=False).items()}


def test_derive_kenshin_random_frame_frozen_counts():
    """Counts frozen from the implementation before the 10M-row optimisation (same input)."""
    out = cl.derive_kenshin(_stored_compactly(_random_kenshin()))
    assert _label_counts(out["egfr_source"]) == {"計算": 11761, "報告値": 4079, "NA": 4160}
    assert _label_counts(out["ckd_g"]) == {"G1": 2732, "G2": 2632, "G3a": 1939, "G3b": 2895,
                                           "G4": 5078, "G5": 564, "NA": 4160}
    assert _label_counts(out["ckd_a"]) == {"A1": 2929, "A2": 3013, "A3": 8945, "NA": 5113}
    assert _label_counts(out["ckd_colour"]) == {"green": 791, "yellow": 1096, "orange": 3044,
                                                "red": 6886, "NA": 8183}
    assert _label_counts(out["metabo"]) == {"該当": 5879, "予備群": 268, "非該当": 9772, "NA": 4081}
    assert _label_counts(out["hokenshido"]) == {"積極的支援": 1383, "動機付け支援": 1018,
                                                "情報提供": 1534, "服薬中": 6361, "NA": 9704}
    flags = {c: int(out[c].sum()) for c in cl.DERIVED_COLUMNS if out[c].dtype == bool}
    assert flags == {"ref_bp": 14881, "ref_lipid": 6862, "ref_glucose": 9846, "ref_liver": 4770,
                     "ref_kidney": 13635, "ref_anemia": 5397, "ref_any": 19719, "hg_bp": 17730,
                     "poor_hba1c8": 1447, "poor_bp160": 5570, "diabetes_type": 9846}
    assert int(out["bmi_calc"].notna().sum()) == 16063
    assert int(out["egfr_calc"].notna().sum()) == 15840


def test_derive_kenshin_same_results_whatever_the_stored_dtype():
    """float32 / Int8 / Int16 / boolean storage gives exactly the results of the same values held
    as float64 and object flags (float32 5.6 is 5.5999999 either way)."""
    compact = _stored_compactly(_random_kenshin())
    derived = list(cl.DERIVED_COLUMNS)
    pd.testing.assert_frame_equal(cl.derive_kenshin(compact)[derived],
                                  cl.derive_kenshin(_as_float64(compact))[derived], check_exact=True)


def test_derive_kenshin_equals_public_functions_and_plain_formulas():
    """Each derived column equals the public rule functions on the float64 frame, and eGFR / BMI
    equal the formulas written out here on whole float64 arrays (bit for bit)."""
    compact = _stored_compactly(_random_kenshin())
    wide = _as_float64(compact)
    out = cl.derive_kenshin(compact)

    cr, age, sex = (wide[c].to_numpy() for c in ("creatinine", "age", "sex"))
    defined = (cr > 0) & (age >= 18) & ((sex == 1) | (sex == 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        calc = 194.0 * np.exp(-1.094 * np.log(np.where(defined, cr, NA))
                              - 0.287 * np.log(np.where(defined, age, NA)))
        h, w, bmi = (wide[c].to_numpy() for c in ("height", "weight", "bmi"))
        computed_bmi = np.round(w * 10000.0 / (np.where(h > 0, h, NA) ** 2), 1)
    calc = np.where(sex == 2, calc * 0.739, calc)
    egfr_expected = np.where(np.isnan(calc), wide["egfr"].to_numpy(), calc)
    np.testing.assert_array_equal(out["egfr_calc"].to_numpy(), egfr_expected)
    np.testing.assert_array_equal(out["bmi_calc"].to_numpy(), np.where(np.isnan(bmi), computed_bmi, bmi))
    source = np.where(~np.isnan(calc), "計算", np.where(wide["egfr"].notna(), "報告値", None))
    assert out["egfr_source"].astype(object).where(out["egfr_source"].notna(), None).tolist() \
        == source.tolist()

    def labels(s):
        return s.astype(object).where(s.notna(), None).tolist()

    g = cl.ckd_g_stage(pd.Series(egfr_expected))
    a = cl.ckd_a_stage(wide["urine_protein"])
    assert labels(out["ckd_g"]) == labels(g)
    assert labels(out["ckd_a"]) == labels(a)
    assert labels(out["ckd_colour"]) == labels(cl.ckd_risk_colour(g, a))
    assert labels(out["metabo"]) == labels(cl.metabolic_status(wide))
    assert labels(out["hokenshido"]) == labels(cl.guidance_level(wide))
    referral = cl.referral_flags(wide)
    for col in referral.columns:
        assert out[col].tolist() == referral[col].tolist(), col
    assert out["hg_bp"].tolist() == cl.guidance_flags(wide)["hg_bp"].tolist()
    for col in ("poor_hba1c8", "poor_bp160"):
        assert out[col].tolist() == cl.poor_control(wide)[col].tolist(), col
    assert out["diabetes_type"].tolist() == cl.diabetes_type(wide).tolist()


def test_float32_values_at_a_threshold_compare_as_their_float64_value():
    """float32(5.6) = 5.59999990463… < 5.6: not ≥5.6 (as after widening to float64); the next
    float32 up (5.60000038…) is. Same for 6.5 (exact in float32): 6.5 counts."""
    just_above = np.nextafter(np.float32(5.6), np.float32(10.0))
    df = kenshin(person(hba1c=5.6), person(hba1c=float(just_above)), person(hba1c=6.5),
                 person(hba1c=6.4))
    df["hba1c"] = df["hba1c"].astype(np.float32)
    flags = cl.guidance_flags(df)
    assert flags["hg_glucose"].tolist() == [False, True, True, True]
    assert cl.derive_kenshin(df)["diabetes_type"].tolist() == [False, False, True, False]


@pytest.mark.parametrize("t", [0.0, 1.0, 5.6, 6.0, 6.5, 8.0, 11.0, 12.0, 13.0, 18.0, 25.0, 64.0,
                               85.0, 90.0, 110.0, 150.0, 175.0])
def test_comparisons_in_stored_dtype_match_float64(t):
    """Every float32 and float16 value next to each threshold compares like its float64 value."""
    for dtype in (np.float32, np.float16):
        x = dtype(t)
        near = [x]
        for direction in (np.inf, -np.inf):
            v = x
            for _ in range(3):
                v = np.nextafter(v, dtype(direction))
                near.append(v)
        values = np.array(near + [np.nan, np.inf, -np.inf], dtype=dtype)
        wide = values.astype(np.float64)
        assert (cl._at_least(values, t) == (wide >= t)).all()
        assert (cl._below(values, t) == (wide < t)).all()
        assert (cl._at_most(values, t) == (wide <= t)).all()
        assert (cl._above(values, t) == (wide > t)).all()


def test_derive_kenshin_new_columns_own_their_memory():
    """Derived columns are built without copies, so each must be a separate array: writing to one
    column must not change another column or the input frame."""
    df = _stored_compactly(_random_kenshin(n=200))
    before = df.copy(deep=True)
    out = cl.derive_kenshin(df)
    arrays = {c: (out[c].cat.codes.to_numpy() if isinstance(out[c].dtype, pd.CategoricalDtype)
                  else out[c].to_numpy()) for c in cl.DERIVED_COLUMNS}
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.shares_memory(arrays[a], arrays[b]), (a, b)
    out.loc[out.index[0], "ref_glucose"] = not out["ref_glucose"].iloc[0]
    assert out["diabetes_type"].iloc[0] != out["ref_glucose"].iloc[0]
    pd.testing.assert_frame_equal(df, before)


def test_egfr_on_threads_equals_one_thread(monkeypatch):
    """The eGFR formula computed block by block on threads (`hsutils.core.parallel`, millions of rows)
    gives every value exactly as on one thread (small blocks here, four threads)."""
    from hsutils.core import parallel

    rng = np.random.default_rng(3)
    n = 10_001
    cr = (0.7 * np.exp(rng.standard_normal(n) * 0.3)).astype(np.float32)
    age = rng.integers(18, 100, n).astype(np.int16)
    female = rng.random(n) < 0.5
    one = cl._egfr_block(cr, age, female)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(parallel, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(parallel, "cores", lambda: 4)
    assert len(parallel.row_runs(n)) == 4
    threaded = cl._egfr_formula(cr, age, female)
    assert np.array_equal(threaded, one) and not np.isnan(one).any()
    assert threaded[0] == pytest.approx(194 * float(cr[0]) ** -1.094 * float(age[0]) ** -0.287
                                        * (0.739 if female[0] else 1.0), rel=1e-12)

"""法定報告 集計情報 (hsutils.patterns.hotei): hand-made cohorts with hand-worked counts (docs/hotei.md)."""
import numpy as np
import pandas as pd
import pytest

from hsutils.analysis import indicators
from hsutils.patterns import hotei
from hsutils.core.schema import age_band

COLS = ["person_id", "fy", "muni_code", "sex", "age", "full_year", "has_kenshin", "metabo", "hokenshido",
        "guidance_started", "guidance_completed", "med_bp", "med_lipid", "med_glucose"]


def _row(pid, fy, metabo=None, hok=None, *, muni="17201", sex=1, age=55, full_year=True, kenshin=True,
         started=False, completed=False, meds=(False, False, False)):
    if not kenshin:
        metabo = hok = None
    return [pid, fy, muni, sex, age, full_year, kenshin, metabo, hok, started, completed, *meds]


def _frame(rows):
    py = pd.DataFrame(rows, columns=COLS)
    py["insurance"] = "国保"
    py["excluded_statutory"] = False
    py["age_band"] = age_band(py["age"].to_numpy())
    py["metabo"] = py["metabo"].astype(object)
    py["hokenshido"] = py["hokenshido"].astype(object)
    return py


@pytest.fixture
def cohort():
    """Two fiscal years; expected figures for 17201 in 2024 worked by hand in each comment."""
    rows = [
        # A: 該当 → 予備群 (block 15: in, 16: yes)
        _row("A", 2023, "該当", "積極的支援"), _row("A", 2024, "予備群", "動機付け支援"),
        # B: 該当 → 非該当 (15: in, 18: yes)
        _row("B", 2023, "該当", "積極的支援", sex=2, age=62), _row("B", 2024, "非該当", "情報提供", sex=2, age=63),
        # C: 該当, skipped the 健診 this year → not in any cohort
        _row("C", 2023, "該当", "積極的支援"), _row("C", 2024, kenshin=False),
        # D: 予備群 → 非該当 (20: in, 21: yes)
        _row("D", 2023, "予備群", "動機付け支援", age=70), _row("D", 2024, "非該当", "情報提供", age=71),
        # E: 予備群 → 該当 (20: in, 21: no)
        _row("E", 2023, "予備群", "動機付け支援"), _row("E", 2024, "該当", "動機付け支援"),
        # F: 該当 last year but joined mid-year (not 評価対象 last year) → not in the cohort
        _row("F", 2023, "該当", "積極的支援", full_year=False), _row("F", 2024, "非該当", "情報提供"),
        # G: 積極的支援 completer → 服薬中 this year (23: in, 24: yes, 26: yes)
        _row("G", 2023, "非該当", "積極的支援", started=True, completed=True),
        _row("G", 2024, "非該当", "服薬中", meds=(True, False, False)),
        # H: 動機付け支援 completer → still 動機付け支援 (23: in, 24: no)
        _row("H", 2023, "非該当", "動機付け支援", sex=2, started=True, completed=True),
        _row("H", 2024, "非該当", "動機付け支援", sex=2),
        # I: a completer who was not a 階層化 target → not in the 23 cohort
        _row("I", 2023, "非該当", "情報提供", started=True, completed=True), _row("I", 2024, "非該当", "情報提供"),
        # J: 服薬中 last year and 該当 (medication counts as a risk) → 15: in; still 該当
        _row("J", 2023, "該当", "服薬中", meds=(True, True, False)),
        _row("J", 2024, "該当", "服薬中", meds=(True, True, True)),
        # K: completer who skipped this year → not in 23
        _row("K", 2023, "非該当", "積極的支援", started=True, completed=True), _row("K", 2024, kenshin=False),
        # L: 該当 last year in another municipality (another 保険者) → not in 17201's cohort
        _row("L", 2023, "該当", "積極的支援", muni="17202"), _row("L", 2024, "非該当", "情報提供"),
        # N: 該当 last year, 判定不能 this year (no waist, no BMI) → not in the cohort (status unknown)
        _row("N", 2023, "該当", "積極的支援"), _row("N", 2024, None, None),
        # M: started 動機付け支援 this year, not completed
        _row("M", 2024, "非該当", "動機付け支援", started=True),
    ]
    return _frame(rows)


def _cell(t, area="17201", fy=2024, sex="計", band="計"):
    r = t[(t["area_code"] == area) & (t["fy"] == fy) & (t["sex"] == sex) & (t["age_band"] == band)]
    assert len(r) == 1
    return r.iloc[0]


def test_reduction_blocks_hand_worked(cohort):
    t = hotei.hotei_table(cohort)
    r = _cell(t)
    # 15: A, B, J (C skipped, F not 評価対象 last year, L at another 保険者, N 判定不能 this year); 16: A; 18: B
    assert (r["red_metabo_cohort"], r["red_metabo_to_yobi"], r["red_metabo_out"]) == (3, 1, 1)
    assert r["red_metabo_to_yobi_pct"] == pytest.approx(100 / 3)
    assert r["red_metabo_out_pct"] == pytest.approx(100 / 3)
    # 20: D, E; 21: D
    assert (r["red_yobi_cohort"], r["red_yobi_out"], r["red_yobi_out_pct"]) == (2, 1, 50.0)
    # 23: G, H (I was not a target, K skipped); 24: G (服薬中), 26: G
    assert (r["red_hs_cohort"], r["red_hs_out"], r["red_hs_out_med"], r["red_hs_out_pct"]) == (2, 1, 1, 50.0)


def test_population_and_guidance_counts(cohort):
    r = _cell(hotei.hotei_table(cohort))
    # 2024 rows of 17201: A … N = 14, all full-year 40–74 → 対象者 14; C, K skipped → 12 (N counts: 判定不能
    # is still a 評価対象者)
    assert (r["target"], r["examinees"], r["evaluable"]) == (14, 12, 12)
    assert r["kenshin_rate"] == pytest.approx(12 / 14 * 100)
    assert (r["metabo"], r["metabo_yobi"]) == (2, 1)          # E, J / A
    assert (r["med_bp"], r["med_lipid"], r["med_glucose"]) == (2, 1, 1)  # G, J / J / J
    assert (r["hs_sekkyoku_target"], r["hs_douki_target"], r["hs_target"]) == (0, 4, 4)  # A E H M
    assert (r["hs_started"], r["hs_completed"]) == (1, 0)     # M started, nobody completed in 2024
    assert r["hs_med_excluded"] == 2                          # G, J
    assert r["hs_target_pct"] == pytest.approx(4 / 12 * 100)
    assert np.isnan(r["hs_sekkyoku_rate"])                    # no 積極的支援 target: no rate
    r23 = _cell(hotei.hotei_table(cohort), fy=2023)
    # 2023: 積極的支援 A B C G K N (F not 対象者, L elsewhere) → 6, completed G K → 2; 動機付け D E H → 3, H
    # completed; I completed without being a target → not counted. 実施率 (2 + 1) / (6 + 3)
    assert (r23["hs_sekkyoku_target"], r23["hs_sekkyoku_completed"]) == (6, 2)
    assert (r23["hs_douki_target"], r23["hs_douki_completed"], r23["hs_rate"]) == (3, 1, pytest.approx(3 / 9 * 100))
    assert r23["red_metabo_cohort"] == 0                      # no year before 2023


def test_totals_equal_sums_of_bands_and_sexes(cohort):
    t = hotei.hotei_table(cohort)
    for (fy, area), g in t.groupby(["fy", "area_code"]):
        total = g[(g["sex"] == "計") & (g["age_band"] == "計")][hotei.COUNT_IDS].iloc[0]
        parts = g[(g["sex"] != "計") & (g["age_band"] != "計")][hotei.COUNT_IDS].sum()
        by_sex = g[(g["sex"] != "計") & (g["age_band"] == "計")][hotei.COUNT_IDS].sum()
        by_band = g[(g["sex"] == "計") & (g["age_band"] != "計")][hotei.COUNT_IDS].sum()
        assert (total == parts).all() and (total == by_sex).all() and (total == by_band).all()
    # the prefecture is the sum of its municipalities
    muni = t[(t["level"] == hotei.LEVEL_MUNI) & (t["sex"] == "計") & (t["age_band"] == "計")]
    pref = t[(t["level"] == hotei.LEVEL_PREF) & (t["sex"] == "計") & (t["age_band"] == "計")]
    for fy in (2023, 2024):
        assert (muni[muni["fy"] == fy][hotei.COUNT_IDS].sum().to_numpy()
                == pref[pref["fy"] == fy][hotei.COUNT_IDS].iloc[0].to_numpy()).all()
    # every 40–74 band is present for each sex, with zeros where nobody is
    g = t[(t["area_code"] == "17202") & (t["fy"] == 2023)]
    assert len(g) == 3 * 8


def test_evaluation_sheet_reduction_uses_the_same_definition(cohort):
    reg = indicators.REGISTRY
    at = (cohort["fy"] == 2024).to_numpy() & (cohort["muni_code"] == "17201").to_numpy()
    met = reg["metabo_reduction"]
    # (18 + 21) / (15 + 20) = (1 + 1) / (3 + 2)
    assert (met.numerator(cohort)[at].sum(), met.denominator(cohort)[at].sum()) == (2, 5)
    hok = reg["hokenshido_reduction"]
    assert (hok.numerator(cohort)[at].sum(), hok.denominator(cohort)[at].sum()) == (1, 2)


def test_committee_table_suppresses_small_counts_and_their_rates(cohort):
    c = hotei.committee_table(hotei.hotei_table(cohort))
    r = _cell(c)
    assert r["red_metabo_cohort"] == "‐" and r["red_metabo_out_pct"] == "‐"
    assert r["hs_sekkyoku_target"] == 0                       # 0 is not a small count


def _hotei_rows(targets: dict) -> pd.DataFrame:
    """A one-area, one-year table: `targets` maps (sex, age band) to 特定健康診査対象者数, every
    other item 0 (rates NaN)."""
    rows = []
    for (sex, band), n in targets.items():
        row = {"fy": 2022, "area_code": "17461", "area_name": "穴水町", "level": "市町村", "sex": sex, "age_band": band}
        row.update({it.id: (0.0 if it.unit == "人" else np.nan) for it in hotei.ITEMS})
        row["target"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def test_committee_table_hides_the_complement_through_the_sex_margin():
    # 穴水町 R4 60-64歳 (the demo case that leaked): 計 17 = 女 10 + 男 7; showing 計 and 女 gave 男 = 7
    t = _hotei_rows({("男", "60-64"): 7, ("女", "60-64"): 10, ("計", "60-64"): 17,
                     ("男", "計"): 7, ("女", "計"): 10, ("計", "計"): 17})
    c = hotei.committee_table(t).set_index(["sex", "age_band"])["target"]
    assert c[("男", "60-64")] == "‐"
    # the complement: the smallest other part of 計 60-64 (女 10) — and 女 計 likewise
    assert c[("女", "60-64")] == "‐" and c[("女", "計")] == "‐"
    assert c[("計", "60-64")] == 17 and c[("計", "計")] == 17   # two hidden parts of 17: no single count recoverable


def test_committee_table_hides_the_complement_through_the_guidance_item_sum():
    t = _hotei_rows({("計", "計"): 100})
    t[["hs_sekkyoku_target", "hs_douki_target", "hs_target"]] = [4, 20, 24]
    c = hotei.committee_table(t).iloc[0]
    # 積極的 4 hidden; 特定保健指導 24 shown would give it back (24 − 20): 動機付け is hidden too
    assert c["hs_sekkyoku_target"] == "‐" and c["hs_douki_target"] == "‐" and c["hs_target"] == 24


def test_write_hotei_csv_and_a4_landscape_xlsx(cohort, tmp_path):
    from openpyxl import load_workbook

    t = hotei.hotei_table(cohort, fiscal_years=[2024], muni_codes=["17201"])
    csv, xlsx = hotei.write_hotei(hotei.committee_table(t), tmp_path / "hotei")
    head = pd.read_csv(csv, encoding="utf-8-sig", nrows=1)
    assert "15.昨年度の内臓脂肪症候群該当者の数（人）" in head.columns
    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["17201_2024", "17_2024"]
    ws = wb["17201_2024"]
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == int(ws.PAPERSIZE_A4)
    assert [c.value for c in ws[3]][:5] == ["性別", "No", "区分", "項目", "単位"]
    assert ws.cell(row=4 + 14, column=4).value == "昨年度の内臓脂肪症候群該当者の数"


def test_prefecture_notebook_gets_the_prefecture_form_only(cohort):
    t = hotei.hotei_table(cohort, muni_codes=[], prefecture=True)
    assert set(t["area_code"]) == {"17"} and set(t["level"]) == {hotei.LEVEL_PREF}
    form = hotei.form_layout(t, "17", 2024)
    assert len(form) == 3 * len(hotei.ITEMS)
    total = form[form["性別"] == "合計"].set_index("No")
    assert total.loc[1, "合計"] == 14                         # 2024: A … N, all in 17201
    assert total.loc[15, "合計"] == 3                         # the prefecture sums the municipal cohorts

"""Tests of hsutils.patterns.evaluation (notebook 05: evaluation sheet, 実施率 gaps, 特定保健指導の効果).

Expected values are worked by hand (or taken from the literature: Newcombe 1998, Table II) and
written as literals. The privacy tests run the notebook's library functions on the session's demo
data (root conftest.py) and check the committee tables for counts 1–9 and person_ids (docs/design.md §6).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from hsutils.patterns import evaluation as ev
from hsutils.publish import plots, privacy
from hsutils.core.errors import ParameterError


# ---------------------------------------------------------------------------------------------
# judgement 改善 / 変化なし / 悪化 (docs/design.md §5)
# ---------------------------------------------------------------------------------------------
def test_change_judgement_newcombe_example_and_polarity():
    # Newcombe (1998) Table II example: 56/70 − 48/80 = 0.2, method 10 interval 0.0524 to 0.3339
    out = ev.change_between_years([48, 48, 48], [80, 80, 80], [56, 56, 56], [70, 70, 70],
                                  ["higher_better", "lower_better", None])
    assert out["diff"].tolist() == pytest.approx([20.0, 20.0, 20.0])
    assert out["lower"].iloc[0] == pytest.approx(5.24, abs=0.01)
    assert out["upper"].iloc[0] == pytest.approx(33.39, abs=0.01)
    # the interval is above 0: an increase = 改善 when higher is better, 悪化 when lower is better
    assert out["judgement"].tolist() == ["改善", "悪化", "増加"]


def test_change_judgement_interval_straddling_zero_is_no_change():
    # 10.0 % -> 11.0 % of 1,000: difference +1.0 point, the interval contains 0
    out = ev.change_between_years(100, 1000, 110, 1000, "higher_better")
    assert out["diff"].iloc[0] == pytest.approx(1.0)
    assert out["lower"].iloc[0] < 0 < out["upper"].iloc[0]
    assert out["judgement"].iloc[0] == "変化なし"


def test_change_judgement_decrease_lower_better_is_improvement_and_missing_is_nan():
    # 20 % -> 10 % of 1,000: −10 points, clearly below 0
    out = ev.change_between_years([200, 0], [1000, 0], [100, 5], [1000, 10], ["lower_better", "lower_better"])
    assert out["diff"].iloc[0] == pytest.approx(-10.0)
    assert out["judgement"].iloc[0] == "改善"
    assert pd.isna(out["judgement"].iloc[1])  # baseline denominator 0: no judgement


# ---------------------------------------------------------------------------------------------
# 減少率 (docs/rules.md §7.3, §7.4)
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# achievement (%)
# ---------------------------------------------------------------------------------------------
def test_achievement_ratio_and_progress_hand_worked():
    got = ev.achievement_percent(
        baseline=[30.0, 2.0, 2.0, 40.0],
        current=[45.0, 1.5, 2.5, 48.0],
        target=[60.0, 1.0, 1.0, 60.0],
        method=["ratio", "progress", "progress", "progress"],
        polarity=["higher_better", "lower_better", "lower_better", "higher_better"])
    # 45/60 = 75 %; (1.5−2)/(1−2) = 50 %; (2.5−2)/(1−2) = −50 %; (48−40)/(60−40) = 40 %
    assert got.tolist() == pytest.approx([75.0, 50.0, -50.0, 40.0])


def test_achievement_edge_cases():
    got = ev.achievement_percent(
        baseline=[2.0, 2.0, 30.0, 0.9, 30.0, np.nan],
        current=[1.5, 1.5, 45.0, 1.6, np.nan, 1.0],
        target=[2.0, np.nan, 0.0, 1.0, 60.0, 0.5],
        method=["progress", "progress", "ratio", "progress", "ratio", "progress"],
        polarity=["lower_better"] * 4 + ["higher_better", "lower_better"])
    # target = baseline; missing target; target 0 for a ratio; baseline already met the target
    # (0.9 ≤ 1.0: a worsening to 1.6 must not read as 1,100 %); missing current; missing baseline
    assert np.isnan(got).all()
    notes = ev.achievement_note([2.0, 0.9, 2.0], [2.0, 1.0, np.nan], ["progress"] * 3, ["lower_better"] * 3)
    assert notes.tolist() == ["目標値がベースラインと同じため達成率は算出しない",
                              "ベースラインで目標に達していたため達成率は算出しない", "目標値なし"]


def test_default_achievement_method_by_direction():
    assert ev.default_achievement_method(["higher_better", "lower_better", None]).tolist() == [
        "ratio", "progress", "progress"]


# ---------------------------------------------------------------------------------------------
# difference-in-differences (特定保健指導の効果)
# ---------------------------------------------------------------------------------------------
def _hand_person_year() -> pd.DataFrame:
    """Ten persons over FY2022–2023 (国保, 50 years old, all year)."""
    ids = [f"T{k:02d}" for k in range(1, 11)]
    y22 = pd.DataFrame({
        "person_id": ids, "fy": 2022,
        # P1–P3 completed; P4–P7 not started; P8 started only; P9 no checkup next year; P10 not a target
        "guidance_target": [True] * 9 + [False],
        "guidance_started": [True, True, True, False, False, False, False, True, False, False],
        "guidance_completed": [True, True, True, False, False, False, False, False, False, False],
        "weight": [70.0, 80.0, 90.0, 60.0, 65.0, 70.0, 75.0, 50.0, 55.0, 60.0],
        "metabo": ["該当", "予備群", "非該当", "該当", "該当", "予備群", "非該当", "該当", "該当", "非該当"],
        "hokenshido": ["積極的支援"] * 9 + ["情報提供"],
    })
    y23 = pd.DataFrame({
        "person_id": ids, "fy": 2023,
        "guidance_target": [False, True, False, True, False, True, False, True, True, False],
        "guidance_started": False, "guidance_completed": False,
        "weight": [68.0, 76.0, 87.0, 60.0, 66.0, 69.0, 75.0, 50.0, np.nan, 60.0],
        "metabo": ["非該当", "予備群", "非該当", "該当", "非該当", "予備群", "非該当", "該当", None, "非該当"],
        "hokenshido": ["情報提供", "動機付け支援", "服薬中", "積極的支援", "情報提供", "動機付け支援", "情報提供",
                       "積極的支援", None, "情報提供"],
    })
    py = pd.concat([y22, y23], ignore_index=True)
    py["has_kenshin"] = py["hokenshido"].notna()
    for m in ("waist", "hba1c", "sbp", "tg"):
        py[m] = py["weight"]
    py = py.assign(muni_code="99999", insurance="国保", age=50, full_year=True, excluded_statutory=False)
    return py


def test_guidance_pairs_groups_and_did_hand_worked():
    pairs = ev.guidance_pairs(_hand_person_year())
    # P8 (started only), P9 (no checkup in t+1) and P10 (not a target) are left out
    assert sorted(pairs["person_id"]) == [f"T{k:02d}" for k in range(1, 8)]
    assert (pairs["group"] == ev.GROUP_PARTICIPANT).sum() == 3
    effect = ev.guidance_effect(pairs, suppress_threshold=1).set_index("項目")
    w = effect.loc["体重の変化"]
    assert (w["参加者数"], w["非参加者数"]) == (3, 4)
    assert w["参加者の平均変化・割合"] == pytest.approx(-3.0)
    assert w["非参加者の平均変化・割合"] == pytest.approx(0.0)
    assert w["差（参加者−非参加者）"] == pytest.approx(-3.0)
    assert (w["差 下限"], w["差 上限"]) == pytest.approx((-4.99225, -1.00775), abs=1e-4)
    assert w["判定"] == "改善"
    # no longer a target next year: participants P1 (情報提供), P3 (服薬中) no longer targets = 2/3;
    # non-participants P5, P7 = 2/4
    h = effect.loc[ev.EFFECT_NOT_TARGET]
    assert (h["参加者 該当数"], h["参加者数"], h["非参加者 該当数"], h["非参加者数"]) == (2, 3, 2, 4)
    assert h["参加者の平均変化・割合"] == pytest.approx(200 / 3)
    assert h["非参加者の平均変化・割合"] == pytest.approx(50.0)
    assert h["差（参加者−非参加者）"] == pytest.approx(200 / 3 - 50.0)
    # メタボ 非該当 next year: participants 該当/予備群 P1, P2 -> P1 非該当 = 1/2; others P4, P5, P6 -> P5 = 1/3
    m = effect.loc[ev.EFFECT_METABO_OUT]
    assert (m["参加者 該当数"], m["参加者数"], m["非参加者 該当数"], m["非参加者数"]) == (1, 2, 1, 3)


def test_guidance_effect_small_groups_are_suppressed():
    pairs = ev.guidance_pairs(_hand_person_year())
    effect = ev.guidance_effect(pairs, suppress_threshold=10)
    assert (effect["参加者数"] == privacy.SUPPRESSION_MARK).all()
    assert (effect["差（参加者−非参加者）"] == privacy.SUPPRESSION_MARK).all()
    counts = ev.pair_counts(pairs, suppress_threshold=10)
    privacy.assert_no_small_counts(counts, ["参加者数", "非参加者数"])


# ---------------------------------------------------------------------------------------------
# targets file and years
# ---------------------------------------------------------------------------------------------
def test_load_demo_targets_and_municipal_override():
    default = ev.load_targets(None, "17201")
    assert default.targets["kenshin_rate"] == 60.0 and default.targets["hokenshido_rate"] == 60.0
    assert set(default.qualitative["category"]) <= {"ストラクチャー", "プロセス"}
    assert ev.load_targets(None, "17211").targets["hokenshido_rate"] == 65.0  # by_municipality


def test_targets_errors_are_japanese():
    with pytest.raises(ParameterError, match="指標一覧にありません"):
        ev.parse_targets({"targets": {"no_such_indicator": 10}})
    with pytest.raises(ParameterError, match="0〜100"):
        ev.parse_targets({"targets": {"kenshin_rate": 160}})
    with pytest.raises(ParameterError, match="区分"):
        ev.parse_targets({"qualitative": [{"category": "その他", "item": "x"}]})


def test_resolve_years_defaults_and_errors():
    assert ev.resolve_years([2024, 2022, 2023]) == (2022, 2024)
    assert ev.resolve_years([2022, 2023, 2024], 2023, None) == (2023, 2024)
    with pytest.raises(ParameterError, match="より前"):
        ev.resolve_years([2022, 2023, 2024], 2024, 2024)
    with pytest.raises(ParameterError, match="データがありません"):
        ev.resolve_years([2022, 2023, 2024], 2019, None)


# ---------------------------------------------------------------------------------------------
# on the demo data: sheet, xlsx, privacy
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kanazawa(prepared):
    plan = ev.load_targets(None, "17201")
    base, last = ev.resolve_years(prepared.fiscal_years)
    sheet = ev.evaluation_sheet(prepared, "17201", plan, base, last)
    return plan, base, last, sheet


def test_sheet_has_every_common_indicator_and_categories(kanazawa):
    _, _, _, sheet = kanazawa
    assert set(ev.COMMON_INDICATORS) <= set(sheet["指標ID"].dropna())
    assert list(dict.fromkeys(sheet["区分"])) == ["ストラクチャー", "プロセス", "アウトプット", "アウトカム"]
    row = sheet.set_index("指標ID").loc["kenshin_rate"]
    assert row["区分"] == "アウトプット" and row["方向"] == "高いほど良い" and row["目標値"] == 60.0
    assert row["判定"] in ("改善", "変化なし", "悪化", privacy.SUPPRESSION_MARK)
    # 減少率 need the previous year: their baseline is the second year
    assert sheet.set_index("指標ID").loc["metabo_reduction", "ベースライン年度"] == "R5年度"


def test_sheet_counts_equal_the_hotei_table(kanazawa, prepared):
    """The sheet's 減少率, 実施率 分子/分母 are the 法定報告 table's 計 cells (one definition:
    hotei.reduction_flags, docs/hotei.md §4.4, §5.3; docs/rules.md §7.1–§7.4)."""
    from hsutils.patterns import hotei

    _, base, last, sheet = kanazawa
    t = hotei.hotei_table(prepared.person_year, prepared.municipalities, muni_codes=["17201"], prefecture=False)
    tot = t[(t["sex"] == hotei.TOTAL) & (t["age_band"] == hotei.TOTAL)].set_index("fy")
    row = sheet.set_index("指標ID")
    expected = {
        "metabo_reduction": (tot["red_metabo_out"] + tot["red_yobi_out"], tot["red_metabo_cohort"] + tot["red_yobi_cohort"]),
        "hokenshido_reduction": (tot["red_hs_out"], tot["red_hs_cohort"]),
        "kenshin_rate": (tot["examinees"], tot["target"]),
        "hokenshido_rate": (tot["hs_completed"], tot["hs_target"]),
    }
    checked = 0
    for ind, (num, den) in expected.items():
        for fy in range(base, last + 1):
            lab = ev.fy_short(fy)
            got_n, got_d = row.at[ind, f"{lab} 分子"], row.at[ind, f"{lab} 分母"]
            if ind.endswith("reduction") and fy == min(prepared.fiscal_years):
                assert (pd.isna(got_d) or got_d == 0) and int(den[fy]) == 0   # no year before: no cohort
                continue
            for got, want in ((got_n, int(num[fy])), (got_d, int(den[fy]))):
                if got == privacy.SUPPRESSION_MARK:   # hidden in the sheet: a count 1–9 in the table too
                    assert 0 < want < privacy.DEFAULT_THRESHOLD, (ind, fy)
                else:
                    assert int(got) == want, (ind, fy)
                    checked += 1
    assert checked >= 8


def test_sheet_xlsx_opens_with_japanese_headers_and_landscape(kanazawa, tmp_path):
    _, _, _, sheet = kanazawa
    path = ev.write_sheet_xlsx(ev.sheet_for_print(sheet), tmp_path / "evaluation_sheet.xlsx", "評価シート テスト",
                               plots.footer("デモ", 2024, "国保 40–74歳"))
    wb = load_workbook(path)
    ws = wb["評価シート"]
    headers = [c.value for c in ws[1]]
    for h in ("区分", "指標", "目標値", "判定", "達成率（%）", "県の値（評価年度）"):
        assert h in headers
    assert ws.page_setup.orientation == "landscape"
    assert int(ws.page_setup.paperSize) == 9  # A4
    assert int(ws.page_setup.fitToWidth) == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows.replace("$", "") == "1:1"
    assert "注記" in wb.sheetnames


@pytest.mark.parametrize("muni", ["17201", "17324", "17"])
def test_committee_tables_have_no_small_counts_or_person_ids(prepared, muni):
    plan = ev.load_targets(None, muni)
    base, last = ev.resolve_years(prepared.fiscal_years)
    ids = prepared.person_year["person_id"]
    sheet = ev.evaluation_sheet(prepared, muni, plan, base, last)
    count_cols = [c for c in sheet.columns if c.endswith((" 分子", " 分母"))]
    privacy.assert_no_small_counts(sheet, count_cols)
    printed = ev.sheet_for_print(sheet)
    part = ev.participation_by_sex_age(prepared, muni, prepared.fiscal_years, plan.targets)
    privacy.assert_no_small_counts(part, ["対象者数", "実施者数", "目標までの不足人数"])
    pairs = ev.guidance_pairs(prepared.person_year, muni)
    effect = ev.guidance_effect(pairs)
    privacy.assert_no_small_counts(effect, ev.EFFECT_COUNT_COLUMNS)
    counts = ev.pair_counts(pairs)
    privacy.assert_no_small_counts(counts, ["参加者数", "非参加者数"])
    trends = privacy.suppress_table(ev.outcome_trends(prepared, muni, ["hba1c8", "hg_bp"]), ["分子", "分母"],
                                    derived_cols=ev.TREND_DERIVED)
    privacy.assert_no_small_counts(trends, ["分子", "分母"])
    one = ev.change_for_indicator(prepared, muni, "hba1c8", base, last)
    privacy.assert_no_small_counts(one, [c for c in one.columns if c.endswith((" 分子", " 分母"))])
    privacy.assert_no_person_ids([sheet, printed, part, effect, counts, trends, one], ids)
    # derived values hidden with their counts: a value is shown only where its counts are
    for col in count_cols:
        hidden = sheet[col] == privacy.SUPPRESSION_MARK
        value_col = col.rsplit(" ", 1)[0] + " 値"
        assert (sheet.loc[hidden, value_col] == privacy.SUPPRESSION_MARK).all()


def test_participation_secondary_suppression(prepared):
    """Within an indicator × year the sex × age cells add up to the total on the sheet: a single
    hidden cell could be recovered by subtraction, so never exactly one is hidden (docs/rules.md §9)."""
    part = ev.participation_by_sex_age(prepared, "17201", prepared.fiscal_years)
    for col in ("実施者数", "対象者数"):
        hidden = (part[col] == privacy.SUPPRESSION_MARK).groupby([part["指標ID"], part["年度"]]).sum()
        assert not (hidden == 1).any(), hidden[hidden == 1]


def test_participation_shortfall_hand_worked():
    # one stratum: 100 対象者, 45 受診者, target 60 % -> 60 needed -> 15 short; 12.5 % -> ceil
    strata = pd.DataFrame({
        "fy": [2024, 2024], "muni_code": ["99999", "99999"], "district_code": ["", ""], "sex": [1, 2],
        "age_band": ["40-44", "40-44"], "indicator_id": ["kenshin_rate", "kenshin_rate"],
        "numerator": [45, 30], "denominator": [100, 51]})

    class P:  # the part of pipeline.Prepared the function uses
        pass

    p = P()
    p.strata = strata
    out = ev.participation_by_sex_age(p, "99999", [2024], {"kenshin_rate": 60.0})
    assert out["目標までの不足人数"].tolist() == [15, ev.privacy.SUPPRESSION_MARK]  # ceil(30.6) − 30 = 1 -> hidden
    assert out["目標との差（ポイント）"].iloc[0] == pytest.approx(15.0)
    assert out["性別"].tolist() == ["男", "女"] and out["年齢階級"].iloc[0] == "40–44歳"


def test_summary_figure_lists_improved_and_worsened():
    sheet = pd.DataFrame({
        "種別": ["共通評価指標"] * 3, "指標": ["特定健診実施率", "HbA1c 8.0%以上", "血圧 保健指導判定値以上"],
        "ベースライン年度": ["R4年度"] * 3, "ベースライン値": [30.0, 2.0, 40.0], "評価年度値": [40.0, 1.0, 41.0],
        "変化（ポイント）": [10.0, -1.0, 1.0], "変化 下限": [5.0, -1.8, -2.0], "変化 上限": [15.0, -0.2, 4.0],
        "判定": ["改善", "改善", "変化なし"], "達成率（%）": [66.7, 100.0, privacy.SUPPRESSION_MARK]})
    fig = ev.summary_figure(sheet, "まとめ", plots.footer("デモ", 2024, "国保"), 2024)
    texts = "\n".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    assert "有意に改善した指標" in texts and "特定健診実施率" in texts
    assert plots.COMPARISON_NOTE in texts
    improved = plots.SIGNIFICANCE_COLOURS["良い"]
    dots = [a for a in fig.axes[0].get_lines() if a.get_marker() == "o"]
    assert sum(mcolor(d.get_color()) == mcolor(improved) for d in dots) == 2


def mcolor(c):
    import matplotlib.colors as mcolors

    return mcolors.to_hex(c)


@pytest.mark.parametrize("muni", ["17324", "17461"])
def test_hotei_and_participation_tables_cannot_be_combined_to_recover_a_count(prepared, muni):
    # As notebook 05 saves them: the 法定報告 table (with its 計 margins), then the participation
    # table whose 特定健診 rows repeat its cells. Nothing 1–9 is recoverable across the two.
    from hsutils.patterns import hotei

    plan = privacy.SuppressionPlan()
    jp = hotei.japanese_columns(hotei.hotei_table(prepared.person_year, prepared.municipalities,
                                                  muni_codes=[muni], prefecture=False))
    plan.add_table("hotei_shukei", jp, **hotei.committee_spec(japanese=True))
    plan.solve()
    plan.publish("hotei_shukei")
    part = ev.participation_by_sex_age(prepared, muni, prepared.fiscal_years)
    plan.add_table("participation_by_sex_age", part, ["対象者数", "実施者数"], ev.PARTICIPATION_DERIVED,
                   relations=ev.participation_relations("hotei_shukei", muni))
    plan.solve()
    assert plan.audit() == []
    # every 特定健診 cell hidden in the 法定報告 table is hidden in the participation table too
    names = hotei.japanese_names()
    h = plan.shown("hotei_shukei")
    h = h[(h[names["sex"]] != hotei.TOTAL) & (h[names["age_band"]] != hotei.TOTAL)]
    h_hidden = {(int(r[names["fy"]]), r[names["sex"]], r[names["age_band"]])
                for _, r in h.iterrows() if r[names["target"]] == privacy.SUPPRESSION_MARK}
    p = plan.shown("participation_by_sex_age")
    p = p[p["指標ID"] == "kenshin_rate"]
    p_hidden = {(int(r["年度"]), r["性別"], r["年齢階級"].replace("–", "-").removesuffix("歳"))
                for _, r in p.iterrows() if r["対象者数"] == privacy.SUPPRESSION_MARK}
    assert h_hidden and h_hidden <= p_hidden


def test_participation_hides_what_the_hotei_table_hides_hand_built():
    # 穴水町 R4 60-64歳 in the scale-0.3 demo: 対象者 男 7 + 女 10 = 計 17. The 法定報告 table shows 計 17
    # and hides 女 10 as the complement of 男 7; before, the participation table showed 女 10 and
    # 17 − 10 = 7 was recoverable across the two tables.
    from hsutils.patterns import hotei

    rows = []
    for sex, band, n in [("男", "60-64", 7), ("女", "60-64", 10), ("計", "60-64", 17),
                         ("男", "計", 7), ("女", "計", 10), ("計", "計", 17)]:
        r = {"fy": 2022, "area_code": "17461", "area_name": "穴水町", "level": "市町村", "sex": sex, "age_band": band}
        r.update({it.id: (0.0 if it.unit == "人" else np.nan) for it in hotei.ITEMS})
        r["target"] = n
        rows.append(r)
    plan = privacy.SuppressionPlan()
    plan.add_table("hotei_shukei", hotei.japanese_columns(pd.DataFrame(rows)), **hotei.committee_spec(japanese=True))
    plan.solve()
    plan.publish("hotei_shukei")
    part = pd.DataFrame({"指標ID": "kenshin_rate", "年度": 2022, "性別": ["男", "女"], "年齢階級": "60–64歳",
                         "対象者数": ["‐", 10], "実施者数": [0, 0], **{c: 0.0 for c in ev.PARTICIPATION_DERIVED}})
    plan.add_table("participation_by_sex_age", part, ["対象者数", "実施者数"], ev.PARTICIPATION_DERIVED,
                   relations=ev.participation_relations("hotei_shukei", "17461"))
    plan.solve()
    shown = plan.shown("participation_by_sex_age")
    assert list(shown["対象者数"]) == ["‐", "‐"] and shown["実施率（%）"].iloc[1] == "‐"
    assert plan.audit() == []


def _sheet_and_hotei(yobi_cohort: int):
    """A one-year evaluation sheet and the 法定報告 計 row it repeats (Japanese headers, as notebook 05
    saves them): メタボ減少率 分母 = 該当 cohort 30 + 予備群 cohort `yobi_cohort`."""
    from hsutils.patterns import hotei

    ren = hotei.japanese_names()
    row = {ren[c]: 100 for c in hotei.COUNT_IDS}
    row.update({ren["fy"]: 2024, ren["sex"]: hotei.TOTAL, ren["age_band"]: hotei.TOTAL, ren["area_code"]: "17201",
                ren["red_metabo_cohort"]: 30, ren["red_yobi_cohort"]: yobi_cohort,
                ren["red_metabo_out"]: 12, ren["red_yobi_out"]: 0})
    table = pd.DataFrame([row])
    sheet = pd.DataFrame({"指標ID": list(ev.SHEET_HOTEI_CELLS), "R6年度 分子": [100, 100, 100, 12],
                          "R6年度 分母": [100, 100, 100, 30 + yobi_cohort]})
    return sheet, table, ren


def test_hotei_table_hides_what_the_sheet_would_reveal_hand_built():
    # The sheet (published first) shows メタボ減少率 分母 37 = 30 + 7. The table hides 予備群 7 (1–9); with the
    # declared link it must also hide 該当 30, or 37 − 30 = 7 could be read off. Without the link it would not.
    from hsutils.patterns import hotei

    for linked in (True, False):
        sheet, table, ren = _sheet_and_hotei(7)
        plan = privacy.SuppressionPlan()
        plan.add_table("evaluation_sheet", sheet, ev.sheet_count_columns(sheet))
        plan.solve()
        plan.publish("evaluation_sheet")
        spec = hotei.committee_spec(japanese=True)
        rels = spec["relations"] + (ev.sheet_relations("evaluation_sheet", sheet, "17201", [2024]) if linked else [])
        plan.add_table("hotei_shukei", table, spec["count_cols"], relations=rels)
        plan.solve()
        shown = plan.shown("hotei_shukei").iloc[0]
        assert shown[ren["red_yobi_cohort"]] == privacy.SUPPRESSION_MARK
        assert bool(shown[ren["red_metabo_cohort"]] == privacy.SUPPRESSION_MARK) == linked
        assert plan.audit() == []  # (without the link the plan does not know the relation at all)
    # 予備群 cohort 15: nothing small, nothing hidden in either
    sheet, table, ren = _sheet_and_hotei(15)
    plan = privacy.SuppressionPlan()
    plan.add_table("evaluation_sheet", sheet, ev.sheet_count_columns(sheet))
    plan.publish("evaluation_sheet")
    spec = hotei.committee_spec(japanese=True)
    plan.add_table("hotei_shukei", table, spec["count_cols"],
                   relations=spec["relations"] + ev.sheet_relations("evaluation_sheet", sheet, "17201", [2024]))
    plan.solve()
    assert plan.shown("hotei_shukei").iloc[0][ren["red_metabo_cohort"]] == 30 and plan.audit() == []

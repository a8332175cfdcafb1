"""District analysis of notebook 02 (hsutils.patterns.districts; issue 7).

Hand-worked expected values are literals; the demo `prepared` fixture (root conftest, scale 0.03)
is used for the re-add and privacy checks.
"""
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from hsutils import stats
from hsutils.analysis import areas
from hsutils.publish import privacy
from hsutils.patterns import districts  # noqa: E402

KANAZAWA, HAKUSAN, NANAO = "17201", "17210", "17202"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kanazawa(prepared):
    dl = districts.district_list(prepared.districts, prepared.person_year, KANAZAWA)
    return dl


# ---------------------------------------------------------------- districts re-add to the municipality

@pytest.mark.parametrize("muni", [KANAZAWA, HAKUSAN])
def test_district_indicators_re_add_to_municipal(prepared, muni):
    dl = districts.district_list(prepared.districts, prepared.person_year, muni)
    assert len(dl) == {KANAZAWA: 10, HAKUSAN: 4}[muni]
    fys = prepared.fiscal_years
    dist = districts.district_indicator_table(prepared.strata, prepared.municipalities, dl, muni, fys)
    city = districts.municipal_indicator_table(prepared.strata, prepared.municipalities, muni, fys)
    summed = dist.groupby(["indicator_id", "fy"])[["numerator", "denominator"]].sum().sort_index()
    whole = city.set_index(["indicator_id", "fy"])[["numerator", "denominator"]].sort_index()
    pd.testing.assert_frame_equal(summed, whole, check_dtype=False)
    assert set(dist["indicator_id"]) == set(districts.DEFAULT_INDICATORS)
    # columns of the municipal table of notebook 01 plus the district columns, in that order
    assert list(dist.columns[:len(districts.TABLE_COLUMNS)]) == districts.TABLE_COLUMNS
    assert (dist["muni_name"] == prepared.muni_name(muni)).all()


def test_pooled_table_equals_sum_of_years(prepared, kanazawa):
    fys = prepared.fiscal_years
    single = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA, fys)
    pooled = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA, fys,
                                                pooled=True)
    assert (pooled["fy"] == max(fys)).all()
    assert pooled["period"].iloc[0] == "R4–R6年度（3年度合算）"
    a = single.groupby(["indicator_id", "district_code"])[["numerator", "denominator"]].sum().sort_index()
    b = pooled.set_index(["indicator_id", "district_code"])[["numerator", "denominator"]].sort_index()
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_program_targets_re_add_and_match_person_counts(prepared, kanazawa):
    fy = prepared.fiscal_years[-1]
    t = districts.program_targets(prepared.person_year, kanazawa, KANAZAWA, fy)
    body = t[t["district_name"] != districts.TOTAL_LABEL]
    total = t[t["district_name"] == districts.TOTAL_LABEL].iloc[0]
    cols = [c for c in t.columns if c not in ("district_code", "district_name")]
    assert (body[cols].sum() == total[cols].astype(np.int64)).all()
    py = prepared.person_year
    rows = py[(py["muni_code"] == KANAZAWA) & (py["fy"] == fy)]
    assert total["kouki_insured"] == int(((rows["insurance"] == "後期") & (rows["age"] >= 75)).sum())
    assert total["ik_health_unknown"] == int((rows["ik_health_unknown"].astype(bool)
                                              & (rows["insurance"] == "後期") & (rows["age"] >= 75)).sum())
    # the 特定健診 counts agree with the strata of the indicator kenshin_rate
    s = prepared.strata
    k = s[(s["muni_code"] == KANAZAWA) & (s["fy"] == fy) & (s["indicator_id"] == "kenshin_rate")]
    assert total["kenshin_target"] == k["denominator"].sum()
    assert total["kenshin_participants"] == k["numerator"].sum()


# ---------------------------------------------------------------- participation gap (hand example)

def _groups():
    return pd.DataFrame({
        "district_code": ["1", "1", "2", "2", "2", "3"],
        "district_name": ["甲", "甲", "乙", "乙", "乙", "丙"],
        "sex_label": ["男性", "女性", "男性", "女性", "男性", "女性"],
        "age_band": ["40-44", "40-44", "40-44", "40-44", "45-49", "40-44"],
        "participants": [30, 70, 0, 12, 5, 0],
        "targets": [100, 100, 20, 20, 50, 0],
    })


def test_participation_gap_hand_example():
    g = districts.participation_gap(_groups(), 0.60)
    # (0.60 − rate) × 対象者, never negative: 0.6·100−30 = 30; 70/100 above → 0; 0.6·20−0 = 12;
    # 12/20 exactly at the target → 0; 0.6·50−5 = 25; no 対象者 → 0
    assert g["additional"].tolist() == pytest.approx([30.0, 0.0, 12.0, 0.0, 25.0, 0.0])
    assert g["gap_points"].iloc[:5].tolist() == pytest.approx([30.0, 0.0, 60.0, 0.0, 50.0])
    assert np.isnan(g["gap_points"].iloc[5])
    assert districts.participation_gap(_groups(), 0.50)["additional"].iloc[0] == pytest.approx(20.0)


def test_top_gap_groups_leave_out_small_groups():
    g = districts.participation_gap(_groups(), 0.60)
    top = districts.top_gap_groups(g, n=2, threshold=10)
    # the 25-person gap comes from 5 受診者 (1–9): left out, so 30 then 12
    assert top["additional"].tolist() == pytest.approx([30.0, 12.0])
    assert top["district_name"].tolist() == ["甲", "乙"]
    assert districts.small_groups(g, 10).tolist() == [False, False, False, False, True, False]


def test_gap_by_district_shares():
    d = districts.gap_by_district(districts.participation_gap(_groups(), 0.60))
    assert d["additional"].tolist() == pytest.approx([30.0, 37.0, 0.0])
    assert d["additional_share"].tolist() == pytest.approx([30 / 67, 37 / 67, 0.0])


# ---------------------------------------------------------------- priority score (hand example)

def _priority_inputs():
    table = pd.DataFrame({
        "district_code": ["1", "1", "2", "2", "3", "3"],
        "district_name": ["甲", "甲", "乙", "乙", "丙", "丙"],
        "indicator_id": ["kenshin_rate", "hba1c8"] * 3,
        "indicator_name": ["特定健診実施率", "HbA1c 8.0%以上"] * 3,
        "comparison": ["有意に低い", "有意に高い", "有意差なし", "有意に高い", "有意に高い", "有意差なし"],
        "judgement": ["悪い", "悪い", "差なし", "悪い", "良い", "差なし"],
        "suppressed": [False, False, False, True, False, False],  # 乙's 悪い comes from a count 1–9
    })
    gap = pd.DataFrame({"district_code": ["1", "2", "3"], "district_name": ["甲", "乙", "丙"],
                        "targets": [100, 50, 100], "participants": [30, 20, 70],
                        "additional": [30.0, 10.0, 0.0], "additional_share": [0.75, 0.25, 0.0]})
    targets = pd.DataFrame({"district_code": ["1", "2", "3", ""], "district_name": ["甲", "乙", "丙", "市全体"],
                            "ref_untreated": [20, 5, 30, 55]})
    return table, gap, targets


def test_priority_score_hand_example():
    table, gap, targets = _priority_inputs()
    p = districts.priority_scores(table, gap, targets, suppress_threshold=10)
    # 甲: 3·1 + 1·1 + 2·0.75 + 2·(20/55) = 6.2273; 丙: 2·(30/55) = 1.0909;
    # 乙: 2·0.25 = 0.5 (its 悪い is suppressed and its 5 未治療者 are 1–9: both not used)
    assert p["district_name"].tolist() == ["甲", "丙", "乙"]
    assert p["score"].tolist() == pytest.approx([6.23, 1.09, 0.50])
    assert p["rank"].tolist() == [1, 2, 3]
    assert p["n_worse"].tolist() == [1, 0, 0]
    assert p["kenshin_low"].tolist() == [1, 0, 0]
    assert p["untreated_share"].tolist() == pytest.approx([0.364, 0.545, 0.0])
    assert "特定健診実施率が市より有意に低い" in p["reasons"].iloc[0]
    assert "HbA1c 8.0%以上" in p["reasons"].iloc[0]
    assert "少数のため計算に含めず" in p["reasons"].iloc[2]


def test_priority_weights_are_parameters():
    table, gap, targets = _priority_inputs()
    p = districts.priority_scores(table, gap, targets, {"kenshin_low": 0.0, "untreated": 0.0})
    # 甲: 1·1 + 2·0.75 = 2.5; 乙: 0.5; 丙: 0
    assert p.set_index("district_name")["score"].to_dict() == pytest.approx({"甲": 2.5, "乙": 0.5, "丙": 0.0})
    w = districts.priority_weights_table({"kenshin_low": 5.0})
    assert w.set_index("キー")["重み"].to_dict() == {"kenshin_low": 5.0, "worse_indicator": 1.0,
                                                  "participation_gap": 2.0, "untreated": 2.0}


# ---------------------------------------------------------------- suppression with totals

def test_wide_counts_secondary_suppression():
    t = pd.DataFrame({"district_name": ["甲", "乙", "丙", "市全体"], "n": [5, 20, 30, 55], "m": [0, 10, 9, 19]})
    out = districts.suppress_wide_counts(t, ["n", "m"], threshold=10)
    mark = privacy.SUPPRESSION_MARK
    # n: 5 is small, and 20 (the smallest other) too, else 55 − 20 − 30 gives it back; total shown
    assert out["n"].tolist() == [mark, mark, 30, 55]
    # m: 9 is small; the smallest other non-zero (10) is hidden too; 0 stays 0; exactly 10 is shown elsewhere
    assert out["m"].tolist() == [0, mark, mark, 19]
    assert out["suppressed"].tolist() == [True, True, True, False]


def test_district_table_suppression_hides_derived_values(prepared, kanazawa):
    t = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA,
                                           [prepared.fiscal_years[-1]])
    shown = districts.suppress_district_table(t, 10)
    hidden = shown["suppressed"].to_numpy(bool)
    assert hidden.any()
    for col in ("crude_rate", "sr", "comparison", "adj_rate"):
        assert (shown.loc[hidden, col] == privacy.SUPPRESSION_MARK).all()
    # per indicator, never exactly one hidden numerator among districts (secondary suppression)
    n_hidden = (shown["numerator"] == privacy.SUPPRESSION_MARK).groupby(shown["indicator_id"]).sum()
    assert not (n_hidden == 1).any()


# ---------------------------------------------------------------- municipality without districts

def test_municipality_without_districts(prepared):
    assert not areas.has_districts(prepared.person_year, NANAO)
    assert districts.district_list(prepared.districts, prepared.person_year, NANAO).empty
    msg = districts.no_districts_message(NANAO, "七尾市")
    assert "七尾市（17202）には地区のデータがありません" in msg
    # the municipal summary still works
    city = districts.municipal_indicator_table(prepared.strata, prepared.municipalities, NANAO,
                                               [prepared.fiscal_years[-1]])
    assert len(city) == len(districts.DEFAULT_INDICATORS)
    assert (city["district_name"] == districts.TOTAL_LABEL).all()


def test_notebook_runs_without_districts(tmp_path):
    papermill = pytest.importorskip("papermill")
    out = tmp_path / "nb.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "02_large_insurer.ipynb"), str(out),
                               parameters={"muni_code": NANAO, "out_dir": str(tmp_path / "out"), "interactive": False},
                               kernel_name="python3", progress_bar=False, cwd=str(REPO))
    text = out.read_text(encoding="utf-8")
    assert "地区のデータがありません" in text
    # no empty district charts (the 県・同規模・国 comparison does not depend on districts)
    assert [p.stem for p in (tmp_path / "out" / "figures").glob("*.png")] in ([], ["reference_comparison"])
    assert (tmp_path / "out" / "tables" / "indicators_municipal.csv").exists()


# ---------------------------------------------------------------- boundaries and tiles

def test_boundaries_geojson_and_tiles(tmp_path, kanazawa):
    feats = [{"type": "Feature", "properties": {"district_code": c},
              "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]]]}}
             for i, c in enumerate(kanazawa["district_code"])]
    feats.append({"type": "Feature", "properties": {"district_code": "9999999"},
                  "geometry": {"type": "Polygon", "coordinates": [[[0, 5], [1, 5], [1, 6], [0, 5]]]}})
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    b = districts.load_district_boundaries(path, kanazawa)
    assert b["code"].tolist() == kanazawa["district_code"].tolist()  # unknown code dropped
    assert b["name"].tolist() == kanazawa["district_name"].tolist()  # names from the 地区マスタ
    tiles = districts.district_tiles(kanazawa)
    assert len(tiles) == 10 and not tiles.duplicated(["col", "row"]).any()
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": feats[-1:]}), encoding="utf-8")
    with pytest.raises(Exception, match="一致しません"):
        districts.load_district_boundaries(bad, kanazawa)


# ---------------------------------------------------------------- privacy of committee tables

def test_committee_tables_have_no_small_counts_or_person_ids(prepared, kanazawa):
    fys = prepared.fiscal_years
    fy = fys[-1]
    ids = prepared.person_year["person_id"]
    table = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA, fys,
                                               pooled=True)
    shown = districts.suppress_district_table(table, 10)
    privacy.assert_no_small_counts(shown, ["numerator", "denominator"])

    targets = districts.program_targets(prepared.person_year, kanazawa, KANAZAWA, fy)
    cols = [c for c in targets.columns if c not in ("district_code", "district_name")]
    t_shown = districts.suppress_wide_counts(targets, cols, threshold=10)
    privacy.assert_no_small_counts(t_shown, cols)

    overview = districts.district_overview(prepared.person_year, kanazawa, KANAZAWA, fy)
    ocols = ["kokuho_insured", "kouki_insured", "kenshin_target", "kenshin_participants", "kouki_participants"]
    o_shown = districts.suppress_wide_counts(overview, ocols, derived={"kenshin_target": ["kenshin_rate"]})
    privacy.assert_no_small_counts(o_shown, ocols)

    gap = districts.participation_gap(districts.participation_by_group(prepared.strata, kanazawa, KANAZAWA, fy))
    top = districts.top_gap_groups(gap, 10, 10)
    privacy.assert_no_small_counts(top, ["participants", "targets"])

    prio = districts.priority_scores(table, districts.gap_by_district(gap), targets)
    p_shown = privacy.suppress_table(prio, ["untreated"], derived_cols=["untreated_share"])
    privacy.assert_no_small_counts(p_shown, ["untreated"])
    for frame in (shown, t_shown, o_shown, top, p_shown):
        privacy.assert_no_person_ids(frame, ids)


def test_map_figure_draws_every_district(tmp_path, prepared, kanazawa):
    feats = [{"type": "Feature", "properties": {"district_code": c, "name": f"x{i}"},
              "geometry": {"type": "Polygon", "coordinates": [[[136 + i * .01, 36], [136.01 + i * .01, 36],
                                                               [136.01 + i * .01, 36.01], [136 + i * .01, 36]]]}}
             for i, c in enumerate(kanazawa["district_code"])]
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}), encoding="utf-8")
    table = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA,
                                               prepared.fiscal_years, ["kenshin_rate"], pooled=True)
    fig = districts.map_figure(table, "kenshin_rate", "出典: テスト", boundaries=districts.load_district_boundaries(
        path, kanazawa), muni_name="金沢市")
    ax = fig.axes[0]
    # one collection of the district shapes (publish.plots draws a map as one PathCollection)
    shapes = [c for c in ax.collections if c.get_gid() == "map_areas"]
    assert len(shapes) == 1 and len(shapes[0].get_paths()) == 10
    assert "金沢市 地区別 特定健診実施率" in fig.texts[-1].get_text() or any(
        "金沢市 地区別 特定健診実施率" in t.get_text() for t in fig.texts)
    tiles_fig = districts.map_figure(table, "kenshin_rate", "出典: テスト", tiles=districts.district_tiles(kanazawa))
    assert any("タイル" in t.get_text() for t in tiles_fig.texts)


# ---------------------------------------------------------------- the municipal rate beside the districts (§9.2)

def test_municipal_rate_hidden_when_the_municipal_count_is_small():
    """docs/rules.md §9.2: 甲市's numerator 9 (4 + 5 over two districts, denominator 300) → the rate
    3.0 % would give 9 away with the denominator shown elsewhere → muni_rate empty; 10 → shown."""
    strata = pd.DataFrame({"indicator_id": ["a", "a", "b", "b"], "fy": [2024] * 4,
                           "numerator": [4, 5, 4, 6], "denominator": [100, 200, 100, 200]})
    table = pd.DataFrame({"indicator_id": ["a", "a", "b", "b"], "fy": [2024] * 4, "district_code": ["1", "2"] * 2,
                          "muni_rate": [3.0, 3.0, 10 / 3, 10 / 3]})
    out = districts.hide_small_municipal_rate(table, strata, threshold=10)
    assert out["muni_rate"].isna().tolist() == [True, True, False, False]
    assert out["muni_rate"].iloc[2] == pytest.approx(10 / 3)
    assert not districts.funnel_available(out, "a") and districts.funnel_available(out, "b")
    # threshold 5: 9 may be shown
    assert districts.hide_small_municipal_rate(table, strata, threshold=5)["muni_rate"].notna().all()


def test_demo_municipal_rate_hidden_exactly_where_the_city_count_is_small(prepared, kanazawa):
    fys = prepared.fiscal_years
    t = districts.district_indicator_table(prepared.strata, prepared.municipalities, kanazawa, KANAZAWA, fys)
    sm = prepared.strata[prepared.strata["muni_code"] == KANAZAWA]
    tot = sm.groupby(["indicator_id", "fy"], observed=True)[["numerator", "denominator"]].sum()
    key = pd.MultiIndex.from_arrays([t["indicator_id"], t["fy"]])
    small = privacy.is_small(tot["numerator"].reindex(key).to_numpy(float)) | \
        privacy.is_small(tot["denominator"].reindex(key).to_numpy(float))
    assert (t["muni_rate"].isna().to_numpy() == np.asarray(small, bool)).all()
    assert 0 < small.sum() < len(t)  # the scale-0.03 demo has both (e.g. 特定保健指導実施率 is 1–9 every year)


def test_charts_draw_no_municipal_line_when_its_rate_is_hidden():
    import matplotlib.pyplot

    d = pd.DataFrame({"indicator_id": "a", "indicator_name": "指標A", "fy": 2024, "period": "単年度",
                      "district_code": ["1", "2", "3"], "district_name": ["東", "西", "南"],
                      "numerator": [0, 4, 5], "denominator": [100, 100, 100], "crude_rate": [0.0, 4.0, 5.0],
                      "crude_lower": [0.0, 1.6, 2.2], "crude_upper": [3.7, 9.8, 11.2], "comparison": "有意差なし",
                      "suppressed": [False, True, True], "polarity": "lower_better", "muni_rate": np.nan})
    fig = districts.ranking_figure(d, "a", "出典: テスト", muni_name="甲市")
    texts = [x.get_text() for x in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert not any("nan" in x for x in texts)
    assert any("甲市全体の値は人数が10人未満のため表示しません" in x for x in texts)
    assert districts.district_profile(d, "1").empty  # the spine is centred on the municipal rate
    matplotlib.pyplot.close(fig)


# ---------------------------------------------------------------- 地区不明 in the district indicator table (§9.1)

def _city(unknown_num: int, unknown_den: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """甲市 (99999), one indicator, one year, one sex × age band: 東 30/100, 西 50/120 and
    persons without a district code `unknown_num`/`unknown_den` (strata rows with district_code "")."""
    rows = [("01", 30, 100), ("02", 50, 120)] + ([("", unknown_num, unknown_den)] if unknown_den else [])
    strata = pd.DataFrame({"fy": 2024, "muni_code": "99999", "district_code": [r[0] for r in rows], "sex": 1,
                           "age_band": "60-64", "indicator_id": "kenshin_rate",
                           "numerator": [r[1] for r in rows], "denominator": [r[2] for r in rows]})
    munis = pd.DataFrame({"muni_code": ["99999"], "name": ["甲市"], "medical_area": ["甲"]})
    dlist = pd.DataFrame({"district_code": ["01", "02"], "district_name": ["東", "西"], "lat": np.nan, "lon": np.nan})
    return strata, munis, dlist


def _table(unknown_num, unknown_den):
    strata, munis, dlist = _city(unknown_num, unknown_den)
    return districts.district_indicator_table(strata, munis, dlist, "99999", [2024], ["kenshin_rate"])


def test_unknown_district_small_is_hidden_with_a_complement():
    """地区不明 3 of 9 persons (1–9): hidden, and 東 (the smallest other row) too, so that
    市 − Σ shown = 229 − 120 = 109 persons and 83 − 50 = 33 受診者, not a small count. Without the
    row (before §9.1 reached 02), 229 − 100 − 120 = 9 and 83 − 30 − 50 = 3 were readable."""
    t = _table(3, 9)
    assert t["district_name"].tolist() == ["東", "西", districts.UNKNOWN_DISTRICT]  # after the districts
    assert t["district_code"].tolist() == ["01", "02", ""]
    assert t["numerator"].sum() == 83 and t["denominator"].sum() == 229  # 市 = Σ 地区 + 地区不明
    assert districts.unknown_rows(t).tolist() == [False, False, True]
    shown = districts.suppress_district_table(t, 10)
    mark = privacy.SUPPRESSION_MARK
    assert shown["numerator"].tolist() == [mark, 50, mark]
    assert shown["denominator"].tolist() == [mark, 120, mark]
    assert shown["suppressed"].tolist() == [True, False, True]
    for col in ("crude_rate", "sr", "comparison"):
        assert shown[col].iloc[0] == mark and shown[col].iloc[2] == mark
    visible_num = pd.to_numeric(shown["numerator"], errors="coerce").sum()
    visible_den = pd.to_numeric(shown["denominator"], errors="coerce").sum()
    assert (83 - visible_num, 229 - visible_den) == (33, 109)
    assert not privacy.is_small(83 - visible_num) and not privacy.is_small(229 - visible_den)
    # the chart/priority version hides the same cells (numbers NaN, texts None)
    masked = districts.masked_district_table(t, 10)
    assert masked["numerator"].isna().tolist() == [True, False, True]
    assert masked["crude_rate"].isna().tolist() == [True, False, True]
    assert masked["comparison"].iloc[0] is None and masked["suppressed"].tolist() == [True, False, True]
    assert masked["numerator"].iloc[1] == 50 and masked["crude_rate"].iloc[1] == pytest.approx(50 / 120 * 100)


def test_unknown_district_at_ten_is_shown_and_compared_with_the_city():
    """地区不明 12 of 40: shown like a district. Crude 12/40 = 30.0 %; one sex × age band, so the
    標準化該当比 is 12 ÷ (40 × 92/260) = 0.8478 against the city's rate 92/260 = 35.38 %."""
    t = _table(12, 40)
    u = t[districts.unknown_rows(t)].iloc[0]
    assert (u["numerator"], u["denominator"]) == (12, 40)
    assert u["crude_rate"] == pytest.approx(30.0)
    assert u["sr"] == pytest.approx(12 / (40 * 92 / 260))
    assert u["muni_rate"] == pytest.approx(92 / 260 * 100)
    assert u["comparison"] == stats.NOT_SIGNIFICANT  # 12 observed, CI of the ratio spans 1
    shown = districts.suppress_district_table(t, 10)
    assert not shown["suppressed"].any()
    # the boundary: 10 persons is shown, 9 is hidden (numerator 0 is never hidden)
    assert not districts.suppress_district_table(_table(0, 10), 10)["suppressed"].any()
    assert districts.suppress_district_table(_table(0, 9), 10)["suppressed"].tolist() == [True, False, True]


def test_no_unknown_row_when_everybody_has_a_district():
    t = _table(0, 0)
    assert t["district_name"].tolist() == ["東", "西"] and not districts.unknown_rows(t).any()
    assert (t["numerator"].sum(), t["denominator"].sum()) == (80, 220)


def test_unknown_district_is_left_out_of_charts_and_priority():
    import matplotlib.pyplot

    t = districts.masked_district_table(_table(12, 40), 10)
    fig = districts.ranking_figure(t, "kenshin_rate", "出典: テスト", muni_name="甲市")
    texts = [x.get_text() for x in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert not any(x == districts.UNKNOWN_DISTRICT for x in texts)  # no bar of its own
    assert any("地区不明（地区コードのない人）は順位に含めず" in x for x in texts)
    matplotlib.pyplot.close(fig)
    prof = districts.district_profile(t, "01")  # the range is over 東 and 西 only
    assert prof["min"].iloc[0] == pytest.approx(30.0) and prof["max"].iloc[0] == pytest.approx(50 / 120 * 100)
    gap = pd.DataFrame({"district_code": ["01", "02"], "district_name": ["東", "西"], "targets": [100, 120],
                        "participants": [30, 50], "additional": [30.0, 22.0], "additional_share": [30 / 52, 22 / 52]})
    targets = pd.DataFrame({"district_code": ["01", "02", ""], "district_name": ["東", "西", districts.UNKNOWN_DISTRICT],
                            "ref_untreated": [20, 30, 12]})
    prio = districts.priority_scores(t, gap, targets)
    assert sorted(prio["district_name"]) == ["東", "西"]
    assert districts.UNKNOWN_DISTRICT not in districts.significance_summary(t).to_string()


def test_tiles_keep_short_district_codes():
    """A district code like "01" stays "01" on the tile map (the grid layout pads municipal codes
    to 5 digits; the tiles would then match no district and the map would be blank)."""
    dlist = pd.DataFrame({"district_code": ["01", "02", "03"], "district_name": ["東", "西", "南"],
                          "lat": [36.6, 36.5, 36.4], "lon": [136.7, 136.5, 136.6]})
    assert districts.district_tiles(dlist)["code"].tolist() == ["01", "02", "03"]


def _audit(table: pd.DataFrame, threshold: int = 10) -> list[str]:
    """`privacy.audit_recoverable` of the shown district table with the municipal figures (the sum
    of each indicator × fy × period, published elsewhere in the report unless 1–9) as totals, and
    the pooled rows as sums of their single years."""
    shown = districts.suppress_district_table(table, threshold)
    n_virtual, relations = districts._district_relations(table)
    tables = {"t": shown.assign(**{c: pd.to_numeric(shown[c], errors="coerce") for c in ("numerator", "denominator")})}
    rel_cells = []
    for col in ("numerator", "denominator"):
        values = pd.to_numeric(table[col]).to_numpy(float)
        city = np.zeros(n_virtual)
        for total, parts in relations:
            if total >= len(table) and (parts < len(table)).all():
                city[total - len(table)] = values[parts].sum()
        # a municipal figure of 1–9 is hidden wherever the report shows it (§9, §9.2): unknown here
        tables[f"city_{col}"] = pd.DataFrame({col: np.where(privacy.is_small(city, threshold), np.nan, city)})
        cell = lambda k: ("t", int(k), col) if k < len(table) else (f"city_{col}", int(k) - len(table), col)  # noqa: E731
        # (pooled municipal figure = Σ yearly ones is between other tables' cells: not this table's to fix)
        rel_cells += [(cell(t), [cell(k) for k in parts]) for t, parts in relations
                      if t < len(table) or (parts < len(table)).any()]
    return privacy.audit_recoverable(tables, rel_cells, threshold)


def test_pooled_rows_cannot_be_added_up_from_the_single_years():
    """Pooled rows are sums of the single years (docs/rules.md §9.1). 甲市 2023: 東 30/100, 西 50/120;
    2024: the same plus 地区不明 3/9. Pooled: 地区不明 3/9 hidden and 東 60/200 as its complement.
    Per year alone, 2023 shows 東 30 and 2024 hides 東 → the pooled 東 cannot be added up. In a
    second case 地区不明 is in 2022 only (3/9, no district rows that year) and 東 is shown in 2023 and
    2024: without the year relation (the old per-group suppression) pooled 東 = 30 + 30 = 60 and
    地区不明 = 163 − 60 − 100 = 3 could be read; with it, every figure that would lead there is hidden."""
    strata, munis, dlist = _city(3, 9)
    prev = strata[strata["district_code"] != ""].assign(fy=2023)
    strata = pd.concat([prev, strata], ignore_index=True)
    single = districts.district_indicator_table(strata, munis, dlist, "99999", [2023, 2024], ["kenshin_rate"])
    pooled = districts.district_indicator_table(strata, munis, dlist, "99999", [2023, 2024], ["kenshin_rate"],
                                                pooled=True)
    table = pd.concat([single, pooled], ignore_index=True)
    assert table["district_name"].tolist() == ["東", "西", "東", "西", "地区不明", "東", "西", "地区不明"]
    assert districts.suppress_district_table(table, 10)["suppressed"].tolist() == [
        False, False, True, False, True, True, False, True]
    assert _audit(table) == []

    only_2022 = strata[(strata["fy"] == 2024) & (strata["district_code"] == "")].assign(fy=2022)
    s2 = pd.concat([only_2022, prev, strata[(strata["fy"] == 2024) & (strata["district_code"] != "")]],
                   ignore_index=True)
    fys = [2022, 2023, 2024]
    table = pd.concat([districts.district_indicator_table(s2, munis, dlist, "99999", fys, ["kenshin_rate"]),
                       districts.district_indicator_table(s2, munis, dlist, "99999", fys, ["kenshin_rate"],
                                                          pooled=True)], ignore_index=True)
    old = privacy.suppress_groups(table, "numerator", ["indicator_id", "fy", "period"], threshold=10)
    assert old.tolist() == [True, False, False, False, False, True, False, True]  # 東 shown in both years
    assert _audit(table) == []
    hidden = districts.suppress_district_table(table, 10)["suppressed"].to_numpy()
    assert hidden[[0, 5, 7]].all() and not hidden[6]  # 地区不明 2022, pooled 東 and 地区不明; pooled 西 shown

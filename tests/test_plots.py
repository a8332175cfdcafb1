"""Tests of the committee charts (hsutils.publish.plots; docs/design.md §6, §9, §10).

Every chart is rendered from small hand-made data with warnings turned into errors, so a missing
Japanese glyph ("Glyph … missing from font") fails the test. Charts are checked through their
artists (texts, colours, positions), not by comparing images (docs/design.md §9).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.image as mpimg
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import shape
from shapely.ops import unary_union

from hsutils.publish import plots
from hsutils.core.errors import ParameterError

REFDATA = Path(__file__).resolve().parent / "data" / "refdata"  # copied reference data, see PROVENANCE.md there
GEOJSON = REFDATA / "ishikawa_municipalities_N03-21_17_210101_s0010.geojson"
FOOT = plots.footer("KDB（デモデータ）", 2024, "国保 40–74歳", "テスト用の手作りデータ")


# ---------------------------------------------------------------------------------------------
# Hand-made inputs (also used by the gallery script in the report of this task)
# ---------------------------------------------------------------------------------------------
def ishikawa_boundaries() -> pd.DataFrame:
    """Boundaries as hsutils.inputs.regions provides them: code, name, geometry (dissolved by N03_007)."""
    features = json.loads(GEOJSON.read_text(encoding="utf-8"))["features"]
    rows = pd.DataFrame({
        "code": [f["properties"]["N03_007"] for f in features],
        "name": [f["properties"]["N03_004"] for f in features],
        "geometry": [shape(f["geometry"]) for f in features],
    })
    geoms = {code: unary_union(list(g)) for code, g in rows.groupby("code")["geometry"]}
    names = rows.drop_duplicates("code").set_index("code")["name"]
    return pd.DataFrame({"code": list(geoms), "name": names.reindex(list(geoms)).tolist(),
                         "geometry": list(geoms.values())})


def muni_values(boundaries: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = len(boundaries)
    return pd.DataFrame({"code": boundaries["code"], "rate": np.round(rng.uniform(25, 50, n), 1),
                         "count": rng.integers(50, 900, n)})


def tiles() -> pd.DataFrame:
    return pd.DataFrame({"code": ["17204", "17205", "17202", "17209", "17201", "17203"],
                         "name": ["輪島市", "珠洲市", "七尾市", "かほく市", "金沢市", "小松市"],
                         "col": [1, 2, 2, 1, 1, 0], "row": [0, 0, 1, 2, 3, 4]})


def area_table() -> pd.DataFrame:
    """Ten areas with proportions, Wilson-ish intervals and comparisons (hand-made)."""
    return pd.DataFrame({
        "name": ["金沢市", "七尾市", "小松市", "輪島市", "珠洲市", "加賀市", "羽咋市", "かほく市",
                 "白山市", "川北町"],
        "area": ["石川中央", "能登中部", "南加賀", "能登北部", "能登北部", "南加賀", "能登中部",
                 "石川中央", "石川中央", "石川中央"],
        "x": [4200, 900, 1500, 400, 260, 1100, 300, 500, 2100, 7],
        "n": [12000, 2500, 4100, 900, 700, 3300, 820, 1300, 5600, 40],
        "value": [0.35, 0.36, 0.366, 0.444, 0.371, 0.333, 0.366, 0.385, 0.375, 0.175],
        "lower": [0.341, 0.341, 0.351, 0.412, 0.336, 0.317, 0.334, 0.358, 0.362, 0.087],
        "upper": [0.359, 0.379, 0.381, 0.477, 0.408, 0.349, 0.400, 0.411, 0.388, 0.322],
        "comparison": ["有意に低い", "有意差なし", "有意差なし", "有意に高い", "有意差なし",
                       "有意に低い", "有意差なし", "有意差なし", "有意差なし", "有意差なし"],
    })


def spine_table() -> pd.DataFrame:
    return pd.DataFrame({
        "indicator_name": ["特定健診受診率", "メタボ該当者の割合", "HbA1c 8.0%以上の割合", "平均年齢"],
        "area_value": [0.42, 0.15, 0.012, 61.0],
        "benchmark": [0.38, 0.17, 0.013, 63.0],
        "min": [0.25, 0.12, 0.005, 58.0], "q25": [0.33, 0.15, 0.010, 61.5],
        "q75": [0.44, 0.19, 0.016, 64.0], "max": [0.55, 0.24, 0.022, 66.0],
        "comparison": ["有意に高い", "有意に低い", "有意差なし", "有意に低い"],
        "polarity": ["higher_better", "lower_better", "lower_better", None],
        "fmt": ["{:.1%}", "{:.1%}", "{:.1%}", "{:.1f}"],
    })


def ckd_counts() -> pd.DataFrame:
    g = ["G1", "G2", "G3a", "G3b", "G4", "G5"]
    a = ["A1", "A2", "A3"]
    counts = [[820, 95, 40], [2100, 260, 110], [540, 70, 45], [120, 25, 30], [15, 3, 12],
              [0, 0, 11]]
    return pd.DataFrame([(gs, as_, counts[i][j]) for i, gs in enumerate(g) for j, as_ in enumerate(a)],
                        columns=["g_stage", "a_stage", "count"])


def pyramid_frame(district: str = "A地区", scale: float = 1.0) -> pd.DataFrame:
    bands = ["40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74"]
    men = [300, 320, 360, 420, 610, 880, 940]
    women = [280, 300, 350, 440, 690, 960, 1010]
    rows = [(district, b, 1, int(m * scale)) for b, m in zip(bands, men)]
    rows += [(district, b, 2, int(w * scale)) for b, w in zip(bands, women)]
    return pd.DataFrame(rows, columns=["district", "age_band", "sex", "count"])


def stacked_frame() -> pd.DataFrame:
    cats = ["積極的支援", "動機付け支援", "情報提供", "服薬中"]
    data = {"金沢市": [310, 620, 2400, 2900], "七尾市": [60, 130, 520, 700],
            "珠洲市": [4, 22, 120, 160], "川北町": [12, 18, 80, 95]}
    return pd.DataFrame([(a, c, v) for a, vals in data.items() for c, v in zip(cats, vals)],
                        columns=["area", "level", "count"])


def flow_steps() -> pd.DataFrame:
    return pd.DataFrame({
        "step_id": ["all", "dm", "kidney", "treated", "untreated", "stopped"],
        "step_label": ["健診受診者", "糖尿病型\n（HbA1c 6.5%以上等）", "腎機能低下\n（eGFR 60未満等）",
                       "治療中", "未治療", "治療中断"],
        "count": [5200, 610, 140, 118, 16, 6],
        "parent_id": [None, "all", "dm", "kidney", "kidney", "kidney"],
    })


def heat_frame() -> pd.DataFrame:
    rows = []
    for i, d in enumerate(["A地区", "B地区", "C地区"]):
        for j, s in enumerate(["男 40-64", "男 65-74", "女 40-64", "女 65-74"]):
            n = 200 + 50 * i + 30 * j
            x = 60 + 10 * i + 20 * j
            rows.append((d, s, x / n, x, n))
    frame = pd.DataFrame(rows, columns=["district", "group", "rate", "x", "n"])
    frame.loc[5, ["x", "rate"]] = [3, 3 / frame.loc[5, "n"]]  # one small numerator
    return frame


def membership_frame() -> pd.DataFrame:
    combos = [((True, False, False), 120), ((False, True, False), 80), ((True, True, False), 35),
              ((False, False, True), 22), ((True, False, True), 4), ((False, False, False), 500)]
    rows = [flags for flags, n in combos for _ in range(n)]
    return pd.DataFrame(rows, columns=["低栄養", "口腔", "服薬（多剤）"])


def trend_frame() -> pd.DataFrame:
    rows = []
    for s, base in (("男性", 0.32), ("女性", 0.40)):
        for k, fy in enumerate([2020, 2021, 2022, 2023, 2024]):
            v = base + 0.01 * k
            rows.append((fy, s, v, v - 0.02, v + 0.02, 400))
    return pd.DataFrame(rows, columns=["fy", "sex", "value", "lower", "upper", "count"])


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def texts_of(fig) -> list[str]:
    """Texts drawn by the chart itself (the footer and title are the caller's words: a footer
    like "令和6年度" must not count as the number 6)."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)
            if t.get_text() and t.get_gid() not in ("footer", "title") and t.get_visible()]


def visible_texts_of(fig) -> list[str]:
    return texts_of(fig)  # texts_of keeps only visible texts


def has_number(texts, number: int) -> bool:
    """True when `number` appears as a standalone number in any text."""
    pat = re.compile(rf"(?<![0-9A-Za-z.,]){number}(?![0-9A-Za-z.,%])")
    return any(pat.search(t) for t in texts)


def render(fig, path: Path) -> np.ndarray:
    fig.savefig(path, dpi=60)
    return mpimg.imread(path)


def footer_text(fig) -> str:
    return next(t.get_text() for t in fig.texts if t.get_gid() == "footer")


def facecolours(artists) -> list[str]:
    return [mcolors.to_hex(a.get_facecolor()) for a in artists]


@pytest.fixture(autouse=True)
def strict_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(scope="module")
def boundaries():
    return ishikawa_boundaries()


def all_charts(boundaries):
    """name -> figure for every chart type (small hand-made data)."""
    at = area_table()
    return {
        "choropleth": plots.choropleth(muni_values(boundaries), boundaries, value_col="rate", title="受診率（%）", footer=FOOT,
                                       count_col="count").figure,
        "tilemap": plots.choropleth(muni_values(boundaries), None, value_col="rate", title="受診率（タイル）", footer=FOOT,
                                    tiles=tiles()).figure,
        "funnel": plots.funnel_plot(at, value_col="value", denom_col="n", target=0.36, title="受診率のファネルプロット",
                                    footer=FOOT, count_col="x", polarity="higher_better").figure,
        "ranked": plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT,
                                   polarity="higher_better", count_col="x", value_fmt="{:.1%}").figure,
        "ranked_grouped": plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率（二次医療圏別）",
                                           footer=FOOT, group_col="area", count_col="x", value_fmt="{:.1%}").figure,
        "trend": plots.trend_chart(trend_frame(), x="fy", y="value", lower="lower", upper="upper", series_col="sex", title="受診率の推移",
                                   footer=FOOT, value_fmt="{:.0%}", count_col="count").figure,
        "ckd": plots.ckd_heatmap(ckd_counts(), title="CKD重症度分類", footer=FOOT).figure,
        "pyramid": plots.population_pyramid(pyramid_frame(), title="人口ピラミッド", footer=FOOT).figure,
        "pyramids": plots.pyramid_small_multiples(
            pd.concat([pyramid_frame("A地区"), pyramid_frame("B地区", 0.4), pyramid_frame("C地区", 0.02)]),
            facet_col="district", title="地区別人口ピラミッド", footer=FOOT, ncols=3),
        "stacked": plots.stacked_bars(stacked_frame(), area_col="area", category_col="level", count_col="count", title="階層化の内訳", footer=FOOT).figure,
        "flow": plots.flow_chart(flow_steps(), title="糖尿病性腎症の抽出フロー", footer=FOOT).figure,
        "spine": plots.spine_chart(spine_table(), title="地域の健康プロファイル", footer=FOOT, fmt_col="fmt"),
        "heat": plots.heat_table(heat_frame(), row_col="district", col_col="group", value_col="rate", title="地区別・性年齢別受診率", footer=FOOT,
                                 count_col="x").figure,
        "upset": plots.upset_chart(membership_frame(), title="一体的実施の抽出条件の重なり", footer=FOOT),
    }


# ---------------------------------------------------------------------------------------------
# Style and palette
# ---------------------------------------------------------------------------------------------
def test_japanese_text_renders_without_missing_glyphs(tmp_path):
    with plots.style():  # a user's own figure in the committee style
        fig = plots._new_figure()
        ax = fig.add_subplot()
        ax.set_title("特定健診受診率・メタボ該当者（令和６年度）ｰ−±①※")
        ax.text(0.5, 0.5, "糖尿病性腎症重症化予防　ＨｂＡ１ｃ 8.0%以上 ≥")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig.savefig(tmp_path / "jp.png")
            fig.savefig(tmp_path / "jp.pdf")
        assert matplotlib.rcParams["font.family"][0] == "IPAexGothic"
    assert not [w for w in caught if "missing from font" in str(w.message)]


def test_charts_keep_japanese_font_after_seaborn_set_theme(tmp_path):
    import seaborn as sns
    with matplotlib.rc_context():  # leave the global style as it was for the other tests
        sns.set_theme()
        family = list(matplotlib.rcParams["font.family"])
        assert family[0] != "IPAexGothic"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fig = plots.ranked_bar(area_table(), value_col="value", lower_col="lower", upper_col="upper",
                                   benchmark=0.36, title="受診率", footer=FOOT).figure
            fig.savefig(tmp_path / "after_seaborn.png", dpi=50)
        assert not [w for w in caught if "missing from font" in str(w.message)]
        assert list(matplotlib.rcParams["font.family"]) == family  # the chart changed no global setting
        plots.apply_style()  # on request, the committee style becomes the global default
        assert matplotlib.rcParams["font.family"][0] == "IPAexGothic"


def test_a_chart_draws_in_the_committee_style_wherever_it_is_saved(tmp_path):
    """A figure the module made is drawn in the committee style also when it is saved outside
    `style()` under another global style (issue 18: `styled` only lays it out, the draws are
    styled): an artist sees the committee font while the figure draws, tick labels are in
    IPAexGothic, and no global setting changed."""
    import seaborn as sns

    seen = []

    class Probe(matplotlib.artist.Artist):
        def draw(self, renderer):
            seen.append(list(matplotlib.rcParams["font.family"]))

    fig = plots.trend_chart(trend_frame(), x="fy", y="value", lower="lower", upper="upper", series_col="sex",
                            title="受診率の推移", footer=FOOT).figure
    fig.add_artist(Probe())
    with matplotlib.rc_context():
        sns.set_theme()
        before = dict(matplotlib.rcParams)
        fig.savefig(tmp_path / "outside.png", dpi=60)
        assert dict(matplotlib.rcParams) == before  # drawing changed no global setting
    assert seen and seen[0][0] == "IPAexGothic" != before["font.family"][0]
    ticks = fig.axes[0].get_xticklabels() + fig.axes[0].get_yticklabels()
    assert ticks and {t.get_fontfamily()[0] for t in ticks} == {"IPAexGothic"}


@pytest.mark.parametrize("comparison, polarity, label", [
    ("有意に高い", "higher_better", "良い"), ("有意に低い", "higher_better", "悪い"),
    ("有意に高い", "lower_better", "悪い"), ("有意に低い", "lower_better", "良い"),
    ("有意に高い", None, "高い"), ("有意に低い", None, "低い"),
    ("有意差なし", "lower_better", "差なし"), ("有意差なし", None, "差なし"),
    (None, "higher_better", "判定なし"), (float("nan"), None, "判定なし"),
])
def test_significance_label_and_colour(comparison, polarity, label):
    assert plots.significance_label(comparison, polarity) == label
    assert plots.significance_colour(comparison, polarity) == plots.SIGNIFICANCE_COLOURS[label]


def test_significance_palette_distinct_and_bad_polarity_rejected():
    colours = [plots.SIGNIFICANCE_COLOURS[k] for k in ("良い", "差なし", "悪い", "高い", "低い")]
    assert len(set(colours)) == 5
    with pytest.raises(ParameterError):
        plots.significance_colour("有意に高い", "higher")


def test_footer_text_and_fiscal_year_labels():
    assert plots.footer("KDB（デモデータ）", 2024, "国保 40–74歳", "全市町村") == (
        "出典: KDB（デモデータ） ｜ 年度: 令和6年度（2024） ｜ 対象: 国保 40–74歳 ｜ 条件: 全市町村")
    assert plots.footer("NDB", "令和3年度", "全国") == "出典: NDB ｜ 年度: 令和3年度 ｜ 対象: 全国"
    assert plots.fy_label(2022) == "R4\n(2022)"
    assert plots.fy_label(2018) == "H30\n(2018)"
    assert plots.fy_japanese(2019) == "令和元年度（2019）"
    assert plots.footer("KDB", (2020, 2024), "国保") == (
        "出典: KDB ｜ 年度: 令和2年度（2020）〜令和6年度（2024） ｜ 対象: 国保")


def test_class_breaks_quantile_and_nice():
    assert plots.class_breaks([1, 2, 3, 4, 5], 4).tolist() == [1, 2, 3, 4, 5]
    assert plots.class_breaks([10, 10, 10, 20], 4).tolist() == [10, 12.5, 20]  # ties merged
    assert plots.class_breaks([0.3, 4.6, 9.7], 5, "nice").tolist() == [0.3, 2, 4, 6, 8, 9.7]
    assert plots.class_breaks([np.nan], 5).tolist() == [0.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Every chart renders, has a footer and a non-blank PNG
# ---------------------------------------------------------------------------------------------
def test_every_chart_renders_with_footer_and_non_blank_png(tmp_path, boundaries):
    charts = all_charts(boundaries)
    assert len(charts) == 14
    for name, fig in charts.items():
        image = render(fig, tmp_path / f"{name}.png")
        assert image.std() > 0.05, name
        assert "出典: KDB（デモデータ）" in footer_text(fig), name
        assert "令和6年度（2024）" in footer_text(fig), name
        assert any(t.get_gid() == "title" for t in fig.texts), name


def test_comparison_note_only_where_comparisons_are_shown(boundaries):
    at = area_table()
    with_note = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT).figure
    without = plots.population_pyramid(pyramid_frame(), title="人口", footer=FOOT).figure
    assert plots.COMPARISON_NOTE in footer_text(with_note)
    assert plots.COMPARISON_NOTE not in footer_text(without)


# ---------------------------------------------------------------------------------------------
# Small counts never appear (docs/design.md §6, docs/rules.md §9)
# ---------------------------------------------------------------------------------------------
def test_small_counts_never_appear_in_texts(boundaries):
    at = area_table()  # 川北町: x = 7, value 17.5 %
    ranked = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT, count_col="x",
                              value_fmt="{:.1%}").figure
    assert not any("17.5" in t for t in texts_of(ranked))
    assert plots.SUPPRESSION_MARK in texts_of(ranked)
    assert "10人未満のため非表示（‐）" in footer_text(ranked)
    ckd = plots.ckd_heatmap(ckd_counts(), title="CKD", footer=FOOT).figure  # G4/A2 = 3
    assert not has_number(texts_of(ckd), 3)
    assert has_number(texts_of(ckd), 15) and has_number(texts_of(ckd), 820)
    flow = plots.flow_chart(flow_steps(), title="フロー", footer=FOOT).figure  # 治療中断 = 6 of 140 = 118 + 16 + 6
    flow_texts = visible_texts_of(flow)
    assert not has_number(flow_texts, 6)
    assert "治療中断\n‐" in flow_texts
    assert "未治療\n‐" in flow_texts  # secondary suppression: 140 − 118 − 16 would give 6
    assert not has_number(flow_texts, 16)
    heat = plots.heat_table(heat_frame(), row_col="district", col_col="group", value_col="rate", title="受診率", footer=FOOT, count_col="x").figure
    small_rate = f"{3 / heat_frame().loc[5, 'n']:.1%}"
    assert small_rate not in texts_of(heat)
    upset = plots.upset_chart(membership_frame(), title="重なり", footer=FOOT)  # one intersection of 4
    assert not has_number(texts_of(upset), 4)
    stacked = plots.stacked_bars(stacked_frame(), area_col="area", category_col="level", count_col="count", title="内訳", footer=FOOT).figure  # 珠洲市 4
    assert not has_number(texts_of(stacked), 4)
    pyr = plots.pyramid_small_multiples(
        pd.concat([pyramid_frame("A地区"), pyramid_frame("C地区", 0.02)]), facet_col="district", title="人口", footer=FOOT)
    assert "10人未満のため非表示（‐）" in footer_text(pyr)


def test_threshold_boundary_exactly_ten_is_shown_nine_is_not():
    steps = pd.DataFrame({"step_id": ["a", "b", "c"], "step_label": ["全体", "該当", "うち未治療"],
                          "count": [40, 10, 9], "parent_id": [None, "a", "b"]})
    fig = plots.flow_chart(steps, title="境界", footer=FOOT, show_share=False).figure
    texts = visible_texts_of(fig)
    assert "該当\n10人" in texts
    assert "うち未治療\n‐" in texts
    assert not has_number(texts, 9)


def test_stacked_shares_exclude_suppressed_segment_from_denominator():
    fig = plots.stacked_bars(stacked_frame(), area_col="area", category_col="level", count_col="count", title="内訳", footer=FOOT).figure
    bars = [p for p in fig.axes[0].patches if p.get_gid() == "stacked_segment"]
    # 4 categories × 4 areas, category-major order; 珠洲市 is the third area (row index 2)
    suzu = [bars[j * 4 + 2].get_width() for j in range(4)]
    assert suzu[0] == 0.0  # 積極的支援 4 persons: not drawn
    assert suzu[1] == pytest.approx(22 / 302)  # share of the shown 22 + 120 + 160
    assert sum(suzu) == pytest.approx(1.0)
    assert "n=302" in texts_of(fig)


# ---------------------------------------------------------------------------------------------
# Significance colours: one palette across charts (docs/design.md §10)
# ---------------------------------------------------------------------------------------------
def test_significance_colours_are_the_same_across_ranked_funnel_spine():
    pal = plots.SIGNIFICANCE_COLOURS
    at = area_table()
    ranked = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT,
                              polarity="higher_better").figure
    bars = [p for p in ranked.axes[0].patches]
    by_height = sorted(zip(at["value"], at["comparison"]), reverse=True)
    expected = [pal[plots.significance_label(c, "higher_better")] for _, c in by_height]
    assert facecolours(bars) == [mcolors.to_hex(c) for c in expected]
    assert mcolors.to_hex(pal["良い"]) in facecolours(bars)  # 輪島市 有意に高い
    assert mcolors.to_hex(pal["悪い"]) in facecolours(bars)

    funnel = plots.funnel_plot(at, value_col="value", denom_col="n", target=0.36, title="ファネル", footer=FOOT, count_col="x",
                               polarity="higher_better").figure
    points = next(c for c in funnel.axes[0].collections if c.get_gid() == "funnel_points")
    funnel_colours = {mcolors.to_hex(c) for c in points.get_facecolors()}
    assert funnel_colours <= {pal["良い"], pal["悪い"], pal["差なし"]}
    assert pal["良い"] in funnel_colours and pal["悪い"] in funnel_colours

    spine = plots.spine_chart(spine_table(), title="プロファイル", footer=FOOT)
    spine_colours = [mcolors.to_hex(line.get_color()) for line in spine.findobj(matplotlib.lines.Line2D)
                     if str(line.get_gid()).startswith("spine_point::")]
    assert spine_colours == [pal["良い"], pal["良い"], pal["差なし"], pal["低い"]]


def test_funnel_labels_only_areas_outside_95_limits():
    at = area_table()
    fig = plots.funnel_plot(at, value_col="value", denom_col="n", target=0.36, title="ファネル", footer=FOOT, count_col="x").figure
    labels = {t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_gid() == "funnel_label"}
    # 95% limits 0.36 ± 1.96·sqrt(0.36·0.64/n): 金沢市 0.35 (n 12000: 0.3514–0.3686 → below),
    # 輪島市 0.444 (n 900: upper 0.3914 → above), 加賀市 0.333 (n 3300: lower 0.3436 → below),
    # 白山市 0.375 (n 5600: upper 0.3726 → above); かほく市 0.385 (n 1300: upper 0.3861) inside;
    # 川北町 (x = 7) is suppressed
    assert labels == {"金沢市", "輪島市", "加賀市", "白山市"}
    points = next(c for c in fig.axes[0].collections if c.get_gid() == "funnel_points")
    assert len(points.get_offsets()) == 9


# ---------------------------------------------------------------------------------------------
# Spine chart: better always on the right
# ---------------------------------------------------------------------------------------------
def spine_x(fig, name):
    line = next(line for line in fig.findobj(matplotlib.lines.Line2D)
                if line.get_gid() == f"spine_point::{name}")
    return float(line.get_xdata()[0])


def test_spine_chart_flips_lower_is_better():
    fig = plots.spine_chart(spine_table(), title="プロファイル", footer=FOOT)
    # higher_better 0.42 vs 0.38, half-width max(0.13, 0.17) = 0.17 → 0.5 + 0.04/0.34
    assert spine_x(fig, "特定健診受診率") == pytest.approx(0.5 + 0.04 / 0.34)
    # lower_better 0.15 vs 0.17 (better) → right of centre: 0.5 + 0.02/0.14
    assert spine_x(fig, "メタボ該当者の割合") == pytest.approx(0.5 + 0.02 / 0.14)
    # no polarity 61 vs 63 → left (not flipped)
    assert spine_x(fig, "平均年齢") == pytest.approx(0.5 - 2 / 10)
    ranges = [p for p in fig.axes[1].patches if p.get_gid() == "spine_range"]
    # lower_better range: worst (max 0.24) at the left: 0.5 - 0.07/0.14 = 0.0
    assert ranges[1].get_x() == pytest.approx(0.0)
    assert ranges[1].get_x() + ranges[1].get_width() == pytest.approx(0.5 + 0.05 / 0.14)


def test_spine_chart_text_columns_show_values():
    fig = plots.spine_chart(spine_table(), title="プロファイル", footer=FOOT, fmt_col="fmt")
    texts = texts_of(fig)
    assert {"特定健診受診率", "42.0%", "38.0%", "61.0", "63.0"} <= set(texts)


# ---------------------------------------------------------------------------------------------
# Individual charts
# ---------------------------------------------------------------------------------------------
def test_choropleth_labels_do_not_overlap(boundaries):
    fig = plots.choropleth(muni_values(boundaries), boundaries, value_col="rate", title="受診率", footer=FOOT).figure
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in fig.axes[0].texts if t.get_gid() == "area_label" and t.get_visible()]
    assert len(labels) >= 12
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    areas = [c for c in fig.axes[0].collections if c.get_gid() == "map_areas"]
    assert len(areas) == 1 and len(areas[0].get_paths()) == 19  # one collection, one path per area


def test_choropleth_reuses_prepared_shapes_and_recolours(boundaries):
    """The boundary shapes are prepared once per process (issue 18: 01 draws 14 maps of the same
    shapes): a second map of the same boundaries draws the very same Path objects, only with the
    colours of its own values; other boundaries get their own shapes."""
    values = muni_values(boundaries)
    first = plots.choropleth(values, boundaries, value_col="rate", title="受診率", footer=FOOT, labels=False)
    reversed_values = values.assign(rate=values["rate"].max() + values["rate"].min() - values["rate"])
    second = plots.choropleth(reversed_values, boundaries, value_col="rate", title="受診率", footer=FOOT,
                              labels=False)
    one, two = ([c for c in ax.collections if c.get_gid() == "map_areas"][0] for ax in (first, second))
    assert all(a is b for a, b in zip(one.get_paths(), two.get_paths()))
    rates = values.set_index("code").loc[boundaries["code"], "rate"].to_numpy()
    low, high = int(np.argmin(rates)), int(np.argmax(rates))
    colours = plots._class_colours("Blues", 5)  # quantile classes of 19 distinct values: 5 classes
    assert facecolours_of(one)[low] == colours[0] and facecolours_of(one)[high] == colours[-1]
    assert facecolours_of(two)[low] == colours[-1] and facecolours_of(two)[high] == colours[0]
    other = boundaries.iloc[:5].copy()
    other["geometry"] = [g.buffer(0) for g in other["geometry"]]  # other shape objects
    third = plots.choropleth(values, other, value_col="rate", title="受診率", footer=FOOT, labels=False)
    paths = [c for c in third.collections if c.get_gid() == "map_areas"][0].get_paths()
    assert len(paths) == 5 and not any(a is b for a, b in zip(paths, one.get_paths()))


def facecolours_of(collection) -> list[str]:
    return [mcolors.to_hex(c) for c in collection.get_facecolors()]


def test_choropleth_small_towns_are_labelled_beside_the_map_with_leader_lines(boundaries):
    ax = plots.choropleth(muni_values(boundaries), boundaries, value_col="rate", title="受診率", footer=FOOT)
    west = min(g.bounds[0] for g in boundaries["geometry"])
    sizes = dict(zip(boundaries["name"], boundaries["geometry"].map(lambda g: g.area)))
    small = {n for n, a in sizes.items() if a < 0.25 * np.mean(list(sizes.values()))}
    assert {"野々市市", "川北町", "内灘町"} <= small  # the three smallest of 石川県 (13.6–20 km²)
    labels = {t.get_text(): t for t in ax.texts if t.get_gid() == "area_label"}
    for name in small:  # west coast towns: label in the sea west of the prefecture, on a line
        assert labels[name].get_position()[0] < west and labels[name].get_visible(), name
    lines = [a for a in ax.lines if a.get_gid() == "callout_line"]
    assert len(lines) == len(small)
    assert ax.get_xlim()[0] < west - 0.1  # room for the names
    for name in set(sizes) - small:  # the others stay inside the map
        assert labels[name].get_position()[0] >= west, name


def test_choropleth_tile_fallback_has_note():
    values = pd.DataFrame({"code": ["17201", "17202"], "rate": [40.0, 30.0]})
    fig = plots.choropleth(values, None, value_col="rate", title="受診率", footer=FOOT, tiles=tiles(),
                           fallback_note="タイル表示の注記").figure
    assert "タイル表示の注記" in footer_text(fig)
    assert "金沢市\n40.0" in texts_of(fig)
    assert "輪島市\n‐" in texts_of(fig)  # no value
    with pytest.raises(ParameterError):
        plots.choropleth(values, None, value_col="rate", title="受診率", footer=FOOT).figure


def test_ranked_bar_sorted_with_benchmark_and_groups():
    at = area_table()
    fig = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT, group_col="area",
                           count_col="x").figure
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:5] == ["石川中央", "かほく市", "白山市", "金沢市", "川北町"]
    assert labels[5:8] == ["能登中部", "七尾市", "羽咋市"] or labels[5:8] == ["能登中部", "羽咋市", "七尾市"]
    assert any(line.get_xdata()[0] == 0.36 for line in ax.get_lines())


def test_trend_chart_wareki_ticks_and_series():
    fig = plots.trend_chart(trend_frame(), x="fy", y="value", lower="lower", upper="upper", series_col="sex", title="推移", footer=FOOT).figure
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "R2\n(2020)", "R3\n(2021)", "R4\n(2022)", "R5\n(2023)", "R6\n(2024)"]
    assert len([line for line in ax.get_lines() if line.get_gid() == "trend_line"]) == 2


def test_ckd_heatmap_colours_and_totals():
    fig = plots.ckd_heatmap(ckd_counts(), title="CKD", footer=FOOT, show_share=False).figure
    ax = fig.axes[0]
    cells = {(round(p.get_x()), round(p.get_y())): mcolors.to_hex(p.get_facecolor())
             for p in ax.patches}
    from hsutils.rules.clinical import CKD_COLOURS
    assert cells[(0, 0)] == CKD_COLOURS["green"].lower()   # G1 A1
    assert cells[(1, 2)] == CKD_COLOURS["orange"].lower()  # G3a A2
    assert cells[(2, 2)] == CKD_COLOURS["red"].lower()     # G3a A3
    assert cells[(0, 3)] == CKD_COLOURS["orange"].lower()  # G3b A1
    totals = [t.get_text() for t in ax.texts if t.get_gid() == "ckd_total"]
    # row G1 = 820+95+40 = 955; column A1 = 820+2100+540+120+15+0 = 3595; grand total 4296
    assert "955" in totals and "3,595" in totals and "4,296" in totals
    cell_texts = [t.get_text() for t in ax.texts if t.get_gid() == "ckd_cell"]
    assert cell_texts.count("0") == 2
    # G4 row (15, 3, 12; total 30 shown): 3 hidden, so 12 is hidden too (secondary suppression)
    assert cell_texts[12:15] == ["15", "‐", "‐"]


def test_population_pyramid_men_left_women_right():
    fig = plots.population_pyramid(pyramid_frame(), title="人口", footer=FOOT).figure
    ax = fig.axes[0]
    male = [p for p in ax.patches if p.get_gid() == "pyramid_male"]
    female = [p for p in ax.patches if p.get_gid() == "pyramid_female"]
    assert [p.get_width() for p in male][0] == -300
    assert [p.get_width() for p in female][-1] == 1010
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "40-44"


def test_upset_counts_intersections():
    fig = plots.upset_chart(membership_frame(), title="重なり", footer=FOOT)
    bars = [p.get_height() for p in fig.axes[0].patches]
    assert bars == [120, 80, 35, 22, 0]  # the 4-person intersection is last and not drawn
    sets = [p.get_width() for p in fig.axes[2].patches]
    # 低栄養 120+35+4 and 服薬 22+4 would reveal the hidden 4 by subtraction: hidden; 口腔 80+35
    assert sets == [0, 115, 0]
    set_texts = [t.get_text() for t in fig.axes[2].texts]
    assert set_texts == ["‐", "115", "‐"]


def test_heat_table_suppressed_cell_and_format():
    fig = plots.heat_table(heat_frame(), row_col="district", col_col="group", value_col="rate", title="受診率", footer=FOOT, count_col="x").figure
    cells = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "heat_cell"]
    assert len(cells) == 12
    assert cells[0] == "30.0%"  # 60/200
    assert cells[5] == "‐"


def test_funnel_ratio_kind():
    df = pd.DataFrame({"name": ["A町", "B町", "C町", "D町"], "observed": [30, 12, 5, 40],
                       "expected": [15.0, 12.0, 4.0, 38.0]})
    df["ratio"] = df["observed"] / df["expected"]
    fig = plots.funnel_plot(df, value_col="ratio", denom_col="expected", target=1.0, kind="ratio", title="標準化該当比",
                            footer=FOOT, count_col="observed").figure
    labels = {t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_gid() == "funnel_label"}
    # A町 O = 30, E = 15: Byar lower 95% limit of 30 is 20.24, /15 = 1.35 > 1 → outside;
    # B町 1.00 and D町 40/38 = 1.05 inside; C町 (O = 5) is not drawn
    assert labels == {"A町"}
    points = next(c for c in fig.axes[0].collections if c.get_gid() == "funnel_points")
    assert sorted(points.get_offsets()[:, 0].tolist()) == [12.0, 15.0, 38.0]
    assert "基準値 1.00" in texts_of(fig)


def test_a4_portrait_size():
    fig = plots.heat_table(heat_frame(), row_col="district", col_col="group", value_col="rate", title="受診率", footer=FOOT, size="a4_portrait").figure
    assert tuple(fig.get_size_inches()) == pytest.approx((8.27, 11.69))

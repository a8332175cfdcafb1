"""The chart gallery: every chart type of `hsutils.publish.plots`, drawn from (demo) data, on one page.

`build_gallery(out, data_dir)` runs the real library end to end (synth → pipeline → indicators /
programs / clinical / regions → plots → report) and writes ``out/figures/<name>.png|pdf`` plus
``out/index.html`` (Japanese), so anyone can see all chart types at once (`hsutils gallery`).

Privacy (docs/design.md §6, docs/rules.md §9): the gallery only draws aggregates. Person-level data (demo CSVs
and the Parquet cache with person_id) stay in a temporary folder that is deleted afterwards;
every figure derived from a count 1–9 is hidden by the chart functions, to which the gallery
passes the count behind every value (`count_col`).
"""
from __future__ import annotations

import html
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.inputs import regions
from hsutils.rules import clinical, programs
from hsutils.analysis import indicators, pipeline, references
from hsutils.publish import plots, privacy, report
from hsutils.patterns import nephropathy
from hsutils.demo import synth

__all__ = ["GalleryChart", "CHART_DESCRIPTIONS", "DEMO_SCALE", "build_gallery"]

#: Size of the demo data generated when no data folder is given.
DEMO_SCALE = 0.1
#: Footer note of the tile-map example (the fallback when a municipality has no boundary).
TILE_EXAMPLE_NOTE = ("タイル地図の例：境界データにない市町村（境界データの版より後に新設された市町村など）があるときに、"
                     "地図の代わりに表示します（面積・位置は実際と異なります）")

#: One-line Japanese description of what each chart type is for (shown in index.html).
CHART_DESCRIPTIONS = {
    "choropleth": "地域ごとの値を色の濃さで地図に示し、地理的なかたよりを見るための図です。",
    "tile_map": "境界データがないときの代わりの地図です。市町村を同じ大きさのタイルで並べ、値を色で示します。",
    "funnel_plot": "対象者数（分母）と値を並べ、偶然のばらつきの範囲（管理限界）を超える地域を見つけるための図です。",
    "ranked_bar": "地域の値を信頼区間つきで並べ、基準値との差が統計的に意味のあるものかを色で示す図です。",
    "trend_chart": "年度ごとの推移を信頼区間つきで示し、変化の方向と大きさを見るための図です。",
    "ckd_heatmap": "CKD重症度分類（eGFR区分×尿蛋白区分）ごとの人数をリスクの色で示す表です。",
    "population_pyramid": "性・年齢階級別の人数を左右に並べ、集団の年齢構成を見るための図です。",
    "pyramid_small_multiples": "地区ごとの人口ピラミッドを同じ目盛りで並べ、年齢構成と規模を比べる図です。",
    "stacked_bars": "地域ごとの区分（保健指導レベルなど）の構成割合を帯グラフで比べる図です。",
    "flow_chart": "対象者の抽出の流れを段階ごとの人数で示し、各段階で何人が該当するかを見る図です。",
    "spine_chart": "ひとつの地域の複数の指標を、全地域の分布と県の値に対して一度に見るための図です。",
    "heat_table": "地域×指標の表の各セルを、県との比較の判定（良い・悪い・差なし）で色分けした表です。",
    "upset_chart": "複数の条件の重なり（どの組み合わせに何人が該当するか）を示す図です。",
    "reference_comparison_chart": "ひとつの地域を県・同規模・国（NDB）と年齢調整して並べて比べ、比較できない基準はその理由を示す図です。",
    "smoothed_ratio_chart": "小さな町の標準化比のばらつきを経験ベイズ法でならした値を、そのままの値と並べて示す図です。",
}

_SOURCE_DEMO = "hsutils デモデータ（架空）"
_SOURCE_DATA = "入力データ"
_KANAZAWA = "17201"
_PROFILE_MUNI = "17210"  # 白山市: a mid-sized municipality for the area profile
_TREND_MUNIS = ("17201", "17204")  # 金沢市 and 輪島市 next to the prefecture
_SPINE_INDICATORS = ("kenshin_rate", "hokenshido_rate", "metabo", "metabo_yobi", "hba1c8",
                     "ref_bp", "ref_glucose", "ref_lipid", "egfr45", "smoking", "bmi25")
#: Short column headings of the heat table (indicator names are too long for a column).
_HEAT_INDICATORS = {
    "kenshin_rate": "健診受診率", "hokenshido_rate": "保健指導実施率", "metabo": "メタボ該当",
    "hba1c8": "HbA1c 8.0%以上", "ref_bp": "血圧 受診勧奨", "egfr45": "eGFR 45未満",
}
_GUIDANCE_COLOURS = {"積極的支援": plots.OKABE_ITO["vermillion"], "動機付け支援": plots.OKABE_ITO["orange"],
                     "情報提供": plots.OKABE_ITO["sky_blue"], "服薬中": "#A0A0A0"}


@dataclass
class GalleryChart:
    """One chart of the gallery: file name (ASCII), Japanese title, chart type and the figure."""
    name: str
    title: str
    kind: str
    figure: object
    note: str = ""


@dataclass
class _Context:
    """What every chart builder needs, computed once."""
    prepared: pipeline.Prepared
    fy: int
    fys: list
    source: str
    muni_table: pd.DataFrame       # indicator_table at muni level, latest fy
    area_table: pd.DataFrame       # indicator_table at 二次医療圏 level, latest fy
    pref_table: pd.DataFrame       # indicator_table at prefecture level, all fys
    boundary_file: Path | None     # the user's file in the data folder; None = shipped N03 file

    def footer(self, population: str, conditions: str | None = None, fy=None, *, lookback=()) -> str:
        """As `NotebookContext.footer` (the look-back of the `lookback` indicators, docs/hotei.md §7.5)."""
        history = (getattr(self.prepared, "meta", None) or {}).get("claims_history")
        conditions = indicators.footer_conditions(conditions, lookback, history)
        return plots.footer(self.source, self.fy if fy is None else fy, population, conditions)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def _shown_count(table: pd.DataFrame) -> pd.Series:
    """The numerator behind each rate, NaN where numerator or denominator is 1–9 (indicator_table
    `suppressed`), so the chart functions hide the value (docs/rules.md §9)."""
    return table["numerator"].astype(float).where(~table["suppressed"].astype(bool))


def _context(prepared: pipeline.Prepared, source: str, boundary_file: Path | None) -> _Context:
    fys = prepared.fiscal_years
    fy = fys[-1]
    master = prepared.municipalities
    muni = indicators.indicator_table(prepared.strata, "muni", area_map=master, fy=fy)
    area = indicators.indicator_table(prepared.strata, "medical_area", area_map=master, fy=fy)
    pref = indicators.indicator_table(prepared.strata, "pref", area_map=master)
    for t in (muni, area, pref):
        t["shown_count"] = _shown_count(t)
    return _Context(prepared, fy, fys, source, muni, area, pref, boundary_file)


def _one(table: pd.DataFrame, indicator_id: str) -> pd.DataFrame:
    return table[table["indicator_id"] == indicator_id].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------
def _medical_area_tiles(master: pd.DataFrame) -> pd.DataFrame:
    """Tile layout of the 二次医療圏: each area placed at the mean position of its
    municipalities (tile_grid_layout on a master with one row per area)."""
    m = master.assign(lat=pd.to_numeric(master["lat"], errors="coerce"),
                      lon=pd.to_numeric(master["lon"], errors="coerce"),
                      population=pd.to_numeric(master["population"], errors="coerce"))
    areas = (m.groupby("medical_area_code", as_index=False, sort=True)
             .agg(name=("medical_area", "first"), pref_code=("pref_code", "first"), lat=("lat", "mean"),
                  lon=("lon", "mean"), population=("population", "sum")))
    pseudo = areas.assign(muni_code=[f"{k:05d}" for k in range(len(areas))],
                          medical_area=areas["name"])
    tiles = regions.tile_grid_layout(pseudo)
    tiles["code"] = areas["medical_area_code"].astype(str).to_numpy()  # same order as `pseudo`
    return tiles


def _map_values(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"code": table["area_code"].astype(str), "name": table["area_name"].astype(str),
                         "value": table["crude_rate"].astype(float), "count": table["shown_count"]})


def _choropleths(ctx: _Context) -> list[GalleryChart]:
    """Municipality and 二次医療圏 maps from real boundaries (a boundary file of the data folder,
    else the nationwide N03 file shipped with the package; `regions.boundary_layers`), and the
    tile map that replaces them when a municipality has no boundary."""
    master = ctx.prepared.municipalities
    layers = regions.boundary_layers(master, ctx.boundary_file)
    muni = _map_values(_one(ctx.muni_table, "kenshin_rate"))
    area = _map_values(_one(ctx.area_table, "metabo"))
    muni_title = f"特定健診実施率（市町村別、{plots.fy_japanese(ctx.fy)}）"
    area_title = f"メタボリックシンドローム該当者の割合（二次医療圏別、{plots.fy_japanese(ctx.fy)}）"
    muni_foot = ctx.footer(indicators.population_of("kenshin_rate"), "粗率（%）")
    area_foot = ctx.footer(indicators.population_of("metabo"), "粗率（%）")
    mapped = layers["muni"] is not None
    credit = regions.boundary_footer(layers)
    kind = "choropleth" if mapped else "tile_map"
    muni_style = {"count_col": "count", "legend_title": "受診率（%）", "cmap": "Blues"}
    return [
        GalleryChart("choropleth_muni", muni_title, kind,
                     plots.choropleth(muni, layers["muni"], value_col="value", title=muni_title,
                                      footer=muni_foot + credit, tiles=None if mapped else layers["tiles"],
                                      fallback_note=layers["note"] or None, **muni_style).figure,
                     layers["note"]),
        GalleryChart("choropleth_medical_area", area_title, kind,
                     plots.choropleth(area, layers["medical_area"], value_col="value", title=area_title,
                                      footer=area_foot + credit, count_col="count",
                                      tiles=None if mapped else _medical_area_tiles(master),
                                      legend_title="該当者の割合（%）", cmap="Oranges",
                                      fallback_note="境界データが使えないため、二次医療圏を同じ大きさのタイルで"
                                                    "表示しています（面積・位置は実際と異なります）").figure),
        GalleryChart("tile_map", muni_title + "（タイル地図）", "tile_map",
                     plots.choropleth(muni, None, value_col="value", title=muni_title, footer=muni_foot,
                                      tiles=layers["tiles"], fallback_note=TILE_EXAMPLE_NOTE, **muni_style).figure),
    ]


# ---------------------------------------------------------------------------------------------
# Comparisons between areas
# ---------------------------------------------------------------------------------------------
def _funnel(ctx: _Context) -> list[GalleryChart]:
    t = _one(ctx.muni_table, "kenshin_rate")
    target = float(t["ref_rate"].iloc[0]) / 100
    df = pd.DataFrame({"name": t["area_name"], "rate": t["crude_rate"] / 100,
                       "n": t["denominator"].astype(float), "count": t["shown_count"]})
    title = f"特定健診実施率のファンネルプロット（市町村、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.funnel_plot(df, value_col="rate", denom_col="n", target=target, kind="proportion", title=title,
                            footer=ctx.footer(indicators.population_of("kenshin_rate"), "粗率、基準値は県全体"),
                            count_col="count", polarity="higher_better",
                            y_label="特定健診実施率", target_label="県全体").figure
    return [GalleryChart("funnel_plot", title, "funnel_plot", fig)]


def _ranked_bar(ctx: _Context) -> list[GalleryChart]:
    t = _one(ctx.muni_table, "kenshin_rate")
    df = pd.DataFrame({"name": t["area_name"], "sr": t["sr"] * 100, "lower": t["sr_lower"] * 100,
                       "upper": t["sr_upper"] * 100, "comparison": t["comparison"],
                       "medical_area": t["medical_area"], "count": t["shown_count"]})
    title = f"特定健診受診の標準化比（市町村別、県=100、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.ranked_bar(df, value_col="sr", lower_col="lower", upper_col="upper", benchmark=100.0, title=title,
                           footer=ctx.footer(indicators.population_of("kenshin_rate"),
                                             "性・年齢調整（間接法、県全体=100）、二次医療圏別に表示"),
                           polarity="higher_better", group_col="medical_area", count_col="count",
                           value_fmt="{:.0f}", x_label="標準化受診比（県=100）",
                           benchmark_label="県全体", size="a4_portrait").figure
    return [GalleryChart("ranked_bar", title, "ranked_bar", fig)]


def _trend(ctx: _Context) -> list[GalleryChart]:
    pref = _one(ctx.pref_table, "kenshin_rate").assign(series="県全体")
    master = ctx.prepared.municipalities
    munis = indicators.indicator_table(ctx.prepared.strata, "muni", area_map=master,
                                       indicators=["kenshin_rate"])
    munis = munis[munis["area_code"].isin(_TREND_MUNIS)]
    munis = munis.assign(series=munis["area_name"].astype(str), shown_count=_shown_count(munis))
    df = pd.concat([pref, munis], ignore_index=True)[
        ["fy", "series", "crude_rate", "crude_lower", "crude_upper", "shown_count"]]
    df = df.assign(crude_rate=df["crude_rate"] / 100, crude_lower=df["crude_lower"] / 100,
                   crude_upper=df["crude_upper"] / 100)
    title = "特定健診実施率の推移"
    fig = plots.trend_chart(df, x="fy", y="crude_rate", lower="crude_lower", upper="crude_upper", series_col="series", title=title,
                            footer=ctx.footer(indicators.population_of("kenshin_rate"), "粗率",
                                              fy=(ctx.fys[0], ctx.fys[-1])),
                            count_col="shown_count", value_fmt="{:.1%}", y_label="特定健診実施率",
                            target=0.6, target_label="国の目標").figure
    return [GalleryChart("trend_chart", title, "trend_chart", fig)]


# ---------------------------------------------------------------------------------------------
# Person-level summaries (aggregated here, vectorised)
# ---------------------------------------------------------------------------------------------
def _latest(ctx: _Context) -> pd.DataFrame:
    py = ctx.prepared.person_year
    return py[(py["fy"] == ctx.fy).to_numpy()]


def _ckd(ctx: _Context) -> list[GalleryChart]:
    py = _latest(ctx)
    # every 国保 examinee with both measures: the population of notebook 04's map (docs/rules.md §16)
    checked = py[(py["insurance"].astype(str).eq("国保") & py["has_kenshin"].fillna(False).astype(bool)
                  & py["ckd_g"].notna() & py["ckd_a"].notna()).to_numpy()]
    counts = (checked.groupby(["ckd_g", "ckd_a"], observed=True).size()
              .rename("count").reset_index().rename(columns={"ckd_g": "g_stage", "ckd_a": "a_stage"}))
    title = f"CKD重症度分類（県全体、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.ckd_heatmap(counts, title=title, footer=ctx.footer(nephropathy.ckd_population(nephropathy.POP_ALL),
                                                                   "eGFRは日本腎臓学会の推算式")).figure
    return [GalleryChart("ckd_heatmap", title, "ckd_heatmap", fig)]


def _pyramids(ctx: _Context) -> list[GalleryChart]:
    py = _latest(ctx)
    counts = (py.groupby(["age_band", "sex"], observed=True).size().rename("count").reset_index())
    counts["age_band"] = counts["age_band"].astype(str)
    title = f"被保険者の人口ピラミッド（県全体、{plots.fy_japanese(ctx.fy)}）"
    pyramid = plots.population_pyramid(counts, title=title, footer=ctx.footer(indicators.POP_INSURED_BOTH)).figure
    kz = py[(py["muni_code"] == _KANAZAWA).to_numpy() & py["district_code"].notna().to_numpy()]
    names = ctx.prepared.districts
    names = names[names["muni_code"].astype(str) == _KANAZAWA].set_index("district_code")["name"]
    kz = kz.assign(district=kz["district_code"].map(names).fillna(kz["district_code"]).astype(str))
    by_district = (kz.groupby(["district", "age_band", "sex"], observed=True).size()
                   .rename("count").reset_index())
    by_district["age_band"] = by_district["age_band"].astype(str)
    order = list(names.astype(str))
    by_district = by_district.assign(_o=by_district["district"].map(
        {n: k for k, n in enumerate(order)}).fillna(len(order))).sort_values(["_o", "district"])
    muni_name = ctx.prepared.muni_name(_KANAZAWA)
    title2 = f"{muni_name}の地区別 人口ピラミッド（{plots.fy_japanese(ctx.fy)}）"
    multiples = plots.pyramid_small_multiples(
        by_district.drop(columns="_o"), facet_col="district", title=title2,
        footer=ctx.footer(f"{muni_name} {indicators.POP_INSURED_BOTH}", "全地区で同じ目盛り"), ncols=5)
    return [GalleryChart("population_pyramid", title, "population_pyramid", pyramid),
            GalleryChart("pyramid_small_multiples", title2, "pyramid_small_multiples", multiples)]


def _stacked(ctx: _Context) -> list[GalleryChart]:
    py = _latest(ctx)
    levelled = py[indicators.participants(py) & py["hokenshido"].notna().to_numpy()]
    names = ctx.prepared.municipalities.set_index("muni_code")["name"].astype(str)
    counts = (levelled.groupby(["muni_code", "hokenshido"], observed=True).size()
              .rename("count").reset_index())
    counts["area"] = counts["muni_code"].astype(str).map(names)
    counts = counts.sort_values("muni_code")
    title = f"特定保健指導の階層化（市町村別、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.stacked_bars(counts, area_col="area", category_col="hokenshido", count_col="count", title=title,
                             footer=ctx.footer(f"{indicators.POP_EXAMINEES}のうち階層化できた人"),
                             category_order=list(clinical.GUIDANCE_LEVELS), colours=_GUIDANCE_COLOURS,
                             size="a4_landscape").figure
    return [GalleryChart("stacked_bars", title, "stacked_bars", fig)]


def _flow(ctx: _Context) -> list[GalleryChart]:
    claims = ctx.prepared.tables.get("claims_monthly")
    if claims is None:
        return []
    py = ctx.prepared.person_year
    # notebook 04's default extraction: every 国保 insured person of the year (docs/rules.md §16)
    steps = programs.nephropathy_flow(py[py["insurance"].astype(str).eq("国保").to_numpy()], claims, ctx.fy)
    # a root has parent_id "" in programs; the chart takes None/NaN
    steps["parent_id"] = steps["parent_id"].astype(object).where(steps["parent_id"] != "", None)
    title = f"糖尿病性腎症重症化予防 対象者の概数（県全体、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.flow_chart(steps, title=title, footer=ctx.footer(nephropathy.population_label("国保"),
                                                                 "人工透析中の者は除く"),
                           size="a4_landscape").figure
    return [GalleryChart("flow_chart", title, "flow_chart", fig)]


def _spine(ctx: _Context) -> list[GalleryChart]:
    t = ctx.muni_table[ctx.muni_table["indicator_id"].isin(_SPINE_INDICATORS)]
    shown = t[~t["suppressed"].astype(bool)]  # the spread over areas excludes hidden values
    spread = shown.groupby("indicator_id")["crude_rate"].describe()[["min", "25%", "75%", "max"]]
    spread = spread.rename(columns={"25%": "q25", "75%": "q75"})
    area = t[t["area_code"] == _PROFILE_MUNI].set_index("indicator_id")
    ids = [i for i in _SPINE_INDICATORS if i in area.index and i in spread.index]
    df = pd.DataFrame({
        "indicator_name": area.loc[ids, "indicator_name"].astype(str).to_numpy(),
        "area_value": area.loc[ids, "crude_rate"].to_numpy(float),
        "benchmark": area.loc[ids, "ref_rate"].to_numpy(float),
        "comparison": area.loc[ids, "comparison"].astype(object).to_numpy(),
        "polarity": area.loc[ids, "polarity"].astype(object).to_numpy(),
        "count": area.loc[ids, "shown_count"].to_numpy(float),
    }).join(spread.loc[ids].reset_index(drop=True))
    muni_name = ctx.prepared.muni_name(_PROFILE_MUNI)
    title = f"{muni_name}の健康プロファイル（県内市町村との比較、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.spine_chart(df, title=title, footer=ctx.footer(indicators.population_of(ids),
                                                               "値は粗率（%）、判定は年齢調整（間接法）", lookback=ids),
                            value_fmt="{:.1f}%", count_col="count", area_label=muni_name,
                            benchmark_label="県全体", size="a4_landscape")
    return [GalleryChart("spine_chart", title, "spine_chart", fig)]


def _heat(ctx: _Context) -> list[GalleryChart]:
    t = ctx.muni_table[ctx.muni_table["indicator_id"].isin(list(_HEAT_INDICATORS))].copy()
    t["column"] = pd.Categorical(t["indicator_id"].map(_HEAT_INDICATORS), list(_HEAT_INDICATORS.values()))
    t = t.sort_values(["area_code", "column"])
    t["rate"] = t["crude_rate"] / 100
    title = f"主要指標の市町村別一覧（{plots.fy_japanese(ctx.fy)}）"
    fig = plots.heat_table(t, row_col="area_name", col_col="column", value_col="rate", title=title,
                           footer=ctx.footer(indicators.population_of(list(_HEAT_INDICATORS)),
                                             "値は粗率、色は県全体との比較（年齢調整・間接法）",
                                             lookback=list(_HEAT_INDICATORS)),
                           fmt="{:.1%}", count_col="shown_count", comparison_col="comparison",
                           polarity=t["polarity"].astype(object).tolist(), size="a4_portrait").figure
    return [GalleryChart("heat_table", title, "heat_table", fig)]


def _upset(ctx: _Context) -> list[GalleryChart]:
    py = _latest(ctx)
    criteria = [c for c, _, _ in indicators.IKKATSU_INDICATORS if c in py.columns]
    kouki = py[indicators.kouki(py)]
    membership = kouki[criteria].fillna(False).astype(bool)
    labels = {c: name for c, name, _ in indicators.IKKATSU_INDICATORS}
    title = f"一体的実施 抽出条件の重なり（県全体、{plots.fy_japanese(ctx.fy)}）"
    fig = plots.upset_chart(membership, title=title, footer=ctx.footer(indicators.POP_KOUKI, "KDB活用支援ツールの抽出条件"),
                            criteria=criteria, labels=labels, max_intersections=15)
    return [GalleryChart("upset_chart", title, "upset_chart", fig)]


def _references(ctx: _Context) -> list[GalleryChart]:
    """県・同規模・国 side by side for one town (docs/rules.md §15), suppressed as a report does, and
    the empirical-Bayes ratios of every town against 全国 (docs/methods.md §14)."""
    t = references.comparison_table(ctx.prepared, _PROFILE_MUNI, ctx.fy)
    plan = privacy.SuppressionPlan()
    plan.add_table("reference_comparison", t, references.COUNT_COLUMNS, references.DERIVED_COLUMNS,
                   relations=[privacy.ColumnMargin(*m) for m in references.COLUMN_MARGINS])
    plan.solve()
    muni_name = ctx.prepared.muni_name(_PROFILE_MUNI)
    title = f"{muni_name} 県・同規模・国との比較（{plots.fy_japanese(ctx.fy)}）"
    ax = plots.reference_comparison_chart(plan.masked("reference_comparison"), title=title,
                                          footer=ctx.footer(indicators.population_of(t["indicator_id"].unique())),
                                          notes=references.chart_notes(t))
    charts = [GalleryChart("reference_comparison_chart", title, "reference_comparison_chart", ax.figure)]
    eb = references.municipal_ratios(ctx.prepared, ctx.fy, "hba1c65", "national")
    if len(eb):
        eb = eb.assign(numerator=eb["numerator"].astype(float).where(~eb["suppressed"].astype(bool)))
        title = f"HbA1c 6.5%以上 標準化該当比と経験ベイズ推定値（全国＝1、{plots.fy_japanese(ctx.fy)}）"
        ax = plots.smoothed_ratio_chart(eb, title=title, footer=ctx.footer(indicators.population_of("hba1c65")),
                                        notes=[references.NDB_SCOPE_NOTE + "。" + references.NDB_CREDIT.removeprefix("出典: ")],
                                        size="a4_landscape")
        charts.append(GalleryChart("smoothed_ratio_chart", title, "smoothed_ratio_chart", ax.figure))
    return charts


#: Builders in the order of the page.
_BUILDERS: tuple[Callable[[_Context], list[GalleryChart]], ...] = (
    _choropleths, _funnel, _ranked_bar, _trend, _ckd, _pyramids, _stacked, _flow, _spine, _heat,
    _upset, _references,
)


# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------
_CSS = """body{font-family:"Hiragino Sans","Yu Gothic","Meiryo","IPAexGothic",sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.6;padding:0 1em}h1{font-size:1.6em}h2{font-size:1.2em;
border-left:6px solid #0B4F8A;padding-left:.5em;margin-top:2.2em}img{max-width:100%;border:1px solid #ddd}
.kind{color:#555}.note{color:#8a4b00}nav li{margin:.1em 0}footer{margin-top:3em;color:#666;font-size:.9em}"""


def _index_html(charts: list[GalleryChart], source: str, fy: int, dpi: int) -> str:
    """The gallery page (Japanese): a table of contents, then each chart with its title, what the
    chart type is for and the PNG (relative link), plus a link to the PDF."""
    esc = html.escape
    toc = "\n".join(f'<li><a href="#{c.name}">{esc(c.title)}</a></li>' for c in charts)
    sections = []
    for c in charts:
        note = f'<p class="note">※{esc(c.note)}</p>' if c.note else ""
        sections.append(
            f'<section id="{c.name}">\n<h2>{esc(c.title)}</h2>\n'
            f'<p class="kind">{esc(CHART_DESCRIPTIONS[c.kind])}</p>\n{note}'
            f'<p><img src="figures/{c.name}.png" alt="{esc(c.title)}" loading="lazy"></p>\n'
            f'<p><a href="figures/{c.name}.pdf">PDF版</a>（<code>{c.name}</code>）</p>\n</section>')
    return (
        '<!DOCTYPE html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>グラフ一覧（ギャラリー）</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        "<h1>ヘルスサポート分析ワークブック　グラフ一覧（ギャラリー）</h1>\n"
        f"<p>すべてのグラフの種類を{esc(source)}で描いた見本です（最新年度: "
        f"{esc(plots.fy_japanese(fy))}）。図は <code>figures/</code> に PNG（{dpi}dpi）と PDF で保存されています。"
        f"{privacy.DEFAULT_THRESHOLD}人未満の人数とそこから計算される値は表示していません（「{plots.SUPPRESSION_MARK}」）。</p>\n"
        f"<nav><ol>\n{toc}\n</ol></nav>\n" + "\n".join(sections) +
        "\n<footer>作成: <code>hsutils gallery</code>。比較は支援の必要性を見るためのもので、"
        "順位付けではありません。</footer>\n</body>\n</html>\n")


def build_gallery(out: Path, data_dir: Path | None = None, *, cache_dir: Path | None = None,
                  dpi: int = report.FIGURE_DPI) -> Path:
    """Draw every chart type into ``out/figures/`` (PNG + PDF) and write ``out/index.html``.

    data_dir : a data folder as `hsutils.inputs.io` reads it; None generates the demo
               (`synth.write_demo`, scale `DEMO_SCALE`) in a temporary folder. A boundary file
               in it (`regions.find_boundary_file`) is used for the maps; otherwise the
               nationwide boundaries shipped with the package.
    cache_dir: where `pipeline.prepare_cache` keeps its Parquet files (reused when the data is
               unchanged); default a temporary folder, so no person-level file stays in `out`.
    Returns the path of index.html.
    """
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="hsutils-gallery-") as tmp:
        if data_dir is None:
            data_dir = Path(tmp) / "demo"
            synth.write_demo(data_dir, scale=DEMO_SCALE)
            source = _SOURCE_DEMO
        else:
            source = _SOURCE_DATA
        cache = Path(cache_dir) if cache_dir is not None else Path(tmp) / "cache"
        pipeline.prepare_cache(Path(data_dir), cache)
        prepared = pipeline.load_prepared(cache, with_tables=True)
        ctx = _context(prepared, source, regions.find_boundary_file(Path(data_dir)))
        charts: list[GalleryChart] = []
        for builder in _BUILDERS:  # a dozen chart types
            for chart in builder(ctx):
                report.save_figure(chart.figure, out, chart.name, dpi=dpi)
                charts.append(chart)
        person_ids = prepared.person_year["person_id"]
        page = _index_html(charts, source, ctx.fy, dpi)
        privacy.assert_no_person_ids(page, person_ids)
    return report.atomic_write_text(out / "index.html", page)

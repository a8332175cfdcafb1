"""Notebook 01 県全体の概況: compare every municipality of the prefecture and choose whom to
support first (支援保険者数が多い場合の支援; GitHub issue 6).

Everything the notebook computes lives here; the notebook only calls these functions and
displays their results. The building blocks are the shared cache (`hsutils.analysis.pipeline`), the
indicator registry and tables (`hsutils.analysis.indicators`), the statistics of `hsutils.stats`, the
committee charts of `hsutils.publish.plots` and the suppression of `hsutils.publish.privacy`.

Sections (in the notebook's order):

* data summary: persons per table and fiscal year, exclusions, the insured population pyramid;
* `municipal_indicator_table`: every registered indicator × municipality × fiscal year with
  crude rate (Wilson), age-adjusted rate (direct, Dobson), 標準化比 (indirect) and the
  significance against the reference area (docs/design.md §5);
* maps (`boundary_layers`, `map_municipalities`, `map_medical_areas`), funnel plots and ranked
  bars (`funnel_chart`, `ranking_chart`), trends (`trend_table`, `trend_figure`);
* `worse_and_worsening`: significantly worse than the reference in the latest year AND
  significantly worse than in the first year (interval of the difference, docs/design.md §5);
* `support_priority`: a transparent score per municipality with weights given as parameters.

Rates are in percent as in `hsutils.analysis.indicators`; 標準化比 is a ratio (1.00 = as expected from
the reference area's rates by sex × age band).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.inputs import regions
from hsutils.analysis import areas, indicators, references
from hsutils.publish import plots, privacy
from hsutils.core.errors import ParameterError
from hsutils.core.schema import TABLES

NOTEBOOK = "01_prefecture_overview"

#: Columns of `tables/indicators_by_municipality.csv` (issue 6, section 3), in this order.
INDICATOR_TABLE_COLUMNS = [
    "muni_code", "muni_name", "medical_area", "fy", "indicator_id", "indicator_name", "unit",
    "numerator", "denominator", "crude_rate", "crude_lower", "crude_upper",
    "adj_rate", "adj_lower", "adj_upper", "expected", "sr", "sr_lower", "sr_upper",
    "ref_rate", "comparison", "judgement", "polarity", "suppressed", "method", "conf"]
#: Count columns and the columns derived from them (hidden together, docs/design.md §6).
INDICATOR_COUNT_COLUMNS = ["numerator", "denominator"]
INDICATOR_DERIVED_COLUMNS = ["crude_rate", "crude_lower", "crude_upper", "adj_rate", "adj_lower",
                             "adj_upper", "expected", "sr", "sr_lower", "sr_upper", "comparison",
                             "judgement"]

#: Indicators whose shortfall counts as "low participation in programs" in the priority score.
PARTICIPATION_INDICATORS = ("kenshin_rate", "hokenshido_rate")

#: Default weights of the support-priority score (parameters of the notebook, shown there).
DEFAULT_WEIGHTS = {
    "n_worse": 1.0,                  # per key indicator significantly worse than the reference
    "gap_percent": 0.02,             # per % of |標準化比 − 1| summed over those indicators
    "excess_cases": 0.01,            # per person of excess (observed − expected) over those indicators
    "participation_gap_points": 0.1,  # per percentage point of 受診率・指導率 below the expected
}
#: What each score component means (Japanese, for the notebook's weight table and reasons).
WEIGHT_LABELS = {
    "n_worse": ("有意に悪い重点指標の数", "指標1つにつき"),
    "gap_percent": ("差の大きさ：|標準化比−1|×100 の合計", "1%につき"),
    "excess_cases": ("影響を受ける人数：超過数（観察数−期待数）の合計", "1人につき"),
    "participation_gap_points": ("事業参加の低さ：受診率・指導率が期待値を下回るポイント数の合計",
                                 "1ポイントにつき"),
}

#: Japanese labels of the columns users read in the committee tables.
COLUMN_LABELS_JA = {
    "muni_code": "市町村コード", "muni_name": "市町村", "medical_area": "二次医療圏", "fy": "年度",
    "indicator_id": "指標ID", "indicator_name": "指標", "numerator": "分子", "denominator": "分母",
    "crude_rate": "粗率", "adj_rate": "年齢調整率", "sr": "標準化比", "comparison": "比較",
    "judgement": "判定", "rank": "順位", "score": "得点", "reasons": "理由",
}

MEASURE_LABELS = {"adj_rate": "年齢調整率（%）", "crude_rate": "粗率（%）", "sr": "標準化比（基準＝1.00）"}


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
def analysis_years(prepared, fiscal_years=None, fiscal_year: int | None = None) -> list[int]:
    """Fiscal years analysed: the requested ones present in the data, up to `fiscal_year`."""
    have = prepared.fiscal_years
    years = have if not fiscal_years else sorted(int(f) for f in fiscal_years if int(f) in have)
    if fiscal_year is not None:
        years = [f for f in years if f <= int(fiscal_year)]
    if not years:
        raise ParameterError(f"指定の年度 {fiscal_years} のデータがありません（データにある年度: {have}）")
    return years


# ---------------------------------------------------------------------------------------------
# Data summary
# ---------------------------------------------------------------------------------------------
#: the import summary's row of レセプト電算 files (`hsutils.inputs.io`: table "uke", rows = receipts)
UKE_SUMMARY_NAME = "レセプト電算（UKE、レセプト件数）"


def import_summary(prepared) -> pd.DataFrame:
    """Rows read, kept and excluded per input table (from the import report, docs/design.md §3)."""
    s = prepared.import_summary.copy()
    if "table" in s:  # Japanese table names (the UKE row counts receipts: it fills claims, diagnoses, …)
        names = {t: spec.ja for t, spec in TABLES.items()} | {"uke": UKE_SUMMARY_NAME}
        s["table"] = s["table"].map(lambda t: names.get(t, t))
    labels = {"table": "表", "file": "ファイル", "read": "読込行数", "kept": "使用行数",
              "dropped_rows": "除外行数", "excluded_values": "除外した値の数"}
    return s.rename(columns=labels)[[v for k, v in labels.items() if k in s.columns]]


def persons_by_year(prepared) -> pd.DataFrame:
    """Persons per fiscal year in each part of the data (person_year flags, one row per person × fy).

    Rows: the data item; columns: fiscal years. Vectorised sums of boolean columns."""
    py = prepared.person_year
    target = indicators.kokuho_target(py)
    kouki = indicators.kouki(py)
    b = lambda c: py[c].fillna(False).astype(bool).to_numpy() if c in py else np.zeros(len(py), bool)  # noqa: E731
    quest = np.zeros(len(py), dtype=bool)
    for c in [f"q{i}" for i in range(1, 16) if f"q{i}" in py]:
        quest |= py[c].notna().to_numpy()
    items = {
        "加入者（対象者表）": np.ones(len(py), dtype=bool),
        # the population words of docs/rules.md §16 (hsutils.analysis.indicators.POP_*)
        indicators.POP_TARGET: target,
        indicators.POP_EXAMINEES: target & b("has_kenshin"),
        "特定保健指導 対象者": target & b("has_kenshin") & b("guidance_target"),
        "特定保健指導 終了者": target & b("has_kenshin") & b("guidance_target") & b("guidance_completed"),
        indicators.POP_KOUKI: kouki,
        "後期高齢者健診 受診者": kouki & b("has_kenshin"),
        "後期高齢者の質問票 回答者": kouki & quest,
        "レセプト（医科・歯科）のある人": b("claim_medical") | b("claim_dental"),
        "要介護（要支援）認定のある人": b("kaigo_certified"),
    }
    fy = py["fy"].to_numpy()
    years = sorted(np.unique(fy).tolist())
    rows = {name: [int((mask & (fy == y)).sum()) for y in years] for name, mask in items.items()}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=[plots.fy_japanese(y) for y in years])
    out.index.name = "項目（人数）"
    return out.reset_index()


def exclusions_summary(prepared) -> pd.DataFrame:
    """Exclusions of the import grouped by table, column, reason and scope (件数)."""
    ex = prepared.exclusions
    cols = ["table", "column", "reason", "scope"]
    if ex is None or ex.empty:
        return pd.DataFrame(columns=["表", "項目", "理由", "範囲", "件数"])
    g = (ex.assign(**{c: ex[c].fillna("") for c in cols if c in ex})
           .groupby([c for c in cols if c in ex], as_index=False).size().rename(columns={"size": "件数"}))
    return g.rename(columns={"table": "表", "column": "項目", "reason": "理由", "scope": "範囲"}) \
            .sort_values("件数", ascending=False).reset_index(drop=True)


#: Who the insured pyramid counts (docs/rules.md §16): 国保 40–74 and 後期 75+ enrolled in the year.
PYRAMID_POPULATION = f"{indicators.POP_INSURED}のうち40〜74歳 と {indicators.POP_KOUKI}"


def insured_pyramid(prepared, fy: int) -> pd.DataFrame:
    """Insured persons by age band and sex in `fy` (`PYRAMID_POPULATION`): 国保 40–74歳 and 後期 75歳以上 (one pyramid).

    Returns age_band, sex (1/2), count, insurance."""
    py = prepared.person_year
    py = py[py["fy"] == fy]
    age = py["age"].to_numpy()
    ins = py["insurance"].astype(str).to_numpy()
    keep = ((ins == "国保") & (age >= 40) & (age <= 74)) | ((ins == "後期") & (age >= 75))
    d = py.loc[keep, ["age_band", "sex", "insurance"]].astype({"age_band": str, "insurance": str})
    out = d.groupby(["age_band", "sex", "insurance"], as_index=False).size().rename(columns={"size": "count"})
    return out.sort_values(["age_band", "sex"]).reset_index(drop=True)


def pyramid_figure(ctx, pyramid: pd.DataFrame, fy: int):
    """Population pyramid of the insured (counts 1–9 are not drawn by hsutils.publish.plots)."""
    return plots.population_pyramid(
        pyramid, title=f"被保険者の年齢構成（{ctx.muni_name}、{plots.fy_japanese(fy)}）",
        footer=ctx.footer(PYRAMID_POPULATION, "年度内に加入していた人（年度末年齢）", fy=fy),
        suppress_threshold=ctx.suppress_threshold).figure


# ---------------------------------------------------------------------------------------------
# Indicator tables
# ---------------------------------------------------------------------------------------------
def municipal_indicator_table(prepared, fiscal_years: Sequence[int], indicator_ids=None,
                              reference_area: str = "pref", std_pop="H27", conf: float = 0.95,
                              suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                              min_count: int = references.MIN_REFERENCE_COUNT) -> tuple[pd.DataFrame, str]:
    """Every indicator × municipality × fiscal year (docs/design.md §5; issue 6 section 3).

    reference_area: "pref" (default: the prefecture's rates by sex × age band), "medical_area"
    (each municipality against its own 二次医療圏), "national" (全国, NDB オープンデータ) or
    "similar" (each municipality's 同規模 peers in the data). Every row without a comparison says
    「比較なし（理由）」 (`hsutils.analysis.references.settle_comparison`, docs/rules.md §15.7): the
    reference has no figure for the indicator, is pooled from 1 to `min_count` − 1 persons (the run's
    `suppress_threshold`: notebooks pass `min_count=ctx.suppress_threshold`, docs/rules.md §15.6), or
    gives an expected count of 0.
    Returns (table with INDICATOR_TABLE_COLUMNS, unsuppressed; Japanese note on the reference).
    """
    master = prepared.municipalities
    _, note = areas.reference_for_each_municipality(reference_area, master)
    strata = prepared.strata[prepared.strata["fy"].isin(list(fiscal_years))]
    table = references.municipal_table(strata, master, reference_area, fy=list(fiscal_years),
                                       indicators=indicator_ids, std_pop=std_pop, conf=conf,
                                       suppress_threshold=suppress_threshold, min_count=min_count)
    table = table.rename(columns={"area_code": "muni_code", "area_name": "muni_name"})
    table = table.sort_values(["indicator_id", "fy", "muni_code"]).reset_index(drop=True)
    return table[INDICATOR_TABLE_COLUMNS], note


def area_trend_table(prepared, fiscal_years: Sequence[int], indicator_ids, std_pop="H27",
                     conf: float = 0.95) -> pd.DataFrame:
    """The prefecture and each 二次医療圏 per fiscal year (age-adjusted with CIs; reference = the
    prefecture). Columns: level ("pref"/"medical_area"), area_code, area_name, fy, indicator_id,
    indicator_name, numerator, denominator, crude/adj/sr columns, comparison, judgement."""
    master = prepared.municipalities
    strata = prepared.strata[prepared.strata["fy"].isin(list(fiscal_years))]
    parts = []
    for level in ("pref", "medical_area"):
        t = indicators.indicator_table(strata, level, area_map=master, fy=list(fiscal_years),
                                       indicators=list(indicator_ids), reference=strata, std_pop=std_pop,
                                       conf=conf)
        parts.append(t.assign(level=level))
    out = pd.concat(parts, ignore_index=True)
    order = {"pref": 0, "medical_area": 1}
    return out.assign(_o=out["level"].map(order)).sort_values(["indicator_id", "_o", "area_code", "fy"]) \
              .drop(columns="_o").reset_index(drop=True)


def save_indicator_table(ctx, table: pd.DataFrame, name: str = "indicators_by_municipality") -> pd.DataFrame:
    """Write the committee version (counts 1–9 and everything derived from them hidden, docs/design.md §6)
    to tables/<name>.csv and the xlsx; returns the suppressed table (what may be shown)."""
    return ctx.save_table(table, name, count_cols=INDICATOR_COUNT_COLUMNS,
                          derived_cols=INDICATOR_DERIVED_COLUMNS)


def compact_pivot(shown: pd.DataFrame, fy: int, indicator_ids: Sequence[str],
                  value_col: str = "adj_rate") -> pd.DataFrame:
    """Municipality × indicator view of the (already suppressed) table for one fiscal year:
    "値（判定）" strings, e.g. "35.1（悪い）"; hidden cells keep the suppression mark."""
    d = shown[(shown["fy"] == fy) & shown["indicator_id"].isin(list(indicator_ids))].copy()
    val = pd.to_numeric(d[value_col], errors="coerce")
    crude = pd.to_numeric(d["crude_rate"], errors="coerce")
    # age-adjusted rate is missing below 10 events: show the crude rate then, marked 粗
    text = np.where(val.notna(), val.map(lambda v: f"{v:.1f}"),
                    np.where(crude.notna(), crude.map(lambda v: f"{v:.1f}粗"), privacy.SUPPRESSION_MARK))
    judge = d["judgement"].astype(object).where(d["judgement"].isin([stats.JUDGEMENT_BETTER, stats.JUDGEMENT_WORSE,
                                                             stats.JUDGEMENT_HIGHER, stats.JUDGEMENT_LOWER]), None)
    d["cell"] = [t if j is None else f"{t}（{j}）" for t, j in zip(text, judge)]  # one per area × indicator
    names = indicators.registry_frame().set_index("indicator_id")["indicator_name"]
    piv = d.pivot_table(index=["muni_code", "muni_name"], columns="indicator_id", values="cell",
                        aggfunc="first")
    piv = piv.reindex(columns=[i for i in indicator_ids if i in piv.columns])
    piv.columns = [names.get(c, c) for c in piv.columns]
    return piv.reset_index(level=0, drop=True).rename_axis("市町村").fillna("データなし")


def significant_lines(table: pd.DataFrame, fy: int, indicator_ids: Sequence[str],
                      suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> list[str]:
    """Japanese lines for 読み取りのポイント: per indicator, the municipalities significantly
    worse / better than the reference in `fy` (rows from small counts are left out)."""
    d = _visible(table[(table["fy"] == fy) & table["indicator_id"].isin(list(indicator_ids))],
                 suppress_threshold)
    lines = []
    for ind in indicator_ids:  # a handful of indicators
        sub = d[d["indicator_id"] == ind]
        if sub.empty:
            continue
        name = sub["indicator_name"].iloc[0]
        is_worse = sub["judgement"] == stats.JUDGEMENT_WORSE
        worse = "、".join(f"{n}（{s:.2f}）" for n, s in zip(sub.loc[is_worse, "muni_name"], sub.loc[is_worse, "sr"]))
        better = "、".join(sub.loc[sub["judgement"] == stats.JUDGEMENT_BETTER, "muni_name"])
        other = "、".join(sub.loc[sub["judgement"].isin([stats.JUDGEMENT_HIGHER, stats.JUDGEMENT_LOWER]), "muni_name"])
        parts = [f"有意に悪い: {worse or 'なし'}", f"有意に良い: {better or 'なし'}"]
        if other:
            parts.append(f"有意差あり（良否の判定なし）: {other}")
        lines.append(f"・{name}: " + "／".join(parts))
    return lines


def _visible(df: pd.DataFrame, threshold: int, num: str = "numerator", den: str = "denominator") -> pd.DataFrame:
    """Rows whose counts may be shown (no count 1 … threshold−1, docs/rules.md §9)."""
    return df[~privacy.small_rows(df, [num, den], threshold)]


def parameter_table(**params) -> pd.DataFrame:
    """The run's parameters as a two-column table (shown at the top of the notebook)."""
    rows = [{"パラメータ": k, "値": ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else
             (", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, Mapping) else str(v))}
            for k, v in params.items()]
    return pd.DataFrame(rows)


def funnel_lines(table: pd.DataFrame, fy: int, indicator_ids: Sequence[str],
                 suppress_threshold: int = privacy.DEFAULT_THRESHOLD, reference_label: str = "県") -> list[str]:
    """Japanese lines: municipalities outside the 95 % funnel limits (crude proportion against
    the reference rate, `stats.funnel_significance`; `reference_label` names it), with 良い/悪い where
    the indicator has a polarity; 「比較なし（理由）」 where there is no one reference rate."""
    d = _visible(table[(table["fy"] == fy) & table["indicator_id"].isin(list(indicator_ids))], suppress_threshold)
    lines = []
    for ind in indicator_ids:  # a handful
        sub = d[d["indicator_id"] == ind]
        if sub.empty:
            continue
        info = indicators.REGISTRY[ind]
        target = _reference_rate(table, ind, fy) / 100
        if not np.isfinite(target):
            lines.append(f"・{info.name}: {funnel_missing_reason(table, ind, fy)}")
            continue
        pos = np.asarray(stats.funnel_significance(sub["numerator"].to_numpy(float),
                                                   sub["denominator"].to_numpy(float), target), dtype=object)
        high = np.isin(pos, [stats.FUNNEL_HIGH_95, stats.FUNNEL_HIGH_998])
        low = np.isin(pos, [stats.FUNNEL_LOW_95, stats.FUNNEL_LOW_998])
        word_hi, word_lo = {"higher_better": ("高い（良い）", "低い（悪い）"),
                            "lower_better": ("高い（悪い）", "低い（良い）")}.get(info.polarity, ("高い", "低い"))
        names = sub["muni_name"].to_numpy()
        parts = [f"{word_hi}: {'、'.join(names[high]) or 'なし'}", f"{word_lo}: {'、'.join(names[low]) or 'なし'}"]
        lines.append(f"・{info.name}（{reference_label} {target * 100:.1f}%）: 95%限界の外 " + "／".join(parts))
    return lines


def area_extremes_lines(area_table: pd.DataFrame, fy: int, indicator_ids: Sequence[str],
                        suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> list[str]:
    """Japanese lines: the highest and lowest 二次医療圏 (age-adjusted rate) per indicator in `fy`."""
    d = area_table[(area_table["level"] == "medical_area") & (area_table["fy"] == fy)]
    d = _visible(d, suppress_threshold)
    d = d[d["adj_rate"].notna()]
    lines = []
    for ind in indicator_ids:  # a handful
        sub = d[d["indicator_id"] == ind].sort_values("adj_rate")
        if len(sub) < 2:
            continue
        lo, hi = sub.iloc[0], sub.iloc[-1]
        lines.append(f"・{hi['indicator_name']}: 最も高い {hi['area_name']} {hi['adj_rate']:.1f}%、"
                     f"最も低い {lo['area_name']} {lo['adj_rate']:.1f}%（年齢調整）")
    return lines


# ---------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------
# The boundaries (user file or the shipped nationwide one) and the tile fallback are regions' business.
find_boundary_file = regions.resolve_boundary_file
boundary_layers = regions.boundary_layers


def _map_footer(ctx, layers: dict, ind, conditions: str, fy: int) -> str:
    text = ctx.footer(ind.population, conditions, fy=fy, lookback=[ind.id])
    return text + regions.boundary_footer(layers)


def _hide_small_rows(df: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Numerator set to NaN (= suppressed for hsutils.publish.plots) where numerator or denominator is
    1 … threshold−1, so a chart never shows a figure derived from a small count (docs/rules.md §9)."""
    small = privacy.small_rows(df, ["numerator", "denominator"], threshold)
    out = df.copy()
    out["numerator"] = out["numerator"].astype(float).mask(small)
    return out


def _indicator_info(indicator_id: str):
    if indicator_id not in indicators.REGISTRY:
        raise ParameterError(f"指標「{indicator_id}」は登録されていません")
    return indicators.REGISTRY[indicator_id]


def _conditions(measure: str, std_note: str) -> str:
    if measure == "adj_rate":
        return f"年齢調整率（直接法、{std_note.replace('標準人口: ', '標準人口 ')}）"
    if measure == "sr":
        return "標準化比（間接法、基準の性・年齢階級別の率から期待数を計算）"
    return "粗率"


def map_municipalities(ctx, table: pd.DataFrame, layers: dict, indicator_id: str, fy: int,
                       measure: str = "adj_rate", std_note: str = "標準人口: 平成27年モデル人口"):
    """Choropleth (or tile map) of one indicator by municipality; small counts hidden."""
    ind = _indicator_info(indicator_id)
    d = _hide_small_rows(table[(table["indicator_id"] == indicator_id) & (table["fy"] == fy)],
                         ctx.suppress_threshold)
    values = d.rename(columns={"muni_code": "code", "muni_name": "name"})
    tiles = layers["tiles"] if layers.get("muni") is None else None
    fmt = "{:.2f}" if measure == "sr" else "{:.1f}"
    return plots.choropleth(
        values, layers.get("muni"), value_col=measure, title=f"{ind.name}（市町村別、{plots.fy_japanese(fy)}）",
        footer=_map_footer(ctx, layers, ind, _conditions(measure, std_note), fy),
        tiles=tiles, count_col="numerator", suppress_threshold=ctx.suppress_threshold,
        legend_title=MEASURE_LABELS.get(measure, measure), value_fmt=fmt,
        cmap="Blues" if ind.polarity == "higher_better" else "Oranges",
        fallback_note=layers.get("note") or None).figure


def map_medical_areas(ctx, area_table: pd.DataFrame, master: pd.DataFrame, layers: dict,
                      indicator_id: str, fy: int, measure: str = "adj_rate",
                      std_note: str = "標準人口: 平成27年モデル人口"):
    """Choropleth of one indicator by 二次医療圏; without boundaries each municipality's tile
    takes its area's value (labelled with the area name)."""
    ind = _indicator_info(indicator_id)
    d = area_table[(area_table["level"] == "medical_area") & (area_table["indicator_id"] == indicator_id)
                   & (area_table["fy"] == fy)]
    d = _hide_small_rows(d, ctx.suppress_threshold).rename(columns={"area_code": "code", "area_name": "name"})
    fmt = "{:.2f}"  # a few areas with close values: two decimals keep the legend classes distinct
    title = f"{ind.name}（二次医療圏別、{plots.fy_japanese(fy)}）"
    foot = _map_footer(ctx, layers, ind, _conditions(measure, std_note), fy)
    cmap = "Blues" if ind.polarity == "higher_better" else "Oranges"
    if layers.get("medical_area") is not None:
        return plots.choropleth(d, layers["medical_area"], value_col=measure, title=title, footer=foot, count_col="numerator",
                                classes=max(1, min(5, d["code"].nunique())),
                                suppress_threshold=ctx.suppress_threshold, value_fmt=fmt, cmap=cmap,
                                legend_title=MEASURE_LABELS.get(measure, measure)).figure
    m = master.drop_duplicates("muni_code")
    tiles = layers["tiles"].copy()
    area_of = m.set_index("muni_code")["medical_area_code"].astype(str)
    per_muni = tiles[["code"]].assign(area=tiles["code"].map(area_of)).merge(
        d.rename(columns={"code": "area"}), on="area", how="left")
    per_muni["name"] = per_muni["name"].fillna(per_muni["area"].map(
        m.drop_duplicates("medical_area_code").set_index(m.drop_duplicates("medical_area_code")
                                                         ["medical_area_code"].astype(str))["medical_area"]))
    tiles["name"] = tiles["name"] + "\n(" + per_muni["name"].astype(str).to_numpy() + ")"
    return plots.choropleth(per_muni.drop(columns="name"), None, value_col=measure, title=title, footer=foot, tiles=tiles,
                            classes=max(1, min(5, d["code"].nunique())),
                            count_col="numerator", suppress_threshold=ctx.suppress_threshold,
                            value_fmt=fmt, cmap=cmap, legend_title=MEASURE_LABELS.get(measure, measure),
                            fallback_note=(layers.get("note") or regions.FALLBACK_NOTE)
                            + "。市町村のタイルに、その二次医療圏の値を表示").figure


# ---------------------------------------------------------------------------------------------
# Funnel plots and ranked bars
# ---------------------------------------------------------------------------------------------
def _reference_rate(table: pd.DataFrame, indicator_id: str, fy: int) -> float:
    """The one reference rate (%) every municipality of the indicator and year is compared with;
    NaN when the reference has no figure (全国 outside the NDB items) or when each municipality has
    its own (二次医療圏, 同規模): a funnel has one target, never one municipality's reference for all."""
    r = pd.to_numeric(table.loc[(table["indicator_id"] == indicator_id) & (table["fy"] == fy), "ref_rate"],
                      errors="coerce")
    if not len(r) or r.isna().any() or not np.allclose(r, r.iloc[0], rtol=1e-12, atol=0):
        return float("nan")
    return float(r.iloc[0])


def funnel_missing_reason(table: pd.DataFrame, indicator_id: str, fy: int) -> str:
    """Why the funnel of an indicator is not drawn (「比較なし（理由）」), "" when it is: the
    reference's own reason (全国 outside the NDB items), or that each municipality has its own reference."""
    if np.isfinite(_reference_rate(table, indicator_id, fy)):
        return ""
    c = table.loc[(table["indicator_id"] == indicator_id) & (table["fy"] == fy), "comparison"].astype(str)
    why = c[c.str.startswith("比較なし")]
    if len(why) == len(c) and len(c):
        return why.iloc[0]
    return areas.no_comparison("比較の基準が市町村ごとに異なり、ファンネルプロットの目標値が1つに決まらないため。"
                               "各市町村の基準との比較は標準化比の図と表にあります")


def funnel_chart(ctx, table: pd.DataFrame, indicator_id: str, fy: int, reference_label: str = "県全体", *,
                 references=(), notes=()):
    """Funnel plot of the crude proportion against the reference rate with 95 %/99.8 % limits
    (Spiegelhalter 2005; kind="proportion"): which differences are beyond chance. `references`,
    `notes`: the other references as lines (`hsutils.analysis.references.lines_for_chart`). None when
    there is no one reference rate (`funnel_missing_reason` says why)."""
    ind = _indicator_info(indicator_id)
    d = table[(table["indicator_id"] == indicator_id) & (table["fy"] == fy)].copy()
    d["value"] = d["numerator"] / d["denominator"].where(d["denominator"] > 0)
    target = _reference_rate(table, indicator_id, fy) / 100
    if not np.isfinite(target):
        return None
    return plots.funnel_plot(
        d, value_col="value", denom_col="denominator", target=target, kind="proportion",
        title=f"{ind.name}：ファンネルプロット（{plots.fy_japanese(fy)}）",
        footer=ctx.footer(ind.population, "粗率。点の色は95%限界との比較", lookback=[ind.id]), label_col="muni_name",
        count_col="numerator", polarity=ind.polarity, y_label=f"{ind.name}（粗率）",
        target_label=reference_label, references=references, notes=notes,
        suppress_threshold=ctx.suppress_threshold).figure


def no_comparison_notes(d: pd.DataFrame) -> list[str]:
    """Chart notes for the municipalities of `d` (one indicator and year; small-count rows already
    NaN in `numerator`, `_hide_small_rows`) drawn as "‐" because they are 「比較なし（理由）」
    (docs/rules.md §15.7), one line per reason: 「‐ は比較なし（理由）: 市町村名…」. Rows hidden for a
    small count are left to the suppression note."""
    c = d["comparison"].astype(str)
    no = d[c.str.startswith("比較なし") & d["numerator"].notna()]
    lines = []
    for why, g in no.groupby(c[no.index], sort=False):  # a few reasons
        who = "すべての市町村" if len(g) == len(d) else "、".join(g["muni_name"].astype(str))
        lines.append(f"「‐」は{why}: {who}")
    return lines


def ranking_chart(ctx, table: pd.DataFrame, indicator_id: str, fy: int, reference_label: str = "県全体"):
    """Ranked bars of the 標準化比 with 95 % CIs, coloured by the significance against the
    reference (the same comparison as the table: docs/design.md §5, §10). Small counts shown as "‐"."""
    ind = _indicator_info(indicator_id)
    d = _hide_small_rows(table[(table["indicator_id"] == indicator_id) & (table["fy"] == fy)],
                         ctx.suppress_threshold)
    return plots.ranked_bar(
        d, value_col="sr", lower_col="sr_lower", upper_col="sr_upper", benchmark=1.0,
        title=f"{ind.name}：標準化比と95%信頼区間（{plots.fy_japanese(fy)}）",
        footer=ctx.footer(ind.population, "標準化比＝観察数÷期待数（期待数は基準の性・年齢階級別の率から計算）",
                          lookback=[ind.id]),
        label_col="muni_name", comparison_col="comparison", polarity=ind.polarity,
        count_col="numerator", value_fmt="{:.2f}", x_label=f"標準化比（{reference_label}＝1.00）",
        benchmark_label=reference_label, suppress_threshold=ctx.suppress_threshold, notes=no_comparison_notes(d),
        size=(10.0, max(5.6, 0.26 * d["muni_code"].nunique() + 1.8))).figure


# ---------------------------------------------------------------------------------------------
# Trends
# ---------------------------------------------------------------------------------------------
def trend_figure(ctx, area_table: pd.DataFrame, indicator_id: str, std_note: str = "標準人口: 平成27年モデル人口"):
    """Age-adjusted rate with 95 % CIs over the fiscal years: the prefecture and each 二次医療圏."""
    ind = _indicator_info(indicator_id)
    d = _hide_small_rows(area_table[area_table["indicator_id"] == indicator_id], ctx.suppress_threshold)
    years = sorted(d["fy"].unique().tolist())
    fy = (years[0], years[-1]) if len(years) > 1 else years[0]
    return plots.trend_chart(
        d, x="fy", y="adj_rate", lower="adj_lower", upper="adj_upper", series_col="area_name",
        title=f"{ind.name}の推移（県・二次医療圏、年齢調整）",
        footer=ctx.footer(ind.population, _conditions("adj_rate", std_note), fy=fy, lookback=[ind.id]),
        count_col="numerator", y_label="年齢調整率（%）", suppress_threshold=ctx.suppress_threshold).figure


def trend_lines(area_table: pd.DataFrame, indicator_ids: Sequence[str],
                suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> list[str]:
    """Japanese lines: per indicator and area, first → last age-adjusted rate and whether the
    change is beyond chance (interval of the crude difference, `stats.proportion_difference_ci`)."""
    ch = area_changes(area_table, suppress_threshold)
    lines = []
    for ind in indicator_ids:  # a handful
        sub = ch[ch["indicator_id"] == ind]
        if sub.empty:
            continue
        parts = [f"{r.area_name} {_f(r.adj_first)}→{_f(r.adj_last)}（{r.change}）"
                 for r in sub.itertuples()]  # a handful of areas
        lines.append(f"・{sub['indicator_name'].iloc[0]}: " + "、".join(parts))
    return lines


def _f(v) -> str:
    return privacy.SUPPRESSION_MARK if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def _change_table(table: pd.DataFrame, keys: list[str], first: int, last: int) -> pd.DataFrame:
    """First vs last fiscal year per keys × indicator, with the Newcombe interval of the
    difference of the crude proportions and the judgement 改善/変化なし/悪化 (docs/design.md §5)."""
    cols = keys + ["indicator_id", "numerator", "denominator", "crude_rate", "adj_rate"]
    a = table.loc[table["fy"] == first, cols]
    b = table.loc[table["fy"] == last, cols + [c for c in table.columns if c not in cols and c != "fy"]]
    m = a.merge(b, on=keys + ["indicator_id"], suffixes=("_first", "_last"))
    d, lo, up = stats.proportion_difference_ci(m["numerator_first"].to_numpy(float), m["denominator_first"].to_numpy(float),
                                               m["numerator_last"].to_numpy(float), m["denominator_last"].to_numpy(float))
    m["diff_points"], m["diff_lower"], m["diff_upper"] = (np.asarray(v, float) * 100 for v in (d, lo, up))
    pol = m["indicator_id"].map(indicators.registry_frame().set_index("indicator_id")["polarity"])
    change = stats.change_judgement_by_polarity(m["diff_lower"].to_numpy(), m["diff_upper"].to_numpy(),
                                                pol.to_numpy(dtype=object))
    m["change"] = change
    m["fy_first"], m["fy_last"] = first, last
    return m


def area_changes(area_table: pd.DataFrame, suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Change first → last year for the prefecture and 二次医療圏 (rows from small counts hidden)."""
    years = sorted(area_table["fy"].unique().tolist())
    m = _change_table(area_table, ["level", "area_code"], years[0], years[-1])
    small = np.zeros(len(m), dtype=bool)
    for c in ("numerator_first", "denominator_first", "numerator_last", "denominator_last"):
        small |= np.asarray(privacy.is_small(m[c], suppress_threshold), dtype=bool)
    for c in ("adj_rate_first", "adj_rate_last"):
        m[c] = m[c].astype(float).mask(small)
    m["change"] = m["change"].astype(object).mask(small, privacy.SUPPRESSION_MARK)
    return m.rename(columns={"adj_rate_first": "adj_first", "adj_rate_last": "adj_last"})


# ---------------------------------------------------------------------------------------------
# 悪化かつ有意に悪い
# ---------------------------------------------------------------------------------------------
WORSE_COUNT_COLUMNS = ["numerator_first", "denominator_first", "numerator_last", "denominator_last"]
WORSE_DERIVED = {
    "numerator_first": ["rate_first", "diff_points", "diff_lower", "diff_upper", "change"],
    "denominator_first": ["rate_first", "diff_points", "diff_lower", "diff_upper", "change"],
    "numerator_last": ["rate_last", "diff_points", "diff_lower", "diff_upper", "change", "sr", "sr_lower",
                       "sr_upper", "judgement"],
    "denominator_last": ["rate_last", "diff_points", "diff_lower", "diff_upper", "change", "sr", "sr_lower",
                         "sr_upper", "judgement"],
}

#: Columns of the list shown in the notebook, with Japanese headers.
WORSE_DISPLAY_COLUMNS = ["muni_name", "indicator_name", "rate_first", "rate_last", "diff_points", "diff_lower",
                         "diff_upper", "sr", "sr_lower", "sr_upper"]
WORSE_LABELS_JA = {"muni_name": "市町村", "indicator_name": "指標", "rate_first": "最初の年度（粗率%）",
                   "rate_last": "最新年度（粗率%）", "diff_points": "差（ポイント）", "diff_lower": "差の下限",
                   "diff_upper": "差の上限", "sr": "標準化比", "sr_lower": "標準化比の下限",
                   "sr_upper": "標準化比の上限"}


def worse_and_worsening(table: pd.DataFrame, first_fy: int | None = None, last_fy: int | None = None) -> pd.DataFrame:
    """Municipality × indicator pairs that are significantly worse than the reference in the
    latest year (judgement 悪い, from the 標準化比 interval) AND significantly worse than in the
    first year (the Newcombe interval of the difference of crude proportions lies entirely on the
    bad side: `stats.proportion_difference_ci` + `stats.change_judgement`, docs/design.md §5).

    Only indicators with a polarity can be worse. Returns one row per pair with muni_code,
    muni_name, medical_area, indicator_id, indicator_name, fy_first, fy_last, the four counts,
    rate_first, rate_last (crude %), diff_points, diff_lower, diff_upper (percentage points,
    last − first), change, sr, sr_lower, sr_upper, judgement — sorted by the size of the gap.
    """
    years = sorted(table["fy"].unique().tolist())
    first = years[0] if first_fy is None else int(first_fy)
    last = years[-1] if last_fy is None else int(last_fy)
    cols = ["muni_code", "muni_name", "medical_area", "indicator_id", "indicator_name", "fy_first", "fy_last",
            "numerator_first", "denominator_first", "numerator_last", "denominator_last", "rate_first",
            "rate_last", "diff_points", "diff_lower", "diff_upper", "change", "sr", "sr_lower", "sr_upper",
            "judgement"]
    if first >= last:
        return pd.DataFrame(columns=cols)
    t = table[table["polarity"].isin([stats.HIGHER_BETTER, stats.LOWER_BETTER])]
    m = _change_table(t, ["muni_code"], first, last)
    m = m.rename(columns={"crude_rate_first": "rate_first", "crude_rate_last": "rate_last"})
    keep = (m["judgement"] == stats.JUDGEMENT_WORSE) & (m["change"] == stats.CHANGE_WORSENED)
    out = m.loc[keep.to_numpy(), cols].copy()
    out["_gap"] = (out["sr"] - 1).abs()
    return out.sort_values(["_gap", "muni_code"], ascending=[False, True]).drop(columns="_gap").reset_index(drop=True)


def worse_hidden(worse: pd.DataFrame, suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> np.ndarray:
    """Rows of `worse_and_worsening` whose deciding figures would be hidden: any of the four counts
    is 1 … threshold−1, so the judgement 悪い or the change 悪化 (and the 標準化比 the list is ordered
    by) is suppressed (docs/design.md §6). Such rows are not listed at all: their presence, or their place in
    the order, would reveal what the suppression hides."""
    small = np.zeros(len(worse), dtype=bool)
    for c in WORSE_COUNT_COLUMNS:
        small |= np.asarray(privacy.is_small(worse[c], suppress_threshold), dtype=bool)
    return small


def save_worse_and_worsening(ctx, worse: pd.DataFrame, name: str = "worse_and_worsening") -> pd.DataFrame:
    """Committee version of the list: only pairs whose counts may all be shown (`worse_hidden`), in
    the order of `worse_and_worsening` (by the shown 標準化比), so no listed row and no position
    depends on a hidden value; `worse_hidden_note` is the fixed note printed with it."""
    visible = worse.loc[~worse_hidden(worse, ctx.suppress_threshold)].reset_index(drop=True)
    return ctx.save_table(visible, name, count_cols=WORSE_COUNT_COLUMNS, derived_cols=WORSE_DERIVED)


def worse_hidden_note(suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """The fixed Japanese note under the committee list. It never depends on the data: even the
    number of pairs left out (`worse_hidden`) would tell something about the hidden values."""
    return (f"※ 人数が1〜{suppress_threshold - 1}人の値から判定される組み合わせは、秘匿のため"
            "この一覧に載せていません（載せている順は標準化比の1からの離れの大きい順）。")


# ---------------------------------------------------------------------------------------------
# Support priority
# ---------------------------------------------------------------------------------------------
def weights_frame(weights: Mapping[str, float]) -> pd.DataFrame:
    """The score weights as a table for the notebook (what each weight multiplies)."""
    unknown = [k for k in weights if k not in WEIGHT_LABELS]
    if unknown:
        raise ParameterError(f"重み {unknown} は使えません（使える重み: {', '.join(WEIGHT_LABELS)}）")
    return pd.DataFrame([{"重み": k, "内容": WEIGHT_LABELS[k][0], "単位": WEIGHT_LABELS[k][1],
                          "値": float(weights.get(k, 0.0))} for k in WEIGHT_LABELS])


def priority_components(table: pd.DataFrame, fy: int, key_indicators: Sequence[str],
                        participation: Sequence[str] = PARTICIPATION_INDICATORS,
                        suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Per municipality, the raw components of the support-priority score in `fy`:

    * n_worse: number of `key_indicators` significantly worse than the reference (judgement 悪い);
    * gap_percent: Σ |sr − 1| × 100 over those indicators (how far from the reference);
    * excess_cases: Σ |observed − expected| over those indicators (persons affected: more cases
      than expected for lower-is-better indicators, fewer persons reached for higher-is-better);
    * participation_gap_points: Σ over `participation` (受診率・指導率) of max(0, expected − observed)
      ÷ denominator × 100, i.e. percentage points below the rate expected from the reference's
      rates by sex × age band (counted whether or not significant);
    * worse_names: the Japanese names with their 標準化比 of the significantly worse indicators.

    Rows from counts 1 … threshold−1 are left out (they cannot be shown, docs/rules.md §9).
    """
    d = table[table["fy"] == fy]
    d = _visible(d, suppress_threshold)
    munis = table[["muni_code", "muni_name", "medical_area"]].drop_duplicates("muni_code").sort_values("muni_code")
    key = d[d["indicator_id"].isin(list(key_indicators)) & (d["judgement"] == stats.JUDGEMENT_WORSE)].copy()
    key["gap"] = (key["sr"] - 1).abs() * 100
    key["excess"] = (key["numerator"] - key["expected"]).abs()
    order = {k: i for i, k in enumerate(key_indicators)}
    key = key.assign(_o=key["indicator_id"].map(order)).sort_values(["muni_code", "_o"])
    key["label"] = [f"{n}（標準化比 {v:.2f}）" for n, v in zip(key["indicator_name"], key["sr"])]  # a few rows
    agg = key.groupby("muni_code").agg(n_worse=("indicator_id", "size"), gap_percent=("gap", "sum"),
                                       excess_cases=("excess", "sum"), worse_names=("label", "、".join),
                                       worse_indicators=("indicator_name", "・".join))
    part = d[d["indicator_id"].isin(list(participation))].copy()
    part["shortfall"] = np.clip(part["expected"] - part["numerator"], 0, None) / part["denominator"] * 100
    pagg = part.groupby("muni_code")["shortfall"].sum().rename("participation_gap_points")
    out = munis.set_index("muni_code").join(agg).join(pagg)
    for c in ("n_worse", "gap_percent", "excess_cases", "participation_gap_points"):
        out[c] = out[c].fillna(0.0).astype(float)
    out["n_worse"] = out["n_worse"].astype(int)
    for c in ("worse_names", "worse_indicators"):  # all-missing when no municipality is worse
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    return out.reset_index()


def support_priority(table: pd.DataFrame, fy: int, weights: Mapping[str, float] | None = None,
                     key_indicators: Sequence[str] = tuple(indicators.KEY_INDICATORS),
                     participation: Sequence[str] = PARTICIPATION_INDICATORS,
                     suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Transparent support-priority score per municipality (issue 6 section 8):

        score = Σ_k weight_k × component_k   (components of `priority_components`)

    `weights` (default DEFAULT_WEIGHTS; missing keys count 0) are notebook parameters. Rank 1 =
    highest score (ties share the rank). Returns muni_code, muni_name, medical_area, rank,
    score, the four components, the weighted parts (`part_<component>`) and `reasons` (Japanese).
    """
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    weights_frame(w)  # validates the keys
    c = priority_components(table, fy, key_indicators, participation, suppress_threshold)
    score = np.zeros(len(c))
    for k in WEIGHT_LABELS:  # four components
        c[f"part_{k}"] = float(w.get(k, 0.0)) * c[k].to_numpy(float)
        score += c[f"part_{k}"].to_numpy()
    c["score"] = np.round(score, 6)
    c["rank"] = c["score"].rank(method="min", ascending=False).astype(int)
    c["reasons"] = _reasons(c)
    c["gap_percent"] = c["gap_percent"].round(1)
    c["excess_cases"] = c["excess_cases"].round(1)
    c["participation_gap_points"] = c["participation_gap_points"].round(1)
    cols = ["muni_code", "muni_name", "medical_area", "rank", "score", "n_worse", "gap_percent",
            "excess_cases", "participation_gap_points"] + [f"part_{k}" for k in WEIGHT_LABELS] + [
            "worse_indicators", "reasons"]
    return c.sort_values(["rank", "muni_code"])[cols].reset_index(drop=True)


def _reasons(c: pd.DataFrame) -> list[str]:
    out = []
    for names, n, exc, part in zip(c["worse_names"], c["n_worse"], c["excess_cases"],
                                   c["participation_gap_points"]):  # one per municipality
        bits = []
        if n:
            bits.append(f"基準より有意に悪い重点指標 {n}件: {names}（超過 約{exc:.0f}人）")
        if part >= 0.05:
            bits.append(f"受診率・指導率が期待値より計{part:.1f}ポイント低い")
        out.append("。".join(bits) if bits else "有意に悪い重点指標なし")
    return out


def save_support_priority(ctx, priority: pd.DataFrame, name: str = "support_priority") -> pd.DataFrame:
    """tables/support_priority.csv (muni_code, muni_name, rank, score, reasons, …) + xlsx. The
    score holds no count: rows from counts 1–9 were left out when it was computed."""
    return ctx.save_table(priority, name)


@plots.styled
def priority_chart(ctx, priority: pd.DataFrame, weights: Mapping[str, float], top: int | None = None, *,
                   key_indicators: Sequence[str] = tuple(indicators.KEY_INDICATORS),
                   participation: Sequence[str] = PARTICIPATION_INDICATORS):
    """Horizontal stacked bars of the score (one segment per weighted component) with the
    worse indicators written next to each bar, highest score at the top. `key_indicators`,
    `participation`: those of `support_priority`; the footer states their populations."""
    from matplotlib.patches import Patch

    d = priority if top is None else priority.head(top)
    d = d.iloc[::-1].reset_index(drop=True)  # highest at the top
    height = max(5.6, 0.32 * len(d) + 2.2)
    fig = plots._new_figure((11.69, height))  # package-internal helpers keep the committee style
    ax = fig.add_subplot()
    left = np.zeros(len(d))
    colours = plots.SERIES_COLOURS
    ys = np.arange(len(d))
    for i, k in enumerate(WEIGHT_LABELS):  # four components
        vals = d[f"part_{k}"].to_numpy(float)
        ax.barh(ys, vals, left=left, color=colours[i % len(colours)], height=0.7, edgecolor="white",
                linewidth=0.5, gid=f"priority_{k}")
        left += vals
    xmax = float(left.max()) if len(left) and left.max() > 0 else 1.0
    for y, total, names, part in zip(ys, left, d["worse_indicators"], d["participation_gap_points"]):
        bits = [f"悪い: {names}"] if names else []  # one label per municipality
        if part >= 0.05:
            bits.append(f"受診率・指導率 −{part:.1f}pt")
        ax.text(total + 0.01 * xmax, y, f"{total:.2f}  " + "／".join(bits), va="center", ha="left",
                fontsize=7, color="#222222")
    ax.set_yticks(ys, [f"{r}. {n}" for r, n in zip(d["rank"], d["muni_name"])])
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0, xmax * 2.4)
    ax.set_xlabel("支援優先度の得点（重み×要素の合計）")
    handles = [Patch(color=colours[i % len(colours)], label=f"{WEIGHT_LABELS[k][0]}（重み {weights.get(k, 0)}）")
               for i, k in enumerate(WEIGHT_LABELS)]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.grid(axis="x", color="#E5E5E5", lw=0.6)
    notes = [f"{ctx.suppress_threshold}人未満の集計値は得点に使っていません",
             "悪い＝基準より有意に悪い重点指標、受診率・指導率＝期待値（基準の性・年齢別の率）を下回るポイント数"]
    return plots._finish(fig, f"支援優先度の得点（{plots.fy_japanese(ctx.fiscal_year)}）",
                         ctx.footer(indicators.population_of([*key_indicators, *participation]),
                                    "全市町村。重点指標の標準化比（基準との比較）と受診率・指導率",
                                    lookback=key_indicators),
                         notes, comparison=True)


# ---------------------------------------------------------------------------------------------
# One indicator: map + funnel + ranking (batch loop and widgets call the same functions)
# ---------------------------------------------------------------------------------------------
def indicator_views(ctx, table: pd.DataFrame, area_table: pd.DataFrame | None, layers: dict,
                    indicator_id: str, fy: int, measure: str = "adj_rate",
                    std_note: str = "標準人口: 平成27年モデル人口", reference_label: str = "県全体") -> dict:
    """The figures of one indicator and year: {"map_muni", "map_area" (when area_table holds the
    indicator), "funnel", "ranking"}."""
    figs = {"map_muni": map_municipalities(ctx, table, layers, indicator_id, fy, measure, std_note)}
    if area_table is not None and (area_table["indicator_id"] == indicator_id).any():
        figs["map_area"] = map_medical_areas(ctx, area_table, ctx.prepared.municipalities, layers,
                                             indicator_id, fy, measure, std_note)
    funnel = funnel_chart(ctx, table, indicator_id, fy, reference_label)
    if funnel is not None:  # no one reference rate: the ranking of each municipality's own ratio only
        figs["funnel"] = funnel
    figs["ranking"] = ranking_chart(ctx, table, indicator_id, fy, reference_label)
    return figs


def indicator_options(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(Japanese name, id) pairs of the indicators in the table, registry order (for widgets)."""
    present = set(table["indicator_id"])
    return [(i.name, i.id) for i in indicators.INDICATORS if i.id in present]


def indicator_explorer(ctx, table: pd.DataFrame, area_table: pd.DataFrame | None, layers: dict,
                       first_indicator: str, years: Sequence[int], fy: int, measure: str = "adj_rate",
                       std_note: str = "標準人口: 平成27年モデル人口", reference_label: str = "県全体"):
    """Panel (`hsutils.publish.widgets.Panel`, JupyterLab by hand only): choose an indicator and a year; the
    map, funnel plot and ranking of `indicator_views` are drawn again."""
    import ipywidgets as w

    from hsutils.publish import widgets

    controls = {"indicator_id": w.Dropdown(options=indicator_options(table), value=first_indicator,
                                           description="指標"),
                "fy": w.Dropdown(options=years, value=fy, description="年度")}

    def render(indicator_id, fy):
        return list(indicator_views(ctx, table, area_table, layers, indicator_id, fy, measure, std_note,
                                    reference_label).values())

    return widgets.Panel(controls, render, row=True)

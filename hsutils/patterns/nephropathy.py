"""Notebook 04 糖尿病性腎症重症化予防: the computations behind the notebook (docs/design.md §2, §9).

The target rules themselves live in `hsutils.rules.programs` (NephropathyParams, nephropathy_flags,
nephropathy_flow, treatment_status; docs/rules.md §5); this module applies them to one municipality,
turns the results into committee tables (small counts suppressed, docs/design.md §6, docs/rules.md §9) and
confidential person lists, computes the trend and comparison indicators, and reads the
municipality's self-check of the five requirements of 日本健康会議 宣言2 (docs/rules.md §5.5)
through `hsutils.patterns.support_record`, the one reader and judge of 宣言2.

Population: the rows of the chosen fiscal year and municipality (muni_code of 2 digits = the whole
prefecture), restricted to one insurance (`INSURANCE_CHOICES`: 国保 by default, 後期, 全体).
Claims are looked up for these persons only (all their months, so the look-back of §5.4 works).
Everything is vectorised; the only loops run over a handful of indicators, axes or requirements.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hsutils import stats
from hsutils.core import schema, settings, vocab
from hsutils.rules import programs
from hsutils.analysis import areas, indicators
from hsutils.publish import plots, privacy
from hsutils.patterns import support_record
from hsutils.core.errors import ParameterError

#: The filled-in example of the self-check, in the parameters folder.
DEFAULT_CHECKLIST_NAME = support_record.DECLARATION2_SELFCHECK_NAME

INSURANCE_CHOICES = ("国保", "後期", "全体")
# 尿蛋白 threshold label -> ordinal (hsutils.core.vocab): ± (default, docs/rules.md §5.2) or 1+ (stricter).
URINE_CHOICES = {vocab.URINE_LABELS[o]: o for o in (vocab.URINE_TRACE, vocab.URINE_PLUS1)}
URINE_LABELS = vocab.URINE_LABELS
SEX_LABELS = vocab.SEX_LABELS
POP_ALL = "健診受診者"
POP_DIABETES = "糖尿病（健診受診者）"
TOTAL = "計"
REFERRAL, GUIDANCE = "受診勧奨対象者", "保健指導対象者"

# trend indicators, all registered in hsutils.analysis.indicators (so counted once per batch in the strata);
# TREND_COMPUTED are the two defined for this program (docs/rules.md §4, §5)
TREND_REGISTERED = ("dm_hba1c8", "dm_untreated", "dm_interrupted", "new_dialysis")
# which of them depend on the claims look-back is the registry's `Indicator.lookback` (docs/hotei.md §7.5)
TREND_COMPUTED = {
    "dm_egfr45": "糖尿病のうち eGFR 45未満",
    "dm_urine_protein1": "糖尿病のうち 尿蛋白 1+以上",
}
FUNNEL_INDICATORS = ("dm_untreated", "dm_hba1c8")


# ---------------------------------------------------------------------------------------------
# parameters and population


def with_data_lookback(params: programs.NephropathyParams, prepared,
                       fiscal_years=None) -> tuple[programs.NephropathyParams, str]:
    """`params` with the look-back the data allow for the fiscal years one figure shows together
    and the footer text stating it (docs/hotei.md §7.2, the rule is `programs.allowed_lookback`).

    `fiscal_years` None = every year of the data: the window of the shared cache, used by trends
    and every cached indicator (a recomputation with the default criteria equals the cached
    flags). A single-year extraction of persons (flow chart, 対象者数, 対象者リスト) passes its one
    year and gets the full window that year's claims allow."""
    claims = prepared.tables.get("claims_monthly")
    years = prepared.fiscal_years if fiscal_years is None else [int(f) for f in fiscal_years]
    used = programs.allowed_lookback(claims, years, params.lookback_months, params.window_months)
    note = programs.lookback_note(params.lookback_months, used, programs.claims_history(claims, years))
    return replace(params, lookback_months=used), note


def nephropathy_params(hba1c: float = 6.5, glucose: float = 126.0, egfr: float = 60.0,
                       urine_protein: str | int = "±", window_months: int = 6,
                       lookback_months: int = 36, include_kidney_claims: bool = True,
                       exclude_dialysis: bool = True) -> programs.NephropathyParams:
    """Extraction criteria from the notebook's parameters (docs/rules.md §5.1, §5.2, §5.4).

    `urine_protein` is the lowest positive 尿蛋白 result: "±" (default, §5.2 usual practice) or
    "1+" (stricter), read by `vocab.urine_threshold` (the form every notebook uses). Defaults equal `programs.NephropathyParams()`.
    """
    urine = vocab.urine_threshold(urine_protein, allowed=tuple(URINE_CHOICES.values()))
    for name, value in (("HbA1c", hba1c), ("血糖", glucose), ("eGFR", egfr)):
        if not float(value) > 0:
            raise ParameterError(f"{name} の基準値は正の数で指定してください（指定値: {value}）")
    return programs.NephropathyParams(hba1c=float(hba1c), glucose=float(glucose), egfr=float(egfr),
                                      urine_protein=urine, include_kidney_claims=bool(include_kidney_claims),
                                      window_months=int(window_months), lookback_months=int(lookback_months),
                                      exclude_dialysis=bool(exclude_dialysis))


def criteria_text(params: programs.NephropathyParams) -> str:
    """Japanese one-line description of the extraction criteria (for chart footers)."""
    up = URINE_LABELS.get(params.urine_protein, str(params.urine_protein))
    kidney = f"eGFR {params.egfr:g}未満 または 尿蛋白 {up}以上"
    if params.include_kidney_claims:
        kidney += " または 腎疾患レセプト"
    return (f"糖尿病型 HbA1c {params.hba1c:g}%以上 または 血糖 {params.glucose:g}mg/dL以上／"
            f"腎障害 {kidney}／治療中断 直近{params.window_months}か月に糖尿病レセプトなし"
            f"（過去{params.lookback_months}か月にあり）")


def population_label(insurance: str = "国保") -> str:
    """Japanese name of the population of the extraction (docs/rules.md §16): every insured person
    of the year, examinees or not (the flow's roots are 健診受診者 and 健診未受診)."""
    return indicators.INSURED_BY_INSURANCE[_check_insurance(insurance)]


def ckd_population(pop: str, insurance: str = "国保",
                   params: programs.NephropathyParams = programs.NephropathyParams()) -> str:
    """Footer population of a CKD heat map (docs/rules.md §16, §5.7): every examinee of the
    extraction (not only the 法定報告 対象者), the 糖尿病 map without the persons excluded for dialysis."""
    base = indicators.ALL_EXAMINEES_BY_INSURANCE[_check_insurance(insurance)]
    if pop == POP_DIABETES:
        base += "のうち糖尿病" + ("（人工透析中の人を除く）" if params.exclude_dialysis else "")
    return base + "（eGFR・尿蛋白とも測定）"


def indicator_population(indicator_id: str) -> str:
    """Footer population of a chart of a registered indicator: the registry's own words
    (docs/rules.md §16), so a trend or funnel states the denominator it was computed on."""
    return indicators.population_of(indicator_id)


def _check_insurance(insurance: str) -> str:
    if insurance not in INSURANCE_CHOICES:
        raise ParameterError(f"対象の保険は {'・'.join(INSURANCE_CHOICES)} のいずれかで指定してください"
                             f"（指定値: {insurance}）")
    return insurance


def area_rows(person_year: pd.DataFrame, muni_code: str, fy: int, insurance: str = "国保") -> pd.DataFrame:
    """person_year rows of the area (a municipality, or a prefecture in any code form of
    `hsutils.analysis.areas`), fiscal year and insurance (`INSURANCE_CHOICES`)."""
    _check_insurance(insurance)
    keep = person_year["fy"].to_numpy() == int(fy)
    keep &= areas.parse_code(muni_code).mask(person_year["muni_code"])
    if insurance != "全体":
        keep &= person_year["insurance"].astype("str").eq(insurance).to_numpy(dtype=bool)
    return person_year.loc[keep]


def area_claims(claims: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame:
    """Claims of the persons in `rows` (every month, so the look-back of docs/rules.md §5.4 works)."""
    if claims is None or len(claims) == 0:
        from hsutils.core.schema import TABLES

        return pd.DataFrame(columns=TABLES["claims_monthly"].names)
    return claims.loc[programs.person_in(claims["person_id"], rows["person_id"])]


_ROW_COLUMNS = ["person_id", "fy", "muni_code", "district_code", "sex", "age", "age_band", "insurance",
                "has_kenshin", "exam_date", "hba1c", "fpg", "casual_glucose", "egfr_calc", "egfr",
                "egfr_source", "urine_protein", "ckd_g", "ckd_a"]
#: What notebook 04 reads of the cache's person-level tables (`notebook.start(with_tables=TABLES)`): of
#: person_year the columns of `area_rows`, `target_frame` and the 腎症 rules; of claims_monthly the
#: rules' flags. Everything else of the notebook comes from the strata table. Issue 17: 金沢市 at the
#: scale of 東京都 took 11 GB with both tables in all their columns.
PERSON_YEAR_COLUMNS = tuple(dict.fromkeys([*_ROW_COLUMNS, *programs.NEPHROPATHY_PERSON_YEAR]))
TABLES = {"person_year": PERSON_YEAR_COLUMNS, "claims_monthly": programs.NEPHROPATHY_CLAIMS}


def target_frame(rows: pd.DataFrame, claims: pd.DataFrame, fy: int,
                 params: programs.NephropathyParams = programs.NephropathyParams()) -> pd.DataFrame:
    """The area's rows with the measures used and the target flags of
    `programs.nephropathy_flags` recomputed for `params` (docs/rules.md §5.1–§5.4).

    Columns: `_ROW_COLUMNS` (those present) + dkd_diabetes_type, dkd_diabetes, dkd_kidney,
    dkd_kidney_claim, dkd_dialysis, dkd_treatment, dkd_claims_only, dkd_group_a … e, dkd_group,
    dkd_referral, dkd_guidance, last_dm_ym. `egfr_used` = egfr_calc, else the reported eGFR.
    """
    flags = programs.nephropathy_flags(rows, claims, fy, params)
    base = rows[[c for c in _ROW_COLUMNS if not schema.column_absent(rows, c)]]
    out = pd.concat([base.loc[flags.index], flags], axis=1)
    # one dialysis rule for every count of the extraction (docs/rules.md §5.7): the flow's
    # steps below 健診受診者, groups A–E, the 糖尿病 heat map and the lists leave the same persons out
    out["dkd_excluded"] = out["dkd_dialysis"].to_numpy(dtype=bool) & bool(params.exclude_dialysis)
    egfr_calc = pd.to_numeric(out["egfr_calc"], errors="coerce") if "egfr_calc" in out else np.nan
    egfr_rep = pd.to_numeric(out["egfr"], errors="coerce") if "egfr" in out else np.nan
    out["egfr_used"] = pd.Series(egfr_calc, index=out.index, dtype="float64").fillna(
        pd.Series(egfr_rep, index=out.index, dtype="float64"))
    return out


# ---------------------------------------------------------------------------------------------
# 1. 概数把握 flow (seed 003 KDB flowchart; docs/rules.md §5.3)


def flow_counts(rows: pd.DataFrame, claims: pd.DataFrame, fy: int,
                params: programs.NephropathyParams = programs.NephropathyParams()) -> pd.DataFrame:
    """`programs.nephropathy_flow` for the area (step_id, step_label, count, parent_id)."""
    return programs.nephropathy_flow(rows, claims, fy, params)


def _flow_parents(flow: pd.DataFrame) -> pd.Series:
    """parent_id with "" (root) as None, the form `plots.flow_chart` expects."""
    parent = flow["parent_id"].astype(object)
    return parent.where(parent.notna() & parent.ne(""), None)


# Target totals added to the flow table (docs/rules.md §5.3): 受診勧奨 = A + C + E, 保健指導 = B + D.
FLOW_TOTALS = {
    "ref_total": ("受診勧奨の対象 計（A・C・E）", ("k2u", "k2i", "k3u", "k3i", "n2")),
    "gui_total": ("保健指導の対象 計（B・D）", ("k2t", "n1k")),
}


def with_target_totals(flow: pd.DataFrame) -> pd.DataFrame:
    """The flow plus the two target totals of `FLOW_TOTALS` as extra root rows."""
    count = dict(zip(flow["step_id"], flow["count"].astype("int64")))
    extra = pd.DataFrame({
        "step_id": list(FLOW_TOTALS),
        "step_label": [label for label, _ in FLOW_TOTALS.values()],
        "count": [int(sum(count.get(k, 0) for k in kids)) for _, kids in FLOW_TOTALS.values()],
        "parent_id": "",
    })
    out = pd.concat([flow, extra], ignore_index=True)
    out["count"] = out["count"].astype("int64")
    return out


def _partitions(flow: pd.DataFrame) -> list[tuple[int, np.ndarray]]:
    """(total position, part positions) of every partition in the flow: a step that splits into
    two or more branches (`privacy.tree_relations`, as in `plots.flow_chart`) and the target
    totals of `FLOW_TOTALS`."""
    ids = flow["step_id"].astype(str).tolist()
    pos = {k: i for i, k in enumerate(ids)}
    out = privacy.tree_relations(ids, _flow_parents(flow).tolist())
    for total, (_, parts) in FLOW_TOTALS.items():
        if total in pos:
            out.append((pos[total], np.array([pos[k] for k in parts if k in pos], dtype=np.int64)))
    return out


def flow_hidden(flow: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> np.ndarray:
    """Steps whose count must not be shown (docs/rules.md §9): counts 1…threshold−1 and secondary
    suppression over every partition of `_partitions` (`privacy.suppress_relations`), so that
    no hidden count can be recovered from a shown step or target total."""
    count = pd.to_numeric(flow["count"], errors="coerce").to_numpy(float)
    return privacy.suppress_relations(count, _partitions(flow), threshold)


def flow_table(flow: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee table of the flow with the target totals: step_id, step_label, count
    (suppression mark where hidden), suppressed (bool)."""
    full = flow if "ref_total" in set(flow["step_id"]) else with_target_totals(flow)
    hidden = flow_hidden(full, threshold)
    out = full[["step_id", "step_label"]].copy()
    out["count"] = pd.Series(full["count"].to_numpy(), index=full.index, dtype=object).mask(
        hidden, privacy.SUPPRESSION_MARK)
    out["suppressed"] = hidden
    return out.reset_index(drop=True)


# Short box labels for the chart; the full definitions are in the flow table and the footer.
CHART_LABELS = {
    "k0": "健診受診者", "k1": "糖尿病", "k2": "腎障害あり", "k2t": "治療中（B：保健指導）",
    "k2u": "未治療（A：受診勧奨）", "k2i": "治療中断（A：受診勧奨）", "k3": "腎障害なし", "k3t": "治療中",
    "k3u": "未治療（C：受診勧奨）", "k3i": "治療中断（C：受診勧奨）", "n1": "健診未受診・糖尿病治療中",
    "n1k": "腎疾患レセプトあり（D）", "n2": "健診未受診・治療中断（E）",
    "x1": "人工透析中（対象外）",
}


def wrap_label(text: str, width: int = 15) -> str:
    """Break a step label for a flow box: before each "（" and then every `width` characters
    (Japanese has no spaces to break at)."""
    lines = []
    for part in str(text).replace("（", "\n（").split("\n"):  # a few parts
        part = part.strip()
        lines += [part[i:i + width] for i in range(0, len(part), width)] or [""]
    return "\n".join(line for line in lines if line)


def flow_figure(flow: pd.DataFrame, title: str, footer: str,
                threshold: int = privacy.DEFAULT_THRESHOLD):
    """Flow chart (plots.flow_chart) of the 概数把握 flow; the steps hidden in the flow table
    (including those hidden because of the target totals) are passed as NaN so that the chart
    and the table hide the same counts."""
    full = with_target_totals(flow)
    hidden = flow_hidden(full, threshold)[: len(flow)]
    steps = flow.assign(parent_id=_flow_parents(flow),
                        step_label=[CHART_LABELS.get(k) or wrap_label(t)
                                    for k, t in zip(flow["step_id"], flow["step_label"])],
                        count=pd.Series(flow["count"].to_numpy(float), index=flow.index).mask(hidden))
    return plots.flow_chart(steps, title=title, footer=footer, suppress_threshold=threshold).figure


def flow_summary(flow: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese reading of the flow with the suppressed counts (for 読み取りのポイント)."""
    t = flow_table(flow, threshold)
    shown = dict(zip(t["step_id"], t["count"]))

    def s(k: str) -> str:
        v = shown.get(k, 0)
        return v if isinstance(v, str) else f"{int(v):,}人"

    lines = [f"健診受診者 {s('k0')} のうち、糖尿病 {s('k1')}、そのうち腎障害あり {s('k2')}"
             f"（治療中 {s('k2t')}・未治療 {s('k2u')}・治療中断 {s('k2i')}）。",
             f"健診未受診で糖尿病治療中 {s('n1')}（うち腎疾患レセプトあり {s('n1k')}）、"
             f"健診未受診で治療中断 {s('n2')}。",
             f"受診勧奨の対象（A・C・E）は {s('ref_total')}、保健指導の対象（B・D）は {s('gui_total')}。"]
    if "x1" in shown:
        lines.append(f"人工透析中の {s('x1')} は対象外としています。")
    if t["suppressed"].any():
        lines.append(f"「{privacy.SUPPRESSION_MARK}」は{threshold}人未満、または差し引きで{threshold}人未満が"
                     "わかってしまうため秘匿した人数です。")
    return "\n".join(lines)


def target_totals_hidden(flow: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> dict[str, bool]:
    """Whether the flow table hides the 受診勧奨 / 保健指導 totals (used by `target_counts` so
    that its 計 row never shows what the flow hides)."""
    t = flow_table(flow, threshold).set_index("step_id")["suppressed"]
    return {"referral": bool(t["ref_total"]), "guidance": bool(t["gui_total"])}


# ---------------------------------------------------------------------------------------------
# 2. CKD heat map (docs/rules.md §4.2–4.4)


def ckd_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Persons by CKD G × A stage for all checkup participants and for those with diabetes
    (dkd_diabetes, docs/rules.md §5.1): population, g_stage, a_stage, count (every one of the 6 × 3
    cells, zeros included). Only participants with both eGFR and 尿蛋白 measured are counted."""
    from hsutils.rules.clinical import A_STAGES, G_STAGES

    checked = frame["has_kenshin"].fillna(False).to_numpy(dtype=bool)
    g = frame["ckd_g"].astype(object)
    a = frame["ckd_a"].astype(object)
    measured = checked & g.notna().to_numpy() & a.notna().to_numpy()
    grid = pd.MultiIndex.from_product([list(G_STAGES), list(A_STAGES)], names=["g_stage", "a_stage"])
    parts = []
    # the 糖尿病 population is the flow's k1: without the persons excluded for dialysis (§5.7)
    kept = ~frame["dkd_excluded"].to_numpy(dtype=bool) if "dkd_excluded" in frame else np.ones(len(frame), bool)
    pops = {POP_ALL: measured, POP_DIABETES: measured & frame["dkd_diabetes"].to_numpy(dtype=bool) & kept}
    for pop, mask in pops.items():  # two populations
        n = pd.DataFrame({"g_stage": g[mask].astype(str).to_numpy(), "a_stage": a[mask].astype(str).to_numpy()})
        cnt = n.groupby(["g_stage", "a_stage"]).size().reindex(grid, fill_value=0)
        part = cnt.rename("count").reset_index()
        part.insert(0, "population", pop)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["count"] = out["count"].astype("int64")
    return out


def ckd_table(counts: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee table of the heat maps with row/column totals (g_stage or a_stage "計") and the
    same primary + secondary suppression as `plots.ckd_heatmap` (docs/rules.md §9): population,
    g_stage, a_stage, count (mark where hidden), suppressed."""
    from hsutils.rules.clinical import A_STAGES, G_STAGES

    parts = []
    for pop in pd.unique(counts["population"]):  # two populations
        c = counts[counts["population"] == pop]
        wide = (c.pivot_table(index="g_stage", columns="a_stage", values="count", aggfunc="sum")
                .reindex(index=list(G_STAGES), columns=list(A_STAGES)).fillna(0).astype(float))
        wide[TOTAL] = wide.sum(axis=1)
        wide.loc[TOTAL] = wide.sum(axis=0)
        hidden = privacy.secondary_suppress(wide, total_col=TOTAL, threshold=threshold, total_row=TOTAL)
        long = wide.stack().rename("count").reset_index()
        long.columns = ["g_stage", "a_stage", "count"]
        long["suppressed"] = hidden.stack().to_numpy(dtype=bool)
        long.insert(0, "population", pop)
        parts.append(long)
    out = pd.concat(parts, ignore_index=True)
    out["count"] = pd.Series(out["count"].astype("int64"), dtype=object).mask(
        out["suppressed"].to_numpy(), privacy.SUPPRESSION_MARK)
    return out


def ckd_summary(counts: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese reading of the heat maps: totals and the share in the red/orange cells."""
    from hsutils.rules.clinical import ckd_risk_colour

    lines = []
    for pop in pd.unique(counts["population"]):  # two populations
        c = counts[counts["population"] == pop]
        total = int(c["count"].sum())
        colour = pd.Series(ckd_risk_colour(c["g_stage"].to_numpy(object), c["a_stage"].to_numpy(object)),
                           index=c.index)
        high = int(c.loc[colour.isin(["orange", "red"]).to_numpy(), "count"].sum())
        if total == 0:
            lines.append(f"{pop}: eGFR と尿蛋白の両方を測定した人がいません（血清クレアチニンを測定していない可能性があります）。")
            continue
        if privacy.is_small(total, threshold) or privacy.is_small(high, threshold):
            lines.append(f"{pop}: 人数が少ないため割合は表示しません。")
            continue
        share = high / total if total else float("nan")
        lines.append(f"{pop}（eGFR・尿蛋白とも測定 {total:,}人）: 高リスク（橙）・超高リスク（赤）の区分に "
                     f"{high:,}人（{share:.1%}）。")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 3. 受診勧奨・保健指導 targets (docs/rules.md §5.3)


def target_counts(frame: pd.DataFrame, districts: pd.DataFrame | None = None,
                  municipalities: pd.DataFrame | None = None,
                  threshold: int = privacy.DEFAULT_THRESHOLD,
                  totals_hidden: dict[str, bool] | None = None) -> pd.DataFrame:
    """Counts of 受診勧奨 (A, C, E) and 保健指導 (B, D) targets by 地区 (市町 for a prefecture),
    年齢階級 and 性別, each with a 計 row (docs/rules.md §5.3): axis, category, referral, guidance
    (marks where hidden), suppressed. Primary and secondary suppression within each axis (a
    hidden cell must not be recoverable from the 計 row; docs/rules.md §9). `totals_hidden`
    (`target_totals_hidden` of the flow) hides the 計 of a column that the flow table hides."""
    totals_hidden = totals_hidden or {}
    prefecture = frame["muni_code"].astype("str").nunique() > 1
    if prefecture and municipalities is not None:
        names = municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].astype(str)
        place = frame["muni_code"].astype("str").map(names).fillna(frame["muni_code"].astype("str"))
        place_axis = "市町"
    else:
        place = areas.district_label_per_row(frame, districts)
        place_axis = "地区"
    axes = {place_axis: place.astype("str"),
            "年齢階級": frame["age_band"].astype("str"),
            "性別": frame["sex"].map(SEX_LABELS).astype("str")}
    ref = frame["dkd_referral"].to_numpy(dtype=bool).astype("int64")
    gui = frame["dkd_guidance"].to_numpy(dtype=bool).astype("int64")
    parts = []
    for axis, cat in axes.items():  # three axes
        if axis == "地区" and cat.eq("地区不明").all():
            continue  # no district data: the axis is skipped (notebook says so)
        g = pd.DataFrame({"category": cat.to_numpy(), "referral": ref, "guidance": gui})
        wide = g.groupby("category", sort=True)[["referral", "guidance"]].sum()
        if axis == "年齢階級" and "age_band" in frame and hasattr(frame["age_band"], "cat"):
            order = [str(b) for b in frame["age_band"].cat.categories if str(b) in wide.index]
            wide = wide.reindex(order)
        wide.loc[TOTAL] = wide.sum(axis=0)
        values = wide.astype(float)
        for col in ("referral", "guidance"):  # a 計 hidden by the flow table stays hidden
            if totals_hidden.get(col):
                values.loc[TOTAL, col] = np.nan
        hidden = privacy.secondary_suppress(values, threshold=threshold, total_row=TOTAL) | values.isna()
        shown = privacy.apply_suppression(wide, hidden)
        shown["suppressed"] = hidden.any(axis=1).to_numpy()
        shown = shown.reset_index().rename(columns={"index": "category"})
        shown.insert(0, "axis", axis)
        parts.append(shown)
    out = pd.concat(parts, ignore_index=True)
    return out[["axis", "category", "referral", "guidance", "suppressed"]]


def target_heat_frame(table: pd.DataFrame, axis: str = "地区") -> pd.DataFrame:
    """Long frame for `plots.heat_table` from the (suppressed) target_counts table, one axis:
    <axis>, 区分 (受診勧奨対象者/保健指導対象者), count (NaN where suppressed, so the cell shows
    the mark). The 計 row is left out (it would dominate the colour scale; it is in the table)."""
    t = table[(table["axis"] == axis) & (table["category"] != TOTAL)]
    long = t.melt(id_vars=["category"], value_vars=["referral", "guidance"], var_name="kind",
                  value_name="count")
    long["区分"] = long["kind"].map({"referral": REFERRAL, "guidance": GUIDANCE})
    long["count"] = pd.to_numeric(long["count"], errors="coerce")
    return long.rename(columns={"category": axis})[[axis, "区分", "count"]]


def district_indicator(prepared, muni_code: str, indicator_id: str, fy: int, conf: float = 0.95) -> tuple[pd.DataFrame, float]:
    """An indicator by 地区 of the municipality (crude rate, Wilson) compared with the
    municipality's own rate (docs/design.md §5): area_code, area_name, numerator, denominator, value,
    lower, upper (percent), comparison (有意に高い/有意差なし/有意に低い vs the municipality),
    method, conf; and the municipality rate (percent). Empty when the data has no districts."""
    s = prepared.strata
    s = s[(s["indicator_id"] == indicator_id) & (s["fy"] == int(fy))
          & (s["muni_code"].astype("str") == str(muni_code))]
    s = s[s["district_code"].astype("str").ne("")]
    cols = ["area_code", "area_name", "numerator", "denominator", "value", "lower", "upper", "comparison",
            "method", "conf"]
    if s.empty:
        return pd.DataFrame(columns=cols), float("nan")
    by = stats.proportion_grouped(s, ["district_code"], "numerator", "denominator", conf, multiplier=100)
    total = by[["numerator", "denominator"]].sum()
    muni_rate = float(total["numerator"] / total["denominator"] * 100) if total["denominator"] else float("nan")
    d = by.assign(muni_code=str(muni_code))
    by["area_code"] = by["district_code"].astype("str")
    by["area_name"] = areas.district_label_per_row(d, prepared.districts).to_numpy()
    by["comparison"] = np.asarray(stats.compare_to_benchmark(by["lower"].to_numpy(), by["upper"].to_numpy(),
                                                             muni_rate), dtype=object)
    return by[cols], muni_rate


def district_summary(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese text: districts significantly above/below the municipality (shown rows only)."""
    ok = ~privacy.small_rows(table, ["numerator", "denominator"], threshold)
    t = table[ok]
    high = t.loc[t["comparison"] == stats.SIGNIFICANTLY_HIGHER, "area_name"].tolist()
    low = t.loc[t["comparison"] == stats.SIGNIFICANTLY_LOWER, "area_name"].tolist()
    return (f"市全体より有意に高い地区: {'、'.join(high) if high else 'なし'}\n"
            f"市全体より有意に低い地区: {'、'.join(low) if low else 'なし'}")


def _urine_text(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").map(URINE_LABELS).astype("str")


def qualifying_reason(frame: pd.DataFrame, params: programs.NephropathyParams) -> pd.Series:
    """抽出理由: the values that put each person on the list, as Japanese text (vectorised)."""
    hba1c = pd.to_numeric(frame["hba1c"], errors="coerce")
    fpg = pd.to_numeric(frame["fpg"], errors="coerce")
    casual = (pd.to_numeric(frame["casual_glucose"], errors="coerce") if "casual_glucose" in frame
              else pd.Series(np.nan, index=frame.index))
    egfr = frame["egfr_used"]
    urine = pd.to_numeric(frame["urine_protein"], errors="coerce")
    kidney_claim = frame["dkd_kidney_claim"].to_numpy(dtype=bool)
    empty = pd.Series("", index=frame.index, dtype="str")
    pieces = [
        ("HbA1c " + hba1c.round(1).astype("str") + "%").where(hba1c >= params.hba1c, empty),
        ("空腹時血糖 " + fpg.round(0).astype("Int64").astype("str")).where(fpg >= params.glucose, empty),
        ("随時血糖 " + casual.round(0).astype("Int64").astype("str")).where(casual >= params.glucose, empty),
        ("eGFR " + egfr.round(1).astype("str")).where(egfr < params.egfr, empty),
        ("尿蛋白 " + _urine_text(urine)).where(urine >= params.urine_protein, empty),
        pd.Series(np.where(kidney_claim, "腎疾患レセプトあり", ""), index=frame.index, dtype="str"),
        frame["dkd_treatment"].astype("str"),
    ]
    joined = pieces[0]
    for p in pieces[1:]:  # seven pieces
        joined = joined + "、" + p
    return joined.str.replace(r"、+", "、", regex=True).str.strip("、").astype("str")


LIST_COLUMNS = ["person_id", "muni_code", "district_code", "district_name", "sex", "age", "age_band",
                "insurance", "group", "group_label", "treatment_status", "has_kenshin", "exam_date",
                "hba1c", "fpg", "casual_glucose", "egfr", "egfr_source", "urine_protein", "ckd_g", "ckd_a",
                "kidney_claim", "last_dm_ym", "reason"]


def target_list(frame: pd.DataFrame, kind: str, params: programs.NephropathyParams,
                districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Person list of 受診勧奨 (`kind="referral"`: groups A, C, E) or 保健指導 (`"guidance"`: B, D)
    targets with the values that qualified each person (docs/rules.md §5.3). CONFIDENTIAL: write it only
    with `NotebookContext.save_confidential` (docs/design.md §6).

    Columns `LIST_COLUMNS`: egfr is the value used (calculated, else reported), urine_protein the
    定性 label, treatment_status 治療中/治療中断/未治療, last_dm_ym the last month with a diabetes
    claim (YYYYMM, any year up to the fy end), reason the Japanese 抽出理由. Sorted by group, then
    eGFR (lowest first) and HbA1c (highest first)."""
    col = {"referral": "dkd_referral", "guidance": "dkd_guidance"}.get(kind)
    if col is None:
        raise ParameterError(f"リストの種類は referral（受診勧奨）または guidance（保健指導）で指定してください（{kind}）")
    f = frame.loc[frame[col].to_numpy(dtype=bool)]
    out = pd.DataFrame({
        "person_id": f["person_id"].astype("str"),
        "muni_code": f["muni_code"].astype("str"),
        "district_code": f["district_code"].astype("str"),
        "district_name": areas.district_label_per_row(f, districts),
        "sex": f["sex"].map(SEX_LABELS).astype("str"),
        "age": f["age"].astype("int64"),
        "age_band": f["age_band"].astype("str"),
        "insurance": f["insurance"].astype("str"),
        "group": f["dkd_group"].astype("str"),
        "group_label": f["dkd_group"].map(programs.DKD_GROUPS).astype("str"),
        "treatment_status": f["dkd_treatment"].astype("str"),
        "has_kenshin": f["has_kenshin"].fillna(False).astype(bool),
        "exam_date": f["exam_date"] if "exam_date" in f else pd.NaT,
        "hba1c": pd.to_numeric(f["hba1c"], errors="coerce"),
        "fpg": pd.to_numeric(f["fpg"], errors="coerce"),
        "casual_glucose": pd.to_numeric(f.get("casual_glucose", np.nan), errors="coerce"),
        "egfr": f["egfr_used"].round(1),
        "egfr_source": f["egfr_source"].astype("str").where(f["egfr_source"].notna(), "") if "egfr_source" in f else "",
        "urine_protein": _urine_text(f["urine_protein"]).where(f["urine_protein"].notna(), ""),
        "ckd_g": f["ckd_g"].astype("str").where(f["ckd_g"].notna(), ""),
        "ckd_a": f["ckd_a"].astype("str").where(f["ckd_a"].notna(), ""),
        "kidney_claim": f["dkd_kidney_claim"].astype(bool),
        "last_dm_ym": f["last_dm_ym"].astype("Int64"),
        "reason": qualifying_reason(f, params),
    })
    out = out.sort_values(["group", "egfr", "hba1c"], ascending=[True, True, False], na_position="last")
    return out[LIST_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# 4. trends (docs/rules.md §3.1, §4, §5, §7.5)


def computed_indicator_counts(person_year: pd.DataFrame, muni_code: str,
                              fiscal_years=None) -> pd.DataFrame:
    """Person-level recount, for the municipality and the prefecture, of the two program indicators
    registered in hsutils.analysis.indicators (docs/rules.md §4.2, §4.3, §5.1): `dm_egfr45` eGFR < 45 and
    `dm_urine_protein1` 尿蛋白 1+ 以上 among checkup participants with diabetes who had the
    measurement. Notebooks read the strata table instead; this is for checks and for other
    criteria on a hand-filtered frame. Columns: indicator_id, area, fy, numerator, denominator."""
    py = person_year
    if fiscal_years is not None:
        py = py[py["fy"].isin([int(f) for f in fiscal_years])]
    # the registry holds the one definition; the batch counts them once into the strata table
    flags = indicators.indicator_flags(py, list(TREND_COMPUTED))
    dens = {ind: den for ind, (_, den) in flags.items()}
    flags = {ind: num for ind, (num, _) in flags.items()}
    area = areas.parse_code(muni_code)
    in_area = area.mask(py["muni_code"])
    parts = []
    for ind, num in flags.items():  # two indicators
        d = pd.DataFrame({"fy": py["fy"].to_numpy(), "num": num.astype("int64"),
                          "den": dens[ind].astype("int64"), "area": in_area})
        pref = d.groupby("fy")[["num", "den"]].sum().assign(area="pref")
        parts.append(pref.reset_index().assign(indicator_id=ind))
        if not area.is_prefecture:
            mun = d[d["area"]].groupby("fy")[["num", "den"]].sum().assign(area="muni")
            parts.append(mun.reset_index().assign(indicator_id=ind))
    out = pd.concat(parts, ignore_index=True).rename(columns={"num": "numerator", "den": "denominator"})
    return out[["indicator_id", "area", "fy", "numerator", "denominator"]]


def trend_table(prepared, muni_code: str, fiscal_years=None, conf: float = 0.95,
                reference: areas.ReferenceResolution | None = None) -> pd.DataFrame:
    """Trend of the 糖尿病性腎症 indicators for the municipality and its reference area (default:
    the prefecture; `reference` from `hsutils.analysis.areas.resolve_reference`, named by its label) with
    Wilson intervals (docs/design.md §5): indicator_id, indicator_name, area_name, fy, numerator,
    denominator, value, lower, upper (percent), method, conf.

    All six come from the strata table of the shared pass (registered in hsutils.analysis.indicators), i.e.
    the cached flags with the default criteria of `programs.NephropathyParams`."""
    master = prepared.municipalities
    if reference is None:
        reference = areas.resolve_reference(muni_code, "pref", master)
    area = reference.subject
    pref_name = reference.label
    area_name = area.display_name
    strata = prepared.strata
    fys = None if fiscal_years is None else [int(f) for f in fiscal_years]
    parts = []
    reg = strata[strata["indicator_id"].isin(list(TREND_REGISTERED) + list(TREND_COMPUTED))]
    if fys is not None:
        reg = reg[reg["fy"].isin(fys)]
    keys = ["indicator_id", "fy"]
    ref = reference.strata(reg, master)
    ref = ref[ref["indicator_id"].isin(list(TREND_REGISTERED) + list(TREND_COMPUTED)).to_numpy()]  # 全国 (NDB): none
    if len(ref):  # an unavailable reference has no rows: the chart says 比較なし（理由）
        parts.append(stats.proportion_grouped(ref, keys, "numerator", "denominator", conf,
                                              multiplier=100).assign(area="pref"))
    if not area.is_prefecture:
        m = reg[area.mask(reg["muni_code"])]
        parts.append(stats.proportion_grouped(m, keys, "numerator", "denominator", conf, multiplier=100)
                     .assign(area="muni"))
    out = pd.concat(parts, ignore_index=True)
    out["area_name"] = np.where(out["area"].eq("muni"), area_name, pref_name)
    names = {i.id: i.name for i in indicators.INDICATORS} | TREND_COMPUTED
    out["indicator_name"] = out["indicator_id"].map(names)
    order = {k: i for i, k in enumerate(list(TREND_REGISTERED[:1]) + list(TREND_COMPUTED) + list(TREND_REGISTERED[1:]))}
    out = out.assign(_o=out["indicator_id"].map(order), _a=out["area"].eq("pref"))
    out = out.sort_values(["_o", "_a", "fy"]).drop(columns=["_o", "_a", "area"])
    out["numerator"] = out["numerator"].astype("int64")
    out["denominator"] = out["denominator"].astype("int64")
    return out[["indicator_id", "indicator_name", "area_name", "fy", "numerator", "denominator",
                "value", "lower", "upper", "method", "conf"]].reset_index(drop=True)


def _pooled_text(rows: pd.DataFrame, shown: pd.DataFrame, muni_name: str, threshold: int) -> str:
    """All fiscal years pooled (person-years), for indicators too rare to show per year. An area
    with exactly one hidden year gets no pooled figure: it could be recovered by subtracting the
    years shown (docs/rules.md §9). `shown` is `rows` as the report shows them (hidden cells NaN)."""
    parts = []
    for area, g in rows.groupby("area_name", sort=False):  # two areas
        g_shown = shown.loc[g.index]
        hidden_years = sum(_small_row(r, threshold) for _, r in g_shown.iterrows())  # a few years
        if hidden_years == 1:
            continue
        x, n = int(g["numerator"].sum()), int(g["denominator"].sum())
        if n == 0 or privacy.is_small(x, threshold) or privacy.is_small(n, threshold):
            continue
        p, lo, hi = (float(v) * 100 for v in stats.proportion_ci(x, n))
        parts.append(f"{area} {p:.2f}%（95%CI {lo:.2f}–{hi:.2f}、{x:,}/{n:,}人年）")
    if not parts:
        return ""
    return f" 全年度の合計: {'、'.join(parts)}"


def _small_row(r, threshold: int) -> bool:
    """The row's figures derive from a count 1…threshold−1, were hidden by the report's
    suppression plan (NaN in a masked table), or have no denominator."""
    return bool(pd.isna(r["numerator"]) or pd.isna(r["denominator"])
                or privacy.is_small(r["numerator"], threshold) or privacy.is_small(r["denominator"], threshold)
                or not r["denominator"] > 0)


def trend_plottable(rows: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> bool:
    """True when at least one point of a trend can be shown (numerator and denominator not 1–9,
    denominator > 0); otherwise the chart would be empty."""
    num, den = rows["numerator"].to_numpy(float), rows["denominator"].to_numpy(float)
    hidden = (np.asarray(privacy.is_small(num, threshold), dtype=bool)
              | np.asarray(privacy.is_small(den, threshold), dtype=bool) | ~(den > 0))
    return bool((~hidden).any())


def trend_summary(trend: pd.DataFrame, muni_name: str, threshold: int = privacy.DEFAULT_THRESHOLD, *,
                  shown: pd.DataFrame | None = None) -> str:
    """Japanese sentence per indicator: the latest year of the municipality vs the prefecture
    (significance by whether the prefecture value lies outside the municipality's interval).

    `shown` is the trend table as the report publishes it (`ctx.masked("trends")`: every cell the
    report's suppression plan hides is NaN, docs/design.md §6); a figure hidden there is hidden in
    the sentence too. `trend` (raw counts, same index) is used only for the pooled all-years
    figure, which `_pooled_text` publishes only when it cannot reveal a hidden year."""
    shown = trend if shown is None else shown.loc[trend.index]
    last = int(trend["fy"].max())
    t = shown[shown["fy"] == last]
    lines = []
    if t["area_name"].nunique() == 1:  # prefecture level: no comparison, the latest values
        for _, r in t.iterrows():  # six indicators
            if _small_row(r, threshold):
                ind_rows = trend["indicator_id"] == r["indicator_id"]
                lines.append(f"・{r['indicator_name']}: 人数が少ないため表示しません（{plots.fy_japanese(last)}）。"
                             + _pooled_text(trend[ind_rows], shown[ind_rows], "", threshold))
                continue
            lines.append(f"・{r['indicator_name']}: {r['value']:.1f}%（95%CI {r['lower']:.1f}–{r['upper']:.1f}、"
                         f"{int(r['numerator']):,}/{int(r['denominator']):,}人）")
        return "\n".join(lines)
    for ind in pd.unique(t["indicator_id"]):  # six indicators
        rows = t[t["indicator_id"] == ind]
        m, p = rows[rows["area_name"] == muni_name], rows[rows["area_name"] != muni_name]
        name = rows["indicator_name"].iloc[0]
        if m.empty or p.empty:
            continue
        m, p = m.iloc[0], p.iloc[0]
        if _small_row(m, threshold) or _small_row(p, threshold):
            ind_rows = trend["indicator_id"] == ind
            lines.append(f"・{name}: 人数が少ないため表示しません（{plots.fy_japanese(last)}）。"
                         + _pooled_text(trend[ind_rows], shown[ind_rows], muni_name, threshold))
            continue
        comp = stats.compare_to_benchmark(m["lower"], m["upper"], p["value"])
        comp = "判定できません" if pd.isna(comp) else {stats.SIGNIFICANTLY_HIGHER: "県より有意に高い",
                                                    stats.SIGNIFICANTLY_LOWER: "県より有意に低い",
                                                    stats.NOT_SIGNIFICANT: "県と有意差なし"}[comp]
        lines.append(f"・{name}: {m['value']:.1f}%（95%CI {m['lower']:.1f}–{m['upper']:.1f}、"
                     f"{int(m['numerator']):,}/{int(m['denominator']):,}人）、県 {p['value']:.1f}% → {comp}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 5. funnel plots (docs/methods.md §7)


def funnel_frame(prepared, indicator_id: str, fy: int) -> tuple[pd.DataFrame, float]:
    """One row per municipality for a funnel plot: area_code, area_name, numerator, denominator,
    rate (fraction), funnel (position vs the 95 %/99.8 % limits); and the prefecture rate (target)."""
    s = prepared.strata
    s = s[(s["indicator_id"] == indicator_id) & (s["fy"] == int(fy))]
    master = prepared.municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].astype(str)
    by = (s.groupby("muni_code")[["numerator", "denominator"]].sum()
          .reindex(master.index.astype(str), fill_value=0).rename_axis("muni_code").reset_index())
    target = float(by["numerator"].sum() / by["denominator"].sum()) if by["denominator"].sum() else float("nan")
    by["area_code"] = by["muni_code"].astype("str")
    by["area_name"] = by["area_code"].map(master).fillna(by["area_code"])
    with np.errstate(divide="ignore", invalid="ignore"):
        by["rate"] = by["numerator"] / by["denominator"].where(by["denominator"] > 0)
    by["funnel"] = stats.funnel_significance(by["numerator"].to_numpy(float), by["denominator"].to_numpy(float),
                                             target)
    return by[["area_code", "area_name", "numerator", "denominator", "rate", "funnel"]], target


@plots.styled
def funnel_figure(df: pd.DataFrame, target: float, title: str, footer: str, highlight: str | None = None,
                  y_label: str = "割合", threshold: int = privacy.DEFAULT_THRESHOLD, polarity="lower_better",
                  x_label: str | None = None, references=(), notes=()):
    """Funnel plot (plots.funnel_plot, polarity lower is better by default) with this
    municipality ringed and named (unless its point is suppressed). Also used by notebook 08.
    `references`, `notes`: other references as lines (`hsutils.analysis.references.lines_for_chart`)."""
    fig = plots.funnel_plot(df, value_col="rate", denom_col="denominator", target=target, title=title, footer=footer,
                            label_col="area_name", count_col="numerator", polarity=polarity, x_label=x_label,
                            y_label=y_label, target_label="県全体", references=references, notes=notes,
                            suppress_threshold=threshold).figure
    if highlight:
        row = df[df["area_code"] == str(highlight)]
        if len(row) and not (privacy.is_hidden(row["numerator"].iloc[0], threshold)
                             or privacy.is_hidden(row["denominator"].iloc[0], threshold)):
            ax = fig.axes[0]
            x, y = float(row["denominator"].iloc[0]), float(row["rate"].iloc[0])
            ax.scatter([x], [y], s=150, facecolors="none", edgecolors="#D55E00", linewidths=2.0,
                       zorder=4, gid="funnel_highlight")
            ax.annotate(f"{row['area_name'].iloc[0]}（当該）", (x, y), xytext=(8, -12),
                        textcoords="offset points", fontsize=8, color="#D55E00")
    return fig


def funnel_table(df: pd.DataFrame, indicator_id: str) -> pd.DataFrame:
    """Committee table of a funnel plot (rate in percent); suppress with ctx.save_table."""
    out = df.copy()
    out.insert(0, "indicator_id", indicator_id)
    out["rate"] = out["rate"] * 100
    return out


def funnel_summary(df: pd.DataFrame, muni_code: str | None, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese text: municipalities above/below the 95 % limits and where this one lies."""
    ok = pd.Series(~(np.asarray(privacy.is_hidden(df["numerator"], threshold), dtype=bool)
                     | np.asarray(privacy.is_hidden(df["denominator"], threshold), dtype=bool)), index=df.index)
    d = df[ok.to_numpy()]
    high = d.loc[d["funnel"].isin([stats.FUNNEL_HIGH_95, stats.FUNNEL_HIGH_998]), "area_name"].tolist()
    low = d.loc[d["funnel"].isin([stats.FUNNEL_LOW_95, stats.FUNNEL_LOW_998]), "area_name"].tolist()
    lines = [f"95%限界より高い（悪い）市町: {'、'.join(high) if high else 'なし'}",
             f"95%限界より低い（良い）市町: {'、'.join(low) if low else 'なし'}"]
    if muni_code and not areas.parse_code(muni_code).is_prefecture:
        row = df[df["area_code"] == str(muni_code)]
        if len(row) and bool(ok.loc[row.index[0]]):
            r = row.iloc[0]
            lines.append(f"当該市町（{r['area_name']}）: {r['rate']:.1%}（{int(r['numerator']):,}/"
                         f"{int(r['denominator']):,}人）… {r['funnel']}")
        elif len(row):
            lines.append(f"当該市町（{row['area_name'].iloc[0]}）: 人数が少ないため表示しません")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 6. 日本健康会議 宣言2 self-check (docs/rules.md §5.5, seed 003)

# One implementation of reading and judging 宣言2: hsutils.patterns.support_record (notebook 09 tracks the same
# answers per insurer and fiscal year); notebook 04 reads one municipality's self-check through it.
REQUIREMENTS = support_record.DECLARATION2_REQUIREMENTS
ALWAYS_REQUIRED = support_record.DECLARATION2_ALWAYS_REQUIRED
load_checklist = support_record.load_declaration2_selfcheck
checklist_table = support_record.declaration2_table
checklist_verdict = support_record.declaration2_verdict


# ---------------------------------------------------------------------------------------------
# 7. interactive explorer (docs/design.md §9: only when interactive)


def flow_explorer(rows: pd.DataFrame, claims: pd.DataFrame, fy: int,
                  params: programs.NephropathyParams = programs.NephropathyParams(),
                  threshold: int = privacy.DEFAULT_THRESHOLD):
    """ipywidgets panel: thresholds and the interruption window; the flow counts (suppressed)
    update at once. Call only when `interactive` (papermill can hang on widgets, docs/design.md §9)."""
    import ipywidgets as widgets

    from hsutils.publish import report, widgets as panels

    w = {
        "hba1c": widgets.FloatSlider(value=params.hba1c, min=6.0, max=8.0, step=0.1, description="HbA1c（%）以上"),
        "glucose": widgets.IntSlider(value=int(params.glucose), min=100, max=200, step=1,
                                     description="空腹時・随時血糖（mg/dL）以上"),
        "egfr": widgets.IntSlider(value=int(params.egfr), min=15, max=90, step=1, description="eGFR 未満"),
        "urine_protein": widgets.Dropdown(options=list(URINE_CHOICES),
                                          value=URINE_LABELS.get(params.urine_protein, "±"),
                                          description="尿蛋白 以上"),
        "window_months": widgets.IntSlider(value=params.window_months, min=1, max=24, step=1,
                                           description="治療中断の判定（か月）"),
        "include_kidney_claims": widgets.Checkbox(value=params.include_kidney_claims,
                                                  description="腎疾患レセプトも腎障害に含める"),
    }

    def render(**values):
        p = nephropathy_params(lookback_months=max(params.lookback_months, values["window_months"]),
                               exclude_dialysis=params.exclude_dialysis, **values)
        flow = flow_counts(rows, claims, fy, p)
        table = flow_table(flow, threshold)[["step_label", "count"]]
        return [report.display_table(table, {"step_label": "区分", "count": "人数"}), flow_summary(flow, threshold)]

    return panels.Panel(w, render)


# ---------------------------------------------------------------------------------------------
# Additive relations between the committee tables of the report (privacy.SuppressionPlan)
# Table names are those notebook 04 saves; each function gives the relations of one table to
# itself and to the tables saved before it (docs/rules.md §9, docs/design.md §6).

def flow_relations(flow: pd.DataFrame) -> list:
    """flow_counts: every split step = Σ its branches, and the two target totals (FLOW_TOTALS)."""
    full = flow if "ref_total" in set(flow["step_id"]) else with_target_totals(flow)
    ids = full["step_id"].astype(str).tolist()
    groups = tuple((ids[t], tuple(ids[p] for p in parts)) for t, parts in _partitions(full))
    return [privacy.Partition("count", "step_id", groups)]


#: ckd_heatmap: the 計 of each G row and each A column (per population).
CKD_RELATIONS = (privacy.Margin("a_stage", TOTAL, by=("population", "g_stage")),
                 privacy.Margin("g_stage", TOTAL, by=("population", "a_stage")))

#: target_counts: the categories of each axis add up to its 計 row; every 計 is the target total
#: of the flow table (受診勧奨 = ref_total, 保健指導 = gui_total).
_FLOW_TOTAL_OF = {"referral": "ref_total", "guidance": "gui_total"}


def target_count_relations(counts: pd.DataFrame, flow_table_name: str = "flow_counts") -> list:
    """target_counts: Σ categories = 計 per axis; each axis's 計 = the flow's target total."""
    rels = [privacy.Margin("category", TOTAL, by=("axis",))]
    for axis in pd.unique(counts["axis"]):  # a few axes
        rels += [privacy.Link(flow_table_name, col, rows={"axis": axis, "category": TOTAL},
                              other_rows={"step_id": step}, other_col="count")
                 for col, step in _FLOW_TOTAL_OF.items()]
    return rels


def trend_relations(area_name: str, fy: int, district_table_name: str | None = "district_untreated") -> list:
    """trends: the municipality's 糖尿病型の未治療 of the analysis year = Σ the districts of the
    district table saved before (when there is one)."""
    if district_table_name is None:
        return []
    rows = {"indicator_id": "dm_untreated", "fy": int(fy), "area_name": area_name}
    return [privacy.Link(district_table_name, col, rows=rows, reverse=True)
            for col in ("numerator", "denominator")]


def funnel_relations(pref_name: str, fy: int, trend_table_name: str = "trends") -> list:
    """funnel: the municipalities of each indicator add up to the prefecture row of the trends."""
    return [privacy.Link(trend_table_name, col, on=("indicator_id",),
                         other_rows={"fy": int(fy), "area_name": pref_name})
            for col in ("numerator", "denominator")]

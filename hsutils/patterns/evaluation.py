"""Evaluation of the データヘルス計画 (notebook 05): evaluation sheet, 実施率 gaps, program effect.

What a municipality brings to the 保健事業支援・評価委員会 (docs/rules.md §7):

* `evaluation_sheet` — every 共通評価指標 (docs/rules.md §7.1–7.5) and the municipality's own indicators
  grouped as ストラクチャー / プロセス / アウトプット / アウトカム (docs/rules.md §7.7): baseline, target,
  each year's value with its Wilson interval, achievement (%), the judgement 改善 / 変化なし / 悪化
  from the Newcombe interval of the difference between the evaluation and the baseline year
  (docs/design.md §5: never by eye) and the prefecture's value. `write_sheet_xlsx` lays it out for printing.
* `participation_by_sex_age` — 特定健診・特定保健指導 実施率 by sex × age band against the 第4期
  targets (docs/rules.md §7.6): who is not coming and how many persons short of the target.
* `guidance_pairs` + `guidance_effect` — 特定保健指導 participants vs eligible non-participants,
  change from year t to t+1 as a difference-in-differences (Welch t for mean changes, Newcombe for
  proportions). The groups are not randomised: the result is an association, not a proven effect.
* `outcome_trends` — age-adjusted outcome indicators (direct, Dobson) for the municipality, its
  二次医療圏 and the prefecture.
* `summary_figure` — one A4 landscape page: the indicators that changed significantly.

All tables returned for the committee have Japanese headers and are already suppressed (counts
1 … threshold−1 and what derives from them shown as "‐", docs/design.md §6); person-level frames
(`guidance_pairs`) never leave the library except through `NotebookContext.save_confidential`.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from hsutils import stats
from hsutils.core import settings, vocab
from hsutils.core.schema import column_absent
from hsutils.analysis import areas, indicators
from hsutils.publish import plots, privacy, report
from hsutils.patterns import hotei
from hsutils.core.errors import ParameterError

#: Default targets file in the parameters folder (a demo example; docs/rules.md §7.6 targets for 実施率).
DEFAULT_TARGETS_NAME = "evaluation_targets_demo.yaml"

#: 共通評価指標 of the データヘルス計画 that the data can measure (docs/rules.md §7.1–7.5).
COMMON_INDICATORS = ("kenshin_rate", "hokenshido_rate", "hokenshido_reduction", "metabo_reduction",
                     "hba1c8", "hg_bp")
#: Evaluation frame (docs/rules.md §7.7), in the order of the sheet.
CATEGORIES = ("ストラクチャー", "プロセス", "アウトプット", "アウトカム")
#: 第4期 targets of 市町村国保 (docs/rules.md §7.6, confidence M): 特定健診 60 %, 特定保健指導 60 %.
KOKUHO_TARGETS_4TH = {"kenshin_rate": 60.0, "hokenshido_rate": 60.0}
#: Achievement formulas (documented on the sheet).
ACHIEVEMENT_RATIO = "ratio"
ACHIEVEMENT_PROGRESS = "progress"
ACHIEVEMENT_LABELS = {
    ACHIEVEMENT_RATIO: "現状値 ÷ 目標値 × 100",
    ACHIEVEMENT_PROGRESS: "（現状値 − ベースライン）÷（目標値 − ベースライン）× 100",
}
POLARITY_LABELS = stats.POLARITY_LABELS
SEX_LABELS = vocab.SEX_LABELS
#: Who the guidance-effect pairs count (docs/rules.md §16): 特定保健指導の対象者 with a checkup in both years
GUIDANCE_PAIRS_POPULATION = f"{indicators.population_of('hokenshido_rate')}（両年度に健診受診）"
GROUP_PARTICIPANT = "参加者"
GROUP_NON_PARTICIPANT = "非参加者"

#: Measures compared in the 特定保健指導 effect (name, unit); lower is better for all of them.
CHANGE_MEASURES = {
    "weight": ("体重", "kg"),
    "waist": ("腹囲", "cm"),
    "hba1c": ("HbA1c", "%"),
    "sbp": ("収縮期血圧", "mmHg"),
    "tg": ("中性脂肪", "mg/dL"),
}
#: The two shares of the guidance-effect table (`guidance_effect`). They are not the 法定報告 減少率
#: (docs/hotei.md §4: cohort = last year's 評価対象者 of the same municipality); their population is
#: `GUIDANCE_PAIRS_POPULATION`, so they carry their own names (docs/hotei.md §4.6).
EFFECT_NOT_TARGET = "翌年度に特定保健指導の対象者でなくなった割合"
#: What notebook 05 reads of the cache's person-level tables (`notebook.start(with_tables=TABLES)`): the
#: person_year columns of the 法定報告 form (`hotei.hotei_table`, `hotei_items.person_flags`) and of the
#: guidance pairs (`guidance_pairs`); the indicators come from the strata table (issue 17).
TABLES = {"person_year": (
    "person_id", "fy", "muni_code", "sex", "age", "age_band", "insurance", "full_year", "excluded_statutory",
    "has_kenshin", "metabo", "hokenshido", "med_bp", "med_lipid", "med_glucose", "guidance_target",
    "guidance_started", "guidance_completed", "prev_evaluable", "prev_metabo", "prev_guidance_completer",
    *CHANGE_MEASURES)}
EFFECT_METABO_OUT = "翌年度にメタボ非該当になった割合（該当者・予備群のうち）"

NOT_RANDOMISED_NOTE = ("参加者と非参加者は無作為に分けた集団ではありません。参加する人はもともと健康への関心が高い"
                       "（選択バイアス）、値が高かった人は翌年は下がりやすい（平均への回帰）などの理由で、差がすべて"
                       "指導の効果とは言えません。効果の目安として読んでください。")
COMPARISON_NOTE = plots.COMPARISON_NOTE


# =============================================================================================
# Parameters: targets YAML and years
# =============================================================================================
@dataclass
class EvaluationTargets:
    """Targets of one municipality (from the targets YAML)."""
    targets: dict[str, float] = field(default_factory=dict)          # indicator id -> target (%)
    own_indicators: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["indicator_id", "category", "achievement"]))
    qualitative: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["category", "item", "baseline", "target", "current", "achieved", "note"]))
    achievement: dict[str, str] = field(default_factory=dict)        # indicator id -> formula
    source: str = ""


def resolve_targets_path(path=None) -> Path:
    """The targets YAML: `path` as given (absolute, or relative to the working folder), else
    relative to the repository (a notebook run by the batch has its output folder as working
    folder), else the demo file."""
    if path in (None, ""):
        return settings.parameter_file(DEFAULT_TARGETS_NAME)
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    root = settings.repo_root()
    if root is not None and (root / p).exists():
        return root / p
    return p


def _target_value(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"目標値ファイルの {where} の値 {value!r} は数値（%）で指定してください。") from None
    if not math.isfinite(v) or v < 0 or v > 100:
        raise ParameterError(f"目標値ファイルの {where} の値 {value!r} は 0〜100 の % で指定してください。")
    return v


def _check_indicator(ind_id, where: str) -> str:
    ind_id = str(ind_id)
    if ind_id not in indicators.REGISTRY:
        raise ParameterError(f"目標値ファイルの {where} の指標ID「{ind_id}」は指標一覧にありません"
                             f"（例: {', '.join(COMMON_INDICATORS[:3])}）。")
    return ind_id


def _check_category(cat, where: str) -> str:
    if cat not in CATEGORIES:
        raise ParameterError(f"目標値ファイルの {where} の区分「{cat}」は {' / '.join(CATEGORIES)} のいずれかで"
                             "指定してください。")
    return cat


def _yes_no(value) -> str | None:
    """はい/いいえ (also True/False, yes/no, 達成/未達成) -> "達成"/"未達成"; blank -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    answer = vocab.yes_no_value(value, extra=vocab.DONE_SPELLINGS)
    if answer is None:
        return str(value)
    return "達成" if answer else "未達成"


def parse_targets(raw: Mapping | None, muni_code: str | None = None, source: str = "") -> EvaluationTargets:
    """Validate the targets mapping (see parameters/evaluation_targets_demo.yaml) and apply the
    `by_municipality` overrides of `muni_code`."""
    raw = dict(raw or {})
    override = (raw.get("by_municipality") or {}).get(str(muni_code), {}) if muni_code else {}
    merged_targets = {**(raw.get("targets") or {}), **(override.get("targets") or {})}
    own_raw = override.get("own_indicators", raw.get("own_indicators")) or []
    qual_raw = override.get("qualitative", raw.get("qualitative")) or []

    targets = {_check_indicator(k, "targets"): _target_value(v, f"targets.{k}") for k, v in merged_targets.items()}
    own_rows, achievement = [], {}
    for k, item in enumerate(own_raw):
        if not isinstance(item, Mapping) or "id" not in item:
            raise ParameterError(f"目標値ファイルの own_indicators の {k + 1} 件目に id がありません。")
        ind_id = _check_indicator(item["id"], f"own_indicators[{k + 1}]")
        cat = _check_category(item.get("category", indicators.REGISTRY[ind_id].category), f"own_indicators[{k + 1}]")
        if "target" in item and item["target"] is not None:
            targets[ind_id] = _target_value(item["target"], f"own_indicators[{k + 1}].target")
        if item.get("achievement"):
            if item["achievement"] not in ACHIEVEMENT_LABELS:
                raise ParameterError(f"目標値ファイルの own_indicators[{k + 1}].achievement は ratio か progress "
                                     "で指定してください。")
            achievement[ind_id] = item["achievement"]
        own_rows.append({"indicator_id": ind_id, "category": cat, "achievement": item.get("achievement")})
    qual_rows = []
    for k, item in enumerate(qual_raw):
        if not isinstance(item, Mapping) or "item" not in item:
            raise ParameterError(f"目標値ファイルの qualitative の {k + 1} 件目に item（項目）がありません。")
        qual_rows.append({
            "category": _check_category(item.get("category"), f"qualitative[{k + 1}]"),
            "item": str(item["item"]),
            **{key: (None if item.get(key) is None else str(item.get(key)))
               for key in ("baseline", "target", "current", "note")},
            "achieved": _yes_no(item.get("achieved"))})
    out = EvaluationTargets(targets=targets, achievement=achievement, source=source)
    if own_rows:
        out.own_indicators = pd.DataFrame(own_rows).drop_duplicates("indicator_id")
    if qual_rows:
        out.qualitative = pd.DataFrame(qual_rows)
    return out


def load_targets(path=None, muni_code: str | None = None) -> EvaluationTargets:
    """Read the targets YAML (default: the demo file) for one municipality."""
    p = resolve_targets_path(path)
    if not p.exists():
        raise ParameterError(f"目標値ファイル {p} が見つかりません（例: parameters/evaluation_targets_demo.yaml）。")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ParameterError(f"目標値ファイル {p} を UTF-8 として読めません。UTF-8 で保存してください。") from None
    except yaml.YAMLError as e:
        raise ParameterError(f"目標値ファイル {p} の書き方に誤りがあります: {e}") from None
    if raw is not None and not isinstance(raw, Mapping):
        raise ParameterError(f"目標値ファイル {p} は「キー: 値」の形式で書いてください。")
    return parse_targets(raw, muni_code, source=str(p))


def targets_table(plan: EvaluationTargets) -> pd.DataFrame:
    """The targets in use as a Japanese table (for the notebook): 共通評価指標 and own indicators
    with their category, direction, target and achievement formula, then the qualitative items."""
    rows = _sheet_rows(plan)
    reg = indicators.registry_frame().set_index("indicator_id")
    ids = rows["indicator_id"].to_numpy()
    pol = reg.loc[ids, "polarity"].to_numpy(dtype=object)
    method = np.where(pd.isna(rows["achievement"]).to_numpy(), default_achievement_method(pol),
                      rows["achievement"].to_numpy(dtype=object))
    target = [plan.targets.get(i) for i in ids]
    out = pd.DataFrame({
        "区分": rows["category"], "種別": rows["kind"], "指標ID": ids, "指標": reg.loc[ids, "indicator_name"].to_numpy(),
        "方向": [POLARITY_LABELS.get(p, stats.JUDGEMENT_NONE) for p in pol],
        "目標値": [f"{t:g}%" if t is not None else "（未設定）" for t in target],
        "達成率の算式": [ACHIEVEMENT_LABELS[m] if t is not None else "" for m, t in zip(method, target)]})
    q = plan.qualitative
    if q is not None and len(q):
        out = pd.concat([out, pd.DataFrame({
            "区分": q["category"].to_numpy(), "種別": "独自（体制・過程）", "指標ID": "", "指標": q["item"].to_numpy(),
            "方向": "—", "目標値": q["target"].fillna("").to_numpy(), "達成率の算式": "記入内容"})], ignore_index=True)
    order = {c: k for k, c in enumerate(CATEGORIES)}
    return out.iloc[np.lexsort((np.arange(len(out)), out["区分"].map(order).to_numpy()))].reset_index(drop=True)


def resolve_years(available: Sequence[int], baseline_fy=None, evaluation_fy=None) -> tuple[int, int]:
    """Baseline (default: first year in the data) and evaluation fiscal year (default: latest)."""
    years = sorted(int(y) for y in available)
    if not years:
        raise ParameterError("データに年度がありません。")
    base = int(baseline_fy) if baseline_fy not in (None, "") else years[0]
    ev = int(evaluation_fy) if evaluation_fy not in (None, "") else years[-1]
    for label, y in (("ベースライン年度", base), ("評価年度", ev)):
        if y not in years:
            raise ParameterError(f"{label} {y} のデータがありません（データにある年度: {years}）。")
    if base >= ev:
        raise ParameterError(f"ベースライン年度（{base}）は評価年度（{ev}）より前の年度を指定してください。")
    return base, ev


def fy_short(fy) -> str:
    """2022 -> "R4年度" (column headers of the sheet)."""
    return plots.fy_label(int(fy)).split("\n")[0] + "年度"


# =============================================================================================
# Judgement and achievement (docs/design.md §5, docs/rules.md §7)
# =============================================================================================
def change_between_years(x_base, n_base, x_eval, n_eval, polarity=None, conf=0.95):
    """Difference evaluation − baseline of two proportions in percentage points with Newcombe's
    interval (stats.proportion_difference_ci) and the judgement 改善 / 変化なし / 悪化 from the
    interval and the polarity (stats.change_judgement; 増加 / 減少 without polarity), docs/design.md §5.

    `polarity` is "higher_better", "lower_better" or None, one value or one per row.
    Returns a DataFrame with columns diff, lower, upper (points) and judgement.
    """
    d, lo, up = stats.proportion_difference_ci(x_base, n_base, x_eval, n_eval, conf)
    d, lo, up = (np.atleast_1d(np.asarray(v, dtype=float)) * 100 for v in (d, lo, up))
    judgement = stats.change_judgement_by_polarity(lo, up, polarity)
    return pd.DataFrame({"diff": d, "lower": lo, "upper": up, "judgement": judgement})


def default_achievement_method(polarity) -> np.ndarray:
    """Achievement formula per indicator direction: "ratio" (現状値 ÷ 目標値) where higher is better
    (実施率, 減少率: how far to the target level), "progress" ((現状値 − ベースライン) ÷
    (目標値 − ベースライン): how much of the planned change was made) otherwise."""
    pol = np.atleast_1d(np.asarray(polarity, dtype=object))
    return np.where(pol == "higher_better", ACHIEVEMENT_RATIO, ACHIEVEMENT_PROGRESS).astype(object)


def achievement_percent(baseline, current, target, method, polarity=None) -> np.ndarray:
    """Achievement (%) of a target (docs/rules.md §7.7 evaluation):

    * "ratio":    current / target × 100; NaN when the target is missing or 0.
    * "progress": (current − baseline) / (target − baseline) × 100; NaN when the target is
      missing or equals the baseline (no planned change, the formula is undefined), and — when
      a polarity is given — when the target is not an improvement on the baseline (e.g. a
      lower-is-better indicator whose baseline already met the target: the formula would turn a
      worsening into a large "achievement").
    NaN when current (or, for progress, baseline) is missing. Not capped: > 100 means beyond the
    target, < 0 a change away from it.
    """
    b, c, t = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (baseline, current, target))
    b, c, t = np.broadcast_arrays(b, c, t)
    m = np.broadcast_to(np.atleast_1d(np.asarray(method, dtype=object)), c.shape)
    pol = np.broadcast_to(np.atleast_1d(np.asarray(polarity, dtype=object)), c.shape)
    out = np.full(c.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (m == ACHIEVEMENT_RATIO) & (t != 0) & np.isfinite(t)
        out[ratio] = c[ratio] / t[ratio] * 100
        wrong_way = ((pol == "lower_better") & (t > b)) | ((pol == "higher_better") & (t < b))
        prog = (m == ACHIEVEMENT_PROGRESS) & (t != b) & np.isfinite(t) & np.isfinite(b) & ~wrong_way
        out[prog] = (c[prog] - b[prog]) / (t[prog] - b[prog]) * 100
    return out


def achievement_note(baseline, target, method, polarity) -> np.ndarray:
    """Why an achievement is blank (for the sheet's 備考): "" when it can be computed."""
    b, t = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (baseline, target))
    b, t = np.broadcast_arrays(b, t)
    m = np.broadcast_to(np.atleast_1d(np.asarray(method, dtype=object)), b.shape)
    pol = np.broadcast_to(np.atleast_1d(np.asarray(polarity, dtype=object)), b.shape)
    out = np.full(b.shape, "", dtype=object)
    prog = m == ACHIEVEMENT_PROGRESS
    out[prog & (t == b)] = "目標値がベースラインと同じため達成率は算出しない"
    met = prog & (((pol == "lower_better") & (t > b)) | ((pol == "higher_better") & (t < b)))
    out[met] = "ベースラインで目標に達していたため達成率は算出しない"
    out[~np.isfinite(t)] = "目標値なし"
    return out


# =============================================================================================
# Area helpers
# =============================================================================================
def _area(prepared, muni_code) -> areas.Area:
    """The analysed area (prefecture or municipality) in the data's master (hsutils.analysis.areas)."""
    return areas.resolve_area(muni_code, prepared.municipalities)


def _area_rows(table: pd.DataFrame, area: areas.Area) -> pd.DataFrame:
    """Rows of an indicator table that belong to `area` (a prefecture's code may be stored as 7 or "07")."""
    codes = table["area_code"].astype(str)
    return table[(codes.str.zfill(2) if area.is_prefecture else codes) == area.code]


def reference_resolution(prepared, muni_code, reference_area: str = "pref") -> areas.ReferenceResolution:
    """The reference of the evaluation (hsutils.analysis.areas.resolve_reference: 県, 二次医療圏, 全国 (NDB)
    or 同規模; an indicator the reference has no figure for is 「比較なし（理由）」)."""
    return areas.resolve_reference(muni_code, reference_area, prepared.municipalities)


def indicator_values(prepared, muni_code: str, indicator_ids: Iterable[str], fys: Sequence[int],
                     reference_area: str = "pref", conf: float = 0.95) -> pd.DataFrame:
    """Per indicator × fy for the area: numerator, denominator, crude rate with Wilson CI (%),
    the prefecture's crude rate and the comparison with the reference area (標準化該当比)."""
    ids = list(dict.fromkeys(indicator_ids))
    area = _area(prepared, muni_code)
    m = prepared.municipalities
    ref = reference_resolution(prepared, area, reference_area)
    tab = indicators.indicator_table(area.strata(prepared.strata, m), area.level, area_map=m,
                                     fy=list(fys), indicators=ids, reference=ref.strata(prepared.strata, m), conf=conf)
    tab = _area_rows(tab, area)
    # 全国 / 同規模 without a figure for an indicator: 比較なし（理由）, never a substitute (docs/rules.md §15)
    tab["judgement"] = ref.comparison_text(tab["indicator_id"], tab["judgement"])
    s = prepared.strata
    s = s[(s["fy"].isin(list(fys)) & s["indicator_id"].isin(ids)).to_numpy()]
    pref = (stats.proportion_grouped(s, ["indicator_id", "fy"], "numerator", "denominator", conf, multiplier=100)
            .astype({"indicator_id": str}).rename(columns={"value": "pref_rate"}))
    out = tab[["indicator_id", "fy", "numerator", "denominator", "crude_rate", "crude_lower", "crude_upper",
               "adj_rate", "adj_lower", "adj_upper", "judgement"]].rename(columns={
        "crude_rate": "rate", "crude_lower": "lower", "crude_upper": "upper", "judgement": "ref_judgement"})
    out = out.merge(pref[["indicator_id", "fy", "pref_rate", "numerator", "denominator"]].rename(
        columns={"numerator": "pref_numerator", "denominator": "pref_denominator"}),
        on=["indicator_id", "fy"], how="left")
    return out.reset_index(drop=True)


# =============================================================================================
# Evaluation sheet (docs/rules.md §7, docs/design.md §5)
# =============================================================================================


def _sheet_rows(targets: EvaluationTargets) -> pd.DataFrame:
    """The measurable rows of the sheet: 共通評価指標, then own indicators (docs/rules.md §7.7 categories)."""
    rows = [{"indicator_id": i, "category": indicators.REGISTRY[i].category, "kind": "共通評価指標",
             "achievement": targets.achievement.get(i)} for i in COMMON_INDICATORS]
    own = targets.own_indicators
    for rec in own.to_dict("records"):  # a handful of indicators
        if rec["indicator_id"] in COMMON_INDICATORS:
            continue
        rows.append({"indicator_id": rec["indicator_id"], "category": rec["category"], "kind": "独自指標",
                     "achievement": rec.get("achievement") or targets.achievement.get(rec["indicator_id"])})
    return pd.DataFrame(rows)


def evaluation_sheet(prepared, muni_code: str, targets: EvaluationTargets, baseline_fy: int, evaluation_fy: int,
                     *, reference_area: str = "pref", suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                     conf: float = 0.95) -> pd.DataFrame:
    """The evaluation sheet (Japanese headers, suppressed; docs/rules.md §7, docs/design.md §5, §6).

    One row per indicator: 区分 (docs/rules.md §7.7), 種別 (共通評価指標 / 独自指標 / 独自（体制・過程）),
    baseline (the baseline year, or the first later year with data: 減少率 need the previous year),
    target, for each year 分子 / 分母 / 値 / 下限 / 上限 (crude %, Wilson), the change evaluation −
    baseline in points with Newcombe's interval and 判定 (改善 / 変化なし / 悪化 by polarity),
    達成率 (see `achievement_percent`; the formula is in 達成率の算式), the prefecture's value and
    the comparison with the reference area in the evaluation year (標準化該当比, 良い/差なし/悪い).
    ストラクチャー / プロセス rows come from the targets file as text. Values from a count
    1 … threshold−1 (and the changes and achievements that use them) are shown as "‐".
    """
    rows = _sheet_rows(targets)
    years = [y for y in prepared.fiscal_years if baseline_fy <= y <= evaluation_fy]
    vals = indicator_values(prepared, muni_code, rows["indicator_id"], years, reference_area, conf)
    reg = indicators.registry_frame().set_index("indicator_id")
    ids = rows["indicator_id"].to_numpy()
    polarity = reg.loc[ids, "polarity"].to_numpy(dtype=object)

    wide = {}
    for col in ("numerator", "denominator", "rate", "lower", "upper"):
        wide[col] = vals.pivot_table(index="indicator_id", columns="fy", values=col, aggfunc="first").reindex(
            index=ids, columns=years)
    has = (wide["denominator"] > 0).to_numpy()
    # per-indicator baseline: first year ≥ baseline_fy with a denominator (減少率 start one year later)
    first = np.where(has.any(axis=1), np.argmax(has, axis=1), -1)
    base_year = np.array([years[k] if k >= 0 else np.nan for k in first], dtype=float)
    ev_idx = years.index(evaluation_fy)

    def at(col, idx):  # value of `col` at year index idx per row (NaN where idx < 0)
        arr = wide[col].to_numpy(dtype=float)
        return np.where(idx >= 0, arr[np.arange(len(ids)), np.clip(idx, 0, None)], np.nan)

    ev_k = np.full(len(ids), ev_idx)
    x_b, n_b, r_b = at("numerator", first), at("denominator", first), at("rate", first)
    x_e, n_e, r_e = at("numerator", ev_k), at("denominator", ev_k), at("rate", ev_k)
    same = first == ev_idx  # no earlier year: no change
    ch = change_between_years(x_b, n_b, x_e, n_e, polarity, conf)
    ch.loc[same | (first < 0), ["diff", "lower", "upper"]] = np.nan
    ch.loc[same | (first < 0), "judgement"] = np.nan
    target = np.array([targets.targets.get(i, np.nan) for i in ids], dtype=float)
    method = np.where(pd.isna(rows["achievement"]).to_numpy(), default_achievement_method(polarity),
                      rows["achievement"].to_numpy(dtype=object))
    ach = achievement_percent(r_b, r_e, target, method, polarity)
    ach_note = achievement_note(r_b, target, method, polarity)

    ref = vals[vals["fy"] == evaluation_fy].set_index("indicator_id").reindex(ids)
    sheet = pd.DataFrame({
        "区分": rows["category"].to_numpy(), "種別": rows["kind"].to_numpy(), "指標ID": ids,
        "指標": reg.loc[ids, "indicator_name"].to_numpy(),
        "定義・対象": [(reg.at[i, "definition"] or reg.at[i, "population"]) for i in ids],
        "方向": [POLARITY_LABELS.get(p, stats.JUDGEMENT_NONE) for p in polarity],
        "単位": reg.loc[ids, "unit"].to_numpy(),
        "ベースライン年度": [fy_short(y) if np.isfinite(y) else None for y in base_year],
        "ベースライン値": r_b, "目標値": target, "評価年度値": r_e,
    })
    for k, y in enumerate(years):
        lab = fy_short(y)
        sheet[f"{lab} 分子"] = wide["numerator"][y].to_numpy()
        sheet[f"{lab} 分母"] = wide["denominator"][y].to_numpy()
        sheet[f"{lab} 値"] = wide["rate"][y].to_numpy()
        sheet[f"{lab} 下限"] = wide["lower"][y].to_numpy()
        sheet[f"{lab} 上限"] = wide["upper"][y].to_numpy()
    sheet["変化（ポイント）"], sheet["変化 下限"], sheet["変化 上限"] = ch["diff"], ch["lower"], ch["upper"]
    sheet["判定"] = ch["judgement"].to_numpy()
    sheet["達成率（%）"] = ach
    sheet["達成率の算式"] = [ACHIEVEMENT_LABELS[m] if np.isfinite(t) else "目標値なし"
                        for m, t in zip(method, target)]
    comparison_col = f"{reference_resolution(prepared, muni_code, reference_area).kind_label}との比較（評価年度）"
    sheet["県の値（評価年度）"] = ref["pref_rate"].to_numpy()
    sheet[comparison_col] = ref["ref_judgement"].to_numpy()
    reduction_note = np.where(np.isin(ids, ["hokenshido_reduction", "metabo_reduction"]),
                              "前年度との比較のため、最初の年度は算出できません", "")
    sheet["備考"] = ""

    # suppression (docs/design.md §6): per year, and the baseline/evaluation cells per row
    t = suppress_threshold
    small = {y: np.asarray(privacy.is_small(wide["numerator"][y], t), dtype=bool)
             | np.asarray(privacy.is_small(wide["denominator"][y], t), dtype=bool) for y in years}
    small_b = np.array([small[years[k]][r] if k >= 0 else False for r, k in enumerate(first)])
    small_e = small[evaluation_fy]
    # the note on a blank achievement tells how baseline and target compare: not for hidden values
    ach_note = np.where(small_b | small_e, "", ach_note)
    sheet["備考"] = ["、".join(n for n in (a, r) if n and n != "目標値なし") for a, r in zip(ach_note, reduction_note)]
    mask = pd.DataFrame(False, index=sheet.index, columns=sheet.columns)
    for y in years:
        lab = fy_short(y)
        for c in (f"{lab} 分子", f"{lab} 分母", f"{lab} 値", f"{lab} 下限", f"{lab} 上限"):
            mask[c] = small[y] if c.endswith(("値", "下限", "上限")) else np.asarray(
                privacy.is_small(sheet[c], t), dtype=bool)
    mask["ベースライン値"] = small_b
    mask["評価年度値"] = small_e
    for c in ("変化（ポイント）", "変化 下限", "変化 上限", "判定", "達成率（%）"):
        mask[c] = small_b | small_e
    mask[comparison_col] = small_e
    sheet = privacy.apply_suppression(sheet, mask)
    sheet["秘匿あり"] = mask.to_numpy().any(axis=1)

    qual = _qualitative_rows(targets.qualitative, sheet.columns)
    sheet = pd.concat([qual, sheet], ignore_index=True) if len(qual) else sheet
    order = {c: k for k, c in enumerate(CATEGORIES)}
    sheet = sheet.iloc[np.lexsort((np.arange(len(sheet)), sheet["区分"].map(order).to_numpy()))]
    return sheet.reset_index(drop=True)


def _qualitative_rows(qual: pd.DataFrame, columns) -> pd.DataFrame:
    """ストラクチャー / プロセス rows from the targets file (text; the data cannot measure them)."""
    if qual is None or qual.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({c: pd.Series([None] * len(qual), dtype=object) for c in columns})
    out["区分"] = qual["category"].to_numpy()
    out["種別"] = "独自（体制・過程）"
    out["指標"] = qual["item"].to_numpy()
    out["方向"] = "—"
    out["ベースライン値"] = qual["baseline"].to_numpy()
    out["目標値"] = qual["target"].to_numpy()
    out["評価年度値"] = qual["current"].to_numpy()
    out["判定"] = qual["achieved"].fillna("記載なし").to_numpy()
    out["達成率の算式"] = "目標値ファイルの記入内容"
    out["備考"] = qual["note"].fillna("").to_numpy()
    out["秘匿あり"] = False
    return out


def _wrap_ja(text: str, width: int) -> str:
    """Wrap Japanese text every `width` characters, keeping closing punctuation (、。」）) off the
    start of a line (禁則)."""
    lines = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]
    for k in range(1, len(lines)):  # a few lines
        while lines[k] and lines[k][0] in "、。」）":
            lines[k - 1] += lines[k][0]
            lines[k] = lines[k][1:]
    return "\n".join(l for l in lines if l)


def _fmt_num(v, fmt="{:.1f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, str):
        return v
    return fmt.format(v)


def _fmt_ci(value, lower, upper) -> str:
    if isinstance(value, str):
        return value  # suppression mark
    if value is None or not np.isfinite(value):
        return ""
    if isinstance(lower, str) or isinstance(upper, str) or not np.isfinite(lower):
        return f"{value:.1f}"
    return f"{value:.1f}（{lower:.1f}–{upper:.1f}）"


def sheet_for_print(sheet: pd.DataFrame) -> pd.DataFrame:
    """The sheet in the printed layout: one text cell "値（下限–上限）" per year, the change with
    its interval, Japanese headers (for `write_sheet_xlsx`)."""
    years = [c[: -len(" 値")] for c in sheet.columns if c.endswith(" 値") and c != "評価年度値"]
    ev = years[-1] if years else ""
    out = pd.DataFrame({
        "区分": sheet["区分"], "種別": sheet["種別"], "指標": sheet["指標"], "定義・対象": sheet["定義・対象"].fillna("").astype(object),
        "ベースライン": [f"{_fmt_num(v)}（{y}）" if isinstance(y, str) and y and _fmt_num(v) else _fmt_num(v)
                     for v, y in zip(sheet["ベースライン値"], sheet["ベースライン年度"])],
        "目標値": [_fmt_num(v) for v in sheet["目標値"]],
    })
    qual = sheet["種別"] == "独自（体制・過程）"
    for y in years:
        out[f"{y}（95%信頼区間）"] = [_fmt_ci(v, lo, up) for v, lo, up in
                                 zip(sheet[f"{y} 値"], sheet[f"{y} 下限"], sheet[f"{y} 上限"])]
    if ev:
        out.loc[qual, f"{ev}（95%信頼区間）"] = sheet.loc[qual, "評価年度値"].fillna("")
        out[f"{ev} 分子／分母"] = [
            "" if pd.isna(n) and pd.isna(d) else f"{_fmt_num(n, '{:,.0f}')}／{_fmt_num(d, '{:,.0f}')}"
            for n, d in zip(sheet[f"{ev} 分子"], sheet[f"{ev} 分母"])]
    out["変化（ポイント、95%信頼区間）"] = [
        (f"{v:+.1f}（{lo:+.1f}〜{up:+.1f}）" if not isinstance(v, str) and v is not None and np.isfinite(v)
         else (v if isinstance(v, str) else ""))
        for v, lo, up in zip(sheet["変化（ポイント）"], sheet["変化 下限"], sheet["変化 上限"])]
    out["判定"] = sheet["判定"].fillna("").astype(object)
    out["達成率（%）"] = [_fmt_num(v, "{:.0f}") for v in sheet["達成率（%）"]]
    pref_col = [c for c in sheet.columns if c.endswith("の値（評価年度）")][0]
    cmp_col = [c for c in sheet.columns if c.endswith("との比較（評価年度）")][0]
    out["県の値（評価年度）"] = [_fmt_num(v) for v in sheet[pref_col]]
    out[cmp_col] = sheet[cmp_col].fillna("").astype(object)
    out["備考"] = sheet["備考"].fillna("").astype(object)
    return out.reset_index(drop=True)


def sheet_notes(suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> list[str]:
    """Notes printed on the 注記 sheet of the evaluation xlsx."""
    return [n.replace("10人未満", f"{suppress_threshold}人未満") for n in SHEET_NOTES]


SHEET_NOTES = [
    "値は粗率（%）と95%信頼区間（Wilson法）。年齢調整値はノートブックの推移のグラフを参照。",
    "判定: 評価年度とベースライン年度の差の95%信頼区間（Newcombe法）が0をまたがなければ「改善」または「悪化」"
    "（指標の方向による）、またげば「変化なし」。矢印や見た目では判定していません。",
    "達成率: 高いほど良い指標は「現状値 ÷ 目標値 × 100」、それ以外は「（現状値 − ベースライン）÷"
    "（目標値 − ベースライン）× 100」。目標値がない・目標値がベースラインと同じときは空欄。",
    "減少率は法定報告の集計情報と同じ定義（docs/hotei.md §4）: 特定保健指導対象者の減少率 = 昨年度の特定保健指導"
    "終了者（階層化の対象者）のうち今年度は対象者でない者（服薬中を含む）の割合、メタボ該当者・予備群の減少率 = "
    "昨年度の該当者・予備群のうち今年度は非該当の者の割合。いずれも母数は同じ市町村で昨年度・今年度とも評価対象者の者。",
    "ストラクチャー・プロセスの項目はデータでは測れないため、目標値ファイルの記入内容をそのまま載せています。",
    "10人未満の集計値とそこから計算した値は「‐」で秘匿しています。",
    COMPARISON_NOTE + "。",
]


def write_sheet_xlsx(printed: pd.DataFrame, path, title: str, footer_text: str = "",
                     notes: Sequence[str] | None = None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> Path:
    """The evaluation sheet as an xlsx laid out for printing: report.write_xlsx (Japanese headers,
    bold header row, frozen panes), then A4 landscape, fit to one page wide, header row repeated
    on every page, wrapped text, title in the page header and source/page number in the footer;
    a second sheet 注記 explains the methods. Written atomically."""
    from openpyxl import load_workbook
    from openpyxl.styles import Alignment

    path = Path(path)
    notes_df = pd.DataFrame({"注記": list(notes if notes is not None else sheet_notes(suppress_threshold))})
    report.write_xlsx({"評価シート": printed, "注記": notes_df}, path)
    wb = load_workbook(path)
    for ws in wb.worksheets:
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0  # as many pages tall as needed
        ws.sheet_properties.pageSetUpPr.fitToPage = True
        ws.print_title_rows = "1:1"
        ws.page_margins.left = ws.page_margins.right = 0.4
        ws.page_margins.top = ws.page_margins.bottom = 0.6
        ws.oddHeader.center.text = title
        ws.oddHeader.center.size = 12
        ws.oddFooter.left.text = footer_text[:250]
        ws.oddFooter.left.size = 8
        ws.oddFooter.right.text = "&P / &N"
        for row in ws.iter_rows():
            for cell in row:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
        for dim in ws.column_dimensions.values():
            dim.width = min(dim.width or 10, 28 if ws.title == "評価シート" else 120)
    buffer = BytesIO()
    wb.save(buffer)
    return report.atomic_write_bytes(path, buffer.getvalue())


def sheet_summary_text(sheet: pd.DataFrame) -> str:
    """Japanese lines for the 読み取りのポイント: which indicators improved / worsened."""
    measured = sheet[sheet["種別"] != "独自（体制・過程）"]
    lines = []
    for label in (stats.CHANGE_IMPROVED, stats.CHANGE_WORSENED):
        names = measured.loc[measured["判定"] == label, "指標"].tolist()
        lines.append(f"有意に{label}した指標: {'、'.join(names) if names else 'なし'}")
    same = int((measured["判定"] == stats.CHANGE_NONE).sum())
    hidden = int((measured["判定"] == privacy.SUPPRESSION_MARK).sum())
    lines.append(f"変化なし（差の信頼区間が0をまたぐ）: {same} 指標" + (f"、秘匿で判定なし: {hidden} 指標" if hidden else ""))
    ach = pd.to_numeric(measured["達成率（%）"], errors="coerce")
    done = measured.loc[ach >= 100, "指標"].tolist()
    lines.append(f"目標を達成した指標（達成率100%以上）: {'、'.join(done) if done else 'なし'}")
    return "\n".join(lines)


# =============================================================================================
# 実施率 by sex × age band against the 第4期 targets (docs/rules.md §7.1, §7.2, §7.6)
# =============================================================================================
PARTICIPATION_INDICATORS = ("kenshin_rate", "hokenshido_rate")
BROAD_AGE_GROUPS = {"40-44": "40–64歳", "45-49": "40–64歳", "50-54": "40–64歳", "55-59": "40–64歳",
                    "60-64": "40–64歳", "65-69": "65–74歳", "70-74": "65–74歳"}


def _age_label(band: str) -> str:
    return band.replace("-", "–") + "歳" if "-" in band else band


def participation_by_sex_age(prepared, muni_code: str, fys: Sequence[int], targets: Mapping[str, float] | None = None,
                             *, broad_ages_for_guidance: bool = True, conf: float = 0.95,
                             suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """特定健診実施率 (docs/rules.md §7.1) and 特定保健指導実施率 (§7.2) by fiscal year × sex × age band for
    the area, against the targets (default 第4期 市町村国保 60 % / 60 %, §7.6).

    目標との差 = target − rate (points; positive = below the target); 目標までの不足人数 = persons
    needed to reach the target: ceil(target × 対象者数) − 実施者数 (≥ 0). 特定保健指導 uses the
    age groups of the 階層化 (40–64 / 65–74, docs/rules.md §1.3) by default because its counts are small.
    Japanese headers, suppressed (a 不足人数 of 1–9 is also hidden).
    """
    targets = {**KOKUHO_TARGETS_4TH, **(targets or {})}
    s = prepared.strata
    s = s[s["indicator_id"].isin(PARTICIPATION_INDICATORS) & s["fy"].isin(list(fys))]
    s = areas.parse_code(muni_code).strata(s)
    s = s.assign(age_group=s["age_band"].map(_age_label))
    if broad_ages_for_guidance:
        broad = s["age_band"].map(BROAD_AGE_GROUPS).fillna(s["age_group"])
        s = s.assign(age_group=np.where(s["indicator_id"] == "hokenshido_rate", broad, s["age_group"]))
    g = stats.proportion_grouped(s, ["indicator_id", "fy", "sex", "age_group"], "numerator", "denominator", conf,
                                 multiplier=100)
    g = g[g["denominator"] > 0]
    p, lo, up = (g[c].to_numpy() for c in ("value", "lower", "upper"))
    tgt = g["indicator_id"].map(targets).astype(float).to_numpy()
    need = np.clip(np.ceil(tgt / 100 * g["denominator"].to_numpy() - 1e-9) - g["numerator"].to_numpy(), 0, None)
    reg = indicators.registry_frame().set_index("indicator_id")
    out = pd.DataFrame({
        "指標ID": g["indicator_id"].to_numpy(), "指標": g["indicator_id"].map(reg["indicator_name"]).to_numpy(),
        "年度": g["fy"].to_numpy(), "年度表示": [fy_short(y) for y in g["fy"]],
        "性別": g["sex"].map(SEX_LABELS).to_numpy(), "年齢階級": g["age_group"].to_numpy(),
        "対象者数": g["denominator"].to_numpy(), "実施者数": g["numerator"].to_numpy(),
        "実施率（%）": p, "下限": lo, "上限": up, "目標値（%）": tgt,
        "目標との差（ポイント）": tgt - p, "目標までの不足人数": need.astype(int),
    })
    out = out.sort_values(["指標ID", "年度", "性別", "年齢階級"], key=lambda c: c.map(
        {"男": 0, "女": 1}) if c.name == "性別" else c).reset_index(drop=True)
    derived = PARTICIPATION_DERIVED
    hide = {c: privacy.suppress_groups(out, c, ["指標ID", "年度"], threshold=suppress_threshold)
            for c in ("対象者数", "実施者数")}
    mask = pd.DataFrame(False, index=out.index, columns=out.columns)
    for c in ("対象者数", "実施者数"):
        mask[c] = hide[c]
    for c in derived:
        mask[c] = hide["対象者数"] | hide["実施者数"]
    mask["目標までの不足人数"] |= np.asarray(privacy.is_small(out["目標までの不足人数"], suppress_threshold), dtype=bool)
    shown = privacy.apply_suppression(out, mask)
    shown[privacy.SUPPRESSED_COLUMN] = mask.to_numpy().any(axis=1)
    return shown


def participation_relations(hotei_table_name: str, area_code: str) -> list:
    """The 特定健診 rows of `participation_by_sex_age` repeat cells of the 法定報告 table saved
    before in the same report (`hotei.committee_spec(japanese=True)`): 対象者数 and 実施者数 by
    year × sex × 5-year age band are its items 1 and 2. Each pair is one relation, so that a cell
    the 法定報告 table hides (through its 計 margins) is hidden here too and the two tables
    cannot be combined to recover it (docs/rules.md §9, docs/design.md §6)."""
    ren = hotei.japanese_names()
    bands = {_age_label(b): b for b in hotei.KOKUHO_AGE_BANDS}
    on = {"年度": ren["fy"], "性別": ren["sex"], "年齢階級": ren["age_band"]}
    return [privacy.Link(hotei_table_name, here, on=on, rows={"指標ID": "kenshin_rate"},
                         other_rows={ren["area_code"]: str(area_code)}, other_col=ren[there],
                         values={"年齢階級": bands})
            for here, there in (("対象者数", "target"), ("実施者数", "examinees"))]


#: Evaluation-sheet rows whose per-year 分子 / 分母 are cells (or the sum of two cells) of the 法定報告
#: table's 計 row (docs/hotei.md §4.4, §5.3; one definition: hotei_items.reduction_flags).
SHEET_HOTEI_CELLS = {
    "kenshin_rate": (("examinees",), ("target",)),
    "hokenshido_rate": (("hs_completed",), ("hs_target",)),
    "hokenshido_reduction": (("red_hs_out",), ("red_hs_cohort",)),
    "metabo_reduction": (("red_metabo_out", "red_yobi_out"), ("red_metabo_cohort", "red_yobi_cohort")),
}


def sheet_count_columns(sheet: pd.DataFrame) -> list[str]:
    """The per-year 分子 / 分母 columns of the evaluation sheet (its counts, for the report's plan)."""
    return [c for c in sheet.columns if str(c).endswith((" 分子", " 分母"))]


def sheet_relations(sheet_name: str, sheet: pd.DataFrame, area_code: str, fiscal_years: Iterable[int]) -> list:
    """Links of the 法定報告 table (registered after the sheet, `hotei.committee_spec(japanese=True)`)
    to the evaluation sheet: for each year of the sheet, its 分子 / 分母 of `SHEET_HOTEI_CELLS` equal
    the table's 計 cells (the メタボ減少率 the sum of 該当 and 予備群). A cell the table hides is then
    not left recoverable through the sheet (docs/rules.md §9, docs/design.md §6)."""
    ren = hotei.japanese_names()
    out = []
    for fy in fiscal_years:
        lab = fy_short(fy)
        if f"{lab} 分子" not in sheet.columns:
            continue
        rows = {ren["fy"]: int(fy), ren["sex"]: hotei.TOTAL, ren["age_band"]: hotei.TOTAL,
                ren["area_code"]: str(area_code)}
        for ind, (num, den) in SHEET_HOTEI_CELLS.items():
            for cols, part in ((num, "分子"), (den, "分母")):
                out.append(privacy.Link(sheet_name, tuple(ren[c] for c in cols), rows=rows,
                                        other_rows={"指標ID": ind}, other_col=f"{lab} {part}"))
    return out


#: Columns of `participation_by_sex_age` computed from its two counts (hidden with them).
PARTICIPATION_DERIVED = ["実施率（%）", "下限", "上限", "目標との差（ポイント）", "目標までの不足人数"]


def participation_heat_figure(table: pd.DataFrame, indicator_id: str, footer: str, *,
                              suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Heat table of 実施率 (rows: age band, columns: sex × year), suppressed cells "‐"."""
    d = table[table["指標ID"] == indicator_id].copy()
    d["値"] = pd.to_numeric(d["実施率（%）"], errors="coerce") / 100
    d["列"] = d["性別"] + " " + d["年度表示"]
    d = d.sort_values(["性別", "年度"], key=lambda c: c.map({"男": 0, "女": 1}) if c.name == "性別" else c)
    d["年齢階級"] = pd.Categorical(d["年齢階級"], sorted(d["年齢階級"].unique()))
    d = d.sort_values(["年齢階級"], kind="stable")
    name = d["指標"].iloc[0] if len(d) else indicator_id
    target = float(d["目標値（%）"].iloc[0]) if len(d) else np.nan
    return plots.heat_table(d, row_col="年齢階級", col_col="列", value_col="値", title=f"{name}（性・年齢階級別、目標 {target:.0f}%）", footer=footer,
                            fmt="{:.1%}", count_col="実施者数", suppress_threshold=suppress_threshold).figure


def participation_gap_figure(table: pd.DataFrame, indicator_id: str, fy: int, footer: str, *,
                             suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Who is not coming: per sex × age band of year `fy`, the persons who took part, those
    missing to reach the target, and the other non-participants (stacked bars of persons)."""
    d = table[(table["指標ID"] == indicator_id) & (table["年度"] == fy)]
    shown = (pd.to_numeric(d["対象者数"], errors="coerce").notna()
             & pd.to_numeric(d["実施者数"], errors="coerce").notna()).to_numpy()
    left_out = (d.loc[~shown, "性別"] + " " + d.loc[~shown, "年齢階級"]).tolist()
    d = d[shown]
    den = pd.to_numeric(d["対象者数"], errors="coerce").to_numpy(float)
    num = pd.to_numeric(d["実施者数"], errors="coerce").to_numpy(float)
    need = pd.to_numeric(d["目標までの不足人数"], errors="coerce").to_numpy(float)
    rest = den - num - np.nan_to_num(need)
    notes = []
    if left_out:
        notes.append(f"人数が少なく表示しない区分: {'、'.join(left_out)}")
    if np.isnan(need).any():
        notes.append(f"不足人数が{suppress_threshold}人未満の区分は「目標までの不足」を表示しない（その他の未実施者に含める）")
    if notes:
        footer = footer + " ｜ " + " ｜ ".join(notes)
    label = (d["性別"] + " " + d["年齢階級"]).to_numpy()
    cats = ["実施者", "目標までの不足", "その他の未実施者"]
    long = pd.DataFrame({"区分": np.repeat(label, 3), "内訳": np.tile(cats, len(d)),
                         "人数": np.column_stack([num, need, rest]).ravel()})
    name = d["指標"].iloc[0] if len(d) else indicator_id
    target = float(d["目標値（%）"].iloc[0]) if len(d) else np.nan
    colours = {"実施者": plots.OKABE_ITO["blue"], "目標までの不足": plots.OKABE_ITO["vermillion"],
               "その他の未実施者": "#D9D9D9"}
    return plots.stacked_bars(long, area_col="区分", category_col="内訳", count_col="人数",
                              title=f"{name}: 目標（{target:.0f}%）まであと何人か（{fy_short(fy)}、性・年齢階級別）",
                              footer=footer, normalize=False, category_order=cats, colours=colours,
                              suppress_threshold=suppress_threshold).figure


def participation_gap_text(table: pd.DataFrame, indicator_id: str, fy: int, top: int = 3) -> str:
    """Japanese sentence: the sex × age groups with the largest shortfall to the target."""
    d = table[(table["指標ID"] == indicator_id) & (table["年度"] == fy)].copy()
    d["_need"] = pd.to_numeric(d["目標までの不足人数"], errors="coerce")
    name = indicators.REGISTRY[indicator_id].name
    if d["_need"].notna().sum() == 0:
        return f"{name}（{fy_short(fy)}）: 人数が少なく、区分ごとの不足人数はすべて秘匿しています。"
    d = d[d["_need"] > 0].sort_values("_need", ascending=False).head(top)
    if d.empty:
        return f"{name}（{fy_short(fy)}）: 表示されている区分はすべて目標に届いています（秘匿した区分を除く）。"
    parts = [f"{sex} {age}（実施率 {float(rate):.1f}%、目標まで {int(need):,} 人）"
             for sex, age, rate, need in zip(d["性別"], d["年齢階級"], d["実施率（%）"], d["_need"])]
    total = pd.to_numeric(table.loc[(table["指標ID"] == indicator_id) & (table["年度"] == fy), "目標までの不足人数"],
                          errors="coerce").sum()
    return (f"{name}（{fy_short(fy)}）目標までの不足人数が多い区分: " + "、".join(parts)
            + f"。表示されている区分の不足人数の合計は {int(total):,} 人です。")


# =============================================================================================
# 特定保健指導の効果: participants vs eligible non-participants (difference-in-differences)
# =============================================================================================
def guidance_pairs(person_year: pd.DataFrame, muni_code: str | None = None,
                   fys: Sequence[int] | None = None) -> pd.DataFrame:
    """Person-level pairs (year t, year t+1) for the effect of 特定保健指導 (docs/rules.md §1, §7.2–7.4).

    Year t: 特定健診 受診者 of 国保 40–74 (docs/rules.md §7.1) who were 特定保健指導 対象者 (積極的/動機付け).
    Group 参加者 = guidance completed (終了) in year t; 非参加者 = not started in year t; those who
    started without finishing are left out (neither group). Only persons with a checkup in t+1 are
    kept (a change needs two measurements). Pairs of all consecutive years are pooled (e.g.
    2022→2023 and 2023→2024; a person can appear in both). Columns: person_id, fy, fy_next, group,
    the measures of CHANGE_MEASURES in t and t+1 (suffix _next), change_<measure>, metabo,
    metabo_next, guidance_target_next, hokenshido_next.

    CONFIDENTIAL (person-level): never shown in a committee table.
    """
    py = person_year
    years = sorted(int(y) for y in (fys if fys is not None else py["fy"].unique()))
    base = py[py["fy"].isin(years[:-1]) & np.isin(py["fy"] + 1, years)]
    if muni_code is not None:
        base = areas.parse_code(muni_code).strata(base)
    eligible = indicators.participants(base) & _bool(base, "guidance_target")
    base = base[eligible]
    completed = _bool(base, "guidance_completed")
    started = _bool(base, "guidance_started")
    group = np.where(completed, GROUP_PARTICIPANT, np.where(~started, GROUP_NON_PARTICIPANT, ""))
    measures = list(CHANGE_MEASURES)
    cols = ["person_id", "fy"] + measures + ["metabo"]
    left = base[cols].assign(group=group)
    left = left[left["group"] != ""]
    nxt = py.loc[py["has_kenshin"].to_numpy(dtype=bool),
                 ["person_id", "fy"] + measures + ["metabo", "hokenshido", "guidance_target"]]
    nxt = nxt.assign(fy=nxt["fy"] - 1).rename(columns={c: f"{c}_next" for c in measures + [
        "metabo", "hokenshido", "guidance_target"]})
    pairs = left.merge(nxt, on=["person_id", "fy"], how="inner")
    pairs["fy_next"] = pairs["fy"] + 1
    for m in measures:
        pairs[f"change_{m}"] = pairs[f"{m}_next"].astype(float) - pairs[m].astype(float)
    for c in ("metabo", "metabo_next", "hokenshido_next"):
        pairs[c] = pairs[c].astype(object)
    return pairs.reset_index(drop=True)


def _bool(df: pd.DataFrame, col: str) -> np.ndarray:
    """Boolean column as numpy bool (missing -> False; absent column -> all False)."""
    if column_absent(df, col):
        return np.zeros(len(df), dtype=bool)
    return df[col].fillna(False).astype(bool).to_numpy()


def _binary_outcomes(pairs: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Numerator and denominator flags of the two binary outcomes on the pairs (docs/hotei.md §4.6):
    no longer a 特定保健指導 target next year (服薬中 included), and 非該当 next year among last
    year's メタボ 該当者・予備群. Same reading as the 減少率 of docs/rules.md §7.3, §7.4, on another
    population (`GUIDANCE_PAIRS_POPULATION`), hence not called 減少率."""
    hok_measured = pairs["hokenshido_next"].notna().to_numpy()
    not_target = ~pairs["guidance_target_next"].fillna(False).astype(bool).to_numpy()
    met_prev = pairs["metabo"].isin(["該当", "予備群"]).to_numpy()
    met_measured = pairs["metabo_next"].notna().to_numpy()
    met_out = (pairs["metabo_next"] == "非該当").fillna(False).to_numpy(dtype=bool)
    return {
        EFFECT_NOT_TARGET: (hok_measured & not_target, hok_measured),
        EFFECT_METABO_OUT: (met_prev & met_measured & met_out, met_prev & met_measured),
    }


EFFECT_COUNT_COLUMNS = ["参加者数", "参加者 該当数", "非参加者数", "非参加者 該当数"]


def guidance_effect(pairs: pd.DataFrame, *, conf: float = 0.95,
                    suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Difference-in-differences of 特定保健指導 (participants − non-participants), Japanese
    headers, suppressed (docs/design.md §6).

    Continuous measures (weight, waist, HbA1c, SBP, TG): mean change t → t+1 per group with its
    t interval, difference of mean changes with Welch's interval (`stats.welch_difference_ci`); 判定
    改善 when the interval is below 0 (a larger fall among participants).
    Shares (`EFFECT_NOT_TARGET`, `EFFECT_METABO_OUT`, docs/hotei.md §4.6; not the 法定報告 減少率):
    share per group with Wilson's interval, difference with Newcombe's
    interval; 改善 when above 0. Groups are not randomised (`NOT_RANDOMISED_NOTE`).
    """
    part = (pairs["group"] == GROUP_PARTICIPANT).to_numpy()
    rows = []
    for m, (name, unit) in CHANGE_MEASURES.items():  # five measures
        ch = pairs[f"change_{m}"].to_numpy(float)
        n1, m1, l1, u1 = stats.mean_ci(ch[part], conf)
        n0, m0, l0, u0 = stats.mean_ci(ch[~part], conf)
        d, lo, up, _ = stats.welch_difference_ci(ch[part], ch[~part], conf)
        rows.append({"項目": f"{name}の変化", "単位": unit, "参加者数": n1, "参加者 該当数": np.nan,
                     "参加者の平均変化・割合": m1, "参加者 下限": l1, "参加者 上限": u1,
                     "非参加者数": n0, "非参加者 該当数": np.nan, "非参加者の平均変化・割合": m0,
                     "非参加者 下限": l0, "非参加者 上限": u0, "差（参加者−非参加者）": d, "差 下限": lo,
                     "差 上限": up, "判定": stats.change_judgement(lo, up, False), "方法": "平均変化の差（Welch t）"})
    for name, (num, den) in _binary_outcomes(pairs).items():
        x1, n1 = int((num & part).sum()), int((den & part).sum())
        x0, n0 = int((num & ~part).sum()), int((den & ~part).sum())
        p1, l1, u1 = stats.proportion_ci(x1, n1, conf)
        p0, l0, u0 = stats.proportion_ci(x0, n0, conf)
        d, lo, up = stats.proportion_difference_ci(x0, n0, x1, n1, conf)
        rows.append({"項目": name, "単位": "%", "参加者数": n1, "参加者 該当数": x1,
                     "参加者の平均変化・割合": p1 * 100, "参加者 下限": l1 * 100, "参加者 上限": u1 * 100,
                     "非参加者数": n0, "非参加者 該当数": x0, "非参加者の平均変化・割合": p0 * 100,
                     "非参加者 下限": l0 * 100, "非参加者 上限": u0 * 100, "差（参加者−非参加者）": d * 100,
                     "差 下限": lo * 100, "差 上限": up * 100, "判定": stats.change_judgement(lo, up, True),
                     "方法": "割合の差（Newcombe）"})
    out = pd.DataFrame(rows)
    both = ["差（参加者−非参加者）", "差 下限", "差 上限", "判定"]
    p_cols = ["参加者の平均変化・割合", "参加者 下限", "参加者 上限"]
    n_cols = ["非参加者の平均変化・割合", "非参加者 下限", "非参加者 上限"]
    derived = {"参加者数": p_cols + both, "参加者 該当数": p_cols + both,
               "非参加者数": n_cols + both, "非参加者 該当数": n_cols + both}
    return privacy.suppress_table(out, EFFECT_COUNT_COLUMNS, derived_cols=derived, threshold=suppress_threshold)


def pair_counts(pairs: pd.DataFrame, suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Number of persons per group and pair of years (which pairs were pooled), suppressed."""
    g = pairs.groupby(["fy", "group"]).size().unstack(fill_value=0)
    g = g.reindex(columns=[GROUP_PARTICIPANT, GROUP_NON_PARTICIPANT], fill_value=0)
    out = pd.DataFrame({"年度の組": [f"{fy_short(y)}→{fy_short(y + 1)}" for y in g.index],
                        "参加者数": g[GROUP_PARTICIPANT].to_numpy(), "非参加者数": g[GROUP_NON_PARTICIPANT].to_numpy()})
    total = pd.DataFrame({"年度の組": ["合計（プール）"], "参加者数": [int(out["参加者数"].sum())],
                          "非参加者数": [int(out["非参加者数"].sum())]})
    out = pd.concat([out, total], ignore_index=True)
    mask = pd.DataFrame(False, index=out.index, columns=out.columns)
    per_pair = np.arange(len(out)) < len(out) - 1
    for c in ("参加者数", "非参加者数"):
        small = np.asarray(privacy.is_small(out[c], suppress_threshold), dtype=bool)
        # the pooled total is shown (it is the n of the effect table): with one pair hidden the
        # other pairs would give it away, so all pairs of that column are hidden (docs/rules.md §9)
        mask[c] = small | (per_pair & small[per_pair].any())
    shown = privacy.apply_suppression(out, mask)
    shown[privacy.SUPPRESSED_COLUMN] = mask.to_numpy().any(axis=1)
    return shown


@plots.styled
def guidance_change_figure(pairs: pd.DataFrame, title: str, footer: str, *,
                           suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Distributions of the change t → t+1 per group: one box plot panel per measure. Boxes are
    the quartiles, whiskers the 5th–95th percentiles, ◇ the mean; individual outliers are not
    drawn (they are single persons, docs/design.md §6); a group with fewer than `suppress_threshold`
    persons is not drawn."""
    fig = plots._new_figure("slide")
    axes = fig.subplots(1, len(CHANGE_MEASURES))
    part = (pairs["group"] == GROUP_PARTICIPANT).to_numpy()
    hidden_any = False
    colours = [plots.OKABE_ITO["blue"], plots.OKABE_ITO["orange"]]
    for ax, (m, (name, unit)) in zip(axes, CHANGE_MEASURES.items()):  # five panels
        ch = pairs[f"change_{m}"].to_numpy(float)
        data, labels, cols = [], [], []
        for k, (lab, sel) in enumerate(((GROUP_PARTICIPANT, part), (GROUP_NON_PARTICIPANT, ~part))):
            v = ch[sel]
            v = v[np.isfinite(v)]
            if len(v) >= suppress_threshold:
                data.append(v)
                labels.append(f"{lab}\nn={len(v):,}")
                cols.append(colours[k])
            else:
                hidden_any = True
                data.append(np.array([np.nan]))
                labels.append(f"{lab}\nn={privacy.SUPPRESSION_MARK}")
                cols.append("#FFFFFF")
        ok = [len(d) > 1 or np.isfinite(d).all() for d in data]
        bp = ax.boxplot([d if o else np.array([]) for d, o in zip(data, ok)], whis=(5, 95), showfliers=False,
                        showmeans=True, patch_artist=True, widths=0.6,
                        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "#222222",
                                   "markersize": 4},
                        medianprops={"color": "#222222"})
        for patch, c in zip(bp["boxes"], cols):
            patch.set_facecolor(c)
            patch.set_alpha(0.55)
        ax.set_xticks([1, 2], labels, fontsize=7)
        ax.axhline(0, color="#888888", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9.5)
        ax.set_ylabel(f"変化（{unit}）", fontsize=8)
        ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    notes = ["箱は四分位範囲、横線は中央値、◇は平均、ひげは5〜95パーセンタイル。個人が特定されないよう外れ値は描きません",
             "変化 = 翌年度の値 − 指導年度の値（マイナスは低下＝改善）", NOT_RANDOMISED_NOTE]
    if hidden_any:
        notes.append(plots.suppression_note(suppress_threshold))
    return plots._finish(fig, title, footer, notes)


def effect_summary_text(effect: pd.DataFrame) -> str:
    """Japanese lines: the measures where participants changed significantly more / less."""
    lines = []
    for label, text in ((stats.CHANGE_IMPROVED, "参加者の方が有意に改善"), (stats.CHANGE_WORSENED, "参加者の方が有意に悪化")):
        names = effect.loc[effect["判定"] == label, "項目"].tolist()
        lines.append(f"{text}: {'、'.join(names) if names else 'なし'}")
    hidden = effect.loc[effect["判定"] == privacy.SUPPRESSION_MARK, "項目"].tolist()
    if hidden:
        lines.append(f"人数が少なく秘匿: {'、'.join(hidden)}")
    return "\n".join(lines)


# =============================================================================================
# Trends of outcome indicators (age-adjusted): municipality, 二次医療圏, prefecture
# =============================================================================================
def sheet_indicator_ids(sheet: pd.DataFrame) -> list[str]:
    """Registered indicators of the sheet in sheet order (its own 体制・過程 rows have none)."""
    ids = sheet["指標ID"].dropna().astype(str)
    return [i for i in dict.fromkeys(ids) if i in indicators.REGISTRY]


def sheet_population(sheet: pd.DataFrame) -> str:
    """Footer population (「対象」) of the sheet and of its summary chart, in the registry's words
    (docs/rules.md §16, `indicators.population_of`): each indicator's population once. A sheet of only
    qualitative rows counts nobody from the data; it states the plan's population, the 法定報告 対象者."""
    ids = sheet_indicator_ids(sheet)
    return indicators.population_of(ids) if ids else indicators.POP_TARGET


def default_trend_indicators(sheet: pd.DataFrame, limit: int = 4) -> list[str]:
    """The first `limit` measurable アウトカム indicators of the sheet (registry ids, in sheet order:
    共通評価指標 first), without the two 減少率: they are shares of last year's group, too small to
    age-adjust in most towns. (The notebook parameter `trend_indicators` chooses others.)"""
    ids = sheet.loc[(sheet["区分"] == "アウトカム") & sheet["指標ID"].notna(), "指標ID"]
    ids = [i for i in ids if i in indicators.REGISTRY and i not in ("hokenshido_reduction", "metabo_reduction")]
    return ids[:limit]


def outcome_trends(prepared, muni_code: str, indicator_ids: Iterable[str], fys: Sequence[int] | None = None,
                   *, conf: float = 0.95, std_pop="H27") -> pd.DataFrame:
    """Age-adjusted rates (direct standardisation to `std_pop`, Dobson interval; NaN below 10
    events, docs/methods.md §5) per fy for the municipality, its 二次医療圏 and the prefecture. Japanese
    headers; counts kept (suppress with `privacy` / `NotebookContext.save_table`)."""
    ids = list(dict.fromkeys(indicator_ids))
    fys = list(fys) if fys is not None else prepared.fiscal_years
    m = prepared.municipalities
    subject = _area(prepared, muni_code)
    shown = [(areas.prefecture_of(subject, m), "県")]
    if subject.is_municipality:
        shown = [(subject, "市町村"), (areas.parse_code(subject.medical_area_code, m), "二次医療圏")] + shown
    std = areas.standard_population(std_pop, prepared.strata, fy=max(fys))
    weights = std.weights
    parts = []
    for area, kind in shown:  # three levels
        t = indicators.indicator_table(area.strata(prepared.strata, m), area.level, area_map=m, fy=fys,
                                       indicators=ids, reference=prepared.strata, std_pop=weights, conf=conf)
        parts.append(_area_rows(t, area).assign(地域区分=kind))
    t = pd.concat(parts, ignore_index=True)
    out = pd.DataFrame({
        "指標ID": t["indicator_id"], "指標": t["indicator_name"], "地域区分": t["地域区分"],
        "地域": np.where(t["地域区分"] == "二次医療圏", t["area_name"].astype(str) + "（二次医療圏）",
                       t["area_name"].astype(str)), "年度": t["fy"], "分子": t["numerator"], "分母": t["denominator"],
        "年齢調整値（%）": t["adj_rate"], "下限": t["adj_lower"], "上限": t["adj_upper"], "粗率（%）": t["crude_rate"],
        "標準人口": std.note.removeprefix("標準人口: "),
    })
    return out.reset_index(drop=True)


TREND_DERIVED = {"分子": ["年齢調整値（%）", "下限", "上限", "粗率（%）"],
                 "分母": ["年齢調整値（%）", "下限", "上限", "粗率（%）"]}


def trend_figure(trends: pd.DataFrame, indicator_id: str, footer: str, *,
                 suppress_threshold: int = privacy.DEFAULT_THRESHOLD, target: float | None = None):
    """plots.trend_chart of one indicator's age-adjusted rate for the areas of `outcome_trends`
    (points from a count 1–9 are left out; missing when fewer than 10 events)."""
    d = trends[trends["指標ID"] == indicator_id].copy()
    num = pd.to_numeric(d["分子"], errors="coerce").to_numpy(float)
    den = pd.to_numeric(d["分母"], errors="coerce").to_numpy(float)
    # the smallest count a point derives from: hidden when it is 1…threshold−1 (docs/rules.md §9)
    d["_count"] = np.where((num > 0) & (num < den), num, den)
    small_den = (den > 0) & (den < suppress_threshold)
    d.loc[small_den, "_count"] = den[small_den]
    name = d["指標"].iloc[0] if len(d) else indicator_id
    std = d["標準人口"].iloc[0] if len(d) else ""
    return plots.trend_chart(d, x="年度", y="年齢調整値（%）", lower="下限", upper="上限", series_col="地域",
                             title=f"{name}（年齢調整、{std}）の推移", footer=footer, count_col="_count",
                             y_label="年齢調整値（%）", target=target, ci_style="errorbar",
                             suppress_threshold=suppress_threshold).figure


def trend_summary_text(trends: pd.DataFrame, muni_label: str = "市町村") -> str:
    """Japanese lines: per indicator, the municipality's first → last age-adjusted value."""
    d = trends[trends["地域区分"] == muni_label].copy()
    d["_v"] = pd.to_numeric(d["年齢調整値（%）"], errors="coerce")
    lines = []
    for ind, g in d.groupby("指標", sort=False):  # a handful of indicators
        g = g.sort_values("年度")
        shown = g[g["_v"].notna()]
        if len(shown) < 2:
            lines.append(f"{ind}: 件数が少なく年齢調整値が出せない年度があります（10件未満）")
            continue
        a, b = shown.iloc[0], shown.iloc[-1]
        lines.append(f"{ind}: {fy_short(a['年度'])} {a['_v']:.1f}% → {fy_short(b['年度'])} {b['_v']:.1f}%")
    return "\n".join(lines)


# =============================================================================================
# One-page summary for the committee (A4 landscape)
# =============================================================================================
JUDGEMENT_COLOURS = {
    stats.CHANGE_IMPROVED: plots.SIGNIFICANCE_COLOURS[stats.JUDGEMENT_BETTER],
    stats.CHANGE_WORSENED: plots.SIGNIFICANCE_COLOURS[stats.JUDGEMENT_WORSE],
    stats.CHANGE_NONE: plots.SIGNIFICANCE_COLOURS[stats.JUDGEMENT_SAME],
    stats.CHANGE_INCREASED: plots.SIGNIFICANCE_COLOURS[stats.JUDGEMENT_HIGHER],
    stats.CHANGE_DECREASED: plots.SIGNIFICANCE_COLOURS[stats.JUDGEMENT_LOWER],
}


@plots.styled
def summary_figure(sheet: pd.DataFrame, title: str, footer: str, evaluation_fy: int,
                   *, suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """A4 landscape page: dot chart of the change (evaluation − baseline, points) with 95 %
    intervals, coloured 改善 / 悪化 / 変化なし, and a text box listing what changed significantly.
    Built from the suppressed sheet (rows shown as "‐" are listed as 秘匿)."""
    fig = plots._new_figure("a4_landscape")
    ax, tx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.7, 1.0]})
    d = sheet[sheet["種別"] != "独自（体制・過程）"].reset_index(drop=True)
    diff = pd.to_numeric(d["変化（ポイント）"], errors="coerce").to_numpy(float)
    lo = pd.to_numeric(d["変化 下限"], errors="coerce").to_numpy(float)
    up = pd.to_numeric(d["変化 上限"], errors="coerce").to_numpy(float)
    ys = np.arange(len(d))
    ev = fy_short(evaluation_fy)
    labels = [f"{n}（{b}→{ev}）" if isinstance(b, str) else str(n) for n, b in zip(d["指標"], d["ベースライン年度"])]
    for i in range(len(d)):  # a dozen indicators
        j = d["判定"].iloc[i]
        if not np.isfinite(diff[i]):
            ax.text(0, ys[i], privacy.SUPPRESSION_MARK + "（秘匿または算出不可）", ha="center", va="center",
                    fontsize=7.5, color="#666666")
            continue
        colour = JUDGEMENT_COLOURS.get(j, "#999999")
        ax.errorbar(diff[i], ys[i], xerr=[[diff[i] - lo[i]], [up[i] - diff[i]]], fmt="o", color=colour,
                    ecolor=colour, ms=7, capsize=3, lw=1.6, mec="#333333", mew=0.5, gid="change_dot")
        b_val, e_val = d["ベースライン値"].iloc[i], d["評価年度値"].iloc[i]
        ax.annotate(f"{diff[i]:+.1f}（{_fmt_num(b_val)}→{_fmt_num(e_val)}%）{j}", (up[i], ys[i]), xytext=(5, 0),
                    textcoords="offset points", va="center", fontsize=7.5, color="#222222")
    ax.axvline(0, color="#444444", lw=0.9)
    ax.set_yticks(ys, labels, fontsize=8.5)
    ax.set_ylim(len(d) - 0.4, -0.6)
    finite = np.r_[lo[np.isfinite(lo)], up[np.isfinite(up)], 0.0]
    span = max(abs(finite).max(), 1.0)
    ax.set_xlim(-span * 1.2, span * 2.1)
    ax.set_xlabel("評価年度 − ベースライン年度（ポイント）と95%信頼区間")
    ax.grid(axis="x", color="#E5E5E5", lw=0.6)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=JUDGEMENT_COLOURS[k], label=k) for k in
                       (stats.CHANGE_IMPROVED, stats.CHANGE_WORSENED, stats.CHANGE_NONE)],
              loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, fontsize=8)

    tx.axis("off")
    improved = d.loc[d["判定"] == stats.CHANGE_IMPROVED, "指標"].tolist()
    worsened = d.loc[d["判定"] == stats.CHANGE_WORSENED, "指標"].tolist()
    done = d.loc[pd.to_numeric(d["達成率（%）"], errors="coerce") >= 100, "指標"].tolist()
    text = [("有意に改善した指標", improved), ("有意に悪化した指標", worsened), ("目標を達成した指標", done)]
    body = []
    width = 21
    for head, names in text:
        body.append(f"■ {head}")
        body += [_wrap_ja("・" + n, width) for n in names] or ["・なし"]
        body.append("")
    qual = sheet[sheet["種別"] == "独自（体制・過程）"]
    if len(qual):
        body.append("■ 体制・過程（目標値ファイルの記入）")
        body += [_wrap_ja(f"・{n}：{j}", width) for n, j in zip(qual["指標"], qual["判定"])]
        body.append("")
    body.append("■ 読み方")
    body.append(_wrap_ja("差の95%信頼区間が0をまたがないときだけ「改善」「悪化」と判定しています。人数の少ない"
                         "指標は区間が広く、変化があっても「変化なし」になりやすい点に注意してください。", width))
    tx.text(0.0, 1.0, "\n".join(body), va="top", ha="left", fontsize=9, linespacing=1.45,
            transform=tx.transAxes,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": "#F7F7F7", "edgecolor": "#BBBBBB"})
    notes = ["判定は差の95%信頼区間（Newcombe法）による", plots.suppression_note(suppress_threshold)]
    return plots._finish(fig, title, footer, notes, comparison=True)


# =============================================================================================
# Interactive: one indicator between two chosen years
# =============================================================================================
def change_for_indicator(prepared, muni_code: str, indicator_id: str, fy_from: int, fy_to: int, *,
                         conf: float = 0.95, suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Small table for the widget: values of one indicator in two years and the judgement of the
    change (Newcombe interval, polarity of the indicator), suppressed."""
    fy_from, fy_to = sorted((int(fy_from), int(fy_to)))
    v = indicator_values(prepared, muni_code, [indicator_id], [fy_from, fy_to], conf=conf).set_index("fy")
    v = v.reindex([fy_from, fy_to])
    pol = indicators.REGISTRY[indicator_id].polarity
    ch = change_between_years(v["numerator"].iloc[0], v["denominator"].iloc[0], v["numerator"].iloc[1],
                              v["denominator"].iloc[1], pol, conf)
    out = pd.DataFrame({
        "指標": [indicators.REGISTRY[indicator_id].name],
        f"{fy_short(fy_from)} 分子": [v["numerator"].iloc[0]], f"{fy_short(fy_from)} 分母": [v["denominator"].iloc[0]],
        f"{fy_short(fy_from)} 値（%）": [v["rate"].iloc[0]],
        f"{fy_short(fy_to)} 分子": [v["numerator"].iloc[1]], f"{fy_short(fy_to)} 分母": [v["denominator"].iloc[1]],
        f"{fy_short(fy_to)} 値（%）": [v["rate"].iloc[1]],
        "変化（ポイント）": ch["diff"], "変化 下限": ch["lower"], "変化 上限": ch["upper"], "判定": ch["judgement"]})
    a, b = fy_short(fy_from), fy_short(fy_to)
    both = ["変化（ポイント）", "変化 下限", "変化 上限", "判定"]
    derived = {f"{a} 分子": [f"{a} 値（%）"] + both, f"{a} 分母": [f"{a} 値（%）"] + both,
               f"{b} 分子": [f"{b} 値（%）"] + both, f"{b} 分母": [f"{b} 値（%）"] + both}
    return privacy.suppress_table(out, list(derived), derived_cols=derived, threshold=suppress_threshold)


def indicator_explorer(ctx, indicator_ids: Sequence[str], years: Sequence[int], plan, *,
                       conf: float = 0.95, std_pop="H27"):
    """Panel (`hsutils.publish.widgets.Panel`, JupyterLab by hand only): choose an indicator of the sheet
    (`sheet_indicator_ids`) and a range of years; the suppressed change table (`change_for_indicator`)
    and the trend chart (`outcome_trends`, `trend_figure`) are drawn again, the chart's footer stating
    that indicator's population and look-back (docs/rules.md §16, docs/hotei.md §7.5)."""
    import ipywidgets as w

    from hsutils.publish import widgets

    year_options = [(fy_short(y), y) for y in years]
    controls = {"indicator": w.Dropdown(options=[(indicators.REGISTRY[i].name, i) for i in indicator_ids],
                                        description="指標"),
                "span": w.SelectionRangeSlider(options=year_options, index=(0, len(year_options) - 1),
                                               description="年度")}

    def render(indicator, span):
        first, last = span
        table = change_for_indicator(ctx.prepared, ctx.muni_code, indicator, first, last, conf=conf,
                                     suppress_threshold=ctx.suppress_threshold)
        t = outcome_trends(ctx.prepared, ctx.muni_code, [indicator], [y for y in years if first <= y <= last],
                           conf=conf, std_pop=std_pop)
        return [report.display_table(table),
                trend_figure(t, indicator, ctx.footer(indicators.population_of(indicator), fy=(first, last),
                                                   lookback=[indicator]), target=plan.targets.get(indicator),
                             suppress_threshold=ctx.suppress_threshold)]

    return widgets.Panel(controls, render)

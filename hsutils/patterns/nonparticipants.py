"""Notebook 08 健診未受診者対策: who does not take the 特定健診, and whom to approach first.

The population is the 法定報告 対象者 of `hsutils.patterns.hotei` (`hotei.target`: 国保, enrolled the
whole fiscal year, 40–74 at fiscal-year end, no statutory exclusion) and the participants are
`hotei.evaluable`; nothing here re-defines them. Each non-participant of the analysis year is
classified twice (docs/rules.md §14):

* by **medical-care use** in the claims look-back (`claims_monthly`, whatever the source format:
  KDB CSV or UKE read through `hsutils.inputs.claims_import`): 生活習慣病で治療中 (a) → かかりつけ医
  からの検査データ受領, 医療機関の受診あり（生活習慣病以外）(b) → 受診勧奨 through the doctor,
  健診も医療も利用なし (c) → outreach (健康状態不明);
* by **participation history** over the past `history_years` fiscal years at the same 保険者:
  不定期受診者 (participated in one of them), 連続未受診者 (a 対象者 in at least one of them, never
  participated), 40歳到達の新たな対象者, その他の新たな対象者 (no 対象者 year in the history).

Then: counts by sex, age band and district (市町 for the prefecture), the gap to the 第4期
target (市町村国保 60 %, docs/rules.md §7.6) and a what-if (a share of each segment takes the
健診), the share of each segment and the 3-year "ever participated" rate per municipality with
funnel limits, and the confidential priority lists (docs/rules.md §14.4). Rates and intervals come
from `hsutils.stats`; suppression from `hsutils.publish.privacy` (through `ctx.save_table`).
Vectorised; loops run over fiscal years, axes or segments only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.core import vocab
from hsutils.rules import programs
from hsutils.analysis import areas, indicators
from hsutils.publish import plots, privacy
from hsutils.patterns import hotei
from hsutils.core.errors import ParameterError
from hsutils.patterns.nephropathy import funnel_figure  # noqa: F401  one funnel chart with the ringed municipality

TOTAL = "計"
SEX_LABELS = vocab.SEX_LABELS
#: What notebook 08 loads besides person_year (`notebook.start(with_tables=TABLES)`): the claims columns of
#: the 医療の利用 markers (`programs.claims_in_window`).
TABLES = {"claims_monthly": programs.MARKER_CLAIMS}

PARTICIPANT = "受診"
SEG_TREATED = "生活習慣病で治療中"
SEG_OTHER_CARE = "医療機関の受診あり（生活習慣病以外）"
SEG_NO_CARE = "健診も医療も利用なし"
#: Care segments of non-participants, in the order of docs/rules.md §14.2.
CARE_SEGMENTS = (SEG_TREATED, SEG_OTHER_CARE, SEG_NO_CARE)
CARE_COLUMNS = {SEG_TREATED: "seg_treated", SEG_OTHER_CARE: "seg_other_care", SEG_NO_CARE: "seg_no_care"}

HIST_IRREGULAR = "不定期受診者（過去に受診あり）"
HIST_CONTINUOUS = "連続未受診者（過去の対象年度すべて未受診）"
HIST_NEW40 = "40歳到達の新たな対象者"
HIST_NEW_OTHER = "その他の新たな対象者（過去の対象歴なし）"
#: Participation-history categories of non-participants (docs/rules.md §14.3).
HISTORY = (HIST_IRREGULAR, HIST_CONTINUOUS, HIST_NEW40, HIST_NEW_OTHER)
HISTORY_COLUMNS = {HIST_IRREGULAR: "hist_irregular", HIST_CONTINUOUS: "hist_continuous",
                   HIST_NEW40: "hist_new40", HIST_NEW_OTHER: "hist_new_other"}

#: Lifestyle-disease flags of `claims_monthly` that make segment (a) (docs/rules.md §14.2).
LIFESTYLE_FLAGS = {"diabetes": "糖尿病", "hypertension": "高血圧症", "dyslipidemia": "脂質異常症"}

COUNT_COLUMNS = ["target", "examinees", "nonparticipants", *CARE_COLUMNS.values(), *HISTORY_COLUMNS.values()]
COLUMN_LABELS = {"axis": "区分", "category": "分類", "target": "対象者", "examinees": "受診者",
                 "nonparticipants": "未受診者", **{v: k for k, v in CARE_COLUMNS.items()}, "row_id": "行",
                 **{v: k for k, v in HISTORY_COLUMNS.items()}, "suppressed": "秘匿あり"}
#: Who notebook 08 counts, in the registry's words (docs/rules.md §16): the 法定報告 特定健診 対象者
POPULATION = indicators.POP_TARGET


@dataclass(frozen=True)
class NonparticipantParams:
    """Parameters of the classification (docs/rules.md §14; all 確度 P, shown in the notebook).

    `lookback_months`: claims window ending at the fiscal-year end (March) — 12 = the fiscal year.
    `history_years`: past fiscal years looked at for 不定期／連続未受診 (2 → with this year, the
    3-year "ever participated" rate). `target_rate`: 第4期 市町村国保 target in % (§7.6).
    """
    lookback_months: int = 12
    history_years: int = 2
    target_rate: float = 60.0

    def __post_init__(self):
        if int(self.lookback_months) < 1 or int(self.lookback_months) > 60:
            raise ParameterError(f"レセプトの判定期間は1〜60か月で指定してください（指定値: {self.lookback_months}）")
        if int(self.history_years) < 1 or int(self.history_years) > 10:
            raise ParameterError(f"受診歴をみる年数は1〜10年で指定してください（指定値: {self.history_years}）")
        if not 0 < float(self.target_rate) <= 100:
            raise ParameterError(f"目標受診率は0より大きく100以下の%で指定してください（指定値: {self.target_rate}）")

    def text(self) -> str:
        return (f"レセプトの判定期間: 年度末までの{int(self.lookback_months)}か月、"
                f"受診歴: 過去{int(self.history_years)}年度、目標受診率 {float(self.target_rate):g}%")


# ---------------------------------------------------------------------------------------------
# classification (one row per 対象者)


def _in_area(py: pd.DataFrame, area_code) -> np.ndarray:
    """Rows of a municipality (5 digits), of a list of municipalities (a reference area's
    `member_munis`) or of the whole data (None, or a prefecture code)."""
    if isinstance(area_code, (list, tuple, set)):
        return py["muni_code"].astype("str").isin([str(c)[:5] for c in area_code]).to_numpy()
    if area_code is None:
        return np.ones(len(py), dtype=bool)
    return areas.parse_code(area_code).mask(py["muni_code"])  # the one area model (any code form)


def _history(py: pd.DataFrame, fy: int, years: int) -> pd.DataFrame:
    """Per person × municipality: past 対象者 years, past participation, last participation fy and
    past 受診勧奨判定値／特定保健指導対象 in fy − years … fy − 1 (same 保険者, docs/rules.md §14.3)."""
    fys = py["fy"].to_numpy()
    past = (fys >= fy - years) & (fys < fy)
    tgt = hotei.target(py)
    part = hotei.evaluable(py)
    ref = py["ref_any"].fillna(False).to_numpy(dtype=bool) if "ref_any" in py else np.zeros(len(py), bool)
    gui = py["guidance_target"].fillna(False).to_numpy(dtype=bool) if "guidance_target" in py else np.zeros(len(py), bool)
    sel = past & tgt
    h = pd.DataFrame({"person_id": py["person_id"].astype("str").to_numpy()[sel],
                      "muni_code": py["muni_code"].astype("str").to_numpy()[sel],
                      "past_target_years": 1, "past_participated": part[sel],
                      "last_kenshin_fy": np.where(part[sel], fys[sel], -1),
                      "past_referral": (part & ref)[sel], "past_guidance": (part & gui)[sel]})
    return h.groupby(["person_id", "muni_code"], sort=False).agg(
        past_target_years=("past_target_years", "sum"), past_participated=("past_participated", "any"),
        last_kenshin_fy=("last_kenshin_fy", "max"), past_referral=("past_referral", "any"),
        past_guidance=("past_guidance", "any")).reset_index()


def history_years_available(fiscal_years, fy: int, years: int) -> int:
    """Past fiscal years the data hold for `fy` (at most `years`): the history actually used."""
    have = {int(f) for f in fiscal_years}
    return int(sum(1 for k in range(1, int(years) + 1) if int(fy) - k in have))


def classify(py: pd.DataFrame, claims: pd.DataFrame | None, fy: int,
             params: NonparticipantParams = NonparticipantParams(), area_code: str | None = None) -> pd.DataFrame:
    """One row per 法定報告 対象者 of `fy` in the area (docs/rules.md §14): person_id, muni_code,
    district_code, sex, age, age_band, participated, care (受診 / one of `CARE_SEGMENTS`),
    history (NaN for participants, else one of `HISTORY`), the lifestyle flags (any month of the
    look-back), last_claim_ym, last_kenshin_fy (Int64), past_referral, past_guidance."""
    fy = int(fy)
    rows = (py["fy"].to_numpy() == fy) & hotei.target(py) & _in_area(py, area_code)
    t = py.loc[rows, ["person_id", "muni_code", "district_code", "sex", "age", "age_band"]].copy()
    t["person_id"] = t["person_id"].astype("str")
    t["muni_code"] = t["muni_code"].astype("str")
    t["participated"] = hotei.evaluable(py)[rows]
    # medical-care use in the look-back (docs/rules.md §14.2)
    if claims is not None and len(claims):
        w = programs.claims_in_window(claims, programs.fy_end_ym(fy), params.lookback_months)
        w = w.rename(columns={"last_ym": "last_claim_ym"})
        t = t.merge(w[["person_id", "medical", "dental", *LIFESTYLE_FLAGS, "last_claim_ym"]],
                    on="person_id", how="left")
    else:
        t = t.reset_index(drop=True)
        t["last_claim_ym"] = pd.array([pd.NA] * len(t), dtype="Int64")
    for c in ("medical", "dental", *LIFESTYLE_FLAGS):
        t[c] = t[c].astype("boolean").fillna(False).astype(bool) if c in t else False
    lifestyle = t[list(LIFESTYLE_FLAGS)].any(axis=1).to_numpy()
    any_care = t["medical"].to_numpy() | t["dental"].to_numpy()
    t["care"] = np.select([t["participated"].to_numpy(), lifestyle, any_care],
                          [PARTICIPANT, SEG_TREATED, SEG_OTHER_CARE], default=SEG_NO_CARE)
    # participation history at the same 保険者 (docs/rules.md §14.3)
    h = _history(py, fy, int(params.history_years))
    t = t.merge(h, on=["person_id", "muni_code"], how="left")
    t["past_target_years"] = t["past_target_years"].fillna(0).astype(np.int64)
    for c in ("past_participated", "past_referral", "past_guidance"):
        t[c] = t[c].astype("boolean").fillna(False).astype(bool)
    last = t["last_kenshin_fy"].where(t["last_kenshin_fy"] > 0)
    t["last_kenshin_fy"] = pd.array(last.round(), dtype="Int64")
    hist = np.select([t["past_participated"].to_numpy(), t["past_target_years"].to_numpy() > 0,
                      t["age"].to_numpy() == 40], [HIST_IRREGULAR, HIST_CONTINUOUS, HIST_NEW40],
                     default=HIST_NEW_OTHER).astype(object)
    hist[t["participated"].to_numpy()] = np.nan
    t["history"] = hist
    return t


# ---------------------------------------------------------------------------------------------
# committee tables


def _indicator_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """0/1 columns of COUNT_COLUMNS per 対象者 row."""
    part = frame["participated"].to_numpy(dtype=bool)
    out = {"target": np.ones(len(frame), np.int64), "examinees": part.astype(np.int64),
           "nonparticipants": (~part).astype(np.int64)}
    care = frame["care"].to_numpy()
    for seg, col in CARE_COLUMNS.items():
        out[col] = (care == seg).astype(np.int64)
    hist = frame["history"].to_numpy()
    for cat, col in HISTORY_COLUMNS.items():
        out[col] = (hist == cat).astype(np.int64)
    return pd.DataFrame(out, index=frame.index)


#: Per municipality × fiscal year counts (`muni_counts`, `municipal_counts`): what the what-if, the comparison
#: across municipalities and the trends count. `ever`: participated this year or in the history years.
MUNI_COUNT_COLUMNS = ["target", "examinees", *CARE_COLUMNS.values(), "ever"]
#: comparison indicator -> its numerator among MUNI_COUNT_COLUMNS (the denominator is `target`)
COMPARISON_NUMERATORS = {"share_treated": "seg_treated", "share_no_care": "seg_no_care", "ever_rate": "ever",
                         "kenshin_rate": "examinees"}


def muni_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """`MUNI_COUNT_COLUMNS` (int64) per municipality of classify() rows, in code order: muni_code, ...
    (municipalities without a 対象者 row are absent)."""
    ind = _indicator_columns(frame)[MUNI_COUNT_COLUMNS[:-1]]
    ind["ever"] = _numerators(frame)["ever_rate"].astype(np.int64)
    ind["muni_code"] = frame["muni_code"].to_numpy()
    return ind.groupby("muni_code")[MUNI_COUNT_COLUMNS].sum().reset_index()


def _as_counts(frames: pd.DataFrame) -> pd.DataFrame:
    """classify() rows as `muni_counts`; a `muni_counts` / `municipal_counts` table of one year as it is."""
    return muni_counts(frames) if "participated" in frames else frames


MUNICIPAL_COUNTS_VERSION = 1  # bump when classify() or muni_counts() change, so saved counts are not reused
MUNICIPAL_FIRST_RUN = ("【初回のみ】市町比較・仮定の表・比較地域の推移のため、県内全市町の対象者を市町ごとに分類して"
                       "数え、集計キャッシュに保存します。次回からは、同じデータ・同じ条件なら保存した結果を使います。")


def municipal_counts(prepared, params: NonparticipantParams = NonparticipantParams()) -> pd.DataFrame:
    """`muni_counts` of every municipality of the cache in every fiscal year of the data: fy, muni_code,
    `MUNI_COUNT_COLUMNS` — what notebook 08 shows of the other municipalities (what-if, comparison,
    the reference's trend), without holding their person rows (docs/design.md §8.1).

    Each municipality is classified from its own partitions (`pipeline.each_municipality`: its
    person_year rows, its persons' whole claims history), which gives its rows of the prefecture's
    classify() (the history is counted at the same 保険者, claims by person); a run that holds every
    municipality's rows (the prefecture) classifies those at once (`pipeline.municipal_rows`), the
    same table. Computed once per cache and parameters, then read (`pipeline.derived_table`,
    `derived/nonparticipant_counts_<key>.parquet`).
    A fiscal year not in the data has no rows (its counts are 0)."""
    from hsutils.analysis import pipeline

    fys = [int(f) for f in prepared.fiscal_years]

    def build() -> pd.DataFrame:
        print(MUNICIPAL_FIRST_RUN, flush=True)
        parts = []
        for _, py, tables in pipeline.municipal_rows(prepared, TABLES):  # a loop over partitions
            claims = tables.get("claims_monthly")
            parts += [muni_counts(classify(py, claims, f, params)).assign(fy=f) for f in fys]  # a few years
        empty = pd.DataFrame({"muni_code": pd.Series([], dtype="str"),
                              **{c: pd.Series([], dtype=np.int64) for c in MUNI_COUNT_COLUMNS}, "fy": 0})
        table = pd.concat([empty, *parts], ignore_index=True) if parts else empty
        # municipality, then year, whether the rows came one municipality at a time or all at once
        table = table.sort_values(["muni_code", "fy"], kind="stable", ignore_index=True)
        return table.astype({"fy": np.int64, **{c: np.int64 for c in MUNI_COUNT_COLUMNS}})[
            ["fy", "muni_code", *MUNI_COUNT_COLUMNS]]

    key = (MUNICIPAL_COUNTS_VERSION, int(params.lookback_months), int(params.history_years), fys)
    return pipeline.derived_table(prepared.cache_dir, "nonparticipant_counts", build, key=key)


def segment_counts(frame: pd.DataFrame, districts: pd.DataFrame | None = None,
                   municipalities: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts of 対象者, 受診者, 未受診者 and each segment and history category by 性別, 年齢階級 and
    地区 (市町 when the frame holds several municipalities), each axis with its 計 row: axis,
    category, then `COUNT_COLUMNS` (unsuppressed: pass to ctx.save_table with
    `segment_relations`)."""
    ind = _indicator_columns(frame)
    if frame["muni_code"].nunique() > 1 and municipalities is not None:
        names = municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].astype(str)
        place, place_axis = frame["muni_code"].map(names).fillna(frame["muni_code"]), "市町"
    else:
        place, place_axis = areas.district_label_per_row(frame, districts), "地区"
    axes = {"性別": frame["sex"].map(SEX_LABELS).astype("str"),
            "年齢階級": frame["age_band"].astype("str"), place_axis: place.astype("str")}
    parts = []
    for axis, cat in axes.items():  # three axes
        if axis == "地区" and cat.eq("地区不明").all():
            continue
        wide = ind.groupby(cat.to_numpy(), sort=True).sum()
        wide.loc[TOTAL] = wide.sum(axis=0)
        wide = wide.rename_axis("category").reset_index()
        wide.insert(0, "axis", axis)
        parts.append(wide)
    out = pd.concat(parts, ignore_index=True)
    out["row_id"] = out["axis"] + "/" + out["category"]
    return out[["axis", "category", *COUNT_COLUMNS, "row_id"]]


def segment_relations(counts: pd.DataFrame) -> list:
    """segment_counts: Σ categories = 計 within each axis; the 計 rows of all axes are the same
    persons; 対象者 = 受診者 + 未受診者; 未受診者 = Σ care segments = Σ history categories
    (docs/rules.md §9: no hidden cell recoverable)."""
    axes = list(pd.unique(counts["axis"]))
    same_total = tuple((f"{axes[0]}/{TOTAL}", (f"{a}/{TOTAL}",)) for a in axes[1:])
    rels = [privacy.Margin("category", TOTAL, by=("axis",)),
            privacy.ColumnMargin("target", ("examinees", "nonparticipants")),
            privacy.ColumnMargin("nonparticipants", tuple(CARE_COLUMNS.values())),
            privacy.ColumnMargin("nonparticipants", tuple(HISTORY_COLUMNS.values()))]
    if same_total:
        rels += [privacy.Partition(col, "row_id", same_total) for col in COUNT_COLUMNS]
    return rels


def composition_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame for `plots.stacked_bars`: row label (性・年齢階級), category (受診 and the care
    segments), count — the composition of the 対象者 by care use."""
    label = frame["sex"].map(SEX_LABELS).astype("str") + " " + frame["age_band"].astype("str")
    g = frame.groupby([label.rename("group"), frame["care"].rename("category")]).size().rename("count").reset_index()
    order = [f"{s} {b}" for s in SEX_LABELS.values() for b in sorted(frame["age_band"].astype(str).unique())]
    full = pd.MultiIndex.from_product([order, [PARTICIPANT, *CARE_SEGMENTS]], names=["group", "category"])
    return g.set_index(["group", "category"]).reindex(full, fill_value=0).reset_index()


# ---------------------------------------------------------------------------------------------
# gap to the target and what-if (docs/rules.md §14.5)


def _area_names(codes: pd.Series, municipalities: pd.DataFrame | None) -> np.ndarray:
    """Municipality names from the master (the code when unknown); the 計 row is 全体."""
    names = codes.astype(str)
    if municipalities is not None:
        master = municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].astype(str)
        names = codes.map(master).fillna(codes).astype(str)
    return np.where(codes.to_numpy() == TOTAL, "全体", names.to_numpy())


def needed_for_target(target, examinees, target_rate: float) -> np.ndarray:
    """Additional examinees needed to reach `target_rate` %: max(0, ⌈target × rate / 100⌉ −
    examinees) (docs/rules.md §14.5). Integer arithmetic on the rate in hundredths of a percent, so
    60 % of 1,000 is exactly 600."""
    t = np.asarray(target, dtype=np.int64)
    e = np.asarray(examinees, dtype=np.int64)
    r = int(round(float(target_rate) * 100))  # hundredths of a percent
    required = -(-t * r // 10000)  # ceiling division
    return np.clip(required - e, 0, None)


def whatif_table(frames: pd.DataFrame, shares: dict[str, float], target_rate: float,
                 municipalities: pd.DataFrame | None = None, conf: float = 0.95) -> pd.DataFrame:
    """Per municipality and the whole (計): 対象者, 受診者, current rate with Wilson interval, the
    persons needed for `target_rate`, each care segment's count and the examinees it would add if
    its share `shares[segment]` (0–1) took the 健診, the what-if rate and what is still missing
    (docs/rules.md §14.5). `frames`: the classify() rows of all municipalities, or their
    `muni_counts` (the analysis year's rows of `municipal_counts`)."""
    for seg, s in shares.items():
        if seg not in CARE_COLUMNS:
            raise ParameterError(f"仮定の割合の区分「{seg}」は {list(CARE_COLUMNS)} のいずれかで指定してください")
        if not 0 <= float(s) <= 1:
            raise ParameterError(f"「{seg}」の仮定の割合は0〜1で指定してください（指定値: {s}）")
    counts = _as_counts(frames)
    by = counts.set_index("muni_code").rename_axis("area_code")[["target", "examinees", *CARE_COLUMNS.values()]]
    by.loc[TOTAL] = by.sum(axis=0)
    by = by.reset_index()
    by["area_name"] = _area_names(by["area_code"], municipalities)
    p, lo, up = stats.proportion_ci(by["examinees"].to_numpy(float), by["target"].to_numpy(float), conf)
    by["rate"], by["lower"], by["upper"] = np.asarray(p) * 100, np.asarray(lo) * 100, np.asarray(up) * 100
    by["needed"] = needed_for_target(by["target"], by["examinees"], target_rate)
    added = np.zeros(len(by))
    for seg, col in CARE_COLUMNS.items():  # three segments
        a = by[col].to_numpy(float) * float(shares.get(seg, 0.0))
        by[f"add_{col}"] = a
        added += a
    by["added"] = added
    p_if, _, _ = stats.proportion_ci(by["examinees"].to_numpy(float) + added, by["target"].to_numpy(float), conf)
    by["rate_if"] = np.asarray(p_if) * 100
    by["still_needed"] = np.clip(by["needed"].to_numpy(float) - added, 0, None)
    return by


WHATIF_LABELS = {"area_name": "市町", "target": "対象者", "examinees": "受診者", "rate": "受診率（%）",
                 "lower": "下限", "upper": "上限", "needed": "目標までに必要な人数",
                 **{c: k for k, c in CARE_COLUMNS.items()},
                 **{f"add_{c}": f"仮定の追加（{k}）" for k, c in CARE_COLUMNS.items()},
                 "added": "仮定の追加受診者", "rate_if": "仮定の受診率（%）", "still_needed": "仮定後も不足する人数"}


def whatif_derived() -> dict[str, list[str]]:
    """Columns derived from each count of whatif_table (hidden with it)."""
    return {"target": ["rate", "lower", "upper", "needed", "rate_if", "still_needed"],
            "examinees": ["rate", "lower", "upper", "needed", "rate_if", "still_needed"],
            **{c: [f"add_{c}", "added", "rate_if", "still_needed"] for c in CARE_COLUMNS.values()}}


def whatif_relations() -> list:
    """whatif: the municipalities add up to the 計 row."""
    return [privacy.Margin("area_code", TOTAL)]


def whatif_summary(table: pd.DataFrame, area_code: str, shares: dict[str, float], target_rate: float,
                   threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese text for the area: current rate, persons needed for the target, the what-if."""
    area = None if area_code is None else areas.parse_code(area_code)
    key = TOTAL if area is None or not area.is_municipality else area.code
    row = table[table["area_code"] == key]
    if row.empty:
        return "対象者がいません。"
    r = row.iloc[0]
    if privacy.is_hidden(r["target"], threshold) or privacy.is_hidden(r["examinees"], threshold):
        return "人数が少ないため表示しません。"
    assumed = "、".join(f"{seg}の{float(s):.0%}" for seg, s in shares.items() if float(s) > 0) or "なし"
    lines = [f"{r['area_name']}: 受診率 {r['rate']:.1f}%（{int(r['examinees']):,}/{int(r['target']):,}人）。"
             f"目標 {target_rate:g}% まであと {int(r['needed']):,}人。",
             f"仮定（{assumed}が受診）: 追加 約{r['added']:,.0f}人 → 受診率 {r['rate_if']:.1f}%"
             + (f"、なお約{r['still_needed']:,.0f}人不足" if r["still_needed"] > 0 else "、目標に到達")]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# comparison across municipalities and trends (docs/rules.md §14.6)

#: indicator id -> (label, numerator selector, polarity)
COMPARISON_INDICATORS = {
    "share_treated": ("対象者に占める「生活習慣病で治療中」の未受診者の割合", None),
    "share_no_care": ("対象者に占める「健診も医療も利用なし」の割合", "lower_better"),
    "ever_rate": ("過去の年度を含めて1回以上受診した人の割合", "higher_better"),
    "kenshin_rate": ("特定健診受診率", "higher_better"),
}


def _numerators(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    part = frame["participated"].to_numpy(dtype=bool)
    care = frame["care"].to_numpy()
    return {"share_treated": care == SEG_TREATED, "share_no_care": care == SEG_NO_CARE,
            "ever_rate": part | frame["past_participated"].to_numpy(dtype=bool), "kenshin_rate": part}


def comparison_table(frames: pd.DataFrame, municipalities: pd.DataFrame | None = None,
                     conf: float = 0.95) -> pd.DataFrame:
    """Per indicator × municipality (and 全体 = the prefecture): numerator, denominator (対象者),
    rate, lower, upper (percent, Wilson), funnel position against the whole's rate
    (docs/methods.md §7a). `frames`: classify() rows of all municipalities or their `muni_counts`."""
    counts = _as_counts(frames).set_index("muni_code").rename_axis("area_code")
    parts = []
    for ind, col in COMPARISON_NUMERATORS.items():  # four indicators
        by = pd.DataFrame({"numerator": counts[col], "denominator": counts["target"]})
        by.loc[TOTAL] = by.sum(axis=0)
        by = stats.proportion_grouped(by.reset_index(), ["area_code"], "numerator", "denominator", conf,
                                      multiplier=100)
        whole = by[by["area_code"] == TOTAL].iloc[0]
        target = float(whole["numerator"]) / float(whole["denominator"]) if whole["denominator"] else float("nan")
        pos = stats.funnel_significance(by["numerator"].to_numpy(float), by["denominator"].to_numpy(float),
                                        target) if target == target else np.full(len(by), np.nan)
        by["funnel"] = np.where(by["area_code"] == TOTAL, None, np.asarray(pos, dtype=object))
        by.insert(0, "indicator_id", ind)
        by.insert(1, "indicator_name", COMPARISON_INDICATORS[ind][0])
        parts.append(by)
    out = pd.concat(parts, ignore_index=True)
    out["area_name"] = _area_names(out["area_code"], municipalities)
    return out[["indicator_id", "indicator_name", "area_code", "area_name", "numerator", "denominator",
                "value", "lower", "upper", "funnel"]]


def comparison_relations() -> list:
    """comparison: per indicator, the municipalities add up to the 全体 row."""
    return [privacy.Margin("area_code", TOTAL, by=("indicator_id",))]


def trend_table(py: pd.DataFrame, claims: pd.DataFrame | None, fiscal_years, areas: dict,
                params: NonparticipantParams = NonparticipantParams(), conf: float = 0.95, *,
                classified: dict | None = None) -> pd.DataFrame:
    """Per area × fiscal year: the share of the 対象者 in each care segment, the 受診率 and the
    "ever participated" rate (percent, Wilson): area, fy, series, numerator, denominator, value,
    lower, upper. `areas`: label -> area code or list of municipalities (`_in_area`). Every year is
    classified once, with the same look-back (docs/hotei.md §7.2); the "ever" rate only for
    years with the full history. `classified`: fy → `classify(py, claims, fy, params)` of the whole
    data already computed by the caller with the same `params` (the run's year), reused as it is."""
    counts = []
    for f in sorted(int(x) for x in fiscal_years):  # a few fiscal years
        whole = (classified or {}).get(f)
        whole = classify(py, claims, f, params) if whole is None else whole
        counts.append(muni_counts(whole).assign(fy=f))
    counts = pd.concat(counts, ignore_index=True) if counts else None
    return trend_from_counts(counts, fiscal_years, areas, py["fy"].unique(), params, conf)


def trend_from_counts(counts: pd.DataFrame | None, fiscal_years, areas: dict, data_years,
                      params: NonparticipantParams = NonparticipantParams(), conf: float = 0.95) -> pd.DataFrame:
    """`trend_table` from per municipality × year counts (`municipal_counts`, or `muni_counts` with
    fy): each area's counts are the sums over its municipalities (`_in_area`); a fiscal year without
    rows counts 0 of 0. `data_years`: the fiscal years of the data (the "ever" rate is shown only for
    years whose whole history the data hold)."""
    parts = []
    for f in sorted(int(x) for x in fiscal_years):  # a few fiscal years
        year = counts[counts["fy"].to_numpy() == f] if counts is not None else pd.DataFrame(
            columns=["muni_code", *MUNI_COUNT_COLUMNS])
        full_history = history_years_available(data_years, f, params.history_years) == params.history_years
        for label, code in areas.items():  # the area and its reference
            fr = year[_in_area(year, code)]
            cols = {"受診率": "examinees", **CARE_COLUMNS}
            if full_history:
                cols["1回以上受診（過去の年度を含む）"] = "ever"
            for series, col in cols.items():
                parts.append({"area": label, "fy": f, "series": series, "numerator": int(fr[col].sum()),
                              "denominator": int(fr["target"].sum())})
    t = pd.DataFrame(parts)
    if t.empty:
        return pd.DataFrame(columns=["area", "fy", "series", "numerator", "denominator", "value", "lower", "upper"])
    p, lo, up = stats.proportion_ci(t["numerator"].to_numpy(float), t["denominator"].to_numpy(float), conf)
    t["value"], t["lower"], t["upper"] = np.asarray(p) * 100, np.asarray(lo) * 100, np.asarray(up) * 100
    return t


def trend_relations(fy: int, segments_table: str = "segments", series_col_value: str | None = None) -> list:
    """trends: the analysis year's counts of the area equal the 計 of the segment table saved
    before (受診率: 受診者／対象者; each care segment: its count／対象者)."""
    rows_total = {"axis": "性別", "category": TOTAL}
    rels = []
    for series, col in {"受診率": "examinees", **CARE_COLUMNS}.items():
        rows = {"fy": int(fy), "series": series}
        if series_col_value is not None:
            rows["area"] = series_col_value
        rels += [privacy.Link(segments_table, "numerator", rows=rows, other_rows=rows_total, other_col=col),
                 privacy.Link(segments_table, "denominator", rows=rows, other_rows=rows_total, other_col="target")]
    return rels


def segment_long(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Long frame for `plots.stacked_bars` from the (masked) segment table, one axis without its 計
    row: place, category (受診 and the care segments), count (NaN where hidden)."""
    t = table[(table["axis"] == axis) & (table["category"] != TOTAL)]
    names = {"examinees": PARTICIPANT, **{col: seg for seg, col in CARE_COLUMNS.items()}}
    long = t.melt(id_vars=["category"], value_vars=list(names), var_name="col", value_name="count")
    long["segment"] = long["col"].map(names)
    long["count"] = pd.to_numeric(long["count"], errors="coerce")
    return long.rename(columns={"category": "place"})[["place", "segment", "count"]]


def whatif_explorer(frames: pd.DataFrame, area_code: str | None, shares: dict[str, float], target_rate: float,
                    municipalities: pd.DataFrame | None = None, threshold: int = privacy.DEFAULT_THRESHOLD):
    """ipywidgets panel: the what-if share of each care segment and the target; the summary text
    updates at once. Call only when `interactive` (papermill can hang on widgets, docs/design.md §9)."""
    import ipywidgets as widgets
    from IPython.display import display

    from hsutils.publish import widgets as panels

    w = {col: widgets.FloatSlider(value=float(shares.get(seg, 0.0)), min=0.0, max=1.0, step=0.05,
                                  description=f"{seg}のうち受診する割合")
         for seg, col in CARE_COLUMNS.items()}
    w["target_rate"] = widgets.FloatSlider(value=float(target_rate), min=30.0, max=80.0, step=1.0,
                                           description="目標受診率（%）")

    def render(target_rate, **values):
        s = {seg: values[col] for seg, col in CARE_COLUMNS.items()}
        return whatif_summary(whatif_table(frames, s, target_rate, municipalities), area_code, s, target_rate, threshold)

    display(panels.Panel(w, render))


# ---------------------------------------------------------------------------------------------
# priority lists (confidential; docs/rules.md §14.4)

PRIORITY_RULES = (
    (1, "健診も医療も利用なし、過去の健診で受診勧奨判定値または特定保健指導の対象"),
    (2, "健診も医療も利用なし（健康状態不明）"),
    (3, "不定期受診者で、過去の健診で受診勧奨判定値または特定保健指導の対象"),
    (4, "不定期受診者（過去に受診あり）"),
)


def reminder_list(frame: pd.DataFrame, districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """受診勧奨 list (person-level: confidential/ only): non-participants in segment (c) or
    不定期受診者, ranked by `PRIORITY_RULES` (docs/rules.md §14.4), one row per person laid out for a
    mail merge: 優先順位, 理由, 被保険者番号, 性別, 年齢, 地区, 利用状況, 受診歴, 最後の受診年度,
    最後のレセプト月, 過去の受診勧奨判定値, 過去の特定保健指導対象."""
    f = frame[~frame["participated"].to_numpy(dtype=bool)]
    no_care = f["care"].to_numpy() == SEG_NO_CARE
    irregular = f["history"].to_numpy() == HIST_IRREGULAR
    risk = f["past_referral"].to_numpy(dtype=bool) | f["past_guidance"].to_numpy(dtype=bool)
    rank = np.select([no_care & risk, no_care, irregular & risk, irregular], [1, 2, 3, 4], default=0)
    keep = rank > 0
    f, rank = f[keep], rank[keep]
    reasons = dict(PRIORITY_RULES)
    out = pd.DataFrame({
        "優先順位": rank, "理由": pd.Series(rank).map(reasons).to_numpy(),
        "被保険者番号": f["person_id"].to_numpy(), "性別": f["sex"].map(SEX_LABELS).to_numpy(),
        "年齢": f["age"].to_numpy(), "地区": areas.district_label_per_row(f, districts).to_numpy(),
        "利用状況": f["care"].to_numpy(), "受診歴": f["history"].to_numpy(),
        "最後の受診年度": f["last_kenshin_fy"].to_numpy(), "最後のレセプト月": f["last_claim_ym"].to_numpy(),
        "過去の受診勧奨判定値": np.where(f["past_referral"].to_numpy(dtype=bool), "あり", ""),
        "過去の特定保健指導対象": np.where(f["past_guidance"].to_numpy(dtype=bool), "あり", "")})
    return out.sort_values(["優先順位", "地区", "被保険者番号"], kind="stable").reset_index(drop=True)


def data_receipt_list(frame: pd.DataFrame, districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """かかりつけ医からの検査データ受領（みなし健診）の候補 (confidential/ only): non-participants
    of segment (a), 連続未受診者 first (docs/rules.md §14.4): 被保険者番号, 性別, 年齢, 地区, 治療中の
    生活習慣病, 最後のレセプト月, 受診歴, 最後の受診年度."""
    f = frame[frame["care"].to_numpy() == SEG_TREATED]
    diseases = np.full(len(f), "", dtype=object)
    for col, label in LIFESTYLE_FLAGS.items():  # three diseases
        has = f[col].to_numpy(dtype=bool)
        diseases = np.where(has, np.where(diseases == "", label, diseases + "・" + label), diseases)
    order = {HIST_CONTINUOUS: 1, HIST_NEW40: 2, HIST_NEW_OTHER: 3, HIST_IRREGULAR: 4}
    out = pd.DataFrame({
        "順位の目安": f["history"].map(order).to_numpy(), "被保険者番号": f["person_id"].to_numpy(),
        "性別": f["sex"].map(SEX_LABELS).to_numpy(), "年齢": f["age"].to_numpy(),
        "地区": areas.district_label_per_row(f, districts).to_numpy(), "治療中の生活習慣病": diseases,
        "最後のレセプト月": f["last_claim_ym"].to_numpy(), "受診歴": f["history"].to_numpy(),
        "最後の受診年度": f["last_kenshin_fy"].to_numpy()})
    return out.sort_values(["順位の目安", "地区", "被保険者番号"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# text for the notebook


def segment_summary(counts: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese text from the 計 row of the (suppressed) segment table."""
    row = counts[(counts["axis"] == "性別") & (counts["category"] == TOTAL)]
    if row.empty:
        return "対象者がいません。"
    r = row.iloc[0]

    def n(col):
        v = pd.to_numeric(pd.Series([r[col]]), errors="coerce").iloc[0]
        return "‐" if pd.isna(v) else f"{int(v):,}人"

    lines = [f"対象者 {n('target')}、受診者 {n('examinees')}、未受診者 {n('nonparticipants')}。",
             "未受診者の内訳: " + "、".join(f"{seg} {n(col)}" for seg, col in CARE_COLUMNS.items()) + "。",
             "受診歴: " + "、".join(f"{cat} {n(col)}" for cat, col in HISTORY_COLUMNS.items()) + "。"]
    return "\n".join(lines)


def comparison_summary(table: pd.DataFrame, indicator_id: str, area_code: str | None,
                       threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Japanese text: municipalities outside the 95 % funnel limits for one indicator."""
    d = table[(table["indicator_id"] == indicator_id) & (table["area_code"] != TOTAL)]
    ok = ~(np.asarray(privacy.is_hidden(d["numerator"], threshold), dtype=bool)
           | np.asarray(privacy.is_hidden(d["denominator"], threshold), dtype=bool))
    d = d[ok]
    high = d.loc[d["funnel"].isin([stats.FUNNEL_HIGH_95, stats.FUNNEL_HIGH_998]), "area_name"].tolist()
    low = d.loc[d["funnel"].isin([stats.FUNNEL_LOW_95, stats.FUNNEL_LOW_998]), "area_name"].tolist()
    text = (f"【{COMPARISON_INDICATORS[indicator_id][0]}】95%限界より高い市町: {'、'.join(high) or 'なし'}／"
            f"低い市町: {'、'.join(low) or 'なし'}")
    row = d[d["area_code"] == str(area_code)]
    if len(row):
        r = row.iloc[0]
        text += f"\n  当該市町（{r['area_name']}）: {float(r['value']):.1f}% … {r['funnel']}"
    return text


@plots.styled
def whatif_figure(table: pd.DataFrame, *, target_rate: float, title: str, footer: str,
                  highlight: str | None = None, threshold: int = privacy.DEFAULT_THRESHOLD):
    """Per municipality: the current 受診率 and, stacked on it, what each care segment would add in
    the what-if, with the target line (plots.target_gap_bars)."""
    d = table[table["area_code"] != TOTAL].copy()
    parts = {f"仮定: {seg}": f"add_{col}" for seg, col in CARE_COLUMNS.items()}
    for col in parts.values():
        d[col] = d[col] / d["target"].where(d["target"] > 0) * 100
    return plots.target_gap_bars(d, label_col="area_name", base_col="rate", added_cols=parts, target=target_rate,
                                 count_col="examinees", denom_col="target", title=title, footer=footer,
                                 highlight=None if highlight is None else d.loc[d["area_code"] == str(highlight),
                                                                                "area_name"].tolist(),
                                 suppress_threshold=threshold).figure

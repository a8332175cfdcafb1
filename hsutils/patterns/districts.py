"""District (地区, 日常生活圏域) analysis inside one large municipality (notebook 02, issue 7).

For a large insurer the municipal average hides the differences that matter: which districts have
low checkup participation, many untreated high-risk people, or many frail elderly. Everything the
notebook `02_large_insurer` computes lives here; the notebook only calls and displays.

* District indicator tables: `hsutils.analysis.indicators.indicator_table` at level "district" with the
  municipality as the reference (標準化該当比 against the municipality, docs/design.md §5), optionally with
  fiscal years pooled (small districts need more events for a judgement).
* 特定健診 participation by district × sex × age band and where raising participation to the target
  (docs/rules.md §7.6: 市町村国保 60 %) would add the most 受診者.
* Program target counts per district (docs/rules.md §1, §3, §5, §6).
* A transparent priority score with the reasons spelled out (weights are parameters).
* Committee tables pass through `suppress_district_table` / `suppress_wide_counts`: counts 1–9
  and what is derived from them are hidden, with secondary suppression because district figures
  add up to municipal figures published elsewhere (docs/rules.md §9, docs/design.md §6).

Everything here works on the shared cache (`hsutils.analysis.pipeline.Prepared`): strata for rates,
person_year (vectorised group-bys only) for counts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.core import vocab
from hsutils.rules import programs
from hsutils.analysis import areas, indicators, references
from hsutils.publish import privacy
from hsutils.core.errors import DataError

# ------------------------------------------------------------------------------------------------
# constants

#: Indicators shown by default at district level: the key indicators plus the ones that show
#: untreated risk (docs/rules.md §3, §5) and the 後期 checkup, all with district-level strata.
DEFAULT_INDICATORS = ["kenshin_rate", "hokenshido_rate", "metabo", "hba1c8", "ref_bp",
                      "ref_bp_untreated", "dm_untreated", "egfr45", "kouki_kenshin_rate",
                      "ik_health_unknown"]

#: 特定健診実施率 target of 市町村国保 in the 第4期 (2024–2029) plans: 60 % (docs/rules.md §7.6, M).
PARTICIPATION_TARGET = 0.60

#: Default weights of the priority score (parameters of the notebook; see `priority_scores`).
DEFAULT_PRIORITY_WEIGHTS = {"kenshin_low": 3.0, "worse_indicator": 1.0,
                            "participation_gap": 2.0, "untreated": 2.0}

PRIORITY_WEIGHT_LABELS = {
    "kenshin_low": "特定健診実施率が市より有意に低い（1点 × 重み）",
    "worse_indicator": "市より有意に悪い指標 1つにつき（1点 × 重み）",
    "participation_gap": "受診率を目標まで上げたときの受診者増の市全体に占める割合（0〜1 × 重み）",
    "untreated": "受診勧奨 未治療者の市全体に占める割合（0〜1 × 重み）",
}

#: Columns of the municipal indicator table of notebook 01 plus the district columns.
TABLE_COLUMNS = ["muni_code", "muni_name", "medical_area", "fy", "indicator_id", "indicator_name",
                 "numerator", "denominator", "crude_rate", "crude_lower", "crude_upper",
                 "adj_rate", "adj_lower", "adj_upper", "sr", "sr_lower", "sr_upper", "comparison",
                 "suppressed", "district_code", "district_name"]
EXTRA_COLUMNS = ["period", "muni_rate", "judgement", "polarity", "method", "conf"]
_DERIVED = ["crude_rate", "crude_lower", "crude_upper", "adj_rate", "adj_lower", "adj_upper",
            "sr", "sr_lower", "sr_upper", "comparison", "judgement"]

UNKNOWN_DISTRICT = areas.UNKNOWN_DISTRICT
TOTAL_LABEL = "市全体"
#: `period` of the single-year rows of a district indicator table (pooled rows name their years).
SINGLE_YEAR = "単年度"

#: Program target counts per district: column -> (Japanese label, definition with DOMAIN section).
TARGET_DEFINITIONS: dict[str, tuple[str, str]] = {
    "kokuho_insured": ("国保 被保険者（40–74歳）", "年度中に国保に加入していた40–74歳（年度末年齢）"),
    "kenshin_target": ("特定健診 対象者", "国保 40–74歳・年度を通じて加入・法定除外を除く（docs/rules.md §7.1）"),
    "kenshin_participants": ("特定健診 受診者", "対象者のうち特定健診を受診（docs/rules.md §7.1）"),
    "hokenshido_target": ("特定保健指導 対象者", "受診者のうち階層化が積極的支援・動機付け支援（docs/rules.md §1）"),
    "ref_no_visit": ("受診勧奨 医療機関未受診者",
                     "受診者のうちいずれかの受診勧奨判定値以上で、年度内に医科レセプトがない者（docs/rules.md §3）"),
    "ref_untreated": ("受診勧奨 未治療者",
                      "受診者のうち血圧・血糖・脂質のいずれかが受診勧奨判定値以上で、その項目の服薬が質問票で"
                      "「なし」かつ年度内に該当疾患のレセプトがない者（docs/rules.md §3、§1.4）"),
    "dkd_referral": ("糖尿病性腎症 受診勧奨対象者",
                     "国保 40–74歳のうち抽出区分 A・C・E（腎障害あり・未治療／治療中断、糖尿病・未治療／治療中断、"
                     "健診未受診の治療中断。docs/rules.md §5.3）"),
    "dkd_guidance": ("糖尿病性腎症 保健指導対象者",
                     "国保 40–74歳のうち抽出区分 B・D（腎障害ありで治療中、健診未受診で治療中・腎疾患レセプトあり。"
                     "docs/rules.md §5.3）"),
    "kouki_insured": ("後期高齢者 被保険者（75歳以上）", "年度中に後期高齢者医療に加入していた75歳以上"),
}
_IK_LABELS = {"ik_any": ("一体的実施 いずれかに該当", "下記の抽出条件のいずれかに該当する後期高齢者（実人数）")}
for _id, _name, _sec, _def in programs.IKKATSU_CRITERIA:
    _IK_LABELS[_id] = (f"一体的実施: {_name}", f"{_def}（{_sec}）")
TARGET_DEFINITIONS.update(_IK_LABELS)

#: What notebook 02 reads of the cache's person-level tables (`notebook.start(with_tables=TABLES)`): the
#: person_year columns of the district lists, the population and the target counts (`_person_flags`);
#: every indicator comes from the strata table (issue 17).
TABLES = {"person_year": (
    "fy", "muni_code", "district_code", "sex", "age", "age_band", "insurance", "full_year", "excluded_statutory",
    "has_kenshin", "guidance_target", "ref_any", "ref_bp", "ref_glucose", "ref_lipid", "med_bp", "med_glucose",
    "med_lipid", "claim_medical", "htn_claim", "dm_claim", "lipid_claim", "dkd_referral", "dkd_guidance",
    *_IK_LABELS)}

NO_DISTRICT_TEMPLATE = (
    "{muni_name}（{muni_code}）には地区のデータがありません（対象者表の「地区コード」が空欄、または地区マスタに"
    "登録がありません）。このノートブックの地区別の分析は行わず、市町村全体の集計のみを表示します。"
    "地区別に分析するには、対象者表に地区コード（district_code）を入れ、地区マスタ（districts.csv: "
    "市町村コード・地区コード・地区名）を用意してください。")


# ------------------------------------------------------------------------------------------------
# districts of a municipality

def district_list(districts: pd.DataFrame, person_year: pd.DataFrame, muni_code: str) -> pd.DataFrame:
    """Districts of one municipality: district_code, district_name, lat, lon (NaN when absent).

    Taken from the 地区マスタ; district codes found in the data but missing from the master are
    added with the code as name, so every person with a district is counted (docs/design.md §3).
    """
    muni_code = str(muni_code)
    d = districts if districts is not None else pd.DataFrame(columns=["muni_code", "district_code", "name"])
    d = d[d["muni_code"].astype(str) == muni_code] if len(d) else d
    out = pd.DataFrame({
        "district_code": d["district_code"].astype(str).to_numpy() if len(d) else np.array([], dtype=object),
        "district_name": d["name"].astype(str).to_numpy() if len(d) else np.array([], dtype=object),
        "lat": pd.to_numeric(d["lat"], errors="coerce").to_numpy() if "lat" in d and len(d) else np.nan,
        "lon": pd.to_numeric(d["lon"], errors="coerce").to_numpy() if "lon" in d and len(d) else np.nan,
    })
    py = person_year[person_year["muni_code"].astype(str) == muni_code]
    in_data = pd.unique(py["district_code"].astype(str))
    extra = sorted(set(in_data) - set(out["district_code"]) - {""})
    if extra:
        out = pd.concat([out, pd.DataFrame({"district_code": extra, "district_name": extra,
                                            "lat": np.nan, "lon": np.nan})], ignore_index=True)
    # keep districts with people in the data (a master row without anybody is not a district to analyse)
    out = out[out["district_code"].isin(in_data)]
    return out.sort_values("district_code").reset_index(drop=True)


def no_districts_message(muni_code: str, muni_name: str) -> str:
    """Japanese message for a municipality without district data (the notebook prints it)."""
    return NO_DISTRICT_TEMPLATE.format(muni_code=muni_code, muni_name=muni_name)


def _district_names(dlist: pd.DataFrame) -> pd.Series:
    return dlist.set_index("district_code")["district_name"]


# ------------------------------------------------------------------------------------------------
# indicator tables

def period_label(fys: Sequence[int]) -> str:
    """'R6年度' for one year, 'R4–R6年度（3年度合算）' for pooled years."""
    from hsutils.publish.plots import fy_label

    ys = sorted(int(f) for f in fys)
    short = [fy_label(y).split("\n")[0] for y in ys]
    if len(ys) == 1:
        return f"{short[0]}年度"
    return f"{short[0]}–{short[-1]}年度（{len(ys)}年度合算）"


def pooled_strata(strata: pd.DataFrame, fys: Iterable[int]) -> pd.DataFrame:
    """Strata summed over several fiscal years, labelled with the last year (fy = max(fys)).

    Pooling years is the usual way to get enough events for small areas; each person-year counts
    once per year (a person present in three years counts three times in the denominator).
    """
    fys = [int(f) for f in fys]
    s = strata[strata["fy"].isin(fys)]
    keys = [c for c in s.columns if c not in ("fy", "numerator", "denominator")]
    out = s.groupby(keys, as_index=False, observed=True, sort=True)[["numerator", "denominator"]].sum()
    out.insert(0, "fy", max(fys))
    return out


def _finish_table(t: pd.DataFrame, municipalities: pd.DataFrame, muni_code: str,
                  names: pd.Series | None, period: str, ids: Sequence[str]) -> pd.DataFrame:
    m = municipalities.drop_duplicates("muni_code").set_index("muni_code")
    order = {i: k for k, i in enumerate(ids)}
    # 地区不明 ("<muni_code>:") after the districts of each indicator × year (docs/rules.md §9.1)
    unknown = t["area_code"].astype("str").str.endswith(":")
    t = t.assign(_o=t["indicator_id"].map(order), _u=unknown.to_numpy())
    t = t.sort_values(["_o", "fy", "_u", "area_code"], kind="stable").drop(columns=["_o", "_u"])
    t["muni_code"] = muni_code
    t["muni_name"] = str(m["name"].get(muni_code, muni_code))
    t["medical_area"] = str(m["medical_area"].get(muni_code, "")) if "medical_area" in m else ""
    if names is not None:
        t["district_code"] = t["area_code"].astype("str").str.split(":").str[1].astype("str")
        t["district_name"] = t["district_code"].map(names).fillna(t["district_code"])
        t.loc[t["district_code"] == "", "district_name"] = UNKNOWN_DISTRICT
    else:
        t["district_code"] = ""
        t["district_name"] = TOTAL_LABEL
    t["period"] = period
    t["muni_rate"] = t["ref_rate"]
    return t[TABLE_COLUMNS + EXTRA_COLUMNS].reset_index(drop=True)


def district_indicator_table(strata: pd.DataFrame, municipalities: pd.DataFrame,
                             dlist: pd.DataFrame, muni_code: str, fys: Sequence[int],
                             indicator_ids: Sequence[str] | None = None, *, pooled: bool = False,
                             std_pop="H27", conf: float = 0.95,
                             suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """District × fy × indicator table against the municipality (docs/design.md §5).

    Crude rate (Wilson), age-adjusted rate (direct, 平成27年モデル人口, Dobson) and 標準化該当比
    with the municipality's own rates by sex × age band as reference (so `comparison` says
    whether the district differs from its municipality). `pooled=True` sums the fiscal years
    first (one row per indicator, fy = last year, `period` says which years).
    Columns: TABLE_COLUMNS + period, muni_rate (the municipality's rate, %), judgement,
    polarity, method, conf. A district whose expected count is 0 says 「比較なし（理由）」
    (`references.settle_comparison`, docs/rules.md §15.7). True counts are kept: pass through
    `suppress_district_table` before showing.

    Persons without a district code make one more row per indicator × year, 「地区不明」
    (district_code "", after the districts), computed like a district against the same municipal
    rates, so that 市 = Σ 地区 + 地区不明 holds and the suppression can use it (docs/rules.md §9.1).
    No such row where nobody of the indicator's denominator lacks a district (as for a district).
    """
    muni_code = str(muni_code)
    ids = list(indicator_ids or DEFAULT_INDICATORS)
    sm = strata[(strata["muni_code"] == muni_code) & strata["fy"].isin(list(fys))
                & strata["indicator_id"].isin(ids)]
    if pooled:
        sm, fy_arg, period = pooled_strata(sm, fys), max(fys), period_label(fys)
    else:
        fy_arg, period = list(fys), SINGLE_YEAR
    kw = dict(fy=fy_arg, indicators=ids, reference=sm, std_pop=std_pop, conf=conf,
              suppress_threshold=suppress_threshold)
    t = indicators.indicator_table(sm, "district", **kw)
    rest = sm[(sm["district_code"].astype("str") == "").to_numpy()]
    if rest["denominator"].sum() > 0:  # 地区不明 (docs/rules.md §9.1): the rows add up to the municipality
        u = indicators.indicator_table(rest, "muni", **kw)
        u["area_code"] = areas.unknown_district_code(muni_code)
        t = pd.concat([t.astype({"area_code": "str"}), u], ignore_index=True)
    if len(t):  # a district whose bands all have a municipal rate of 0: 比較なし（理由）, not an empty cell
        t = references.settle_comparison(t, None, sm, min_count=None)
    out = _finish_table(t, municipalities, muni_code, _district_names(dlist), period, ids)
    return hide_small_municipal_rate(out, sm, suppress_threshold)


def hide_small_municipal_rate(table: pd.DataFrame, muni_strata: pd.DataFrame,
                              threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """`muni_rate` left empty where the municipality's own numerator or denominator of that
    indicator × year is 1 … threshold−1 (docs/rules.md §9.2): with the municipal denominator shown
    elsewhere in the report, the rate would give the small count away. Charts then draw no
    municipal line (`ranking_figure`, `funnel_available`, `district_profile`)."""
    if table.empty:
        return table
    tot = muni_strata.groupby(["indicator_id", "fy"], observed=True)[["numerator", "denominator"]].sum()
    key = pd.MultiIndex.from_arrays([table["indicator_id"], table["fy"].astype(tot.index.levels[1].dtype)])
    num = tot["numerator"].reindex(key).to_numpy(float)
    den = tot["denominator"].reindex(key).to_numpy(float)
    small = np.asarray(privacy.is_small(num, threshold), bool) | np.asarray(privacy.is_small(den, threshold), bool)
    out = table.copy()
    out["muni_rate"] = pd.to_numeric(out["muni_rate"], errors="coerce").astype(float).where(~small)
    return out


def funnel_available(table: pd.DataFrame, indicator_id: str) -> bool:
    """A district funnel needs the municipal rate as its centre line: False when the rate is hidden
    (`hide_small_municipal_rate`) or the indicator is not in the table."""
    t = table[table["indicator_id"] == indicator_id]
    return bool(len(t)) and bool(np.isfinite(pd.to_numeric(t["muni_rate"], errors="coerce").to_numpy(float)).any())


def municipal_indicator_table(strata: pd.DataFrame, municipalities: pd.DataFrame, muni_code: str,
                              fys: Sequence[int], indicator_ids: Sequence[str] | None = None, *,
                              pooled: bool = False, std_pop="H27", conf: float = 0.95,
                              suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                              reference: pd.DataFrame | areas.ReferenceResolution | None = None,
                              min_count: int = references.MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """The municipality's own row per indicator against `reference`, same columns as
    `district_indicator_table` with district_name "市全体". `reference`: the run's reference
    (`ctx.reference`, an `areas.ReferenceResolution`): then every row it cannot be compared with says
    「比較なし（理由）」 (`references.settle_comparison`, docs/rules.md §15.7; `min_count` is the run's
    `suppress_threshold` for a reference pooled from few persons, §15.6), as in notebook 01's table;
    or plain strata of a reference area; default the prefecture, i.e. all strata."""
    muni_code = str(muni_code)
    ids = list(indicator_ids or DEFAULT_INDICATORS)

    def _select(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[frame["fy"].isin(list(fys)) & frame["indicator_id"].isin(ids)]
        return pooled_strata(frame, fys) if pooled else frame

    s = _select(strata)
    resolution = reference if isinstance(reference, areas.ReferenceResolution) else None
    if resolution is not None:
        reference = resolution.strata(strata, municipalities)
    ref = s if reference is None else _select(reference)
    fy_arg, period = (max(fys), period_label(fys)) if pooled else (list(fys), SINGLE_YEAR)
    t = indicators.indicator_table(s[s["muni_code"] == muni_code], "muni", fy=fy_arg, indicators=ids,
                                   reference=ref, std_pop=std_pop, conf=conf,
                                   suppress_threshold=suppress_threshold)
    if len(t):
        t = references.settle_comparison(t, resolution, ref, min_count=min_count)
    return _finish_table(t, municipalities, muni_code, None, period, ids)


# ------------------------------------------------------------------------------------------------
# suppression with district totals (docs/rules.md §9)

def _district_relations(table: pd.DataFrame) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """Additive relations of a district indicator table (docs/rules.md §9.1), positions into the
    table's rows followed by one virtual cell per indicator × fy × period (the municipal figure,
    which the report publishes elsewhere, so it acts as a shown total):
    * per indicator × fy × period: municipal figure = Σ rows (districts and 地区不明);
    * when the table also holds pooled rows (`pooled_strata`): a pooled row = Σ the single-year rows
      of the same indicator and district, and the pooled municipal figure = Σ the single-year ones
      (else a pooled row hidden only to protect another could be added up from the single years).
    Returns the number of virtual cells and the relations."""
    n = len(table)
    keys = table[["indicator_id", "fy", "period"]].astype(str).agg("|".join, axis=1)
    codes, uniques = pd.factorize(keys.to_numpy())
    rows = pd.Series(np.arange(n)).groupby(codes).indices
    relations = [(n + g, rows[g]) for g in range(len(uniques))]  # a handful of groups
    single = (table["period"] == SINGLE_YEAR).to_numpy()
    if single.any() and (~single).any():
        ind, fy = table["indicator_id"].astype(str).to_numpy(), table["fy"].to_numpy()
        dist = table["district_code"].astype(str).to_numpy()
        sel = np.flatnonzero(single)
        part_rows = {k: sel[v] for k, v in pd.Series(sel).groupby([ind[sel], dist[sel]]).indices.items()}
        for r in np.flatnonzero(~single):  # one relation per pooled row (indicators × districts)
            parts = part_rows.get((ind[r], dist[r]), np.array([], dtype=np.int64))
            parts = parts[fy[parts] <= fy[r]]
            relations.append((int(r), parts))
        group_of = dict(zip(uniques, range(len(uniques))))
        for g, key in enumerate(uniques):
            i_id, g_fy, period = key.split("|", 2)
            if period == SINGLE_YEAR:
                continue
            parts = [n + group_of[k] for k in uniques if k.startswith(f"{i_id}|") and k.endswith(f"|{SINGLE_YEAR}")
                     and int(k.split("|")[1]) <= int(g_fy)]
            relations.append((n + g, np.array(parts, dtype=np.int64)))
    return len(uniques), relations


def _hidden_counts(table: pd.DataFrame, col: str, relations, n_virtual: int, threshold: int) -> np.ndarray:
    values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
    virtual = np.zeros(n_virtual)
    for total, parts in relations:  # the virtual cells: the municipal figure of each group
        if total >= len(table) and np.all(parts < len(table)):
            virtual[total - len(table)] = np.nansum(values[parts])
    # the municipal figures are published elsewhere: they cannot be hidden here (fixed)
    fixed = np.r_[np.zeros(len(table), dtype=bool), np.ones(n_virtual, dtype=bool)]
    return privacy.suppress_relations(np.concatenate([values, virtual]), relations, threshold,
                                      fixed=fixed)[: len(table)]


def _district_mask(table: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells to hide in a district indicator table and the row flag (docs/rules.md §9, §9.1):
    primary and secondary suppression (`privacy.suppress_relations`) over `_district_relations`, so a
    hidden row (地区不明 included) is never the only one hidden in a sum the report publishes."""
    n_virtual, relations = _district_relations(table)
    hid_num = _hidden_counts(table, "numerator", relations, n_virtual, threshold)
    hid_den = _hidden_counts(table, "denominator", relations, n_virtual, threshold)
    row = hid_num | hid_den
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    mask["numerator"] = hid_num
    mask["denominator"] = hid_den
    for c in _DERIVED:
        if c in mask:
            mask[c] = row
    return mask, row | table["suppressed"].fillna(False).to_numpy(bool)


def suppress_district_table(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee version of a district indicator table: numerators/denominators 1…threshold−1
    and, per indicator × fy × period, the next-smallest row when exactly one is hidden
    (secondary suppression; the rows, 地区不明 included, add up to the municipality:
    docs/rules.md §9.1) are shown as "‐", together with every rate, interval, ratio and
    judgement derived from them (docs/rules.md §9, docs/design.md §6). `suppressed` is True on those rows."""
    mask, row = _district_mask(table, threshold)
    out = privacy.apply_suppression(table, mask)
    out["suppressed"] = row
    return out


def masked_district_table(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The cells `suppress_district_table` hides, as NaN (numbers) or None (texts) for the charts,
    the priority score and the text summaries, so that they hide exactly what the table hides
    (secondary suppression included); `suppressed` is the same row flag."""
    mask, row = _district_mask(table, threshold)
    out = privacy.apply_suppression(table, mask, mark=None)
    for col in mask.columns[mask.to_numpy().any(axis=0)]:
        if pd.api.types.is_numeric_dtype(table[col]):
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["suppressed"] = row
    return out


def unknown_rows(table: pd.DataFrame) -> np.ndarray:
    """The 地区不明 rows of a district table (docs/rules.md §9.1): no place, so no map polygon,
    no rank, no funnel point and no priority score."""
    return ((table["district_code"].astype("str") == "")
            & (table["district_name"].astype("str") == UNKNOWN_DISTRICT)).to_numpy()


def suppress_wide_counts(table: pd.DataFrame, count_cols: Sequence[str], *, label_col: str = "district_name",
                         total_label: str | None = TOTAL_LABEL,
                         derived: Mapping[str, Sequence[str]] | None = None,
                         threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """A per-district count table (one row per district, optionally a total row whose
    `label_col` is `total_label`) with counts 1…threshold−1 hidden; with a total row, a column
    in which exactly one district is hidden also hides its next-smallest district, so nothing
    can be recovered by subtraction (docs/rules.md §9). `derived` maps a count column to the columns
    computed from it (hidden with it). Adds `suppressed` (True where a cell was hidden)."""
    counts = table.set_index(label_col)[list(count_cols)]
    has_total = total_label is not None and total_label in counts.index
    if has_total:
        hidden = privacy.secondary_suppress(counts.T, total_col=total_label, threshold=threshold).T
    else:
        hidden = privacy.is_small(counts, threshold)
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for c in count_cols:
        mask[c] = hidden[c].to_numpy(bool)
        for d in (derived or {}).get(c, []):
            mask[d] = mask[d].to_numpy() | hidden[c].to_numpy(bool)
    out = privacy.apply_suppression(table, mask)
    out["suppressed"] = mask.to_numpy().any(axis=1)
    return out


# ------------------------------------------------------------------------------------------------
# districts at a glance

def _muni_rows(person_year: pd.DataFrame, muni_code: str, fy: int) -> pd.DataFrame:
    py = person_year
    return py[(py["muni_code"].astype(str) == str(muni_code)) & (py["fy"] == int(fy))]


def _district_key(rows: pd.DataFrame, dlist: pd.DataFrame) -> pd.Series:
    """District name per row (`areas.district_label_per_row` with the names of `dlist`); people
    without a district → 地区不明 (so totals re-add)."""
    muni = rows["muni_code"].astype("str")
    master = pd.DataFrame({"muni_code": muni.iloc[0] if len(muni) else "",
                           "district_code": dlist["district_code"].astype("str"),
                           "name": dlist["district_name"].astype("str")})
    return areas.district_label_per_row(rows, master)


def population_by_district(person_year: pd.DataFrame, dlist: pd.DataFrame, muni_code: str, fy: int,
                           insurance: str | None = None) -> pd.DataFrame:
    """Insured persons by district × sex × age band (for `plots.pyramid_small_multiples`):
    district_name, sex (1/2), age_band, count. `insurance` "国保"/"後期" or None (both)."""
    rows = _muni_rows(person_year, muni_code, fy)
    if insurance:
        rows = rows[rows["insurance"] == insurance]
    df = pd.DataFrame({"district_name": _district_key(rows, dlist).to_numpy(),
                       "sex": rows["sex"].to_numpy(), "age_band": rows["age_band"].astype(str).to_numpy()})
    out = df.groupby(["district_name", "sex", "age_band"], as_index=False).size().rename(columns={"size": "count"})
    order = list(dlist["district_name"]) + [UNKNOWN_DISTRICT]
    out["district_name"] = pd.Categorical(out["district_name"], categories=order, ordered=True)
    out = out.sort_values(["district_name", "age_band", "sex"]).reset_index(drop=True)
    out["district_name"] = out["district_name"].astype(str)
    return out


def _person_flags(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per person-year flags used by the district counts (docs/rules.md §1, §3, §5, §6, §7.1)."""
    b = lambda c: indicators._b(rows, c)  # noqa: E731 - bool column, missing -> False
    target = indicators.kokuho_target(rows)
    part = indicators.participants(rows)
    age = rows["age"].to_numpy()
    kokuho = indicators._eq(rows, "insurance", "国保") & (age >= 40) & (age <= 74)
    kouki = indicators.kouki(rows)
    untreated = ((b("ref_bp") & ~b("med_bp") & ~b("htn_claim"))
                 | (b("ref_glucose") & ~b("med_glucose") & ~b("dm_claim"))
                 | (b("ref_lipid") & ~b("med_lipid") & ~b("lipid_claim")))
    flags = {
        "kokuho_insured": kokuho,
        "kenshin_target": target,
        "kenshin_participants": part,
        "hokenshido_target": part & b("guidance_target"),
        "ref_no_visit": part & b("ref_any") & ~b("claim_medical"),
        "ref_untreated": part & untreated,
        "dkd_referral": kokuho & b("dkd_referral"),
        "dkd_guidance": kokuho & b("dkd_guidance"),
        "kouki_insured": kouki,
        "ik_any": kouki & b("ik_any"),
    }
    for ik_id in _IK_LABELS:
        if ik_id != "ik_any":
            flags[ik_id] = kouki & b(ik_id)
    return flags


def program_targets(person_year: pd.DataFrame, dlist: pd.DataFrame, muni_code: str, fy: int,
                    total: bool = True) -> pd.DataFrame:
    """Counts per district of the program targets (TARGET_DEFINITIONS; docs/rules.md §1, §3, §5, §6).

    One row per district (plus 地区不明 when some people have no district, plus 市全体 when
    `total`), columns district_code, district_name and the count columns (int). True counts:
    use `suppress_wide_counts(..., total_row=市全体)` before showing.
    """
    rows = _muni_rows(person_year, muni_code, fy)
    flags = _person_flags(rows)
    key = _district_key(rows, dlist).to_numpy()
    frame = pd.DataFrame({k: v.astype(np.int64) for k, v in flags.items()})
    frame["district_name"] = key
    out = frame.groupby("district_name", sort=False).sum()
    order = [n for n in list(dlist["district_name"]) + [UNKNOWN_DISTRICT] if n in out.index]
    out = out.reindex(order)
    names = _district_names(dlist)
    codes = pd.Series(names.index, index=names.to_numpy())
    out.insert(0, "district_code", [codes.get(n, "") for n in out.index])
    if total:
        tot = out.drop(columns="district_code").sum()
        out.loc[TOTAL_LABEL] = pd.concat([pd.Series({"district_code": ""}), tot])
    out.index.name = "district_name"
    cols = list(flags)
    out[cols] = out[cols].astype(np.int64)
    return out.reset_index()[["district_code", "district_name"] + cols]


def district_overview(person_year: pd.DataFrame, dlist: pd.DataFrame, muni_code: str, fy: int) -> pd.DataFrame:
    """Districts at a glance: 国保 and 後期 insured, 特定健診 対象者・受診者・受診率 (%), 後期健診受診者
    (docs/rules.md §7.1). Rows: districts (+ 地区不明) + 市全体."""
    rows = _muni_rows(person_year, muni_code, fy)
    key = _district_key(rows, dlist).to_numpy()
    kouki = indicators.kouki(rows)
    frame = pd.DataFrame({
        "district_name": key,
        "kokuho_insured": (indicators._eq(rows, "insurance", "国保")).astype(np.int64),
        "kouki_insured": kouki.astype(np.int64),
        "kenshin_target": indicators.kokuho_target(rows).astype(np.int64),
        "kenshin_participants": indicators.participants(rows).astype(np.int64),
        "kouki_participants": (kouki & indicators._b(rows, "has_kenshin")).astype(np.int64),
    })
    out = frame.groupby("district_name", sort=False).sum()
    out = out.reindex([n for n in list(dlist["district_name"]) + [UNKNOWN_DISTRICT] if n in out.index])
    out.loc[TOTAL_LABEL] = out.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["kenshin_rate"] = 100 * out["kenshin_participants"] / out["kenshin_target"].replace(0, np.nan)
        out["kouki_kenshin_rate"] = 100 * out["kouki_participants"] / out["kouki_insured"].replace(0, np.nan)
    out.index.name = "district_name"
    return out.reset_index()


OVERVIEW_LABELS = {"district_name": "地区", "kokuho_insured": "国保 被保険者数",
                   "kouki_insured": "後期 被保険者数", "kenshin_target": "特定健診 対象者",
                   "kenshin_participants": "特定健診 受診者", "kenshin_rate": "特定健診 受診率(%)",
                   "kouki_participants": "後期健診 受診者", "kouki_kenshin_rate": "後期健診 受診率(%)"}


# ------------------------------------------------------------------------------------------------
# participation by district × sex × age band and the gap to the target (docs/rules.md §7.1, §7.6)

SEX_LABELS = vocab.SEX_LABELS_LONG


def participation_by_group(strata: pd.DataFrame, dlist: pd.DataFrame, muni_code: str, fy) -> pd.DataFrame:
    """特定健診 対象者 and 受診者 by district × sex × age band from the strata (indicator
    kenshin_rate, docs/rules.md §7.1): district_code, district_name, sex, sex_label, age_band, group
    ("男性 40-44"), participants, targets, rate (fraction). `fy`: one fiscal year, or a list
    (summed: pooled person-years, for the heat table of small districts)."""
    fys = [int(fy)] if np.ndim(fy) == 0 else [int(f) for f in fy]
    s = strata[(strata["muni_code"] == str(muni_code)) & strata["fy"].isin(fys)
               & (strata["indicator_id"] == "kenshin_rate") & (strata["district_code"] != "")]
    g = s.groupby(["district_code", "sex", "age_band"], as_index=False)[["numerator", "denominator"]].sum()
    g = g.rename(columns={"numerator": "participants", "denominator": "targets"})
    g["district_name"] = g["district_code"].map(_district_names(dlist)).fillna(g["district_code"])
    g["sex_label"] = g["sex"].map(SEX_LABELS)
    g["group"] = g["sex_label"] + " " + g["age_band"].astype(str)
    with np.errstate(divide="ignore", invalid="ignore"):
        g["rate"] = g["participants"] / g["targets"].replace(0, np.nan)
    order = {c: i for i, c in enumerate(dlist["district_code"])}
    g = g.assign(_o=g["district_code"].map(order)).sort_values(["_o", "sex", "age_band"]).drop(columns="_o")
    return g[["district_code", "district_name", "sex", "sex_label", "age_band", "group",
              "participants", "targets", "rate"]].reset_index(drop=True)


def participation_gap(groups: pd.DataFrame, target_rate: float = PARTICIPATION_TARGET) -> pd.DataFrame:
    """Additional 受診者 if each group reached the target rate (docs/rules.md §7.6: 60 % for 市町村国保):
    additional = max(target_rate − current rate, 0) × 対象者 = max(target_rate × targets −
    participants, 0). Adds `gap_points` (percentage points below the target, ≥ 0) and
    `additional` (persons, float). Groups already at or above the target add 0."""
    g = groups.copy()
    rate = g["participants"] / g["targets"].where(g["targets"] > 0)
    g["gap_points"] = (100 * (target_rate - rate)).clip(lower=0)
    g["additional"] = (target_rate * g["targets"] - g["participants"]).clip(lower=0).astype(float)
    return g


def small_groups(groups: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> np.ndarray:
    """Groups whose 受診者 or 対象者 is 1…threshold−1: their rate, gap and additional count
    would reveal a small count, so they are shown as "‐" and left out of rankings (docs/rules.md §9)."""
    return privacy.small_rows(groups, ["participants", "targets"], threshold)


def top_gap_groups(gap: pd.DataFrame, n: int = 10, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The n groups where reaching the target adds the most 受診者 (largest `additional`),
    among the groups that can be shown (`small_groups` left out; docs/rules.md §9)."""
    shown = gap[~small_groups(gap, threshold)]
    return shown.sort_values(["additional", "targets"], ascending=[False, False]).head(n).reset_index(drop=True)


def heat_frame(groups: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Rows for `plots.heat_table` (district × sex・age group, rate as a fraction) with the rate
    of small groups set to NaN (shown "‐")."""
    h = groups[["district_name", "group", "rate"]].copy()
    h["rate"] = h["rate"].where(~small_groups(groups, threshold))
    return h


GAP_LABELS = {"district_name": "地区", "sex_label": "性別", "age_band": "年齢", "targets": "対象者",
              "participants": "受診者", "rate": "受診率", "gap_points": "目標との差(ポイント)",
              "additional": "目標達成時の受診者増(人)"}


def display_gap_table(top: pd.DataFrame) -> pd.DataFrame:
    """Japanese view of `top_gap_groups` (rates in %, additional rounded)."""
    v = top[list(GAP_LABELS)].copy()
    v["rate"] = (100 * v["rate"]).round(1)
    v["gap_points"] = v["gap_points"].round(1)
    v["additional"] = v["additional"].round(0).astype(int)
    return v.rename(columns=GAP_LABELS)


def gap_by_district(gap: pd.DataFrame) -> pd.DataFrame:
    """Per district: targets, participants, additional (sum over sex × age groups), share of the
    municipal total additional (0–1)."""
    d = gap.groupby(["district_code", "district_name"], as_index=False, sort=False)[
        ["targets", "participants", "additional"]].sum()
    d["rate"] = d["participants"] / d["targets"].where(d["targets"] > 0)
    total = d["additional"].sum()
    d["additional_share"] = d["additional"] / total if total > 0 else 0.0
    return d


# ------------------------------------------------------------------------------------------------
# map: tiles from district lat/lon, or boundaries from a GeoJSON file

def district_tiles(dlist: pd.DataFrame, population: pd.Series | None = None) -> pd.DataFrame | None:
    """Tile layout (code, name, col, row) of the districts from the lat/lon of the 地区マスタ
    (`hsutils.inputs.regions.tile_grid_layout`); None when no district has a position."""
    from hsutils.inputs import regions

    if dlist.empty or dlist[["lat", "lon"]].isna().all().all():
        return None
    m = pd.DataFrame({"muni_code": dlist["district_code"].astype(str), "name": dlist["district_name"],
                      "pref_code": "00", "medical_area_code": "-", "medical_area": "-",
                      "lat": dlist["lat"], "lon": dlist["lon"],
                      "population": (dlist["district_code"].map(population).fillna(0).to_numpy()
                                     if population is not None else 0)})
    tiles = regions.tile_grid_layout(m)
    # the layout pads codes like municipal codes ("01" → "00001"); the map matches the district's own code
    tiles["code"] = dlist["district_code"].astype(str).to_numpy()
    return tiles


def load_district_boundaries(path, dlist: pd.DataFrame) -> pd.DataFrame:
    """District polygons from a GeoJSON FeatureCollection → DataFrame(code, name, geometry).

    Each feature's properties must hold the district code under `district_code` (or `code`,
    `地区コード`), the same codes as the 地区マスタ; a name under `district_name` / `name` /
    `地区名` is optional (the master's name is used otherwise). Geometry: Polygon or
    MultiPolygon in longitude/latitude (WGS84 / JGD2011). Features of the same code are merged.
    """
    import shapely
    from shapely.geometry import shape

    path = Path(path)
    if not path.exists():
        raise DataError(f"地区境界ファイル {path} が見つかりません。")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"地区境界ファイル {path} を GeoJSON として読めません（{e}）。") from None
    codes, names, geoms = [], [], []
    for feat in data.get("features", []):  # one feature per district (tens)
        props = feat.get("properties") or {}
        code = next((props[k] for k in ("district_code", "code", "地区コード") if props.get(k) is not None), None)
        if code is None or feat.get("geometry") is None:
            continue
        codes.append(str(code).strip())
        names.append(next((str(props[k]) for k in ("district_name", "name", "地区名") if props.get(k)), None))
        geoms.append(shape(feat["geometry"]))
    if not codes:
        raise DataError(f"地区境界ファイル {path} に地区コード（プロパティ district_code）を持つ地物がありません。")
    f = pd.DataFrame({"code": codes, "fname": names, "geometry": geoms})
    f = f[f["code"].isin(set(dlist["district_code"].astype(str)))]
    if f.empty:
        raise DataError(f"地区境界ファイル {path} の地区コードが地区マスタのどれとも一致しません"
                        f"（地区マスタの例: {', '.join(dlist['district_code'].astype(str).head(3))}）。")
    merged = f.groupby("code", sort=True).agg(
        fname=("fname", "first"), geometry=("geometry", lambda g: shapely.union_all(list(g))))
    names_master = _district_names(dlist)
    name = pd.Series(merged.index.map(names_master), index=merged.index).fillna(merged["fname"])
    return pd.DataFrame({"code": merged.index.astype(str),
                         "name": name.fillna(pd.Series(merged.index, index=merged.index)).astype(str).to_numpy(),
                         "geometry": list(merged["geometry"])}).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# priority districts

def priority_scores(table: pd.DataFrame, gap_districts: pd.DataFrame, targets: pd.DataFrame,
                    weights: Mapping[str, float] | None = None, *,
                    suppress_threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Transparent priority score per district with the reasons spelled out.

    score = w_kenshin_low × [特定健診実施率が市より有意に低い]
          + w_worse_indicator × (number of other indicators judged 悪い vs the municipality)
          + w_participation_gap × (district's additional 受診者 at the target ÷ municipal total)
          + w_untreated × (district's 受診勧奨 未治療者 ÷ municipal total)

    `table`: one row per district × indicator (one fy/period) from `district_indicator_table`;
    judgements come from the 標準化該当比 CI (docs/design.md §5). `gap_districts`: `gap_by_district`.
    `targets`: `program_targets` (districts only are used). Suppression is respected: a
    judgement from a suppressed row (counts 1–9) and a share from a count 1–9 are not used
    (component 0, noted in the reasons), so the score never reveals a small count (docs/rules.md §9).
    Returns district_code, district_name, score, rank, the components and `reasons` (Japanese).
    """
    w = {**DEFAULT_PRIORITY_WEIGHTS, **(weights or {})}
    t = table[~unknown_rows(table)].copy()  # 地区不明 is no place to start (docs/rules.md §9.1)
    usable = ~t["suppressed"].fillna(False).astype(bool)
    names = t.drop_duplicates("district_code").set_index("district_code")["district_name"]
    ken = t[(t["indicator_id"] == "kenshin_rate") & usable]
    kenshin_low = ken.set_index("district_code")["comparison"].eq(stats.SIGNIFICANTLY_LOWER)
    worse = t[(t["indicator_id"] != "kenshin_rate") & usable & (t["judgement"] == stats.JUDGEMENT_WORSE)]
    worse_list = worse.groupby("district_code")["indicator_name"].agg(lambda s: "、".join(s))
    n_worse = worse.groupby("district_code").size()

    gd = gap_districts.set_index("district_code")
    gap_small = pd.Series(privacy.small_rows(gd, ["targets", "participants"], suppress_threshold), index=gd.index)
    gap_share = gd["additional_share"].where(~gap_small, 0.0)
    td = targets[targets["district_code"] != ""].set_index("district_code")
    unt = td["ref_untreated"].astype(float)
    unt_total = float(unt.sum())
    unt_small = privacy.is_small(unt, suppress_threshold)
    unt_share = (unt / unt_total if unt_total > 0 else unt * 0.0).where(~unt_small, 0.0)

    codes = list(names.index)
    out = pd.DataFrame({"district_code": codes, "district_name": names.reindex(codes).to_numpy()})
    out["kenshin_low"] = out["district_code"].map(kenshin_low).fillna(False).astype(bool).astype(int)
    out["n_worse"] = out["district_code"].map(n_worse).fillna(0).astype(int)
    out["worse_indicators"] = out["district_code"].map(worse_list).astype(object).fillna("")
    out["gap_additional"] = out["district_code"].map(gd["additional"].where(~gap_small)).round(0)
    out["gap_share"] = out["district_code"].map(gap_share).fillna(0.0)
    out["untreated"] = out["district_code"].map(unt).astype(float)
    out["untreated_share"] = out["district_code"].map(unt_share).fillna(0.0)
    out["score"] = (w["kenshin_low"] * out["kenshin_low"] + w["worse_indicator"] * out["n_worse"]
                    + w["participation_gap"] * out["gap_share"] + w["untreated"] * out["untreated_share"])
    out["score"] = out["score"].round(2)
    out["gap_share"] = out["gap_share"].round(3)
    out["untreated_share"] = out["untreated_share"].round(3)
    out = out.sort_values(["score", "district_code"], ascending=[False, True]).reset_index(drop=True)
    out["rank"] = out["score"].rank(method="min", ascending=False).astype(int)
    out["reasons"] = _priority_reasons(out, gap_small.reindex(out["district_code"]).fillna(False).to_numpy(),
                                       unt_small.reindex(out["district_code"]).fillna(False).to_numpy())
    cols = ["rank", "district_code", "district_name", "score", "kenshin_low", "n_worse", "worse_indicators",
            "gap_additional", "gap_share", "untreated", "untreated_share", "reasons"]
    return out[cols]


def _priority_reasons(out: pd.DataFrame, gap_small: np.ndarray, unt_small: np.ndarray) -> list[str]:
    reasons = []
    for i, r in enumerate(out.itertuples(index=False)):  # one line per district (tens)
        parts = []
        if r.kenshin_low:
            parts.append("特定健診実施率が市より有意に低い")
        if r.n_worse:
            parts.append(f"市より有意に悪い指標: {r.worse_indicators}")
        if gap_small[i]:
            parts.append("受診者増の見込み: 少数のため計算に含めず")
        elif r.gap_share > 0:
            parts.append(f"目標受診率で受診者が約{r.gap_additional:,.0f}人増（市全体の増加分の{r.gap_share:.0%}）")
        if unt_small[i]:
            parts.append("受診勧奨 未治療者: 少数のため計算に含めず")
        elif r.untreated_share > 0:
            parts.append(f"受診勧奨 未治療者 {r.untreated:,.0f}人（市全体の{r.untreated_share:.0%}）")
        reasons.append("；".join(parts) if parts else "特記事項なし")
    return reasons


PRIORITY_LABELS = {"rank": "順位", "district_code": "地区コード", "district_name": "地区",
                   "score": "優先度スコア", "kenshin_low": "受診率が有意に低い(1/0)",
                   "n_worse": "有意に悪い指標の数", "worse_indicators": "有意に悪い指標",
                   "gap_additional": "目標受診率での受診者増(人)", "gap_share": "受診者増の市内割合",
                   "untreated": "受診勧奨 未治療者(人)", "untreated_share": "未治療者の市内割合",
                   "reasons": "理由"}


def priority_weights_table(weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """The weights in use with their meaning (shown in the notebook)."""
    w = {**DEFAULT_PRIORITY_WEIGHTS, **(weights or {})}
    return pd.DataFrame({"要素": list(PRIORITY_WEIGHT_LABELS.values()),
                         "重み": [w[k] for k in PRIORITY_WEIGHT_LABELS], "キー": list(PRIORITY_WEIGHT_LABELS)})


# ------------------------------------------------------------------------------------------------
# profile (spine chart) and text helpers

def district_profile(table: pd.DataFrame, district_code: str) -> pd.DataFrame:
    """Rows for `plots.spine_chart`: one district against its municipality across indicators.

    area_value = the district's crude rate (%), benchmark = the municipality's rate, min/q25/q75/
    max over the districts (suppressed rows excluded), comparison = the 標準化該当比 judgement,
    numerator as the count (1–9 → "‐")."""
    t = table[~unknown_rows(table)].copy()  # the range is over the districts (docs/rules.md §9.1)
    t["_v"] = pd.to_numeric(t["crude_rate"], errors="coerce").where(~t["suppressed"].astype(bool))
    spread = t.groupby("indicator_id")["_v"].describe()[["min", "25%", "75%", "max"]]
    spread.columns = ["min", "q25", "q75", "max"]
    one = t[t["district_code"] == str(district_code)].set_index("indicator_id")
    centred = np.isfinite(pd.to_numeric(one["muni_rate"], errors="coerce").to_numpy(float))  # §9.2
    one = one[centred]
    order = [i for i in pd.unique(t["indicator_id"]) if i in one.index]
    one = one.reindex(order)
    return pd.DataFrame({
        "indicator_id": order, "indicator_name": one["indicator_name"].to_numpy(),
        "area_value": one["crude_rate"].where(~one["suppressed"].astype(bool)).to_numpy(float),
        "benchmark": one["muni_rate"].to_numpy(float),
        "min": spread["min"].reindex(order).to_numpy(), "q25": spread["q25"].reindex(order).to_numpy(),
        "q75": spread["q75"].reindex(order).to_numpy(), "max": spread["max"].reindex(order).to_numpy(),
        "comparison": one["comparison"].to_numpy(object), "polarity": one["polarity"].to_numpy(object),
        "numerator": one["numerator"].to_numpy(),
    })


def significance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per indicator: the districts judged 有意に高い / 有意に低い against the municipality
    (suppressed rows and 地区不明 left out, docs/rules.md §9.1), as Japanese text for 読み取りのポイント."""
    t = table[~table["suppressed"].astype(bool) & ~unknown_rows(table)]
    rows = []
    for ind_id, g in t.groupby("indicator_id", sort=False):  # a handful of indicators
        hi = "、".join(g.loc[g["comparison"] == stats.SIGNIFICANTLY_HIGHER, "district_name"])
        lo = "、".join(g.loc[g["comparison"] == stats.SIGNIFICANTLY_LOWER, "district_name"])
        rows.append({"indicator_id": ind_id, "indicator_name": g["indicator_name"].iloc[0],
                     "有意に高い地区": hi or "なし", "有意に低い地区": lo or "なし"})
    return pd.DataFrame(rows)


def display_indicator_table(shown: pd.DataFrame) -> pd.DataFrame:
    """Compact Japanese view of a suppressed district table for the notebook (one fy/period)."""
    cols = {"district_name": "地区", "indicator_name": "指標", "numerator": "分子", "denominator": "分母",
            "crude_rate": "粗率(%)", "adj_rate": "年齢調整率(%)", "sr": "標準化該当比",
            "sr_lower": "下限", "sr_upper": "上限", "comparison": "市との比較", "muni_rate": "市全体(%)"}
    v = shown[list(cols)].rename(columns=cols).copy()
    for c in ("粗率(%)", "年齢調整率(%)", "市全体(%)"):
        v[c] = v[c].map(lambda x: f"{x:.1f}" if isinstance(x, (int, float)) and pd.notna(x) else x)
    for c in ("標準化該当比", "下限", "上限"):
        v[c] = v[c].map(lambda x: f"{x:.2f}" if isinstance(x, (int, float)) and pd.notna(x) else x)
    return v


# ------------------------------------------------------------------------------------------------
# figures (thin wrappers around hsutils.publish.plots, shared by the static sections and the widgets)

def _one_indicator(table: pd.DataFrame, indicator_id: str) -> pd.DataFrame:
    t = table[table["indicator_id"] == indicator_id].copy()
    if t.empty:
        raise DataError(f"指標 {indicator_id} は地区別の表にありません。")
    return t


#: Chart note when the indicator has a 地区不明 row, left out of the chart (docs/rules.md §9.1).
UNKNOWN_NOTE = "地区不明（地区コードのない人）は{chart}に含めず、表の「地区不明」の行に載せています"


def _districts_only(t: pd.DataFrame, chart: str) -> tuple[pd.DataFrame, list[str]]:
    """One indicator's rows without 地区不明, and the note saying so when there was such a row."""
    unknown = unknown_rows(t)
    return t[~unknown], ([UNKNOWN_NOTE.format(chart=chart)] if unknown.any() else [])


def map_figure(table: pd.DataFrame, indicator_id: str, footer: str, *, tiles: pd.DataFrame | None = None,
               boundaries: pd.DataFrame | None = None, muni_name: str = "",
               suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """District map of an indicator's crude rate (%): a choropleth from `boundaries`
    (`load_district_boundaries`) or tiles placed by the districts' lat/lon (`district_tiles`).
    Districts from counts 1–9 are grey (docs/rules.md §9)."""
    from hsutils.publish import plots

    t, unknown_note = _districts_only(_one_indicator(table, indicator_id), "地図")
    if unknown_note:  # (the map takes no notes: the footer says it)
        footer = f"{footer} ｜ ※{unknown_note[0]}"
    v = pd.DataFrame({"code": t["district_code"], "name": t["district_name"], "value": t["crude_rate"],
                      "count": np.where(t["suppressed"].astype(bool), 1, t["denominator"])})
    name = t["indicator_name"].iloc[0]
    title = f"{muni_name} 地区別 {name}（{t['period'].iloc[0]}）"
    cmap = "Blues" if indicators.REGISTRY[indicator_id].polarity == "higher_better" else "Oranges"
    note = ("地区境界ファイルがないため、地区を同じ大きさのタイルで表示しています（配置は地区マスタの緯度・経度による概略）"
            if boundaries is None else None)
    return plots.choropleth(v, boundaries, value_col="value", title=title, footer=footer, tiles=tiles, count_col="count",
                            value_fmt="{:.1f}", legend_title=f"{name}（%）", cmap=cmap,
                            suppress_threshold=suppress_threshold, fallback_note=note).figure


def ranking_figure(table: pd.DataFrame, indicator_id: str, footer: str, *, muni_name: str = "",
                   suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Ranked bars of the districts' crude rates with 95 % CI, the municipal rate as the line and
    the colours of the 標準化該当比 judgement against the municipality (docs/design.md §5, §10)."""
    from hsutils.publish import plots

    t, unknown_note = _districts_only(_one_indicator(table, indicator_id), "順位")
    t = t.assign(count=np.where(t["suppressed"].astype(bool), 1, t["denominator"]))
    name = t["indicator_name"].iloc[0]
    bench = float(t["muni_rate"].iloc[0])
    notes = [] if np.isfinite(bench) else [f"{muni_name}全体の値は人数が{suppress_threshold}人未満のため表示しません"]
    notes += unknown_note
    return plots.ranked_bar(t, value_col="crude_rate", lower_col="crude_lower", upper_col="crude_upper",
                            benchmark=bench if np.isfinite(bench) else None, notes=notes,
                            title=f"{muni_name} 地区別 {name}（{t['period'].iloc[0]}）", footer=footer,
                            label_col="district_name", polarity=t["polarity"].iloc[0], count_col="count",
                            x_label=f"{name}（%）", benchmark_label=f"{muni_name}全体",
                            suppress_threshold=suppress_threshold).figure


def funnel_figure(table: pd.DataFrame, indicator_id: str, footer: str, *, muni_name: str = "",
                  references=(), notes=(), suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Funnel plot of the districts' proportions around the municipal rate with 95 % / 99.8 %
    limits (docs/methods.md §7, Spiegelhalter 2005). Crude proportions: the limits do not adjust
    for age (the table's 標準化該当比 does). `references`, `notes`: 県・同規模・国 as lines
    (`hsutils.analysis.references.lines_for_chart`, fractions)."""
    from hsutils.publish import plots

    t, unknown_note = _districts_only(_one_indicator(table, indicator_id), "ファネルプロット")
    t = t[~t["suppressed"].astype(bool)].copy()
    t["value"] = pd.to_numeric(t["crude_rate"], errors="coerce") / 100
    target = float(_one_indicator(table, indicator_id)["muni_rate"].iloc[0]) / 100
    name = _one_indicator(table, indicator_id)["indicator_name"].iloc[0]
    period = _one_indicator(table, indicator_id)["period"].iloc[0]
    return plots.funnel_plot(t, value_col="value", denom_col="denominator", target=target, title=f"{muni_name} 地区別 {name}：ファネルプロット（{period}）",
                             footer=footer, label_col="district_name", count_col="numerator",
                             polarity=indicators.REGISTRY[indicator_id].polarity, y_label=f"{name}",
                             target_label=f"{muni_name}全体", references=references,
                             notes=[*notes, *unknown_note], suppress_threshold=suppress_threshold).figure


def explorer(ctx, table: pd.DataFrame, district_list: pd.DataFrame, first_indicator: str, fy_text, *,
             tiles: pd.DataFrame | None = None, boundaries: pd.DataFrame | None = None, muni_name: str = "",
             reference_lines: pd.DataFrame | None = None,
             suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Panel (`hsutils.publish.widgets.Panel`, JupyterLab by hand only): choose an indicator and a
    district; the district map (when tiles or boundaries exist), the ranking and the district's
    profile (with the 県・同規模・国 marks of `reference_lines`) are drawn again."""
    import ipywidgets as w

    from hsutils.publish import widgets

    names = table.drop_duplicates("indicator_id")[["indicator_name", "indicator_id"]]
    # one option per indicator (a few dozen), not per person
    controls = {"indicator_id": w.Dropdown(options=list(names.itertuples(index=False, name=None)),
                                           value=first_indicator, description="指標"),
                "district_code": w.Dropdown(options=list(zip(district_list["district_name"],
                                                             district_list["district_code"])),
                                            description="地区")}

    def render(indicator_id, district_code):
        foot = ctx.footer(indicators.population_of(indicator_id), fy=fy_text, lookback=[indicator_id])
        # the profile shows every indicator of the table: their populations (docs/rules.md §16)
        ids = table["indicator_id"].unique()
        profile_foot = ctx.footer(indicators.population_of(ids), fy=fy_text, lookback=ids)
        figs = []
        if boundaries is not None or tiles is not None:
            figs.append(map_figure(table, indicator_id, foot, tiles=tiles, boundaries=boundaries, muni_name=muni_name,
                                   suppress_threshold=suppress_threshold))
        figs.append(ranking_figure(table, indicator_id, foot, muni_name=muni_name, suppress_threshold=suppress_threshold))
        figs.append(profile_figure(table, district_code, profile_foot, muni_name=muni_name, reference_lines=reference_lines,
                                   suppress_threshold=suppress_threshold))
        return figs

    return widgets.Panel(controls, render, row=True)


def profile_figure(table: pd.DataFrame, district_code: str, footer: str, *, muni_name: str = "",
                   reference_lines: pd.DataFrame | None = None,
                   suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Spine chart of one district against the municipality across the indicators;
    `reference_lines` (a suppressed `references.reference_lines_table` of the municipality) adds
    県・同規模・国 as marks (`references.spine_references`)."""
    from hsutils.publish import plots

    import warnings

    prof = district_profile(table, district_code)
    refs, notes = [], []
    if reference_lines is not None:
        names = dict(zip(table["indicator_id"].astype(str), table["indicator_name"].astype(str)))
        prof, refs, notes = references.spine_references(prof, reference_lines, names=names)
    if unknown_rows(table).any():
        notes = [*notes, "範囲（最小〜最大、四分位）は地区だけで計算（地区不明を除く）"]
    name = table.loc[table["district_code"] == str(district_code), "district_name"].iloc[0]
    with warnings.catch_warnings():  # an indicator with every district suppressed has no range
        warnings.simplefilter("ignore", RuntimeWarning)
        return plots.spine_chart(prof, title=f"{name}地区のプロフィール（{muni_name}全体との比較、{table['period'].iloc[0]}）",
                                 footer=footer, count_col="numerator", area_label=name,
                                 benchmark_label=f"{muni_name}全体", references=refs, notes=notes,
                                 suppress_threshold=suppress_threshold)


def gap_figure(gap: pd.DataFrame, footer: str, *, target_rate: float = PARTICIPATION_TARGET,
               muni_name: str = "", suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Stacked bars: additional 受診者 per district (men / women) if every sex × age group reached
    the target rate (an estimate summed over the age bands, rounded; a district × sex sum of
    1–9 is not drawn, docs/rules.md §9)."""
    from hsutils.publish import plots

    d = gap.groupby(["district_name", "sex_label"], as_index=False, sort=False)["additional"].sum()
    order = d.groupby("district_name", sort=False)["additional"].sum().sort_values(ascending=False).index
    d["district_name"] = pd.Categorical(d["district_name"], categories=list(order), ordered=True)
    d = d.sort_values("district_name")
    d["district_name"] = d["district_name"].astype(str)
    d["additional"] = d["additional"].round(0)
    return plots.stacked_bars(d, area_col="district_name", category_col="sex_label", count_col="additional",
                              title=f"{muni_name} 受診率を{target_rate:.0%}にしたときの受診者増（地区別・推計）", footer=footer,
                              normalize=False, category_order=["男性", "女性"],
                              suppress_threshold=suppress_threshold).figure


# ------------------------------------------------------------------------------------------------
# small helpers for the notebook text

def overview_summary(shown: pd.DataFrame, fy_text: str = "") -> str:
    """One sentence on the 特定健診 受診率 of the districts from the shown (suppressed) overview:
    the municipal rate, the highest and the lowest district (suppressed districts left out)."""
    s = shown.set_index("district_name")
    rate = pd.to_numeric(s["kenshin_rate"], errors="coerce")
    body = rate.drop(index=[TOTAL_LABEL, UNKNOWN_DISTRICT], errors="ignore").dropna()
    if body.empty or TOTAL_LABEL not in rate.index:
        return "特定健診 受診率を地区別に表示できる地区がありません（少人数のため秘匿）。"
    return (f"特定健診 受診率（{fy_text}、粗率）: 市全体 {rate[TOTAL_LABEL]:.1f}%、最高 {body.idxmax()} "
            f"{body.max():.1f}%、最低 {body.idxmin()} {body.min():.1f}%（差 {body.max() - body.min():.1f}ポイント）")


POLARITY_LABELS = stats.POLARITY_LABELS


def indicator_overview(ids: Sequence[str]) -> pd.DataFrame:
    """The chosen indicators with name, population, polarity (Japanese) and DOMAIN section."""
    reg = indicators.registry_frame().set_index("indicator_id").loc[list(ids)]
    return pd.DataFrame({"指標": reg["indicator_name"], "対象": reg["population"],
                         "極性": reg["polarity"].map(POLARITY_LABELS).fillna(stats.JUDGEMENT_NONE),
                         "DOMAIN": reg["domain"]})

"""Notebook 03 高齢者の保健事業と介護予防の一体的実施: the computations behind the notebook.

The criteria themselves (docs/rules.md §6.1) live in `hsutils.rules.programs` (`IkkatsuParams`,
`ikkatsu_flags`, `IKKATSU_CRITERIA`); this module turns them into what the notebook shows:

* the 後期高齢者 population (pyramid, 健診受診率, 質問票 回答率, 介護認定 by level);
* counts and rates by criterion per municipality / district with 標準化該当比 against a
  reference area (`criteria_table`) and committee suppression incl. secondary suppression
  across districts (`suppress_area_table`);
* overlaps between criteria (`membership`, `criteria_count_distribution`, `suppress_parts`);
* the 後期高齢者の質問票 profile per item and domain (docs/rules.md §6.2, `questionnaire_profile`);
* the priority list for the nurse (`priority_list`, confidential only) with the approach rule;
* frailty-related answers by district for the ポピュレーションアプローチ (`district_frailty`);
* fast recomputation for the threshold widgets (`threshold_counts`, `threshold_explorer`).

Everything is vectorised over persons; loops run over criteria, items, areas or columns only.
Rates are in percent (as `hsutils.analysis.indicators`).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.core import vocab
from hsutils.rules import programs
from hsutils.analysis import aggregate, areas, indicators
from hsutils.publish import privacy
from hsutils.rules.programs import IkkatsuParams
from hsutils.core import schema
from hsutils.core.schema import KOUKI_AGE_BANDS, QUESTIONNAIRE_DOMAINS, QUESTIONNAIRE_RISK

#: What notebook 03 loads besides person_year (`notebook.start(with_tables=TABLES)`): the columns the
#: criteria are recounted from when the thresholds change (`programs.ikkatsu_flags`).
TABLES = programs.IKKATSU_TABLES
ANY_ID = "ik_any"
ANY_NAME = "いずれかに該当"
CRITERIA_IDS: tuple[str, ...] = tuple(c[0] for c in programs.IKKATSU_CRITERIA)

APPROACH_HIGH = "ハイリスクアプローチ"
APPROACH_POPULATION = "ポピュレーションアプローチ"
#: Criteria that call for individual contact (ハイリスクアプローチ): a medical finding, medication,
#: weight loss or an unknown health state. The two questionnaire-only criteria (口腔, 身体的フレイル)
#: are first addressed in 通いの場 (口腔体操, 運動) = ポピュレーションアプローチ. See `approach`.
HIGH_RISK_CRITERIA: tuple[str, ...] = (
    "ik_undernutrition", "ik_polypharmacy", "ik_hypnotic", "ik_poor_control", "ik_interruption",
    "ik_disease_frailty", "ik_kidney_untreated", "ik_health_unknown")
#: Example support per criterion (高齢者の特性を踏まえた保健事業ガイドライン; shown in the list).
ACTIONS: dict[str, str] = {
    "ik_undernutrition": "栄養相談・訪問（管理栄養士）",
    "ik_oral": "歯科受診勧奨・口腔機能向上",
    "ik_polypharmacy": "服薬状況の確認（薬剤師・かかりつけ医と連携）",
    "ik_hypnotic": "睡眠薬と転倒・物忘れの確認（かかりつけ医と連携）",
    "ik_physical_frailty": "運動機能向上（通いの場への参加勧奨）",
    "ik_poor_control": "医療機関への受診勧奨",
    "ik_interruption": "治療再開の受診勧奨",
    "ik_disease_frailty": "かかりつけ医と連携した保健指導",
    "ik_kidney_untreated": "医療機関への受診勧奨（腎機能）",
    "ik_health_unknown": "訪問等による健康状態の把握",
}

#: Risk answers of the 後期高齢者の質問票 in words (docs/rules.md §6.2).
RISK_ANSWER_LABELS: dict[str, str] = {
    "q1": "あまりよくない・よくない", "q2": "やや不満・不満", "q3": "いいえ", "q4": "はい", "q5": "はい",
    "q6": "はい", "q7": "はい", "q8": "はい", "q9": "いいえ", "q10": "はい", "q11": "はい",
    "q12": "吸っている", "q13": "いいえ", "q14": "いいえ", "q15": "いいえ",
}
#: Frailty-related domains used for the ポピュレーションアプローチ by district (parameter).
FRAILTY_DOMAINS: tuple[str, ...] = ("運動・転倒", "口腔機能", "社会参加", "体重変化", "認知機能")

KAIGO_LEVELS: tuple[str, ...] = vocab.KAIGO_LEVELS
NO_KAIGO = "認定なし"
KAIGO_GROUPS = {NO_KAIGO: NO_KAIGO, "要支援1": "要支援1・2", "要支援2": "要支援1・2", "要介護1": "要介護1・2",
                "要介護2": "要介護1・2", "要介護3": "要介護3〜5", "要介護4": "要介護3〜5", "要介護5": "要介護3〜5"}
URINE_LABELS = vocab.URINE_LABELS
SEX_NAMES = vocab.SEX_LABELS

LEVEL_MUNI, LEVEL_DISTRICT, LEVEL_PREF, LEVEL_REFERENCE = "市町村", "地区", "県", "基準"
TABLE_COLUMNS = ["criterion_id", "criterion_name", "area", "count", "denominator", "rate", "sr",
                 "sr_lower", "sr_upper", "comparison", "suppressed"]
_DERIVED = ["rate", "rate_lower", "rate_upper", "sr", "sr_lower", "sr_upper", "comparison"]


# ---------------------------------------------------------------------------------------------
# parameters and names


def make_params(**thresholds) -> IkkatsuParams:
    """`IkkatsuParams` from the notebook's threshold parameters (None = docs/rules.md §6.1 default).
    `urine_protein_kidney` is written as the result, "1+" (`vocab.urine_threshold`, the form of
    every notebook); the ordinal 2 of older parameter files is accepted too."""
    given = {k: v for k, v in thresholds.items() if v is not None}
    if "urine_protein_kidney" in given:
        given["urine_protein_kidney"] = vocab.urine_threshold(given["urine_protein_kidney"],
                                                              what="腎機能不良未受診の尿蛋白の基準")
    return IkkatsuParams(**given)


def is_default(params: IkkatsuParams) -> bool:
    """True when the thresholds are those of docs/rules.md §6.1 (the flags cached in person_year)."""
    return params == IkkatsuParams()


def criterion_names(params: IkkatsuParams = IkkatsuParams(), with_any: bool = True) -> dict[str, str]:
    """criterion id -> Japanese name (docs/rules.md §6.1), plus `ik_any` いずれかに該当."""
    names = {cid: name for cid, name, _, _ in programs.ikkatsu_criteria(params)}
    if with_any:
        names[ANY_ID] = ANY_NAME
    return names


def criteria_definitions(params: IkkatsuParams = IkkatsuParams()) -> pd.DataFrame:
    """Table of the criteria with the thresholds in use (for the notebook's explanation)."""
    rows = programs.ikkatsu_criteria(params)
    return pd.DataFrame({"基準": [r[1] for r in rows], "定義": [r[3] for r in rows],
                         "根拠": [r[2] for r in rows],
                         "推奨アプローチ": [APPROACH_HIGH if r[0] in HIGH_RISK_CRITERIA else APPROACH_POPULATION
                                     for r in rows]})


SHORT_LABELS: dict[str, str] = {
    "ik_undernutrition": "低栄養", "ik_oral": "口腔", "ik_polypharmacy": "多剤", "ik_hypnotic": "睡眠薬",
    "ik_physical_frailty": "身体的フレイル", "ik_poor_control": "コントロール不良", "ik_interruption": "治療中断",
    "ik_disease_frailty": "基礎疾患＋フレイル", "ik_kidney_untreated": "腎機能・未受診",
    "ik_health_unknown": "健康状態不明者", ANY_ID: "いずれか",
}


def short_label(criterion_id: str) -> str:
    """Short chart label of a criterion ('ik_disease_frailty' -> '基礎疾患＋フレイル')."""
    return SHORT_LABELS.get(criterion_id, criterion_id)


# ---------------------------------------------------------------------------------------------
# population

#: Who the questionnaire charts count (docs/rules.md §16, §6.2): 75+ who answered the item.
QUESTIONNAIRE_POPULATION = f"{indicators.POP_KOUKI}のうち質問票の回答者"


def population(params: IkkatsuParams = IkkatsuParams()) -> str:
    """Footer population of the criteria charts and tables, the denominator `eligible`, in the
    words of docs/rules.md §16 (後期高齢者 75歳以上 with the default `min_age`)."""
    return indicators.kouki_population(params.min_age)


def rows_of_fy(person_year: pd.DataFrame, fy: int) -> pd.DataFrame:
    return person_year.loc[person_year["fy"].to_numpy() == int(fy)]


def eligible(py: pd.DataFrame, params: IkkatsuParams = IkkatsuParams()) -> np.ndarray:
    """Denominator of the criteria: 後期 insured aged ≥ `params.min_age` (docs/rules.md §6.1)."""
    ins = py["insurance"].astype("str").eq(params.insurance).to_numpy(dtype=bool)
    return ins & (pd.to_numeric(py["age"]).to_numpy() >= params.min_age)


def in_area(py: pd.DataFrame, muni_code: str) -> np.ndarray:
    """Rows of the area: a municipality, or a prefecture in any code form (hsutils.analysis.areas)."""
    return areas.parse_code(muni_code).mask(py["muni_code"])


def kouki_pyramid(person_year: pd.DataFrame, fy: int, muni_code: str) -> pd.DataFrame:
    """後期高齢者 (75+) by age band × sex: `age_band, sex, count` (docs/design.md §5 bands 75–79 … 90+)."""
    py = rows_of_fy(person_year, fy)
    py = py[in_area(py, muni_code) & indicators.kouki(py)]
    band = pd.Categorical(py["age_band"].astype("str"), categories=list(KOUKI_AGE_BANDS))
    out = pd.crosstab(band, py["sex"].to_numpy()).reindex(columns=[1, 2], fill_value=0)
    out = out.rename_axis(index="age_band", columns="sex").stack().rename("count").reset_index()
    out["age_band"] = out["age_band"].astype("str")
    return out


#: area_code of the 地区不明 row (docs/rules.md §9.1): the one definition is in `analysis.areas`.
unknown_district_code = areas.unknown_district_code


def area_labels(municipalities: pd.DataFrame, districts: pd.DataFrame | None, muni_code: str,
                reference_label: str) -> dict[str, str]:
    """area_code -> display name for the municipality, its districts (地区不明 included) and the reference."""
    m = municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].astype("str")
    out = {str(k): v for k, v in m.items()}
    for code, name in areas.district_names(districts, muni_code).items():
        out[f"{muni_code}:{code}"] = name
    out[unknown_district_code(muni_code)] = areas.UNKNOWN_DISTRICT
    out["reference"] = reference_label
    return out


def kouki_overview(strata: pd.DataFrame, municipalities: pd.DataFrame, districts: pd.DataFrame | None,
                   muni_code: str, fy: int, reference: pd.DataFrame, reference_label: str,
                   conf: float = 0.95) -> pd.DataFrame:
    """後期高齢者健診受診率, 質問票 回答率 and 要介護（要支援）認定率 (registered indicators
    kouki_kenshin_rate, questionnaire_rate, kaigo_rate; docs/rules.md §6) for the municipality, its
    districts and the reference area, with Wilson CIs and 標準化比 against the reference.

    Columns: indicator_id, indicator_name, area_level, area_code, area, count, denominator, rate,
    rate_lower, rate_upper, sr, sr_lower, sr_upper, comparison.
    """
    ids = ["kouki_kenshin_rate", "questionnaire_rate", "kaigo_rate"]
    names = {i: indicators.REGISTRY[i].name for i in ids}
    return _area_rows(strata, municipalities, districts, muni_code, fy, reference, reference_label,
                      ids, names, conf).rename(columns={"criterion_id": "indicator_id",
                                                        "criterion_name": "indicator_name"})


def kaigo_level_labels(py: pd.DataFrame) -> pd.Series:
    """The 介護認定 level of each row (認定なし, 要支援1 … 要介護5; a certification without a level as its
    text): what `kaigo_levels` counts, per row of `py`."""
    certified = py["kaigo_certified"].fillna(False).to_numpy(dtype=bool)
    return py["kaigo_level"].astype("str").where(certified, NO_KAIGO).fillna(NO_KAIGO)


def _level_counts(counts: pd.Series, grouped: bool) -> tuple[pd.Series, list[str]]:
    """Counts per `kaigo_level_labels` label → counts in the table's order (grouped: `KAIGO_GROUPS`,
    a label outside them counted as 認定なし as `kaigo_levels` maps a row)."""
    order = [NO_KAIGO, *KAIGO_LEVELS]
    if grouped:
        order = list(dict.fromkeys(KAIGO_GROUPS.values()))
        labels = pd.Series(counts.index.astype("str"), index=counts.index).map(KAIGO_GROUPS).fillna(NO_KAIGO)
        counts = counts.groupby(labels.to_numpy()).sum()
    return counts.reindex(order, fill_value=0).astype("int64"), order


def kaigo_levels(person_year: pd.DataFrame, fy: int, muni_code: str, muni_label: str,
                 districts: pd.DataFrame | None, reference_label: str,
                 reference_munis: Iterable[str] | None = None, grouped: bool = False,
                 counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """後期高齢者 75+ by 介護認定 level (認定なし, 要支援1 … 要介護5) for the municipality, its
    districts and the reference area: `area, level, count` (for `plots.stacked_bars`).
    `grouped`: 認定なし / 要支援1・2 / 要介護1・2 / 要介護3〜5 (`KAIGO_GROUPS`), so that small
    districts keep visible segments. With `districts` (the 地区マスタ) the district rows add up to
    the municipality: districts of the master, then codes found only in the data (named by their
    code), then 地区不明 for the persons without a district when there are any (docs/rules.md §9.1).
    The reference (`reference_munis`, None = every municipality) is the sum of its municipalities in
    `counts` (`municipal_counts`: a municipal run holds only its own rows, docs/design.md §8.1), or
    counted from `person_year` without it."""
    py = rows_of_fy(person_year, fy)
    py = py[indicators.kouki(py)]
    level = kaigo_level_labels(py)
    if counts is None:
        ref = py if reference_munis is None else py[py["muni_code"].isin(list(reference_munis))]
        ref_counts = level.loc[ref.index].value_counts()
    else:
        ref_counts = area_sum(counts, KIND_KAIGO, reference_munis)["count"]
    groups = []
    if areas.parse_code(muni_code).is_municipality:
        here = py[in_area(py, muni_code)]
        groups.append((muni_label, level.loc[here.index].value_counts()))
        dcode = here["district_code"].fillna("").astype("str").to_numpy()
        names = {}
        # no district rows without a 地区マスタ (the caller's choice) or when nobody has a district
        if districts is not None and areas.has_districts(here, muni_code):
            names = areas.district_names(districts, muni_code)
            names.update({c: c for c in sorted(set(dcode) - set(names) - {""})})
            names[""] = areas.UNKNOWN_DISTRICT
        for code, name in names.items():  # a handful of districts
            rows = here.index[dcode == code]
            if code or len(rows):  # 地区不明 only when someone has no district
                groups.append((name, level.loc[rows].value_counts()))
    groups.append((reference_label, ref_counts))
    parts = []
    for label, c in groups:
        c, order = _level_counts(c, grouped)
        parts.append(pd.DataFrame({"area": label, "level": order, "count": c.to_numpy(dtype="int64")}))
    return pd.concat(parts, ignore_index=True)


def kaigo_relations(overview_table: str = "kouki_overview", grouped_table: str | None = None) -> list:
    """Additive relations of a `kaigo_levels` table with the tables saved before it in the same
    report (docs/rules.md §9): per area, Σ levels = the 認定率 denominator and Σ 要支援1 … 要介護5 =
    the 認定率 count of `kouki_overview`; with `grouped_table` (the grouped levels of the
    stacked-bar chart), each group = Σ its levels (`KAIGO_GROUPS`). Without them a group shown in
    the chart, or the 認定者数 of the overview, gives back a level hidden in the table."""
    kaigo_rate = {"indicator_id": "kaigo_rate"}
    certified = [*KAIGO_LEVELS, *dict.fromkeys(g for g in KAIGO_GROUPS.values() if g != NO_KAIGO)]
    rels = [privacy.Link(overview_table, "count", on=("area",), rows={"level": certified},
                         other_rows=kaigo_rate),
            privacy.Link(overview_table, "count", on=("area",), other_rows=kaigo_rate, other_col="denominator")]
    if grouped_table is not None:
        rels.append(privacy.Link(grouped_table, "count", on=("area", "level"), values={"level": KAIGO_GROUPS}))
    return rels


def kaigo_district_relations(table_name: str, kaigo: pd.DataFrame, muni_label: str, reference_label: str) -> list:
    """Within a `kaigo_levels` table (one saved as `table_name`): per level, the municipality's row
    = Σ its district rows including 地区不明 (docs/rules.md §9.1), so that a district hidden in the
    chart cannot be read off as the municipality minus the other districts (nor the persons
    without a district as the municipality minus every district). The rows must add up
    (`kaigo_levels` adds the 地区不明 row): a table whose districts do not is refused."""
    dist = [a for a in pd.unique(kaigo["area"]) if a not in (muni_label, reference_label)]
    if not dist or muni_label not in set(kaigo["area"]):
        return []
    piv = kaigo.pivot_table(index="level", columns="area", values="count", aggfunc="sum")
    if not (piv[dist].sum(axis=1) == piv[muni_label]).all():
        raise ValueError(f"{table_name}: the district rows do not add up to {muni_label}; "
                         f"build the table with kaigo_levels (it adds the {areas.UNKNOWN_DISTRICT} row)")
    return [privacy.Link(table_name, "count", on=("level",), rows={"area": dist}, other_rows={"area": muni_label})]


def distribution_relations(area_code: str, criteria_table: str = "ikkatsu_criteria",
                           total_label: str = "合計") -> list:
    """`criteria_count_distribution`: its 合計 row is the いずれかに該当 count of the area in the
    criteria table saved before (the same persons), so the two are hidden together."""
    return [privacy.Link(criteria_table, "count", rows={"n_criteria": total_label},
                         other_rows={"criterion_id": "ik_any", "area_code": str(area_code)})]


# ---------------------------------------------------------------------------------------------
# criteria flags and the criteria table


def criteria_flags(person_year: pd.DataFrame, fy: int, params: IkkatsuParams = IkkatsuParams(),
                   tables: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """ik_* flags (+ ik_any) for the person_year rows of `fy` (index = those rows).

    With the docs/rules.md §6.1 default thresholds the flags cached in person_year are used; otherwise
    they are recomputed with `programs.ikkatsu_flags` from the raw claims, kaigo and
    questionnaire tables (`tables`, i.e. `prepared.tables` loaded with with_tables=True).
    """
    py = rows_of_fy(person_year, fy)
    cols = list(CRITERIA_IDS) + [ANY_ID]
    if is_default(params) and all(c in py.columns for c in cols):
        return py[cols].fillna(False).astype(bool)
    if not tables or "claims_monthly" not in tables:
        from hsutils.core.errors import ParameterError

        raise ParameterError("抽出基準を変更して再計算するには、レセプト・介護・質問票の表が必要です"
                             "（hsutils.running.notebook.start(..., with_tables=True)）。")
    return programs.ikkatsu_flags(person_year, tables["claims_monthly"], tables.get("kaigo"),
                                  tables.get("questionnaire"), fy, params)[cols]


def criteria_strata(person_year: pd.DataFrame, flags: pd.DataFrame,
                    params: IkkatsuParams = IkkatsuParams()) -> pd.DataFrame:
    """Strata (fy × muni × district × sex × age band) of every criterion (+ ik_any) with the
    criteria population as denominator (`eligible`). Same shape as `prepared.strata`, so that
    `indicators.indicator_table` works on it; with default thresholds the ik_* rows equal those
    of `prepared.strata`."""
    py = person_year.loc[flags.index]
    den = eligible(py, params)
    f = {cid: (flags[cid].to_numpy(dtype=bool), den) for cid in flags.columns}
    return aggregate.strata_counts(py, f)


def _area_rows(strata: pd.DataFrame, municipalities: pd.DataFrame, districts: pd.DataFrame | None,
               muni_code: str, fy: int, reference: pd.DataFrame, reference_label: str,
               ids: Sequence[str], names: Mapping[str, str], conf: float) -> pd.DataFrame:
    """Municipality (or every municipality for a prefecture code), districts and reference rows."""
    s = strata[strata["indicator_id"].isin(list(ids)) & (strata["fy"] == int(fy))]
    ref = reference[reference["indicator_id"].isin(list(ids)) & (reference["fy"] == int(fy))]
    prefecture = areas.parse_code(muni_code).is_prefecture
    here = s if prefecture else s[s["muni_code"] == str(muni_code)]
    kw = dict(area_map=municipalities, fy=int(fy), indicators=list(ids), reference=ref, conf=conf)
    parts = []
    if len(here):
        t = indicators.indicator_table(here, "muni", **kw)
        t["area_level"] = LEVEL_MUNI
        parts.append(t)
        dcode = here["district_code"].astype("str").to_numpy()
        if not prefecture and (dcode != "").any():
            t = indicators.indicator_table(here, "district", **kw)
            t["area_level"] = LEVEL_DISTRICT
            parts.append(t)
            rest = here[dcode == ""]
            if rest["denominator"].sum() > 0:  # 地区不明: the district rows add up (docs/rules.md §9.1)
                t = indicators.indicator_table(rest, "muni", **kw)
                t["area_code"] = unknown_district_code(muni_code)
                t["area_level"] = LEVEL_DISTRICT
                parts.append(t)
    # the reference itself (its 標準化比 is 1 by construction: shown empty)
    r = stats.proportion_grouped(ref, ["indicator_id"], "numerator", "denominator", conf, multiplier=100)
    r = r.rename(columns={"value": "crude_rate", "lower": "crude_lower", "upper": "crude_upper"})
    r["area_code"] = "reference"
    r["area_level"] = LEVEL_REFERENCE
    parts.append(r)
    t = pd.concat(parts, ignore_index=True)
    labels = area_labels(municipalities, districts, muni_code, reference_label)
    out = pd.DataFrame({
        "criterion_id": t["indicator_id"].astype("str"),
        "criterion_name": t["indicator_id"].map(dict(names)).astype("str"),
        # a district code missing from the 地区マスタ is named by its code (as in `kaigo_levels`)
        "area": t["area_code"].map(labels).fillna(t["area_code"].str.rsplit(":", n=1).str[-1]).astype("str"),
        "count": t["numerator"].astype("int64"),
        "denominator": t["denominator"].astype("int64"),
        "rate": t["crude_rate"], "sr": t.get("sr"), "sr_lower": t.get("sr_lower"),
        "sr_upper": t.get("sr_upper"), "comparison": t.get("comparison"),
        "suppressed": False,
        "area_level": t["area_level"].astype("str"), "area_code": t["area_code"].astype("str"),
        "rate_lower": t["crude_lower"], "rate_upper": t["crude_upper"],
        "method": t.get("method", pd.Series(index=t.index, dtype="str")).fillna(stats.METHOD_WILSON),
        "conf": conf,
    })
    out["comparison"] = out["comparison"].astype(object).where(out["area_level"] != LEVEL_REFERENCE, "（基準）")
    order_id = {cid: i for i, cid in enumerate(ids)}
    order_level = {LEVEL_MUNI: 0, LEVEL_DISTRICT: 1, LEVEL_REFERENCE: 2}
    out = out.assign(_i=out["criterion_id"].map(order_id), _l=out["area_level"].map(order_level),
                     _u=out["area_code"].str.endswith(":"))  # 地区不明 after the districts
    out = out.sort_values(["_i", "_l", "_u", "area_code"], kind="stable").drop(columns=["_i", "_l", "_u"])
    return out.reset_index(drop=True)


def criteria_table(strata: pd.DataFrame, municipalities: pd.DataFrame, districts: pd.DataFrame | None,
                   muni_code: str, fy: int, reference: pd.DataFrame | None = None,
                   reference_label: str = "県", params: IkkatsuParams = IkkatsuParams(),
                   conf: float = 0.95) -> pd.DataFrame:
    """Counts and rates of each 一体的実施 criterion (docs/rules.md §6.1) for the municipality, its
    districts and the reference area, with 標準化該当比 (indirect, by sex × age band, exact
    Poisson for < 10 events, Byar otherwise; docs/methods.md §6) and significance against the reference.

    `strata`: criteria strata (`criteria_strata`, or `prepared.strata` for the registered ik_*
    indicators). Columns: criterion_id, criterion_name, area, count, denominator, rate (%), sr,
    sr_lower, sr_upper, comparison, suppressed (False: not yet suppressed — use
    `suppress_area_table`), then area_level, area_code, rate_lower, rate_upper, method, conf.
    """
    ids = [c for c in (*CRITERIA_IDS, ANY_ID) if c in set(strata["indicator_id"])]
    ref = strata if reference is None else reference
    return _area_rows(strata, municipalities, districts, muni_code, fy, ref, reference_label, ids,
                      criterion_names(params), conf)


def suppress_area_table(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD, *,
                        key_col: str = "criterion_id", count_cols: Sequence[str] = ("count", "denominator"),
                        derived_cols: Sequence[str] = tuple(_DERIVED)) -> pd.DataFrame:
    """Committee version of an area table (docs/design.md §6, docs/rules.md §9).

    Primary: counts 1 … threshold − 1 and everything derived from them → "‐". Secondary: the
    districts of a municipality add up to (at most) the municipal row, so when exactly one
    district of a key (criterion/item) is hidden, the next-smallest non-zero district is hidden
    too (privacy.suppress_groups; for a prefecture-wide table the municipalities and the
    reference row play these roles). `suppressed` is True where anything was hidden.
    """
    count_cols = list(count_cols)
    derived = [c for c in derived_cols if c in table.columns]
    _, mask = privacy.mask_small(table, count_cols, derived_cols=derived, threshold=threshold)
    levels = set(table["area_level"])
    parts_level, total_level = ((LEVEL_DISTRICT, LEVEL_MUNI) if LEVEL_DISTRICT in levels
                                else (LEVEL_MUNI, LEVEL_REFERENCE))
    sub = table[table["area_level"].isin([parts_level, total_level])]
    # only where the parts make up the total (districts of the municipality, or every municipality
    # of a prefecture-wide table); a single municipality against the prefecture reveals nothing
    n_parts = sub.loc[sub["area_level"] == parts_level, "area_code"].nunique()
    if n_parts > 1 and (sub["area_level"] == total_level).any():
        rows = table["area_level"].isin([parts_level, total_level]).to_numpy()
        is_total = (sub["area_level"] == total_level).to_numpy()
        for col in count_cols:  # two columns
            extra = np.zeros(len(table), dtype=bool)
            extra[rows] = privacy.suppress_groups(sub, col, [key_col], total_rows=is_total, threshold=threshold)
            for c in [col, *derived]:
                mask[c] = mask[c].to_numpy() | extra
    out = privacy.apply_suppression(table, mask)
    prior = table["suppressed"].fillna(False).to_numpy(dtype=bool) if "suppressed" in table else False
    out["suppressed"] = mask.to_numpy().any(axis=1) | prior
    return out


def sr_chart_frame(table: pd.DataFrame, prefecture: bool = False) -> pd.DataFrame:
    """Rows for `plots.ranked_bar` of the 標準化該当比: the municipality's criteria (short
    labels), or for a prefecture-wide run the municipalities' いずれかに該当."""
    d = table[table["area_level"] == LEVEL_MUNI]
    if prefecture:
        d = d[d["criterion_id"] == ANY_ID].assign(name=lambda x: x["area"])
    else:
        d = d[d["criterion_id"] != ANY_ID].assign(name=lambda x: x["criterion_id"].map(short_label))
    return d.reset_index(drop=True)


def numeric_view(shown: pd.DataFrame, cols: Sequence[str] = ("count", "denominator", "respondents", "rate",
                                                             "rate_lower", "rate_upper", "sr", "sr_lower",
                                                             "sr_upper")) -> pd.DataFrame:
    """A suppressed table back to numbers for charts: "‐" -> NaN (plots treat a NaN count as
    suppressed upstream, so secondary suppression carries into the chart)."""
    out = shown.copy()
    for c in cols:
        if c in out:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def count_text(n, threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """A count for report text: "‐" when 1 … threshold − 1 (docs/rules.md §9), else with separators."""
    return privacy.SUPPRESSION_MARK if privacy.is_small(n, threshold) else f"{int(n):,}"


def _fmt(v, fmt: str) -> str:
    x = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
    return privacy.SUPPRESSION_MARK if pd.isna(x) else fmt.format(x)


def criteria_display(shown: pd.DataFrame) -> pd.DataFrame:
    """The committee criteria table with Japanese headers and rounded figures (for display);
    the reference row's ratio is shown as 1.00 by definition."""
    ref = (shown["area_level"] == LEVEL_REFERENCE).to_numpy()
    out = pd.DataFrame({
        "基準": shown["criterion_name"], "地域": shown["area"], "区分": shown["area_level"],
        "該当者数": shown["count"], "対象者数": shown["denominator"],
        "該当率(%)": [_fmt(v, "{:.1f}") for v in shown["rate"]],
        "95%CI": [f"{_fmt(a, '{:.1f}')}–{_fmt(b, '{:.1f}')}" if not pd.isna(pd.to_numeric(a, errors="coerce"))
                  else privacy.SUPPRESSION_MARK for a, b in zip(shown["rate_lower"], shown["rate_upper"])],
        "標準化該当比": [_fmt(v, "{:.2f}") for v in shown["sr"]],
        "比の95%CI": [f"{_fmt(a, '{:.2f}')}–{_fmt(b, '{:.2f}')}" if not pd.isna(pd.to_numeric(a, errors="coerce"))
                    else "" for a, b in zip(shown["sr_lower"], shown["sr_upper"])],
        "基準との比較": shown["comparison"].fillna(""),
    }).reset_index(drop=True)
    out.loc[ref, "標準化該当比"] = "1.00"
    out.loc[ref, "比の95%CI"] = ""
    return out


def district_pivot(shown: pd.DataFrame, label_col: str = "criterion_id", labels: Mapping[str, str] | None = None,
                   area_level: str = LEVEL_DISTRICT) -> pd.DataFrame:
    """Wide view (areas × criteria) of a suppressed area table: "rate%（count）" or "‐"."""
    d = shown[shown["area_level"] == area_level]
    text = [privacy.SUPPRESSION_MARK if pd.isna(pd.to_numeric(r, errors="coerce"))
            else f"{float(r):.1f}%（{c}）" for r, c in zip(d["rate"], d["count"])]
    keys = d[label_col].map(labels or SHORT_LABELS).fillna(d[label_col])
    wide = pd.DataFrame({"地区": d["area"].to_numpy(), "基準": keys.to_numpy(), "v": text})
    order = list(dict.fromkeys(keys))
    return wide.pivot(index="地区", columns="基準", values="v").reindex(
        index=list(dict.fromkeys(d["area"])), columns=order)


def criteria_findings(shown: pd.DataFrame, area_level: str = LEVEL_MUNI) -> list[str]:
    """Japanese sentences for the 読み取りのポイント: criteria (or districts) whose 標準化該当比 is
    significantly above / below the reference."""
    d = shown[(shown["area_level"] == area_level)]
    lines = []
    for comp, word in ((stats.SIGNIFICANTLY_HIGHER, "有意に多い"), (stats.SIGNIFICANTLY_LOWER, "有意に少ない")):
        hit = d[d["comparison"] == comp]
        if len(hit):
            items = [f"{r.criterion_name}（{r.area}、比 {_fmt(r.sr, '{:.2f}')}）" if area_level == LEVEL_DISTRICT
                     else f"{r.criterion_name}（比 {_fmt(r.sr, '{:.2f}')}）" for r in hit.itertuples()]
            lines.append(f"基準より{word}: " + "、".join(items))
    if not lines:
        lines.append("基準と比べて有意に多い・少ない基準はありません（人数が少ないと差は検出しにくい点に注意）。")
    return lines


def profile_findings(profile_shown: pd.DataFrame) -> list[str]:
    """Japanese sentences: questionnaire items/domains significantly above/below the reference."""
    lines = []
    for comp, word in ((stats.SIGNIFICANTLY_HIGHER, "リスク回答が有意に多い"),
                       (stats.SIGNIFICANTLY_LOWER, "リスク回答が有意に少ない")):
        hit = profile_shown[profile_shown["comparison"] == comp]
        if len(hit):
            lines.append(f"{word}: " + "、".join(
                f"{r.item_name}（{_fmt(r.rate, '{:.1f}')}% / 基準 {_fmt(r.ref_rate, '{:.1f}')}%）"
                for r in hit.itertuples()))
    if not lines:
        lines.append("基準と有意に異なる項目・領域はありません。")
    return lines


# ---------------------------------------------------------------------------------------------
# overlaps


def membership(flags: pd.DataFrame, person_year: pd.DataFrame, muni_code: str,
               params: IkkatsuParams = IkkatsuParams()) -> pd.DataFrame:
    """One row per eligible person of the area: bool column per criterion named by its short
    Japanese name (for `plots.upset_chart`). No person_id."""
    py = person_year.loc[flags.index]
    keep = eligible(py, params) & in_area(py, muni_code)
    out = flags.loc[keep, list(CRITERIA_IDS)].reset_index(drop=True)
    return out.rename(columns={c: short_label(c) for c in CRITERIA_IDS})


def criteria_count_distribution(members: pd.DataFrame) -> pd.DataFrame:
    """Persons by number of criteria met: `n_criteria` (1つのみ, 2つ以上, 合計), `count`,
    `share` (% of the persons meeting at least one)."""
    k = members.to_numpy(dtype=bool).sum(axis=1)
    counts = np.array([(k == 1).sum(), (k >= 2).sum(), (k >= 1).sum()], dtype="int64")
    share = counts / counts[-1] * 100 if counts[-1] else np.full(3, np.nan)
    return pd.DataFrame({"n_criteria": ["1つのみ", "2つ以上", "合計"], "count": counts, "share": share})


def suppress_parts(table: pd.DataFrame, count_col: str = "count", derived_cols: Sequence[str] = (),
                   total_label: str | None = None, label_col: str | None = None,
                   threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee version of a small table of parts of a total (docs/rules.md §9): primary suppression and
    secondary suppression against the total (the row `total_label` of `label_col`, or — when the
    table has no total row — the total shown elsewhere in the report, e.g. いずれかに該当)."""
    # without a total row the total is published elsewhere (e.g. いずれかに該当)
    is_total = None if total_label is None else (table[label_col].to_numpy() == total_label)
    h = privacy.suppress_groups(table, count_col, total_rows=is_total, threshold=threshold)
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for c in [count_col, *derived_cols]:
        mask[c] = h
    out = privacy.apply_suppression(table, mask)
    out["suppressed"] = h
    return out


# ---------------------------------------------------------------------------------------------
# questionnaire profile


# ---------------------------------------------------------------------------------------------
# what a municipal run shows of the other municipalities (docs/design.md §8.1)

KIND_KAIGO, KIND_QUESTIONNAIRE = "kaigo", "questionnaire"
MUNICIPAL_COUNTS_VERSION = 1  # bump when muni_counts() or criteria_strata() change, so saved tables are not reused
MUNICIPAL_FIRST_RUN = ("【初回のみ】比較地域・県内市町村の範囲のため、県内全市町の後期高齢者を市町ごとに数えて"
                       "集計キャッシュに保存します（{what}）。次回からは、同じデータ・同じ条件なら保存した結果を使います。")


def muni_counts(person_year: pd.DataFrame, fy: int,
                kinds: Sequence[str] = (KIND_KAIGO, KIND_QUESTIONNAIRE)) -> pd.DataFrame:
    """Per municipality, the 後期高齢者 75+ of `fy`: by 介護認定 level (kind "kaigo", item = the
    `kaigo_level_labels` label, count = persons) and per questionnaire item and domain (kind
    "questionnaire", item = q1 … / domain, respondents and risk answers as `questionnaire_profile`
    counts them; `kinds` chooses). Columns muni_code, kind, item, respondents, count (int64). Sums over
    municipalities are an area's counts (`area_sum`)."""
    py = rows_of_fy(person_year, fy)
    py = py[indicators.kouki(py)]
    muni = py["muni_code"].astype("str")
    parts = []
    if KIND_KAIGO in kinds:
        k = py.groupby([muni.to_numpy(), kaigo_level_labels(py).to_numpy()]).size()
        parts.append(pd.DataFrame({"muni_code": k.index.get_level_values(0).astype("str"), "kind": KIND_KAIGO,
                                   "item": k.index.get_level_values(1).astype("str"), "respondents": 0,
                                   "count": k.to_numpy(dtype="int64")}))
    if KIND_QUESTIONNAIRE in kinds:
        answered, risk = questionnaire_risk(py)
        q = _group_counts(answered, risk, muni)
        parts.append(pd.DataFrame({"muni_code": q["area_code"].astype("str"), "kind": KIND_QUESTIONNAIRE,
                                   "item": q["item_id"].astype("str"), "respondents": q["respondents"],
                                   "count": q["count"]}))
    return pd.concat(parts, ignore_index=True).astype({"respondents": "int64", "count": "int64"})


def area_sum(counts: pd.DataFrame, kind: str, munis: Iterable[str] | None = None) -> pd.DataFrame:
    """`respondents, count` per item of `kind` summed over the municipalities `munis` (None = all) of
    a `muni_counts` table, indexed by item."""
    c = counts[counts["kind"].to_numpy() == kind]
    if munis is not None:
        c = c[c["muni_code"].astype("str").isin([str(m) for m in munis]).to_numpy()]
    return c.groupby("item", sort=False)[["respondents", "count"]].sum()


def municipal_counts(prepared, fy: int) -> pd.DataFrame:
    """`muni_counts` of every municipality of the cache for `fy`: what notebook 03 shows of the
    reference area and of the prefecture's range (介護認定 levels, questionnaire answers) without
    holding their person rows (docs/design.md §8.1); a run that holds every municipality's rows (the
    prefecture) counts them itself (`muni_counts`). Each municipality is counted from its own
    partitions (`pipeline.each_municipality`), once per cache and year (`pipeline.derived_table`,
    `derived/ikkatsu_counts_<key>.parquet`). A person_year row lies in the partition of the
    municipality its person is enrolled in that year (docs/design.md §8.2), so a person who moved is
    counted once, where the prefecture's table counts him."""
    from hsutils.analysis import pipeline

    def build() -> pd.DataFrame:
        print(MUNICIPAL_FIRST_RUN.format(what="要介護度・質問票"), flush=True)
        parts = [muni_counts(py, fy) for _, py, _ in pipeline.each_municipality(prepared.cache_dir)]
        return pd.concat(parts, ignore_index=True) if parts else muni_counts(prepared.person_year.iloc[0:0], fy)

    return pipeline.derived_table(prepared.cache_dir, "ikkatsu_counts", build, key=(MUNICIPAL_COUNTS_VERSION, int(fy)))


def municipal_criteria_strata(prepared, fy: int, params: IkkatsuParams = IkkatsuParams()) -> pd.DataFrame:
    """`criteria_strata` of every municipality of the cache for `fy` with `params`: the strata the
    reference area's 該当率 and 標準化該当比 and the prefecture's counts of `threshold_counts` are
    taken from (`ReferenceResolution.strata`) by a run that holds only its own rows (a run holding
    every municipality's rows uses its own `criteria_strata`). Each municipality is judged from its
    own partitions (`pipeline.each_municipality`: its person_year rows, its persons' whole claims,
    介護 and questionnaire history), once per cache, year and thresholds
    (`pipeline.derived_table`, `derived/ikkatsu_criteria_<key>.parquet`; other thresholds give
    another table). With the default thresholds the flags are those the shared pass cached, so the
    sum equals the prefecture's table; with others, 健康状態不明者 of a person who moved in `fy`
    reads the previous year's checkup from the rows of the municipality he lives in now (as the
    municipal run itself does, docs/design.md §8.2)."""
    from hsutils.analysis import pipeline

    def build() -> pd.DataFrame:
        print(MUNICIPAL_FIRST_RUN.format(what="抽出基準の該当者"), flush=True)
        tables = False if is_default(params) else TABLES
        parts = []
        for _, py, t in pipeline.each_municipality(prepared.cache_dir, tables):  # a loop over partitions
            flags = criteria_flags(py, fy, params, t)
            if len(flags):
                parts.append(criteria_strata(py, flags, params))
        # the key columns stay categorical with the categories of every part, as in the prefecture's table
        for col in [c for c in parts[0].columns if isinstance(parts[0][c].dtype, pd.CategoricalDtype)]:
            union = pd.unique(np.concatenate([p[col].cat.categories.to_numpy(dtype=object) for p in parts]))
            parts = [p.assign(**{col: p[col].cat.set_categories(union)}) for p in parts]
        return pd.concat(parts, ignore_index=True)

    key = (MUNICIPAL_COUNTS_VERSION, int(fy), dataclasses.asdict(params))
    return pipeline.derived_table(prepared.cache_dir, "ikkatsu_criteria", build, key=key)


def question_labels() -> dict[str, str]:
    """q1..q15 -> '①健康状態（あまりよくない・よくない）' (schema label + risk answer)."""
    cols = {c.name: c.ja for c in schema.TABLES["questionnaire"].columns}
    return {q: f"{cols[q]}（{RISK_ANSWER_LABELS[q]}）" for q in QUESTIONNAIRE_RISK}


def questionnaire_risk(py: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(answered, at_risk) bool frames with one column per item q1..q15 and per domain
    (docs/rules.md §6.2, schema.QUESTIONNAIRE_RISK / QUESTIONNAIRE_DOMAINS). A domain is answered when
    any of its items is answered and at risk when any of its items is a risk answer."""
    answered, risk = {}, {}
    for q, codes in QUESTIONNAIRE_RISK.items():
        v = pd.to_numeric(py[q], errors="coerce") if q in py else pd.Series(np.nan, index=py.index)
        answered[q] = v.notna().to_numpy(dtype=bool)
        risk[q] = v.isin(list(codes)).to_numpy(dtype=bool)
    for dom, items in QUESTIONNAIRE_DOMAINS.items():
        answered[dom] = np.logical_or.reduce([answered[q] for q in items])
        risk[dom] = np.logical_or.reduce([risk[q] for q in items])
    return pd.DataFrame(answered, index=py.index), pd.DataFrame(risk, index=py.index)


def _group_counts(answered: pd.DataFrame, risk: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """Long `area_code, item_id, respondents, count` per group key (group-by sums)."""
    a = answered.groupby(keys.to_numpy()).sum()
    r = risk.groupby(keys.to_numpy()).sum()
    a = a.rename_axis("area_code").reset_index().melt("area_code", var_name="item_id", value_name="respondents")
    r = r.rename_axis("area_code").reset_index().melt("area_code", var_name="item_id", value_name="count")
    return a.merge(r, on=["area_code", "item_id"])


def questionnaire_profile(person_year: pd.DataFrame, fy: int, muni_code: str,
                          municipalities: pd.DataFrame, reference_munis: Iterable[str] | None = None,
                          reference_label: str = "県", conf: float = 0.95,
                          threshold: int = privacy.DEFAULT_THRESHOLD,
                          counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """後期高齢者の質問票: share of risk answers per item and per domain (docs/rules.md §6.2) for the
    municipality against the reference area (default the prefecture).

    Population: 後期 75+ of `fy` who answered the item (domain: any of its items). Rate with
    Wilson CI; `comparison` by the CI against the reference rate (docs/design.md §5). `min, q25, q75,
    max` = distribution over the municipalities of the prefecture whose count and respondents
    are not small (1 … threshold − 1 never enters a published range), for `plots.spine_chart`.
    Columns: item_id, kind (項目/領域), item_name, area, respondents, count, rate, rate_lower,
    rate_upper, ref_respondents, ref_count, ref_rate, comparison, min, q25, q75, max, polarity.

    The reference, the prefecture's range and a prefecture-wide area are sums of the per-municipality
    counts `counts` (`municipal_counts`; a municipal run holds only its own rows, docs/design.md §8.1);
    without them they are counted from `person_year` (which must then hold every municipality).
    """
    if counts is None:
        counts = muni_counts(person_year, fy, kinds=(KIND_QUESTIONNAIRE,))
    items = list(QUESTIONNAIRE_RISK) + list(QUESTIONNAIRE_DOMAINS)  # the columns of `questionnaire_risk`
    c = counts[counts["kind"].to_numpy() == KIND_QUESTIONNAIRE]
    by_muni = pd.DataFrame({"area_code": c["muni_code"].astype("str").to_numpy(), "item_id": c["item"].to_numpy(),
                            "respondents": c["respondents"].to_numpy(dtype="int64"),
                            "count": c["count"].to_numpy(dtype="int64")})

    def summed(munis) -> pd.DataFrame:
        s = area_sum(counts, KIND_QUESTIONNAIRE, munis).reindex(items, fill_value=0)
        return pd.DataFrame({"item_id": items, "respondents": s["respondents"].to_numpy(dtype="int64"),
                             "count": s["count"].to_numpy(dtype="int64")})

    ref = summed(reference_munis).rename(columns={"respondents": "ref_respondents", "count": "ref_count"})
    if areas.parse_code(muni_code).is_prefecture:
        here = summed(None)
        area = reference_label
    else:
        here = summed([str(muni_code)])
        area = municipalities.drop_duplicates("muni_code").set_index("muni_code")["name"].get(str(muni_code), muni_code)
    out = here.merge(ref, on="item_id")
    out["respondents"] = out["respondents"].astype("int64")
    out["count"] = out["count"].astype("int64")
    p, lo, hi = stats.proportion_ci(out["count"].to_numpy(float), out["respondents"].to_numpy(float), conf)
    out["rate"], out["rate_lower"], out["rate_upper"] = p * 100, lo * 100, hi * 100
    out["ref_rate"] = out["ref_count"] / out["ref_respondents"].where(out["ref_respondents"] > 0) * 100
    out["comparison"] = stats.compare_to_benchmark(out["rate_lower"].to_numpy(), out["rate_upper"].to_numpy(),
                                                   out["ref_rate"].to_numpy())
    # range over municipalities (only rates from non-small counts)
    ok = ~privacy.is_small(by_muni["count"], threshold) & ~privacy.is_small(by_muni["respondents"], threshold)
    bm = by_muni[ok.to_numpy() & (by_muni["respondents"] > 0).to_numpy()]
    bm = bm.assign(r=bm["count"] / bm["respondents"] * 100)
    g = bm.groupby("item_id")["r"]
    q = pd.DataFrame({"min": g.min(), "q25": g.quantile(0.25), "q75": g.quantile(0.75), "max": g.max()})
    out = out.merge(q, left_on="item_id", right_index=True, how="left")
    labels = question_labels()
    out["kind"] = np.where(out["item_id"].isin(list(QUESTIONNAIRE_RISK)), "項目", "領域")
    out["item_name"] = out["item_id"].map(labels).fillna(out["item_id"])
    out["area"] = str(area)
    out["polarity"] = "lower_better"
    out["conf"] = conf
    cols = ["item_id", "kind", "item_name", "area", "respondents", "count", "rate", "rate_lower",
            "rate_upper", "ref_respondents", "ref_count", "ref_rate", "comparison", "min", "q25",
            "q75", "max", "polarity", "conf"]
    return out[cols].reset_index(drop=True)


def suppress_profile(profile: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee version of the questionnaire profile (the area's counts; the reference is large)."""
    derived = ["rate", "rate_lower", "rate_upper", "comparison"]
    return privacy.suppress_table(profile, ["count", "respondents"], derived_cols=derived, threshold=threshold)


def spine_frame(profile: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows of one kind (項目/領域) in the shape `plots.spine_chart` expects."""
    d = profile[profile["kind"] == kind]
    return pd.DataFrame({"item_id": d["item_id"],
                         "indicator_name": d["item_name"] if kind == "領域" else d["item_name"].str.split("（").str[0],
                         "area_value": d["rate"], "benchmark": d["ref_rate"], "min": d["min"],
                         "q25": d["q25"], "q75": d["q75"], "max": d["max"],
                         "comparison": d["comparison"], "polarity": d["polarity"],
                         "count": d["count"]}).reset_index(drop=True)


def questionnaire_references(person_year: pd.DataFrame, fy: int, subject: areas.Area,
                              main: areas.ReferenceResolution, municipalities: pd.DataFrame, *,
                              threshold: int = privacy.DEFAULT_THRESHOLD,
                              counts: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list, list[str]]:
    """The other references of the questionnaire spine chart beside `main` (the run's
    `reference_area`): 県, 同規模 and 全国 as `areas.resolve_reference` gives them. Returns (frame
    indexed by item_id with a column `ref_<kind>` of each reference's rate in %, the
    (label, column, kind) list for `plots.spine_chart(references=)`, the notes). A reference
    without a figure is 「比較なし（理由）」 in the notes (全国: NDB has no 後期高齢者の質問票;
    同規模 with too few peers; a reference whose persons this run did not load); a reference rate
    from a count or a number of respondents of 1–9 is not drawn (docs/rules.md §9). With `counts`
    (`municipal_counts`, every municipality) each reference is a sum of its municipalities; without,
    it is counted from `person_year`, and a reference with municipalities not in it has no figure."""
    loaded = set(person_year["muni_code"].astype(str).unique()) if counts is None else None
    if counts is None:
        counts = muni_counts(person_year, fy, kinds=(KIND_QUESTIONNAIRE,))  # once for every reference
    every = set(municipalities["muni_code"].astype(str))
    frame = pd.DataFrame(index=pd.Index([], name="item_id"))
    refs, notes = [], []
    if subject.is_prefecture:
        return frame, refs, notes
    for requested in ("pref", "similar", "national"):  # KDB's 県・同規模・国
        if requested == main.requested:
            continue
        r = areas.resolve_reference(subject, requested, municipalities)
        usable, munis = r.data_members("questionnaire", municipalities)
        if not usable:
            notes.append(f"{r.kind}: " + (areas.no_comparison(r.unavailable_reason("questionnaire") or r.reason)))
            continue
        if loaded is not None and not set(munis if munis is not None else every) <= loaded:
            notes.append(f"{r.kind}: {areas.no_comparison('この実行では基準の市町村の個人データを読み込んでいないため')}")
            continue
        prof = questionnaire_profile(person_year, fy, subject.code, municipalities, munis, r.label,
                                     threshold=threshold, counts=counts).set_index("item_id")
        small = privacy.is_small(prof["ref_count"], threshold) | privacy.is_small(prof["ref_respondents"], threshold)
        col = f"ref_{requested}"
        frame = frame.reindex(frame.index.union(prof.index))
        frame[col] = prof["ref_rate"].where(~np.asarray(small, dtype=bool))
        refs.append((r.label, col, r.kind))
    return frame, refs, notes


# ---------------------------------------------------------------------------------------------
# ポピュレーションアプローチ by district


def district_frailty(person_year: pd.DataFrame, fy: int, muni_code: str,
                     districts: pd.DataFrame | None, domains: Sequence[str] = FRAILTY_DOMAINS,
                     conf: float = 0.95) -> pd.DataFrame:
    """Share of frailty-related risk answers per district (日常生活圏域, a proxy for the 通いの場)
    and domain of the 後期高齢者の質問票 (docs/rules.md §6.2), compared with the municipality as a whole
    (Wilson CI of the district against the municipal rate).

    Columns: item_id (domain), area_level (地区/市町村), area_code, area, respondents, count, rate,
    rate_lower, rate_upper, muni_rate, comparison. Empty when the municipality has no districts.
    """
    py = rows_of_fy(person_year, fy)
    py = py[indicators.kouki(py) & in_area(py, muni_code)]
    d = py["district_code"].fillna("").astype("str")
    if not areas.parse_code(muni_code).is_municipality or not (d != "").any():
        return pd.DataFrame(columns=["item_id", "area_level", "area_code", "area", "respondents", "count",
                                     "rate", "rate_lower", "rate_upper", "muni_rate", "comparison"])
    answered, risk = questionnaire_risk(py)
    domains = [x for x in domains if x in answered.columns]
    answered, risk = answered[domains], risk[domains]
    by_d = _group_counts(answered, risk, d)  # "" = 地区不明: the districts add up (docs/rules.md §9.1)
    by_d["area_level"] = LEVEL_DISTRICT
    tot = pd.DataFrame({"area_code": str(muni_code), "item_id": domains,
                        "respondents": answered.sum().to_numpy(dtype="int64"),
                        "count": risk.sum().to_numpy(dtype="int64"), "area_level": LEVEL_MUNI})
    out = pd.concat([by_d, tot], ignore_index=True)
    p, lo, hi = stats.proportion_ci(out["count"].to_numpy(float), out["respondents"].to_numpy(float), conf)
    out["rate"], out["rate_lower"], out["rate_upper"] = p * 100, lo * 100, hi * 100
    muni_rate = tot.set_index("item_id")["count"] / tot.set_index("item_id")["respondents"].where(
        tot.set_index("item_id")["respondents"] > 0) * 100
    out["muni_rate"] = out["item_id"].map(muni_rate)
    out["comparison"] = stats.compare_to_benchmark(out["rate_lower"].to_numpy(), out["rate_upper"].to_numpy(),
                                                   out["muni_rate"].to_numpy())
    out["comparison"] = out["comparison"].astype(object).where(out["area_level"] == LEVEL_DISTRICT, "（基準）")
    names = {**areas.district_names(districts, muni_code), "": areas.UNKNOWN_DISTRICT}
    out["area"] = out["area_code"].map(names).fillna(out["area_code"])
    out.loc[out["area_level"] == LEVEL_MUNI, "area"] = "市町村全体"
    out["area_code"] = np.where(out["area_level"] == LEVEL_DISTRICT, str(muni_code) + ":" + out["area_code"],
                                out["area_code"])
    out["respondents"] = out["respondents"].astype("int64")
    out["count"] = out["count"].astype("int64")
    order = {dom: i for i, dom in enumerate(domains)}
    out = out.assign(_o=out["item_id"].map(order), _l=(out["area_level"] == LEVEL_MUNI).astype(int),
                     _u=out["area_code"].str.endswith(":"))  # 地区不明 after the districts
    out = out.sort_values(["_o", "_l", "_u", "area_code"]).drop(columns=["_o", "_l", "_u"]).reset_index(drop=True)
    return out[["item_id", "area_level", "area_code", "area", "respondents", "count", "rate", "rate_lower",
                "rate_upper", "muni_rate", "comparison"]]


def suppress_district_frailty(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Committee version of `district_frailty` (primary + secondary across districts)."""
    if table.empty:
        return table.assign(suppressed=pd.Series(dtype=bool))
    return suppress_area_table(table, threshold, key_col="item_id", count_cols=("count", "respondents"),
                               derived_cols=("rate", "rate_lower", "rate_upper", "comparison"))


def top_districts(table_shown: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Per domain, the districts with the highest shown rates (suppressed rows and 地区不明, which is
    no place to start a 通いの場, left out): `item_id, area, rate, comparison` — for the 読み取りのポイント."""
    d = table_shown[(table_shown["area_level"] == LEVEL_DISTRICT)
                    & ~table_shown["area_code"].astype("str").str.endswith(":")]
    d = d[pd.to_numeric(d["rate"], errors="coerce").notna()]
    d = d.assign(rate=pd.to_numeric(d["rate"]))
    order = {dom: i for i, dom in enumerate(pd.unique(table_shown["item_id"]))}
    d = d.assign(_o=d["item_id"].map(order)).sort_values(["_o", "rate"], ascending=[True, False])
    d = d.groupby("item_id", sort=False).head(n)
    return d[["item_id", "area", "rate", "comparison"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# look-back of the 治療中断 criteria (docs/hotei.md §7.2)


def lookback_window(params: IkkatsuParams, claims: pd.DataFrame | None,
                    fiscal_years: Iterable[int]) -> tuple[int, str]:
    """Months of the 治療中断 look-back for a figure of `fiscal_years` (the years it shows
    together; the rule is `programs.allowed_lookback`) and the footer text stating it
    (`programs.lookback_note`). Every fiscal year of the data = the window of the cached flags,
    the criteria table and its charts; one year = the window of that year's priority list."""
    years = [int(f) for f in fiscal_years]
    used = programs.allowed_lookback(claims, years, params.interruption_lookback_months,
                                     params.interruption_window_months)
    return used, programs.lookback_note(params.interruption_lookback_months, used,
                                        programs.claims_history(claims, years))


def list_flags(person_year: pd.DataFrame, tables: Mapping[str, pd.DataFrame], fy: int,
               params: IkkatsuParams, flags: pd.DataFrame, muni_code: str) -> tuple[pd.DataFrame, str]:
    """ik_* flags for the priority list of `fy` and the text stating its look-back.

    The list counts the persons of one year: its 治療中断 look-back is the full window that year's
    claims allow (docs/hotei.md §7.2, as notebook 04's lists), not the window of the criteria
    table, which every fiscal year of the data shares (`flags`, from `criteria_flags`). When the
    two windows are equal (the claims cover the look-back of the earliest year) `flags` are
    returned as they are; otherwise the area's persons are judged again with
    `programs.ikkatsu_flags(..., lookback_years=[fy])` (their rows of fy − 1 come along for 健康状態不明者)."""
    claims = (tables or {}).get("claims_monthly")
    years = sorted(int(f) for f in pd.unique(person_year["fy"]))
    common, _ = lookback_window(params, claims, years)
    own, note = lookback_window(params, claims, [fy])
    if own == common:
        return flags, note
    if claims is None:
        from hsutils.core.errors import ParameterError

        raise ParameterError("対象者リストの治療中断を判定するには、レセプトの表が必要です"
                             "（hsutils.running.notebook.start(..., with_tables=True)）。")
    fys = person_year["fy"].to_numpy()
    rows = person_year.loc[in_area(person_year, muni_code) & ((fys == int(fy)) | (fys == int(fy) - 1))]
    cols = list(CRITERIA_IDS) + [ANY_ID]
    out = programs.ikkatsu_flags(rows, _claims_of(claims, rows["person_id"]), tables.get("kaigo"),
                                 tables.get("questionnaire"), fy, params, lookback_years=[fy])[cols]
    return out, note


def _claims_of(claims: pd.DataFrame, person_ids: pd.Series) -> pd.DataFrame:
    """The claims rows of `person_ids` (the area's persons out of the loaded prefecture), carrying the
    whole data's first month, which decides the look-back (`lookback.claims_history`, as a partition's
    claims do): each person's flags read only that person's claims, so they are the same."""
    first = claims.attrs.get("first_ym")
    first = int(pd.to_numeric(claims["ym"]).min()) if first is None and len(claims) else first
    ids = pd.Index(pd.unique(person_ids.astype("str")))
    own = claims["person_id"].astype("str").isin(ids) if len(claims) else np.zeros(0, bool)
    sub = claims.loc[np.asarray(own, dtype=bool)]
    sub.attrs = {**claims.attrs, "first_ym": first}
    return sub


# ---------------------------------------------------------------------------------------------
# priority list (confidential)


def approach(flags: pd.DataFrame) -> np.ndarray:
    """Suggested approach per person (docs/rules.md §6.1; 高齢者の特性を踏まえた保健事業ガイドライン).

    Rule: ハイリスクアプローチ (個別の訪問・相談・受診勧奨) when any criterion of
    `HIGH_RISK_CRITERIA` is met — 低栄養, 服薬（多剤・睡眠薬）, the four 重症化予防 criteria and
    健康状態不明者 (a medical finding, medication or an unknown state needs individual contact);
    ポピュレーションアプローチ (通いの場での健康教育・口腔体操・運動) when only the
    questionnaire-based criteria 口腔 and/or 身体的フレイル are met; "" when none is met.
    """
    cols = [c for c in HIGH_RISK_CRITERIA if c in flags.columns]
    high = flags[cols].to_numpy(dtype=bool).any(axis=1)
    any_ = flags[[c for c in CRITERIA_IDS if c in flags.columns]].to_numpy(dtype=bool).any(axis=1)
    return np.where(high, APPROACH_HIGH, np.where(any_, APPROACH_POPULATION, ""))


def _joined(flags: pd.DataFrame, texts: Mapping[str, str], sep: str = "、") -> np.ndarray:
    """Per row, the texts of the criteria met joined by `sep` (loop over criteria only)."""
    out = np.full(len(flags), "", dtype=object)
    for cid, text in texts.items():
        hit = flags[cid].to_numpy(dtype=bool)
        out = np.where(hit, np.where(out == "", text, out + sep + text), out)
    return out


def last_checkup_fy(person_year: pd.DataFrame, fy: int) -> pd.Series:
    """Latest fy ≤ `fy` with a checkup, per person_id (Int64 Series indexed by person_id)."""
    py = person_year[(person_year["fy"] <= int(fy)) & person_year["has_kenshin"].to_numpy(dtype=bool)]
    return py.groupby(py["person_id"].astype("str"))["fy"].max().astype("Int64")


def priority_list(person_year: pd.DataFrame, flags: pd.DataFrame, fy: int, muni_code: str,
                  params: IkkatsuParams = IkkatsuParams(), districts: pd.DataFrame | None = None) -> pd.DataFrame:
    """優先介入対象者リスト: one row per eligible person of the area meeting any criterion.

    CONFIDENTIAL (docs/design.md §6): contains person_id; save only with `ctx.save_confidential`.
    Columns: person_id, muni_code, district, sex, age, criteria (Japanese names joined by "、"),
    n_criteria, approach (`approach` rule), actions (examples per criterion), bmi, hba1c, sbp,
    dbp, egfr, urine_protein (−/±/1+…), max_drugs, last_checkup_fy, last_claim_ym, kaigo_level.
    Sorted: ハイリスクアプローチ first, then more criteria first, then district and age (older first).
    """
    py = person_year.loc[flags.index]
    keep = eligible(py, params) & in_area(py, muni_code) & flags[list(CRITERIA_IDS)].to_numpy(bool).any(axis=1)
    f = flags.loc[keep, list(CRITERIA_IDS)]
    p = py.loc[keep]
    names = criterion_names(params, with_any=False)
    egfr = pd.to_numeric(p["egfr_calc"], errors="coerce") if "egfr_calc" in p else pd.Series(np.nan, index=p.index)
    if "egfr" in p:
        egfr = egfr.fillna(pd.to_numeric(p["egfr"], errors="coerce"))
    bmi = pd.to_numeric(p["bmi"], errors="coerce") if "bmi" in p else pd.Series(np.nan, index=p.index)
    if "bmi_calc" in p:
        bmi = bmi.fillna(pd.to_numeric(p["bmi_calc"], errors="coerce"))
    dnames = areas.district_names(districts, muni_code) if areas.parse_code(muni_code).is_municipality else {}
    dcode = p["district_code"].fillna("").astype("str")
    last_ck = last_checkup_fy(person_year, fy)
    pid = p["person_id"].astype("str")
    kaigo = p["kaigo_level"].astype("str").where(p["kaigo_certified"].to_numpy(dtype=bool), NO_KAIGO) \
        if "kaigo_level" in p else pd.Series(NO_KAIGO, index=p.index)
    out = pd.DataFrame({
        "person_id": pid.to_numpy(),
        "muni_code": p["muni_code"].astype("str").to_numpy(),
        "district": dcode.map(dnames).astype(object).fillna(dcode).to_numpy(),  # object: no districts = all codes
        "sex": p["sex"].map(SEX_NAMES).to_numpy(),
        "age": p["age"].astype("int64").to_numpy(),
        "criteria": _joined(f, names),
        "n_criteria": f.to_numpy(dtype=bool).sum(axis=1).astype("int64"),
        "approach": approach(f),
        "actions": _joined(f, ACTIONS, sep="／"),
        "bmi": bmi.round(1).to_numpy(),
        "hba1c": pd.to_numeric(p.get("hba1c"), errors="coerce").to_numpy(),
        "sbp": pd.to_numeric(p.get("sbp"), errors="coerce").to_numpy(),
        "dbp": pd.to_numeric(p.get("dbp"), errors="coerce").to_numpy(),
        "egfr": egfr.round(1).to_numpy(),
        "urine_protein": pd.to_numeric(p.get("urine_protein"), errors="coerce").map(URINE_LABELS).to_numpy(),
        "max_drugs": pd.array(pd.to_numeric(p.get("max_drugs"), errors="coerce"), dtype="Int64"),
        "last_checkup_fy": pd.array(pid.map(last_ck).to_numpy(), dtype="Int64"),
        "last_claim_ym": pd.array(pd.to_numeric(p.get("last_claim_ym"), errors="coerce"), dtype="Int64"),
        "kaigo_level": kaigo.fillna(NO_KAIGO).to_numpy(),
    })
    out["_a"] = (out["approach"] != APPROACH_HIGH).astype(int)
    out = out.sort_values(["_a", "n_criteria", "district", "age", "person_id"],
                          ascending=[True, False, True, False, True], kind="stable").drop(columns="_a")
    out.insert(0, "priority", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)


PRIORITY_HEADERS = {
    "priority": "優先順位", "person_id": "被保険者番号", "muni_code": "市町村コード", "district": "地区",
    "sex": "性別", "age": "年齢", "criteria": "該当基準", "n_criteria": "該当数",
    "approach": "推奨アプローチ", "actions": "支援の例", "bmi": "BMI", "hba1c": "HbA1c(%)",
    "sbp": "収縮期血圧", "dbp": "拡張期血圧", "egfr": "eGFR", "urine_protein": "尿蛋白",
    "max_drugs": "最大処方薬剤数(月)", "last_checkup_fy": "最終健診年度",
    "last_claim_ym": "最終レセプト年月", "kaigo_level": "要介護度",
}


def japanese_headers(plist: pd.DataFrame) -> pd.DataFrame:
    """The priority list with the Japanese headers the nurse reads (CSV/xlsx)."""
    return plist.rename(columns=PRIORITY_HEADERS)


def priority_summary(plist: pd.DataFrame) -> pd.DataFrame:
    """Counts only (no person_id) for the report: persons by suggested approach."""
    counts = plist["approach"].value_counts().reindex([APPROACH_HIGH, APPROACH_POPULATION], fill_value=0)
    return pd.DataFrame({"approach": counts.index.astype("str"), "count": counts.to_numpy(dtype="int64")})


# ---------------------------------------------------------------------------------------------
# interactive recomputation


def threshold_counts(person_year: pd.DataFrame, tables: Mapping[str, pd.DataFrame], fy: int,
                     params: IkkatsuParams, muni_code: str,
                     threshold: int = privacy.DEFAULT_THRESHOLD,
                     prefecture: pd.DataFrame | None = None) -> tuple[pd.DataFrame, float]:
    """Count per criterion for the municipality and the prefecture with `params`: the whole
    prefecture is judged again with `programs.ikkatsu_flags` (vectorised) when the thresholds differ
    from docs/rules.md §6.1; with the default thresholds the flags the shared pass cached in
    person_year are those flags (`criteria_flags`), so they are counted as they are.

    Returns (table with 基準, 市町村 人数, 市町村 割合(%), 県 人数, 県 割合(%) — counts 1 … threshold − 1
    and their rates shown "‐" —, seconds taken by the recomputation, None when nothing was
    recomputed). `prefecture`: the criteria strata of every municipality with `params`
    (`municipal_criteria_strata`), whose sums are the prefecture's counts when `person_year` holds
    only the municipality's rows (docs/design.md §8.1); None: the rows of `person_year` are counted.
    """
    t0 = time.perf_counter()
    recompute = not is_default(params)
    flags = criteria_flags(person_year, fy, params, tables)
    seconds = time.perf_counter() - t0 if recompute else None
    py = person_year.loc[flags.index]
    den = eligible(py, params)
    here = den & in_area(py, muni_code)
    cols = list(CRITERIA_IDS) + [ANY_ID]
    f = flags[cols].to_numpy(dtype=bool)
    if prefecture is None:
        pref_counts, pref_den = f[den].sum(axis=0), den.sum()
    else:
        p = prefecture[prefecture["fy"].to_numpy() == int(fy)]
        sums = p.groupby("indicator_id", observed=True)[["numerator", "denominator"]].sum().reindex(cols, fill_value=0)
        pref_counts, pref_den = sums["numerator"].to_numpy(dtype="int64"), int(sums["denominator"].max())
    names = criterion_names(params)
    out = pd.DataFrame({
        "基準": [names[c] for c in cols],
        "市町村 人数": f[here].sum(axis=0).astype("int64"),
        "市町村 割合(%)": f[here].sum(axis=0) / max(here.sum(), 1) * 100,
        "県 人数": pref_counts.astype("int64"),
        "県 割合(%)": pref_counts / max(pref_den, 1) * 100,
    })
    out["市町村 割合(%)"] = out["市町村 割合(%)"].round(1)
    out["県 割合(%)"] = out["県 割合(%)"].round(1)
    shown = privacy.suppress_table(out, ["市町村 人数", "県 人数"],
                                   derived_cols={"市町村 人数": ["市町村 割合(%)"], "県 人数": ["県 割合(%)"]},
                                   threshold=threshold)
    return shown.drop(columns="suppressed"), seconds


def recount_text(seconds: float | None) -> str:
    """The line under `threshold_counts`' table: the recomputation time, or that the default
    thresholds were counted from the shared pass's flags."""
    if seconds is None:
        return "しきい値が既定値のため、共通の集計の判定（全県）をそのまま数えました（再計算なし）。"
    return f"抽出基準の再計算: {seconds:.2f}秒"


def threshold_explorer(person_year: pd.DataFrame, tables: Mapping[str, pd.DataFrame], fy: int,
                       muni_code: str, params: IkkatsuParams = IkkatsuParams(),
                       threshold: int = privacy.DEFAULT_THRESHOLD, prefecture=None):
    """ipywidgets sliders for the thresholds (`hsutils.publish.widgets.Panel`); the counts update when a
    slider is released (docs/design.md §9: only called under `if interactive:`). Returns the panel
    to display. `prefecture`: params → the criteria strata of every municipality
    (`municipal_criteria_strata`) for a run holding only its municipality's rows (`threshold_counts`)."""
    import ipywidgets as w

    from hsutils.publish import report, widgets

    sliders = {
        "bmi_max": w.FloatSlider(value=params.bmi_max, min=16, max=25, step=0.5, description="低栄養: BMI 以下"),
        "drugs_threshold": w.IntSlider(value=params.drugs_threshold, min=5, max=25, description="多剤: 薬剤数 以上"),
        "hba1c_poor": w.FloatSlider(value=params.hba1c_poor, min=6.5, max=10, step=0.1,
                                    description="コントロール不良: HbA1c 以上"),
        "sbp_poor": w.IntSlider(value=int(params.sbp_poor), min=130, max=200, step=5, description="同: 収縮期血圧 以上"),
        "dbp_poor": w.IntSlider(value=int(params.dbp_poor), min=80, max=120, step=5, description="同: 拡張期血圧 以上"),
        "hba1c_frailty": w.FloatSlider(value=params.hba1c_frailty, min=6.0, max=9.0, step=0.1,
                                       description="基礎疾患: HbA1c 以上"),
        "egfr_kidney": w.FloatSlider(value=params.egfr_kidney, min=15, max=60, step=1, description="腎機能: eGFR 未満"),
        "interruption_window_months": w.IntSlider(value=params.interruption_window_months, min=1, max=12,
                                                  description="治療中断: 直近の月数"),
    }

    def render(**values):
        p = dataclasses.replace(params, **values)
        pref = None if prefecture is None else prefecture(p)
        table, seconds = threshold_counts(person_year, tables, fy, p, muni_code, threshold, prefecture=pref)
        n = (int(eligible(rows_of_fy(person_year, fy), p).sum()) if pref is None else
             int(pref.loc[(pref["fy"] == int(fy)) & (pref["indicator_id"] == ANY_ID), "denominator"].sum()))
        persons = f"全県 {n:,}人"
        return [f"{persons}を既定値のしきい値で数えました（共通の集計の判定。再計算なし）" if seconds is None
                else f"{persons}で再計算しました（抽出 {seconds:.1f} 秒）", report.display_table(table)]

    return widgets.Panel(sliders, render)

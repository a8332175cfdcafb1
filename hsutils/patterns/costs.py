"""Notebook 06 医療費の分析: per-capita costs, the 地域差指数, disease groups, 人工透析, high costs.

Definitions (docs/rules.md §13; statistics docs/methods.md §13):

* **年間一人当たり医療費** = the year's cost ÷ insured person-years; a person's person-years are the
  months enrolled in the fiscal year ÷ 12 (enrollment `months`; without it 12 for 年度継続加入 and
  6 otherwise, reported) — the MHLW "年間平均被保険者数" (§13.1). Costs are `点数 × 10円` of the
  レセプト (docs/claims_rules.md §5): the `medical_costs` table of the UKE import when present, else
  the cost columns of `claims_monthly`. 入院 / 入院外 / 歯科 / 調剤 as docs/claims_rules.md §5.
* **地域差指数** (§13.2) = the area's cost ÷ the cost it would have with the reference's per-capita
  cost by sex × 5-year age band (indirect standardisation of a mean, 医療費マップ definition); the
  **年齢調整後一人当たり医療費** = 地域差指数 × the reference's per-capita cost. Interval:
  `hsutils.stats.cost_ratio_grouped`.
* **疾病別医療費** (§13.3): each receipt's cost to the group of its 主傷病 (`cost_groups` of
  `hsutils/data/claims_rules.yaml`); 慢性腎臓病 split by 人工透析 in the month. Needs `medical_costs`.
* **人工透析** (§13.4): persons with a dialysis month in the year (`dialysis_claim` of the person-year
  table) and new starters (`new_dialysis`, hsutils.rules.programs), with their costs.
* **高額** (§13.5): person-months whose 医科 cost (入院 + 入院外) is at least a threshold (80万円), and
  the concentration of cost in the top 1 % / 10 % of persons.

Everything is group-by sums over person rows (no loop over persons); committee tables carry the
person counts the suppression plan needs (`hsutils.publish.privacy`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.analysis import areas as areas_mod
from hsutils.analysis import indicators
from hsutils import stats
from hsutils.inputs import claims_rules, person_keys
from hsutils.inputs.lookback import fiscal_year_of_month
from hsutils.rules import programs
from hsutils.publish import privacy
from hsutils.core import distinct
from hsutils.core.errors import DataError, ParameterError

SETTINGS = ("入院", "入院外", "歯科", "調剤")
TOTAL = "計"
SETTINGS_ALL = SETTINGS + (TOTAL,)
INSURANCES = ("国保", "後期")


def population_label(insurance: str) -> str:
    """Footer population of 06's per-capita charts: every insured person of the insurance, with or
    without a receipt (the denominator is person-years), in the words of docs/rules.md §16."""
    if insurance not in INSURANCES:
        raise ParameterError(f"対象の保険（target_insurance）は {' / '.join(INSURANCES)} のいずれかで指定してください"
                             f"（指定値: {insurance!r}）")
    return indicators.INSURED_BY_INSURANCE[insurance]


PART_YEAR_MONTHS = 6  # docs/rules.md §13.1: part-year person without `months`
HIGH_COST_YEN = 800_000  # docs/rules.md §13.5
OTHER_GROUP = "その他"
UNKNOWN_GROUP = "主傷病不明"
DENTAL_GROUP = "歯科"
CKD_DIALYSIS = "慢性腎臓病（透析あり）"
CKD_NO_DIALYSIS = "慢性腎臓病（透析なし）"
LEVEL_PREF, LEVEL_MEDICAL_AREA, LEVEL_MUNI = "県", "二次医療圏", "市町村"
SOURCE_UKE = "medical_costs"
SOURCE_MONTHLY = "claims_monthly"
#: What notebook 06 loads besides person_year (`notebook.start(with_tables=TABLES)`): the UKE cost rows, and
#: of claims_monthly the costs (`_costs_long`) and the dialysis flag (`assign_groups`).
TABLES = {SOURCE_UKE: None,
          SOURCE_MONTHLY: ("person_id", "ym", *claims_rules.COST_COLUMN.values(), "dialysis")}
NO_UKE_NOTE = ("疾病別の医療費には、レセプト電算処理ファイル（UKE）から作る医療費の表（medical_costs: "
               "レセプトごとの点数と主傷病）が必要です。このデータには月次集計（claims_monthly）の医療費しかないため、"
               "主傷病ごとの内訳は作れません。UKE ファイルをデータフォルダの uke/ に置く（docs/claims_rules.md §7）と、"
               "疾病別の医療費と高額レセプトの疾病内訳も表示されます。")
NEEDS_SIGNAL_NOTE = ("医療費は地域の医療の必要度（ニーズ）を示すもので、順位づけのための数字ではありません。"
                     "高い地域は、受診の多さ・重症化・医療提供体制など原因を確かめる出発点です。")


# ---------------------------------------------------------------------------------------------
# Person-years and person costs (docs/rules.md §13.1)
# ---------------------------------------------------------------------------------------------
def person_years(person_year: pd.DataFrame) -> pd.DataFrame:
    """One row per enrollment row: keys, sex, age band, insurance and `years` = months ÷ 12.

    `months` from the enrollment table when given; else 12 for 年度継続加入 and
    `PART_YEAR_MONTHS` for a part-year person (`months_assumed` True; docs/rules.md §13.1)."""
    py = person_year
    full = py["full_year"].fillna(True).astype(bool).to_numpy() if "full_year" in py else np.ones(len(py), bool)
    given = pd.to_numeric(py["months"], errors="coerce").to_numpy(float) if "months" in py else np.full(len(py), np.nan)
    assumed = np.isnan(given) & ~full
    months = np.where(np.isnan(given), np.where(full, 12.0, PART_YEAR_MONTHS), given)
    out = pd.DataFrame({
        "person_id": py["person_id"].astype(str).to_numpy(), "fy": py["fy"].astype(np.int64).to_numpy(),
        "muni_code": py["muni_code"].astype(str).to_numpy(), "insurance": py["insurance"].astype(str).to_numpy(),
        "sex": py["sex"].astype(np.int64).to_numpy(), "age_band": py["age_band"].astype(str).to_numpy(),
        "years": months / 12.0, "months_assumed": assumed})
    return out


class _CostSource:
    """What the costs were read from (`source`: SOURCE_UKE, the monthly table, or None: no costs)."""
    source: str | None

    @property
    def has_costs(self) -> bool:
        return self.source is not None

    @property
    def has_diseases(self) -> bool:
        return self.source == SOURCE_UKE


@dataclass
class PersonCosts(_CostSource):
    """Person × fiscal year costs by setting, with the person-years (the one frame every table of
    notebook 06 is summed from)."""
    persons: pd.DataFrame
    source: str | None
    unmatched_rows: int = 0
    unmatched_cost: float = 0.0
    notes: list[str] = field(default_factory=list)


def _costs_long(tables: dict, source: str | None = None) -> tuple[pd.DataFrame | None, str | None]:
    """(person_id, fy, ym, setting, cost) rows from medical_costs, else from claims_monthly; `source`
    given (the data's source, `MunicipalCosts.source`): from that table only (an area without UKE
    rows in UKE data has no costs, never the other table's)."""
    if source is not None:
        tables = {source: tables.get(source)}
    mc = tables.get(SOURCE_UKE)
    if mc is not None and len(mc):
        d = mc[["person_id", "ym", "setting", "cost"]].copy()
        return d.assign(person_id=d["person_id"].astype(str)), SOURCE_UKE
    cm = tables.get(SOURCE_MONTHLY)
    cols = [claims_rules.COST_COLUMN[s] for s in SETTINGS]
    if cm is None or not len(cm) or not all(c in cm for c in cols):
        return None, None
    d = cm[["person_id", "ym", *cols]].melt(id_vars=["person_id", "ym"], value_vars=cols, var_name="col",
                                            value_name="cost")
    d["setting"] = d["col"].map({v: k for k, v in claims_rules.COST_COLUMN.items()})
    d = d[pd.to_numeric(d["cost"], errors="coerce").fillna(0) > 0]
    return d[["person_id", "ym", "setting", "cost"]].assign(person_id=d["person_id"].astype(str)), SOURCE_MONTHLY


def person_costs(person_year: pd.DataFrame, tables: dict, whole: "MunicipalCosts | None" = None) -> PersonCosts:
    """Each enrolled person × fiscal year with `years` and the cost of each setting and `計`.

    A cost in a fiscal year without an enrollment row of that person is not used and counted
    (`unmatched_rows`, `unmatched_cost`), so that read = used + listed holds. `whole` (a municipal
    run's `municipal_costs`): the source and these counts (and the notes) are the data's, as when
    every municipality's rows are read (a mover's costs of another municipality's years are not
    "unmatched" in the run of one municipality). When `whole` was just built from these very rows
    (a prefecture run), its person costs are taken over instead of computed again (`_held_parts`)."""
    parts = _held_parts(whole, person_year, tables)
    pyr, wide, source = parts or _person_cost_parts(person_year, tables,
                                                    None if whole is None else (whole.source or ""))
    if whole is not None and (wide is not None or whole.source is not None):
        # the data's counts and notes; an area without receipts in data with costs: its costs are 0
        return PersonCosts(pyr, source if wide is not None else whole.source, whole.unmatched_rows,
                           whole.unmatched_cost, _cost_notes(whole.assumed, whole.unmatched_rows, whole.unmatched_cost))
    if wide is None:
        return PersonCosts(pyr, None)
    matched = wide.index.isin(pd.MultiIndex.from_frame(pyr[["person_id", "fy"]]))
    # months of fiscal years without any enrollment (the claims look-back) are simply not analysed
    matched |= ~wide.index.get_level_values("fy").isin(pyr["fy"].unique())
    rows, cost = int((~matched).sum()), float(wide[~matched].to_numpy().sum())
    return PersonCosts(pyr, source, rows, cost, _cost_notes(int(pyr["months_assumed"].sum()), rows, cost))


def _held_parts(whole: "MunicipalCosts | None", person_year: pd.DataFrame, tables: dict):
    """The person costs that `whole`'s build computed from these very rows (a run holding every
    municipality's rows builds its sums from them: `municipal_costs`), handed over once, or None.
    They are what `_person_cost_parts` gives for the same rows and the data's source."""
    held = None if whole is None else whole.held
    if held is None:
        return None
    whole.held = None  # once: the frames are not kept alive beside the notebook's own
    rows, held_tables, pyr, wide, source = held
    same_rows = rows is person_year and all(tables.get(n) is held_tables.get(n) for n in (SOURCE_UKE, SOURCE_MONTHLY))
    return (pyr, wide, source) if same_rows and source == whole.source else None


def _person_cost_parts(person_year: pd.DataFrame, tables: dict, source: str | None):
    """(person_years with the cost of each setting and 計, the person × fy × setting costs of the
    receipts (None without costs), the source)."""
    pyr = person_years(person_year)
    long, source = _costs_long(tables, source)
    for s in SETTINGS:
        pyr[s] = 0.0
    if long is None:
        pyr[TOTAL] = 0.0
        return pyr, None, None
    long = long.assign(fy=fiscal_year_of_month(long["ym"]),
                       cost=pd.to_numeric(long["cost"], errors="coerce").fillna(0.0).astype(float))
    wide = long.pivot_table(index=["person_id", "fy"], columns="setting", values="cost", aggfunc="sum",
                            fill_value=0.0)
    idx = pd.MultiIndex.from_frame(pyr[["person_id", "fy"]])
    for s in SETTINGS:
        if s in wide.columns:
            pyr[s] = wide[s].reindex(idx).fillna(0.0).to_numpy(float)
    pyr[TOTAL] = pyr[list(SETTINGS)].sum(axis=1)
    return pyr, wide, source


def _cost_notes(n_assumed: int, unmatched_rows: int, unmatched_cost: float) -> list[str]:
    notes = []
    if n_assumed:
        notes.append(f"加入月数のない年度途中の加入・脱退者 {n_assumed:,}人年は {PART_YEAR_MONTHS}か月として数えました"
                     "（docs/rules.md §13.1）。")
    if unmatched_rows:
        notes.append(f"対象者表に該当年度の加入がない人の医療費 {unmatched_rows:,}人年分（{unmatched_cost:,.0f}円）は"
                     "集計に含めていません。")
    return notes


# ---------------------------------------------------------------------------------------------
# Every municipality's sums, computed once per cache (docs/design.md §8.1)
# ---------------------------------------------------------------------------------------------
#: the keys of `cost_sums`: a municipality's person rows summed by year, insurance, setting, sex and age band
COST_SUM_KEYS = ["muni_code", "fy", "insurance", "setting", "sex", "age_band"]
MUNICIPAL_COSTS_VERSION = 1  # bump when a sum below changes, so that saved sums are not reused
MUNICIPAL_FIRST_RUN = ("【初回のみ】市町村の比較（一人当たり医療費・地域差指数・疾病別・人工透析・医療費の集中）のため、"
                       "県内全市町村の医療費を市町村ごとに集計し、集計キャッシュに保存します。次回からは、同じデータ・"
                       "同じ条件なら保存した結果を使います。")


def cost_sums(pc: PersonCosts) -> pd.DataFrame:
    """`COST_SUM_KEYS`, the `stats.cost_sums` terms of each setting's cost over the person-years and
    `patients` (persons with a cost there): what the per-capita table, the 地域差指数 and its
    reference are computed from. Sums of municipalities add up to the sums of their area."""
    d = _long_by_setting(pc.persons)
    out = stats.cost_sums(d, COST_SUM_KEYS, "cost", "years")
    patients = (d["cost"] > 0).astype(np.int64).groupby([d[k] for k in COST_SUM_KEYS], observed=True, sort=True,
                                                         dropna=False).sum()
    out["patients"] = patients.to_numpy()
    return out


@dataclass
class MunicipalCosts(_CostSource):
    """Every municipality's sums (`municipal_costs`): `sums` (`cost_sums`), `groups`
    (`disease_group_sums`), `dialysis` (`dialysis_sums`), `counts` (`cost_counts`), and of the whole
    data the cost `source`, the person-years whose months were `assumed` and the costs without an
    enrollment (`unmatched_rows`, `unmatched_cost`; see `person_costs`)."""
    sums: pd.DataFrame
    groups: pd.DataFrame
    dialysis: pd.DataFrame
    counts: pd.DataFrame
    source: str | None
    assumed: int = 0
    unmatched_rows: int = 0
    unmatched_cost: float = 0.0
    #: (person_year, tables, person-years with costs, wide costs, source) of the rows a build held whole,
    #: for `person_costs` of the same rows (`_held_parts`); not saved
    held: tuple | None = field(default=None, repr=False, compare=False)


def _cost_sums_of(pc) -> pd.DataFrame:
    return pc.sums if isinstance(pc, MunicipalCosts) else cost_sums(pc)


def municipal_costs(prepared, rules: dict | None = None) -> MunicipalCosts:
    """What notebook 06 shows of every municipality, without holding their person rows (docs/design.md
    §8.1): each municipality's partitions are read in turn (`pipeline.each_municipality`: its
    person-years, its persons' whole claims history), summed (`cost_sums`, `disease_group_sums`,
    `dialysis_sums`, `cost_counts`), and saved once per cache and rules (`pipeline.derived_table`,
    `derived/costs_<table>_<key>.parquet`); later runs read them. A run that holds every
    municipality's rows (the prefecture) sums those at once instead of reading them again
    (`pipeline.municipal_rows`): the same tables, in a fraction of the time, and its person costs
    are handed to `person_costs` of the same rows (`MunicipalCosts.held`), which need not compute
    them again.

    A person-year is in the partition of its year's municipality only, so the sums add up to the
    prefecture's. A mover's receipts are in each of his municipalities' partitions, but each
    partition uses only the years of its own enrollment; a receipt of a year without any enrollment
    is counted once (`unmatched_rows`) as in `person_costs` of all rows."""
    from hsutils.analysis import pipeline

    cache = prepared.cache_dir
    fys = [int(f) for f in prepared.fiscal_years]
    uke = pipeline.has_parts(Path(cache) / SOURCE_UKE)
    rules = rules or claims_rules.load_rules()  # read once, not once per municipality
    built: dict = {}
    held: list = []  # the person costs of every row at once (a run holding them), for `person_costs`

    def build_all() -> dict:
        if built:
            return built
        print(MUNICIPAL_FIRST_RUN, flush=True)
        parts = {"sums": [], "groups": [], "dialysis": [], "counts": []}
        sources, assumed, candidates, enrolled, years_seen = set(), 0, [], [], set()
        for muni, py, tables in pipeline.municipal_rows(prepared, TABLES):  # a loop over partitions
            pyr, wide, source = _person_cost_parts(py, tables, SOURCE_UKE if uke else None)
            if muni is None:
                held.append((py, tables, pyr, wide, source))
            pc = PersonCosts(pyr, source)
            sources.add(source)
            assumed += int(pyr["months_assumed"].sum())
            years_seen |= set(pyr["fy"].unique().tolist())
            parts["sums"].append(cost_sums(pc))
            parts["dialysis"].append(dialysis_sums(pc, py))
            parts["counts"].append(cost_counts(pc))
            if source == SOURCE_UKE:
                parts["groups"].append(disease_group_sums(pc, tables, rules))
            if wide is not None:
                # receipts of a year without this municipality's enrollment: unmatched unless the person
                # was enrolled elsewhere that year (then he is a part-period person of that partition)
                own = wide.index.isin(pd.MultiIndex.from_frame(pyr[["person_id", "fy"]]))
                candidates.append(pd.DataFrame({"person_id": wide.index.get_level_values(0)[~own],
                                                "fy": wide.index.get_level_values(1)[~own],
                                                "cost": wide.to_numpy().sum(axis=1)[~own]}))
                part = pyr.groupby("person_id")["fy"].transform("size") < len(fys)
                enrolled.append(pyr.loc[part, ["person_id", "fy"]])
        source = SOURCE_UKE if SOURCE_UKE in sources else (SOURCE_MONTHLY if SOURCE_MONTHLY in sources else None)
        rows, cost = 0, 0.0
        if candidates:
            cand = pd.concat(candidates, ignore_index=True).drop_duplicates(["person_id", "fy"])
            cand = cand[cand["fy"].isin(sorted(years_seen))]
            elsewhere = pd.concat(enrolled, ignore_index=True) if enrolled else cand.iloc[:0]
            cand = cand[~pd.MultiIndex.from_frame(cand[["person_id", "fy"]]).isin(
                pd.MultiIndex.from_frame(elsewhere[["person_id", "fy"]]))]
            rows, cost = len(cand), float(cand["cost"].sum())
        if not parts["groups"]:  # no UKE costs: the table has its columns, no rows
            parts["groups"].append(pd.DataFrame({"muni_code": pd.Series([], dtype=str), "fy": pd.Series([], dtype=np.int64),
                                                 "insurance": pd.Series([], dtype=str),
                                                 "group": pd.Series([], dtype=str),
                                                 "patients": pd.Series([], dtype=np.int64),
                                                 "cost": pd.Series([], dtype=float)}))
        built.update({k: pd.concat(v, ignore_index=True) for k, v in parts.items()})
        built["notes"] = pd.DataFrame({"source": [source or ""], "assumed": [assumed], "unmatched_rows": [rows],
                                       "unmatched_cost": [cost]})
        return built

    key = (MUNICIPAL_COSTS_VERSION, fys, bool(uke), cost_groups(rules))
    got = {name: pipeline.derived_table(cache, f"costs_{name}", lambda name=name: build_all()[name], key=key)
           for name in ("notes", "sums", "groups", "dialysis", "counts")}
    sums = got["sums"].assign(setting=pd.Categorical(got["sums"]["setting"].astype(str), categories=list(SETTINGS_ALL),
                                                     ordered=True))
    notes = got["notes"].iloc[0]
    return MunicipalCosts(sums, got["groups"], got["dialysis"], got["counts"], str(notes["source"]) or None,
                          int(notes["assumed"]), int(notes["unmatched_rows"]), float(notes["unmatched_cost"]),
                          held=held[0] if held else None)


def source_label(pc: PersonCosts) -> str:
    if pc.source == SOURCE_UKE:
        return "レセプト電算処理ファイル（UKE）の点数×10円"
    if pc.source == SOURCE_MONTHLY:
        return "レセプト月次集計（claims_monthly）の医療費"
    return "医療費のデータなし"


# ---------------------------------------------------------------------------------------------
# Areas
# ---------------------------------------------------------------------------------------------
def _with_area(frame: pd.DataFrame, master: pd.DataFrame, level: str) -> pd.DataFrame:
    m = master.assign(muni_code=master["muni_code"].astype(str)).set_index("muni_code")
    if level == LEVEL_MUNI:
        code = frame["muni_code"].astype(str)
        name = code.map(m["name"]).fillna(code)
    elif level == LEVEL_MEDICAL_AREA:
        code = frame["muni_code"].astype(str).map(m["medical_area_code"].astype(str))
        name = frame["muni_code"].astype(str).map(m["medical_area"].astype(str))
    else:
        code = pd.Series(str(master["pref_code"].iloc[0]).zfill(2), index=frame.index)
        name = pd.Series(str(master["pref_name"].iloc[0]), index=frame.index)
    return frame.assign(level=level, area_code=code.to_numpy(), area_name=name.to_numpy())


def _long_by_setting(persons: pd.DataFrame, settings=SETTINGS_ALL) -> pd.DataFrame:
    keys = ["person_id", "fy", "muni_code", "insurance", "sex", "age_band", "years"]
    d = persons[keys + list(settings)].melt(id_vars=keys, value_vars=list(settings), var_name="setting",
                                            value_name="cost")
    d["setting"] = pd.Categorical(d["setting"], categories=list(settings), ordered=True)
    return d


def _levels(frame: pd.DataFrame, master: pd.DataFrame, levels) -> pd.DataFrame:
    has_ma = "medical_area_code" in master and master["medical_area_code"].notna().any()
    parts = [_with_area(frame, master, lv) for lv in levels if lv != LEVEL_MEDICAL_AREA or has_ma]
    return pd.concat(parts, ignore_index=True)


AREA_KEYS = ["level", "area_code", "area_name", "fy", "insurance", "setting"]
#: one area × year × insurance: the 4 settings add up to its 計 (hide_complements)
CELL_KEYS = ["level", "area_code", "fy", "insurance"]
PER_CAPITA_AMOUNTS = ["cost", "per_capita", "lower", "upper"]
INDEX_AMOUNTS = ["observed", "index", "lower", "upper", "adjusted", "adjusted_lower", "adjusted_upper", "comparison"]
HIGH_COST_TOTAL = "高額な月（計）"


def per_capita_table(pc: PersonCosts, master: pd.DataFrame, *, levels=(LEVEL_PREF, LEVEL_MEDICAL_AREA, LEVEL_MUNI),
                     conf=0.95) -> pd.DataFrame:
    """年間一人当たり医療費 by area level × area × fiscal year × insurance × setting (and 計), from the
    person rows (`PersonCosts`) or their `cost_sums` (`MunicipalCosts`: every municipality's).

    Columns: AREA_KEYS, `persons` (insured persons), `patients` (persons with a cost there),
    `person_years`, `cost`, `per_capita` with `lower`/`upper` (stats.per_capita_grouped)."""
    d = _levels(_cost_sums_of(pc), master, levels)
    out = stats.per_capita_from_sums(d, AREA_KEYS, conf)
    patients = d.groupby(AREA_KEYS, observed=True, sort=True)["patients"].sum()
    out["patients"] = patients.reindex(pd.MultiIndex.from_frame(out[AREA_KEYS])).fillna(0).astype(np.int64).to_numpy()
    out = out.rename(columns={"value": "per_capita"})
    return out[AREA_KEYS + ["persons", "patients", "person_years", "cost", "per_capita", "lower", "upper"]]


# ---------------------------------------------------------------------------------------------
# 地域差指数 (docs/rules.md §13.2)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostReference:
    """Per-capita cost by fy × insurance × setting × sex × age band of a reference population.

    `rates`: columns fy, insurance, setting, sex, age_band, ref_per_capita; `crude`: fy, insurance,
    setting, ref_crude (the reference's own per-capita cost); `label` (e.g. 石川県)."""
    label: str
    rates: pd.DataFrame
    crude: pd.DataFrame
    note: str = ""


def reference_from_data(pc: PersonCosts, label: str, muni_codes=None, by_sex: bool = True) -> CostReference:
    """The reference computed from the data: all persons of `muni_codes` (None = every
    municipality of the data, the prefecture)."""
    d = _cost_sums_of(pc)
    if muni_codes is not None:
        d = d[d["muni_code"].isin([str(c) for c in muni_codes])]
    d = d.rename(columns={"_c": "cost", "_w": "years"})
    if not by_sex:
        d = d.assign(sex=0)
    keys = ["fy", "insurance", "setting"]
    g = d.groupby(keys + ["sex", "age_band"], observed=True, sort=True)[["cost", "years"]].sum().reset_index()
    g["ref_per_capita"] = g["cost"] / g["years"].where(g["years"] > 0)
    c = d.groupby(keys, observed=True, sort=True)[["cost", "years"]].sum().reset_index()
    c["ref_crude"] = c["cost"] / c["years"].where(c["years"] > 0)
    return CostReference(label, g[keys + ["sex", "age_band", "ref_per_capita"]], c[keys + ["ref_crude"]])


REFERENCE_COLUMNS = {"年度": "fy", "保険種別": "insurance", "入院外来区分": "setting", "性別": "sex",
                     "年齢階級": "age_band", "一人当たり医療費": "ref_per_capita"}


def reference_from_table(df: pd.DataFrame, label: str, file_name: str = "比較の基準の表") -> CostReference:
    """A user-supplied reference (e.g. national figures): columns 年度, 保険種別, 入院外来区分
    (入院・入院外・歯科・調剤・計), 性別 (1/2, or 0 = 男女計), 年齢階級 (40-44 … 90+),
    一人当たり医療費 (円/年). Japanese headers or the English names. The crude per-capita cost is
    not in such a table; the index is then scaled by the age-standardised value only."""
    d = df.rename(columns=REFERENCE_COLUMNS)
    missing = [ja for ja, en in REFERENCE_COLUMNS.items() if en not in d]
    if missing:
        raise DataError(f"{file_name}: 列がありません: {'、'.join(missing)}（必要な列: {'、'.join(REFERENCE_COLUMNS)}）")
    d["ref_per_capita"] = pd.to_numeric(d["ref_per_capita"], errors="coerce")
    bad = d["ref_per_capita"].isna() | (d["ref_per_capita"] < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise DataError(f"{file_name} {row}行目 一人当たり医療費: 「{df.iloc[row - 2][df.columns[-1]]}」は0以上の数ではありません")
    bad_s = ~d["setting"].isin(SETTINGS_ALL)
    if bad_s.any():
        row = int(np.flatnonzero(bad_s.to_numpy())[0]) + 2
        raise DataError(f"{file_name} {row}行目 入院外来区分: 「{d['setting'].iloc[row - 2]}」は"
                        f"{'・'.join(SETTINGS_ALL)} のいずれかです")
    d = d.assign(fy=d["fy"].astype(np.int64), sex=d["sex"].astype(np.int64), age_band=d["age_band"].astype(str))
    return CostReference(label, d[["fy", "insurance", "setting", "sex", "age_band", "ref_per_capita"]],
                         pd.DataFrame(columns=["fy", "insurance", "setting", "ref_crude"]))


def regional_index_table(pc: PersonCosts, reference: CostReference, master: pd.DataFrame, *,
                         levels=(LEVEL_MEDICAL_AREA, LEVEL_MUNI), conf=0.95) -> pd.DataFrame:
    """地域差指数 and 年齢調整後一人当たり医療費 by area × fy × insurance × setting.

    Columns: AREA_KEYS, `persons`, `observed` (円), `expected` (円), `index` with `lower`/`upper`,
    `adjusted` (年齢調整後一人当たり医療費 = index × the reference's per-capita cost) with
    `adjusted_lower`/`adjusted_upper`, `comparison` (vs 1) and `reference`."""
    d = _levels(_cost_sums_of(pc), master, levels)
    by_sex = bool((reference.rates["sex"] != 0).any())
    if not by_sex:
        d = d.assign(sex=0)
    rates = reference.rates.assign(setting=reference.rates["setting"].astype(str))
    d = d.assign(setting=d["setting"].astype(str)).merge(rates, on=["fy", "insurance", "setting", "sex", "age_band"],
                                                         how="left")
    lacking = d["ref_per_capita"].isna() & (d["_w"] > 0)
    if lacking.any():
        ex = d.loc[lacking].iloc[0]
        raise DataError(f"比較の基準（{reference.label}）に {ex['fy']}年度 {ex['insurance']} {ex['setting']} "
                        f"性別{ex['sex']} {ex['age_band']}歳 の一人当たり医療費がありません。")
    out = stats.cost_ratio_from_sums(d, AREA_KEYS, ["sex", "age_band"], "ref_per_capita", conf)
    out = out.rename(columns={"value": "index"})
    crude = reference.crude.set_index(["fy", "insurance", "setting"])["ref_crude"]
    rc = crude.reindex(pd.MultiIndex.from_frame(out[["fy", "insurance", "setting"]].astype({"setting": str}))).to_numpy(float)
    out["adjusted"] = out["index"] * rc
    out["adjusted_lower"] = out["lower"] * rc
    out["adjusted_upper"] = out["upper"] * rc
    out["comparison"] = stats.compare_to_benchmark(out["lower"].to_numpy(), out["upper"].to_numpy(), 1.0)
    out["reference"] = reference.label
    out["setting"] = pd.Categorical(out["setting"], categories=list(SETTINGS_ALL), ordered=True)
    return out.sort_values(AREA_KEYS).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Disease groups (docs/rules.md §13.3)
# ---------------------------------------------------------------------------------------------
def cost_groups(rules: dict | None = None) -> list[tuple[str, str, list]]:
    """(key, Japanese name, ICD-10 patterns) of the disease groups, in attribution order."""
    rules = rules or claims_rules.load_rules()
    groups = rules.get("cost_groups")
    if not groups:
        raise ParameterError("レセプトの判定ルールに疾病別医療費の分類（cost_groups）がありません。"
                             "hsutils/data/claims_rules.yaml の cost_groups を利用者の claims_rules.yaml に写してください。")
    return [(g["key"], g["ja"], list(g["icd10"])) for g in groups]


def group_order(rules: dict | None = None) -> list[str]:
    names = []
    for key, ja, _ in cost_groups(rules):
        names += [CKD_DIALYSIS, CKD_NO_DIALYSIS] if key == "ckd" else [ja]
    return names + [OTHER_GROUP, DENTAL_GROUP, UNKNOWN_GROUP]


def lifestyle_groups(rules: dict | None = None) -> list[str]:
    rules = rules or claims_rules.load_rules()
    keys = set(rules.get("lifestyle_groups", []))
    names = []
    for key, ja, _ in cost_groups(rules):
        if key in keys:
            names += [CKD_DIALYSIS, CKD_NO_DIALYSIS] if key == "ckd" else [ja]
    return names


def assign_groups(medical_costs: pd.DataFrame, claims_monthly: pd.DataFrame | None, rules: dict | None = None) -> pd.Series:
    """Disease group of each medical_costs row from its 主傷病 (first matching group; docs/rules.md §13.3).
    歯科 receipts form their own group (their 傷病名 records are not read, docs/claims_rules.md §8).

    The groups are matched once per distinct 主傷病 code (a few thousand against millions of
    receipts) and a receipt's 人工透析 month is looked up by an integer person × month key."""
    codes, labels = _group_codes(medical_costs, claims_monthly, rules)
    return pd.Series(np.asarray(labels, dtype=object)[codes], index=medical_costs.index, dtype=object)


def _group_codes(medical_costs: pd.DataFrame, claims_monthly: pd.DataFrame | None,
                 rules: dict | None = None, persons: tuple[pd.Index, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, list[str]]:
    """`assign_groups` as (an index into the labels for each row, the labels). `persons`: (the person
    ids, each row's position among them, -1 for none) when the caller has them already."""
    n = len(medical_costs)
    icd = medical_costs["main_icd10"] if "main_icd10" in medical_costs else pd.Series(pd.NA, index=medical_costs.index)
    codes, uniques = pd.factorize(icd, use_na_sentinel=True)  # -1 = missing
    uniq = pd.Series(uniques, dtype=object)
    blank = (uniq.astype(str) == "").to_numpy()
    dental = (medical_costs["setting"] == "歯科").to_numpy()
    known = codes >= 0
    unknown = ~known | blank[np.where(known, codes, 0)] & known
    # per distinct code: the first group whose patterns match (index into `labels`; -1 = その他)
    group_of_code = np.full(len(uniq), -1, dtype=np.int64)
    labels, is_ckd = [], []
    for key, ja, patterns in cost_groups(rules):
        free = group_of_code < 0
        hit = free & claims_rules.icd10_in(uniq, patterns).to_numpy()
        group_of_code[hit] = len(labels)
        labels.append(ja)
        is_ckd.append(key == "ckd")
    row_group = np.where(known, group_of_code[np.where(known, codes, 0)], -1)
    row_group = np.where(dental | unknown, -1, row_group)
    dial = np.zeros(n, bool)
    if claims_monthly is not None and len(claims_monthly) and "dialysis" in claims_monthly and n:
        cm = claims_monthly[claims_monthly["dialysis"].astype(bool)]
        if persons is None:
            ids = pd.Index(pd.unique(medical_costs["person_id"].astype(str)))
            persons = ids, person_keys.positions(ids, medical_costs["person_id"].astype(str))
        ids, person_codes = persons
        # a row without a person code (-1) has a negative key: it never matches
        mc_key = np.asarray(person_codes, dtype=np.int64) * 1_000_000 + medical_costs["ym"].astype(np.int64).to_numpy()
        cm_person = person_keys.positions(ids, cm["person_id"].astype(str))
        cm_key = cm_person * 1_000_000 + cm["ym"].astype(np.int64).to_numpy()
        dial = np.isin(mc_key, cm_key[cm_person >= 0])
    # labels: the groups, then その他, 歯科, 不明 and the two 慢性腎臓病 halves
    out_labels = [*labels, OTHER_GROUP, DENTAL_GROUP, UNKNOWN_GROUP, CKD_DIALYSIS, CKD_NO_DIALYSIS]
    other, dent, unk, ckd_d, ckd_n = range(len(labels), len(labels) + 5)
    out = np.where(dental, dent, np.where(unknown, unk, other))
    for g, ckd in enumerate(is_ckd):
        hit = row_group == g
        if ckd:
            out[hit & dial] = ckd_d
            out[hit & ~dial] = ckd_n
        else:
            out[hit] = g
    return out, out_labels


def disease_group_sums(pc: PersonCosts, tables: dict, rules: dict | None = None) -> pd.DataFrame:
    """Per municipality × fy × insurance × group: `patients` (persons with a receipt of the group)
    and `cost`. A receipt counts in the municipality of its person's enrollment in its fiscal year
    (a receipt of a year without enrollment is not counted), so the municipalities' rows add up.

    Summed on integer codes (person × year looked up in the sorted person-years, one `bincount` per
    column), not by a merge and a group-by over millions of receipts; rows ordered by the keys'
    values. The costs are whole yen, so the sums are exact in any order."""
    mc = tables[SOURCE_UKE]
    who = pc.persons
    keys = ["muni_code", "fy", "insurance", "group"]
    person_codes, persons = pd.factorize(who["person_id"].astype(str))
    mc_person = person_keys.positions(pd.Index(persons), mc["person_id"].astype(str))  # each distinct id once
    mc_fy = fiscal_year_of_month(mc["ym"])
    group_codes, labels = _group_codes(mc, tables.get(SOURCE_MONTHLY), rules, (pd.Index(persons), mc_person))
    # each receipt's person-year row (person_id and fy are the enrollment's key: at most one)
    fys = who["fy"].to_numpy(dtype=np.int64)
    every_fy = np.concatenate([fys, mc_fy])
    fy0 = int(every_fy.min()) if len(every_fy) else 0
    span = int(every_fy.max()) - fy0 + 1 if len(every_fy) else 1
    py_key = person_codes.astype(np.int64) * span + (fys - fy0)
    order = np.argsort(py_key, kind="stable")
    sorted_key = py_key[order]
    mc_key = mc_person.astype(np.int64) * span + (mc_fy - fy0)
    hit = mc_person >= 0
    if len(sorted_key):
        pos = np.minimum(np.searchsorted(sorted_key, mc_key), len(sorted_key) - 1)
        hit &= sorted_key[pos] == mc_key
    else:
        pos = np.zeros(len(mc_key), dtype=np.int64)
        hit &= False
    row = order[pos[hit]]
    # the keys as codes in value order, so that the ascending combined code is groupby(sort=True)'s order
    # (factorized where they are few: the person-years' municipalities, the labels)
    muni_c, muni_v = pd.factorize(who["muni_code"], sort=True)
    muni_c = muni_c[row]
    fy_v = np.arange(fy0, fy0 + span, dtype=np.int64)
    fy_c = mc_fy[hit] - fy0
    ins_c, ins_v = pd.factorize(who["insurance"], sort=True)
    ins_c = ins_c[row]
    label_c, grp_v = pd.factorize(pd.Index(labels), sort=True)
    grp_c = label_c[group_codes[hit]]
    dims = [len(muni_v), len(fy_v), len(ins_v), len(grp_v)]
    code = ((muni_c.astype(np.int64) * dims[1] + fy_c) * dims[2] + ins_c) * dims[3] + grp_c
    n_codes = int(np.prod(dims, dtype=np.int64))
    cost = pd.to_numeric(mc["cost"], errors="coerce").to_numpy(dtype=float)[hit]
    cost_sum = np.bincount(code, weights=np.where(np.isnan(cost), 0.0, cost), minlength=n_codes)
    patients = distinct.distinct_counts(code, mc_person[hit], len(persons), n_codes)  # distinct persons per key
    present = np.flatnonzero(np.bincount(code, minlength=n_codes))
    m, rest = np.divmod(present, dims[1] * dims[2] * dims[3])
    f, rest = np.divmod(rest, dims[2] * dims[3])
    i, g = np.divmod(rest, dims[3])
    return pd.DataFrame({"muni_code": pd.Index(muni_v)[m], "fy": np.asarray(fy_v)[f].astype(np.int64),
                         "insurance": pd.Index(ins_v)[i], "group": pd.Index(grp_v)[g],
                         "patients": patients[present].astype(np.int64), "cost": cost_sum[present]})[
        keys + ["patients", "cost"]]


def disease_group_table(pc, tables: dict | None, master: pd.DataFrame, area_codes: dict[str, list | None],
                        rules: dict | None = None) -> pd.DataFrame:
    """疾病別医療費 per area × fy × insurance × group: `patients` (persons with a receipt of the
    group), `cost`, `per_capita` (÷ the area's person-years), `share` (% of the area's cost).
    `area_codes`: area name → its municipal codes (None = all). Empty without medical_costs.
    From person rows (`PersonCosts` and the `tables`) or every municipality's sums (`MunicipalCosts`)."""
    cols = ["area_name", "fy", "insurance", "group", "patients", "cost", "per_capita", "share"]
    if not pc.has_diseases:
        return pd.DataFrame(columns=cols)
    by_muni = pc.groups if isinstance(pc, MunicipalCosts) else disease_group_sums(pc, tables, rules)
    sums = _cost_sums_of(pc)
    who = sums[sums["setting"].astype(str) == TOTAL]
    order = group_order(rules)
    parts = []
    for name, codes in area_codes.items():  # the subject and its reference: two areas
        sel = by_muni if codes is None else by_muni[by_muni["muni_code"].isin([str(c) for c in codes])]
        py_ = who if codes is None else who[who["muni_code"].isin([str(c) for c in codes])]
        # a person is in one municipality in a year: the municipalities' patients add up
        g = sel.groupby(["fy", "insurance", "group"], sort=True)[["patients", "cost"]].sum().reset_index()
        grid = pd.MultiIndex.from_product([sorted(py_["fy"].unique()), INSURANCES, order],
                                          names=["fy", "insurance", "group"]).to_frame(index=False)
        g = grid.merge(g, on=["fy", "insurance", "group"], how="left").fillna({"patients": 0, "cost": 0.0})
        years = py_.groupby(["fy", "insurance"])["_w"].sum()
        total = g.groupby(["fy", "insurance"])["cost"].transform("sum")
        yy = years.reindex(pd.MultiIndex.from_frame(g[["fy", "insurance"]])).to_numpy(float)
        g["per_capita"] = g["cost"] / np.where(yy > 0, yy, np.nan)
        g["share"] = 100 * g["cost"] / total.where(total > 0)
        parts.append(g.assign(area_name=name))
    out = pd.concat(parts, ignore_index=True)
    out["patients"] = out["patients"].astype(np.int64)
    out["group"] = pd.Categorical(out["group"], categories=order, ordered=True)
    return out[cols].sort_values(["area_name", "fy", "insurance", "group"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# 人工透析 (docs/rules.md §13.4)
# ---------------------------------------------------------------------------------------------
DIALYSIS_SUMS = ("persons", "dialysis", "new_dialysis", "cost", "total")


def dialysis_sums(pc: PersonCosts, person_year: pd.DataFrame) -> pd.DataFrame:
    """Per municipality × fy × insurance: `DIALYSIS_SUMS` (person-years, dialysis patients, new ones,
    their cost, the cost of all) and `new_unknown` (the year's `new_dialysis` is undeterminable)."""
    flags = person_year[["person_id", "fy", "dialysis_claim", "new_dialysis"]].assign(
        person_id=person_year["person_id"].astype(str), fy=person_year["fy"].astype(np.int64))
    unknown_fys = set(flags.loc[flags["new_dialysis"].isna(), "fy"].tolist())
    d = pc.persons.merge(flags, on=["person_id", "fy"], how="left")
    dia = d["dialysis_claim"].fillna(False).astype(bool)
    # a person-year without a row has no claims flag: not new (the year's NA is set per year below)
    d = d.assign(dialysis=dia.astype(np.int64), new_dialysis=d["new_dialysis"].astype("boolean").fillna(False)
                 .astype(np.int64),
                 dialysis_cost=np.where(dia, d[TOTAL], 0.0), one=1)
    g = d.groupby(["muni_code", "fy", "insurance"], sort=True).agg(
        persons=("one", "sum"), dialysis=("dialysis", "sum"), new_dialysis=("new_dialysis", "sum"),
        cost=("dialysis_cost", "sum"), total=(TOTAL, "sum")).reset_index()
    return g.assign(new_unknown=g["fy"].isin(unknown_fys).to_numpy())


def dialysis_table(pc, person_year: pd.DataFrame | None, area_codes: dict[str, list | None]) -> pd.DataFrame:
    """Per area × fy × insurance: `persons`, `dialysis` patients (a dialysis month in the year),
    `new_dialysis` (hsutils.rules.programs: none in the look-back before), their `cost`, `cost_per_patient`
    (円/人) and `share` (% of the area's cost).

    `new_dialysis` of a year with fewer than 12 months of claims before it is unknown (NA in the
    person_year, docs/hotei.md §7.4): that year's cell is `programs.NEW_DIALYSIS_UNKNOWN`
    (「判定不能（前年度のレセプトなし）」), never a count; the other years stay counts."""
    d = pc.dialysis if isinstance(pc, MunicipalCosts) else dialysis_sums(pc, person_year)
    unknown_fys = set(d.loc[d["new_unknown"].astype(bool), "fy"].tolist())
    parts = []
    for name, codes in area_codes.items():
        sel = d if codes is None else d[d["muni_code"].isin([str(c) for c in codes])]
        g = sel.groupby(["fy", "insurance"], sort=True)[list(DIALYSIS_SUMS)].sum().reset_index()
        parts.append(g.assign(area_name=name))
    out = pd.concat(parts, ignore_index=True)
    out["cost_per_patient"] = out["cost"] / out["dialysis"].where(out["dialysis"] > 0)
    out["share"] = 100 * out["cost"] / out["total"].where(out["total"] > 0)
    if unknown_fys:
        unknown = out["fy"].isin(unknown_fys).to_numpy()
        out["new_dialysis"] = out["new_dialysis"].astype(object).where(~unknown, programs.NEW_DIALYSIS_UNKNOWN)
    return out[["area_name", "fy", "insurance", "persons", "dialysis", "new_dialysis", "cost", "cost_per_patient",
                "share"]]


# ---------------------------------------------------------------------------------------------
# High costs and concentration (docs/rules.md §13.5)
# ---------------------------------------------------------------------------------------------
def _persons_of(pc: PersonCosts, codes, fy: int, insurance: str) -> pd.DataFrame:
    """Person rows of one year and insurance in the area's municipalities (None = all)."""
    who = pc.persons[(pc.persons["fy"] == fy) & (pc.persons["insurance"] == insurance)]
    return who if codes is None else who[who["muni_code"].isin([str(c) for c in codes])]


def _high_cost_months(pc: PersonCosts, tables: dict, codes, fy: int, insurance: str, threshold: float):
    """(persons of the area, 医科 cost of each person-month ≥ threshold) or None without costs."""
    long, _ = _costs_long(tables, pc.source or "")  # the data's source (an area without UKE rows: none)
    if long is None:
        return None
    who = _persons_of(pc, codes, fy, insurance)
    long = long[_medical_rows_of_year(long, fy)]
    long = long[programs.person_in(long["person_id"], who["person_id"])]  # Arrow's hash look-up
    month = long.groupby(["person_id", "ym"])["cost"].sum()
    return who, month[month >= threshold]


def _medical_rows_of_year(costs_rows: pd.DataFrame, fy: int) -> np.ndarray:
    """Rows of the fiscal year's 医科 costs (入院, 入院外): the cheap integer and two-value tests
    first, so the person look-up runs on one year's rows (issue 18)."""
    return (fiscal_year_of_month(costs_rows["ym"]) == fy) & costs_rows["setting"].isin(["入院", "入院外"]).to_numpy(dtype=bool)


def high_cost_table(pc: PersonCosts, tables: dict, codes, fy: int, insurance: str, threshold: float = HIGH_COST_YEN,
                    rules: dict | None = None) -> pd.DataFrame:
    """Person-months whose 医科 cost (入院 + 入院外) ≥ threshold, in the area, year and insurance:
    per disease group (UKE) or in one row `高額な月（計）`: `persons`, `months`, `cost`, `share` (% of
    the area's cost of the year)."""
    return _high_cost_table_of(_high_cost_months(pc, tables, codes, fy, insurance, threshold), pc, tables, fy, rules)


def high_cost(pc: PersonCosts, tables: dict, codes, fy: int, insurance: str, threshold: float = HIGH_COST_YEN,
              rules: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`high_cost_table`, `high_cost_persons`) from one pass over the year's receipts: what notebook 06
    shows and lists (the high-cost months found once, not once for each)."""
    found = _high_cost_months(pc, tables, codes, fy, insurance, threshold)
    return _high_cost_table_of(found, pc, tables, fy, rules), _high_cost_persons_of(found)


def _high_cost_table_of(found, pc: PersonCosts, tables: dict, fy: int, rules: dict | None) -> pd.DataFrame:
    cols = ["group", "persons", "months", "cost", "share"]
    if found is None:
        return pd.DataFrame(columns=cols)
    who, high = found
    total = float(who[TOTAL].sum())
    key = pd.MultiIndex.from_frame(high.reset_index()[["person_id", "ym"]])
    if pc.has_diseases:
        mc = tables[SOURCE_UKE]
        mc = mc[_medical_rows_of_year(mc, fy)]  # the high months are of this year: fewer rows to key
        mc = mc[programs.person_in(mc["person_id"], high.index.get_level_values(0))]
        mc = mc[pd.MultiIndex.from_arrays([mc["person_id"].astype(str), mc["ym"].astype(np.int64)]).isin(key)]
        mc = mc.assign(person_id=mc["person_id"].astype(str),
                       group=assign_groups(mc, tables.get(SOURCE_MONTHLY), rules).to_numpy())
        g = mc.groupby("group").agg(persons=("person_id", "nunique"), cost=("cost", "sum"))
        g["months"] = mc.drop_duplicates(["group", "person_id", "ym"]).groupby("group").size()
        g = g.reindex(group_order(rules)).fillna(0).reset_index()
        g = g[g["cost"] > 0]
    else:
        g = pd.DataFrame(columns=["group", "persons", "months", "cost"])
    allrow = pd.DataFrame({"group": [HIGH_COST_TOTAL], "persons": [high.index.get_level_values(0).nunique()],
                           "months": [len(high)], "cost": [float(high.sum())]})
    out = pd.concat([allrow, g], ignore_index=True)
    out["persons"] = out["persons"].astype(np.int64)
    out["months"] = out["months"].astype(np.int64)
    out["share"] = 100 * out["cost"] / total if total > 0 else np.nan
    return out[cols]


CONCENTRATION_TOPS = (0.01, 0.05, 0.10, 0.20, 0.50)


def cost_counts(pc: PersonCosts) -> pd.DataFrame:
    """Per municipality × fy × insurance: how many person-years have each yearly cost (計) — the
    distribution `concentration` sorts, without the persons (no ids)."""
    keys = ["muni_code", "fy", "insurance", TOTAL]
    return (pc.persons.groupby(keys, sort=True).size().rename("persons").reset_index()
            .rename(columns={TOTAL: "cost"}))


def _area_costs(pc, codes, fy: int, insurance: str) -> np.ndarray:
    """The yearly costs (計) of the area's person-years of one year and insurance (any order)."""
    if not isinstance(pc, MunicipalCosts):
        return _persons_of(pc, codes, fy, insurance)[TOTAL].to_numpy(float)
    c = pc.counts[(pc.counts["fy"] == fy) & (pc.counts["insurance"] == insurance)]
    if codes is not None:
        c = c[c["muni_code"].isin([str(x) for x in codes])]
    return np.repeat(c["cost"].to_numpy(float), c["persons"].to_numpy(np.int64))


def concentration(pc, codes, fy: int, insurance: str, threshold: int = privacy.DEFAULT_THRESHOLD
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Share of the year's cost spent on the costliest persons (docs/rules.md §13.5).

    Returns (table, curve). table: `top` (e.g. 上位1%), `persons` (⌈share × insured⌉), `share`
    (% of the cost); a row whose persons count is below `threshold` is kept with its share NaN
    (a few persons' costs must not be published). curve: `person_share`, `cost_share` (0–1) from
    the first point with at least `threshold` persons on. `pc`: person rows, or every municipality's
    `cost_counts` (`MunicipalCosts`): the same sorted costs, so the same figures."""
    c = np.sort(_area_costs(pc, codes, fy, insurance))[::-1]
    n, total = len(c), float(c.sum())
    cum = np.cumsum(c) / total if total > 0 else np.zeros(n)
    rows = []
    for q in CONCENTRATION_TOPS:
        k = int(np.ceil(q * n))
        share = 100 * cum[k - 1] if k >= 1 and total > 0 else np.nan
        rows.append({"top": f"上位{q:.0%}", "persons": k, "share": share if k >= threshold else np.nan})
    table = pd.DataFrame(rows)
    start = max(threshold, 1)
    ks = np.arange(start, n + 1)
    curve = pd.DataFrame({"person_share": ks / n if n else [], "cost_share": cum[ks - 1] if n else []})
    return table, curve


# ---------------------------------------------------------------------------------------------
# Committee tables: privacy relations
# ---------------------------------------------------------------------------------------------
def hide_complements(df: pd.DataFrame, group_cols, count_col: str, value_cols, threshold: int = privacy.DEFAULT_THRESHOLD,
                     parts=None) -> pd.DataFrame:
    """Complementary suppression of amounts that add up (docs/rules.md §13.6).

    Within each group (`group_cols`), the rows selected by `parts` (default all) are parts of a
    total that is published elsewhere (計 = 入院 + 入院外 + 歯科 + 調剤; the disease groups add up
    to the total cost). When a part's `count_col` is 1…threshold−1 its amounts are hidden by the
    suppression plan; so that no subtraction from the total gives them back, the smallest further
    parts are hidden too (their `value_cols` set to the suppression mark) until the hidden parts
    together hold at least `threshold` persons. The counts themselves stay for the plan."""
    out = df.copy()
    sel = np.ones(len(out), bool) if parts is None else np.asarray(parts, bool)
    n = pd.to_numeric(out[count_col], errors="coerce").fillna(0).to_numpy(float)
    small = sel & np.asarray(privacy.is_small(n, threshold), dtype=bool)
    if not small.any():
        return out
    # the one secondary-suppression engine (privacy.suppress_groups: the group's total is shown elsewhere)
    hidden = np.zeros(len(out), dtype=bool)
    hidden[sel] = privacy.suppress_groups(out.loc[sel].assign(**{count_col: n[sel]}), count_col, list(group_cols),
                                          threshold=threshold)
    extra = hidden & ~small
    cols = list(value_cols)
    out[cols] = out[cols].astype(object)
    out.loc[out.index[extra], cols] = privacy.SUPPRESSION_MARK
    return out


def with_row_key(table: pd.DataFrame) -> pd.DataFrame:
    """Adds `row_key` (level:area:fy:insurance:setting), the key the privacy relations name."""
    key = (table["level"].astype(str) + ":" + table["area_code"].astype(str) + ":" + table["fy"].astype(str) + ":"
           + table["insurance"].astype(str) + ":" + table["setting"].astype(str))
    return table.assign(row_key=key.to_numpy())


def area_relations(table: pd.DataFrame, master: pd.DataFrame, count_cols=("persons", "patients")) -> list:
    """The municipalities' counts add up to their 二次医療圏 and to the prefecture (per fy ×
    insurance × setting): one `privacy.Partition` per count column over `row_key`
    (`with_row_key`), so that no hidden town can be recovered by subtraction."""
    t = table[["level", "area_code", "fy", "insurance", "setting", "row_key"]].astype(str)
    munis = t[t["level"] == LEVEL_MUNI]
    if munis.empty:
        return []
    ma_of = master.assign(muni_code=master["muni_code"].astype(str)).set_index("muni_code")["medical_area_code"].astype(str)
    munis = munis.assign(parent_ma=munis["area_code"].map(ma_of))
    groups = []
    for parent_level, parent_col in ((LEVEL_PREF, None), (LEVEL_MEDICAL_AREA, "parent_ma")):
        parents = t[t["level"] == parent_level]
        if parents.empty:
            continue
        by = ["fy", "insurance", "setting"] + (["parent_ma"] if parent_col else [])
        parts = munis.groupby(by)["row_key"].apply(tuple)
        pk = parents.assign(parent_ma=parents["area_code"]).set_index(by)["row_key"]
        for k, part in parts.items():  # one relation per area × year × insurance × setting
            if k in pk.index:
                groups.append((pk[k], part))
    return [privacy.Partition(col, "row_key", tuple(groups)) for col in count_cols]


#: the id under which the 医療費 reference is looked up (not an NDB item: 全国 is 比較なし without a table)
COST_REFERENCE_ID = "medical_costs"


@dataclass(frozen=True)
class Comparison:
    """What notebook 06 compares the area with: the reference of the 地域差指数 (`reference`), the
    areas of the side-by-side tables (`areas`: name → municipal codes, None = all) and a Japanese
    `note` when a requested reference is not available (「比較なし（理由）」, never a substitute)."""
    reference: CostReference
    areas: dict
    note: str = ""


def comparison(pc: PersonCosts, area, resolution, master: pd.DataFrame, *, reference_table=None,
               reference_label: str = "全国", by_sex: bool = True) -> Comparison:
    """The comparison of notebook 06 for the subject `area` (hsutils.analysis.areas.Area) and the
    `resolution` of `hsutils.analysis.areas.resolve_reference` (docs/rules.md §13.2):

    * a user reference table (`reference_table`, DataFrame) → the 地域差指数 against it;
    * else the reference area of `resolution` when it is available (県, 二次医療圏);
    * else (全国・同規模 requested without a table) 「比較なし（理由）」 for that reference, and the
      index against the prefecture, labelled as such."""
    pref_name = str(master["pref_name"].iloc[0])
    note = ""
    # 全国 (NDB has no costs) and 同規模 with too few peers are not in the data: 比較なし, never a substitute
    usable, codes = resolution.data_members(COST_REFERENCE_ID, master)
    if reference_table is not None:
        ref = reference_from_table(reference_table, reference_label)
    elif usable:
        ref = reference_from_data(pc, resolution.label, codes, by_sex=by_sex)
    else:
        what = resolution.substitute_for or resolution.kind
        why = resolution.reason or resolution.unavailable_reason(COST_REFERENCE_ID)
        note = (f"{what}との{areas_mod.no_comparison(f'{why}、{what}の性・年齢階級別一人当たり医療費の表もないため')}。"
                f"地域差指数は{pref_name}を基準に計算しています。")
        ref = reference_from_data(pc, pref_name, None, by_sex=by_sex)
    subject_codes = area.member_munis(master)
    areas = {area.display_name: subject_codes}
    if subject_codes is not None:  # a municipality or 二次医療圏: its reference beside it
        ref_codes = codes if (usable and reference_table is None) else None
        areas[ref.label if (reference_table is None and usable) else pref_name] = ref_codes
    return Comparison(ref, areas, note)


def years_in_scope(available, requested) -> list[int]:
    return [int(y) for y in available if requested is None or int(y) in [int(v) for v in requested]]


def chart_frame(masked: pd.DataFrame, fy: int, insurance: str, labels: dict) -> pd.DataFrame:
    """Rows of a masked per-capita table for one year and insurance, the four settings, for the
    chart's areas (`labels`: (level, area_code) → label, in display order)."""
    d = masked[(masked["fy"] == fy) & (masked["insurance"] == insurance) & (masked["setting"].astype(str) != TOTAL)]
    key = list(zip(d["level"], d["area_code"].astype(str)))
    d = d.assign(label=[labels.get(k) for k in key])
    d = d[d["label"].notna()]
    order = {v: i for i, v in enumerate(labels.values())}
    d = chart_numbers(d, ["per_capita", "persons", "patients"])
    return d.assign(_o=d["label"].map(order)).sort_values(["_o", "setting"]).drop(columns="_o")


def chart_labels(table: pd.DataFrame, area, master: pd.DataFrame, fy: int, insurance: str) -> dict:
    """(level, area_code) → label of the per-capita chart: every municipality (sorted by the
    total per-capita cost, highest first) plus the prefecture for a prefecture's report; the
    municipality, its 二次医療圏 and the prefecture for a municipal one."""
    pref_code = str(master["pref_code"].iloc[0]).zfill(2)
    pref_label = {(LEVEL_PREF, pref_code): f"{master['pref_name'].iloc[0]}（県全体）"}
    if area.level == "pref":
        t = table[(table["level"] == LEVEL_MUNI) & (table["fy"] == fy) & (table["insurance"] == insurance)
                  & (table["setting"].astype(str) == TOTAL)].sort_values("per_capita", ascending=False)
        return {**pref_label, **{(LEVEL_MUNI, str(c)): str(n) for c, n in zip(t["area_code"], t["area_name"])}}
    out = {}
    if area.level == "muni":
        out[(LEVEL_MUNI, str(area.muni_code))] = area.display_name
    if area.medical_area_code:
        ma = master.loc[master["medical_area_code"].astype(str) == str(area.medical_area_code), "medical_area"]
        out[(LEVEL_MEDICAL_AREA, str(area.medical_area_code))] = f"{ma.iloc[0] if len(ma) else area.medical_area_code}（二次医療圏）"
    return {**out, **pref_label}


def with_patients(index_table: pd.DataFrame, per_capita: pd.DataFrame) -> pd.DataFrame:
    """The patients count of `per_capita_table` beside each 地域差指数 row (for suppression)."""
    keys = ["level", "area_code", "fy", "insurance", "setting"]
    p = per_capita[keys + ["patients"]].astype({"setting": str})
    return index_table.astype({"setting": str}).merge(p, on=keys, how="left")


def high_cost_persons(pc: PersonCosts, tables: dict, codes, fy: int, insurance: str,
                      threshold: float = HIGH_COST_YEN) -> pd.DataFrame:
    """Person-level list (confidential/ only): persons with a high-cost month in the year —
    person_id, number of such months, their 医科 cost, the person's cost of the year, dialysis."""
    return _high_cost_persons_of(_high_cost_months(pc, tables, codes, fy, insurance, threshold))


def _high_cost_persons_of(found) -> pd.DataFrame:
    cols = ["person_id", "muni_code", "high_cost_months", "high_cost_yen", "annual_cost_yen"]
    if found is None:
        return pd.DataFrame(columns=cols)
    who, month = found
    high = month.groupby(level=0).agg(["size", "sum"])
    high.columns = ["high_cost_months", "high_cost_yen"]
    w = who.set_index("person_id")
    out = high.assign(muni_code=w["muni_code"].reindex(high.index), annual_cost_yen=w[TOTAL].reindex(high.index))
    return out.reset_index()[cols].sort_values("annual_cost_yen", ascending=False).reset_index(drop=True)


def explorer(pc: PersonCosts, per_capita_masked: pd.DataFrame, groups_masked: pd.DataFrame, area_name: str,
             threshold: int = privacy.DEFAULT_THRESHOLD):
    """ipywidgets panel (JupyterLab by hand only): choose year, insurance and disease group; the
    suppressed per-capita costs by setting and the group's cost are shown at once."""
    import ipywidgets as widgets

    from hsutils.publish import report, widgets as panels

    years = sorted(int(y) for y in per_capita_masked["fy"].unique())
    groups = [str(g) for g in pd.unique(groups_masked["group"])] if len(groups_masked) else []
    controls = {"fy": widgets.Dropdown(options=years, value=years[-1], description="年度"),
                "insurance": widgets.Dropdown(options=list(INSURANCES), description="保険"),
                "group": widgets.Dropdown(options=groups or ["（疾病別なし）"], description="疾病分類")}

    def render(fy, insurance, group):
        t = per_capita_masked[(per_capita_masked["fy"] == fy) & (per_capita_masked["insurance"] == insurance)]
        t = t.reset_index(drop=True)  # row numbers of the full table are not shown
        shown = [report.display_table(t[["area_name", "setting", "persons", "per_capita", "lower", "upper"]], {
            "area_name": "地域", "setting": "区分", "persons": "被保険者数", "per_capita": "一人当たり医療費（円）",
            "lower": "下限（円）", "upper": "上限（円）"}, counts=("per_capita", "lower", "upper"))]
        if groups:
            g = groups_masked[(groups_masked["fy"] == fy) & (groups_masked["insurance"] == insurance)
                              & (groups_masked["group"].astype(str) == group)]
            shown.append(report.display_table(g.reset_index(drop=True)))
        return shown

    return panels.Panel(controls, render)


def read_reference_table(path) -> pd.DataFrame | None:
    """The user's reference table (CSV/xlsx, `cost_reference_path`), or None."""
    if path in (None, ""):
        return None
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise ParameterError(f"地域差指数の基準表 {p} がありません（パラメータ cost_reference_path）")
    if p.suffix.lower() in (".xlsx", ".xls"):
        return pd.read_excel(p)
    from hsutils.inputs.io import _decode_bytes  # the loader's strict encoding detection
    import io as _stdio

    text, _ = _decode_bytes(p.read_bytes(), p.name)
    return pd.read_csv(_stdio.StringIO(text))


def index_conditions(reference: CostReference, by_sex: bool) -> str:
    strata = "性・5歳年齢階級" if by_sex and (reference.rates["sex"] != 0).any() else "5歳年齢階級"
    return f"地域差指数 = 実績医療費 ÷ 基準医療費（{reference.label}の{strata}別一人当たり医療費、間接法）。区間は線形化法"


def ranked_frame(index_masked: pd.DataFrame, master: pd.DataFrame, fy: int, insurance: str) -> pd.DataFrame:
    """Municipal rows (計) of one year and insurance, with their 二次医療圏 name for the ranked chart."""
    d = index_masked[(index_masked["level"] == LEVEL_MUNI) & (index_masked["fy"] == fy)
                     & (index_masked["insurance"] == insurance) & (index_masked["setting"].astype(str) == TOTAL)]
    ma = master.assign(muni_code=master["muni_code"].astype(str)).set_index("muni_code")["medical_area"]
    d = chart_numbers(d, ["index", "lower", "upper", "patients"])
    d["comparison"] = d["comparison"].where(d["comparison"] != privacy.SUPPRESSION_MARK, None)
    return d.assign(medical_area=d["area_code"].astype(str).map(ma).fillna("").to_numpy()).reset_index(drop=True)


def chart_numbers(df: pd.DataFrame, cols) -> pd.DataFrame:
    """Numbers for a chart from a masked table: hidden cells (NaN or the mark of `hide_complements`) → NaN."""
    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce").astype(float) for c in cols if c in df})


def index_map(index_masked: pd.DataFrame, layers: dict, fy: int, insurance: str, reference_label: str, footer: str,
              threshold: int):
    """Choropleth (or tile map) of the 地域差指数 (計) by municipality; suppressed towns are blank."""
    from hsutils.publish import plots

    d = index_masked[(index_masked["level"] == LEVEL_MUNI) & (index_masked["fy"] == fy)
                     & (index_masked["insurance"] == insurance) & (index_masked["setting"].astype(str) == TOTAL)]
    values = chart_numbers(d.rename(columns={"area_code": "code", "area_name": "name"})[["code", "name", "index", "patients"]],
                           ["index", "patients"])
    tiles = layers["tiles"] if layers.get("muni") is None else None
    return plots.choropleth(values, layers.get("muni"), value_col="index", title=f"地域差指数（{insurance}・"
                            f"{plots.fy_japanese(fy)}、基準 {reference_label} = 1）", footer=footer, tiles=tiles,
                            count_col="patients", suppress_threshold=threshold, legend_title="地域差指数",
                            value_fmt="{:.2f}", cmap="Oranges", fallback_note=layers.get("note") or None).figure


#: trend charts of notebook 06: measure → (y label, value format, name)
TREND_MEASURES = {"per_capita": ("一人当たり医療費（円/年）", "{:,.0f}", "年間一人当たり医療費（計）"),
                  "index": ("地域差指数", "{:.2f}", "地域差指数（計）")}


def trend_frame(per_capita_masked: pd.DataFrame, index_masked: pd.DataFrame, area, master: pd.DataFrame,
                insurance: str) -> pd.DataFrame:
    """Long frame (measure, series, fy, value, lower, upper) of the 計 over the years: the area
    and the prefecture (per capita), the area's 地域差指数 (for a prefecture: its 二次医療圏)."""
    pref_code = str(master["pref_code"].iloc[0]).zfill(2)
    if area.level == "pref":
        own = [(LEVEL_PREF, pref_code)]
        idx_areas = index_masked.loc[index_masked["level"] == LEVEL_MEDICAL_AREA, "area_code"].astype(str).unique()
        idx_keys = [(LEVEL_MEDICAL_AREA, c) for c in idx_areas]
    else:
        key = (LEVEL_MUNI, str(area.muni_code)) if area.level == "muni" else (LEVEL_MEDICAL_AREA, str(area.code))
        own = [key, (LEVEL_PREF, pref_code)]
        idx_keys = [key]
    parts = []
    for measure, table, keys, col in (("per_capita", per_capita_masked, own, "per_capita"),
                                      ("index", index_masked, idx_keys, "index")):
        t = table[(table["insurance"] == insurance) & (table["setting"].astype(str) == TOTAL)]
        sel = pd.Series(list(zip(t["level"], t["area_code"].astype(str))), index=t.index).isin(keys)
        t = t[sel.to_numpy()]
        t = chart_numbers(t, [col, "lower", "upper"])
        parts.append(pd.DataFrame({"measure": measure, "series": t["area_name"].to_numpy(), "fy": t["fy"].to_numpy(),
                                   "value": t[col].to_numpy(float), "lower": t["lower"].to_numpy(float),
                                   "upper": t["upper"].to_numpy(float)}))
    return pd.concat(parts, ignore_index=True).sort_values(["measure", "series", "fy"]).reset_index(drop=True)


def reference_name(cmp: Comparison, area_name: str) -> str:
    others = [n for n in cmp.areas if n != area_name]
    return others[0] if others else ""


def group_chart_frame(groups_masked: pd.DataFrame, area_name: str, fy: int, insurance: str) -> pd.DataFrame:
    """The area's groups of one year and insurance with the comparison area's per-capita cost."""
    d = groups_masked[(groups_masked["fy"] == fy) & (groups_masked["insurance"] == insurance)]
    own = d[d["area_name"] == area_name]
    other = d[d["area_name"] != area_name]
    ref = pd.Series(pd.to_numeric(other["per_capita"], errors="coerce").to_numpy(float),
                    index=other["group"].astype(str).to_numpy())
    own = chart_numbers(own.assign(group=own["group"].astype(str)), ["per_capita", "patients"])
    return own.assign(reference_per_capita=own["group"].map(ref).to_numpy(float)).reset_index(drop=True)


def group_summary(groups_shown: pd.DataFrame, area_name: str, fy: int, insurance: str, rules: dict | None = None) -> str:
    """Japanese sentence: the share of 生活習慣病 and the largest groups (suppressed cells left out)."""
    d = groups_shown[(groups_shown["area_name"] == area_name) & (groups_shown["fy"] == fy)
                     & (groups_shown["insurance"] == insurance)]
    share = pd.to_numeric(d["share"], errors="coerce")
    life = d["group"].astype(str).isin(lifestyle_groups(rules))
    top = d.assign(s=share).dropna(subset=["s"]).sort_values("s", ascending=False).head(3)
    tops = "、".join(f"{g}（{v:.1f}%）" for g, v in zip(top["group"].astype(str), top["s"]))
    hidden = share[life].isna().any()
    life_text = (f"生活習慣病の医療費は医療費全体の {share[life].sum():.1f}%" + ("（秘匿した分類を除く）" if hidden else "")
                 if share[life].notna().any() else "生活習慣病の割合は秘匿のため表示しません")
    return f"{area_name} {insurance}: {life_text}。割合の大きい分類: {tops or 'なし'}。"


def dialysis_chart_frame(dialysis_masked: pd.DataFrame, fy: int, insurance: str) -> pd.DataFrame:
    d = dialysis_masked[(dialysis_masked["fy"] == fy) & (dialysis_masked["insurance"] == insurance)]
    return chart_numbers(d, ["share", "dialysis"]).reset_index(drop=True)


def concentration_frames(pc, areas: dict, fy: int, insurance: str,
                         threshold: int = privacy.DEFAULT_THRESHOLD) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`concentration` for each comparison area: (table with `area_name`, curves with `series`)."""
    tables, curves = [], []
    for name, codes in areas.items():  # the area and its reference
        t, c = concentration(pc, codes, fy, insurance, threshold)
        tables.append(t.assign(area_name=name))
        curves.append(c.assign(series=name))
    table = pd.concat(tables, ignore_index=True)[["area_name", "top", "persons", "share"]]
    return table, pd.concat(curves, ignore_index=True)


def summary_text(index_table: pd.DataFrame, area_code, fy: int, insurance: str, threshold: int) -> str:
    """Japanese sentences: the area's 地域差指数 (each setting and 計) and whether it differs
    from 1; for a prefecture (`area_code` None) the municipalities significantly above or below."""
    t = index_table[(index_table["fy"] == fy) & (index_table["insurance"] == insurance)]
    if area_code is None:
        # every setting, 計 first: a town high in one setting only (e.g. 入院) is named too
        lines = []
        for setting in (TOTAL,) + tuple(x for x in SETTINGS_ALL if x != TOTAL):
            m = t[(t["level"] == LEVEL_MUNI) & (t["setting"].astype(str) == setting)]
            hi = m.loc[m["comparison"] == stats.SIGNIFICANTLY_HIGHER, "area_name"].tolist()
            lo = m.loc[m["comparison"] == stats.SIGNIFICANTLY_LOWER, "area_name"].tolist()
            lines.append(f"- {setting}: 有意に高い市町村 {'、'.join(hi) or 'なし'}／有意に低い市町村 {'、'.join(lo) or 'なし'}")
        return f"{insurance} {fy}年度 地域差指数が基準より有意に高い・低い市町村:\n" + "\n".join(lines)
    t = t[t["area_code"].astype(str) == str(area_code)]
    if t.empty:
        return "この地域・年度・保険の地域差指数はありません。"
    lines = []
    t = t.assign(_o=t["setting"].astype(str).map({k: i for i, k in enumerate(SETTINGS_ALL)})).sort_values("_o")
    for _, r in t.iterrows():  # five settings
        value = pd.to_numeric(pd.Series([r["index"]]), errors="coerce").iloc[0]
        if not np.isfinite(value):
            lines.append(f"- {r['setting']}: 人数が少ないため表示しません")
            continue
        lines.append(f"- {r['setting']}: 地域差指数 {value:.2f}（95%信頼区間 {float(r['lower']):.2f}–{float(r['upper']):.2f}）"
                     f" … {r['comparison']}")
    return f"{t['area_name'].iloc[0]} {insurance} の地域差指数（基準 {t['reference'].iloc[0]} = 1）:\n" + "\n".join(lines)

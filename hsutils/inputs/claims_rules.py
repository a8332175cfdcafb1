"""Claims rules as data, and the canonical claims tables derived from UKE receipts.

The rules (disease groups by ICD-10, drug groups by 薬価基準収載医薬品コード, 人工透析 by 診療行為,
the forms counted in 薬剤数) live in ``hsutils/data/claims_rules.yaml``; each one is documented with
its source in docs/claims_rules.md §6. `derive_tables` turns the long tables of `hsutils.inputs.uke` into

* ``claims_monthly`` — person × month flags, costs, 薬剤数, 医療機関数 (same columns as before);
* ``diagnoses`` — one row per 傷病名 line (ICD-10, 疑い, 主傷病, 転帰, 開始日);
* ``prescriptions`` — person × month × drug × prescribing institution × dispensing institution;
* ``medical_costs`` — person × month × 入院/入院外/歯科/調剤 × 主傷病 (ICD-10 and its 大分類; 点数, 円);

plus a report of codes missing from the masters and of 未コード化傷病名 (docs/claims_rules.md §4.3).
Everything is grouped with pandas; no loop over persons.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hsutils.inputs import lookback, person_keys
from hsutils.inputs.claims_masters import Masters
from hsutils.core import distinct
from hsutils.core.errors import ParameterError
from hsutils.inputs.uke import (SETTING_DENTAL, SETTING_INPATIENT, SETTING_OUTPATIENT, SETTING_PHARMACY,
                         UkeTables)

FLAG_COLUMNS = ("diabetes", "hypertension", "dyslipidemia", "ckd", "dialysis", "heart_failure", "stroke")
FORM_LABELS = {1: "内服", 2: "内滴", 3: "屯服", 4: "注射", 5: "外用", 6: "浸煎", 7: "湯", 9: "材料", 0: "その他"}
COST_COLUMN = {SETTING_INPATIENT: "cost_inpatient", SETTING_OUTPATIENT: "cost_outpatient",
               SETTING_DENTAL: "cost_dental", SETTING_PHARMACY: "cost_pharmacy"}
UNCODED = "0000999"


def default_rules_path() -> Path:
    return Path(str(resources.files("hsutils") / "data" / "claims_rules.yaml"))


def load_rules(path=None) -> dict:
    """The claims rules (YAML); the shipped defaults when `path` is None.

    A file is parsed once per process and version (its path, size and modification time): PyYAML
    takes about 0.1 s for it, and a loop over municipalities asked for the rules dozens of times
    (3.8 s of 07's per-municipality counts). Each call gets its own copy, so a caller may change it."""
    p = Path(path) if path is not None else default_rules_path()
    try:
        stat = p.stat()
        rules = _parsed_rules(str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    except (OSError, yaml.YAMLError) as e:
        raise ParameterError(f"レセプトの判定ルール {p} を読めません（{e}）") from e
    rules = copy.deepcopy(rules)
    need = ("disease_groups", "drug_groups", "count_forms", "dialysis", "icd10_chapters")
    missing = [k for k in need if k not in (rules or {})]
    if missing:
        raise ParameterError(f"レセプトの判定ルール {p} に項目がありません: {', '.join(missing)}")
    return rules


@functools.lru_cache(maxsize=8)
def _parsed_rules(path: str, size: int, mtime_ns: int):
    """The YAML of `path` (`load_rules`; size and time only make a changed file a new key)."""
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def drug_ingredient(yj: pd.Series, code: pd.Series) -> pd.Series:
    """The 成分 of a drug (docs/claims_rules.md §6.3): the first 7 digits of its 薬価基準コード,
    or ``code:<医薬品コード>`` when the drug is not in the master. One definition for
    `claims_monthly.n_drugs` here and for `hsutils.patterns.medication` (docs/rules.md §10.1)."""
    yj = pd.Series(yj, copy=False).astype("string")
    return yj.str.slice(0, 7).fillna("code:" + pd.Series(code, index=yj.index).astype(str)).astype(str)


def counted_form_labels(rules: dict) -> tuple[str, ...]:
    """The 剤形 labels (as in `prescriptions.form`) of the rules' `count_forms` (§6.3)."""
    return tuple(FORM_LABELS[int(f)] for f in rules["count_forms"])


def icd10_in(icd: pd.Series, patterns) -> pd.Series:
    """True where an ICD-10 code (no dot, e.g. 'E119') matches one of the patterns:
    'E10-E14' = 3-character categories E10 … E14 inclusive; 'E112' = that code and its sub-codes."""
    icd = pd.Series(icd, copy=False)
    codes, uniq = _distinct_codes(icd)
    return pd.Series(_icd10_in_distinct(uniq, patterns)[codes], index=icd.index)


def _distinct_codes(icd: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(position of each row's code in the distinct codes, the distinct codes normalised: upper
    case, no dot, missing as ''). The rules are matched once per distinct code, not once per row
    (a month has thousands of 傷病名 rows and a few hundred codes)."""
    codes, uniq = pd.factorize(icd.fillna("").astype(str).to_numpy(dtype=object))
    return codes, pd.Series(uniq, dtype=object).str.upper().str.replace(".", "", regex=False)


def _icd10_in_distinct(icd: pd.Series, patterns) -> np.ndarray:
    cat = icd.str.slice(0, 3)
    hit = np.zeros(len(icd), bool)
    for p in patterns:
        p = str(p).upper().replace(".", "")
        if "-" in p:
            a, b = p.split("-")
            hit |= ((cat >= a[:3]) & (cat <= b[:3]) & (icd.str.len() >= 3)).to_numpy(bool)
        else:
            hit |= icd.str.startswith(p).to_numpy(bool)
    return hit


def _prefix_in(codes: pd.Series, prefixes) -> pd.Series:
    codes = codes.fillna("").astype(str)
    hit = np.zeros(len(codes), bool)
    for p in prefixes:
        hit |= codes.str.startswith(str(p)).to_numpy()
    return pd.Series(hit, index=codes.index)


def icd10_chapter(icd: pd.Series, rules: dict) -> pd.Series:
    """The label of the first `icd10_chapters` range an ICD-10 code falls in (docs/claims_rules.md),
    NA when none; matched once per distinct code."""
    codes, uniq = _distinct_codes(icd)
    chapter = pd.Series(pd.NA, index=uniq.index, dtype="object")
    for rng, label in rules["icd10_chapters"]:
        chapter = chapter.mask(chapter.isna() & _icd10_in_distinct(uniq, [rng]), label)
    return pd.Series(chapter.to_numpy(dtype=object)[codes], index=icd.index, dtype="object")


@dataclass
class ClaimsTables:
    tables: dict
    report: dict = field(default_factory=dict)
    exclusions: pd.DataFrame = field(default_factory=pd.DataFrame)


def _person_ids(receipts: pd.DataFrame, link) -> pd.Series:
    """person_id of each receipt: the 個人ID対応表 (`hsutils.inputs.person_keys.PersonIds`) when given,
    else the person key of HO/SN (docs/formats/person_key.md §1)."""
    if link is None or isinstance(link, Path):  # no 個人ID対応表: the 枝番 of SN where it is unique
        key = person_keys.fill_edaban(receipts["person_key"].astype(str))
        # a salt file: the same pseudonym as for the XML documents
        return key if link is None else person_keys.pseudonyms(key, link)
    return pd.Series(link.lookup(receipts["person_key"]).to_numpy(), index=receipts.index)


class MuniLookup:
    """The municipality of a person in a fiscal year, from the enrollment table, built once for all
    months of receipts (`derive_tables` runs once per month): person ids as integer codes (one hash
    table), and (person code, fiscal year) as sorted int64 keys searched with `np.searchsorted`
    (docs/claims_rules.md §5). The row of the fiscal year of the month wins (the first such row),
    else the person's latest fiscal year; a person not in the enrollment has none."""

    def __init__(self, enrollment: pd.DataFrame | None):
        e = (enrollment[["person_id", "fy", "muni_code"]].dropna() if enrollment is not None
             else pd.DataFrame({"person_id": [], "fy": [], "muni_code": []}))
        codes, persons = pd.factorize(e["person_id"].astype(str).to_numpy(dtype=object))
        self.persons = pd.Index(persons, dtype=object)
        fy = e["fy"].to_numpy(dtype=np.int64)
        self.first_fy = int(fy.min()) if len(fy) else 0
        self.span = int(fy.max()) - self.first_fy + 1 if len(fy) else 1
        key = codes.astype(np.int64) * self.span + (fy - self.first_fy)
        # the first row of each (person, fy), as drop_duplicates keeps it (np.unique: stable)
        self.keys, first = np.unique(key, return_index=True)
        self.munis = e["muni_code"].to_numpy(dtype=object)[first]
        # keys sorted by person then fy: a person's latest year is the last key of its code
        person_of_key = self.keys // self.span
        last = np.r_[person_of_key[1:] != person_of_key[:-1], True][:len(person_of_key)]
        self.latest = np.empty(len(self.persons), dtype=object)
        self.latest[person_of_key[last]] = self.munis[last]

    @property
    def empty(self) -> bool:
        return len(self.keys) == 0

    def of(self, person_id: pd.Series, ym: pd.Series) -> pd.Series:
        """muni_code of each (person_id, YYYYMM) (NA when the person is not in the enrollment)."""
        out = np.full(len(person_id), None, dtype=object)
        if self.empty:
            return pd.Series(out, index=person_id.index, dtype="object")
        code = person_keys.positions(self.persons, person_id.astype(str).to_numpy(dtype=object))
        ym = np.asarray(ym, dtype=np.int64)
        fy = lookback.fiscal_year_of_month(ym) - self.first_fy
        known = code >= 0
        in_span = known & (fy >= 0) & (fy < self.span)
        key = code.astype(np.int64) * self.span + fy
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        same_year = in_span & (self.keys[pos] == key)
        out[known] = self.latest[code[known]]
        out[same_year] = self.munis[pos[same_year]]
        return pd.Series(out, index=person_id.index, dtype="object")


def _muni_of(person_ym: pd.DataFrame, enrollment) -> pd.Series:
    """muni_code from the enrollment (a `MuniLookup`, or the table to build one from): the row of
    the fiscal year of the month, else the person's latest row."""
    lookup = enrollment if isinstance(enrollment, MuniLookup) else MuniLookup(enrollment)
    return lookup.of(person_ym["person_id"], person_ym["ym"])


TOP_CODES = 10  # unknown codes listed by `hsutils check`, most frequent first
CLAIMS_TABLE_NAMES = ("claims_monthly", "diagnoses", "prescriptions", "medical_costs")


def _top(codes: pd.Series, k: int = TOP_CODES) -> list[tuple[str, int]]:
    vc = codes.value_counts()
    return [(str(c), int(n)) for c, n in vc.head(k).items()]


def _counts(codes: pd.Series) -> dict:
    return {str(c): int(n) for c, n in codes.value_counts().items()}


def derive_tables(uke: UkeTables, masters: Masters, rules: dict | None = None,
                  enrollment: pd.DataFrame | MuniLookup | None = None, link=None) -> ClaimsTables:
    """Canonical claims tables from UKE receipts (docs/claims_rules.md §5–§6). `enrollment`: the
    enrollment table or its `MuniLookup` (build it once when deriving month by month)."""
    rules = rules or load_rules()
    rec = uke.receipts.copy()
    rec["person_id"] = _person_ids(rec, link)
    excl = []
    nolink = rec["person_id"].isna()
    if nolink.any():
        excl.append(_receipt_excl(rec[nolink], "HO 保険者番号・記号・番号",
                                  "個人ID対応表（person_ids.csv または uke_person_link.csv）にない被保険者です（保険者番号-記号-番号-枝番）"))
    rec = rec[~nolink]
    if enrollment is not None and not isinstance(enrollment, MuniLookup):
        enrollment = MuniLookup(enrollment)
    rec["muni_code"] = _muni_of(rec[["person_id", "ym"]], enrollment)
    if enrollment is not None and not enrollment.empty:
        nomuni = rec["muni_code"].isna()
        if nomuni.any():
            excl.append(_receipt_excl(rec[nomuni], "対象者", "対象者表（enrollment）にいない被保険者のレセプトです"))
        rec = rec[~nomuni]
    # each receipt's person-month: its row in claims_monthly (grouped and sorted as there), carried to
    # the diagnoses, procedures and drugs with the receipt's columns, so that the monthly flags, sums
    # and distinct counts below are array operations on that row number (not look-ups by two text keys)
    keys = ["person_id", "ym"]
    by_month = rec.groupby(keys, sort=True)
    rec["_pm"] = by_month.ngroup().to_numpy(np.int64)
    rcols = rec.set_index("receipt_id")[["person_id", "muni_code", "ym", "institution", "setting", "_pm"]]

    # diagnoses with ICD-10 and the disease groups
    dx = uke.diagnoses[uke.diagnoses["receipt_id"].isin(rcols.index)].copy()
    dmaster = masters.disease.set_index("code")
    dx["icd10"] = dx["code"].map(dmaster["icd10"])
    uncoded = dx["code"] == UNCODED
    name = dx["uncoded_name"].fillna("").astype(str)
    susp_word = np.zeros(len(dx), bool)
    for w in rules.get("suspected_words", []):
        susp_word |= name.str.contains(w, regex=False).to_numpy()
    dx["suspected"] = dx["suspected"].to_numpy(bool) | (uncoded.to_numpy() & susp_word)
    countable = ~dx["suspected"] if not rules.get("include_suspected", False) else pd.Series(True, index=dx.index)
    group_hits = {}
    for g, spec in rules["disease_groups"].items():
        by_icd = icd10_in(dx["icd10"], spec.get("icd10", []))
        by_kw = np.zeros(len(dx), bool)
        for w in spec.get("keywords", []):
            by_kw |= name.str.contains(w, regex=False).to_numpy()
        group_hits[g] = (by_icd.to_numpy() | (uncoded.to_numpy() & by_kw)) & countable.to_numpy()
    in_any_group = np.zeros(len(dx), bool)
    for h in group_hits.values():
        in_any_group |= h
    matched_uncoded = uncoded.to_numpy() & in_any_group
    dx = dx.join(rcols, on="receipt_id")

    # procedures: dialysis
    pr = uke.procedures[uke.procedures["receipt_id"].isin(rcols.index)].copy()
    pmaster = masters.procedure.set_index("code")["name"]
    pname = pr["code"].map(pmaster)
    dial = _prefix_in(pname, rules["dialysis"].get("name_prefixes", [])) | pr["code"].isin(
        [str(c) for c in rules["dialysis"].get("codes", [])])
    pr = pr.join(rcols, on="receipt_id")

    # drugs
    dr = uke.drugs[uke.drugs["receipt_id"].isin(rcols.index)].copy()
    ymaster = masters.drug.set_index("code")
    dr["yj"] = dr["code"].map(ymaster["yj"])
    dr = dr.join(rcols, on="receipt_id")
    rx_map = rec.set_index("receipt_id")["rx_institution"]
    outside = dr["dispensed"] == "院外"
    dr["prescriber_code"] = np.where(outside, dr["receipt_id"].map(rx_map), dr["institution"])
    dr["dispenser_code"] = dr["institution"]
    ingredient = drug_ingredient(dr["yj"], dr["code"])
    drug_hits = {g: _prefix_in(dr["yj"], spec.get("yj_prefixes", [])).to_numpy()
                 for g, spec in rules["drug_groups"].items()}

    # claims_monthly: one row per person × month of the receipts (row `_pm` of each receipt)
    out = by_month.agg(muni_code=("muni_code", "first")).reset_index()
    n_pm = len(out)
    rec_pm, dx_pm, pr_pm, dr_pm = (t["_pm"].to_numpy(np.int64) for t in (rec, dx, pr, dr))
    for g in FLAG_COLUMNS:
        if g == "dialysis":
            out[g] = _months_with(pr_pm[dial.to_numpy(bool)], n_pm)
        elif g in group_hits:
            out[g] = _months_with(dx_pm[group_hits[g]], n_pm)
        else:
            out[g] = np.zeros(n_pm, np.int8)
    yen = pd.to_numeric(rec["yen"]).fillna(0).to_numpy()  # whole yen: float sums are exact far beyond a month's
    setting = rec["setting"].to_numpy(dtype=object)
    for st, col in COST_COLUMN.items():
        at = setting == st
        out[col] = np.bincount(rec_pm[at], weights=yen[at], minlength=n_pm).astype("int64")
    counted = dr["form_code"].isin(rules["count_forms"]).to_numpy()
    out["n_drugs"] = _distinct_per_month(dr_pm[counted], ingredient.to_numpy(dtype=object)[counted], n_pm)
    medical = (rec["setting"] != SETTING_PHARMACY).to_numpy()
    out["n_institutions"] = _distinct_per_month(rec_pm[medical], rec["institution"].to_numpy(dtype=object)[medical],
                                                n_pm)
    out["hypnotic"] = _months_with(dr_pm[drug_hits.get("hypnotic", np.zeros(len(dr), bool))], n_pm)
    from hsutils.core.schema import TABLES
    claims_monthly = out[TABLES["claims_monthly"].names].reset_index(drop=True)

    # canonical long tables
    diagnoses = pd.DataFrame({
        "person_id": dx["person_id"], "muni_code": dx["muni_code"], "ym": dx["ym"],
        "institution_code": dx["institution"], "disease_code": dx["code"], "icd10": dx["icd10"],
        "suspected": dx["suspected"].astype("int8"), "main": dx["main"].astype("int8"),
        "outcome": dx["outcome"], "start_date": dx["start"]}).reset_index(drop=True)
    pres = dr.assign(efficacy=dr["yj"].str.slice(0, 3), form=dr["form_code"].map(FORM_LABELS).fillna("その他"))
    gkeys = ["person_id", "ym", "drug_code", "prescriber_code", "dispenser_code", "form"]
    pres = pres.rename(columns={"code": "drug_code"})
    prescriptions = (pres.groupby(gkeys, sort=True, dropna=False)
                     .agg(muni_code=("muni_code", "first"), yj_code=("yj", "first"),
                          efficacy_class=("efficacy", "first"), days=("days", "sum"),
                          quantity=("quantity", "sum"), dispensed=("dispensed", "first"))
                     .reset_index())
    prescriptions = prescriptions[["person_id", "muni_code", "ym", "drug_code", "yj_code", "efficacy_class",
                                   "form", "prescriber_code", "dispenser_code", "dispensed", "days", "quantity"]]
    main = dx.sort_values(["receipt_id", "main", "line"], ascending=[True, False, True]).drop_duplicates("receipt_id")
    main_icd = rec["receipt_id"].map(main.set_index("receipt_id")["icd10"])
    rec["main_icd10"] = _with_prescriber_diagnosis(rec.assign(main_icd10=main_icd), rec_pm)
    rec["main_chapter"] = icd10_chapter(rec["main_icd10"], rules)
    medical_costs = (rec.groupby(["person_id", "ym", "setting", "main_chapter", "main_icd10"], sort=True,
                                 dropna=False)
                     .agg(muni_code=("muni_code", "first"), points=("points", "sum"), cost=("yen", "sum"),
                          n_receipts=("receipt_id", "size")).reset_index())
    medical_costs = medical_costs[["person_id", "muni_code", "ym", "setting", "main_chapter", "main_icd10",
                                   "points", "cost", "n_receipts"]]

    # report: codes missing from the masters, uncoded diseases
    report = {
        "unknown_disease": _top(dx.loc[dx["icd10"].isna() & ~uncoded.to_numpy(), "code"]),
        "n_unknown_disease": int((dx["icd10"].isna() & ~uncoded.to_numpy()).sum()),
        "unknown_drug": _top(dr.loc[dr["yj"].isna(), "code"]),
        "n_unknown_drug": int(dr["yj"].isna().sum()),
        "unknown_procedure": _top(pr.loc[pname.isna().to_numpy(), "code"]),
        "n_unknown_procedure": int(pname.isna().sum()),
        # full counts, so that the reports of several months add up (hsutils.inputs.claims_import)
        "counts_unknown_disease": _counts(dx.loc[dx["icd10"].isna() & ~uncoded.to_numpy(), "code"]),
        "counts_unknown_drug": _counts(dr.loc[dr["yj"].isna(), "code"]),
        "counts_unknown_procedure": _counts(pr.loc[pname.isna().to_numpy(), "code"]),
        "n_uncoded": int(uncoded.sum()), "n_uncoded_matched": int(matched_uncoded.sum()),
        "n_suspected": int(dx["suspected"].sum()),
    }
    exclusions = pd.concat(excl, ignore_index=True) if excl else pd.DataFrame()
    return ClaimsTables(tables={"claims_monthly": claims_monthly, "diagnoses": diagnoses,
                                "prescriptions": prescriptions.reset_index(drop=True),
                                "medical_costs": medical_costs}, report=report, exclusions=exclusions)


def _with_prescriber_diagnosis(rec: pd.DataFrame, pm: np.ndarray) -> pd.Series:
    """`main_icd10` of each receipt; a 調剤 receipt (no 傷病名 of its own) takes the 主傷病 of the
    prescribing institution's 医科 receipt of the same person and month — the 入院外 one when there
    are both — and stays empty when there is none (docs/claims_rules.md §6.7). `pm`: each receipt's
    person-month number (equal numbers: the same person and month)."""
    icd = rec["main_icd10"].copy()
    setting = rec["setting"].to_numpy(dtype=object)
    pharmacy = setting == SETTING_PHARMACY
    if not pharmacy.any():
        return icd
    main = rec["main_icd10"].to_numpy(dtype=object)
    medical = np.flatnonzero(((setting == SETTING_OUTPATIENT) | (setting == SETTING_INPATIENT))
                             & rec["main_icd10"].notna().to_numpy())
    # the institutions of both sides as one set of codes (a missing code matches a missing one)
    inst, _ = pd.factorize(np.concatenate([rec["institution"].to_numpy(dtype=object)[medical],
                                           rec["rx_institution"].to_numpy(dtype=object)[pharmacy]]),
                           use_na_sentinel=False)
    n_inst = int(inst.max(initial=0)) + 1
    med_key = pm[medical] * n_inst + inst[:len(medical)]
    # per person, month and institution the 入院外 receipt first, then the lowest receipt number
    order = np.lexsort((rec["receipt_id"].to_numpy()[medical], setting[medical] == SETTING_INPATIENT))
    keys, first = np.unique(med_key[order], return_index=True)
    ph_key = pm[pharmacy] * n_inst + inst[len(medical):]
    values = np.full(int(pharmacy.sum()), np.nan, dtype=object)
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, ph_key), len(keys) - 1)
        hit = keys[pos] == ph_key
        values[hit] = main[medical[order[first[pos[hit]]]]]
    icd[pharmacy] = values
    return icd


def _months_with(pm: np.ndarray, n_pm: int) -> np.ndarray:
    """1 for each person-month row (of `n_pm`) that has at least one of the rows numbered `pm`, else 0."""
    flag = np.zeros(n_pm, np.int8)
    flag[pm] = 1
    return flag


def _distinct_per_month(pm: np.ndarray, values: np.ndarray, n_pm: int) -> np.ndarray:
    """Number of distinct non-missing `values` of each person-month row (of `n_pm`), as a group-by's
    `nunique` counts them (missing values are not counted; a row without any has 0)."""
    code, _ = pd.factorize(values)  # missing → -1
    ok = code >= 0
    return distinct.distinct_counts(pm[ok], code[ok], int(code.max(initial=0)) + 1, n_pm)


def _receipt_excl(r: pd.DataFrame, column: str, reason: str) -> pd.DataFrame:
    return pd.DataFrame({"file": r["file"].astype(str).to_numpy(), "table": "uke",
                         "row": r["line"].to_numpy(np.int64), "column": column,
                         "value": r["ym"].astype(str).to_numpy(), "reason": reason, "scope": "レセプト"})


def unknown_codes_text(report: dict) -> list[str]:
    """Japanese lines for `hsutils check`: codes missing from the masters, uncoded diseases."""
    lines = []
    for key, label in (("disease", "傷病名コード"), ("drug", "医薬品コード"), ("procedure", "診療行為コード")):
        n = report[f"n_unknown_{key}"]
        if n:
            top = "、".join(f"{c}（{k:,} 件）" for c, k in report[f"unknown_{key}"])
            lines.append(f"  マスターにない{label}: {n:,} 件（多い順: {top}）。マスターを最新にしてください")
        else:
            lines.append(f"  マスターにない{label}: なし")
    lines.append(f"  未コード化傷病名（0000999）: {report['n_uncoded']:,} 件（うちキーワードで疾病群に該当 "
                 f"{report['n_uncoded_matched']:,} 件）")
    lines.append(f"  疑い病名（集計から除外）: {report['n_suspected']:,} 件")
    return lines

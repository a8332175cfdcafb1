"""適正服薬 (notebook 07): 多剤・重複・睡眠薬 rules on the `prescriptions` table, the list for
服薬情報通知, committee tables and the before/after evaluation of the notices.

Rules (docs/rules.md §10; every threshold is a field of `MedicationParams`):

* counted prescriptions (§10.1): 剤形 in `count_forms` (default the claims rules' `count_forms`,
  内服, docs/claims_rules.md §6.3), 薬効分類 not in `exclude_efficacy`, days ≥ `min_days`; a drug is
  its 成分 (first 7 digits of the 薬価基準コード, `hsutils.inputs.claims_rules.drug_ingredient`) or, with
  `count_by="efficacy"`, its 薬効分類 (first 3 digits, the KDB 処方薬効数);
* 多剤 (§10.2): a person-month with ≥ `polypharmacy_threshold` drugs;
* 重複 (§10.3): the same 薬効分類 from ≥ `duplicate_institutions` prescribing institutions in a month,
  for `duplicate_months` consecutive months; the KDB / 保険者努力支援制度 count (one month with 3
  institutions × 1 薬効 or 2 institutions × 2 薬効) is computed alongside;
* 睡眠薬 (§10.4): ≥ `hypnotic_combination` distinct hypnotics (claims rules' `hypnotic` group) in a
  month; long-term use = hypnotics in `long_hypnotic_months` consecutive months.

With the default parameters the monthly count equals ``claims_monthly.n_drugs`` of the UKE import, so
the 一体的実施 criterion 多剤 (docs/rules.md §6.1-3, `hsutils.rules.programs`) and this notebook count the
same drugs. Everything is grouped with pandas; no loop over persons.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.inputs import claims_rules
from hsutils.inputs.lookback import fiscal_year_of_month, month_index  # the YYYYMM helpers (docs/hotei.md §7)
from hsutils.analysis import areas
from hsutils.rules import programs
from hsutils.publish import plots, privacy
from hsutils.core.errors import DataError, ParameterError
from hsutils.core import distinct

COUNT_BY = {"ingredient": "成分", "efficacy": "薬効分類"}
POLYPHARMACY_OPTIONS = (6, 10, 15, 20)
INSURANCE_CHOICES = ("国保", "後期", "全体")
NOTICE_COLUMNS = {"person_id": ("被保険者番号", "person_id"), "notice_date": ("通知日", "notice_date")}
NOTICE_OPTIONAL = {"method": ("通知方法", "method")}
OUTCOMES = {"n_drugs": ("薬剤数", "種類"), "n_prescribers": ("処方医療機関数", "か所"),
            "cost": ("医療費", "円")}
GROUP_NOTIFIED, GROUP_COMPARISON = "通知した人", "比較群（同じ条件・未通知）"
GROUP_DIFF = "差（通知 − 比較）"
NOT_RANDOMISED_NOTE = ("通知した人と比較群は無作為に分けた集団ではありません。通知の対象を選んだ理由、"
                       "多い月の後は少なくなりやすいこと（平均への回帰）などで差が生じるため、"
                       "効果の目安として読んでください。")

# 日本標準商品分類 87 医薬品 の薬効分類（3桁）の名称 (docs/rules.md §10.6); unknown codes show the code.
EFFICACY_NAMES = {
    "111": "全身麻酔剤", "112": "催眠鎮静剤，抗不安剤", "113": "抗てんかん剤", "114": "解熱鎮痛消炎剤",
    "116": "抗パーキンソン剤", "117": "精神神経用剤", "119": "その他の中枢神経系用薬", "121": "局所麻酔剤",
    "124": "鎮けい剤", "131": "眼科用剤", "211": "強心剤", "212": "不整脈用剤", "213": "利尿剤",
    "214": "血圧降下剤", "216": "血管収縮剤", "217": "血管拡張剤", "218": "高脂血症用剤",
    "219": "その他の循環器官用薬", "222": "鎮咳剤", "223": "去たん剤", "224": "鎮咳去たん剤",
    "232": "消化性潰瘍用剤", "233": "健胃消化剤", "234": "制酸剤", "235": "下剤，浣腸剤",
    "239": "その他の消化器官用薬", "243": "甲状腺，副甲状腺ホルモン剤", "245": "副腎ホルモン剤",
    "249": "その他のホルモン剤", "259": "その他の泌尿生殖器官及び肛門用薬", "264": "鎮痛，鎮痒，収斂，消炎剤",
    "311": "ビタミンA及びD剤", "313": "ビタミンB剤（ビタミンB1剤を除く）", "319": "その他のビタミン剤",
    "325": "たん白アミノ酸製剤", "331": "血液代用剤", "332": "止血剤", "333": "血液凝固阻止剤",
    "339": "その他の血液・体液用薬", "392": "解毒剤", "394": "痛風治療剤", "396": "糖尿病用剤",
    "399": "他に分類されない代謝性医薬品", "441": "抗ヒスタミン剤", "449": "その他のアレルギー用薬",
    "613": "主としてグラム陽性・陰性菌に作用するもの", "625": "抗ウイルス剤", "631": "ワクチン類",
}


@dataclass(frozen=True)
class MedicationParams:
    """Thresholds of docs/rules.md §10 (defaults there). `count_forms` / `hypnotic_prefixes` None =
    the claims rules' `count_forms` and `drug_groups.hypnotic` (docs/claims_rules.md §6.2, §6.3)."""
    polypharmacy_threshold: int = 15
    count_by: str = "ingredient"
    count_forms: tuple[str, ...] | None = None
    exclude_efficacy: tuple[str, ...] = ()
    min_days: int = 0
    duplicate_institutions: int = 2
    duplicate_months: int = 3
    hypnotic_combination: int = 2
    long_hypnotic_months: int = 12
    hypnotic_prefixes: tuple[str, ...] | None = None
    rules: dict = field(default=None, compare=False, repr=False)

    @property
    def forms(self) -> tuple[str, ...]:
        if self.count_forms is not None:
            return tuple(self.count_forms)
        return claims_rules.counted_form_labels(self._rules())

    @property
    def hypnotics(self) -> tuple[str, ...]:
        if self.hypnotic_prefixes is not None:
            return tuple(str(p) for p in self.hypnotic_prefixes)
        return tuple(str(p) for p in self._rules()["drug_groups"]["hypnotic"]["yj_prefixes"])

    def _rules(self) -> dict:
        return self.rules if self.rules is not None else claims_rules.load_rules()


def medication_params(**kw) -> MedicationParams:
    """`MedicationParams` with every value checked (Japanese message for a wrong value)."""
    p = MedicationParams(**{k: v for k, v in kw.items() if v is not None})
    ints = {"polypharmacy_threshold": (1, 100, "多剤の薬剤数"), "min_days": (0, 366, "数える処方日数"),
            "duplicate_institutions": (2, 20, "重複の医療機関数"), "duplicate_months": (1, 36, "重複の連続月数"),
            "hypnotic_combination": (2, 10, "睡眠薬の併用数"), "long_hypnotic_months": (1, 60, "睡眠薬の連続月数")}
    for name, (lo, hi, ja) in ints.items():
        v = getattr(p, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise ParameterError(f"{ja}（{name}）は {lo}〜{hi} の整数で指定してください（指定値: {v!r}）")
    if p.count_by not in COUNT_BY:
        raise ParameterError(f"薬剤の数え方（count_by）は {' / '.join(COUNT_BY)} のいずれかです（指定値: {p.count_by!r}）")
    bad = [f for f in p.forms if f not in claims_rules.FORM_LABELS.values()]
    if bad:
        raise ParameterError(f"数える剤形（count_forms）に不明な剤形があります: {bad}"
                             f"（使える値: {'・'.join(claims_rules.FORM_LABELS.values())}）")
    bad = [c for c in p.exclude_efficacy if not (isinstance(c, str) and len(c) == 3 and c.isdigit())]
    if bad:
        raise ParameterError(f"除外する薬効分類（exclude_efficacy）は3桁の数字の文字列で指定してください（指定値: {bad}）")
    # the claims rules are read once here, not at every use of the parameters
    return replace(p, exclude_efficacy=tuple(p.exclude_efficacy), count_forms=p.forms, hypnotic_prefixes=p.hypnotics)


def criteria_text(p: MedicationParams) -> str:
    """The definitions in one line for chart footers and the report."""
    days = f"・処方日数{p.min_days}日以上" if p.min_days else ""
    excl = f"・薬効{'/'.join(p.exclude_efficacy)}を除く" if p.exclude_efficacy else ""
    return (f"多剤: 1か月に{'・'.join(p.forms)}の{COUNT_BY[p.count_by]}{p.polypharmacy_threshold}種類以上{days}{excl}。"
            f"重複: 同じ薬効分類を{p.duplicate_institutions}か所以上から{p.duplicate_months}か月連続。"
            f"睡眠薬: 同じ月に{p.hypnotic_combination}種類以上、{p.long_hypnotic_months}か月以上連続")


# ---------------------------------------------------------------------------------------------
# Monthly counts (docs/rules.md §10.1–§10.4)


def ym_of(mi) -> np.ndarray:
    mi = np.asarray(mi, dtype=np.int64)
    return mi // 12 * 100 + mi % 12 + 1


def counted_prescriptions(prescriptions: pd.DataFrame, p: MedicationParams) -> pd.DataFrame:
    """Rows that count as drugs (§10.1) with `drug_key` (成分 or 薬効分類) and `class_key` (薬効分類)."""
    rx = prescriptions
    efficacy = rx["efficacy_class"].astype("string").fillna("")
    keep = rx["form"].isin(p.forms).to_numpy().copy()
    keep &= ~efficacy.isin(p.exclude_efficacy).to_numpy()
    if p.min_days:
        keep &= pd.to_numeric(rx["days"], errors="coerce").fillna(0).to_numpy() >= p.min_days
    out = rx.loc[keep, ["person_id", "muni_code", "ym", "drug_code", "yj_code", "prescriber_code"]].copy()
    ingredient = claims_rules.drug_ingredient(out["yj_code"], out["drug_code"])
    cls = efficacy[keep].where(efficacy[keep] != "", "code:" + out["drug_code"].astype(str))
    out["class_key"] = cls.astype(str).to_numpy()
    out["drug_key"] = (ingredient if p.count_by == "ingredient" else out["class_key"]).astype(str).to_numpy()
    out["ym"] = out["ym"].astype(np.int64)
    return out


def count_breakdown(prescriptions: pd.DataFrame, p: MedicationParams) -> pd.DataFrame:
    """How many prescription rows count and why the others do not (every row in exactly one line)."""
    efficacy = prescriptions["efficacy_class"].astype("string").fillna("")
    form_out = ~prescriptions["form"].isin(p.forms).to_numpy()
    eff_out = ~form_out & efficacy.isin(p.exclude_efficacy).to_numpy()
    days = pd.to_numeric(prescriptions["days"], errors="coerce").fillna(0).to_numpy()
    days_out = ~form_out & ~eff_out & (days < p.min_days)
    rows = [("数える処方", int((~form_out & ~eff_out & ~days_out).sum())),
            (f"剤形が{'・'.join(p.forms)}以外", int(form_out.sum())),
            ("除外する薬効分類", int(eff_out.sum())), (f"処方日数{p.min_days}日未満", int(days_out.sum()))]
    return pd.DataFrame(rows, columns=["区分", "処方の行数"])


def _runs(frame: pd.DataFrame, group_cols: list[str]) -> pd.Series:
    """Position of each month in its run of consecutive months (1, 2, …) within `group_cols`;
    `frame` holds one row per group × month with column `mi` (month index)."""
    if len(frame) == 0:
        return pd.Series(np.zeros(0, np.int64), index=frame.index)
    f = frame.sort_values([*group_cols, "mi"], kind="stable")
    same = np.ones(len(f), bool)
    for c in group_cols:
        v = f[c].to_numpy()
        same[1:] &= v[1:] == v[:-1]
    same[0] = False
    mi = f["mi"].to_numpy()
    cont = same.copy()
    cont[1:] &= (mi[1:] - mi[:-1]) == 1
    run = np.cumsum(~cont)
    pos = pd.Series(np.ones(len(f), np.int64)).groupby(run).cumsum().to_numpy()
    return pd.Series(pos, index=f.index).reindex(frame.index)


def _first_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, index of each value's first row)."""
    first = pd.Series(x).drop_duplicates()
    order = np.argsort(first.to_numpy(), kind="stable")
    return first.to_numpy()[order], first.index.to_numpy()[order]


def _lookup_counts(keys: np.ndarray, found: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Counts of `found` (keys, counts) for `keys` (0 where absent)."""
    k, n = found
    pos = np.searchsorted(k, keys)
    pos = np.minimum(pos, max(len(k) - 1, 0))
    hit = (len(k) > 0) & (k[pos] == keys) if len(k) else np.zeros(len(keys), bool)
    return np.where(hit, n[pos] if len(k) else 0, 0).astype(np.int64)


def monthly_counts(prescriptions: pd.DataFrame, p: MedicationParams) -> pd.DataFrame:
    """One row per person × month with a counted prescription or a hypnotic:
    person_id, muni_code, ym, n_drugs, n_prescribers, n_dup_classes (薬効分類 from ≥
    `duplicate_institutions`), kdb_duplicate (§10.3), n_hypnotics, dup_established (the month
    completes a run of `duplicate_months`), hypnotic_long (completes `long_hypnotic_months`).

    Works on integer codes (persons, drugs, institutions factorised once; the rules of §10.1 and
    §10.4 are applied to the distinct drugs, not to every row), so a prefecture's prescriptions
    take a second or two."""
    rx = prescriptions
    cols = ["person_id", "muni_code", "ym", "n_drugs", "n_prescribers", "n_dup_classes", "kdb_duplicate",
            "n_hypnotics", "mi", "dup_established", "hypnotic_long"]
    if len(rx) == 0:
        out = pd.DataFrame({c: pd.Series(dtype=object if c in ("person_id", "muni_code") else np.int64) for c in cols})
        out.attrs["duplicate_classes"] = pd.DataFrame(columns=["person_id", "ym", "class_key", "mi", "pos"])
        return out
    pid, pid_u = pd.factorize(rx["person_id"])
    mi = month_index(rx["ym"].to_numpy(np.int64))
    base, span = int(mi.min()), int(mi.max() - mi.min() + 1)
    pm = pid.astype(np.int64) * span + (mi - base)                      # person-month key
    # the drugs: one row per 医薬品コード (its YJ is fixed by the master)
    dcode, d_u = pd.factorize(rx["drug_code"])
    first = _first_rows(dcode)[1]
    drugs = pd.DataFrame({"drug_code": pd.Series(d_u).astype(str).to_numpy(),
                          "yj": rx["yj_code"].iloc[first].to_numpy(),
                          "efficacy": rx["efficacy_class"].iloc[first].astype("string").fillna("").to_numpy()})
    drugs["ingredient"] = claims_rules.drug_ingredient(drugs["yj"], drugs["drug_code"]).to_numpy()
    drugs["class_key"] = np.where(drugs["efficacy"] != "", drugs["efficacy"], "code:" + drugs["drug_code"])
    key = drugs["ingredient"] if p.count_by == "ingredient" else drugs["class_key"]
    drug_key = pd.factorize(key)[0][dcode]
    class_codes, class_u = pd.factorize(drugs["class_key"])
    cls = class_codes[dcode].astype(np.int64)
    ing_all = pd.factorize(drugs["ingredient"])[0][dcode].astype(np.int64)
    yj_u = drugs["yj"].astype("string").fillna("")
    hyp_drug = np.zeros(len(drugs), bool)
    for pre in p.hypnotics:
        hyp_drug |= yj_u.str.startswith(pre).to_numpy(dtype=bool)
    hyp = hyp_drug[dcode]
    keep = _counted_mask(rx, p)
    presc, presc_u = pd.factorize(rx["prescriber_code"])
    presc = presc.astype(np.int64)
    n_drug_keys, n_presc, n_cls, n_ing = int(drug_key.max()) + 1, len(presc_u), len(class_u), int(ing_all.max()) + 1
    drugs_pm = distinct.distinct_per_key(pm[keep], drug_key[keep], n_drug_keys)
    presc_pm = distinct.distinct_per_key(pm[keep], presc[keep], n_presc)
    pmc = pm[keep] * n_cls + cls[keep]                                 # person-month × 薬効分類
    inst_k, inst_n = distinct.distinct_per_key(pmc, presc[keep], n_presc)
    hyp_pm = distinct.distinct_per_key(pm[hyp], ing_all[hyp], n_ing)
    keys = distinct.unique_sorted(np.r_[drugs_pm[0], hyp_pm[0]])
    first_row = _first_rows(pm)
    muni = rx["muni_code"].iloc[first_row[1][np.searchsorted(first_row[0], keys)]].to_numpy()
    out = pd.DataFrame({"person_id": pd.Series(pid_u).astype(str).to_numpy()[keys // span],
                        "muni_code": pd.Series(muni).astype(str).to_numpy(),
                        "ym": ym_of(keys % span + base)})
    out["n_drugs"] = _lookup_counts(keys, drugs_pm)
    out["n_prescribers"] = _lookup_counts(keys, presc_pm)
    ge = lambda k: distinct.unique_counts(inst_k[inst_n >= k] // n_cls)  # noqa: E731
    out["n_dup_classes"] = _lookup_counts(keys, ge(p.duplicate_institutions))
    out["kdb_duplicate"] = (_lookup_counts(keys, ge(3)) >= 1) | (_lookup_counts(keys, ge(2)) >= 2)
    out["n_hypnotics"] = _lookup_counts(keys, hyp_pm)
    out["mi"] = month_index(out["ym"])
    # 重複 runs per person × 薬効分類
    dk = inst_k[inst_n >= p.duplicate_institutions]
    dkey = dk // n_cls
    dup = pd.DataFrame({"person_id": pd.Series(pid_u).astype(str).to_numpy()[dkey // span],
                        "ym": ym_of(dkey % span + base), "class_key": np.asarray(class_u, dtype=object)[dk % n_cls]})
    dup["mi"] = month_index(dup["ym"])
    dup["pos"] = _runs(dup, ["person_id", "class_key"])
    est = dkey[(dup["pos"] >= p.duplicate_months).to_numpy()]
    out["dup_established"] = np.isin(keys, est)
    hy = pd.DataFrame({"person_id": keys[out["n_hypnotics"].to_numpy() > 0] // span,
                       "mi": keys[out["n_hypnotics"].to_numpy() > 0] % span})
    hy["pos"] = _runs(hy, ["person_id"])
    long_keys = (hy["person_id"] * span + hy["mi"]).to_numpy()[(hy["pos"] >= p.long_hypnotic_months).to_numpy()]
    out["hypnotic_long"] = np.isin(keys, long_keys)
    out.attrs["duplicate_classes"] = dup  # person × month × 薬効分類 with its run position
    return out[cols]


def _counted_mask(rx: pd.DataFrame, p: MedicationParams) -> np.ndarray:
    """Rows of `prescriptions` that count as drugs (§10.1)."""
    form_c, form_u = pd.factorize(rx["form"])
    keep = np.isin(np.asarray(form_u, dtype=object), list(p.forms))[form_c] & (form_c >= 0)
    if p.exclude_efficacy:
        eff_c, eff_u = pd.factorize(rx["efficacy_class"])
        keep &= ~(np.isin(np.asarray(eff_u, dtype=object), list(p.exclude_efficacy))[eff_c] & (eff_c >= 0))
    if p.min_days:
        keep &= pd.to_numeric(rx["days"], errors="coerce").fillna(0).to_numpy() >= p.min_days
    return keep


def _isin(frame: pd.DataFrame, index: pd.Index, keys: list[str]) -> np.ndarray:
    return pd.MultiIndex.from_frame(frame[keys]).isin(index)


def monthly_from_claims(claims_monthly: pd.DataFrame) -> pd.DataFrame:
    """Without `prescriptions`: 多剤 only, from `claims_monthly.n_drugs` (same count as §10.1 for
    UKE data; a KDB export's own count otherwise). 重複 and 睡眠薬 cannot be judged."""
    cm = claims_monthly
    out = pd.DataFrame({"person_id": cm["person_id"].astype(str), "ym": cm["ym"].astype(np.int64),
                        "muni_code": cm["muni_code"].astype(str),
                        "n_drugs": pd.to_numeric(cm["n_drugs"], errors="coerce").fillna(0).astype(np.int64),
                        "n_prescribers": pd.to_numeric(cm["n_institutions"], errors="coerce").fillna(0).astype(np.int64)})
    out = out[out["n_drugs"] > 0].reset_index(drop=True)
    out["n_dup_classes"] = 0
    out["kdb_duplicate"] = False
    out["n_hypnotics"] = 0
    out["mi"] = month_index(out["ym"])
    out["dup_established"] = False
    out["hypnotic_long"] = False
    return out


# ---------------------------------------------------------------------------------------------
# Persons of a fiscal year (the extraction)

FLAG_LABELS = {"polypharmacy": "多剤", "duplicate": "重複", "hypnotic_combination": "睡眠薬の併用",
               "hypnotic_long": "睡眠薬の長期処方"}


def person_flags(monthly: pd.DataFrame, fy: int, p: MedicationParams) -> pd.DataFrame:
    """One row per person with a counted prescription in fiscal year `fy`: max_drugs,
    polypharmacy_months, max_prescribers, max_dup_classes, kdb_duplicate, max_hypnotics and the
    flags of FLAG_LABELS (a run completed in an earlier year counts when it continues into `fy`),
    any_flag, n_flags."""
    m = monthly[fiscal_year_of_month(monthly["ym"]) == int(fy)]
    g = m.groupby("person_id", sort=True)
    out = g.agg(muni_code=("muni_code", "last"), max_drugs=("n_drugs", "max"), max_prescribers=("n_prescribers", "max"),
                max_dup_classes=("n_dup_classes", "max"), kdb_duplicate=("kdb_duplicate", "any"),
                max_hypnotics=("n_hypnotics", "max"), duplicate=("dup_established", "any"),
                hypnotic_long=("hypnotic_long", "any"), first_ym=("ym", "min"), last_ym=("ym", "max"))
    out["polypharmacy_months"] = (m["n_drugs"] >= p.polypharmacy_threshold).groupby(m["person_id"]).sum()
    out["polypharmacy"] = out["polypharmacy_months"] > 0
    out["hypnotic_combination"] = out["max_hypnotics"] >= p.hypnotic_combination
    out["n_flags"] = out[list(FLAG_LABELS)].sum(axis=1).astype(np.int64)
    out["any_flag"] = out["n_flags"] > 0
    return out.reset_index()


def threshold_counts(monthly: pd.DataFrame, fy: int, person_ids=None, thresholds=range(5, 26)) -> pd.DataFrame:
    """Persons whose largest monthly drug count in `fy` is ≥ each threshold (the number of notices
    a municipality would send at that threshold): threshold, persons."""
    m = monthly[fiscal_year_of_month(monthly["ym"]) == int(fy)]
    if person_ids is not None:
        m = m[m["person_id"].isin(person_ids)]
    mx = m.groupby("person_id")["n_drugs"].max().to_numpy()
    t = np.asarray(list(thresholds), dtype=np.int64)
    counts = (mx[None, :] >= t[:, None]).sum(axis=1) if len(mx) else np.zeros(len(t), np.int64)
    return pd.DataFrame({"threshold": t, "persons": counts.astype(np.int64)})


def threshold_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Committee form of `threshold_counts`: for each threshold t the persons with ≥ t drugs
    (kind 以上) and, but for the last, the persons with exactly t (kind ちょうど), so that the
    suppression plan knows ≥t = exactly t + ≥t+1 (`threshold_relations`): two adjacent published
    cumulative counts would otherwise give away a small count by subtraction."""
    t = curve["threshold"].to_numpy(np.int64)
    ge = curve["persons"].to_numpy(np.int64)
    eq = ge[:-1] - ge[1:]
    out = pd.concat([pd.DataFrame({"key": [f"ge{x}" for x in t], "threshold": t, "kind": "以上", "persons": ge}),
                     pd.DataFrame({"key": [f"eq{x}" for x in t[:-1]], "threshold": t[:-1], "kind": "ちょうど",
                                   "persons": eq})], ignore_index=True)
    return out


def threshold_relations(curve: pd.DataFrame) -> list:
    """≥t = exactly t + ≥t+1 for consecutive thresholds of `threshold_table`."""
    t = curve["threshold"].to_numpy(np.int64)
    groups = tuple((f"ge{a}", (f"eq{a}", f"ge{b}")) for a, b in zip(t[:-1], t[1:]))
    return [privacy.Partition("persons", "key", groups)]


def area_persons(person_year: pd.DataFrame, muni_code, fy: int, insurance: str,
                 master: pd.DataFrame | None = None) -> pd.DataFrame:
    """person_year rows (person_id, muni_code, sex, age_band, insurance) of the area (any code form
    of `hsutils.analysis.areas`, an `Area` or a `ReferenceResolution` such as 同規模; a 二次医療圏 needs the
    municipal `master`), year, insurance."""
    if insurance not in INSURANCE_CHOICES:
        raise ParameterError(f"対象の保険は {'・'.join(INSURANCE_CHOICES)} のいずれかで指定してください（指定値: {insurance}）")
    area = muni_code if isinstance(muni_code, (areas.Area, areas.ReferenceResolution)) else areas.parse_code(muni_code)
    keep = (person_year["fy"].to_numpy() == int(fy)) & area.mask(person_year["muni_code"], master)
    if insurance != "全体":
        keep &= person_year["insurance"].astype(str).eq(insurance).to_numpy(dtype=bool)
    cols = ["person_id", "muni_code", "sex", "age", "age_band", "insurance"]
    return person_year.loc[keep, cols].drop_duplicates("person_id").reset_index(drop=True)


def with_persons(flags: pd.DataFrame, persons: pd.DataFrame) -> pd.DataFrame:
    """Every enrolled person of `persons` with the flags (False / 0 for persons without prescriptions)."""
    f = persons.merge(flags.drop(columns=["muni_code"]), on="person_id", how="left")
    for c in [*FLAG_LABELS, "any_flag", "kdb_duplicate"]:
        f[c] = f[c].astype("boolean").fillna(False).astype(bool)
    for c in ("max_drugs", "max_prescribers", "max_dup_classes", "max_hypnotics", "n_flags", "polypharmacy_months"):
        f[c] = f[c].fillna(0).astype(np.int64)
    return f


def summary_counts(f: pd.DataFrame, by: str, flags=tuple(FLAG_LABELS)) -> pd.DataFrame:
    """Committee table: persons enrolled (denominator) and persons with each flag by `by`
    (e.g. age_band, sex, insurance, muni_code), with a 計 row; rates (%) with Wilson 95 % CI."""
    cols = ["denominator", *flags]
    g = f.groupby(by, sort=True, observed=True)
    t = g[list(flags)].sum().astype(np.int64)
    t.insert(0, "denominator", g.size().astype(np.int64))
    total = t.sum().to_frame().T
    total.index = ["計"]
    t.index = t.index.astype(str)
    t = pd.concat([t, total])[cols].rename_axis(by).reset_index()
    for fl in flags:
        r = stats.proportion_ci(t[fl].to_numpy(float), t["denominator"].to_numpy(float))
        t[f"{fl}_rate"] = np.asarray(r[0], float) * 100
    return t


NO_PRESCRIPTIONS_NOTE = (
    "処方の明細（prescriptions 表）がないため、多剤だけを示します。重複（同じ薬効を複数の医療機関から）と睡眠薬の"
    "併用・長期処方は、どの薬をどの医療機関が処方したかがわからないと判定できません。処方の明細は、レセプト電算ファイル"
    "（.UKE）をデータフォルダに置くと作られます（docs/claims_rules.md §5）。多剤は月ごとの処方薬剤数（claims_monthly の"
    "n_drugs）から判定しています。")
SUMMARY_AXES = {"保険": "insurance", "年齢階級": "age_band", "性別": "sex"}


def available_flags(has_prescriptions: bool) -> tuple[str, ...]:
    """The flags that can be judged: all with `prescriptions`, 多剤 alone without."""
    return tuple(FLAG_LABELS) if has_prescriptions else ("polypharmacy",)


def summary_table(f: pd.DataFrame, flags=tuple(FLAG_LABELS), axes=SUMMARY_AXES) -> pd.DataFrame:
    """Committee table: for each axis (保険, 年齢階級, 性別) and category, persons enrolled
    (denominator) and persons with each flag, with a 計 row per axis; rates (%) alongside."""
    g = f.assign(sex=f["sex"].map({1: "男", 2: "女"}).fillna(f["sex"].astype(str)))
    parts = []
    for axis, col in axes.items():  # three axes
        t = summary_counts(g, col, flags).rename(columns={col: "category"})
        t.insert(0, "axis", axis)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def summary_table_relations() -> list:
    """Within each axis, the 計 row is the sum of the categories."""
    return [privacy.Margin(part_col="category", total="計", by=("axis",))]


def summary_derived(flags=tuple(FLAG_LABELS)) -> dict:
    """derived_cols of `summary_counts`: a rate hides with its numerator or the denominator."""
    return {"denominator": [f"{fl}_rate" for fl in flags], **{fl: [f"{fl}_rate"] for fl in flags}}


def duplicate_class_counts(monthly: pd.DataFrame, fy: int, person_ids, p: MedicationParams) -> pd.DataFrame:
    """Persons with an established 重複 (§10.3) by 薬効分類 in `fy`: efficacy_class, name, persons."""
    dup = monthly.attrs.get("duplicate_classes")
    cols = ["efficacy_class", "efficacy_name", "persons"]
    if dup is None or len(dup) == 0:
        return pd.DataFrame(columns=cols)
    d = dup[(fiscal_year_of_month(dup["ym"]) == int(fy)) & dup["person_id"].isin(person_ids)
            & (dup["pos"] >= p.duplicate_months)]
    t = d.groupby("class_key")["person_id"].nunique().sort_values(ascending=False, kind="stable")
    out = pd.DataFrame({"efficacy_class": t.index.astype(str), "persons": t.to_numpy(np.int64)})
    out["efficacy_name"] = out["efficacy_class"].map(EFFICACY_NAMES).fillna("（名称はマスターで確認）")
    return out[cols]


def institution_counts(f: pd.DataFrame) -> pd.DataFrame:
    """Persons with any flag by the largest number of prescribing institutions in a month."""
    x = f[f["any_flag"]]
    band = pd.cut(x["max_prescribers"], [0, 1, 2, 3, np.inf], labels=["1か所", "2か所", "3か所", "4か所以上"])
    t = band.value_counts(sort=False).rename_axis("institutions").reset_index(name="persons")
    t["institutions"] = t["institutions"].astype(str)
    return t


# ---------------------------------------------------------------------------------------------
# The list for 服薬情報通知 (confidential/ only)

NOTICE_LIST_COLUMNS = {
    "priority": "優先順位", "person_id": "被保険者番号", "muni_code": "市町村コード", "insurance": "保険",
    "sex": "性別", "age": "年齢", "reason": "抽出理由", "max_drugs": "最大薬剤数（月）",
    "polypharmacy_months": "多剤の月数", "max_prescribers": "最大処方医療機関数（月）",
    "duplicate_classes": "重複した薬効分類", "max_hypnotics": "睡眠薬の種類（月の最大）",
    "drugs": "処方薬（最新の月）", "institutions": "処方医療機関（年度内）", "months": "該当した月",
}


def notice_list(prescriptions: pd.DataFrame, monthly: pd.DataFrame, f: pd.DataFrame, fy: int,
                p: MedicationParams, drug_names: pd.Series | None = None) -> pd.DataFrame:
    """Person-level list for 服薬情報通知, one row per flagged person, sorted by priority (§10.5):
    number of flags (high-risk combinations first), then drugs, then institutions. Columns are
    Japanese (NOTICE_LIST_COLUMNS) so the CSV/xlsx can feed a mail merge. For confidential/ only.

    `drug_names` (医薬品コード → 漢字名称, from the 医薬品マスター the claims were read with,
    `claims_import.drug_names`) turns the drug column into 「名称（コード）」, which a pharmacist
    and the person can read; a code missing from the master stays a bare code."""
    x = f[f["any_flag"]].copy()
    ids = x["person_id"]
    reason = pd.Series("", index=x.index)
    for fl, ja in FLAG_LABELS.items():
        reason = reason.where(~x[fl], reason + np.where(reason == "", "", "・") + ja)
    x["reason"] = reason
    x = x.sort_values(["n_flags", "max_drugs", "max_prescribers", "max_hypnotics", "person_id"],
                      ascending=[False, False, False, False, True], kind="stable")
    x["priority"] = np.arange(1, len(x) + 1)
    in_fy = fiscal_year_of_month(monthly["ym"]) == int(fy)
    m = monthly[in_fy & monthly["person_id"].isin(ids)]
    flagged_month = (m["n_drugs"] >= p.polypharmacy_threshold) | m["dup_established"] \
        | (m["n_hypnotics"] >= p.hypnotic_combination) | m["hypnotic_long"]
    months = m.loc[flagged_month].sort_values("ym")
    x["months"] = x["person_id"].map(months.groupby("person_id")["ym"].agg(lambda s: "・".join(map(str, s))))
    dup = monthly.attrs.get("duplicate_classes")
    if dup is not None and len(dup):
        d = dup[(fiscal_year_of_month(dup["ym"]) == int(fy)) & dup["person_id"].isin(ids) & (dup["pos"] >= p.duplicate_months)]
        d = d.drop_duplicates(["person_id", "class_key"]).sort_values(["person_id", "class_key"])
        d = d.assign(t=d["class_key"] + " " + d["class_key"].map(EFFICACY_NAMES).fillna(""))
        x["duplicate_classes"] = x["person_id"].map(d.groupby("person_id")["t"].agg("・".join))
    else:
        x["duplicate_classes"] = ""
    rx = prescriptions[prescriptions["person_id"].isin(ids)]
    rx = rx[fiscal_year_of_month(rx["ym"]) == int(fy)]
    last = rx.groupby("person_id")["ym"].transform("max")
    latest = rx[rx["ym"] == last].drop_duplicates(["person_id", "drug_code"]).sort_values(["person_id", "drug_code"])
    code = latest["drug_code"].astype(str)
    label = code
    if drug_names is not None and len(drug_names):
        name = code.map(drug_names)
        label = code.where(name.isna() | (name == ""), name + "（" + code + "）")
    x["drugs"] = x["person_id"].map(latest.assign(label=label).groupby("person_id")["label"].agg("・".join))
    inst = rx.drop_duplicates(["person_id", "prescriber_code"]).sort_values(["person_id", "prescriber_code"])
    x["institutions"] = x["person_id"].map(inst.groupby("person_id")["prescriber_code"].agg(
        lambda s: "・".join(s.astype(str))))
    x["sex"] = x["sex"].map({1: "男", 2: "女"}).fillna(x["sex"].astype(str))
    out = x[list(NOTICE_LIST_COLUMNS)].fillna("").rename(columns=NOTICE_LIST_COLUMNS)
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Notification records (user file) and the before/after evaluation (§10.7)


def read_notifications(path, known_person_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the notification records (data_templates/medication_notifications.csv): 被保険者番号,
    通知日 (YYYY-MM-DD or YYYY/MM/DD), optional 通知方法. Returns (notices: person_id, notice_date,
    notice_ym, method; exclusions: file, row, column, value, reason). Rows with an empty or unknown
    被保険者番号, an unreadable date or a second notice of the same person (the first is kept) are
    listed in the exclusions, never dropped silently."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"通知の記録ファイル {path} が見つかりません（書式: data_templates/medication_notifications.csv）")
    try:
        if path.suffix.lower() in (".xlsx", ".xls"):
            raw = pd.read_excel(path, dtype=str)
        else:
            try:
                raw = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
            except UnicodeDecodeError:
                raw = pd.read_csv(path, dtype=str, encoding="cp932", keep_default_na=False)
    except (OSError, ValueError) as e:
        raise DataError(f"通知の記録ファイル {path.name} を読めません（{e}）") from e
    rename = {}
    for key, names in {**NOTICE_COLUMNS, **NOTICE_OPTIONAL}.items():
        hit = [c for c in raw.columns if str(c).strip() in names]
        if hit:
            rename[hit[0]] = key
        elif key in NOTICE_COLUMNS:
            raise DataError(f"通知の記録ファイル {path.name} に列「{names[0]}」がありません"
                            f"（見出し: {'、'.join(map(str, raw.columns))}）")
    d = raw.rename(columns=rename)
    d = d.assign(row=np.arange(2, len(d) + 2), person_id=d["person_id"].fillna("").astype(str).str.strip(),
                 notice_raw=d["notice_date"].fillna("").astype(str).str.strip())
    if "method" not in d:
        d["method"] = ""
    date = pd.to_datetime(d["notice_raw"].str.replace("/", "-", regex=False), format="%Y-%m-%d", errors="coerce")
    reasons = pd.Series("", index=d.index)
    col = pd.Series("", index=d.index)
    val = pd.Series("", index=d.index)

    def mark(mask, column, value, reason):
        new = mask & (reasons == "")
        reasons[new] = reason
        col[new] = column
        val[new] = value[new]

    mark(d["person_id"] == "", "被保険者番号", d["person_id"], "被保険者番号が空です")
    if known_person_ids is not None:
        known = pd.Index(pd.unique(pd.Series(known_person_ids).astype(str)))
        mark(~d["person_id"].isin(known), "被保険者番号", d["person_id"],
             "データ（対象者表）にない被保険者番号です")
    mark(date.isna(), "通知日", d["notice_raw"], "通知日が読めません（YYYY-MM-DD の形で書いてください。例: 2024-10-01）")
    ok = reasons == ""
    order = d.assign(date=date)[ok].sort_values(["person_id", "date", "row"])
    dupl = order.duplicated("person_id", keep="first")
    dup_rows = order.index[dupl.to_numpy()]
    reasons[dup_rows] = "同じ人の2回目以降の通知です（最初の通知日で評価します）"
    col[dup_rows] = "被保険者番号"
    val[dup_rows] = d.loc[dup_rows, "person_id"]
    ok = reasons == ""
    notices = pd.DataFrame({"person_id": d.loc[ok, "person_id"], "notice_date": date[ok].dt.date,
                            "notice_ym": (date[ok].dt.year * 100 + date[ok].dt.month).astype(np.int64),
                            "method": d.loc[ok, "method"].fillna("").astype(str)}).reset_index(drop=True)
    excl = pd.DataFrame({"file": path.name, "row": d.loc[~ok, "row"], "column": col[~ok], "value": val[~ok],
                         "reason": reasons[~ok]}).reset_index(drop=True)
    return notices, excl


def demo_notifications(flagged_ids, fy: int) -> pd.DataFrame:
    """For the demo only (no user file): every second flagged person (by 被保険者番号) was
    'notified' on 1 October of `fy` (fictitious records; the demo has no planted effect)."""
    ids = pd.Series(list(flagged_ids), dtype=str).sort_values().iloc[::2]
    date = pd.Timestamp(int(fy), 10, 1)
    return pd.DataFrame({"person_id": ids.to_numpy(), "notice_date": date.date(),
                         "notice_ym": int(fy) * 100 + 10, "method": "郵送（デモ）"})


def evaluation_year(notices: pd.DataFrame, fiscal_years) -> int:
    """The fiscal year of the most common notice month (the comparison group is flagged in it);
    a Japanese error when no notice is left or that year is not in the data."""
    years = sorted(int(y) for y in fiscal_years)
    if len(notices) == 0:
        raise DataError("通知の記録に使える行がありません（上の一覧の理由を確かめてください）。")
    ym = int(notices["notice_ym"].mode().iloc[0])
    fy = int(fiscal_year_of_month([ym])[0])
    if fy not in years:
        raise DataError(f"通知の記録で最も多い通知月 {ym} の年度（{fy}年度）のデータがありません"
                        f"（データにある年度: {years}）。")
    return fy


def _person_month_values(monthly: pd.DataFrame, claims_monthly: pd.DataFrame | None, person_ids) -> pd.DataFrame:
    """person × month of `person_ids`: n_drugs, n_prescribers (0 when no counted prescription),
    cost (total of claims_monthly cost columns, 0 when no receipt)."""
    ids = pd.Series(list(person_ids), dtype=str)
    v = monthly.loc[programs.person_in(monthly["person_id"], ids), ["person_id", "mi", "n_drugs", "n_prescribers"]]
    if claims_monthly is not None and len(claims_monthly):
        cm = claims_monthly.loc[programs.person_in(claims_monthly["person_id"], ids)]
        cost_cols = [c for c in cm.columns if c.startswith("cost_")]
        cost = np.zeros(len(cm))
        for col in cost_cols:  # four cost columns
            cost += pd.to_numeric(cm[col], errors="coerce").fillna(0).to_numpy(float)
        c = pd.DataFrame({"person_id": cm["person_id"].astype(str).to_numpy(), "mi": month_index(cm["ym"]),
                          "cost": cost})
        v = v.assign(person_id=v["person_id"].astype(str)).merge(c, on=["person_id", "mi"], how="outer")
    else:
        v["cost"] = np.nan
    return v.fillna({"n_drugs": 0, "n_prescribers": 0})


def before_after(monthly: pd.DataFrame, claims_monthly: pd.DataFrame | None, notices: pd.DataFrame,
                 comparison_ids, windows=(3, 6), last_ym: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Before/after comparison (docs/rules.md §10.7). For each notified person the index month is
    the notice month; `before` = mean of the W months before it, `after` = mean of the W months
    after it (the notice month itself is left out). Comparison persons (same criteria, not
    notified) get the most common notice month as their index month. Persons whose after-window
    passes the last month of the data are left out (counted in `excluded`).

    Returns (per_person: group, window, person_id, outcome, before, after, change;
    summary: window, outcome, group, n, before, after, change, lower, upper (t interval), and a
    row group="差（通知 − 比較）" with the Welch interval of the difference of changes)."""
    vals = _person_month_values(monthly, claims_monthly, [*notices["person_id"].astype(str), *map(str, comparison_ids)])
    last = month_index([last_ym])[0] if last_ym else int(max(monthly["mi"].max(), vals["mi"].max()))
    notified = notices[["person_id", "notice_ym"]].copy()
    notified["group"] = GROUP_NOTIFIED
    idx_ym = int(notices["notice_ym"].mode().iloc[0]) if len(notices) else None
    comp_ids = pd.Index(pd.Series(list(comparison_ids), dtype=str)).difference(notices["person_id"].astype(str))
    comp = pd.DataFrame({"person_id": comp_ids, "notice_ym": idx_ym, "group": GROUP_COMPARISON})
    people = pd.concat([notified, comp], ignore_index=True).dropna(subset=["notice_ym"])
    people["mi0"] = month_index(people["notice_ym"].astype(np.int64))
    rows, summ = [], []
    v = vals.set_index(["person_id", "mi"])
    for w in windows:  # two windows
        ok = people["mi0"] + w <= last
        pp = people[ok]
        offs = np.r_[np.arange(-w, 0), np.arange(1, w + 1)]
        grid = pp.loc[pp.index.repeat(len(offs))].assign(off=np.tile(offs, len(pp)))
        grid["mi"] = grid["mi0"] + grid["off"]
        got = v.reindex(pd.MultiIndex.from_arrays([grid["person_id"], grid["mi"]]))
        for o in OUTCOMES:
            grid[o] = got[o].to_numpy()
            if o != "cost" or vals["cost"].notna().any():
                grid[o] = grid[o].fillna(0)
        grid["phase"] = np.where(grid["off"] < 0, "before", "after")
        per = grid.groupby(["group", "person_id", "phase"])[list(OUTCOMES)].mean().unstack("phase")
        per = per.reindex(columns=pd.MultiIndex.from_product([list(OUTCOMES), ["before", "after"]]))
        for o in OUTCOMES:
            r = pd.DataFrame({"before": per[(o, "before")], "after": per[(o, "after")]}).reset_index()
            r["change"] = r["after"] - r["before"]
            r["window"] = w
            r["outcome"] = o
            rows.append(r)
            for g in (GROUP_NOTIFIED, GROUP_COMPARISON):
                x = r[r["group"] == g]
                k, mean, lo, hi = stats.mean_ci(x["change"].to_numpy(float))
                summ.append({"window": w, "outcome": o, "group": g, "n": k, "before": x["before"].mean(),
                             "after": x["after"].mean(), "change": mean, "lower": lo, "upper": hi})
            a = r.loc[r["group"] == GROUP_NOTIFIED, "change"]
            b = r.loc[r["group"] == GROUP_COMPARISON, "change"]
            d, lo, hi, _ = stats.welch_difference_ci(a.to_numpy(float), b.to_numpy(float))
            summ.append({"window": w, "outcome": o, "group": GROUP_DIFF, "n": np.nan, "before": np.nan,
                         "after": np.nan, "change": d, "lower": lo, "upper": hi})
    per_person = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    summary = pd.DataFrame(summ)
    summary.attrs["excluded"] = {w: int((people["mi0"] + w > last).sum()) for w in windows}
    summary.attrs["index_ym"] = idx_ym
    return per_person, summary


def evaluation_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`before_after` summary with Japanese labels (committee table; n is the count column)."""
    t = summary.copy()
    t["outcome"] = t["outcome"].map({k: f"{v[0]}（{v[1]}）" for k, v in OUTCOMES.items()})
    # the difference row is hidden with the smaller group (it is derived from both)
    diff = (t["group"] == GROUP_DIFF).to_numpy()
    smaller = t[~diff].groupby(["window", "outcome"])["n"].min()
    key = pd.MultiIndex.from_frame(t[["window", "outcome"]])
    t.loc[diff, "n"] = smaller.reindex(key[diff]).to_numpy()
    t["window"] = t["window"].astype(int).astype(str) + "か月"
    return t


# ---------------------------------------------------------------------------------------------
# Trends and municipalities


def yearly_flags(monthly: pd.DataFrame, fys, p: MedicationParams) -> dict[int, pd.DataFrame]:
    """`person_flags` of each fiscal year, computed once for the trends and the funnel."""
    return {int(fy): person_flags(monthly, fy, p) for fy in fys}  # a handful of fiscal years


#: The columns of the cache's tables that notebook 07 reads (`pipeline.load_prepared(with_tables=…)`):
#: the §10.1 counting and the notice list use these prescription columns only (not the 調剤 columns);
#: of claims_monthly the drug counts (`monthly_from_claims`) and the costs (`_person_month_values`).
PRESCRIPTION_COLUMNS = ("person_id", "muni_code", "ym", "drug_code", "yj_code", "efficacy_class", "form",
                        "prescriber_code", "days")
CLAIMS_COLUMNS = ("person_id", "muni_code", "ym", "n_drugs", "n_institutions", *claims_rules.COST_COLUMN.values())
TABLES = {"claims_monthly": CLAIMS_COLUMNS, "prescriptions": PRESCRIPTION_COLUMNS}
#: person_year columns the per-municipality counts read (`area_persons` filters on these)
PERSON_YEAR_COLUMNS = ("person_id", "fy", "muni_code", "insurance")
#: bump when `person_flags` or `flag_counts` change, so that counts saved by an older version are not used
PREFECTURE_FLAGS_VERSION = 2
#: the per-municipality counts: fiscal year × municipality × insurance, persons enrolled and persons per flag
FLAG_COUNT_COLUMNS = ("fy", "muni_code", "insurance", "persons", *FLAG_LABELS)
PREFECTURE_FIRST_RUN = ("【初回のみ】市町比較と推移のため、県内全市町の処方の明細から多剤・重複・睡眠薬の該当者を"
                        "市町ごとに数えて、集計キャッシュに保存します（デモデータで数十秒、実データでは数分）。"
                        "次回からは、同じデータ・同じ抽出条件なら保存した結果を使うので数秒で終わります。")


def flag_counts(yearly: dict[int, pd.DataFrame], person_year: pd.DataFrame) -> pd.DataFrame:
    """`FLAG_COUNT_COLUMNS` (int64 counts) per fiscal year of `yearly` × municipality × insurance of
    `person_year`: the persons enrolled (the denominator of `flag_rates_by`) and the persons with each
    flag of FLAG_LABELS (`with_persons`: False for persons without prescriptions). Groups without an
    enrolled person are absent. The insurance is `person_year.insurance` as text (what `area_persons`
    compares)."""
    parts = []
    for fy, pf in yearly.items():  # a handful of fiscal years
        rows = person_year[person_year["fy"].to_numpy() == int(fy)]
        persons = pd.DataFrame({"person_id": rows["person_id"].to_numpy(),
                                "muni_code": rows["muni_code"].astype(str).to_numpy(),
                                "insurance": rows["insurance"].astype(str).to_numpy()})
        f = with_persons(pf, persons.drop_duplicates("person_id"))
        g = f.groupby(["muni_code", "insurance"], sort=True)
        t = g[list(FLAG_LABELS)].sum().astype(np.int64)
        t.insert(0, "persons", g.size().astype(np.int64))
        parts.append(t.reset_index().assign(fy=int(fy)))
    empty = pd.DataFrame({c: pd.Series([], dtype=str if c in ("muni_code", "insurance") else np.int64)
                          for c in FLAG_COUNT_COLUMNS})
    out = pd.concat([empty, *parts], ignore_index=True) if parts else empty
    return out.astype({c: np.int64 for c in FLAG_COUNT_COLUMNS if c not in ("muni_code", "insurance")})[
        list(FLAG_COUNT_COLUMNS)]


def prefecture_flags(prepared, fys, p: MedicationParams) -> pd.DataFrame:
    """`flag_counts` of every municipality of the cache for the fiscal years `fys`: what the funnel
    and the reference trends count (`flag_rates_by`), without holding the other municipalities' person
    rows (docs/design.md §8.1).

    Each municipality is counted from its own partitions (`pipeline.each_municipality`: its
    person_year rows, its persons' whole prescription history, so a person who moved is flagged from
    his whole history, as from all prescriptions at once): since each person_year row is in exactly one
    municipality's partition for its year (§8.2), the counts add up to the prefecture's. Without
    prescription rows in the cache (CSV claims) 多剤 comes from claims_monthly.n_drugs
    (`monthly_from_claims`). A run that holds every municipality's rows (the prefecture) counts those
    at once (`pipeline.municipal_rows`), the same table. Computed once per cache, parameters and years,
    then read (`pipeline.derived_table`, `derived/medication_flag_counts_<key>.parquet`: counts only)."""
    from dataclasses import asdict

    import pyarrow.dataset as ds

    from hsutils.analysis import pipeline

    cache = Path(prepared.cache_dir)
    fys = sorted({int(f) for f in fys})
    spec = {k: v for k, v in asdict(p).items() if k != "rules"}

    def build() -> pd.DataFrame:
        print(PREFECTURE_FIRST_RUN, flush=True)
        rx_dir = cache / "prescriptions"
        # the same choice for every municipality: prescriptions when the cache holds any (as one count of the whole)
        use_rx = (pipeline.has_parts(rx_dir)
                  and ds.dataset(rx_dir, format="parquet", partitioning="hive").count_rows() > 0)
        tables = {"person_year": PERSON_YEAR_COLUMNS}
        if use_rx:
            tables["prescriptions"] = PRESCRIPTION_COLUMNS
        else:
            tables["claims_monthly"] = ("person_id", "muni_code", "ym", "n_drugs", "n_institutions")
        parts = []
        for _, py, t in pipeline.municipal_rows(prepared, tables):  # a loop over partitions
            monthly = monthly_counts(t["prescriptions"], p) if use_rx else monthly_from_claims(t["claims_monthly"])
            parts.append(flag_counts(yearly_flags(monthly, fys, p), py))
        if not parts:
            return flag_counts({}, pd.DataFrame())
        # municipality, year, insurance, whether the rows came one municipality at a time or all at once
        return pd.concat(parts, ignore_index=True).sort_values(["muni_code", "fy", "insurance"], kind="stable",
                                                               ignore_index=True)

    return pipeline.derived_table(cache, "medication_flag_counts", build, key=(PREFECTURE_FLAGS_VERSION, spec, fys))


def flag_rates_by(counts: pd.DataFrame, fys, by: str | None, muni_code, insurance: str,
                  flags=("polypharmacy", "duplicate"), master: pd.DataFrame | None = None) -> pd.DataFrame:
    """Persons with each flag among the enrolled of the area (any code form of `area_persons`; its
    member municipalities' rows of the `flag_counts` table `counts` are summed), per fiscal year of
    `fys` (and `by`: 'muni_code' or None): fy, group, flag, numerator, denominator, value (%), lower,
    upper (Wilson 95 %). A year or municipality without an enrolled person has no row."""
    if insurance not in INSURANCE_CHOICES:
        raise ParameterError(f"対象の保険は {'・'.join(INSURANCE_CHOICES)} のいずれかで指定してください（指定値: {insurance}）")
    area = muni_code if isinstance(muni_code, (areas.Area, areas.ReferenceResolution)) else areas.parse_code(muni_code)
    keep = area.mask(counts["muni_code"], master)
    if insurance != "全体":
        keep &= counts["insurance"].astype(str).eq(insurance).to_numpy(dtype=bool)
    out = []
    for fy in fys:  # a handful of fiscal years
        c = counts[keep & (counts["fy"].to_numpy() == int(fy))]
        key = c[by].astype(str) if by else pd.Series("計", index=c.index, dtype=object)
        for fl in flags:
            g = c.groupby(key)[[fl, "persons"]].sum()
            out.append(pd.DataFrame({"fy": int(fy), "group": g.index, "flag": fl,
                                     "numerator": g[fl].astype(np.int64).to_numpy(),
                                     "denominator": g["persons"].astype(np.int64).to_numpy()}))
    t = pd.concat(out, ignore_index=True)
    v, lo, hi = stats.proportion_ci(t["numerator"].to_numpy(float), t["denominator"].to_numpy(float))[:3]
    t["value"], t["lower"], t["upper"] = np.asarray(v) * 100, np.asarray(lo) * 100, np.asarray(hi) * 100
    return t


def funnel_relations(pref_label: str, fy: int, trend_table_name: str = "trends") -> list:
    """funnel: the municipalities of each flag add up to the prefecture row of the trends table
    (saved before) in the analysis year."""
    return [privacy.Link(trend_table_name, col, on=("flag",), other_rows={"fy": int(fy), "area_name": pref_label})
            for col in ("numerator", "denominator")]


# ---------------------------------------------------------------------------------------------
# Charts (committee style; data already masked by the report's suppression plan)


@plots.styled
def threshold_figure(curve: pd.DataFrame, chosen: int, title: str, footer: str, *,
                     suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Number of persons (notices) at each 多剤 threshold; the chosen threshold is marked.
    Counts 1–9 (or NaN = suppressed) are not drawn."""
    fig = plots._new_figure("slide")
    ax = fig.add_subplot()
    x = curve["threshold"].to_numpy(float)
    y = pd.to_numeric(curve["persons"], errors="coerce").to_numpy(float)
    hidden = np.isnan(y) | ((y > 0) & (y < suppress_threshold))
    y_shown = np.where(hidden, np.nan, y)
    ax.plot(x, y_shown, marker="o", color=plots.OKABE_ITO["blue"], lw=1.8, ms=4)
    ax.axvline(chosen, color=plots.OKABE_ITO["orange"], ls="--", lw=1.2)
    sel = curve["threshold"] == chosen
    if sel.any() and np.isfinite(y_shown[sel.to_numpy()]).all():
        yy = float(y_shown[sel.to_numpy()][0])
        ax.annotate(f"{chosen}種類以上: {yy:,.0f}人", (chosen, yy), xytext=(8, 8), textcoords="offset points",
                    color=plots.OKABE_ITO["orange"], fontsize=9)
    ax.set_xlabel("多剤の基準（1か月の薬剤数 以上）")
    ax.set_ylabel("通知の対象になる人数")
    ax.set_xticks(x[::2])
    ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    ax.set_ylim(bottom=0)
    notes = ["基準を下げるほど通知の対象者（＝送付・電話・訪問の件数）が増えます"]
    if hidden.any():
        notes.append(plots.suppression_note(suppress_threshold))
    return plots._finish(fig, title, footer, notes)


@plots.styled
def before_after_figure(summary: pd.DataFrame, title: str, footer: str, *,
                        suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Mean change (after − before) with 95 % CI for each outcome and window, notified vs
    comparison; groups with fewer than `suppress_threshold` persons (or suppressed) are not drawn."""
    fig = plots._new_figure("slide")
    axes = fig.subplots(1, len(OUTCOMES))
    colours = {GROUP_NOTIFIED: plots.OKABE_ITO["orange"], GROUP_COMPARISON: plots.OKABE_ITO["blue"]}
    windows = sorted(summary["window"].dropna().unique())
    hidden_any = False
    for ax, (o, (name, unit)) in zip(axes, OUTCOMES.items()):  # three panels
        s = summary[summary["outcome"] == o]
        for k, g in enumerate((GROUP_NOTIFIED, GROUP_COMPARISON)):
            for j, w in enumerate(windows):
                r = s[(s["group"] == g) & (s["window"] == w)]
                if r.empty:
                    continue
                n = pd.to_numeric(r["n"], errors="coerce").iloc[0]
                if not np.isfinite(n) or n < suppress_threshold:
                    hidden_any = True
                    continue
                x = j + (k - 0.5) * 0.3
                c, lo, hi = (float(pd.to_numeric(r[col], errors="coerce").iloc[0]) for col in ("change", "lower", "upper"))
                ax.errorbar([x], [c], yerr=[[c - lo], [hi - c]] if np.isfinite(lo) else None, fmt="o",
                            color=colours[g], capsize=3, label=g if j == 0 else None)
        ax.axhline(0, color="#888888", lw=0.8, ls="--")
        ax.set_xticks(range(len(windows)), [f"前後{int(w)}か月" for w in windows], fontsize=8)
        ax.set_xlim(-0.6, len(windows) - 0.4)
        ax.set_title(name, fontsize=9.5)
        ax.set_ylabel(f"変化（{unit}／月）", fontsize=8)
        ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8, frameon=False)
    notes = ["点は1か月あたりの平均の変化（通知後 − 通知前、通知の月は除く）、線は95%信頼区間。マイナスは減少",
             NOT_RANDOMISED_NOTE]
    if hidden_any:
        notes.append(plots.suppression_note(suppress_threshold))
    return plots._finish(fig, title, footer, notes)


@plots.styled
def age_profile_figure(table: pd.DataFrame, flags, title: str, footer: str, *,
                       suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """Share (%) of persons with each flag by age band (rows of `summary_table` with axis
    年齢階級, already masked: NaN = suppressed), one line per flag, with 95 % Wilson intervals."""
    fig = plots._new_figure("slide")
    ax = fig.add_subplot()
    t = table[(table["axis"] == "年齢階級") & (table["category"] != "計")]
    x = np.arange(len(t))
    colours = [plots.OKABE_ITO[c] for c in ("orange", "blue", "bluish_green", "vermillion")]
    hidden_any = False
    offsets = (np.arange(len(flags)) - (len(flags) - 1) / 2) * 0.12
    for fl, colour, off in zip(flags, colours, offsets):  # up to four flags
        num = pd.to_numeric(t[fl], errors="coerce").to_numpy(float)
        den = pd.to_numeric(t["denominator"], errors="coerce").to_numpy(float)
        hidden = ~np.isfinite(num) | ~np.isfinite(den) | ((num > 0) & (num < suppress_threshold))
        hidden_any |= bool(hidden.any())
        v, lo, hi = (np.asarray(a, float) * 100 for a in stats.proportion_ci(np.nan_to_num(num), np.nan_to_num(den))[:3])
        v, lo, hi = (np.where(hidden, np.nan, a) for a in (v, lo, hi))
        lo, hi = np.where(num == 0, v, lo), np.where(num == 0, v, hi)  # a zero: the point, no bar
        ax.plot(x + off, v, color=colour, lw=1.4, alpha=0.8)
        ax.errorbar(x + off, v, yerr=[v - lo, hi - v], fmt="o", color=colour, ms=4, capsize=2, lw=1,
                    label=FLAG_LABELS[fl])
    ax.set_xticks(x, t["category"].astype(str).tolist(), fontsize=8)
    ax.set_xlabel("年齢階級")
    ax.set_ylabel("該当者の割合（%）")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    ax.legend(fontsize=8, frameon=False)
    notes = ["縦線は95%信頼区間（Wilson。該当者0人の点は線なし）。分母は年度の被保険者。点がない年齢階級は秘匿"]
    if hidden_any:
        notes.append(plots.suppression_note(suppress_threshold))
    return plots._finish(fig, title, footer, notes)


def threshold_explorer(monthly: pd.DataFrame, persons: pd.DataFrame, fy: int, params: MedicationParams,
                       suppress_threshold: int = privacy.DEFAULT_THRESHOLD):
    """JupyterLab widget: a slider for the 多剤 threshold; the number of persons who would receive a
    notice (多剤, or any flag) updates live. Small counts are shown as the suppression mark."""
    import ipywidgets as w
    from IPython.display import HTML

    from hsutils.publish import widgets

    ids = persons["person_id"]
    base = with_persons(person_flags(monthly, fy, params), persons)
    curve = threshold_counts(monthly, fy, ids, thresholds=range(1, 41)).set_index("threshold")["persons"]
    other = base["duplicate"] | base["hypnotic_combination"] | base["hypnotic_long"]

    def show(value: int) -> str:
        return privacy.SUPPRESSION_MARK if 0 < value < suppress_threshold else f"{value:,}"

    def render(threshold: int):
        n_poly = int(curve.get(threshold, 0))
        n_any = int(((base["max_drugs"] >= threshold) | other).sum())
        return HTML(f"<b>多剤（{threshold}種類以上）: {show(n_poly)}人</b>　"
                    f"通知の対象（多剤・重複・睡眠薬のいずれか）: {show(n_any)}人")

    slider = w.IntSlider(value=params.polypharmacy_threshold, min=1, max=40, description="多剤: 薬剤数 以上")
    return widgets.Panel({"threshold": slider}, render)

"""External references an analysis is compared with: 国 and 県 from NDB オープンデータ, 同規模, and
references supplied by the user (docs/design.md §5, docs/rules.md §15).

A reference is a table of rates by indicator × sex × age band (`ExternalReference.rates`:
numerator and denominator, like a strata table without area and year). The indicator tables
(`hsutils.analysis.indicators.indicator_table`) take it as their `reference` strata, so the 標準化該当比
against 国, against the prefecture as NDB sees it, against the 同規模 peers or against a user's
figures is the same indirect standardisation (docs/methods.md §6) as against the prefecture of the
data. `compare` puts all of them side by side; a reference that has no figure for an indicator
gives the explicit 「比較なし（理由）」 of `ExternalReference.unavailable_reason`, decided here only.

Built-in: NDB オープンデータ 第10回, 特定健診 2022年度 (令和4年度), 都道府県別 性・年齢階級別分布 of
HbA1c, BMI, 収縮期血圧 and LDL コレステロール (package data `hsutils/data/ndb/`, provenance in
`hsutils/data/PROVENANCE.md` §8). NDB covers the 特定健診 of **all insurers** (国保, 協会けんぽ,
組合, 共済 …) aged 40–74, not only 国保: `NDB_SCOPE_NOTE` says so on every chart and table.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.analysis import areas, indicators
from hsutils.core.errors import DataError, ParameterError
from hsutils.core.vocab import PREF_NAME_BY_CODE

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "ndb"

NDB_FY = 2022
NDB_ROUND = "第10回"
NDB_CREDIT = "出典: NDBオープンデータ（厚生労働省）第10回 特定健診 2022年度（令和4年度）を加工して作成"
NDB_SCOPE_NOTE = "NDB は国保に限らず全保険者の特定健診（40〜74歳）の集計です（2022年度）"

#: NDB item file → (indicator_id → result categories counted in the numerator). The denominator is
#: every category of the item (the examinees with a result). docs/rules.md §15.1
NDB_FILES = {
    "HbA1c": "ndb10_tokuteikenshin_HbA1c_by_pref_sex_age_FY2022.csv",
    "BMI": "ndb10_tokuteikenshin_BMI_by_pref_sex_age_FY2022.csv",
    "SBP": "ndb10_tokuteikenshin_SBP_by_pref_sex_age_FY2022.csv",
    "LDL": "ndb10_tokuteikenshin_LDL_by_pref_sex_age_FY2022.csv",
}
NDB_INDICATORS = {
    "hba1c65": ("HbA1c", ("6.5以上8.0未満", "8.0以上8.4未満", "8.4以上")),
    "hba1c8": ("HbA1c", ("8.0以上8.4未満", "8.4以上")),
    "bmi25": ("BMI", ("25.0以上30.0未満", "30.0以上35.0未満", "35.0以上40.0未満", "40.0以上")),
    # not (yet) indicators of the registry: usable by a registry indicator of the same id
    "sbp130": ("SBP", ("130以上140未満", "140以上160未満", "160以上180未満", "180以上")),
    "sbp140": ("SBP", ("140以上160未満", "160以上180未満", "180以上")),
    "sbp160": ("SBP", ("160以上180未満", "180以上")),
    "ldl140": ("LDL", ("140以上160未満", "160以上180未満", "180以上")),
    "ldl160": ("LDL", ("160以上180未満", "180以上")),
}
NDB_UNKNOWN_PREF = "都道府県判別不可"
NDB_AGE_BANDS = ("40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74")

#: 同規模: classes of municipal population (住民基本台帳人口; docs/rules.md §15.3). KDB's own
#: 同規模 classes are not published in a source we could find; these are the population-size
#: classes of 総務省's 市区町村 statistics, merged where a class would hold few municipalities.
SIMILAR_CLASSES = (
    (0, 5_000, "5千人未満"), (5_000, 10_000, "5千〜1万人"), (10_000, 20_000, "1万〜2万人"),
    (20_000, 50_000, "2万〜5万人"), (50_000, 100_000, "5万〜10万人"), (100_000, 300_000, "10万〜30万人"),
    (300_000, None, "30万人以上"),
)
#: fewest peers (other municipalities of the class in the data) for a 同規模 comparison
MIN_PEERS = 5
#: fewest persons a reference pooled from the data's own persons (同規模, 県, 二次医療圏) may have in its
#: numerator and denominator before its rate is shown (docs/rules.md §15.6): the suppression threshold
#: (`privacy.DEFAULT_THRESHOLD`; this layer may not import `privacy`, a test keeps the two equal)
MIN_REFERENCE_COUNT = 10
#: why a reference that has rates for an indicator still gives no ratio (「比較なし（理由）」, docs/rules.md §15.7):
#: its rates are 0 in every age band the subject has persons in, so the expected count is 0 …
NO_EXPECTED_REASON = "基準の率が0で期待数が0のため"
#: … or none of the subject's age bands is in the reference
NO_STRATA_REASON = "比較できる層がないため"

KIND_PREF, KIND_NATIONAL, KIND_SIMILAR, KIND_USER = "県", "国", "同規模", "利用者指定"


@dataclasses.dataclass(frozen=True)
class ExternalReference:
    """Reference rates by indicator × sex × age band.

    `rates`: columns indicator_id, sex (1 男 / 2 女), age_band ("40-44" …), numerator, denominator
    (float: NDB cells hidden by the source are filled as documented, docs/rules.md §15.1).
    `kind` (国 / 県 / 同規模 / 利用者指定) heads the table column; `label` names it on charts
    ("全国（NDB 2022年度）"); `source` is the credit line; `year` the reference year;
    `unavailable`: indicator_id → reason, for indicators the reference explicitly lacks."""
    kind: str
    label: str
    source: str
    year: str
    rates: pd.DataFrame
    note: str = ""
    unavailable_all: str = ""
    #: pooled from persons of the user's data (同規模 and the data's 県 / 二次医療圏), so its counts are
    #: small-count checked like any published count (docs/rules.md §15.6); NDB and user CSVs are not
    from_data: bool = False

    @functools.cached_property
    def indicator_ids(self) -> set[str]:
        # asked once per indicator of every comparison: worked out once (the rates never change)
        return set(self.rates["indicator_id"].astype(str).unique()) if len(self.rates) else set()

    def unavailable_reason(self, indicator_id: str) -> str:
        """"" when the reference has the indicator, else the Japanese reason (比較なし（…）)."""
        if self.unavailable_all:
            return self.unavailable_all
        if indicator_id not in self.indicator_ids:
            return f"{self.label}にこの指標の値がないため"
        return ""

    def strata(self, fys) -> pd.DataFrame:
        """The rates as reference strata of `indicator_table`, repeated for each fiscal year of the
        analysis (the reference has one year of its own, named in `label`)."""
        fys = [fys] if np.ndim(fys) == 0 else list(fys)
        if not len(self.rates) or not fys:
            return pd.DataFrame(columns=["fy", "indicator_id", "sex", "age_band", "numerator", "denominator"])
        parts = [self.rates.assign(fy=int(f)) for f in fys]
        return pd.concat(parts, ignore_index=True)


#: the one wording of an unavailable comparison in charts and tables (defined in `areas`)
no_comparison = areas.no_comparison


# --------------------------------------------------------------------------------------- NDB


def _band(age_group: pd.Series) -> pd.Series:
    return age_group.str.replace("_", "-", regex=False)


@functools.lru_cache(maxsize=1)
def ndb_counts() -> pd.DataFrame:
    """NDB counts by prefecture × item × category × sex × age band (40–74), hidden cells filled.

    Columns: pref_code ("01"…"47", "99" = 都道府県判別不可), item, category, sex (1/2), age_band,
    count (float), imputed (bool). The source prints a cell below 10 as 「‐」 and masks the next
    smallest cells too; a hidden cell gets an equal share of what its row (prefecture × item ×
    category × sex) is missing against the row's 中計 (docs/rules.md §15.1)."""
    code_by_name = {v: k for k, v in PREF_NAME_BY_CODE.items()}
    code_by_name[NDB_UNKNOWN_PREF] = "99"
    frames = []
    for item, name in NDB_FILES.items():
        d = pd.read_csv(DATA_DIR / name, dtype={"pref_name": str, "category": str, "age_group": str})
        d["item"] = item
        frames.append(d)
    d = pd.concat(frames, ignore_index=True)
    d["pref_code"] = d["pref_name"].map(code_by_name)
    d["sex"] = d["sex"].map({"male": 1, "female": 2}).astype(np.int64)
    row = ["pref_code", "item", "category", "sex"]
    sub = d[d["age_group"] == "subtotal_40_74"].set_index(row)["count"]
    d = d[d["age_group"] != "subtotal_40_74"].copy()
    d["imputed"] = d["suppressed"].astype(bool)
    known = d.groupby(row)["count"].sum(min_count=0)
    n_hidden = d.groupby(row)["imputed"].sum()
    missing = (sub.reindex(known.index) - known).clip(lower=0)
    share = (missing / n_hidden.where(n_hidden > 0)).rename("share")
    d = d.join(share, on=row)
    d["count"] = d["count"].astype(float).where(~d["imputed"], d["share"])
    d["age_band"] = _band(d["age_group"])
    return d[["pref_code", "item", "category", "sex", "age_band", "count", "imputed"]].reset_index(drop=True)


def ndb_rates(pref_code: str | None = None) -> pd.DataFrame:
    """Reference rates of the NDB indicators for the nation (every row, 都道府県判別不可 included)
    or one prefecture: indicator_id, sex, age_band, numerator, denominator."""
    return _ndb_rates(None if pref_code is None else str(pref_code).zfill(2)).copy()


@functools.lru_cache(maxsize=8)
def _ndb_rates(pref_code: str | None) -> pd.DataFrame:
    c = ndb_counts()
    if pref_code is not None:
        c = c[c["pref_code"] == str(pref_code).zfill(2)]
    keys = ["item", "sex", "age_band"]
    den = c.groupby(keys, as_index=False)["count"].sum().rename(columns={"count": "denominator"})
    parts = []
    for ind, (item, cats) in NDB_INDICATORS.items():
        num = (c[(c["item"] == item) & c["category"].isin(cats)]
               .groupby(keys, as_index=False)["count"].sum().rename(columns={"count": "numerator"}))
        part = den[den["item"] == item].merge(num, on=keys, how="left").fillna({"numerator": 0.0})
        parts.append(part.assign(indicator_id=ind))
    out = pd.concat(parts, ignore_index=True)
    return out[["indicator_id", "sex", "age_band", "numerator", "denominator"]]


def ndb_reference(pref_code: str | None = None) -> ExternalReference:
    """全国 (pref_code None) or one prefecture's reference from NDB オープンデータ FY2022."""
    if pref_code is None:
        label, kind = f"全国（NDB {NDB_FY}年度）", KIND_NATIONAL
    else:
        code = str(pref_code).zfill(2)
        if code not in PREF_NAME_BY_CODE:
            raise ParameterError(f"都道府県コード「{pref_code}」は 01〜47 ではありません。")
        label, kind = f"{PREF_NAME_BY_CODE[code]}（NDB {NDB_FY}年度）", KIND_PREF
    return ExternalReference(kind, label, NDB_CREDIT, f"{NDB_FY}年度", ndb_rates(pref_code), note=NDB_SCOPE_NOTE)


# ------------------------------------------------------------------------------------ 同規模


def similar_class(population, classes=SIMILAR_CLASSES) -> pd.Series:
    """The 同規模 class label of each population (lower bound inclusive, upper exclusive:
    4,999 → 5千人未満, 5,000 → 5千〜1万人). Missing population → None."""
    pop = pd.to_numeric(pd.Series(population), errors="coerce").to_numpy(dtype=float)
    edges = np.array([lo for lo, _, _ in classes][1:], dtype=float)
    labels = np.array([lab for _, _, lab in classes], dtype=object)
    idx = np.searchsorted(edges, pop, side="right")
    out = labels[np.clip(idx, 0, len(labels) - 1)]
    out = np.where(np.isnan(pop), None, out)
    return pd.Series(out, index=population.index if isinstance(population, pd.Series) else None, dtype=object)


def peer_group(muni_code: str, master: pd.DataFrame, classes=SIMILAR_CLASSES) -> tuple[str | None, list[str]]:
    """The 同規模 class of a municipality and the other municipalities of that class in `master`
    (the municipalities of the user's data): (class label, sorted peer codes)."""
    m = master.drop_duplicates("muni_code")
    codes = m["muni_code"].astype(str)
    if "population" not in m:
        return None, []
    cls = similar_class(m["population"].to_numpy(), classes)
    cls.index = codes.to_numpy()
    own = cls.get(str(muni_code))
    if own is None:
        return None, []
    peers = sorted(c for c, k in cls.items() if k == own and c != str(muni_code))
    return own, peers


def similar_reference(strata: pd.DataFrame, muni_code: str, master: pd.DataFrame, *,
                      min_peers: int = MIN_PEERS, classes=SIMILAR_CLASSES) -> ExternalReference:
    """同規模: the pooled rates of the other municipalities of the same population class in the
    data, by indicator × sex × age band (all fiscal years of `strata` pooled per year by the caller's
    `fy` choice: rates are taken from the strata rows given). Unavailable (with the reason) when
    fewer than `min_peers` peers are in the data."""
    cls, peers = peer_group(muni_code, master, classes)
    label = f"同規模（{cls}、{len(peers)}市町村）" if cls else "同規模"
    source = "同規模: 住民基本台帳人口による区分（docs/rules.md §15.3）、データ内の市町村"
    empty = pd.DataFrame(columns=["indicator_id", "sex", "age_band", "numerator", "denominator"])
    if cls is None:
        return ExternalReference(KIND_SIMILAR, label, source, "", empty,
                                 unavailable_all="市町村マスタに人口がないため")
    if len(peers) < min_peers:
        return ExternalReference(KIND_SIMILAR, label, source, "", empty,
                                 unavailable_all=f"同規模（{cls}）の市町村がデータに{len(peers)}件しかないため"
                                                 f"（{min_peers}件以上で比較）")
    s = strata[strata["muni_code"].astype(str).isin(peers).to_numpy()]
    rates = (s.groupby(["indicator_id", "sex", "age_band"], as_index=False, observed=True)
              [["numerator", "denominator"]].sum())
    rates["indicator_id"] = rates["indicator_id"].astype(str)
    rates["age_band"] = rates["age_band"].astype(str)
    return ExternalReference(KIND_SIMILAR, label, source, "データの年度", rates, from_data=True)


# ------------------------------------------------------------------------------- user CSV

USER_COLUMNS = {"indicator_id": "指標", "sex": "性別", "age_band": "年齢階級", "numerator": "分子",
                "denominator": "分母", "rate": "率(%)", "source": "出典", "year": "年度"}
_USER_ALIASES = {"指標": "indicator_id", "指標id": "indicator_id", "indicator": "indicator_id",
                 "性別": "sex", "性": "sex", "年齢階級": "age_band", "分子": "numerator", "該当者数": "numerator",
                 "分母": "denominator", "対象者数": "denominator", "率": "rate", "率(%)": "rate", "割合(%)": "rate",
                 "出典": "source", "source_label": "source", "年度": "year"}
_SEX_VALUES = {"1": 1, "男": 1, "男性": 1, "male": 1, "m": 1, "2": 2, "女": 2, "女性": 2, "female": 2, "f": 2}
_BAND = re.compile(r"^(\d{2})[-〜~～](\d{2})$")


def _norm(s) -> str:
    return unicodedata.normalize("NFKC", str(s)).strip()


def load_user_reference(path) -> list[ExternalReference]:
    """References from a user CSV (form: `data_templates/reference_rates.csv`, docs/design.md §5):
    one row per indicator × sex × age band with numerator and denominator, or a rate in % (then
    the denominator is optional and taken as 100 000 for the weight of the rate); `source` and
    `year` name the reference (one reference per distinct source × year).

    Every mistake is a DataError in Japanese naming the file, row (as in a spreadsheet: header =
    row 1), column, value and what was expected."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"比較の基準ファイル {path.name} を読めません: {e}") from None
    raw.columns = [_USER_ALIASES.get(_norm(c).lower(), _USER_ALIASES.get(_norm(c), _norm(c).lower()))
                   for c in raw.columns]
    need = ["indicator_id", "sex", "age_band", "source", "year"]
    miss = [USER_COLUMNS[c] + f"（{c}）" for c in need if c not in raw]
    if miss or not ({"numerator", "rate"} & set(raw.columns)):
        if not ({"numerator", "rate"} & set(raw.columns)):
            miss.append("分子（numerator）と分母（denominator）、または率(%)（rate）")
        raise DataError(f"比較の基準ファイル {path.name}: 列 {'、'.join(miss)} がありません。"
                        "data_templates/reference_rates.csv の見出しを使ってください。")
    errors = []

    def bad(i, col, value, expected):
        errors.append(f"{path.name} {i + 2}行目 列「{USER_COLUMNS.get(col, col)}」の値「{value}」: {expected}")

    known = set(indicators.REGISTRY) | set(NDB_INDICATORS)
    rows = []
    for i, r in enumerate(raw.to_dict("records")):  # a reference file has a few hundred rows
        ind = _norm(r["indicator_id"])
        if ind not in known:
            bad(i, "indicator_id", ind, "指標ID（例: hba1c65, bmi25。docs/indicators 一覧）を書いてください")
        sex = _SEX_VALUES.get(_norm(r["sex"]).lower())
        if sex is None:
            bad(i, "sex", r["sex"], "1（男）または 2（女）を書いてください")
        band = _norm(r["age_band"]).replace("〜", "-").replace("~", "-").replace("～", "-")
        m = _BAND.match(band)
        if not m or int(m.group(2)) - int(m.group(1)) != 4 or int(m.group(1)) % 5:
            bad(i, "age_band", r["age_band"], "5歳階級（例: 40-44）を書いてください")
        num = den = None
        if _norm(r.get("numerator", "")):
            num = pd.to_numeric(_norm(r["numerator"]).replace(",", ""), errors="coerce")
            den = pd.to_numeric(_norm(r.get("denominator", "")).replace(",", ""), errors="coerce")
            if pd.isna(num) or num < 0:
                bad(i, "numerator", r["numerator"], "0 以上の数を書いてください")
            if pd.isna(den) or den <= 0:
                bad(i, "denominator", r.get("denominator", ""), "1 以上の数を書いてください")
            elif not pd.isna(num) and num > den:
                bad(i, "numerator", r["numerator"], f"分母 {r['denominator']} 以下の数を書いてください")
        elif _norm(r.get("rate", "")):
            rate = pd.to_numeric(_norm(r["rate"]).rstrip("%"), errors="coerce")
            if pd.isna(rate) or not 0 <= rate <= 100:
                bad(i, "rate", r["rate"], "0〜100 の率(%)を書いてください")
            else:
                den = pd.to_numeric(_norm(r.get("denominator", "")).replace(",", ""), errors="coerce")
                den = 100_000.0 if pd.isna(den) or den <= 0 else float(den)
                num = rate / 100 * den
        else:
            bad(i, "numerator", "", "分子と分母、または率(%)のどちらかを書いてください")
        for col in ("source", "year"):
            if not _norm(r[col]):
                bad(i, col, "", "空欄にできません（出典名・年度を書いてください）")
        rows.append((ind, sex, band, num, den, str(r["source"]).strip(), str(r["year"]).strip()))
    if errors:
        raise DataError(f"比較の基準ファイル {path.name} に {len(errors)} 件の誤りがあります:\n" + "\n".join(errors[:20]))
    df = pd.DataFrame(rows, columns=["indicator_id", "sex", "age_band", "numerator", "denominator", "source", "year"])
    dup = df.duplicated(["source", "year", "indicator_id", "sex", "age_band"], keep=False)
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[1])
        bad(i, "indicator_id", df["indicator_id"].iloc[i], "同じ出典・年度・指標・性別・年齢階級の行が重複しています")
        raise DataError("\n".join(errors))
    out = []
    for (source, year), g in df.groupby(["source", "year"], sort=False):
        rates = g[["indicator_id", "sex", "age_band", "numerator", "denominator"]].astype(
            {"numerator": float, "denominator": float}).reset_index(drop=True)
        out.append(ExternalReference(KIND_USER, f"{source}（{year}）", f"出典: {source}（{year}、利用者指定 {path.name}）",
                                     year, rates))
    return out


# ------------------------------------------------------------------------------- comparison


def _subject_strata(strata: pd.DataFrame, subject: areas.Area, master: pd.DataFrame) -> pd.DataFrame:
    s = subject.strata(strata, master)
    if subject.level == areas.DISTRICT:
        s = s[(s["district_code"].astype(str) == subject.district_code).to_numpy()]
    return s.assign(muni_code=subject.code, district_code="")


def _band_start(band: str) -> int:
    return int(re.match(r"\d+", str(band)).group(0))


def _fill_empty_bands(ref_strata: pd.DataFrame, subject_strata: pd.DataFrame) -> pd.DataFrame:
    """Reference strata with a rate for every band of the subject that lies inside the reference's
    age range but is empty there (e.g. no 同規模 peer aged 55–59 with the measurement): the
    reference's rate of that indicator × sex over all its bands, with a negligible weight so the
    reference's own crude rate is unchanged (docs/rules.md §15). Bands outside the range (NDB has
    no 75+) stay out and are reported by `compare`. This keeps the subject's numerator the same in
    every row of a comparison, so no band count can be recovered by subtraction (docs/rules.md §15.4)."""
    if not len(ref_strata) or not len(subject_strata):
        return ref_strata
    r = ref_strata.astype({"indicator_id": str, "age_band": str})
    key_cols = ["fy", "indicator_id", "sex", "age_band"]
    keys = subject_strata[key_cols].astype({"indicator_id": str, "age_band": str}).drop_duplicates()
    missing = keys[~pd.MultiIndex.from_frame(keys).isin(pd.MultiIndex.from_frame(r[key_cols]))]
    if missing.empty:
        return ref_strata
    starts = {b: _band_start(b) for b in pd.unique(r["age_band"])}  # a dozen band labels
    r = r.assign(_start=r["age_band"].map(starts).to_numpy(dtype=np.int64))
    span = r.groupby(["indicator_id", "sex"]).agg(lo=("_start", "min"), hi=("_start", "max"),
                                                  x=("numerator", "sum"), n=("denominator", "sum"))
    m = missing.join(span, on=["indicator_id", "sex"], how="inner")
    start = np.array([_band_start(b) for b in m["age_band"]], dtype=np.int64)
    m = m[(start >= m["lo"].to_numpy()) & (start <= m["hi"].to_numpy()) & (m["n"].to_numpy() > 0)]
    if m.empty:
        return ref_strata
    tiny = 1e-9
    fill = m.assign(numerator=m["x"] / m["n"] * tiny, denominator=tiny)[list(ref_strata.columns.intersection(
        ["fy", "indicator_id", "sex", "age_band", "numerator", "denominator"]))]
    return pd.concat([ref_strata.astype({"indicator_id": str, "age_band": str}), fill], ignore_index=True)


def small_reference_reason(ref: ExternalReference, indicator_ids,
                           min_count: int = MIN_REFERENCE_COUNT) -> dict[str, str]:
    """indicator_id → 「同規模の人数が10人未満のため」 for a reference pooled from the data's persons whose
    numerator or denominator, summed over its sex × age rates (what its `ref_rate` is computed from; the
    rates are already pooled over the fiscal years compared, `data_reference`), is 1 to
    `min_count` − 1 (docs/rules.md §15.6): a 同規模 group of five small towns can pool a handful of
    persons, and its rate would show them. 0 is not a small count; references not from the data
    (NDB, user CSV) are not checked."""
    if not ref.from_data or not len(ref.rates):
        return {}
    r = ref.rates
    sums = r.groupby(r["indicator_id"].astype(str), observed=True)[["numerator", "denominator"]].sum()
    small = ((sums > 0) & (sums < min_count)).any(axis=1)
    return {i: f"{ref.kind}の人数が{min_count}人未満のため" for i in indicator_ids
            if i in small.index and small.at[i]}


def compare(strata: pd.DataFrame, subject, master: pd.DataFrame, references, *, fy,
            indicator_ids=None, conf: float = 0.95, min_count: int = MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """The subject's 標準化該当比 against each reference, side by side (docs/design.md §5).

    strata     : the data's strata (pipeline.build_strata).
    subject    : an `areas.Area` or code (municipality, district, 二次医療圏, prefecture).
    references : `ExternalReference`s (see `standard_references`); a `ReferenceResolution`
                 (the data's own 県 / 二次医療圏) is accepted too.
    fy         : the fiscal year(s) of the subject's figures.

    One row per indicator × reference: reference, reference_kind, reference_label, source, note,
    numerator, denominator (the subject's persons in the bands compared), excluded_numerator,
    excluded_denominator (those in bands the reference lacks, e.g. 75+ for NDB), subject_numerator,
    subject_denominator (all bands = numerator + excluded: `COMPARISON_RELATIONS` tells the
    suppression so, docs/rules.md §15.4), crude_rate, expected, sr, sr_lower, sr_upper, ref_rate (the
    reference's crude rate in the age bands compared, %), comparison (有意に高い / 有意差なし /
    有意に低い, or 比較なし（理由）), judgement, available. A reference without rates for some
    of the subject's age bands (NDB: 40–74 only) is compared on the bands it has (note says so).
    A reference pooled from the data (同規模, 県, 二次医療圏) with 1 to `min_count` − 1 persons in its
    numerator or denominator is 比較なし (`small_reference_reason`, docs/rules.md §15.6)."""
    subject = areas.resolve_area(subject, master) if not isinstance(subject, areas.Area) else subject
    fys = [fy] if np.ndim(fy) == 0 else list(fy)
    s = _subject_strata(strata, subject, master)
    s = s[s["fy"].isin(fys).to_numpy()]
    ids = list(indicator_ids) if indicator_ids is not None else sorted(s["indicator_id"].astype(str).unique())
    s = s[s["indicator_id"].astype(str).isin(ids).to_numpy()]
    rows = []
    for ref in references:
        if isinstance(ref, areas.ReferenceResolution):
            ref = data_reference(strata[strata["fy"].isin(fys).to_numpy()], ref, master)
        ref_strata = ref.strata(fys)
        small = small_reference_reason(ref, ids, min_count)
        reasons = {i: ref.unavailable_reason(i) or small.get(i, "") for i in ids}
        have = [i for i in ids if not reasons[i]]
        t, partial, excluded = pd.DataFrame(columns=["sr"]), {}, {}
        if have:
            ref_strata = _fill_empty_bands(ref_strata, s)
            bands = ref_strata[["indicator_id", "sex", "age_band"]].astype({"indicator_id": str, "age_band": str})
            s_ind, s_band = s["indicator_id"].astype(str), s["age_band"].astype(str)
            covered = pd.MultiIndex.from_arrays([s_ind, s["sex"].astype(int), s_band]).isin(
                pd.MultiIndex.from_frame(bands))
            cut = ~covered & (s["denominator"].to_numpy() > 0)
            partial = {}
            for i, band in sorted(set(zip(s_ind[cut], s_band[cut]))):  # the bands the reference lacks
                partial.setdefault(i, []).append(band)
            partial = {i: "・".join(b) for i, b in partial.items()}
            left = s[~covered].groupby(s["indicator_id"].astype(str)[~covered], observed=True)[
                ["numerator", "denominator"]].sum()  # the subject's persons in bands the reference lacks
            excluded = dict(zip(left.index, zip(left["numerator"].to_numpy(float).tolist(),
                                                left["denominator"].to_numpy(float).tolist())))
            t = indicators.indicator_table(s[covered], "muni", fy=fys, indicators=have, reference=ref_strata,
                                           conf=conf)
            t = t.groupby("indicator_id", as_index=False).agg(
                numerator=("numerator", "sum"), denominator=("denominator", "sum"),
                expected=("expected", "sum")) if len(fys) > 1 else t
            if len(fys) > 1:
                sr, lo, hi = stats.isr_from_expected(t["numerator"], t["expected"], conf)
                t = t.assign(sr=np.asarray(sr), sr_lower=np.asarray(lo), sr_upper=np.asarray(hi))
                refw = ref_strata.groupby("indicator_id")[["numerator", "denominator"]].sum()
                t["ref_rate"] = t["indicator_id"].map(refw["numerator"] / refw["denominator"] * 100)
            t = t.set_index("indicator_id")
        found = t.to_dict("index")  # indicator → its row, read once (not a lookup per indicator and column)
        for i in ids:
            row = {"indicator_id": i, "reference_kind": ref.kind, "reference_label": ref.label,
                   "source": ref.source, "reference_year": ref.year}
            if reasons[i] or i not in found or not np.isfinite(found[i]["sr"]):
                why = reasons[i] or (NO_EXPECTED_REASON if i in found and found[i]["expected"] == 0
                                     else NO_STRATA_REASON)
                row.update(comparison=no_comparison(why), available=False, note=ref.note)
            else:
                r = found[i]
                lo, hi = float(r["sr_lower"]), float(r["sr_upper"])
                ex_num, ex_den = excluded.get(i, (0.0, 0.0))
                row.update(numerator=r["numerator"], denominator=r["denominator"],
                           excluded_numerator=ex_num, excluded_denominator=ex_den,
                           subject_numerator=r["numerator"] + ex_num, subject_denominator=r["denominator"] + ex_den,
                           crude_rate=r["numerator"] / r["denominator"] * 100 if r["denominator"] else np.nan,
                           expected=r["expected"], sr=r["sr"], sr_lower=lo, sr_upper=hi, ref_rate=r["ref_rate"],
                           comparison=stats.compare_to_benchmark(np.array([lo]), np.array([hi]), 1.0)[0],
                           available=True,
                           note="；".join(x for x in (ref.note, f"{ref.label}は基準に率がない層（{partial[i]}歳）を除いて比較"
                                                      if i in partial else "") if x))
            rows.append(row)
    out = pd.DataFrame(rows)
    reg = indicators.registry_frame().set_index("indicator_id")
    out["indicator_name"] = out["indicator_id"].map(reg["indicator_name"]).fillna(out["indicator_id"])
    pol = out["indicator_id"].map(reg["polarity"])
    comp = out["comparison"].where(out["available"].astype(bool))
    out["judgement"] = np.where(out["available"].astype(bool),
                                stats.judgement(comp.to_numpy(dtype=object), pol.to_numpy(dtype=object)),
                                out["comparison"])
    cols = ["indicator_id", "indicator_name", "reference_kind", "reference_label", "reference_year", "numerator",
            "denominator", "excluded_numerator", "excluded_denominator", "subject_numerator", "subject_denominator",
            "crude_rate", "expected", "sr", "sr_lower", "sr_upper", "ref_rate", "comparison",
            "judgement", "available", "source", "note"]
    return out.reindex(columns=cols)


def data_reference(strata: pd.DataFrame, resolution: areas.ReferenceResolution,
                   master: pd.DataFrame) -> ExternalReference:
    """The data's own reference (県 or 二次医療圏 of `resolve_reference`) as rates by fy-free
    indicator × sex × age band — pooled over the fiscal years of `strata` given by the caller."""
    s = resolution.strata(strata, master)
    rates = (s.groupby(["indicator_id", "sex", "age_band"], as_index=False, observed=True)
              [["numerator", "denominator"]].sum())
    rates = rates.astype({"indicator_id": str, "age_band": str})
    return ExternalReference(resolution.kind, resolution.label, "データ（国保）", "データの年度", rates,
                             note=resolution.note, unavailable_all=resolution.unavailable, from_data=True)


#: indicators of the 県・同規模・国 comparison of notebooks 01–05 (NDB has the last three)
COMPARISON_INDICATORS = ("kenshin_rate", "metabo", "hba1c65", "hba1c8", "bmi25")


def standard_references(subject, master: pd.DataFrame, *, reference_files=()) -> list:
    """The references KDB shows, in its order, plus the user's: 県 (the data), 同規模 (peers in the
    data), 県 as NDB sees it, 国 (NDB), then each reference of the user's CSV files."""
    subject = areas.resolve_area(subject, master) if not isinstance(subject, areas.Area) else subject
    refs: list = []
    if not subject.is_prefecture:  # a prefecture is its own 県, and has no 同規模
        refs += [areas.resolve_reference(subject, "pref", master), areas.resolve_reference(subject, "similar", master)]
    refs += [ndb_reference(areas.prefecture_of(subject, master).code), ndb_reference()]
    for path in reference_files or ():
        refs += load_user_reference(path)
    return refs


def comparison_table(prepared, subject, fy, *, indicator_ids=COMPARISON_INDICATORS, reference_files=(),
                     conf: float = 0.95, min_count: int = MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """`compare` of the subject against `standard_references` for notebooks 01–05, with the
    indicator's polarity (for 良い / 悪い) and `conf`. Unsuppressed: pass it through
    `ctx.save_table(..., count_cols=COUNT_COLUMNS, derived_cols=DERIVED_COLUMNS,
    relations=[privacy.ColumnMargin(*m) for m in COLUMN_MARGINS])`.

    The built-in references (県・同規模・国) of a municipality or the prefecture in one fiscal year are
    read from the comparison the shared pass stored in the cache (`write_stored_comparisons`,
    docs/design.md §8.7) when the run's `conf` and `min_count` are those it was stored with; the
    references of the user's `reference_files` are compared here and follow them. Any other case
    (a district, several years, another `conf`) is computed here, with the same `compare`."""
    master = prepared.municipalities
    ids = list(indicator_ids)
    stored = stored_comparison(prepared, subject, fy, ids, conf=conf, min_count=min_count)
    if stored is None:
        refs = standard_references(subject, master, reference_files=reference_files)
        return _comparison_columns(compare(prepared.strata, subject, master, refs, fy=fy, indicator_ids=ids,
                                           conf=conf, min_count=min_count), conf)
    user = [r for path in reference_files or () for r in load_user_reference(path)]
    if not user:
        return stored
    mine = _comparison_columns(compare(prepared.strata, subject, master, user, fy=fy, indicator_ids=ids, conf=conf,
                                       min_count=min_count), conf)
    return pd.concat([stored, mine], ignore_index=True)


def _comparison_columns(out: pd.DataFrame, conf: float) -> pd.DataFrame:
    """A `compare` table with the columns of `comparison_table` (polarity, conf)."""
    reg = indicators.registry_frame().set_index("indicator_id")
    out.insert(2, "polarity", out["indicator_id"].map(reg["polarity"]))
    out["conf"] = conf
    return out


# ------------------------------------------------------------- the comparison stored by the shared pass

#: the cache file of `write_stored_comparisons` (docs/design.md §8.7)
STORED_FILE = "references.parquet"
#: bumped whenever `compare` or the built-in references change what they give: a cache stored by
#: another version is not read (its runs compute the comparison themselves)
STORED_VERSION = "1"
#: the parameters the stored comparison is made with (the notebooks' defaults)
STORED_CONF = 0.95
STORED_MIN_COUNT = MIN_REFERENCE_COUNT


def stored_subjects(master: pd.DataFrame) -> list[areas.Area]:
    """The areas whose comparison the shared pass stores: every municipality of the master and each
    prefecture of the data."""
    codes = sorted(master["muni_code"].astype(str).unique())
    prefs = sorted({str(p).zfill(2) for p in master["pref_code"]}) if "pref_code" in master else []
    return [areas.resolve_area(c, master) for c in codes + prefs]


def stored_comparisons(strata: pd.DataFrame, master: pd.DataFrame, *, fys=None, indicator_ids=None) -> pd.DataFrame:
    """`comparison_table` of every `stored_subjects` area × fiscal year of `fys` (default: the latest
    year of the data, every notebook's default analysis year) against `standard_references` (no user
    file), with the notebooks' defaults (`STORED_CONF`, `STORED_MIN_COUNT`), for every registered
    indicator: one table, the columns of `comparison_table` after `area_code` and `fy`.

    The same `compare` as a run's own: each area is compared on its own, so the rows of an area are
    exactly those `comparison_table` gives. What every area of a year shares is built once (the
    data's 県 pooled over the year)."""
    fys = [int(strata["fy"].max())] if fys is None else [int(f) for f in fys]
    ids = list(indicators.REGISTRY) if indicator_ids is None else list(indicator_ids)
    subjects = stored_subjects(master)
    parts = []
    for fy in fys:  # a few years
        in_year = strata[(strata["fy"] == fy).to_numpy()]
        shared: dict = {}
        for subject in subjects:  # the municipalities of one prefecture's data
            refs = []
            for ref in standard_references(subject, master):
                if isinstance(ref, areas.ReferenceResolution):
                    key = ("similar", subject.code) if ref.requested == "similar" else (ref.requested, ref.area.code)
                    if key not in shared:
                        shared[key] = data_reference(in_year, ref, master)
                    ref = shared[key]
                refs.append(ref)
            t = _comparison_columns(compare(strata, subject, master, refs, fy=fy, indicator_ids=ids,
                                            conf=STORED_CONF, min_count=STORED_MIN_COUNT), STORED_CONF)
            t.insert(0, "fy", fy)
            t.insert(0, "area_code", subject.code)
            parts.append(t)
    return pd.concat(parts, ignore_index=True)


def write_stored_comparisons(cache_dir) -> Path:
    """Store `stored_comparisons` of the cache's strata and municipality master in `STORED_FILE`
    (the one call of `pipeline.prepare_cache`, after the strata are written; docs/design.md §8.7). It
    reads the two tables back as a run reads them, so a run's `comparison_table` gives the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hsutils.core import files

    cache_dir = Path(cache_dir)
    strata = pd.read_parquet(cache_dir / "strata.parquet")
    master = pd.read_parquet(cache_dir / "municipalities.parquet")
    table = pa.Table.from_pandas(stored_comparisons(strata, master), preserve_index=False)
    meta = {"version": STORED_VERSION, "conf": STORED_CONF, "min_count": STORED_MIN_COUNT,
            "strata": _strata_fingerprint(strata)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"hsutils_references": json.dumps(meta).encode()})
    path = cache_dir / STORED_FILE
    with files.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def _strata_fingerprint(strata: pd.DataFrame) -> list[int]:
    """Rows and count totals of a strata table: a run whose strata differ from those the comparison was
    stored from (filtered or replaced in the notebook) computes its own."""
    return [int(len(strata)), int(strata["numerator"].sum()), int(strata["denominator"].sum())]


def stored_comparison(prepared, subject, fy, indicator_ids, *, conf: float = STORED_CONF,
                      min_count: int = STORED_MIN_COUNT) -> pd.DataFrame | None:
    """The subject's rows of the stored comparison (`write_stored_comparisons`), as `comparison_table`
    gives them without user files, or None when they are not stored for this request: no cache (a
    `Prepared` made in memory), a cache of another `STORED_VERSION`, another `conf` or `min_count`,
    several fiscal years, a district or 二次医療圏, or an indicator outside the registry."""
    folder = getattr(prepared, "cache_dir", None)
    if folder is None or np.ndim(fy) != 0 or conf != STORED_CONF or min_count != STORED_MIN_COUNT:
        return None
    path = Path(folder) / STORED_FILE
    if not path.exists():
        return None
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    meta = (pq.read_schema(path).metadata or {}).get(b"hsutils_references")
    meta = json.loads(meta) if meta is not None else {}
    if meta.get("version") != STORED_VERSION or meta.get("strata") != _strata_fingerprint(prepared.strata):
        return None  # another version, or strata that are not the cache's (changed in the run)
    subject = areas.resolve_area(subject, prepared.municipalities) if not isinstance(subject, areas.Area) else subject
    ids = [str(i) for i in indicator_ids]
    if subject.level not in (areas.MUNI, areas.PREF) or not set(ids) <= set(indicators.REGISTRY):
        return None
    d = ds.dataset(path)
    rows = d.to_table(filter=(ds.field("area_code") == subject.code) & (ds.field("fy") == int(fy))).to_pandas()
    if rows.empty:
        return None
    rows = rows.drop(columns=["area_code", "fy"])
    # the requested indicators in the requested order within each reference, as `compare` orders them
    order = {i: k for k, i in enumerate(ids)}
    rows = rows[rows["indicator_id"].isin(order).to_numpy()]
    ref_pos = pd.factorize(rows["reference_label"] + "\x00" + rows["reference_kind"])[0]
    rows = rows.assign(_r=ref_pos, _i=rows["indicator_id"].map(order)).sort_values(["_r", "_i"], kind="stable")
    return rows.drop(columns=["_r", "_i"]).reset_index(drop=True)


#: columns computed from the subject's counts (hidden with them, docs/design.md §6)
DERIVED_COLUMNS = ["crude_rate", "expected", "sr", "sr_lower", "sr_upper", "comparison", "judgement"]
#: count columns of a comparison table (`ctx.save_table(..., count_cols=COUNT_COLUMNS)`)
COUNT_COLUMNS = ["numerator", "denominator", "excluded_numerator", "excluded_denominator", "subject_numerator",
                 "subject_denominator"]


#: the additive relations of a comparison table, as (total column, part columns) for
#: `privacy.ColumnMargin` (`relations=[privacy.ColumnMargin(*m) for m in COLUMN_MARGINS]`; docs/rules.md
#: §15.4): in every row the subject's count over all its bands is the count compared plus the count
#: in the bands the reference lacks. A reference narrower in age than the subject (NDB 40–74, a user
#: CSV of a few bands) gives a row whose count differs from the others by those persons; when they
#: are 1–9 the solver hides that row's count and what is derived from it, so no small count is
#: recovered by subtracting two rows (or this row from the subject's count in another table).
COLUMN_MARGINS = (("subject_numerator", ("numerator", "excluded_numerator")),
                  ("subject_denominator", ("denominator", "excluded_denominator")))


def chart_notes(table: pd.DataFrame) -> list[str]:
    """Footer notes of a comparison chart: the NDB scope and year when NDB is shown, the notes of
    the references (同規模 peers, 40〜74歳)."""
    notes = []
    if table["source"].astype(str).str.contains("NDB").any():
        notes.append(NDB_SCOPE_NOTE + "。" + NDB_CREDIT.removeprefix("出典: "))
    parts = [p for n in table["note"].dropna().astype(str) for p in n.split("；")]
    notes += [n for n in dict.fromkeys(parts) if n and n != NDB_SCOPE_NOTE]
    return notes


_JAPANESE = {"indicator_name": "指標", "reference_label": "比較の基準", "sr": "標準化該当比", "sr_lower": "下限",
             "sr_upper": "上限", "judgement": "判定", "crude_rate": "粗率(%)", "ref_rate": "基準の率(%)",
             "note": "注"}


def japanese_view(shown: pd.DataFrame) -> pd.DataFrame:
    """The committee view of a (suppressed) comparison table: Japanese headers, rounded ratios."""
    out = shown[list(_JAPANESE)].rename(columns=_JAPANESE)
    for col in ("標準化該当比", "下限", "上限"):
        num = pd.to_numeric(out[col], errors="coerce")
        out[col] = num.round(2).astype(object).where(num.notna(), out[col])
    for col in ("粗率(%)", "基準の率(%)"):
        num = pd.to_numeric(out[col], errors="coerce")
        out[col] = num.round(1).astype(object).where(num.notna(), out[col])
    return out


def reference_files(value) -> list[Path]:
    """The `reference_file` notebook parameter (None, one path or a list) as a list of paths."""
    if value in (None, ""):
        return []
    return [Path(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def with_smoothed_ratio(table: pd.DataFrame, group_cols=("indicator_id", "fy"), conf: float = 0.95) -> pd.DataFrame:
    """`table` (an indicator table of many areas: numerator = observed, expected) with the
    empirical-Bayes smoothed 標準化該当比 of each area beside the raw one (docs/methods.md §14):
    `sr_eb`, `sr_eb_lower`, `sr_eb_upper` (credible interval), `eb_weight` (share of the area's own
    ratio). The prior is estimated over the areas of each `group_cols` group (e.g. the prefecture's
    municipalities for one indicator and year). An area without a ratio (比較なし: its expected or
    ratio is NaN) gets NaN and is left out of the prior."""
    out = table.copy()
    for col in ("sr_eb", "sr_eb_lower", "sr_eb_upper", "eb_weight"):
        out[col] = np.nan
    for _, g in out.groupby(list(group_cols), sort=False, observed=True):  # indicators × years
        observed = pd.to_numeric(g["numerator"], errors="coerce").astype(float)
        expected = pd.to_numeric(g["expected"], errors="coerce").astype(float)
        if "sr" in g:
            expected = expected.where(pd.to_numeric(g["sr"], errors="coerce").notna())
        eb = stats.eb_smoothed_ratio(observed, expected, conf)
        out.loc[g.index, ["sr_eb", "sr_eb_lower", "sr_eb_upper", "eb_weight"]] = \
            eb[["value", "lower", "upper", "weight"]].to_numpy()
    return out


#: columns of an indicator table blanked when its reference is 比較なし (they would come from the reference)
_REFERENCE_DERIVED = ["expected", "sr", "sr_lower", "sr_upper", "ref_rate"]


def municipal_table(strata: pd.DataFrame, master: pd.DataFrame, reference_area: str = "pref", *,
                    min_count: int | None = MIN_REFERENCE_COUNT, **args) -> pd.DataFrame:
    """Every municipality of `strata` against its own reference for the `reference_area` parameter
    (`areas.resolve_reference` of each municipality, docs/rules.md §15): "pref" the data's
    prefecture, "medical_area" its 二次医療圏, "national" 全国 from NDB (one table for all), "similar"
    its 同規模 peers in the data. `args` go to `indicators.indicator_table` (fy, indicators,
    std_pop, conf, suppress_threshold). Adds `reference_kind` and `reference_label`; a row without a
    comparison gets 「比較なし（理由）」 in comparison and judgement (`settle_comparison`).

    min_count: the run's `suppress_threshold`; a reference pooled from the data whose numerator or
    denominator for an indicator and year is 1 to `min_count` − 1 is 「比較なし（…の人数が…人未満のため）」,
    with expected, sr and ref_rate blank (docs/rules.md §15.6). None leaves the rule out (tests only)."""
    requested = areas.check_reference_area(reference_area)
    codes = sorted(strata["muni_code"].astype(str).unique())
    if requested == "medical_area":  # one group per 二次医療圏, compared with itself
        by_area = master.assign(muni_code=master["muni_code"].astype(str)).set_index("muni_code")["medical_area_code"]
        groups = [[c for c in codes if str(by_area.get(c)) == a] for a in sorted(master["medical_area_code"].astype(str).unique())]
    elif requested == "similar":  # each municipality has its own peers
        groups = [[c] for c in codes]
    else:  # the prefecture or 全国: one reference for all
        groups = [codes]
    parts = []
    for group in [g for g in groups if g]:
        ref = areas.resolve_reference(group[0], requested, master)
        sub = strata[strata["muni_code"].astype(str).isin(group).to_numpy()]
        ref_strata = strata if requested == "pref" else ref.strata(strata, master)
        t = indicators.indicator_table(sub, "muni", area_map=master, reference=ref_strata, **args)
        if t.empty:
            continue
        t = settle_comparison(t, ref, ref_strata, min_count=min_count)
        parts.append(t.assign(reference_kind=ref.kind, reference_label=ref.label))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["area_code", "area_name"])


def settle_comparison(table: pd.DataFrame, ref: areas.ReferenceResolution | None, ref_strata: pd.DataFrame, *,
                      min_count: int | None = MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """An indicator table (`indicators.indicator_table` against `ref_strata`, the strata of `ref`) with
    every comparison that cannot be made written 「比較なし（理由）」 in `comparison` and `judgement`, never
    left empty (docs/rules.md §15.7), in this order of reasons:

    1. the reference has no figure for the indicator (`ReferenceResolution.comparison_text`: 全国 outside
       the NDB items, 同規模 with too few peers): expected, sr, its interval and ref_rate blank;
    2. a reference pooled from the data's persons (県, 二次医療圏, 同規模; not NDB) has 1 to `min_count` − 1
       persons in its numerator or denominator for the indicator and year (docs/rules.md §15.6):
       expected, sr, its interval and ref_rate are blanked too (they would show the few persons);
    3. the expected count is 0 (`NO_EXPECTED_REASON`: the reference's rate is 0 in every age band of the
       area) or missing (`NO_STRATA_REASON`): the 標準化該当比 is undefined.

    The one path of the per-municipality tables of notebooks 01, 02 and 09 (`municipal_table`,
    `districts.municipal_indicator_table`); `compare` applies the same reasons to the 県・同規模・国 table.
    `ref` None (the districts of 02 against their municipality): reason 3 only."""
    t = table.copy()
    comparison = pd.Series(t["comparison"] if ref is None else ref.comparison_text(t["indicator_id"], t["comparison"]),
                           index=t.index, dtype=object)
    done = comparison.astype(str).str.startswith("比較なし")
    t.loc[done.to_numpy(), _REFERENCE_DERIVED] = np.nan  # no figure: an expected count of 0 would be false
    if ref is not None and min_count is not None and ref.area.level != areas.NATIONAL:
        small = _small_pool(ref_strata, t, min_count) & ~done.to_numpy()
        t.loc[small, _REFERENCE_DERIVED] = np.nan
        comparison[small] = no_comparison(f"{ref.kind}の人数が{min_count}人未満のため")
        done |= small
    no_ratio = ~done & pd.to_numeric(t["sr"], errors="coerce").isna()
    expected = pd.to_numeric(t["expected"], errors="coerce")
    comparison[no_ratio] = np.where(expected[no_ratio] == 0, no_comparison(NO_EXPECTED_REASON),
                                    no_comparison(NO_STRATA_REASON))
    t["comparison"] = comparison.to_numpy(dtype=object)
    t["judgement"] = np.where(comparison.astype(str).str.startswith("比較なし"), comparison, t["judgement"])
    return t


def _small_pool(ref_strata: pd.DataFrame, table: pd.DataFrame, min_count: int) -> np.ndarray:
    """Rows of `table` (indicator_id × fy) whose reference pools 1 to `min_count` − 1 persons in its
    numerator or denominator (docs/rules.md §15.6; the per-year form of `small_reference_reason`)."""
    r = ref_strata.astype({"indicator_id": str})
    sums = r.groupby(["indicator_id", "fy"], observed=True)[["numerator", "denominator"]].sum()
    small = ((sums > 0) & (sums < min_count)).any(axis=1)
    keys = pd.MultiIndex.from_arrays([table["indicator_id"].astype(str), table["fy"]])
    return small.reindex(keys).fillna(False).to_numpy(dtype=bool)


def municipal_ratios(prepared, fy, indicator_id: str, reference_area: str = "national", conf: float = 0.95,
                     min_count: int | None = MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """Every municipality of the data against its own reference (`municipal_table`: "pref" the
    prefecture, "medical_area" its 二次医療圏, "national" NDB 全国, "similar" its 同規模 peers) for one
    indicator, with the raw 標準化該当比 and the empirical-Bayes smoothed one beside it
    (`with_smoothed_ratio`, the prior over all municipalities compared) for maps and charts of small
    towns. Columns of `indicators.indicator_table` plus sr_eb, sr_eb_lower, sr_eb_upper, eb_weight,
    reference_label; a municipality whose reference has no figure is 比較なし
    (`min_count`: the run's `suppress_threshold`, docs/rules.md §15.6) with NaN ratios; empty when no
    municipality can be compared."""
    s = prepared.strata[(prepared.strata["fy"] == int(fy)).to_numpy()]
    t = municipal_table(s, prepared.municipalities, reference_area, min_count=min_count, fy=int(fy),
                        indicators=[indicator_id], conf=conf)
    if t.empty or not pd.to_numeric(t["sr"], errors="coerce").notna().any():
        return pd.DataFrame(columns=["area_code", "area_name", "numerator", "expected", "sr", "sr_eb"])
    out = with_smoothed_ratio(t.drop(columns=["reference_kind", "reference_label"]), conf=conf)
    return out.assign(reference_label=t["reference_label"])


def smoothed_ratio_notes(table: pd.DataFrame) -> list[str]:
    """Footer notes of a `municipal_ratios` chart: what the reference is (its label, or that each
    municipality has its own: 同規模, 二次医療圏), what the smoothed value is, and which
    municipalities are 比較なし and why; the NDB scope and year when the reference is NDB."""
    labels = list(dict.fromkeys(table["reference_label"].astype(str)))
    compared = table.loc[~table["comparison"].astype(str).str.startswith("比較なし"), "reference_label"].astype(str)
    example = compared.iloc[0] if len(compared) else labels[0]  # a reference that was compared with
    notes = [f"比較の基準: {labels[0]}" if len(labels) == 1 else f"比較の基準: 市町村ごとに異なる（例: {example}）"]
    notes.append("経験ベイズ推定値は、比べた市町村全体の比の平均へ、期待数の小さい市町村ほど強く寄せた値（docs/methods.md §14）")
    none = table[table["comparison"].astype(str).str.startswith("比較なし")]
    for why, g in none.groupby("comparison", sort=False):
        names = g["area_name"].astype(str).tolist()
        notes.append(f"{why}: " + "、".join(names[:5]) + (f" ほか{len(names) - 5}市町村" if len(names) > 5 else ""))
    if any("NDB" in label for label in labels):
        notes.append(NDB_SCOPE_NOTE + "。" + NDB_CREDIT.removeprefix("出典: "))
    return notes


# ------------------------------------------------------------------- other references on charts

#: the references drawn beside a chart's own benchmark (funnel, spine): KDB's 県・同規模・国 and the user's
LINE_KINDS = (KIND_PREF, KIND_SIMILAR, KIND_NATIONAL, KIND_USER)
LINE_COLUMNS = ["indicator_id", "reference_kind", "reference_label", "denominator", "expected", "line_rate",
                "comparison", "available", "source", "note"]
#: the line's rate is computed from the subject's denominators (age structure), not its numerator
LINE_DERIVED_COLUMNS = ["expected", "line_rate"]


def line_kinds(main) -> tuple[str, ...]:
    """`LINE_KINDS` without the chart's own benchmark (a `ReferenceResolution` or its kind): the
    県 line is left out when the chart is already drawn against the 県, and so on."""
    kind = getattr(main, "kind", main)
    return tuple(k for k in LINE_KINDS if k != kind)


def reference_lines_table(prepared, subject, fy, indicator_ids, *, kinds=LINE_KINDS, ndb_prefecture: bool = False,
                          reference_files=(), conf: float = 0.95,
                          min_count: int = MIN_REFERENCE_COUNT) -> pd.DataFrame:
    """The other references of a funnel or spine chart, one row per indicator × reference
    (docs/rules.md §15.5): `line_rate` = the reference's rates applied to the subject's own sex ×
    age structure, in % (expected ÷ denominator of the indirect method, so a town with old people
    is set against what the reference would show with its ages, and the line sits on the same
    scale as the subject's crude rate). An unavailable reference has `available` False and the
    「比較なし（理由）」 in `comparison`.

    kinds         : reference kinds to keep (`LINE_KINDS`); the chart's own benchmark is left out
                    by the caller (e.g. `kinds=(KIND_SIMILAR, KIND_NATIONAL)` when it is the 県).
    ndb_prefecture: also the prefecture as NDB sees it (all insurers); off by default (clutter).
    Save it with `count_cols=["denominator"], derived_cols=LINE_DERIVED_COLUMNS`: the line depends
    on the subject's denominators only, never on its numerator."""
    t = comparison_table(prepared, subject, fy, indicator_ids=indicator_ids, reference_files=reference_files,
                         conf=conf, min_count=min_count)
    return lines_from_comparison(t, kinds=kinds, ndb_prefecture=ndb_prefecture)


def lines_from_comparison(t: pd.DataFrame, *, kinds=LINE_KINDS, ndb_prefecture: bool = False) -> pd.DataFrame:
    """`reference_lines_table` from a `compare` table (rows of the kinds kept, `line_rate` added)."""
    keep = t["reference_kind"].isin(list(kinds)).to_numpy().copy()
    if not ndb_prefecture:
        keep &= ~((t["reference_kind"] == KIND_PREF) & t["source"].astype(str).str.contains("NDB")).to_numpy()
    t = t[keep].copy()
    den = pd.to_numeric(t["denominator"], errors="coerce")
    t["line_rate"] = pd.to_numeric(t["expected"], errors="coerce") / den.where(den > 0) * 100
    return t.reindex(columns=LINE_COLUMNS).reset_index(drop=True)


def lines_for_chart(shown: pd.DataFrame, indicator_id: str, *, scale: float = 1.0) -> tuple[list, list[str]]:
    """(references, notes) of one indicator for `plots.funnel_plot(references=)` /
    `plots.spine_chart` from a (suppressed) `reference_lines_table`: each available reference as
    (label, line_rate × scale, kind); each unavailable one as the note "label: 比較なし（理由）", a
    hidden one as "label: 秘匿"; the NDB scope and year when an NDB line is drawn; and what the
    lines are (docs/rules.md §15.5)."""
    d = shown[shown["indicator_id"].astype(str) == str(indicator_id)]
    lines, notes = [], []
    for r in d.itertuples(index=False):  # a few references
        rate = pd.to_numeric(pd.Series([r.line_rate]), errors="coerce").iloc[0]
        if not bool(r.available):
            notes.append(f"{r.reference_kind}: {r.comparison}")
        elif not np.isfinite(rate):
            notes.append(f"{r.reference_kind}（{r.reference_label}）: 人数が少ないため秘匿")
        else:
            lines.append((str(r.reference_label), float(rate) * scale, str(r.reference_kind)))
    if lines:
        notes.insert(0, "県・同規模・国の線は、各基準の性・年齢階級別の率を対象の人数構成に当てはめた率（間接法の期待数÷対象者数）")
    if any("NDB" in label for label, _, _ in lines):
        notes.append(NDB_SCOPE_NOTE + "。" + NDB_CREDIT.removeprefix("出典: "))
    return lines, notes


def spine_references(frame: pd.DataFrame, shown: pd.DataFrame, *, names=None) -> tuple[pd.DataFrame, list, list[str]]:
    """The other references of a spine chart (`plots.spine_chart(references=, notes=)`) from a
    (suppressed) `reference_lines_table`: `frame` (one row per indicator, column indicator_id) with
    a column `ref_<n>` per reference holding its `line_rate` (%), the (label, column, kind) list,
    and the notes: which indicators each reference cannot be compared on (比較なし（理由）), hidden
    ones, and what the marks are (docs/rules.md §15.5). `names`: indicator_id → name for the notes."""
    out = frame.copy()
    refs, notes = [], []
    ids = out["indicator_id"].astype(str)
    d = shown[shown["indicator_id"].astype(str).isin(set(ids))]
    names = dict(names or {})
    for k, ((kind, label), g) in enumerate(d.groupby(["reference_kind", "reference_label"], sort=False)):
        rate = pd.to_numeric(g["line_rate"], errors="coerce").where(g["available"].astype(bool).to_numpy())
        col = f"ref_{k}"
        out[col] = ids.map(dict(zip(g["indicator_id"].astype(str), rate))).astype(float)
        if out[col].notna().any():
            refs.append((str(label), col, str(kind)))
        for why, gg in g[~g["available"].astype(bool).to_numpy()].groupby("comparison", sort=False):
            which = [names.get(i, i) for i in gg["indicator_id"].astype(str)]
            listed = "、".join(which[:3]) + (f" ほか{len(which) - 3}指標" if len(which) > 3 else "")
            notes.append(f"{kind}: {why}：{listed}")
    if refs:
        notes.insert(0, "県・同規模・国の印は、各基準の性・年齢階級別の率を対象の人数構成に当てはめた率（間接法の期待数÷対象者数）")
    if any("NDB" in label for label, _, _ in refs):
        notes.append(NDB_SCOPE_NOTE + "。" + NDB_CREDIT.removeprefix("出典: "))
    return out, refs, notes

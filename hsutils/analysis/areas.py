"""The area an analysis is about, the area it is compared with, and the standard population.

One place decides (docs/design.md §2 area hierarchy, docs/design.md §5 reference and standard population):

* `Area`: an immutable value (level, code, name, parent codes) parsed once from any accepted code
  form by `parse_code` / `resolve_area`:
  - 都道府県: "17", 17, "7" (→ "07"), the 5-digit 団体コード "17000" or with check digit "170003";
  - 二次医療圏: the 4-character code of the municipality master ("1702", "05X1"), recognised only
    against a master (a bare 4-digit number is otherwise a municipal code that lost its leading 0);
  - 市町村: a 5-digit code or a 6-digit code with check digit (`hsutils.core.codes` checks and
    normalises it);
  - 地区: "<muni_code>:<district_code>" (e.g. "17201:03"), the form the district tables use;
  - 全国: "00".
* `resolve_reference`: the comparison of an analysis for a `reference_area` parameter, the same
  in every notebook: 県 and 二次医療圏 from the data; 全国 from NDB オープンデータ (all insurers,
  FY2022; `hsutils.analysis.references`); 同規模 = the other municipalities of the subject's population
  class in the data (`hsutils.analysis.references.peer_group`). A reference with no figure for an indicator
  (全国 outside the NDB items, 同規模 with too few peers) is never a silent substitute: its
  comparison is 「比較なし（理由）」 (`ReferenceResolution.unavailable_reason`, `comparison_text`).
  Only a 二次医療圏 reference of a whole prefecture falls back to the prefecture, with a note.
* `standard_population`: the standard population named by the `standard_population` parameter,
  taken from the registry `hsutils.stats.standard_population` (H27, S60) or computed from the
  prefecture's data ("pref").

Codes are str: prefecture 2 digits, medical area 4 characters, municipality 5 digits.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.core.codes import check_digit, code_text, normalize_muni_code
from hsutils.core.errors import ParameterError
from hsutils.inputs.regions import LEVEL_LABELS, NATIONAL_CODE, NATIONAL_NAME, PREF_NAME_BY_CODE

PREF, MEDICAL_AREA, MUNI, DISTRICT, NATIONAL = "pref", "medical_area", "muni", "district", "national"
#: The row of the persons of a municipality without a (known) district: with it the district rows
#: add up to the municipality (docs/rules.md §9.1).
UNKNOWN_DISTRICT = "地区不明"

# reference_area parameter values (parameters/defaults.yaml) → what they compare with
REFERENCE_CHOICES = {"pref": "県", "medical_area": "二次医療圏", "national": "全国", "similar": "同規模"}


def no_comparison(reason: str) -> str:
    """The one wording of a comparison that cannot be made (charts and tables)."""
    return f"比較なし（{reason}）"

# standard_population parameter values → Japanese name (docs/rules.md §8)
#: the standard populations a run may name (labels: the one registry, `stats`)
STANDARD_POPULATIONS = {k: stats.STANDARD_POPULATION_LABELS[k] for k in ("H27", "S60", "pref")}


@dataclasses.dataclass(frozen=True)
class Area:
    """One area of the hierarchy 地区 → 市町村 → 二次医療圏 → 都道府県 → 全国.

    `code` is the area's own code ("17", "1702", "17201", "17201:03", "00"); the parent codes are
    filled as far as known (a prefecture has only `pref_code`)."""
    level: str
    code: str
    name: str = ""
    pref_code: str | None = None
    medical_area_code: str | None = None
    muni_code: str | None = None
    district_code: str | None = None

    @property
    def is_prefecture(self) -> bool:
        return self.level == PREF

    @property
    def is_municipality(self) -> bool:
        return self.level == MUNI

    @property
    def level_label(self) -> str:
        """都道府県 / 二次医療圏 / 市町村 / 地区 / 全国."""
        return LEVEL_LABELS[self.level]

    @property
    def display_name(self) -> str:
        return self.name or self.code

    def member_munis(self, master: pd.DataFrame) -> list[str] | None:
        """Municipal codes inside the area (None = every municipality of the data, i.e. the
        prefecture or the nation: one prefecture's data holds no other)."""
        if self.level in (PREF, NATIONAL):
            return None
        if self.level == MEDICAL_AREA:
            m = master[master["medical_area_code"].astype("str") == self.code]
            return sorted(m["muni_code"].astype("str").unique())
        return [str(self.muni_code)]

    def mask(self, muni_codes: pd.Series, master: pd.DataFrame | None = None) -> np.ndarray:
        """Boolean array: which rows of a `muni_code` column lie in the area. Decided once per
        distinct code (a few dozen), then spread to the rows (vectorised, categorical-friendly)."""
        if self.level == NATIONAL:
            return np.ones(len(muni_codes), dtype=bool)
        codes, uniques = pd.factorize(pd.Series(muni_codes))
        distinct = pd.Series(np.asarray(uniques, dtype=object)).astype("str")
        if self.level == PREF:
            hit = distinct.str.startswith(str(self.pref_code)).to_numpy(dtype=bool)
        elif self.level == MEDICAL_AREA:
            if master is None:
                raise ValueError("二次医療圏の範囲には市町村マスタが必要です")
            hit = distinct.isin(self.member_munis(master)).to_numpy(dtype=bool)
        else:
            hit = distinct.eq(str(self.muni_code)).to_numpy(dtype=bool)
        return np.append(hit, False)[codes]  # code −1 (missing) → the appended False

    def strata(self, strata: pd.DataFrame, master: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows of a strata (or person_year) table inside the area; the table itself for the
        prefecture/nation (no copy). District areas keep the whole municipality: districts are a
        column of the strata, selected by the caller."""
        if self.level in (PREF, NATIONAL):
            return strata
        return strata[self.mask(strata["muni_code"], master)]


def _pref_area(code2: str) -> Area:
    if code2 not in PREF_NAME_BY_CODE:
        raise ParameterError(f"都道府県コード「{code2}」は 01〜47 ではありません（例: 石川県 = 17）。")
    return Area(PREF, code2, PREF_NAME_BY_CODE[code2], pref_code=code2)


def parse_code(value, master: pd.DataFrame | None = None) -> Area:
    """The area of a code in any accepted form (module docstring); names and parents from `master`
    (columns muni_code, name, pref_code, medical_area_code, medical_area) when given.

    Raises ParameterError with a Japanese message naming the value and the accepted forms."""
    if isinstance(value, Area):
        return value
    if value is None or isinstance(value, bool):
        raise ParameterError(f"地域コード {value!r} を読めません。都道府県（17）、市町村（17201）、"
                             "二次医療圏（1702）または地区（17201:03）のコードを指定してください。")
    s = code_text(value)
    if ":" in s:
        muni, _, district = s.partition(":")
        parent = parse_code(muni, master)
        if not parent.is_municipality or not district.strip():
            raise ParameterError(f"地区の指定「{value}」は「市町村コード:地区コード」（例: 17201:03）の形で書いてください。")
        district = district.strip()
        return dataclasses.replace(parent, level=DISTRICT, code=f"{parent.code}:{district}",
                                   name="", district_code=district)
    if s == NATIONAL_CODE:
        return Area(NATIONAL, NATIONAL_CODE, NATIONAL_NAME)
    if master is not None and "medical_area_code" in master and len(s) == 4:
        rows = master[master["medical_area_code"].astype("str") == s]
        if len(rows):
            pref = str(rows["pref_code"].iloc[0]).zfill(2)
            return Area(MEDICAL_AREA, s, str(rows["medical_area"].iloc[0]) if "medical_area" in rows else s,
                        pref_code=pref, medical_area_code=s)
    if s.isdigit() and len(s) <= 2:
        return _pref_area(s.zfill(2))
    if s.isdigit() and len(s) == 5 and s.endswith("000"):
        return _pref_area(s[:2])
    if s.isdigit() and len(s) == 6 and s[2:5] == "000" and int(s[5]) == check_digit(s[:5]):
        return _pref_area(s[:2])
    try:
        code = normalize_muni_code(s)
    except ValueError as e:
        raise ParameterError(f"地域コード「{value}」を読めません: {e}。都道府県（17 または 17000）、"
                             "市町村（17201 または検査数字付き 172014）、二次医療圏（1702）、"
                             "地区（17201:03）のいずれかの形で指定してください。") from None
    if code.endswith("000"):
        return _pref_area(code[:2])
    area = Area(MUNI, code, pref_code=code[:2], muni_code=code)
    if master is None:
        return area
    rows = master[master["muni_code"].astype("str") == code]
    if not len(rows):
        examples = "、".join(master["muni_code"].astype("str").head(3))
        raise ParameterError(f"市町村コード {code} はデータの市町村マスタにありません（例: {examples}）。")
    r = rows.iloc[0]
    med = str(r["medical_area_code"]) if "medical_area_code" in rows and pd.notna(r["medical_area_code"]) else None
    return dataclasses.replace(area, name=str(r["name"]), medical_area_code=med,
                               pref_code=str(r["pref_code"]).zfill(2) if "pref_code" in rows else area.pref_code)


def resolve_area(value, master: pd.DataFrame, districts: pd.DataFrame | None = None) -> Area:
    """`parse_code` against the data's master, with names: a prefecture named as in the master
    (its `pref_name`), a district named from the 地区マスタ (the code when absent)."""
    area = parse_code(value, master)
    if area.is_prefecture and "pref_name" in master and len(master):
        same = master[master["pref_code"].astype("str").str.zfill(2) == area.code]
        if len(same):
            area = dataclasses.replace(area, name=str(same["pref_name"].iloc[0]))
    if area.level == DISTRICT:
        name = area.district_code
        if districts is not None and len(districts):
            d = districts[(districts["muni_code"].astype("str") == area.muni_code)
                          & (districts["district_code"].astype("str") == area.district_code)]
            if len(d):
                name = str(d["name"].iloc[0])
        area = dataclasses.replace(area, name=name)
    return area



def district_names(districts: pd.DataFrame | None, muni_code: str) -> dict[str, str]:
    """district_code -> name for one municipality (empty when it has no districts)."""
    if districts is None or len(districts) == 0:
        return {}
    d = districts[districts["muni_code"].astype("str") == str(muni_code)]
    return dict(zip(d["district_code"].astype("str"), d["name"].astype("str")))


def unknown_district_code(muni_code: str) -> str:
    """area_code of the 地区不明 row of a municipality's district tables: "<muni_code>:" (an empty
    district code, as the data has it; docs/rules.md §9.1). Notebooks 02 and 03."""
    return f"{muni_code}:"


def has_districts(person_year: pd.DataFrame, area, fy: int | None = None) -> bool:
    """True when `area` is a municipality (any code form, `parse_code`) and at least one of its
    person_year rows (of fiscal year `fy`; every year when None) has a district code. The one
    answer to "can this area be analysed by district?" (notebooks 02 and 03, docs/design.md §3):
    an empty or missing code is no district (as in the district strata, `aggregate.rollup`);
    a prefecture or 二次医療圏 never has districts."""
    a = area if isinstance(area, Area) else parse_code(area)
    if not a.is_municipality:
        return False
    rows = a.mask(person_year["muni_code"])
    if fy is not None:
        rows &= person_year["fy"].to_numpy() == int(fy)
    code = person_year.loc[rows, "district_code"]
    return bool((code.notna() & code.astype("str").ne("")).any())  # (any dtype, categorical too)


def district_label_per_row(frame: pd.DataFrame, districts: pd.DataFrame | None) -> pd.Series:
    """District name for each row of a person-level frame (`muni_code`, `district_code`): the
    master's name, else the code, else "地区不明" when the row has no district."""
    raw = frame["district_code"]
    code = raw.astype("str").where(raw.notna(), "")  # a missing code is no district (not "nan")
    names = code.where(code.ne(""), UNKNOWN_DISTRICT).astype("str")
    if districts is not None and len(districts):
        key = districts["muni_code"].astype(str) + ":" + districts["district_code"].astype(str)
        lookup = pd.Series(districts["name"].astype(str).to_numpy(), index=key.to_numpy())
        lookup = lookup[~lookup.index.duplicated()]
        mapped = (frame["muni_code"].astype("str") + ":" + code).map(lookup)
        names = mapped.fillna(names).astype("str")
    return names

def is_prefecture(code) -> bool:
    """True when the code names a prefecture in any accepted form ("17", 17, "17000", "170003")."""
    return parse_code(code).is_prefecture


def prefecture_of(area: Area, master: pd.DataFrame | None = None) -> Area:
    """The prefecture containing the area (the area itself for a prefecture)."""
    if area.is_prefecture:
        return area
    if area.pref_code is None:
        raise ParameterError(f"{area.display_name} の都道府県が分かりません。")
    pref = _pref_area(area.pref_code)
    return resolve_area(pref, master) if master is not None else pref


@dataclasses.dataclass(frozen=True)
class ReferenceResolution:
    """What an analysis of `subject` is compared with.

    `area`: the reference area (県, 二次医療圏, 全国); `substitute_for`: "" when it is the requested
    one, else the Japanese name of the requested reference that cannot apply (二次医療圏 of a whole
    prefecture), with `reason`. `peers` (同規模): the peer municipalities in the data;
    `unavailable`: a reason that holds for every indicator (同規模 with too few peers).
    `label` (charts, table rows), `kind` (table headers such as "県との比較") and `note` (a sentence
    for the report) say what is compared."""
    requested: str
    subject: Area
    area: Area
    substitute_for: str = ""
    reason: str = ""
    peers: tuple[str, ...] | None = None
    peer_class: str = ""
    unavailable: str = ""

    @property
    def available(self) -> bool:
        return not self.substitute_for and not self.unavailable

    @property
    def kind(self) -> str:
        """県 / 二次医療圏 / 国 / 同規模 (the reference actually used), for headers."""
        if self.requested == "similar":
            return "同規模"
        return {MEDICAL_AREA: "二次医療圏", NATIONAL: "国"}.get(self.area.level, "県")

    @property
    def kind_label(self) -> str:
        """`kind`, with the requested reference when this is a substitute: "県（二次医療圏の代わり）"."""
        return f"{self.kind}（{self.substitute_for}の代わり）" if self.substitute_for else self.kind

    @property
    def label(self) -> str:
        """The reference as charts and tables name it, e.g. "石川県", "石川中央（二次医療圏）",
        "全国（NDB 2022年度・全保険者）", "同規模（1万〜2万人、6市町村）"."""
        if self.requested == "similar":
            return f"同規模（{self.peer_class}、{len(self.peers or ())}市町村）" if self.peer_class else "同規模"
        if self.area.level == NATIONAL:
            from hsutils.analysis import references  # the NDB reference data (same layer; imports this module)
            return f"全国（NDB {references.NDB_FY}年度・全保険者）"
        name = self.area.display_name
        if self.area.level == MEDICAL_AREA:
            name += "（二次医療圏）"
        return f"{name}（{self.substitute_for}の代わり）" if self.substitute_for else name

    @property
    def note(self) -> str:
        """Japanese sentence for the report; "" when nothing needs saying."""
        if self.substitute_for:
            return (f"比較の基準「{self.substitute_for}」は、{self.reason}使えません。"
                    f"代わりに{self.area.display_name}全体と比較しています。")
        if self.unavailable:
            return f"比較の基準「{self.kind}」: {no_comparison(self.unavailable)}。"
        if self.area.level == NATIONAL:
            from hsutils.analysis import references
            return (f"比較の基準「全国」は NDBオープンデータ（{references.NDB_FY}年度）の率です。"
                    f"{references.NDB_SCOPE_NOTE}。NDB にない指標は「比較なし」です。")
        if self.requested == "similar":
            return (f"比較の基準「同規模」は、データ内で人口が同じ区分（{self.peer_class}）の他の"
                    f"{len(self.peers or ())}市町村を合わせた率です（docs/rules.md §15.3）。")
        return ""

    def unavailable_reason(self, indicator_id: str) -> str:
        """"" when the reference has a figure for the indicator, else why not (decided here only)."""
        if self.unavailable:
            return self.unavailable
        if self.area.level == NATIONAL:
            from hsutils.analysis import references
            if indicator_id not in references.NDB_INDICATORS:
                return "全国の値は NDB の健診項目だけのため"
        return ""

    def comparison_note(self, indicator_id: str) -> str:
        """The note a chart or table of one indicator carries when this reference has no figure for
        it: 「<label>: 比較なし（理由）」 ("" when it has one). The same words in every notebook
        (01–09); a notebook never draws another area in its place."""
        why = self.unavailable_reason(indicator_id)
        return f"{self.label}: {no_comparison(why)}" if why else ""

    def data_members(self, indicator_id: str, master: pd.DataFrame) -> tuple[bool, list[str] | None]:
        """(usable, municipal codes) of the reference for an indicator that a notebook recounts from
        the data's person rows (07's 多剤, 08's 受診率, 06's 医療費): usable is False when the
        reference has no figure for it (全国 outside the NDB items, 同規模 with too few peers: say
        `comparison_note`), or when it is a substitute (`note`); codes None = every municipality of
        the data (the prefecture)."""
        if self.unavailable_reason(indicator_id) or self.substitute_for:
            return False, None
        return True, self.member_munis(master)

    def comparison_text(self, indicator_ids, comparisons) -> np.ndarray:
        """The comparison column of a table: 「比較なし（理由）」 where the reference has no figure
        for the indicator, else the comparison given (有意に高い / 有意差なし / 有意に低い)."""
        ids = pd.Series(np.asarray(indicator_ids, dtype=object))
        reasons = ids.map({i: self.unavailable_reason(i) for i in ids.unique()}).to_numpy(dtype=object)
        out = np.asarray(comparisons, dtype=object).copy()
        for i in np.flatnonzero(reasons != ""):  # one per indicator row
            out[i] = no_comparison(reasons[i])
        return out

    def strata(self, strata: pd.DataFrame, master: pd.DataFrame | None = None) -> pd.DataFrame:
        """Reference strata for `strata` (or person_year rows of the data): the rows inside the
        reference area; 同規模: the peers' rows (none when unavailable); 全国: the NDB rates by
        indicator × sex × age band, repeated for each fiscal year of `strata`."""
        if self.requested == "similar":
            if self.unavailable or not self.peers:
                return strata.iloc[0:0]
            return strata[strata["muni_code"].astype("str").isin(self.peers).to_numpy()]
        if self.area.level == NATIONAL:
            from hsutils.analysis import references
            fys = sorted(pd.unique(strata["fy"])) if "fy" in strata and len(strata) else []
            out = references.ndb_reference().strata(fys)
            return out.assign(muni_code="00000", district_code="")
        return self.area.strata(strata, master)

    def mask(self, muni_codes: pd.Series, master: pd.DataFrame | None = None) -> np.ndarray:
        """Which rows of a `muni_code` column belong to the reference in the data (同規模: the
        peers; else `Area.mask` of the reference area). Check `data_members` first: 全国 is not
        in the data."""
        if self.requested == "similar":
            return pd.Series(muni_codes).astype("str").isin(list(self.peers or ())).to_numpy(dtype=bool)
        return self.area.mask(muni_codes, master)

    def member_munis(self, master: pd.DataFrame) -> list[str] | None:
        if self.requested == "similar":
            return list(self.peers or ())
        return self.area.member_munis(master)


def _choice(value, choices: dict[str, str], default: str, label: str) -> str:
    """A run parameter that must be one of `choices` (None/"" = `default`); Japanese error otherwise."""
    text = default if value in (None, "") else str(value).strip()
    if text not in choices:
        raise ParameterError(f"{label}「{value}」は使えません。"
                             + "、".join(f"{k}（{v}）" for k, v in choices.items()) + " のいずれかです。")
    return text


def check_reference_area(value) -> str:
    """Validate a `reference_area` parameter value (None/"" = "pref")."""
    return _choice(value, REFERENCE_CHOICES, "pref", "比較の基準（reference_area）")


def resolve_reference(subject, reference_area, master: pd.DataFrame) -> ReferenceResolution:
    """The reference of an analysis of `subject` (an `Area` or any code form) for the
    `reference_area` parameter (docs/rules.md §15): "pref" → the prefecture; "medical_area" → the
    subject's 二次医療圏; "national" → 全国 from NDB オープンデータ; "similar" → the other
    municipalities of the subject's population class in `master` (the data's municipalities),
    unavailable below `references.MIN_PEERS` peers or for an area larger than a municipality."""
    requested = check_reference_area(reference_area)
    subject = resolve_area(subject, master)
    pref = prefecture_of(subject, master)
    if requested == "pref":
        return ReferenceResolution(requested, subject, pref)
    if requested == "national":
        return ReferenceResolution(requested, subject, Area(NATIONAL, NATIONAL_CODE, NATIONAL_NAME))
    if requested == "similar":
        from hsutils.analysis import references
        if subject.level not in (MUNI, DISTRICT):
            return ReferenceResolution(requested, subject, pref,
                                       unavailable="同規模の比較は市町村の分析だけのため")
        cls, peers = references.peer_group(subject.muni_code, master)
        why = ""
        if cls is None:
            why = "市町村マスタに人口がないため"
        elif len(peers) < references.MIN_PEERS:
            why = (f"同規模（{cls}）の市町村がデータに{len(peers)}件しかないため"
                   f"（{references.MIN_PEERS}件以上で比較）")
        return ReferenceResolution(requested, subject, pref, peers=tuple(peers), peer_class=cls or "",
                                   unavailable=why)
    if subject.level in (MUNI, DISTRICT) and subject.medical_area_code:
        return ReferenceResolution(requested, subject, parse_code(subject.medical_area_code, master))
    reason = ("県全体の分析には上位の二次医療圏がないため" if subject.level in (PREF, MEDICAL_AREA)
              else "市町村マスタに二次医療圏がないため")
    return ReferenceResolution(requested, subject, pref, REFERENCE_CHOICES[requested], reason)


def reference_for_each_municipality(reference_area, master: pd.DataFrame) -> tuple[str, str]:
    """(chart label, note) of a prefecture-level report that compares every municipality with its
    own reference (notebook 01): "pref" → the prefecture, "medical_area" → each municipality's
    二次医療圏, "national" → 全国 (NDB), "similar" → each municipality's 同規模 peers in the data."""
    requested = check_reference_area(reference_area)
    if requested == "medical_area":
        return "二次医療圏", "比較の基準: 各市町村が属する二次医療圏"
    if requested == "pref":
        return "県全体", "比較の基準: 県全体"
    pref = resolve_area(str(master["pref_code"].iloc[0]).zfill(2), master)
    if requested == "national":
        ref = resolve_reference(pref, requested, master)
        return ref.label, f"比較の基準: {ref.note}"
    return "同規模", ("比較の基準: 各市町村と人口が同じ区分（docs/rules.md §15.3）のデータ内の他の市町村。"
                      "同じ区分の市町村が少ない市町村は「比較なし」です。")


# ---------------------------------------------------------------------------------------------
# Standard population (docs/rules.md §8)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StandardPopulation:
    """The standard population of a run: `weights` by age band (float Series) for the direct
    method, `name` ("H27", "S60", "pref"), and the Japanese `note` printed under charts/tables."""
    name: str
    weights: pd.Series
    note: str


def check_standard_population(value) -> str:
    """Validate a `standard_population` parameter value (None/"" = "H27")."""
    return _choice(value, STANDARD_POPULATIONS, "H27", "標準人口（standard_population）")


def standard_population(name, strata: pd.DataFrame | None = None, fy=None, bands=None) -> StandardPopulation:
    """Weights for the `standard_population` parameter over `bands` (default: schema.AGE_BANDS).

    "H27", "S60": `stats.standard_population`. S60's top band is 85+, so over bands that cut it
    only the bands it covers are weighted (40–74) and the note says so.
    "pref": the prefecture's population of the data: denominators of `kenshin_rate` (国保 40–74
    特定健診対象者) and `kouki_kenshin_rate` (後期 75+ 被保険者) by age band in `fy` (a year or a
    list; None = the mean over the years of `strata`)."""
    from hsutils.core.schema import AGE_BANDS, KOKUHO_AGE_BANDS

    if isinstance(name, pd.Series):
        return StandardPopulation("user", name.astype(float), "標準人口: 指定の人口")
    key = check_standard_population(name)
    bands = list(AGE_BANDS if bands is None else bands)
    label = STANDARD_POPULATIONS[key]
    if key in ("H27", "S60"):
        try:
            return StandardPopulation(key, stats.standard_population(key, bands=bands), f"標準人口: {label}")
        except ParameterError:
            covered = [b for b in bands if b in KOKUHO_AGE_BANDS]
            return StandardPopulation(key, stats.standard_population(key, bands=covered),
                                      f"標準人口: {label}（85歳以上が1区分のため、40–74歳の年齢階級だけで調整）")
    if strata is None:
        raise ParameterError("標準人口「pref」（県の被保険者）にはデータの集計表が必要です。")
    # one definition of "pref" (stats.standard_population); a list of years means its last year
    year = None if fy is None else int(np.max(np.atleast_1d(fy)))
    w = stats.standard_population("pref", bands=None, data=strata, fy=year)
    w = w.reindex(bands).dropna()
    label = stats.standard_population_label("pref", fy=year)
    return StandardPopulation(key, w.rename_axis("age_band"), f"標準人口: {label}")

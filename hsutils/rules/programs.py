"""Program target extraction on person-level data (docs/design.md §2 `hsutils.rules.programs`).

Covers 糖尿病性腎症重症化予防 (docs/rules.md §5), the 一体的実施 criteria of the KDB活用支援ツール
(docs/rules.md §6.1), 重複・多剤 (docs/rules.md §10), 健康状態不明者 (docs/rules.md §6.1-10) and 治療中断 (docs/rules.md §5.4).

Inputs are the canonical frames of `hsutils.inputs.io` (see docs/internal_api.md): `claims`
(claims_monthly, one row per person × month), `kaigo`, `questionnaire` and a `person_year` frame
(one row per person × fy with `has_kenshin` and the kenshin measures). Everything is vectorised;
the only Python loops run over fiscal years, criteria or columns, never over persons.

Conventions used throughout (documented once here):

- Fiscal year (fy) = April of `fy` to March of `fy + 1`; "in the year" means these 12 months.
- Months are compared as a month index (`year * 12 + month - 1`), so windows cross year ends.
- A *window of N months up to as_of_ym* is the N months ending at `as_of_ym` inclusive: with
  as_of 202503 and N = 6 the window is 202410–202503.
- A claims row counts as a *medical* claim (医科・調剤) when its inpatient, outpatient or pharmacy
  cost is > 0, when it carries a disease flag or prescribed drugs, or when it has no cost
  information at all (the row itself is evidence of a レセプト); it counts as *dental* when the
  dental cost is > 0.
- Missing questionnaire answers and unmeasured checkup values never count as "at risk".
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hsutils.core import vocab
from hsutils.inputs.lookback import (  # noqa: F401  (re-exported: programs.fy_end_ym, programs.claims_history …)
    DEFAULT_LOOKBACK_MONTHS, DEFAULT_WINDOW_MONTHS, NEW_DIALYSIS_FREE_MONTHS, UNDETERMINABLE, UNDETERMINABLE_REASON,
    allowed_lookback, claims_history, fy_end_ym, fy_start_ym, lookback_note, month_index)
from hsutils.core.errors import ParameterError
from hsutils.core.schema import QUESTIONNAIRE_RISK, column_absent

CLAIM_FLAGS = ("diabetes", "hypertension", "dyslipidemia", "ckd", "dialysis",
               "heart_failure", "stroke", "hypnotic")
MEDICAL_COSTS = ("cost_inpatient", "cost_outpatient", "cost_pharmacy")
ALL_COSTS = MEDICAL_COSTS + ("cost_dental",)

#: The claims_monthly columns each extraction reads, for a notebook that loads only those (`with_tables`,
#: `pipeline.load_prepared`): 腎症 (`nephropathy_flags`, `nephropathy_flow`) the diabetes, kidney and
#: dialysis flags; the `medical`/`dental` markers (`claims_in_window`, `health_unknown`, `ikkatsu_flags`)
#: every flag, cost and the drug count. A rule asking for a column left out raises (`_Claims.col`).
CLAIMS_KEY = ("person_id", "ym")
NEPHROPATHY_CLAIMS = CLAIMS_KEY + ("diabetes", "ckd", "dialysis")
#: The person_year columns `nephropathy_flags` and `nephropathy_flow` read.
NEPHROPATHY_PERSON_YEAR = ("person_id", "fy", "has_kenshin", "hba1c", "fpg", "casual_glucose", "diabetes_type",
                           "med_glucose", "egfr_calc", "egfr", "urine_protein")
MARKER_CLAIMS = CLAIMS_KEY + CLAIM_FLAGS + ALL_COSTS + ("n_drugs",)

# claims_person_year output column -> claims flag (any month of the fy)
_FY_FLAG_COLUMNS = {
    "dm_claim": "diabetes", "htn_claim": "hypertension", "lipid_claim": "dyslipidemia",
    "ckd_claim": "ckd", "dialysis_claim": "dialysis", "hf_claim": "heart_failure",
    "stroke_claim": "stroke", "hypnotic_claim": "hypnotic",
}

#: 新規人工透析 (docs/hotei.md §7.4): no dialysis in the `NEW_DIALYSIS_FREE_MONTHS` (12) months before the first
#: dialysis month of the year. A year whose claims start fewer months before its April cannot tell a new
#: patient from an ongoing one: `new_dialysis` is NA (unknown) for every person of that year, shown as
#: `NEW_DIALYSIS_UNKNOWN`.
NEW_DIALYSIS_UNKNOWN = f"{UNDETERMINABLE}（{UNDETERMINABLE_REASON}）"

#: The person_year columns that `ikkatsu_flags`, `health_unknown` and `nephropathy_flags` read (a
#: caller with a wide frame may pass only these, so that each year's row selection copies less).
PERSON_YEAR_INPUTS = ("person_id", "fy", "insurance", "age", "has_kenshin", "bmi", "hba1c", "sbp", "dbp",
                      "egfr_calc", "egfr", "urine_protein", "fpg", "casual_glucose", "diabetes_type",
                      "med_glucose", *QUESTIONNAIRE_RISK)
#: The tables and columns besides person_year that `ikkatsu_flags` reads (a notebook that recounts the
#: criteria loads only these: `with_tables`).
IKKATSU_TABLES = {"claims_monthly": MARKER_CLAIMS, "kaigo": ("person_id", "start", "end"),
                  "questionnaire": ("person_id", "fy", *QUESTIONNAIRE_RISK)}

STATUS_TREATED = "治療中"
STATUS_INTERRUPTED = "治療中断"
STATUS_UNTREATED = "未治療"

_URINE_LABELS = vocab.URINE_LABELS


# ---------------------------------------------------------------------------------------------
# small helpers


def _check_months(window_months: int, lookback_months: int) -> None:
    if int(window_months) < 1:
        raise ParameterError(f"直近の判定期間（月数）は1以上で指定してください（指定値: {window_months}）")
    if int(lookback_months) < int(window_months):
        raise ParameterError(
            f"さかのぼり期間（{lookback_months}か月）は直近の判定期間（{window_months}か月）以上で"
            "指定してください")


@dataclass(frozen=True)
class _Claims:
    """Claims prepared once per extraction: persons are integer codes (`pcode`) so that the
    per-person set operations are array lookups instead of string hashing. The per-year arrays
    and treatment statuses derived from them are kept in `memo` (the shared pass asks for the
    same year several times: claims per year, 一体的実施, 健康状態不明者, 腎症).

    Only person codes and months are built up front; a flag, `n_drugs`, `n_institutions` or the
    `medical`/`dental` marker is converted from `source` when a rule first asks for it (`col`) and
    kept, so an extraction holds only the columns it uses (腎症: three flags of 1 byte a row, not
    every flag and cost; issue 17). The cost columns are read only for the markers, not kept."""
    frame: pd.DataFrame  # pcode, ym, mi (int32); attrs["first_ym"] when the claims carry it
    persons: pd.Index    # person_id (str) for each pcode
    memo: dict = field(default_factory=dict, compare=False, repr=False)
    source: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.persons)

    def col(self, name: str) -> np.ndarray:
        """One column as a NumPy array (pcode, ym, mi, a `CLAIM_FLAGS` flag as bool, n_drugs /
        n_institutions as float, `medical`/`dental`), converted once (callers must not modify it)."""
        if name in self.frame.columns:
            return self.frame[name].to_numpy()
        key = ("col", name)
        if key not in self.memo:
            if name == "medical":
                self.memo[key] = self._medical()
            elif name == "dental":
                self.memo[key] = self._raw("cost_dental") > 0
            else:
                self.memo[key] = self._raw(name)
        return self.memo[key]

    def _raw(self, name: str) -> np.ndarray:
        """A canonical column of `source`: a flag as bool (missing -> False), a number as float
        (missing -> NaN); a column the data do not have is all False / all NaN. A column the
        reader left out (`schema.UNREAD_COLUMNS`: not in a notebook's `with_tables` list) raises,
        since its default would silently change the result."""
        src = self.source
        if src is not None and name in src.columns:
            if name in CLAIM_FLAGS:
                return src[name].astype("boolean").fillna(False).to_numpy(dtype=bool)
            return pd.to_numeric(src[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        if src is not None:
            column_absent(src, name)  # raises for a column the reader left out
        if name in CLAIM_FLAGS:
            return np.broadcast_to(np.False_, (len(self.frame),))
        if name in ALL_COSTS + ("n_drugs", "n_institutions"):
            return np.broadcast_to(np.float64(np.nan), (len(self.frame),))
        raise KeyError(name)

    def _medical(self) -> np.ndarray:
        """The `medical` marker of the module docstring: a medical cost > 0, a disease flag, drugs,
        or no cost information at all."""
        out = np.zeros(len(self.frame), dtype=bool)
        no_cost_info = np.ones(len(self.frame), dtype=bool)
        for cost in ALL_COSTS:  # one cost column at a time, none kept
            values = self._raw(cost)
            if cost in MEDICAL_COSTS:
                out |= values > 0
            no_cost_info &= np.isnan(values)
        for f in CLAIM_FLAGS:
            out |= self.col(f)
        out |= self.col("n_drugs") > 0
        return out | no_cost_info

    def codes_of(self, pid: pd.Series) -> np.ndarray:
        """pcode for each person id (-1 when the person has no claims)."""
        return _positions(pid, self.persons)


def _prepare_claims(claims) -> _Claims:
    """Canonical claims with person codes and `mi` (month index); the flags, drug counts and the
    `medical`/`dental` claim markers (conventions in the module docstring) follow on demand
    (`_Claims.col`)."""
    if isinstance(claims, _Claims):
        return claims
    codes, persons = pd.factorize(claims["person_id"].astype("str"))
    ym = pd.to_numeric(claims["ym"]).to_numpy(dtype="int64")
    # int32: person codes and months fit, at half the memory of int64 (issue 17)
    c = pd.DataFrame({"pcode": codes.astype("int32"), "ym": ym.astype("int32"),
                      "mi": month_index(ym).astype("int32")})
    if claims.attrs.get("first_ym") is not None:  # the data's first month (a partition's claims, docs/hotei.md §7)
        c.attrs["first_ym"] = claims.attrs["first_ym"]
    return _Claims(c, pd.Index(persons, dtype="str"), source=claims)


def prepare_claims(claims) -> _Claims:
    """Claims prepared once for several extractions on the same claims (the shared pass, docs/design.md
    §8.2): every function of this module accepts the result in place of the claims frame."""
    return _prepare_claims(claims)


def _any_of(cl: _Claims, codes: np.ndarray) -> np.ndarray:
    """Bool array over pcodes: True for the persons in `codes`."""
    out = np.zeros(cl.n, dtype=bool)
    out[codes] = True
    return out


def _max_of(cl: _Claims, codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Float array over pcodes: max of `values` per person, NaN values skipped (NaN when none)."""
    out = np.full(cl.n, np.nan)
    np.fmax.at(out, codes, np.asarray(values, dtype="float64"))  # fmax: NaN loses to any number
    return out


def _take(values: np.ndarray, idx: np.ndarray, fill):
    """values[idx] with `fill` where idx is -1 (person absent)."""
    if len(values) == 0:  # no claims at all
        return np.full(len(idx), fill, dtype=object if values.dtype == object else None)
    out = values[np.clip(idx, 0, None)]
    return np.where(idx >= 0, out, fill)


def _arrow_ids(values) -> pa.Array:
    """Person ids as an Arrow string array (a pandas "str" column is one already: no copy)."""
    ids = pa.array(pd.Series(values, copy=False).astype("str"))
    return ids.cast(pa.large_string()) if ids.type != pa.large_string() else ids


def _positions(pid: pd.Series, persons: pd.Index) -> np.ndarray:
    """Position of each id of `pid` in the unique ids `persons` (-1 when absent), as `Index.get_indexer`
    but with Arrow's hash lookup: pandas turns every id into a Python string first (about 80 bytes a
    row: 3 GB for the claims of a city of 4 million person-years, issue 17)."""
    at = pc.index_in(_arrow_ids(pid), value_set=_arrow_ids(persons))
    return at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def person_in(pid: pd.Series, ids) -> np.ndarray:
    """Bool array: the person of each row of `pid` is one of `ids` (Arrow's hash lookup, `_positions`)."""
    if len(pid) == 0:
        return np.zeros(0, dtype=bool)
    return pc.is_in(_arrow_ids(pid), value_set=_arrow_ids(pd.unique(pd.Series(ids, copy=False).astype("str")))
                    ).to_numpy(zero_copy_only=False)


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    """Column as float (NaN when the column is absent)."""
    if column_absent(frame, col):
        return pd.Series(np.nan, index=frame.index, dtype="float64")
    return pd.to_numeric(frame[col], errors="coerce").astype("float64")


def _bool(frame: pd.DataFrame, col: str) -> pd.Series:
    """Nullable boolean column as plain bool (missing -> False; absent column -> all False)."""
    if column_absent(frame, col):
        return pd.Series(False, index=frame.index)
    return frame[col].astype("boolean").fillna(False).astype(bool)


def _rows_of_fy(person_year: pd.DataFrame, fy: int) -> pd.DataFrame:
    return person_year.loc[pd.to_numeric(person_year["fy"]).to_numpy() == int(fy)]


def _egfr(py: pd.DataFrame) -> pd.Series:
    """eGFR used for programs: `egfr_calc` (docs/rules.md §4.1, from clinical) else the reported value."""
    calc = _num(py, "egfr_calc")
    return calc.fillna(_num(py, "egfr"))


def new_dialysis_determinable(claims, fiscal_years: Iterable[int]) -> pd.Series:
    """Bool per fiscal year (index `fy`): the claims hold `NEW_DIALYSIS_FREE_MONTHS` months before
    April of the year, so that a dialysis patient of April can be told new or ongoing (docs/hotei.md
    §7.4). With 11 months (claims from May of the year before) the year is not determinable; 12
    months (from April of the year before) and more are. No claims at all: no year is. The months
    come from `claims_history` (the data's first month, also for one municipality's partition)."""
    h = claims_history(claims, fiscal_years)
    return pd.Series(h["months_before_fy"].to_numpy() >= NEW_DIALYSIS_FREE_MONTHS,
                     index=pd.Index(h["fy"].astype("int64"), name="fy"), name="new_dialysis_determinable")


def _new_dialysis(cl: _Claims, upto: np.ndarray, fy: int) -> np.ndarray:
    """Bool over pcodes: first dialysis month in `fy` has no dialysis claim in the
    `NEW_DIALYSIS_FREE_MONTHS` months before it (whether the year can be judged at all is
    `new_dialysis_determinable`). `upto`: mask of the claims rows up to the end of `fy`."""
    rows = upto & cl.col("dialysis")
    d = pd.DataFrame({k: cl.col(k)[rows] for k in ("pcode", "mi", "ym")}).drop_duplicates(["pcode", "mi"])
    d = d.sort_values(["pcode", "mi"])
    prev = d.groupby("pcode")["mi"].shift()
    d = d.assign(new=prev.isna() | ((d["mi"] - prev) > NEW_DIALYSIS_FREE_MONTHS))
    in_fy = d[d["ym"] >= fy_start_ym(fy)]
    first = in_fy.groupby("pcode", sort=False)["new"].first()
    out = np.zeros(cl.n, dtype=bool)
    out[first.index.to_numpy()[first.to_numpy(dtype=bool)]] = True
    return out


#: The per-year arrays of `_claims_fy_arrays` (the claims_person_year columns plus `present`).
_FY_ARRAYS = ("present", "claim_medical", "claim_dental", *_FY_FLAG_COLUMNS, "max_drugs", "last_dm_ym",
              "last_claim_ym", "new_dialysis")


def _claims_fy_arrays(cl: _Claims, fy: int, columns: Sequence[str] = _FY_ARRAYS) -> dict[str, np.ndarray]:
    """Per-pcode arrays of the claims_person_year `columns` (default: all, plus `present`) for one
    fy, each computed once per prepared claims and year (`_Claims.memo`; callers must not modify
    the arrays). Only the columns asked for are computed, so an extraction reads only the claims
    columns it needs (`_Claims.col`)."""
    fy = int(fy)
    missing = [c for c in columns if ("fy", fy, c) not in cl.memo]
    if missing:
        for col, values in _claims_fy_arrays_of(cl, fy, missing).items():
            cl.memo[("fy", fy, col)] = values
    return {c: cl.memo[("fy", fy, c)] for c in columns}


def _claims_fy_arrays_of(cl: _Claims, fy: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
    start, end = fy_start_ym(fy), fy_end_ym(fy)
    ym, pcode = cl.col("ym"), cl.col("pcode")
    upto = ym <= end
    in_fy = upto & (ym >= start)
    flags = {**_FY_FLAG_COLUMNS, "claim_medical": "medical", "claim_dental": "dental"}
    out = {}
    for col in columns:
        if col == "present":
            out[col] = _any_of(cl, pcode[upto])
        elif col in flags:
            out[col] = _any_of(cl, pcode[in_fy & cl.col(flags[col])])
        elif col == "max_drugs":
            out[col] = _max_of(cl, pcode[in_fy], cl.col("n_drugs")[in_fy])
        elif col == "last_dm_ym":
            dm = upto & cl.col("diabetes")
            out[col] = _max_of(cl, pcode[dm], ym[dm])
        elif col == "last_claim_ym":
            out[col] = _max_of(cl, pcode[upto], ym[upto])
        elif col == "new_dialysis":
            out[col] = _new_dialysis(cl, upto, fy)
        else:
            raise KeyError(col)
    return out


# ---------------------------------------------------------------------------------------------
# 1. claims per person × fy


def claims_person_year(claims: pd.DataFrame, fys: Iterable[int]) -> pd.DataFrame:
    """Claims summarised per person × fiscal year (April–March).

    One row per person and fy for every person with at least one claims row up to the end of
    that fy. Columns: `person_id, fy, claim_medical, claim_dental, dm_claim, htn_claim,
    lipid_claim, ckd_claim, dialysis_claim, hf_claim, stroke_claim, hypnotic_claim` (any month of
    the fy; medical/dental as defined in the module docstring), `max_drugs` (Int64, largest
    monthly n_drugs in the fy), `last_dm_ym` and `last_claim_ym` (Int64 YYYYMM, last month with a
    diabetes claim / any claim up to the fy end, any year), and `new_dialysis` (nullable boolean:
    dialysis in the fy and none in the 12 months before its first dialysis month of the fy; NA for
    every person of a year with fewer than 12 months of claims before it, where a patient already on
    dialysis would look new: `new_dialysis_determinable`, docs/hotei.md §7.4).

    docs/rules.md §5.1 (diabetes claims), §6.1 (claims in the year), §10 (drugs per month), §13.4.
    """
    fys = [int(f) for f in fys]
    determinable = new_dialysis_determinable(claims, fys)
    cl = _prepare_claims(claims)
    frames = []
    for fy in fys:
        arr = _claims_fy_arrays(cl, fy)  # a new dict: pop leaves the memo whole
        keep = arr.pop("present")
        out = pd.DataFrame({"person_id": pd.Series(cl.persons[keep], dtype="str")})
        out["fy"] = np.int64(fy)
        for col, values in arr.items():
            values = values[keep]
            if col == "new_dialysis":
                out[col] = pd.array(values if determinable[fy] else np.full(len(values), None), dtype="boolean")
            elif values.dtype == bool:
                out[col] = values
            else:  # float with NaN -> nullable integer
                out[col] = pd.array(np.round(values), dtype="Int64")
        frames.append(out[["person_id", "fy", "claim_medical", "claim_dental",
                           *_FY_FLAG_COLUMNS, "max_drugs", "last_dm_ym", "last_claim_ym",
                           "new_dialysis"]])
    if not frames:
        return pd.DataFrame(columns=["person_id", "fy"])
    return pd.concat(frames, ignore_index=True)


def claims_in_window(claims: pd.DataFrame, end_ym: int, months: int) -> pd.DataFrame:
    """Claims use per person in the `months` months ending at `end_ym` inclusive (window
    convention of the module docstring: end 202503 and 12 months is 202404–202503).

    One row per person with at least one claims row in the window: `person_id`, `medical`,
    `dental` (markers of the module docstring), one bool column per `CLAIM_FLAGS` (any month of
    the window) and `last_ym` (Int64, last month with a claims row in the window). Persons
    without a row in the window are absent (no claims use). docs/rules.md §14.2.
    """
    if int(months) < 1:
        raise ParameterError(f"レセプトの判定期間（月数）は1以上で指定してください（指定値: {months}）")
    cl = _prepare_claims(claims)
    end, mi = month_index(int(end_ym)), cl.col("mi")
    w = (mi <= end) & (mi > end - int(months))
    pcode = cl.col("pcode")[w]
    present = _any_of(cl, pcode)
    out = pd.DataFrame({"person_id": pd.Series(cl.persons[present], dtype="str")})
    for col in ("medical", "dental") + CLAIM_FLAGS:
        out[col] = _any_of(cl, pcode[cl.col(col)[w]])[present]
    out["last_ym"] = pd.array(np.round(_max_of(cl, pcode, cl.col("ym")[w])[present]), dtype="Int64")
    return out


def _claims_on_rows(cl: _Claims, pid: pd.Series, fy: int, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """The claims_person_year `columns` for `fy` aligned to person ids (no claims -> False / NaN)."""
    idx = cl.codes_of(pid)
    return {col: _take(values, idx, False if values.dtype == bool else np.nan)
            for col, values in _claims_fy_arrays(cl, fy, columns).items()}


# ---------------------------------------------------------------------------------------------
# 2. treatment status


def _status_codes(cl: _Claims, flags: Sequence[str], as_of_ym: int, window_months: int,
                  lookback_months: int) -> tuple[np.ndarray, np.ndarray]:
    """(status str array, last flagged ym float array) over pcodes, computed once per prepared
    claims and arguments (`_Claims.memo`; callers must not modify the arrays)."""
    key = ("status", tuple(flags), int(as_of_ym), int(window_months), int(lookback_months))
    if key in cl.memo:
        return cl.memo[key]
    as_of_mi = month_index(int(as_of_ym))
    mi = cl.col("mi")
    flagged = np.zeros(len(mi), dtype=bool)
    for f in flags:  # a loop over one or two disease flags
        flagged |= cl.col(f)
    hit = (mi <= as_of_mi) & flagged
    codes = cl.col("pcode")[hit]
    last_mi = _max_of(cl, codes, mi[hit])
    last_ym = _max_of(cl, codes, cl.col("ym")[hit])
    gap = as_of_mi - last_mi  # NaN when never flagged
    status = np.select([gap < window_months, gap < lookback_months],
                       [STATUS_TREATED, STATUS_INTERRUPTED], default=STATUS_UNTREATED)
    cl.memo[key] = (status.astype(object), last_ym)
    return cl.memo[key]


def treatment_status(claims: pd.DataFrame, flag: str | Sequence[str], as_of_ym: int | None = None,
                     window_months: int = 6, lookback_months: int = 36, *,
                     fy: int | None = None) -> pd.DataFrame:
    """治療中 / 治療中断 / 未治療 from claims for one disease flag (or any of several flags).

    docs/rules.md §5.4 and §6.1-7. Window convention: the window is the `window_months` months ending at
    `as_of_ym` inclusive, the look-back the `lookback_months` months ending at `as_of_ym`
    inclusive. With as_of 202503 and window 6 a last claim in 202410 is 治療中 and one in 202409
    is 治療中断.

    - 治療中: a claim with the flag within the window.
    - 治療中断: claims with the flag in the look-back, none in the window.
    - 未治療: no claim with the flag in the look-back (including persons never flagged).

    Claims after `as_of_ym` are ignored. `as_of_ym` defaults to the end (March) of `fy`.
    Returns one row per person present in `claims`: `person_id, status, last_ym` where last_ym is
    the last flagged month up to as_of_ym (Int64, any year, NA when never flagged).
    """
    if as_of_ym is None:
        if fy is None:
            raise ParameterError("treatment_status: 判定基準月（as_of_ym）または年度（fy）を指定してください")
        as_of_ym = fy_end_ym(fy)
    _check_months(window_months, lookback_months)
    flags = [flag] if isinstance(flag, str) else list(flag)
    cl = _prepare_claims(claims)
    status, last_ym = _status_codes(cl, flags, as_of_ym, window_months, lookback_months)
    return pd.DataFrame({"person_id": pd.Series(cl.persons, dtype="str"),
                         "status": pd.Series(status, dtype="str"),
                         "last_ym": pd.array(last_ym, dtype="Int64")})


def _status_on_rows(cl: _Claims, pid: pd.Series, flags: Sequence[str], as_of_ym: int,
                    window_months: int, lookback_months: int) -> pd.Series:
    """treatment status aligned to person ids (persons without claims -> 未治療)."""
    _check_months(window_months, lookback_months)
    status, _ = _status_codes(cl, flags, as_of_ym, window_months, lookback_months)
    values = _take(status, cl.codes_of(pid), STATUS_UNTREATED)
    return pd.Series(values, index=pid.index, dtype="str")


# ---------------------------------------------------------------------------------------------
# 6. 健康状態不明者 (all ages)


def kaigo_certified(kaigo: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp) -> pd.Index:
    """Persons with a 介護 certification period overlapping [start, end] (open `end` = ongoing)."""
    if kaigo is None or len(kaigo) == 0:
        return pd.Index([], dtype="str")
    s = pd.to_datetime(kaigo["start"])
    e = pd.to_datetime(kaigo["end"]) if "end" in kaigo.columns else pd.Series(pd.NaT, index=kaigo.index)
    overlap = (s <= end) & (e.isna() | (e >= start))
    return pd.Index(kaigo.loc[overlap.to_numpy(dtype=bool), "person_id"].astype("str").unique())


def health_unknown(person_year: pd.DataFrame, claims: pd.DataFrame, kaigo: pd.DataFrame | None,
                   fy: int) -> pd.Series:
    """健康状態不明者 for every row of `person_year` in `fy` (all ages), bool Series.

    docs/rules.md §6.1-10: no checkup in this and the previous fy, no medical or dental claim in those two
    years, and no 介護 certification valid at any time in those two years. The previous year's
    checkup is read from the person_year rows of fy − 1 (absent rows count as no checkup, so pass
    both years).
    """
    py = _rows_of_fy(person_year, fy)
    pid = py["person_id"].astype("str")
    prev = _rows_of_fy(person_year, fy - 1)
    checked_prev = person_in(pid, prev.loc[_bool(prev, "has_kenshin").to_numpy(), "person_id"])
    checked_now = _bool(py, "has_kenshin").to_numpy()
    cl = _prepare_claims(claims)
    claimed = np.zeros(len(py), dtype=bool)
    for year in (fy - 1, fy):
        c = _claims_on_rows(cl, pid, year, ("claim_medical", "claim_dental"))
        claimed |= c["claim_medical"] | c["claim_dental"]
    certified = person_in(pid, kaigo_certified(kaigo, pd.Timestamp(fy - 1, 4, 1),
                                             pd.Timestamp(fy + 1, 3, 31)))
    out = ~checked_now & ~checked_prev & ~claimed & ~certified
    return pd.Series(out, index=py.index, name="health_unknown")


# ---------------------------------------------------------------------------------------------
# 3. 一体的実施


@dataclass(frozen=True)
class IkkatsuParams:
    """Thresholds of the 一体的実施 criteria (docs/rules.md §6.1; defaults from the KDB活用支援ツール).

    `min_age` 75 restricts to 75+; set 65 to include 65–74 後期 (障害認定) insured.
    `drugs_threshold` 15 (20 is the stricter option, docs/rules.md §6.1-3).
    `urine_protein_kidney` uses the ordinal 0 −, 1 ±, 2 1+, 3 2+, 4 3+ (2 = 1+ 以上).
    """
    insurance: str = "後期"
    min_age: int = 75
    bmi_max: float = 20.0
    drugs_threshold: int = 15
    hba1c_poor: float = 8.0
    sbp_poor: float = 160.0
    dbp_poor: float = 100.0
    hba1c_frailty: float = 7.0
    egfr_kidney: float = 45.0
    urine_protein_kidney: int = vocab.URINE_PLUS1
    interruption_window_months: int = DEFAULT_WINDOW_MONTHS
    interruption_lookback_months: int = DEFAULT_LOOKBACK_MONTHS


def ikkatsu_criteria(params: IkkatsuParams = IkkatsuParams()) -> list[tuple[str, str, str, str]]:
    """(id, 名称, DOMAIN section, 定義) of the 一体的実施 criteria with the given thresholds."""
    p = params
    up = _URINE_LABELS.get(p.urine_protein_kidney, str(p.urine_protein_kidney))
    n = p.interruption_window_months
    return [
        ("ik_undernutrition", "低栄養", "docs/rules.md §6.1-1",
         f"BMI {p.bmi_max:g}以下 かつ 質問票⑥（6か月で2～3kg以上の体重減少）はい"),
        ("ik_oral", "口腔", "docs/rules.md §6.1-2",
         "質問票④（固いものが食べにくい）または⑤（むせる）はい かつ 年度内に歯科受診なし"),
        ("ik_polypharmacy", "服薬（多剤）", "docs/rules.md §6.1-3",
         f"1か月の処方薬剤数 {p.drugs_threshold}種類以上"),
        ("ik_hypnotic", "服薬（睡眠薬）", "docs/rules.md §6.1-4",
         "睡眠薬の処方あり かつ（質問票⑧（転倒）はい、または⑩⑪（物忘れ・日付）ともにはい）"),
        ("ik_physical_frailty", "身体的フレイル", "docs/rules.md §6.1-5",
         "質問票①（健康状態）あまりよくない・よくない かつ ⑦（歩く速度の低下）はい"),
        ("ik_poor_control", "重症化予防（コントロール不良）", "docs/rules.md §6.1-6",
         f"HbA1c {p.hba1c_poor:g}%以上で年度内に糖尿病レセプトなし、または血圧 {p.sbp_poor:g}/"
         f"{p.dbp_poor:g}mmHg以上で年度内に高血圧症レセプトなし"),
        ("ik_interruption", "重症化予防（治療中断）", "docs/rules.md §6.1-7",
         f"過去{p.interruption_lookback_months}か月に糖尿病・高血圧症のレセプトあり、直近{n}か月"
         "（年度末まで）になし"),
        ("ik_disease_frailty", "重症化予防（基礎疾患保有＋フレイル）", "docs/rules.md §6.1-8",
         f"（糖尿病治療中・治療中断、心不全・脳血管疾患のレセプトあり、または HbA1c {p.hba1c_frailty:g}%以上）"
         "かつ 質問票①⑥⑧⑬のいずれかがリスク回答"),
        ("ik_kidney_untreated", "重症化予防（腎機能不良未受診）", "docs/rules.md §6.1-9",
         f"eGFR {p.egfr_kidney:g}未満 または 尿蛋白 {up}以上 かつ 年度内に医療機関受診（入院・外来・歯科）なし"),
        ("ik_health_unknown", "健康状態不明者", "docs/rules.md §6.1-10",
         "当年度・前年度に健診受診なし、医療・歯科レセプトなし、介護認定なし"),
    ]


IKKATSU_CRITERIA = ikkatsu_criteria()


def _question_risk(py: pd.DataFrame, questionnaire: pd.DataFrame | None, fy: int) -> dict[str, pd.Series]:
    """Per item q1..q15: bool Series (index of py) True when the answer is a risk answer
    (docs/rules.md §6.2, `schema.QUESTIONNAIRE_RISK`). Uses the questionnaire frame of `fy` when given,
    else q columns of person_year. Missing answers -> False."""
    pid = py["person_id"].astype("str")
    out = {}
    if questionnaire is not None:
        q = questionnaire.loc[pd.to_numeric(questionnaire["fy"]).to_numpy() == int(fy)]
        q = q.assign(person_id=q["person_id"].astype("str")).drop_duplicates("person_id", keep="last")
        q_idx = pd.Index(q["person_id"]).get_indexer(pd.Index(pid))
    for item, codes in QUESTIONNAIRE_RISK.items():
        if questionnaire is not None:
            if item in q.columns:
                at_risk = pd.to_numeric(q[item], errors="coerce").isin(codes).to_numpy(dtype=bool)
                out[item] = pd.Series(_take(at_risk, q_idx, False), index=py.index)
            else:
                out[item] = pd.Series(False, index=py.index)
        elif not column_absent(py, item):
            out[item] = pd.to_numeric(py[item], errors="coerce").isin(codes).astype(bool)
        else:
            out[item] = pd.Series(False, index=py.index)
    return out


def ikkatsu_flags(person_year: pd.DataFrame, claims: pd.DataFrame, kaigo: pd.DataFrame | None,
                  questionnaire: pd.DataFrame | None, fy: int,
                  params: IkkatsuParams = IkkatsuParams(), *,
                  lookback_years: Iterable[int] | None = None) -> pd.DataFrame:
    """一体的実施 抽出条件 (docs/rules.md §6.1 items 1–10) for the person_year rows of `fy`.

    Only 後期 insured aged ≥ `params.min_age` can be flagged; other rows are False. "In the year"
    = the fiscal year (April–March). Columns (bool): ik_undernutrition, ik_oral, ik_polypharmacy,
    ik_hypnotic, ik_physical_frailty, ik_poor_control, ik_interruption, ik_disease_frailty,
    ik_kidney_untreated, ik_health_unknown, ik_any. Definitions: `IKKATSU_CRITERIA`.
    Notes: §6.1-6 matches HbA1c to diabetes claims and BP to hypertension claims (the monthly
    summary has disease flags, not drug classes, so a claim with the flag stands for medication);
    §6.1-7 treats diabetes and hypertension together: claims for either in the look-back and none
    for either in the last N months; §6.1-8 uses heart failure/stroke claims in the year and the
    diabetes status of `treatment_status` at the fy end.
    `lookback_years`: the fiscal years shown together, which decide the 治療中断 look-back
    (docs/hotei.md §7.2, `allowed_lookback`); None = every year of `person_year` (the cache and
    trends); a single-year list passes its own year.
    """
    p = params
    py = _rows_of_fy(person_year, fy)
    pid = py["person_id"].astype("str")
    cl = _prepare_claims(claims)
    eligible = pd.Series(True, index=py.index)
    if not column_absent(py, "insurance"):
        eligible &= py["insurance"].astype("str").eq(p.insurance).to_numpy()
    eligible &= (_num(py, "age") >= p.min_age).to_numpy()

    q = _question_risk(py, questionnaire, fy)
    cpy = _claims_on_rows(cl, pid, fy, ("claim_medical", "claim_dental", "dm_claim", "htn_claim", "hf_claim",
                                        "stroke_claim", "hypnotic_claim", "max_drugs"))

    def claimed(col: str) -> pd.Series:
        return pd.Series(cpy[col], index=py.index)

    bmi, hba1c, sbp, dbp = (_num(py, c) for c in ("bmi", "hba1c", "sbp", "dbp"))
    egfr, urine = _egfr(py), _num(py, "urine_protein")
    max_drugs = pd.Series(cpy["max_drugs"], index=py.index, dtype="float64")

    end = fy_end_ym(fy)
    # the same look-back for every fiscal year shown together (docs/hotei.md §7.2)
    years = person_year["fy"].unique() if lookback_years is None else list(lookback_years)
    months = (p.interruption_window_months, allowed_lookback(
        claims, years, p.interruption_lookback_months, p.interruption_window_months))
    dm_status = _status_on_rows(cl, pid, ["diabetes"], end, *months)
    dm_htn_status = _status_on_rows(cl, pid, ["diabetes", "hypertension"], end, *months)

    any_medical = claimed("claim_medical") | claimed("claim_dental")
    flags = {
        "ik_undernutrition": (bmi <= p.bmi_max) & q["q6"],
        "ik_oral": (q["q4"] | q["q5"]) & ~claimed("claim_dental"),
        "ik_polypharmacy": max_drugs >= p.drugs_threshold,
        "ik_hypnotic": claimed("hypnotic_claim") & (q["q8"] | (q["q10"] & q["q11"])),
        "ik_physical_frailty": q["q1"] & q["q7"],
        "ik_poor_control": (((hba1c >= p.hba1c_poor) & ~claimed("dm_claim"))
                            | (((sbp >= p.sbp_poor) | (dbp >= p.dbp_poor)) & ~claimed("htn_claim"))),
        "ik_interruption": dm_htn_status.eq(STATUS_INTERRUPTED),
        "ik_disease_frailty": ((dm_status.isin([STATUS_TREATED, STATUS_INTERRUPTED])
                                | claimed("hf_claim") | claimed("stroke_claim")
                                | (hba1c >= p.hba1c_frailty))
                               & (q["q1"] | q["q6"] | q["q8"] | q["q13"])),
        "ik_kidney_untreated": (((egfr < p.egfr_kidney) | (urine >= p.urine_protein_kidney))
                                & ~any_medical),
        "ik_health_unknown": health_unknown(person_year, cl, kaigo, fy),
    }
    out = pd.DataFrame({k: (v.to_numpy(dtype=bool) & eligible.to_numpy(dtype=bool))
                        for k, v in flags.items()}, index=py.index)
    out["ik_any"] = out.any(axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# 4. 糖尿病性腎症重症化予防


@dataclass(frozen=True)
class NephropathyParams:
    """Extraction criteria for 糖尿病性腎症重症化予防 (docs/rules.md §5; defaults P = usual practice).

    - 糖尿病型 (§5.1): HbA1c ≥ `hba1c` or 空腹時/随時血糖 ≥ `glucose`.
    - 腎障害 (§5.2): eGFR < `egfr` (60; 30 = 第4期, the stricter option) or 尿蛋白 ≥
      `urine_protein` (ordinal 1 = ± 以上; 2 = 1+ 以上, stricter) or, when
      `include_kidney_claims`, a kidney-disease claim in the year.
    - 治療中断 (§5.4): diabetes claims in the last `lookback_months`, none in the last
      `window_months` (window ends at the fy end).
    - `exclude_dialysis`: persons with dialysis claims in the year are outside groups A–E (the
      program targets people before dialysis).
    """
    hba1c: float = 6.5
    glucose: float = 126.0
    egfr: float = 60.0
    urine_protein: int = vocab.URINE_TRACE
    include_kidney_claims: bool = True
    window_months: int = DEFAULT_WINDOW_MONTHS
    lookback_months: int = DEFAULT_LOOKBACK_MONTHS
    exclude_dialysis: bool = True


DKD_GROUPS = {
    "A": "腎障害あり・未治療／治療中断（健診受診）→ 受診勧奨",
    "B": "腎障害あり・治療中（健診受診）→ かかりつけ医と連携した保健指導",
    "C": "糖尿病・腎障害なし・未治療／治療中断（健診受診）→ 受診勧奨",
    "D": "糖尿病治療中・健診未受診・腎疾患レセプトあり → 保健指導",
    "E": "糖尿病治療中断・健診未受診（レセプトのみ）→ 受診勧奨",
}


def _nephropathy_base(person_year: pd.DataFrame, claims: pd.DataFrame, fy: int,
                      params: NephropathyParams) -> pd.DataFrame:
    p = params
    py = _rows_of_fy(person_year, fy)
    pid = py["person_id"].astype("str")
    checked = _bool(py, "has_kenshin")
    cl = _prepare_claims(claims)
    cpy = _claims_on_rows(cl, pid, fy, ("dm_claim", "ckd_claim", "dialysis_claim", "last_dm_ym"))

    def claimed(col: str) -> pd.Series:
        return pd.Series(cpy[col], index=py.index)

    glucose_cols = [c for c in ("fpg", "casual_glucose", "hba1c") if not column_absent(py, c)]
    if glucose_cols:
        dm_type = ((_num(py, "hba1c") >= p.hba1c) | (_num(py, "fpg") >= p.glucose)
                   | (_num(py, "casual_glucose") >= p.glucose))
    else:  # only the derived flag of hsutils.rules.clinical is available
        dm_type = _bool(py, "diabetes_type")
    dm_type = dm_type & checked
    med_glucose = _bool(py, "med_glucose") & checked

    # the same look-back for every fiscal year of the frame (docs/hotei.md §7.2)
    lookback = allowed_lookback(claims, person_year["fy"].unique(), p.lookback_months, p.window_months)
    dm_status = _status_on_rows(cl, pid, ["diabetes"], fy_end_ym(fy), p.window_months, lookback)
    kidney_checkup = checked & ((_egfr(py) < p.egfr) | (_num(py, "urine_protein") >= p.urine_protein))
    kidney_claim = claimed("ckd_claim") if p.include_kidney_claims else pd.Series(False, index=py.index)
    dialysis = claimed("dialysis_claim")
    excluded = dialysis if p.exclude_dialysis else pd.Series(False, index=py.index)

    out = pd.DataFrame(index=py.index)
    out["has_kenshin"] = checked.to_numpy(dtype=bool)
    out["dkd_diabetes_type"] = dm_type.to_numpy(dtype=bool)
    out["dkd_diabetes"] = (dm_type | med_glucose | dm_status.ne(STATUS_UNTREATED)).to_numpy(dtype=bool)
    out["dkd_kidney"] = (kidney_checkup | kidney_claim).to_numpy(dtype=bool)
    out["dkd_kidney_claim"] = kidney_claim.to_numpy(dtype=bool)
    out["dkd_dialysis"] = dialysis.to_numpy(dtype=bool)
    out["dkd_excluded"] = excluded.to_numpy(dtype=bool)
    out["dkd_treatment"] = pd.Series(dm_status.to_numpy(), index=py.index, dtype="str")
    out["dkd_claims_only"] = (~checked & claimed("dm_claim")).to_numpy(dtype=bool)
    out["last_dm_ym"] = pd.array(cpy["last_dm_ym"], dtype="Int64")
    return out


def nephropathy_flags(person_year: pd.DataFrame, claims: pd.DataFrame, fy: int,
                      params: NephropathyParams = NephropathyParams()) -> pd.DataFrame:
    """糖尿病性腎症重症化予防 target flags for the person_year rows of `fy` (docs/rules.md §5).

    Columns: `dkd_diabetes` (§5.1: checkup 糖尿病型, glucose medication on the questionnaire, or
    diabetes claims in the look-back), `dkd_diabetes_type` (checkup values only), `dkd_kidney`
    (§5.2 per params: checkup eGFR/尿蛋白, or kidney claims in the year), `dkd_treatment`
    ("治療中"/"治療中断"/"未治療", §5.4 at the fy end), `dkd_claims_only` (diabetes claims in the
    year and no checkup), `dkd_dialysis`, `dkd_group_a` … `dkd_group_e` (§5.3, mutually
    exclusive), `dkd_group` ("A"–"E" or ""), `dkd_referral` (受診勧奨: A, C, E),
    `dkd_guidance` (保健指導: B, D) and `last_dm_ym`.

    Groups (§5.3), all outside dialysis when `params.exclude_dialysis`:
    A checkup, diabetes, kidney, 未治療/治療中断; B checkup, diabetes, kidney, 治療中;
    C checkup, diabetes, no kidney finding, 未治療/治療中断; D no checkup, 治療中, kidney claims;
    E no checkup, 治療中断 (claims only).
    """
    b = _nephropathy_base(person_year, _prepare_claims(claims), fy, params)
    checked, dm, kidney = b["has_kenshin"], b["dkd_diabetes"], b["dkd_kidney"]
    keep = ~b["dkd_excluded"]
    treated = b["dkd_treatment"].eq(STATUS_TREATED)
    not_treated = b["dkd_treatment"].isin([STATUS_UNTREATED, STATUS_INTERRUPTED]) & dm
    interrupted = b["dkd_treatment"].eq(STATUS_INTERRUPTED)
    groups = {
        "dkd_group_a": keep & checked & dm & kidney & not_treated,
        "dkd_group_b": keep & checked & dm & kidney & treated,
        "dkd_group_c": keep & checked & dm & ~kidney & not_treated,
        "dkd_group_d": keep & ~checked & treated & kidney,
        "dkd_group_e": keep & ~checked & interrupted,
    }
    out = b.drop(columns=["has_kenshin", "dkd_excluded"])
    for col, v in groups.items():
        out[col] = v.to_numpy(dtype=bool)
    letter = np.select([out[c].to_numpy() for c in groups], ["A", "B", "C", "D", "E"], default="")
    out["dkd_group"] = pd.Series(letter, index=out.index, dtype="str")
    out["dkd_referral"] = out["dkd_group_a"] | out["dkd_group_c"] | out["dkd_group_e"]
    out["dkd_guidance"] = out["dkd_group_b"] | out["dkd_group_d"]
    return out


def _kidney_label(p: NephropathyParams) -> str:
    up = _URINE_LABELS.get(p.urine_protein, str(p.urine_protein))
    text = f"eGFR {p.egfr:g}未満 または 尿蛋白 {up}以上"
    if p.include_kidney_claims:
        text += " または 腎疾患レセプトあり"
    return text


def nephropathy_flow(person_year: pd.DataFrame, claims: pd.DataFrame, fy: int,
                     params: NephropathyParams = NephropathyParams()) -> pd.DataFrame:
    """概数把握 flowchart of 糖尿病性腎症重症化予防 targets (KDB flowchart, seed 003; docs/rules.md §5).

    Returns `step_id, step_label, count, parent_id` (parent_id "" for a root). Steps:

    - k0 健診受診者 → k1 糖尿病型または糖尿病治療歴 → k2 腎障害あり (→ 治療中 B / 未治療 A /
      治療中断 A) and k3 腎障害なし (→ 治療中 / 未治療 C / 治療中断 C);
    - n1 糖尿病治療中・健診未受診 → n1k うち腎疾患レセプトあり (D);
    - n2 糖尿病治療中断・健診未受診 (E);
    - x1 人工透析中（対象外）, only when `params.exclude_dialysis`.

    Every step below a root excludes dialysis patients when `params.exclude_dialysis`, so each
    group of `nephropathy_flags` equals one step (A = k2u + k2i, B = k2t, C = k3u + k3i,
    D = n1k, E = n2).
    """
    claims = _prepare_claims(claims)
    f = nephropathy_flags(person_year, claims, fy, params)
    b = _nephropathy_base(person_year, claims, fy, params)
    checked = b["has_kenshin"]
    keep = ~b["dkd_excluded"]
    st = f["dkd_treatment"]
    k1 = checked & keep & f["dkd_diabetes"]
    k2 = k1 & f["dkd_kidney"]
    k3 = k1 & ~f["dkd_kidney"]
    n1 = ~checked & keep & st.eq(STATUS_TREATED)
    kl = _kidney_label(params)
    w = params.window_months
    steps = [
        ("k0", "健診受診者", checked, ""),
        ("k1", "糖尿病（糖尿病型・血糖服薬・糖尿病レセプトのいずれか）", k1, "k0"),
        ("k2", f"腎障害あり（{kl}）", k2, "k1"),
        ("k2t", "治療中（B：かかりつけ医と連携した保健指導）", k2 & st.eq(STATUS_TREATED), "k2"),
        ("k2u", "未治療（A：受診勧奨）", k2 & st.eq(STATUS_UNTREATED), "k2"),
        ("k2i", "治療中断（A：受診勧奨）", k2 & st.eq(STATUS_INTERRUPTED), "k2"),
        ("k3", "腎障害なし", k3, "k1"),
        ("k3t", "治療中", k3 & st.eq(STATUS_TREATED), "k3"),
        ("k3u", "未治療（C：受診勧奨）", k3 & st.eq(STATUS_UNTREATED), "k3"),
        ("k3i", "治療中断（C：受診勧奨）", k3 & st.eq(STATUS_INTERRUPTED), "k3"),
        ("n1", f"糖尿病治療中・健診未受診（直近{w}か月に糖尿病レセプト）", n1, ""),
        ("n1k", "うち腎疾患レセプトあり（D：保健指導）", n1 & f["dkd_kidney"], "n1"),
        ("n2", f"糖尿病治療中断・健診未受診（過去{params.lookback_months}か月に糖尿病レセプト、"
               f"直近{w}か月なし）（E：受診勧奨）", ~checked & keep & st.eq(STATUS_INTERRUPTED), ""),
    ]
    if params.exclude_dialysis:
        steps.append(("x1", "人工透析中（対象外）", b["dkd_dialysis"], ""))
    return pd.DataFrame({
        "step_id": pd.Series([s[0] for s in steps], dtype="str"),
        "step_label": pd.Series([s[1] for s in steps], dtype="str"),
        "count": np.array([int(np.asarray(s[2], dtype=bool).sum()) for s in steps], dtype="int64"),
        "parent_id": pd.Series([s[3] for s in steps], dtype="str"),
    })


# ---------------------------------------------------------------------------------------------
# 5. 重複・多剤


def polypharmacy_flags(claims: pd.DataFrame, fy: int, drugs_threshold: int = 15,
                       duplicate_months: int = 3) -> pd.DataFrame:
    """重複・多剤 per person with claims in `fy` (docs/rules.md §10).

    - `polypharmacy`: n_drugs ≥ `drugs_threshold` in at least one month of the fy.
    - `duplicate`: n_institutions ≥ 2 in `duplicate_months` calendar-consecutive months, the run
      ending in the fy (it may start up to `duplicate_months − 1` months before April).
      PROXY: docs/rules.md §10 asks for the same drug class from ≥ 2 institutions; the monthly claims
      summary has no drug class, so visits to several institutions stand in for it and over-count.
    Columns: `person_id, polypharmacy, duplicate, max_drugs` (Int64),
    `max_multi_institution_run` (longest run of months with ≥ 2 institutions, int64).
    """
    if int(duplicate_months) < 1:
        raise ParameterError(f"重複の連続月数は1以上で指定してください（指定値: {duplicate_months}）")
    cl = _prepare_claims(claims)
    start_mi = month_index(fy_start_ym(fy))
    end_mi = month_index(fy_end_ym(fy))
    mi, pcode = cl.col("mi"), cl.col("pcode")
    in_fy = (mi >= start_mi) & (mi <= end_mi)
    present = _any_of(cl, pcode[in_fy])
    max_drugs = _max_of(cl, pcode[in_fy], cl.col("n_drugs")[in_fy])

    # months with >= 2 institutions, one row per person-month, runs of consecutive months
    rows = (mi >= start_mi - (duplicate_months - 1)) & (mi <= end_mi)
    w = pd.DataFrame({"pcode": pcode[rows], "mi": mi[rows], "n_institutions": cl.col("n_institutions")[rows]})
    multi = w.groupby(["pcode", "mi"])["n_institutions"].max() >= 2
    m = multi[multi].reset_index()[["pcode", "mi"]].sort_values(["pcode", "mi"])
    longest = np.zeros(cl.n, dtype="int64")
    if len(m):
        new_run = m["pcode"].ne(m["pcode"].shift()) | m["mi"].diff().ne(1)
        run_len = m.groupby(new_run.cumsum())["mi"].transform("size")
        per_person = run_len.groupby(m["pcode"]).max()
        longest[per_person.index.to_numpy()] = per_person.to_numpy()
    md = max_drugs[present]
    run = longest[present]
    return pd.DataFrame({
        "person_id": pd.Series(cl.persons[present], dtype="str"),
        "polypharmacy": md >= drugs_threshold,
        "duplicate": run >= duplicate_months,
        "max_drugs": pd.array(np.round(md), dtype="Int64"),
        "max_multi_institution_run": run,
    })

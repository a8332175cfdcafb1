"""Months of claims history and the look-back window of claims-based flags (docs/hotei.md §7).

How much claims history the input holds per fiscal year, and the one rule that decides the
look-back a figure uses (`allowed_lookback`). It sits with the input readers because
`hsutils.inputs.io`'s data check reports it; `hsutils.rules.programs` (the flags) and `hsutils.analysis.pipeline`
(the cache) use it from here. Also the fiscal-year month helpers every claims rule shares.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: 治療中断 defaults (docs/rules.md §5.4, §6.1-7): claims in the look-back, none in the last window.
DEFAULT_LOOKBACK_MONTHS = 36
DEFAULT_WINDOW_MONTHS = 6
#: A flag that needs claims before the fiscal year, in a year whose claims start too late
#: (docs/hotei.md §7.4): the words every table, chart and footer shows instead of a number.
UNDETERMINABLE = "判定不能"
UNDETERMINABLE_REASON = "前年度のレセプトなし"
#: 新規人工透析 (docs/hotei.md §7.4): months without dialysis before the first dialysis month of the year; a
#: year with fewer months of claims before its April is 判定不能 (the rule: `hsutils.rules.programs`)
NEW_DIALYSIS_FREE_MONTHS = 12


def month_index(ym) -> np.ndarray | int:
    """Months since year 0 for YYYYMM values (scalar or array): 202503 -> 2025*12 + 2."""
    a = np.asarray(ym, dtype="int64")
    out = (a // 100) * 12 + (a % 100) - 1
    return int(out) if out.ndim == 0 else out


def fiscal_year_of_month(ym) -> np.ndarray:
    """Fiscal year (年度, April to March; docs/rules.md 読み方) of YYYYMM values: 202403 -> 2023,
    202404 -> 2024. (ym - 4) // 100, the year of the month three months earlier: one integer division
    instead of a remainder, two divisions and a choice (issue 18), and the same value for every integer."""
    return (np.asarray(ym, dtype=np.int64) - 4) // 100


def fy_start_ym(fy: int) -> int:
    """First month (April) of fiscal year `fy` as YYYYMM."""
    return int(fy) * 100 + 4


def fy_end_ym(fy: int) -> int:
    """Last month (March of fy + 1) of fiscal year `fy` as YYYYMM."""
    return (int(fy) + 1) * 100 + 3


# ---------------------------------------------------------------------------------------------
# claims history available (look-back completeness, docs/hotei.md §7)

def claims_history(claims: pd.DataFrame | None, fiscal_years: Iterable[int]) -> pd.DataFrame:
    """Months of claims available per fiscal year (docs/hotei.md §7.1): `fy`, `first_ym` (first
    month in the claims), `months_to_fy_end` (first month … March of fy + 1, inclusive; 0 when
    the claims start after the year) and `months_before_fy` (history before April of fy)."""
    fys = sorted(int(f) for f in fiscal_years)
    if claims is not None and not isinstance(claims, pd.DataFrame):  # programs' prepared claims
        claims = claims.frame
    if claims is None or len(claims) == 0 or "ym" not in claims:
        return pd.DataFrame({"fy": fys, "first_ym": pd.array([pd.NA] * len(fys), dtype="Int64"),
                             "months_to_fy_end": 0, "months_before_fy": 0})
    # the claims of one municipality's partition carry the first month of the whole data
    # (hsutils.analysis.pipeline): the look-back is the data's, not the partition's (docs/design.md §8.2)
    first = claims.attrs.get("first_ym")
    first = int(pd.to_numeric(claims["ym"]).min()) if first is None else int(first)
    return history_from_first_ym(first, fys)


def history_from_first_ym(first_ym: int | None, fiscal_years: Iterable[int]) -> pd.DataFrame:
    """`claims_history` from the first month of the claims alone (what the cache's meta.json
    records, `hsutils.analysis.pipeline`): the months follow from it (docs/hotei.md §7.1)."""
    fys = sorted(int(f) for f in fiscal_years)
    if first_ym is None or pd.isna(first_ym):
        return claims_history(None, fys)
    first = int(first_ym)
    to_end = np.array([month_index(fy_end_ym(f)) - month_index(first) + 1 for f in fys], dtype=np.int64)
    to_end = np.clip(to_end, 0, None)
    return pd.DataFrame({"fy": fys, "first_ym": pd.array([first] * len(fys), dtype="Int64"),
                         "months_to_fy_end": to_end, "months_before_fy": np.clip(to_end - 12, 0, None)})


def allowed_lookback(claims: pd.DataFrame | None, fiscal_years: Iterable[int], requested: int,
                     window: int = 1) -> int:
    """The look-back of one figure (docs/hotei.md §7.2): the requested months, shortened to the
    history the data hold for the *earliest* of `fiscal_years`, the years the figure shows
    together, so that every year is judged with the same window (a trend then shows the
    population, not the length of the data). A single-year extraction passes its one year and
    keeps the full window that year allows. Never shorter than `window` (the rule needs at
    least that)."""
    h = claims_history(claims, fiscal_years)
    if h.empty or int(h["months_to_fy_end"].min()) <= 0:
        return int(requested)
    return int(max(min(int(requested), int(h["months_to_fy_end"].min())), int(window)))


def lookback_note(requested: int, used: int, history: pd.DataFrame | None = None) -> str:
    """Footer text of a figure of claims-based flags (docs/hotei.md §7.2); `history` is the
    `claims_history` of the years the figure shows (one row: a single-year figure)."""
    start = ""
    single = history is not None and len(history) == 1
    if history is not None and len(history) and pd.notna(history["first_ym"].iloc[0]):
        ym = int(history["first_ym"].iloc[0])
        start = f"レセプトは{ym // 100}年{ym % 100}月から。"
    if single:
        short = f"（既定 {requested}か月。この年度までのレセプトの長さによる）" if int(used) < int(requested) else ""
        return f"{start}レセプトのさかのぼり期間 {used}か月{short}"
    if int(used) < int(requested):
        return (f"{start}レセプトのさかのぼり期間は、最初の年度にそろえて全年度 {used}か月"
                f"（既定 {requested}か月）")
    return f"{start}レセプトのさかのぼり期間 {used}か月（全年度同じ）"

"""Small-cell suppression and checks for person-level identifiers (DESIGN §6, DOMAIN §9).

Suppression happens at the presentation step: indicator tables keep the true counts; the
committee outputs (charts, HTML reports, Excel tables) pass through this module first.

Rules (DOMAIN §9, confidence M/P):
* a count from 1 to threshold − 1 (default threshold 10, i.e. 1–9) is suppressed, and so is every
  figure derived from it (rates, ratios, confidence limits); 0 is shown;
* the suppression mark is "‐" (U+2010 HYPHEN), the mark used by the NDBオープンデータ tables;
* secondary suppression: when a suppressed cell could be recovered by subtraction from a row or
  column total, the next-smallest non-zero cell is suppressed too (as NDB does);
* committee outputs never contain a person_id (DESIGN §6).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ParameterError

__all__ = [
    "DEFAULT_THRESHOLD", "SUPPRESSION_MARK", "SUPPRESSED_COLUMN",
    "is_small", "suppress_table", "mask_small", "secondary_suppress", "apply_suppression",
    "assert_no_small_counts", "assert_no_person_ids",
]

#: Counts below this (and above 0) are suppressed (DOMAIN §9; configurable).
DEFAULT_THRESHOLD = 10
#: Mark shown in place of a suppressed figure: "‐" (U+2010), as in the NDBオープンデータ.
SUPPRESSION_MARK = "\u2010"
#: Boolean column added by `suppress_table` (True where anything in the row was suppressed).
SUPPRESSED_COLUMN = "suppressed"


def _check_threshold(threshold) -> int:
    if isinstance(threshold, bool) or not float(threshold).is_integer() or threshold < 1:
        raise ParameterError(f"秘匿の閾値 {threshold!r} は 1 以上の整数で指定してください（既定は 10）。")
    return int(threshold)


def _numeric(values) -> pd.Series | np.ndarray:
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").astype(float)
    return pd.to_numeric(pd.Series(np.atleast_1d(values).ravel()), errors="coerce").to_numpy(dtype=float).reshape(np.shape(values))


def is_small(count, threshold=DEFAULT_THRESHOLD):
    """True for counts that must be suppressed: 0 < count < threshold (1–9 by default; DOMAIN §9).

    0 is shown (False); missing or non-numeric values give False. Accepts a scalar, array,
    Series or DataFrame and returns the same shape (bool).
    """
    t = _check_threshold(threshold)
    if isinstance(count, pd.DataFrame):
        c = count.apply(pd.to_numeric, errors="coerce").astype(float)
        return (c > 0) & (c < t)
    c = _numeric(count)
    small = (c > 0) & (c < t)
    if np.ndim(small) == 0:
        return bool(small)
    return small


def _derived_map(count_cols: Sequence[str], derived_cols) -> dict[str, list[str]]:
    """Normalise `derived_cols` to {count column: [columns derived from it]}.

    A mapping is used as given; a plain list means "derived from all count columns"."""
    if derived_cols is None:
        return {c: [] for c in count_cols}
    if isinstance(derived_cols, Mapping):
        unknown = [k for k in derived_cols if k not in count_cols]
        if unknown:
            raise ParameterError(f"derived_cols のキー {unknown} が count_cols にありません。")
        return {c: list(derived_cols.get(c, [])) for c in count_cols}
    derived = [derived_cols] if isinstance(derived_cols, str) else list(derived_cols)
    return {c: derived for c in count_cols}


def _cell_mask(df: pd.DataFrame, count_cols, derived_cols, threshold) -> pd.DataFrame:
    """Boolean frame (df's shape): True where a cell must be hidden."""
    count_cols = [count_cols] if isinstance(count_cols, str) else list(count_cols)
    missing = [c for c in count_cols if c not in df.columns]
    derived = _derived_map(count_cols, derived_cols)
    missing += [c for cols in derived.values() for c in cols if c not in df.columns]
    if missing:
        raise ParameterError(f"秘匿処理の対象列 {sorted(set(missing))} が表にありません。")
    mask = pd.DataFrame(False, index=df.index, columns=df.columns)
    for col in count_cols:  # a handful of columns
        small = is_small(df[col], threshold).to_numpy()
        mask[col] = mask[col].to_numpy() | small
        for d in derived[col]:
            mask[d] = mask[d].to_numpy() | small
    return mask


def apply_suppression(df: pd.DataFrame, mask: pd.DataFrame, mark=SUPPRESSION_MARK) -> pd.DataFrame:
    """Copy of df with the cells where `mask` is True replaced by `mark`; columns that receive
    a mark become object dtype (numbers stay numbers)."""
    out = df.copy()
    for col in mask.columns[mask.to_numpy().any(axis=0)]:
        out[col] = out[col].astype(object).mask(mask[col].to_numpy(), mark)
    return out


def suppress_table(df: pd.DataFrame, count_cols, derived_cols=None, threshold=DEFAULT_THRESHOLD,
                   mark=SUPPRESSION_MARK) -> pd.DataFrame:
    """Table for presentation with small counts suppressed (DESIGN §6, DOMAIN §9).

    count_cols: the count columns (e.g. ["numerator", "denominator"]).
    derived_cols: which other columns are derived from which count, e.g.
        {"numerator": ["value", "lower", "upper"], "denominator": ["value", "lower", "upper"]};
        a plain list means the columns are derived from every count column.
    A count 1 … threshold − 1 and every column derived from it are replaced by `mark`
    ("‐" by default) in that row; those columns become object dtype. 0 stays 0. A boolean column
    `suppressed` (True where anything in the row was hidden) is added; an existing `suppressed`
    column is combined with OR. Returns a copy.
    """
    t = _check_threshold(threshold)
    mask = _cell_mask(df, count_cols, derived_cols, t)
    out = apply_suppression(df, mask, mark)
    row = mask.to_numpy().any(axis=1)
    if SUPPRESSED_COLUMN in df.columns:
        row = row | df[SUPPRESSED_COLUMN].fillna(False).to_numpy(dtype=bool)
    out[SUPPRESSED_COLUMN] = row
    return out


def mask_small(df: pd.DataFrame, count_cols, derived_cols=None, threshold=DEFAULT_THRESHOLD):
    """Numeric variant of `suppress_table` for charts: the same cells are set to NaN instead of a
    mark (columns stay numeric; integer columns become float).

    Returns (masked copy, mask) where mask is a boolean DataFrame of df's shape, True where a
    value was hidden (`mask.any(axis=1)` is the per-row flag, e.g. to annotate a bar "‐").
    """
    t = _check_threshold(threshold)
    mask = _cell_mask(df, count_cols, derived_cols, t)
    out = df.copy()
    for col in mask.columns[mask.to_numpy().any(axis=0)]:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).mask(mask[col].to_numpy())
    return out, mask


def _secondary_pass(values: np.ndarray, hidden: np.ndarray, cats: np.ndarray, total: int | None) -> bool:
    """One pass along axis 1 (rows) of `values`; cats = category positions, total = position of
    the total in that axis (or None). Modifies `hidden`; returns True when it changed it."""
    changed = False
    for i in range(values.shape[0]):  # aggregate table rows: small, a loop is fine
        if total is None or hidden[i, total] or np.isnan(values[i, total]):
            continue  # no visible total: nothing can be recovered by subtraction in this row
        row_hidden = hidden[i, cats]
        if row_hidden.sum() != 1:
            continue
        row_values = values[i, cats]
        candidates = ~row_hidden & (row_values > 0) & ~np.isnan(row_values)
        if candidates.any():
            pick = np.flatnonzero(candidates)[np.argmin(row_values[candidates])]
            hidden[i, cats[pick]] = True
        else:  # the hidden cell equals the total minus zeros: hide the total instead
            hidden[i, total] = True
        changed = True
    return changed


def secondary_suppress(table_wide: pd.DataFrame, total_col=None, threshold=DEFAULT_THRESHOLD,
                       total_row=None) -> pd.DataFrame:
    """Cells to suppress in a wide table of counts (rows × categories), including secondary
    suppression (DOMAIN §9; the NDBオープンデータ practice).

    Primary: every count 1 … threshold − 1 (totals included). Secondary: in a row whose total
    (`total_col`) is shown, if exactly one category cell is hidden it could be recovered as
    total − the others, so the smallest other non-zero cell of that row is hidden too (if there
    is none, the total is hidden). The same is done for columns when `total_row` (the index label
    of a column-total row) is given; the total row and total column are treated as a row and a
    column themselves (their totals being the grand total). Passes repeat until nothing changes.

    Returns a boolean DataFrame of table_wide's shape, True where a cell must be hidden; use
    `apply_suppression(table_wide, mask)` to show the marks.
    """
    t = _check_threshold(threshold)
    frame = table_wide.apply(pd.to_numeric, errors="coerce").astype(float)
    values = frame.to_numpy()
    hidden = ((values > 0) & (values < t))
    columns = list(frame.columns)
    if total_col is not None and total_col not in columns:
        raise ParameterError(f"合計列 {total_col!r} が表にありません。")
    if total_row is not None and total_row not in frame.index:
        raise ParameterError(f"合計行 {total_row!r} が表にありません。")
    col_total = columns.index(total_col) if total_col is not None else None
    row_total = frame.index.get_loc(total_row) if total_row is not None else None
    row_cats = np.array([j for j in range(len(columns)) if j != col_total])
    col_cats = np.array([i for i in range(len(frame.index)) if i != row_total])
    for _ in range(values.size + 1):  # each pass hides at least one cell, so this terminates
        changed = _secondary_pass(values, hidden, row_cats, col_total)
        if row_total is not None:
            hidden_t = hidden.T.copy()
            changed |= _secondary_pass(values.T, hidden_t, col_cats, row_total)
            hidden[:] = hidden_t.T
        if not changed:
            break
    return pd.DataFrame(hidden, index=table_wide.index, columns=table_wide.columns)


def assert_no_small_counts(df: pd.DataFrame, count_cols, threshold=DEFAULT_THRESHOLD) -> None:
    """Raise AssertionError listing every visible count 1 … threshold − 1 in `count_cols`
    (marks and other text are ignored). For tests of notebooks and reports (DESIGN §6)."""
    t = _check_threshold(threshold)
    count_cols = [count_cols] if isinstance(count_cols, str) else list(count_cols)
    missing = [c for c in count_cols if c not in df.columns]
    if missing:
        raise AssertionError(f"count columns not in table: {missing}")
    problems = []
    for col in count_cols:
        small = is_small(df[col], t)
        for idx, value in df.loc[small.to_numpy(), col].items():
            problems.append(f"row {idx!r}, column {col!r}: {value!r}")
    if problems:
        shown = "; ".join(problems[:20]) + (f"; … ({len(problems)} in all)" if len(problems) > 20 else "")
        raise AssertionError(f"small counts (1–{t - 1}) are visible: {shown}")


_TOKEN = re.compile(r"[0-9A-Za-z_\-]+")


def _text_of(obj) -> str:
    if isinstance(obj, pd.DataFrame):
        return obj.to_csv(index=True)
    if isinstance(obj, pd.Series):
        return obj.to_csv(index=True)
    if isinstance(obj, (str, bytes)):
        return obj.decode("utf-8", errors="replace") if isinstance(obj, bytes) else obj
    if isinstance(obj, Iterable):
        return "\n".join(_text_of(o) for o in obj)
    return str(obj)


def assert_no_person_ids(text_or_df, person_ids) -> None:
    """Raise AssertionError if any person_id appears in a text (e.g. an HTML report), a
    DataFrame/Series (cells, index, header) or an iterable of those (DESIGN §6).

    An ID is found when it appears as a whole token, i.e. delimited by characters other than
    ASCII letters, digits, "_" and "-" (so "P0001" is found in "<td>P0001</td>" but "0001" is not
    found inside "10001"). This is a set look-up, fast for many IDs and long reports; use
    realistic IDs (very short numeric IDs would match ordinary numbers).
    """
    ids = {str(p).strip() for p in (person_ids.tolist() if hasattr(person_ids, "tolist") else person_ids)}
    ids.discard("")
    if not ids:
        return
    text = _text_of(text_or_df)
    found = sorted(ids & set(_TOKEN.findall(text)))
    # IDs containing other characters (e.g. full-width) cannot be tokens: look them up directly.
    found += sorted(p for p in ids if not _TOKEN.fullmatch(p) and p in text)
    if found:
        shown = ", ".join(found[:10]) + (f" … ({len(found)} in all)" if len(found) > 10 else "")
        raise AssertionError(f"person_id found in output: {shown}")

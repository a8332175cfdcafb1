"""Small-cell suppression and checks for person-level identifiers (docs/design.md §6, docs/rules.md §9).

This module owns every suppression rule; other modules call it. Suppression happens at the
presentation step: indicator tables keep the true counts; the committee outputs (charts, HTML
reports, Excel tables) pass through this module first, and charts receive already-masked data
(a NaN count is "hidden upstream").

Rules (docs/rules.md §9, confidence M/P):
* primary: a count from 1 to threshold − 1 (default threshold 10, i.e. 1–9) is suppressed, and so
  is every figure derived from it (rates, ratios, confidence limits, judgements); 0 is shown;
* the suppression mark is "‐" (U+2010 HYPHEN), the mark used by the NDBオープンデータ tables;
* secondary: wherever published counts add up (a total = the sum of its parts: a row or column
  total, 市全体 = Σ 地区, 県 = Σ 市町村, a flow step = Σ its branches, the same count shown in two
  tables), no hidden count may be recoverable by subtraction. When a shown total has exactly one
  hidden part, or hidden parts that add up to 1 … threshold − 1, the smallest other shown
  non-zero part is hidden too (the total when there is none); when a hidden total has only shown
  parts, the smallest of them is hidden. Passes repeat over all relations until nothing changes
  (`suppress_relations`, the one engine; `secondary_suppress` for wide tables and
  `suppress_groups` for long tables are front-ends to it);
* report level: the committee tables and chart data of one report are registered in one
  `SuppressionPlan` (through `hsutils.running.notebook.NotebookContext.save_table`) with the relations
  between them (`Margin`, `ColumnMargin`, `Partition`, `Link`), so the secondary pass runs across
  tables. Cells already shown are fixed, so a later table hides more of its own cells instead;
* check: `audit_recoverable` derives from the published tables everything subtraction can give
  (chained over relations) and reports every recoverable count 1–9 or sum of hidden counts 1–9;
* committee outputs never contain a person_id (docs/design.md §6; `assert_no_person_ids`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hsutils.core.errors import ParameterError

__all__ = [
    "DEFAULT_THRESHOLD", "SUPPRESSION_MARK", "SUPPRESSED_COLUMN",
    "is_small", "is_hidden", "small_rows", "suppress_table", "mask_small", "secondary_suppress", "apply_suppression",
    "suppress_relations", "suppress_groups", "SuppressionPlan", "Margin", "ColumnMargin", "Partition", "Link",
    "tree_relations", "audit_recoverable", "assert_no_small_counts", "assert_no_person_ids",
]

#: Counts below this (and above 0) are suppressed (docs/rules.md §9; configurable).
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
    """True for counts that must be suppressed: 0 < count < threshold (1–9 by default; docs/rules.md §9).

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


def is_hidden(count, threshold=DEFAULT_THRESHOLD):
    """True for counts that may not be shown: 1 … threshold − 1 (`is_small`) or missing (NaN,
    i.e. hidden upstream by a suppression plan). Scalar in, bool out; array/Series in, array out."""
    c = _numeric(count)
    hidden = np.asarray(is_small(c, threshold), dtype=bool) | np.isnan(np.asarray(c, dtype=float))
    return bool(hidden) if np.ndim(hidden) == 0 else hidden


def small_rows(df: pd.DataFrame, count_cols, threshold=DEFAULT_THRESHOLD) -> np.ndarray:
    """Rows in which any of `count_cols` is 1 … threshold − 1: every figure of such a row derives
    from a small count (a rate from its numerator and denominator) and may not be shown."""
    cols = [count_cols] if isinstance(count_cols, str) else list(count_cols)
    return np.asarray(is_small(df[cols], threshold), dtype=bool).any(axis=1)


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
    """Table for presentation with small counts suppressed (docs/design.md §6, docs/rules.md §9).

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


def secondary_suppress(table_wide: pd.DataFrame, total_col=None, threshold=DEFAULT_THRESHOLD,
                       total_row=None) -> pd.DataFrame:
    """Cells to suppress in a wide table of counts (rows × categories), including secondary
    suppression (docs/rules.md §9; the NDBオープンデータ practice).

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
    columns = list(frame.columns)
    if total_col is not None and total_col not in columns:
        raise ParameterError(f"合計列 {total_col!r} が表にありません。")
    if total_row is not None and total_row not in frame.index:
        raise ParameterError(f"合計行 {total_row!r} が表にありません。")
    col_total = columns.index(total_col) if total_col is not None else None
    row_total = frame.index.get_loc(total_row) if total_row is not None else None
    n_rows, n_cols = values.shape
    cell = np.arange(values.size).reshape(values.shape)
    relations = []
    if col_total is not None:
        row_cats = np.array([j for j in range(n_cols) if j != col_total], dtype=np.int64)
        relations += [(cell[i, col_total], cell[i, row_cats]) for i in range(n_rows)]
    if row_total is not None:
        col_cats = np.array([i for i in range(n_rows) if i != row_total], dtype=np.int64)
        relations += [(cell[row_total, j], cell[col_cats, j]) for j in range(n_cols)]
    hidden = suppress_relations(values.ravel(), relations, t).reshape(values.shape)
    return pd.DataFrame(hidden, index=table_wide.index, columns=table_wide.columns)


# ---------------------------------------------------------------------------------------------
# Secondary suppression: one engine for every additive relation (docs/rules.md §9)
# ---------------------------------------------------------------------------------------------
def _as_relations(relations) -> list[tuple[int, np.ndarray]]:
    return [(int(t), np.asarray(p, dtype=np.int64)) for t, p in relations]


def _hidden_sum_small(values: np.ndarray, hidden_parts: np.ndarray, t: int) -> bool:
    """True when the hidden parts of a relation with a shown total add up to 1 … t − 1 (their
    sum = total − the shown parts would reveal a small count). Unknown (NaN) values: not known
    to be small."""
    v = values[hidden_parts]
    if np.isnan(v).any():
        return False
    s = v.sum()
    return 0 < s < t


def suppress_relations(values, relations, threshold=DEFAULT_THRESHOLD, *, hidden=None, fixed=None) -> np.ndarray:
    """Cells to hide among `values` (a flat array of counts) bound by additive `relations`
    (each a pair ``(total position, part positions)``: values[total] = sum of values[parts]).

    Primary: every count 1 … threshold − 1 and every NaN (already hidden upstream), plus `hidden`.
    Secondary, repeated over all relations until nothing changes (docs/rules.md §9; the NDB practice):
    * total shown and exactly one part hidden, or the hidden parts add up to 1 … threshold − 1:
      the smallest other shown non-zero part is hidden too (else the total);
    * total hidden and every part shown (the total is their sum): the smallest shown non-zero
      part is hidden.
    `fixed` marks cells already published (they can no longer be hidden: the next candidate is
    taken, and if there is none the relation stays open — `audit_recoverable` reports it).
    Returns the boolean array of hidden cells.
    """
    t = _check_threshold(threshold)
    v = np.asarray(values, dtype=float).ravel()
    out = ((v > 0) & (v < t)) | np.isnan(v)
    if hidden is not None:
        out |= np.asarray(hidden, dtype=bool).ravel()
    frozen = np.zeros(v.size, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool).ravel()
    rels = _as_relations(relations)
    for _ in range(v.size + 1):  # each change hides one more cell, so this ends
        changed = False
        for total, parts in rels:  # aggregate cells only (tables of areas × indicators)
            if parts.size == 0:
                continue
            hp = parts[out[parts]]
            if not out[total]:
                if hp.size == 0 or (hp.size > 1 and not _hidden_sum_small(v, hp, t)):
                    continue
            elif hp.size > 0:
                continue
            candidates = parts[~out[parts] & ~frozen[parts] & (v[parts] > 0)]
            if candidates.size:
                out[candidates[np.argmin(v[candidates])]] = True
            elif not out[total] and not frozen[total]:
                out[total] = True
            else:
                continue  # nothing left that may be hidden: reported by the audit
            changed = True
        if not changed:
            break
    return out


def tree_relations(ids: Sequence, parents: Sequence) -> list[tuple[int, np.ndarray]]:
    """Additive relations of a flow (tree of steps): every step that splits into two or more
    branches is taken to be partitioned by them (position of the step, positions of the
    branches). A single follow-on step is a filter, not a partition: no relation."""
    position = {node: k for k, node in enumerate(ids)}
    kids: dict[int, list[int]] = {}
    for node, parent in zip(ids, parents):
        if parent is not None and parent in position:
            kids.setdefault(position[parent], []).append(position[node])
    return [(p, np.array(k, dtype=np.int64)) for p, k in kids.items() if len(k) >= 2]


def _recoverable(published: np.ndarray, relations, threshold: int) -> list[tuple[str, int, float]]:
    """What a reader can derive from the published values (NaN = hidden) through the
    relations: repeatedly, a relation with one unknown member gives it; a relation with a known
    total gives the sum of its unknown parts. Returns (kind, position, value) for every derived
    hidden count 1 … threshold − 1 ("cell") and every derived sum of hidden parts 1 … threshold − 1
    ("sum", position = the total)."""
    known = published.astype(float).copy()
    rels = _as_relations(relations)
    found: list[tuple[str, int, float]] = []
    seen_sums: set[int] = set()
    for _ in range(known.size + 1):
        changed = False
        for total, parts in rels:
            unknown_parts = parts[np.isnan(known[parts])]
            if np.isnan(known[total]):
                if unknown_parts.size == 0:
                    known[total] = known[parts].sum()
                    changed = True
                    if 0 < known[total] < threshold:
                        found.append(("cell", total, known[total]))
                continue
            rest = known[total] - np.nansum(known[parts])
            if unknown_parts.size == 1:
                known[unknown_parts[0]] = rest
                changed = True
                if 0 < rest < threshold:
                    found.append(("cell", int(unknown_parts[0]), rest))
            elif unknown_parts.size > 1 and 0 < rest < threshold and total not in seen_sums:
                seen_sums.add(total)
                found.append(("sum", total, rest))
        if not changed:
            break
    return found


def suppress_groups(df: pd.DataFrame, count_col: str, group_cols=(), *, total_rows=None,
                    threshold=DEFAULT_THRESHOLD) -> np.ndarray:
    """Hidden rows of `count_col` in a long table whose rows add up per group (docs/rules.md §9).

    `group_cols`: the rows with the same values make up one total (e.g. indicator × fy: the
    districts of a municipality). `total_rows`: boolean row mask of the rows holding each
    group's total; without it the group's sum is taken as published elsewhere in the report
    (e.g. the municipal figure) and acts as a shown total. Primary and secondary suppression as
    in `suppress_relations`. Returns a boolean array (one per row).
    """
    values = pd.to_numeric(df[count_col], errors="coerce").to_numpy(dtype=float)
    keys = (df[list(group_cols)].astype(str).agg("|".join, axis=1) if len(group_cols)
            else pd.Series("", index=df.index))
    codes, uniques = pd.factorize(keys.to_numpy())
    is_total = np.zeros(len(df), dtype=bool) if total_rows is None else np.asarray(total_rows, dtype=bool)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    relations, extra = [], []
    for g in range(len(uniques)):  # one relation per group (aggregate rows)
        rows = order[bounds[g]: bounds[g + 1]]
        parts = rows[~is_total[rows]]
        totals = rows[is_total[rows]]
        if totals.size:
            relations.append((int(totals[0]), parts))
        else:  # the group's total is published elsewhere: a shown virtual cell
            extra.append(np.nansum(values[parts]))
            relations.append((len(df) + len(extra) - 1, parts))
    all_values = np.concatenate([values, np.array(extra, dtype=float)])
    return suppress_relations(all_values, relations, threshold)[: len(df)]


# ---------------------------------------------------------------------------------------------
# Report-level suppression plan (docs/design.md §6, docs/rules.md §9)
# ---------------------------------------------------------------------------------------------
def _select(df: pd.DataFrame, where) -> np.ndarray:
    """Row positions selected by `where`: None = all rows, a dict {column: value or list of
    values} (all must match), or a boolean array/Series."""
    if where is None:
        return np.ones(len(df), dtype=bool)
    if isinstance(where, Mapping):
        sel = np.ones(len(df), dtype=bool)
        for col, val in where.items():
            if col not in df.columns:
                raise ParameterError(f"秘匿の関係の条件列 {col!r} が表にありません。")
            vals = val if isinstance(val, (list, tuple, set)) else [val]
            sel &= df[col].astype(str).isin([str(x) for x in vals]).to_numpy()
        return sel
    return np.asarray(where, dtype=bool)


@dataclass(frozen=True)
class Margin:
    """Within one table: for every combination of `by`, the row whose `part_col` is `total` is
    the sum of the other rows (e.g. 市全体 = Σ 地区). `cols`: the count columns concerned
    (default: every count column of the table)."""
    part_col: str
    total: object
    by: tuple = ()
    cols: tuple | None = None


@dataclass(frozen=True)
class ColumnMargin:
    """Within one table: in every row, `total_col` is the sum of `part_cols` (e.g. 計 = 男 + 女)."""
    total_col: str
    part_cols: tuple


@dataclass(frozen=True)
class Partition:
    """Within one table, rows named by `key_col`: each (total key, part keys) pair is an additive
    relation in `col` (e.g. a flow chart: a step = the sum of its branches)."""
    col: str
    key_col: str
    groups: tuple


@dataclass(frozen=True)
class Link:
    """Across tables: the rows of this table selected by `rows` add up, per combination of `on`,
    to the row of the already registered `table` selected by `other_rows` with the same `on`
    values (column `col` here, `other_col` there, default the same). `on` may map this table's
    columns to the other's ({"area_code": "muni_code"}); `values` translates this table's key
    values where the two tables label the same thing differently ({"年齢階級": {"60–64歳": "60-64"}}).
    `col` may be a tuple of columns here whose cells add up together to the other table's cell
    (then `other_col` is required). Set `reverse=True` when this table holds the totals and the
    other the parts."""
    table: str
    col: str | tuple
    on: tuple | Mapping = ()
    rows: object = None
    other_rows: object = None
    other_col: str | None = None
    reverse: bool = False
    values: Mapping | None = None


@dataclass
class _Registered:
    name: str
    frame: pd.DataFrame
    count_cols: list[str]
    derived: dict[str, list[str]]
    offset: int


class SuppressionPlan:
    """One consistent set of hidden cells for all committee tables and chart data of a report.

    Register each table with its count columns, the columns derived from them and its additive
    relations (`Margin`, `ColumnMargin`, `Partition`, `Link` to a table registered before);
    `solve()` runs primary suppression and the iterative secondary pass of
    `suppress_relations` over every relation of every table, so that no hidden count (1–9 by
    default) can be recovered by subtraction from any published total in any table of the
    report. Cells of tables already published (`publish`) are fixed: a notebook shows its
    tables one after the other, and a later table can only hide more of its own cells.
    `shown(name)` gives the table with marks; `masked(name)` the numeric version for charts
    (NaN where hidden); `audit()` checks the result with `audit_recoverable`.
    """

    def __init__(self, threshold=DEFAULT_THRESHOLD):
        self.threshold = _check_threshold(threshold)
        self.tables: dict[str, _Registered] = {}
        self.relations: list[tuple[int, np.ndarray]] = []
        self._values = np.zeros(0)
        self._hidden = np.zeros(0, dtype=bool)
        self._fixed = np.zeros(0, dtype=bool)

    # -- registration ----------------------------------------------------------------------
    def add_table(self, name: str, df: pd.DataFrame, count_cols, derived_cols=None, relations=()) -> None:
        """Register (or replace, when not yet published) a table and its relations."""
        if name in self.tables:
            reg = self.tables[name]
            if self._fixed[reg.offset: reg.offset + len(reg.frame) * len(reg.count_cols)].any():
                raise ParameterError(f"表 {name!r} はすでに公表済みのため登録し直せません。")
            self._drop(name)
        count_cols = [count_cols] if isinstance(count_cols, str) else list(count_cols or [])
        missing = [c for c in count_cols if c not in df.columns]
        derived = _derived_map(count_cols, derived_cols)
        missing += [c for cols in derived.values() for c in cols if c not in df.columns]
        if missing:
            raise ParameterError(f"表 {name!r}: 秘匿処理の対象列 {sorted(set(missing))} が表にありません。")
        frame = df.reset_index(drop=True)
        reg = _Registered(name, frame, count_cols, derived, self._values.size)
        vals = np.concatenate([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
                               for c in count_cols]) if count_cols else np.zeros(0)
        self.tables[name] = reg
        self._values = np.concatenate([self._values, vals])
        self._hidden = np.concatenate([self._hidden, np.zeros(vals.size, dtype=bool)])
        self._fixed = np.concatenate([self._fixed, np.zeros(vals.size, dtype=bool)])
        for rel in relations:
            self._add_relation(reg, rel)

    def _drop(self, name: str) -> None:
        reg = self.tables.pop(name)
        n = len(reg.frame) * len(reg.count_cols)
        lo, hi = reg.offset, reg.offset + n
        keep = np.r_[0:lo, hi:self._values.size]
        self._values, self._hidden, self._fixed = self._values[keep], self._hidden[keep], self._fixed[keep]
        shift = lambda a: np.where(a >= hi, a - n, a)  # noqa: E731
        self.relations = [(int(shift(np.array([t]))[0]), shift(p)) for t, p in self.relations
                          if not (lo <= t < hi or ((p >= lo) & (p < hi)).any())]
        for other in self.tables.values():
            if other.offset >= hi:
                other.offset -= n

    def _cells(self, reg: _Registered, col: str) -> np.ndarray:
        if col not in reg.count_cols:
            raise ParameterError(f"表 {reg.name!r}: 列 {col!r} は人数の列として登録されていません。")
        return reg.offset + reg.count_cols.index(col) * len(reg.frame) + np.arange(len(reg.frame))

    @staticmethod
    def _keys(df: pd.DataFrame, cols) -> pd.Series:
        if not cols or df.empty:  # (agg over no rows gives a frame, not a Series)
            return pd.Series("", index=df.index, dtype=object)
        return df[list(cols)].astype(str).agg("|".join, axis=1)

    def _group_relations(self, total_cells, total_keys, part_cells, part_keys) -> None:
        # positions per key (`.agg(list)` would turn equal-length groups into a 2-D array)
        part_cells = np.asarray(part_cells, dtype=np.int64)
        positions = pd.Series(np.arange(part_cells.size)).groupby(part_keys.to_numpy()).indices
        for key, cell in zip(total_keys.to_numpy(), total_cells):  # one relation per table row
            if key in positions:
                self.relations.append((int(cell), part_cells[positions[key]]))

    def _add_relation(self, reg: _Registered, rel) -> None:
        df = reg.frame
        if isinstance(rel, Margin):
            is_total = df[rel.part_col].astype(str).to_numpy() == str(rel.total)
            keys = self._keys(df, rel.by)
            for col in (rel.cols or reg.count_cols):
                cells = self._cells(reg, col)
                self._group_relations(cells[is_total], keys[is_total], cells[~is_total], keys[~is_total])
        elif isinstance(rel, ColumnMargin):
            total = self._cells(reg, rel.total_col)
            parts = np.stack([self._cells(reg, c) for c in rel.part_cols], axis=1)
            self.relations += [(int(t), p) for t, p in zip(total, parts)]
        elif isinstance(rel, Partition):
            cells = self._cells(reg, rel.col)
            pos = {str(k): i for i, k in enumerate(df[rel.key_col].astype(str))}
            for total, parts in rel.groups:
                if str(total) in pos:
                    idx = [pos[str(p)] for p in parts if str(p) in pos]
                    self.relations.append((int(cells[pos[str(total)]]), cells[idx]))
        elif isinstance(rel, Link):
            if rel.table not in self.tables:
                raise ParameterError(f"表 {reg.name!r}: 関係の相手の表 {rel.table!r} がまだ登録されていません。")
            other = self.tables[rel.table]
            on = dict(rel.on) if isinstance(rel.on, Mapping) else {c: c for c in rel.on}
            here_sel, there_sel = _select(df, rel.rows), _select(other.frame, rel.other_rows)
            # `col` may name several columns here whose cells add up together (e.g. 該当 + 予備群)
            cols = list(rel.col) if isinstance(rel.col, (tuple, list)) else [rel.col]
            here_cells = np.concatenate([self._cells(reg, c)[here_sel] for c in cols])
            there_cells = self._cells(other, rel.other_col or rel.col)[there_sel]
            here = df[here_sel]
            if rel.values:
                here = here.assign(**{c: here[c].astype(str).replace({str(k): str(v) for k, v in m.items()})
                                      for c, m in rel.values.items()})
            here_keys = pd.concat([self._keys(here, list(on))] * len(cols), ignore_index=True)
            there_keys = self._keys(other.frame[there_sel], list(on.values()))
            if rel.reverse:
                self._group_relations(here_cells, here_keys, there_cells, there_keys)
            else:
                self._group_relations(there_cells, there_keys, here_cells, here_keys)
        else:
            raise ParameterError(f"秘匿の関係 {rel!r} は Margin / ColumnMargin / Partition / Link で指定してください。")

    # -- solving and results ---------------------------------------------------------------
    def solve(self) -> None:
        """Decide the hidden cells of every registered table (published cells stay as they are)."""
        self._hidden = suppress_relations(self._values, self.relations, self.threshold,
                                          hidden=self._hidden & self._fixed, fixed=self._fixed)

    def publish(self, name: str) -> None:
        """Mark a table as shown: its cells can no longer change."""
        reg = self.tables[name]
        self._fixed[reg.offset: reg.offset + len(reg.frame) * len(reg.count_cols)] = True

    def mask(self, name: str) -> pd.DataFrame:
        """Boolean frame of the table's shape: True where a cell is hidden (counts and derived)."""
        reg = self.tables[name]
        mask = pd.DataFrame(False, index=reg.frame.index, columns=reg.frame.columns)
        for col in reg.count_cols:
            cells = self._cells(reg, col)
            # a missing count (NaN) or a mark already in the table stays as it is
            h = self._hidden[cells] & ~np.isnan(self._values[cells])
            mask[col] = mask[col].to_numpy() | h
            for d in reg.derived[col]:
                mask[d] = mask[d].to_numpy() | h
        return mask

    def shown(self, name: str, mark=SUPPRESSION_MARK) -> pd.DataFrame:
        """The table with hidden cells replaced by `mark` and the `suppressed` row flag (as
        `suppress_table`)."""
        reg = self.tables[name]
        mask = self.mask(name)
        out = apply_suppression(reg.frame, mask, mark)
        row = mask.to_numpy().any(axis=1)
        if SUPPRESSED_COLUMN in reg.frame.columns:
            row = row | reg.frame[SUPPRESSED_COLUMN].fillna(False).to_numpy(dtype=bool)
        out[SUPPRESSED_COLUMN] = row
        return out

    def masked(self, name: str) -> pd.DataFrame:
        """Version for charts: hidden counts and numbers NaN (charts treat NaN as suppressed),
        hidden texts None; other cells as registered."""
        reg = self.tables[name]
        out = reg.frame.copy()
        mask = self.mask(name)
        for col in mask.columns[mask.to_numpy().any(axis=0)]:
            hide = mask[col].to_numpy()
            if col in reg.count_cols or pd.api.types.is_numeric_dtype(out[col]):
                out[col] = pd.to_numeric(out[col], errors="coerce").astype(float).mask(hide)
            else:  # a derived text (judgement, funnel position): None where hidden
                out[col] = out[col].astype(object).mask(hide, None)
        return out

    def cell_name(self, position: int) -> str:
        """Japanese description of a cell: 表, 行, 列."""
        name, row, col = self._cell_ref(position)
        return f"表 {name} の {row + 1} 行目・列 {col}"

    def _cell_ref(self, position: int) -> tuple[str, int, str]:
        for reg in self.tables.values():
            n = len(reg.frame) * len(reg.count_cols)
            if reg.offset <= position < reg.offset + n:
                col, row = divmod(position - reg.offset, len(reg.frame))
                return reg.name, row, reg.count_cols[col]
        raise KeyError(position)

    def relation_cells(self) -> list[tuple[tuple, list[tuple]]]:
        """The registered relations as (total cell, [part cells]), a cell being (table name,
        row position, column): the form `audit_recoverable` takes."""
        return [(self._cell_ref(t), [self._cell_ref(p) for p in parts]) for t, parts in self.relations]

    def audit(self) -> list[str]:
        """`audit_recoverable` of the shown tables under the registered relations."""
        published = np.where(self._hidden, np.nan, self._values)
        return [_finding_text(kind, self.cell_name(pos), value)
                for kind, pos, value in _recoverable(published, self.relations, self.threshold)]


def _finding_text(kind: str, cell: str, value: float) -> str:
    if kind == "cell":
        return f"{cell} の値 {value:g} が差し引きで分かります"
    return f"{cell} から、秘匿したセルの合計 {value:g} が差し引きで分かります"


def audit_recoverable(tables: Mapping[str, pd.DataFrame], relations, threshold=DEFAULT_THRESHOLD) -> list[str]:
    """Check published tables (marks or NaN where hidden): for every additive relation across
    them, is a count 1 … threshold − 1 recoverable by subtraction? Returns one Japanese finding
    per recoverable count (empty list = nothing recoverable).

    `relations`: pairs (total cell, [part cells]), a cell being (table name, row position,
    column). Derivations are chained: a hidden cell recovered from one relation counts as known
    in the others. Both a single hidden count and a sum of hidden counts of 1 … threshold − 1
    are findings (docs/rules.md §9).
    """
    t = _check_threshold(threshold)
    index: dict[tuple, int] = {}
    values: list[float] = []

    def pos(cell) -> int:
        name, row, col = cell
        key = (name, int(row), col)
        if key not in index:
            v = pd.to_numeric(pd.Series([tables[name][col].iloc[int(row)]]), errors="coerce").iloc[0]
            index[key] = len(values)
            values.append(float(v))
        return index[key]

    rels = [(pos(total), [pos(p) for p in parts]) for total, parts in relations]
    names = {v: k for k, v in index.items()}
    return [_finding_text(kind, f"表 {names[p][0]} の {names[p][1] + 1} 行目・列 {names[p][2]}", value)
            for kind, p, value in _recoverable(np.array(values, dtype=float), rels, t)]


def assert_no_small_counts(df: pd.DataFrame, count_cols, threshold=DEFAULT_THRESHOLD) -> None:
    """Raise AssertionError listing every visible count 1 … threshold − 1 in `count_cols`
    (marks and other text are ignored). For tests of notebooks and reports (docs/design.md §6)."""
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
    DataFrame/Series (cells, index, header) or an iterable of those (docs/design.md §6).

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

"""法定報告 特定健診・特定保健指導 実施結果 (集計情報) from the person-year frame.

The 法定報告 table and form (docs/hotei.md). The definitions (対象者, 受診者, 評価対象者, メタボ
該当者・予備群, 服薬中の者 by drug, the three 減少率 blocks with their sub-counts, 特定保健指導
対象者・利用者・終了者 by level) live in `hsutils.analysis.hotei_items` (analysis layer) and are re-exported
here. Every figure of the same name elsewhere in the suite (the evaluation sheet's 減少率 via
`hsutils.analysis.indicators`) uses `reduction_flags` from there.

* `previous_year_status(py)` — last year's 評価対象 status, メタボ判定 and 特定保健指導 completion of
  the same person at the same 保険者 (municipality), aligned with py (pipeline stores it).
* `hotei_table(py, municipalities)` — one row per fiscal year × area (each municipality and the
  prefecture) × sex (男/女/計) × age band (5-year, 計): every count and rate of the form.
* `form_layout(table, area_code, fy)` — the official layout (items as rows, age bands as columns,
  blocks 計 / 男 / 女); `write_hotei(table, stem)` writes a CSV and an A4-landscape xlsx.
* `committee_table(table)` — the same with small counts suppressed (`hsutils.publish.privacy`).

Counts are group-by sums of boolean columns (no loop over persons). The prefecture is the sum of
its municipalities, as the national 法定報告 sums the insurers' reports (docs/hotei.md §2).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.analysis import indicators
from hsutils.publish import privacy, report
from hsutils.analysis.hotei_items import (  # noqa: F401  (the definitions, re-exported: hotei.reduction_flags …)
    COUNT_IDS, GUIDANCE_LEVELS, ITEM_BY_ID, ITEMS, RATE_IDS, Item, evaluable, person_flags, previous_year_status,
    reduction_flags, target)
from hsutils.core.schema import KOKUHO_AGE_BANDS

TOTAL = "計"
SEX_LABELS = {1: "男", 2: "女"}
LEVEL_MUNI = "市町村"
LEVEL_PREF = "都道府県"
#: Population of every table built from this module, in the registry's words (docs/rules.md §16).
POPULATION = indicators.POP_HOTEI
KEY_COLUMNS = ["fy", "area_code", "area_name", "level", "sex", "age_band"]




# =============================================================================================
# The table
# =============================================================================================
def _add_rates(t: pd.DataFrame) -> pd.DataFrame:
    for it in ITEMS:
        if it.unit == "%":
            den = t[it.denominator].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                t[it.id] = np.where(den > 0, t[it.numerator].to_numpy(dtype=float) / den * 100, np.nan)
    return t[KEY_COLUMNS + [i.id for i in ITEMS]]


def _totals(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Counts by sex × band plus 計 margins (sums: totals equal the sums of their parts)."""
    parts = [counts]
    for drop in (["age_band"], ["sex"], ["sex", "age_band"]):
        g = counts.groupby([k for k in keys if k not in drop], observed=True)[COUNT_IDS].sum().reset_index()
        for d in drop:
            g[d] = TOTAL
        parts.append(g)
    return pd.concat(parts, ignore_index=True)


def hotei_table(py: pd.DataFrame, municipalities: pd.DataFrame | None = None, *, fiscal_years=None,
                muni_codes=None, prefecture: bool = True) -> pd.DataFrame:
    """The 法定報告 集計情報 per fiscal year × area × sex × age band (docs/hotei.md §3).

    Columns: fy, area_code, area_name, level (市町村 / 都道府県), sex (男 / 女 / 計), age_band
    (40-44 … 70-74, 計), then one column per item of `ITEMS` (counts int64, rates % float, NaN
    when the denominator is 0). Municipalities: all in py, or `muni_codes`; the prefecture row
    set sums every municipality of py (not only the selected ones).
    """
    flags = person_flags(py)
    keep = flags["target"].to_numpy() | flags.to_numpy().any(axis=1)
    if fiscal_years is not None:
        keep &= py["fy"].isin(list(fiscal_years)).to_numpy()
    base = pd.DataFrame({"fy": py["fy"].to_numpy()[keep],
                         "muni_code": py["muni_code"].astype(str).to_numpy()[keep],
                         "sex": py["sex"].map(SEX_LABELS).to_numpy()[keep],
                         "age_band": py["age_band"].astype(str).to_numpy()[keep]})
    base = pd.concat([base, flags[keep].reset_index(drop=True).astype(np.int64)], axis=1)
    keys = ["fy", "muni_code", "sex", "age_band"]
    counts = base.groupby(keys, observed=True)[COUNT_IDS].sum().reset_index()
    full = _complete_grid(counts, keys)
    names = _muni_names(municipalities)
    out = []
    muni = full if muni_codes is None else full[full["muni_code"].isin([str(c) for c in muni_codes])]
    m = _totals(muni, keys).rename(columns={"muni_code": "area_code"})
    m["area_name"], m["level"] = _name_or_code(m["area_code"], names), LEVEL_MUNI
    out.append(m)
    if prefecture and len(full):
        p = full.assign(muni_code=full["muni_code"].str[:2])
        p = p.groupby(keys, observed=True)[COUNT_IDS].sum().reset_index()
        p = _totals(p, keys).rename(columns={"muni_code": "area_code"})
        p["area_name"] = _name_or_code(p["area_code"], _pref_names(municipalities))
        p["level"] = LEVEL_PREF
        out.append(p)
    t = pd.concat(out, ignore_index=True)
    t[COUNT_IDS] = t[COUNT_IDS].astype(np.int64)
    t = _add_rates(t)
    order = {s: k for k, s in enumerate(["男", "女", TOTAL])}
    bands = {b: k for k, b in enumerate(list(KOKUHO_AGE_BANDS) + [TOTAL])}
    t = t.assign(_l=(t["level"] == LEVEL_PREF).astype(int), _s=t["sex"].map(order), _b=t["age_band"].map(bands))
    return t.sort_values(["fy", "_l", "area_code", "_s", "_b"]).drop(columns=["_l", "_s", "_b"]).reset_index(drop=True)


def _complete_grid(counts: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every sex × 40–74 band for each fiscal year × municipality (zeros where nobody), so the
    form always has all columns."""
    if counts.empty:
        return counts
    areas = counts[["fy", "muni_code"]].drop_duplicates()
    grid = pd.MultiIndex.from_product([["男", "女"], list(KOKUHO_AGE_BANDS)], names=["sex", "age_band"]).to_frame(
        index=False)
    grid = areas.merge(grid, how="cross")
    out = grid.merge(counts, on=keys, how="left")
    out[COUNT_IDS] = out[COUNT_IDS].fillna(0).astype(np.int64)
    return out


def _name_or_code(codes: pd.Series, names: dict) -> np.ndarray:
    mapped = codes.map(names).astype(object)
    return np.where(mapped.isna(), codes.astype(object), mapped)


def _muni_names(municipalities) -> dict:
    if municipalities is None or len(municipalities) == 0:
        return {}
    return dict(zip(municipalities["muni_code"].astype(str), municipalities["name"].astype(str)))


def _pref_names(municipalities) -> dict:
    if municipalities is None or "pref_name" not in getattr(municipalities, "columns", []):
        return {}
    m = municipalities.dropna(subset=["pref_name"])
    return dict(zip(m["muni_code"].astype(str).str[:2], m["pref_name"].astype(str)))


# =============================================================================================
# Committee version, layout, files
# =============================================================================================
#: Items that are the sum of two others in every row (特定保健指導 = 積極的支援 + 動機付け支援).
ITEM_SUMS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("hs_target", ("hs_sekkyoku_target", "hs_douki_target")),
    ("hs_started", ("hs_sekkyoku_started", "hs_douki_started")),
    ("hs_completed", ("hs_sekkyoku_completed", "hs_douki_completed")),
)


def committee_relations() -> list:
    """The additive relations of the table (docs/rules.md §9): 計 = 男 + 女 for every age band,
    計 = Σ age bands for every sex (per year and area), and the 特定保健指導 items that are sums of
    積極的支援 and 動機付け支援 (`ITEM_SUMS`)."""
    return ([privacy.Margin("sex", TOTAL, by=("fy", "area_code", "age_band")),
             privacy.Margin("age_band", TOTAL, by=("fy", "area_code", "sex"))]
            + [privacy.ColumnMargin(total, parts) for total, parts in ITEM_SUMS])


def _derived_ids() -> dict[str, list[str]]:
    """Rate items per count item (a rate is hidden with its numerator or denominator)."""
    derived = {c: [] for c in COUNT_IDS}
    for it in ITEMS:
        if it.unit == "%":
            derived[it.numerator].append(it.id)
            derived[it.denominator].append(it.id)
    return derived


def committee_spec(*, japanese: bool = False) -> dict:
    """Keyword arguments for a report's suppression plan (`NotebookContext.save_table` /
    `privacy.SuppressionPlan.add_table`): count columns, the rates derived from them and
    `committee_relations`, with the column names of `japanese_columns` when `japanese`."""
    if not japanese:
        return {"count_cols": list(COUNT_IDS), "derived_cols": _derived_ids(), "relations": committee_relations()}
    ren = japanese_names()
    rels = [privacy.Margin(ren[r.part_col], r.total, by=tuple(ren[c] for c in r.by)) if isinstance(r, privacy.Margin)
            else privacy.ColumnMargin(ren[r.total_col], tuple(ren[c] for c in r.part_cols))
            for r in committee_relations()]
    return {"count_cols": [ren[c] for c in COUNT_IDS],
            "derived_cols": {ren[k]: [ren[d] for d in v] for k, v in _derived_ids().items()}, "relations": rels}


def committee_table(table: pd.DataFrame, threshold: int = privacy.DEFAULT_THRESHOLD) -> pd.DataFrame:
    """The table as a committee may see it (docs/design.md §6, docs/rules.md §9): counts
    1 … threshold−1 and the rates computed from them shown as "‐", and the complementary cells
    that would let a reader recover a hidden count by subtraction through the table's margins
    (`committee_relations`: 計 = 男 + 女, 計 = Σ age bands, 特定保健指導 = 積極的 + 動機付け)
    hidden too. The only place this module calls `hsutils.publish.privacy`."""
    plan = privacy.SuppressionPlan(threshold)
    plan.add_table("hotei", table, **committee_spec())
    plan.solve()
    shown = plan.shown("hotei")
    shown.index = table.index
    return shown


def japanese_names() -> dict[str, str]:
    """Column id → Japanese header (`No.項目名（単位）` for the items)."""
    ren = {"fy": "年度", "area_code": "地域コード", "area_name": "地域", "level": "区分", "sex": "性別",
           "age_band": "年齢階級"}
    ren.update({i.id: f"{i.no}.{i.label}（{i.unit}）" for i in ITEMS})
    return ren


def japanese_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Tidy table with Japanese headers (`No.項目名（単位）`) for the CSV."""
    return table.drop(columns=[c for c in ("suppressed",) if c in table]).rename(columns=japanese_names())


def from_japanese_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The inverse of `japanese_columns` (for the official layout of a table suppressed under
    its Japanese headers)."""
    return table.rename(columns={v: k for k, v in japanese_names().items()})


def form_layout(table: pd.DataFrame, area_code: str, fy: int) -> pd.DataFrame:
    """The official layout for one area and year: rows = items (No, 区分, 項目, 単位) per sex block
    (計, 男, 女), columns = age bands 40-44 … 70-74 and 合計."""
    t = table[(table["area_code"].astype(str) == str(area_code)) & (table["fy"] == fy)]
    blocks = []
    for sex in (TOTAL, "男", "女"):
        s = t[t["sex"] == sex].set_index("age_band").reindex(list(KOKUHO_AGE_BANDS) + [TOTAL])
        body = s[[i.id for i in ITEMS]].T
        body.columns = [f"{b}歳" for b in KOKUHO_AGE_BANDS] + ["合計"]
        head = pd.DataFrame({"性別": "合計" if sex == TOTAL else sex, "No": [i.no for i in ITEMS],
                             "区分": [i.section for i in ITEMS], "項目": [i.label for i in ITEMS],
                             "単位": [i.unit for i in ITEMS]})
        blocks.append(pd.concat([head, body.reset_index(drop=True)], axis=1))
    return pd.concat(blocks, ignore_index=True)


def write_hotei(table: pd.DataFrame, stem, *, title: str = "特定健診・特定保健指導 実施結果（法定報告 集計情報）",
                footer: str = "", csv: bool = True) -> tuple[Path | None, Path]:
    """Write `stem`.csv (tidy, Japanese headers, UTF-8 with BOM for Excel; skipped with csv=False)
    and `stem`.xlsx (one sheet per area × year in the official layout, A4 landscape, fitted to
    one page wide). Both written atomically (`hsutils.publish.report`)."""
    from copy import copy
    from io import BytesIO

    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    stem = Path(stem)
    csv_path, xlsx_path = stem.with_suffix(".csv"), stem.with_suffix(".xlsx")
    if csv:
        report.atomic_write_text(csv_path, japanese_columns(table).to_csv(index=False, lineterminator="\r\n"),
                                 encoding="utf-8-sig")
    else:
        csv_path = None
    wb = Workbook()
    wb.remove(wb.active)
    thin = Side(style="thin", color="999999")
    box = Border(left=thin, right=thin, top=thin, bottom=thin)
    head_fill = PatternFill("solid", fgColor="DDEBF7")
    areas = table[["fy", "area_code", "area_name"]].drop_duplicates()
    styles = {}  # body cell kind → its style, set once per workbook (setting a style per cell is most of the time)
    for fy, code, name in areas.itertuples(index=False):
        form = form_layout(table, code, fy)
        ws = wb.create_sheet(f"{code}_{fy}"[:31])
        ws["A1"] = f"{title}　{name}（{code}）　{fy}年度"
        ws["A1"].font = Font(bold=True, size=12)
        cols = list(form.columns)
        for j, c in enumerate(cols, start=1):
            cell = ws.cell(row=3, column=j, value=c)
            cell.font, cell.fill, cell.border = Font(bold=True), head_fill, box
            cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        for i, row in enumerate(form.itertuples(index=False), start=4):
            unit = row[cols.index("単位")]
            for j, v in enumerate(row, start=1):
                if isinstance(v, float) and np.isnan(v):
                    v = None
                cell = ws.cell(row=i, column=j, value=v)
                kind = ("percent" if unit == "%" else "count") if j > 5 else ("item" if j == 4 else "plain")
                if kind in styles:  # the same style as the first cell of its kind (openpyxl's style array)
                    cell._style = copy(styles[kind])
                    continue
                cell.border = box
                if j > 5:
                    cell.number_format = "0.0" if unit == "%" else "#,##0"
                    cell.alignment = Alignment(horizontal="right")
                elif j == 4:
                    cell.alignment = Alignment(wrap_text=True, vertical="center")
                styles[kind] = copy(cell._style)
        widths = [6, 4, 20, 46, 5] + [9] * (len(cols) - 5)
        for j, w in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(j)].width = w
        last = 4 + len(form)
        ws.cell(row=last + 1, column=1, value=f"対象: {POPULATION}。法定報告対象 = {indicators.HOTEI_POPULATION_RULE}。"
                "定義は docs/hotei.md。" + (footer or ""))
        ws.print_title_rows = "3:3"
        ws.freeze_panes = "F4"
        ws.page_setup.orientation = "landscape"
        ws.page_setup.paperSize = ws.PAPERSIZE_A4
        ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    if not wb.sheetnames:
        wb.create_sheet("データなし")
    buf = BytesIO()
    wb.save(buf)
    report.atomic_write_bytes(xlsx_path, report.reproducible_xlsx(buf.getvalue()))
    return csv_path, xlsx_path

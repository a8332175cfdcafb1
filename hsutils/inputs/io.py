"""Reading, normalising and validating the input tables (docs/design.md §3, docs/internal_api.md).

Every cell is first read as text, then each column is normalised in one vectorised pass:
full-width → half-width (NFKC), 和暦 → western years, 男/女 → 1/2, urine 定性 spellings →
ordinal, text answers → codes, numbers with units/commas → float. Parsing works on the
*distinct* values of a column (``pd.factorize``) and maps back with integer indexing, so a
million-row 健診 file costs one pass per column, never a Python loop over rows.

Validation (docs/rules.md §3.2 plausible ranges, codes of docs/rules.md §1.5, §2.4, §4.3, §6.2):

- a bad or blank value in a required column (person_id, fy, muni_code, ...) drops the ROW
  (scope ``行``);
- a bad or implausible value in an optional measure sets only that VALUE to missing
  (scope ``項目``);
- duplicate keys keep the first row, the others are dropped (``重複``).

Every exclusion is listed with file, Excel row number, Japanese column name, the value as written
and a Japanese reason saying what was expected; ``n_read == n_kept + n_dropped`` always holds.
"""
from __future__ import annotations

import csv
import hashlib
import io as _stdio
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from hsutils.core import codes as _codes
from hsutils.core import files as _files
from hsutils.core import vocab
from hsutils.core.errors import DataError, HsutilsError, ParameterError
from hsutils.core.schema import TABLES, Column, Table

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

EXCLUSION_COLUMNS = ["file", "table", "row", "column", "value", "reason", "scope"]
SUMMARY_COLUMNS = ["table", "file", "read", "kept", "dropped_rows", "excluded_values"]
SCOPE_ROW = "行"
SCOPE_VALUE = "項目"

# Cache key ingredient: changes whenever the schema definition or the loader rules change.
LOADER_VERSION = "2"  # 2: vocabularies of hsutils.core.vocab (喫煙 3, more 尿定性 spellings)
SCHEMA_VERSION = hashlib.sha256(
    (LOADER_VERSION + repr(sorted(TABLES.items()))).encode("utf-8")).hexdigest()[:16]

# Counter of Parquet cache use (tests and benchmarks read it; never reset by the loader).
CACHE_STATS = {"hits": 0, "misses": 0}

# Encodings tried in order, strictly (docs/design.md §2: UTF-8, UTF-8-BOM, cp932).
ENCODINGS = (("utf-8-sig", "UTF-8（BOM付き）"), ("utf-8", "UTF-8"), ("cp932", "Shift_JIS（cp932）"))

# Cells meaning "not measured" (compared after NFKC + strip). Dash-like marks are "missing"
# everywhere except urine, where "-" is the result "negative" (docs/rules.md §4.3).
_MISSING_WORDS = frozenset({
    "", "未実施", "未測定", "未検査", "未受診", "欠損", "NA", "N/A", "n/a", "na", "NaN", "nan",
    "NULL", "null", "None", "#N/A",
})
_DASHES = frozenset({"-", "−", "―", "—", "–", "‐", "ー", "ｰ", "－"})
MISSING_TOKENS = _MISSING_WORDS | _DASHES

# Which tables are needed for any analysis (docs/internal_api.md).
REQUIRED_TABLES = ("enrollment", "kenshin")
# Load order: the municipality master first so that the others are checked against it.
LOAD_ORDER = ("municipalities", "districts", "enrollment", "kenshin", "guidance",
              "claims_monthly", "kaigo", "questionnaire", "diagnoses", "prescriptions", "medical_costs")
FILE_EXTENSIONS = (".csv", ".txt", ".tsv", ".xlsx", ".parquet")

# Accepted file stems per table, besides the canonical name and the schema's Japanese name.
FILE_NAME_ALIASES: dict[str, tuple[str, ...]] = {
    "enrollment": ("対象者", "被保険者", "資格", "加入者"),
    "kenshin": ("特定健診", "健診", "後期健診", "健診結果", "特定健診結果"),
    "guidance": ("特定保健指導", "保健指導"),
    "claims_monthly": ("claims", "レセプト", "レセプト月次", "医療レセプト"),
    "kaigo": ("介護認定", "介護", "要介護認定"),
    "questionnaire": ("後期高齢者の質問票", "質問票"),
    "municipalities": ("市町村マスタ", "市町村", "市町マスタ"),
    "districts": ("地区マスタ", "地区"),
    "diagnoses": ("傷病名一覧",),
    "prescriptions": ("処方一覧",),
    "medical_costs": ("医療費一覧",),
}

# Header spellings seen in exports, in addition to schema name / ja / aliases.
EXTRA_HEADER_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("kenshin", "exam_date"): ("受診日", "健診日", "健診実施日"),
    ("kenshin", "height"): ("身長(cm)",),
    ("kenshin", "weight"): ("体重(kg)",),
    ("kenshin", "waist"): ("腹囲(cm)", "腹囲（実測）"),
    ("kenshin", "sbp"): ("血圧(収縮期)", "収縮期血圧(mmHg)", "最高血圧"),
    ("kenshin", "dbp"): ("血圧(拡張期)", "拡張期血圧(mmHg)", "最低血圧"),
    ("kenshin", "tg"): ("中性脂肪(トリグリセリド)", "トリグリセリド", "TG"),
    ("kenshin", "hdl"): ("HDL-C", "HDL", "HDL-コレステロール"),
    ("kenshin", "ldl"): ("LDL-C", "LDL", "LDL-コレステロール"),
    ("kenshin", "non_hdl"): ("Non-HDL", "non-HDL-C"),
    ("kenshin", "fpg"): ("空腹時血糖値", "血糖(空腹時)"),
    ("kenshin", "casual_glucose"): ("随時血糖値", "血糖(随時)"),
    ("kenshin", "creatinine"): ("クレアチニン", "血清クレアチニン(mg/dl)", "Cr"),
    ("kenshin", "hemoglobin"): ("Hb", "血色素"),
    ("kenshin", "urine_protein"): ("尿たんぱく", "尿蛋白(定性)"),
    ("kenshin", "urine_glucose"): ("尿糖(定性)",),
    ("kenshin", "med_bp"): ("服薬1(血圧)", "血圧を下げる薬"),
    ("kenshin", "med_glucose"): ("服薬2(血糖)", "インスリン注射又は血糖を下げる薬"),
    ("kenshin", "med_lipid"): ("服薬3(脂質)", "コレステロールや中性脂肪を下げる薬"),
    ("kenshin", "metabo_reported"): ("メタボリックシンドローム判定", "メタボ該当判定"),
    ("guidance", "level"): ("保健指導レベル",),
    ("enrollment", "insurance"): ("保険者種別", "保険区分"),
    ("claims_monthly", "ym"): ("年月", "診療月"),
    ("kaigo", "level"): ("要介護状態区分", "介護度"),
    ("municipalities", "name"): ("市区町村名", "自治体名", "市町名"),
    ("municipalities", "medical_area_code"): ("医療圏コード",),
    ("municipalities", "medical_area"): ("二次医療圏名", "medical_area_name"),
}

# Columns filled with a default when the file omits them or leaves them blank (schema text:
# "省略時は継続扱い" / "省略時は除外なし", docs/rules.md §7.1).
DEFAULTS_WHEN_OMITTED = {("enrollment", "full_year"): True,
                         ("enrollment", "excluded_statutory"): False}

_ERA_OFFSETS = {"令和": 2018, "R": 2018, "平成": 1988, "H": 1988, "昭和": 1925, "S": 1925}
_ERA = "(令和|平成|昭和|R|H|S)"

_URINE_MISSING = _MISSING_WORDS  # dashes are results here, not blanks

# Text labels of category codes (docs/rules.md §1.5, §2.4) and of str categories (`hsutils.core.vocab`).
_CATEGORY_SYNONYMS: dict[tuple[str, str], dict[str, object]] = {
    ("kenshin", "guidance_level_reported"): vocab.GUIDANCE_LEVEL_SPELLINGS,
    ("kenshin", "metabo_reported"): vocab.METABO_SPELLINGS,
    ("guidance", "level"): vocab.GUIDANCE_PROGRAM_SPELLINGS,
    ("enrollment", "insurance"): vocab.INSURANCE_SPELLINGS,
    ("kaigo", "level"): vocab.KAIGO_LEVEL_SPELLINGS,
}

# Extra hint when a value is outside the plausible range in a typical unit slip.
_RANGE_HINTS: dict[tuple[str, str], str] = {
    ("hba1c", "above"): "単位の誤り（mmol/mol 等）の可能性",
    ("height", "below"): "単位の誤り（m 等）の可能性",
    ("weight", "above"): "単位の誤り（g 等）の可能性",
    ("creatinine", "above"): "単位の誤り（µmol/L 等）の可能性",
    ("fpg", "below"): "単位の誤り（mmol/L 等）の可能性",
    ("casual_glucose", "below"): "単位の誤り（mmol/L 等）の可能性",
    ("tg", "below"): "単位の誤り（mmol/L 等）の可能性",
    ("hdl", "below"): "単位の誤り（mmol/L 等）の可能性",
    ("ldl", "below"): "単位の誤り（mmol/L 等）の可能性",
}

_KIND_LABELS = {
    "str": "文字列", "muni": "市町村コード", "int": "整数", "float": "数値", "fy": "年度",
    "ym": "年月", "date": "日付", "sex": "性別コード", "bool": "あり/なし", "urine": "尿定性",
    "category": "区分", "answer": "回答コード",
}


# ---------------------------------------------------------------------------------------------
# Result objects
# ---------------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    """One table read from one file (docs/internal_api.md)."""

    data: pd.DataFrame
    exclusions: pd.DataFrame
    n_read: int
    n_kept: int
    n_dropped: int
    warnings: list[str] = field(default_factory=list)
    extra_columns: pd.DataFrame = field(default_factory=pd.DataFrame)
    file: str = ""
    table: str = ""
    row_numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    from_cache: bool = False

    @property
    def n_excluded_values(self) -> int:
        """Number of single values set to missing (scope 項目)."""
        if self.exclusions.empty:
            return 0
        return int((self.exclusions["scope"] == SCOPE_VALUE).sum())

    def fiscal_years(self) -> dict[int, int]:
        """Rows kept per fiscal year (empty when the table has no `fy`)."""
        if "fy" not in self.data.columns or self.data.empty:
            return {}
        counts = self.data["fy"].value_counts().sort_index()
        return {int(k): int(v) for k, v in counts.items()}


@dataclass
class Dataset:
    """All tables of one input folder (docs/internal_api.md)."""

    tables: dict[str, pd.DataFrame]
    exclusions: pd.DataFrame
    summary: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    results: dict[str, LoadResult] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def municipalities(self) -> pd.DataFrame:
        return self.tables["municipalities"]

    @property
    def districts(self) -> pd.DataFrame:
        return self.tables["districts"]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", str(text)).strip()


def _header_key(text) -> str:
    """Header comparison key: NFKC, case-folded, without any white space."""
    if text is None:
        return ""
    return re.sub(r"\s+", "", _nfkc(text)).casefold()


def _strip_trailing_bracket(key: str) -> str:
    """'収縮期血圧(mmhg)' -> '収縮期血圧' (a unit or note in brackets at the end)."""
    return re.sub(r"[(\[【][^()\[\]【】]*[)\]】]$", "", key)


def _fmt_number(v) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) >= 10_000:
        return f"{int(v):,}"
    if isinstance(v, int) and abs(v) >= 10_000:
        return f"{v:,}"
    return str(v)


def _range_text(col: Column) -> str:
    unit = f" {col.unit}" if col.unit else ""
    return f"{_fmt_number(col.lo)}–{_fmt_number(col.hi)}{unit}"


def _empty_exclusions() -> pd.DataFrame:
    return pd.DataFrame({
        "file": pd.Series(dtype="str"), "table": pd.Series(dtype="str"),
        "row": pd.Series(dtype="int64"), "column": pd.Series(dtype="str"),
        "value": pd.Series(dtype="str"), "reason": pd.Series(dtype="str"),
        "scope": pd.Series(dtype="str")})


def _exclusion_frame(file: str, table: str, rows, column: str, values, reasons, scope: str
                     ) -> pd.DataFrame:
    rows = np.asarray(rows, dtype=np.int64)
    n = len(rows)
    values = np.asarray(values, dtype=object)
    reasons = np.broadcast_to(np.asarray(reasons, dtype=object), (n,)) if np.ndim(reasons) == 0 \
        else np.asarray(reasons, dtype=object)
    return pd.DataFrame({
        "file": pd.Series([file] * n, dtype="str"), "table": pd.Series([table] * n, dtype="str"),
        "row": rows, "column": pd.Series([column] * n, dtype="str"),
        "value": pd.Series(values, dtype="str"), "reason": pd.Series(reasons, dtype="str"),
        "scope": pd.Series([scope] * n, dtype="str")})


def _get_table(table) -> Table:
    if isinstance(table, Table):
        return table
    if table not in TABLES:
        raise ParameterError(
            f"表「{table}」は定義されていません（使える表: {', '.join(TABLES)}）")
    return TABLES[table]


def _empty_canonical(table: Table) -> pd.DataFrame:
    """Zero-row frame with the canonical columns and dtypes of `table`."""
    return pd.DataFrame({c.name: pd.Series(dtype=_canonical_dtype(c, complete=True))
                         for c in table.columns})


def empty_table(table: str) -> pd.DataFrame:
    """Zero-row canonical frame for a table (used for optional tables that are absent)."""
    return _empty_canonical(_get_table(table))


def empty_like(frame: pd.DataFrame) -> pd.DataFrame:
    """A zero-row frame with the columns and dtypes of `frame` that holds none of its memory: an
    empty slice (`frame.iloc[:0]`) is a view of the whole frame, and even its `.copy()` keeps an
    Arrow-backed column's buffers (an Arrow array is immutable, so pandas copies the reference): a
    list of such empties kept every chunk of a streamed import alive (docs/design.md §8.4)."""
    out = pd.DataFrame({i: pd.Series(dtype=d) for i, d in enumerate(frame.dtypes)}, index=pd.RangeIndex(0))
    out.columns = frame.columns
    return out


def _canonical_dtype(col: Column, complete: bool) -> str:
    """pandas dtype of a column after loading (docs/internal_api.md table)."""
    kind = col.kind
    if kind in ("str", "muni"):
        return "str"
    if kind in ("fy", "ym"):
        return "int64" if col.required and complete else "Int64"
    if kind in ("int", "sex"):
        return "int64" if col.required and complete else "Int64"
    if kind in ("float", "urine"):
        return "float64"
    if kind == "date":
        return "datetime64[ns]"
    if kind == "bool":
        return "boolean"
    if kind == "answer":
        return "Int64"
    if kind == "category":
        return "Int64" if col.allowed and isinstance(col.allowed[0], int) else "str"
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Column map
# ---------------------------------------------------------------------------------------------

def load_column_map(column_map) -> dict[str, dict[str, str]]:
    """Read a column map (YAML path or dict ``{table: {export header: canonical}}``).

    Values may be canonical names or the schema's Japanese names. Raises ParameterError for
    unknown tables or columns, so that a typo is never silently ignored (docs/design.md §3).
    """
    if column_map is None:
        return {}
    if isinstance(column_map, (str, Path)):
        path = Path(column_map)
        if not path.exists():
            raise ParameterError(f"列名対応表 {path} が見つかりません")
        import yaml

        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ParameterError(f"列名対応表 {path.name} を読めません（YAML の書式を確認してください）: {e}")
        source = path.name
        column_map = loaded or {}
    else:
        source = "列名対応表"
    if not isinstance(column_map, dict):
        raise ParameterError(f"{source}: 表名ごとに「見出し: 列名」を書いてください")
    out: dict[str, dict[str, str]] = {}
    for tname, mapping in column_map.items():
        if tname not in TABLES:
            raise ParameterError(
                f"{source}: 表「{tname}」は定義されていません（使える表: {', '.join(TABLES)}）")
        if mapping is None:
            continue
        if not isinstance(mapping, dict):
            raise ParameterError(f"{source}: 表「{tname}」の下には「見出し: 列名」を書いてください")
        t = TABLES[tname]
        by_key = {_header_key(c.name): c.name for c in t.columns}
        by_key.update({_header_key(c.ja): c.name for c in t.columns})
        resolved = {}
        for header, target in mapping.items():
            canon = by_key.get(_header_key(target))
            if canon is None:
                raise ParameterError(
                    f"{source}: 表「{tname}」の見出し「{header}」の対応先「{target}」は列名ではありません"
                    f"（使える列名: {', '.join(t.names)}）")
            resolved[str(header)] = canon
        out[tname] = resolved
    return out


def _column_map_for(column_map, table: str) -> dict[str, str]:
    return load_column_map(column_map).get(table, {}) if column_map else {}


def _header_lookup(table: Table, mapping: dict[str, str]) -> dict[str, str]:
    """Normalised header -> canonical name (schema names, ja names, aliases, then the map)."""
    lookup: dict[str, str] = {}
    for c in table.columns:
        names = (c.name, c.ja, *c.aliases, *EXTRA_HEADER_ALIASES.get((table.name, c.name), ()))
        for n in names:
            lookup.setdefault(_header_key(n), c.name)
    for header, canon in mapping.items():  # the user's map wins
        lookup[_header_key(header)] = canon
    return lookup


# ---------------------------------------------------------------------------------------------
# Raw reading: every cell as text
# ---------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    frame: pd.DataFrame          # str cells, file headers as columns (deduplicated)
    headers: list[str]           # headers as written
    title_rows: int              # rows skipped above the header
    row_numbers: np.ndarray      # Excel row number of every frame row


def _find_header_row(rows: list[list[str]], lookup: dict[str, str]) -> int:
    """Index of the first row that looks like the header; 0 when none does."""
    found = _match_header_row(rows, lookup)
    return 0 if found is None else found


def _match_header_row(rows: list[list[str]], lookup: dict[str, str]) -> int | None:
    """Index of the first row that matches known column names, or None.

    A row qualifies when at least two of its cells (or all of its non-blank cells, if fewer)
    are known headers; title rows such as「令和6年度 特定健診結果」are thus skipped.
    """
    for i, cells in enumerate(rows):
        keys = [_header_key(c) for c in cells if c is not None and str(c).strip() != ""]
        if not keys:
            continue
        hits = sum(1 for k in keys if k in lookup or _strip_trailing_bracket(k) in lookup)
        if hits >= 1 and hits >= min(2, len(keys)):
            return i
    return None


def _decode_bytes(data: bytes, name: str) -> tuple[str, str]:
    """Decode with UTF-8-BOM, UTF-8, cp932 in that order, strictly."""
    failures = []
    for enc, label in ENCODINGS:
        if enc == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
            continue
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            failures.append(f"{label}: 行 {line} 付近")
    tried = "、".join(label for _, label in ENCODINGS)
    raise DataError(
        f"{name}: 文字コードを判別できません（{tried} を試しました。読めなかった位置: "
        f"{'; '.join(failures)}）。Excel で「CSV UTF-8」または「CSV（コンマ区切り）」で保存し直してください")


def _read_csv_raw(path: Path, lookup: dict[str, str]) -> _Raw:
    data = path.read_bytes()
    name = path.name
    if not data[:65536].strip(b" \t\r\n\xef\xbb\xbf") and not data.strip(b" \t\r\n\xef\xbb\xbf"):
        raise DataError(f"{name}: ファイルが空です（見出し行もありません）")
    text, enc = _decode_bytes(data, name)
    text = text.lstrip("\ufeff")
    starts = _line_starts(text, 31)
    head_lines = (text[:starts[-1]] if len(starts) > 30 else text).splitlines()[:30]
    sep = "\t" if (path.suffix.lower() == ".tsv" or
                   (head_lines and "\t" in head_lines[0] and "," not in head_lines[0])) else ","
    first_rows = list(csv.reader(head_lines, delimiter=sep))
    header_idx = _find_header_row(first_rows, lookup)
    body = text[starts[header_idx]:] if header_idx else text  # title rows cut off
    if header_idx == 0 and enc.startswith("utf-8"):
        body_bytes = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    else:
        body_bytes = body.encode("utf-8")
    # Interior blank lines would be skipped by the pyarrow reader and shift the row numbers;
    # the slower C reader keeps them (they are dropped later with their numbers known).
    interior_blank = re.search(r"\n[ \t]*\r?\n[ \t\r\n]*[^\s]", body) is not None
    try:
        if interior_blank:
            frame = pd.read_csv(_stdio.BytesIO(body_bytes), dtype=str, keep_default_na=False,
                                skip_blank_lines=False, sep=sep, index_col=False, encoding="utf-8")
        else:
            frame = pd.read_csv(_stdio.BytesIO(body_bytes), dtype=str, keep_default_na=False,
                                sep=sep, engine="pyarrow", encoding="utf-8")
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(
            f"{name}: CSV の列数が行によって異なるため読めません（{_translate_parser_error(e)}）。"
            "区切り文字（コンマ）と引用符を確認してください")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name}: ファイルが空です（見出し行もありません）")
    headers = [str(h) for h in (first_rows[header_idx] if header_idx < len(first_rows) else [])]
    if len(headers) != frame.shape[1]:
        headers = [str(c) for c in frame.columns]
    frame = frame.fillna("")
    frame.columns = _unique_names(headers)
    rows = np.arange(len(frame), dtype=np.int64) + header_idx + 2
    return _Raw(frame, headers, header_idx, rows)


def _translate_parser_error(e: Exception) -> str:
    msg = str(e)
    m = re.search(r"Expected (\d+) (?:columns|fields).*?got (\d+)", msg)
    if m:
        return f"見出しは {m.group(1)} 列ですが {m.group(2)} 列の行があります"
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        return f"行 {m.group(2)}: {m.group(1)} 列のはずが {m.group(3)} 列"
    return msg.splitlines()[0][:200]


def _line_starts(text: str, k: int) -> list[int]:
    """Offsets of the first `k` line starts (without splitting a large text)."""
    starts = [0]
    while len(starts) < k:
        i = text.find("\n", starts[-1])
        if i < 0 or i + 1 >= len(text):
            break
        starts.append(i + 1)
    return starts


def _unique_names(headers: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for h in headers:
        h = "" if h is None else str(h)
        if h in seen:
            seen[h] += 1
            out.append(f"{h}.{seen[h]}")
        else:
            seen[h] = 0
            out.append(h)
    return out


def _excel_cell_text(v) -> str:
    """Text of one Excel cell as a user sees it (integers without '.0', dates ISO)."""
    import datetime as _dt

    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%d") if v.time() == _dt.time(0) else v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, _dt.date):
        return v.strftime("%Y-%m-%d")
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _read_xlsx_raw(path: Path, lookup: dict[str, str]) -> _Raw:
    import zipfile

    import openpyxl

    name = path.name
    if path.stat().st_size == 0:
        raise DataError(f"{name}: ファイルが空です")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
        raise DataError(f"{name}: Excel（xlsx）ファイルとして開けません（{type(e).__name__}）")
    try:
        # The first sheet whose header matches the table is used (else the first non-empty
        # sheet). openpyxl yields rows, so this cell loop is inherent to reading xlsx.
        chosen = None
        for ws in wb.worksheets:
            rows = [[_excel_cell_text(v) for v in r] for r in ws.iter_rows(values_only=True)]
            if not any(any(c != "" for c in r) for r in rows):
                continue
            if _match_header_row(rows[:30], lookup) is not None:
                chosen = rows
                break
            chosen = chosen or rows
    finally:
        wb.close()
    if not chosen:
        raise DataError(f"{name}: ファイルが空です（どのシートにもデータがありません）")
    rows = chosen
    header_idx = _find_header_row(rows[:30], lookup)
    header = rows[header_idx]
    width = max(len(r) for r in rows[header_idx:])
    header = header + [""] * (width - len(header))
    body = [r + [""] * (width - len(r)) for r in rows[header_idx + 1:]]
    frame = pd.DataFrame(body, columns=range(width), dtype="str") if body else \
        pd.DataFrame({i: pd.Series(dtype="str") for i in range(width)})
    frame.columns = _unique_names(header)
    row_numbers = np.arange(len(frame), dtype=np.int64) + header_idx + 2
    return _Raw(frame.fillna(""), header, header_idx, row_numbers)


def _render_text(s: pd.Series) -> pd.Series:
    """The text of each value of a typed Parquet column (an integral float as an integer: 3.0 → "3";
    blank where missing). Each value is rendered on its own."""
    if pd.api.types.is_datetime64_any_dtype(s):
        t = s.dt.strftime("%Y-%m-%d")
    elif pd.api.types.is_bool_dtype(s):
        t = s.map({True: "TRUE", False: "FALSE"})
    elif pd.api.types.is_float_dtype(s):
        integral = (s.notna() & (s % 1 == 0) & (s.abs() < 2 ** 53)).to_numpy()
        t = s.astype("str")
        if integral.any():
            t = t.where(~integral, s.where(integral, 0).astype("int64").astype("str"))
    else:
        t = s.astype("str")
    return t.where(s.notna(), "").astype("str")


def _typed_text(s: pd.Series) -> pd.Series:
    """The text of a typed (numeric, bool or date) Parquet column as a categorical: each distinct value
    is rendered once (`_render_text`) instead of once per row, and the validation parses each distinct
    text once through the codes (`_parse_column`) without hashing the rows' strings again. Same cells
    as `_render_text(s)`."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    text = _render_text(pd.Series(uniques, dtype=s.dtype)).to_numpy(dtype=object)
    text = np.append(text, "")  # the missing values (code -1: the last category)
    codes = np.where(codes < 0, len(text) - 1, codes)
    # distinct values can share a text (two times of one day): one category per text
    cat_codes, cats = pd.factorize(text)
    return pd.Series(pd.Categorical.from_codes(cat_codes[codes], categories=pd.Index(cats, dtype="str")))


def _is_typed(s: pd.Series) -> bool:
    return (pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_bool_dtype(s)
            or pd.api.types.is_numeric_dtype(s))


def _parquet_text(df: pd.DataFrame, first_row: int) -> _Raw:
    """Text cells of a Parquet frame (or one of its record batches) as `_Raw`; `first_row` is the
    file row number of its first row (the header counts as row 1). Each value is rendered on its own
    (an integral float as an integer: 3.0 → "3"), so a file read in batches gives the same text as
    one read whole. Typed columns are categoricals of their text (`_typed_text`), text columns text."""
    out = {}
    for c in df.columns:  # loop over columns, each converted vectorised
        s = df[c]
        out[str(c)] = _typed_text(s) if _is_typed(s) else _render_text(s)
    frame = pd.DataFrame(out, index=pd.RangeIndex(len(df)))
    headers = [str(c) for c in df.columns]
    frame.columns = _unique_names(headers)
    return _Raw(frame, headers, 0, np.arange(len(frame), dtype=np.int64) + first_row)


def _read_parquet_raw(path: Path) -> _Raw:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"{path.name}: Parquet ファイルとして読めません（{type(e).__name__}）")
    return _parquet_text(df, 2)


def _parquet_rows(path: Path) -> int | None:
    """Rows of a Parquet file from its footer (None when it is not readable as Parquet)."""
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # a broken file: `_read_parquet_raw` gives the Japanese message
        return None


def _read_parquet_chunks(path: Path, chunk_rows: int):
    """The rows of a Parquet file as `_Raw` chunks of at most `chunk_rows` rows (record batches:
    the file is never read whole), numbered as `_read_parquet_raw` numbers them."""
    import pyarrow.parquet as pq

    offset = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            df = batch.to_pandas()
            yield _parquet_text(df, offset + 2)
            offset += len(df)
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"{path.name}: Parquet ファイルとして読めません（{offset + 2} 行目付近、{type(e).__name__}）")


def _read_raw(path: Path, lookup: dict[str, str]) -> _Raw:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv_raw(path, lookup)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx_raw(path, lookup)
    if suffix == ".parquet":
        return _read_parquet_raw(path)
    if suffix == ".xls":
        raise DataError(f"{path.name}: 古い Excel 形式（.xls）は読めません。xlsx または CSV で保存し直してください")
    raise DataError(f"{path.name}: 対応していない形式です（.csv, .txt, .xlsx, .parquet が使えます）")


# ---------------------------------------------------------------------------------------------
# Value parsers. Each works on the distinct normalised values `u` of one column (NaN = blank)
# and returns (values aligned with u, reason: Japanese text where the value is invalid).
# ---------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    table: str
    excel: bool = False
    known_munis: frozenset | None = None


def _no_reason(u: pd.Series) -> pd.Series:
    return pd.Series(np.full(len(u), None, dtype=object), index=u.index, dtype="object")


def _reason_where(u: pd.Series, bad, text) -> pd.Series:
    r = _no_reason(u)
    bad = np.asarray(bad, dtype=bool)
    if np.ndim(text) == 0:
        r[bad] = text
    else:
        r[bad] = np.asarray(text, dtype=object)[bad]
    return r


def _unit_variants(unit: str) -> set[str]:
    base = _header_key(unit)
    out = {base, _strip_trailing_bracket(base)}
    if _strip_trailing_bracket(base) == "u/l":
        out |= {"iu/l"}
    return {v for v in out if v}


def _parse_number(u: pd.Series, col: Column) -> tuple[pd.Series, pd.Series]:
    """Number with optional thousands separators and the column's own unit ('6.5%', '1,234円').

    A different unit (e.g. '48mmol/mol' in HbA1c) is not converted: it is reported.
    """
    num = pd.to_numeric(u, errors="coerce").astype("float64")
    rest = u[num.isna() & u.notna()]  # only values that are not plain numbers need the regex
    if len(rest):
        t = rest.str.replace(",", "", regex=False).str.replace(r"\s+", "", regex=True)
        m = t.str.extract(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(.*)$")
        extra = pd.to_numeric(m[0], errors="coerce").astype("float64")
        suffix = m[1].fillna("").str.casefold()
        unit_ok = suffix.eq("") | suffix.isin(_unit_variants(col.unit))
        num.loc[rest.index] = extra.where(unit_ok)
    present = u.notna().to_numpy()
    not_number = present & num.isna().to_numpy()
    expect = f"{col.ja} は {_range_text(col)} の数値が必要" if col.lo is not None else \
        f"{col.ja} は数値が必要"
    reason = _reason_where(u, not_number, f"数値として読めません（{expect}）")
    return num, reason


def _range_reason(values: pd.Series, col: Column, reason: pd.Series) -> pd.Series:
    """Add the plausible-range reason (docs/rules.md §3.2) where a parsed value is outside lo–hi."""
    if col.lo is None and col.hi is None:
        return reason
    v = values.astype("float64").to_numpy()
    with np.errstate(invalid="ignore"):
        below = (v < col.lo) if col.lo is not None else np.zeros(len(v), bool)
        above = (v > col.hi) if col.hi is not None else np.zeros(len(v), bool)
    base = f"{col.ja} は {_range_text(col)} の範囲が必要"
    text = np.full(len(v), base, dtype=object)
    for side, mask in (("below", below), ("above", above)):
        hint = _RANGE_HINTS.get((col.name, side))
        if hint:
            text[mask] = f"{base}（{hint}）"
    text[below & (v < 0)] = f"{base}（負の値）"
    out = reason.copy()
    take = (below | above) & reason.isna().to_numpy()
    out[take] = text[take]
    return out


def _parse_float(u, col, ctx):
    num, reason = _parse_number(u, col)
    return num, _range_reason(num, col, reason)


def _parse_int(u, col, ctx):
    num, reason = _parse_number(u, col)
    frac = num.notna().to_numpy() & (num.fillna(0) % 1 != 0).to_numpy() & reason.isna().to_numpy()
    reason = reason.copy()
    reason[frac] = f"{col.ja} は整数が必要"
    num = num.where(~frac)
    return num, _range_reason(num, col, reason)


def _prepare_date_text(u: pd.Series) -> pd.Series:
    """Upper-case, no spaces, 元年 → 1年, time part removed ('2024-05-01 00:00:00')."""
    t = u.str.upper().str.replace(r"\s+", "", regex=True)
    t = t.str.replace(r"(\d)T?\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$", r"\1", regex=True)
    t = t.str.replace(_ERA + "元", r"\g<1>1", regex=True)
    return t


def _era_year(era: pd.Series, n: pd.Series) -> pd.Series:
    return era.map(_ERA_OFFSETS).astype("float64") + pd.to_numeric(n, errors="coerce")


def _parse_fy(u, col, ctx):
    """Fiscal year: 2024, 2024年度, 令和6年度, 令和6, R6, R06, H30, 平成31/令和元年 → western."""
    t = _prepare_date_text(u)
    t = t.str.replace(r"^.*[/・](?=" + _ERA + r")", "", regex=True)  # 平成31/令和元年 → 令和1年
    t = t.str.replace(r"(年度|年|度)$", "", regex=True)
    west = pd.to_numeric(t.str.extract(r"^(?:FY)?(\d{4})(?:\.0+)?$")[0], errors="coerce")
    era = t.str.extract("^" + _ERA + r"(\d{1,2})$")
    year = west.astype("float64").fillna(_era_year(era[0], era[1]))
    bad = u.notna().to_numpy() & year.isna().to_numpy()
    reason = _reason_where(u, bad, "年度として読めません（2024, 2024年度, 令和6年度, R6, H30 などが必要）")
    return year, _range_reason(year, col, reason)


def _parse_ym(u, col, ctx):
    """Year-month → YYYYMM: 202404, 2024-04, 2024/4, 2024年4月, R6.4, 令和6年4月."""
    t = _prepare_date_text(u).str.replace(r"月$", "", regex=True)
    y = pd.Series(np.nan, index=u.index)
    mth = pd.Series(np.nan, index=u.index)
    patterns = (
        (r"^(\d{4})(\d{2})$", False),
        (r"^(\d{4})[-/.年](\d{1,2})$", False),
        (r"^(\d{4})[-/.年](\d{1,2})[-/.月]\d{1,2}日?$", False),
        ("^" + _ERA + r"(\d{1,2})[-/.年](\d{1,2})$", True),
        ("^" + _ERA + r"(\d{1,2})[-/.年](\d{1,2})[-/.月]\d{1,2}日?$", True),
    )
    for pattern, is_era in patterns:  # a handful of spellings, each vectorised
        m = t.str.extract(pattern)
        if is_era:
            yy, mm = _era_year(m[0], m[1]), pd.to_numeric(m[2], errors="coerce")
        else:
            yy, mm = pd.to_numeric(m[0], errors="coerce"), pd.to_numeric(m[1], errors="coerce")
        fill = y.isna() & yy.notna()
        y[fill], mth[fill] = yy[fill], mm[fill]
    ok = mth.between(1, 12)
    ym = (y * 100 + mth).where(ok)
    bad = u.notna().to_numpy() & ym.isna().to_numpy()
    reason = _reason_where(u, bad, "年月として読めません（202404, 2024-04, 2024/4, R6.4, 令和6年4月 などが必要）")
    return ym, _range_reason(ym, col, reason)


_EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def _parse_date(u, col, ctx):
    """Date: 2024-05-01, 2024/5/1, 20240501, 令和6年5月1日, R6.5.1, Excel serial (xlsx only)."""
    t = _prepare_date_text(u)
    parts = pd.DataFrame({"year": np.nan, "month": np.nan, "day": np.nan}, index=u.index)
    patterns = (
        (r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$", False),
        (r"^(\d{4})(\d{2})(\d{2})$", False),
        ("^" + _ERA + r"(\d{1,2})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$", True),
    )
    for pattern, is_era in patterns:
        m = t.str.extract(pattern)
        if is_era:
            yy = _era_year(m[0], m[1])
            mm, dd = m[2], m[3]
        else:
            yy, mm, dd = pd.to_numeric(m[0], errors="coerce"), m[1], m[2]
        fill = parts["year"].isna() & yy.notna()
        parts.loc[fill, "year"] = yy[fill]
        parts.loc[fill, "month"] = pd.to_numeric(mm, errors="coerce")[fill]
        parts.loc[fill, "day"] = pd.to_numeric(dd, errors="coerce")[fill]
    dates = pd.to_datetime(parts, errors="coerce")
    if ctx.excel:  # Excel stores an unformatted date as a day count from 1899-12-30
        serial = pd.to_numeric(t.str.extract(r"^(\d{5})(?:\.0+)?$")[0], errors="coerce")
        serial = serial.where(serial.between(20000, 80000))
        from_serial = _EXCEL_EPOCH + pd.to_timedelta(serial, unit="D")
        dates = dates.fillna(from_serial)
    dates = dates.astype("datetime64[ns]")
    bad = u.notna().to_numpy() & dates.isna().to_numpy()
    reason = _reason_where(u, bad, "日付として読めません（2024-05-01, 2024/5/1, 令和6年5月1日, R6.5.1 などが必要）")
    return dates, reason


def _parse_sex(u, col, ctx):
    """1 男 / 2 女 (`hsutils.core.vocab.parse_sex`)."""
    v = vocab.parse_sex(u)
    bad = u.notna().to_numpy() & v.isna().to_numpy()
    return v, _reason_where(u, bad, f"{col.ja}は {vocab.SEX_EXPECTED}")


# Columns whose yes/no answers have their own code list (`hsutils.core.vocab`).
_BOOL_VOCABULARIES: dict[tuple[str, str], tuple[Callable, str, str]] = {
    ("kenshin", "smoking"): (vocab.parse_smoking, vocab.SMOKING_EXPECTED, vocab.SMOKING_ALLOWED),
}


def _parse_bool(u, col, ctx):
    """あり/なし (docs/rules.md §1.5: code 1 あり, 2 なし; 0 also なし), `hsutils.core.vocab.parse_yes_no`;
    喫煙 also 3 いいえ (`hsutils.core.vocab.parse_smoking`)."""
    parse, expected, _ = _BOOL_VOCABULARIES.get((ctx.table, col.name),
                                                (vocab.parse_yes_no, vocab.YES_NO_EXPECTED, ""))
    v = parse(u)
    bad = u.notna().to_numpy() & v.isna().to_numpy()
    return v, _reason_where(u, bad, f"{col.ja} は {expected}")


def _parse_urine(u, col, ctx):
    """尿定性 → ordinal 0 (−) … 4 (3+) (docs/rules.md §4.3; codes 1–5 → 0–4), `hsutils.core.vocab.parse_urine`."""
    v = vocab.parse_urine(u)
    bad = u.notna().to_numpy() & v.isna().to_numpy()
    return v, _reason_where(u, bad, f"{col.ja} は {vocab.URINE_EXPECTED}が必要")


def _parse_category(u, col, ctx):
    """One of `allowed` (codes or labels; docs/rules.md §1.5, §2.4)."""
    synonyms = dict(_CATEGORY_SYNONYMS.get((ctx.table, col.name), {}))
    t = u.str.replace(r"\s+", "", regex=True)
    is_int = bool(col.allowed) and isinstance(col.allowed[0], int)
    if is_int:
        synonyms.update({str(a): a for a in col.allowed})
        t = t.str.replace(r"\.0+$", "", regex=True)
    else:
        synonyms.update({_nfkc(a): a for a in col.allowed})
    v = t.map(synonyms)
    bad = u.notna().to_numpy() & v.isna().to_numpy()
    v = v.astype("float64") if is_int else v.astype("str")
    allowed = ", ".join(str(a) for a in col.allowed)
    return v, _reason_where(u, bad, f"{col.ja} は {allowed} のいずれかが必要")


def _answer_labels(col: Column) -> dict[str, int]:
    """Text answers from the schema description ('1 よい 2 まあよい …', docs/rules.md §6.2)."""
    pairs = re.findall(r"(\d+)\s+([^\d\s]+)", col.description)
    return {_nfkc(label): int(code) for code, label in pairs}


def _parse_answer(u, col, ctx):
    """Questionnaire answer → code in `allowed`; text answers (よい, はい, 吸っている …) mapped."""
    mapping = {str(a): a for a in col.allowed}
    mapping.update(_answer_labels(col))
    t = u.str.replace(r"\s+", "", regex=True).str.replace(r"\.0+$", "", regex=True)
    v = t.map(mapping).astype("float64")
    bad = u.notna().to_numpy() & v.isna().to_numpy()
    labels = "、".join(f"{c} {lab}" for lab, c in _answer_labels(col).items())
    return v, _reason_where(u, bad, f"{col.ja} は {labels or ', '.join(map(str, col.allowed))} が必要")


def _parse_str(u, col, ctx):
    return u.astype("str"), _no_reason(u)


def _parse_muni(u, col, ctx):
    """5-digit 全国地方公共団体コード; 6-digit codes need a valid check digit (hsutils.core.codes)."""
    code, errors = _codes.normalize_muni_codes(u)
    code = pd.Series(code.to_numpy(dtype=object), index=u.index)
    reason = pd.Series(errors.to_numpy(dtype=object), index=u.index, dtype="object")
    if ctx.known_munis is not None:
        unknown = code.notna().to_numpy() & ~code.isin(ctx.known_munis).to_numpy()
        reason[unknown] = "市町村マスタ（municipalities）にない市町村コード"
    return code.astype("str"), reason


_PARSERS: dict[str, Callable] = {
    "str": _parse_str, "muni": _parse_muni, "int": _parse_int, "float": _parse_float,
    "fy": _parse_fy, "ym": _parse_ym, "date": _parse_date, "sex": _parse_sex,
    "bool": _parse_bool, "urine": _parse_urine, "category": _parse_category,
    "answer": _parse_answer,
}


def _normalise_text(u: pd.Series) -> pd.Series:
    """NFKC (full-width → half-width) and strip, vectorised."""
    u = u.astype("str")
    if len(u) and not bool(u.str.isascii().all()):
        u = u.str.normalize("NFKC")
    return u.str.strip()


@dataclass
class _Column:
    values: pd.Series      # parsed values, one per row
    bad: np.ndarray        # bool: present but invalid / implausible
    missing: np.ndarray    # bool: blank or a "not measured" mark
    reasons_u: np.ndarray  # object: reason per distinct value
    codes: np.ndarray      # int: row -> distinct value


def _parse_column(raw: pd.Series, col: Column, ctx: _Ctx) -> _Column:
    by_codes = isinstance(raw.dtype, pd.CategoricalDtype)
    if by_codes:  # a typed Parquet column (`_typed_text`): its distinct texts and codes are known
        codes = raw.cat.codes.to_numpy(dtype=np.int64)
        u = _normalise_text(pd.Series(np.asarray(raw.cat.categories, dtype=object), dtype="str"))
    elif col.kind == "str":  # identifiers are mostly distinct: parse the column as it is
        codes = np.arange(len(raw))
        u = _normalise_text(raw.reset_index(drop=True))
    else:  # few distinct values: parse each once, map back by integer codes
        codes, uniques = pd.factorize(raw)
        u = _normalise_text(pd.Series(np.asarray(uniques, dtype=object), dtype="str"))
    tokens = _URINE_MISSING if col.kind == "urine" else MISSING_TOKENS
    missing_u = u.isin(tokens).to_numpy() | u.isna().to_numpy()
    u = u.where(~missing_u)
    values_u, reason_u = _PARSERS[col.kind](u, col, ctx)
    reasons = reason_u.to_numpy(dtype=object)
    bad_u = pd.notna(reasons) & ~missing_u
    values_u = values_u.where(~bad_u)
    if col.kind == "str" and not by_codes:
        values = values_u
    else:
        # the array, not the Series: taking the index too and dropping it costs as much again
        values = pd.Series(values_u.array.take(codes)) if len(codes) else values_u.iloc[:0].reset_index(drop=True)
    return _Column(values=values, bad=bad_u[codes], missing=missing_u[codes],
                   reasons_u=reasons, codes=codes)


# ---------------------------------------------------------------------------------------------
# read_table
# ---------------------------------------------------------------------------------------------

def _map_headers(raw: _Raw, table: Table, lookup: dict[str, str], name: str
                 ) -> tuple[dict[str, str], list[str], list[str]]:
    """file column -> canonical; extra file columns; Japanese notes about interpretations."""
    mapped: dict[str, str] = {}
    used: dict[str, str] = {}
    extra: list[str] = []
    notes: list[str] = []
    for fcol, header in zip(raw.frame.columns, raw.headers):
        key = _header_key(header)
        canon = lookup.get(key)
        if canon is None and key:
            canon = lookup.get(_strip_trailing_bracket(key))
            if canon is not None:
                notes.append(f"{name}: 列「{header}」を「{table.column(canon).ja}」として読みました")
        if canon is None:
            if key == "" and not (raw.frame[fcol] != "").any():
                continue  # an empty, unnamed column (trailing commas): nothing to keep
            extra.append(fcol)
            continue
        if canon in used:
            notes.append(f"{name}: 列「{header}」は列「{used[canon]}」と同じ項目"
                         f"（{table.column(canon).ja}）のため使いません（別に保管）")
            extra.append(fcol)
            continue
        used[canon] = header
        mapped[fcol] = canon
    return mapped, extra, notes


def _check_required(mapped: dict[str, str], table: Table, raw: _Raw, name: str) -> None:
    present = set(mapped.values())
    missing = [c for c in table.required if c not in present]
    if missing:
        want = "、".join(f"{table.column(c).ja}（{c}）" for c in missing)
        found = "、".join(h for h in raw.headers if str(h).strip()) or "（なし）"
        raise DataError(
            f"{name}: 必須の列がありません: {want}。見つかった列: {found}。"
            f"見出しが違う名前の場合は列名対応表（column_map）で対応を指定してください"
            f"（見出し行は {raw.title_rows + 1} 行目として読みました）")


CSV_CHUNK_BYTES = 64 << 20  # a CSV larger than this is read in chunks (bounded memory, docs/design.md §8.4)
CSV_CHUNK_ROWS = 500_000  # rows per chunk


def _csv_layout(path: Path, lookup: dict[str, str]) -> tuple[str, str, int, list[str]]:
    """Encoding, separator, header row index and headers, from the first MiB of a CSV (as
    `_read_csv_raw` finds them from the whole text)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 20)
    if len(head) == 1 << 20 and b"\n" in head:
        head = head[:head.rfind(b"\n") + 1]  # whole lines only (never half a character)
    text, enc = _decode_bytes(head, path.name)
    head_lines = text.lstrip("\ufeff").splitlines()[:30]
    sep = "\t" if (path.suffix.lower() == ".tsv" or
                   (head_lines and "\t" in head_lines[0] and "," not in head_lines[0])) else ","
    first_rows = list(csv.reader(head_lines, delimiter=sep))
    header_idx = _find_header_row(first_rows, lookup)
    headers = [str(h) for h in (first_rows[header_idx] if header_idx < len(first_rows) else [])]
    return enc, sep, header_idx, headers


def _read_csv_chunks(path: Path, lookup: dict[str, str], chunk_rows: int):
    """The rows of a CSV as `_Raw` chunks of at most `chunk_rows` rows, each with the file's own row
    numbers (title rows and the header counted, blank lines kept: they are dropped with their
    numbers known)."""
    enc, sep, header_idx, headers = _csv_layout(path, lookup)
    offset = 0
    try:
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, sep=sep,
                             index_col=False, encoding=enc, skiprows=header_idx, chunksize=chunk_rows)
        for frame in reader:
            if len(headers) != frame.shape[1]:
                headers = [str(c) for c in frame.columns]
            frame = frame.fillna("")
            frame.columns = _unique_names(headers)
            rows = np.arange(len(frame), dtype=np.int64) + offset + header_idx + 2
            offset += len(frame)
            yield _Raw(frame, headers, header_idx, rows)
    except UnicodeDecodeError:
        raise DataError(
            f"{path.name}: {header_idx + offset + 2} 行目以降が文字コード {enc} として読めません（先頭は {enc} でした）。"
            "Excel で「CSV UTF-8」または「CSV（コンマ区切り）」で保存し直してください") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise DataError(
            f"{path.name}: CSV の列数が行によって異なるため読めません（{_translate_parser_error(e)}）。"
            "区切り文字（コンマ）と引用符を確認してください") from None


def concat_chunks(frames: list[pd.DataFrame], table) -> pd.DataFrame:
    """The validated chunks of one table as one frame: rows in order, each column in the canonical
    dtype the whole table gets (`int64` only when no row of any chunk lacks it)."""
    t = _get_table(table)
    data = pd.concat(frames, ignore_index=True)
    for c in t.columns:
        want = _canonical_dtype(c, bool(data[c.name].notna().all()))
        if str(data[c.name].dtype) != want:
            data[c.name] = data[c.name].astype(want)
    return data


def _combine_chunks(results: list[LoadResult], t: Table, name: str, n_lines: int) -> LoadResult:
    """One LoadResult from the chunks of one file: rows in file order, the canonical dtypes the
    whole table would get, counts summed, each warning once (blank lines counted over the file)."""
    data = concat_chunks([r.data for r in results], t)
    excl = [r.exclusions for r in results if not r.exclusions.empty]
    n_read = sum(r.n_read for r in results)
    blank, empty = f"{name}: 空行 ", f"{name}: 見出し行のみ"
    warnings = []
    for r in results:
        warnings += [w for w in r.warnings if w not in warnings and not w.startswith((blank, empty))]
    n_blank = n_lines - n_read
    if n_blank:
        at = next((i for i, w in enumerate(warnings) if w.startswith(f"{name}: 定義にない列")), len(warnings))
        warnings.insert(at, f"{name}: 空行 {n_blank} 行は読み飛ばしました")
    return LoadResult(data=data, exclusions=pd.concat(excl, ignore_index=True) if excl else _empty_exclusions(),
                      n_read=n_read, n_kept=sum(r.n_kept for r in results),
                      n_dropped=sum(r.n_dropped for r in results), warnings=warnings,
                      extra_columns=pd.concat([r.extra_columns for r in results], ignore_index=True),
                      file=name, table=t.name, row_numbers=np.concatenate([r.row_numbers for r in results]))


def _chunked(path: Path, chunk_rows: int | None) -> bool:
    """Whether `path` is read in chunks: a CSV/TSV/txt over CSV_CHUNK_BYTES or a Parquet file of more
    than CSV_CHUNK_ROWS rows (or any such file when `chunk_rows` is given). xlsx is always read
    whole: it is meant for small files (docs/design.md §8.4)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return chunk_rows is not None or path.stat().st_size > CSV_CHUNK_BYTES
    if suffix == ".parquet":
        rows = _parquet_rows(path)
        return rows is not None and (chunk_rows is not None or rows > CSV_CHUNK_ROWS)
    return False


def iter_table_chunks(path, table, column_map=None, known_munis=None, chunk_rows: int | None = None,
                      lookback=None, prefetch: bool = False, helper_stats: dict | None = None):
    """Read one input file chunk by chunk: yields (LoadResult of the chunk, its raw line count).

    A large CSV is read in chunks of `chunk_rows` (default CSV_CHUNK_ROWS) rows and a large Parquet
    file by record batches; a small file (and any xlsx) is one chunk, read as `read_table` reads it.
    Each chunk is validated on its own, with the file's row numbers; the first-row rule of
    duplicates looks back over the keys kept from the earlier chunks. `ChunkTally` adds the chunks
    up to the counts, exclusions and warnings of the whole file. Used by the streamed import
    (`hsutils.analysis.partition_import`, docs/design.md §8.4) and by `read_table`. `lookback`: the
    look-back of the duplicate rule for a chunked file (default a new `KeyLookback`; the streamed
    import gives the claims a `PersonPeriodLookback`, flat in memory). `prefetch`: a chunked file is
    read and checked (`_check_chunk`: everything but the look-back over the earlier chunks) in a
    helper process one chunk ahead of the caller (`_ChunkWorker`), so reading and parsing use a
    second core while the caller writes the previous chunk; the results are the same. `helper_stats`:
    a dict where the helper's peak memory is kept (`helper_peak_rss_mb`, the largest over the files).
    """
    path = Path(path)
    t = _get_table(table)
    name = path.name
    if not path.exists():
        raise DataError(f"{name}: ファイルが見つかりません（{path}）")
    mapping = _column_map_for(column_map, t.name)
    lookup = _header_lookup(t, mapping)
    ctx = _Ctx(table=t.name, excel=path.suffix.lower() in (".xlsx", ".xlsm"),
               known_munis=None if known_munis is None else frozenset(str(k) for k in known_munis))
    if _chunked(path, chunk_rows):
        # bounded memory: read, validate and count chunk by chunk; duplicates look back over the
        # keys of the earlier chunks
        seen = KeyLookback() if lookback is None else lookback
        checked = (_ChunkWorker(path, t.name, lookup, ctx, chunk_rows or CSV_CHUNK_ROWS, helper_stats) if prefetch
                   else _checked_chunks(path, t.name, lookup, ctx, chunk_rows or CSV_CHUNK_ROWS))
        any_chunk = False
        for ch, n_lines in checked:
            any_chunk = True
            yield _finish_checks(ch, seen), n_lines
        if any_chunk:
            return
    raw = _read_raw(path, lookup)
    yield _validate_raw(raw, t, name, lookup, ctx), None


def _checked_chunks(path: Path, table: str, lookup: dict[str, str], ctx: _Ctx, chunk_rows: int):
    """(`_check_chunk` of each chunk, its raw line count) of a CSV or Parquet file read in chunks."""
    t = _get_table(table)
    raws = (_read_parquet_chunks(path, chunk_rows) if path.suffix.lower() == ".parquet"
            else _read_csv_chunks(path, lookup, chunk_rows))
    for raw in raws:
        yield _check_chunk(raw, t, path.name, lookup, ctx), len(raw.frame)


class _ChunkWorker:
    """`_checked_chunks` run in a helper process (a new interpreter: `python -c`, so nothing of the
    caller's `__main__` is run again), its results sent back pickled through a pipe. The helper
    blocks while the caller has not taken its last chunk, so it works at most one chunk ahead
    (memory: two chunks). An error in the helper (a DataError of the file) is raised in the caller;
    the helper is stopped when the caller stops reading."""

    def __init__(self, path: Path, table: str, lookup: dict[str, str], ctx: _Ctx, chunk_rows: int,
                 stats: dict | None = None):
        self.args = (str(path), table, lookup, ctx, chunk_rows)
        self.stats = stats

    def __iter__(self):
        import pickle
        import subprocess
        import sys

        proc = subprocess.Popen([sys.executable, "-c", "from hsutils.inputs import io; io._chunk_worker_main()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            pickle.dump(self.args, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.close()
            while True:
                try:
                    kind, value, n_lines = pickle.load(proc.stdout)
                except EOFError:
                    raise DataError(f"{Path(self.args[0]).name}: 読み込みの補助プロセスが異常終了しました"
                                    f"（終了コード {proc.wait()}。メモリ不足の可能性があります）") from None
                if kind == "end":
                    if self.stats is not None:
                        self.stats["helper_peak_rss_mb"] = max(self.stats.get("helper_peak_rss_mb", 0.0), value)
                    break
                if kind == "error":
                    raise value
                yield value, n_lines
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _own_peak_mb() -> float:
    """This process's peak resident memory (MB): Linux VmHWM, which starts afresh with the new program
    (ru_maxrss keeps the RSS of the process it was forked from, here the caller's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def _chunk_worker_main() -> None:
    """The helper process of `_ChunkWorker`: its arguments from stdin, ("chunk", `_Checked`, raw line
    count) per chunk then ("end", its peak memory in MB, None), or ("error", exception, None), pickled
    to stdout."""
    import pickle
    import sys

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the pipe
    try:
        path, table, lookup, ctx, chunk_rows = pickle.load(sys.stdin.buffer)
        for ch, n_lines in _checked_chunks(Path(path), table, lookup, ctx, chunk_rows):
            pickle.dump(("chunk", ch, n_lines), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        msg = ("end", _own_peak_mb(), None)
    except Exception as e:  # the caller raises it (DataError: the Japanese message of the file)
        msg = ("error", e, None)
    try:
        pickle.dump(msg, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
    except BrokenPipeError:  # the caller stopped reading
        pass


class ChunkTally:
    """The counts, exclusions and warnings of one file read in chunks (`iter_table_chunks`), as
    `read_table` gives them for the whole file, without keeping the rows; and whether each column
    is complete over the file (its canonical dtype: `final_dtypes`)."""

    def __init__(self, table, name: str):
        self.table, self.name = _get_table(table), name
        self.results: list[LoadResult] = []
        self.n_lines = 0
        self.whole = False
        self.complete = {c.name: True for c in self.table.columns}

    def add(self, r: LoadResult, n_lines: int | None) -> None:
        if n_lines is None:
            self.whole = True  # read whole: its warnings are final
        else:
            self.n_lines += n_lines
        for c in self.table.columns:
            if self.complete[c.name] and len(r.data) and not bool(r.data[c.name].notna().all()):
                self.complete[c.name] = False
        # empty_like: an empty slice (even copied) keeps the whole chunk's arrays alive
        self.results.append(LoadResult(data=empty_like(r.data), exclusions=r.exclusions, n_read=r.n_read,
                                       n_kept=r.n_kept, n_dropped=r.n_dropped, warnings=r.warnings,
                                       extra_columns=empty_like(r.extra_columns), file=r.file, table=r.table,
                                       row_numbers=np.zeros(0, dtype=np.int64)))

    def result(self) -> LoadResult:
        """The file's LoadResult without rows (data and row numbers empty)."""
        if self.whole:
            return self.results[0]
        return _combine_chunks(self.results, self.table, self.name, self.n_lines)

    def final_dtypes(self) -> dict[str, str]:
        """Canonical dtype of every column over the whole file (as `_combine_chunks` sets them)."""
        return {c.name: _canonical_dtype(c, self.complete[c.name]) for c in self.table.columns}


def final_dtypes(table, complete: dict[str, bool]) -> dict[str, str]:
    """Canonical dtype of each column of `table` given whether it is complete (no missing value)."""
    t = _get_table(table)
    return {c.name: _canonical_dtype(c, bool(complete.get(c.name, True))) for c in t.columns}


def open_dtypes(table) -> dict[str, str]:
    """The canonical dtypes of `table` when nothing is known about completeness (nullable integer):
    chunks are stored in these, and cast to `final_dtypes` once the whole table has been read."""
    t = _get_table(table)
    return {c.name: _canonical_dtype(c, False) for c in t.columns}


def read_table(path, table, column_map=None, known_munis=None, chunk_rows: int | None = None) -> LoadResult:
    """Read one input file into the canonical frame of `table` (docs/internal_api.md).

    `column_map`: YAML path or dict ``{table: {header in the file: canonical name}}``.
    `known_munis`: codes of the municipality master; other codes drop the row.
    A large CSV or Parquet file is read in chunks (`iter_table_chunks`) and put together.
    Raises DataError (Japanese, names the file) when the file cannot be used at all.
    """
    path = Path(path)
    t = _get_table(table)
    results, n_lines, whole = [], 0, False
    for r, n in iter_table_chunks(path, t.name, column_map=column_map, known_munis=known_munis,
                                  chunk_rows=chunk_rows):
        results.append(r)
        whole = n is None
        n_lines += n or 0
    if whole:
        return results[0]
    return _combine_chunks(results, t, path.name, n_lines)


def read_text_frame(frame: pd.DataFrame, table, name: str, row_numbers=None,
                    known_munis=None) -> LoadResult:
    """Validate a frame of text cells whose columns are canonical names, exactly as `read_table`
    validates a file (same parsers, ranges, duplicate rule, exclusions format).

    Used by readers of other formats (e.g. `hsutils.inputs.tokutei_xml`); `row_numbers` label the rows in
    the exclusions (default 1, 2, ...).
    """
    t = _get_table(table)
    frame = frame.astype("str").fillna("").reset_index(drop=True)
    rows = np.arange(1, len(frame) + 1, dtype=np.int64) if row_numbers is None else \
        np.asarray(row_numbers, dtype=np.int64)
    raw = _Raw(frame=frame, headers=[str(c) for c in frame.columns], title_rows=0, row_numbers=rows)
    ctx = _Ctx(table=t.name,
               known_munis=None if known_munis is None else frozenset(str(k) for k in known_munis))
    return _validate_raw(raw, t, name, _header_lookup(t, {}), ctx)


def iter_text_frames(chunks, table, name: str, known_munis=None):
    """`read_text_frame` over consecutive chunks of one table, one chunk at a time: `chunks` yields
    (frame, row_numbers) in row order; yields (LoadResult of the chunk, its line count) as
    `iter_table_chunks` does for a file read in chunks (`ChunkTally` adds them up). Each chunk is
    validated on its own (bounded memory) and the first-row rule of duplicates looks back over the
    keys kept from the earlier chunks, as for a large CSV file. Used by the streaming XML import
    (`hsutils.inputs.tokutei_xml`, docs/design.md §8.4)."""
    t = _get_table(table)
    ctx = _Ctx(table=t.name,
               known_munis=None if known_munis is None else frozenset(str(k) for k in known_munis))
    lookup = _header_lookup(t, {})
    seen = KeyLookback()
    for frame, row_numbers in chunks:
        frame = frame.astype("str").fillna("").reset_index(drop=True)
        raw = _Raw(frame=frame, headers=[str(c) for c in frame.columns], title_rows=0,
                   row_numbers=np.asarray(row_numbers, dtype=np.int64))
        n_lines = len(frame)
        del frame
        yield _validate_raw(raw, t, name, lookup, ctx, seen_keys=seen), n_lines


def read_text_frames(chunks, table, name: str, known_munis=None) -> LoadResult:
    """`iter_text_frames` put together: the result of `read_text_frame` on the whole frame."""
    t = _get_table(table)
    results, n_lines = [], 0
    for r, n in iter_text_frames(chunks, t, name, known_munis=known_munis):
        results.append(r)
        n_lines += n
    return _combine_chunks(results, t, name, n_lines)


class KeyLookback:
    """The keys kept from the earlier chunks of one file, for the first-row rule of duplicates
    (docs/design.md §8.4), in 16 bytes a key instead of the key's Python objects (a MultiIndex of
    100 million claim keys needs several GB). Each key is stored as two independent 64-bit hashes
    of its normalised values; sorted runs of the first hash (the second beside it) are merged as
    they grow, so a chunk is checked with one binary search per run. Two keys count as equal only
    when both hashes match: a chance match of two different keys has a probability of about
    n² / 2^129, nil for any file."""

    _HASH_KEYS = ("0123456789abcdef", "hsutils-lookback")

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(a) for a, _ in self.runs)

    @staticmethod
    def _normalised(keys: pd.DataFrame) -> pd.DataFrame:
        """The same key gives the same values whatever dtype a chunk parsed it to (int64, Int64,
        float; object or Arrow strings; dates)."""
        cols = {}
        for c in keys.columns:
            s = keys[c]
            if pd.api.types.is_datetime64_any_dtype(s):
                cols[c] = s.to_numpy(dtype="datetime64[ns]").view("int64")
            elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                cols[c] = s.to_numpy(dtype="float64", na_value=np.nan)
            else:
                cols[c] = s.astype(object).to_numpy(dtype=object)
        return pd.DataFrame(cols)

    def _hashes(self, keys: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        norm = self._normalised(keys)
        return tuple(pd.util.hash_pandas_object(norm, index=False, hash_key=k).to_numpy()
                     for k in self._HASH_KEYS)

    def check(self, keys: pd.DataFrame, dup: np.ndarray) -> np.ndarray:
        """One chunk's rule: `dup` (repeats within the chunk) or-ed with the keys added before, and
        the keys of the other rows added (each key hashed once: `contains` then `add`)."""
        h1, h2 = self._hashes(keys)
        if len(self):
            dup = dup | self._contains(h1, h2)
        self._add(h1[~dup], h2[~dup])
        return dup

    def contains(self, keys: pd.DataFrame) -> np.ndarray:
        """Whether each row's key was added before."""
        return self._contains(*self._hashes(keys))

    def _contains(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        found = np.zeros(len(h1), dtype=bool)
        for a, b in self.runs:  # a loop over runs (about log2 of the chunks)
            lo = np.searchsorted(a, h1, side="left")
            hi = np.searchsorted(a, h1, side="right")
            one = hi - lo == 1
            found[one] |= b[lo[one]] == h2[one]
            for i in np.flatnonzero(hi - lo > 1):  # keys sharing a first hash: rare
                found[i] |= bool((b[lo[i]:hi[i]] == h2[i]).any())
        return found

    def add(self, keys: pd.DataFrame) -> None:
        if len(keys):
            self._add(*self._hashes(keys))

    def _add(self, h1: np.ndarray, h2: np.ndarray) -> None:
        if not len(h1):
            return
        order = np.argsort(h1, kind="stable")
        self.runs.append((h1[order], h2[order]))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (a1, b1), (a2, b2) = self.runs[-2], self.runs.pop()
            self.runs[-1] = self._merge(a1, b1, a2, b2)

    @staticmethod
    def _merge(a1, b1, a2, b2) -> tuple[np.ndarray, np.ndarray]:
        """Two sorted runs as one, placed by binary search (no sort, no concatenated copy: the
        largest merge is the look-back's peak)."""
        at = np.searchsorted(a1, a2, side="right") + np.arange(len(a2))
        a = np.empty(len(a1) + len(a2), dtype=a1.dtype)
        b = np.empty(len(a), dtype=b1.dtype)
        other = np.ones(len(a), dtype=bool)
        other[at] = False
        a[at], b[at] = a2, b2
        a[other], b[other] = a1, b1
        return a, b


class PersonPeriodLookback:
    """The duplicate look-back of a table keyed by (person, period), e.g. claims by (person_id, ym),
    when the persons are known beforehand (the streamed import knows the enrollment before the
    claims, docs/design.md §8.4): one bit per (person, period) seen, so its memory follows persons ×
    periods and stays flat however many rows the file has (`KeyLookback` keeps 16 bytes per row:
    1.7 GB for the 106 million claim-months of scale 40). Exact (no hash). Rows whose person is not
    among the known ones fall back to a `KeyLookback`. Same interface and answers as `KeyLookback`.

    `person_codes(values)`: each person id's position among the `n_persons` known ones (-1: unknown);
    `period(values)`: the second key column as integers (e.g. YYYYMM → months since year 0)."""

    def __init__(self, person_codes, n_persons: int, period=None) -> None:
        self.person_codes, self.n_persons = person_codes, int(n_persons)
        self.period = period or (lambda v: np.asarray(v, dtype=np.float64).astype(np.int64))
        self.stride = (self.n_persons + 7) // 8  # bytes per period: one bit per person
        self.first = 0                           # the period of the bitmap's first row
        self.bits = np.zeros((0, self.stride), dtype=np.uint8)
        self.other = KeyLookback()
        self.n = 0
        self.last_codes = None  # person codes of the rows kept by the last `check`

    def __len__(self) -> int:
        return self.n

    def _split(self, keys: pd.DataFrame):
        person, period = keys.columns[0], keys.columns[1]
        code = np.asarray(self.person_codes(keys[person]), dtype=np.int64)
        per = self.period(keys[period].to_numpy(dtype=np.float64, na_value=np.nan))
        return code, per, code >= 0

    def check(self, keys: pd.DataFrame, dup: np.ndarray) -> np.ndarray:
        """As `KeyLookback.check`, the persons looked up once; `last_codes` then holds the person
        code of each row not repeated (the rows kept: the streamed import writes them with these)."""
        code, per, known = self._split(keys)
        if self.n:
            dup = dup | self._contains(keys, code, per, known)
        new = ~dup
        self._add(keys[new].reset_index(drop=True) if (~known[new]).any() else None, code[new], per[new], known[new])
        self.last_codes = code[new]
        return dup

    def contains(self, keys: pd.DataFrame) -> np.ndarray:
        return self._contains(keys, *self._split(keys))

    def _contains(self, keys: pd.DataFrame, code, per, known) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        row = per - self.first
        inside = known & (row >= 0) & (row < len(self.bits))
        c, r = code[inside], row[inside]
        found[inside] = (self.bits[r, c >> 3] >> (c & 7).astype(np.uint8)) & 1 == 1
        if len(self.other) and (~known).any():
            found[~known] = self.other.contains(keys[~known].reset_index(drop=True))
        return found

    def add(self, keys: pd.DataFrame) -> None:
        if len(keys):
            self._add(keys, *self._split(keys))

    def _add(self, keys: pd.DataFrame | None, code, per, known) -> None:
        """Add rows given their person codes and periods (`keys`: their key values, needed only
        for the rows of unknown persons)."""
        if not len(code):
            return
        self.n += len(code)
        if (~known).any():
            self.other.add(keys[~known].reset_index(drop=True))
        if not known.any():
            return
        lo, hi = int(per[known].min()), int(per[known].max())
        if not len(self.bits):
            self.first, self.bits = lo, np.zeros((hi - lo + 1, self.stride), dtype=np.uint8)
        elif lo < self.first or hi >= self.first + len(self.bits):  # more periods: widen the bitmap
            new_first = min(lo, self.first)
            rows = max(hi + 1, self.first + len(self.bits)) - new_first
            grown = np.zeros((rows, self.stride), dtype=np.uint8)
            grown[self.first - new_first:self.first - new_first + len(self.bits)] = self.bits
            self.first, self.bits = new_first, grown
        c, r = code[known], per[known] - self.first
        np.bitwise_or.at(self.bits, (r, c >> 3), np.left_shift(1, c & 7).astype(np.uint8))


def ym_months(ym) -> np.ndarray:
    """YYYYMM → months since year 0 (consecutive months are consecutive integers)."""
    ym = np.asarray(ym, dtype=np.float64).astype(np.int64)
    return ym // 100 * 12 + ym % 100 - 1


def _validate_raw(raw: _Raw, t: Table, name: str, lookup: dict[str, str], ctx: _Ctx,
                  seen_keys: KeyLookback | None = None) -> LoadResult:
    """Validate one file (or one chunk of it: `seen_keys` then holds the keys kept from the earlier
    chunks, updated here)."""
    return _finish_checks(_check_chunk(raw, t, name, lookup, ctx), seen_keys)


@dataclass
class _Checked:
    """A file or chunk validated up to the look-back of the duplicate rule (`_check_chunk`): what
    depends on the chunk alone, computed where the chunk was read (a helper process of the
    streamed import, `iter_table_chunks(..., prefetch=True)`); `_finish_checks` adds the rule's
    look-back over the earlier chunks. Rows are those of the chunk without blank lines; "open" rows
    are those not dropped for a bad or blank required value."""
    table: str
    name: str
    warnings: list
    n_read: int
    rows: np.ndarray                 # file row number of each row
    drop: np.ndarray                 # bool per row: dropped for a required value
    excl_required: list              # exclusion frames of the dropped rows (per required column)
    key: list                        # the key columns (empty: no duplicate rule)
    keys: pd.DataFrame | None        # parsed key values of the open rows
    dup: np.ndarray                  # bool per open row: a repeated key within the chunk
    key_text: list                   # the key cells of the open rows as written (for the exclusions)
    bad_optional: list               # (column ja, open-row positions, cells, reasons) per optional column
    data: pd.DataFrame               # the open rows assembled (`_assemble`)
    extra: pd.DataFrame              # the open rows' columns not in the schema


def _check_chunk(raw: _Raw, t: Table, name: str, lookup: dict[str, str], ctx: _Ctx) -> _Checked:
    mapped, extra_cols, warnings = _map_headers(raw, t, lookup, name)
    _check_required(mapped, t, raw, name)

    frame = raw.frame
    # Fully blank lines (e.g. trailing ',,,,' lines from Excel) are not data rows.
    nonblank = (frame != "").any(axis=1).to_numpy() if frame.shape[1] else np.zeros(len(frame), bool)
    n_blank = int((~nonblank).sum())
    if n_blank:
        frame = frame.loc[nonblank].reset_index(drop=True)
        warnings.append(f"{name}: 空行 {n_blank} 行は読み飛ばしました")
    rows = raw.row_numbers[nonblank]
    n_read = len(frame)
    if n_read == 0:
        warnings.append(f"{name}: 見出し行のみでデータ行がありません（0 行）")
    if extra_cols:
        warnings.append(f"{name}: 定義にない列 {len(extra_cols)} 列は分析に使わず別に保管しました: "
                        + "、".join(extra_cols))

    parsed: dict[str, _Column] = {}
    for fcol, canon in mapped.items():  # loop over columns; each column is vectorised
        parsed[canon] = _parse_column(frame[fcol], t.column(canon), ctx)
    raw_by_canon = {canon: frame[fcol] for fcol, canon in mapped.items()}

    excl_parts: list[pd.DataFrame] = []
    drop = np.zeros(n_read, dtype=bool)
    # 1) rows with a bad/blank required value: the row is dropped; first problem is listed.
    for c in t.columns:
        if not c.required or c.name not in parsed:
            continue
        pc = parsed[c.name]
        problem = (pc.bad | pc.missing) & ~drop
        if not problem.any():
            continue
        reasons = np.where(pc.missing[problem], f"{c.ja} が空欄です（必須項目）",
                           pc.reasons_u[pc.codes[problem]])
        excl_parts.append(_exclusion_frame(name, t.name, rows[problem], c.ja,
                                           raw_by_canon[c.name][problem], reasons,
                                           SCOPE_ROW))
        drop |= problem
    open_rows = ~drop
    # 2) duplicates of the key among the remaining rows of the chunk (the first is kept)
    key = [k for k in t.key if k in parsed]
    keys, dup, key_text = None, np.zeros(int(open_rows.sum()), dtype=bool), []
    if key and len(key) == len(t.key):
        keys = pd.DataFrame({k: parsed[k].values for k in key})[open_rows].reset_index(drop=True)
        dup = keys.duplicated(keep="first").to_numpy()
        key_text = [raw_by_canon[k][open_rows].reset_index(drop=True) for k in key]
    else:
        key = []
    # 3) bad values in optional columns of the open rows (listed for the rows finally kept)
    bad_optional = []
    for c in t.columns:
        if c.required or c.name not in parsed:
            continue
        pc = parsed[c.name]
        bad = pc.bad[open_rows]
        if bad.any():
            at = np.flatnonzero(bad)
            bad_optional.append((c.ja, at, raw_by_canon[c.name][open_rows].to_numpy(dtype=object)[at],
                                 pc.reasons_u[pc.codes[open_rows][at]]))
    data = _assemble(t, parsed, open_rows)
    extra = frame.loc[open_rows, extra_cols].reset_index(drop=True) if extra_cols else \
        pd.DataFrame(index=range(int(open_rows.sum())))
    if extra_cols:  # text, whatever the reader's representation (`_typed_text`)
        extra = extra.astype({c: "str" for c in extra.columns if isinstance(extra[c].dtype, pd.CategoricalDtype)})
    return _Checked(table=t.name, name=name, warnings=warnings, n_read=n_read, rows=rows, drop=drop,
                    excl_required=excl_parts, key=key, keys=keys, dup=dup, key_text=key_text,
                    bad_optional=bad_optional, data=data, extra=extra)


def _finish_checks(ch: _Checked, seen_keys: KeyLookback | None) -> LoadResult:
    """The LoadResult of a checked chunk (`_check_chunk`): the duplicate rule also looks back over
    the keys kept from the earlier chunks (`seen_keys`, updated here); exclusions in the order of
    the file's rows."""
    t, name = _get_table(ch.table), ch.name
    open_rows = ~ch.drop
    excl_parts = list(ch.excl_required)
    dup = ch.dup
    if ch.key:
        if seen_keys is not None:
            dup = seen_keys.check(ch.keys, dup)
        if dup.any():
            label = "×".join(t.column(k).ja for k in ch.key)
            shown = ch.key_text[0][dup].to_numpy(dtype=object)
            for text in ch.key_text[1:]:
                shown = shown + " / " + text[dup].to_numpy(dtype=object)
            excl_parts.append(_exclusion_frame(
                name, t.name, ch.rows[open_rows][dup], label, shown,
                f"重複（{label} が同じ行が先にあるため、最初の行を採用）", SCOPE_ROW))
    open_at = np.flatnonzero(open_rows)
    for ja, at, cells, reasons in ch.bad_optional:
        kept = ~dup[at]
        if kept.any():
            excl_parts.append(_exclusion_frame(name, t.name, ch.rows[open_at[at[kept]]], ja, cells[kept],
                                               reasons[kept], SCOPE_VALUE))
    keep = open_rows.copy()
    keep[open_at[dup]] = False
    data, extra = ch.data, ch.extra
    if dup.any():  # the open rows without the repeated keys, in the dtypes of the rows kept
        data = data[~dup].reset_index(drop=True)
        extra = extra[~dup].reset_index(drop=True)
        for c in t.columns:
            want = _canonical_dtype(c, bool(data[c.name].notna().all()))
            if str(data[c.name].dtype) != want:
                data[c.name] = data[c.name].astype(want)
    exclusions = pd.concat(excl_parts, ignore_index=True) if excl_parts else _empty_exclusions()
    if not exclusions.empty:
        exclusions = exclusions.sort_values(["row", "scope"], kind="stable").reset_index(drop=True)
    n_kept = int(keep.sum())
    n_dropped = ch.n_read - n_kept
    assert len(data) == n_kept, "row accounting broken"
    return LoadResult(data=data, exclusions=exclusions, n_read=ch.n_read, n_kept=n_kept,
                      n_dropped=n_dropped, warnings=ch.warnings, extra_columns=extra, file=name,
                      table=t.name, row_numbers=ch.rows[keep])


def _missing_series(dtype: str, n: int) -> pd.Series:
    """All-missing column of a canonical dtype (an optional column the file does not have)."""
    if dtype == "float64":
        return pd.Series(np.full(n, np.nan))
    if dtype == "datetime64[ns]":
        return pd.Series(np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]"))
    if dtype == "str":
        return pd.Series(np.full(n, np.nan, dtype=object), dtype="str")
    return pd.Series(pd.array([pd.NA] * n, dtype=dtype))


def _assemble(t: Table, parsed: dict[str, _Column], keep: np.ndarray) -> pd.DataFrame:
    """Canonical frame of the kept rows, every schema column with its canonical dtype."""
    n = int(keep.sum())
    cols = {}
    for c in t.columns:
        if c.name in parsed:
            s = parsed[c.name].values[keep].reset_index(drop=True)
        else:
            s = _missing_series(_canonical_dtype(c, complete=False), n)
        default = DEFAULTS_WHEN_OMITTED.get((t.name, c.name))
        if default is not None:
            s = s.astype("boolean").fillna(default)
        complete = bool(s.notna().all())
        dtype = _canonical_dtype(c, complete)
        if dtype in ("int64", "Int64") and s.dtype != "boolean":
            s = pd.to_numeric(s, errors="coerce").astype("Int64")
        cols[c.name] = s.astype(dtype)
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

def _cache_key(path: Path, table: str, mapping: dict, known_munis) -> str:
    h = hashlib.sha256(_files.sha256_file(path).encode())
    h.update(json.dumps({"table": table, "map": mapping, "schema": SCHEMA_VERSION,
                         "suffix": path.suffix.lower(),
                         "munis": sorted(known_munis) if known_munis is not None else None},
                        ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return h.hexdigest()[:32]


def _cache_paths(cache_dir: Path, table: str, key: str) -> dict[str, Path]:
    stem = cache_dir / f"{table}_{key}"
    return {"data": Path(f"{stem}.data.parquet"), "excl": Path(f"{stem}.exclusions.parquet"),
            "extra": Path(f"{stem}.extra.parquet"), "meta": Path(f"{stem}.meta.json")}


#: the column of a cached table's data file that holds each row's row number (`LoadResult.row_numbers`)
CACHE_ROW = "__row_number__"


def _cache_meta(paths: dict[str, Path]) -> dict | None:
    """The meta of a complete cache entry (written last), or None (absent, damaged or of an older
    layout: the entry is then simply rebuilt)."""
    if not all(p.exists() for p in paths.values()):
        return None
    try:
        meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
        return meta if isinstance(meta.get("dtypes"), dict) else None
    except Exception:
        return None


def _cached_result(paths: dict[str, Path], meta: dict, data: pd.DataFrame, row_numbers) -> LoadResult | None:
    try:
        excl = pd.read_parquet(paths["excl"])
        extra = pd.read_parquet(paths["extra"])
    except Exception:  # a damaged cache is simply rebuilt
        return None
    return LoadResult(data=data, exclusions=excl, n_read=meta["n_read"], n_kept=meta["n_kept"],
                      n_dropped=meta["n_dropped"], warnings=meta["warnings"], extra_columns=extra,
                      file=meta["file"], table=meta["table"],
                      row_numbers=np.asarray(row_numbers, dtype=np.int64), from_cache=True)


def _cached_frame(table, meta: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """A cached data frame (`CACHE_ROW` taken out) in the dtypes the table had when it was cached."""
    data = table.to_pandas()
    rows = data.pop(CACHE_ROW).to_numpy(dtype=np.int64)
    dtypes = meta["dtypes"]
    return data.astype({c: d for c, d in dtypes.items() if str(data[c].dtype) != d}), rows


def _read_cached(paths: dict[str, Path]) -> LoadResult | None:
    """A cache entry read whole (None when there is no usable entry)."""
    import pyarrow.parquet as pq

    meta = _cache_meta(paths)
    if meta is None:
        return None
    try:
        data, rows = _cached_frame(pq.read_table(paths["data"]), meta)
    except Exception:  # a damaged cache is simply rebuilt
        return None
    return _cached_result(paths, meta, data, rows)


def read_cached_chunks(paths: dict[str, Path], sink: Callable) -> LoadResult | None:
    """A cache entry handed to `sink(data, row_numbers)` one row group (one chunk as it was
    written, `CacheWriter.add`) at a time, in the table's dtypes; returns the entry's LoadResult
    without rows (data empty, no row numbers), or None when there is no usable entry (then `sink`
    was not called)."""
    import pyarrow.parquet as pq

    meta = _cache_meta(paths)
    if meta is None:
        return None
    try:
        pf = pq.ParquetFile(paths["data"])
        empty = _cached_result(paths, meta, *_cached_frame(pf.schema_arrow.empty_table(), meta))
    except Exception:  # a damaged cache is simply rebuilt
        return None
    if empty is None:
        return None
    with pf:
        for i in range(pf.num_row_groups):  # a loop over the chunks
            sink(*_cached_frame(pf.read_row_group(i), meta))
    return empty


class CacheWriter:
    """A cache entry (`read_table_cached`, the XML reader's) written chunk by chunk: the data file is
    a Parquet file written one chunk (row group) at a time in the table's open dtypes, with each
    row's row number (`CACHE_ROW`); `finish` writes the exclusions, the extra columns and the meta
    (last: it marks a complete entry) with the dtypes of the whole table (`final_dtypes`). Memory:
    one chunk. `abandon` removes the unfinished data file."""

    def __init__(self, paths: dict[str, Path], table):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.paths, self.table = paths, _get_table(table)
        self.complete = {c.name: True for c in self.table.columns}
        self.open = open_dtypes(self.table)
        empty = pd.DataFrame({c: pd.Series(dtype=d) for c, d in self.open.items()})
        empty[CACHE_ROW] = pd.Series(dtype="int64")
        self.schema = pa.Schema.from_pandas(empty, preserve_index=False)
        paths["data"].parent.mkdir(parents=True, exist_ok=True)
        self._tmp = paths["data"].with_name(f".{paths['data'].name}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, self.schema)

    def add(self, data: pd.DataFrame, row_numbers) -> None:
        import pyarrow as pa

        for c in self.complete:
            if self.complete[c] and len(data) and not bool(data[c].notna().all()):
                self.complete[c] = False
        data = data[list(self.open)].astype({c: d for c, d in self.open.items() if str(data[c].dtype) != d})
        data[CACHE_ROW] = np.asarray(row_numbers, dtype=np.int64)
        self._writer.write_table(pa.Table.from_pandas(data, schema=self.schema, preserve_index=False))

    def finish(self, r: LoadResult) -> None:
        """Complete the entry with `r`'s exclusions, extra columns, counts and warnings (its rows,
        if any, are not written: they were given to `add`)."""
        import os

        self._writer.close()
        os.replace(self._tmp, self.paths["data"])
        for key, frame in (("excl", r.exclusions), ("extra", r.extra_columns.astype("str"))):
            with _files.atomic_path(self.paths[key]) as tmp:
                frame.to_parquet(tmp, index=False)
        meta = {"n_read": r.n_read, "n_kept": r.n_kept, "n_dropped": r.n_dropped,
                "warnings": r.warnings, "file": r.file, "table": r.table,
                "dtypes": final_dtypes(self.table, self.complete)}
        _files.atomic_write_text(self.paths["meta"], json.dumps(meta, ensure_ascii=False))  # last

    def abandon(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


def _write_cache(paths: dict[str, Path], r: LoadResult) -> None:
    """A whole LoadResult into the cache (`CacheWriter`, one chunk)."""
    w = CacheWriter(paths, r.table)
    try:
        w.add(r.data, r.row_numbers)
        w.finish(r)
    except BaseException:
        w.abandon()
        raise


def read_table_cached(path, table, column_map=None, known_munis=None, cache_dir=None) -> LoadResult:
    """`read_table` with a Parquet cache keyed by the file's sha256, the column map, the
    known municipality codes and the schema version. A hit parses nothing."""
    if cache_dir is None:
        return read_table(path, table, column_map=column_map, known_munis=known_munis)
    path = Path(path)
    t = _get_table(table)
    mapping = _column_map_for(column_map, t.name)
    known = None if known_munis is None else sorted(str(k) for k in known_munis)
    paths = _cache_paths(Path(cache_dir), t.name, _cache_key(path, t.name, mapping, known))
    cached = _read_cached(paths)
    if cached is not None:
        CACHE_STATS["hits"] += 1
        return cached
    CACHE_STATS["misses"] += 1
    result = read_table(path, t.name, column_map={t.name: mapping}, known_munis=known_munis)
    _write_cache(paths, result)
    return result


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------

def accepted_file_stems(table: str) -> list[str]:
    """File names (without extension) accepted for a table, in order of preference."""
    t = _get_table(table)
    return list(dict.fromkeys([t.name, t.ja, *FILE_NAME_ALIASES.get(t.name, ())]))


def find_table_files(folder) -> tuple[dict[str, Path], list[str]]:
    """Match the files of `folder` to tables by name (see `accepted_file_stems`).

    Returns (table -> file, Japanese notes about ambiguous or unused files).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "~$")))
    excel_locks = sorted(p.name for p in folder.iterdir() if p.name.startswith("~$"))
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        if p.suffix.lower() in FILE_EXTENSIONS:
            by_stem.setdefault(_header_key(p.stem), []).append(p)
    found: dict[str, Path] = {}
    notes: list[str] = []
    used: set[Path] = set()
    for tname in TABLES:
        candidates = [p for stem in accepted_file_stems(tname)
                      for p in sorted(by_stem.get(_header_key(stem), []),
                                      key=lambda q: FILE_EXTENSIONS.index(q.suffix.lower()))]
        if not candidates:
            continue
        found[tname] = candidates[0]
        used.update(candidates)
        if len(candidates) > 1:
            notes.append(f"{TABLES[tname].ja}: 候補が複数あります（{'、'.join(c.name for c in candidates)}）。"
                         f"{candidates[0].name} を使います")
    if excel_locks:
        notes.append("Excel のロックファイルは使いません（Excel で開いているファイルがあれば閉じてください）: "
                     + "、".join(excel_locks))
    unused = [p.name for p in files if p not in used and not _is_xml_input(p)
              and p.suffix.lower() not in (".uke", ".yaml", ".yml") and p.name != "uke_person_link.csv"]
    if unused:
        notes.append("表に対応しないため使わないファイル: " + "、".join(unused))
    return found, notes


def _is_xml_input(p: Path) -> bool:
    """特定健診 XML archives and their helper tables (read by `hsutils.inputs.tokutei_xml`)."""
    from hsutils.inputs import tokutei_xml

    return p.suffix.lower() in (".zip", ".xml") or p.name in tokutei_xml.HELPER_FILES


def _kenshin_from_xml(folder: Path, files: dict[str, Path]) -> bool:
    """True when 健診 is to be read from XML archives: no kenshin file, archives present."""
    from hsutils.inputs import tokutei_xml

    return "kenshin" not in files and tokutei_xml.has_xml_sources(folder)


def _files_found_text(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return "、".join(names) if names else "（ファイルなし）"


def _require_folder(folder) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"フォルダ {folder} が見つかりません")
    return folder


def plan_folder(folder, column_map=None) -> tuple[Path, dict, dict[str, Path], list[str], bool]:
    """The files of an input folder, before reading any: (folder, column map, table -> file, notes,
    whether 健診 comes from XML archives). Raises DataError when a required table has no file."""
    folder = _require_folder(folder)
    cmap = load_column_map(column_map)
    files, notes = find_table_files(folder)
    kenshin_xml = _kenshin_from_xml(folder, files)
    missing = [t for t in REQUIRED_TABLES if t not in files and not (t == "kenshin" and kenshin_xml)]
    if missing:
        need = "、".join(f"{TABLES[t].ja}（{t}.csv など）" for t in missing)
        raise DataError(f"{folder}: 必須のファイルがありません: {need}。"
                        f"見つかったファイル: {_files_found_text(folder)}")
    return folder, cmap, files, notes, kenshin_xml


def summary_row(r: LoadResult) -> dict:
    """The import_summary row of one file."""
    return {"table": r.table, "file": r.file, "read": r.n_read, "kept": r.n_kept,
            "dropped_rows": r.n_dropped, "excluded_values": r.n_excluded_values}


def uke_summary_row(counts: dict, n_files: int) -> dict:
    """The import_summary row of the UKE files (receipts: read = kept + excluded)."""
    k = counts
    return {"table": "uke", "file": f"UKE {n_files} ファイル", "read": k["receipts_read"],
            "kept": k["receipts_kept"] - k["receipts_unlinked"],
            "dropped_rows": k["receipts_excluded"] + k["receipts_unlinked"], "excluded_values": k["lines_excluded"]}


UKE_REPLACES_CSV = "{ja}: CSV とレセプト電算ファイルの両方があります。レセプト電算ファイルから作成した表を使います"


def load_dataset(folder, column_map=None, cache_dir=None) -> Dataset:
    """Load every table of an input folder (docs/internal_api.md).

    The municipality master is read first so that the person-level tables are checked against
    its codes. enrollment and kenshin are required; missing optional tables are empty frames.
    """
    folder, cmap, files, notes, kenshin_xml = plan_folder(folder, column_map)
    results: dict[str, LoadResult] = {}
    warnings = list(notes)
    known = None
    for tname in LOAD_ORDER:
        if tname == "kenshin" and kenshin_xml:  # 特定健診 XML archives (hsutils.inputs.tokutei_xml)
            from hsutils.inputs import tokutei_xml

            enr = results.get("enrollment")
            r = tokutei_xml.read_folder_cached(folder, enr.data if enr else None,
                                               files.get("enrollment"), cache_dir=cache_dir,
                                               known_munis=known)
            results[tname] = r
            warnings.extend(r.warnings)
            continue
        if tname == "guidance" and kenshin_xml and tname not in files:  # hg08 in the same archives
            from hsutils.inputs import tokutei_xml

            enr = results.get("enrollment")
            r = tokutei_xml.read_folder_cached(folder, enr.data if enr else None, files.get("enrollment"),
                                               cache_dir=cache_dir, known_munis=known, table="guidance")
            if r is not None:  # None: the archives hold no 保健指導 document
                results[tname] = r
                warnings.extend(r.warnings)
            continue
        if tname not in files:
            continue
        r = read_table_cached(files[tname], tname, column_map=cmap,
                              known_munis=known if TABLES[tname].name != "municipalities" else None,
                              cache_dir=cache_dir)
        results[tname] = r
        warnings.extend(r.warnings)
        if tname == "municipalities":
            known = set(r.data["muni_code"].dropna().astype(str)) or None  # empty master: no check
    if "municipalities" not in files:
        warnings.append("市町村マスタがないため、市町村コードは検査数字と桁数だけを確認しました")
    tables = {tname: (results[tname].data if tname in results else empty_table(tname))
              for tname in TABLES}
    parts = [r.exclusions for r in results.values() if not r.exclusions.empty]
    uke_summary = _load_uke_claims(folder, tables, parts, warnings, cache_dir)
    exclusions = pd.concat(parts, ignore_index=True) if parts else _empty_exclusions()
    summary = pd.DataFrame([summary_row(r) for r in results.values()] + uke_summary, columns=SUMMARY_COLUMNS)
    return Dataset(tables=tables, exclusions=exclusions, summary=summary, warnings=warnings,
                   results=results, files=files)


def canonical_frame(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """A frame with canonical column names (built in memory, e.g. from UKE receipts) in the
    canonical dtypes of `table` — the same dtypes `read_table` gives for a CSV."""
    t = _get_table(table)
    n = len(df)
    cols = {}
    for c in t.columns:
        s = df[c.name].reset_index(drop=True) if c.name in df else _missing_series(
            _canonical_dtype(c, complete=False), n)
        dtype = _canonical_dtype(c, bool(s.notna().all()))
        if dtype == "boolean" and s.dtype != "boolean":
            s = pd.to_numeric(s, errors="coerce").astype("Int64")
        cols[c.name] = s.astype(dtype)
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def _load_uke_claims(folder: Path, tables: dict, excl_parts: list, warnings: list, cache_dir) -> list[dict]:
    """UKE receipts in the folder replace claims_monthly and fill diagnoses / prescriptions /
    medical_costs (hsutils.inputs.claims_import; docs/claims_rules.md §7)."""
    from hsutils.inputs import claims_import, uke

    files = uke.find_uke_files(folder)
    if not files:
        return []
    c = claims_import.load_claims(folder, files, enrollment=tables["enrollment"],
                                  cache_dir=Path(cache_dir) if cache_dir else None)
    for name, df in c.tables.items():
        if len(tables[name]):
            warnings.append(UKE_REPLACES_CSV.format(ja=TABLES[name].ja))
        tables[name] = canonical_frame(df, name)
    if len(c.exclusions):
        excl_parts.append(c.exclusions)
    return [uke_summary_row(c.counts, len(files))]


# ---------------------------------------------------------------------------------------------
# check_folder: the data-quality summary printed by `hsutils check DIR`
# ---------------------------------------------------------------------------------------------

def _examples(group: pd.DataFrame, k: int = 3) -> str:
    head = group.head(k)
    parts = [f"行 {int(r)}「{v}」" for r, v in zip(head["row"], head["value"])]
    more = "" if len(group) <= k else " ほか"
    return "、".join(parts) + more


def _describe_result(r: LoadResult) -> list[str]:
    lines = [f"  読み込み {r.n_read:,} 行 / 採用 {r.n_kept:,} 行 / 除外 {r.n_dropped:,} 行 / "
             f"値の除外 {r.n_excluded_values:,} 件（読み込み = 採用 + 除外）"]
    fys = r.fiscal_years()
    if len(fys) > 1:
        lines.append("  年度: " + "、".join(f"{y}年度 {n:,} 行" for y, n in fys.items())
                     + "（複数年度を含みます）")
    elif len(fys) == 1:
        (y, n), = fys.items()
        lines.append(f"  年度: {y}年度")
    if not r.exclusions.empty:
        lines.append("  除外の内訳（列・理由ごと）:")
        grouped = r.exclusions.groupby(["scope", "column", "reason"], sort=False)
        for (scope, column, reason), g in grouped:  # loop over a few reason groups
            what = "行を除外" if scope == SCOPE_ROW else "値を欠損扱い"
            lines.append(f"    [{what}] {column}: {reason} … {len(g):,} 件（例: {_examples(g)}）")
    for w in r.warnings:
        lines.append(f"  注意: {w}")
    return lines


def _claims_history_lines(claims: pd.DataFrame, fys: list[int]) -> list[str]:
    """Months of claims history per fiscal year of the enrollment (docs/hotei.md §7.1)."""
    from hsutils.inputs import lookback

    if claims is None or claims.empty or not fys:
        return []
    h = lookback.claims_history(claims, fys)
    need = lookback.DEFAULT_LOOKBACK_MONTHS
    used = lookback.allowed_lookback(claims, fys, need, lookback.DEFAULT_WINDOW_MONTHS)
    per = "、".join(f"{f}年度 {m}か月（年度前 {b}か月）"
                    for f, m, b in zip(h["fy"], h["months_to_fy_end"], h["months_before_fy"]))
    out = [f"  レセプトの期間（年度末までの月数）: {per}"]
    if used < need:
        out.append(f"  注意: 治療中断などのさかのぼり（既定 {need}か月）に足りない年度があるため、"
                   f"全年度を {used}か月でそろえて判定します（docs/hotei.md §7）")
    short = [int(f) for f, b in zip(h["fy"], h["months_before_fy"]) if b < lookback.NEW_DIALYSIS_FREE_MONTHS]
    if short:
        out.append(f"  注意: {'・'.join(f'{f}年度' for f in short)}は年度開始前のレセプトが"
                   f"{lookback.NEW_DIALYSIS_FREE_MONTHS}か月未満のため、新規人工透析は{lookback.UNDETERMINABLE}"
                   f"（{lookback.UNDETERMINABLE_REASON}）とします（docs/hotei.md §7.4）")
    return out


def check_folder(folder, column_map=None) -> str:
    """Japanese data-quality summary of an input folder; writes nothing (see `check_folder_report`)."""
    return check_folder_report(folder, column_map)[0]


def check_folder_report(folder, column_map=None) -> tuple[str, int]:
    """(Japanese data-quality summary, number of errors) of an input folder; writes nothing.

    Each file is checked on its own: a file that cannot be read is reported and the others are
    still checked. No traceback is ever shown.
    """
    folder = _require_folder(folder)
    lines = [f"データチェック: {folder.resolve()}"]
    problems = 0
    try:
        cmap = load_column_map(column_map)
        if column_map:
            lines.append(f"列名対応表: {column_map if not isinstance(column_map, dict) else '（指定あり）'}")
    except HsutilsError as e:
        lines.append(f"エラー（列名対応表）: {e}")
        cmap = {}
        problems += 1
    files, notes = find_table_files(folder)
    kenshin_xml = _kenshin_from_xml(folder, files)
    xml_imp = None  # the XML import of 健診, reused for 保健指導
    known = None
    enrollment = None
    enrollment_fys: list[int] = []
    for tname in LOAD_ORDER:
        t = TABLES[tname]
        lines.append("")
        from_xml = kenshin_xml and (tname == "kenshin" or (  # 特定健診・保健指導 XML (hsutils.inputs.tokutei_xml)
            tname == "guidance" and tname not in files and xml_imp is not None and xml_imp.guidance is not None))
        if tname not in files and not from_xml:
            if tname in REQUIRED_TABLES:
                problems += 1
                lines.append(f"■ {t.ja}（{tname}）: ファイルがありません【必須】 "
                             f"ファイル名の例: {', '.join(s + '.csv' for s in accepted_file_stems(tname)[:3])}")
            else:
                lines.append(f"■ {t.ja}（{tname}）: ファイルなし（任意）")
            continue
        source = ("特定健診XMLアーカイブ" if tname == "kenshin" else "特定健診XMLアーカイブ（特定保健指導 hg08）") \
            if from_xml else files[tname].name
        lines.append(f"■ {t.ja}（{tname}） " + (source if from_xml else f"ファイル: {source}"))
        try:
            if from_xml and tname == "guidance":
                from hsutils.inputs import tokutei_xml

                lines.extend(tokutei_xml.describe_guidance(xml_imp))
                r = xml_imp.guidance
            elif from_xml:
                from hsutils.inputs import tokutei_xml

                xml_imp = tokutei_xml.read_archives(folder, enrollment=enrollment, validate_xsd=True)
                lines.extend(tokutei_xml.describe_import(xml_imp))
                r = xml_imp.result
            else:
                r = read_table(files[tname], tname, column_map=cmap,
                               known_munis=known if tname != "municipalities" else None)
        except HsutilsError as e:
            problems += 1
            lines.append(f"  エラー: {e}")
            continue
        except Exception as e:  # never a traceback in a data check
            problems += 1
            lines.append(f"  エラー: {source} を読めませんでした（{type(e).__name__}: {e}）")
            continue
        if tname == "municipalities":
            known = set(r.data["muni_code"].dropna().astype(str)) or None  # empty master: no check
        if tname == "enrollment":
            enrollment = r.data
            if "fy" in r.data:
                enrollment_fys = sorted(int(f) for f in r.data["fy"].dropna().unique())
        lines.extend(_describe_result(r))
        if tname == "claims_monthly":
            lines.extend(_claims_history_lines(r.data, enrollment_fys))
    try:
        from hsutils.inputs import claims_import
        uke_lines = claims_import.check_lines(folder)
    except Exception as e:  # never a traceback in a data check
        problems += 1
        uke_lines = [f"■ レセプト電算ファイル（UKE）: エラー（{type(e).__name__}: {e}）"]
    if uke_lines:
        lines.append("")
        lines.extend(uke_lines)
        problems += any("エラー" in x for x in uke_lines[:2])
    if notes:
        lines.append("")
        lines.extend(f"注意: {n}" for n in notes)
    if "municipalities" not in files:
        lines.append("注意: 市町村マスタがないため、市町村コードは桁数と検査数字だけを確認しました")
    lines.append("")
    lines.append("判定: 読み込めないファイルまたは必須ファイルの不足があります。上の「エラー」を確認してください"
                 if problems else "判定: 分析に使用できます（除外された行・値は上の内訳を確認してください）")
    return "\n".join(lines), problems


# ---------------------------------------------------------------------------------------------
# Data dictionary (data_templates/DATA_DICTIONARY.md is this function's output)
# ---------------------------------------------------------------------------------------------

def _allowed_text(t: Table, c: Column) -> str:
    if c.kind == "urine":
        return "−, ±, 1+, 2+, 3+（+, ++, +++, コード 1–5 も可）→ 0–4"
    if c.kind == "sex":
        return "1 男, 2 女（男/女, M/F も可）"
    if (t.name, c.name) in _BOOL_VOCABULARIES:
        return _BOOL_VOCABULARIES[(t.name, c.name)][2]
    if c.kind == "bool":
        return "1 あり / 2 なし（0, あり/なし, はい/いいえ, 有/無, ○/× も可）"
    if c.kind == "fy":
        return f"{_fmt_number(c.lo)}–{_fmt_number(c.hi)}（2024, 令和6年度, R6, H30 も可）"
    if c.kind == "ym":
        return "YYYYMM（202404, 2024-04, 2024/4, R6.4, 令和6年4月 も可）"
    if c.kind == "date":
        return "2024-05-01, 2024/5/1, 令和6年5月1日, R6.5.1"
    if c.kind == "muni":
        return "5桁、または検査数字付き6桁"
    if c.kind == "answer":
        labels = _answer_labels(c)
        return "、".join(f"{code} {lab}" for lab, code in labels.items()) or \
            ", ".join(map(str, c.allowed))
    if c.allowed:
        return ", ".join(str(a) for a in c.allowed)
    if c.lo is not None or c.hi is not None:
        return f"{_fmt_number(c.lo)}–{_fmt_number(c.hi)}"
    return ""


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def data_dictionary_markdown() -> str:
    """The data dictionary (Japanese) generated from `hsutils.core.schema`, one section per table."""
    out = [
        "# データ辞書（入力データの列定義）",
        "",
        "このファイルは `hsutils.inputs.io.data_dictionary_markdown()` が `hsutils/core/schema.py` から生成します。"
        "手で編集しないでください（テストで一致を確認しています）。",
        "",
        "## 共通のきまり",
        "",
        "- 文字コード: UTF-8（BOM 付き可）または Shift_JIS（cp932）。Excel（.xlsx）と Parquet も読めます。",
        "- 1 行目が見出し行です。見出しの上にタイトル行があっても、見出し行を自動で探します。",
        "- 見出しは「日本語名」「列名」「別名」のどれでも構いません。全角・半角、大文字・小文字、空白の違いは無視します。"
        "KDB などの出力で見出しが違うときは列名対応表（`parameters/column_map_example.yaml`）で指定します。",
        "- 定義にない列はエラーにせず、分析には使わずに別に保管します（警告を表示）。",
        "- 全角の数字・記号は半角として読みます。数値の桁区切り（1,234）と、その列の単位（例: 6.5%）は取り除きます。",
        "- 空欄、「未実施」「未測定」「-」「－」「NA」は欠損（未測定）として扱います（尿定性の「-」は陰性（−）です）。",
        "- 年度は 4 月始まりです。和暦（令和6年度、R6、R06、H30、平成31/令和元年）も西暦に直します。",
        "- 必須項目が空欄・不正な行は行ごと除外し、任意項目の不正値・範囲外の値はその値だけを欠損にします。"
        "除外した行と値はすべて、ファイル名・行番号（Excel の行番号）・列・値・理由とともに一覧にします。",
        "- キー（例: 被保険者番号 × 年度）が重複する行は最初の行を採用し、残りを除外します。",
        "",
        "| 型 | 意味 |",
        "|---|---|",
    ]
    for kind, label in _KIND_LABELS.items():
        out.append(f"| {label} | {_kind_help(kind)} |")
    for t in TABLES.values():
        stems = accepted_file_stems(t.name)
        out += [
            "",
            f"## {t.ja}（{t.name}）",
            "",
            t.description + "。",
            "",
            f"- ファイル名: {', '.join(f'`{s}.csv`' for s in stems)}（.xlsx, .parquet も可）"
            + ("【必須】" if t.name in REQUIRED_TABLES else "【任意】"),
            f"- キー（重複不可）: {' × '.join(t.column(k).ja for k in t.key)}",
            f"- テンプレート: `data_templates/{t.name}.csv`",
            "",
            "| 日本語名 | 列名 | 型 | 単位 | 値・範囲 | 必須/任意 | 説明 |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in t.columns:
            aliases = (*c.aliases, *EXTRA_HEADER_ALIASES.get((t.name, c.name), ()))
            desc = c.description
            if aliases:
                desc = (desc + "。" if desc else "") + "別名: " + "、".join(aliases)
            default = DEFAULTS_WHEN_OMITTED.get((t.name, c.name))
            if default is not None:
                desc += f"（列がない・空欄のときは {'あり' if default else 'なし'}）"
            out.append("| " + " | ".join(_md_cell(x) for x in (
                c.ja, f"`{c.name}`", _KIND_LABELS[c.kind], c.unit, _allowed_text(t, c),
                "必須" if c.required else "任意", desc)) + " |")
    out.append("")
    return "\n".join(out)


def _kind_help(kind: str) -> str:
    return {
        "str": "文字列（前後の空白を除き、全角英数は半角に）",
        "muni": "全国地方公共団体コード。6桁は検査数字を確認して5桁に",
        "int": "整数",
        "float": "数値。範囲外の値は欠損として除外一覧へ",
        "fy": "年度（西暦の整数）",
        "ym": "年月（YYYYMM の整数）",
        "date": "日付",
        "sex": "1 男 / 2 女",
        "bool": "あり（True）/ なし（False）。コード 2 は「なし」",
        "urine": "尿定性。0（−）, 1（±）, 2（1+）, 3（2+）, 4（3+）に変換",
        "category": "決まった区分のいずれか",
        "answer": "質問票の回答コード（文字の回答もコードに変換）",
    }[kind]

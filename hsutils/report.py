"""Writing figures, tables and workbooks to the output layout, atomically (docs/design.md §7, §9).

Layout: ``<outputs>/<run>/<muni_code>_<name>/<notebook>/`` with ``figures/`` (PNG 300 dpi and
PDF), ``tables/`` (CSV UTF-8 with BOM so Excel opens it; one xlsx per notebook) and
``confidential/`` (person-level lists only, docs/design.md §6).

Every file is written to a temporary name in the same folder and renamed with `os.replace`
(`hsutils.files`), so a failed run never leaves a half-written file. Figures are written with fixed metadata (no creation
date), so the same input gives byte-identical files (docs/design.md §9).
"""
from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import pandas as pd

from .errors import ParameterError
from .files import atomic_path, atomic_write_bytes, atomic_write_text  # re-exported: the one implementation

__all__ = [
    "FIGURE_DPI", "SUBFOLDERS", "atomic_write_bytes", "atomic_write_text", "output_dir",
    "save_figure", "save_table", "write_xlsx", "safe_name",
]

#: Resolution of PNG figures (docs/design.md §7).
FIGURE_DPI = 300
#: matplotlib settings read when a file is written (not when the figure is drawn): TrueType fonts
#: embedded in PDF/PS, text as paths and a fixed hash salt in SVG (reproducible files, docs/design.md §9).
SAVE_RCPARAMS = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path", "svg.hashsalt": "hsutils"}
#: Sub-folders of every notebook output folder (docs/design.md §7).
SUBFOLDERS = ("figures", "tables", "confidential")

# Fixed metadata: no dates, no version strings, so files are reproducible (docs/design.md §9).
_FIXED_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}
_ILLEGAL = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_SHEET_ILLEGAL = re.compile(r"[\[\]:*?/\\]")


def safe_name(name: str) -> str:
    """File/folder name safe on Windows and POSIX: NFC, path separators and reserved characters
    replaced by "_", no leading/trailing dots or spaces."""
    cleaned = _ILLEGAL.sub("_", unicodedata.normalize("NFC", str(name))).strip(" .")
    if not cleaned:
        raise ParameterError(f"ファイル名 {name!r} が空になります。英数字か日本語を含む名前にしてください。")
    return cleaned


def output_dir(root, run: str, muni_code: str, muni_name: str, notebook: str,
               create: bool = True) -> Path:
    """Folder of one notebook's outputs: ``root/<run>/<muni_code>_<muni_name>/<notebook>/``
    (docs/design.md §7). `root` is the outputs folder (e.g. ``Path("outputs")``); a ``.ipynb`` suffix of
    `notebook` is dropped. With `create`, the folder and its ``figures/``, ``tables/`` and
    ``confidential/`` sub-folders are made."""
    nb = Path(str(notebook)).name
    if nb.endswith(".ipynb"):
        nb = nb[: -len(".ipynb")]
    folder = Path(root) / safe_name(run) / safe_name(f"{muni_code}_{muni_name}") / safe_name(nb)
    if create:
        for sub in SUBFOLDERS:
            (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig, out_dir, name: str, formats=("png", "pdf"), dpi: int = FIGURE_DPI) -> dict:
    """Write `fig` to ``out_dir/figures/<name>.png`` (300 dpi) and ``.pdf`` atomically with fixed
    metadata, so the same figure gives byte-identical files (docs/design.md §7, §9). Returns
    ``{"png": Path, "pdf": Path}`` (one key per format)."""
    folder = Path(out_dir) / "figures"
    paths = {}
    for fmt in formats:
        if fmt not in _FIXED_METADATA:
            raise ParameterError(f"図の形式 {fmt!r} には対応していません（png, pdf, svg）。")
        buffer = io.BytesIO()
        with matplotlib.rc_context(SAVE_RCPARAMS):  # no global setting needed or changed
            fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_FIXED_METADATA[fmt])
        paths[fmt] = atomic_write_bytes(folder / f"{safe_name(name)}.{fmt}", buffer.getvalue())
    return paths


def save_table(df: pd.DataFrame, out_dir, name: str, index: bool = False) -> Path:
    """Write ``out_dir/tables/<name>.csv`` as UTF-8 with BOM (Excel opens it with Japanese
    intact), atomically (docs/design.md §7)."""
    path = Path(out_dir) / "tables" / f"{safe_name(name)}.csv"
    return atomic_write_text(path, df.to_csv(index=index, lineterminator="\r\n"), encoding="utf-8-sig")


def _display_width(text: str) -> int:
    """Width in Excel character units: full-width characters count 2."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _sheet_names(keys) -> list[str]:
    """Excel sheet names: no []:*?/\\, at most 31 characters, unique."""
    names, seen = [], set()
    for key in keys:
        base = _SHEET_ILLEGAL.sub("_", str(key)).strip("'")[:31] or "Sheet"
        name, k = base, 2
        while name.lower() in seen:
            suffix = f"_{k}"
            name = base[: 31 - len(suffix)] + suffix
            k += 1
        seen.add(name.lower())
        names.append(name)
    return names


def write_xlsx(tables: Mapping[str, pd.DataFrame], path, column_labels: Mapping[str, str] | None = None,
               index: bool = False) -> Path:
    """One workbook, one sheet per table (sheet name = key), written atomically (docs/design.md §7).

    Headers are the frame's columns (pass Japanese column names, or `column_labels` mapping
    canonical names to Japanese); header row bold, panes frozen below the header, column widths
    from the longest text (full-width characters count double, capped at 60).
    """
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    if not tables:
        raise ParameterError("write_xlsx に書き出す表がありません。")
    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for sheet, (key, df) in zip(_sheet_names(tables.keys()), tables.items()):
                frame = df.reset_index() if index else df
                if column_labels:
                    frame = frame.rename(columns=dict(column_labels))
                frame.to_excel(writer, sheet_name=sheet, index=False)
                ws = writer.sheets[sheet]
                ws.freeze_panes = "A2"
                for cell in ws[1]:
                    cell.font = Font(bold=True)
                for j, col in enumerate(frame.columns, start=1):
                    texts = [str(col)] + [str(v) for v in frame[col].head(1000).tolist()]  # pandas 3: astype(str) keeps NaN
                    width = min(max(_display_width(t) for t in texts) + 2, 60)
                    ws.column_dimensions[get_column_letter(j)].width = width
    return path

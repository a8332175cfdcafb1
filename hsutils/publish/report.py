"""Writing figures, tables and workbooks to the output layout, atomically (docs/design.md §7, §9).

Layout: ``<outputs>/<run>/<muni_code>_<name>/<notebook>/`` with ``figures/`` (PNG 300 dpi, and
the vector PDF outside the batch; `print_pack` makes one printable PDF per folder), ``tables/`` (CSV UTF-8 with BOM so Excel opens it; one xlsx per notebook) and
``confidential/`` (person-level lists only, docs/design.md §6).

Every file is written to a temporary name in the same folder and renamed with `os.replace`
(`hsutils.core.files`), so a failed run never leaves a half-written file. Figures are written with fixed metadata (no creation
date), so the same input gives byte-identical files (docs/design.md §9).
"""
from __future__ import annotations

import datetime
import decimal
import io
import re
import time
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from hsutils.core import settings
from hsutils.core.errors import ParameterError
from hsutils.core.files import atomic_path, atomic_write_bytes, atomic_write_text  # re-exported: the one implementation

__all__ = [
    "FIGURE_DPI", "SUBFOLDERS", "atomic_write_bytes", "atomic_write_text", "output_dir",
    "save_figure", "display_png", "print_pack", "print_packs", "PRINT_PACK", "save_table", "write_xlsx", "safe_name", "display_table", "COLUMN_LABELS_JA",
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
#: PNG encoder settings: zlib level 1 instead of PIL's 6. The pixels are the same; the 300-dpi
#: files are about a fifth larger and encoding takes about half the CPU time (measured on the 13
#: figures of notebook 04: 3.39 s → 1.84 s; issue 18 §1).
_PIL_KWARGS = {"png": {"compress_level": 1}}
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


def save_figure(fig, out_dir, name: str, formats=None, dpi: int = FIGURE_DPI, *, writer=None) -> dict:
    """Write `fig` to ``out_dir/figures/<name>.png`` (300 dpi) and ``.pdf`` atomically with fixed
    metadata, so the same figure gives byte-identical files (docs/design.md §7, §9). `formats`
    defaults to `settings.figure_formats()` (PNG + PDF; PNG only in a batch run). Returns
    ``{"png": Path, "pdf": Path}`` (one key per format written).

    `writer` (a `concurrent.futures` executor, e.g. the notebook's, `running.notebook`): the PNG is
    drawn here, but encoded and written there, while the notebook goes on (PIL's zlib encoder
    releases the GIL: about 0.13 CPU-s per 300-dpi figure on another core; issue 18 §1). The
    bytes are those savefig writes. The caller waits for the writer before the run ends."""
    if formats is None:
        formats = settings.figure_formats()
    folder = Path(out_dir) / "figures"
    paths = {}
    for fmt in formats:
        if fmt not in _FIXED_METADATA:
            raise ParameterError(f"図の形式 {fmt!r} には対応していません（png, pdf, svg）。")
        path = folder / f"{safe_name(name)}.{fmt}"
        if fmt == "png" and writer is not None:
            pixels = _draw_pixels(fig, dpi)
            if pixels is not None:
                writer.submit(_write_png, pixels, path, dpi)
                paths[fmt] = path
                continue
        buffer = io.BytesIO()
        shown = display_png(fig) is not None  # a screen image kept by this call's PNG, still current
        with matplotlib.rc_context(SAVE_RCPARAMS):  # no global setting needed or changed
            extra = {"pil_kwargs": _PIL_KWARGS[fmt]} if fmt in _PIL_KWARGS else {}
            fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_FIXED_METADATA[fmt], **extra)
            if fmt == "png":
                _keep_display_image(fig, dpi)
            elif shown:
                # savefig restored the screen dpi, which marks the figure changed; nothing changed,
                # so the kept screen image still applies (else the notebook draws it twice more)
                fig.stale = False
        paths[fmt] = atomic_write_bytes(path, buffer.getvalue())
    return paths


def _draw_pixels(fig, dpi: int):
    """Draw `fig` at `dpi` as savefig draws a PNG (same settings, same pixels) and return a copy of
    the RGBA pixels, or None when the canvas is not Agg. The screen image is kept as for a PNG."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        return None
    raw = io.BytesIO()
    with matplotlib.rc_context(SAVE_RCPARAMS):
        fig.savefig(raw, format="rgba", dpi=dpi)
        _keep_display_image(fig, dpi)
    height, width = np.asarray(fig.canvas.buffer_rgba()).shape[:2]
    return np.frombuffer(raw.getvalue(), dtype=np.uint8).reshape(height, width, 4)


def _write_png(pixels, path: Path, dpi: int) -> Path:
    """Encode RGBA pixels as savefig's PNG (matplotlib.image.imsave with the same metadata, dpi and
    encoder settings: byte-identical) and write them atomically. Runs in the notebook's writer."""
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format="png", origin="upper", dpi=dpi,
                            metadata=dict(_FIXED_METADATA["png"]), pil_kwargs=dict(_PIL_KWARGS["png"]))
    return atomic_write_bytes(path, buffer.getvalue())


#: Attribute of a saved figure holding its screen image (`display_png`).
_DISPLAY_ATTRIBUTE = "_hsutils_display_png"


def _keep_display_image(fig, dpi: int) -> None:
    """Keep the screen image of a figure just saved as PNG, made from the same drawing: the
    notebook shows a figure as a PNG at the figure's own dpi (100), cut to its tight box with
    0.1 inch padding (IPython's inline backend). Drawing it again costs two more passes of
    layout and rendering per figure (a tight-box pass and the drawing, about 0.17 CPU-s), so the
    300-dpi pixels are cut to the same box and reduced 3:1 instead (about 0.10 s with the tight-box
    measurement; issue 18 §1).
    Kept only when the saved resolution is a whole multiple of the screen one; the figure is
    marked up to date, so any later change (a stale figure) is drawn anew by `display_png`."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    setattr(fig, _DISPLAY_ATTRIBUTE, None)
    canvas, screen_dpi = fig.canvas, fig.dpi
    renderer = getattr(canvas, "renderer", None)
    factor = dpi / screen_dpi if screen_dpi else 0
    if (not isinstance(canvas, FigureCanvasAgg) or renderer is None or renderer.dpi != dpi
            or factor != int(factor) or factor < 1 or not fig.axes):
        return
    factor = int(factor)
    pixels = np.asarray(canvas.buffer_rgba())
    height = pixels.shape[0]
    # the tight box in inches, measured with the renderer that drew the saved file (cached text extents)
    from matplotlib import cbook

    with cbook._setattr_cm(fig, dpi=dpi):  # as savefig measures: text extents and positions at one dpi
        box = fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    width_px, height_px = int(box.width * screen_dpi), int(box.height * screen_dpi)
    if width_px <= 0 or height_px <= 0:
        return
    left = int(round(box.x0 * dpi))
    top = int(round(height - box.y1 * dpi))
    face = tuple(int(round(c * 255)) for c in matplotlib.colors.to_rgba(fig.get_facecolor()))
    # An opaque figure (the committee style's white one) is reduced as RGBX: PIL reduces RGBA
    # through premultiplied alpha, two more passes over the 300-dpi pixels (about 0.08 s a figure),
    # which change nothing when every alpha is 255. Same image, same bytes.
    mode = "RGBX" if face[3] == 255 and pixels[..., 3].min() == 255 else "RGBA"
    image = Image.new(mode, (width_px * factor, height_px * factor), face)
    source = Image.frombuffer(mode, (pixels.shape[1], height), pixels, "raw", mode, 0, 1)
    image.paste(source, (-left, -top))  # the part outside the figure stays face-coloured
    data = io.BytesIO()
    image.reduce(factor).convert("RGBA").save(data, format="png")
    setattr(fig, _DISPLAY_ATTRIBUTE, data.getvalue())
    fig.stale = False  # savefig restored the screen dpi, which marks the figure stale; nothing changed


def display_png(fig) -> bytes | None:
    """The screen image kept by `save_figure` for `fig`, or None when there is none or the figure
    changed after it was saved (it is drawn again then)."""
    data = getattr(fig, _DISPLAY_ATTRIBUTE, None)
    if data is None or fig.stale:
        return None
    return data


#: Name of the printable copy of a notebook output's figures (`print_pack`).
PRINT_PACK = settings.PRINT_PACK


def print_pack(notebook_dir, quality: int = 95) -> Path | None:
    """One printable PDF of a notebook output's figures: ``<notebook_dir>/図表_印刷用.pdf``, one page
    per ``figures/*.png`` (300 dpi, name order), written atomically. Made once, on demand
    (``hsutils figures``), from the PNGs a batch already wrote, instead of a vector PDF per figure
    per run (issue 18 §1): at 300 dpi a page prints as sharp as the vector copy on an office
    printer. Returns None when the folder has no PNG."""
    from PIL import Image

    pngs = sorted((Path(notebook_dir) / "figures").glob("*.png"))
    if not pngs:
        return None
    pages = []
    for png in pngs:
        with Image.open(png) as im:
            pages.append(im.convert("RGB"))
    buffer = io.BytesIO()
    # dated by the newest PNG, not the clock (Pillow's default): the same figures give the same file
    made = time.gmtime(max(png.stat().st_mtime for png in pngs))
    pages[0].save(buffer, format="PDF", save_all=True, append_images=pages[1:], resolution=FIGURE_DPI,
                  quality=quality, creationDate=made, modDate=made)
    return atomic_write_bytes(Path(notebook_dir) / PRINT_PACK, buffer.getvalue())


def print_packs(run_dir) -> list[Path]:
    """`print_pack` for every notebook output folder under `run_dir` (a batch run, or one area)."""
    folders = sorted({p.parent.parent for p in Path(run_dir).rglob("figures/*.png")
                      if settings.CONFIDENTIAL not in p.parts})
    return [path for path in (print_pack(folder) for folder in folders) if path is not None]


def save_table(df: pd.DataFrame, out_dir, name: str, index: bool = False) -> Path:
    """Write ``out_dir/tables/<name>.csv`` as UTF-8 with BOM (Excel opens it with Japanese
    intact), atomically (docs/design.md §7)."""
    path = Path(out_dir) / "tables" / f"{safe_name(name)}.csv"
    return atomic_write_text(path, df.to_csv(index=index, lineterminator="\r\n"), encoding="utf-8-sig")


def _display_width(text: str) -> int:
    """Width in Excel character units: full-width characters count 2."""
    if text.isascii():  # digits, codes, English: one unit each (most cells)
        return len(text)
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


def _excel_values(values: pd.Series) -> list:
    """The cell values pandas' Excel writer gives a column (`DataFrame.to_excel` with its defaults:
    missing → "", ±inf → "inf"/"-inf", numpy scalars → Python int/float/bool, other objects → str),
    computed per column instead of per cell."""
    if pd.api.types.is_bool_dtype(values.dtype) and not values.hasnans:
        return values.astype(bool).tolist()
    if pd.api.types.is_integer_dtype(values.dtype) and not values.hasnans:
        return values.astype("int64").tolist()
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "M":  # naive datetimes: Timestamps
        return ["" if v is pd.NaT else v for v in values.tolist()]
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "f":
        x = values.to_numpy(dtype=float)
        out = x.tolist()
        bad = ~np.isfinite(x)
        for i in np.flatnonzero(bad):
            v = x[i]
            out[i] = "" if np.isnan(v) else ("inf" if v > 0 else "-inf")
        return out
    return [_excel_value(v) for v in values.astype(object).tolist()]


def _excel_value(v):
    """One value as pandas' Excel writer converts it (`_excel_values`)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f != f:
            return ""
        return f if abs(f) != float("inf") else ("inf" if f > 0 else "-inf")
    if pd.api.types.is_scalar(v) and pd.isna(v):
        return ""
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, np.datetime64,
                      np.timedelta64)):
        raise _NotPlain
    return str(v)


class _NotPlain(Exception):
    """A value pandas' Excel writer formats itself (a date, time, duration or decimal)."""


def _plain_columns(frame: pd.DataFrame) -> bool:
    """True when no column has a duration or time-zone dtype and the headers are flat (those keep
    pandas' own writer). A column of naive datetimes is plain: its cells get pandas' value and
    number format (`_datetime_columns`)."""
    return not isinstance(frame.columns, pd.MultiIndex) and not any(
        dtype.kind == "m" or isinstance(dtype, pd.DatetimeTZDtype) for dtype in frame.dtypes)


#: The number format pandas' Excel writer gives a datetime cell (its default ``datetime_format``).
_EXCEL_DATETIME_FORMAT = "YYYY-MM-DD HH:MM:SS"


def _datetime_columns(frame: pd.DataFrame) -> list[int]:
    """Positions of the naive datetime64 columns: their cells are Timestamps (missing → empty, as
    `_excel_values` gives them) that pandas' writer formats as `_EXCEL_DATETIME_FORMAT`, e.g. the
    健診日 of a person-level list (issue 18 §1: such lists went through pandas' slower writer)."""
    return [j for j, dtype in enumerate(frame.dtypes) if isinstance(dtype, np.dtype) and dtype.kind == "M"]


def write_xlsx(tables: Mapping[str, pd.DataFrame], path, column_labels: Mapping[str, str] | None = None,
               index: bool = False) -> Path:
    """One workbook, one sheet per table (sheet name = key), written atomically (docs/design.md §7).

    Headers are the frame's columns (pass Japanese column names, or `column_labels` mapping
    canonical names to Japanese); header row bold, panes frozen below the header, column widths
    from the longest text (full-width characters count double, capped at 60).

    Written with openpyxl's write-only workbook (rows streamed, values converted per column as
    `DataFrame.to_excel` converts them): the same cell values, bold header, widths and panes as
    pandas' `ExcelWriter`, at about half its CPU on a person-level list. Naive datetime64 columns
    (e.g. 健診日) get pandas' datetime cells and number format here too; a table with durations,
    time zones or date/time/decimal objects in an object column goes through pandas' writer.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    if not tables:
        raise ParameterError("write_xlsx に書き出す表がありません。")
    frames = []
    for sheet, (key, df) in zip(_sheet_names(tables.keys()), tables.items()):
        frame = df.reset_index() if index else df
        if column_labels:
            frame = frame.rename(columns=dict(column_labels))
        frames.append((sheet, frame))
    try:
        if not all(_plain_columns(f) for _, f in frames):
            raise _NotPlain
        columns = [[_excel_values(frame.iloc[:, j]) for j in range(frame.shape[1])] for _, frame in frames]
        headers = [[_excel_value(col) for col in frame.columns] for _, frame in frames]
    except _NotPlain:
        return _write_xlsx_pandas(frames, path)
    wb = Workbook(write_only=True)
    bold = Font(bold=True)
    for (sheet, frame), header, values in zip(frames, headers, columns):
        ws = wb.create_sheet(sheet)
        ws.freeze_panes = "A2"
        _set_widths(ws, frame, get_column_letter)
        cells = []
        for h in header:
            cell = WriteOnlyCell(ws, value=h)
            cell.font = bold
            cells.append(cell)
        ws.append(cells)
        dated = _datetime_columns(frame)
        if dated:  # a datetime cell carries pandas' number format; a missing one stays empty
            for j in dated:
                values[j] = [_datetime_cell(ws, v) for v in values[j]]
        for row in zip(*values):
            ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    atomic_write_bytes(path, reproducible_xlsx(buffer.getvalue()))
    return path


#: Time of every entry of a written xlsx (the zip format's earliest), and the dates its core
#: properties must not carry, so that the same tables give byte-identical files (docs/design.md §9).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_OOXML_DATES = re.compile(rb"<dcterms:(created|modified)\b[^>]*>[^<]*</dcterms:\1>")


def reproducible_xlsx(data: bytes) -> bytes:
    """An xlsx (a zip) as written, with every entry dated `_ZIP_EPOCH` and no creation or
    modification date in ``docProps/core.xml`` (both optional there): openpyxl stamps the entries
    and the modification date with the clock, so the same tables gave a different file each run
    (issue 18). Entries, their order, contents and compression are otherwise unchanged."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            body = source.read(info)
            if info.filename == "docProps/core.xml":
                body = _OOXML_DATES.sub(b"", body)
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            target.writestr(entry, body)
    return out.getvalue()


def _datetime_cell(ws, value):
    """A datetime value as pandas' Excel writer writes it (`_EXCEL_DATETIME_FORMAT`); "" stays empty."""
    from openpyxl.cell import WriteOnlyCell

    if isinstance(value, str):
        return value
    cell = WriteOnlyCell(ws, value=value)
    cell.number_format = _EXCEL_DATETIME_FORMAT
    return cell


def _set_widths(ws, frame: pd.DataFrame, get_column_letter) -> None:
    for j, col in enumerate(frame.columns, start=1):
        texts = {str(col)} | {str(v) for v in frame.iloc[:, j - 1].head(1000).tolist()}  # pandas 3: astype(str) keeps NaN
        width = min(max(_display_width(t) for t in texts) + 2, 60)
        ws.column_dimensions[get_column_letter(j)].width = width


def _write_xlsx_pandas(frames, path: Path) -> Path:
    """`write_xlsx` through pandas' ExcelWriter (tables with dates or other objects pandas formats)."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for sheet, frame in frames:
            frame.to_excel(writer, sheet_name=sheet, index=False)
            ws = writer.sheets[sheet]
            ws.freeze_panes = "A2"
            for cell in ws[1]:
                cell.font = Font(bold=True)
            _set_widths(ws, frame, get_column_letter)
    atomic_write_bytes(path, reproducible_xlsx(buffer.getvalue()))
    return path


# ---------------------------------------------------------------------------------------------
# One style for every table a notebook displays (issue 25)
# ---------------------------------------------------------------------------------------------
#: Japanese headers of the column names the library uses in many tables; a notebook passes
#: `labels` for its own. Rate columns get their unit in the header (`display_table`).
COLUMN_LABELS_JA = {
    "muni_code": "市町村コード", "muni_name": "市町村", "area_name": "地域", "district_name": "地区",
    "medical_area": "二次医療圏", "indicator_name": "指標", "fy": "年度", "sex": "性別", "age_band": "年齢階級",
    "numerator": "該当者数", "denominator": "対象者数", "count": "人数", "expected": "期待数",
    "crude_rate": "粗率", "adj_rate": "年齢調整率", "rate": "割合", "value": "値",
    "lower": "下限", "upper": "上限", "sr": "標準化比", "sr_lower": "標準化比の下限", "sr_upper": "標準化比の上限",
    "comparison": "比較", "judgement": "判定", "change": "変化", "suppressed": "秘匿", "score": "得点",
    "rank": "順位", "reasons": "理由",
}
#: Columns never shown: internal identifiers and keys (the reader needs the names, not the ids).
HIDDEN_COLUMN_SUFFIXES = ("_id", "_key")
HIDDEN_COLUMNS = ("key", "indicator_id", "step_id", "person_id", "polarity", "method", "conf", "unit",
                  "キー", "指標ID")
#: Rate columns of the library whose header gets the unit (e.g. 粗率（%）); others only when in `rates`.
RATE_COLUMNS = ("crude_rate", "adj_rate", "rate", "ref_rate", "share", "crude_lower", "crude_upper",
                "adj_lower", "adj_upper", "rate_first", "rate_last")
#: What a True in a boolean column (e.g. 秘匿あり) shows; False shows nothing.
FLAG_MARK = "〇"


def _is_count(values: pd.Series) -> bool:
    num = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(num)) and bool((num == num.round()).all()) and not pd.api.types.is_float_dtype(values)


def display_table(df: pd.DataFrame, labels: Mapping[str, str] | None = None, *, counts=(), rates=(),
                  ratios=(), text=(), unit: str = "%", keep=(), drop=()):
    """The one style of a table shown in a notebook or its HTML report (a pandas Styler).

    * headers in Japanese: `labels`, then `COLUMN_LABELS_JA`; rate columns (`RATE_COLUMNS`, `rates`)
      get the unit, e.g. 粗率（%）;
    * counts with thousands separators (`2,659,256`), rates with one decimal (`15.9`), ratios
      (標準化比, `ratios`) with two; the suppression mark 「‐」 and other text stay as they are;
      columns in `text` are shown as written (a parameter value 2024 stays 2024);
    * boolean columns (e.g. 秘匿あり) show `FLAG_MARK` for True and nothing for False;
    * internal ids and keys (`HIDDEN_COLUMNS`, names ending in `_id`/`_key`) are left out unless in
      `keep`; `drop` leaves out more;
    * text is never cut (no ``...``) and is left-aligned (numbers right); row labels (a non-default index) become the first column(s),
      a default 0, 1, 2 … index is not shown.

    A column is a count when named in `counts`, or when its numbers are whole and its dtype is not
    float (also an object column of whole numbers and 「‐」 after suppression); a rate when named in
    `rates` or when any number has a fraction. Nothing is computed here: the values are the ones
    passed (already suppressed by `privacy`).
    """
    labels = {**COLUMN_LABELS_JA, **(labels or {})}
    keep, drop = set(keep), set(drop)
    if isinstance(df.columns, pd.MultiIndex):  # pivots: one header row, levels joined
        df = df.set_axis([" ".join(str(v) for v in c if str(v)) for c in df.columns], axis=1)
    if not isinstance(df.index, pd.RangeIndex):  # row labels (pivots, set_index) become a column
        names = [n if n is not None else "" for n in df.index.names]
        df = df.rename_axis(names).reset_index()
    shown_cols = [c for c in df.columns if c in keep or not (
        c in drop or c in HIDDEN_COLUMNS or str(c).endswith(HIDDEN_COLUMN_SUFFIXES))]
    t = df[shown_cols].reset_index(drop=True)
    formats, headers = {}, {}
    for c in shown_cols:
        col = t[c]
        header, decimals = str(labels.get(c, c)), None
        if pd.api.types.is_bool_dtype(col) or (col.notna().any() and col.dropna().map(type).eq(bool).all()):
            t[c] = col.map(lambda v: FLAG_MARK if v is True or str(v) == "True" else "")
        elif c in text:
            t[c] = col.astype(str).where(col.notna(), "")  # shown as written (e.g. parameter values)
        elif _is_year(c, header):
            decimals = -1  # a fiscal year: a whole number without separators (2024, not 2,024)
        elif c in ratios or c in ("sr", "sr_lower", "sr_upper") or header.startswith("標準化") and "率" not in header:
            decimals = 2
        elif c in counts or (c not in rates and _is_count(col)):
            decimals = 0
        elif c in rates or pd.to_numeric(col, errors="coerce").notna().any():
            decimals = 1
            if unit and (c in rates or c in RATE_COLUMNS) and unit not in header:
                header = f"{header}（{unit}）"
        headers[c] = header
        if decimals is not None:
            formats[header] = _fmt(decimals)
    t = t.rename(columns=headers)
    styler = t.style.hide(axis="index").format(formats, na_rep="")
    styler = styler.set_table_styles([{"selector": "td", "props": "white-space: pre-wrap; text-align: right;"},
                                      {"selector": "th", "props": "text-align: center;"}])
    # text (区分, 指標, 理由 …) reads from the left; numbers and marks stay right-aligned
    words = [h for h in t.columns if h not in formats and not t[h].isin(["", FLAG_MARK]).all()]
    return styler.set_properties(subset=words, **{"text-align": "left"}) if words else styler


def _is_year(name, header: str) -> bool:
    name = str(name)
    return name == "fy" or name.startswith("fy_") or name.endswith("_fy") or header in ("年度", "西暦年度")


def _fmt(decimals: int):
    """Formatter of one column: `decimals` places with thousands separators (−1: a plain whole
    number such as a year); text (the suppression mark) and missing values pass through."""
    def f(v):
        if isinstance(v, str) or v is None:
            return "" if v is None else v
        try:
            x = float(v)
        except (TypeError, ValueError):
            return str(v)
        if x != x:
            return ""
        return f"{x:.0f}" if decimals < 0 else f"{x:,.{decimals}f}"
    return f

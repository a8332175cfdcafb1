"""Tests of hsutils.publish.report: output layout, atomic writes, reproducible figures (docs/design.md §7, §9)."""
from __future__ import annotations

import datetime
import io
import re
import time
import warnings

import matplotlib
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from hsutils.core import settings
from hsutils.publish import plots, report
from hsutils.core.errors import ParameterError

FOOT = plots.footer("KDB（デモデータ）", 2024, "国保 40–74歳")


@pytest.fixture(autouse=True)
def strict_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def small_chart():
    df = pd.DataFrame({"name": ["金沢市", "七尾市", "小松市"], "value": [0.35, 0.41, 0.30],
                       "lower": [0.34, 0.38, 0.28], "upper": [0.36, 0.44, 0.32],
                       "comparison": ["有意に低い", "有意に高い", "有意に低い"]})
    return plots.ranked_bar(df, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36, title="受診率", footer=FOOT, size=(4, 3),
                            value_fmt="{:.1%}").figure


def test_output_dir_layout(tmp_path):
    folder = report.output_dir(tmp_path / "outputs", "2025-demo", "17201", "金沢市",
                               "01_kenshin.ipynb")
    assert folder == tmp_path / "outputs" / "2025-demo" / "17201_金沢市" / "01_kenshin"
    assert sorted(p.name for p in folder.iterdir()) == ["confidential", "figures", "tables"]


def test_output_dir_names_are_safe_and_not_created_on_request(tmp_path):
    folder = report.output_dir(tmp_path, "run", "17201", "金沢/市:?", "nb", create=False)
    assert folder.parent.name == "17201_金沢_市__"
    assert not folder.exists()
    with pytest.raises(ParameterError):
        report.safe_name(" .. ")


def test_save_figure_png_300dpi_pdf_and_byte_identical(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.ENV_FIGURE_FORMATS, raising=False)  # outside a batch: PNG + PDF
    first = report.save_figure(small_chart(), tmp_path / "a", "受診率")
    second = report.save_figure(small_chart(), tmp_path / "b", "受診率")
    assert first["png"] == tmp_path / "a" / "figures" / "受診率.png"
    assert first["pdf"] == tmp_path / "a" / "figures" / "受診率.pdf"
    assert first["png"].read_bytes() == second["png"].read_bytes()
    assert first["pdf"].read_bytes() == second["pdf"].read_bytes()
    image = mpimg.imread(first["png"])
    assert image.shape[:2] == (900, 1200)  # 3 × 4 in at 300 dpi
    assert image.std() > 0.05  # not blank
    pdf = first["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir()) == ["受診率.pdf", "受診率.png"]
    # the fast PNG encoding (zlib level 1) changes the file size, not one pixel
    fig = small_chart()
    default = io.BytesIO()
    with matplotlib.rc_context(report.SAVE_RCPARAMS):
        fig.savefig(default, format="png", dpi=report.FIGURE_DPI, metadata={"Software": None})
    default.seek(0)
    assert (mpimg.imread(default) == image).all()


def test_saved_figure_is_shown_from_the_saved_drawing(tmp_path):
    """The screen image kept by save_figure (300-dpi pixels cut to the tight box, reduced 3:1) has
    the size and look of IPython's inline PNG (100 dpi, bbox_inches="tight"), so the notebook shows
    it without drawing the figure twice more (issue 18 §1); a figure changed after saving is drawn anew."""
    from IPython.core.pylabtools import print_figure
    from PIL import Image

    fig = small_chart()
    assert report.display_png(fig) is None  # never saved
    report.save_figure(fig, tmp_path, "a", formats=("png",))
    kept = Image.open(io.BytesIO(report.display_png(fig))).convert("RGB")
    inline = Image.open(io.BytesIO(print_figure(fig, "png", bbox_inches="tight"))).convert("RGB")
    assert kept.size == inline.size
    difference = np.abs(np.asarray(kept, float) - np.asarray(inline, float))
    assert difference.mean() < 8  # anti-aliasing only (measured 1.3–3.9 on the chart gallery)
    assert np.asarray(kept).std() > 20  # not blank
    fig.axes[0].set_title("変更後")  # changed after saving: the kept image no longer applies
    assert report.display_png(fig) is None
    pdf_only = small_chart()
    report.save_figure(pdf_only, tmp_path, "b", formats=("pdf",))
    assert report.display_png(pdf_only) is None
    both = small_chart()  # a notebook opened by hand writes PNG + PDF: still shown from the PNG
    paths = report.save_figure(both, tmp_path, "c", formats=("png", "pdf"))
    assert list(paths) == ["png", "pdf"] and paths["pdf"].read_bytes().startswith(b"%PDF")
    assert report.display_png(both) is not None



def test_screen_image_of_an_opaque_figure_equals_pils_rgba_reduction(tmp_path):
    """An opaque figure's screen image is reduced as RGBX, without PIL's premultiplied-alpha round
    trip (issue 18 §1): the same bytes as reducing the RGBA pixels. A see-through figure keeps the
    RGBA reduction, so its transparent parts stay transparent."""
    from matplotlib import cbook
    from PIL import Image

    for transparent in (False, True):
        fig = small_chart()
        if transparent:
            fig.set_facecolor((1, 1, 1, 0))
        report.save_figure(fig, tmp_path, f"t{transparent}", formats=("png",))
        kept = report.display_png(fig)
        pixels = np.asarray(fig.canvas.buffer_rgba())  # the 300-dpi drawing the image came from
        assert bool(pixels[..., 3].min() == 255) is (not transparent)
        with cbook._setattr_cm(fig, dpi=report.FIGURE_DPI):
            box = fig.get_tightbbox(fig.canvas.renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
        width, height = int(box.width * 100), int(box.height * 100)
        face = (255, 255, 255, 0 if transparent else 255)
        expected = Image.new("RGBA", (width * 3, height * 3), face)
        expected.paste(Image.fromarray(pixels.copy()),
                       (-int(round(box.x0 * 300)), -int(round(pixels.shape[0] - box.y1 * 300))))
        buffer = io.BytesIO()
        expected.reduce(3).save(buffer, format="png")
        assert kept == buffer.getvalue()
        corner = np.asarray(Image.open(io.BytesIO(kept)))[0, 0]
        assert corner[3] == (0 if transparent else 255)

def test_png_written_by_a_writer_thread_is_byte_identical(tmp_path):
    """With `writer=` the PNG is drawn in the caller and encoded and written in the writer's thread
    (issue 18 §1): the same bytes as savefig's, the same screen image; errors come out of the job."""
    from concurrent.futures import ThreadPoolExecutor

    direct = report.save_figure(small_chart(), tmp_path / "a", "x", formats=("png",))
    fig = small_chart()
    with ThreadPoolExecutor(max_workers=1) as pool:
        queued = report.save_figure(fig, tmp_path / "b", "x", formats=("png",), writer=pool)
    assert queued["png"].read_bytes() == direct["png"].read_bytes()
    assert report.display_png(fig) is not None
    (tmp_path / "not_a_folder").write_text("")
    with ThreadPoolExecutor(max_workers=1) as pool:  # a figures "folder" that is a file
        job = pool.submit(report._write_png, np.zeros((2, 2, 4), dtype=np.uint8), tmp_path / "not_a_folder" / "x.png", 300)
        with pytest.raises(OSError):
            job.result()


def test_notebook_shows_a_saved_figure_from_its_kept_image(tmp_path):
    """In a kernel with the inline backend, start() makes IPython show a saved figure from the image
    kept at saving; any other figure still goes through the inline backend."""
    import base64

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    from hsutils.running import notebook

    shell = InteractiveShell.instance()
    try:
        select_figure_formats(shell, {"png"}, bbox_inches="tight")  # what %matplotlib inline sets
        formatter = shell.display_formatter.formatters["image/png"]
        inline = formatter.lookup_by_type(Figure)
        assert notebook.show_saved_figures() and notebook.show_saved_figures()  # once, idempotent
        fig = small_chart()
        report.save_figure(fig, tmp_path, "a", formats=("png",))
        assert base64.b64decode(formatter(fig)) == report.display_png(fig)
        other = small_chart()
        assert formatter(other) == inline(other)
    finally:
        InteractiveShell.clear_instance()


def test_batch_writes_png_only_and_the_print_pack_is_made_on_demand(tmp_path, monkeypatch):
    """In a batch run (HSUTILS_FIGURE_FORMATS=png, set by batch.execute_task) a figure is one PNG;
    `print_pack` then makes one printable PDF per notebook folder, one 300-dpi page per PNG
    (issue 18 §1). HSUTILS_FIGURE_FORMATS=png,pdf brings the vector copies back on demand."""
    monkeypatch.setenv(settings.ENV_FIGURE_FORMATS, ",".join(settings.BATCH_FIGURE_FORMATS))
    out = tmp_path / "run" / "17201_金沢市" / "04_nephropathy"
    assert set(report.save_figure(small_chart(), out, "a")) == {"png"}
    report.save_figure(small_chart(), out, "b")
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["a.png", "b.png"]
    (tmp_path / "run" / "17201_金沢市" / "05_other" / "figures").mkdir(parents=True)  # no figures: no pack
    packs = report.print_packs(tmp_path / "run")
    assert packs == [out / report.PRINT_PACK]
    pdf = packs[0].read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 2  # one page per PNG
    assert report.print_pack(out) == packs[0] and packs[0].read_bytes() == pdf  # same PNGs, same file
    # dated by the newest PNG, not by the clock (else two packs a second apart differ)
    newest = max((out / "figures" / n).stat().st_mtime for n in ("a.png", "b.png"))
    assert time.strftime("(D:%Y%m%d%H%M%SZ)", time.gmtime(newest)).encode() in pdf
    monkeypatch.setenv(settings.ENV_FIGURE_FORMATS, "png,pdf")
    assert set(report.save_figure(small_chart(), out, "c")) == {"png", "pdf"}


def test_save_figure_same_figure_twice_is_identical(tmp_path):
    fig = small_chart()
    one = report.save_figure(fig, tmp_path, "x", formats=("png", "pdf", "svg"))
    png, pdf, svg = (one[k].read_bytes() for k in ("png", "pdf", "svg"))
    two = report.save_figure(fig, tmp_path, "x", formats=("png", "pdf", "svg"))
    assert (png, pdf, svg) == tuple(two[k].read_bytes() for k in ("png", "pdf", "svg"))
    with pytest.raises(ParameterError):
        report.save_figure(fig, tmp_path, "x", formats=("jpg",))


def test_failed_figure_leaves_previous_file_and_no_temp(tmp_path):
    report.atomic_write_bytes(tmp_path / "figures" / "bad.png", b"old")
    fig = small_chart()
    fig.axes[0].text(0, 0, r"$\frac{$")  # mathtext error at draw time
    with pytest.raises(ValueError):
        report.save_figure(fig, tmp_path, "bad")
    assert (tmp_path / "figures" / "bad.png").read_bytes() == b"old"
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["bad.png"]


def test_atomic_path_removes_temp_on_error(tmp_path):
    target = tmp_path / "t.txt"
    with pytest.raises(RuntimeError):
        with report.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_text_replaces(tmp_path):
    path = report.atomic_write_text(tmp_path / "sub" / "a.txt", "一回目")
    report.atomic_write_text(path, "二回目\n")
    assert path.read_text(encoding="utf-8") == "二回目\n"
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def test_save_table_utf8_bom(tmp_path):
    df = pd.DataFrame({"市町村": ["金沢市", "七尾市"], "受診率": [0.35, 0.41]})
    path = report.save_table(df, tmp_path, "受診率")
    assert path == tmp_path / "tables" / "受診率.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.decode("utf-8-sig") == "市町村,受診率\r\n金沢市,0.35\r\n七尾市,0.41\r\n"
    assert pd.read_csv(path, encoding="utf-8-sig").equals(df)


def test_write_xlsx_sheets_bold_header_freeze_and_widths(tmp_path):
    a = pd.DataFrame({"市町村": ["金沢市", "かほく市"], "受診率": [0.35, 0.41]})
    b = pd.DataFrame({"indicator": ["x"], "value": [1]})
    long_name = "とても長いシート名" * 5  # 45 characters
    path = report.write_xlsx({"受診率": a, long_name: b, long_name + "2": b}, tmp_path / "book.xlsx",
                             column_labels={"indicator": "指標", "value": "値"})
    wb = load_workbook(path)
    assert wb.sheetnames[0] == "受診率"
    assert wb.sheetnames[1] == long_name[:31]
    assert wb.sheetnames[2] == long_name[:29] + "_2"
    ws = wb["受診率"]
    assert [c.value for c in ws[1]] == ["市町村", "受診率"]
    assert ws["A1"].font.bold and ws.freeze_panes == "A2"
    # "かほく市" is 4 full-width characters = 8, + 2 padding; "受診率" = 6 + 2
    assert ws.column_dimensions["A"].width == 10
    assert ws.column_dimensions["B"].width == 8
    assert [c.value for c in wb[wb.sheetnames[1]][1]] == ["指標", "値"]
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]
    with pytest.raises(ParameterError):
        report.write_xlsx({}, tmp_path / "empty.xlsx")


def _cells(path):
    wb = load_workbook(path)
    return [(ws.title, ws.freeze_panes, {k: d.width for k, d in ws.column_dimensions.items()},
             [[(c.value, c.data_type, bool(c.font.bold), c.number_format) for c in row] for row in ws.iter_rows()])
            for ws in wb.worksheets]


def test_write_xlsx_streamed_cells_equal_pandas_writer(tmp_path):
    """The write-only writer gives every cell the value, type, bold and number format that
    pandas' ExcelWriter gives it: missing → empty, ±inf → "inf"/"-inf", nullable integers,
    booleans, categories, mixed objects; a date column goes through pandas' writer itself."""
    df = pd.DataFrame({
        "count": np.array([1, 20, 300], dtype="int64"), "rate": [0.5, np.nan, np.inf],
        "neg": [-np.inf, 1.25, 2.0], "nullable": pd.array([1, None, 3], dtype="Int64"),
        "flag": [True, False, True], "mixed": ["‐", 12, np.nan], "cat": pd.Categorical(["a", "b", "a"]),
        "text": pd.array(["金沢市", None, "かほく市"], dtype="string"), "obj_bool": pd.Series([True, None, False], dtype=object),
        7: [1.0, 2.0, 3.0]})
    new = report.write_xlsx({"表": df, "空": df.iloc[:0]}, tmp_path / "new.xlsx")
    frames = list(zip(report._sheet_names(["表", "空"]), [df, df.iloc[:0]]))
    old = report._write_xlsx_pandas(frames, tmp_path / "old.xlsx")
    assert _cells(new) == _cells(old)
    got = _cells(new)[0][3]
    assert [c[0] for c in got[1]] == [1, 0.5, "-inf", 1, True, "‐", "a", "金沢市", True, 1]
    assert got[2][1][0] is None and got[3][1][0] == "inf"  # NaN → empty cell, inf → "inf" as pandas writes them
    dated = pd.DataFrame({"day": pd.to_datetime(["2024-04-01"]), "n": [1]})
    path = report.write_xlsx({"日付": dated}, tmp_path / "dated.xlsx")
    assert _cells(path) == _cells(report._write_xlsx_pandas([("日付", dated)], tmp_path / "dated_old.xlsx"))


def test_write_xlsx_streams_datetime_columns_as_pandas_writes_them(tmp_path, monkeypatch):
    """A person-level list with a 健診日 (naive datetime64, with missing days) is written by the
    streamed writer, cell for cell as pandas' writer writes it: a datetime cell with pandas'
    number format YYYY-MM-DD HH:MM:SS, a missing day an empty cell (issue 18 §1)."""
    lst = pd.DataFrame({"person_id": ["p1", "p2", "p3"],
                        "exam_date": pd.to_datetime(["2024-06-03 00:00:00", None, "2025-01-31 13:45:10"]),
                        "hba1c": [7.1, np.nan, 8.4],
                        "seen": pd.to_datetime(["2023-04-01", "2023-05-02", "2023-06-03"])})
    old = _cells(report._write_xlsx_pandas([("対象者", lst)], tmp_path / "old.xlsx"))
    monkeypatch.setattr(report, "_write_xlsx_pandas", None)  # the streamed writer only
    new = _cells(report.write_xlsx({"対象者": lst}, tmp_path / "new.xlsx"))
    assert new == old
    rows = new[0][3]
    assert rows[1][1][0] == datetime.datetime(2024, 6, 3) and rows[1][1][3] == "YYYY-MM-DD HH:MM:SS"
    assert rows[2][1][0] is None  # NaT → empty, as pandas writes it
    assert rows[3][1][0] == datetime.datetime(2025, 1, 31, 13, 45, 10)
    # time zones and durations still go through pandas' writer (which refuses a time zone)
    assert not report._plain_columns(lst.assign(gap=lst["seen"] - lst["seen"]))
    assert not report._plain_columns(lst.assign(seen=lst["seen"].dt.tz_localize("Asia/Tokyo")))

def test_written_xlsx_are_byte_identical_whenever_written(tmp_path, monkeypatch):
    """openpyxl stamps each zip entry and the core properties' modification date with the clock;
    `write_xlsx` (both writers) fixes the entry times and drops the dates, so the same tables give
    the same bytes on another day (issue 18), and the workbook reads back unchanged."""
    import types
    import zipfile

    import openpyxl.writer.excel

    df = pd.DataFrame({"市町村": ["金沢市", "七尾市"], "人数": [12, 30]})
    dated = pd.DataFrame({"day": pd.to_datetime(["2024-04-01"]), "n": [1]})
    first = report.write_xlsx({"表": df}, tmp_path / "a.xlsx").read_bytes()
    first_dated = report.write_xlsx({"日付": dated}, tmp_path / "c.xlsx").read_bytes()

    class Tomorrow(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.now(tz) + datetime.timedelta(days=1)

    clock = time.time
    monkeypatch.setattr(time, "time", lambda: clock() + 86400)  # zipfile's entry times
    monkeypatch.setattr(openpyxl.writer.excel, "datetime",  # the modification date openpyxl stamps
                        types.SimpleNamespace(datetime=Tomorrow, timezone=datetime.timezone))
    second = report.write_xlsx({"表": df}, tmp_path / "b.xlsx").read_bytes()
    assert second == first
    assert report.write_xlsx({"日付": dated}, tmp_path / "d.xlsx").read_bytes() == first_dated
    with zipfile.ZipFile(io.BytesIO(second)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = z.read("docProps/core.xml")
        assert b"dcterms:modified" not in core and b"dcterms:created" not in core and b"openpyxl" in core
    assert _cells(tmp_path / "b.xlsx")[0][3] == [[("市町村", "s", True, "General"), ("人数", "s", True, "General")],
                                                [("金沢市", "s", False, "General"), (12, "n", False, "General")],
                                                [("七尾市", "s", False, "General"), (30, "n", False, "General")]]


def test_png_from_plots_is_not_blank(tmp_path):
    paths = report.save_figure(small_chart(), tmp_path, "chart", formats=("png",))
    image = mpimg.imread(paths["png"])[::7, ::7]
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 10


# ------------------------------------------------------------------ one table style (issue 25 §4)
def test_display_table_style():
    mark = "\u2010"
    long_reason = "受診勧奨判定値以上で医療機関を受診していない人が多く、" * 5
    df = pd.DataFrame({"indicator_id": ["metabo", "hba1c8"], "k2t_key": ["x", "y"], "muni_name": ["金沢市", "七尾市"],
                       "numerator": [2659256, mark], "denominator": [17713, 1736],
                       "crude_rate": [15.966387, mark], "sr": [1.2345, 0.9], "suppressed": [False, True],
                       "reasons": [long_reason, "なし"]})
    styler = report.display_table(df, {"numerator": "該当者"})
    html = styler.to_html()
    assert list(styler.data.columns) == ["市町村", "該当者", "対象者数", "粗率（%）", "標準化比", "秘匿", "理由"]
    assert "2,659,256" in html and "17,713" in html and "1,736" in html  # thousands separators
    assert ">16.0<" in html and "15.966387" not in html  # one decimal, unit in the header
    assert ">1.23<" in html and ">0.90<" in html  # ratios: two decimals
    assert "True" not in html and "False" not in html and f">{report.FLAG_MARK}<" in html
    assert html.count(f">{mark}<") == 2  # the suppression mark stays
    assert long_reason in html and "..." not in html  # full text
    assert "metabo" not in html and "k2t" not in html  # no internal ids
    # text columns (市町村, 理由) read from the left, numbers and the 秘匿 mark stay right-aligned
    left = re.search(r"([^{}]*)\{\s*text-align: left;\s*\}", html).group(1)
    assert set(re.findall(r"_col(\d+)", left)) == {"0", "6"}
    # explicit kinds: a float column of whole numbers named as counts; keep an id when asked
    s2 = report.display_table(pd.DataFrame({"step_id": ["A"], "n": [1234.0]}), counts=["n"], keep=["step_id"])
    assert "1,234" in s2.to_html() and "step_id" in s2.data.columns
    pivot = pd.DataFrame({"地区": ["A", "B"], "n": [1500, 20]}).set_index("地区")
    assert list(report.display_table(pivot).data.columns) == ["地区", "n"]  # row labels kept as a column
    years = report.display_table(pd.DataFrame({"fy": [2024], "fy_first": [2022], "count": [12345]})).to_html()
    assert ">2024<" in years and ">2022<" in years and ">12,345<" in years  # years without separators


def test_notebook_figure_writer_bounds_pending_figures_and_raises_at_wait():
    """The notebook's writer keeps at most MAX_PENDING figures (300-dpi pixels) waiting, keeps
    their order, and `wait` raises what failed in the thread."""
    import threading
    import time

    from hsutils.running.notebook import _FigureWriter

    writer, peak, done = _FigureWriter(), 0, []
    lock = threading.Lock()

    def slow(i):
        time.sleep(0.02)
        with lock:
            done.append(i)

    for i in range(10):
        writer.submit(slow, i)
        peak = max(peak, sum(not job.done() for job in writer.jobs))
    writer.wait()
    assert peak <= _FigureWriter.MAX_PENDING and done == list(range(10))

    def fails():
        raise OSError("ディスクがいっぱいです")

    writer = _FigureWriter()
    writer.submit(fails)
    with pytest.raises(OSError):
        writer.wait()


def test_notebook_figure_writer_flushes_at_interpreter_exit(tmp_path):
    """A notebook that forgets `ctx.finish()` still gets its figures: the writer's queue is written
    when the interpreter exits (the PNG byte-identical to savefig's), and a failure there is
    printed in Japanese instead of being lost."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import time
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from hsutils.publish import report
        from hsutils.running.notebook import _FigureWriter

        fig = Figure(figsize=(3, 2))
        FigureCanvasAgg(fig)
        fig.add_subplot().plot([1, 2, 3])
        report.save_figure(fig, r"{tmp_path / 'direct'}", "x", formats=("png",))
        writer = _FigureWriter()
        writer.submit(time.sleep, 0.5)  # the figure below is still queued when the script ends
        report.save_figure(fig, r"{tmp_path / 'queued'}", "x", formats=("png",), writer=writer)

        def fails():
            raise OSError("ディスクがいっぱいです")

        writer.submit(fails)
        # no writer.wait(), as a notebook without ctx.finish()
    """)
    (tmp_path / "direct" / "figures").mkdir(parents=True)
    (tmp_path / "queued" / "figures").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    queued = tmp_path / "queued" / "figures" / "x.png"
    assert queued.read_bytes() == (tmp_path / "direct" / "figures" / "x.png").read_bytes()
    assert "図の書き出しに失敗しました（ノートブックの終了時）: ディスクがいっぱいです" in done.stderr


def test_notebook_figure_writer_waited_for_leaves_no_exit_hook(monkeypatch):
    """`wait` (ctx.finish) unregisters the exit hook it registered: a finished notebook leaves
    nothing to run at exit and no writer kept alive by atexit."""
    import atexit

    from hsutils.running.notebook import _FigureWriter

    hooks = []
    monkeypatch.setattr(atexit, "register", hooks.append)
    monkeypatch.setattr(atexit, "unregister", hooks.remove)
    writer = _FigureWriter()
    assert hooks == [writer._flush_at_exit]
    writer.submit(lambda: None)
    writer.wait()
    assert hooks == []

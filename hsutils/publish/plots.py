"""Committee charts in one consistent style with Japanese fonts (docs/design.md §9, §10; docs/rules.md §9).

Every chart function follows the seaborn convention: the data first (a tidy DataFrame), every
other argument keyword-only (`title`, `footer` — build it with `footer()` — and the options),
`ax=` to draw into an existing Axes (a Figure is created only when `ax` is None), and it returns
the Axes; multi-panel charts (`pyramid_small_multiples`, `spine_chart`, `upset_chart`) return
their Figure (with `ax=` they draw into a SubFigure in the place of that Axes). A new Figure is
not registered with pyplot, so batch runs do not leak figures; use `ax.figure` to save or
display it. Conventions shared by all charts:

* style: `STYLE` (IPAexGothic from matplotlib-fontja, committee rcParams) is applied inside
  every chart function with `style()` (a `matplotlib.rc_context`); importing this module changes
  no global setting (`apply_style()` makes it global on request) (docs/design.md §9);
* confidence intervals: the level printed ("95%信頼区間") is the level used — the `conf=`
  argument, else the data's `conf` column (tidy output of `hsutils.stats`), else 0.95;
* sizes: `FIGURE_SIZES` ("slide" 10×5.6 in, "a4_portrait", "a4_landscape") or an explicit tuple;
* colours: Okabe–Ito (colour-blind safe) for series; ONE significance palette
  `SIGNIFICANCE_COLOURS` (良い / 差なし / 悪い with polarity, 高い / 差なし / 低い in blue tones
  without) used by every chart (docs/design.md §10);
* footer: source, fiscal year, population and conditions at the bottom of every chart, plus the
  note that comparisons are for needs assessment, not ranking, where comparisons are shown
  (docs/design.md §10);
* small counts: counts 1 … threshold−1 (default 1–9) and every figure derived from them are never
  drawn or printed; they are shown as "‐" or omitted with a note (docs/design.md §6, docs/rules.md §9). A count
  given as NaN is treated as already suppressed upstream (`hsutils.publish.privacy`), so secondary
  suppression done there carries through.
"""
from __future__ import annotations

import contextlib
import functools
import math
import re
import unicodedata
import warnings
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.patheffects as path_effects
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Patch, Rectangle
from matplotlib.path import Path as MplPath
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

from hsutils import stats
from hsutils.core import vocab
from hsutils.rules import clinical
from hsutils.publish import privacy, report
from hsutils.core.errors import ParameterError

with matplotlib.rc_context():  # importing matplotlib_fontja registers IPAexGothic (kept) and sets
    import matplotlib_fontja  # noqa: F401  the global font.family (undone when the context ends)

__all__ = [
    "JAPANESE_FONT", "FIGURE_SIZES", "OKABE_ITO", "SERIES_COLOURS", "SIGNIFICANCE_COLOURS",
    "COMPARISON_NOTE", "SUPPRESSION_MARK", "FALLBACK_NOTE_DEFAULT",
    "STYLE", "style", "styled", "apply_style", "footer", "fy_label", "fy_japanese", "significance_label",
    "significance_colour",
    "significance_colours", "suppression_note", "class_breaks", "conf_label",
    "choropleth", "funnel_plot", "ranked_bar", "trend_chart", "ckd_heatmap", "population_pyramid",
    "pyramid_small_multiples", "stacked_bars", "target_gap_bars", "amount_bars", "concentration_curve", "flow_chart", "spine_chart", "heat_table",
    "upset_chart", "reference_comparison_chart", "smoothed_ratio_chart", "REFERENCE_LINE_STYLES",
]

# ---------------------------------------------------------------------------------------------
# Style
# ---------------------------------------------------------------------------------------------
#: Font shipped by the pip package matplotlib-fontja (IPAexGothic; works offline).
JAPANESE_FONT = "IPAexGothic"
#: Fallback for the few symbols IPAexGothic lacks (≥, ≤); matplotlib falls back per glyph.
_FALLBACK_FONT = "DejaVu Sans"

#: Figure sizes in inches: a 16:9-ish slide and A4 portrait / landscape (docs/design.md §1 committee).
FIGURE_SIZES = {"slide": (10.0, 5.6), "a4_portrait": (8.27, 11.69), "a4_landscape": (11.69, 8.27)}

#: Okabe & Ito (2008) colour-blind safe palette.
OKABE_ITO = {
    "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73", "yellow": "#F0E442",
    "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7", "black": "#000000",
}
#: Colour cycle for series (areas, sexes) in line and bar charts.
SERIES_COLOURS = [OKABE_ITO[k] for k in
                  ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue",
                   "yellow", "black")]

#: THE significance palette (docs/design.md §10), used by every chart and table. Keys are the judgement
#: labels a user reads. With polarity: 良い (bluish green) / 差なし (grey) / 悪い (vermillion);
#: without polarity: 高い (dark blue) / 差なし / 低い (light blue). 判定なし: no comparison
#: available (missing interval or suppressed). Okabe–Ito based, so safe for colour-blind readers.
SIGNIFICANCE_COLOURS = {
    "良い": "#009e73",
    "差なし": "#bdbdbd",
    "悪い": "#d55e00",
    "高い": "#0b4f8a",
    "低い": "#8ec8f0",
    "判定なし": "#ffffff",
}
#: Legend order of the judgement labels.
_SIGNIFICANCE_ORDER = ("良い", "悪い", "高い", "低い", "差なし", "判定なし")

_COMPARISON_HIGHER = stats.SIGNIFICANTLY_HIGHER
_COMPARISON_SAME = stats.NOT_SIGNIFICANT
_COMPARISON_LOWER = stats.SIGNIFICANTLY_LOWER
_POLARITIES = ("higher_better", "lower_better")

#: Added to the footer of every chart that shows comparisons (docs/design.md §10).
COMPARISON_NOTE = "比較は支援の必要性を見るためのもので、順位付けではありません"
#: Mark of a suppressed figure (same as `hsutils.publish.privacy.SUPPRESSION_MARK`, NDB style "‐").
SUPPRESSION_MARK = privacy.SUPPRESSION_MARK
#: Used when `hsutils.inputs.regions.FALLBACK_NOTE` is not available.
FALLBACK_NOTE_DEFAULT = "境界データが使えないため、市町村を同じ大きさのタイルで表示しています（面積・位置は実際と異なります）"

_FOOTER_SIZE = 7.5
_TITLE_SIZE = 13
_TEXT_GREY = "#404040"
_HALO = [path_effects.withStroke(linewidth=2.5, foreground="white")]


#: The committee style (docs/design.md §9): Japanese font (IPAexGothic from matplotlib-fontja) first, a
#: fallback for symbols, Okabe–Ito colours, 300 dpi output, fixed SVG hash salt (reproducible
#: files) and TrueType font embedding in PDF. Applied inside every chart function through
#: `style()`; importing this module changes no global setting.
STYLE = {
    "font.family": [JAPANESE_FONT, _FALLBACK_FONT],
    "axes.unicode_minus": True,  # IPAexGothic has U+2212
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.dpi": 300,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.edgecolor": "#666666",
    "axes.labelcolor": "#222222",
    "axes.titlesize": 10.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.prop_cycle": cycler(color=SERIES_COLOURS),
    "image.cmap": "cividis",
    **report.SAVE_RCPARAMS,
}


@contextlib.contextmanager
def style():
    """Context in which matplotlib uses the committee style (`STYLE`), e.g. for a user's own
    chart: ``with plots.style(): fig, ax = plt.subplots()``. Settings are restored on exit."""
    with matplotlib.rc_context(STYLE):
        yield


def apply_style() -> None:
    """Make the committee style the global default (for a whole notebook of the user's own
    charts). The chart functions of this module do not need it: they use `style()`."""
    matplotlib.rcParams.update(STYLE)


def styled(function):
    """Decorator of every chart function (and of figure functions in other modules): runs it in
    `style()` and lays the figure out once there, so ticks and labels made at draw time use the
    committee font as well. The function returns an Axes or a Figure."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with style():
            result = function(*args, **kwargs)
            root = result.get_figure(root=True)
            if isinstance(root, _StyledFigure):
                _lay_out(root)  # its draws run in the style anyway: only the layout (ticks made now)
            else:  # a user's figure (`ax=`): its later draws do not, so the ticks are made here
                root.draw_without_rendering()
        return result
    return wrapper


class _StyledFigure(Figure):
    """A figure this module made (`_new_figure`): every draw of it (savefig, the notebook's display,
    a layout measurement) runs in `style()`, so ticks and texts matplotlib makes at draw time use
    the committee font and sizes. `styled` then needs no draw of its own when the chart is made,
    only the layout (issue 18 §1: a full draw was about a fifth of a chart's cost)."""

    def draw(self, renderer):
        with style():
            return super().draw(renderer)


# IPAexGothic has no bold face: this module never asks for bold (matplotlib would log a
# findfont warning and draw regular weight anyway); emphasis is by size and colour.


# ---------------------------------------------------------------------------------------------
# Small helpers: years, footer text, widths
# ---------------------------------------------------------------------------------------------
def _era(fy: int) -> tuple[str, str, int]:
    """(kanji era, letter, era year) of an April-start fiscal year (令和元年度 = 2019)."""
    fy = int(fy)
    if fy >= 2019:
        return "令和", "R", fy - 2018
    if fy >= 1989:
        return "平成", "H", fy - 1988
    return "昭和", "S", fy - 1925


def fy_label(fy) -> str:
    """Short axis label of a fiscal year: 2022 -> "R4\\n(2022)" (和暦 first, western below)."""
    _, letter, n = _era(fy)
    return f"{letter}{n}\n({int(fy)})"


def fy_japanese(fy) -> str:
    """Long label: 2024 -> "令和6年度（2024）", 2019 -> "令和元年度（2019）"."""
    kanji, _, n = _era(fy)
    return f"{kanji}{'元' if n == 1 else n}年度（{int(fy)}）"


def footer(source: str, fy, population: str, conditions: str | None = None) -> str:
    """Footer text for a chart (docs/design.md §1, §10): 出典 ｜ 年度 ｜ 対象 ｜ 条件.

    `fy` may be an int (2024 -> 令和6年度（2024）), a (first, last) pair for a period, or
    text used as is. Example: ``footer("KDB（デモデータ）", 2024, "国保 40–74歳", "全市町村")``
    -> "出典: KDB（デモデータ） ｜ 年度: 令和6年度（2024） ｜ 対象: 国保 40–74歳 ｜ 条件: 全市町村".
    """
    if isinstance(fy, (tuple, list)) and len(fy) == 2:
        year = f"{fy_japanese(fy[0])}〜{fy_japanese(fy[1])}"
    elif isinstance(fy, (int, np.integer)) or (isinstance(fy, str) and fy.isdigit()):
        year = fy_japanese(int(fy))
    else:
        year = str(fy)
    parts = [f"出典: {source}", f"年度: {year}", f"対象: {population}"]
    if conditions:
        parts.append(f"条件: {conditions}")
    return " ｜ ".join(parts)


def suppression_note(threshold: int = privacy.DEFAULT_THRESHOLD) -> str:
    """Note shown when something was suppressed (docs/rules.md §9)."""
    return f"{threshold}人未満のため非表示（{SUPPRESSION_MARK}）"


def _text_width_pt(text: str, fontsize: float) -> float:
    """Rough width of one line in points: full-width characters ≈ 1 em, others ≈ 0.55 em."""
    wide = sum(unicodedata.east_asian_width(ch) in "WF" for ch in text)
    return (wide + 0.55 * (len(text) - wide)) * fontsize


def _wrap_parts(parts: Sequence[str], sep: str, width_pt: float, fontsize: float) -> list[str]:
    """Greedy wrap of parts joined by `sep` into lines no wider than width_pt."""
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = part if not current else current + sep + part
        if current and _text_width_pt(candidate, fontsize) > width_pt:
            lines.append(current)
            current = part
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _wrap_chars(text: str, width_pt: float, fontsize: float) -> list[str]:
    """Wrap a single long text (Japanese has no spaces) at character level."""
    lines, current = [], ""
    for ch in text:
        if current and _text_width_pt(current + ch, fontsize) > width_pt:
            lines.append(current)
            current = ch
        else:
            current += ch
    if current:
        lines.append(current)
    return lines


def _fmt(value, fmt: str) -> str:
    return SUPPRESSION_MARK if value is None or pd.isna(value) else fmt.format(value)


def _count_text(count) -> str:
    return SUPPRESSION_MARK if pd.isna(count) else f"{int(round(float(count))):,}"


def _value_formatter(fmt: str) -> FuncFormatter | PercentFormatter:
    """Axis tick formatter matching a value format: percent formats give PercentFormatter."""
    if "%" in fmt:
        return PercentFormatter(1.0, decimals=None)  # decimals chosen from the axis range
    return FuncFormatter(lambda v, _: f"{v:,.6g}")


def _luminance(colour) -> float:
    r, g, b = mcolors.to_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _text_colour_on(colour) -> str:
    return "white" if _luminance(colour) < 0.45 else "black"


# ---------------------------------------------------------------------------------------------
# Small counts (docs/design.md §6, docs/rules.md §9)
# ---------------------------------------------------------------------------------------------
def _hidden_mask(counts, threshold: int) -> np.ndarray:
    """True where a count must not be shown: 1 … threshold−1 or NaN (hidden upstream;
    `privacy.is_hidden`)."""
    c = pd.to_numeric(pd.Series(np.asarray(counts, dtype=object).ravel()), errors="coerce")
    return np.asarray(privacy.is_hidden(c, threshold), dtype=bool)


def _row_hidden(df: pd.DataFrame, count_col: str | None, threshold: int) -> np.ndarray:
    """Rows whose figures derive from a small (or suppressed) count; all False without count_col."""
    if count_col is None:
        return np.zeros(len(df), dtype=bool)
    return _hidden_mask(df[count_col].to_numpy(), threshold)


# ---------------------------------------------------------------------------------------------
# Significance palette (docs/design.md §10)
# ---------------------------------------------------------------------------------------------
def _check_polarity(polarity):
    if polarity is None or (isinstance(polarity, float) and math.isnan(polarity)) or polarity == "":
        return None
    if polarity not in _POLARITIES:
        raise ParameterError(
            f"polarity {polarity!r} は 'higher_better'（高いほど良い）、'lower_better'（低いほど良い）"
            "または None（判定なし）で指定してください。")
    return polarity


def significance_label(comparison, polarity=None) -> str:
    """Judgement label a user reads (docs/design.md §10).

    comparison ∈ {"有意に高い", "有意差なし", "有意に低い"} (hsutils.stats.compare_to_benchmark);
    polarity ∈ {"higher_better", "lower_better", None}. With polarity: 良い / 差なし / 悪い;
    without: 高い / 差なし / 低い. Anything else (NaN, suppressed) gives "判定なし".
    """
    polarity = _check_polarity(polarity)
    from hsutils.analysis.indicators import judgement  # the one definition of 良い/悪い (docs/design.md §10)

    label = judgement(np.array([comparison], dtype=object), np.array([polarity], dtype=object))[0]
    return "判定なし" if label is None else str(label)


def significance_colour(comparison, polarity=None) -> str:
    """Colour of a comparison in THE significance palette (`SIGNIFICANCE_COLOURS`, docs/design.md §10)."""
    return SIGNIFICANCE_COLOURS[significance_label(comparison, polarity)]


def significance_colours(comparisons, polarity=None) -> tuple[list[str], list[str]]:
    """Labels and colours for a sequence of comparisons; `polarity` is one value or a sequence
    aligned with `comparisons` (a handful of areas/indicators, so a plain loop)."""
    comps = list(comparisons)
    pols = list(polarity) if isinstance(polarity, (list, tuple, np.ndarray, pd.Series)) \
        else [polarity] * len(comps)
    labels = [significance_label(c, p) for c, p in zip(comps, pols)]
    return labels, [SIGNIFICANCE_COLOURS[lab] for lab in labels]


def _significance_handles(labels_present) -> list[Patch]:
    present = set(labels_present)
    return [Patch(facecolor=SIGNIFICANCE_COLOURS[lab], edgecolor="#555555", linewidth=0.6, label=lab)
            for lab in _SIGNIFICANCE_ORDER if lab in present]


# ---------------------------------------------------------------------------------------------
# Figure frame: title, footer, layout
# ---------------------------------------------------------------------------------------------
def _new_figure(size="slide") -> Figure:
    figsize = FIGURE_SIZES[size] if isinstance(size, str) else tuple(size)
    fig = _StyledFigure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)  # a canvas that can measure text (label de-cluttering)
    return fig


def _finish(fig: Figure, title: str, footer_text: str, notes: Sequence[str] = (),
            comparison: bool = False) -> Figure:
    """Draw the title at the top and the footer (source ｜ year ｜ population ｜ conditions,
    then notes, then the comparison note) at the bottom, and keep the axes between them."""
    width_in, height_in = fig.get_size_inches()
    usable_pt = (width_in - 0.3) * 72
    title_lines = _wrap_chars(title, usable_pt, _TITLE_SIZE) if title else []
    lines = _footer_lines(footer_text, notes, comparison, usable_pt)
    pad_in = 0.08
    footer_h = len(lines) * _FOOTER_SIZE * 1.4 / 72 + 2 * pad_in
    title_h = len(title_lines) * _TITLE_SIZE * 1.3 / 72 + 2 * pad_in if title_lines else pad_in
    if lines:
        fig.text(0.15 / width_in, pad_in / height_in, "\n".join(lines), ha="left", va="bottom",
                 fontsize=_FOOTER_SIZE, color=_TEXT_GREY, linespacing=1.4, gid="footer")
        y = footer_h / height_in - 0.02 / height_in
        fig.add_artist(Line2D([0.15 / width_in, 1 - 0.15 / width_in], [y, y], lw=0.5,
                              color="#BBBBBB", transform=fig.transFigure))
    if title_lines:
        fig.text(0.15 / width_in, 1 - pad_in / height_in, "\n".join(title_lines), ha="left",
                 va="top", fontsize=_TITLE_SIZE, color="#000000",
                 linespacing=1.3, gid="title")
    bottom = footer_h / height_in
    top = 1 - title_h / height_in
    fig.get_layout_engine().set(rect=(0.0, bottom, 1.0, max(top - bottom, 0.2)))
    return fig


def _axes(ax, size) -> tuple[Figure, Axes, bool]:
    """(figure, axes, own): a new figure of `size` when `ax` is None, else the given Axes."""
    if ax is None:
        fig = _new_figure(size)
        return fig, fig.add_subplot(), True
    # tick labels of an Axes made outside `style()` would keep the default font (no kana)
    ax.tick_params(axis="both", which="both", labelfontfamily=STYLE["font.family"])
    for label in (ax.xaxis.label, ax.yaxis.label):
        label.set_fontfamily(STYLE["font.family"])
    fig = ax.get_figure(root=True)
    if not hasattr(fig.canvas, "get_renderer"):  # label de-cluttering measures text
        FigureCanvasAgg(fig)
    return fig, ax, False


def _panel_figure(ax, size) -> tuple[Figure | SubFigure, bool]:
    """(figure, own) for a multi-panel chart: a new figure, or a SubFigure in the place of the
    given Axes (which is removed), so the panels fit in a user's layout."""
    if ax is None:
        return _new_figure(size), True
    parent, spec = ax.get_figure(root=False), ax.get_subplotspec()
    if spec is None:
        raise ParameterError("複数パネルの図に渡す ax は subplots などで作った格子上の Axes にしてください。")
    ax.remove()
    return parent.add_subfigure(spec), False


def _footer_lines(footer_text: str, notes: Sequence[str], comparison: bool, usable_pt: float) -> list[str]:
    lines = []
    for line in _wrap_parts((footer_text or "").split(" ｜ "), " ｜ ", usable_pt, _FOOTER_SIZE):
        # one part wider than the page (a long 「対象」 of many indicators) wraps by characters
        lines.extend(_wrap_chars(line, usable_pt, _FOOTER_SIZE)
                     if _text_width_pt(line, _FOOTER_SIZE) > usable_pt else [line])
    extra = list(dict.fromkeys(n for n in notes if n))  # unique, in order
    if comparison:
        extra.append(COMPARISON_NOTE)
    for note in extra:
        lines.extend(_wrap_chars("※" + note, usable_pt, _FOOTER_SIZE))
    return lines


def _finish_chart(fig, ax, own: bool, title: str, footer_text: str, notes: Sequence[str] = (),
                  comparison: bool = False):
    """Title and footer: on the whole figure when the chart made it (`_finish`), else on the
    given Axes (title above, footer below it) or SubFigure. Returns the Axes, or the figure of
    a multi-panel chart."""
    if own:
        _finish(fig, title, footer_text, notes, comparison)
        return ax if ax is not None else fig
    target = ax if ax is not None else fig
    root = target.get_figure(root=True)
    frac = target.get_position().width if ax is not None else target.bbox_relative.width
    lines = _footer_lines(footer_text, notes, comparison, frac * root.get_size_inches()[0] * 72)
    if ax is not None:
        if title:
            ax.set_title(title, loc="left", fontsize=_TITLE_SIZE * 0.85, fontfamily=STYLE["font.family"])
        if lines:
            ax.annotate("\n".join(lines), xy=(0, 0), xycoords="axes fraction", xytext=(0, -40),
                        textcoords="offset points", ha="left", va="top", fontsize=_FOOTER_SIZE,
                        color=_TEXT_GREY, linespacing=1.4, annotation_clip=False, gid="footer")
        return ax
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=_TITLE_SIZE * 0.85).set_gid("title")
    if lines:
        fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize=_FOOTER_SIZE, color=_TEXT_GREY,
                      linespacing=1.4).set_gid("footer")
    return fig


def _conf_of(df: pd.DataFrame | None, conf: float | None) -> float:
    """The confidence level of the intervals drawn: `conf` when given, else the data's `conf`
    column (tidy output of `hsutils.stats`), else 0.95 (docs/methods.md §1)."""
    if conf is None and df is not None and "conf" in df.columns:
        levels = pd.unique(pd.to_numeric(df["conf"], errors="coerce").dropna())
        if len(levels) > 1:
            raise ParameterError(f"conf 列に複数の信頼水準 {sorted(levels)} があります。1つにしてください。")
        conf = float(levels[0]) if len(levels) else None
    conf = 0.95 if conf is None else float(conf)
    if not 0 < conf < 1:
        raise ParameterError(f"信頼水準 conf={conf!r} は 0 と 1 の間で指定してください（例: 0.95）。")
    return conf


def conf_label(conf: float) -> str:
    """"95%信頼区間" for 0.95, "99.8%信頼区間" for 0.998: the label printed on the charts."""
    return f"{float(conf) * 100:.10g}%信頼区間"


def _lay_out(fig: Figure):
    """Place the axes as the next draw will (the layout engine, then each axes' aspect) and return
    the renderer, without drawing: the label positions `_declutter` measures are then final. A
    full `draw_without_rendering` would also lay out every text, tick and patch once more, for
    nothing (issue 18: a fifth of a map's cost)."""
    root = fig.get_figure(root=True) if hasattr(fig, "get_figure") else fig
    renderer = root.canvas.get_renderer()
    engine = root.get_layout_engine()
    if root.axes and engine is not None:
        engine.execute(root)
    for axes in root.get_axes():
        locator = axes.get_axes_locator()
        axes.apply_aspect(locator(axes, renderer) if locator else None)
    return renderer


def _declutter(fig: Figure, texts: Sequence, offsets_pt=((0, 0), (0, 7), (0, -7), (9, 0), (-9, 0),
                                                          (0, 13), (0, -13), (12, 8), (-12, -8))):
    """Keep labels from overlapping: in priority order, try small offsets (points) and hide a
    label when every offset collides with a label already placed. Uses the rendered text
    extents after the layout has run. Returns the texts that were hidden."""
    renderer = _lay_out(fig)
    placed, hidden = [], []
    for text in texts:
        base = text.get_transform()
        for dx, dy in offsets_pt:
            text.set_transform(base + ScaledTranslation(dx / 72, dy / 72, fig.dpi_scale_trans))
            box = text.get_window_extent(renderer).padded(1.5)
            if not any(box.overlaps(p) for p in placed):
                placed.append(box)
                break
        else:
            text.set_transform(base)
            text.set_visible(False)
            hidden.append(text)
    return hidden


# ---------------------------------------------------------------------------------------------
# Choropleth and tile map
# ---------------------------------------------------------------------------------------------
def class_breaks(values, classes: int = 5, method: str = "quantile") -> np.ndarray:
    """Class edges (k+1 values, increasing) for a choropleth.

    method "quantile": equal-count classes (duplicates merged, so fewer classes with ties);
    "nice": round numbers from matplotlib's MaxNLocator covering min..max. NaN ignored.
    """
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    if v.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return np.array([lo, hi + (abs(hi) * 0.01 or 1.0)])
    if method == "quantile":
        edges = np.unique(np.quantile(v, np.linspace(0, 1, classes + 1)))
    elif method == "nice":
        edges = MaxNLocator(nbins=classes, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        edges = edges[(edges > lo) & (edges < hi)]
        edges = np.concatenate([[lo], edges, [hi]])
    else:
        raise ParameterError(f"classes の方法 {method!r} は 'quantile' か 'nice' で指定してください。")
    return edges


def _classify(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Class index 0..k-1 (the top edge belongs to the last class); -1 for NaN."""
    idx = np.searchsorted(edges[1:-1], values, side="right")
    return np.where(np.isnan(values), -1, idx)


def _geometry_path(geom) -> MplPath:
    """shapely Polygon/MultiPolygon (lon/lat) -> matplotlib Path with holes."""
    polygons = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
    vertices, codes = [], []
    for poly in polygons:
        for ring in (poly.exterior, *poly.interiors):
            xy = np.asarray(ring.coords)[:, :2]
            vertices.append(xy)
            ring_codes = np.full(len(xy), MplPath.LINETO, dtype=MplPath.code_type)
            ring_codes[0], ring_codes[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
            codes.append(ring_codes)
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _class_colours(cmap, k: int) -> list:
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return [mcolors.to_hex(c) for c in cm(np.linspace(0.12, 0.92, k))]


def _choropleth_legend(ax, edges, colours, fmt, extra: Sequence[tuple[str, str]], legend_title):
    handles = [Patch(facecolor=c, edgecolor="#777777", linewidth=0.5,
                     label=f"{fmt.format(edges[i])}–{fmt.format(edges[i + 1])}")
               for i, c in enumerate(colours)]
    handles += [Patch(facecolor=c, edgecolor="#777777", linewidth=0.5, label=lab) for lab, c in extra]
    ax.legend(handles=handles[::-1] if not extra else handles[:len(colours)][::-1] + handles[len(colours):],
              title=legend_title, loc="upper left", bbox_to_anchor=(1.0, 1.0), title_fontsize=8.5)


@styled
def choropleth(values: pd.DataFrame, boundaries: pd.DataFrame | None = None, *, value_col: str,
               title: str, footer: str, area_col: str = "code", label_col: str = "name", classes: int = 5,
               cmap="Blues", labels: bool = True, tiles: pd.DataFrame | None = None,
               breaks: str = "quantile", value_fmt: str = "{:.1f}", legend_title: str | None = None,
               count_col: str | None = None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
               fallback_note: str | None = None, ax: Axes | None = None, size="slide") -> Axes:
    """Choropleth map of an area indicator, or a tile map when boundaries are missing.

    values: one row per area: `area_col` (area code, str), `value_col` (float), optionally
        `label_col` (display name; else taken from boundaries/tiles) and `count_col` (the count the
        value derives from; values from counts 1–9 are hidden, docs/rules.md §9).
    boundaries: `code` (str), `name` (str), `geometry` (shapely Polygon/MultiPolygon, lon/lat),
        as `hsutils.inputs.regions` provides. Pass None with `tiles` for the fallback.
    tiles: `code`, `name`, `col`, `row` (regions.tile_grid_layout); drawn as equal squares and
        the footer gets the fallback note (regions.FALLBACK_NOTE).
    Classes: `breaks` "quantile" or "nice" (`class_breaks`), `classes` at most; legend shows
    ranges with `value_fmt`; areas without a value are white ("算出なし"), suppressed ones
    light grey. Labels are placed at representative points, nudged or skipped when they would
    overlap (larger areas first).
    """
    if boundaries is None and tiles is None:
        raise ParameterError("choropleth には boundaries（境界）か tiles（タイル配置）が必要です。")
    fig, ax, own = _axes(ax, size)
    v = values.copy()
    v["_code"] = v[area_col].astype(str)
    v["_value"] = pd.to_numeric(v[value_col], errors="coerce").astype(float)
    hidden = _row_hidden(v, count_col, suppress_threshold)
    v.loc[hidden, "_value"] = np.nan
    v = v.drop_duplicates("_code").set_index("_code")
    edges = class_breaks(v["_value"], classes, breaks)
    colours = _class_colours(cmap, len(edges) - 1)
    base = (tiles if boundaries is None else boundaries).copy()
    base["_code"] = base["code"].astype(str)
    base["_value"] = base["_code"].map(v["_value"]).astype(float)
    base["_hidden"] = base["_code"].map(pd.Series(hidden, index=values[area_col].astype(str))
                                        .groupby(level=0).any()).fillna(False).astype(bool)
    if label_col in v.columns:
        base["_name"] = base["_code"].map(v[label_col]).fillna(base["name"]).astype(str)
    else:
        base["_name"] = base["name"].astype(str)
    cls = _classify(base["_value"].to_numpy(), edges)
    fills = np.where(cls >= 0, np.array(colours, dtype=object)[np.clip(cls, 0, None)], "#FFFFFF")
    fills = np.where(base["_hidden"].to_numpy(), "#D9D9D9", fills)
    notes, extra = [], []
    if (cls < 0).any() and (~base["_hidden"] & base["_value"].isna()).any():
        extra.append(("算出なし", "#FFFFFF"))
        notes.append("算出なし：対象者がいない、または率を算出できない地域（年齢調整率は該当10件未満では算出しません）")
    if base["_hidden"].any():
        extra.append((f"非表示（{suppress_threshold}人未満）", "#D9D9D9"))
        notes.append(suppression_note(suppress_threshold))
    texts = []
    if boundaries is None:
        _draw_tiles(ax, base, fills, value_fmt, labels)
        notes.insert(0, fallback_note or _regions_fallback_note())
    else:
        texts = _draw_polygons(ax, base, fills, labels)
    _choropleth_legend(ax, edges, colours, value_fmt, extra, legend_title or str(value_col))
    _finish_chart(fig, ax, own, title, footer, notes)
    if texts:
        hidden_labels = _declutter(fig, texts)
        if hidden_labels:
            notes.append("重なるため一部の名称を省略")
            for t in list(fig.texts) + list(ax.texts):
                if t.get_gid() in ("footer", "title"):
                    t.remove()
            for a in [a for a in fig.artists if isinstance(a, Line2D)] if own else []:
                a.remove()
            _finish_chart(fig, ax, own, title, footer, notes)
    return ax


def _regions_fallback_note() -> str:
    try:
        from hsutils.inputs import regions  # written separately; optional at import time
        return getattr(regions, "FALLBACK_NOTE", FALLBACK_NOTE_DEFAULT)
    except ImportError:
        return FALLBACK_NOTE_DEFAULT


class _Shapes:
    """What a map needs of its boundary shapes, computed once per set of shapes and process (the
    same boundaries are drawn for every indicator, issue 18): one matplotlib Path per area, the
    bounds, the mean centroid latitude (aspect), the areas and the label points."""

    def __init__(self, geometries: Sequence):
        self.geometries = tuple(geometries)  # kept: the cache key is their ids
        self.paths = [_geometry_path(g) for g in self.geometries]
        self.bounds = np.array([g.bounds for g in self.geometries]).T  # minx, miny, maxx, maxy
        self.mean_lat = float(np.mean([g.centroid.y for g in self.geometries]))
        self.sizes = np.array([g.area for g in self.geometries])
        self.label_points = [_label_point(g) for g in self.geometries]


_SHAPES_CACHE: dict[tuple, _Shapes] = {}
#: sets of shapes kept (a prefecture's municipalities and 二次医療圏, a few user layers)
_SHAPES_CACHE_SIZE = 8


def _shapes(geometries) -> _Shapes:
    """The prepared `_Shapes` of these geometry objects (the boundary layers of
    `regions.boundary_layers`, reused across maps), prepared on first use."""
    geometries = tuple(geometries)
    key = tuple(map(id, geometries))
    shapes = _SHAPES_CACHE.get(key)
    if shapes is None:
        if len(_SHAPES_CACHE) >= _SHAPES_CACHE_SIZE:
            _SHAPES_CACHE.pop(next(iter(_SHAPES_CACHE)))
        shapes = _SHAPES_CACHE[key] = _Shapes(geometries)
    return shapes


def _draw_polygons(ax, base: pd.DataFrame, fills: np.ndarray, labels: bool) -> list:
    shapes = _shapes(base["geometry"])
    # all areas in one collection (one draw call; the paths are the prepared ones, only colours change)
    ax.add_collection(PathCollection(shapes.paths, facecolors=list(fills), edgecolors="#555555",
                                     linewidths=0.5, joinstyle="miter", capstyle="butt", gid="map_areas"),
                      autolim=False)
    minx, miny, maxx, maxy = shapes.bounds
    dx, dy = maxx.max() - minx.min(), maxy.max() - miny.min()
    ax.set_xlim(minx.min() - 0.02 * dx, maxx.max() + 0.02 * dx)
    ax.set_ylim(miny.min() - 0.02 * dy, maxy.max() + 0.02 * dy)
    ax.set_aspect(1 / math.cos(math.radians(shapes.mean_lat)))
    ax.set_axis_off()
    if not labels:
        return []
    sizes = shapes.sizes
    # small areas (small towns) get their label beside the map with a leader line, so neither the
    # name nor the area's colour is lost under the labels of their neighbours
    small = sizes < _CALLOUT_SHARE * sizes.mean() if len(sizes) >= _CALLOUT_MIN_AREAS else np.zeros(len(sizes), bool)
    texts = _callout_labels(ax, base[small], (minx.min(), miny.min(), maxx.max(), maxy.max()),
                            [p for p, s in zip(shapes.label_points, small) if s])
    for i in np.argsort(-sizes):  # big areas first
        if small[i]:
            continue
        point = shapes.label_points[i]
        t = ax.text(point.x, point.y, base["_name"].iloc[i], ha="center", va="center", fontsize=7,
                    color="#111111", path_effects=_HALO, gid="area_label")
        t.set_in_layout(False)
        texts.append(t)
    return texts


#: An area smaller than this share of the mean area is labelled beside the map (leader line) ...
_CALLOUT_SHARE = 0.25
#: ... when the map has at least this many areas (a few large areas always fit their labels).
_CALLOUT_MIN_AREAS = 8


def _callout_labels(ax, small: pd.DataFrame, bounds, points: Sequence) -> list:
    """Labels of small areas in a column left or right of the map (the nearer side), top to bottom
    in the order of the areas, each joined to its area by a thin line; the x-limits grow to fit.
    `points`: the areas' label points (`_label_point`), in the order of `small`."""
    if small.empty:
        return []
    minx, miny, maxx, maxy = bounds
    dx, dy = maxx - minx, maxy - miny
    names = small["_name"].astype(str).tolist()
    step = 0.04 * dy  # one label line at the usual map heights
    texts, (lo, hi) = [], ax.get_xlim()
    for side in (-1, 1):
        idx = sorted((k for k, p in enumerate(points) if (p.x < (minx + maxx) / 2) == (side < 0)),
                     key=lambda k: -points[k].y)
        if not idx:
            continue
        x_text = minx - 0.10 * dx if side < 0 else maxx + 0.10 * dx
        y_prev = math.inf
        for k in idx:  # a handful of small areas
            y = min(points[k].y, y_prev - step)
            y_prev = y
            ax.add_line(Line2D([x_text + side * -0.01 * dx, points[k].x], [y, points[k].y], color="#555555",
                               lw=0.5, gid="callout_line"))
            t = ax.text(x_text, y, names[k], ha="right" if side < 0 else "left", va="center", fontsize=7,
                        color="#111111", path_effects=_HALO, gid="area_label")
            t.set_in_layout(False)
            texts.append(t)
        width = 0.06 * dx * max(len(names[k]) for k in idx)  # room for the longest name
        lo, hi = (min(lo, x_text - width), hi) if side < 0 else (lo, max(hi, x_text + width))
    ax.set_xlim(lo, hi)
    return texts


def _label_point(geom):
    """Label position inside the largest part of an area: the representative point of a
    MultiPolygon may fall on a small island (能登島 of 七尾市), where the label would cover it."""
    parts = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
    return max(parts, key=lambda part: part.area).representative_point()


def _draw_tiles(ax, base: pd.DataFrame, fills: np.ndarray, value_fmt: str, labels: bool) -> None:
    cols, rows = base["col"].to_numpy(float), base["row"].to_numpy(float)
    for x, y, fill, name, value, hid in zip(cols, rows, fills, base["_name"], base["_value"],
                                            base["_hidden"]):
        ax.add_patch(Rectangle((x - 0.46, -y - 0.46), 0.92, 0.92, facecolor=fill,
                               edgecolor="#555555", lw=0.6))
        if labels:
            shown = SUPPRESSION_MARK if hid or pd.isna(value) else value_fmt.format(value)
            ax.text(x, -y, f"{name}\n{shown}", ha="center", va="center",
                    fontsize=7 if len(str(name)) <= 4 else 6,
                    color=_text_colour_on(fill), gid="area_label")
    ax.set_xlim(cols.min() - 0.6, cols.max() + 0.6)
    ax.set_ylim(-rows.max() - 0.6, -rows.min() + 0.6)
    ax.set_aspect("equal")
    ax.set_axis_off()


# ---------------------------------------------------------------------------------------------
# Funnel plot
# ---------------------------------------------------------------------------------------------
_FUNNEL_TO_COMPARISON = {
    stats.FUNNEL_HIGH_998: _COMPARISON_HIGHER, stats.FUNNEL_HIGH_95: _COMPARISON_HIGHER,
    stats.FUNNEL_WITHIN: _COMPARISON_SAME,
    stats.FUNNEL_LOW_95: _COMPARISON_LOWER, stats.FUNNEL_LOW_998: _COMPARISON_LOWER,
}


#: line styles of the other references drawn next to the main benchmark (funnel and spine charts):
#: one per reference kind, in the order 県, 二次医療圏, 同規模, 国, 利用者指定 (docs/design.md §5)
REFERENCE_LINE_STYLES = {
    "県": ("#0072B2", "-."), "二次医療圏": ("#56B4E9", "-."), "同規模": ("#009E73", (0, (5, 2))),
    "国": ("#CC79A7", (0, (1, 1.5))), "利用者指定": ("#E69F00", (0, (3, 1, 1, 1))),
}


def _reference_style(kind, k: int) -> tuple[str, object]:
    styles = list(REFERENCE_LINE_STYLES.values())
    return REFERENCE_LINE_STYLES.get(str(kind), styles[k % len(styles)])


def _reference_lines(ax, references, value_fmt: str, *, horizontal: bool) -> np.ndarray:
    """Draw each reference (label, value[, kind]) as a line of its kind's style with a legend
    entry; returns the values drawn (a NaN value is skipped: the caller's notes say 比較なし or
    hidden)."""
    drawn = []
    for k, ref in enumerate(references):  # 国, 同規模 … (a few)
        label, value = ref[0], ref[1]
        if value is None or not np.isfinite(float(value)):
            continue
        colour, ls = _reference_style(ref[2] if len(ref) > 2 else None, k)
        line = ax.axhline if horizontal else ax.axvline
        line(float(value), color=colour, ls=ls, lw=1.3, label=f"{label} {value_fmt.format(float(value))}",
             gid="reference_line")
        drawn.append(float(value))
    return np.array(drawn, dtype=float)


@styled
def funnel_plot(df: pd.DataFrame, *, value_col: str, denom_col: str, target: float,
                kind: str = "proportion", title: str = "", footer: str = "",
                label_col: str = "name", count_col: str | None = None, polarity=None,
                x_label: str | None = None, y_label: str | None = None, value_fmt: str | None = None,
                target_label: str = "基準値", references: Sequence[tuple[str, float]] = (),
                notes: Sequence[str] = (), suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                ax: Axes | None = None, size="slide") -> Axes:
    """Funnel plot with 95 % and 99.8 % control limits around `target` (docs/methods.md §7,
    Spiegelhalter 2005; limits from `hsutils.stats.funnel_limits`).

    references: other references (label, value in the unit of `value_col`[, kind 県/同規模/国/利用者指定
        for the line style]), e.g. 国 and 同規模
        next to the 県 of `target` (`hsutils.analysis.references.reference_lines`): each is a horizontal
        line of its own style in the legend; the control limits stay around `target` only (one
        funnel, no clutter), and a note says so. `notes`: more footer notes (e.g. 比較なし（理由）).

    df: one row per area: `label_col` (name), `value_col` (proportion as a fraction for
        kind="proportion"; ratio O/E for kind="ratio"), `denom_col` (denominator n, or the
        expected count E for ratios), optionally `count_col` (numerator / observed count; when
        missing it is value × denominator). Points from counts 1–9 (or n 1–9 for proportions) are
        not drawn (docs/rules.md §9).
    Points are coloured with the significance palette (outside the 95 % limits = 有意, per
    `hsutils.stats.funnel_significance`; `polarity` turns 高い/低い into 良い/悪い) and points
    outside the 95 % limits are labelled.
    """
    if kind not in ("proportion", "ratio"):
        raise ParameterError(f"kind は 'proportion' か 'ratio' で指定してください（{kind!r}）。")
    value_fmt = value_fmt or ("{:.1%}" if kind == "proportion" else "{:.2f}")
    fig, ax, own = _axes(ax, size)
    d = df.reset_index(drop=True)
    n = pd.to_numeric(d[denom_col], errors="coerce").to_numpy(float)
    value = pd.to_numeric(d[value_col], errors="coerce").to_numpy(float)
    count = (pd.to_numeric(d[count_col], errors="coerce").to_numpy(float) if count_col
             else np.round(value * n))
    hidden = _hidden_mask(count, suppress_threshold) | np.isnan(value) | ~(n > 0)
    if kind == "proportion":
        hidden |= _hidden_mask(n, suppress_threshold)
    shown = ~hidden
    n_max = float(np.nanmax(n[shown])) if shown.any() else 1.0
    n_min = float(np.nanmin(n[shown])) if shown.any() else 1.0
    grid = np.geomspace(max(min(n_min * 0.8, n_max * 0.01), 1e-3 if kind == "ratio" else 1.0),
                        n_max * 1.1, 300)
    limits = stats.funnel_limits(grid, target, conf=(0.95, 0.998), kind=kind)
    for level, style, lab in (("95_0", "--", "95%限界"), ("99_8", ":", "99.8%限界")):
        ax.plot(grid, limits[f"lower_{level}"], color="#555555", ls=style, lw=1, label=lab)
        ax.plot(grid, limits[f"upper_{level}"], color="#555555", ls=style, lw=1)
    ax.axhline(target, color="#222222", lw=1.2, label=f"{target_label} {value_fmt.format(target)}")
    refs = _reference_lines(ax, references, value_fmt, horizontal=True)
    funnel = stats.funnel_significance(count, n, target, kind=kind)
    comparisons = [_FUNNEL_TO_COMPARISON.get(f) for f in np.asarray(funnel, dtype=object)]
    labels, colours = significance_colours(comparisons, polarity)
    ax.scatter(n[shown], value[shown], c=np.array(colours, dtype=object)[shown], s=36,
               edgecolors="#333333", linewidths=0.6, zorder=3, gid="funnel_points")
    outside = shown & np.isin(np.asarray(funnel, dtype=object),
                              [stats.FUNNEL_HIGH_95, stats.FUNNEL_HIGH_998,
                               stats.FUNNEL_LOW_95, stats.FUNNEL_LOW_998])
    texts = []
    for i in np.flatnonzero(outside)[np.argsort(-n[outside])]:  # labelled areas (a few)
        t = ax.annotate(str(d[label_col].iloc[i]), (n[i], value[i]), xytext=(5, 3),
                        textcoords="offset points", fontsize=7, path_effects=_HALO,
                        gid="funnel_label")
        t.set_in_layout(False)
        texts.append(t)
    ax.set_xlim(0, n_max * 1.1)
    lo = np.nanmin(np.r_[value[shown], target, refs]) if shown.any() else np.nanmin(np.r_[target, refs])
    hi = np.nanmax(np.r_[value[shown], target, refs]) if shown.any() else np.nanmax(np.r_[target, refs])
    span = (hi - lo) or abs(target) or 1.0
    ax.set_ylim(max(lo - 0.35 * span, 0), hi + 0.35 * span)
    ax.yaxis.set_major_formatter(_value_formatter(value_fmt))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(x_label or ("対象者数（分母）" if kind == "proportion" else "期待数"))
    ax.set_ylabel(y_label or str(value_col))
    line_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=line_handles + _significance_handles(np.asarray(labels, dtype=object)[shown]),
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    notes = ["95%限界の外にある地域に名前を表示"] + (
        [f"管理限界と点の色は{target_label}に対するもの（ほかの基準は線のみ）"] if len(refs) else []) + list(notes)
    if hidden.any():
        notes.append(suppression_note(suppress_threshold) + f"：{int(hidden.sum())}地域")
    _finish_chart(fig, ax, own, title, footer, notes, comparison=True)
    _declutter(fig, texts, offsets_pt=((0, 0), (0, 8), (0, -10), (-40, 0), (0, 16)))
    return ax


# ---------------------------------------------------------------------------------------------
# Ranked bar
# ---------------------------------------------------------------------------------------------
@styled
def ranked_bar(df: pd.DataFrame, *, value_col: str, lower_col: str, upper_col: str, benchmark: float | None,
               title: str, footer: str, label_col: str = "name", comparison_col: str = "comparison",
               polarity=None, group_col: str | None = None, conf: float | None = None, count_col: str | None = None,
               value_fmt: str = "{:.1f}", x_label: str | None = None,
               benchmark_label: str = "基準値", value_labels: bool = True, notes: Sequence[str] = (),
               suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """Horizontal bars sorted by value with confidence intervals, a benchmark line and the
    significance colours (docs/design.md §5, §10: always with intervals, never a bare league table).

    df: one row per area: `label_col`, `value_col`, `lower_col`, `upper_col` (CI), and
        `comparison_col` ("有意に高い"/"有意差なし"/"有意に低い"; missing -> 判定なし), optional
        `count_col` (rows from counts 1–9 are shown as "‐" without bar) and `group_col`
        (e.g. 二次医療圏: areas sorted within their group, groups in order of appearance, with
        a heading row; this is also the fallback "ranked chart grouped by 二次医療圏").
    `value_fmt` "{:.1%}" switches the axis to percent. `notes`: lines under the footer (e.g. which
    areas are 「比較なし（理由）」 and so shown as "‐" without bar). `benchmark` None: no line (a
    benchmark that may not be shown; say why in `notes`).
    """
    fig, ax, own = _axes(ax, size)
    benchmark = None if benchmark is None or not np.isfinite(benchmark) else float(benchmark)
    d = df.reset_index(drop=True).copy()
    hidden = _row_hidden(d, count_col, suppress_threshold)
    for col in (value_col, lower_col, upper_col):
        d[col] = pd.to_numeric(d[col], errors="coerce").astype(float)
        d.loc[hidden, col] = np.nan
    comps = d[comparison_col] if comparison_col in d.columns else pd.Series([None] * len(d))
    comps = comps.astype(object).where(~hidden, None)
    d["_label"], d["_colour"] = significance_colours(comps, polarity)
    d["_hidden"] = hidden
    d["_sort"] = d[value_col].fillna(-np.inf)
    if group_col:
        groups = list(pd.unique(d[group_col]))
        d["_g"] = d[group_col].map({g: i for i, g in enumerate(groups)})
        d = d.sort_values(["_g", "_sort"], ascending=[True, False], kind="stable")
    else:
        d = d.sort_values("_sort", ascending=False, kind="stable")
    # y slots from the top; group headings take one slot each
    tick_pos, tick_text, heading = [], [], []
    y_of_row, y = [], 0
    last_group = object()
    for _, row in d.iterrows():  # one row per area (tens), not persons
        if group_col and row[group_col] != last_group:
            last_group = row[group_col]
            tick_pos.append(y)
            tick_text.append(str(last_group))
            heading.append(True)
            y += 1
        tick_pos.append(y)
        tick_text.append(str(row[label_col]))
        heading.append(False)
        y_of_row.append(y)
        y += 1
    ys = np.array(y_of_row, dtype=float)
    vals = d[value_col].to_numpy(float)
    ax.barh(ys, np.nan_to_num(vals), height=0.7, color=d["_colour"].tolist(),
            edgecolor="#555555", linewidth=0.5, gid="ranked_bars")
    err = np.vstack([vals - d[lower_col].to_numpy(float), d[upper_col].to_numpy(float) - vals])
    ok = ~np.isnan(err).any(axis=0)
    ax.errorbar(vals[ok], ys[ok], xerr=err[:, ok], fmt="none", ecolor="#222222", elinewidth=0.9,
                capsize=2.5, label=conf_label(_conf_of(df, conf)))
    if benchmark is not None:
        ax.axvline(benchmark, color="#222222", ls="--", lw=1.1,
                   label=f"{benchmark_label} {value_fmt.format(benchmark)}")
    xmax = np.nanmax(np.r_[d[upper_col].to_numpy(float), vals, benchmark if benchmark is not None else np.nan, 0.0])
    if value_labels:
        for yy, v, up, hid in zip(ys, vals, d[upper_col].to_numpy(float), d["_hidden"]):
            text = SUPPRESSION_MARK if hid or np.isnan(v) else value_fmt.format(v)
            x = (up if not np.isnan(up) else (v if not np.isnan(v) else 0.0)) + 0.01 * (xmax if xmax > 0 else 1.0)
            ax.text(x, yy, text, va="center", ha="left", fontsize=7, color="#222222",
                    path_effects=_HALO, zorder=5)
    ax.set_yticks(tick_pos, tick_text)
    for lab, is_heading in zip(ax.get_yticklabels(), heading):
        if is_heading:
            lab.set_color("#0B4F8A")
    if group_col:
        starts = [p for p, h in zip(tick_pos, heading) if h] + [y]
        for k in range(0, len(starts) - 1, 2):  # shade every other group
            ax.axhspan(starts[k] - 0.5, starts[k + 1] - 0.5, color="#F2F2F2", zorder=0)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(y - 0.4, -0.6)
    ax.set_xlim(0, xmax * 1.12 if xmax > 0 else 1)
    ax.xaxis.set_major_formatter(_value_formatter(value_fmt))
    ax.set_xlabel(x_label or str(value_col))
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + _significance_handles(d.loc[~d["_hidden"], "_label"]), loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    notes = [*notes, *([suppression_note(suppress_threshold)] if hidden.any() else [])]
    return _finish_chart(fig, ax, own, title, footer, notes, comparison=True)


# ---------------------------------------------------------------------------------------------
# 県・同規模・国 side by side
# ---------------------------------------------------------------------------------------------
_REFERENCE_MARKERS = {"県": "o", "二次医療圏": "o", "同規模": "s", "国": "D", "利用者指定": "^"}


@styled
def reference_comparison_chart(df: pd.DataFrame, *, title: str, footer: str, notes: Sequence[str] = (),
                               indicator_col: str = "indicator_name", reference_col: str = "reference_label",
                               kind_col: str = "reference_kind", value_col: str = "sr", lower_col: str = "sr_lower",
                               upper_col: str = "sr_upper", comparison_col: str = "comparison",
                               polarity_col: str | None = "polarity", count_col: str | None = "numerator",
                               conf: float | None = None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                               ax: Axes | None = None, size="slide") -> Axes:
    """標準化該当比 of one area against several references (県, 同規模, 国, 利用者指定) side by side:
    one row per indicator × reference, grouped by indicator, point and interval coloured by the
    significance (docs/design.md §5, §10), a line at 1.0 (= as expected from the reference).

    df: `hsutils.analysis.references.compare` output (masked by the report's suppression plan). A row whose
    comparison starts with 「比較なし」 is drawn as that text (the reason), never as a number;
    a row with a hidden count (1–9) as "‐"."""
    fig, ax, own = _axes(ax, size)
    d = df.reset_index(drop=True).copy()
    hidden = _row_hidden(d, count_col, suppress_threshold) if count_col in d.columns else np.zeros(len(d), bool)
    for col in (value_col, lower_col, upper_col):
        d[col] = pd.to_numeric(d[col], errors="coerce").astype(float)
        d.loc[hidden, col] = np.nan
    comps = d[comparison_col].astype(object)
    none = comps.astype(str).str.startswith("比較なし").to_numpy()
    hidden = hidden & ~none  # no count at all: the reason is shown, not the suppression mark
    pol = d[polarity_col] if polarity_col and polarity_col in d.columns else None
    labels, colours = significance_colours(comps.where(~none & ~hidden, None),
                                           list(pol) if pol is not None else None)
    ys, tick_pos, tick_text, heading = [], [], [], []
    y = 0
    for name, g in d.groupby(indicator_col, sort=False):  # a dozen indicators
        tick_pos.append(y)
        tick_text.append(str(name))
        heading.append(True)
        y += 1
        for i in g.index:
            ys.append((i, y))
            tick_pos.append(y)
            tick_text.append(f"  {d.at[i, reference_col]}")
            heading.append(False)
            y += 1
    pos = np.zeros(len(d))
    for i, yy in ys:
        pos[i] = yy
    vals, lo, hi = (d[c].to_numpy(float) for c in (value_col, lower_col, upper_col))
    xmax = np.nanmax(np.r_[hi[np.isfinite(hi)], vals[np.isfinite(vals)], 2.0])
    xmax = min(xmax, 5.0)
    for i in range(len(d)):  # one row per indicator × reference (tens)
        yy = pos[i]
        if none[i] or hidden[i] or not np.isfinite(vals[i]):
            text = SUPPRESSION_MARK if hidden[i] else str(comps.iloc[i]) if none[i] else "判定なし"
            ax.text(0.02 * xmax, yy, text, va="center", ha="left", fontsize=7, color=_TEXT_GREY, path_effects=_HALO,
                    zorder=5)
            continue
        marker = _REFERENCE_MARKERS.get(str(d.at[i, kind_col]), "o")
        ax.plot([lo[i], min(hi[i], xmax)], [yy, yy], color="#222222", lw=1.0)
        ax.plot([vals[i]], [yy], marker=marker, ms=7, color=colours[i], mec="#333333", mew=0.6, ls="none")
        ax.text(min(hi[i], xmax) + 0.01 * xmax, yy, f"{vals[i]:.2f}", va="center", ha="left", fontsize=7,
                color="#222222", path_effects=_HALO)
    ax.axvline(1.0, color="#222222", ls="--", lw=1.0, label="基準と同じ（1.00）")
    ax.set_yticks(tick_pos, tick_text)
    for lab, is_heading in zip(ax.get_yticklabels(), heading):
        if is_heading:
            lab.set_color("#0B4F8A")
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(y - 0.4, -0.6)
    ax.set_xlim(0, xmax * 1.15)
    ax.set_xlabel(f"標準化該当比（{conf_label(_conf_of(df, conf))}）")
    handles, _ = ax.get_legend_handles_labels()
    kinds = [k for k in _REFERENCE_MARKERS if k in set(d[kind_col].astype(str))]
    handles += [Line2D([], [], marker=_REFERENCE_MARKERS[k], ls="none", color="#777777", label=k) for k in kinds]
    shown = [lab for lab, n, h in zip(labels, none, hidden) if not n and not h]
    ax.legend(handles=handles + _significance_handles(shown), loc="upper left", bbox_to_anchor=(1.0, 1.0))
    all_notes = list(notes) + ([suppression_note(suppress_threshold)] if hidden.any() else [])
    return _finish_chart(fig, ax, own, title, footer, all_notes, comparison=True)


@styled
def smoothed_ratio_chart(df: pd.DataFrame, *, title: str, footer: str, label_col: str = "area_name",
                         raw_col: str = "sr", eb_col: str = "sr_eb", eb_lower_col: str = "sr_eb_lower",
                         eb_upper_col: str = "sr_eb_upper", count_col: str | None = "numerator",
                         notes: Sequence[str] = (), suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                         ax: Axes | None = None, size="slide") -> Axes:
    """Raw 標準化該当比 (open circle) beside its empirical-Bayes smoothed value (filled, with its
    credible interval) for each area, sorted by the smoothed value (docs/methods.md §14): small
    towns move toward the mean, large ones hardly. Rows with a hidden count (1–9), or whose ratio the
    report's secondary suppression hid, show "‐"; rows whose reference has no figure show 「比較なし」."""
    fig, ax, own = _axes(ax, size)
    d = df.reset_index(drop=True).copy()
    hidden = _row_hidden(d, count_col, suppress_threshold) if count_col in d.columns else np.zeros(len(d), bool)
    for col in (raw_col, eb_col, eb_lower_col, eb_upper_col):
        d[col] = pd.to_numeric(d[col], errors="coerce").astype(float)
    d.loc[hidden, [raw_col, eb_col, eb_lower_col, eb_upper_col]] = np.nan  # both are derived from the count
    # a row with no ratio left is either 比較なし (its reference has no figure) or hidden by the
    # report's secondary suppression (the ratio masked while the count is shown): each gets a mark
    empty = d[raw_col].isna().to_numpy() & d[eb_col].isna().to_numpy() & ~hidden
    no_ref = (d["comparison"].astype(str).str.startswith("比較なし").to_numpy()
              if "comparison" in d.columns else np.zeros(len(d), bool))
    hidden = hidden | (empty & ~no_ref)
    d["_hidden"] = hidden
    d["_no_ref"] = empty & no_ref
    d = d.sort_values(eb_col, ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    ys = np.arange(len(d), dtype=float)
    ax.hlines(ys, d[eb_lower_col], d[eb_upper_col], color="#222222", lw=1.0)
    ax.plot(d[eb_col], ys, "o", ms=6, color="#0072B2", mec="#333333", mew=0.6, ls="none",
            label="経験ベイズ推定値（信用区間）")
    ax.plot(d[raw_col], ys, "o", ms=6, mfc="white", mec="#D55E00", mew=1.2, ls="none", label="標準化該当比（そのまま）")
    for yy, raw, eb in zip(ys, d[raw_col], d[eb_col]):
        if np.isfinite(raw) and np.isfinite(eb):
            ax.annotate("", xy=(eb, yy), xytext=(raw, yy), arrowprops=dict(arrowstyle="-", color="#AAAAAA", lw=0.8))
    for flag, mark in (("_hidden", SUPPRESSION_MARK), ("_no_ref", "比較なし")):
        for yy in ys[d[flag].to_numpy()]:
            ax.text(0.02, yy, mark, va="center", ha="left", fontsize=7, color=_TEXT_GREY,
                    transform=blended_transform_factory(ax.transAxes, ax.transData))
    ax.axvline(1.0, color="#222222", ls="--", lw=1.0, label="基準と同じ（1.00）")
    ax.set_yticks(ys, d[label_col].astype(str).tolist())
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(d) - 0.4, -0.6)
    finite = np.r_[d[[raw_col, eb_col, eb_upper_col]].to_numpy(float).ravel(), 1.0]
    ax.set_xlim(0, min(np.nanmax(finite), 5.0) * 1.1)
    ax.set_xlabel("標準化該当比")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    all_notes = list(notes) + ([suppression_note(suppress_threshold)] if hidden.any() else [])
    return _finish_chart(fig, ax, own, title, footer, all_notes, comparison=True)


# ---------------------------------------------------------------------------------------------
# Trend chart
# ---------------------------------------------------------------------------------------------
@styled
def trend_chart(df: pd.DataFrame, *, x: str = "fy", y: str = "value", lower: str | None = "lower",
                upper: str | None = "upper", series_col: str | None = None, title: str = "",
                footer: str = "", conf: float | None = None, count_col: str | None = None, ci_style: str = "band",
                value_fmt: str = "{:.1f}", y_label: str | None = None, target: float | None = None,
                target_label: str = "目標値", notes: Sequence[str] = (),
                suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                ax: Axes | None = None, size="slide") -> Axes:
    """Trend over fiscal years with confidence intervals (bands or error bars), one line per
    series (areas or sexes). `notes`: more footer notes (e.g. a reference's 比較なし（理由）).

    df: `x` (fiscal year, int, April start), `y` (value), `lower`/`upper` (CI; None to omit),
        optional `series_col` (series name) and `count_col` (points from counts 1–9 are left out,
        docs/rules.md §9). x tick labels are 和暦 over western year: "R4\\n(2022)".
    """
    fig, ax, own = _axes(ax, size)
    d = df.copy()
    hidden = _row_hidden(d, count_col, suppress_threshold)
    cols = [c for c in (y, lower, upper) if c]
    for c in cols:
        d[c] = pd.to_numeric(d[c], errors="coerce").astype(float)
        d.loc[hidden, c] = np.nan
    series = list(pd.unique(d[series_col])) if series_col else [None]
    for k, name in enumerate(series):  # a handful of series
        s = (d[d[series_col] == name] if series_col else d).sort_values(x)
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        xs, ys = s[x].to_numpy(float), s[y].to_numpy(float)
        ax.plot(xs, ys, marker="o", ms=4.5, lw=1.6, color=colour,
                label=str(name) if name is not None else str(y), gid="trend_line")
        if lower and upper:
            lo, up = s[lower].to_numpy(float), s[upper].to_numpy(float)
            if ci_style == "band":
                ax.fill_between(xs, lo, up, color=colour, alpha=0.15, lw=0)
            else:
                ok = ~np.isnan(ys)
                ax.errorbar(xs[ok], ys[ok], yerr=[ys[ok] - lo[ok], up[ok] - ys[ok]], fmt="none",
                            ecolor=colour, capsize=3, lw=1)
    if target is not None:
        ax.axhline(target, color="#222222", ls="--", lw=1,
                   label=f"{target_label} {value_fmt.format(target)}")
    years = sorted(pd.unique(d[x].dropna().astype(int)))
    ax.set_xticks(years, [fy_label(v) for v in years])
    ax.set_xlim(years[0] - 0.4, years[-1] + 0.4)
    ax.yaxis.set_major_formatter(_value_formatter(value_fmt))
    ax.set_ylabel(y_label or str(y))
    ax.grid(axis="y", color="#E5E5E5", lw=0.6)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    extra = list(notes)
    notes = [f"帯（縦線）は{conf_label(_conf_of(df, conf))}"] if lower and upper else []
    notes += extra
    if hidden.any():
        notes.append(suppression_note(suppress_threshold))
    return _finish_chart(fig, ax, own, title, footer, notes)


# ---------------------------------------------------------------------------------------------
# CKD heat map (docs/rules.md §4.4)
# ---------------------------------------------------------------------------------------------
_G_LABELS = {"G1": "G1\n90以上", "G2": "G2\n60–89", "G3a": "G3a\n45–59", "G3b": "G3b\n30–44",
             "G4": "G4\n15–29", "G5": "G5\n15未満"}
_A_LABELS = {"A1": "A1\n尿蛋白（−）", "A2": "A2\n尿蛋白（±）", "A3": "A3\n尿蛋白（1+以上）"}


@styled
def ckd_heatmap(counts: pd.DataFrame, *, title: str, footer: str, g_col: str = "g_stage",
                a_col: str = "a_stage", count_col: str = "count", show_share: bool = True,
                suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """CKD 重症度分類 heat map: G1, G2, G3a, G3b, G4, G5 × A1, A2, A3 with the official risk
    colours (docs/rules.md §4.2–4.4; `hsutils.rules.clinical.ckd_risk_colour` / `CKD_COLOURS`), counts and
    shares of the total in the cells, row and column totals.

    counts: `g_stage` ("G1".."G5"), `a_stage` ("A1".."A3"), `count` (persons; several rows per
        cell are summed; absent cells are 0). Cells with 1–9 persons (or NaN = suppressed
        upstream) show "‐", and so do small totals. Because totals are shown, secondary
        suppression is applied (`hsutils.publish.privacy.secondary_suppress`): a hidden cell can never
        be recovered by subtraction (docs/rules.md §9).
    """
    g_stages, a_stages = clinical.G_STAGES, clinical.A_STAGES
    c = counts.copy()
    c[count_col] = pd.to_numeric(c[count_col], errors="coerce").astype(float)
    # absent cells are 0 persons; NaN counts (suppressed upstream) stay NaN
    grid = (c.groupby([g_col, a_col])[count_col].sum(min_count=1)
            .unstack(a_col).reindex(index=list(g_stages), columns=list(a_stages)))
    absent = (c.groupby([g_col, a_col]).size().unstack(a_col)
              .reindex(index=list(g_stages), columns=list(a_stages)).isna())
    grid = grid.mask(absent, 0.0)
    wide = grid.copy()
    wide["計"] = grid.sum(axis=1, min_count=0)
    wide.loc["計"] = wide.sum(axis=0)
    # primary + secondary suppression: a hidden cell must not be recoverable from the totals
    hidden_all = privacy.secondary_suppress(wide, total_col="計", threshold=suppress_threshold,
                                            total_row="計").to_numpy() | wide.isna().to_numpy()
    values_all = wide.to_numpy(float)
    total = float(values_all[-1, -1])
    fig, ax, own = _axes(ax, size)
    risk = np.asarray(clinical.ckd_risk_colour(np.repeat(g_stages, len(a_stages)),
                                               np.tile(a_stages, len(g_stages))),
                      dtype=object).reshape(grid.shape)
    nr, nc = grid.shape
    for i in range(nr + 1):  # 6 × 3 cells plus totals
        for j in range(nc + 1):
            is_total = i == nr or j == nc
            if is_total:
                fill = "#E0E0E0" if (i == nr and j == nc) else "#F2F2F2"
                colour, gid = "#111111", "ckd_total"
            else:
                fill = clinical.CKD_COLOURS[risk[i, j]]
                colour, gid = clinical.CKD_TEXT_COLOURS[risk[i, j]], "ckd_cell"
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=fill, edgecolor="white", lw=2))
            share = show_share and not (i == nr and j == nc)
            ax.text(j + 0.5, i + 0.5, _ckd_cell_text(values_all[i, j], hidden_all[i, j], total, share),
                    ha="center", va="center", fontsize=9, color=colour, gid=gid)
    hidden = hidden_all
    ax.set_xlim(0, nc + 1)
    ax.set_ylim(nr + 1, 0)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(nc + 1) + 0.5, [_A_LABELS[a] for a in a_stages] + ["計"])
    ax.set_yticks(np.arange(nr + 1) + 0.5, [_G_LABELS[g] for g in g_stages] + ["計"])
    ax.tick_params(length=0, labelsize=8.5)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("尿蛋白区分（A）", fontsize=9)
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("eGFR区分（G, mL/分/1.73m²）", fontsize=9)
    handles = [Patch(facecolor=clinical.CKD_COLOURS[k], label=clinical.CKD_RISK_LABELS_JA[k])
               for k in clinical.CKD_RISK_LEVELS]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="リスク")
    ax.set_aspect(0.42)
    notes = ["色はCKD重症度分類（日本腎臓学会）のリスク区分。尿蛋白区分は健診の尿蛋白定性で代用"]
    if show_share:
        notes.append("（ ）内は合計に対する割合")
    if hidden.any():
        notes.append(suppression_note(suppress_threshold))
    return _finish_chart(fig, ax, own, title, footer, notes)


def _ckd_cell_text(count: float, hidden: bool, total: float, show_share: bool) -> str:
    if hidden or np.isnan(count):
        return SUPPRESSION_MARK
    if show_share and total > 0:
        return f"{int(count):,}\n({count / total:.1%})"
    return f"{int(count):,}"


# ---------------------------------------------------------------------------------------------
# Population pyramid
# ---------------------------------------------------------------------------------------------
_MALE_COLOUR, _FEMALE_COLOUR = OKABE_ITO["blue"], OKABE_ITO["orange"]


def _band_start(bands: pd.Series) -> pd.Series:
    return pd.to_numeric(bands.astype(str).str.extract(r"(\d+)")[0], errors="coerce")


def _is_male(sex: pd.Series) -> np.ndarray:
    return (vocab.parse_sex(sex) == vocab.MALE).to_numpy()


def _draw_pyramid(ax, d: pd.DataFrame, age_col, sex_col, count_col, threshold, value_labels,
                  xmax=None) -> bool:
    """Draw one pyramid on ax; returns True when something was suppressed."""
    d = d.copy()
    d["_count"] = pd.to_numeric(d[count_col], errors="coerce").astype(float)
    d["_male"] = _is_male(d[sex_col])
    table = d.pivot_table(index=age_col, columns="_male", values="_count", aggfunc="sum")
    table = table.reindex(columns=[True, False])
    order = _band_start(pd.Series(table.index)).to_numpy()
    table = table.iloc[np.argsort(order, kind="stable")]
    ys = np.arange(len(table))
    male, female = table[True].to_numpy(float), table[False].to_numpy(float)
    hid_m = _hidden_mask(male, threshold)
    hid_f = _hidden_mask(female, threshold)
    shown_m, shown_f = np.where(hid_m, 0.0, male), np.where(hid_f, 0.0, female)
    ax.barh(ys, -shown_m, color=_MALE_COLOUR, height=0.82, label="男性", gid="pyramid_male")
    ax.barh(ys, shown_f, color=_FEMALE_COLOUR, height=0.82, label="女性", gid="pyramid_female")
    top = xmax or max(float(np.nanmax(np.r_[shown_m, shown_f, 1.0])), 1.0)
    for y, v, hid in zip(ys, male, hid_m):
        if hid or value_labels:
            ax.text(-(0 if hid else v) - 0.015 * top, y, _count_text(np.nan if hid else v),
                    ha="right", va="center", fontsize=6.5, color="#333333")
    for y, v, hid in zip(ys, female, hid_f):
        if hid or value_labels:
            ax.text((0 if hid else v) + 0.015 * top, y, _count_text(np.nan if hid else v),
                    ha="left", va="center", fontsize=6.5, color="#333333")
    ax.set_yticks(ys, [str(b) for b in table.index])
    lim = top * (1.28 if value_labels else 1.1)
    ax.set_xlim(-lim, lim)
    ax.axvline(0, color="#666666", lw=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
    ax.tick_params(axis="y", length=0)
    return bool(hid_m.any() or hid_f.any())


@styled
def population_pyramid(df: pd.DataFrame, *, title: str, footer: str, age_col: str = "age_band",
                       sex_col: str = "sex", count_col: str = "count", value_labels: bool = True,
                       suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """Population pyramid: men left, women right, age bands bottom (youngest) to top.

    df: `age_band` (e.g. "40-44", "90+"; ordered by the first number), `sex` (1/2 or 男/女),
        `count` (persons; rows of the same band and sex are summed). Bands with 1–9 persons are
        not drawn and show "‐" (docs/rules.md §9).
    """
    fig, ax, own = _axes(ax, size)
    suppressed = _draw_pyramid(ax, df, age_col, sex_col, count_col, suppress_threshold, value_labels)
    ax.set_xlabel("人数")
    ax.text(0.25, 1.01, "男性", transform=ax.transAxes, ha="center", va="bottom", fontsize=9,
            color=_MALE_COLOUR)
    ax.text(0.75, 1.01, "女性", transform=ax.transAxes, ha="center", va="bottom", fontsize=9,
            color=_FEMALE_COLOUR)
    notes = [suppression_note(suppress_threshold)] if suppressed else []
    return _finish_chart(fig, ax, own, title, footer, notes)


@styled
def pyramid_small_multiples(df: pd.DataFrame, *, facet_col: str, title: str, footer: str,
                            age_col: str = "age_band", sex_col: str = "sex",
                            count_col: str = "count", ncols: int = 4, share_x: bool = True,
                            suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                            ax: Axes | None = None, size="a4_landscape") -> Figure:
    """Small multiples of population pyramids, one per `facet_col` value (e.g. 地区), same
    columns as `population_pyramid`; with `share_x` all panels use the same scale so districts
    can be compared by size. Counts 1–9 are not drawn (docs/rules.md §9)."""
    facets = list(pd.unique(df[facet_col]))
    nrows = math.ceil(len(facets) / ncols)
    fig, own = _panel_figure(ax, size)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    counts = pd.to_numeric(df[count_col], errors="coerce")
    visible = counts.where(~_hidden_mask(counts.to_numpy(), suppress_threshold))
    per_cell = df.assign(_c=visible).groupby([facet_col, age_col, sex_col])["_c"].sum()
    xmax = float(per_cell.max()) if share_x and per_cell.notna().any() else None
    suppressed = False
    for k, ax in enumerate(axes.ravel()):  # one panel per district
        if k >= len(facets):
            ax.set_visible(False)
            continue
        sub = df[df[facet_col] == facets[k]]
        suppressed |= _draw_pyramid(ax, sub, age_col, sex_col, count_col, suppress_threshold,
                                    False, xmax=xmax)
        ax.set_title(str(facets[k]), fontsize=9)
        ax.tick_params(labelsize=6.5)
        if k % ncols:
            ax.tick_params(labelleft=False)
    handles = [Patch(color=_MALE_COLOUR, label="男性（左）"), Patch(color=_FEMALE_COLOUR, label="女性（右）")]
    fig.legend(handles=handles, loc="outside upper right", ncols=2)
    notes = [suppression_note(suppress_threshold)] if suppressed else []
    return _finish_chart(fig, None, own, title, footer, notes)


# ---------------------------------------------------------------------------------------------
# Stacked bars (e.g. 階層化 levels by area)
# ---------------------------------------------------------------------------------------------
@styled
def stacked_bars(df: pd.DataFrame, *, area_col: str, category_col: str, count_col: str, title: str,
                 footer: str, normalize: bool = True, category_order: Sequence | None = None,
                 colours: Mapping | None = None, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                 ax: Axes | None = None, size="slide") -> Axes:
    """Horizontal stacked bars of category counts (or shares with `normalize`) per area.

    df: `area_col`, `category_col`, `count_col` (persons). Segments with 1–9 persons (or NaN)
        are left out of the bar AND of the denominator of the shares, with a note, so no width
        reveals them (docs/rules.md §9); an area whose shown total is 1–9 is left out entirely.
        Shares ≥ 5 % are labelled in the segment; n shown at the right.
    """
    d = df.copy()
    d[count_col] = pd.to_numeric(d[count_col], errors="coerce").astype(float)
    areas = list(pd.unique(d[area_col]))
    cats = list(category_order) if category_order is not None else list(pd.unique(d[category_col]))
    # sum(min_count=1): a cell hidden upstream (NaN) stays NaN (hidden), it does not become 0
    table = d.groupby([area_col, category_col], sort=False)[count_col].sum(min_count=1).unstack().reindex(
        index=areas, columns=cats)
    raw = table.to_numpy(float)
    absent = np.isnan(raw) & ~d.groupby([area_col, category_col]).size().unstack().reindex(
        index=areas, columns=cats).notna().to_numpy()
    raw = np.where(absent, 0.0, raw)
    hidden = _hidden_mask(raw.ravel(), suppress_threshold).reshape(raw.shape)
    shown = np.where(hidden, 0.0, raw)
    totals = shown.sum(axis=1)
    # hidden too: a shown total of 1–9, or of 0 when every segment was hidden (not "n=0")
    area_hidden = (_hidden_mask(totals, suppress_threshold) & (totals > 0)) | \
        ((totals == 0) & hidden.any(axis=1))
    shown[area_hidden] = 0.0
    totals = np.where(area_hidden, np.nan, totals)
    widths = shown / np.where(totals > 0, totals, np.nan)[:, None] if normalize else shown
    widths = np.nan_to_num(widths)
    fig, ax, own = _axes(ax, size)
    ys = np.arange(len(areas))
    left = np.zeros(len(areas))
    palette = colours or {c: SERIES_COLOURS[k % len(SERIES_COLOURS)] for k, c in enumerate(cats)}
    for j, cat in enumerate(cats):  # a handful of categories
        colour = palette[cat]
        ax.barh(ys, widths[:, j], left=left, color=colour, height=0.7, label=str(cat),
                edgecolor="white", linewidth=0.6, gid="stacked_segment")
        share = shown[:, j] / np.where(totals > 0, totals, np.nan)
        for i in range(len(areas)):
            if share[i] >= 0.05 and not np.isnan(share[i]):
                text = f"{share[i]:.0%}" if normalize else f"{int(shown[i, j]):,}"
                ax.text(left[i] + widths[i, j] / 2, ys[i], text, ha="center", va="center",
                        fontsize=7, color=_text_colour_on(colour))
        left += widths[:, j]
    for i, tot in enumerate(totals):
        ax.text(left[i] + (0.01 if normalize else 0.01 * np.nanmax(np.r_[left, 1])), ys[i],
                f"n={_count_text(tot)}", ha="left", va="center", fontsize=7, color="#333333")
    ax.set_yticks(ys, [str(a) for a in areas])
    ax.set_ylim(len(areas) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)
    if normalize:
        ax.set_xlim(0, 1.12)
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("割合")
    else:
        ax.set_xlim(0, np.nanmax(np.r_[left, 1]) * 1.15)
        ax.set_xlabel("人数")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(len(cats), 6))
    notes = []
    if hidden.any() or area_hidden.any():
        notes.append(suppression_note(suppress_threshold)
                     + "。非表示の区分は割合の分母からも除外" if normalize
                     else suppression_note(suppress_threshold))
    return _finish_chart(fig, ax, own, title, footer, notes)


@styled
def amount_bars(df: pd.DataFrame, *, label_col: str, value_col: str, title: str, footer: str,
                category_col: str | None = None, category_order: Sequence | None = None,
                colours: Mapping | None = None, count_col: str | None = None, highlight=None,
                value_fmt: str = "{:,.0f}", x_label: str = "円", benchmark: float | None = None,
                benchmark_label: str = "基準", marker_col: str | None = None, marker_label: str = "比較",
                suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """Horizontal bars of amounts (e.g. 一人当たり医療費 in 円) per label, stacked by `category_col`
    when given, in the order of the rows (the caller sorts).

    df: `label_col`, `value_col` (NaN = suppressed), optional `category_col` and `count_col` (the
    persons the row derives from: a label whose count is 1–9 or NaN is drawn without a bar and
    marked 「‐」, docs/rules.md §9); a stacked label with some segments NaN draws the others and says
    「内訳の一部を秘匿」 instead of its total. The total of each label is written at the bar's end;
    `highlight` (a label) is drawn in the accent colour; `marker_col` (one value per label, e.g. the
    prefecture's figure) is drawn as a black mark on each bar, named `marker_label` in the legend.
    """
    d = df.copy()
    d[value_col] = pd.to_numeric(d[value_col], errors="coerce").astype(float)
    labels = list(pd.unique(d[label_col]))
    cats = (list(category_order) if category_order is not None else list(pd.unique(d[category_col]))) \
        if category_col else [None]
    if category_col:
        table = d.pivot_table(index=label_col, columns=category_col, values=value_col, aggfunc="sum",
                              dropna=False, observed=False).reindex(index=labels, columns=cats)
        raw = table.to_numpy(float)
        nan_any = d.assign(_n=d[value_col].isna()).groupby(label_col, sort=False)["_n"].any().reindex(labels)
    else:
        raw = d.groupby(label_col, sort=False)[value_col].sum(min_count=1).reindex(labels).to_numpy(float)[:, None]
        nan_any = pd.Series(np.isnan(raw[:, 0]), index=labels)
    partial = np.array(nan_any.to_numpy(bool), copy=True) & ~np.isnan(raw).all(axis=1)
    hidden = np.isnan(raw).all(axis=1)
    if count_col:
        counts = d.groupby(label_col, sort=False)[count_col].min().reindex(labels)
        hidden |= _hidden_mask(pd.to_numeric(counts, errors="coerce").to_numpy(float), suppress_threshold)
    partial &= ~hidden
    shown = np.where(hidden[:, None], 0.0, np.nan_to_num(raw))
    fig, ax, own = _axes(ax, size)
    ys = np.arange(len(labels))
    left = np.zeros(len(labels))
    palette = colours or {c: SERIES_COLOURS[k % len(SERIES_COLOURS)] for k, c in enumerate(cats)}
    for j, cat in enumerate(cats):  # a handful of categories
        colour = palette[cat] if cat is not None else SERIES_COLOURS[0]
        bar_colours = [OKABE_ITO["vermillion"] if (highlight is not None and lab == highlight and cat is None)
                       else colour for lab in labels]
        ax.barh(ys, shown[:, j], left=left, color=bar_colours, height=0.7, edgecolor="white", linewidth=0.6,
                label=str(cat) if cat is not None else None, gid="amount_segment")
        left += shown[:, j]
    marks = (pd.to_numeric(d.groupby(label_col, sort=False)[marker_col].first().reindex(labels),
                           errors="coerce").to_numpy(float) if marker_col else np.full(len(labels), np.nan))
    xmax = float(np.nanmax(np.r_[left, marks, benchmark or 0, 1.0]))
    for i, (tot, hid) in enumerate(zip(left, hidden)):
        text = SUPPRESSION_MARK if hid else ("内訳の一部を秘匿" if partial[i] else value_fmt.format(tot))
        ax.text(np.nanmax([tot, marks[i]]) + 0.01 * xmax, ys[i], text,
                ha="left", va="center", fontsize=7, color="#222222", path_effects=_HALO)
    if marker_col and np.isfinite(marks).any():
        ax.scatter(marks, ys, marker="|", s=260, linewidths=2.2, color="#000000", zorder=6, label=marker_label)
    if benchmark is not None and np.isfinite(benchmark):
        ax.axvline(benchmark, color="#222222", ls="--", lw=1.0,
                   label=f"{benchmark_label} {value_fmt.format(benchmark)}")
    ax.set_yticks(ys, [str(lab) for lab in labels])
    for tick, lab in zip(ax.get_yticklabels(), labels):
        if highlight is not None and lab == highlight:
            tick.set_color(OKABE_ITO["vermillion"])
    ax.set_ylim(len(labels) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0, xmax * 1.15)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: value_fmt.format(v)))
    ax.set_xlabel(x_label)
    if category_col or benchmark is not None or (marker_col and np.isfinite(marks).any()):
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(len(cats) + 2, 6))
    notes = [suppression_note(suppress_threshold)] if hidden.any() else []
    if partial.any():
        notes.append("「内訳の一部を秘匿」の棒は、秘匿した区分を除いた長さです（合計ではありません）")
    return _finish_chart(fig, ax, own, title, footer, notes)


@styled
def concentration_curve(curves: pd.DataFrame, *, title: str, footer: str, series_col: str = "series",
                        x: str = "person_share", y: str = "cost_share", marks: Sequence[float] = (0.01, 0.1),
                        ax: Axes | None = None, size="slide") -> Axes:
    """Concentration curve of costs: the share of the total cost (y) spent on the costliest
    share of persons (x), one line per series, with the equal-share diagonal and the values at
    `marks` (上位1%, 10%) labelled. Curves start at the first point with enough persons (the
    caller drops the points of 1–9 persons, docs/rules.md §9)."""
    fig, ax, own = _axes(ax, size)
    equal = np.geomspace(0.005, 1.0, 50)
    ax.plot(equal, equal, color="#999999", ls=":", lw=1.0, label="全員が同じ医療費の場合")
    texts = []
    for k, (name, g) in enumerate(curves.groupby(series_col, sort=False)):  # a few series
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        ax.plot(xs, ys, color=colour, lw=1.8, label=str(name))
        for m in marks:
            if len(xs) and xs[0] <= m <= xs[-1]:
                v = float(np.interp(m, xs, ys))
                ax.plot([m], [v], "o", color=colour, ms=4)
                texts.append(ax.annotate(f"上位{m:.0%}: {v:.0%}", (m, v), xytext=(8, -4 - 10 * k),
                                         textcoords="offset points", fontsize=7, color=colour,
                                         path_effects=_HALO))
    ax.set_xscale("log")
    ax.set_xlim(0.005, 1.0)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0], ["1%", "2%", "5%", "10%", "20%", "50%", "100%"])
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("医療費の高い順に並べた人の割合（対数目盛）")
    ax.set_ylabel("医療費全体に占める割合")
    ax.legend(loc="upper left")
    return _finish_chart(fig, ax, own, title, footer)


# ---------------------------------------------------------------------------------------------
# Gap to a target rate (current value + what-if contributions)
# ---------------------------------------------------------------------------------------------
@styled
def target_gap_bars(df: pd.DataFrame, *, label_col: str, base_col: str, added_cols: Mapping[str, str],
                    target: float, title: str, footer: str, count_col: str | None = None,
                    denom_col: str | None = None, highlight: Sequence | None = None,
                    suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None,
                    size="slide") -> Axes:
    """Horizontal bars in percent: the current value (`base_col`, dark) with, stacked on it, the
    what-if contributions (`added_cols`: legend label -> column, percentage points), and a vertical
    line at `target` (e.g. the 第4期 target 60 %). Rows whose `count_col` or `denom_col` is 1–9 (or
    NaN, suppressed) are shown as "‐" without bar (docs/rules.md §9). `highlight`: labels drawn
    in the accent colour (the municipality of the report). Rows keep the order of df.
    """
    d = df.reset_index(drop=True)
    hidden = _row_hidden(d, count_col, suppress_threshold) | _row_hidden(d, denom_col, suppress_threshold)
    base = pd.to_numeric(d[base_col], errors="coerce").to_numpy(float)
    hidden |= np.isnan(base)
    fig, ax, own = _axes(ax, size)
    ys = np.arange(len(d))
    base_shown = np.where(hidden, 0.0, base)
    ax.barh(ys, base_shown, color=OKABE_ITO["blue"], height=0.7, label="現在の受診率", gid="gap_base")
    left = base_shown.copy()
    palette = [OKABE_ITO["sky_blue"], OKABE_ITO["bluish_green"], OKABE_ITO["orange"], OKABE_ITO["reddish_purple"]]
    for k, (label, col) in enumerate(added_cols.items()):  # a few what-if parts
        w = np.nan_to_num(pd.to_numeric(d[col], errors="coerce").to_numpy(float))
        w = np.where(hidden, 0.0, w)
        ax.barh(ys, w, left=left, color=palette[k % len(palette)], height=0.7, label=str(label),
                edgecolor="white", linewidth=0.5, gid="gap_added")
        left = left + w
    label_x = float(np.nanmax(np.r_[left, float(target)])) + 1.5  # one column, clear of bars and target line
    for i in range(len(d)):  # one label per area
        text = SUPPRESSION_MARK if hidden[i] else f"{base[i]:.1f}→{left[i]:.1f}%"
        ax.text(label_x, ys[i], text, ha="left", va="center", fontsize=7, color="#333333")
    ax.axvline(float(target), color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1.2,
               label=f"目標 {float(target):g}%")
    labels = [str(v) for v in d[label_col]]
    ax.set_yticks(ys, labels)
    marked = set(str(h) for h in (highlight or ()))
    for tick, label in zip(ax.get_yticklabels(), labels):
        if label in marked:
            tick.set_color(OKABE_ITO["vermillion"])
    ax.set_ylim(len(d) - 0.4, -0.6)
    ax.tick_params(axis="y", length=0)
    ax.set_xlim(0, max(100.0, float(np.nanmax(np.r_[left, target])) + 12))
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_xlabel("対象者に占める割合")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(len(added_cols) + 2, 5), fontsize=7)
    notes = [suppression_note(suppress_threshold)] if hidden.any() else []
    return _finish_chart(fig, ax, own, title, footer, notes)


# ---------------------------------------------------------------------------------------------
# Flow chart (tree of steps)
# ---------------------------------------------------------------------------------------------
def _tree_layout(ids: list, parents: list) -> tuple[dict, dict]:
    """Depth and vertical slot of each node: leaves take consecutive slots in input order,
    a parent sits at the mean of its children (a few nodes, plain recursion)."""
    children: dict = {i: [] for i in ids}
    roots = []
    for i, p in zip(ids, parents):
        if p is None or (isinstance(p, float) and math.isnan(p)) or p not in children:
            roots.append(i)
        else:
            children[p].append(i)
    depth, slot = {}, {}
    counter = [0.0]

    def place(node, level):
        depth[node] = level
        if not children[node]:
            slot[node] = counter[0]
            counter[0] += 1
        else:
            for ch in children[node]:
                place(ch, level + 1)
            slot[node] = float(np.mean([slot[ch] for ch in children[node]]))

    for r in roots:
        place(r, 0)
    return depth, slot


@styled
def flow_chart(steps: pd.DataFrame, *, title: str, footer: str, show_share: bool = True,
               suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """Flow of an extraction as boxes and arrows, left to right (e.g. 健診受診者 → 糖尿病型 →
    腎機能低下 → 治療中 / 未治療 / 治療中断; docs/rules.md §5).

    steps: `step_id`, `step_label` (may contain "\\n"), `count` (persons), `parent_id`
        (None/NaN/"" for a root, as `hsutils.rules.programs.nephropathy_flow` gives). Long labels
        are wrapped to the box width, then shrunk (min 6 pt). Counts 1–9 (or NaN) show "‐", and
        so does the share of the parent derived from them (docs/rules.md §9).
    """
    s = steps.reset_index(drop=True)
    ids = s["step_id"].tolist()
    parents = [None if pd.isna(p) or p == "" else p for p in s["parent_id"].tolist()]
    depth, slot = _tree_layout(ids, parents)
    count = pd.to_numeric(s["count"], errors="coerce").to_numpy(float)
    hidden = _flow_hidden(ids, parents, count, suppress_threshold)
    count_of = dict(zip(ids, np.where(hidden, np.nan, count)))
    n_levels = max(depth.values()) + 1
    n_slots = max(slot.values()) + 1
    fig, ax, own = _axes(ax, size)
    box_w, box_h = 0.78, (0.6 if n_slots > 1 else 0.35)
    texts = []
    for i, label, parent in zip(ids, s["step_label"].astype(str), parents):  # a few steps
        x, y = depth[i], slot[i]
        fill = "#E8F1FA" if depth[i] == 0 else ("#FFFFFF" if i in [p for p in parents if p is not None]
                                                else "#FFF7E0")
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.06", facecolor=fill,
                                    edgecolor="#0B4F8A", lw=1.0, gid="flow_box"))
        c = count_of[i]
        body = f"{label}\n{_count_text(c)}人" if not np.isnan(c) else f"{label}\n{SUPPRESSION_MARK}"
        pc = count_of.get(parent, np.nan) if parent is not None else np.nan
        if show_share and parent is not None and not np.isnan(c) and not np.isnan(pc) and pc > 0:
            body += f"（前段の{c / pc:.1%}）"
        texts.append(ax.text(x, y, body, ha="center", va="center", fontsize=9, gid="flow_text",
                             linespacing=1.35))
        if parent is not None:
            ax.annotate("", xy=(x - box_w / 2, y), xytext=(depth[parent] + box_w / 2, slot[parent]),
                        arrowprops=dict(arrowstyle="-|>", color="#555555", lw=1.0,
                                        shrinkA=0, shrinkB=1))
    ax.set_xlim(-0.5, n_levels - 0.5)
    ax.set_ylim(n_slots - 0.5, -0.5)
    ax.set_axis_off()
    notes = [suppression_note(suppress_threshold)] if hidden.any() else []
    _finish_chart(fig, ax, own, title, footer, notes)
    _shrink_to_boxes(fig, ax, texts, box_w, box_h)
    return ax


def _flow_hidden(ids: list, parents: list, count: np.ndarray, threshold: int) -> np.ndarray:
    """Counts to hide in a flow chart: 1–9 (or NaN, hidden upstream) plus secondary suppression
    over the branches of every split (`privacy.tree_relations`, `privacy.suppress_relations`;
    docs/rules.md §9)."""
    return privacy.suppress_relations(count, privacy.tree_relations(ids, parents), threshold)


_BREAK_BEFORE_AFTER = re.compile(r"(?=[（(])|(?<=[）)、・ ])")


def _wrap_box_text(text: str, width_pt: float, fontsize: float) -> str:
    """Wrap each line wider than width_pt: at natural breaks first (before "（", after "）",
    "、", "・" or a space), then at characters."""
    lines = []
    for line in text.split("\n"):
        if _text_width_pt(line, fontsize) <= width_pt:
            lines.append(line)
            continue
        parts = [p for p in _BREAK_BEFORE_AFTER.split(line) if p]
        for wrapped in _wrap_parts(parts, "", width_pt, fontsize):
            lines.extend(_wrap_chars(wrapped.strip(), width_pt, fontsize)
                         if _text_width_pt(wrapped, fontsize) > width_pt else [wrapped.strip()])
    return "\n".join(lines)


def _shrink_to_boxes(fig: Figure, ax, texts, box_w: float, box_h: float) -> None:
    """Wrap box texts wider than their box, and reduce the font size of those that still do
    not fit (min 6 pt)."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    origin = ax.transData.transform((0, 0))
    corner = ax.transData.transform((box_w, box_h))
    width_px, height_px = abs(corner[0] - origin[0]) * 0.92, abs(corner[1] - origin[1]) * 0.9
    width_pt = width_px * 72 / fig.dpi
    for t in texts:  # a few boxes
        original = t.get_text()
        for _ in range(8):
            t.set_text(_wrap_box_text(original, width_pt, t.get_fontsize()))
            box = t.get_window_extent(renderer)
            if (box.width <= width_px and box.height <= height_px) or t.get_fontsize() <= 6:
                break
            t.set_fontsize(max(6, t.get_fontsize() * min(width_px / box.width,
                                                         height_px / box.height, 0.95)))


# ---------------------------------------------------------------------------------------------
# Spine chart (area profile)
# ---------------------------------------------------------------------------------------------
def _spine_position(value, benchmark, half_width, lower_better):
    """Position on the 0..1 spine: benchmark at 0.5, better always to the right (docs/design.md §10)."""
    sign = -1.0 if lower_better else 1.0
    return 0.5 + sign * (value - benchmark) / (2 * half_width)


@styled
def spine_chart(df: pd.DataFrame, *, title: str, footer: str, value_fmt: str = "{:.1f}",
                fmt_col: str | None = None, count_col: str | None = None,
                area_label: str = "当該地域", benchmark_label: str = "基準値",
                references: Sequence[tuple[str, str] | tuple[str, str, str]] = (), notes: Sequence[str] = (),
                suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Figure:
    """Area profile (spine chart, as in Fingertips): one row per indicator.

    df: `indicator_name`, `area_value`, `benchmark`, `min`, `q25`, `q75`, `max` (over all
        areas), `comparison` ("有意に高い"/"有意差なし"/"有意に低い"), `polarity`
        ("higher_better"/"lower_better"/None); optional `fmt_col` (per-row value format such as
        "{:.1%}") and `count_col` (an area value from a count 1–9 is shown "‐", no point).
    Each row spans the range of all areas from worst (left) to best (right): scale centred on
    the benchmark, half-width = the larger distance from the benchmark to min or max, flipped
    for lower-is-better indicators so better is always on the right; the middle half (q25–q75)
    is shaded darker; the area's point has the significance colour (docs/design.md §10). Values are
    listed at the left (indicator, area value, benchmark).
    references: other references on the same scale, (label, column of `df`[, kind]) — e.g. 国 and
        同規模 beside the 県 of `benchmark` (`hsutils.analysis.references.reference_lines`): a short vertical
        mark of the kind's style (`REFERENCE_LINE_STYLES`) in each row with a value, in the legend;
        a row without a value has no mark (say why in `notes`: 比較なし（理由）).
    """
    d = df.reset_index(drop=True).copy()
    for c in ("area_value", "benchmark", "min", "q25", "q75", "max"):
        d[c] = pd.to_numeric(d[c], errors="coerce").astype(float)
    hidden = _row_hidden(d, count_col, suppress_threshold)
    d.loc[hidden, "area_value"] = np.nan
    pols = [_check_polarity(p) for p in d["polarity"].astype(object).where(d["polarity"].notna(), None)]
    comps = d["comparison"].astype(object).where(~hidden, None)
    labels, colours = significance_colours(comps, pols)
    fig, own = _panel_figure(ax, size)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1.6], wspace=0.0)
    ax_t = fig.add_subplot(gs[0, 0])
    ax = fig.add_subplot(gs[0, 1], sharey=ax_t)
    n = len(d)
    trans_t = blended_transform_factory(ax_t.transAxes, ax_t.transData)
    for i in range(n):  # one row per indicator
        row = d.iloc[i]
        lower_better = pols[i] == "lower_better"
        b = row["benchmark"]
        hw = np.nanmax([abs(b - row["min"]), abs(row["max"] - b)])
        hw = hw if np.isfinite(hw) and hw > 0 else 1.0
        ends = sorted(_spine_position(np.array([row["min"], row["max"]]), b, hw, lower_better))
        mids = sorted(_spine_position(np.array([row["q25"], row["q75"]]), b, hw, lower_better))
        ax.barh(i, ends[1] - ends[0], left=ends[0], height=0.55, color="#E3E3E3", gid="spine_range")
        ax.barh(i, mids[1] - mids[0], left=mids[0], height=0.55, color="#A9A9A9", gid="spine_iqr")
        if not np.isnan(row["area_value"]):
            x = _spine_position(row["area_value"], b, hw, lower_better)
            ax.plot([x], [i], marker="o", ms=9, color=colours[i], mec="#222222", mew=0.8,
                    ls="none", zorder=4, gid=f"spine_point::{row['indicator_name']}")
        fmt = row[fmt_col] if fmt_col and isinstance(row.get(fmt_col), str) else value_fmt
        ax_t.text(0.0, i, str(row["indicator_name"]), transform=trans_t, ha="left", va="center",
                  fontsize=8.5)
        ax_t.text(0.80, i, _fmt(row["area_value"], fmt), transform=trans_t, ha="right",
                  va="center", fontsize=8.5, color="#111111")
        ax_t.text(0.99, i, _fmt(b, fmt), transform=trans_t, ha="right", va="center",
                  fontsize=8.5, color="#555555")
        pol_mark = {"higher_better": "高いほど良い", "lower_better": "低いほど良い（左右反転）"}.get(pols[i], "")
        if pol_mark:
            ax_t.text(0.0, i + 0.3, pol_mark, transform=trans_t, ha="left", va="center",
                      fontsize=6.5, color="#777777")
    ref_handles, clipped = [], False
    ref_vals = np.column_stack([pd.to_numeric(d[r[1]], errors="coerce").to_numpy(float) if r[1] in d.columns
                                else np.full(n, np.nan) for r in references]) if len(references) else np.zeros((n, 0))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without any value
        span = np.nanmax(np.c_[np.abs(d["benchmark"] - d["min"]), np.abs(d["max"] - d["benchmark"])], axis=1)
        # a row without a range of areas (all hidden): scale on the references so their marks stay inside
        ref_span = np.nanmax(np.abs(ref_vals - d["benchmark"].to_numpy(float)[:, None]), axis=1, initial=0.0) * 1.25
    span = np.where(np.isfinite(span) & (span > 0), span, np.where(ref_span > 0, ref_span, 1.0))
    for k, ref in enumerate(references):  # 国, 同規模 … (a few)
        label = ref[0]
        colour, ls = _reference_style(ref[2] if len(ref) > 2 else None, k)
        vals = ref_vals[:, k]
        for i in np.flatnonzero(np.isfinite(vals)):  # one mark per indicator row
            x = _spine_position(vals[i], d.at[i, "benchmark"], span[i], pols[i] == "lower_better")
            clipped |= not -0.02 <= x <= 1.02
            x = float(np.clip(x, -0.02, 1.02))
            ax.plot([x, x], [i - 0.36, i + 0.36], color=colour, ls=ls, lw=2.0, zorder=3.5, gid="spine_reference")
        if np.isfinite(vals).any():
            ref_handles.append(Line2D([], [], color=colour, ls=ls, lw=2.0, label=str(label)))
    for i in range(n + 1):
        for a in (ax, ax_t):
            a.axhline(i - 0.5, color="#EEEEEE", lw=0.6, zorder=0)
    ax.vlines(0.5, -0.5, n - 0.5, color="#C00000", lw=1.4, zorder=3, label=benchmark_label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(n - 0.5, -1.0)
    ax.set_xticks([])
    ax.tick_params(axis="y", left=False, labelleft=False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax_t.set_axis_off()
    ax_t.text(0.0, -0.75, "指標", transform=trans_t, ha="left", va="center", fontsize=8.5)
    ax_t.text(0.80, -0.75, area_label, transform=trans_t, ha="right", va="center", fontsize=8.5)
    ax_t.text(0.99, -0.75, benchmark_label, transform=trans_t, ha="right", va="center",
              fontsize=8.5)
    ax.text(0.0, -0.75, "← 悪い（低い）", ha="left", va="center", fontsize=8, color="#555555")
    ax.text(1.0, -0.75, "良い（高い） →", ha="right", va="center", fontsize=8, color="#555555")
    handles = [Patch(color="#E3E3E3", label="全地域の範囲"), Patch(color="#A9A9A9", label="中央50%"),
               Line2D([], [], color="#C00000", lw=1.4, label=benchmark_label)] + ref_handles
    ax.legend(handles=handles + _significance_handles(labels), loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    notes = ["良い方が常に右（低いほど良い指標は左右を反転）。極性のない指標は右が高い"] + (
        [f"点の色は{benchmark_label}との比較。ほかの基準は縦の印（県・同規模・国との比較の図に区間つきで示す）"]
        if ref_handles else []) + (["全地域の範囲の外にある基準の印は端に表示"] if clipped else []) + list(notes)
    if hidden.any():
        notes.append(suppression_note(suppress_threshold))
    return _finish_chart(fig, None, own, title, footer, notes, comparison=True)


# ---------------------------------------------------------------------------------------------
# Heat table
# ---------------------------------------------------------------------------------------------
@styled
def heat_table(df: pd.DataFrame, *, row_col: str, col_col: str, value_col: str, title: str,
               footer: str, fmt: str = "{:.1%}", count_col: str | None = None,
               comparison_col: str | None = None, polarity=None, cmap="Blues",
               suppress_threshold: int = privacy.DEFAULT_THRESHOLD, ax: Axes | None = None, size="slide") -> Axes:
    """Table of values coloured by size (e.g. 受診率 by 地区 × 性・年齢).

    df: `row_col`, `col_col`, `value_col`, optional `count_col` (cells whose value derives
        from a count 1–9 — or NaN — show "‐", docs/rules.md §9) and `comparison_col` (colour the cells
        with the significance palette instead of the sequential `cmap`). Row and column order
        follow first appearance (or the categories of a Categorical).
    """
    d = df.copy()
    d["_v"] = pd.to_numeric(d[value_col], errors="coerce").astype(float)
    hidden = _row_hidden(d, count_col, suppress_threshold)
    d.loc[hidden, "_v"] = np.nan
    d["_hidden"] = hidden
    rows, cols = list(pd.unique(d[row_col])), list(pd.unique(d[col_col]))
    vals = d.pivot_table(index=row_col, columns=col_col, values="_v", aggfunc="first",
                         dropna=False).reindex(index=rows, columns=cols).to_numpy(float)
    hid = d.pivot_table(index=row_col, columns=col_col, values="_hidden", aggfunc="max",
                        dropna=False).reindex(index=rows, columns=cols).fillna(False).to_numpy(bool)
    if comparison_col:
        d["_sig"] = significance_colours(d[comparison_col].astype(object).where(~hidden, None),
                                         polarity)[1]
        sig = d.pivot_table(index=row_col, columns=col_col, values="_sig", aggfunc="first",
                            dropna=False).reindex(index=rows, columns=cols)
    fig, ax, own = _axes(ax, size)
    finite = vals[np.isfinite(vals)]
    norm = mcolors.Normalize(finite.min(), finite.max()) if finite.size else mcolors.Normalize(0, 1)
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    for i in range(len(rows)):  # cells of a small table
        for j in range(len(cols)):
            v = vals[i, j]
            if np.isnan(v):
                fill = "#F2F2F2"
            elif comparison_col:
                fill = sig.iat[i, j]
            else:
                fill = mcolors.to_hex(cm(0.1 + 0.75 * norm(v)))
            ax.add_patch(Rectangle((j, i), 1, 1, facecolor=fill, edgecolor="white", lw=1.5))
            ax.text(j + 0.5, i + 0.5, _fmt(v, fmt), ha="center", va="center", fontsize=8,
                    color=_text_colour_on(fill), gid="heat_cell")
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(len(cols)) + 0.5, [str(c) for c in cols])
    ax.set_yticks(np.arange(len(rows)) + 0.5, [str(r) for r in rows])
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    notes = []
    if hid.any():
        notes.append(suppression_note(suppress_threshold))
    if comparison_col:
        ax.legend(handles=_significance_handles(
            significance_colours(d[comparison_col].astype(object).where(~hidden, None), polarity)[0]),
            loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _finish_chart(fig, ax, own, title, footer, notes, comparison=bool(comparison_col))


# ---------------------------------------------------------------------------------------------
# UpSet chart
# ---------------------------------------------------------------------------------------------
@styled
def upset_chart(membership: pd.DataFrame, *, title: str, footer: str,
                criteria: Sequence[str] | None = None, count_col: str | None = None,
                labels: Mapping[str, str] | None = None, max_intersections: int = 15,
                include_none: bool = False, suppress_threshold: int = privacy.DEFAULT_THRESHOLD,
                ax: Axes | None = None, size="slide") -> Figure:
    """Overlaps of criteria (UpSet plot; Lex et al. 2014): intersection sizes as bars above a
    dot matrix, set sizes at the left (e.g. the 一体的実施 criteria, docs/rules.md §6.1).

    membership: one row per person with boolean criteria columns (`criteria`, default all bool
        columns), or one row per combination with a `count_col`. Counted vectorised
        (group-by). Intersections and set sizes of 1–9 persons are shown "‐" without a bar and
        placed last (their order would reveal their size; docs/rules.md §9); a set size is hidden too
        when its intersections not shown (hidden, or beyond `max_intersections`) add up to 1–9
        (it would reveal them by subtraction). The combination "none of the criteria" is left
        out unless `include_none`.
    """
    crit = list(criteria) if criteria is not None else [
        c for c in membership.columns if c != count_col
        and (pd.api.types.is_bool_dtype(membership[c]))]
    flags = membership[crit].fillna(False).astype(bool)
    weights = (pd.to_numeric(membership[count_col], errors="coerce").fillna(0.0) if count_col
               else pd.Series(1.0, index=membership.index))
    combos = weights.groupby([flags[c] for c in crit]).sum().rename("n").reset_index()
    combos.columns = crit + ["n"]
    if not include_none:
        combos = combos[combos[crit].any(axis=1)]
    combos = combos[combos["n"] > 0]
    combos["_hidden"] = _hidden_mask(combos["n"].to_numpy(), suppress_threshold)
    combos["_degree"] = combos[crit].sum(axis=1)
    combos = combos.sort_values(["_hidden", "n", "_degree"], ascending=[True, False, True],
                                kind="stable")
    shown_hidden_order = combos[~combos["_hidden"]]
    hidden_part = combos[combos["_hidden"]].sort_values("_degree", kind="stable")
    ordered = pd.concat([shown_hidden_order, hidden_part])
    combos = ordered.head(max_intersections)
    set_sizes = (flags.mul(weights, axis=0)).sum().reindex(crit).to_numpy(float)
    # a set size minus its shown intersections would reveal the others (hidden, or beyond
    # max_intersections): hide the set size too when those add up to 1–9 persons (docs/rules.md §9)
    not_shown = ordered[ordered["_hidden"].to_numpy() | ~ordered.index.isin(combos.index)]
    hidden_sums = not_shown[crit].mul(not_shown["n"], axis=0).sum().reindex(crit).to_numpy(float)
    set_hidden = (_hidden_mask(set_sizes, suppress_threshold)
                  | _hidden_mask(np.where(hidden_sums > 0, hidden_sums, 0.0), suppress_threshold))
    names = [labels.get(c, c) if labels else c for c in crit]
    fig, own = _panel_figure(ax, size)
    gs = fig.add_gridspec(2, 2, height_ratios=[2.2, 1.2], width_ratios=[1.0, 3.2])
    ax_bar = fig.add_subplot(gs[0, 1])
    ax_dot = fig.add_subplot(gs[1, 1], sharex=ax_bar)
    ax_set = fig.add_subplot(gs[1, 0], sharey=ax_dot)
    xs = np.arange(len(combos))
    n_shown = np.where(combos["_hidden"], 0.0, combos["n"].to_numpy(float))
    ax_bar.bar(xs, n_shown, color="#0B4F8A", width=0.65, gid="upset_bars")
    top = max(float(n_shown.max()) if len(n_shown) else 1.0, 1.0)
    for x, v, hid in zip(xs, n_shown, combos["_hidden"]):
        ax_bar.text(x, v + 0.02 * top, SUPPRESSION_MARK if hid else f"{int(v):,}", ha="center",
                    va="bottom", fontsize=7)
    ax_bar.set_ylim(0, top * 1.15)
    ax_bar.set_ylabel("人数（組み合わせ）")
    ax_bar.tick_params(axis="x", bottom=False, labelbottom=False)
    ax_bar.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    member = combos[crit].to_numpy(bool)
    ys = np.arange(len(crit))
    for x in xs:  # columns of the matrix (≤ max_intersections)
        ax_dot.scatter(np.full(len(crit), x), ys, s=40, color="#DDDDDD", zorder=1)
        on = ys[member[x]]
        ax_dot.scatter(np.full(len(on), x), on, s=40, color="#222222", zorder=3, gid="upset_dots")
        if len(on) > 1:
            ax_dot.plot([x, x], [on.min(), on.max()], color="#222222", lw=1.6, zorder=2)
    ax_dot.set_ylim(len(crit) - 0.5, -0.5)
    ax_dot.set_xlim(-0.6, max(len(combos), 1) - 0.4)
    ax_dot.tick_params(axis="both", length=0, labelbottom=False, labelleft=False)
    for side in ("left", "bottom"):
        ax_dot.spines[side].set_visible(False)
    shown_sets = np.where(set_hidden, 0.0, set_sizes)
    ax_set.barh(ys, shown_sets, color="#7F7F7F", height=0.55, gid="upset_sets")
    smax = max(float(shown_sets.max()) if len(shown_sets) else 1.0, 1.0)
    for y, v, hid in zip(ys, shown_sets, set_hidden):
        ax_set.text(v + 0.03 * smax, y, SUPPRESSION_MARK if hid else f"{int(v):,}", ha="right",
                    va="center", fontsize=7)
    ax_set.set_xlim(smax * 1.35, 0)
    ax_set.set_yticks(ys, names)
    ax_set.yaxis.tick_right()
    ax_set.tick_params(axis="y", length=0, labelsize=8.5, pad=4)
    ax_set.spines["left"].set_visible(False)
    ax_set.spines["right"].set_visible(False)
    ax_set.set_xlabel("該当者数（条件別）")
    ax_set.xaxis.set_major_locator(MaxNLocator(nbins=3))
    ax_set.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    notes = ["棒は●の条件すべてに該当し他に該当しない人数"]
    if len(ordered) > len(combos):
        notes.append(f"全{len(ordered)}通りの組み合わせのうち{len(combos)}通りを表示")
    if combos["_hidden"].any() or set_hidden.any():
        notes.append(suppression_note(suppress_threshold) + "（非表示の組み合わせは右端）")
    return _finish_chart(fig, None, own, title, footer, notes)

"""The one way a notebook shows an interactive panel (ipywidgets, JupyterLab by hand only).

Every 「しきい値を変えて試す」 panel of notebooks 01–09 is built here, so that all of them

* size their controls for their ranges: the label column is as wide as the longest label (no
  「…」), every slider has a long track (`TRACK_PX`–`MAX_TRACK_PX`, 8 px per step where that fits), check
  boxes are not indented and show their whole label;
* recompute only when a slider is released and say so while they work: 「計算中…」 appears at
  once, then how long the update took;
* are still shown in a saved notebook reopened without its kernel: `make install` turns on
  JupyterLab's widget state saving (`hsutils.running.lab_settings`), so the panel and its last
  result are drawn again from the notebook (not operable until the cells run again; the note above
  the panel says so);
* still say something useful where the widgets cannot be drawn — an HTML export (nbconvert), a
  viewer without the ipywidgets extension, a JupyterLab with state saving turned off: the
  display carries, besides the widget, a Japanese note and the result for the starting values
  (text/html), and a Japanese text/plain instead of ``VBox(children=(FloatSlider(…``.

Call only when `interactive` (papermill can hang on widgets, docs/design.md §9).
"""
from __future__ import annotations

import base64
import html
import io
import math
import time
from typing import Callable, Mapping

import pandas as pd

from hsutils.publish import report

#: What is shown instead of the panel where the widgets cannot be drawn (HTML export, other viewers).
FALLBACK_NOTE = ("操作パネル（スライダー・選択欄）は、JupyterLab でこのノートブックを実行しているときに使えます。"
                 "ここではパネルを表示できないため、代わりに結果を示します。")
FALLBACK_RESULT = "以下は、パラメータの値（操作前の値）での結果です。"
#: Shown above every panel, live and after reopening. A saved notebook keeps the panels' state
#: (lab_settings: saveState), so on reopening JupyterLab draws the panel as it was saved, marked
#: as disconnected from the kernel; without saved state it shows 「Loading widget...」 there.
PANEL_NOTE = ("操作パネル: 値を変えると下の結果を計算し直します。保存したノートブックを開き直したときは、"
              "保存したときのパネルと結果が表示されますが、操作はできません（カーネルにつながっていない印が付きます）。"
              "操作するには、上から順にセルを実行してください。")
BUSY = "計算中…"
#: a slider's track: one step at least MIN_PX_PER_STEP pixels, between TRACK_PX and MAX_TRACK_PX
#: (a wider track leaves the notebook's column: the browser check saw a scroll bar at 800 px)
MIN_PX_PER_STEP = 8
TRACK_PX = 360
MAX_TRACK_PX = 480
READOUT_PX = 70


def label_width(labels) -> str:
    """CSS width of a label column that holds the longest label (full-width characters count one
    em, others 0.55 em; 1.5 em of margin, rounded up to whole em)."""
    ems = max((sum(1.0 if ord(ch) > 0x2E7F else 0.55 for ch in str(t)) for t in labels), default=4)
    return f"{math.ceil(ems + 1.5)}em"


def sized(controls: Mapping[str, object]) -> None:
    """Give every control of a panel the same label column and a track sized for its range."""
    import ipywidgets as w

    width = label_width(c.description for c in controls.values() if not isinstance(c, w.Checkbox))
    for c in controls.values():
        if isinstance(c, w.Checkbox):
            c.indent = False
            c.style = {"description_width": "initial"}
            c.layout = w.Layout(width="auto")
            continue
        c.style = {"description_width": width}
        if isinstance(c, (w.FloatSlider, w.IntSlider, w.SelectionRangeSlider, w.SelectionSlider)):
            steps = (len(c.options) if hasattr(c, "options") else round((c.max - c.min) / c.step))
            track = min(MAX_TRACK_PX, max(TRACK_PX, MIN_PX_PER_STEP * steps))
            c.continuous_update = False  # recompute when released, not at every pixel
            c.layout = w.Layout(width=f"calc({width} + {track + READOUT_PX}px)")
        elif isinstance(c, (w.Dropdown, w.Select, w.SelectMultiple)):
            c.layout = w.Layout(width=f"calc({width} + 22em)")


def _html_of(item) -> str:
    """A static HTML copy of one displayed result (table, figure, text)."""
    if isinstance(item, str):
        return f"<pre>{html.escape(item)}</pre>"
    if hasattr(item, "savefig"):  # matplotlib Figure
        buf = io.BytesIO()
        item.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'
    for attr in ("_repr_html_", "to_html"):
        if hasattr(item, attr):
            return getattr(item, attr)()
    return f"<pre>{html.escape(str(item))}</pre>"


class Panel:
    """Controls + the result area of one interactive panel; display it with `display(panel)`.

    `render(**values)` gets the controls' values by their keys and returns what to show: one item
    or a list of items (a DataFrame — shown with `report.display_table` —, a Styler, a matplotlib
    Figure, a text)."""

    def __init__(self, controls: Mapping[str, object], render: Callable[..., object], *, title: str | None = None,
                 row: bool = False):
        import ipywidgets as w

        self.controls = dict(controls)
        self.render = render
        sized(self.controls)
        self.status = w.HTML(layout=w.Layout(min_height="1.6em"))
        self.out = w.Output()
        parts = [w.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        box = w.HBox if row else w.VBox
        parts += [box(list(self.controls.values())), self.status, self.out]
        self.widget = w.VBox(parts)
        self.first = self.update()
        for c in self.controls.values():
            c.observe(self.update, names="value")

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def update(self, _change=None) -> list:
        from IPython.display import display

        self.status.value = f'<span style="color:#b35900">{BUSY}</span>'
        t0 = time.perf_counter()
        try:
            result = self.render(**self.values())
        except Exception as exc:  # after a change: shown in the panel, not in JupyterLab's log only
            self.status.value = f'<span style="color:#b00020">計算できませんでした: {html.escape(str(exc))}</span>'
            if _change is None:
                raise
            return []
        items = list(result) if isinstance(result, (list, tuple)) else [result]
        items = [report.display_table(i) if isinstance(i, pd.DataFrame) else i for i in items]  # one table style
        self.out.clear_output(wait=True)
        with self.out:
            for item in items:
                if isinstance(item, str):
                    print(item)  # text as text, not its repr with quotes and \n
                else:
                    display(item)
        import matplotlib.pyplot as plt

        for item in items:  # shown once in the panel; not again at the end of the cell
            if hasattr(item, "savefig"):
                plt.close(item)
        self.status.value = f'<span style="color:#666">（更新 {time.perf_counter() - t0:.1f} 秒）</span>'
        return items

    def fallback_html(self) -> str:
        body = "".join(_html_of(i) for i in self.first)
        return (f'<div class="hsutils-panel-fallback"><p>{FALLBACK_NOTE}</p>'
                f"<p>{FALLBACK_RESULT}</p>{body}</div>")

    def _ipython_display_(self):
        """The note (a plain output, kept in the saved notebook), then the panel."""
        from IPython.display import HTML, display

        display(HTML(f'<div style="color:#555;font-size:90%">{html.escape(PANEL_NOTE)}</div>'))
        display(self._repr_mimebundle_(), raw=True)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = dict(self.widget._repr_mimebundle_() or {})
        data["text/plain"] = FALLBACK_NOTE
        data["text/html"] = self.fallback_html()
        return data

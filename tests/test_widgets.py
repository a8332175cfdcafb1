"""Interactive panels (hsutils.publish.widgets), the chart 出典 label and the 尿蛋白 parameter form (issue 25)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from hsutils.core import settings, vocab
from hsutils.inputs import tokutei_xml
from hsutils.publish import widgets
from hsutils.patterns import ikkatsu, nephropathy
from hsutils.running import notebook
from hsutils.core.errors import ParameterError


# ------------------------------------------------------------------------------ panel behaviour

def _panel(calls):
    def render(n, label):
        calls.append((n, label))
        return [pd.DataFrame({"人数": [n * 1000]}), f"{label}: {n}"]

    controls = {"n": w.IntSlider(value=2, min=1, max=40, description="多剤: 薬剤数 以上"),
                "label": w.Dropdown(options=["±", "1+"], description="尿蛋白 以上"),
                "flag": w.Checkbox(value=True, description="腎疾患レセプトも腎障害に含める")}
    return widgets.Panel(controls, lambda n, label, flag: render(n, label))


def test_panel_renders_once_and_again_on_change_with_timing():
    calls = []
    p = _panel(calls)
    assert calls == [(2, "±")]
    p.controls["n"].value = 5
    assert calls[-1] == (5, "±")
    assert "更新" in p.status.value and "秒" in p.status.value  # the busy note was replaced by the time
    p.controls["label"].value = "1+"
    assert calls[-1] == (5, "1+") and len(calls) == 3


def test_panel_sizes_controls_for_their_range_and_labels():
    p = _panel([])
    slider, dropdown, box = p.controls["n"], p.controls["label"], p.controls["flag"]
    # one label column for the panel, as wide as the longest label (「多剤: 薬剤数 以上」: 7 full-width
    # characters + 3 others = 8.65em, + 1.5em = 10.15em → 11em)
    assert slider.style.description_width == dropdown.style.description_width == "11em"
    # 39 steps × 8 px = 312 px < the 360 px minimum track; + 70 px for the readout
    assert slider.layout.width == "calc(11em + 430px)"
    assert slider.continuous_update is False
    assert box.indent is False and box.layout.width == "auto"  # the whole label, not 「…含…」


def test_tracks_grow_with_the_range_up_to_the_column_width():
    s = w.IntSlider(value=1, min=0, max=50, description="x")
    long = w.FloatSlider(value=1, min=0, max=60, step=0.1, description="x")
    widgets.sized({"x": s, "y": long})
    assert s.layout.width.endswith("+ 470px)")  # 50 steps × 8 px = 400 + 70
    assert long.layout.width.endswith("+ 550px)")  # 600 steps: the 480 px maximum + 70


def test_label_width_counts_full_width_characters_as_one_em():
    assert widgets.label_width(["年度"]) == "4em"  # 2 + 1.5 → 4
    assert widgets.label_width(["eGFR 未満", "年度"]) == "7em"  # 5 × 0.55 + 2 + 1.5 = 6.25 → 7


def test_panel_display_has_a_japanese_fallback_instead_of_the_widget_repr():
    p = _panel([])
    bundle = p._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # live: the widget
    assert bundle["text/plain"] == widgets.FALLBACK_NOTE and "VBox" not in bundle["text/plain"]
    html = bundle["text/html"]  # reopened / exported: the note and the first result
    assert widgets.FALLBACK_NOTE in html and "2,000" in html and "±: 2" in html


def test_display_puts_a_plain_note_above_the_panel(monkeypatch):
    panel, shown = _panel([]), []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append((obj, raw)))
    panel._ipython_display_()
    assert widgets.PANEL_NOTE in shown[0][0].data  # an ordinary output: still there after reopening
    assert shown[1][1] is True and "application/vnd.jupyter.widget-view+json" in shown[1][0]


def test_fallback_keeps_a_figure_as_an_image():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    p = widgets.Panel({"k": w.Dropdown(options=[1, 2], description="年度")}, lambda k: fig)
    assert '<img src="data:image/png;base64,' in p.fallback_html()


def test_a_failing_update_is_shown_in_the_panel():
    def render(k):
        if k == 2:
            raise ValueError("テスト")
        return "ok"

    p = widgets.Panel({"k": w.Dropdown(options=[1, 2], description="年度")}, render)
    p.controls["k"].value = 2
    assert "計算できませんでした: テスト" in p.status.value


# ------------------------------------------------------------------------------ 出典 label

def _summary(*rows):
    return pd.DataFrame(rows, columns=["table", "file"])


def test_source_label_follows_the_imported_formats(tmp_path):
    real = _summary(("enrollment", "enrollment.csv"), ("kenshin", tokutei_xml.LABEL),
                    ("uke", "UKE 12 ファイル"), ("kaigo", "kaigo.csv"))
    assert notebook.source_label(real, tmp_path) == "特定健診XML・レセプト電算（UKE）・KDB形式CSV"
    templates = _summary(("enrollment", "enrollment.xlsx"), ("kenshin", "kenshin.csv"),
                         ("claims_monthly", "claims_monthly.csv"))
    assert notebook.source_label(templates, tmp_path) == "KDB形式CSV・KDB形式Excel"
    # UKE receipts replace a claims CSV in the same folder (hsutils.inputs.io): the CSV is not a source
    both = _summary(("kenshin", "kenshin.parquet"), ("claims_monthly", "claims_monthly.csv"), ("uke", "UKE 1 ファイル"))
    assert notebook.source_label(both, tmp_path) == "Parquet・レセプト電算（UKE）"
    assert notebook.source_label(None) == "入力データ"
    # 特定保健指導 (hg08) read from the same archives is named, not 「入力データ」
    xml = _summary(("kenshin", tokutei_xml.LABEL), ("guidance", tokutei_xml.LABEL_GUIDANCE),
                   ("uke", "UKE 2 ファイル"), ("kaigo", "kaigo.csv"))
    assert notebook.source_label(xml, tmp_path) == "特定健診・特定保健指導XML・レセプト電算（UKE）・KDB形式CSV"
    only_guidance = _summary(("kenshin", "kenshin.csv"), ("guidance", tokutei_xml.LABEL_GUIDANCE))
    assert notebook.source_label(only_guidance, tmp_path) == "KDB形式CSV・特定保健指導XML"


def test_source_label_says_demo_only_for_the_demo_folder():
    summary = _summary(("kenshin", tokutei_xml.LABEL), ("uke", "UKE 3 ファイル"), ("enrollment", "enrollment.csv"))
    assert notebook.source_label(summary, settings.demo_data_dir()) == \
        "特定健診XML・レセプト電算（UKE）・KDB形式CSV（架空のデモデータ）"
    assert notebook.source_label(summary, str(settings.demo_data_dir()) + "/.") .endswith("（架空のデモデータ）")


# ------------------------------------------------------------------------------ 尿蛋白 parameter

def test_urine_threshold_is_written_as_the_result_in_every_notebook():
    assert vocab.urine_threshold("±") == 1 and vocab.urine_threshold("1+") == 2
    assert vocab.urine_threshold("＋") == 2 and vocab.urine_threshold("3+") == 4
    assert vocab.urine_threshold(2) == 2  # the ordinal (older run YAMLs of 03)
    for bad in ("2", "−", "x", None, True):
        with pytest.raises(ParameterError, match="「±」「1\\+」「2\\+」「3\\+」のいずれか"):
            vocab.urine_threshold(bad)


def test_notebooks_03_and_04_accept_the_same_form():
    assert ikkatsu.make_params(urine_protein_kidney="1+").urine_protein_kidney == 2
    assert ikkatsu.make_params(urine_protein_kidney=2).urine_protein_kidney == 2
    assert ikkatsu.make_params(urine_protein_kidney="±").urine_protein_kidney == 1
    assert nephropathy.nephropathy_params(urine_protein="1+").urine_protein == 2
    with pytest.raises(ParameterError, match="腎機能不良未受診の尿蛋白の基準"):
        ikkatsu.make_params(urine_protein_kidney="2")
    with pytest.raises(ParameterError, match="「±」または「1\\+」"):
        nephropathy.nephropathy_params(urine_protein="2+")


# --- the JupyterLab defaults the install writes (hsutils.running.lab_settings)

def test_lab_settings_turn_on_widget_state_and_japanese(tmp_path):
    import json

    from hsutils.running import lab_settings

    path = lab_settings.write_overrides(tmp_path)
    assert path == tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["@jupyter-widgets/jupyterlab-manager:plugin"] == {"saveState": True}
    assert written["@jupyterlab/translation-extension:plugin"] == {"locale": "ja_JP"}
    # someone else's settings in the same file stay; ours are set again
    written["@jupyterlab/apputils-extension:themes"] = {"theme": "JupyterLab Dark"}
    written["@jupyter-widgets/jupyterlab-manager:plugin"] = {"saveState": False}
    path.write_text(json.dumps(written), encoding="utf-8")
    again = json.loads(lab_settings.write_overrides(tmp_path).read_text(encoding="utf-8"))
    assert again["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert again["@jupyter-widgets/jupyterlab-manager:plugin"] == {"saveState": True}


def test_lab_settings_refuse_a_broken_file_in_japanese(tmp_path):
    from hsutils.core.errors import DataError
    from hsutils.running import lab_settings

    path = lab_settings.settings_dir(tmp_path) / "overrides.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="overrides.json」が JSON として読めません"):
        lab_settings.write_overrides(tmp_path)


def test_lab_settings_name_settings_that_the_installed_jupyterlab_knows():
    """The keys exist in the installed extensions' schemas (a renamed setting would be ignored silently),
    and `make install` writes them."""
    import json
    import sys
    from pathlib import Path

    from hsutils.running import lab_settings

    share = Path(sys.prefix) / "share" / "jupyter"
    schemas = {"@jupyter-widgets/jupyterlab-manager:plugin":
               share / "labextensions/@jupyter-widgets/jupyterlab-manager/schemas/@jupyter-widgets/jupyterlab-manager/plugin.json",
               "@jupyterlab/translation-extension:plugin":
               share / "lab/schemas/@jupyterlab/translation-extension/plugin.json"}
    for plugin, values in lab_settings.OVERRIDES.items():
        props = json.loads(schemas[plugin].read_text(encoding="utf-8"))["properties"]
        assert set(values) <= set(props), plugin
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text(encoding="utf-8")
    assert "hsutils.running.lab_settings" in makefile

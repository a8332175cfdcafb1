"""The chart API follows the seaborn convention (issue 14.6, docs/design.md §9): data first, options
keyword-only, `ax=` to draw into an existing Axes, no global side effects on import, and the
confidence level printed is the one used."""
from __future__ import annotations

import inspect
import json
import subprocess
import sys

import matplotlib
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from test_plots import (FOOT, area_table, ckd_counts, flow_steps, heat_frame, membership_frame, muni_values,
                        pyramid_frame, spine_table, stacked_frame, tiles, trend_frame)

from hsutils.publish import plots

CHARTS = ["choropleth", "funnel_plot", "ranked_bar", "trend_chart", "ckd_heatmap", "population_pyramid",
          "pyramid_small_multiples", "stacked_bars", "amount_bars", "concentration_curve", "target_gap_bars", "flow_chart",
          "spine_chart", "heat_table", "upset_chart", "reference_comparison_chart", "smoothed_ratio_chart"]
MULTI_PANEL = {"pyramid_small_multiples", "spine_chart", "upset_chart"}
DATA_ARGS = {"choropleth": ["values", "boundaries"]}


def test_every_public_chart_function_is_listed():
    public = {n for n in plots.__all__ if inspect.isfunction(getattr(plots, n))
              and "ax" in inspect.signature(getattr(plots, n)).parameters}
    assert public == set(CHARTS)


@pytest.mark.parametrize("name", CHARTS)
def test_signature_data_first_keyword_only_with_ax(name):
    params = list(inspect.signature(getattr(plots, name)).parameters.values())
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional == DATA_ARGS.get(name, [positional[0]])
    assert len(positional) == len(DATA_ARGS.get(name, [0]))
    assert all(p.kind == p.KEYWORD_ONLY for p in params[len(positional):])
    ax = inspect.signature(getattr(plots, name)).parameters["ax"]
    assert ax.kind == ax.KEYWORD_ONLY and ax.default is None


def _tile_values():
    t = tiles()
    return pd.DataFrame({"code": t["code"], "rate": np.linspace(30, 45, len(t))})


def _draw(name, ax=None):
    at = area_table()
    calls = {
        "choropleth": lambda: plots.choropleth(_tile_values(), value_col="rate", title="受診率", footer=FOOT,
                                               tiles=tiles(), ax=ax),
        "funnel_plot": lambda: plots.funnel_plot(at, value_col="value", denom_col="n", target=0.36, title="受診率",
                                                 footer=FOOT, count_col="x", ax=ax),
        "ranked_bar": lambda: plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper",
                                               benchmark=0.36, title="受診率", footer=FOOT, ax=ax),
        "trend_chart": lambda: plots.trend_chart(trend_frame(), series_col="sex", title="推移", footer=FOOT,
                                                 count_col="count", ax=ax),
        "ckd_heatmap": lambda: plots.ckd_heatmap(ckd_counts(), title="CKD", footer=FOOT, ax=ax),
        "population_pyramid": lambda: plots.population_pyramid(pyramid_frame(), title="人口", footer=FOOT, ax=ax),
        "pyramid_small_multiples": lambda: plots.pyramid_small_multiples(
            pd.concat([pyramid_frame("A地区"), pyramid_frame("B地区", 0.4)]), facet_col="district", title="人口",
            footer=FOOT, ncols=2, ax=ax),
        "stacked_bars": lambda: plots.stacked_bars(stacked_frame(), area_col="area", category_col="level",
                                                   count_col="count", title="内訳", footer=FOOT, ax=ax),
        "amount_bars": lambda: plots.amount_bars(
            pd.DataFrame({"area": ["A市", "A市", "B町", "B町"], "setting": ["入院", "入院外"] * 2,
                          "yen": [50000.0, 80000, np.nan, 70000], "n": [120, 120, 40, 40]}),
            label_col="area", value_col="yen", category_col="setting", count_col="n", title="医療費", footer=FOOT,
            ax=ax),
        "concentration_curve": lambda: plots.concentration_curve(
            pd.DataFrame({"series": "A市", "person_share": np.linspace(0.01, 1, 50),
                          "cost_share": np.linspace(0.01, 1, 50) ** 0.4}), title="集中", footer=FOOT, ax=ax),
        "target_gap_bars": lambda: plots.target_gap_bars(
            pd.DataFrame({"area": ["A市", "B町"], "rate": [38.0, 45.0], "plus": [5.0, 3.0], "x": [380, 45],
                          "n": [1000, 100]}),
            label_col="area", base_col="rate", added_cols={"受診勧奨": "plus"}, target=60.0, title="目標との差",
            footer=FOOT, count_col="x", denom_col="n", ax=ax),
        "flow_chart": lambda: plots.flow_chart(flow_steps(), title="フロー", footer=FOOT, ax=ax),
        "spine_chart": lambda: plots.spine_chart(spine_table(), title="プロファイル", footer=FOOT, fmt_col="fmt", ax=ax),
        "heat_table": lambda: plots.heat_table(heat_frame(), row_col="district", col_col="group", value_col="rate",
                                               title="受診率", footer=FOOT, count_col="x", ax=ax),
        "upset_chart": lambda: plots.upset_chart(membership_frame(), title="重なり", footer=FOOT, ax=ax),
        "reference_comparison_chart": lambda: plots.reference_comparison_chart(
            pd.DataFrame({"indicator_name": ["HbA1c 6.5%以上"] * 3, "reference_label": ["石川県", "同規模", "全国"],
                          "reference_kind": ["県", "同規模", "国"], "sr": [1.1, np.nan, 0.9],
                          "sr_lower": [0.9, np.nan, 0.7], "sr_upper": [1.3, np.nan, 1.1],
                          "comparison": ["有意差なし", "比較なし（同規模の市町村が少ないため）", "有意差なし"],
                          "numerator": [120, np.nan, 120]}), title="県・同規模・国", footer=FOOT, ax=ax),
        "smoothed_ratio_chart": lambda: plots.smoothed_ratio_chart(
            pd.DataFrame({"area_name": ["A市", "B町", "C村"], "sr": [1.2, 0.5, 2.0], "sr_eb": [1.15, 0.8, 1.1],
                          "sr_eb_lower": [1.0, 0.6, 0.8], "sr_eb_upper": [1.3, 1.0, 1.4], "numerator": [300, 20, 12]}),
            title="経験ベイズ", footer=FOOT, ax=ax),
    }
    return calls[name]()


@pytest.mark.parametrize("name", CHARTS)
def test_chart_draws_into_given_axes(name, tmp_path):
    fig = Figure(figsize=(16, 6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.plot([0, 1], [0, 1])
    result = _draw(name, ax=right)
    if name in MULTI_PANEL:  # drawn into a SubFigure in the place of `right`
        assert result.get_figure(root=True) is fig and result is not fig
        assert right not in fig.axes and left in fig.axes
    else:
        assert result is right
    assert left.lines  # the other panel is untouched
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    assert any(FOOT.split(" ｜ ")[0] in t for t in texts)  # footer present
    fig.savefig(tmp_path / f"{name}.png", dpi=40)


@pytest.mark.parametrize("name", CHARTS)
def test_chart_without_axes_makes_its_own_figure(name):
    result = _draw(name)
    if name in MULTI_PANEL:
        assert isinstance(result, Figure)
    else:
        assert isinstance(result, Axes) and isinstance(result.figure, Figure)


def test_import_and_charts_leave_rcparams_unchanged():
    code = ("import json, matplotlib; before = {k: repr(v) for k, v in matplotlib.rcParams.items()}; "
            "import hsutils.publish.plots; after = {k: repr(v) for k, v in matplotlib.rcParams.items()}; "
            "print(json.dumps([k for k in before if before[k] != after[k]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    before = dict(matplotlib.rcParams)
    _draw("ranked_bar")
    assert dict(matplotlib.rcParams) == before


def _ci_texts(ax) -> list[str]:
    fig = ax.figure
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if "信頼区間" in t.get_text()]


@pytest.mark.parametrize("conf, label", [(0.95, "95%信頼区間"), (0.9, "90%信頼区間"), (0.998, "99.8%信頼区間")])
def test_printed_confidence_level_follows_the_argument(conf, label):
    at = area_table()
    ax = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36,
                          title="受診率", footer=FOOT, conf=conf)
    assert ax.get_legend_handles_labels()[1].count(label) == 1
    ax = plots.trend_chart(trend_frame(), series_col="sex", title="推移", footer=FOOT, conf=conf)
    assert any(f"帯（縦線）は{label}" in t for t in _ci_texts(ax))
    others = {"95%信頼区間", "90%信頼区間", "99.8%信頼区間"} - {label}
    assert not any(o in t for t in _ci_texts(ax) for o in others)


def test_confidence_level_taken_from_the_data_conf_column():
    at = area_table().assign(conf=0.9)
    ax = plots.ranked_bar(at, value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36,
                          title="受診率", footer=FOOT)
    assert "90%信頼区間" in ax.get_legend_handles_labels()[1]
    assert plots.conf_label(0.95) == "95%信頼区間"
    with pytest.raises(Exception, match="複数の信頼水準"):
        plots.ranked_bar(at.assign(conf=[0.9, 0.95] * (len(at) // 2) + [0.9] * (len(at) % 2)),
                         value_col="value", lower_col="lower", upper_col="upper", benchmark=0.36,
                         title="受診率", footer=FOOT)

"""Tests of the chart gallery (hsutils.running.gallery; `hsutils gallery`, GitHub issue 4 item 4).

The gallery is built once from the test-session demo data with warnings turned into errors, so a
missing Japanese glyph ("Glyph … missing from font") or any other warning of the real library
fails. Figures are recorded on their way to `report.save_figure` so their artists can be checked
for footers and small counts (docs/rules.md §9).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from hsutils.inputs import regions
from hsutils.analysis import pipeline
from hsutils.publish import privacy, report
from hsutils.running import gallery

pytestmark = pytest.mark.filterwarnings("error")

#: Every chart type of hsutils.publish.plots, by its file name in the gallery.
EXPECTED = [
    "choropleth_muni", "choropleth_medical_area", "tile_map", "funnel_plot", "ranked_bar", "trend_chart",
    "ckd_heatmap", "population_pyramid", "pyramid_small_multiples", "stacked_bars", "flow_chart",
    "spine_chart", "heat_table", "upset_chart", "reference_comparison_chart", "smoothed_ratio_chart",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_data_dir):
    """(out folder, index.html path, {name: Figure}) of one gallery run."""
    out = tmp_path_factory.mktemp("gallery")
    figures = {}
    original = report.save_figure

    def recording(fig, out_dir, name, **kwargs):
        figures[name] = fig
        return original(fig, out_dir, name, **kwargs)

    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("error")  # fixtures run outside the filterwarnings mark
        mp.setattr(report, "save_figure", recording)
        # the session cache of the same demo data is reused (prepare_cache checks its hash)
        index = gallery.build_gallery(out, data_dir=demo_data_dir, dpi=100,
                                      cache_dir=Path(os.environ["HSUTILS_CACHE_DIR"]))
    return out, Path(index), figures


def expected_names() -> list[str]:
    return EXPECTED


def texts_of(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible())]


def footer_of(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts if t.get_gid() == "footer")


# ---------------------------------------------------------------------------------------------
# Files and page
# ---------------------------------------------------------------------------------------------
def test_every_chart_type_has_a_non_blank_png_and_a_pdf(built):
    out, _, figures = built
    for name in expected_names():
        png, pdf = out / "figures" / f"{name}.png", out / "figures" / f"{name}.pdf"
        assert png.exists() and pdf.exists(), name
        image = mpimg.imread(png)[..., :3]
        assert image.std() > 0.05, name  # not blank: a white page has std 0
        assert pdf.read_bytes()[:5] == b"%PDF-", name
    assert sorted(figures) == sorted(expected_names())


def test_index_html_links_every_png_and_pdf_with_title_and_description(built):
    out, index, figures = built
    assert index == out / "index.html"
    page = index.read_text(encoding="utf-8")
    assert '<html lang="ja">' in page
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(pngs) == len(expected_names())
    for png in pngs:
        assert f'src="figures/{png}"' in page, png
        assert f'href="figures/{png[:-4]}.pdf"' in page, png
    for name in EXPECTED:
        title = next(t.get_text() for t in figures[name].texts if t.get_gid() == "title")
        assert title.replace("\n", "") in page.replace("\n", ""), name
    for kind in ("funnel_plot", "ranked_bar", "upset_chart", "tile_map"):
        assert gallery.CHART_DESCRIPTIONS[kind] in page
    assert not list(out.glob("**/*.tmp"))  # written atomically


def test_no_person_level_files_left_in_the_output(built):
    out, _, _ = built
    names = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert names == {".png", ".pdf", ".html"}


# ---------------------------------------------------------------------------------------------
# Footer and privacy (docs/design.md §6, §10; docs/rules.md §9)
# ---------------------------------------------------------------------------------------------
def test_every_chart_has_title_and_footer(built):
    _, _, figures = built
    for name, fig in figures.items():
        foot = footer_of(fig)
        assert "出典: 入力データ" in foot and "令和6年度（2024）" in foot, name
        assert "対象: " in foot, name
        assert any(t.get_gid() == "title" for t in fig.texts), name


#: Who each chart counts, in the words of docs/rules.md §16 (written out: the test does not ask the
#: code under test). 受診者 shares on the 法定報告 受診者, 実施率 on the 対象者.
_TARGET, _EXAMINEES = "国保 特定健診対象者（法定報告対象）", "国保 特定健診受診者（法定報告対象）"
_GUIDANCE = f"{_EXAMINEES}のうち特定保健指導の対象者"
EXPECTED_POPULATIONS = {
    "choropleth_muni": _TARGET, "tile_map": _TARGET, "funnel_plot": _TARGET, "ranked_bar": _TARGET,
    "trend_chart": _TARGET, "choropleth_medical_area": _EXAMINEES,
    "ckd_heatmap": "国保 健診受診者（全員）（eGFR・尿蛋白とも測定）",
    "population_pyramid": "国保・後期の被保険者（全員）",
    "pyramid_small_multiples": "金沢市 国保・後期の被保険者（全員）",
    "stacked_bars": f"{_EXAMINEES}のうち階層化できた人",
    "flow_chart": "国保 被保険者（全員）",
    # the profile leaves out an indicator whose every value is hidden (保健指導実施率 on the small demo)
    "spine_chart": (f"指標により {_TARGET}、{_GUIDANCE}、{_EXAMINEES}", f"指標により {_TARGET}、{_EXAMINEES}"),
    "heat_table": f"指標により {_TARGET}、{_GUIDANCE}、{_EXAMINEES}",
    "upset_chart": "後期高齢者 75歳以上",
    "reference_comparison_chart": f"指標により {_TARGET}、{_EXAMINEES}",
    "smoothed_ratio_chart": _EXAMINEES,
}


def test_every_chart_states_its_population_in_the_words_of_rules_16(built):
    _, _, figures = built
    assert sorted(EXPECTED_POPULATIONS) == sorted(expected_names())
    for name, fig in figures.items():
        foot = "".join(t.get_text().replace("\n", "") for t in fig.texts if t.get_gid() == "footer")
        found = re.search(r"対象: (.*?)(?: ｜ |条件: |※|$)", foot)
        allowed = EXPECTED_POPULATIONS[name]
        assert found and found.group(1) in ((allowed,) if isinstance(allowed, str) else allowed), (name, foot)


def test_maps_are_real_choropleths_of_the_shipped_boundaries_with_credit(built):
    _, _, figures = built
    for name, n_areas in (("choropleth_muni", 19), ("choropleth_medical_area", 4)):
        foot = footer_of(figures[name])
        assert regions.N03_CREDIT in foot, name
        assert "タイル" not in foot and regions.FALLBACK_NOTE not in foot, name
        areas = [c for c in figures[name].axes[0].collections if c.get_gid() == "map_areas"]
        assert len(areas) == 1 and len(areas[0].get_paths()) == n_areas, name
    tile_foot = footer_of(figures["tile_map"])
    assert gallery.TILE_EXAMPLE_NOTE in tile_foot
    assert regions.N03_CREDIT not in tile_foot  # no boundary data drawn: no 国土数値情報 credit
    assert len([p for p in figures["tile_map"].axes[0].patches if isinstance(p, Rectangle)]) == 19


def _is_small(values) -> np.ndarray:
    v = np.abs(np.asarray(values, dtype=float))
    return (v >= 1) & (v <= 9)


def test_no_count_of_one_to_nine_is_drawn_or_printed(built):
    _, _, figures = built
    for name, fig in figures.items():
        for text in texts_of(fig):  # "3人", "n=7" and a count alone in a cell or bar label
            assert not re.search(r"(?<![\d.,])[1-9]人", text), (name, text)
            assert not re.search(r"n=[1-9](?![\d,])", text), (name, text)
    count_texts = [t.get_text() for name in ("ckd_heatmap", "upset_chart", "population_pyramid")
                   for ax in figures[name].axes for t in ax.texts]
    assert not [t for t in count_texts if re.fullmatch(r"[1-9]", t)]
    upset = figures["upset_chart"]
    assert not _is_small([p.get_height() for p in upset.axes[0].patches]).any()
    assert not _is_small([p.get_width() for p in upset.axes[2].patches]).any()
    for name in ("population_pyramid", "pyramid_small_multiples"):
        widths = [p.get_width() for ax in figures[name].axes for p in ax.patches
                  if p.get_gid() in ("pyramid_male", "pyramid_female")]
        assert widths and not _is_small(widths).any(), name


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def test_find_boundary_file(tmp_path):
    assert regions.find_boundary_file(None) is None
    (tmp_path / "kenshin.csv").write_text("x", encoding="utf-8")
    assert regions.find_boundary_file(tmp_path) is None
    sub = tmp_path / "boundaries"
    sub.mkdir()
    (sub / "N03_17.zip").write_bytes(b"")
    assert regions.find_boundary_file(tmp_path) == sub / "N03_17.zip"
    (tmp_path / "b.topojson").write_text("{}", encoding="utf-8")
    (tmp_path / "a.GeoJSON").write_text("{}", encoding="utf-8")
    assert regions.find_boundary_file(tmp_path) == tmp_path / "a.GeoJSON"  # folder first, by name


def test_shown_count_hides_values_from_small_numerator_or_denominator():
    table = pd.DataFrame({"numerator": [5, 12, 0, 30], "suppressed": [True, False, False, True]})
    shown = gallery._shown_count(table)
    assert shown.isna().tolist() == [True, False, False, True]
    assert shown.iloc[1] == 12.0 and shown.iloc[2] == 0.0


def test_medical_area_tiles_of_ishikawa(prepared: pipeline.Prepared):
    tiles = gallery._medical_area_tiles(prepared.municipalities)
    assert tiles["code"].tolist() == ["1701", "1702", "1703", "1704"]
    assert tiles["name"].tolist() == ["南加賀", "石川中央", "能登中部", "能登北部"]
    assert len(set(zip(tiles["col"], tiles["row"]))) == 4  # one cell each
    row = tiles.set_index("name")["row"]
    assert row["能登北部"] < row["能登中部"] < row["石川中央"] <= row["南加賀"]  # north on top

"""Notebook 01 県全体の概況 (hsutils.patterns.overview): the indicator table against an independent
recomputation from the person-level demo data, the 悪化かつ有意に悪い logic and the support
priority score on hand-made examples, privacy of the committee tables, and the map paths."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from hsutils.inputs import regions
from hsutils.publish import privacy
from hsutils.patterns import overview
from hsutils.running import notebook
from hsutils.core.errors import ParameterError

REFDATA = Path(__file__).resolve().parent / "data" / "refdata"  # copied reference data, see PROVENANCE.md there
N03_GEOJSON = REFDATA / "ishikawa_municipalities_N03-21_17_210101_s0010.geojson"

# 平成27年モデル人口 (docs/rules.md §8), 40–74 in 5-year bands, written out here on purpose
H27_40_74 = {40: 7_766_000, 45: 8_108_000, 50: 8_451_000, 55: 8_793_000, 60: 9_135_000,
             65: 9_246_000, 70: 7_892_000}
Z95 = 1.959963984540054


@pytest.fixture(scope="module")
def table(prepared):
    t, _ = overview.municipal_indicator_table(prepared, prepared.fiscal_years)
    return t


@pytest.fixture()
def ctx(tmp_path):
    return notebook.start(overview.NOTEBOOK, "17", None, out_dir=tmp_path)


# ------------------------------------------------------------------ independent recomputation
def _plain_rates(py: pd.DataFrame, muni: str, fy: int, indicator: str):
    """Crude rate, Wilson limits, direct age-adjusted rate (H27) and the event count, with plain
    pandas on the person-level rows (docs/rules.md §7.1, §2, §8)."""
    d = py[(py["muni_code"] == muni) & (py["fy"] == fy)]
    target = ((d["insurance"] == "国保") & d["age"].between(40, 74) & d["full_year"].astype(bool)
              & ~d["excluded_statutory"].astype(bool))
    if indicator == "kenshin_rate":
        den = target
        num = target & d["has_kenshin"].astype(bool)
    else:  # metabo: 該当 among participants with a 判定
        den = target & d["has_kenshin"].astype(bool) & d["metabo"].notna()
        num = den & (d["metabo"] == "該当")
    x, n = int(num.sum()), int(den.sum())
    p = x / n
    half = Z95 * np.sqrt(Z95 ** 2 + 4 * x * (1 - p))
    lower, upper = (2 * x + Z95 ** 2 - half) / (2 * (n + Z95 ** 2)), (2 * x + Z95 ** 2 + half) / (2 * (n + Z95 ** 2))
    band = (d["age"] // 5) * 5
    by = pd.DataFrame({"band": band[den], "num": num[den].astype(int)}).groupby("band")["num"].agg(["sum", "count"])
    w = pd.Series(H27_40_74).reindex(by.index)
    adj = float((w * by["sum"] / by["count"]).sum() / w.sum())
    return x, n, 100 * p, 100 * lower, 100 * upper, 100 * adj, len(by)


@pytest.mark.parametrize("indicator", ["kenshin_rate", "metabo"])
@pytest.mark.parametrize("muni", ["17201", "17203"])
def test_table_matches_plain_pandas_recomputation(prepared, table, muni, indicator):
    compared_adjusted = 0
    for fy in prepared.fiscal_years:
        x, n, crude, lo, up, adj, n_bands = _plain_rates(prepared.person_year, muni, fy, indicator)
        row = table[(table["muni_code"] == muni) & (table["fy"] == fy) & (table["indicator_id"] == indicator)]
        assert len(row) == 1
        row = row.iloc[0]
        assert (row["numerator"], row["denominator"]) == (x, n)
        assert row["crude_rate"] == pytest.approx(crude, abs=1e-9)
        assert row["crude_lower"] == pytest.approx(lo, abs=1e-9)
        assert row["crude_upper"] == pytest.approx(up, abs=1e-9)
        if x >= 10:  # Dobson DSR is given only from 10 events (docs/methods.md §5)
            assert row["adj_rate"] == pytest.approx(adj, abs=1e-9)
            compared_adjusted += 1
        else:
            assert np.isnan(row["adj_rate"])
    if muni == "17201":  # 金沢市 is large enough for an age-adjusted rate every year
        assert compared_adjusted == len(prepared.fiscal_years)


def test_table_has_the_issue_columns_and_labels(table):
    for col in ["muni_code", "muni_name", "medical_area", "fy", "indicator_id", "indicator_name", "numerator",
                "denominator", "crude_rate", "crude_lower", "crude_upper", "adj_rate", "adj_lower", "adj_upper",
                "sr", "sr_lower", "sr_upper", "comparison", "suppressed"]:
        assert col in table.columns
    # every row is compared or says why not (docs/rules.md §15.6, §15.7); never an empty cell
    assert table["comparison"].notna().all()
    assert set(table["comparison"]) <= {"有意に高い", "有意差なし", "有意に低い", "比較なし（県の人数が10人未満のため）",
                                        "比較なし（基準の率が0で期待数が0のため）"}
    small = table["comparison"] == "比較なし（県の人数が10人未満のため）"
    pooled = table.groupby(["indicator_id", "fy"])[["numerator", "denominator"]].transform("sum")  # 県 = all towns
    assert (small == (((pooled > 0) & (pooled < 10)).any(axis=1))).all()
    assert table.loc[small, ["expected", "sr", "ref_rate"]].isna().all().all()
    assert table["muni_code"].nunique() == 19


def test_medical_area_reference_compares_within_each_area(prepared):
    t, note = overview.municipal_indicator_table(prepared, [prepared.fiscal_years[-1]], ["kenshin_rate"],
                                                 reference_area="medical_area")
    assert "二次医療圏" in note
    # 能登北部 (17204, 17205, 17461, 17463): reference rate = the area's own pooled rate
    north = t[t["muni_code"].isin(["17204", "17205", "17461", "17463"])]
    pooled = north["numerator"].sum() / north["denominator"].sum() * 100
    assert north["ref_rate"].to_numpy() == pytest.approx(np.full(4, pooled))
    t2, note2 = overview.municipal_indicator_table(prepared, [prepared.fiscal_years[-1]], ["kenshin_rate", "hba1c65"],
                                                   reference_area="national")
    assert "NDB" in note2 and "全保険者" in note2  # hsutils.analysis.areas.resolve_reference: 全国 is NDB, not the prefecture
    kenshin = t2[t2["indicator_id"] == "kenshin_rate"]
    assert (kenshin["comparison"] == "比較なし（全国の値は NDB の健診項目だけのため）").all()
    assert kenshin[["expected", "sr", "ref_rate"]].isna().all().all()  # no figure: not an expected count of 0
    assert t2.loc[t2["indicator_id"] == "hba1c65", "sr"].notna().any()



def test_ranking_chart_says_which_towns_are_not_compared(ctx):
    """A town drawn as "‐" because it is 比較なし (not a small count) is named with the reason under the
    ranking chart (docs/rules.md §15.7); a town hidden for a small count is left to the suppression note."""
    from hsutils.publish import plots

    why = "比較なし（同規模の人数が10人未満のため）"
    t = pd.DataFrame({"muni_code": ["17201", "17202", "17203"], "muni_name": ["金沢市", "七尾市", "小松市"],
                      "indicator_id": "kenshin_rate", "fy": 2024, "numerator": [40, 30, 5],
                      "denominator": [100, 100, 20], "sr": [1.2, np.nan, np.nan], "sr_lower": [1.0, np.nan, np.nan],
                      "sr_upper": [1.4, np.nan, np.nan], "comparison": ["有意に高い", why, why]})
    notes = overview.no_comparison_notes(overview._hide_small_rows(t, 10))
    assert notes == [f"「‐」は{why}: 七尾市"]  # 小松市 (5 of 20) is hidden anyway
    fig = overview.ranking_chart(ctx, t, "kenshin_rate", 2024, "同規模")
    texts = [x.get_text() for x in fig.texts]
    assert any(f"「‐」は{why}: 七尾市" in x for x in texts)
    assert any(plots.suppression_note(10) in x for x in texts)
    t_all = t.assign(numerator=[40, 30, 0], comparison=why)
    assert overview.no_comparison_notes(overview._hide_small_rows(t_all, 10)) == [f"「‐」は{why}: すべての市町村"]

# ------------------------------------------------------------------ 悪化かつ有意に悪い
def _hand_table() -> pd.DataFrame:
    rows = []

    def add(muni, ind, name, pol, x1, n1, x2, n2, judgement, sr):
        for fy, x, n, j in ((2022, x1, n1, "差なし"), (2024, x2, n2, judgement)):
            rows.append(dict(muni_code=muni, muni_name=f"町{muni}", medical_area="圏", fy=fy, indicator_id=ind,
                             indicator_name=name, polarity=pol, numerator=x, denominator=n,
                             crude_rate=100 * x / n, adj_rate=np.nan, expected=np.nan, sr=sr,
                             sr_lower=np.nan, sr_upper=np.nan, judgement=j))

    add("A", "kenshin_rate", "特定健診実施率", "higher_better", 50, 100, 30, 100, "悪い", 0.7)  # worse + worsening
    add("B", "kenshin_rate", "特定健診実施率", "higher_better", 32, 100, 30, 100, "悪い", 0.8)  # change within noise
    add("C", "metabo", "メタボ", "lower_better", 10, 100, 25, 100, "差なし", 1.2)  # worsening, not worse
    add("D", "metabo", "メタボ", "lower_better", 10, 100, 25, 100, "悪い", 1.5)  # worse + worsening
    add("E", "med_bp", "服薬（血圧）", None, 10, 100, 25, 100, "高い", 1.5)  # no polarity: never "worse"
    add("F", "kenshin_rate", "特定健診実施率", "higher_better", 30, 100, 50, 100, "悪い", 0.9)  # improving
    return pd.DataFrame(rows)


def test_worse_and_worsening_hand_example():
    w = overview.worse_and_worsening(_hand_table())
    # sorted by |sr − 1|: D (0.5) before A (0.3)
    assert w["muni_code"].tolist() == ["D", "A"]
    a = w.set_index("muni_code").loc["A"]
    # Newcombe hybrid score interval of 30/100 − 50/100, worked by hand: −20.0 (−32.58, −6.42)
    assert a["diff_points"] == pytest.approx(-20.0)
    assert a["diff_lower"] == pytest.approx(-32.5768, abs=1e-3)
    assert a["diff_upper"] == pytest.approx(-6.4223, abs=1e-3)
    assert a["change"] == "悪化"
    d = w.set_index("muni_code").loc["D"]
    # 25/100 − 10/100 = +15.0 (4.47, 25.33): entirely above 0, bad for a lower-is-better indicator
    assert (d["diff_points"], d["rate_first"], d["rate_last"]) == pytest.approx((15.0, 10.0, 25.0))
    assert d["diff_lower"] == pytest.approx(4.4702, abs=1e-3)
    assert (d["fy_first"], d["fy_last"]) == (2022, 2024)


def test_worse_list_never_lists_or_orders_by_a_hidden_value(ctx):
    """Issue 25 §6: a pair decided by a count 1–9 would come first by its 標準化比 (|3.0 − 1| = 2.0);
    it is left out of the committee list, the rest keep the order of their shown 標準化比."""
    t = _hand_table()
    rows = []
    for fy, x, j in ((2022, 1, "差なし"), (2024, 30, "悪い")):  # 1/100 → 30/100: worsening, first count hidden
        rows.append(dict(muni_code="G", muni_name="町G", medical_area="圏", fy=fy, indicator_id="metabo",
                         indicator_name="メタボ", polarity="lower_better", numerator=x, denominator=100,
                         crude_rate=float(x), adj_rate=np.nan, expected=np.nan, sr=3.0, sr_lower=np.nan,
                         sr_upper=np.nan, judgement=j))
    t = pd.concat([t, pd.DataFrame(rows)], ignore_index=True)
    worse = overview.worse_and_worsening(t)
    assert worse["muni_code"].tolist() == ["G", "D", "A"]  # the raw list (never shown) has G first
    assert overview.worse_hidden(worse, 10).tolist() == [True, False, False]
    assert overview.worse_hidden(worse, 1).tolist() == [False, False, False]  # threshold 1 hides nothing
    shown = overview.save_worse_and_worsening(ctx, worse)
    assert shown["muni_code"].tolist() == ["D", "A"]
    assert shown["sr"].tolist() == [1.5, 0.7]  # shown values, in the order they are listed
    assert (shown != privacy.SUPPRESSION_MARK).all().all()  # no row of 「‐」
    saved = pd.read_csv(ctx.out_dir / "tables" / "worse_and_worsening.csv", encoding="utf-8-sig", dtype=str)
    assert saved["muni_code"].tolist() == ["D", "A"]
    # the note is the same whatever the data (a count of the pairs left out would tell something)
    assert overview.worse_hidden_note(10) == ("※ 人数が1〜9人の値から判定される組み合わせは、秘匿のため"
                                              "この一覧に載せていません（載せている順は標準化比の1からの離れの大きい順）。")


def test_worse_and_worsening_single_year_is_empty():
    t = _hand_table()
    assert overview.worse_and_worsening(t[t["fy"] == 2024]).empty


# ------------------------------------------------------------------ support priority
def _priority_table() -> pd.DataFrame:
    def r(muni, ind, name, x, n, e, sr, j):
        return dict(muni_code=muni, muni_name=name, medical_area="圏", fy=2024, indicator_id=ind,
                    indicator_name={"kenshin_rate": "特定健診実施率", "metabo": "メタボ該当",
                                    "hokenshido_rate": "特定保健指導実施率", "hba1c8": "HbA1c 8.0%以上"}[ind],
                    numerator=x, denominator=n, expected=e, sr=sr, judgement=j)

    return pd.DataFrame([
        r("X", "kenshin_rate", "X町", 30, 100, 40.0, 0.75, "悪い"),
        r("X", "metabo", "X町", 30, 100, 20.0, 1.5, "悪い"),
        r("X", "hokenshido_rate", "X町", 10, 50, 12.0, 10 / 12, "差なし"),
        r("Y", "kenshin_rate", "Y町", 45, 100, 40.0, 1.125, "良い"),
        r("Y", "metabo", "Y町", 5, 100, 20.0, 0.25, "悪い"),  # 5 events: suppressed, must not count
        r("Y", "hokenshido_rate", "Y町", 20, 50, 12.0, 20 / 12, "良い"),
        r("Z", "hba1c8", "Z町", 12, 200, 4.0, 3.0, "悪い"),
        r("Z", "kenshin_rate", "Z町", 40, 100, 40.0, 1.0, "差なし"),
    ])


def test_support_priority_hand_example():
    p = overview.support_priority(_priority_table(), 2024, overview.DEFAULT_WEIGHTS,
                                  key_indicators=["kenshin_rate", "hokenshido_rate", "metabo", "hba1c8"])
    s = p.set_index("muni_code")
    # X: 2 worse; gap 25 + 50 = 75 %; excess 10 + 10 = 20; participation (40−30)/100 + (12−10)/50 = 10 + 4 points
    #    1×2 + 0.02×75 + 0.01×20 + 0.1×14 = 5.1
    assert (s.loc["X", "n_worse"], s.loc["X", "gap_percent"], s.loc["X", "excess_cases"],
            s.loc["X", "participation_gap_points"]) == (2, 75.0, 20.0, 14.0)
    assert s.loc["X", "score"] == pytest.approx(5.1)
    # Z: 1 worse; gap 200 %; excess 8; no shortfall: 1 + 4 + 0.08 = 5.08
    assert s.loc["Z", "score"] == pytest.approx(5.08)
    # Y: the small count (5) is left out; participation above expected counts 0
    assert s.loc["Y", "score"] == 0.0 and s.loc["Y", "n_worse"] == 0
    assert p["muni_code"].tolist() == ["X", "Z", "Y"] and p["rank"].tolist() == [1, 2, 3]
    assert "特定健診実施率（標準化比 0.75）" in s.loc["X", "reasons"]
    assert "14.0ポイント" in s.loc["X", "reasons"]
    assert s.loc["Y", "reasons"] == "有意に悪い重点指標なし"


def test_support_priority_weights_are_parameters():
    t = _priority_table()
    only_count = overview.support_priority(t, 2024, {"n_worse": 1.0},
                                           key_indicators=["kenshin_rate", "metabo", "hba1c8"])
    assert only_count.set_index("muni_code")["score"].to_dict() == {"X": 2.0, "Z": 1.0, "Y": 0.0}
    ties = overview.support_priority(t, 2024, {"n_worse": 0.0}, key_indicators=["metabo"])
    assert ties["rank"].tolist() == [1, 1, 1]  # equal scores share the rank
    with pytest.raises(ParameterError):
        overview.support_priority(t, 2024, {"unknown_weight": 1.0})


# ------------------------------------------------------------------ privacy
def test_committee_tables_hold_no_small_counts_and_no_person_ids(prepared, ctx, table):
    shown = overview.save_indicator_table(ctx, table)
    small = privacy.is_small(table["numerator"], 10) | privacy.is_small(table["denominator"], 10)
    assert small.any()  # the demo has small cells, so the check below is not vacuous
    assert (shown.loc[small.to_numpy(), "crude_rate"] == privacy.SUPPRESSION_MARK).all()
    assert (shown.loc[small.to_numpy(), "judgement"] == privacy.SUPPRESSION_MARK).all()
    worse = overview.save_worse_and_worsening(ctx, overview.worse_and_worsening(table))
    priority = overview.save_support_priority(
        ctx, overview.support_priority(table, prepared.fiscal_years[-1], overview.DEFAULT_WEIGHTS))
    persons = overview.persons_by_year(prepared)
    ctx.save_table(persons, "persons_by_year", count_cols=list(persons.columns[1:]))
    ctx.save_table(overview.exclusions_summary(prepared), "exclusions_summary", count_cols=["件数"])
    privacy.assert_no_small_counts(shown, overview.INDICATOR_COUNT_COLUMNS)
    privacy.assert_no_small_counts(worse, overview.WORSE_COUNT_COLUMNS)
    privacy.assert_no_small_counts(ctx.tables["persons_by_year"], list(persons.columns[1:]))
    privacy.assert_no_small_counts(ctx.tables["exclusions_summary"], ["件数"])
    assert set(priority.columns) >= {"muni_code", "muni_name", "rank", "score", "reasons"}
    ids = prepared.person_year["person_id"].unique()
    for name, df in ctx.tables.items():
        privacy.assert_no_person_ids(df, ids)
        assert "person_id" not in df.columns
    csvs = list((ctx.out_dir / "tables").glob("*.csv"))
    assert {p.stem for p in csvs} >= {"indicators_by_municipality", "worse_and_worsening", "support_priority"}
    privacy.assert_no_person_ids([p.read_text(encoding="utf-8-sig") for p in csvs], ids)
    assert ctx.finish().exists()


# ------------------------------------------------------------------ maps
def map_area_count(fig) -> int:
    """Areas drawn from boundaries: the paths of the map's one area collection (plots._draw_polygons)."""
    return sum(len(c.get_paths()) for c in fig.axes[0].collections if c.get_gid() == "map_areas")


def test_choropleth_with_real_n03_boundaries(prepared, ctx, table):
    layers = overview.boundary_layers(prepared.municipalities, N03_GEOJSON)
    assert layers["muni"] is not None and len(layers["muni"]) == 19
    assert len(layers["medical_area"]) == 4
    fig = overview.map_municipalities(ctx, table, layers, "kenshin_rate", prepared.fiscal_years[-1])
    assert map_area_count(fig) == 19
    footer = [t.get_text() for t in fig.texts if t.get_gid() == "footer"][0]
    assert regions.N03_CREDIT in footer
    area_table = overview.area_trend_table(prepared, prepared.fiscal_years, ["kenshin_rate"])
    fig2 = overview.map_medical_areas(ctx, area_table, prepared.municipalities, layers, "kenshin_rate",
                                      prepared.fiscal_years[-1])
    assert map_area_count(fig2) == 4


def test_default_maps_use_the_shipped_nationwide_boundaries(prepared, ctx, table, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    layers = overview.boundary_layers(prepared.municipalities, None, empty)
    assert layers["source"] == regions.DEFAULT_BOUNDARY_FILE and layers["note"] == ""
    assert layers["muni"]["code"].tolist() == sorted(prepared.municipalities["muni_code"])
    assert layers["medical_area"]["code"].tolist() == ["1701", "1702", "1703", "1704"]
    fig = overview.map_municipalities(ctx, table, layers, "metabo", prepared.fiscal_years[-1])
    assert map_area_count(fig) == 19
    footer = [t.get_text() for t in fig.texts if t.get_gid() == "footer"][0]
    assert regions.N03_CREDIT in footer and "タイル" not in footer


def test_tile_map_only_for_a_municipality_without_boundary_and_it_says_so(prepared, ctx, table):
    master = prepared.municipalities
    new_town = master.iloc[[0]].assign(muni_code="17999", name="新設町")  # after the 2021 edition
    layers = overview.boundary_layers(pd.concat([master, new_town], ignore_index=True))
    assert layers["muni"] is None and layers["medical_area"] is None
    assert "新設町（17999）" in layers["note"] and "2021年1月1日" in layers["note"]
    assert "タイル" in layers["note"]
    fig = overview.map_municipalities(ctx, table, layers, "metabo", prepared.fiscal_years[-1])
    assert len([p for p in fig.axes[0].patches if isinstance(p, Rectangle)]) == 20
    footer = [t.get_text() for t in fig.texts if t.get_gid() == "footer"][0]
    assert "新設町（17999）" in footer and regions.N03_CREDIT not in footer


def test_unreadable_user_boundary_file_falls_back_to_tiles(prepared, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "N03_17.geojson").write_text("{not json", encoding="utf-8")
    assert overview.find_boundary_file(None, broken).name == "N03_17.geojson"  # user file overrides
    layers = overview.boundary_layers(prepared.municipalities, None, broken)  # never fails
    assert layers["muni"] is None and "タイル表示" in layers["note"]


def test_funnel_has_one_target_or_says_why_not():
    """A funnel has one target: the reference rate every municipality shares (県, 全国). 全国 without the
    indicator, or a reference of each municipality's own (二次医療圏, 同規模), draws no funnel and says
    「比較なし（理由）」 instead of using one municipality's reference for all."""
    base = pd.DataFrame({"indicator_id": "hba1c65", "fy": 2024, "muni_code": ["17201", "17202"],
                         "muni_name": ["金沢市", "七尾市"], "numerator": [30, 12], "denominator": [200, 100],
                         "comparison": "有意差なし"})
    same = base.assign(ref_rate=[10.0, 10.0])
    assert overview.funnel_missing_reason(same, "hba1c65", 2024) == ""
    assert overview._reference_rate(same, "hba1c65", 2024) == 10.0
    own = base.assign(ref_rate=[10.0, 12.5])  # each municipality's 同規模
    assert overview.funnel_missing_reason(own, "hba1c65", 2024).startswith("比較なし（比較の基準が市町村ごとに異なり")
    none = base.assign(ref_rate=np.nan, comparison="比較なし（全国の値は NDB の健診項目だけのため）")
    assert overview.funnel_missing_reason(none, "hba1c65", 2024) == "比較なし（全国の値は NDB の健診項目だけのため）"
    assert overview.funnel_chart(None, none, "hba1c65", 2024) is None
    assert overview.funnel_lines(own, 2024, ["hba1c65"])[0].startswith("・HbA1c 6.5%以上: 比較なし（比較の基準が")

"""Generate notebooks/02_large_insurer.ipynb (大規模保険者: 地区別分析, issue 7) without outputs.

Run: .venv/bin/python scripts/make_02_large_insurer.py
The notebook is thin: every computation is in hsutils.districts; cells call and display.
"""
from pathlib import Path

import nbformat
from _notebook_file import write_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "02_large_insurer.ipynb"

cells = []


def md(text: str) -> None:
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text: str, tags=None) -> None:
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    cells.append(cell)


code('''
# パラメータ（一括実行では papermill がこのセルの値を上書きします）
muni_code = "17201"            # 市町村コード（5桁）。既定はデモの金沢市
muni_name = None               # 市町村名（省略時は市町村マスタから）
fiscal_year = None             # 分析年度（西暦。例: 2024 は令和6年度）。None ならデータの最新年度
fiscal_years = None            # 対象年度のリスト。None ならデータにあるすべての年度
pref_code = 17                 # 都道府県コード
data_dir = None                # 入力データのフォルダ（None なら環境変数 HSUTILS_DATA_DIR またはデモデータ）
cache_dir = None               # 集計キャッシュのフォルダ
out_dir = None                 # 出力フォルダ（一括実行が指定）
run_name = "interactive"       # 実行名
suppress_threshold = 10        # この人数未満（1〜9人）の集計値は秘匿
reference_area = "pref"        # 市町村全体の比較の基準（この notebook の地区比較は常に市町村全体が基準）
standard_population = "H27"    # 年齢調整の標準人口（H27: 平成27年モデル人口）
interactive = False            # True にするとウィジェット（指標・地区の選択）を表示
district_boundaries = None     # 地区境界の GeoJSON ファイル（任意）。プロパティ district_code が必要
indicators = None              # 地区別に見る指標 ID のリスト。None なら hsutils.districts.DEFAULT_INDICATORS
pool_years = True              # True: 地区の比較（判定・地図・優先度）に対象年度を合算して使う（少人数の地区向け）
map_indicator = "kenshin_rate"                  # 地図・順位グラフに使う指標
funnel_indicators = ["kenshin_rate", "dm_untreated", "hba1c8"]   # ファネルプロットを描く指標
participation_target = 0.60    # 特定健診実施率の目標（市町村国保 第4期 60%、DOMAIN §7.6）
top_n_groups = 10              # 受診者増が大きいグループを何件表示するか
priority_weights = {"kenshin_low": 3.0, "worse_indicator": 1.0, "participation_gap": 2.0, "untreated": 2.0}
''', tags=["parameters"])

md('''
# 02 大規模保険者の地区別分析（地区別リスクのマッピング）

**支援のねらい**　大きな市では、市全体の平均が地区ごとの違いを隠してしまいます。このノートブックは、
市をいくつかの地区（日常生活圏域など）に分けて、

- 特定健診の受診率が低い地区と、性・年齢のどのグループに働きかけると受診者が最も増えるか、
- 受診勧奨判定値以上なのに治療につながっていない人（未治療者）が多い地区、
- 特定保健指導・糖尿病性腎症重症化予防・一体的実施（後期高齢者）の対象者がどの地区に何人いるか

を示し、支援を優先する地区を、理由が分かる形で提案します。

**比較の考え方**　地区の値は **市全体** と比べます（標準化該当比：性・年齢構成の違いを除いた比。1より大きければ市全体より多い）。
95%信頼区間が1をまたがなければ「有意に高い／低い」とします。少人数の地区では偶然の差が大きいため、
`pool_years = True`（既定）では対象年度を合算して判定します。比較は支援の必要性を見るためのもので、地区の順位付けではありません。

**個人情報**　1〜9人の集計値と、そこから計算できる値は「‐」で表示します（合計から引き算で分からないよう、もう1地区を追加で秘匿することがあります）。
このノートブックの表と図に個人の番号は含まれません。
''')

code('''
%matplotlib inline
import warnings

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from hsutils import districts, notebook, plots

warnings.filterwarnings("ignore", category=UserWarning, module="matplotlib")
pd.set_option("display.max_columns", 40)
pd.set_option("display.width", 200)

ctx = notebook.start("02_large_insurer", muni_code, fiscal_year, data_dir=data_dir, cache_dir=cache_dir,
                     out_dir=out_dir, suppress_threshold=suppress_threshold, run_name=run_name)
prep = ctx.prepared
FY = ctx.fiscal_year
FYS = [y for y in (fiscal_years or prep.fiscal_years) if y in prep.fiscal_years and y <= FY] or [FY]
IDS = list(indicators or districts.DEFAULT_INDICATORS)
STD_POP, STD_NOTE = districts.resolve_standard_population(standard_population)
DLIST = districts.district_list(prep.districts, prep.person_year, ctx.muni_code)
HAS_DISTRICTS = (not ctx.is_prefecture) and len(DLIST) > 0
BASIS_FYS = FYS if pool_years else [FY]
BASIS_FY_TEXT = (BASIS_FYS[0], BASIS_FYS[-1]) if len(BASIS_FYS) > 1 else FY
NAME = ctx.muni_name
print(f"{NAME}（{ctx.muni_code}）　分析年度: {plots.fy_japanese(FY)}　対象年度: {', '.join(map(str, FYS))}")
if STD_NOTE:
    print(STD_NOTE)
if HAS_DISTRICTS:
    print(f"地区数: {len(DLIST)}（{'、'.join(DLIST['district_name'])}）")
else:
    print(districts.no_districts_message(ctx.muni_code, NAME))
''')

md('''
## 1. パラメータ

分析に使う指標、地区比較の期間、優先度スコアの重みです。値を変えるときは、最初のセル（パラメータ）を書き換えて上から実行し直してください。
''')

code('''
display(districts.indicator_overview(IDS))
print("地区比較の期間:", districts.period_label(BASIS_FYS) if pool_years else f"{plots.fy_japanese(FY)}（単年度）")
print(f"受診率の目標: {participation_target:.0%}　秘匿の閾値: {suppress_threshold}人未満")
display(districts.priority_weights_table(priority_weights))
''')

md('''
## 2. 地区の概況

地区ごとの被保険者（国保・後期）の人口ピラミッドと、特定健診の対象者・受診者です。
''')

code('''
if HAS_DISTRICTS:
    overview = districts.district_overview(prep.person_year, DLIST, ctx.muni_code, FY)
    count_cols = ["kokuho_insured", "kouki_insured", "kenshin_target", "kenshin_participants", "kouki_participants"]
    overview_shown = districts.suppress_wide_counts(
        overview, count_cols, derived={"kenshin_target": ["kenshin_rate"], "kenshin_participants": ["kenshin_rate"],
                                       "kouki_insured": ["kouki_kenshin_rate"], "kouki_participants": ["kouki_kenshin_rate"]},
        threshold=suppress_threshold)
    overview_shown = ctx.save_table(overview_shown.round(1), "district_overview")
    display(overview_shown.rename(columns=districts.OVERVIEW_LABELS))
    pop = districts.population_by_district(prep.person_year, DLIST, ctx.muni_code, FY)
    fig = plots.pyramid_small_multiples(pop, "district_name", f"{NAME} 地区別の被保険者（国保・後期）",
                                       ctx.footer("国保・後期高齢者医療の被保険者（40歳以上）"), ncols=5,
                                       suppress_threshold=suppress_threshold)
    display(ctx.save_figure(fig, "district_pyramids"))
    plt.show()
else:
    print("地区データがないため、地区の概況は省略します。")
''')

md('''
### 読み取りのポイント
- ピラミッドは全地区で同じ横軸です。横幅の大きい地区ほど被保険者が多く、上の段（高齢）が厚い地区は後期高齢者の支援（一体的実施）の比重が大きくなります。
- 表の受診率は単年度の粗率です。年齢構成の違いを除いた比較は次の節の標準化該当比で見ます。
''')

code('''
if HAS_DISTRICTS:
    print(districts.overview_summary(overview_shown, plots.fy_japanese(FY)))
''')

md('''
## 3. 地区別の指標（市全体との比較）

粗率、年齢調整率（平成27年モデル人口による直接法）、標準化該当比（市全体の性・年齢別の率を基準にした間接法）と95%信頼区間です。
`tables/indicators_by_district.csv` には対象年度ごとの単年度の値と、合算期間の値（`period` 列）が入ります。
''')

code('''
if HAS_DISTRICTS:
    single = districts.district_indicator_table(prep.strata, prep.municipalities, DLIST, ctx.muni_code, FYS, IDS,
                                                std_pop=STD_POP, suppress_threshold=suppress_threshold)
    parts = [single]
    if pool_years and len(FYS) > 1:
        parts.append(districts.district_indicator_table(prep.strata, prep.municipalities, DLIST, ctx.muni_code, FYS, IDS,
                                                        pooled=True, std_pop=STD_POP, suppress_threshold=suppress_threshold))
    table_all = pd.concat(parts, ignore_index=True)
    basis = parts[-1] if pool_years and len(FYS) > 1 else single[single["fy"] == FY].reset_index(drop=True)
    shown_all = ctx.save_table(districts.suppress_district_table(table_all, suppress_threshold), "indicators_by_district")
    basis_shown = districts.suppress_district_table(basis, suppress_threshold)
    display(districts.display_indicator_table(basis_shown))
else:
    muni_tab = districts.municipal_indicator_table(prep.strata, prep.municipalities, ctx.muni_code, [FY], IDS,
                                                   std_pop=STD_POP, suppress_threshold=suppress_threshold) \\
        if not ctx.is_prefecture else None
    if muni_tab is not None and len(muni_tab):
        muni_shown = ctx.save_table(muni_tab, "indicators_municipal", count_cols=["numerator", "denominator"],
                                    derived_cols=[c for c in districts._DERIVED if c in muni_tab])
        print(f"{NAME} 全体の指標（{plots.fy_japanese(FY)}、県との比較）:")
        display(muni_shown[["indicator_name", "numerator", "denominator", "crude_rate", "adj_rate", "sr", "comparison"]]
                .rename(columns={"indicator_name": "指標", "numerator": "分子", "denominator": "分母", "crude_rate": "粗率(%)",
                                 "adj_rate": "年齢調整率(%)", "sr": "標準化該当比", "comparison": "県との比較"}))
''')

md('''
### 読み取りのポイント
- 「市との比較」は標準化該当比の95%信頼区間が1を含まないときに「有意に高い／低い」となります。高いことが良い指標（受診率など）と悪い指標（HbA1c 8.0%以上など）があるので、指標名と合わせて読んでください。
- 「‐」は1〜9人のため秘匿した値です。少人数の地区は信頼区間が広く、差があっても「有意差なし」になりやすいことに注意してください。
- 以下に、有意差のあった地区を自動で書き出します。
''')

code('''
if HAS_DISTRICTS:
    display(districts.significance_summary(basis))
''')

md('''
## 4. 特定健診の受診率：地区 × 性 × 年齢

色が濃いほど受診率が高いグループです。下の表とグラフは、各グループの受診率が目標（既定 60%、市町村国保 第4期の目標）まで上がったとき、
何人の受診者が増えるか（（目標 − 現在の受診率）× 対象者）を示します。
''')

code('''
if HAS_DISTRICTS:
    heat_groups = districts.participation_by_group(prep.strata, DLIST, ctx.muni_code, BASIS_FYS)
    fig = plots.heat_table(districts.heat_frame(heat_groups, suppress_threshold), "district_name", "group", "rate",
                           f"{NAME} 特定健診 受診率（地区 × 性・年齢、{districts.period_label(BASIS_FYS)}）",
                           ctx.footer("国保 40–74歳 特定健診対象者", fy=BASIS_FY_TEXT), fmt="{:.0%}",
                           suppress_threshold=suppress_threshold, size="a4_landscape")
    display(ctx.save_figure(fig, "participation_heat_table"))
    plt.show()
''')

md('''
### 読み取りのポイント
- 横に見ると、どの性・年齢で受診率が低いかが分かります（多くの市で40〜50歳代の男性が最も低くなります）。縦に見ると、同じ性・年齢でも地区による差が分かります。
- 「‐」は対象者または受診者が1〜9人のグループです。
''')

code('''
if HAS_DISTRICTS:
    groups = districts.participation_by_group(prep.strata, DLIST, ctx.muni_code, FY)
    gap = districts.participation_gap(groups, participation_target)
    top = districts.top_gap_groups(gap, top_n_groups, suppress_threshold)
    top_shown = ctx.save_table(districts.display_gap_table(top), "participation_gap_top_groups",
                               count_cols=["対象者", "受診者"],
                               derived_cols=["受診率", "目標との差(ポイント)", "目標達成時の受診者増(人)"])
    print(f"受診率を {participation_target:.0%} にしたとき受診者が最も増えるグループ（{plots.fy_japanese(FY)}）:")
    display(top_shown)
    n_small = int(districts.small_groups(gap, suppress_threshold).sum())
    if n_small:
        print(f"※ 対象者または受診者が1〜9人の {n_small} グループは、秘匿のため順位から除いています。")
    gap_d = districts.gap_by_district(gap)
    fig = districts.gap_figure(gap, ctx.footer("国保 40–74歳 特定健診対象者", f"目標受診率 {participation_target:.0%}"),
                               target_rate=participation_target, muni_name=NAME, suppress_threshold=suppress_threshold)
    display(ctx.save_figure(fig, "participation_gap_by_district"))
    plt.show()
''')

md('''
### 読み取りのポイント
- 受診者の増え方は「率の低さ」と「対象者の多さ」の掛け算です。率が低くても対象者が少ないグループより、率が中くらいで対象者の多いグループの方が、受診勧奨の効果（人数）が大きいことがあります。
- 受診勧奨（はがき・電話・個別訪問）の対象を絞るときは、上の表のグループから検討してください。
''')

code('''
if HAS_DISTRICTS:
    total_gap = gap_d["additional"].sum()
    if total_gap > 0:
        top3 = gap_d.sort_values("additional", ascending=False).head(3)
        print(f"全グループが目標に達すると、市全体で受診者が約{total_gap:,.0f}人増えます。"
              f"増加が大きい地区: " + "、".join(f"{r.district_name}（約{r.additional:,.0f}人）" for r in top3.itertuples()))
''')

md('''
## 5. 地区別の事業対象者数

各事業の対象者が地区ごとに何人いるかです（分析年度、単年度）。定義は下の表のとおりです。
''')

code('''
display(pd.DataFrame([(k, v[0], v[1]) for k, v in districts.TARGET_DEFINITIONS.items()],
                     columns=["列", "対象者", "定義"]).set_index("列"))
if HAS_DISTRICTS:
    targets = districts.program_targets(prep.person_year, DLIST, ctx.muni_code, FY)
    target_cols = [c for c in targets.columns if c not in ("district_code", "district_name")]
    targets_shown = ctx.save_table(districts.suppress_wide_counts(targets, target_cols, threshold=suppress_threshold),
                                   "targets_by_district")
    display(targets_shown.set_index("district_name").drop(columns="district_code")
            .rename(columns={k: v[0] for k, v in districts.TARGET_DEFINITIONS.items()}).T)
''')

md('''
### 読み取りのポイント
- 「受診勧奨 未治療者」は、健診で受診勧奨判定値以上だったのに、その項目の服薬もレセプトもない人です。人数の多い地区は、受診勧奨と医療機関への橋渡しを優先する候補です。
- 糖尿病性腎症の対象者（受診勧奨・保健指導）は、かかりつけ医との連携体制を作るときの規模の目安になります。一体的実施の人数は後期高齢者（75歳以上）です。
- 「‐」は1〜9人（と、合計からの引き算で分かってしまう地区）の秘匿です。対象者の名簿は、事業を担当する部署が別途、個人単位のリストで扱います（このノートブックでは作りません）。
''')

md('''
## 6. 地区の地図とファネルプロット

地区境界ファイル（GeoJSON）を `district_boundaries` に指定すると塗り分け地図になります。ファイルの各地物のプロパティに
`district_code`（地区マスタと同じ地区コード）が必要です（`district_name` は任意）。座標は経度・緯度（世界測地系）です。
ファイルがないときは、地区マスタの緯度・経度から地区を同じ大きさのタイルに並べ、順位グラフと合わせて表示します。
''')

code('''
if HAS_DISTRICTS:
    BOUNDS = districts.load_district_boundaries(district_boundaries, DLIST) if district_boundaries else None
    pop_by_code = prep.person_year[(prep.person_year["muni_code"] == ctx.muni_code) & (prep.person_year["fy"] == FY)] \\
        .groupby("district_code").size()
    TILES = None if BOUNDS is not None else districts.district_tiles(DLIST, pop_by_code)
    map_footer = ctx.footer(districts.population_text(map_indicator), fy=BASIS_FY_TEXT)
    if BOUNDS is not None or TILES is not None:
        fig = districts.map_figure(basis, map_indicator, map_footer, tiles=TILES, boundaries=BOUNDS, muni_name=NAME,
                                   suppress_threshold=suppress_threshold)
        display(ctx.save_figure(fig, f"map_{map_indicator}"))
        plt.show()
    else:
        print("地区の位置（緯度・経度）も境界ファイルもないため、地図は省略し、順位グラフのみ表示します。")
    fig = districts.ranking_figure(basis, map_indicator, map_footer, muni_name=NAME, suppress_threshold=suppress_threshold)
    display(ctx.save_figure(fig, f"ranking_{map_indicator}"))
    plt.show()
''')

md('''
### 読み取りのポイント
- 地図の色は粗率の大きさ、順位グラフの色は市全体との比較（年齢を調整した標準化該当比による判定）です。横線（ひげ）は95%信頼区間、破線は市全体の値です。
- タイル表示は位置の目安で、面積や形は実際と異なります。
''')

code('''
if HAS_DISTRICTS:
    for fid in [f for f in funnel_indicators if f in set(basis["indicator_id"])]:
        fig = districts.funnel_figure(basis, fid, ctx.footer(districts.population_text(fid), fy=BASIS_FY_TEXT),
                                      muni_name=NAME, suppress_threshold=suppress_threshold)
        display(ctx.save_figure(fig, f"funnel_{fid}"))
        plt.show()
''')

md('''
### 読み取りのポイント
- ファネルプロットは、横軸が対象者数、縦軸が率です。漏斗の形の線（95%・99.8%限界）の外側にある地区は、偶然では説明しにくい差があります。対象者の少ない地区ほど線の幅が広がります。
- ファネルプロットは粗率での判定です（年齢構成は調整していません）。年齢構成が大きく違う地区は、第3節の標準化該当比と合わせて判断してください。
''')

md('''
## 7. 支援を優先する地区

優先度スコアは、次の要素に重みを掛けた合計です（重みはパラメータ `priority_weights` で変更できます）。

- 特定健診実施率が市全体より有意に低い（1点）
- 市全体より有意に悪い指標の数（1つにつき1点、受診率以外）
- 受診率を目標まで上げたときの受診者増のうち、その地区が占める割合（0〜1）
- 受診勧奨 未治療者のうち、その地区が占める割合（0〜1）

秘匿の対象となる少人数の値は、スコアの計算に使いません（理由の欄に書きます）。
''')

code('''
if HAS_DISTRICTS:
    priority = districts.priority_scores(basis, gap_d, targets, priority_weights, suppress_threshold=suppress_threshold)
    priority_shown = ctx.save_table(priority, "priority_districts", count_cols=["untreated"],
                                    derived_cols=["untreated_share"])
    display(priority_shown.rename(columns=districts.PRIORITY_LABELS).set_index("順位"))
''')

md('''
### 読み取りのポイント
- スコアは「どこから話し合いを始めるか」の目安です。理由の欄を読み、地区の保健師の実感や社会資源（医療機関・通いの場）と合わせて判断してください。
- 下の図は、優先度が最も高い地区を市全体と比べたプロフィールです（右ほど良い）。
''')

code('''
if HAS_DISTRICTS:
    top_code = priority["district_code"].iloc[0]
    print("優先度1位:", priority["district_name"].iloc[0], "—", priority["reasons"].iloc[0])
    fig = districts.profile_figure(basis, top_code, ctx.footer("国保 40–74歳・後期高齢者 75歳以上", fy=BASIS_FY_TEXT),
                                   muni_name=NAME, suppress_threshold=suppress_threshold)
    display(ctx.save_figure(fig, "profile_top_priority"))
    plt.show()
''')

md('''
## 8. 対話的に見る（`interactive = True` のとき）

指標と地区を選ぶと、地図（または順位グラフ）と地区のプロフィールを描き直します。一括実行では表示しません。
''')

code('''
if interactive and HAS_DISTRICTS:
    import ipywidgets as widgets

    ind_choice = widgets.Dropdown(options=[(n, i) for i, n in basis.drop_duplicates("indicator_id")[["indicator_id", "indicator_name"]].itertuples(index=False)],
                                  value=map_indicator, description="指標")
    dist_choice = widgets.Dropdown(options=list(zip(DLIST["district_name"], DLIST["district_code"])), description="地区")
    view = widgets.Output()

    def redraw(_=None):
        with view:
            view.clear_output(wait=True)
            foot = ctx.footer(districts.population_text(ind_choice.value), fy=BASIS_FY_TEXT)
            if BOUNDS is not None or TILES is not None:
                display(districts.map_figure(basis, ind_choice.value, foot, tiles=TILES, boundaries=BOUNDS, muni_name=NAME,
                                             suppress_threshold=suppress_threshold))
            display(districts.ranking_figure(basis, ind_choice.value, foot, muni_name=NAME, suppress_threshold=suppress_threshold))
            display(districts.profile_figure(basis, dist_choice.value, foot, muni_name=NAME, suppress_threshold=suppress_threshold))
            plt.close("all")

    ind_choice.observe(redraw, "value")
    dist_choice.observe(redraw, "value")
    display(widgets.HBox([ind_choice, dist_choice]), view)
    redraw()
''')

md('''
## 出力

図は `figures/`（PNG 300dpi・PDF）、表は `tables/`（CSV と Excel）に保存されています。
''')

code('''
xlsx = ctx.finish()
print("出力フォルダ:", ctx.out_dir)
print("Excel:", xlsx)
''')

nb = new_notebook(cells=cells, metadata={
    "hsutils": {"id": "02", "title": "大規模保険者（地区分析）", "level": "muni"},
})
write_notebook(nb, OUT, id_prefix="nb02")

"""Generate notebooks/01_prefecture_overview.ipynb (committed without outputs).

Run from the repository root:  .venv/bin/python scripts/make_01_prefecture_overview.py
The notebook is thin: every computation is in hsutils.overview (DESIGN §9, §11).
"""
from pathlib import Path

import nbformat
from _notebook_file import write_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "01_prefecture_overview.ipynb"

PARAMETERS = '''\
# パラメータ（papermill の一括実行ではここが上書きされます。ここでは計算をしません）
muni_code = "17"                 # 都道府県コード（県全体のノートブック。17000 の形でも可）
muni_name = "石川県"
pref_code = 17
fiscal_year = None               # 分析年度（None はデータの最新年度）
fiscal_years = None              # 推移を見る年度のリスト（None はデータにあるすべての年度）
reference_area = "pref"          # 比較の基準: pref（県全体）/ medical_area（各市町村の二次医療圏）
standard_population = "H27"      # 年齢調整の標準人口: H27（平成27年モデル人口）/ pref（県の被保険者）
indicators_to_show = ["kenshin_rate", "hokenshido_rate", "metabo", "hba1c8", "ref_bp", "egfr45",
                      "ik_health_unknown"]  # 地図・グラフにする指標（表はすべての登録指標）
map_value = "adj_rate"           # 地図の値: adj_rate（年齢調整率）/ crude_rate（粗率）/ sr（標準化比）
boundary_file = None             # 市町村境界ファイル（国土数値情報 N03 の GeoJSON・TopoJSON・zip）。None はデータフォルダ内、なければ同梱の全国境界
suppress_threshold = 10          # この人数未満（1〜9人）の集計値は秘匿
score_weights = {                # 支援優先度の得点の重み（下の「8. 支援優先度」で説明）
    "n_worse": 1.0,
    "gap_percent": 0.02,
    "excess_cases": 0.01,
    "participation_gap_points": 0.1,
}
interactive = False              # True: JupyterLab でウィジェット（指標・年度の切り替え）を使う
cache_dir = None
data_dir = None
out_dir = None
run_name = "interactive"
'''

INTRO = '''\
# 01 県全体の概況 — 支援する保険者の優先順位を考える

**支援パターン：支援保険者数が多い場合の支援（国保連合会）**

国保連合会は少ない職員で多くの市町村（保険者）を支援しています。このノートブックは、県内の全市町村を同じ物差しで比べ、

1. どの市町村が、どの指標で県全体と比べて**統計的に意味のある差**があるか（偶然のばらつきと区別する）
2. どの市町村で、その差が**年々悪くなっている**か
3. どこから支援すると効果が大きそうか（**支援優先度の得点**、重みは上のパラメータで変更可）

を示します。比較は支援の必要性を見るためのもので、市町村の成績順位ではありません。

- 率は「粗率」（そのままの割合）、「年齢調整率」（標準人口の年齢構成にそろえた率、直接法）、「標準化比」（県の性・年齢階級別の率を当てはめた期待数に対する観察数の比、間接法。1.00 = 県と同じ）の3種類です。すべて95%信頼区間つきです。
- 10人未満（1〜9人）の集計値と、そこから計算した値は「‐」で秘匿しています。個人を特定できる情報（被保険者番号など）は、この報告には含まれません。
'''


def code(src: str, tags=None):
    cell = new_code_cell(src)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def md(src: str):
    return new_markdown_cell(src)


CELLS = [
    code(PARAMETERS, tags=["parameters"]),
    md(INTRO),
    code('''\
%matplotlib inline
from IPython.display import Markdown, display

from hsutils import indicators, notebook, overview

ctx = notebook.start(overview.NOTEBOOK, overview.prefecture_code(muni_code), fiscal_year,
                     data_dir=data_dir, cache_dir=cache_dir, out_dir=out_dir,
                     suppress_threshold=suppress_threshold, run_name=run_name)
prepared = ctx.prepared
fy = ctx.fiscal_year
years = overview.analysis_years(prepared, fiscal_years, fy)
std_pop, std_note = overview.standard_population(prepared, standard_population, fy)
ref_label = overview.reference_label(reference_area)
print(f"{ctx.muni_name}（{len(prepared.municipalities)}市町村）、分析年度 {fy}、年度 {years}")
print(std_note)'''),
    md("## 1. パラメータ\n\nこの実行で使った設定です。指標・重み・秘匿の基準は、上のパラメータのセルで変更できます。"),
    code('''\
overview.parameter_table(都道府県=ctx.muni_name, 分析年度=fy, 推移の年度=years, 比較の基準=ref_label,
                         標準人口=std_note, 表示する指標=indicators_to_show, 地図の値=map_value,
                         秘匿の基準=f"{suppress_threshold}人未満", 得点の重み=score_weights)'''),
    md("## 2. データの概要\n\n取り込んだファイルの行数と、年度ごとの人数です。"),
    code('''\
display(overview.import_summary(prepared))
persons = overview.persons_by_year(prepared)
by_year = ctx.save_table(persons, "persons_by_year", count_cols=list(persons.columns[1:]))
display(by_year.drop(columns="suppressed"))
exclusions = ctx.save_table(overview.exclusions_summary(prepared), "exclusions_summary", count_cols=["件数"])
print("取り込み時に除外した行・値はありません。" if exclusions.empty else "取り込み時に除外した行・値（理由別の件数）:")
if not exclusions.empty:
    display(exclusions)'''),
    md('''\
### 読み取りのポイント
- 「読込行数＝使用行数＋除外行数」です。除外があれば、理由（範囲外の値、コードの誤りなど）を元データで確認してください。除外の明細（ファイル・行番号）は取り込み時の報告にあります。
- 特定健診の対象者は「国保・年度末40〜74歳・年度を通じて加入」の人です。年度で対象者数が大きく変わる場合は、データの抽出条件が年度でそろっているか確認してください。
- 1〜9件の件数は「‐」で表示しています。'''),
    code('''\
pyramid = overview.insured_pyramid(prepared, fy)
ctx.save_figure(overview.pyramid_figure(ctx, pyramid, fy), "pyramid_insured")'''),
    md('''\
### 読み取りのポイント
- 左が男性、右が女性です。74歳までは国保、75歳以上は後期高齢者医療の被保険者です。
- 国保は退職後の60〜74歳が多く、後期高齢者は女性が多いのが一般的です。年齢構成が違う市町村を比べるときは、年齢調整率や標準化比を使います（下の表）。'''),
    md('''\
## 3. 全市町村・全指標の一覧表

登録されているすべての指標について、市町村・年度ごとに分子・分母、粗率、年齢調整率、標準化比（それぞれ95%信頼区間）と、基準との比較（有意に高い／有意差なし／有意に低い）を計算しました。
表全体は `tables/indicators_by_municipality.csv` と Excel ファイルに出力しています。下は分析年度の重点指標の要約です（年齢調整率、%。「粗」は事例が10未満で年齢調整率を出せないため粗率、（悪い）（良い）は基準と比べて有意な差）。'''),
    code('''\
table, ref_note = overview.municipal_indicator_table(prepared, years, reference_area=reference_area,
                                                     std_pop=std_pop, suppress_threshold=suppress_threshold)
shown = overview.save_indicator_table(ctx, table)
print(ref_note, f"／ {table['indicator_id'].nunique()}指標 × {table['muni_code'].nunique()}市町村 × {len(years)}年度")
display(overview.compact_pivot(shown, fy, indicators_to_show))
display(Markdown("**基準と比べて有意に差のある市町村（標準化比）**\\n\\n"
                 + "\\n".join(overview.significant_lines(table, fy, indicators_to_show, suppress_threshold))))'''),
    md('''\
### 読み取りのポイント
- 「有意に悪い」は、標準化比の95%信頼区間が1.00（基準と同じ）を含まず、悪い側にあることを意味します。区間が1.00をまたぐ市町村は、差が偶然の範囲かもしれません。
- 人数の少ない町では信頼区間が広く、率が大きく違って見えても「有意差なし」になることがよくあります。次の地図・ファンネルプロットと合わせて見てください。
- 比較は支援の必要性を見るためのもので、順位付けではありません。'''),
    md("## 4. 地図（市町村別・二次医療圏別）"),
    code('''\
layers = overview.boundary_layers(prepared.municipalities, boundary_file, data_dir or prepared.meta.get("data_dir"))
area_table = overview.area_trend_table(prepared, years, sorted(table["indicator_id"].unique()), std_pop)
print(f"境界: {layers['source'].name}" if layers["source"] is not None else layers["note"])
for ind in indicators_to_show:
    display(ctx.save_figure(overview.map_municipalities(ctx, table, layers, ind, fy, map_value, std_note), f"map_muni_{ind}"))
    display(ctx.save_figure(overview.map_medical_areas(ctx, area_table, prepared.municipalities, layers, ind, fy,
                                                       map_value, std_note), f"map_area_{ind}"))'''),
    md('''\
### 読み取りのポイント
- 色が濃いほど値が大きい地域です（受診率・指導率は青、該当率などは橙）。色の区切りは値の分布（分位）で決めているため、色の差が小さな差のこともあります。差が偶然かどうかは次のファンネルプロットと順位図で確かめます。
- 灰色は10人未満のため非表示、白は算出なしです。境界は同梱の全国市町村境界（国土数値情報、2021年1月1日時点）で、境界のない市町村があるときだけ市町村を同じ大きさのタイルで表示します（位置はおおよそ）。
- 二次医療圏の地図は、医療圏単位の支援（保健所・医療機関との連携）を考えるときに使います。'''),
    code('''\
display(Markdown("**二次医療圏で最も高い・低い地域（分析年度）**\\n\\n"
                 + "\\n".join(overview.area_extremes_lines(area_table, fy, indicators_to_show, suppress_threshold))))'''),
    md("## 5. ファンネルプロットと順位図（信頼区間つき）"),
    code('''\
for ind in indicators_to_show:
    display(ctx.save_figure(overview.funnel_chart(ctx, table, ind, fy, ref_label), f"funnel_{ind}"))
    display(ctx.save_figure(overview.ranking_chart(ctx, table, ind, fy, ref_label), f"ranking_{ind}"))
display(Markdown("**ファンネルプロットの95%限界の外にある市町村**\\n\\n"
                 + "\\n".join(overview.funnel_lines(table, fy, indicators_to_show, suppress_threshold))))'''),
    md('''\
### 読み取りのポイント
- **ファンネルプロット**：横軸は対象者数、縦軸は率（粗率）です。漏斗（ろうと）の線は、県と同じ率の地域が偶然にとりうる範囲（破線95%、点線99.8%）です。人数の少ない町ほど範囲が広くなります。線の外にある市町村は、偶然では説明しにくい差があります。
- **順位図**：標準化比（年齢構成の違いを調整した比、1.00 = 基準と同じ）を95%信頼区間つきで並べています。色は基準との比較（良い・差なし・悪い）で、表と同じ判定です。
- ファンネルプロットは粗率、順位図は年齢を調整した比なので、年齢構成が県と大きく違う町では判定が分かれることがあります。その場合は順位図（年齢調整後）を優先してください。'''),
    md("## 6. 推移（県全体・二次医療圏、年齢調整率）"),
    code('''\
for ind in indicators_to_show:
    display(ctx.save_figure(overview.trend_figure(ctx, area_table, ind, std_note), f"trend_{ind}"))
display(Markdown(f"**{years[0]}年度 → {years[-1]}年度の変化**（年齢調整率、%。判定は粗率の差の95%信頼区間による）\\n\\n"
                 + "\\n".join(overview.trend_lines(area_table, indicators_to_show, suppress_threshold))))'''),
    md('''\
### 読み取りのポイント
- 線は年齢調整率、帯は95%信頼区間です。帯が重なっている間の上下は、偶然の変動かもしれません。
- 「改善／変化なし／悪化」は、最初の年度と最新の年度の差の95%信頼区間で判定しています（矢印や見た目ではなく、区間が0をまたぐかどうか）。
- 災害や制度変更のあった年度は、その事情を添えて報告してください。'''),
    md('''\
## 7. 悪化かつ有意に悪い（委員会で最初に議論したい組み合わせ）

最新年度に基準より**有意に悪く**、かつ最初の年度より**有意に悪化**している「市町村 × 指標」です。悪化の判定は、2年度の率の差の95%信頼区間（Newcombe 法）が悪い側にあることとしています。'''),
    code('''\
worse = overview.worse_and_worsening(table)
worse_shown = overview.save_worse_and_worsening(ctx, worse)
if worse_shown.empty:
    print(f"該当なし：{years[0]}年度から{years[-1]}年度にかけて、有意に悪く、かつ有意に悪化した組み合わせはありません。")
else:
    print(f"{len(worse_shown)}件：" + "、".join(worse_shown["muni_name"] + "の" + worse_shown["indicator_name"]))
    display(worse_shown[overview.WORSE_DISPLAY_COLUMNS].rename(columns=overview.WORSE_LABELS_JA))'''),
    md('''\
### 読み取りのポイント
- このリストは「今悪く、しかも悪くなっている」ものに絞った短いリストです。まずここから、原因（対象者の変化、事業の中断、データの取り方の変化）を市町村と一緒に確認してください。
- 有意に悪いが悪化していないもの（以前から悪い）は、3の一覧表で確認できます。
- 人数の少ない町では有意になりにくいため、リストに出ないことが「問題がない」ことを意味するわけではありません。'''),
    md('''\
## 8. 支援優先度の得点

市町村ごとに、次の要素に重みを掛けて足した得点です（重みはパラメータ `score_weights` で変更できます）。
重点指標は上の「表示する指標」です。10人未満の集計値は使っていません。'''),
    code('''\
display(overview.weights_frame(score_weights))
priority = overview.support_priority(table, fy, score_weights, key_indicators=indicators_to_show,
                                     suppress_threshold=suppress_threshold)
priority_shown = overview.save_support_priority(ctx, priority)
display(priority_shown[["rank", "muni_name", "medical_area", "score", "reasons"]].rename(columns=overview.COLUMN_LABELS_JA))
display(ctx.save_figure(overview.priority_chart(ctx, priority_shown, score_weights), "support_priority"))'''),
    md('''\
### 読み取りのポイント
- 得点は「どこから話を聞きに行くか」を決めるための材料です。得点の内訳（棒の色）と理由を見て、市町村の事情（体制、災害、データの欠け）と合わせて判断してください。
- 人口の多い市は「影響を受ける人数（超過数）」が大きくなり、小さな町は率の差が大きくても有意になりにくい、という性質があります。重みを変えると順位がどう変わるかも確認してください。
- 比較は支援の必要性を見るためのもので、市町村の成績順位ではありません。'''),
    md('''\
## 9. 対話的な操作（JupyterLab）

パラメータ `interactive = True` で実行すると、指標と年度を選んで地図・ファンネルプロット・順位図を描き直せます（一括実行では使いません）。'''),
    code('''\
if interactive:
    import ipywidgets as widgets
    from IPython.display import clear_output

    indicator_dd = widgets.Dropdown(options=overview.indicator_options(table), value=indicators_to_show[0],
                                    description="指標")
    year_dd = widgets.Dropdown(options=years, value=fy, description="年度")
    output = widgets.Output()

    def redraw(_=None):
        with output:
            clear_output(wait=True)
            for fig in overview.indicator_views(ctx, table, area_table, layers, indicator_dd.value, year_dd.value,
                                                map_value, std_note, ref_label).values():
                display(fig)

    indicator_dd.observe(redraw, names="value")
    year_dd.observe(redraw, names="value")
    display(widgets.HBox([indicator_dd, year_dd]), output)
    redraw()'''),
    md("## 出力\n\n委員会用の表（秘匿処理済み）は CSV（Excel で開けます）と1つの Excel ファイルに、図は PNG（300 dpi）と PDF に保存しました。"),
    code('''\
xlsx = ctx.finish()
print(f"出力フォルダ: {ctx.out_dir}")
print(f"Excel: {xlsx.name if xlsx else 'なし'}　表: {', '.join(ctx.tables)}")'''),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell.id = f"overview-{i:02d}"
    return nb


if __name__ == "__main__":
    write_notebook(build(), OUT)

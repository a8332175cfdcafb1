"""Generate notebooks/05_evaluation.ipynb (目標設定・評価指標・事業評価) with nbformat, without outputs.

Run: .venv/bin/python scripts/make_05_evaluation.py
All computation lives in hsutils.evaluation; the notebook only calls it and shows the results.
"""
from pathlib import Path

import nbformat
from _notebook_file import write_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "05_evaluation.ipynb"

PARAMETERS = '''\
# パラメータ（一括実行では hsutils batch がこのセルの値を上書きします）
muni_code = "17201"            # 市町村コード（5桁）。"17" のような2桁は県全体
muni_name = None               # 表示名（None ならマスタから）
pref_code = 17
fiscal_year = None             # 分析年度（西暦の年度。2024は令和6年度）。None ならデータの最新年度
fiscal_years = None            # 対象年度のリスト。None ならデータにある全年度
data_dir = None                # 入力データのフォルダ（None なら HSUTILS_DATA_DIR またはデモデータ）
cache_dir = None               # 集計キャッシュのフォルダ
out_dir = None                 # 出力フォルダ（None なら outputs/interactive/...）
suppress_threshold = 10        # この人数未満（1〜9人）は秘匿
reference_area = "pref"        # 比較の基準: "pref"（県）/ "medical_area"（二次医療圏）
standard_population = "H27"    # 年齢調整の標準人口: "H27" / "S60" / "pref"
run_name = "interactive"
interactive = False            # True にすると指標と年度を選べるウィジェットを表示（JupyterLab で手動実行するとき）

# このノートブックのパラメータ
baseline_fy = None             # ベースライン年度（None ならデータの最初の年度）
evaluation_fy = None           # 評価年度（None なら分析年度 fiscal_year、それもなければ最新年度）
targets = "parameters/evaluation_targets_demo.yaml"  # 目標値ファイル（YAML）。市町村の計画の目標値に置き換える
trend_indicators = None        # 推移を見るアウトカム指標のIDのリスト（None なら評価シートのアウトカム指標）
conf = 0.95                    # 信頼区間の水準
'''

INTRO = '''\
# 05 目標設定・評価指標・事業評価

データヘルス計画（第3期）では、すべての保険者が**共通評価指標**（特定健診実施率、特定保健指導実施率、
特定保健指導による対象者の減少率、HbA1c 8.0%以上の者の割合、血圧が保健指導判定値以上の者の割合 など）で
事業を評価し、保健事業支援・評価委員会で助言を受けます。評価は**ストラクチャー（体制）・プロセス（過程）・
アウトプット（実施量）・アウトカム（成果）**の4つの視点で行います。

このノートブックで行うこと（企画時の目標設定・評価指標の設定の支援、事業評価の支援）:

1. **評価シート**: 指標ごとにベースライン・目標値・各年度の値（95%信頼区間つき）・達成率・判定（改善／変化なし／悪化）・県の値。
   判定は「見た目の矢印」ではなく、**差の信頼区間**で行います。印刷用の Excel（A4横）も作ります。
2. **実施率の差はどこにあるか**: 特定健診・特定保健指導の実施率を性・年齢階級別に見て、第4期の目標（市町村国保 60%）まで
   **誰が・何人足りないか**を示します。
3. **特定保健指導の効果**: 指導を終了した人と、対象だったが利用しなかった人の翌年度の変化を比べます（差の差）。
4. **アウトカム指標の推移**（年齢調整）を市町村・二次医療圏・県で比べます。
5. **委員会用の1枚のまとめ**（A4横）。

> 委員会資料の図表には個人を特定できる情報を載せず、1〜9人の人数（と、そこから計算できる値）は「‐」で秘匿しています。
> 比較は支援の必要性を見るためのもので、順位付けではありません。
'''

SETUP = '''\
%matplotlib inline
from IPython.display import Markdown, display

from hsutils import evaluation, indicators, notebook

ctx = notebook.start("05_evaluation", muni_code, fiscal_year, data_dir=data_dir, cache_dir=cache_dir,
                     out_dir=out_dir, suppress_threshold=suppress_threshold, run_name=run_name)
prepared = ctx.prepared
area_name = muni_name or ctx.muni_name
years_in_scope = [y for y in prepared.fiscal_years if fiscal_years is None or y in [int(v) for v in fiscal_years]]
base_fy, eval_fy = evaluation.resolve_years(years_in_scope, baseline_fy, evaluation_fy or ctx.fiscal_year)
plan = evaluation.load_targets(targets, muni_code)
population = "国保 40–74歳（特定健診・特定保健指導の対象）"
display(Markdown(f"**{area_name}**（{muni_code}）　ベースライン: {evaluation.fy_short(base_fy)}　"
                 f"評価年度: {evaluation.fy_short(eval_fy)}　目標値ファイル: `{plan.source}`"))
'''

TARGETS_MD = '''\
## 1. 目標値と評価の枠組み

目標値ファイル（YAML）に、指標ごとの目標値（%）、市町村独自の指標とその区分、データでは測れない
ストラクチャー・プロセスの項目（体制・過程）を書きます。実施率の目標は第4期の市町村国保の目標（特定健診 60%、
特定保健指導 60%）が既定です。下の表は今回使う目標値です。
'''

TARGETS_CODE = '''\
target_table = evaluation.targets_table(plan)
display(target_table)
'''

SHEET_MD = '''\
## 2. 評価シート

- **値**は粗率（%）、括弧内は95%信頼区間（Wilson法）です。
- **判定**は、評価年度とベースライン年度の**差の95%信頼区間**（Newcombe法）が0をまたがなければ「改善」または「悪化」
  （指標の方向：高いほど良い／低いほど良い による）、またげば「変化なし」です。
- **達成率**は、高いほど良い指標（実施率・減少率）は「現状値 ÷ 目標値 × 100」、低いほど良い指標は
  「（現状値 − ベースライン）÷（目標値 − ベースライン）× 100」（目標までに計画した変化のうち、どれだけ進んだか）です。
  目標値がない、または目標値がベースラインと同じときは空欄です。
- **減少率**（特定保健指導対象者の減少率、メタボ該当者・予備群の減少率）は前年度との比較なので、最初の年度は算出できず、
  ベースラインはその翌年度になります。特定保健指導対象者の減少率は「前年度の特定保健指導終了者で今年度も受診した者のうち、
  今年度は対象者でない者（服薬中を含む）の割合」としています（DOMAIN §7.3、暫定定義）。
'''

SHEET_CODE = '''\
sheet = evaluation.evaluation_sheet(prepared, muni_code, plan, base_fy, eval_fy, reference_area=reference_area,
                                    suppress_threshold=suppress_threshold, conf=conf)
sheet_shown = ctx.save_table(sheet, "evaluation_sheet")  # already suppressed by the library
printed = evaluation.sheet_for_print(sheet_shown)
xlsx = evaluation.write_sheet_xlsx(
    printed, ctx.out_dir / "tables" / "evaluation_sheet.xlsx",
    title=f"{area_name} データヘルス計画 評価シート（{evaluation.fy_short(base_fy)}〜{evaluation.fy_short(eval_fy)}）",
    footer_text=ctx.footer(population, fy=(base_fy, eval_fy)), suppress_threshold=suppress_threshold)
print(f"印刷用の評価シート（A4横）: {xlsx.name}")
display(printed)
'''

SHEET_POINTS = '''\
### 読み取りのポイント

- まず**判定**の列を見ます。「改善」「悪化」は偶然の変動では説明しにくい変化です。「変化なし」は
  「変わっていない」ことの証明ではなく、**この人数では変化を確かめられない**という意味です（小さな町では区間が広くなります）。
- **達成率**は目標までの距離です。判定が「変化なし」でも達成率が100%に近ければ目標水準にあります。
- **県の値**と比べて大きく離れている指標は、次の計画で重点にする候補です（県との比較列は年齢構成をそろえた標準化比による判定）。
- ストラクチャー・プロセスの行は目標値ファイルの記入内容です。アウトカムが動かないとき、体制・過程のどこに原因があるかを
  話し合う材料にします。

このシートの結果:
'''

SHEET_SUMMARY = '''\
print(evaluation.sheet_summary_text(sheet_shown))
'''

PART_MD = '''\
## 3. 特定健診・特定保健指導の実施率：目標との差はどこにあるか

性・年齢階級ごとの実施率と、第4期の目標（市町村国保 60%）に届くために**あと何人**の実施が必要かを示します。
特定保健指導は人数が少ないため、階層化と同じ 40–64歳／65–74歳 の2区分で集計しています。
'''

PART_CODE = '''\
part = evaluation.participation_by_sex_age(prepared, muni_code, years_in_scope, plan.targets,
                                           conf=conf, suppress_threshold=suppress_threshold)
part_shown = ctx.save_table(part, "participation_by_sex_age")
for ind in evaluation.PARTICIPATION_INDICATORS:
    foot = ctx.footer(population, "性・年齢階級別", fy=(years_in_scope[0], years_in_scope[-1]))
    display(ctx.save_figure(evaluation.participation_heat_figure(part_shown, ind, foot,
                                                                 suppress_threshold=suppress_threshold),
                            f"{ind}_heat"))
'''

PART_POINTS = '''\
### 読み取りのポイント

- 色が薄いほど実施率が低い区分です。多くの市町村で **40–50歳代（特に男性）** が最も低く、年齢とともに上がります。
- 年度を横に見て、特定の区分だけ下がっていないか（例: 災害のあった年度）を確認します。
- 「‐」は対象者または実施者が10人未満で秘匿した区分、または合計から逆算されないよう追加で秘匿した区分です。
'''

GAP_CODE = '''\
for ind in evaluation.PARTICIPATION_INDICATORS:
    foot = ctx.footer(population, "目標は第4期 市町村国保の目標（目標値ファイル）", fy=eval_fy)
    display(ctx.save_figure(evaluation.participation_gap_figure(part_shown, ind, eval_fy, foot,
                                                                suppress_threshold=suppress_threshold),
                            f"{ind}_gap"))
    print(evaluation.participation_gap_text(part_shown, ind, eval_fy))
'''

GAP_POINTS = '''\
### 読み取りのポイント

- オレンジ色の部分が、その区分で**目標の実施率に届くために追加で必要な人数**です。実施率が低くても人数の少ない区分より、
  オレンジ色が長い区分に働きかけると全体の実施率が大きく動きます。
- 未受診者対策（個別の勧奨、休日健診、がん検診との同時実施、かかりつけ医からの情報提供など）の対象を決める材料にします。
'''

EFFECT_MD = '''\
## 4. 特定保健指導の効果（参加者と非参加者の比較）

年度 t に特定保健指導の対象になった人（国保 40–74歳の健診受診者）を、**指導を終了した人（参加者）**と
**利用しなかった人（非参加者）**に分け、翌年度 t+1 の健診までの変化を比べます（初回面接を受けたが終了しなかった人は除外）。
両年度に健診を受けた人だけが対象です。**R4→R5 と R5→R6 の組をまとめて（プールして）集計**しています
（同じ人が2つの組に入ることがあります）。

- 体重・腹囲・HbA1c・収縮期血圧・中性脂肪: 変化の平均の差（参加者 − 非参加者、**差の差**）と95%信頼区間（Welch の t 法）。
  マイナスは参加者の方がより下がった（改善した）ことを示します。
- 特定保健指導対象者の減少率（翌年度に対象者でなくなった割合、服薬中を含む）と、メタボ該当者・予備群の減少率
  （t 年度に該当者・予備群だった人のうち翌年度に非該当の割合）: 割合の差と95%信頼区間（Newcombe法）。
'''

EFFECT_CODE = '''\
pairs = evaluation.guidance_pairs(prepared.person_year, muni_code, years_in_scope)  # person-level: not displayed
display(ctx.save_table(evaluation.pair_counts(pairs, suppress_threshold), "guidance_effect_pairs"))
effect = ctx.save_table(evaluation.guidance_effect(pairs, conf=conf, suppress_threshold=suppress_threshold),
                        "guidance_effect")
display(effect)
foot = ctx.footer("特定保健指導の対象者（国保 40–74歳、両年度に健診受診）", "年度の組をプール",
                  fy=(years_in_scope[0], years_in_scope[-1]))
display(ctx.save_figure(evaluation.guidance_change_figure(
    pairs, f"{area_name}: 特定保健指導の参加者と非参加者の翌年度までの変化", foot,
    suppress_threshold=suppress_threshold), "guidance_effect_change"))
print(evaluation.effect_summary_text(effect))
'''

EFFECT_POINTS = '''\
### 読み取りのポイント

- **参加者と非参加者は無作為に分けた集団ではありません。** 指導を受ける人はもともと健康への関心が高い、
  生活を変えやすい状況にある、といった違いがあり（**選択バイアス**）、また前の年に値が高かった人は翌年は下がりやすい
  （**平均への回帰**）ため、ここでの差がすべて指導の効果とは言えません。効果の「目安」として読み、
  指導の方法（初回面接の時期、継続支援の回数など）の見直しの材料にしてください。
- 差の信頼区間が0をまたぐ項目は、この人数では差を確かめられません。人数が少ない町では、複数年度をまとめる、
  県全体で見るなどの工夫が必要です。
- 箱ひげ図は変化のばらつきを示します。参加者の箱全体が0より下にあれば、多くの参加者が改善しています。
'''

TREND_MD = '''\
## 5. アウトカム指標の推移（年齢調整、市町村・二次医療圏・県）

年齢構成の違いをそろえるため、直接法で年齢調整した値（標準人口は `standard_population`、既定は平成27年モデル人口）と
95%信頼区間（Dobson法）を示します。該当者が10人未満の年度は年齢調整値を出していません。
'''

TREND_CODE = '''\
trend_ids = list(trend_indicators) if trend_indicators else evaluation.default_trend_indicators(sheet)
trends = evaluation.outcome_trends(prepared, muni_code, trend_ids, years_in_scope, conf=conf,
                                   std_pop=standard_population)
trends_shown = ctx.save_table(trends, "outcome_trends", count_cols=["分子", "分母"],
                              derived_cols=evaluation.TREND_DERIVED)
for ind in trend_ids:
    foot = ctx.footer("国保 特定健診受診者（40–74歳）", "年齢調整（直接法）", fy=(years_in_scope[0], years_in_scope[-1]))
    display(ctx.save_figure(evaluation.trend_figure(trends, ind, foot, target=plan.targets.get(ind),
                                                    suppress_threshold=suppress_threshold), f"trend_{ind}"))
print(evaluation.trend_summary_text(trends_shown))
'''

TREND_POINTS = '''\
### 読み取りのポイント

- 市町村の線が二次医療圏・県の線と同じ動きなら、地域全体の傾向（検査や受診の状況の変化など）の可能性があります。
  市町村だけが違う動きをしていれば、その市町村の事業や対象者の変化を確認します。
- 縦線（95%信頼区間）が重なっている年度どうしの差は、偶然の変動の範囲かもしれません。
- 破線は目標値ファイルの目標値です（年齢調整値と粗率は少し違うので目安として見てください）。
'''

SUMMARY_MD = '''\
## 6. 委員会用のまとめ（A4横1枚）

評価シートのうち、ベースラインから**有意に改善・悪化した指標**を色で示します（点は差、横線は95%信頼区間）。
'''

SUMMARY_CODE = '''\
foot = ctx.footer(population, "評価年度とベースライン年度の差", fy=(base_fy, eval_fy))
display(ctx.save_figure(evaluation.summary_figure(
    sheet_shown, f"{area_name} データヘルス計画の評価（{evaluation.fy_short(base_fy)}→{evaluation.fy_short(eval_fy)}）",
    foot, eval_fy, suppress_threshold=suppress_threshold), "evaluation_summary"))
'''

SUMMARY_POINTS = '''\
### 読み取りのポイント

- 緑は改善、オレンジは悪化、灰色は変化なし（差の信頼区間が0をまたぐ）です。
- この図は支援の必要性を見るためのもので、市町村の順位付けではありません。人数の少ない市町村ほど区間が広く、
  「変化なし」になりやすいことに注意してください。
'''

INTERACTIVE_MD = '''\
## 7. 指標と年度を選んで確認する（JupyterLab で `interactive = True` にしたとき）

指標と2つの年度を選ぶと、その間の変化と判定、年齢調整値の推移を表示します。
'''

INTERACTIVE_CODE = '''\
if interactive:
    import ipywidgets as widgets

    options = [(indicators.REGISTRY[i].name, i) for i in sheet["指標ID"].dropna().unique()]
    year_options = [(evaluation.fy_short(y), y) for y in years_in_scope]

    @widgets.interact(indicator=widgets.Dropdown(options=options, description="指標"),
                      years=widgets.SelectionRangeSlider(options=year_options, index=(0, len(year_options) - 1),
                                                         description="年度"))
    def show_indicator(indicator, years):
        display(evaluation.change_for_indicator(prepared, muni_code, indicator, years[0], years[1], conf=conf,
                                                suppress_threshold=suppress_threshold))
        t = evaluation.outcome_trends(prepared, muni_code, [indicator], [y for y in years_in_scope
                                                                         if years[0] <= y <= years[1]],
                                      conf=conf, std_pop=standard_population)
        display(evaluation.trend_figure(t, indicator, ctx.footer(population, fy=(years[0], years[1])),
                                        target=plan.targets.get(indicator), suppress_threshold=suppress_threshold))
'''

FINISH_CODE = '''\
xlsx_all = ctx.finish()
print(f"出力フォルダ: {ctx.out_dir}")
'''


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    params = new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        new_markdown_cell(INTRO),
        new_code_cell(SETUP),
        new_markdown_cell(TARGETS_MD), new_code_cell(TARGETS_CODE),
        new_markdown_cell(SHEET_MD), new_code_cell(SHEET_CODE),
        new_markdown_cell(SHEET_POINTS), new_code_cell(SHEET_SUMMARY),
        new_markdown_cell(PART_MD), new_code_cell(PART_CODE), new_markdown_cell(PART_POINTS),
        new_code_cell(GAP_CODE), new_markdown_cell(GAP_POINTS),
        new_markdown_cell(EFFECT_MD), new_code_cell(EFFECT_CODE), new_markdown_cell(EFFECT_POINTS),
        new_markdown_cell(TREND_MD), new_code_cell(TREND_CODE), new_markdown_cell(TREND_POINTS),
        new_markdown_cell(SUMMARY_MD), new_code_cell(SUMMARY_CODE), new_markdown_cell(SUMMARY_POINTS),
        new_markdown_cell(INTERACTIVE_MD), new_code_cell(INTERACTIVE_CODE),
        new_code_cell(FINISH_CODE),
    ]
    return nb


if __name__ == "__main__":
    write_notebook(build(), OUT, id_prefix="nb05")

"""Generate notebooks/04_nephropathy.ipynb (糖尿病性腎症重症化予防) with nbformat, without outputs.

Run: .venv/bin/python scripts/make_04_nephropathy.py
All computation lives in hsutils.nephropathy (and hsutils.programs); the notebook only calls and shows.
"""
from pathlib import Path

import nbformat
from _notebook_file import write_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "04_nephropathy.ipynb"

PARAMETERS = '''\
# パラメータ（一括実行では hsutils batch がこのセルの値を上書きします）
muni_code = "17201"            # 市町村コード（5桁）。"17" のような2桁は県全体
muni_name = None               # 表示名（None ならマスタから）
pref_code = 17
fiscal_year = None             # 分析年度（西暦の年度。2024は令和6年度）。None ならデータの最新年度
fiscal_years = None            # 推移を見る年度のリスト。None ならデータにある全年度
data_dir = None                # 入力データのフォルダ（None なら HSUTILS_DATA_DIR またはデモデータ）
cache_dir = None               # 集計キャッシュのフォルダ
out_dir = None                 # 出力フォルダ（None なら outputs/interactive/...）
suppress_threshold = 10        # この人数未満（1〜9人）は秘匿
reference_area = "pref"        # 比較の基準（このノートブックでは県）
standard_population = "H27"
run_name = "interactive"
interactive = False            # True にすると、しきい値を変えられるウィジェットを表示（JupyterLab で手動実行するとき）

# 抽出条件（DOMAIN §5。既定値は hsutils.programs.NephropathyParams と同じ）
target_insurance = "国保"      # 対象の保険: "国保" / "後期" / "全体"
hba1c_threshold = 6.5          # 糖尿病型: HbA1c（%）以上
glucose_threshold = 126        # 糖尿病型: 空腹時血糖・随時血糖（mg/dL）以上
egfr_threshold = 60            # 腎障害: eGFR 未満（30にすると第4期の厳しい基準）
urine_protein_threshold = "±"  # 腎障害: 尿蛋白 以上（"1+"にすると第3期の厳しい基準）
include_kidney_claims = True   # 腎疾患のレセプトも腎障害に含める
interruption_window_months = 6 # 治療中断: 直近この月数に糖尿病のレセプトがない
lookback_months = 36           # 治療中断: さかのぼる月数（この間に糖尿病のレセプトがある）
exclude_dialysis = True        # 人工透析中の人は対象から除く
checklist_path = None          # 宣言2 自己点検の YAML（None なら parameters/nephropathy_checklist_demo.yaml）
'''

INTRO = '''\
# 04 糖尿病性腎症重症化予防

人工透析の医療費は年間約1.57兆円にのぼり、その主な原因は糖尿病性腎症です。
糖尿病性腎症重症化予防プログラム（令和6年3月改定）では、健診とレセプトから
**腎機能が低下しているのに治療を受けていない人・治療を中断した人**を見つけて医療機関への受診を勧め（受診勧奨）、
**治療中の人にはかかりつけ医と連携して保健指導**を行います。

このノートブックで行うこと:

1. **概数把握**（KDB のフローチャートと同じ考え方）: 健診受診者 → 糖尿病 → 腎障害あり／なし → 治療中・未治療・治療中断、
   健診を受けていない治療中・治療中断の人
2. **CKD 重症度分類のヒートマップ**（健診受診者全体と糖尿病の人）
3. **受診勧奨・保健指導の対象者**の地区別・年齢別・男女別の人数と、対象者リスト（**個人情報：confidential フォルダにのみ保存**）
4. **経年変化**（HbA1c 8.0%以上、eGFR 45未満、尿蛋白 1+以上、未治療、治療中断、新規透析）を県と比較
5. **他市町との比較**（ファンネルプロット）
6. **取組の自己点検**（日本健康会議 宣言2 の5要件）

対象者の区分（DOMAIN §5.3）: A 腎障害あり・未治療／治療中断 → 受診勧奨、B 腎障害あり・治療中 → 保健指導、
C 糖尿病・腎障害なし・未治療／治療中断 → 受診勧奨、D 健診未受診・治療中・腎疾患レセプト → 保健指導、
E 健診未受診・治療中断（レセプトのみ）→ 受診勧奨。

> 委員会資料の図表には個人を特定できる情報を載せず、1〜9人の人数（と、そこから計算できる値）は「‐」で秘匿しています。
> 対象者リストは支援のための名簿で、出力フォルダの `confidential/` にだけ保存され、このレポートには表示しません。
'''

SETUP = '''\
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from hsutils import nephropathy as nep
from hsutils import notebook, plots

ctx = notebook.start("04_nephropathy", muni_code, fiscal_year, data_dir=data_dir, cache_dir=cache_dir,
                     out_dir=out_dir, suppress_threshold=suppress_threshold, with_tables=True, run_name=run_name)
prepared = ctx.prepared
fy = ctx.fiscal_year
area_name = muni_name or ctx.muni_name
params = nep.nephropathy_params(hba1c=hba1c_threshold, glucose=glucose_threshold, egfr=egfr_threshold,
                                urine_protein=urine_protein_threshold, window_months=interruption_window_months,
                                lookback_months=lookback_months, include_kidney_claims=include_kidney_claims,
                                exclude_dialysis=exclude_dialysis)
rows = nep.area_rows(prepared.person_year, ctx.muni_code, fy, target_insurance)
claims = nep.area_claims(prepared.tables.get("claims_monthly"), rows)
targets = nep.target_frame(rows, claims, fy, params)
population = f"{area_name} {nep.population_label(target_insurance)}"
conditions = nep.criteria_text(params)
print(f"{area_name}（{ctx.muni_code}） {plots.fy_japanese(fy)}  対象: {nep.population_label(target_insurance)} {len(rows):,}人")
print("抽出条件:", conditions)
print("出力フォルダ:", ctx.out_dir)
'''

FLOW = '''\
flow = nep.flow_counts(rows, claims, fy, params)
flow_shown = ctx.save_table(nep.flow_table(flow, ctx.suppress_threshold), "flow_counts", count_cols=["count"])
fig = nep.flow_figure(flow, f"糖尿病性腎症重症化予防 対象者の概数把握（{area_name}）",
                      ctx.footer(population, conditions), ctx.suppress_threshold)
ctx.save_figure(fig, "flow_chart")
display(fig)
plt.close(fig)
display(flow_shown.rename(columns={"step_id": "ID", "step_label": "段階", "count": "人数", "suppressed": "秘匿あり"}))
print(nep.flow_summary(flow, ctx.suppress_threshold))
'''

FLOW_READ = '''\
### 読み取りのポイント（概数把握）

- 左から右へ、健診受診者 → 糖尿病（糖尿病型・血糖の服薬・糖尿病のレセプトのいずれか）→ 腎障害あり／なし → 治療の状況と絞り込みます。
  「前段の○%」は一つ前の箱に対する割合です。
- **未治療・治療中断（A・C・E）が受診勧奨の対象**、**治療中（B・D）がかかりつけ医と連携した保健指導の対象**です。
  特に A（腎障害あり・未治療／治療中断）は優先度が高い層です。
- 治療中断は「過去のさかのぼり期間に糖尿病のレセプトがあり、直近のパラメータの月数（既定6か月）にない」人です。月数を変えると人数が変わります。
- 健診を受けていない人（下段の箱）は検査値がわからないため、レセプトの情報だけで判断しています。健診の受診勧奨と合わせて考えます。
- 上のセルの出力に、この市町の人数を文章で示しています（秘匿した人数は「‐」）。
'''

CKD = '''\
ckd = nep.ckd_counts(targets)
ckd_shown = ctx.save_table(nep.ckd_table(ckd, ctx.suppress_threshold), "ckd_heatmap", count_cols=["count"])
for pop, name in ((nep.POP_ALL, "ckd_heatmap_all"), (nep.POP_DIABETES, "ckd_heatmap_diabetes")):
    if ckd.loc[ckd["population"] == pop, "count"].sum() == 0:
        print(f"{pop}: eGFR と尿蛋白の両方を測定した人がいないため、ヒートマップは作成しません。")
        continue
    fig = plots.ckd_heatmap(ckd[ckd["population"] == pop], f"CKD重症度分類（{pop}・{area_name}）",
                            ctx.footer(f"{population}のうち{pop}（eGFR・尿蛋白とも測定）", "eGFRは日本腎臓学会の式"),
                            suppress_threshold=ctx.suppress_threshold)
    ctx.save_figure(fig, name)
    display(fig)
    plt.close(fig)
print(nep.ckd_summary(ckd, ctx.suppress_threshold))
'''

CKD_READ = '''\
### 読み取りのポイント（CKD 重症度分類）

- 縦が eGFR 区分（G1〜G5、下ほど腎機能が低い）、横が尿蛋白区分（A1〜A3、健診の尿蛋白定性で代用）です。
  色は日本腎臓学会の CKD 重症度分類のリスク（緑 < 黄 < 橙 < 赤）です。
- **橙・赤のマスにいる人**、特に治療を受けていない人は、腎臓専門医への紹介も含めた受診勧奨の優先対象です。
- 糖尿病の人のヒートマップで右下（尿蛋白が陽性、eGFR が低い）が多いほど、腎症の進んだ人が多いことを示します。
- ヒートマップの合計は「健診で eGFR と尿蛋白の両方を測定した人」です（クレアチニンを測定していない市町では少なくなります）。
'''

TARGETS = '''\
totals_hidden = nep.target_totals_hidden(flow, ctx.suppress_threshold)
counts_shown = ctx.save_table(nep.target_counts(targets, prepared.districts, prepared.municipalities,
                                                ctx.suppress_threshold, totals_hidden),
                              "target_counts", count_cols=["referral", "guidance"])
display(counts_shown.rename(columns={"axis": "区分", "category": "分類", "referral": nep.REFERRAL,
                                     "guidance": nep.GUIDANCE, "suppressed": "秘匿あり"}))
place_axis = "市町" if nep.is_prefecture(ctx.muni_code) else "地区"
if (counts_shown["axis"] == place_axis).any():
    fig = plots.heat_table(nep.target_heat_frame(counts_shown, place_axis), place_axis, "区分", "count",
                           f"受診勧奨・保健指導の対象者数（{place_axis}別・{area_name}）",
                           ctx.footer(population, conditions), fmt="{:,.0f}", count_col="count",
                           suppress_threshold=ctx.suppress_threshold)
    ctx.save_figure(fig, "target_counts_by_area")
    display(fig)
    plt.close(fig)
else:
    print("地区のデータがないため、地区別の図は作成しません。")

# 地区別の未治療の割合（糖尿病型のうち）: 人数でなく割合で、市全体と比べる
if not nep.is_prefecture(ctx.muni_code):
    dist, muni_rate = nep.district_indicator(prepared, ctx.muni_code, "dm_untreated", fy)
    if len(dist):
        dist_shown = ctx.save_table(dist, "district_untreated", count_cols=["numerator", "denominator"],
                                    derived_cols=["value", "lower", "upper", "comparison"])
        fig = plots.ranked_bar(dist, "value", "lower", "upper", muni_rate,
                               f"糖尿病型の未治療者の割合（地区別・{area_name}）",
                               ctx.footer("国保 特定健診受診者のうち糖尿病型（40–74歳）", "基準は市全体"),
                               label_col="area_name", polarity="lower_better", count_col="numerator",
                               x_label="割合（%）", benchmark_label=f"{area_name}全体",
                               suppress_threshold=ctx.suppress_threshold)
        ctx.save_figure(fig, "district_untreated")
        display(fig)
        plt.close(fig)
        print(nep.district_summary(dist, ctx.suppress_threshold))

# 対象者リスト（個人情報）: confidential/ にだけ保存し、レポートには表示しない
referral_list = nep.target_list(targets, "referral", params, prepared.districts)
guidance_list = nep.target_list(targets, "guidance", params, prepared.districts)
ctx.save_confidential(referral_list, "referral_list")
ctx.save_confidential(guidance_list, "guidance_list")
print(f"受診勧奨の対象者リスト（{len(referral_list):,}人）と保健指導の対象者リスト（{len(guidance_list):,}人）を"
      f" {ctx.out_dir / 'confidential'} に保存しました（このレポートには表示しません）。")
'''

TARGETS_READ = '''\
### 読み取りのポイント（対象者数と対象者リスト）

- 地区・年齢階級・男女別に、受診勧奨（A・C・E）と保健指導（B・D）の対象者数を示しています。
  人数の多い地区から訪問や通知の計画を立てる目安になります。1〜9人のセルと、計から差し引きでわかってしまうセルは「‐」です。
- 地区別の**未治療の割合**（糖尿病型のうち、横棒と95%信頼区間）は、人数ではなく割合で市全体と比べたものです。
  市全体より有意に高い地区は、受診勧奨や医療機関との連携を重点的に行う候補です（上のセルの出力に地区名を示しています）。
- **対象者リスト**（`confidential/referral_list.csv`・`guidance_list.csv` と xlsx）には、抽出の根拠になった値
  （HbA1c、空腹時血糖、eGFR、尿蛋白、治療の状況、区分 A〜E）と最後に糖尿病のレセプトがあった月（last_dm_ym）が入っています。
  個人情報なので、庁内の決められた場所で管理し、委員会資料やメールに貼り付けないでください。
- リストはレセプトの病名情報で判断しているため、実際の受診状況は本人やかかりつけ医に確認してから支援に入ります。
'''

TRENDS = '''\
trend = nep.trend_table(prepared, ctx.muni_code, fiscal_years)
trend_shown = ctx.save_table(trend, "trends", count_cols=["numerator", "denominator"],
                             derived_cols=["value", "lower", "upper"])
for ind in pd.unique(trend["indicator_id"]):  # six indicators
    t = trend[trend["indicator_id"] == ind]
    name = t["indicator_name"].iloc[0]
    if not nep.trend_plottable(t, ctx.suppress_threshold):
        print(f"{name}: どの年度も人数が少ない（{ctx.suppress_threshold}人未満）ため、図は作成しません。")
        continue
    fig = plots.trend_chart(t, series_col="area_name", title=f"{name}の推移（{area_name}と県）",
                            footer=ctx.footer("国保 特定健診対象者（40–74歳）", None, fy=(int(t["fy"].min()), int(t["fy"].max()))),
                            count_col="numerator", value_fmt="{:.2f}" if ind == "new_dialysis" else "{:.1f}",
                            y_label="割合（%）", suppress_threshold=ctx.suppress_threshold)
    ctx.save_figure(fig, f"trend_{ind}")
    display(fig)
    plt.close(fig)
print(nep.trend_summary(trend, area_name if not nep.is_prefecture(ctx.muni_code) else "", ctx.suppress_threshold))
'''

TRENDS_READ = '''\
### 読み取りのポイント（経年変化）

- 線は割合、帯は95%信頼区間です。当該市町の帯が県の線から離れていれば、偶然とは考えにくい差です。人数が少ない年は点を表示していません。
- **HbA1c 8.0%以上**（糖尿病型のうち）はコントロール不良の人の割合、**eGFR 45未満・尿蛋白 1+以上**（糖尿病の人のうち）は腎症の進行の目安、
  **未治療**（糖尿病型のうち）・**治療中断**（糖尿病の人のうち）は受診勧奨の対象の多さ、**新規人工透析**は事業の最終的な成果（アウトカム）の指標です。
- 新規透析は人数が少なく年ごとの変動が大きいため、複数年をまとめて見ます。
- 推移と他市町比較は、データ準備の段階で既定の抽出条件（HbA1c 6.5%、血糖126、治療中断6か月）で計算した値です。
- 上のセルの出力に、最新年度の当該市町と県の比較を文章で示しています。
'''

FUNNEL = '''\
funnel_tables = []
for ind, label in (("dm_untreated", "糖尿病型の未治療者の割合"), ("dm_hba1c8", "糖尿病型のうち HbA1c 8.0%以上")):
    f, target = nep.funnel_frame(prepared, ind, fy)
    fig = nep.funnel_figure(f, target, f"{label}（市町比較・{plots.fy_japanese(fy)}）",
                            ctx.footer("国保 特定健診受診者のうち糖尿病型（40–74歳）", "県内全市町"),
                            highlight=None if nep.is_prefecture(ctx.muni_code) else ctx.muni_code,
                            y_label=label, threshold=ctx.suppress_threshold)
    ctx.save_figure(fig, f"funnel_{ind}")
    display(fig)
    plt.close(fig)
    print(f"【{label}】")
    print(nep.funnel_summary(f, ctx.muni_code, ctx.suppress_threshold))
    funnel_tables.append(nep.funnel_table(f, ind))
funnel_shown = ctx.save_table(pd.concat(funnel_tables, ignore_index=True), "funnel",
                              count_cols=["numerator", "denominator"], derived_cols=["rate", "funnel"])
'''

FUNNEL_READ = '''\
### 読み取りのポイント（他市町との比較）

- 横軸は分母の人数、縦軸は割合です。破線（95%）・点線（99.8%）の「じょうご」の外にある市町は、人数の差では説明しにくい差があります。
  オレンジの丸で囲んだ点が当該市町です。
- 人数の少ない町ほど割合が大きくぶれるため、順位ではなく**限界の外かどうか**で判断します（順位付けのための図ではありません）。
- 未治療の割合が高い市町は受診勧奨の強化、HbA1c 8.0%以上が高い市町は治療中の人への保健指導やかかりつけ医との連携の強化が検討課題です。
- 1〜9人の市町の点は表示していません。
'''

CHECK = '''\
checklist = nep.load_checklist(checklist_path)
check = nep.checklist_table(checklist)
check_shown = ctx.save_table(check.drop(columns=["key"]), "checklist")
with pd.option_context("display.max_colwidth", None):
    display(check_shown)
verdict = nep.checklist_verdict(check)
display(Markdown(f"**{verdict}**"))
'''

CHECK_READ = '''\
### 読み取りのポイント（宣言2 の5要件の自己点検）

- 日本健康会議 宣言2（かかりつけ医等と連携した生活習慣病の重症化予防）の達成要件です。
  **①〜④は必須**、**⑤は糖尿病性腎症重症化予防の取組では必須**です。
- 「不足」の行が、次年度までに整える体制の課題です。例えば④が不足なら、受診勧奨後の受診率・検査値の変化・新規透析の推移
  （このノートブックの経年変化）を評価計画に入れます。
- 点検の内容は市町村の担当者が `parameters/nephropathy_checklist_demo.yaml` と同じ形式の YAML に記入し、パラメータ `checklist_path` で指定します。
'''

INTERACTIVE_MD = '''\
## しきい値を変えて試す（interactive = True のときだけ）

HbA1c・血糖・eGFR・尿蛋白の基準と治療中断の月数を変えると、概数把握の人数がすぐに更新されます。
委員会資料には、上のパラメータで作成した図表を使ってください。
'''

INTERACTIVE = '''\
if interactive:
    display(nep.flow_explorer(rows, claims, fy, params, ctx.suppress_threshold))
'''

FINISH = '''\
xlsx = ctx.finish()
print("表の Excel ファイル:", xlsx)
'''


def build() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(INTRO),
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_markdown_cell("## データの準備\n\n共通の集計キャッシュを読み込み、当該市町・年度・保険の対象者と、その人のレセプトを取り出します。"
                          "抽出条件を変えたときは、ここで対象者の区分を計算し直します。"),
        new_code_cell(SETUP),
        new_markdown_cell("## 1. 対象者の概数把握（フローチャート）"),
        new_code_cell(FLOW),
        new_markdown_cell(FLOW_READ),
        new_markdown_cell("## 2. CKD 重症度分類（健診受診者全体と糖尿病の人）"),
        new_code_cell(CKD),
        new_markdown_cell(CKD_READ),
        new_markdown_cell("## 3. 受診勧奨・保健指導の対象者"),
        new_code_cell(TARGETS),
        new_markdown_cell(TARGETS_READ),
        new_markdown_cell("## 4. 経年変化（県との比較）"),
        new_code_cell(TRENDS),
        new_markdown_cell(TRENDS_READ),
        new_markdown_cell("## 5. 他市町との比較（ファンネルプロット）"),
        new_code_cell(FUNNEL),
        new_markdown_cell(FUNNEL_READ),
        new_markdown_cell("## 6. 取組の自己点検（日本健康会議 宣言2 の5要件）"),
        new_code_cell(CHECK),
        new_markdown_cell(CHECK_READ),
        new_markdown_cell(INTERACTIVE_MD),
        new_code_cell(INTERACTIVE),
        new_markdown_cell("## 出力の保存"),
        new_code_cell(FINISH),
    ]
    for i, cell in enumerate(cells):  # stable ids keep the generated file reviewable in diffs
        cell["id"] = f"nb04-{i:02d}"
    nb = new_notebook(cells=cells)
    return nb


if __name__ == "__main__":
    write_notebook(build(), OUT)

"""Generate notebooks/03_ikkatsu.ipynb (高齢者の保健事業と介護予防の一体的実施) without outputs.

Run: .venv/bin/python scripts/make_03_ikkatsu.py
The notebook is thin: every computation is in hsutils.ikkatsu / hsutils.programs.
"""
from pathlib import Path

import nbformat as nbf
from _notebook_file import write_notebook

NB = Path(__file__).resolve().parents[1] / "notebooks" / "03_ikkatsu.ipynb"
cells = []


def md(text: str):
    cells.append(nbf.v4.new_markdown_cell(text.strip("\n")))


def code(text: str, tags=None):
    c = nbf.v4.new_code_cell(text.strip("\n"))
    if tags:
        c.metadata["tags"] = list(tags)
    cells.append(c)


md("""
# 03 高齢者の保健事業と介護予防の一体的実施

後期高齢者（75歳以上）の健診・レセプト・介護認定・後期高齢者の質問票から、KDB活用支援ツールと同じ抽出基準（DOMAIN §6.1）で
優先的に支援する人を抽出し、地区別の状況・基準の重なり・質問票の特徴をまとめます。
""")

code("""
# パラメータ（一括実行では papermill が上書きします）
muni_code = "17201"           # 市町村コード（5桁）
muni_name = None              # 市町村名（省略時は市町村マスタから）
pref_code = 17                # 都道府県コード
fiscal_year = None            # 分析年度（西暦の年度。None はデータの最新年度）
fiscal_years = None           # 対象年度のリスト（一括実行から渡されます）
data_dir = None               # 入力データのフォルダ（None は環境変数またはデモデータ）
cache_dir = None              # 集計キャッシュのフォルダ
out_dir = None                # 出力フォルダ（一括実行から渡されます）
suppress_threshold = 10       # この人数未満（1〜9人）の集計値は秘匿
reference_area = "pref"       # 比較の基準: pref（県）/ medical_area（二次医療圏）
standard_population = "H27"   # 年齢調整の標準人口
run_name = "interactive"      # 実行名
interactive = False           # True: しきい値を変えるウィジェットを表示（JupyterLab で手動実行するとき）
conf = 0.95                   # 信頼区間の水準

# 抽出基準のしきい値（既定値 = KDB活用支援ツール、DOMAIN §6.1）
min_age = 75                  # 対象年齢（後期高齢者の75歳以上）
bmi_max = 20.0                # 低栄養: BMI この値以下
drugs_threshold = 15          # 服薬（多剤）: 1か月の処方薬剤数この値以上（厳しめの例: 20）
hba1c_poor = 8.0              # コントロール不良: HbA1c この値以上（%）
sbp_poor = 160                # コントロール不良: 収縮期血圧この値以上（mmHg）
dbp_poor = 100                # コントロール不良: 拡張期血圧この値以上（mmHg）
hba1c_frailty = 7.0           # 基礎疾患保有＋フレイル: HbA1c この値以上（%）
egfr_kidney = 45.0            # 腎機能不良未受診: eGFR この値未満
urine_protein_kidney = 2      # 腎機能不良未受診: 尿蛋白（0 −, 1 ±, 2 1+, 3 2+, 4 3+）この値以上
interruption_window_months = 6     # 治療中断: 直近この月数にレセプトなし（DOMAIN §5.4, P）
interruption_lookback_months = 36  # 治療中断: さかのぼる月数
frailty_domains = ["運動・転倒", "口腔機能", "社会参加", "体重変化", "認知機能"]  # 地区別に見る質問票の領域
""", tags=["parameters"])

md("""
## この分析について（一体的実施の支援パターン）

令和2年度から、市町村は後期高齢者の**保健事業と介護予防を一体的に実施**します（高齢者の医療の確保に関する法律）。
取組は2つです。

- **ハイリスクアプローチ**（個別的支援）: 低栄養・口腔・服薬・重症化予防・健康状態不明者の把握など、抽出基準に該当する人への訪問・相談・受診勧奨。
- **ポピュレーションアプローチ**（通いの場等への関与）: 通いの場での健康教育・健康相談、フレイル予防の普及啓発。

このノートブックは、KDB活用支援ツールの抽出条件（DOMAIN §6.1、下の表）で対象者を数え、地区別・県との比較（標準化該当比）、
基準の重なり、質問票の特徴を示し、保健師が使う**優先介入対象者リスト**を作ります。
しきい値はパラメータで変えられます（既定値は DOMAIN §6.1。治療中断の月数は全国統一の定義がないため P = 既定値の提案）。

**個人情報の扱い**: 対象者リスト（被保険者番号を含む）は出力フォルダの `confidential/` にだけ保存し、この報告書（HTML）には人数だけを表示します。
1〜9人の集計値は「‐」で表示します（秘匿、DOMAIN §9）。
""")

code("""
%matplotlib inline
import time

import pandas as pd
from IPython.display import display

from hsutils import ikkatsu, notebook, plots

ctx = notebook.start("03_ikkatsu", muni_code, fiscal_year, data_dir=data_dir, cache_dir=cache_dir,
                     out_dir=out_dir, suppress_threshold=suppress_threshold, with_tables=True,
                     run_name=run_name)
prepared = ctx.prepared
fy = ctx.fiscal_year
th = ctx.suppress_threshold
params = ikkatsu.make_params(
    min_age=min_age, bmi_max=bmi_max, drugs_threshold=drugs_threshold, hba1c_poor=hba1c_poor,
    sbp_poor=sbp_poor, dbp_poor=dbp_poor, hba1c_frailty=hba1c_frailty, egfr_kidney=egfr_kidney,
    urine_protein_kidney=urine_protein_kidney, interruption_window_months=interruption_window_months,
    interruption_lookback_months=interruption_lookback_months)
ref_strata, ref_label = ikkatsu.reference_strata(prepared.strata, prepared.municipalities, ctx.muni_code,
                                                  reference_area)
ref_munis = None if ref_strata is prepared.strata else sorted(set(ref_strata["muni_code"]))
with_districts = ikkatsu.has_districts(prepared.person_year, fy, ctx.muni_code)
population = f"後期高齢者（{params.min_age}歳以上）"
print(f"{ctx.muni_name}（{ctx.muni_code}） {plots.fy_japanese(fy)}　比較の基準: {ref_label}")
print("抽出基準: " + ("既定値（DOMAIN §6.1）" if ikkatsu.is_default(params) else "既定値から変更あり（再計算します）"))
display(ikkatsu.criteria_definitions(params))
""")

md("## 1. 後期高齢者の状況")

code("""
pyr = ikkatsu.kouki_pyramid(prepared.person_year, fy, ctx.muni_code)
fig = plots.population_pyramid(pyr, f"{ctx.muni_name} 後期高齢者の人口構成（性・年齢階級別）",
                               ctx.footer("後期高齢者 75歳以上（被保険者）"), suppress_threshold=th)
display(ctx.save_figure(fig, "kouki_pyramid"))
""")

code("""
overview = ikkatsu.kouki_overview(prepared.strata, prepared.municipalities, prepared.districts, ctx.muni_code,
                                  fy, ref_strata, ref_label, conf=conf)
overview_shown = ctx.save_table(ikkatsu.suppress_area_table(overview, th, key_col="indicator_id"),
                                "kouki_overview", count_cols=["count", "denominator"])
display(ikkatsu.criteria_display(overview_shown.rename(columns={"indicator_name": "criterion_name"})))
""")

code("""
kaigo = ikkatsu.kaigo_levels(prepared.person_year, fy, ctx.muni_code, ctx.muni_name, prepared.districts,
                             ref_label, ref_munis, grouped=True)
fig = plots.stacked_bars(kaigo, "area", "level", "count", f"{ctx.muni_name} 後期高齢者の要介護（要支援）認定の状況",
                         ctx.footer("後期高齢者 75歳以上", "年度内に有効な認定の最新の要介護度"),
                         category_order=list(dict.fromkeys(ikkatsu.KAIGO_GROUPS.values())), suppress_threshold=th)
display(ctx.save_figure(fig, "kaigo_levels"))
levels = ikkatsu.kaigo_levels(prepared.person_year, fy, ctx.muni_code, ctx.muni_name, None, ref_label, ref_munis)
levels_shown = ctx.save_table(levels, "kaigo_levels", count_cols=["count"])
display(levels_shown.pivot(index="area", columns="level", values="count")
        .reindex(columns=[ikkatsu.NO_KAIGO, *ikkatsu.KAIGO_LEVELS]).rename_axis(index="地域", columns="要介護度"))
""")

md("""
### 読み取りのポイント
- **人口構成**: 85歳以上の割合が高いほど、要介護認定・フレイルの人が多く、訪問による支援の比重が大きくなります。
- **健診受診率・質問票回答率**: 後期高齢者健診と質問票は、抽出基準の多く（低栄養・口腔・フレイル）の入口です。
  回答率が低いと、該当者が「いない」のではなく「把握できていない」可能性があります。
- **要介護認定**: 認定を受けている人は介護保険のサービスにつながっています。健康状態不明者の基準は認定のない人だけが対象です。
- 標準化比は性・年齢構成の違いを調整した比（基準＝1.00）です。下に、この市町村の値を基準と比べた結果を示します。
""")

code("""
for line in ikkatsu.criteria_findings(overview_shown.rename(columns={"indicator_name": "criterion_name"})):
    print(line)
""")

md("## 2. 抽出基準ごとの該当者数と該当率（地区別、県との比較）")

code("""
t0 = time.perf_counter()
flags = ikkatsu.criteria_flags(prepared.person_year, fy, params, prepared.tables)
crit_strata = ikkatsu.criteria_strata(prepared.person_year, flags, params)
crit_ref, _ = ikkatsu.reference_strata(crit_strata, prepared.municipalities, ctx.muni_code, reference_area)
criteria = ikkatsu.criteria_table(crit_strata, prepared.municipalities, prepared.districts, ctx.muni_code, fy,
                                  crit_ref, ref_label, params, conf=conf)
criteria_shown = ctx.save_table(ikkatsu.suppress_area_table(criteria, th), "ikkatsu_criteria",
                                count_cols=["count", "denominator"])
print(f"抽出と集計: {time.perf_counter() - t0:.2f}秒")
view = ikkatsu.criteria_display(criteria_shown)
display(view[view["区分"] != "地区"])
""")

code("""
sr = ikkatsu.sr_chart_frame(ikkatsu.numeric_view(criteria_shown), prefecture=ctx.is_prefecture)
fig = plots.ranked_bar(sr, "sr", "sr_lower", "sr_upper", 1.0,
                       f"{ctx.muni_name} 一体的実施 抽出基準別の標準化該当比（{ref_label}＝1.00）",
                       ctx.footer(population, "性・年齢階級（5歳）で間接法により調整、95%信頼区間"),
                       polarity="lower_better", count_col="count", value_fmt="{:.2f}",
                       x_label="標準化該当比", benchmark_label=ref_label, suppress_threshold=th)
display(ctx.save_figure(fig, "criteria_sr"))
""")

code("""
if with_districts:
    d = ikkatsu.numeric_view(criteria_shown)
    d = d[d["area_level"] == "地区"].assign(rate=lambda x: x["rate"] / 100,
                                            col=lambda x: x["criterion_id"].map(ikkatsu.short_label))
    fig = plots.heat_table(d, "area", "col", "rate", f"{ctx.muni_name} 地区別の該当率（色: {ref_label}との比較）",
                           ctx.footer(population, f"標準化該当比の95%信頼区間で {ref_label} と比較"),
                           fmt="{:.1%}", count_col="count", comparison_col="comparison",
                           polarity="lower_better", suppress_threshold=th, size="a4_landscape")
    display(ctx.save_figure(fig, "criteria_by_district"))
    display(ikkatsu.district_pivot(criteria_shown))
else:
    print("この市町村には地区（日常生活圏域）のデータがないため、地区別の表は作成していません。")
""")

md("""
### 読み取りのポイント
- **該当率**は後期高齢者（年度末75歳以上）のうち基準に該当する人の割合です。**標準化該当比**は、県の性・年齢階級別の該当率を
  当てはめた期待数に対する実際の人数の比で、1.00 より大きく信頼区間が 1.00 を含まなければ「有意に多い」と判断します。
- 口腔・低栄養・フレイルなど質問票に基づく基準は、質問票に回答した人しか該当しません。回答率の低い地域では少なく出ます。
- **健康状態不明者**は健診・医療・介護のどれにもつながっていない人で、訪問による状態把握の対象です。
- 地区の表は人数が少なく信頼区間が広いため、差は「目安」として読みます（1〜9人は「‐」、差し引きで分かる地区も「‐」）。
""")

code("""
for line in ikkatsu.criteria_findings(criteria_shown):
    print(line)
if with_districts:
    for line in ikkatsu.criteria_findings(criteria_shown, area_level="地区"):
        print("地区: " + line)
""")

md("## 3. 基準の重なり（一度の訪問で複数のリスクに対応するために）")

code("""
members = ikkatsu.membership(flags, prepared.person_year, ctx.muni_code, params)
fig = plots.upset_chart(members, f"{ctx.muni_name} 抽出基準の重なり（UpSet図）",
                        ctx.footer(population, "上の棒: 組み合わせごとの人数、左の棒: 基準ごとの人数"),
                        suppress_threshold=th)
display(ctx.save_figure(fig, "criteria_upset"))
""")

code("""
dist = ikkatsu.suppress_parts(ikkatsu.criteria_count_distribution(members), "count", ["share"],
                              total_label="合計", label_col="n_criteria", threshold=th)
dist = ctx.save_table(dist, "criteria_count_distribution", count_cols=["count"], derived_cols=["share"])
display(dist.drop(columns="suppressed").rename(columns={"n_criteria": "該当した基準の数", "count": "人数",
                                                          "share": "割合(%)"}).round(1))
print(f"2つ以上の基準に該当: {dist['count'].iloc[1]}人（一度の訪問で複数のリスクに対応できる人）")
""")

md("""
### 読み取りのポイント
- UpSet図の上の棒は「その組み合わせだけに該当する人数」、左の棒は基準ごとの該当者数です。黒い点が縦につながる組み合わせは、
  **一度の訪問で複数の基準に対応できる人**です（例: 身体的フレイル＋基礎疾患保有＋フレイル → 運動の助言とかかりつけ医との連携を同じ訪問で）。
- 複数の基準に該当する人は優先度が高く、下の対象者リストでは該当数の多い順に並べています。
""")


md("## 4. 後期高齢者の質問票（15項目・10領域）")

code("""
profile = ikkatsu.questionnaire_profile(prepared.person_year, fy, ctx.muni_code, prepared.municipalities,
                                        ref_munis, ref_label, conf=conf, threshold=th)
profile_shown = ctx.save_table(ikkatsu.suppress_profile(profile, th), "questionnaire_profile",
                               count_cols=["count", "respondents"])
foot = ctx.footer("後期高齢者の質問票 回答者（75歳以上）",
                  f"リスク回答の割合(%)。帯は県内市町村の範囲（濃い部分が中央50%）、点の色は {ref_label} との比較（95%信頼区間）")
for kind, name in (("領域", "questionnaire_domains"), ("項目", "questionnaire_items")):
    fig = plots.spine_chart(ikkatsu.spine_frame(ikkatsu.numeric_view(profile_shown), kind),
                            f"{ctx.muni_name} 質問票のリスク回答の割合（{kind}別）", foot,
                            count_col="count", area_label=ctx.muni_name, benchmark_label=ref_label,
                            suppress_threshold=th, size="a4_landscape")
    display(ctx.save_figure(fig, name))
""")

md("""
### 読み取りのポイント
- 各行はリスク回答（例: 健康状態「あまりよくない・よくない」、⑦歩く速度が遅くなった「はい」）の割合です。
  右ほど良い（リスク回答が少ない）向きにそろえています。
- 領域は複数項目のどれかがリスク回答なら該当（例: 口腔機能 = ④または⑤）。**口腔機能・運動・転倒・社会参加**が高い地域は、
  通いの場での口腔体操・運動・交流の場づくり（ポピュレーションアプローチ）の優先度が高くなります。
- 質問票は健診受診者と通いの場の参加者が中心の回答で、回答しない人（より虚弱な人を含む）の状態は反映されません。
""")

code("""
for line in ikkatsu.profile_findings(profile_shown):
    print(line)
""")

md("## 5. 優先介入対象者リスト（保健師用・個人情報）")

code("""
plist = ikkatsu.priority_list(prepared.person_year, flags, fy, ctx.muni_code, params, prepared.districts)
path = ctx.save_confidential(ikkatsu.japanese_headers(plist), "priority_list")
summary = ctx.save_table(ikkatsu.suppress_parts(ikkatsu.priority_summary(plist), threshold=th),
                         "priority_summary", count_cols=["count"])
print(f"いずれかの基準に該当する人: {ikkatsu.count_text(len(plist), th)}人")
display(summary.drop(columns="suppressed").rename(columns={"approach": "推奨アプローチ", "count": "人数"}))
print("対象者リスト（被保険者番号・該当基準・検査値・最終健診年度など）は、出力フォルダの "
      f"confidential/{path.name} と confidential/{path.stem}.xlsx にあります。")
print("この報告書には個人の情報を載せていません。リストは庁内の個人情報の取扱いに従って管理してください。")
""")

md("""
### 読み取りのポイント（推奨アプローチの決め方）
- **ハイリスクアプローチ**: 低栄養、服薬（多剤・睡眠薬）、重症化予防（コントロール不良・治療中断・基礎疾患保有＋フレイル・
  腎機能不良未受診）、健康状態不明者の**いずれか**に該当する人。検査値・服薬・体重減少や、状態が分からないことは個別の確認が必要なためです。
- **ポピュレーションアプローチ**: 口腔・身体的フレイル（質問票だけに基づく基準）**だけ**に該当する人。通いの場での口腔体操・運動・
  健康相談を案内し、必要に応じて個別支援に切り替えます。
- リストは「ハイリスク → 該当数の多い順 → 地区 → 年齢の高い順」に並んでいます。「支援の例」は基準ごとの一般的な支援で、
  かかりつけ医・歯科医・薬剤師・地域包括支援センターと相談して決めてください。
""")

md("## 6. ポピュレーションアプローチ: 地区（通いの場）別のフレイル関連の回答")

code("""
frailty = ikkatsu.district_frailty(prepared.person_year, fy, ctx.muni_code, prepared.districts,
                                   frailty_domains, conf=conf)
if frailty.empty:
    print("この市町村には地区（日常生活圏域）のデータがないため、地区別の比較はできません。"
          "市町村全体の状況は4.の質問票の図を参照してください。地区マスタと対象者の地区コードがあれば地区別に集計できます。")
else:
    frailty_shown = ctx.save_table(ikkatsu.suppress_district_frailty(frailty, th), "frailty_by_district",
                                   count_cols=["count", "respondents"])
    d = ikkatsu.numeric_view(frailty_shown).assign(rate=lambda x: x["rate"] / 100)
    fig = plots.heat_table(d, "area", "item_id", "rate", f"{ctx.muni_name} 地区別 フレイル関連のリスク回答の割合",
                           ctx.footer("後期高齢者の質問票 回答者（75歳以上）",
                                      "色: 市町村全体との比較（95%信頼区間）。地区は通いの場の圏域の目安"),
                           fmt="{:.1%}", count_col="count", comparison_col="comparison",
                           polarity="lower_better", suppress_threshold=th, size="a4_landscape")
    display(ctx.save_figure(fig, "frailty_by_district"))
""")

md("""
### 読み取りのポイント
- 地区ごとに、質問票のフレイル関連領域（運動・転倒、口腔機能、社会参加、体重変化、認知機能）でリスク回答のあった人の割合を、
  市町村全体と比べています。割合が高く色のついた地区は、**通いの場の立ち上げ・テーマ選び（口腔・運動・交流）の優先候補**です。
- 回答者が少ない地区は信頼区間が広く、差が有意になりにくい点に注意してください（1〜9人は「‐」）。
""")

code("""
if not frailty.empty:
    top = ikkatsu.top_districts(frailty_shown, n=3)
    for dom, g in top.groupby("item_id", sort=False):
        items = "、".join(f"{r.area} {r.rate:.1f}%" + ("（有意に高い）" if r.comparison == "有意に高い" else "")
                         for r in g.itertuples())
        print(f"{dom}: {items}")
""")

md("""
## 7. しきい値を変えてみる

しきい値（BMI、薬剤数、HbA1c、血圧、eGFR、中断の月数）を変えると、全県の対象者を数え直します。下のセルは現在のパラメータでの
再計算時間を測ります。`interactive = True` にして JupyterLab で実行すると、スライダーで変えた結果がすぐに表示されます。
""")

code("""
counts, seconds = ikkatsu.threshold_counts(prepared.person_year, prepared.tables, fy, params, ctx.muni_code, th)
print(f"全県の後期高齢者を対象にした再計算: {seconds:.2f}秒")
display(counts)
""")

code("""
if interactive:
    display(ikkatsu.threshold_explorer(prepared.person_year, prepared.tables, fy, ctx.muni_code, params, th))
""")

code("""
xlsx = ctx.finish()
print(f"集計表（Excel）: {xlsx.name if xlsx else 'なし'}")
""")

nb = nbf.v4.new_notebook()
nb.cells = cells
write_notebook(nb, NB, id_prefix="nb03")

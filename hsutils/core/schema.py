"""Canonical input tables: columns, dtypes, units, allowed values, plausible ranges, Japanese labels.

This module is the single definition used by the loader (`hsutils.inputs.io`), the data templates
(`data_templates/`), the data dictionary and the demo generator (`hsutils.demo.synth`).

Plausible ranges follow docs/rules.md §3.2 (sanity bounds, not clinical rules). Code lists follow
docs/rules.md §1.5 (服薬 1 あり / 2 なし), §4.3 (尿蛋白 1 − … 5 3+) and §6.2 (後期高齢者の質問票).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hsutils.core import parallel, vocab

# dtype kinds understood by hsutils.inputs.io:
#   "str"      free text / identifier, kept as string
#   "muni"     municipality code, normalised to 5 digits (6-digit with check digit accepted)
#   "int"      integer (nullable)
#   "float"    number (nullable)
#   "fy"       fiscal year (April start); western or 和暦 (令和6年度, R6, H30 ...) accepted
#   "ym"       year-month as int YYYYMM; 和暦 accepted
#   "date"     calendar date
#   "sex"      1 男 / 2 女
#   "bool"     True/False from 1/0, あり/なし, はい/いいえ, 1/2 (code 2 = なし per docs/rules.md §1.5)
#   "urine"    尿定性 ordinal 0 (−), 1 (±), 2 (1+), 3 (2+), 4 (3+)
#   "category" one of `allowed`
#   "answer"   questionnaire answer code (int) in `allowed`


@dataclass(frozen=True)
class Column:
    name: str
    ja: str
    kind: str
    required: bool = False
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    allowed: tuple = ()
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    ja: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    description: str = ""
    person_level: bool = True

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(*args, **kw) -> Column:
    return Column(*args, **kw)


PERSON = _c("person_id", "被保険者番号", "str", True, description="被保険者番号または仮名化ID",
            aliases=("個人番号", "個人ID", "被保険者証番号"))
MUNI = _c("muni_code", "市町村コード", "muni", True,
          description="全国地方公共団体コード（5桁、または検査数字付き6桁）",
          aliases=("市区町村コード", "自治体コード"))
FY = _c("fy", "年度", "fy", True, lo=2008, hi=2035,
        description="4月始まりの年度。西暦または和暦（令和6年度, R6, H30 など）",
        aliases=("対象年度", "健診年度"))

SEX = _c("sex", "性別", "sex", True, allowed=(1, 2), description="1 男 / 2 女")
AGE = _c("age", "年齢", "int", True, unit="歳", lo=0, hi=120,
         description="年度末（3月31日）時点の年齢（docs/rules.md §1.4）", aliases=("年度末年齢",))

# Questionnaire answer codes (後期高齢者の質問票, docs/rules.md §6.2).
YES_NO = (vocab.YES, vocab.NO)  # 1 はい / 2 いいえ

ENROLLMENT = Table(
    "enrollment", "対象者", (
        PERSON, FY, MUNI,
        _c("district_code", "地区コード", "str", description="地区（日常生活圏域）コード。地区マスタと一致",
           aliases=("地区",)),
        SEX, AGE,
        _c("insurance", "保険種別", "category", True, allowed=vocab.INSURANCE_TYPES,
           description="国保 / 後期（後期高齢者医療）"),
        _c("full_year", "年度継続加入", "bool", False,
           description="年度を通じて資格を継続（法定報告の対象者要件, docs/rules.md §7.1）。省略時は継続扱い",
           aliases=("資格継続",)),
        _c("months", "加入月数", "int", False, unit="か月", lo=1, hi=12,
           description="年度内に資格があった月数（1〜12）。医療費の一人当たりの分母（被保険者年 = 月数÷12, "
                       "docs/rules.md §13.1）。省略時は年度継続加入なら12、それ以外は6とみなす"),
        _c("excluded_statutory", "法定除外", "bool", False,
           description="妊産婦・長期入院等の法定除外者（docs/rules.md §7.1）。省略時は除外なし"),
    ), key=("person_id", "fy"), description="年度ごとの被保険者（国保40–74歳、後期75歳以上）")

KENSHIN = Table(
    "kenshin", "特定健診・後期健診", (
        PERSON, FY, MUNI,
        _c("exam_date", "健診受診日", "date", description="受診日"),
        _c("sex", "性別", "sex", False, allowed=(1, 2), description="1 男 / 2 女（省略時は対象者表から）"),
        _c("age", "年齢", "int", False, unit="歳", lo=0, hi=120, description="年度末年齢（省略時は対象者表から）"),
        _c("height", "身長", "float", unit="cm", lo=100, hi=220),
        _c("weight", "体重", "float", unit="kg", lo=20, hi=250),
        _c("bmi", "BMI", "float", unit="kg/m²", lo=10, hi=70),
        _c("waist", "腹囲", "float", unit="cm", lo=40, hi=200),
        _c("sbp", "収縮期血圧", "float", unit="mmHg", lo=60, hi=300),
        _c("dbp", "拡張期血圧", "float", unit="mmHg", lo=30, hi=200),
        _c("tg", "中性脂肪", "float", unit="mg/dL", lo=10, hi=5000),
        _c("tg_fasting", "中性脂肪空腹時", "bool", description="採血が空腹時（10時間以上絶食）なら 1"),
        _c("hdl", "HDLコレステロール", "float", unit="mg/dL", lo=5, hi=200),
        _c("ldl", "LDLコレステロール", "float", unit="mg/dL", lo=10, hi=600),
        _c("non_hdl", "Non-HDLコレステロール", "float", unit="mg/dL", lo=10, hi=600),
        _c("ast", "AST", "float", unit="U/L", lo=1, hi=5000, aliases=("GOT", "AST(GOT)")),
        _c("alt", "ALT", "float", unit="U/L", lo=1, hi=5000, aliases=("GPT", "ALT(GPT)")),
        _c("ggt", "γ-GT", "float", unit="U/L", lo=1, hi=5000, aliases=("γ-GTP", "γGTP", "GGT")),
        _c("fpg", "空腹時血糖", "float", unit="mg/dL", lo=30, hi=800),
        _c("casual_glucose", "随時血糖", "float", unit="mg/dL", lo=30, hi=800),
        _c("hba1c", "HbA1c", "float", unit="%（NGSP）", lo=3.0, hi=20.0, aliases=("HbA1c(NGSP)",)),
        _c("urine_glucose", "尿糖", "urine", allowed=(0, 1, 2, 3, 4),
           description="−, ±, 1+, 2+, 3+（コード 1–5 も可）"),
        _c("urine_protein", "尿蛋白", "urine", allowed=(0, 1, 2, 3, 4),
           description="−, ±, 1+, 2+, 3+（コード 1–5 も可, docs/rules.md §4.3）"),
        _c("creatinine", "血清クレアチニン", "float", unit="mg/dL", lo=0.1, hi=20),
        _c("egfr", "eGFR", "float", unit="mL/min/1.73m²", lo=1, hi=200,
           description="報告値。クレアチニンがあれば再計算（docs/rules.md §4.1）"),
        _c("hemoglobin", "血色素量", "float", unit="g/dL", lo=3, hi=25, aliases=("ヘモグロビン",)),
        _c("med_bp", "服薬（血圧）", "bool", description="1 あり / 2 なし（docs/rules.md §1.5）"),
        _c("med_glucose", "服薬（血糖）", "bool", description="1 あり / 2 なし"),
        _c("med_lipid", "服薬（脂質）", "bool", description="1 あり / 2 なし"),
        _c("smoking", "喫煙", "bool",
           description="現在たばこを習慣的に吸っている（質問票）。第4期のコード 1 はい / 2 以前は吸っていたが"
                       "最近1ヶ月間は吸っていない / 3 いいえ（2・3 は「なし」）"),
        _c("guidance_level_reported", "保健指導レベル", "category", allowed=(1, 2, 3, 4),
           description="出力値（1 積極的支援, 2 動機付け支援, 3 なし, 4 判定不能, docs/rules.md §1.5）。参考のみ"),
        _c("metabo_reported", "メタボ判定", "category", allowed=(1, 2, 3, 4),
           description="出力値（1 基準該当, 2 予備群該当, 3 非該当, 4 判定不能, docs/rules.md §2.4）。参考のみ"),
    ), key=("person_id", "fy"), description="特定健診（40–74歳）・後期高齢者健診（75歳以上）の結果")

GUIDANCE = Table(
    "guidance", "特定保健指導", (
        PERSON, FY, MUNI,
        _c("level", "支援レベル", "category", True, allowed=vocab.GUIDANCE_PROGRAM_LEVELS,
           description="積極的支援 / 動機付け支援（コード 1/2 も可）"),
        _c("started", "初回面接実施", "bool", True, description="1 あり / 2 なし"),
        _c("completed", "終了", "bool", True, description="実績評価まで終了 1 あり / 2 なし"),
    ), key=("person_id", "fy"), description="特定保健指導の利用・終了")

CLAIMS = Table(
    "claims_monthly", "レセプト（月次集計）", (
        PERSON, MUNI,
        _c("ym", "診療年月", "ym", True, lo=200801, hi=203512, description="YYYYMM。和暦（R6.4 等）も可"),
        _c("diabetes", "糖尿病", "bool", description="糖尿病の傷病名・治療あり"),
        _c("hypertension", "高血圧症", "bool"),
        _c("dyslipidemia", "脂質異常症", "bool"),
        _c("ckd", "腎疾患", "bool", description="慢性腎臓病・糖尿病性腎症等"),
        _c("dialysis", "人工透析", "bool"),
        _c("heart_failure", "心不全", "bool"),
        _c("stroke", "脳血管疾患", "bool"),
        _c("cost_inpatient", "入院医療費", "float", unit="円", lo=0, hi=1e9),
        _c("cost_outpatient", "外来医療費", "float", unit="円", lo=0, hi=1e9),
        _c("cost_dental", "歯科医療費", "float", unit="円", lo=0, hi=1e9),
        _c("cost_pharmacy", "調剤医療費", "float", unit="円", lo=0, hi=1e9),
        _c("n_drugs", "処方薬剤数", "int", unit="種類", lo=0, hi=100),
        _c("n_institutions", "受診医療機関数", "int", unit="機関", lo=0, hi=50),
        _c("hypnotic", "睡眠薬処方", "bool"),
    ), key=("person_id", "ym"), description="人×月のレセプト要約（傷病フラグ・医療費・薬剤数）")

# Finer claims tables (docs/claims_rules.md §5): derived from UKE receipts by hsutils.inputs.claims_rules,
# or supplied as CSV by a user without UKE files.
YM = _c("ym", "診療年月", "ym", True, lo=200801, hi=203512, description="YYYYMM。和暦（R6.4 等）も可")
DIAGNOSES = Table(
    "diagnoses", "傷病名", (
        PERSON, MUNI, YM,
        _c("institution_code", "医療機関コード", "str", True, description="10桁（都道府県2＋点数表1＋医療機関7）"),
        _c("disease_code", "傷病名コード", "str", True, description="傷病名マスターの7桁コード（0000999 = 未コード化傷病名）"),
        _c("icd10", "ICD-10", "str", description="傷病名マスターの ICD-10（2013）。例 E119"),
        _c("suspected", "疑い", "bool", description="疑い病名（修飾語 8002 ほか）1 / それ以外 0"),
        _c("main", "主傷病", "bool", description="主傷病 1 / それ以外 0"),
        _c("outcome", "転帰区分", "category", allowed=(1, 2, 3, 4),
           description="1 治ゆ・死亡・中止以外, 2 治ゆ, 3 死亡, 4 中止（転医）"),
        _c("start_date", "診療開始日", "date"),
    ), key=("person_id", "ym", "institution_code", "disease_code", "suspected"),
    description="レセプトの傷病名（1行 = 1レセプトの1傷病名）")

PRESCRIPTIONS = Table(
    "prescriptions", "処方", (
        PERSON, MUNI, YM,
        _c("drug_code", "医薬品コード", "str", True, description="医薬品マスターの9桁コード"),
        _c("yj_code", "薬価基準収載医薬品コード", "str", description="12桁。先頭3桁が薬効分類、先頭7桁が成分"),
        _c("efficacy_class", "薬効分類", "str", description="薬価基準収載医薬品コードの先頭3桁（例 396 糖尿病用剤）"),
        _c("form", "剤形", "category", True, allowed=("内服", "内滴", "屯服", "注射", "外用", "浸煎", "湯", "材料", "その他")),
        _c("prescriber_code", "処方医療機関コード", "str", True, description="10桁。院外処方は調剤レセプトの処方医療機関"),
        _c("dispenser_code", "調剤機関コード", "str", True, description="10桁。院内処方は処方医療機関と同じ"),
        _c("dispensed", "院内・院外", "category", allowed=("院内", "院外")),
        _c("days", "投与日数", "int", unit="日", lo=0, hi=999, description="内服は日数、屯服・外用は調剤数量"),
        _c("quantity", "使用量", "float", lo=0, hi=1e6),
    ), key=("person_id", "ym", "drug_code", "prescriber_code", "dispenser_code", "form"),
    description="人×月×医薬品×処方医療機関の処方（適正服薬・多剤・重複の集計用）")

MEDICAL_COSTS = Table(
    "medical_costs", "医療費", (
        PERSON, MUNI, YM,
        _c("setting", "入院外来区分", "category", True, allowed=("入院", "入院外", "歯科", "調剤")),
        _c("main_chapter", "主傷病の疾病分類", "str",
           description="主傷病の ICD-10 大分類（調剤は処方元の医科レセプトの主傷病。分からなければ空欄）"),
        _c("main_icd10", "主傷病のICD-10", "str",
           description="主傷病の ICD-10（2013）。例 E119（調剤は処方元の医科レセプトの主傷病）"),
        _c("points", "点数", "int", True, unit="点", lo=0, hi=1e8),
        _c("cost", "医療費", "float", True, unit="円", lo=0, hi=1e9, description="点数 × 10円"),
        _c("n_receipts", "レセプト件数", "int", lo=0, hi=1000),
    ), key=("person_id", "ym", "setting", "main_chapter", "main_icd10"),
    description="人×月×入院/入院外/歯科/調剤×主傷病の医療費")

KAIGO = Table(
    "kaigo", "介護認定", (
        PERSON, MUNI,
        _c("level", "要介護度", "category", True, allowed=vocab.KAIGO_LEVELS),
        _c("start", "認定開始日", "date", True),
        _c("end", "認定終了日", "date", False, description="空欄は継続中"),
    ), key=("person_id", "start"), description="要介護（要支援）認定の期間")

QUESTIONNAIRE = Table(
    "questionnaire", "後期高齢者の質問票", (
        PERSON, FY, MUNI,
        _c("q1", "①健康状態", "answer", allowed=(1, 2, 3, 4, 5),
           description="1 よい 2 まあよい 3 ふつう 4 あまりよくない 5 よくない"),
        _c("q2", "②心の健康状態", "answer", allowed=(1, 2, 3, 4), description="1 満足 2 やや満足 3 やや不満 4 不満"),
        _c("q3", "③1日3食きちんと食べていますか", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q4", "④半年前に比べて固いものが食べにくくなった", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q5", "⑤お茶や汁物等でむせることがある", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q6", "⑥6か月間で2～3kg以上の体重減少", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q7", "⑦以前に比べて歩く速度が遅くなってきた", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q8", "⑧この1年間に転んだことがある", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q9", "⑨ウォーキング等の運動を週1回以上", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q10", "⑩物忘れがあると言われる", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q11", "⑪今日が何月何日かわからない時がある", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q12", "⑫たばこを吸いますか", "answer", allowed=(1, 2, 3), description="1 吸っている 2 吸っていない 3 やめた"),
        _c("q13", "⑬週に1回以上は外出", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q14", "⑭家族や友人と付き合い", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
        _c("q15", "⑮相談相手がいる", "answer", allowed=YES_NO, description="1 はい 2 いいえ"),
    ), key=("person_id", "fy"), description="後期高齢者の質問票（15項目, docs/rules.md §6.2）")

MUNICIPALITIES = Table(
    "municipalities", "市町村マスタ", (
        MUNI,
        _c("name", "市町村名", "str", True),
        _c("pref_code", "都道府県コード", "int", True, lo=1, hi=47),
        _c("medical_area_code", "二次医療圏コード", "str", False),
        _c("medical_area", "二次医療圏", "str", True),
        _c("lat", "緯度", "float", lo=20, hi=46),
        _c("lon", "経度", "float", lo=122, hi=154),
        _c("population", "人口", "int", lo=0, hi=20_000_000),
    ), key=("muni_code",), description="市町村と二次医療圏の対応", person_level=False)

DISTRICTS = Table(
    "districts", "地区マスタ", (
        MUNI,
        _c("district_code", "地区コード", "str", True),
        _c("name", "地区名", "str", True),
        _c("lat", "緯度", "float", lo=20, hi=46),
        _c("lon", "経度", "float", lo=122, hi=154),
    ), key=("muni_code", "district_code"), description="市町村内の地区（日常生活圏域）", person_level=False)

TABLES: dict[str, Table] = {t.name: t for t in (
    ENROLLMENT, KENSHIN, GUIDANCE, CLAIMS, KAIGO, QUESTIONNAIRE, MUNICIPALITIES, DISTRICTS,
    DIAGNOSES, PRESCRIPTIONS, MEDICAL_COSTS)}

#: `DataFrame.attrs` key of a table read with a column list (`pipeline.read_partitioned(columns=...)`, a
#: notebook's `with_tables` mapping): the columns the data have but the reader left out. A rule that needs
#: one raises instead of treating it as absent from the data (e.g. `programs` claims markers).
UNREAD_COLUMNS = "unread_columns"


def column_absent(frame, col: str) -> bool:
    """Whether the data have no column `col`, so that a rule takes its default (False / NaN). A column
    the reader left out (`UNREAD_COLUMNS`) raises instead: its default would silently change the result."""
    if col in frame.columns:
        return False
    if col in frame.attrs.get(UNREAD_COLUMNS, ()):
        raise KeyError(f"列 {col} を読み込んでいません（notebook.start の with_tables にこの列を加えてください）")
    return True

# Questionnaire risk answers (docs/rules.md §6.2): item -> set of answer codes that count as "at risk".
QUESTIONNAIRE_RISK = {
    "q1": (4, 5), "q2": (3, 4), "q3": (2,), "q4": (1,), "q5": (1,), "q6": (1,), "q7": (1,),
    "q8": (1,), "q9": (2,), "q10": (1,), "q11": (1,), "q12": (1,), "q13": (2,), "q14": (2,), "q15": (2,),
}
QUESTIONNAIRE_DOMAINS = {
    "健康状態": ("q1",), "心の健康": ("q2",), "食習慣": ("q3",), "口腔機能": ("q4", "q5"),
    "体重変化": ("q6",), "運動・転倒": ("q7", "q8", "q9"), "認知機能": ("q10", "q11"),
    "喫煙": ("q12",), "社会参加": ("q13", "q14"), "ソーシャルサポート": ("q15",),
}

# Age bands (docs/design.md §5): 国保 特定健診 40–44 … 70–74; 後期 75–79 … 90+.
KOKUHO_AGE_BANDS = ("40-44", "45-49", "50-54", "55-59", "60-64", "65-69", "70-74")
KOUKI_AGE_BANDS = ("75-79", "80-84", "85-89", "90+")
AGE_BANDS = KOKUHO_AGE_BANDS + KOUKI_AGE_BANDS
SEX_LABELS = vocab.SEX_LABELS

DEFAULT_FILENAMES = {name: f"{name}.csv" for name in TABLES}


def _age_band_codes(a, n_labels: int):
    """Band code of each age (float; NaN -> -1): 0 => <40, 1 => 40-44, ..., 11 => 90+."""
    import numpy as np

    edges = np.array([40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90], dtype=float)
    idx = np.searchsorted(edges, a, side="right")
    return np.where(np.isnan(a), -1, np.clip(idx, 0, n_labels - 1)).astype(np.int8)


def age_band(age):
    """Age band label (docs/design.md §5) for an array of ages; ages under 40 give '<40'.

    Vectorised: accepts a scalar, numpy array or pandas Series; returns a pandas Categorical
    (or a str for a scalar).
    """
    import numpy as np
    import pandas as pd

    scalar = np.ndim(age) == 0
    labels = ("<40",) + AGE_BANDS
    values = None if scalar else np.asarray(age) if isinstance(getattr(age, "dtype", None), np.dtype) else None
    if (values is not None and values.ndim == 1 and values.dtype.kind in "iu" and values.size
            and 0 <= values.min() and values.max() < 4096):
        # integer ages (no missing value): the band of each possible age once, gathered (no float pass per row)
        band_of_age = _age_band_codes(np.arange(int(values.max()) + 1, dtype=float), len(labels))
        codes = np.empty(values.shape, dtype=band_of_age.dtype)
        # gathered block by block, on threads for millions of rows (hsutils.core.parallel)
        parallel.for_row_blocks(len(codes), lambda rows: np.take(band_of_age, values[rows], out=codes[rows], mode="clip"))
    else:
        a = pd.to_numeric(pd.Series(np.atleast_1d(age)), errors="coerce").to_numpy(dtype=float)
        codes = _age_band_codes(a, len(labels))
    # no per-row strings; the codes are valid by construction (−1 = missing): not checked again
    cat = pd.Categorical.from_codes(codes, categories=list(labels), ordered=True, validate=False)
    if scalar:
        return None if codes[0] < 0 else labels[codes[0]]
    return cat

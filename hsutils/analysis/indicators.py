"""The indicator registry and indicator tables at any area level.

Each indicator is defined once here: id, Japanese name, numerator and denominator (boolean
functions of the person_year frame, docs/internal_api.md), population, unit, polarity,
evaluation category (docs/rules.md §7.7) and the DOMAIN section it implements. `indicator_flags`
evaluates them all for the strata pass; `indicator_table` turns the strata table into crude
rates (Wilson), age-adjusted rates (direct, Dobson) and 標準化該当比 (indirect, exact/Byar)
with significance against a reference area (docs/design.md §5).

Rates are stored in percent (multiplier 100); 標準化該当比 as a ratio (1.00 = as expected).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from hsutils import stats
from hsutils.core import vocab
from hsutils.core.schema import column_absent
from hsutils.inputs import lookback as claims_lookback
from hsutils.rules import clinical, programs
from hsutils.analysis import aggregate
from hsutils.core.errors import ParameterError

Flag = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Indicator:
    id: str
    name: str
    numerator: Flag
    denominator: Flag
    population: str
    polarity: str | None  # "higher_better", "lower_better" or None (no judgement)
    category: str  # ストラクチャー / プロセス / アウトプット / アウトカム (docs/rules.md §7.7)
    domain: str  # docs/rules.md section
    age_group: str = "kokuho"  # "kokuho" (40–74 bands) or "kouki" (75+ bands)
    unit: str = "%"
    key: bool = False  # shown in maps and summaries
    definition: str = ""
    #: the claims look-back the flag depends on (docs/hotei.md §7.5): a key of `LOOKBACK_KINDS`, or None
    lookback: str | None = None
    #: months of claims the flag needs before April of the year (docs/hotei.md §7.4): a year with fewer
    #: is 判定不能 (the flag is NA there and the denominator empty), and the footer says so
    history_before_fy: int | None = None
    #: the clinical derivations (`clinical.DERIVED_COLUMNS`) its numerator and denominator read, so that a
    #: run of some indicators derives only these (`derived_columns`; tests/test_aggregate_indicators.py checks it)
    derived: tuple[str, ...] = ()


# ---------------------------------------------------------------- column helpers

def _b(py: pd.DataFrame, col: str) -> np.ndarray:
    """Boolean column as numpy bool (missing -> False); absent column -> all False."""
    if column_absent(py, col):
        return np.zeros(len(py), dtype=bool)
    s = py[col]
    if s.dtype == bool:
        return s.to_numpy()
    if isinstance(s.dtype, pd.BooleanDtype):  # 判定不能 (NA) -> False in one pass
        return s.to_numpy(dtype=bool, na_value=False)
    return s.fillna(False).astype(bool).to_numpy()


def _notna(py: pd.DataFrame, col: str) -> np.ndarray:
    """Where `col` (present) has a value; a float column straight from numpy (NaN is its missing value)."""
    s = py[col]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        return ~np.isnan(s.to_numpy())
    return s.notna().to_numpy()


def _measured(py: pd.DataFrame, *cols: str) -> np.ndarray:
    """Any of `cols` has a value (a new array; each column's notna is shared within one `indicator_flags`)."""
    out = np.zeros(len(py), dtype=bool)
    for c in cols:
        if not column_absent(py, c):
            out |= _memo(f"notna:{c}", py, lambda py: _notna(py, c))  # shared by several indicators
    return out


def _eq(py: pd.DataFrame, col: str, value) -> np.ndarray:
    if column_absent(py, col):
        return np.zeros(len(py), dtype=bool)
    s = py[col]
    if isinstance(s.dtype, pd.CategoricalDtype) and isinstance(value, str):  # compared on the integer codes
        at = s.cat.categories.get_indexer([value])[0]
        return s.cat.codes.to_numpy() == at if at >= 0 else np.zeros(len(py), dtype=bool)
    return (s == value).fillna(False).to_numpy(dtype=bool)


def _isin(py: pd.DataFrame, col: str, values) -> np.ndarray:
    if column_absent(py, col):
        return np.zeros(len(py), dtype=bool)
    s = py[col]
    if isinstance(s.dtype, pd.CategoricalDtype):  # on the integer codes: each category looked up once
        codes = s.cat.codes.to_numpy()
        out = np.zeros(len(py), dtype=bool)
        for at in np.flatnonzero(s.cat.categories.isin(list(values))):  # a few categories: one compare each
            out |= codes == at
        return out
    return s.isin(list(values)).to_numpy(dtype=bool)


def _num(py: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column as a numpy float array (missing -> NaN); a float column as stored (float32 stays
    float32: `_ge` / `_lt` compare it exactly as its float64 value would be)."""
    if column_absent(py, col):
        return np.full(len(py), np.nan)
    s = py[col]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        return s.to_numpy()
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _threshold(values: np.ndarray, threshold: float):
    """The threshold to compare `values` with: for float32 values the smallest float32 ≥ threshold, so that
    `x >= t32` ⇔ `float64(x) >= threshold` and `x < t32` ⇔ `float64(x) < threshold` (no float64 copy)."""
    if values.dtype != np.float32:
        return threshold
    t32 = np.float32(threshold)
    return np.nextafter(t32, np.float32(np.inf)) if float(t32) < threshold else t32


def _ge(py: pd.DataFrame, col: str, threshold: float) -> np.ndarray:
    """value ≥ threshold (以上); missing -> False."""
    values = _num(py, col)
    with np.errstate(invalid="ignore"):
        return values >= _threshold(values, threshold)


def _egfr_any(py: pd.DataFrame) -> np.ndarray:
    """eGFR recomputed from creatinine, else the reported value (docs/rules.md §4.1)."""
    def compute(py):
        calc = _num(py, "egfr_calc")
        if column_absent(py, "egfr"):  # nothing reported: the recomputed values as they are
            return calc
        return np.where(np.isnan(calc), _num(py, "egfr"), calc)
    return _memo("egfr_any", py, compute)


def _lt(py: pd.DataFrame, col: str, threshold: float) -> np.ndarray:
    """value < threshold (未満); missing -> False."""
    values = _num(py, col)
    with np.errstate(invalid="ignore"):
        return values < _threshold(values, threshold)


_MEMO: dict = {}  # populations shared by many indicators, filled during one indicator_flags call


def _memo(name: str, py: pd.DataFrame, fn) -> np.ndarray:
    if "active" not in _MEMO:  # outside indicator_flags: no caching (ids of frames can be reused)
        return fn(py)
    key = (name, id(py))
    if key not in _MEMO:
        _MEMO[key] = fn(py)
    return _MEMO[key]


def kokuho_target(py: pd.DataFrame) -> np.ndarray:
    """特定健診 対象者: 国保, enrolled all year, 40–74 at fiscal-year end, minus statutory exclusions (docs/rules.md §7.1)."""
    def compute(py):
        age = py["age"].to_numpy()
        full_year = np.ones(len(py), dtype=bool) if column_absent(py, "full_year") else _b(py, "full_year")
        return (_eq(py, "insurance", "国保") & (age >= 40) & (age <= 74) & full_year
                & ~_b(py, "excluded_statutory"))
    return _memo("kokuho_target", py, compute)


def participants(py: pd.DataFrame) -> np.ndarray:
    """特定健診 受診者 among the 対象者 (docs/rules.md §7.1)."""
    return _memo("participants", py, lambda py: kokuho_target(py) & _b(py, "has_kenshin"))


def kouki(py: pd.DataFrame) -> np.ndarray:
    """後期高齢者 75+ (docs/rules.md §6)."""
    return _memo("kouki", py, lambda py: _eq(py, "insurance", "後期") & (py["age"].to_numpy() >= 75))


def kouki_participants(py: pd.DataFrame) -> np.ndarray:
    return kouki(py) & _b(py, "has_kenshin")


def _part_measured(*cols: str) -> Flag:
    """受診者 with a value in any of `cols`: the denominator of several indicators, made once per call."""
    return lambda py: _memo(f"part_measured:{cols}", py, lambda py: participants(py) & _measured(py, *cols))


def _reduction(kind: str, part: int) -> Flag:
    """Numerator (part 0) or denominator (part 1) of a 減少率, from the 法定報告 module (one definition)."""
    def flag(py):
        from hsutils.analysis import hotei_items  # its definitions build on this module's populations

        def both(py):  # the 法定報告 person flags (previous-year link included) once for both 減少率
            return hotei_items.reduction_flags(py, kind, flags=_memo("hotei_person_flags", py, hotei_items.person_flags))
        return _memo(f"reduction_{kind}", py, both)[part]
    return flag


def _flag(col: str) -> Flag:
    return lambda py: _b(py, col)


def _known(col: str) -> Flag:
    """Rows where a nullable flag is known: NA is 判定不能 and leaves the denominator (docs/hotei.md §7.4)."""
    return lambda py: np.ones(len(py), dtype=bool) if column_absent(py, col) else py[col].notna().to_numpy(dtype=bool)


# ---------------------------------------------------------------- registry

# Who is counted, in the words of docs/rules.md §16 (every footer uses these; one vocabulary)
#: 特定健診 対象者 of the 法定報告 (docs/rules.md §7.1): 国保, 40–74 at the fy end, full year, not excluded
POP_TARGET = "国保 特定健診対象者（法定報告対象）"
#: 受診者 among them: the 法定報告 population of every 受診者 share (docs/hotei.md §2.2)
POP_EXAMINEES = "国保 特定健診受診者（法定報告対象）"
#: every 国保 person with a checkup in the year, any age or enrolment (notebook 04's extraction)
POP_ALL_EXAMINEES = "国保 健診受診者（全員）"
#: every 国保 person enrolled in the year (notebook 04's flow: examinees and non-examinees)
POP_INSURED = "国保 被保険者（全員）"
#: 国保 and 後期 insured of the year together (pyramids of every insured person, the gallery's flow)
POP_INSURED_BOTH = "国保・後期の被保険者（全員）"
#: every 後期高齢者医療 insured of the year, any age (notebook 04 with target_insurance = 後期)
POP_KOUKI_INSURED = "後期高齢者医療 被保険者（全員）"
#: every 後期高齢者医療 person with a checkup in the year (notebook 04's CKD maps, 後期)
POP_KOUKI_ALL_EXAMINEES = "後期高齢者医療 健診受診者（全員）"
#: 国保 and 後期 persons with a checkup in the year (notebook 04's CKD maps, 全体)
POP_BOTH_ALL_EXAMINEES = "国保・後期の健診受診者（全員）"
#: What 「法定報告対象」 means (docs/rules.md §7.1, §16), written out where a table is read without the docs
#: (the 法定報告 form's footer, notebook 08's table of 未受診者)
HOTEI_POPULATION_RULE = "国保、年度を通じて加入、年度末40–74歳、法定除外を除く"
#: The 法定報告 集計情報 table (docs/hotei.md §2): its 対象者 (受診率) and their 受診者 = 評価対象者 (every other
#: share), i.e. `POP_TARGET` and `POP_EXAMINEES` in one table
POP_HOTEI = "国保 特定健診対象者・受診者（法定報告対象）"
#: Every insured / every examinee of one insurance choice (国保, 後期, 全体: notebook 04's `target_insurance`)
INSURED_BY_INSURANCE = {"国保": POP_INSURED, "後期": POP_KOUKI_INSURED, "全体": POP_INSURED_BOTH}
ALL_EXAMINEES_BY_INSURANCE = {"国保": POP_ALL_EXAMINEES, "後期": POP_KOUKI_ALL_EXAMINEES,
                              "全体": POP_BOTH_ALL_EXAMINEES}


def kouki_population(min_age: int = 75) -> str:
    """後期高齢者医療 insured from `min_age` (notebook 03's parameter; 75 = `POP_KOUKI`), docs/rules.md §6, §16."""
    return f"後期高齢者 {int(min_age)}歳以上"


#: 後期高齢者医療 75+ (docs/rules.md §6)
POP_KOUKI = kouki_population(75)

_P = POP_EXAMINEES
_R = "受診勧奨判定値（docs/rules.md §3）"

INDICATORS: list[Indicator] = [
    Indicator("kenshin_rate", "特定健診実施率", _flag("has_kenshin"), kokuho_target,
              POP_TARGET, "higher_better", "アウトプット", "§7.1", key=True,
              definition="受診者 ÷ 対象者（年度末40–74歳、年度を通じて加入、法定除外を除く）"),
    Indicator("hokenshido_rate", "特定保健指導実施率", _flag("guidance_completed"),
              lambda py: participants(py) & _b(py, "guidance_target"),
              f"{POP_EXAMINEES}のうち特定保健指導の対象者", "higher_better", "アウトプット", "§7.2", key=True,
              definition="終了者 ÷ 対象者（階層化で積極的支援・動機付け支援）"),
    Indicator("hokenshido_target", "特定保健指導対象者の割合", _flag("guidance_target"),
              _part_measured("hokenshido"), _P, "lower_better", "アウトカム", "§1",
              definition="積極的支援＋動機付け支援 ÷ 階層化できた受診者", derived=("hokenshido",)),
    Indicator("hokenshido_sekkyoku", "積極的支援 対象者の割合", lambda py: _eq(py, "hokenshido", "積極的支援"),
              _part_measured("hokenshido"), _P, "lower_better", "アウトカム", "§1.3", derived=("hokenshido",)),
    Indicator("hokenshido_douki", "動機付け支援 対象者の割合", lambda py: _eq(py, "hokenshido", "動機付け支援"),
              _part_measured("hokenshido"), _P, "lower_better", "アウトカム", "§1.3", derived=("hokenshido",)),
    Indicator("hokenshido_reduction", "特定保健指導対象者の減少率", _reduction("hokenshido", 0),
              _reduction("hokenshido", 1),
              f"{POP_EXAMINEES}のうち前年度の特定保健指導終了者（前年度の階層化の対象者で、前年度も評価対象者）",
              "higher_better", "アウトカム", "§7.3",
              definition="法定報告の定義（docs/hotei.md §4.3）: 昨年度の特定保健指導終了者のうち今年度は対象者でなくなった者"
                         "（服薬中を含む）÷ 昨年度の終了者で今年度も評価対象者", derived=("metabo", "hokenshido")),
    Indicator("metabo", "メタボリックシンドローム該当者の割合", lambda py: _eq(py, "metabo", "該当"),
              _part_measured("metabo"), _P, "lower_better", "アウトカム", "§2", key=True, derived=("metabo",)),
    Indicator("metabo_yobi", "メタボリックシンドローム予備群の割合", lambda py: _eq(py, "metabo", "予備群"),
              _part_measured("metabo"), _P, "lower_better", "アウトカム", "§2", derived=("metabo",)),
    Indicator("metabo_reduction", "メタボ該当者・予備群の減少率", _reduction("metabo", 0), _reduction("metabo", 1),
              f"{POP_EXAMINEES}のうち前年度の該当者・予備群（前年度も評価対象者）", "higher_better", "アウトカム", "§7.4",
              definition="法定報告の定義（docs/hotei.md §4.4）: 昨年度の該当者・予備群のうち今年度は非該当 ÷ "
                         "昨年度の該当者・予備群で今年度も評価対象者", derived=("metabo", "hokenshido")),
    Indicator("ref_bp", "血圧 受診勧奨判定値以上", _flag("ref_bp"), _part_measured("sbp", "dbp"),
              _P, "lower_better", "アウトカム", "§3", key=True, definition="収縮期 ≥140 または 拡張期 ≥90", derived=("ref_bp",)),
    Indicator("ref_lipid", "脂質 受診勧奨判定値以上", _flag("ref_lipid"), _part_measured("tg", "ldl", "non_hdl"),
              _P, "lower_better", "アウトカム", "§3", derived=("ref_lipid",)),
    Indicator("ref_glucose", "血糖 受診勧奨判定値以上", _flag("ref_glucose"),
              _part_measured("fpg", "casual_glucose", "hba1c"), _P, "lower_better", "アウトカム", "§3", derived=("ref_glucose",)),
    Indicator("ref_liver", "肝機能 受診勧奨判定値以上", _flag("ref_liver"), _part_measured("ast", "alt", "ggt"),
              _P, "lower_better", "アウトカム", "§3", derived=("ref_liver",)),
    Indicator("ref_kidney", "腎機能 受診勧奨判定値以上", _flag("ref_kidney"),
              _part_measured("egfr_calc", "urine_protein"), _P, "lower_better", "アウトカム", "§3",
              definition="eGFR <45 または 尿蛋白 1+ 以上", derived=("ref_kidney", "egfr_calc")),
    Indicator("ref_anemia", "貧血 受診勧奨判定値以上", _flag("ref_anemia"), _part_measured("hemoglobin"),
              _P, "lower_better", "アウトカム", "§3", derived=("ref_anemia",)),
    Indicator("ref_any", "いずれかの受診勧奨判定値以上", _flag("ref_any"), participants,
              _P, "lower_better", "アウトカム", "§3", derived=("ref_any",)),
    Indicator("ref_bp_untreated", "血圧 受診勧奨判定値以上で服薬なし",
              lambda py: _b(py, "ref_bp") & ~_b(py, "med_bp") & ~_b(py, "htn_claim"),
              _part_measured("sbp", "dbp"), _P, "lower_better", "アウトカム", "§3",
              definition="受診勧奨判定値以上、質問票の服薬なし、年度内に高血圧のレセプトなし", derived=("ref_bp",)),
    Indicator("hba1c8", "HbA1c 8.0%以上", _flag("poor_hba1c8"), _part_measured("hba1c"),
              _P, "lower_better", "アウトカム", "§3.1, §7.5", key=True, derived=("poor_hba1c8",)),
    Indicator("hba1c65", "HbA1c 6.5%以上", lambda py: _ge(py, "hba1c", 6.5), _part_measured("hba1c"),
              _P, "lower_better", "アウトカム", "§3"),
    Indicator("hg_bp", "血圧 保健指導判定値以上", _flag("hg_bp"), _part_measured("sbp", "dbp"),
              _P, "lower_better", "アウトカム", "§7.5", definition="収縮期 ≥130 または 拡張期 ≥85", derived=("hg_bp",)),
    Indicator("egfr45", "eGFR 45未満", lambda py: _lt(py, "egfr_calc", 45),
              _part_measured("egfr_calc"), _P, "lower_better", "アウトカム", "§3, §4", key=True, derived=("egfr_calc",)),
    Indicator("egfr60", "eGFR 60未満", lambda py: _lt(py, "egfr_calc", 60),
              _part_measured("egfr_calc"), _P, "lower_better", "アウトカム", "§3, §4", derived=("egfr_calc",)),
    Indicator("urine_protein1", "尿蛋白 1+以上", lambda py: _ge(py, "urine_protein", vocab.URINE_PLUS1),
              _part_measured("urine_protein"), _P, "lower_better", "アウトカム", "§3, §4.3"),
    Indicator("smoking", "喫煙率", _flag("smoking"), _part_measured("smoking"),
              _P, "lower_better", "アウトカム", "§1.2"),
    Indicator("bmi25", "BMI 25以上", lambda py: _ge(py, "bmi_calc", 25),
              _part_measured("bmi_calc"), _P, "lower_better", "アウトカム", "§1.1", derived=("bmi_calc",)),
    Indicator("med_bp", "服薬（血圧）", _flag("med_bp"), _part_measured("med_bp"), _P, None, "アウトカム", "§1.4"),
    Indicator("med_glucose", "服薬（血糖）", _flag("med_glucose"), _part_measured("med_glucose"), _P, None,
              "アウトカム", "§1.4"),
    Indicator("med_lipid", "服薬（脂質）", _flag("med_lipid"), _part_measured("med_lipid"), _P, None,
              "アウトカム", "§1.4"),
    # 糖尿病性腎症重症化予防 (docs/rules.md §5)
    Indicator("dm_untreated", "糖尿病型の未治療者の割合", lambda py: _eq(py, "dkd_treatment", "未治療"),
              lambda py: participants(py) & _b(py, "diabetes_type"), f"{POP_EXAMINEES}のうち糖尿病型",
              "lower_better", "アウトカム", "§5.1, §5.3", lookback="nephropathy", derived=("diabetes_type",)),
    Indicator("dm_interrupted", "糖尿病 治療中断者の割合", lambda py: _eq(py, "dkd_treatment", "治療中断"),
              lambda py: kokuho_target(py) & _b(py, "dkd_diabetes"), f"{POP_TARGET}のうち糖尿病（健診またはレセプト）",
              "lower_better", "アウトカム", "§5.4", lookback="nephropathy"),
    Indicator("dm_egfr45", "糖尿病のうち eGFR 45未満", lambda py: _egfr_any(py) < 45,
              lambda py: participants(py) & _b(py, "dkd_diabetes") & ~np.isnan(_egfr_any(py)),
              f"{POP_EXAMINEES}のうち糖尿病（eGFR 測定あり）", "lower_better", "アウトカム", "§4.2, §5.1",
              definition="eGFR は再計算値、なければ報告値", lookback="nephropathy", derived=("egfr_calc",)),
    Indicator("dm_urine_protein1", "糖尿病のうち 尿蛋白 1+以上", lambda py: _ge(py, "urine_protein", vocab.URINE_PLUS1),
              lambda py: participants(py) & _b(py, "dkd_diabetes") & _measured(py, "urine_protein"),
              f"{POP_EXAMINEES}のうち糖尿病（尿蛋白 測定あり）", "lower_better", "アウトカム", "§4.3, §5.1",
              lookback="nephropathy"),
    Indicator("dm_hba1c8", "糖尿病型のうち HbA1c 8.0%以上", _flag("poor_hba1c8"),
              lambda py: participants(py) & _b(py, "diabetes_type") & _measured(py, "hba1c"),
              f"{POP_EXAMINEES}のうち糖尿病型", "lower_better", "アウトカム", "§3.1, §5", derived=("poor_hba1c8", "diabetes_type")),
    Indicator("new_dialysis", "新規人工透析導入者の割合", _flag("new_dialysis"),
              lambda py: kokuho_target(py) & _known("new_dialysis")(py),
              POP_TARGET, "lower_better", "アウトカム", "§12",
              history_before_fy=programs.NEW_DIALYSIS_FREE_MONTHS),
    # 後期高齢者 / 一体的実施 (docs/rules.md §6)
    Indicator("kouki_kenshin_rate", "後期高齢者健診受診率", _flag("has_kenshin"), kouki,
              POP_KOUKI, "higher_better", "アウトプット", "§6", age_group="kouki"),
    Indicator("questionnaire_rate", "質問票 回答率", lambda py: _measured(py, "q1", "q7", "q13"), kouki,
              POP_KOUKI, "higher_better", "アウトプット", "§6.2", age_group="kouki"),
    Indicator("kaigo_rate", "要介護（要支援）認定率", _flag("kaigo_certified"), kouki,
              POP_KOUKI, None, "アウトカム", "§6.1", age_group="kouki"),
]

# 一体的実施 criteria (docs/rules.md §6.1) — the program module defines the flags; one indicator each.
IKKATSU_INDICATORS = [
    ("ik_undernutrition", "低栄養", "§6.1-1"),
    ("ik_oral", "口腔", "§6.1-2"),
    ("ik_polypharmacy", "服薬（多剤）", "§6.1-3"),
    ("ik_hypnotic", "服薬（睡眠薬）", "§6.1-4"),
    ("ik_physical_frailty", "身体的フレイル", "§6.1-5"),
    ("ik_poor_control", "重症化予防（コントロール不良）", "§6.1-6"),
    ("ik_interruption", "重症化予防（治療中断）", "§6.1-7"),
    ("ik_disease_frailty", "重症化予防（基礎疾患保有＋フレイル）", "§6.1-8"),
    ("ik_kidney_untreated", "重症化予防（腎機能不良未受診）", "§6.1-9"),
    ("ik_health_unknown", "健康状態不明者", "§6.1-10"),
]
for _id, _name, _sec in IKKATSU_INDICATORS:
    INDICATORS.append(Indicator(
        _id, f"一体的実施: {_name}", _flag(_id), kouki, POP_KOUKI, "lower_better", "アウトカム",
        _sec, age_group="kouki", key=(_id == "ik_health_unknown"),
        lookback="interruption" if _id in ("ik_interruption", "ik_disease_frailty") else None))

REGISTRY: dict[str, Indicator] = {i.id: i for i in INDICATORS}
KEY_INDICATORS = ["kenshin_rate", "hokenshido_rate", "metabo", "hba1c8", "ref_bp", "egfr45", "ik_health_unknown"]


def resolve_ids(values, parameter: str = "indicators_to_show") -> list[str]:
    """Indicator ids for a parameter that names indicators by id (``"hba1c8"``) or by their Japanese name
    as shown in the tables (``"HbA1c 8.0%以上"``), in the given order. A value that is neither raises a
    Japanese `ParameterError` naming the parameter, the value and every valid name with its id."""
    values = [values] if isinstance(values, str) else list(values or [])
    by_name = {i.name: i.id for i in INDICATORS}
    out, unknown = [], []
    for value in values:
        key = str(value).strip()
        if key in REGISTRY or key in by_name:
            out.append(REGISTRY[key].id if key in REGISTRY else by_name[key])
        else:
            unknown.append(str(value))
    if unknown:
        choices = "、".join(f"{i.name}（{i.id}）" for i in INDICATORS)
        raise ParameterError(f"パラメータ {parameter} の「{'」「'.join(unknown)}」は指標の一覧にありません。"
                             f"指標名か、かっこ内の指標IDで指定してください。使える指標: {choices}")
    if not out:
        raise ParameterError(f"パラメータ {parameter} に指標が一つもありません。指標名か指標IDを一つ以上指定してください。")
    return out


def _registered(indicator_ids: str | Iterable[str]) -> list[str]:
    ids = [indicator_ids] if isinstance(indicator_ids, str) else list(indicator_ids)
    unknown = [i for i in ids if i not in REGISTRY]
    if unknown:
        raise ParameterError(f"指標「{'」「'.join(map(str, unknown))}」は登録されていません")
    return ids


def population_of(indicator_ids: str | Iterable[str]) -> str:
    """Footer population (「対象」) of a chart or table of registered indicators, in the registry's
    words (docs/rules.md §16): one indicator's population; for several, each distinct population
    once, in the order given ("指標により A、B")."""
    ids = _registered(indicator_ids)
    pops = list(dict.fromkeys(REGISTRY[i].population for i in ids))
    if not pops:
        raise ParameterError("対象の表記には指標が一つ以上必要です")
    return pops[0] if len(pops) == 1 else "指標により " + "、".join(pops)


#: The claims look-backs of cached flags (docs/hotei.md §7.5): key of the cache's
#: meta.json `claims_history` (`<kind>_lookback`, `hsutils.analysis.pipeline`) → whose window it is.
LOOKBACK_KINDS = {"nephropathy": "糖尿病性腎症（治療中断・未治療）", "interruption": "一体的実施（治療中断）"}


def lookback_note(indicator_ids: str | Iterable[str], claims_history: dict | None) -> str | None:
    """Footer text of the claims look-back behind cached indicators (docs/hotei.md §7.5): the window
    the shared cache used for every fiscal year (`claims_history` = `prepared.meta["claims_history"]`),
    in the words of `hsutils.inputs.lookback.lookback_note`. None when no indicator depends on a
    look-back (or the cache records none). Two different windows are each named by their program."""
    ids = _registered(indicator_ids)
    kinds = list(dict.fromkeys(REGISTRY[i].lookback for i in ids if REGISTRY[i].lookback))
    h = claims_history or {}
    history = claims_lookback.history_from_first_ym(h.get("first_ym"), [int(f) for f in h.get("months_to_fy_end", {})])
    unknown = _undeterminable_note(ids, history) if h else None
    windows = {k: h[f"{k}_lookback"] for k in kinds if f"{k}_lookback" in h}
    if not windows:
        return unknown
    notes = {k: claims_lookback.lookback_note(int(w["requested"]), int(w["used"]), history) for k, w in windows.items()}
    note = (next(iter(notes.values())) if len(set(notes.values())) == 1
            else "；".join(f"{LOOKBACK_KINDS[k]}: {n}" for k, n in notes.items()))
    return "；".join(p for p in (note, unknown) if p)


def _undeterminable_note(ids: list[str], history: pd.DataFrame) -> str | None:
    """「新規人工透析導入者の割合: 2021年度は判定不能（前年度のレセプトなし: 年度開始前のレセプトが12か月未満）」 for the
    indicators that need claims before the year (`Indicator.history_before_fy`, docs/hotei.md §7.4), naming
    the data's years that lack them (the figure shows no value there). None when every year has them."""
    parts = []
    for i in ids:
        need = REGISTRY[i].history_before_fy
        if need is None or history.empty:
            continue
        years = history.loc[history["months_before_fy"].to_numpy() < need, "fy"].astype(int).tolist()
        if years:
            shown = "・".join(f"{y}年度" for y in years)
            parts.append(f"{REGISTRY[i].name}: {shown}は{claims_lookback.UNDETERMINABLE}"
                         f"（{claims_lookback.UNDETERMINABLE_REASON}: 年度開始前のレセプトが{need}か月未満）")
    return "；".join(parts) or None


def footer_conditions(conditions: str | None, indicator_ids: str | Iterable[str] = (),
                      claims_history: dict | None = None) -> str | None:
    """A chart's 「条件」 with the look-back of its indicators appended (`lookback_note`; joined by 「／」)."""
    note = lookback_note(indicator_ids, claims_history) if len(_registered(indicator_ids)) else None
    return "／".join(p for p in (conditions, note) if p) or None


def registry_frame() -> pd.DataFrame:
    """The registry as a table (for notebooks and the data dictionary)."""
    return pd.DataFrame([{
        "indicator_id": i.id, "indicator_name": i.name, "population": i.population, "unit": i.unit,
        "polarity": i.polarity, "category": i.category, "domain": i.domain, "age_group": i.age_group,
        "key": i.key, "definition": i.definition} for i in INDICATORS])


def derived_columns(ids: Iterable[str] | None = None) -> list[str]:
    """The clinical derivations (`clinical.DERIVED_COLUMNS`, in that order) that the indicators `ids` (default:
    every registered indicator) read: `clinical.derive_kenshin(frame, derived_columns(ids))` gives a frame
    on which `indicator_flags(frame, ids)` is the same as on the fully derived frame (`Indicator.derived`)."""
    read = {c for ind in ((REGISTRY[i] for i in _registered(ids)) if ids else INDICATORS) for c in ind.derived}
    return [c for c in clinical.DERIVED_COLUMNS if c in read]


def indicator_flags(py: pd.DataFrame, ids: Iterable[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Evaluate numerator and denominator of each indicator on the person_year frame.

    The numerator is counted only inside the denominator (num & den). An indicator whose denominator
    is empty (e.g. the 後期 indicators on 国保 rows) gets an empty numerator without evaluating it; the
    arrays are shared between such indicators: treat every returned array as read-only."""
    return dict(iter_indicator_flags(py, ids))


def iter_indicator_flags(py: pd.DataFrame, ids: Iterable[str] | None = None):
    """`indicator_flags` one indicator at a time: yields (indicator_id, (numerator, denominator)).

    A consumer that counts each indicator as it comes (`aggregate.strata_counts`) then holds only
    the populations several indicators share, not every indicator's two arrays (10 M rows, 47
    indicators: 0.64 GB when all are held). Consume it to the end before evaluating other flags: the
    shared populations are cached for the frame until it ends (or is closed)."""
    nobody = None
    _MEMO.clear()
    _MEMO["active"] = True
    try:
        for ind in (REGISTRY[i] for i in ids) if ids else INDICATORS:
            den = np.asarray(ind.denominator(py), dtype=bool)
            if den.any():
                num = np.asarray(ind.numerator(py), dtype=bool) & den
            else:  # one empty numerator for all of them (less memory, no evaluation)
                nobody = np.zeros(len(py), dtype=bool) if nobody is None else nobody
                num = nobody
            yield ind.id, (num, den)
    finally:
        _MEMO.clear()


# ---------------------------------------------------------------- indicator table

def _comparison(lower: np.ndarray, upper: np.ndarray, benchmark) -> np.ndarray:
    """有意に高い / 有意差なし / 有意に低い by the interval (stats.compare_to_benchmark); None if undefined."""
    out = np.asarray(stats.compare_to_benchmark(lower, upper, benchmark), dtype=object)
    out[pd.isna(out)] = None
    return out


#: 良い / 差なし / 悪い (or 高い / 差なし / 低い without polarity): the one definition is in stats.
judgement = stats.judgement


def _band_weights(std_pop, bands: pd.Index) -> np.ndarray:
    """Standard weight of each age band (stats.standard_population, the one registry); NaN for a
    band the standard cannot provide (e.g. "85-89" of S60, whose top band is 85+, or "<40")."""
    if isinstance(std_pop, str) and std_pop in stats.STANDARD_POPULATION_LABELS and std_pop != stats.PREF_STANDARD:
        return _named_band_weights(std_pop, tuple(bands)).copy()  # a built-in table: looked up once per band set
    return _lookup_band_weights(std_pop, bands)


@functools.lru_cache(maxsize=32)
def _named_band_weights(name: str, bands: tuple) -> np.ndarray:
    return _lookup_band_weights(name, pd.Index(bands))


def _lookup_band_weights(std_pop, bands: pd.Index) -> np.ndarray:
    try:
        return stats.standard_population(std_pop, bands=list(bands)).to_numpy(dtype=float)
    except ParameterError:
        out = np.full(len(bands), np.nan)
        for i, band in enumerate(bands):  # a dozen bands
            try:
                out[i] = stats.standard_population(std_pop, bands=[band]).iloc[0]
            except ParameterError:
                pass
        return out


def _codes(col: pd.Series, categories: pd.Index) -> np.ndarray:
    """Integer codes of `col` against `categories` (computed on the distinct values only)."""
    cat = col.astype("category")
    lookup = categories.get_indexer(pd.Index(list(map(str, cat.cat.categories)), dtype=object))
    return lookup[cat.cat.codes.to_numpy()]


def _categories(*cols: pd.Series) -> pd.Index:
    """Sorted distinct values of (categorical or plain) key columns, read from their categories."""
    vals: set = set()
    for c in cols:
        cat = c if isinstance(c.dtype, pd.CategoricalDtype) else c.astype("category")
        vals |= set(map(str, cat.cat.categories))
    return pd.Index(sorted(vals), dtype=object)


def indicator_table(strata: pd.DataFrame, level: str = "muni", *, area_map: pd.DataFrame | None = None,
                    fy: int | Iterable[int] | None = None, indicators: Iterable[str] | None = None,
                    reference: pd.DataFrame | None = None, std_pop="H27", conf: float = 0.95,
                    suppress_threshold: int = 10, by_sex: bool = False) -> pd.DataFrame:
    """Per area × fy × indicator: counts, crude rate (Wilson), age-adjusted rate (direct, Dobson),
    標準化該当比 (indirect; reference rates by sex × age band) and significance (docs/design.md §5).

    level      : 'district', 'muni', 'medical_area', 'pref' or 'national' (aggregate.rollup).
    area_map   : municipality master (muni_code, name, medical_area_code, medical_area, pref_code).
    reference  : strata of the reference area (default: all strata = the prefecture).
    std_pop    : any standard of `stats.standard_population` ("H27", "S60", a Series of weights
                 by age band, a CSV path); for "pref" resolve it first
                 (`stats.standard_population("pref", data=strata, fy=...)`) and pass the Series.
    by_sex     : also split by sex (column `sex`: 1/2); otherwise sexes combined.

    Every statistic comes from `hsutils.stats`: crude rate `proportion_ci` (Wilson), age-adjusted
    rate `dsr` (Dobson; strata with no population left out with their weight, the module's
    empty-strata rule; NaN when the area's total count is below 10, docs/methods.md §5), and
    標準化該当比 `isr_from_expected` (exact Poisson limits below 10 observed, Byar's from 10,
    docs/methods.md §6). A group with persons in an age band the standard cannot provide (S60 stops
    at 85+) has no age-adjusted rate.

    The table keeps small counts; it carries `suppressed` (numerator or denominator 1…threshold−1)
    so that the presentation step (hsutils.publish.privacy) can hide them (docs/design.md §6).

    All sums are `numpy.bincount` over integer group codes: the strata of 1,741 municipalities ×
    45 indicators × 3 years (over a million rows) take well under a second.
    """
    s = strata
    fys = None
    if fy is not None:
        fys = [fy] if np.ndim(fy) == 0 else list(fy)
        s = s[s["fy"].isin(fys).to_numpy()]
    if indicators is not None:
        s = s[s["indicator_id"].isin(list(indicators)).to_numpy()]
    ref = s if reference is None else reference
    if fys is not None:
        ref = ref[ref["fy"].isin(fys).to_numpy()]
    if level == "muni" and not (s["district_code"] != "").any():
        rolled = s.assign(area_code=s["muni_code"])  # already one row per muni stratum
        same_rows = reference is None  # rolled rows are the reference rows, in the same order
    else:
        rolled = aggregate.rollup(s, area_map, level)
        same_rows = False
    if rolled.empty:
        return pd.DataFrame(columns=["area_code", "area_name", "fy", "indicator_id", "numerator", "denominator"])

    # integer codes of the keys; every category list is sorted, so group codes ordered
    # indicator → fy → area → sex are the table's published row order (no sort of the output)
    ind_cats = _categories(rolled["indicator_id"], ref["indicator_id"])
    band_cats = _categories(rolled["age_band"], ref["age_band"])
    fy_cats = pd.Index(sorted(set(rolled["fy"].unique()) | set(ref["fy"].unique())))
    area_cats = _categories(rolled["area_code"])
    n_ind, n_band, n_fy, n_area = len(ind_cats), len(band_cats), len(fy_cats), len(area_cats)

    def keys(df):
        fy_vals = df["fy"].to_numpy()
        fy_idx = np.searchsorted(fy_cats.to_numpy(), fy_vals)  # fy_cats is sorted and holds every fy
        return (_codes(df["indicator_id"], ind_cats), _codes(df["age_band"], band_cats),
                fy_idx, df["sex"].to_numpy().astype(np.int64) - 1)

    ind, band, fyc, sex = keys(rolled)
    area = _codes(rolled["area_code"], area_cats)
    x = rolled["numerator"].to_numpy(dtype=float)
    n = rolled["denominator"].to_numpy(dtype=float)
    n_sex = 2 if by_sex else 1
    sexg = sex if by_sex else np.zeros_like(sex)
    g = ((ind * n_fy + fyc) * n_area + area) * n_sex + sexg  # output group, in the table's row order
    n_g = n_area * n_fy * n_ind * n_sex

    # crude (Wilson, docs/design.md §4)
    X = np.bincount(g, weights=x, minlength=n_g)
    N = np.bincount(g, weights=n, minlength=n_g)
    present = np.flatnonzero(N > 0)

    # direct standardisation over age bands: (group × band) matrices of the present groups for stats.dsr
    slot = np.full(n_g, -1, dtype=np.int64)
    slot[present] = np.arange(len(present))
    row_slot = slot[g]
    kept = row_slot >= 0  # a row of a group without population (all its denominators 0) is not shown
    ga = row_slot[kept] * n_band + band[kept]
    xs = np.bincount(ga, weights=x[kept], minlength=len(present) * n_band).reshape(len(present), n_band)
    ns = np.bincount(ga, weights=n[kept], minlength=len(present) * n_band).reshape(len(present), n_band)
    w_band = _band_weights(std_pop, band_cats)

    # indirect standardisation: reference rates by fy × indicator × sex × age band (docs/methods.md §6)
    rind, rband, rfy, rsex = (ind, band, fyc, sex) if same_rows else keys(ref)
    rk_size = n_fy * n_ind * 2 * n_band
    rk = ((rfy * n_ind + rind) * 2 + rsex) * n_band + rband
    valid = (rind >= 0) & (rband >= 0) & (rfy >= 0)
    ref_x, ref_n = ref["numerator"].to_numpy(float)[valid], ref["denominator"].to_numpy(float)[valid]
    RX = np.bincount(rk[valid], weights=ref_x, minlength=rk_size)
    RN = np.bincount(rk[valid], weights=ref_n, minlength=rk_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        rrate = np.where(RN > 0, RX / RN, 0.0)
    k_row = ((fyc * n_ind + ind) * 2 + sex) * n_band + band
    E = np.bincount(g, weights=n * rrate[k_row], minlength=n_g)
    # reference crude rate per fy × indicator (× sex)
    rtk = (rfy * n_ind + rind) * (2 if by_sex else 1) + (rsex if by_sex else 0)
    rt_size = n_fy * n_ind * (2 if by_sex else 1)
    RTX = np.bincount(rtk[valid], weights=ref_x, minlength=rt_size)
    RTN = np.bincount(rtk[valid], weights=ref_n, minlength=rt_size)

    # assemble the present groups
    gp = present
    sex_p = gp % n_sex
    rest = gp // n_sex
    area_p = rest % n_area
    rest //= n_area
    fy_p = rest % n_fy
    ind_p = rest // n_fy
    Xp, Np, Ep = X[gp], N[gp], E[gp]
    p, lo, hi = stats.proportion_ci(Xp, Np, conf)
    # DSR (Dobson; NaN below 10 events; empty bands left out with their weight: stats, docs/methods.md §5).
    # A group with persons in a band the standard does not cover (S60 has no 85-89) is not
    # standardised (NaN), rather than standardised over the bands that happen to be covered.
    uncovered_bands = np.isnan(w_band)
    if uncovered_bands.any():
        uncovered = (ns[:, uncovered_bands] > 0).any(axis=1)
        xs[uncovered], ns[uncovered] = 0.0, 0.0
    adj, adj_lo, adj_hi = stats.dsr(xs, ns, w_band, conf, multiplier=100)
    # 標準化該当比 from the observed count and the expected count summed above (docs/methods.md §6)
    sr, srl, sru = stats.isr_from_expected(Xp, Ep, conf)
    rt_idx = (fy_p * n_ind + ind_p) * (2 if by_sex else 1) + (sex_p if by_sex else 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_rate = np.where(RTN[rt_idx] > 0, RTX[rt_idx] / RTN[rt_idx] * 100, np.nan)
    area_labels = area_cats.to_numpy()
    out = {
        "area_code": _gather(area_labels, area_p), "fy": fy_cats.to_numpy()[fy_p],
        "indicator_id": _gather(ind_cats.to_numpy(), ind_p),
        "numerator": Xp.astype(np.int64), "denominator": Np.astype(np.int64),
        "crude_rate": p * 100, "crude_lower": lo * 100, "crude_upper": hi * 100,
        "adj_rate": adj, "adj_lower": adj_lo, "adj_upper": adj_hi,
        "expected": Ep, "sr": sr, "sr_lower": srl, "sr_upper": sru, "ref_rate": ref_rate,
    }
    if by_sex:
        out["sex"] = sex_p + 1
    comparison = _comparison(srl, sru, 1.0)
    out["comparison"] = _gather_labels(comparison)
    reg = registry_frame().set_index("indicator_id").reindex(ind_cats)
    for col in ("indicator_name", "polarity", "category", "unit"):
        out[col] = _gather(reg[col].to_numpy(), ind_p)  # looked up per indicator, not per row
    polarity = reg["polarity"].to_numpy()[ind_p]
    out["judgement"] = _gather_labels(judgement(comparison, polarity))
    num, den = out["numerator"], out["denominator"]
    out["suppressed"] = ((num > 0) & (num < suppress_threshold)) | ((den > 0) & (den < suppress_threshold))
    # the indirect ratio's observed count is the area's numerator: exact limits below 10 (docs/methods.md §1c)
    out["method"] = _gather(np.array([f"{stats.METHOD_WILSON}; {stats.METHOD_DOBSON}; 間接法 {m}"
                                      for m in (stats.METHOD_EXACT, stats.METHOD_BYAR)], dtype=object),
                            (num >= stats.SMALL_COUNT_LIMIT).astype(np.int8))
    columns = list(out)
    if by_sex:  # the sex column follows indicator_id
        columns.remove("sex")
        columns.insert(3, "sex")
    frame = pd.DataFrame({c: out[c] for c in columns}, copy=False)
    frame["conf"] = conf
    names = _area_names(area_labels, level, area_map)
    for col, labels in names.items():
        frame[col] = labels.take(area_p) if labels is not None else frame["area_code"]
    return frame


def _gather(labels: np.ndarray, codes: np.ndarray):
    """`labels[codes]` as the column pandas would make of that object array (str, or object when no
    value is a string), gathered from the few distinct labels used instead of one object per row."""
    codes = np.asarray(codes)
    used = np.bincount(codes, minlength=len(labels)) > 0
    distinct = pd.Series(np.asarray(labels, dtype=object)[used])  # the dtype pandas infers for these values
    return distinct.array.take((np.cumsum(used) - 1)[codes])


def _gather_labels(values: np.ndarray):
    """A column of a few distinct labels (None = missing) from an object array, via `_gather`."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # a handful of labels
    labels = np.append(np.asarray(uniques, dtype=object), None)
    return _gather(labels, np.where(codes < 0, len(labels) - 1, codes))


def _area_names(area_codes: np.ndarray, level: str, area_map: pd.DataFrame | None) -> dict:
    """Name columns (area_name, and medical_area at municipal level) of the distinct area codes, to be
    gathered per row: the values `Series.map` gives, mapped once per area. None = the area code itself."""
    codes = pd.Series(np.asarray(area_codes, dtype=object)).astype("str")
    if area_map is None or level == "national":
        if level == "national":
            return {"area_name": pd.Series(np.full(len(area_codes), "全国", dtype=object)).array}
        return {"area_name": None}
    m = area_map.drop_duplicates("muni_code")
    if level == "muni":
        out = {"area_name": codes.map(m.set_index("muni_code")["name"]).array}
        if "medical_area" in m:
            out["medical_area"] = codes.map(m.set_index("muni_code")["medical_area"]).array
        return out
    if level == "medical_area":
        names = m.drop_duplicates("medical_area_code").set_index("medical_area_code")["medical_area"]
        return {"area_name": codes.map(names.rename(index=str)).array}
    if level == "pref":
        pn = m.drop_duplicates("pref_code")
        col = "pref_name" if "pref_name" in pn else "pref_code"
        return {"area_name": codes.map(pn.set_index(pn["pref_code"].astype(str))[col]).array}
    return {"area_name": None}

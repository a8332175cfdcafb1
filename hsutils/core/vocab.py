"""One vocabulary per coded value: 尿定性, sex, yes/no answers, 喫煙, reported codes, prefectures.

Every module that reads, writes or shows one of these codes uses this module (`hsutils.inputs.io` when it
loads an export, `hsutils.rules.clinical` when a caller passes text, `hsutils.demo.synth` when it writes the
demo, the XML and UKE importers, the labels of tables and charts). Nothing else spells the codes.

Conventions (decided once, docs/rules.md §1.5, §4.3; formats/TOKUTEI_XML §1.4–1.5)
---------------------------------------------------------------------------
* **尿定性** (尿蛋白, 尿糖). The 特定健診 電子的標準様式 code list (OID 1.2.392.200119.6.2102, used by KDB
  and 健診機関 exports) is 1 −, 2 ±, 3 1+, 4 2+, 5 3+ (`URINE_QUALITATIVE`). Inside hsutils a result
  is the *ordinal* 0 (−), 1 (±), 2 (1+), 3 (2+), 4 (3+) (float, NaN when missing), so that
  "1+ 以上" is ``ordinal >= 2``. An export value is text: a digit string is always the export code
  (``"2"`` is ±, never the ordinal 2), other text is one of the spellings of `URINE_SPELLINGS`
  (−, -, 陰性, ±, +-, +/-, 弱陽性, +, 1+, 陽性, ++, 2+, +++, 3+, 4+ …, full-width and in brackets
  "(-)", "（＋）" alike). `parse_urine` reads export values; numbers passed to it are export codes
  too (a numeric Excel column of codes). Only `hsutils.rules.clinical` also takes numbers that are
  already ordinals: a numeric column there is the canonical ordinal that `hsutils.inputs.io` produced.
* **Sex**: 1 男, 2 女 (JIS X 0303, OID 1.2.392.200119.6.1104); 男/女/男性/女性/M/F/MALE/FEMALE accepted
  in any case and width. Parsed to float 1.0/2.0 (NaN unknown).
* **Yes/no** (服薬 1 あり 2 なし, 質問票 1 はい 2 いいえ, OID .2003; flags 1/0): True for 1, あり, はい,
  有, ○, TRUE, YES …; False for 2, 0, なし, いいえ, 無, ×, FALSE, NO … (`YES_NO_SPELLINGS`). Code 2 is
  "no" (docs/rules.md §1.5), 0 too (a 0/1 flag).
* **喫煙** (特定健診 第4期 質問票, OID .24060): 1 はい (吸っている), 2 以前は吸っていたが最近1ヶ月間は吸っていない,
  3 いいえ; 後期高齢者の質問票 ⑫: 1 吸っている, 2 吸っていない, 3 やめた. In both only 1 is a current
  smoker (the 階層化 risk ④, docs/rules.md §1.2), so `parse_smoking` maps 1 → True, 2 and 3 → False; the
  yes/no spellings are accepted as well.
* **Reported codes** of the 健診 record and other tables: 保健指導レベル 1 積極的支援, 2 動機付け支援,
  3 なし(情報提供), 4 判定不能 (docs/rules.md §1.5, OID .3001); メタボ判定 1 基準該当, 2 予備群該当, 3 非該当,
  4 判定不能 (docs/rules.md §2.4, OID .1008); 要介護状態区分 12/13 要支援1–2, 21–25 要介護1–5; 保険種別.
  `hsutils.inputs.io` reads them with the `*_SPELLINGS` tables (category columns of hsutils.core.schema).
* **Prefectures**: JIS X 0401 都道府県コード 1–47 ↔ name (`PREF_NAMES`). `prefecture_code` accepts
  17, "17", "17000" (団体コード), 石川県, 石川 and full-width forms, and returns "17".

Every ``parse_*`` function is vectorised: it accepts a scalar, a list/array or a pandas Series and
works on the *distinct* values only (``pd.factorize``), then maps back by integer codes, so a
ten-million-row column costs one pass. A Series gives a Series with the same index, an array gives
a numpy array (a pandas BooleanArray for `parse_yes_no` / `parse_smoking`), a scalar gives a
scalar (NaN / None when the value is not in the vocabulary). Unknown and blank values give
missing; callers that must report bad values (hsutils.inputs.io) compare with their blanks.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------
# 尿定性 (docs/rules.md §4.3; TOKUTEI_XML §1.4 尿蛋白/尿糖, §1.5 OID .2102)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrineGrade:
    """One grade of a 尿定性 result: export code, hsutils ordinal, display label."""

    code: int       # 電子的標準様式 code (OID 1.2.392.200119.6.2102)
    ordinal: int    # canonical value inside hsutils (0 − … 4 3+)
    label: str      # label in tables and charts


URINE_QUALITATIVE: dict[int, UrineGrade] = {g.code: g for g in (
    UrineGrade(1, 0, "−"), UrineGrade(2, 1, "±"), UrineGrade(3, 2, "1+"),
    UrineGrade(4, 3, "2+"), UrineGrade(5, 4, "3+"))}
#: ordinal → label ("−", "±", "1+", "2+", "3+").
URINE_LABELS: dict[int, str] = {g.ordinal: g.label for g in URINE_QUALITATIVE.values()}
URINE_NEGATIVE, URINE_TRACE, URINE_PLUS1, URINE_PLUS2, URINE_PLUS3 = 0, 1, 2, 3, 4

# Text spellings → ordinal, compared after `_urine_key` (NFKC, no spaces or brackets). Digit
# strings are not here: they are the export codes of URINE_QUALITATIVE.
URINE_SPELLINGS: dict[str, int] = {
    # − (negative); after NFKC the full-width "－" is "-" and "ｰ" is "ー"
    "-": 0, "−": 0, "ー": 0, "‐": 0, "―": 0, "–": 0, "—": 0, "陰性": 0,
    # ± (trace)
    "±": 1, "+-": 1, "+−": 1, "+ー": 1, "+/-": 1, "弱陽性": 1,
    # 1+; "陽性" without a grade is the lowest positive grade
    "+": 2, "1+": 2, "+1": 2, "陽性": 2,
    "++": 3, "2+": 3, "+2": 3,
    # 3+; 4+ (some laboratories grade 尿糖 up to 4+) is counted in the top grade 3+
    "+++": 4, "3+": 4, "+3": 4, "++++": 4, "4+": 4, "+4": 4,
}
URINE_EXPECTED = "−, ±, 1+, 2+, 3+（または コード 1–5）"
#: ASCII spellings as CSV exports often write them ("-", "+"); the demo files use them.
URINE_EXPORT_TEXT: dict[int, str] = {0: "-", 1: "±", 2: "+", 3: "2+", 4: "3+"}

# ---------------------------------------------------------------------------------------------
# Sex (JIS X 0303; TOKUTEI_XML §1.2 administrativeGenderCode)
# ---------------------------------------------------------------------------------------------
MALE, FEMALE = 1, 2
SEX_LABELS: dict[int, str] = {MALE: "男", FEMALE: "女"}
SEX_LABELS_LONG: dict[int, str] = {MALE: "男性", FEMALE: "女性"}
# Compared after `_upper_key` (NFKC, upper case, no spaces, no trailing ".0").
SEX_SPELLINGS: dict[str, int] = {
    "1": MALE, "2": FEMALE, "男": MALE, "女": FEMALE, "男性": MALE, "女性": FEMALE,
    "M": MALE, "F": FEMALE, "MALE": MALE, "FEMALE": FEMALE,
}
SEX_EXPECTED = "1（男）または 2（女）が必要（男/女, M/F も可）"

# ---------------------------------------------------------------------------------------------
# Yes/no answers and flags (docs/rules.md §1.5 服薬 1 あり 2 なし; TOKUTEI_XML §1.5 OID .2003)
# ---------------------------------------------------------------------------------------------
YES, NO = 1, 2
YES_NO_LABELS: dict[int, str] = {YES: "はい", NO: "いいえ"}
# Compared after `_upper_key`.
YES_NO_SPELLINGS: dict[str, bool] = {
    "1": True, "0": False, "2": False,
    "あり": True, "有": True, "有り": True, "なし": False, "無": False, "無し": False,
    "はい": True, "いいえ": False, "TRUE": True, "FALSE": False, "T": True, "F": False,
    "YES": True, "NO": False, "Y": True, "N": False, "○": True, "〇": True, "◯": True,
    "×": False, "✕": False, "該当": True, "非該当": False,
    "吸っている": True, "吸っていない": False,
}
YES_NO_EXPECTED = "1/2（あり/なし）, はい/いいえ, 有/無, ○/× などが必要"
#: Words of checklists and target sheets (parameter files) accepted besides the yes/no spellings.
DONE_SPELLINGS: dict[str, bool] = {
    "済": True, "実施": True, "実施済み": True, "達成": True,
    "未": False, "未実施": False, "未達成": False,
}

# 喫煙: 1 current smoker; 2, 3 not (第4期 質問票 OID .24060 and 後期高齢者の質問票 ⑫).
SMOKING_CODES: dict[str, bool] = {"1": True, "2": False, "3": False}
SMOKING_SPELLINGS: dict[str, bool] = {
    **YES_NO_SPELLINGS, **SMOKING_CODES,
    "以前は吸っていたが最近1ヶ月間は吸っていない": False, "やめた": False,
}
SMOKING_EXPECTED = "1（はい・吸っている）, 2（以前は吸っていた・吸っていない）, 3（いいえ・やめた）などが必要"
SMOKING_ALLOWED = "1 はい / 2, 3 なし（あり/なし, はい/いいえ, 吸っている/吸っていない も可）"

# ---------------------------------------------------------------------------------------------
# Reported 判定 codes of the 健診 record, 保健指導 and 介護 levels, insurance
# ---------------------------------------------------------------------------------------------
# 保健指導レベル as exported (docs/rules.md §1.5; TOKUTEI_XML OID .3001). Text compared without spaces, NFKC.
GUIDANCE_LEVEL_CODES: dict[int, str] = {1: "積極的支援", 2: "動機付け支援", 3: "なし(情報提供)", 4: "判定不能"}
GUIDANCE_LEVEL_SPELLINGS: dict[str, int] = {
    "積極的支援": 1, "積極的": 1, "動機付け支援": 2, "動機づけ支援": 2, "動機付け": 2,
    "なし": 3, "情報提供": 3, "なし(情報提供)": 3, "判定不能": 4,
}
# メタボリックシンドローム判定 as exported (docs/rules.md §2.4; TOKUTEI_XML OID .1008).
METABO_CODES: dict[int, str] = {1: "基準該当", 2: "予備群該当", 3: "非該当", 4: "判定不能"}
METABO_SPELLINGS: dict[str, int] = {
    "基準該当": 1, "該当": 1, "予備群該当": 2, "予備群": 2, "非該当": 3, "判定不能": 4,
}
# 特定保健指導 支援レベル of a guidance record: codes 1/2 (OID .1112 保健指導区分) or words.
GUIDANCE_PROGRAM_LEVELS: tuple[str, ...] = ("積極的支援", "動機付け支援")
GUIDANCE_PROGRAM_SPELLINGS: dict[str, str] = {
    "1": "積極的支援", "2": "動機付け支援", "積極的": "積極的支援", "動機付け": "動機付け支援",
    "動機づけ支援": "動機付け支援", "動機づけ": "動機付け支援",
}
# 要介護状態区分コード of 介護保険 data: 12/13 要支援1–2, 21–25 要介護1–5.
KAIGO_LEVEL_CODES: dict[str, str] = {
    "12": "要支援1", "13": "要支援2", "21": "要介護1", "22": "要介護2", "23": "要介護3",
    "24": "要介護4", "25": "要介護5",
}
KAIGO_LEVELS: tuple[str, ...] = tuple(KAIGO_LEVEL_CODES.values())
KAIGO_LEVEL_SPELLINGS: dict[str, str] = {
    **KAIGO_LEVEL_CODES, "支援1": "要支援1", "支援2": "要支援2",
    **{f"介護{i}": f"要介護{i}" for i in range(1, 6)},
}
# 保険種別 (国保 / 後期).
INSURANCE_TYPES: tuple[str, ...] = ("国保", "後期")
INSURANCE_SPELLINGS: dict[str, str] = {
    "国民健康保険": "国保", "市町村国保": "国保", "後期高齢者医療": "後期", "後期高齢者": "後期",
}

# ---------------------------------------------------------------------------------------------
# Prefectures (JIS X 0401)
# ---------------------------------------------------------------------------------------------
PREF_NAMES: tuple[str, ...] = tuple((
    "北海道 青森県 岩手県 宮城県 秋田県 山形県 福島県 茨城県 栃木県 群馬県 埼玉県 千葉県 東京都 神奈川県 "
    "新潟県 富山県 石川県 福井県 山梨県 長野県 岐阜県 静岡県 愛知県 三重県 滋賀県 京都府 大阪府 兵庫県 "
    "奈良県 和歌山県 鳥取県 島根県 岡山県 広島県 山口県 徳島県 香川県 愛媛県 高知県 福岡県 佐賀県 長崎県 "
    "熊本県 大分県 宮崎県 鹿児島県 沖縄県").split())
#: "17" → "石川県".
PREF_NAME_BY_CODE: dict[str, str] = {f"{i:02d}": n for i, n in enumerate(PREF_NAMES, start=1)}
# Name → code, with and without the suffix 都/府/県 (北海道 keeps its name: "北海" is not used).
_PREF_CODE_BY_NAME: dict[str, str] = {
    **{n: c for c, n in PREF_NAME_BY_CODE.items()},
    **{n[:-1]: c for c, n in PREF_NAME_BY_CODE.items() if n != "北海道"},
}
PREF_EXPECTED = "都道府県コード 1〜47 または都道府県名を指定してください"


# ---------------------------------------------------------------------------------------------
# Normalisation keys (applied to distinct values only)
# ---------------------------------------------------------------------------------------------
_SPACES = re.compile(r"\s+")
_TRAILING_ZERO = re.compile(r"^(\d+)\.0+$")
_URINE_NOISE = re.compile(r"[\s()\[\]（）]")


def _text(value) -> str | None:
    """NFKC text of a value (full-width → half-width), stripped; None for a blank or NaN.

    Integral floats read from a numeric column lose their ".0" (2.0 → "2")."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    s = unicodedata.normalize("NFKC", str(value)).strip()
    return s or None


def _upper_key(value) -> str | None:
    s = _text(value)
    if s is None:
        return None
    s = _SPACES.sub("", s).upper()
    return _TRAILING_ZERO.sub(r"\1", s)


def _urine_key(value) -> str | None:
    s = _text(value)
    if s is None:
        return None
    return _TRAILING_ZERO.sub(r"\1", _URINE_NOISE.sub("", s))


def _urine_value(value) -> float:
    key = _urine_key(value)
    if key is None:
        return np.nan
    if key.isdigit():
        grade = URINE_QUALITATIVE.get(int(key))
        return np.nan if grade is None else float(grade.ordinal)
    return float(URINE_SPELLINGS.get(key, np.nan))


def _sex_value(value) -> float:
    return float(SEX_SPELLINGS.get(_upper_key(value), np.nan))


def _lookup_bool(spellings: dict[str, bool]) -> Callable:
    def value(v):
        return spellings.get(_upper_key(v))
    return value


# ---------------------------------------------------------------------------------------------
# Vectorised mapping on distinct values
# ---------------------------------------------------------------------------------------------

def _map_distinct(values, func, *, boolean: bool = False):
    """func on the distinct values of `values`, mapped back by factor codes (no per-row Python).

    Scalar → scalar; Series → Series (same index and name); other → ndarray (float) or
    BooleanArray (`boolean`)."""
    if np.ndim(values) == 0 and not isinstance(values, (pd.Series, np.ndarray)):
        out = func(values)
        return out
    if isinstance(values, pd.Series):
        flat, shape = values, (len(values),)
    elif isinstance(values, (pd.Index, pd.Categorical, pd.api.extensions.ExtensionArray)):
        flat, shape = pd.Series(values), (len(values),)
    else:
        arr = np.asarray(values, dtype=object)
        flat, shape = arr.ravel(), arr.shape
    codes, uniques = pd.factorize(flat, use_na_sentinel=True)
    if boolean:
        mapped = [func(u) for u in uniques]  # a handful of distinct values
        table = np.array([np.nan if m is None else float(m) for m in mapped] + [np.nan])
        result = pd.array(table[codes], dtype="Float64").astype("boolean") if len(codes) \
            else pd.array([], dtype="boolean")
        if isinstance(values, pd.Series):
            return pd.Series(result, index=values.index, name=values.name)
        return result if len(shape) == 1 else np.asarray(result, dtype=object).reshape(shape)
    table = np.array([func(u) for u in uniques] + [np.nan], dtype=np.float64)
    out = table[codes]
    if isinstance(values, pd.Series):
        return pd.Series(out, index=values.index, name=values.name)
    return out.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Public parsers
# ---------------------------------------------------------------------------------------------

def parse_urine(values):
    """尿定性 export values (codes 1–5 or text) → ordinal 0 (−) … 4 (3+), NaN when unknown/blank."""
    return _map_distinct(values, _urine_value)


def urine_threshold(value, allowed=(URINE_TRACE, URINE_PLUS1, URINE_PLUS2, URINE_PLUS3),
                    what: str = "尿蛋白の基準") -> int:
    """A notebook's 尿蛋白 「以上」 parameter → ordinal (docs/notebooks.md, 尿蛋白の書き方).

    Every notebook writes it the same way, as the result: ``"±"``, ``"1+"``, ``"2+"``, ``"3+"``
    (any spelling of `URINE_SPELLINGS`, e.g. "+-", "＋"). A whole number is accepted as the ordinal
    0 −, 1 ±, 2 1+, 3 2+, 4 3+ (the older form of notebook 03). A digit *string* is refused: it could
    be an export code ("2" is ± there) or an ordinal. `allowed`: the ordinals the rule accepts.
    ParameterError (Japanese) listing the allowed results otherwise."""
    from hsutils.core.errors import ParameterError

    labels = [URINE_LABELS[o] for o in allowed]
    choices = "または".join(f"「{t}」" for t in labels) if len(labels) == 2 else \
        "".join(f"「{t}」" for t in labels) + "のいずれか"
    if isinstance(value, (bool, np.bool_)) or value is None:
        ordinal = None
    elif isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        ordinal = int(value)
    elif isinstance(value, str) and not value.strip().isdigit():
        parsed = _urine_value(value)
        ordinal = None if np.isnan(parsed) else int(parsed)
    else:
        ordinal = None
    if ordinal not in allowed:
        raise ParameterError(f"{what}は{choices}で指定してください（指定値: {value!r}）")
    return ordinal


def urine_labels(ordinals):
    """Ordinal 0–4 → label "−", "±", "1+", "2+", "3+" (None/NaN elsewhere); vectorised."""
    if np.ndim(ordinals) == 0 and not isinstance(ordinals, (pd.Series, np.ndarray)):
        try:
            return URINE_LABELS.get(int(ordinals)) if float(ordinals).is_integer() else None
        except (TypeError, ValueError):
            return None
    s = pd.Series(ordinals) if not isinstance(ordinals, pd.Series) else ordinals
    return pd.to_numeric(s, errors="coerce").map(URINE_LABELS)


def parse_sex(values):
    """Sex → 1.0 (男) / 2.0 (女), NaN when unknown/blank (1/2, 男/女, 男性/女性, M/F, male/female)."""
    return _map_distinct(values, _sex_value)


def parse_yes_no(values):
    """Yes/no answers and flags → True/False (nullable boolean), missing when unknown/blank."""
    return _map_distinct(values, _lookup_bool(YES_NO_SPELLINGS), boolean=True)


def parse_smoking(values):
    """喫煙 → True (1, はい, 吸っている) / False (2, 3, いいえ, 吸っていない, やめた), nullable boolean."""
    return _map_distinct(values, _lookup_bool(SMOKING_SPELLINGS), boolean=True)


def yes_no_value(value, extra: dict[str, bool] | None = None) -> bool | None:
    """One yes/no answer (a parameter file, a checklist) → True/False; None for blank or unknown.

    `extra` adds words of one form (e.g. {"済": True, "未": False}), compared like the others."""
    key = _upper_key(value)
    if key is None:
        return None
    if extra:
        extra_keys = {_upper_key(k): v for k, v in extra.items()}
        if key in extra_keys:
            return extra_keys[key]
    return YES_NO_SPELLINGS.get(key)


def prefecture_code(value) -> str | None:
    """2-digit prefecture code ("17") from 17, "17", "17000", "石川県", "石川" (any width); None
    when the value is not a prefecture."""
    s = _text(value)
    if s is None:
        return None
    s = _SPACES.sub("", s)
    s = _TRAILING_ZERO.sub(r"\1", s)
    if s.isdigit():
        n = int(s[:-3]) if len(s) == 5 and s.endswith("000") else int(s)
        return f"{n:02d}" if 1 <= n <= 47 and len(s) in (1, 2, 5) else None
    return _PREF_CODE_BY_NAME.get(s)


def parse_prefecture(values):
    """Vectorised `prefecture_code` → str codes "01"–"47" (None where unknown)."""
    if np.ndim(values) == 0 and not isinstance(values, (pd.Series, np.ndarray)):
        return prefecture_code(values)
    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([prefecture_code(u) for u in uniques] + [None], dtype=object)
    return pd.Series(table[codes], index=s.index, name=s.name, dtype=object)


def prefecture_name(code) -> str | None:
    """Prefecture name from any form `prefecture_code` accepts ("17" → "石川県")."""
    c = prefecture_code(code)
    return None if c is None else PREF_NAME_BY_CODE[c]

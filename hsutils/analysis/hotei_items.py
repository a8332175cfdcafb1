"""The items of the 法定報告 集計情報 form and their person-level definitions (docs/hotei.md §2–§5).

The analysis-layer half of the 法定報告 (the form writer and the committee table are in
`hsutils.patterns.hotei`, which re-exports these names): who is a 対象者 / 評価対象者, last year's status for
the 減少率 cohorts, every count item as a boolean per person-year, and the two 減少率 of the
evaluation sheet. `hsutils.analysis.pipeline` stores `previous_year_status`; `hsutils.analysis.indicators` computes
`metabo_reduction` / `hokenshido_reduction` with `reduction_flags` (one definition everywhere).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from hsutils.analysis import indicators
from hsutils.core.schema import column_absent

GUIDANCE_LEVELS = ("積極的支援", "動機付け支援")


@dataclass(frozen=True)
class Item:
    """One line of the 集計情報 form (docs/hotei.md §3)."""
    no: int
    id: str
    section: str
    label: str
    unit: str                  # "人" or "%"
    numerator: str | None = None    # rate items: ids of the counts
    denominator: str | None = None


_S1, _S2, _S3 = "全体的事項", "内臓脂肪症候群に関する事項", "服薬中の者に関する事項"
_S4, _S5, _S6 = "内臓脂肪症候群該当者の減少率", "内臓脂肪症候群予備群の減少率", "特定保健指導の対象者の減少率"
_S7 = "特定保健指導に関する事項"

#: The form, in order (docs/hotei.md §3). Numbers 1–17 are those of the published 集計情報.
ITEMS: tuple[Item, ...] = (
    Item(1, "target", _S1, "特定健康診査対象者数", "人"),
    Item(2, "examinees", _S1, "特定健康診査受診者数", "人"),
    Item(3, "kenshin_rate", _S1, "健診受診率", "%", "examinees", "target"),
    Item(4, "evaluable", _S1, "評価対象者数", "人"),
    Item(5, "metabo", _S2, "内臓脂肪症候群該当者数", "人"),
    Item(6, "metabo_pct", _S2, "内臓脂肪症候群該当者割合", "%", "metabo", "evaluable"),
    Item(7, "metabo_yobi", _S2, "内臓脂肪症候群予備群者数", "人"),
    Item(8, "metabo_yobi_pct", _S2, "内臓脂肪症候群予備群割合", "%", "metabo_yobi", "evaluable"),
    Item(9, "med_bp", _S3, "高血圧症の治療に係る薬剤を服用している者の数", "人"),
    Item(10, "med_bp_pct", _S3, "高血圧症の治療に係る薬剤を服用している者の割合", "%", "med_bp", "evaluable"),
    Item(11, "med_lipid", _S3, "脂質異常症の治療に係る薬剤を服用している者の数", "人"),
    Item(12, "med_lipid_pct", _S3, "脂質異常症の治療に係る薬剤を服用している者の割合", "%", "med_lipid", "evaluable"),
    Item(13, "med_glucose", _S3, "糖尿病の治療に係る薬剤を服用している者の数", "人"),
    Item(14, "med_glucose_pct", _S3, "糖尿病の治療に係る薬剤を服用している者の割合", "%", "med_glucose", "evaluable"),
    Item(15, "red_metabo_cohort", _S4, "昨年度の内臓脂肪症候群該当者の数", "人"),
    Item(16, "red_metabo_to_yobi", _S4, "15のうち、今年度の内臓脂肪症候群予備群の数", "人"),
    Item(17, "red_metabo_to_yobi_pct", _S4, "15のうち、今年度の内臓脂肪症候群予備群の割合", "%",
         "red_metabo_to_yobi", "red_metabo_cohort"),
    Item(18, "red_metabo_out", _S4, "15のうち、今年度の内臓脂肪症候群該当者・予備群ではなくなった者の数", "人"),
    Item(19, "red_metabo_out_pct", _S4, "15のうち、今年度の内臓脂肪症候群該当者・予備群ではなくなった者の割合", "%",
         "red_metabo_out", "red_metabo_cohort"),
    Item(20, "red_yobi_cohort", _S5, "昨年度の内臓脂肪症候群予備群の数", "人"),
    Item(21, "red_yobi_out", _S5, "20のうち、今年度の内臓脂肪症候群予備群ではなくなった者の数", "人"),
    Item(22, "red_yobi_out_pct", _S5, "20のうち、今年度の内臓脂肪症候群予備群ではなくなった者の割合", "%",
         "red_yobi_out", "red_yobi_cohort"),
    Item(23, "red_hs_cohort", _S6, "昨年度の特定保健指導の利用者数（終了者）", "人"),
    Item(24, "red_hs_out", _S6, "23のうち、今年度は特定保健指導の対象者ではなくなった者の数", "人"),
    Item(25, "red_hs_out_pct", _S6, "23のうち、今年度は特定保健指導の対象者ではなくなった者の割合", "%",
         "red_hs_out", "red_hs_cohort"),
    Item(26, "red_hs_out_med", _S6, "24のうち、今年度は服薬中のため対象者ではなくなった者の数（参考）", "人"),
    Item(27, "hs_sekkyoku_target", _S7, "積極的支援対象者数", "人"),
    Item(28, "hs_sekkyoku_target_pct", _S7, "積極的支援対象者割合", "%", "hs_sekkyoku_target", "evaluable"),
    Item(29, "hs_sekkyoku_started", _S7, "積極的支援利用者数", "人"),
    Item(30, "hs_sekkyoku_completed", _S7, "積極的支援終了者数", "人"),
    Item(31, "hs_sekkyoku_rate", _S7, "積極的支援終了者の割合", "%", "hs_sekkyoku_completed", "hs_sekkyoku_target"),
    Item(32, "hs_douki_target", _S7, "動機付け支援対象者数", "人"),
    Item(33, "hs_douki_target_pct", _S7, "動機付け支援対象者割合", "%", "hs_douki_target", "evaluable"),
    Item(34, "hs_douki_started", _S7, "動機付け支援利用者数", "人"),
    Item(35, "hs_douki_completed", _S7, "動機付け支援終了者数", "人"),
    Item(36, "hs_douki_rate", _S7, "動機付け支援終了者の割合", "%", "hs_douki_completed", "hs_douki_target"),
    Item(37, "hs_target", _S7, "特定保健指導対象者数", "人"),
    Item(38, "hs_target_pct", _S7, "特定保健指導対象者割合", "%", "hs_target", "evaluable"),
    Item(39, "hs_started", _S7, "特定保健指導利用者数", "人"),
    Item(40, "hs_completed", _S7, "特定保健指導終了者数", "人"),
    Item(41, "hs_rate", _S7, "特定保健指導実施率", "%", "hs_completed", "hs_target"),
    Item(42, "hs_med_excluded", _S7, "服薬中のため特定保健指導の対象者から除外した者の数", "人"),
    Item(43, "hs_med_excluded_pct", _S7, "服薬中のため特定保健指導の対象者から除外した者の割合", "%",
         "hs_med_excluded", "evaluable"),
)
ITEM_BY_ID = {i.id: i for i in ITEMS}
COUNT_IDS = [i.id for i in ITEMS if i.unit == "人"]
RATE_IDS = [i.id for i in ITEMS if i.unit == "%"]


# =============================================================================================
# Person-level definitions (docs/hotei.md §2, §4)
# =============================================================================================
def target(py: pd.DataFrame) -> np.ndarray:
    """特定健康診査対象者 (docs/hotei.md §2.1; docs/rules.md §7.1): 国保, enrolled the whole fiscal year, 40–74
    at fiscal-year end, not a statutory exclusion."""
    return indicators.kokuho_target(py)


def evaluable(py: pd.DataFrame) -> np.ndarray:
    """評価対象者 (docs/hotei.md §2.3): 対象者 who took the 特定健診 in the year (= 受診者 in this data)."""
    return indicators.participants(py)


def _same_text_codes(col: pd.Series) -> np.ndarray:
    """Integer codes equal exactly where the values' text (`astype(str)`) is equal; missing values share one code.
    A categorical column is coded through its categories only, not row by row."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        text = np.append(np.asarray(col.cat.categories.astype(str), dtype=object), None)
        lookup = pd.factorize(text, use_na_sentinel=False)[0].astype(np.int32)  # gathered per row: 4 bytes
        return lookup[col.cat.codes.to_numpy()]  # code -1 (missing) indexes the trailing None
    return pd.factorize(col.astype(str), use_na_sentinel=False)[0]


def _person_codes(person_id: pd.Series, room: int) -> np.ndarray:
    """int64 codes equal exactly where person_id is equal, with `room` key values free per code (the
    municipality × fy part of the previous-year key). An integer column (no missing value) is its own
    code, offset to 0, when the key fits in int64: no hashing of millions of ids; anything else is
    factorised (text ids, missing values)."""
    values = person_id.to_numpy() if isinstance(person_id.dtype, np.dtype) else None
    if values is not None and values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if (hi - lo + 1) * room < 2 ** 62:
            return np.subtract(values, lo, dtype=np.int64)  # one pass, whatever the integer type
    return pd.factorize(person_id, use_na_sentinel=False)[0].astype(np.int64)


def _linkable_rows(person: np.ndarray, rows_ev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows that can have a previous year, 評価対象 rows that can be one): only a person with two rows or
    more can be linked, and only when one of them is 評価対象; the other rows are not looked up (in a
    year's data most persons never take the checkup). Codes too sparse to count (integer ids far
    apart) keep every row."""
    n = len(person)
    size = int(person.max()) + 1 if n else 0
    if size > 4 * n + 1024:
        return np.arange(n), rows_ev
    several = np.bincount(person, minlength=size) > 1
    if not several.any():  # one row per person: nothing to link
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    with_ev = np.zeros(size, dtype=bool)
    with_ev[person[rows_ev]] = True
    return np.flatnonzero((several & with_ev)[person]), rows_ev[several[person[rows_ev]]]


def previous_year_status(py: pd.DataFrame) -> pd.DataFrame:
    """Last year's status of the same person at the same 保険者 (municipality), aligned with py
    (docs/hotei.md §4): `prev_evaluable` (評価対象者 last year), `prev_metabo` (last year's メタボ判定,
    NaN when not 評価対象), `prev_guidance_completer` (last year a 特定保健指導 対象者 by 階層化 who
    completed it). A person who moved municipality starts a new history (another 保険者).

    Each row looks up the first 評価対象 row of (person, municipality, fy − 1) by one integer key per
    row (sorted keys + `searchsorted`): no join of string columns; only the rows of persons with two
    rows or more, one of them 評価対象, are looked up (`_linkable_rows`).
    """
    ev = evaluable(py)
    completer = ev & indicators._isin(py, "hokenshido", GUIDANCE_LEVELS) & _bool(py, "guidance_completed")
    muni = _same_text_codes(py["muni_code"])
    fy = py["fy"].to_numpy()
    fy0 = int(fy.min()) if len(fy) else 0
    span = (int(fy.max()) - fy0 + 2) if len(fy) else 2  # room for fy + 1
    n_muni = int(muni.max(initial=0)) + 1
    person = _person_codes(py["person_id"], n_muni * span)
    rows, rows_ev = _linkable_rows(person, np.flatnonzero(ev))

    def key(at: np.ndarray) -> np.ndarray:  # one int64 per (person, municipality, fy)
        return (person[at] * n_muni + muni[at]) * span + (fy[at].astype(np.int64) - fy0)

    # first 評価対象 row per (person, municipality, fy): it is the "last year" of the key fy + 1
    last_keys, first = np.unique(key(rows_ev) + 1, return_index=True)
    this_key = key(rows)
    pos = np.minimum(np.searchsorted(last_keys, this_key), max(len(last_keys) - 1, 0))
    found = (last_keys[pos] == this_key) if len(last_keys) else np.zeros(len(rows), dtype=bool)
    hit = np.zeros(len(py), dtype=bool)
    hit[rows[found]] = True
    src = rows_ev[first[pos[found]]]  # aligned with the rows of `hit` (both ascending)
    metabo = py["metabo"]
    if not (ev & metabo.notna().to_numpy()).any():
        prev_metabo = np.full(len(py), np.nan, dtype=object)  # no label at all: an object column of NaN
    elif isinstance(metabo.dtype, pd.CategoricalDtype):
        # text labels in pandas' string dtype (as a frame of them infers), decoded from the category codes
        codes = np.full(len(py), -1, dtype=np.int8 if len(metabo.cat.categories) < 127 else np.int32)
        codes[hit] = metabo.cat.codes.to_numpy()[src]
        labels = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0),
                                                pa.array(metabo.cat.categories.to_numpy(dtype=object)))
        prev_metabo = pd.array(labels.dictionary_decode(), dtype="str")
    else:
        prev_metabo = np.full(len(py), np.nan, dtype=object)
        prev_metabo[hit] = metabo.to_numpy(dtype=object)[src]
        prev_metabo = pd.array(prev_metabo, dtype="str")
    prev_completer = np.zeros(len(py), dtype=bool)
    prev_completer[hit] = completer[src]
    return pd.DataFrame({"prev_evaluable": hit, "prev_metabo": prev_metabo,
                         "prev_guidance_completer": prev_completer}, index=py.index)


def _bool(py: pd.DataFrame, col: str) -> np.ndarray:
    if column_absent(py, col):
        return np.zeros(len(py), dtype=bool)
    return py[col].fillna(False).astype(bool).to_numpy()


def _with_previous(py: pd.DataFrame) -> pd.DataFrame:
    if {"prev_evaluable", "prev_metabo", "prev_guidance_completer"} <= set(py.columns):
        return py
    return pd.concat([py, previous_year_status(py)], axis=1)


def _eq(py: pd.DataFrame, col: str, value) -> np.ndarray:
    return np.zeros(len(py), bool) if column_absent(py, col) else (py[col] == value).fillna(False).to_numpy(dtype=bool)


def person_flags(py: pd.DataFrame) -> pd.DataFrame:
    """Every count item of the form as a boolean column per person-year (docs/hotei.md §3, §4)."""
    py = _with_previous(py)
    tgt, ev = target(py), evaluable(py)
    both = ev & _bool(py, "prev_evaluable")   # 減少率 cohorts: 評価対象者 this year and last year
    prev_m = py["prev_metabo"]
    met_now, yobi_now, none_now = (_eq(py, "metabo", v) for v in ("該当", "予備群", "非該当"))
    hs = py["hokenshido"]
    hs_target_now = indicators._isin(py, "hokenshido", GUIDANCE_LEVELS)
    hs_known = hs.notna().to_numpy()
    med_now = _eq(py, "hokenshido", "服薬中")
    started, completed = _bool(py, "guidance_started"), _bool(py, "guidance_completed")
    f = {
        "target": tgt, "examinees": ev, "evaluable": ev,
        "metabo": ev & met_now, "metabo_yobi": ev & yobi_now,
        "med_bp": ev & _bool(py, "med_bp"), "med_lipid": ev & _bool(py, "med_lipid"),
        "med_glucose": ev & _bool(py, "med_glucose"),
    }
    # a cohort member needs this year's status: 判定不能 can be neither "減少" nor "not 減少" (docs/hotei.md §4.0)
    met_known = py["metabo"].notna().to_numpy()
    c_met = both & met_known & (prev_m == "該当").fillna(False).to_numpy(dtype=bool)
    c_yobi = both & met_known & (prev_m == "予備群").fillna(False).to_numpy(dtype=bool)
    c_hs = both & hs_known & _bool(py, "prev_guidance_completer")
    f.update({
        "red_metabo_cohort": c_met, "red_metabo_to_yobi": c_met & yobi_now, "red_metabo_out": c_met & none_now,
        "red_yobi_cohort": c_yobi, "red_yobi_out": c_yobi & none_now,
        "red_hs_cohort": c_hs, "red_hs_out": c_hs & ~hs_target_now, "red_hs_out_med": c_hs & med_now,
    })
    for key, level in (("sekkyoku", "積極的支援"), ("douki", "動機付け支援")):
        lv = ev & _eq(py, "hokenshido", level)
        f.update({f"hs_{key}_target": lv, f"hs_{key}_started": lv & started, f"hs_{key}_completed": lv & completed})
    hs_t = ev & hs_target_now
    f.update({"hs_target": hs_t, "hs_started": hs_t & started, "hs_completed": hs_t & completed,
              "hs_med_excluded": ev & med_now})
    # the arrays are new (or read-only memos): wrapped, not consolidated into one 2-D copy (~30 bool columns)
    return pd.DataFrame(f, index=py.index, copy=False)[COUNT_IDS]


def reduction_flags(py: pd.DataFrame, kind: str, flags: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) of a 減少率 of the evaluation sheet (docs/hotei.md §4.4):

    * "metabo": メタボ該当者・予備群の減少率 = (item 18 + item 21) ÷ (item 15 + item 20): last year's
      該当者 and 予備群 (評価対象者 both years) who are 非該当 this year.
    * "hokenshido": 特定保健指導対象者の減少率 = item 24 ÷ item 23.
    """
    f = person_flags(py) if flags is None else flags  # `flags`: person_flags(py), when the caller has them
    if kind == "metabo":
        return ((f["red_metabo_out"] | f["red_yobi_out"]).to_numpy(),
                (f["red_metabo_cohort"] | f["red_yobi_cohort"]).to_numpy())
    if kind == "hokenshido":
        return f["red_hs_out"].to_numpy(), f["red_hs_cohort"].to_numpy()
    raise ValueError(f"unknown 減少率 kind {kind!r}")

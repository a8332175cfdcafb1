"""hsutils.core.vocab: every code and spelling of 尿定性, sex, yes/no, 喫煙 and prefectures, with
hand-written expected values, and proof that io and clinical read them the same way.

Official code lists: 尿定性 OID 1.2.392.200119.6.2102 "1 − 2 ± 3 1+ 4 2+ 5 3+" (docs/rules.md §4.3,
TOKUTEI_XML §1.4–1.5); 服薬 1 あり 2 なし (docs/rules.md §1.5); 喫煙 第4期 1 はい 2 以前は吸っていた 3 いいえ.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hsutils.core import vocab
from hsutils.inputs import io, regions
from hsutils.rules import clinical
from hsutils.core.errors import ParameterError

NA = np.nan

# ----------------------------------------------------------------------------------- 尿定性


def test_urine_code_table_is_the_official_one():
    table = {code: (g.ordinal, g.label) for code, g in vocab.URINE_QUALITATIVE.items()}
    assert table == {1: (0, "−"), 2: (1, "±"), 3: (2, "1+"), 4: (3, "2+"), 5: (4, "3+")}
    assert vocab.URINE_LABELS == {0: "−", 1: "±", 2: "1+", 3: "2+", 4: "3+"}
    assert (vocab.URINE_NEGATIVE, vocab.URINE_TRACE, vocab.URINE_PLUS1) == (0, 1, 2)


# (export value, ordinal) written by hand; digit strings are always the export code.
URINE_CASES = [
    ("1", 0), ("2", 1), ("3", 2), ("4", 3), ("5", 4),
    ("１", 0), ("２", 1), ("５", 4), ("2.0", 1), (" 3 ", 2),
    ("-", 0), ("−", 0), ("－", 0), ("ー", 0), ("ｰ", 0), ("‐", 0), ("―", 0), ("–", 0), ("—", 0),
    ("(-)", 0), ("（－）", 0), ("(−)", 0), ("[-]", 0), ("陰性", 0), ("( 陰性 )", 0),
    ("±", 1), ("+-", 1), ("+−", 1), ("+ー", 1), ("+/-", 1), ("＋－", 1), ("(±)", 1), ("弱陽性", 1),
    ("+", 2), ("＋", 2), ("1+", 2), ("１＋", 2), ("+1", 2), ("(+)", 2), ("（＋）", 2), ("陽性", 2),
    ("++", 3), ("2+", 3), ("２＋", 3), ("+2", 3), ("(++)", 3),
    ("+++", 4), ("3+", 4), ("３＋", 4), ("+3", 4), ("++++", 4), ("4+", 4), ("+4", 4),
]


@pytest.mark.parametrize("text, ordinal", URINE_CASES)
def test_parse_urine_every_code_and_spelling(text, ordinal):
    assert vocab.parse_urine(text) == ordinal


@pytest.mark.parametrize("text", ["0", "6", "10", "", "  ", "未実施", "不明", "A", "+-+", None, NA])
def test_parse_urine_unknown_or_blank_is_missing(text):
    assert np.isnan(vocab.parse_urine(text))


def test_parse_urine_numbers_are_export_codes():
    # A numeric Excel column of codes: 1 → −, 2 → ± (not the ordinal 2 = 1+).
    assert vocab.parse_urine(np.array([1, 2, 3, 4, 5])).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert vocab.parse_urine(2.0) == 1.0


def test_parse_urine_vectorised_keeps_index_and_shape():
    s = pd.Series(["2", "+", None, "2", "(-)"], index=[10, 11, 12, 13, 14], name="urine_protein")
    out = vocab.parse_urine(s)
    assert out.index.tolist() == [10, 11, 12, 13, 14] and out.name == "urine_protein"
    assert out.tolist()[:2] == [1.0, 2.0] and np.isnan(out.iloc[2]) and out.tolist()[3:] == [1.0, 0.0]
    arr = vocab.parse_urine(np.array([["1", "5"], ["±", "x"]], dtype=object))
    assert arr.shape == (2, 2) and arr[0].tolist() == [0.0, 4.0] and arr[1, 0] == 1.0 and np.isnan(arr[1, 1])


def test_urine_labels_from_ordinals():
    assert vocab.urine_labels(pd.Series([0, 1, 2, 3, 4, NA])).tolist()[:5] == ["−", "±", "1+", "2+", "3+"]
    assert vocab.urine_labels(2.0) == "1+" and vocab.urine_labels(NA) is None


def test_demo_export_spellings_read_back_to_their_ordinal():
    for ordinal, text in vocab.URINE_EXPORT_TEXT.items():
        assert vocab.parse_urine(text) == ordinal


# clinical: numbers are canonical ordinals, strings are export values (one convention).
@pytest.mark.parametrize("value, stage", [
    # export codes as strings: "1" − A1, "2" ± A2, "3"–"5" 1+ … 3+ A3
    ("1", "A1"), ("2", "A2"), ("3", "A3"), ("4", "A3"), ("5", "A3"), ("２", "A2"),
    # canonical ordinals as numbers: 0 A1, 1 A2, 2–4 A3 (the A1/A2 and A2/A3 boundaries)
    (0, "A1"), (1, "A2"), (2, "A3"), (3, "A3"), (4, "A3"), (0.0, "A1"), (1.0, "A2"), (2.0, "A3"),
    # text
    ("(-)", "A1"), ("陰性", "A1"), ("（±）", "A2"), ("+/-", "A2"), ("弱陽性", "A2"),
    ("陽性", "A3"), ("(+)", "A3"), ("+++", "A3"), ("4+", "A3"),
])
def test_ckd_a_stage_at_every_code(value, stage):
    assert clinical.ckd_a_stage(value) == stage


@pytest.mark.parametrize("value", ["0", "6", -1, -0.5, "未実施"])
def test_ckd_a_stage_outside_the_codes_is_missing(value):
    assert clinical.ckd_a_stage(value) is None


def test_ckd_a_stage_mixed_object_array_numbers_are_ordinals_strings_are_codes():
    got = clinical.ckd_a_stage(np.array([0, "2", "+", 1, "1", 2, None], dtype=object))
    assert got.tolist() == ["A1", "A2", "A3", "A2", "A1", "A3", None]


def test_urine_ordinal_string_codes_and_numbers():
    assert clinical.urine_ordinal(pd.Series(["1", "2", "3", "4", "5"])).tolist() == [0, 1, 2, 3, 4]
    assert clinical.urine_ordinal(pd.Series([0.0, 1.0, 2.0, 3.0, 4.0])).tolist() == [0, 1, 2, 3, 4]


def test_kidney_flags_with_export_code_strings():
    """hg_kidney is 尿蛋白 ± 以上, ref_kidney 1+ 以上 (docs/rules.md §3): code "2" (±) gives hg but not ref;
    "3" (1+) gives both; "1" (−) neither."""
    df = pd.DataFrame({"sex": [1, 1, 1], "age": [50, 50, 50], "egfr": [80.0, 80.0, 80.0],
                       "urine_protein": pd.Series(["1", "2", "3"], dtype="str")})
    assert clinical.guidance_flags(df)["hg_kidney"].tolist() == [False, True, True]
    assert clinical.referral_flags(df)["ref_kidney"].tolist() == [False, False, True]
    assert clinical.derive_kenshin(df)["ckd_a"].tolist() == ["A1", "A2", "A3"]


def _kenshin_csv(tmp_path, column: str, values: list[str]):
    body = "".join(f"P{i},2024,17201,{v}\n" for i, v in enumerate(values))
    p = tmp_path / "kenshin.csv"
    p.write_text(f"被保険者番号,年度,市町村コード,{column}\n" + body, encoding="utf-8")
    return io.read_table(p, "kenshin")


def test_io_and_clinical_read_every_urine_value_alike(tmp_path):
    texts = [t for t, _ in URINE_CASES if t.strip() == t]  # CSV cells are stripped anyway
    r = _kenshin_csv(tmp_path, "尿蛋白", [f'"{t}"' for t in texts])
    assert r.exclusions.empty
    expected = [o for t, o in URINE_CASES if t.strip() == t]
    assert r.data["urine_protein"].tolist() == expected
    assert clinical.urine_ordinal(pd.Series(texts, dtype="str")).tolist() == expected


# ----------------------------------------------------------------------------------- sex

@pytest.mark.parametrize("text, code", [
    ("1", 1), ("2", 2), ("１", 1), ("２", 2), ("1.0", 1), (1, 1), (2.0, 2),
    ("男", 1), ("女", 2), ("男性", 1), ("女性", 2), (" 女 ", 2),
    ("M", 1), ("F", 2), ("m", 1), ("f", 2), ("Ｍ", 1), ("male", 1), ("FEMALE", 2), ("Female", 2),
])
def test_parse_sex_every_spelling(text, code):
    assert vocab.parse_sex(text) == code


@pytest.mark.parametrize("text", ["0", "3", "9", "", "不明", "X", None, NA])
def test_parse_sex_unknown_is_missing(text):
    assert np.isnan(vocab.parse_sex(text))


def test_clinical_reads_sex_text_like_io():
    """男性/女性 as text used to be missing in clinical (io knew them)."""
    # 194 × 1.0^−1.094 × 50^−0.287 = 63.1244 (男); × 0.739 = 46.6489 (女)
    got = clinical.egfr(pd.Series([1.0] * 6), pd.Series([50] * 6),
                        pd.Series(["女", "女性", "F", "２", "男性", "M"], dtype="str"))
    assert got.round(4).tolist() == [46.6489] * 4 + [63.1244] * 2
    # 腹囲 ≥85 男 / ≥90 女 with two risks (SBP 130, TG 150) → 該当; 女 89.9 → 非該当 (docs/rules.md §2)
    df = pd.DataFrame({"sex": pd.Series(["男性", "女性", "女性"], dtype="str"), "age": [50, 50, 50],
                       "waist": [85.0, 89.9, 90.0], "sbp": [130.0] * 3, "tg": [150.0] * 3})
    assert clinical.metabolic_status(df).tolist() == ["該当", "非該当", "該当"]


# ----------------------------------------------------------------------------------- yes/no, 喫煙

@pytest.mark.parametrize("text, value", [
    ("1", True), ("2", False), ("0", False), ("１", True), ("２", False), ("1.0", True), (1, True),
    ("あり", True), ("なし", False), ("有", True), ("無", False), ("有り", True), ("無し", False),
    ("はい", True), ("いいえ", False), ("TRUE", True), ("false", False), ("yes", True), ("No", False),
    ("Y", True), ("n", False), ("○", True), ("〇", True), ("◯", True), ("×", False), ("✕", False),
    ("該当", True), ("非該当", False), (True, True), (False, False),
])
def test_parse_yes_no_every_spelling(text, value):
    assert vocab.parse_yes_no(text) is value


@pytest.mark.parametrize("text", ["3", "9", "", "たぶん", None])
def test_parse_yes_no_unknown_is_missing(text):
    assert vocab.parse_yes_no(text) is None


def test_parse_yes_no_series_is_nullable_boolean():
    out = vocab.parse_yes_no(pd.Series(["1", "2", "x", None], index=[5, 6, 7, 8]))
    assert str(out.dtype) == "boolean" and out.index.tolist() == [5, 6, 7, 8]
    assert out.tolist()[:2] == [True, False] and out.isna().tolist() == [False, False, True, True]


@pytest.mark.parametrize("text, value", [
    ("1", True), ("2", False), ("3", False), ("はい", True), ("いいえ", False),
    ("吸っている", True), ("吸っていない", False), ("やめた", False),
    ("以前は吸っていたが最近1ヶ月間は吸っていない", False), ("あり", True), ("なし", False),
])
def test_parse_smoking_fourth_period_codes(text, value):
    assert vocab.parse_smoking(text) is value


def test_io_reads_smoking_code_3_as_not_smoking(tmp_path):
    r = _kenshin_csv(tmp_path, "喫煙", ["1", "2", "3", "4"])
    assert r.data["smoking"].tolist()[:3] == [True, False, False] and pd.isna(r.data["smoking"].iloc[3])
    (row,) = r.exclusions.itertuples()
    assert (row.row, row.value, row.scope) == (5, "4", "項目") and "3（いいえ" in row.reason
    # 服薬 keeps the plain yes/no list: 3 is not a code there
    r = _kenshin_csv(tmp_path, "服薬1(血圧)", ["1", "2", "3"])
    assert r.data["med_bp"].tolist()[:2] == [True, False] and len(r.exclusions) == 1


def test_yes_no_value_with_checklist_words():
    assert vocab.yes_no_value("済", extra=vocab.DONE_SPELLINGS) is True
    assert vocab.yes_no_value("未実施", extra=vocab.DONE_SPELLINGS) is False
    assert vocab.yes_no_value("2", extra=vocab.DONE_SPELLINGS) is False
    assert vocab.yes_no_value("済") is None and vocab.yes_no_value("") is None


def test_checklists_use_the_same_yes_no():
    from hsutils.patterns import evaluation, support_record

    assert [evaluation._yes_no(v) for v in ("はい", "2", "達成", "未", "", "保留")] == \
        ["達成", "未達成", "達成", "未達成", None, "保留"]
    # 宣言2 answers (notebooks 04 and 09) are read by hsutils.patterns.support_record
    assert [support_record.declaration2_answer(v) for v in ("はい", "いいえ", "2", "実施済み", "")] == \
        [True, False, False, True, None]
    with pytest.raises(ParameterError, match="はい／いいえ"):
        support_record.declaration2_answer("保留")


def test_nephropathy_urine_threshold_parameter():
    from hsutils.patterns import nephropathy

    for text, ordinal in (("±", 1), ("+-", 1), ("1+", 2), ("+", 2), ("１＋", 2), (1, 1), (2, 2)):
        assert nephropathy.nephropathy_params(urine_protein=text).urine_protein == ordinal
    for bad in ("−", "2", "2+", "x"):
        with pytest.raises(ParameterError, match="「±」または「1\\+」"):
            nephropathy.nephropathy_params(urine_protein=bad)


# ----------------------------------------------------------------------------------- prefectures

def test_prefecture_names_are_jis_x0401_and_match_the_builtin_master():
    assert len(vocab.PREF_NAMES) == 47
    assert (vocab.PREF_NAME_BY_CODE["01"], vocab.PREF_NAME_BY_CODE["13"], vocab.PREF_NAME_BY_CODE["17"],
            vocab.PREF_NAME_BY_CODE["26"], vocab.PREF_NAME_BY_CODE["27"], vocab.PREF_NAME_BY_CODE["47"]) == \
        ("北海道", "東京都", "石川県", "京都府", "大阪府", "沖縄県")
    master = regions.load_master()[["pref_code", "pref_name"]].drop_duplicates()
    assert dict(zip(master["pref_code"], master["pref_name"])) == vocab.PREF_NAME_BY_CODE


@pytest.mark.parametrize("value, code", [
    (17, "17"), ("17", "17"), ("１７", "17"), (17.0, "17"), ("17.0", "17"), ("17000", "17"), (1, "01"),
    ("1", "01"), ("01", "01"), ("01000", "01"), (47, "47"), ("石川県", "17"), ("石川", "17"),
    ("北海道", "01"), ("東京都", "13"), ("東京", "13"), ("京都府", "26"), ("京都", "26"), ("大阪", "27"),
    (" 沖縄県 ", "47"),
])
def test_prefecture_code_forms(value, code):
    assert vocab.prefecture_code(value) == code


@pytest.mark.parametrize("value", [0, 48, "00", "48", "17001", "17201", "172014", "北海", "石", "", None])
def test_prefecture_code_unknown(value):
    assert vocab.prefecture_code(value) is None


def test_parse_prefecture_vectorised_and_names():
    out = vocab.parse_prefecture(pd.Series(["石川県", "17", "x", None, "東京"], index=[3, 4, 5, 6, 7]))
    assert out.tolist() == ["17", "17", None, None, "13"] and out.index.tolist() == [3, 4, 5, 6, 7]
    assert vocab.prefecture_name(17) == "石川県" and vocab.prefecture_name("99") is None


def test_regions_prefecture_errors_use_the_vocabulary():
    with pytest.raises(regions.RegionCodeError, match="都道府県「48」が分かりません"):
        regions.load_master(48)
    assert regions.load_master("石川")["pref_code"].eq("17").all()


# ----------------------------------------------------------------------------------- reported codes

def test_reported_code_tables_are_the_official_lists():
    assert vocab.GUIDANCE_LEVEL_CODES == {1: "積極的支援", 2: "動機付け支援", 3: "なし(情報提供)", 4: "判定不能"}
    assert vocab.METABO_CODES == {1: "基準該当", 2: "予備群該当", 3: "非該当", 4: "判定不能"}
    assert vocab.KAIGO_LEVELS == ("要支援1", "要支援2", "要介護1", "要介護2", "要介護3", "要介護4", "要介護5")
    # every official label reads back as its own code
    assert all(vocab.GUIDANCE_LEVEL_SPELLINGS[label] == code for code, label in vocab.GUIDANCE_LEVEL_CODES.items())
    assert all(vocab.METABO_SPELLINGS[label] == code for code, label in vocab.METABO_CODES.items())


def test_io_reads_every_reported_code_and_spelling(tmp_path):
    values = ["1", "2", "3", "4", "積極的支援", "動機づけ支援", "なし（情報提供）", "情報提供", "判定不能", "5"]
    r = _kenshin_csv(tmp_path, "保健指導レベル", values)
    assert r.data["guidance_level_reported"].tolist()[:9] == [1, 2, 3, 4, 1, 2, 3, 3, 4]
    assert pd.isna(r.data["guidance_level_reported"].iloc[9]) and len(r.exclusions) == 1
    values = ["1", "2", "3", "4", "基準該当", "該当", "予備群該当", "予備群", "非該当", "判定不能"]
    r = _kenshin_csv(tmp_path, "メタボ判定", values)
    assert r.data["metabo_reported"].tolist() == [1, 2, 3, 4, 1, 1, 2, 2, 3, 4]


def test_io_reads_every_kaigo_level_code(tmp_path):
    codes = ["12", "13", "21", "22", "23", "24", "25", "要介護3", "介護5", "支援1", "11"]
    body = "".join(f"P{i},17201,{c},2024-04-01\n" for i, c in enumerate(codes))
    p = tmp_path / "kaigo.csv"
    p.write_text("被保険者番号,市町村コード,要介護度,認定開始日\n" + body, encoding="utf-8")
    r = io.read_table(p, "kaigo")
    assert r.data["level"].tolist() == ["要支援1", "要支援2", "要介護1", "要介護2", "要介護3", "要介護4",
                                        "要介護5", "要介護3", "要介護5", "要支援1"]
    (row,) = r.exclusions.itertuples()
    assert (row.row, row.value, row.scope) == (12, "11", "行")

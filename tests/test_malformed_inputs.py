"""Malformed inputs (GitHub issue 2 "Bad input"): every case gives a clear Japanese message that
names file, row, column and value, never a traceback, and rows read = kept + dropped."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import openpyxl
import pandas as pd
import pytest

from hsutils.inputs import io
from hsutils.running import cli
from hsutils.core.errors import DataError, ParameterError

KENSHIN_HEAD = "被保険者番号,年度,市町村コード"
ENROLL_HEAD = "被保険者番号,年度,市町村コード,性別,年齢,保険種別"


def write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def assert_accounting(r: io.LoadResult) -> None:
    """read = kept + dropped, one row-exclusion per dropped row, frame length = kept."""
    assert r.n_read == r.n_kept + r.n_dropped
    assert len(r.data) == r.n_kept
    rows = r.exclusions[r.exclusions["scope"] == "行"]
    assert len(rows) == r.n_dropped
    assert rows["row"].is_unique
    assert list(r.exclusions.columns) == io.EXCLUSION_COLUMNS


def only(excl: pd.DataFrame) -> pd.Series:
    assert len(excl) == 1, excl
    return excl.iloc[0]


# --- encodings --------------------------------------------------------------------------------

def test_undecodable_bytes_name_file_encodings_and_line(tmp_path):
    # 0xE9 (latin-1 é) is invalid UTF-8 here and, followed by ',', an invalid cp932 pair.
    data = (KENSHIN_HEAD + "\nA1,2024,17201\n").encode("utf-8") + b"caf\xe9,2024,17201\n"
    p = tmp_path / "kenshin.csv"
    p.write_bytes(data)
    with pytest.raises(DataError) as e:
        io.read_table(p, "kenshin")
    msg = str(e.value)
    assert "kenshin.csv" in msg and "文字コード" in msg
    assert "UTF-8" in msg and "cp932" in msg
    assert "行 3" in msg  # the undecodable line


def test_genuine_cp932_file_loads(tmp_path):
    p = write(tmp_path / "enrollment.csv",
              ENROLL_HEAD + "\nA1,令和6年度,17201,男,70,国保\nA2,R6,17201,女,76,後期\n", "cp932")
    r = io.read_table(p, "enrollment")
    assert_accounting(r)
    assert r.n_kept == 2
    assert r.data["sex"].tolist() == [1, 2]
    assert r.data["insurance"].tolist() == ["国保", "後期"]
    assert r.data["fy"].tolist() == [2024, 2024]


def test_bom_first_header_is_recognised(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",HbA1c\nA1,2024,17201,5.6\n", "utf-8-sig")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["person_id"].tolist() == ["A1"]
    assert r.data["hba1c"].tolist() == [5.6]
    assert r.extra_columns.shape[1] == 0


# --- structure --------------------------------------------------------------------------------

def test_missing_required_column_lists_missing_and_found(tmp_path):
    p = write(tmp_path / "kenshin.csv", "被保険者番号,年度,HbA1c\nA1,2024,5.6\n")
    with pytest.raises(DataError) as e:
        io.read_table(p, "kenshin")
    msg = str(e.value)
    assert "kenshin.csv" in msg
    assert "市町村コード（muni_code）" in msg
    assert "見つかった列: 被保険者番号、年度、HbA1c" in msg


def test_extra_unknown_columns_are_kept_aside_with_warning(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",備考,担当者\nA1,2024,17201,要再検,山田\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.extra_columns.columns.tolist() == ["備考", "担当者"]
    assert r.extra_columns.iloc[0].tolist() == ["要再検", "山田"]
    assert any("備考" in w and "担当者" in w and "kenshin.csv" in w for w in r.warnings)
    assert "備考" not in r.data.columns


def test_empty_file_is_a_data_error(tmp_path):
    p = write(tmp_path / "kenshin.csv", "")
    with pytest.raises(DataError, match="kenshin.csv: ファイルが空です"):
        io.read_table(p, "kenshin")


def test_bom_only_file_is_empty(tmp_path):
    p = write(tmp_path / "kenshin.csv", "\n\n", "utf-8-sig")
    with pytest.raises(DataError, match="ファイルが空です"):
        io.read_table(p, "kenshin")


def test_header_only_gives_zero_rows_and_warning(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",HbA1c\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert (r.n_read, r.n_kept, r.n_dropped) == (0, 0, 0)
    assert any("見出し行のみ" in w for w in r.warnings)
    assert r.data.columns.tolist()[:3] == ["person_id", "fy", "muni_code"]


def test_trailing_blank_lines_and_comma_lines_are_not_rows(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201\nA2,2024,17201\n,,\n\n\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert (r.n_read, r.n_kept) == (2, 2)


def test_interior_blank_line_keeps_excel_row_numbers(tmp_path):
    # Row 2 = A1, row 3 blank, row 4 = bad fiscal year.
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201\n\nA2,来年,17201\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"]) == (4, "年度", "来年")


def test_ragged_csv_is_a_clear_error(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201,余分\n")
    with pytest.raises(DataError) as e:
        io.read_table(p, "kenshin")
    assert "kenshin.csv" in str(e.value) and "列数" in str(e.value)


def test_xlsx_with_title_rows_above_header(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["令和6年度 特定健診結果一覧"])
    ws.append(["作成日: 2025-04-01"])
    ws.append(["被保険者番号", "年度", "市町村コード", "健診受診日", "HbA1c"])
    ws.append(["A1", "令和6年度", 17201, dt.datetime(2024, 5, 1), 5.6])
    ws.append(["A2", 2024, 17201, 45444, 65])  # Excel serial 45444 = 2024-06-01
    p = tmp_path / "kenshin.xlsx"
    wb.save(p)
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["exam_date"].tolist() == [pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-01")]
    assert r.data["muni_code"].tolist() == ["17201", "17201"]
    # header is Excel row 3, so A2 is row 5
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (5, "HbA1c", "65", "項目")


# --- values -------------------------------------------------------------------------------------

def test_text_in_numeric_column_sets_only_that_value_missing(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",体重,身長\nA1,2024,17201,abc,160\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.n_kept == 1
    assert math.isnan(r.data.loc[0, "weight"]) and r.data.loc[0, "height"] == 160.0
    row = only(r.exclusions)
    assert (row["file"], row["row"], row["column"], row["value"], row["scope"]) == (
        "kenshin.csv", 2, "体重", "abc", "項目")
    assert "数値として読めません" in row["reason"] and "20–250 kg" in row["reason"]


def test_hba1c_65_is_a_probable_unit_slip(tmp_path):
    p = write(tmp_path / "kenshin.csv",
              KENSHIN_HEAD + ",HbA1c\nA1,2024,17201,20.0\nA2,2024,17201,20.1\nA3,2024,17201,65\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["hba1c"].tolist()[0] == 20.0  # exactly at the upper bound: kept
    assert np.isnan(r.data["hba1c"].tolist()[1:]).all()
    assert r.exclusions["row"].tolist() == [3, 4]
    reason = r.exclusions["reason"].iloc[1]
    assert "HbA1c は 3.0–20.0 %" in reason and "単位の誤り（mmol/mol 等）の可能性" in reason


def test_hba1c_with_other_unit_is_not_converted(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",HbA1c\nA1,2024,17201,48mmol/mol\nA2,2024,17201,6.5%\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert np.isnan(r.data.loc[0, "hba1c"]) and r.data.loc[1, "hba1c"] == 6.5
    assert only(r.exclusions)["value"] == "48mmol/mol"


def test_negative_weight(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",体重\nA1,2024,17201,-3\nA2,2024,17201,20\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["weight"].tolist()[1] == 20.0  # lower bound kept
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"]) == (2, "体重", "-3")
    assert "負の値" in row["reason"]


@pytest.mark.parametrize("text, expected", [
    ("令和6年度", 2024), ("令和6", 2024), ("R6", 2024), ("R06", 2024), ("r6", 2024),
    ("H30", 2018), ("平成30年度", 2018), ("平成31/令和元年", 2019), ("令和元年度", 2019),
    ("R元", 2019), ("2024", 2024), ("2024年度", 2024), ("２０２４", 2024), ("Ｒ６", 2024),
    ("令和７年度", 2025),
])
def test_wareki_fiscal_years(tmp_path, text, expected):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + f"\nA1,{text},17201\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["fy"].tolist() == [expected]
    assert r.data["fy"].dtype == "int64"


@pytest.mark.parametrize("text", ["来年", "令和", "元年", "2040", "24"])
def test_unparsable_or_out_of_range_fiscal_year_drops_row(tmp_path, text):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + f"\nA1,{text},17201\nA2,2024,17201\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (2, "年度", text, "行")
    assert "年度" in row["reason"]


def test_full_width_numbers_and_units(tmp_path):
    p = write(tmp_path / "kenshin.csv",
              KENSHIN_HEAD + ",収縮期血圧,HbA1c,身長\n"
              "Ａ００１,２０２４,１７２０１,１２０,６．５％,１６５．０ｃｍ\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data.loc[0, "person_id"] == "A001"
    assert r.data.loc[0, "muni_code"] == "17201"
    assert (r.data.loc[0, "sbp"], r.data.loc[0, "hba1c"], r.data.loc[0, "height"]) == (120.0, 6.5, 165.0)
    assert r.exclusions.empty


def test_thousands_separator_in_cost(tmp_path):
    p = write(tmp_path / "claims_monthly.csv",
              '被保険者番号,市町村コード,診療年月,外来医療費\nA1,17201,202404,"1,234"\nA1,17201,202405,"１，２３４円"\n')
    r = io.read_table(p, "claims_monthly")
    assert_accounting(r)
    assert r.data["cost_outpatient"].tolist() == [1234.0, 1234.0]


def test_duplicate_person_year_keeps_first(tmp_path):
    p = write(tmp_path / "kenshin.csv",
              KENSHIN_HEAD + ",HbA1c\nA1,2024,17201,5.6\nA1,R6,17201,7.0\nA1,2023,17201,6.0\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["hba1c"].tolist() == [5.6, 6.0]
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (3, "被保険者番号×年度", "A1 / R6", "行")
    assert "重複" in row["reason"]


def test_unknown_municipality_code_drops_row(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201\nA2,2024,13101\n")
    r = io.read_table(p, "kenshin", known_munis={"17201", "17202"})
    assert_accounting(r)
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"]) == (3, "市町村コード", "13101")
    assert "市町村マスタ" in row["reason"]


def test_six_digit_code_with_wrong_check_digit(tmp_path):
    # 17201 has check digit 4 (172014); 172015 is wrong.
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,172014\nA2,2024,172015\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["muni_code"].tolist() == ["17201"]
    row = only(r.exclusions)
    assert (row["row"], row["value"]) == (3, "172015")
    assert "検査数字" in row["reason"] and "4" in row["reason"]


def test_sex_code_3_drops_enrollment_row_but_only_nulls_kenshin_value(tmp_path):
    p = write(tmp_path / "enrollment.csv", ENROLL_HEAD + "\nA1,2024,17201,3,70,国保\nA2,2024,17201,F,70,国保\n")
    r = io.read_table(p, "enrollment")
    assert_accounting(r)
    assert r.data["sex"].tolist() == [2]
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (2, "性別", "3", "行")
    assert "1（男）または 2（女）" in row["reason"]

    k = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",性別\nA1,2024,17201,3\n")
    rk = io.read_table(k, "kenshin")
    assert_accounting(rk)
    assert rk.n_kept == 1 and pd.isna(rk.data.loc[0, "sex"])
    assert only(rk.exclusions)["scope"] == "項目"


@pytest.mark.parametrize("text, expected", [
    ("−", 0), ("-", 0), ("ー", 0), ("(−)", 0), ("（－）", 0), ("1", 0),
    ("±", 1), ("+-", 1), ("2", 1),
    ("+", 2), ("1+", 2), ("＋", 2), ("3", 2),
    ("++", 3), ("2+", 3), ("4", 3),
    ("+++", 4), ("3+", 4), ("5", 4),
])
def test_urine_spellings(tmp_path, text, expected):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + f",尿蛋白\nA1,2024,17201,{text}\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["urine_protein"].tolist() == [expected]


def test_urine_blank_and_bad(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + ",尿蛋白\nA1,2024,17201,\nA2,2024,17201,未実施\nA3,2024,17201,6\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert np.isnan(r.data["urine_protein"]).all()
    row = only(r.exclusions)  # blanks are not exclusions, code 6 is
    assert (row["row"], row["column"], row["value"]) == (4, "尿蛋白", "6")


def test_mixed_fiscal_years_are_fine_and_reported(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2023,17201\nA1,2024,17201\nA2,R6,17201\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.fiscal_years() == {2023: 1, 2024: 2}
    assert r.exclusions.empty


def test_blank_person_id_drops_row(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\n ,2024,17201\nA2,2024,17201\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    row = only(r.exclusions)
    assert (row["row"], row["column"]) == (2, "被保険者番号")
    assert "空欄" in row["reason"]


def test_missing_markers_are_blank_not_errors(tmp_path):
    p = write(tmp_path / "kenshin.csv",
              KENSHIN_HEAD + ",HbA1c,体重,服薬（血圧）\nA1,2024,17201,未実施,-,－\nA2,2024,17201,NA,未測定,\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.exclusions.empty
    assert r.data["hba1c"].isna().all() and r.data["weight"].isna().all()
    assert r.data["med_bp"].isna().all()


def test_unparsable_ym_drops_claims_row(tmp_path):
    p = write(tmp_path / "claims_monthly.csv",
              "被保険者番号,市町村コード,診療年月\nA1,17201,202404\nA1,17201,2024-05\nA1,17201,R6.6\n"
              "A1,17201,令和6年7月\nA1,17201,2024/8\nA1,17201,202413\n")
    r = io.read_table(p, "claims_monthly")
    assert_accounting(r)
    assert r.data["ym"].tolist() == [202404, 202405, 202406, 202407, 202408]
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (7, "診療年月", "202413", "行")


def test_bad_date_only_nulls_value(tmp_path):
    p = write(tmp_path / "kenshin.csv",
              KENSHIN_HEAD + ",健診受診日\nA1,2024,17201,2024/5/1\nA2,2024,17201,令和6年5月1日\n"
              "A3,2024,17201,R6.5.1\nA4,2024,17201,2024-02-30\n")
    r = io.read_table(p, "kenshin")
    assert_accounting(r)
    assert r.data["exam_date"].iloc[:3].tolist() == [pd.Timestamp("2024-05-01")] * 3
    assert pd.isna(r.data["exam_date"].iloc[3])
    assert only(r.exclusions)["value"] == "2024-02-30"


def test_questionnaire_text_answers(tmp_path):
    p = write(tmp_path / "questionnaire.csv",
              "被保険者番号,年度,市町村コード,①健康状態,③1日3食きちんと食べていますか,⑫たばこを吸いますか\n"
              "A1,2024,17201,よくない,はい,吸っている\nA2,2024,17201,まあよい,いいえ,やめた\n"
              "A3,2024,17201,とてもよい,2,1\n")
    r = io.read_table(p, "questionnaire")
    assert_accounting(r)
    assert r.data["q1"].tolist()[:2] == [5, 2] and pd.isna(r.data["q1"].iloc[2])
    assert r.data["q3"].tolist() == [1, 2, 2]
    assert r.data["q12"].tolist() == [1, 3, 1]
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"]) == (4, "①健康状態", "とてもよい")
    assert "5 よくない" in row["reason"]


def test_guidance_level_codes_and_bool_spellings(tmp_path):
    p = write(tmp_path / "guidance.csv",
              "被保険者番号,年度,市町村コード,支援レベル,初回面接実施,終了\n"
              "A1,2024,17201,1,あり,○\nA2,2024,17201,2,はい,×\nA3,2024,17201,動機付け支援,1,2\n"
              "A4,2024,17201,3,1,1\n")
    r = io.read_table(p, "guidance")
    assert_accounting(r)
    assert r.data["level"].tolist() == ["積極的支援", "動機付け支援", "動機付け支援"]
    assert r.data["started"].tolist() == [True, True, True]
    assert r.data["completed"].tolist() == [True, False, False]
    row = only(r.exclusions)
    assert (row["row"], row["column"], row["value"], row["scope"]) == (5, "支援レベル", "3", "行")


# --- column map and folders --------------------------------------------------------------------

def test_column_map_with_wrong_target_is_a_parameter_error(tmp_path):
    p = write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201\n")
    with pytest.raises(ParameterError) as e:
        io.read_table(p, "kenshin", column_map={"kenshin": {"ＨｂＡ１ｃ（ＮＧＳＰ）": "hba1cc"}})
    assert "hba1cc" in str(e.value) and "ＨｂＡ１ｃ（ＮＧＳＰ）" in str(e.value)


def test_load_dataset_without_kenshin_lists_files_found(tmp_path):
    write(tmp_path / "enrollment.csv", ENROLL_HEAD + "\nA1,2024,17201,1,70,国保\n")
    write(tmp_path / "kensin.csv", KENSHIN_HEAD + "\nA1,2024,17201\n")  # misspelt
    with pytest.raises(DataError) as e:
        io.load_dataset(tmp_path)
    msg = str(e.value)
    assert "特定健診・後期健診" in msg and "kensin.csv" in msg and "enrollment.csv" in msg


def run_cli(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def test_cli_check_reports_bad_file_and_continues(tmp_path, capsys):
    write(tmp_path / "municipalities.csv", "市町村コード,市町村名,都道府県コード,二次医療圏\n17201,金沢市,17,石川中央\n")
    write(tmp_path / "enrollment.csv", ENROLL_HEAD + "\nA1,2024,17201,1,70,国保\nA2,2024,13101,2,70,国保\n")
    (tmp_path / "kenshin.csv").write_bytes(KENSHIN_HEAD.encode() + b"\n\x80\x80,2024,17201\n")
    write(tmp_path / "guidance.csv", "")
    code, out, _ = run_cli(["check", str(tmp_path)], capsys)
    assert code == 1  # errors found: non-zero so that a script notices (issue 26)
    assert "kenshin.csv: 文字コードを判別できません" in out
    assert "guidance.csv: ファイルが空です" in out
    # the other files are still checked: unknown municipality in enrollment row 3
    assert "市町村コード: 市町村マスタ（municipalities）にない市町村コード" in out
    assert "行 3「13101」" in out
    assert "読み込み 2 行 / 採用 1 行 / 除外 1 行" in out


def test_cli_check_value_exclusions_show_file_row_column_value(tmp_path, capsys):
    write(tmp_path / "enrollment.csv", ENROLL_HEAD + "\nA1,2024,17201,1,70,国保\n")
    write(tmp_path / "特定健診.csv", KENSHIN_HEAD + ",HbA1c\nA1,2023,17201,65\nA1,2024,17201,5.5\n")
    code, out, _ = run_cli(["check", str(tmp_path)], capsys)
    assert code == 0
    assert "ファイル: 特定健診.csv" in out
    assert "HbA1c: HbA1c は 3.0–20.0 %" in out and "行 2「65」" in out
    assert "2023年度 1 行、2024年度 1 行（複数年度を含みます）" in out
    assert "判定: 分析に使用できます" in out


def test_cli_check_missing_required_file_and_bad_map(tmp_path, capsys):
    write(tmp_path / "kenshin.csv", KENSHIN_HEAD + "\nA1,2024,17201\n")
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("kensin:\n  HbA1c: hba1c\n", encoding="utf-8")
    code, out, _ = run_cli(["check", str(tmp_path), "--column-map", str(bad_map)], capsys)
    assert code == 1  # errors found (issue 26)
    assert "表「kensin」は定義されていません" in out
    assert "対象者（enrollment）: ファイルがありません【必須】" in out
    assert "判定: 読み込めないファイル" in out


def test_cli_check_missing_folder(tmp_path, capsys):
    code, _, err = run_cli(["check", str(tmp_path / "nai")], capsys)
    assert code == 2
    assert "見つかりません" in err

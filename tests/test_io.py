"""hsutils.inputs.io happy paths: templates, dtypes, column maps, Parquet/xlsx, cache, folders,
and the data dictionary kept in sync with the schema."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from hsutils.inputs import io
from hsutils.core.schema import TABLES

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "data_templates"
COLUMN_MAP_EXAMPLE = REPO / "parameters" / "column_map_example.yaml"


def test_data_dictionary_file_is_in_sync_with_schema():
    committed = (TEMPLATES / "DATA_DICTIONARY.md").read_text(encoding="utf-8")
    assert committed == io.data_dictionary_markdown(), (
        "data_templates/DATA_DICTIONARY.md is stale: regenerate it with "
        "hsutils.inputs.io.data_dictionary_markdown()")


def test_data_dictionary_lists_every_column():
    md = io.data_dictionary_markdown()
    for t in TABLES.values():
        assert f"## {t.ja}（{t.name}）" in md
        for c in t.columns:
            assert f"| {c.ja} | `{c.name}` |" in md
    assert "| HbA1c | `hba1c` | 数値 | %（NGSP） | 3.0–20.0 | 任意 |" in md


@pytest.mark.parametrize("table", list(TABLES))
def test_template_has_bom_ja_header_and_loads_cleanly(table):
    path = TEMPLATES / f"{table}.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    header = raw.decode("utf-8-sig").splitlines()[0].split(",")
    assert header == [c.ja for c in TABLES[table].columns]
    r = io.read_table(path, table)
    assert 2 <= r.n_read <= 3
    assert r.n_kept == r.n_read and r.exclusions.empty and r.warnings == []


def test_kenshin_template_canonical_dtypes_and_values():
    r = io.read_table(TEMPLATES / "kenshin.csv", "kenshin")
    d = r.data
    assert d.columns.tolist() == TABLES["kenshin"].names
    assert d["person_id"].dtype == "str" and d["muni_code"].dtype == "str"
    assert d["fy"].dtype == "int64"
    assert d["exam_date"].dtype == "datetime64[ns]"
    assert d["hba1c"].dtype == "float64" and d["urine_protein"].dtype == "float64"
    assert d["med_bp"].dtype == "boolean"
    assert d["sex"].dtype == "Int64"  # optional in kenshin
    assert d["guidance_level_reported"].dtype == "Int64"
    # row 1: HbA1c 5.9, 尿蛋白 ± -> 1, 服薬 2 -> False, 喫煙 1 -> True
    assert d.loc[0, "hba1c"] == 5.9 and d.loc[0, "urine_protein"] == 1.0
    assert d.loc[0, "med_bp"] == False and d.loc[0, "smoking"] == True  # noqa: E712
    # row 2: 尿蛋白 1+ -> 2, 随時血糖 112, 空腹時血糖 blank -> NaN
    assert d.loc[1, "urine_protein"] == 2.0 and np.isnan(d.loc[1, "fpg"])
    assert pd.isna(d.loc[1, "guidance_level_reported"])


def test_enrollment_template_dtypes_and_defaults(tmp_path):
    r = io.read_table(TEMPLATES / "enrollment.csv", "enrollment")
    assert r.data["sex"].dtype == "int64" and r.data["age"].dtype == "int64"
    assert r.data["full_year"].tolist() == [True, True, False]
    # a file without the optional flags: continuous enrolment, no statutory exclusion
    p = tmp_path / "enrollment.csv"
    p.write_text("被保険者番号,年度,市町村コード,性別,年齢,保険種別\nA1,2024,17201,1,70,国民健康保険\n",
                 encoding="utf-8")
    r2 = io.read_table(p, "enrollment")
    assert r2.data["full_year"].tolist() == [True]
    assert r2.data["excluded_statutory"].tolist() == [False]
    assert r2.data["insurance"].tolist() == ["国保"]
    assert r2.data["district_code"].isna().all()


def test_canonical_and_alias_headers(tmp_path):
    p = tmp_path / "k.csv"
    p.write_text("person_id,対象年度,市区町村コード,GOT,γ-GTP,HbA1c(NGSP),収縮期血圧(mmHg),LDL（mg/dL）\n"
                 "A1,2024,17201,25,40,5.6,130,140\n", encoding="utf-8")
    r = io.read_table(p, "kenshin")
    row = r.data.iloc[0]
    assert (row["ast"], row["ggt"], row["hba1c"], row["sbp"], row["ldl"]) == (25, 40, 5.6, 130, 140)
    # "LDL（mg/dL）" is read as LDL by dropping the trailing unit: the user is told
    assert any("LDL（mg/dL）" in w for w in r.warnings)


def kdb_like_kenshin(path: Path) -> Path:
    path.write_text(
        "被保険者証番号,健診年度,保険者市町村コード,収縮期血圧(mmHg),ＨｂＡ１ｃ（ＮＧＳＰ）,"
        "中性脂肪（トリグリセリド）,γ－ＧＴ（γ－ＧＴＰ）,血清クレアチニン（ｍｇ／ｄｌ）,"
        "服薬１（血圧）,服薬２（血糖）,服薬３（脂質）,喫煙,保健指導レベル,メタボリックシンドローム判定\n"
        "0001234,令和6年度,172014,142,６．２,180,55,0.95,1,2,2,1,2,1\n"
        "0001235,令和6年度,172014,118,5.4,90,20,0.70,2,2,1,2,3,3\n",
        encoding="cp932")
    return path


def test_column_map_example_reads_kdb_like_export(tmp_path):
    p = kdb_like_kenshin(tmp_path / "kenshin.csv")
    r = io.read_table(p, "kenshin", column_map=COLUMN_MAP_EXAMPLE)
    assert r.exclusions.empty and r.extra_columns.shape[1] == 0
    d = r.data
    assert d["person_id"].tolist() == ["0001234", "0001235"]  # leading zeros kept
    assert d["muni_code"].tolist() == ["17201", "17201"]
    assert d["sbp"].tolist() == [142.0, 118.0]
    assert d["hba1c"].tolist() == [6.2, 5.4]
    assert d["tg"].tolist() == [180.0, 90.0]
    assert d["ggt"].tolist() == [55.0, 20.0]
    assert d["creatinine"].tolist() == [0.95, 0.70]
    assert d["med_bp"].tolist() == [True, False]
    assert d["med_lipid"].tolist() == [False, True]
    assert d["smoking"].tolist() == [True, False]
    assert d["guidance_level_reported"].tolist() == [2, 3]
    assert d["metabo_reported"].tolist() == [1, 3]


def test_column_map_as_dict_matches_after_nfkc(tmp_path):
    p = tmp_path / "kenshin.csv"
    p.write_text("番号,年度,市町村コード,ＨｂＡ１ｃ　値\nA1,2024,17201,5.6\n", encoding="utf-8")
    cmap = {"kenshin": {"番号": "person_id", "HbA1c 値": "HbA1c"}}  # target by ja name too
    r = io.read_table(p, "kenshin", column_map=cmap)
    assert r.data["person_id"].tolist() == ["A1"] and r.data["hba1c"].tolist() == [5.6]


def test_parquet_input(tmp_path):
    p = tmp_path / "kenshin.parquet"
    pd.DataFrame({"person_id": ["A1", "A2"], "fy": [2024, 2024], "muni_code": [17201, 17201],
                  "hba1c": [5.6, np.nan], "exam_date": pd.to_datetime(["2024-05-01", "2024-06-01"])}
                 ).to_parquet(p)
    r = io.read_table(p, "kenshin")
    assert r.data["muni_code"].tolist() == ["17201", "17201"]
    assert r.data["hba1c"].iloc[0] == 5.6 and np.isnan(r.data["hba1c"].iloc[1])
    assert r.data["exam_date"].tolist() == [pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-01")]


def test_xlsx_input_plain(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["市町村コード", "市町村名", "都道府県コード", "二次医療圏"])
    ws.append([17201, "金沢市", 17, "石川中央"])
    ws.append(["172022", "七尾市", 17.0, "能登中部"])
    p = tmp_path / "市町村マスタ.xlsx"
    wb.save(p)
    r = io.read_table(p, "municipalities")
    assert r.data["muni_code"].tolist() == ["17201", "17202"]
    assert r.data["pref_code"].tolist() == [17, 17] and r.data["pref_code"].dtype == "int64"


def copy_templates(dst: Path) -> Path:
    for p in TEMPLATES.glob("*.csv"):
        shutil.copy(p, dst / p.name)
    return dst


def test_load_dataset_summary_and_tables(tmp_path):
    folder = copy_templates(tmp_path)
    ds = io.load_dataset(folder)
    assert set(ds.tables) == set(TABLES)
    assert ds.summary.columns.tolist() == ["table", "file", "read", "kept", "dropped_rows", "excluded_values"]
    s = ds.summary.set_index("table")
    assert s.loc["kenshin", "read"] == 3 and s.loc["kenshin", "kept"] == 3
    assert s.loc["guidance", "file"] == "guidance.csv"
    assert ds.municipalities["muni_code"].tolist() == ["17201", "17202", "17203"]
    assert len(ds.districts) == 3
    assert ds.exclusions.empty


def test_load_dataset_checks_codes_against_master_and_japanese_file_names(tmp_path):
    (tmp_path / "市町村マスタ.csv").write_text(
        "市町村コード,市町村名,都道府県コード,二次医療圏\n17201,金沢市,17,石川中央\n", encoding="utf-8")
    (tmp_path / "対象者.csv").write_text(
        "被保険者番号,年度,市町村コード,性別,年齢,保険種別\nA1,2024,17201,1,70,国保\nA2,2024,17202,1,70,国保\n",
        encoding="cp932")
    (tmp_path / "特定健診.csv").write_text(
        "被保険者番号,年度,市町村コード,HbA1c\nA1,2024,17201,65\n", encoding="utf-8-sig")
    ds = io.load_dataset(tmp_path)
    s = ds.summary.set_index("table")
    assert (s.loc["enrollment", "read"], s.loc["enrollment", "kept"], s.loc["enrollment", "dropped_rows"]) == (2, 1, 1)
    assert s.loc["kenshin", "excluded_values"] == 1
    assert ds.files["kenshin"].name == "特定健診.csv"
    assert ds.tables["guidance"].empty and ds.tables["guidance"].columns.tolist() == TABLES["guidance"].names
    ex = ds.exclusions.set_index("table")
    assert ex.loc["enrollment", "value"] == "17202"
    assert ex.loc["enrollment", "reason"] == "市町村マスタ（municipalities）にない市町村コード"


def test_cache_second_load_parses_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    folder = copy_templates(tmp_path / "data")
    cache = tmp_path / "cache"
    before = dict(io.CACHE_STATS)
    ds1 = io.load_dataset(folder, cache_dir=cache)
    assert io.CACHE_STATS["misses"] - before["misses"] == len(TABLES)
    assert not any(r.from_cache for r in ds1.results.values())
    mid = dict(io.CACHE_STATS)
    ds2 = io.load_dataset(folder, cache_dir=cache)
    assert io.CACHE_STATS["hits"] - mid["hits"] == len(TABLES)
    assert io.CACHE_STATS["misses"] == mid["misses"]
    assert all(r.from_cache for r in ds2.results.values())
    for name in TABLES:
        pd.testing.assert_frame_equal(ds1.tables[name], ds2.tables[name])
    pd.testing.assert_frame_equal(ds1.summary, ds2.summary)


def test_cache_is_invalidated_by_file_content_and_column_map(tmp_path):
    p = tmp_path / "kenshin.csv"
    p.write_text("被保険者番号,年度,市町村コード,HbA1c\nA1,2024,17201,5.6\n", encoding="utf-8")
    cache = tmp_path / "cache"
    r1 = io.read_table_cached(p, "kenshin", cache_dir=cache)
    r2 = io.read_table_cached(p, "kenshin", cache_dir=cache)
    assert (r1.from_cache, r2.from_cache) == (False, True)
    p.write_text("被保険者番号,年度,市町村コード,HbA1c\nA1,2024,17201,65\n", encoding="utf-8")
    r3 = io.read_table_cached(p, "kenshin", cache_dir=cache)
    assert not r3.from_cache and np.isnan(r3.data.loc[0, "hba1c"])
    assert r3.exclusions["value"].tolist() == ["65"]
    r4 = io.read_table_cached(p, "kenshin", cache_dir=cache,
                              column_map={"kenshin": {"番号": "person_id"}})
    assert not r4.from_cache
    r5 = io.read_table_cached(p, "kenshin", cache_dir=cache)
    assert r5.from_cache and r5.exclusions["reason"].tolist() == r3.exclusions["reason"].tolist()


def test_check_folder_writes_nothing(tmp_path):
    folder = copy_templates(tmp_path)
    before = sorted(p.name for p in folder.rglob("*"))
    text = io.check_folder(folder)
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert "■ 特定健診・後期健診（kenshin） ファイル: kenshin.csv" in text
    assert "読み込み 3 行 / 採用 3 行 / 除外 0 行 / 値の除外 0 件" in text
    assert "判定: 分析に使用できます" in text


def test_read_equals_kept_plus_dropped_on_a_messy_file(tmp_path):
    rows = ["A1,2024,17201,5.6", "A1,2024,17201,5.7", ",2024,17201,5.8", "A3,来年,17201,5.9",
            "A4,2024,99999,6.0", "A5,2024,17201,abc", "A6,2024,17201,"]
    p = tmp_path / "kenshin.csv"
    p.write_text("被保険者番号,年度,市町村コード,HbA1c\n" + "\n".join(rows) + "\n", encoding="utf-8")
    r = io.read_table(p, "kenshin", known_munis={"17201"})
    assert (r.n_read, r.n_kept, r.n_dropped, r.n_excluded_values) == (7, 3, 4, 1)
    assert r.exclusions.sort_values("row")["row"].tolist() == [3, 4, 5, 6, 7]
    assert r.row_numbers.tolist() == [2, 7, 8]

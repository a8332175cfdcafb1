"""特定健診 XML archives (hsutils.inputs.tokutei_xml) on the hand-written fixtures of
tests/fixtures/tokutei_xml/ (see its README) and on the XML demo (hsutils.demo.synth_xml).

Expected values are worked out by hand from the fixture files and the rules of the module
docstring (TOKUTEI_XML §1.3–1.6, docs/rules.md §1.4, §1.5, §4.3).
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.inputs import io, tokutei_xml as tx
from hsutils.analysis import pipeline
from hsutils.demo import synth

FIX = Path(__file__).parent / "fixtures" / "tokutei_xml"
ARCHIVE = "1111111111_00179999_202406301_1"
EXTRACTED = "2222222222_00179999_201301101_1"
PERSON_1 = "00179999--12345-01"  # 保険者番号-記号-番号-枝番 (no 記号)


def _make_folder(dest: Path, munis: bool = True) -> Path:
    """A data folder with one zip archive (built from archive_a/) and one extracted folder."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest / f"{ARCHIVE}.zip", "w") as z:
        for f in sorted((FIX / "archive_a").rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(FIX / "archive_a").as_posix())
    shutil.copytree(FIX / "extracted_b" / EXTRACTED, dest / EXTRACTED)
    if munis:
        (dest / "insurer_munis.csv").write_text("保険者番号,市町村コード\n179999,17201\n", encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def imp(tmp_path_factory) -> tx.XmlImport:
    return tx.read_archives(_make_folder(tmp_path_factory.mktemp("xml") / "data"), workers=1)


def _row(imp, person_id: str, fy: int) -> pd.Series:
    k = imp.kenshin
    sel = k[(k["person_id"] == person_id) & (k["fy"] == fy)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_value_types_grouped_items_and_priorities(imp):
    r = _row(imp, PERSON_1, 2024)
    assert r["exam_date"] == pd.Timestamp("2024-06-10")  # h0001, not the later h0003
    assert (r["sex"], r["age"], r["muni_code"]) == (1, 64, "17201")  # born 1960-04-15 → 64 at 2025-03-31
    assert (r["height"], r["weight"], r["bmi"]) == (170.0, 65.0, 22.5)  # PQ
    assert r["waist"] == 85.0  # 実測 before 自己申告 (90.0)
    assert (r["sbp"], r["dbp"]) == (128.0, 78.0)  # その他 is the reported value, not mean(130,126)
    assert r["tg"] == 120.0 and bool(r["tg_fasting"]) is True  # 9N141 = 2
    assert r["ldl"] == 130.0  # 直接法 before 計算法 (128)
    assert (r["fpg"], r["hba1c"]) == (95.0, 5.6)
    assert pd.isna(r["casual_glucose"])
    assert r["urine_glucose"] == 0.0 and r["urine_protein"] == 2.0  # CO codes 1 → −, 3 → 1+
    assert (r["creatinine"], r["egfr"]) == (0.85, 70.2)  # inside entryRelationship (一連検査グループ)
    assert r["hemoglobin"] == 14.5
    assert (bool(r["med_bp"]), bool(r["med_glucose"]), bool(r["med_lipid"])) == (False, False, True)
    assert bool(r["smoking"]) is False  # 第4期 code 2 以前は吸っていた → not a current smoker
    assert (r["metabo_reported"], r["guidance_level_reported"]) == (3, 3)
    # audit table keeps every observation incl. the losing 腹囲/LDL codes, ST text, interpretation
    o = imp.observations[imp.observations["doc"] == 1]
    assert len(o) == 33
    assert set(o["value_type"].astype(str)) == {"PQ", "CD", "CO", "ST"}
    assert o.loc[o["item_code"] == "9N016160300000001", "value"].item() == "90.0"
    assert o.loc[o["item_code"] == "1A010000000191111", "interpretation"].item() == "H"
    assert o.loc[o["item_code"] == "3F015000002327101", "method"].item() == "2327101000"


def test_two_readings_casual_blood_and_medication_override(imp):
    r = _row(imp, "00179999-AB-67890-", 2024)  # 全角 記号 ＡＢ / 番号 ６７８９０ → NFKC
    assert (r["sex"], r["age"]) == (2, 75)  # born 1950-03-31 → 75 at 2025-03-31
    assert r["exam_date"] == pd.Timestamp("2024-04-01") and r["fy"] == 2024  # April starts the FY
    assert r["sbp"] == 139.5  # no その他: mean(141, 138)
    assert r["dbp"] == 88.0  # one reading only
    assert r["tg"] == 180.0 and not bool(r["tg_fasting"])  # 随時 TG code, 採血時間 3
    assert r["casual_glucose"] == 140.0 and pd.isna(r["fpg"])
    assert bool(r["med_bp"]) is True  # self-report 2 なし, 保険者再確認 2 (服薬開始を確認) wins
    assert bool(r["med_glucose"]) is False
    assert bool(r["smoking"]) is True
    assert r["urine_protein"] == 4.0  # code 5 → 3+
    assert pd.isna(r["creatinine"])


def test_bom_fiscal_year_and_april_first_birthday(imp):
    r = _row(imp, "00179999--777-", 2022)  # BOM document, exam 2023-03-31 → FY2022
    assert r["age"] == 40  # born 1983-04-01: reaches 40 on 2023-03-31 (docs/rules.md §1.4)
    assert r["hba1c"] == 6.5 and r["weight"] == 52.5


def test_age_rule_boundaries():
    birth = pd.to_datetime(pd.Series(["1985-04-01", "1985-04-02", "1985-03-31", "1984-02-29"]))
    fy = pd.Series([2024, 2024, 2024, 2024])
    assert tx._age_at_fy_end(birth, fy).tolist() == [40, 39, 40, 41]
    exam = pd.to_datetime(pd.Series(["2024-03-31", "2024-04-01", "2025-03-31"]))
    assert tx._fiscal_year(exam).tolist() == [2023, 2024, 2024]


def test_legacy_third_period_codes(imp):
    r = _row(imp, "00179999--555-", 2012)
    assert r["age"] == 58  # born 1955-01-01, FY2012 ends 2013-03-31
    assert pd.isna(r["hba1c"])  # JDS value is never put into the NGSP column
    ex = imp.exclusions
    jds = ex[ex["column"].str.contains("3D045000001906202")]
    assert len(jds) == 1 and jds["value"].item() == "5.8" and "JDS" in jds["reason"].item()
    assert r["tg"] == 100.0 and bool(r["tg_fasting"])  # TG code without 9N141: code kind
    assert bool(r["smoking"]) is False


def test_exclusions_and_document_accounting(imp):
    res, ex = imp.result, imp.exclusions
    assert list(ex.columns) == io.EXCLUSION_COLUMNS
    assert res.n_read == 8  # 特定健診 documents (ix08 index is not one)
    assert res.n_kept == 5 and res.n_dropped == 3
    assert res.n_read == res.n_kept + res.n_dropped
    rows = ex[ex["scope"] == io.SCOPE_ROW]
    by_doc = dict(zip(rows["file"].str.rsplit("/", n=1).str[-1], rows["reason"]))
    assert "XML として読めません" in by_doc["broken.xml"]
    assert by_doc["h0104.xml"] == "生年月日 がありません（ヘッダ部の必須項目）"
    assert by_doc["h0003.xml"].startswith("重複")  # same person and FY, later 受診日
    assert rows.loc[rows["file"].str.endswith("h0003.xml"), "file"].item() == \
        f"{ARCHIVE}.zip/{ARCHIVE}/DATA/h0003.xml"
    vals = ex[(ex["scope"] == io.SCOPE_VALUE) & ex["file"].str.endswith("kenshin_result_5.xml")]
    got = dict(zip(vals["column"], vals["value"]))
    assert got == {"BMI（9N011000000000001）": "abc", "収縮期血圧（9A755000000000001）": "400",
                   "尿糖（1A020000000191111）": "9", "HbA1c（3D046000001999902）": "48 mmol/mol"}
    r = _row(imp, "00179999--780-", 2024)
    assert pd.isna(r["bmi"]) and pd.isna(r["sbp"]) and pd.isna(r["hba1c"]) and pd.isna(r["urine_glucose"])
    assert r["dbp"] == 70.0 and r["weight"] == 48.0  # the rest of the document is kept
    d = imp.documents
    assert d.loc[d["path"].str.endswith("ix08_V08.xml"), "status"].item() == "対象外"
    assert (d["status"] == "採用").sum() == 5 and (d["status"] == "除外").sum() == 3


def test_unknown_item_codes_are_counted_not_dropped(imp):
    u = imp.unknown_items.set_index("item_code")["count"].to_dict()
    assert u == {"9Z999000000000049": 1, "9Z998000000000001": 1}
    assert any("項目コード対応表にない項目 2 種類" in w for w in imp.result.warnings)


def test_names_addresses_and_birth_dates_never_reach_any_table(imp, tmp_path):
    secrets = ("テスト　ハナコ", "ハナコ", "架空県", "テスト町", "999-9999", "19600415", "1960-04-15")
    frames = [imp.kenshin, imp.exclusions, imp.documents, imp.observations, imp.unknown_items]
    text = "\n".join(f.astype(str).to_csv() for f in frames) + "\n".join(imp.result.warnings)
    assert not [s for s in secrets if s in text]
    assert "birth" not in imp.documents.columns
    out = io.check_folder(_make_folder(tmp_path / "d"))
    assert not [s for s in secrets if s in out]


def test_mixed_sources_zip_extracted_and_loose(tmp_path):
    folder = _make_folder(tmp_path / "d")
    (folder / "loose").mkdir()
    shutil.copy(FIX / "extracted_b" / EXTRACTED / "DATA" / "h0102.xml", folder / "loose" / "x.xml")
    src = tx.find_sources(folder)
    assert [(s.label, s.is_zip, len(s.members)) for s in src] == [
        (f"{ARCHIVE}.zip", True, 4), (EXTRACTED, False, 5), ("loose", False, 1)]
    assert tx.has_xml_sources(folder) and not tx.has_xml_sources(FIX.parent / "nonexistent")


def test_person_id_from_linkage_table_and_salted_pseudonym(tmp_path):
    folder = _make_folder(tmp_path / "link")
    (folder / "person_ids.csv").write_text(
        "保険者番号,記号,番号,枝番,person_id\n179999,,12345,01,A001\n00179999,AB,67890,,A002\n",
        encoding="utf-8")
    k = tx.read_archives(folder, workers=1)
    assert sorted(k.kenshin["person_id"]) == ["A001", "A002"]
    ex = k.exclusions
    assert (ex["reason"].str.startswith("person_ids.csv にない被保険者")).sum() == 3  # 555, 777, 780

    folder2 = _make_folder(tmp_path / "salt")
    (folder2 / "person_id_salt.txt").write_text("my-secret-salt\n", encoding="utf-8")
    a = tx.read_archives(folder2, workers=1).kenshin["person_id"]
    assert a.str.fullmatch(r"P[0-9a-f]{20}").all() and a.nunique() == 5
    assert not a.str.contains("12345").any()
    (folder2 / "person_id_salt.txt").write_text("other-salt", encoding="utf-8")
    b = tx.read_archives(folder2, workers=1).kenshin["person_id"]
    assert set(a).isdisjoint(set(b))


def test_municipality_from_enrollment_when_no_insurer_table(tmp_path):
    folder = _make_folder(tmp_path / "d", munis=False)
    enr = pd.DataFrame({"person_id": [PERSON_1, "00179999-AB-67890-"], "fy": [2024, 2023],
                        "muni_code": ["17202", "17203"]})
    k = tx.read_archives(folder, enrollment=enr, workers=1)
    got = dict(zip(k.kenshin["person_id"], k.kenshin["muni_code"]))
    assert got == {PERSON_1: "17202", "00179999-AB-67890-": "17203"}  # same FY, else latest FY
    rows = k.exclusions[k.exclusions["reason"].str.startswith("市町村を決められません")]
    assert len(rows) == 3


def test_worker_processes_give_the_same_result(tmp_path, monkeypatch):
    folder = _make_folder(tmp_path / "d")
    serial = tx.read_archives(folder, workers=1)
    monkeypatch.setattr(tx, "PARALLEL_MIN_DOCS", 0)
    monkeypatch.setattr(tx, "CHUNK_DOCS", 2)
    parallel = tx.read_archives(folder, workers=2)
    pd.testing.assert_frame_equal(serial.kenshin, parallel.kenshin)
    pd.testing.assert_frame_equal(serial.exclusions, parallel.exclusions)


def test_item_table_is_consistent():
    t = tx.item_table()
    assert t["item_code"].str.fullmatch(r"[0-9A-Z]{17}").all() and t["item_code"].is_unique
    names = set(io.TABLES["kenshin"].names)
    assert set(t.loc[t["column"] != "", "column"]) <= names
    assert set(t["role"]) <= {"value", "code", "bp_reported", "bp_1", "bp_2", "blood_time",
                              "tg_fasting", "tg_casual", "med_recheck", "legacy_jds", "unused"}
    # 4 methods each for 空腹時血糖, 随時血糖 and HbA1c (TOKUTEI_XML §1.4)
    for col in ("fpg", "casual_glucose"):
        assert (t["column"] == col).sum() == 4
    assert ((t["column"] == "hba1c") & (t["role"] == "value")).sum() == 4


# ------------------------------------------------------------------------------------------
# The XML demo against the CSV demo


@pytest.fixture(scope="module")
def demos(tmp_path_factory, demo_data_dir):
    """(the CSV-template demo, the test session's demo in the real formats: XML + UKE), same
    scale and seed (conftest), so the same synthetic people."""
    from conftest import TEST_SCALE

    base = tmp_path_factory.mktemp("demos")
    synth.write_demo(base / "csv", scale=TEST_SCALE, seed=2024, kenshin_format="csv", claims_format="csv")
    return base / "csv", demo_data_dir


def test_real_format_demo_reads_to_the_csv_demo_tables_and_strata(demos, prepared):
    """The standard: the demo in XML + UKE, read back through the user import path, gives the
    same canonical tables and the same strata as the CSV-template demo of the same people."""
    import os

    a = io.load_dataset(demos[0])
    # the session demo through the same loader, from the session's table cache (parsed once)
    b = io.load_dataset(demos[1], cache_dir=Path(os.environ["HSUTILS_CACHE_DIR"]) / "tables_cache")
    assert not b.files.get("kenshin") and not b.files.get("claims_monthly")  # read from XML / UKE
    ka = a.tables["kenshin"].sort_values(["person_id", "fy"]).reset_index(drop=True)
    kb = b.tables["kenshin"].sort_values(["person_id", "fy"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ka, kb)
    # 保健指導: hg08 documents + 対象者 from the 健診's 保健指導レベル = the generator's guidance table
    assert not b.files.get("guidance")
    ga = a.tables["guidance"].sort_values(["person_id", "fy"]).reset_index(drop=True)
    gb = b.tables["guidance"].sort_values(["person_id", "fy"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ga, gb)
    ca = a.tables["claims_monthly"].sort_values(["person_id", "ym"]).reset_index(drop=True)
    cb = b.tables["claims_monthly"].sort_values(["person_id", "ym"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(ca, cb)
    assert b.exclusions.empty and a.exclusions.empty
    sa = pipeline.build_strata(pipeline.build_person_year(a.tables)[0])
    pd.testing.assert_frame_equal(sa, prepared.strata)
    # the UKE path also gives the finer claims tables, kept in the shared cache for notebooks 06/07
    uke_tables = pipeline.load_prepared(Path(os.environ["HSUTILS_CACHE_DIR"]),
                                        with_tables=("diagnoses", "prescriptions", "medical_costs")).tables
    for name in ("diagnoses", "prescriptions", "medical_costs"):
        assert len(uke_tables[name]) == len(b.tables[name]) > 0, name


@pytest.fixture(scope="module")
def xml_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("xml_demo")
    synth.write_demo(out, scale=0.01, seed=2024, kenshin_format="xml", claims_format="csv")
    return out


@pytest.fixture(scope="module")
def xml_demo_import(xml_demo):
    return tx.read_archives(xml_demo / "kenshin_xml", enrollment=io.load_dataset(xml_demo).tables["enrollment"],
                            data_folder=xml_demo, workers=1)


def test_xml_demo_shows_the_variety_it_promises(xml_demo_import):
    imp = xml_demo_import
    codes = set(imp.observations["item_code"].astype(str))
    assert {"3F015129902327101", "3D010129901926101", "9A752000000000001", "9A755000000000001",
            "9N702167200000049", "3C015000002327101"} <= codes
    assert imp.unknown_items.empty
    # 特定保健指導: 21 開始, 22 実績評価 and 23 途中終了 documents, every code in the item table
    docs = imp.documents
    assert set(docs.loc[docs["kind"].eq("guidance"), "report_code"]) == {"21", "22", "23"}
    assert imp.guidance_unknown_items.empty and imp.guidance.exclusions.empty
    assert imp.guidance_summary["derived"] > 0  # 対象者 without 初回面接, from the 健診


def test_xml_demo_cache_and_check(xml_demo, tmp_path):
    before = dict(io.CACHE_STATS)
    first = io.load_dataset(xml_demo, cache_dir=tmp_path / "cache")
    second = io.load_dataset(xml_demo, cache_dir=tmp_path / "cache")
    assert second.results["kenshin"].from_cache and second.results["guidance"].from_cache
    assert io.CACHE_STATS["hits"] > before["hits"]
    pd.testing.assert_frame_equal(first.tables["kenshin"], second.tables["kenshin"])
    # the demo's guidance written as hg08 documents (those who started) and read back, with the
    # 対象者 who never started taken from the 健診's 保健指導レベル, is the generator's table
    assert not (xml_demo / "guidance.csv").exists() and first.exclusions.empty
    got = second.tables["guidance"].sort_values(["person_id", "fy"]).reset_index(drop=True)
    gen = synth.generate_demo(scale=0.01, seed=2024)["guidance"]
    want = io.read_text_frame(gen.astype(str), "guidance", "generator").data
    pd.testing.assert_frame_equal(got, want.sort_values(["person_id", "fy"]).reset_index(drop=True))
    assert got["started"].any() and (~got["started"]).any() and (got["started"] & ~got["completed"]).any()
    text = io.check_folder(xml_demo)
    assert "特定健診XMLアーカイブ" in text and "アーカイブ・展開フォルダ: 60 件" in text
    assert "特定保健指導の文書:" in text
    assert "使わないファイル" not in text  # archives and helper tables are not "unused"
    assert "判定: 分析に使用できます" in text


def test_optional_xsd_validation_per_document(tmp_path, monkeypatch):
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    tx._SCHEMAS.clear()  # compiled once per process: compile here, from the archive's XSD copies
    imp = tx.read_archives(_make_folder(tmp_path / "d"), workers=1, validate_xsd=True)
    assert list(temp.iterdir()) == []  # the XSD copies made to compile the schema are removed
    d = imp.documents.set_index(imp.documents["path"].str.rsplit("/", n=1).str[-1])
    assert d.loc["h0001.xml", "xsd"] == "適合" and d.loc["h0101.xml", "xsd"] == "適合"
    assert d.loc["h0104.xml", "xsd"].startswith("不適合") and "birthTime" in d.loc["h0104.xml", "xsd"]
    assert d.loc["broken.xml", "xsd"] == "検証できません（XMLとして読めません）"
    assert pd.isna(d.loc["ix08_V08.xml", "xsd"])  # not a 健診 document
    lines = "\n".join(tx.describe_import(imp))
    assert "XSD検証（アーカイブ同梱の XSD）: 適合 6 件、不適合 1 件、検証なし 1 件" in lines
    assert pd.isna(tx.read_archives(_make_folder(tmp_path / "e"), workers=1).documents["xsd"]).all()


def test_linkage_table_with_conflicting_ids_is_a_clear_error(tmp_path):
    folder = _make_folder(tmp_path / "d")
    (folder / "person_ids.csv").write_text(
        "保険者番号,記号,番号,枝番,person_id\n179999,,12345,01,A001\n00179999,,１２３４５,01,B001\n",
        encoding="utf-8")
    with pytest.raises(io.DataError, match=r"person_ids.csv: 同じ被保険者.*2, 3 行目"):
        tx.read_archives(folder, workers=1)

"""UKE reader, masters and claims rules on hand-written fixtures (tests/data/uke/README.md).

Expected values are worked out by hand from the fixture lines (line numbers in comments).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.inputs import claims_masters, claims_rules, io, uke
from hsutils.core.errors import DataError

DATA = Path(__file__).parent / "data" / "uke"
FILES = [DATA / "ika_r05.UKE", DATA / "ika_h31.UKE", DATA / "chozai_r05.UKE"]
NAMES = ["石川", "花子", "イシカワ", "ハナコ", "能登", "一郎", "ノト", "加賀", "次郎", "白山", "三郎", "金沢", "四郎",
         "カナザワ"]


@pytest.fixture(scope="module")
def tables():
    return uke.read_uke(FILES)


@pytest.fixture(scope="module")
def derived(tables):
    return claims_rules.derive_tables(tables, claims_masters.load_masters())


# ---------------------------------------------------------------------------------------------
# dates
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("1450101", 19120101),   # 明治45年1月1日
    ("2140505", 19250505),   # 大正14年
    ("3640107", 19890107),   # 昭和64年1月7日
    ("4310109", 20190109),   # 平成31年
    ("5010501", 20190501),   # 令和元年5月1日
    ("5070331", 20250331),   # 令和7年
    ("20240229", 20240229),  # western, leap day
])
def test_decode_day_every_era(text, expected):
    v = np.array([int(text)])
    out, ok = uke.decode_date(v, np.array([len(text)]), np.array([True]), with_day=True)
    assert ok[0] and out[0] == expected


@pytest.mark.parametrize("text,expected", [("43101", 201901), ("50105", 201905), ("30412", 192912),
                                           ("202304", 202304)])
def test_decode_month(text, expected):
    out, ok = uke.decode_date(np.array([int(text)]), np.array([len(text)]), np.array([True]), with_day=False)
    assert ok[0] and out[0] == expected


@pytest.mark.parametrize("text,with_day", [("20230229", True), ("20231301", True), ("6010101", True),
                                           ("202313", False), ("60101", False), ("2023", False),
                                           ("4310132", True)])
def test_decode_rejects_bad_dates(text, with_day):
    _, ok = uke.decode_date(np.array([int(text)]), np.array([len(text)]), np.array([True]), with_day=with_day)
    assert not ok[0]


# ---------------------------------------------------------------------------------------------
# reader: receipts, accounting, exclusions
# ---------------------------------------------------------------------------------------------

def test_row_accounting(tables):
    c = tables.counts
    # ika_r05: 38 lines, ika_h31: 12, chozai_r05: 15 (the EOF mark is not a line)
    assert c["lines_read"] == 38 + 12 + 15
    assert c["receipts_read"] == 8 and c["receipts_kept"] == 6 and c["receipts_excluded"] == 2
    assert c["receipts_read"] == c["receipts_kept"] + c["receipts_excluded"]
    assert c["lines_excluded"] == 2


def test_exclusions_name_file_line_field_reason(tables):
    e = tables.exclusions.set_index("row")
    assert set(e["file"]) == {"ika_r05.UKE"}
    assert e.loc[12, "column"] == "項目数" and "4" in e.loc[12, "reason"] and "8" in e.loc[12, "reason"]
    assert e.loc[18, "column"] == "レコード識別情報" and e.loc[18, "value"] == "ZZ,1,2"
    assert e.loc[26, "reason"].startswith("保険者レコード（HO）がありません") and e.loc[26, "scope"] == "レセプト"
    assert e.loc[29, "column"] == "RE 診療年月" and e.loc[29, "value"] == "202313"
    assert list(e.columns) == [c for c in io.EXCLUSION_COLUMNS if c != "row"]


def test_receipt_fields(tables):
    r = tables.receipts.set_index(["file", "line"])
    a = r.loc[("ika_r05.UKE", 2)]
    assert a["person_key"] == "00170019-石01-1234-01"   # 6-digit 保険者番号 zero-padded, 全角 → 半角, SN 枝番
    assert a["setting"] == "入院外" and a["ym"] == 202305 and a["points"] == 1020 and a["yen"] == 10200
    assert a["n_kouhi"] == 1 and a["edaban"] == "01" and a["institution"] == "1711234567"
    b = r.loc[("ika_r05.UKE", 19)]
    assert b["setting"] == "入院" and b["receipt_type"] == 1317 and b["person_key"] == "39170017--87654321-"
    h = r.loc[("ika_h31.UKE", 7)]
    assert h["ym"] == 201905 and h["institution"] == "1717654321"   # 令和元年5月 (50105)
    p = r.loc[("chozai_r05.UKE", 2)]
    assert p["setting"] == "調剤" and p["rx_institution"] == "1711234567" and p["institution"] == "1747000001"


def test_diagnoses_suspected_main_uncoded(tables):
    d = tables.diagnoses.set_index(["file", "line"])
    assert not d.loc[("ika_r05.UKE", 6), "suspected"] and d.loc[("ika_r05.UKE", 6), "main"]
    assert d.loc[("ika_r05.UKE", 8), "suspected"]             # 修飾語 8002
    assert d.loc[("ika_r05.UKE", 9), "suspected"]             # 2056 + 8002
    assert d.loc[("ika_r05.UKE", 10), "uncoded_name"] == "高血圧症の疑い"
    assert d.loc[("ika_h31.UKE", 5), "start"] == pd.Timestamp("1989-04-01")   # 昭和64年4月1日 as written
    assert d.loc[("ika_h31.UKE", 5), "outcome"] == 2


def test_drug_lines_carry_class_and_pharmacy_days(tables):
    d = tables.drugs.set_index(["file", "line"])
    assert d.loc[("ika_r05.UKE", 15), "cls"] == 21 and d.loc[("ika_r05.UKE", 15), "days"] == 28  # 診療識別 carried
    assert d.loc[("ika_r05.UKE", 16), "form_code"] == 3                                          # 22 屯服
    assert d.loc[("chozai_r05.UKE", 7), "days"] == 28 and d.loc[("chozai_r05.UKE", 7), "form_code"] == 1
    assert d.loc[("chozai_r05.UKE", 10), "days"] == 10 and d.loc[("chozai_r05.UKE", 10), "form_code"] == 3
    assert d.loc[("chozai_r05.UKE", 13), "form_code"] == 5 and d.loc[("chozai_r05.UKE", 13), "quantity"] == 7.0


def test_small_blocks_give_identical_tables(tables):
    small = uke.read_uke(FILES, chunk_bytes=97)  # blocks end mid-receipt and mid-line
    for name in ("receipts", "diagnoses", "procedures", "drugs", "exclusions"):
        pd.testing.assert_frame_equal(getattr(small, name), getattr(tables, name))
    assert small.counts == tables.counts


def _write(tmp_path: Path, text: str, name: str = "x.UKE") -> Path:
    p = tmp_path / name
    p.write_bytes(text.replace("\n", "\r\n").encode("cp932") + b"\x1a")
    return p


def test_malformed_re_never_shows_the_name(tmp_path):
    e30 = "," * 30
    p = _write(tmp_path, "IR,2,17,1,1234567,,医院,202306,00,\n"
                         "RE,1,1112,202305,山田　太郎,1,19500101,70\n"
                         "HO,  170019,,1,1,73,,,,,,,,,\n"
                         f"SI,12,1,199000002,,73,1,,,,,,,1{e30}\n"
                         "GO,1,73,99\n")
    t = uke.read_uke([p])
    assert t.counts["receipts_read"] == 0 and len(t.receipts) == 0
    row = t.exclusions.set_index("row").loc[2]
    assert row["column"] == "項目数" and row["value"] == "RE,1,1112,202305"
    assert "山田" not in t.exclusions.to_string()
    # the SI and HO lines sit under an excluded RE: they are not attached to any receipt
    assert t.drugs.empty and t.procedures.empty


def test_lines_before_the_header_are_listed(tmp_path):
    p = _write(tmp_path, "SY,9990001,20230510,1,,,01,\nIR,2,17,1,1234567,,医院,202306,00,\nGO,0,0,99\n")
    t = uke.read_uke([p])
    assert t.exclusions["row"].tolist() == [1] and "IR" in t.exclusions["reason"].iloc[0]


def test_a_file_without_any_header_is_read_as_empty(tmp_path):
    """An empty file (only the EOF mark) and a file of only detail lines give empty tables with
    every line accounted for (the reader used to fail with a KeyError without any IR/YK)."""
    empty = _write(tmp_path, "", "empty.UKE")
    t = uke.read_uke([empty])
    assert t.counts == {"files": 1, "lines_read": 0, "lines_excluded": 0, "lines_ignored": 0,
                        "receipts_read": 0, "receipts_kept": 0, "receipts_excluded": 0}
    assert t.receipts.empty and t.exclusions.empty
    p = _write(tmp_path, "SY,9990001,20230510,1,,,01,\nHO,  170019,,1,1,73,,,,,,,,,\n", "noheader.UKE")
    t = uke.read_uke([empty, p])
    assert t.counts["lines_read"] == 2 and t.counts["lines_excluded"] == 2 and t.receipts.empty
    assert t.exclusions["row"].tolist() == [1, 2] and set(t.exclusions["file"]) == {"noheader.UKE"}


def test_unreadable_master_is_a_japanese_error(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text('"0","Y","9990001"' + ',""' * 20 + "\n", encoding="cp932")
    with pytest.raises(DataError, match="マスター種別"):
        claims_masters.read_master(p, "disease")


# ---------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("icd,group,inside", [
    ("E10", "E10-E14", True), ("E149", "E10-E14", True), ("E119", "E10-E14", True),
    ("E15", "E10-E14", False), ("E099", "E10-E14", False),
    ("I10", "I10-I15", True), ("I159", "I10-I15", True), ("I209", "I10-I15", False), ("I099", "I10-I15", False),
    ("E785", "E78", True), ("E790", "E78", False),
    ("N185", "N18", True), ("N17", "N18", False), ("E112", "E112", True), ("E119", "E112", False),
    ("I693", "I60-I69", True), ("I70", "I60-I69", False), ("E11.9", "E10-E14", True),
])
def test_icd10_boundaries(icd, group, inside):
    assert bool(claims_rules.icd10_in(pd.Series([icd]), [group]).iloc[0]) is inside


def test_shipped_rules_groups():
    r = claims_rules.load_rules()
    assert r["disease_groups"]["diabetes"]["icd10"] == ["E10-E14"]
    assert r["include_suspected"] is False
    assert "112" in r["drug_groups"]["hypnotic"]["yj_prefixes"]


def test_claims_monthly_by_hand(derived):
    cm = derived.tables["claims_monthly"].set_index(["person_id", "ym"])
    a = cm.loc[("00170019-石01-1234-01", 202305)]
    # E119 (line 6) and I10 (7) count; E109 with 8002 (8), I159 with 2056+8002 (9), uncoded
    # 「高血圧症の疑い」 (10) are suspected; 「腎臓の病気」 (11) matches no keyword
    assert (a["diabetes"], a["hypertension"], a["dyslipidemia"], a["ckd"], a["dialysis"]) == (1, 1, 0, 0, 0)
    # 内服 ingredients: metformin (院内 and 院外: once), amlodipine, suvorexant -> 3;
    # zolpidem and brotizolam are 屯服, the tape is 外用
    assert a["n_drugs"] == 3 and a["hypnotic"] == 1
    assert a["cost_outpatient"] == 10200 and a["cost_pharmacy"] == 8000 and a["cost_inpatient"] == 0
    assert a["n_institutions"] == 1                     # the pharmacy is not counted
    b = cm.loc[("00170019-石01-1234-01", 202306)]
    # E15 (line 34) is not diabetes, I209 (35) is not hypertension, N189 (36) is CKD; 腹膜灌流 (38)
    assert (b["diabetes"], b["hypertension"], b["ckd"], b["dialysis"]) == (0, 0, 1, 1)
    c = cm.loc[("39170017--87654321-", 202305)]
    # 人工腎臓 (line 24), N185, I500, E149 with 転帰 治ゆ still counts in its month
    assert (c["dialysis"], c["ckd"], c["heart_failure"], c["diabetes"]) == (1, 1, 1, 1)
    assert c["cost_inpatient"] == 238800
    h = cm.loc[("00170019-石02-5678-", 201905)]
    assert (h["diabetes"], h["ckd"]) == (1, 1)          # E112 糖尿病性腎症 is in both groups
    assert len(cm) == 5


def test_monthly_distinct_counts_and_flags_on_row_numbers_match_a_group_by():
    """claims_monthly's n_drugs / n_institutions and flags are counted on each receipt's person-month row
    (claims_rules._distinct_per_month, _months_with): as a group-by's nunique and an isin would."""
    pm = np.array([0, 0, 0, 2, 2, 2, 3], np.int64)
    values = np.array(["a", "a", "b", None, np.nan, "c", None], dtype=object)
    # row 0: a, b -> 2; row 1: no rows -> 0; row 2: only c counts (missing values are not) -> 1; row 3: missing only -> 0
    got = claims_rules._distinct_per_month(pm, values, 5)
    assert got.tolist() == [2, 0, 1, 0, 0] and got.dtype == np.int64
    by = pd.Series(values).groupby(pm).nunique().reindex(range(5), fill_value=0)
    assert got.tolist() == by.tolist()
    assert claims_rules._distinct_per_month(pm[:0], values[:0], 3).tolist() == [0, 0, 0]
    flags = claims_rules._months_with(np.array([3, 1, 3], np.int64), 4)
    assert flags.tolist() == [0, 1, 0, 1] and flags.dtype == np.int8
    assert claims_rules._months_with(np.array([], np.int64), 2).tolist() == [0, 0]


def test_include_suspected_switch(tables):
    rules = claims_rules.load_rules()
    rules["include_suspected"] = True
    d = claims_rules.derive_tables(tables, claims_masters.load_masters(), rules)
    a = d.tables["claims_monthly"].set_index(["person_id", "ym"]).loc[("00170019-石01-1234-01", 202305)]
    assert a["hypertension"] == 1 and a["diabetes"] == 1
    assert d.report["n_uncoded_matched"] == 1          # 「高血圧症の疑い」 now counts via 「高血圧」


@pytest.mark.parametrize("yj,hyp", [("1129009F1001", True), ("1124009F1001", True), ("1190023F1001", True),
                                    ("1190026F1001", True), ("1179025F1001", False), ("1190099F1001", False),
                                    ("2171022F1001", False)])
def test_hypnotic_classification(yj, hyp):
    prefixes = claims_rules.load_rules()["drug_groups"]["hypnotic"]["yj_prefixes"]
    assert bool(claims_rules._prefix_in(pd.Series([yj]), prefixes).iloc[0]) is hyp


def test_unknown_codes_are_counted(tables, tmp_path):
    m = claims_masters.load_masters()
    m.disease = m.disease[m.disease["code"] != "9990005"]
    m.drug = m.drug[m.drug["code"] != "699000001"]
    d = claims_rules.derive_tables(tables, m)
    assert d.report["n_unknown_disease"] == 1 and d.report["unknown_disease"] == [("9990005", 1)]
    assert d.report["n_unknown_drug"] == 2 and d.report["unknown_drug"] == [("699000001", 2)]
    text = "\n".join(claims_rules.unknown_codes_text(d.report))
    assert "9990005（1 件）" in text


def test_prescriptions_and_costs(derived):
    p = derived.tables["prescriptions"]
    out = p[p["dispensed"] == "院外"]
    assert set(out["prescriber_code"]) == {"1711234567"} and set(out["dispenser_code"]) == {"1747000001"}
    met = out[out["drug_code"] == "699000001"].iloc[0]
    assert met["efficacy_class"] == "396" and met["days"] == 28 and met["form"] == "内服"
    mc = derived.tables["medical_costs"].set_index(["person_id", "ym", "setting"])
    assert mc.loc[("39170017--87654321-", 202305, "入院"), "main_chapter"].startswith("XIV")
    assert mc.loc[("00170019-石01-1234-01", 202305, "入院外"), "cost"] == 10200


def test_names_never_reach_any_table(tables, derived):
    frames = [tables.receipts, tables.diagnoses, tables.procedures, tables.drugs, tables.exclusions,
              *derived.tables.values()]
    for df in frames:
        text = df.astype(str).to_csv()
        for n in NAMES:
            assert n not in text


# ---------------------------------------------------------------------------------------------
# data folder integration
# ---------------------------------------------------------------------------------------------

def test_load_dataset_reads_uke_with_link_and_cache(tmp_path):
    folder = tmp_path / "data"
    (folder / "uke").mkdir(parents=True)
    for f in FILES:
        shutil.copy(f, folder / "uke")
    shutil.copytree(claims_masters.synthetic_masters_dir(), folder / "uke_masters")
    shutil.copy(Path(__file__).resolve().parents[1] / "data_templates" / "kenshin.csv", folder)
    (folder / "enrollment.csv").write_text(
        "被保険者番号,年度,市町村コード,性別,年齢,保険種別\nP1,2023,17201,2,73,国保\nP2,2019,17202,1,70,国保\n",
        encoding="utf-8")
    (folder / "uke_person_link.csv").write_text(
        "保険者番号,記号,番号,被保険者番号\n170019,石01,1234,P1\n170019,石０２,5678,P2\n", encoding="utf-8")
    ds = io.load_dataset(folder, cache_dir=tmp_path / "cache")
    cm = ds.tables["claims_monthly"]
    assert cm["person_id"].tolist() == ["P1", "P1", "P2", "P2"]
    assert cm["muni_code"].tolist() == ["17201", "17201", "17202", "17202"]
    row = ds.summary.set_index("table").loc["uke"]
    # 8 receipts: 6 kept by the reader, of which the 後期 one has no link -> 5 + 3
    assert (row["read"], row["kept"], row["dropped_rows"]) == (8, 5, 3)
    assert (ds.exclusions["table"] == "uke").sum() == 5
    # the per-file store (docs/claims_rules.md §7.1): one entry per UKE file, each with its meta.json
    assert len(list((tmp_path / "cache" / "uke").glob("*/meta.json"))) == len(FILES)
    # the same dtypes as a claims_monthly.csv read by the loader
    csv = io.read_table(Path(__file__).resolve().parents[1] / "data_templates" / "claims_monthly.csv", "claims_monthly")
    assert cm.dtypes.to_dict() == csv.data.dtypes.to_dict()
    ds2 = io.load_dataset(folder, cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(ds.tables["claims_monthly"], ds2.tables["claims_monthly"])
    report = io.check_folder(folder)
    assert "レセプト 読み込み 8 件" in report and "マスターにない傷病名コード: なし" in report


def test_uke_without_masters_is_a_clear_error(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(FILES[0], folder)
    shutil.copy(Path(__file__).resolve().parents[1] / "data_templates" / "kenshin.csv", folder)
    shutil.copy(Path(__file__).resolve().parents[1] / "data_templates" / "enrollment.csv", folder)
    with pytest.raises(DataError, match="uke_masters"):
        io.load_dataset(folder)


def test_reader_tables_equal_the_previous_readers_output():
    """The byte-level parser (field spans from one separator pass, SWAR digits, Arrow text
    columns) gives exactly the tables of the reader it replaced: tests/data/uke/expected/ was
    written by that reader (commit 5202fd9) from the fixtures plus reader_mix.UKE (README.md),
    whose broken lines cover every line-level check. Small blocks too, so that fields and lines
    cut by a block end are covered."""
    import json

    files = FILES + [DATA / "reader_mix.UKE"]
    expected = DATA / "expected"
    for chunk in (uke.CHUNK_BYTES, 1000):
        t = uke.read_uke(files, chunk_bytes=chunk)
        for name in ("receipts", "diagnoses", "procedures", "drugs", "exclusions"):
            pd.testing.assert_frame_equal(getattr(t, name), pd.read_parquet(expected / f"{name}.parquet"),
                                          check_exact=True)
        assert t.counts == json.loads((expected / "counts.json").read_text(encoding="utf-8"))
    assert t.counts["lines_excluded"] == 34 and t.counts["receipts_excluded"] == 6


@pytest.mark.parametrize("text", [b"", b"0", b"7", b"12", b"1a", b"a1", b"123456789", b"1234567890",
                                  b"00000001", b"12345678901234567", b" 12", b"\x82\xa0", b"170019"])
@pytest.mark.parametrize("width", [1, 2, 8, 9, 16])
def test_digits_by_hand(text, width):
    """SWAR digit parsing: value of the last min(len, width) bytes, a non-digit counts as 0 and
    makes the field invalid, too long or empty is invalid (expected values worked out by hand)."""
    lines = uke._Lines.from_bytes(b"X," + text + b"\r\n")
    value, length, valid = lines.digits(np.array([0]), 1, width)
    tail = text[-width:] if text else b""
    by_hand = sum((b - 48 if 48 <= b <= 57 else 0) * 10 ** k for k, b in enumerate(reversed(tail)))
    assert length[0] == len(text)
    assert valid[0] == (0 < len(text) <= width and text.isdigit())
    assert value[0] == by_hand


# ---------------------------------------------------------------------------------------------
# input validation: 傷病名コード as written, 点数表 codes, 調剤 days of same-named files
# ---------------------------------------------------------------------------------------------

_RE_MEDICAL = "RE,1,1112,202305,山田　太郎,1,19500101,70" + "," * 30     # 38 fields
_HO_MEDICAL = "HO,  170019,,1,1,73,,,,,,,,,"                                 # 15 fields
_RE_PHARMACY = ("RE,1,4112,202305,山田　太郎,1,19500101,70,,17,1,1234567,医院,金沢市" + "," * 28)  # 42 fields
_HO_PHARMACY = "HO,  170019,,1,2,800,,,,,,,,"                                # 14 fields


def test_unreadable_disease_code_is_listed_as_written(tmp_path):
    """SY 傷病名コード that is not 7 digits: the exclusion quotes the code as written in the file
    (full-width digits, a letter, 6 digits, empty), not the internal -1."""
    codes = ["９９９０００１", "9990O01", "999001", "", "99900011"]
    sy = "".join(f"SY,{c},20230510,1,,,,\n" for c in codes)
    p = _write(tmp_path, f"IR,2,17,1,1234567,,医院,202306,00,\n{_RE_MEDICAL}\n{_HO_MEDICAL}\n"
                         f"SY,9990001,20230510,1,,,01,\n{sy}GO,1,73,99\n")
    t = uke.read_uke([p])
    e = t.exclusions
    assert e["row"].tolist() == [5, 6, 7, 8, 9] and set(e["column"]) == {"SY 傷病名コード"}
    assert e["value"].tolist() == codes
    assert set(e["reason"]) == {"傷病名コードが7桁の数字ではありません"} and set(e["scope"]) == {"行"}
    assert t.diagnoses["code"].tolist() == ["9990001"] and t.counts["lines_excluded"] == 5


def _header_file(tmp_path: Path, record: str, kind: str) -> Path:
    if record == "IR":
        return _write(tmp_path, f"IR,2,17,{kind},1234567,,医院,202306,00,\n{_RE_MEDICAL}\n{_HO_MEDICAL}\n"
                                "SY,9990001,20230510,1,,,01,\nGO,1,73,99\n", f"ir_{kind or 'empty'}.UKE")
    return _write(tmp_path, f"YK,2,17,{kind},7000001,薬局,202306,00,\n{_RE_PHARMACY}\n{_HO_PHARMACY}\n"
                            "GO,1,800,99\n", f"yk_{kind or 'empty'}.UKE")


@pytest.mark.parametrize("record,kind,setting", [
    ("IR", "1", "入院外"), ("IR", "3", "歯科"), ("YK", "4", "調剤")])
def test_header_kind_allowed_codes(tmp_path, record, kind, setting):
    """点数表 (IR/YK idx 3, 数字1桁): IR 1 医科 (docs/formats/uke.md §3), IR 3 歯科
    (docs/claims_rules.md §2.2), YK 4 調剤 (docs/formats/uke.md §4) are read."""
    t = uke.read_uke([_header_file(tmp_path, record, kind)])
    assert t.exclusions.empty and t.counts["receipts_kept"] == 1
    r = t.receipts.iloc[0]
    assert r["setting"] == setting and r["institution"][2] == kind


@pytest.mark.parametrize("record,kind", [
    ("IR", "114"), ("IR", "14"), ("IR", "11"), ("IR", ""), ("IR", "4"), ("IR", "2"), ("IR", "１"),
    ("YK", "114"), ("YK", "44"), ("YK", "1"), ("YK", "")])
def test_header_kind_other_values_are_rejected(tmp_path, record, kind):
    """Any other 点数表 — 3 characters (`114`, whose last digit is a valid code), 2 characters,
    empty, a code of the other header (IR 4, YK 1), an unused code (2), a full-width digit — makes
    the header unreadable: its line is listed with the value as written and what is expected, and
    its receipt is excluded (pointing to that line); counts add up."""
    t = uke.read_uke([_header_file(tmp_path, record, kind)])
    assert t.receipts.empty and t.counts["receipts_read"] == 1 and t.counts["receipts_excluded"] == 1
    e = t.exclusions.set_index("row")
    line = e.loc[1]
    assert line["column"] == f"{record} 点数表" and line["value"] == kind and line["scope"] == "行"
    expected = "1（医科）または 3（歯科）の1桁" if record == "IR" else "4（調剤）の1桁"
    assert line["reason"] == f"{record} 点数表が記録条件仕様の値ではありません（{expected}の数字）"
    receipt = e.loc[2]
    assert receipt["scope"] == "レセプト" and receipt["column"] == f"{record} 点数表" and receipt["value"] == kind
    assert "1行目" in receipt["reason"] and "点数表" in receipt["reason"]
    assert t.counts["lines_excluded"] == 1   # the header line; the receipt is counted as a receipt


def test_pharmacy_days_of_same_named_files_stay_apart(tmp_path):
    """Two pharmacies' files both named RECEIPTY.UKE (different folders) read in one call, with
    an SH on the same line number: each IY takes the days of the CZ lines of its own SH group
    (28 and 14), not their sum over both files (docs/claims_rules.md §2.3)."""
    paths = []
    for folder, days in (("a", 28), ("b", 14)):
        (tmp_path / folder).mkdir()
        paths.append(_write(tmp_path / folder,
                            f"YK,2,17,4,700000{len(paths) + 1},薬局,202306,00,\n{_RE_PHARMACY}\n{_HO_PHARMACY}\n"
                            f"SH,01,1,006,,50,,,,\nCZ,1,0510,0510,1,{days},1,,,,,,,100\n"
                            "IY,1,699000001,2,,,,,,\nGO,1,800,99\n", "RECEIPTY.UKE"))
    t = uke.read_uke(paths)
    assert t.counts["receipts_kept"] == 2 and t.exclusions.empty
    d = t.drugs.sort_values("receipt_id")
    assert d["line"].tolist() == [6, 6] and set(d["file"]) == {"RECEIPTY.UKE"}
    assert d["days"].tolist() == [28, 14] and d["form_code"].tolist() == [1, 1]
    assert t.receipts.sort_values("receipt_id")["institution"].tolist() == ["1747000001", "1747000002"]


def test_receipt_exclusions_quote_the_value_they_are_about(tmp_path):
    """Each excluded receipt names the value its reason is about, as written (docs/claims_rules.md
    §4.2): the レセプト種別 for a bad レセプト種別 (letters, 3 digits), the HO 合計点数 for an
    unreadable 合計点数, and nothing ('') for a missing HO or an empty 保険者番号 / 番号 — never the
    receipt's レセプト種別 for a reason about another field."""
    re_ok = _RE_MEDICAL
    re_bad = _RE_MEDICAL.replace(",1112,", ",11X2,")
    re_short = _RE_MEDICAL.replace(",1112,", ",112,")
    text = "\n".join([
        "IR,2,17,1,1234567,,医院,202306,00,",            # 1
        re_bad, _HO_MEDICAL,                              # 2, 3: レセプト種別 11X2
        re_ok, "SY,9990001,20230510,1,,,01,",             # 4, 5: no HO
        re_ok, _HO_MEDICAL.replace(",73,", ",7a,"),       # 6, 7: 合計点数 7a
        re_ok, _HO_MEDICAL.replace("  170019", ""),       # 8, 9: 保険者番号 empty
        re_ok, "HO,  170019,,,1,73,,,,,,,,,",             # 10, 11: 番号 empty
        re_short, _HO_MEDICAL,                            # 12, 13: レセプト種別 112 (3 digits)
        re_ok, _HO_MEDICAL,                               # 14, 15: kept
        "GO,1,73,99"]) + "\n"
    t = uke.read_uke([_write(tmp_path, text)])
    assert t.counts["receipts_read"] == 7 and t.counts["receipts_kept"] == 1 and t.counts["receipts_excluded"] == 6
    e = t.exclusions[t.exclusions["scope"] == "レセプト"].set_index("row")
    assert e["column"].to_dict() == {2: "RE レセプト種別", 4: "HO", 6: "HO 合計点数", 8: "HO 保険者番号",
                                     10: "HO 番号", 12: "RE レセプト種別"}
    assert e["value"].to_dict() == {2: "11X2", 4: "", 6: "7a", 8: "", 10: "", 12: "112"}
    assert t.receipts["line"].tolist() == [14] and t.receipts["receipt_type"].tolist() == [1112]


@pytest.mark.parametrize("segment_bytes", [1, 150, 700, 2500, 10 ** 9])
def test_segments_read_alone_give_the_one_pass_tables(segment_bytes):
    """A file read in segments (`uke.segments`: cut only before an IR/YK line, lines numbered as in
    the whole file) gives the one-pass rows, exclusions and counts once receipt ids are shifted by
    the receipts of the segments before (docs/claims_rules.md §7.1). reader_mix.UKE has two
    institution blocks and 40 broken lines."""
    path = DATA / "reader_mix.UKE"
    whole = uke.read_uke([path])
    bounds = uke.segments(path, segment_bytes)
    assert bounds[0][0] == 0 and bounds[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    data = path.read_bytes()
    for start, _, first_line in bounds[1:]:
        assert data[start:start + 3] in (b"IR,", b"YK,") and data[:start].count(b"\n") + 1 == first_line
    if segment_bytes < 2500:
        assert len(bounds) > 1
    parts = {k: [] for k in ("receipts", "diagnoses", "procedures", "drugs", "exclusions")}
    counts, shift = {}, 0
    for start, stop, first_line in bounds:
        t = uke.read_segment(path, path.name, start, stop, first_line)
        for k in parts:
            df = getattr(t, k)
            if k != "exclusions" and len(df):
                df = df.assign(receipt_id=df["receipt_id"] + shift)
            parts[k].append(df)
        shift += t.counts["receipts_read"]
        for k, v in t.counts.items():
            counts[k] = counts.get(k, 0) + v
    for k in ("receipts", "diagnoses", "procedures", "drugs"):
        want = getattr(whole, k).reset_index(drop=True)
        # a segment without any 処方医療機関 has an all-None object column, as a file alone has
        got = pd.concat([f for f in parts[k] if len(f)], ignore_index=True).astype(want.dtypes.to_dict())
        pd.testing.assert_frame_equal(got, want, obj=k)
    excl = pd.concat(parts["exclusions"], ignore_index=True).sort_values(["file", "row"], kind="stable")
    pd.testing.assert_frame_equal(excl.reset_index(drop=True), whole.exclusions, obj="exclusions")
    assert {k: v for k, v in counts.items() if k != "files"} == {k: v for k, v in whole.counts.items() if k != "files"}


def test_files_are_named_relative_to_the_data_folder(tmp_path):
    """Two files named alike in two folders are told apart by their path relative to the data folder
    (docs/claims_rules.md §4.1); without a root the base name is kept."""
    (tmp_path / "uke").mkdir()
    a = _write(tmp_path, f"IR,2,17,1,1234567,,医院,202306,00,\n{_RE_MEDICAL}\nGO,1,73,99\n", "X.UKE")
    b = _write(tmp_path / "uke", f"IR,2,17,1,1234567,,医院,202306,00,\n{_RE_MEDICAL}\nGO,1,73,99\n", "X.UKE")
    t = uke.read_uke([a, b], root=tmp_path)
    assert t.exclusions["file"].tolist() == ["X.UKE", "uke/X.UKE"]   # each receipt without HO
    assert uke.read_uke([a, b]).exclusions["file"].tolist() == ["X.UKE", "X.UKE"]
    assert uke.file_label(b, tmp_path) == "uke/X.UKE" and uke.file_label(b, tmp_path / "other") == "X.UKE"


def test_claims_rules_parsed_once_per_file_version_and_each_call_gets_its_own_copy(tmp_path):
    """`load_rules` parses a file once per version: a caller changing its dict does not change the next
    call's, and an edited file (new size or time) is read again."""
    import os

    first = claims_rules.load_rules()
    first["drug_groups"]["hypnotic"]["yj_prefixes"].append("X")
    assert "X" not in claims_rules.load_rules()["drug_groups"]["hypnotic"]["yj_prefixes"]
    mine = tmp_path / "claims_rules.yaml"
    text = claims_rules.default_rules_path().read_text(encoding="utf-8")
    mine.write_text(text, encoding="utf-8")
    assert claims_rules.load_rules(mine) == claims_rules.load_rules()
    mine.write_text(text + "\nextra_note: 1\n", encoding="utf-8")
    os.utime(mine, ns=(1, 2_000_000_000))
    assert claims_rules.load_rules(mine)["extra_note"] == 1

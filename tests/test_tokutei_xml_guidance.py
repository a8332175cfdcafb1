"""特定保健指導 XML (hg08) → the canonical guidance table (hsutils.inputs.tokutei_xml, docs/formats/tokutei_xml.md §1.7),
on the hand-written fixtures of tests/fixtures/tokutei_xml/guidance_c/ (see its README) next to the 健診
fixtures of test_tokutei_xml.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from hsutils.inputs import io, tokutei_xml as tx

from test_tokutei_xml import FIX, _make_folder

GUIDANCE = "3333333333_00179999_202506301_2"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = _make_folder(tmp_path_factory.mktemp("hg") / "data")
    shutil.copytree(FIX / "guidance_c" / GUIDANCE, d / GUIDANCE)
    _enrollment(d)
    return d


def _enrollment(d: Path) -> None:
    """A small 対象者 table so that `io.load_dataset` accepts the folder (municipality from insurer_munis.csv)."""
    rows = [f"{p},{fy},17201,国保,{sex},{age}" for p, sex, age in
            (("00179999--12345-01", 1, 64), ("00179999-17-55555-02", 2, 55)) for fy in (2024, 2025)]
    (d / "enrollment.csv").write_text("person_id,fy,muni_code,insurance,sex,age\n" + "\n".join(rows) + "\n",
                                      encoding="utf-8")


@pytest.fixture(scope="module")
def imp(folder) -> tx.XmlImport:
    return tx.read_archives(folder, workers=1)


def test_guidance_documents_are_found_by_content_and_merged_per_person_and_year(imp):
    g = imp.guidance.data.sort_values(["person_id", "fy"]).reset_index(drop=True)
    # g0001 (22 実績評価) + g0002 (21 開始, 全角 番号/枝番) = one row; g0003 (23 途中終了) its own row
    assert g["person_id"].tolist() == ["00179999--12345-01", "00179999-17-55555-02"]
    assert g["fy"].tolist() == [2024, 2025]  # 健診実施日 2024-06-10; 初回面接日 2025-04-10 (no 健診実施日)
    assert g["level"].astype(str).tolist() == ["積極的支援", "動機付け支援"]
    assert g["started"].tolist() == [True, True]
    assert g["completed"].tolist() == [True, False]  # only 報告区分 22 is 終了
    assert g["muni_code"].astype(str).tolist() == ["17201", "17201"]  # insurer_munis.csv
    assert list(g.columns) == list(io.empty_table("guidance").columns)


def test_guidance_row_accounting_and_exclusions_name_document_code_value_reason(imp):
    r = imp.guidance
    d = imp.documents[imp.documents["kind"].eq("guidance")].set_index("path")
    assert len(d) == 5  # g0005 is not well-formed: counted as 保健指導 by its g* name
    assert d["status"].to_dict() == {"DATA/g0001.xml": "採用", "DATA/g0002.xml": "採用",
                                     "DATA/g0003.xml": "採用", "DATA/g0004.xml": "除外",
                                     "DATA/g0005.xml": "除外"}
    s = imp.guidance_summary
    assert (s["documents"], s["used"], s["excluded"], s["rows"], s["derived"]) == (5, 3, 2, 3, 0)
    assert r.n_read == r.n_kept + r.n_dropped and (r.n_kept, r.n_dropped) == (2, 2)
    ex = r.exclusions
    lvl = ex[ex["file"].str.endswith("g0004.xml") & ex["scope"].eq(io.SCOPE_VALUE)].iloc[0]
    assert (lvl["column"], lvl["value"]) == ("支援レベル（1020000001）", "3")
    assert "1（積極的支援）・2（動機付け支援）ではありません" in lvl["reason"]
    assert ex["file"].str.endswith("g0004.xml").sum() == 2  # the value, then the row (支援レベル required)
    broken = ex[ex["file"].str.endswith("g0005.xml")].iloc[0]
    assert broken["file"] == f"{GUIDANCE}/DATA/g0005.xml" and "XML として読めません" in broken["reason"]
    assert set(ex["table"]) == {"guidance"}
    # the 健診 import is unchanged by the guidance documents next to it
    assert imp.result.n_read == imp.result.n_kept + imp.result.n_dropped


def test_unknown_guidance_code_is_counted_and_kept_in_the_audit_table(imp):
    u = imp.guidance_unknown_items.set_index("item_code")
    assert u.loc["1099999999", "count"] == 1
    obs = imp.guidance_observation_table.to_pandas()
    assert "1099999999" in set(obs["item_code"].astype(str))
    assert "1099999999" not in set(imp.unknown_items["item_code"])  # not mixed into the 健診 list
    assert imp.guidance_summary["unknown"] == 1


@pytest.fixture(scope="module")
def loaded(folder, tmp_path_factory):
    """The folder through `io.load_dataset` twice with one cache (the second from the cache)."""
    cache = tmp_path_factory.mktemp("cache")
    return io.load_dataset(folder, cache_dir=cache), io.load_dataset(folder, cache_dir=cache)


def test_names_and_addresses_in_guidance_documents_never_reach_a_table(imp, loaded):
    ds = loaded[0]
    frames = [imp.guidance.data, imp.guidance.exclusions, imp.documents, imp.observations,
              imp.guidance_observation_table.to_pandas(), *ds.tables.values(), ds.exclusions]
    text = "\n".join(f.astype(str).to_csv() for f in frames)
    for secret in ("シドウ", "タロウ", "架空市シドウ町", "999-9999", "19600415"):
        assert secret not in text
    assert "1099999999" in text  # the dump does contain the documents' content


def test_load_dataset_reads_guidance_from_the_archives_once_and_check_reports_it(folder, loaded):
    first, second = loaded
    assert second.results["guidance"].from_cache and second.results["kenshin"].from_cache
    pd.testing.assert_frame_equal(first.tables["guidance"], second.tables["guidance"])
    assert len(first.tables["guidance"]) == 2
    text = io.check_folder(folder)
    assert "特定健診XMLアーカイブ（特定保健指導 hg08）" in text
    assert "特定保健指導の文書: 5 件（採用 3 件、除外 2 件）" in text
    assert "対応表にない 1 件" in text
    assert "[値を欠損扱い] 支援レベルのコードが" in text


def test_guidance_csv_wins_over_the_documents(folder, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(folder, d)
    (d / "guidance.csv").write_text("person_id,fy,muni_code,level,started,completed\n"
                                    "P1,2024,17201,積極的支援,1,2\n", encoding="utf-8")
    ds = io.load_dataset(d)
    assert ds.tables["guidance"]["person_id"].tolist() == ["P1"]


def test_no_guidance_documents_means_no_guidance_table(tmp_path):
    d = _make_folder(tmp_path / "k")
    _enrollment(d)
    ds = io.load_dataset(d)
    assert ds.tables["guidance"].empty


# A small hand-written test schema (NOT the MHLW hg08 schema): the header order and that
# patient/birthTime is present; everything else is skipped (as the hc08 test schema of the fixtures).
_HG08_TEST_XSD = """<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="urn:hl7-org:v3"
           targetNamespace="urn:hl7-org:v3" elementFormDefault="qualified">
  <xs:complexType name="anyT" mixed="true">
    <xs:sequence><xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
    <xs:anyAttribute processContents="skip"/>
  </xs:complexType>
  <xs:element name="ClinicalDocument">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="typeId" type="anyT"/>
        <xs:element name="code" type="anyT"/>
        <xs:element name="effectiveTime" type="anyT"/>
        <xs:element name="recordTarget">
          <xs:complexType><xs:sequence>
            <xs:element name="patientRole">
              <xs:complexType><xs:sequence>
                <xs:element name="id" type="anyT" maxOccurs="unbounded"/>
                <xs:element name="addr" type="anyT" minOccurs="0"/>
                <xs:element name="patient">
                  <xs:complexType><xs:sequence>
                    <xs:element name="name" type="anyT" minOccurs="0"/>
                    <xs:element name="administrativeGenderCode" type="anyT"/>
                    <xs:element name="birthTime" type="anyT"/>
                  </xs:sequence></xs:complexType>
                </xs:element>
              </xs:sequence></xs:complexType>
            </xs:element>
          </xs:sequence></xs:complexType>
        </xs:element>
        <xs:any processContents="skip" minOccurs="0" maxOccurs="unbounded"/>
      </xs:sequence>
      <xs:anyAttribute processContents="skip"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


def test_guidance_documents_are_validated_against_the_archives_own_hg08_schema(tmp_path):
    """docs/formats/tokutei_xml.md §1.11: with validate_xsd, a 保健指導 document is checked against the
    XSD/hg08*.xsd that its archive carries; an archive without one leaves its documents unchecked."""
    with_xsd = tmp_path / "a" / GUIDANCE
    shutil.copytree(FIX / "guidance_c" / GUIDANCE, with_xsd)
    (with_xsd / "XSD").mkdir()
    (with_xsd / "XSD" / "hg08_V08.xsd").write_text(_HG08_TEST_XSD, encoding="utf-8")
    g1 = (with_xsd / "DATA" / "g0001.xml").read_text(encoding="utf-8")
    no_birth = g1.replace('<birthTime value="19600415"/>', "")
    assert no_birth != g1
    (with_xsd / "DATA" / "g0006.xml").write_text(no_birth, encoding="utf-8")
    without_xsd = tmp_path / "a" / "4444444444_00179999_202506301_2"
    shutil.copytree(FIX / "guidance_c" / GUIDANCE, without_xsd)

    imp = tx.read_archives(tmp_path / "a", workers=1, validate_xsd=True)
    d = imp.documents[imp.documents["kind"].eq("guidance")].set_index(["archive", "path"])["xsd"]
    assert d[(GUIDANCE, "DATA/g0001.xml")] == "適合"
    assert d[(GUIDANCE, "DATA/g0006.xml")].startswith("不適合（行 ")
    assert "birthTime" in d[(GUIDANCE, "DATA/g0006.xml")]
    assert d[(GUIDANCE, "DATA/g0005.xml")] == "検証できません（XMLとして読めません）"  # not well-formed
    assert d.loc[without_xsd.name].isna().all()  # no hg08 schema in that archive: not checked
    lines = "\n".join(tx.describe_guidance(imp))
    assert "保健指導の XSD検証（アーカイブ同梱の XSD/hg08*.xsd）: 適合 " in lines
    assert "DATA/g0006.xml: 不適合（行 " in lines
    # without validate_xsd nothing is checked
    plain = tx.read_archives(tmp_path / "a", workers=1).documents
    assert plain.loc[plain["kind"].eq("guidance"), "xsd"].isna().all()

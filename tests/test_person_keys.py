"""One person key across 特定健診 XML and UKE (docs/formats/person_key.md §1), on hand-written files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hsutils.inputs import claims_import, claims_masters, person_keys, tokutei_xml as tx, uke
from hsutils.core.errors import DataError

# A 国保 person: 保険者番号 170019 (6 digits), 記号 石０１ (全角), 番号 1234, 枝番 01.
XML = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <code code="10" codeSystem="1.2.392.200119.6.1001"/>
  <effectiveTime value="20230601"/>
  <recordTarget>
    <patientRole>
      <id root="1.2.392.200119.6.101" extension="00170019"/>
      <id root="1.2.392.200119.6.204" extension="石０１"/>
      <id root="1.2.392.200119.6.205" extension="１２３４"/>
      <id root="1.2.392.200119.6.211" extension="01"/>
      <patient>
        <administrativeGenderCode code="2" codeSystem="1.2.392.200119.6.1104"/>
        <birthTime value="19500101"/>
      </patient>
    </patientRole>
  </recordTarget>
  <documentationOf>
    <serviceEvent classCode="PCPR">
      <code code="010" codeSystem="1.2.392.200119.6.1002"/>
      <effectiveTime value="20230601"/>
    </serviceEvent>
  </documentationOf>
  <component><structuredBody>
    <component><section>
      <code code="01010" codeSystem="1.2.392.200119.6.1010"/>
      <entry><observation classCode="OBS" moodCode="EVN"><code code="9N006000000000001" codeSystem="1.2.392.200119.6.1005"/><value xsi:type="PQ" value="52.5" unit="kg"/></observation></entry>
    </section></component>
  </structuredBody></component>
</ClinicalDocument>
"""

RE = "RE,{n},1112,{ym},石川　花子,2,19500101,70" + "," * 29 + "イシカワ　ハナコ,"
SI = "SI,12,1,199000002,,73,1,,,,,,,1" + "," * 30
# two receipts of the same person: May with SN 枝番 01, June without SN (枝番 not recorded)
UKE_LINES = [
    "IR,2,17,1,1234567,,テスト医院,202307,00,0761234567",
    RE.format(n=1, ym="202305"), "HO,  170019,石０１,1234,1,73,,,,,,,,,", "SN,1,01,,,,01,,",
    "SY,9990001,20230510,1,,,01,", SI,
    RE.format(n=2, ym="202306"), "HO,  170019,石０１,1234,1,73,,,,,,,,,",
    "SY,9990001,20230510,1,,,01,", SI,
    "GO,2,146,99",
]


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "arc" / "DATA").mkdir(parents=True)
    (d / "arc" / "DATA" / "h0001.xml").write_text(XML, encoding="utf-8")
    (d / "insurer_munis.csv").write_text("保険者番号,市町村コード\n170019,17201\n", encoding="utf-8")
    (d / "uke").mkdir()
    (d / "uke" / "ika.UKE").write_bytes(("\r\n".join(UKE_LINES) + "\r\n").encode("cp932") + b"\x1a")
    shutil.copytree(claims_masters.synthetic_masters_dir(), d / "uke_masters")
    return d


def _xml_ids(folder: Path) -> list[str]:
    imp = tx.read_archives(folder / "arc", data_folder=folder, workers=1)
    return imp.kenshin["person_id"].astype(str).tolist()


def _uke_ids(folder: Path) -> list[str]:
    c = claims_import.load_claims(folder, uke.find_uke_files(folder))
    return sorted(set(c.tables["medical_costs"]["person_id"].astype(str)))


def test_key_rule_pads_the_insurer_and_normalises_full_width():
    k = person_keys.person_key(["  170019", "00170019", "39170013"], ["石０１", "石01", ""],
                               ["1234", "１２３４", "50000001"], ["01", "", None])
    assert k.tolist() == ["00170019-石01-1234-01", "00170019-石01-1234-", "39170013--50000001-"]


def test_same_person_in_xml_and_uke_without_a_table(folder):
    # no 個人ID対応表: the key itself; the June receipt (no SN) takes the only 枝番 of its card
    assert _xml_ids(folder) == ["00170019-石01-1234-01"]
    assert _uke_ids(folder) == ["00170019-石01-1234-01"]


def test_same_person_in_xml_and_uke_with_the_shared_table(folder):
    (folder / "person_ids.csv").write_text("保険者番号,記号,番号,枝番,person_id\n170019,石01,1234,01,P1\n"
                                           "170019,石01,5678,01,P2\n", encoding="utf-8")
    assert _xml_ids(folder) == ["P1"]
    # both receipts (with and without 枝番) are P1: 記号・番号 name one person in the table
    assert _uke_ids(folder) == ["P1"]


def test_household_without_edaban_is_not_guessed(folder):
    # two members share 記号・番号: the June receipt (no 枝番) is ambiguous and is listed, not guessed
    (folder / "person_ids.csv").write_text("保険者番号,記号,番号,枝番,person_id\n170019,石01,1234,01,P1\n"
                                           "170019,石01,1234,02,P9\n", encoding="utf-8")
    assert _xml_ids(folder) == ["P1"]
    c = claims_import.load_claims(folder, uke.find_uke_files(folder))
    assert set(c.tables["medical_costs"]["person_id"]) == {"P1"}
    assert c.counts["receipts_unlinked"] == 1
    assert c.exclusions["reason"].str.contains("個人ID対応表").any()


def test_same_salt_gives_the_same_pseudonym_in_both(folder):
    (folder / "person_id_salt.txt").write_text("秘密の文字列\n", encoding="utf-8")
    [pid] = _xml_ids(folder)
    assert pid.startswith("P") and len(pid) == 21
    assert pid in _uke_ids(folder)


def test_conflicting_table_is_a_clear_error(tmp_path):
    p = tmp_path / "person_ids.csv"
    p.write_text("保険者番号,記号,番号,枝番,person_id\n170019,石01,1234,01,P1\n00170019,石０１,1234,01,P2\n",
                 encoding="utf-8")
    with pytest.raises(DataError, match="別の person_id"):
        person_keys.read_person_ids(p)


def test_positions_of_person_ids_each_distinct_id_once():
    """`person_keys.positions`: the position of each id in the sorted persons, -1 for an id not there or
    missing; the same as looking every row up (Arrow strings, object arrays, no rows)."""
    persons = pd.Index(["H1", "H2", "H3"], dtype=object)
    ids = pd.Series(["H3", "H1", "H3", None, "H9", "H1"], dtype="str")
    got = person_keys.positions(persons, ids)
    assert got.tolist() == [2, 0, 2, -1, -1, 0] and got.dtype == np.int64
    assert got.tolist() == persons.get_indexer(ids.astype(object)).tolist()
    assert person_keys.positions(persons, np.array(["H2", "H2"], dtype=object)).tolist() == [1, 1]
    assert person_keys.positions(persons, np.array([], dtype=object)).tolist() == []

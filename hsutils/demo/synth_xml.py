"""The demo's 健診 as 特定健診 XML archives (電子的な標準様式; layout of TOKUTEI_XML §1.1–1.4).

`write_kenshin_archives(tables, out)` writes the demo kenshin and guidance tables (as
`hsutils.demo.synth.generate_demo` returns them) as zip archives, one per (保険者, fiscal year), each with
``ix08_V08.xml``, ``su08_V08.xml``, ``DATA/h*.xml`` (one CDA document per exam) and ``DATA/g*.xml``
(特定保健指導情報 hg08: one document per guidance that started, some persons with two — 21 開始 and
22 実績評価; 対象者 who never started have none and are read from the 健診's 保健指導レベル), plus the two helper tables a
user would keep next to real archives: ``person_ids.csv`` (個人ID対応表: 保険者番号・記号・番号・枝番 →
person_id, shared with the UKE demo: `insurance_card`) and ``insurer_munis.csv`` (国保 保険者番号 → 市町村コード). 後期 persons (one 広域連合
保険者番号) get their municipality from the enrollment table, so both linkage paths are used.

Variety, so that the import path is exercised (all of it reads back to the same values):
both 空腹時/随時 TG and 血糖 codes with several 検査方法 codes; 1 or 2 blood-pressure readings
(1回目 only; 1回目+2回目 with その他 = mean; 1回目+2回目 without その他); creatinine + eGFR as a
一連検査グループ (entryRelationship) where measured and absent elsewhere; 採血時間 codes 2/3/4;
服薬 あり written as self-report なし + 保険者再確認 1 for some persons; 喫煙 なし as 2 or 3
(第4期); 全角 記号. Names and addresses are not written (the demo has none).

Documents are built column-wise with numpy string arrays (one fragment per item for all exams at
once); only the zip writing loops over documents. The numbers are the exact texts of the demo
CSV (`DataFrame.to_csv` formatting), so the XML and CSV demos load to identical tables.
"""
from __future__ import annotations

import io as _stdio
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from hsutils.core import schema

ORG = "1790000001"  # 架空の健診機関番号 (10桁)
KOUKI_INSURER = "39179990"  # 架空の後期高齢者医療広域連合 保険者番号 (8桁)
_OBS = ('      <entry><observation classCode="OBS" moodCode="EVN"><code code="{code}" '
        'codeSystem="1.2.392.200119.6.1005"/>')
_END = '</observation></entry>\n'


def kokuho_insurer(muni_code) -> np.ndarray:
    """架空の国保 保険者番号 (8桁, 先頭 00) per municipality: 0017 + 市町村コード3–5桁目 + 0."""
    m = pd.Series(np.asarray(muni_code, dtype=object), dtype="str")
    return ("0017" + m.str.slice(2, 5) + "0").to_numpy(dtype=object)


def insurance_card(person_id, muni_code, kouki) -> pd.DataFrame:
    """The demo's 被保険者証 (保険者番号, 記号, 番号, 枝番) of each row, one rule for the XML and UKE
    writers, so that a person's exams and receipts carry the same card (docs/formats/person_key.md):
    国保 = the municipality's 保険者番号, 記号 17, 番号 = the person's number (8 digits), 枝番 01;
    後期 = the 広域連合, no 記号, 番号 50,000,000 + the person's number, no 枝番."""
    kouki = np.asarray(kouki, dtype=bool)
    num = pd.Series(np.asarray(person_id, dtype=object)).str.slice(1).astype(np.int64).to_numpy()
    return pd.DataFrame({
        "保険者番号": np.where(kouki, KOUKI_INSURER, kokuho_insurer(muni_code)),
        "記号": np.where(kouki, "", "17"),
        "番号": np.char.zfill((num + np.where(kouki, 50_000_000, 0)).astype(str), 8),
        "枝番": np.where(kouki, "", "01")})


def write_person_ids(tables: dict[str, pd.DataFrame], out: Path) -> int:
    """個人ID対応表 ``person_ids.csv`` for every demo person: the 国保 card of each municipality the
    person is enrolled in and the 後期 card (both readers use it: `hsutils.inputs.person_keys`)."""
    enr = tables["enrollment"][["person_id", "muni_code"]].drop_duplicates()
    people = enr.drop_duplicates("person_id")
    parts = [insurance_card(enr["person_id"], enr["muni_code"], np.zeros(len(enr), bool))
             .assign(person_id=enr["person_id"].to_numpy()),
             insurance_card(people["person_id"], people["muni_code"], np.ones(len(people), bool))
             .assign(person_id=people["person_id"].to_numpy())]
    ids = pd.concat(parts, ignore_index=True).drop_duplicates().sort_values(["person_id", "保険者番号"])
    ids.to_csv(Path(out) / "person_ids.csv", index=False, encoding="utf-8")
    return len(ids)


def _pq(code, values, unit) -> np.ndarray:
    """One PQ observation per exam where `values` (str, None = absent) is given."""
    v = np.asarray(values, dtype=object)
    have = pd.notna(v) & (v != "")
    out = np.full(len(v), "", dtype=object)
    head = _OBS.format(code=code)
    out[have] = head + '<value xsi:type="PQ" value="' + v[have].astype(str) + f'" unit="{unit}"/>' + _END
    return out


def _cd(code, values, system, xsi="CD") -> np.ndarray:
    v = np.asarray(values, dtype=object)
    have = pd.notna(v) & (v != "")
    out = np.full(len(v), "", dtype=object)
    head = _OBS.format(code=code)
    out[have] = (head + f'<value xsi:type="{xsi}" code="' + v[have].astype(str)
                 + f'" codeSystem="1.2.392.200119.6.{system}"/>' + _END)
    return out


def _choose(codes: tuple[str, ...], pick: np.ndarray, values, unit) -> np.ndarray:
    """PQ under one of several method codes (pick = index into codes)."""
    out = np.full(len(pick), "", dtype=object)
    for i, c in enumerate(codes):
        sel = pick == i
        out[sel] = _pq(c, np.asarray(values, dtype=object)[sel], unit)
    return out


def _csv_text(df: pd.DataFrame) -> pd.DataFrame:
    """Cells exactly as the demo CSV writes them (so both demos read back identically)."""
    buf = _stdio.StringIO()
    df.to_csv(buf, index=False)
    buf.seek(0)
    return pd.read_csv(buf, dtype=str, keep_default_na=False).replace("", None)


def build_documents(ken: pd.DataFrame, enrollment: pd.DataFrame, seed: int = 2024
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per exam: insurer, fy, file name, XML text; 個人ID対応表 rows)."""
    rng = np.random.default_rng(seed + 15)
    t = _csv_text(ken)
    n = len(t)
    fy = t["fy"].astype(int).to_numpy()
    age = t["age"].astype(int).to_numpy()
    pid_num = t["person_id"].str.slice(1).astype(int).to_numpy()
    ins_type = enrollment.set_index(["person_id", "fy"])["insurance"]
    kouki = ins_type.reindex(pd.MultiIndex.from_arrays([ken["person_id"], ken["fy"]])).eq("後期").to_numpy()
    card = insurance_card(t["person_id"], t["muni_code"].to_numpy(), kouki)
    insurer, bango, eda = (card[c].to_numpy().astype(str) for c in ("保険者番号", "番号", "枝番"))
    kigo = np.where(kouki, "", "１７")  # 全角: the reader normalises (NFKC)
    # birth date consistent with the fiscal-year-end age (docs/rules.md §1.4: born 4月1日 counts older)
    month = 1 + pid_num % 12
    day = 1 + (pid_num * 7) % 28
    later = (month > 4) | ((month == 4) & (day > 1))
    by = fy + 1 - age - later
    birth = np.char.add(np.char.add(by.astype(str), np.char.zfill(month.astype(str), 2)),
                        np.char.zfill(day.astype(str), 2))
    exam = t["exam_date"].str.replace("-", "", regex=False).to_numpy()

    id_frag = ('      <id root="1.2.392.200119.6.101" extension="' + insurer.astype(object) + '"/>\n'
               + np.where(kigo != "", '      <id root="1.2.392.200119.6.204" extension="'
                          + kigo.astype(object) + '"/>\n', "").astype(object)
               + '      <id root="1.2.392.200119.6.205" extension="' + bango.astype(object) + '"/>\n'
               + np.where(eda != "", '      <id root="1.2.392.200119.6.211" extension="'
                          + eda.astype(object) + '"/>\n', "").astype(object))
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            '  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
            '  <code code="10" codeSystem="1.2.392.200119.6.1001"/>\n'
            '  <effectiveTime value="' + exam.astype(object) + '"/>\n'
            '  <recordTarget>\n    <patientRole>\n' + id_frag
            + '      <patient>\n        <administrativeGenderCode code="' + t["sex"].to_numpy(dtype=object)
            + '" codeSystem="1.2.392.200119.6.1104"/>\n        <birthTime value="' + birth.astype(object)
            + '"/>\n      </patient>\n    </patientRole>\n  </recordTarget>\n'
            '  <documentationOf>\n    <serviceEvent classCode="PCPR">\n'
            '      <code code="' + np.where(kouki, "020", "010").astype(object)
            + '" codeSystem="1.2.392.200119.6.1002"/>\n      <effectiveTime value="' + exam.astype(object)
            + '"/>\n      <performer typeCode="PRF"><assignedEntity><representedOrganization>'
            f'<id root="1.2.392.200119.6.102" extension="{ORG}"/></representedOrganization>'
            '</assignedEntity></performer>\n    </serviceEvent>\n  </documentationOf>\n'
            '  <component><structuredBody>\n')
    body = head + '    <component><section>\n      <code code="01010" codeSystem="1.2.392.200119.6.1010"/>\n'
    body = body + _pq("9N001000000000001", t["height"], "cm") + _pq("9N006000000000001", t["weight"], "kg")
    body = body + _pq("9N011000000000001", t["bmi"], "kg/m2") + _pq("9N016160100000001", t["waist"], "cm")
    # blood pressure: 0 = 1回目 only, 1 = 1回目+2回目+その他(mean), 2 = 1回目+2回目 (mean by the reader)
    bp_mode = rng.integers(0, 3, n)
    for col, c1, c2, co in (("sbp", "9A751", "9A752", "9A755"), ("dbp", "9A761", "9A762", "9A765")):
        v = t[col].to_numpy(dtype=object)
        have = pd.notna(v)
        d = rng.integers(0, 4, n)
        num = np.where(have, pd.to_numeric(t[col], errors="coerce").fillna(0).to_numpy(), 0).astype(int)
        r1 = np.where(bp_mode == 0, v, (num + d).astype(str).astype(object))
        r2 = np.where(bp_mode == 0, None, (num - d).astype(str).astype(object))
        r1 = np.where(have, r1, None)
        r2 = np.where(have, r2, None)
        other = np.where(have & (bp_mode == 1), v, None)
        body = body + _pq(c1 + "000000000001", r1, "mm[Hg]") + _pq(c2 + "000000000001", r2, "mm[Hg]")
        body = body + _pq(co + "000000000001", other, "mm[Hg]")
    # 採血時間: 2 = 空腹時 (10時間以上), 3 / 4 = 随時
    fasting = t["tg_fasting"].eq("1").to_numpy()
    blood = np.where(fasting, "2", np.where(rng.random(n) < 0.7, "3", "4"))
    body = body + _cd("9N141000000000011", blood, 2202)
    method = rng.integers(0, 3, n)
    tg = t["tg"].to_numpy(dtype=object)
    body = body + _choose(("3F015000002327101", "3F015000002327201", "3F015000002399901"), method,
                          np.where(fasting, tg, None), "mg/dL")
    body = body + _choose(("3F015129902327101", "3F015129902327201", "3F015129902399901"), method,
                          np.where(fasting, None, tg), "mg/dL")
    body = body + _choose(("3F070000002327101", "3F070000002327201", "3F070000002399901"), method,
                          t["hdl"], "mg/dL")
    body = body + _choose(("3F077000002327101", "3F077000002327201", "3F077000002399901"), method,
                          t["ldl"], "mg/dL")
    body = body + _pq("3F069000002391901", t["non_hdl"], "mg/dL")
    body = body + _choose(("3B035000002327201", "3B035000002399901"), method % 2, t["ast"], "U/L")
    body = body + _choose(("3B045000002327201", "3B045000002399901"), method % 2, t["alt"], "U/L")
    body = body + _choose(("3B090000002327101", "3B090000002399901"), method % 2, t["ggt"], "U/L")
    gmethod = rng.integers(0, 4, n)
    body = body + _choose(("3D010000001926101", "3D010000002227101", "3D010000001927201",
                           "3D010000001999901"), gmethod, t["fpg"], "mg/dL")
    body = body + _choose(("3D010129901926101", "3D010129902227101", "3D010129901927201",
                           "3D010129901999901"), gmethod, t["casual_glucose"], "mg/dL")
    body = body + _choose(("3D046000001906202", "3D046000001920402", "3D046000001927102",
                           "3D046000001999902"), gmethod, t["hba1c"], "%")
    urine = {"-": "1", "±": "2", "+": "3", "2+": "4", "3+": "5"}
    body = body + _cd("1A020000000191111", t["urine_glucose"].map(urine), 2102, "CO")
    body = body + _cd("1A010000000191111", t["urine_protein"].map(urine), 2102, "CO")
    # creatinine + eGFR: one 一連検査グループ (entryRelationship) where measured
    cr, eg = t["creatinine"].to_numpy(dtype=object), t["egfr"].to_numpy(dtype=object)
    grp = pd.notna(cr) | pd.notna(eg)
    inner = (np.char.replace(_pq("3C015000002327101", cr, "mg/dL").astype(str), "<entry>", "<entryRelationship typeCode=\"COMP\">").astype(object)
             + np.char.replace(_pq("8A065000002391901", eg, "ml/min/1.73m2").astype(str), "<entry>", "<entryRelationship typeCode=\"COMP\">").astype(object))
    inner = np.char.replace(inner.astype(str), "</observation></entry>", "</observation></entryRelationship>").astype(object)
    group = np.where(grp, '      <entry><observation classCode="OBS" moodCode="EVN"><code nullFlavor="NA"/>\n'
                     + inner + "      </observation></entry>\n", "").astype(object)
    body = body + group + _pq("2A030000001930101", t["hemoglobin"], "g/dL")
    # 服薬: あり is sometimes self-report なし + 保険者再確認 1 (質問票の記載違いを確認)
    for col, self_code, re_code in (("med_bp", "9N701000000000011", "9N702167200000049"),
                                    ("med_glucose", "9N706000000000011", "9N707167200000049"),
                                    ("med_lipid", "9N711000000000011", "9N712167200000049")):
        v = t[col].to_numpy(dtype=object)
        recheck = (v == "1") & (rng.random(n) < 0.05)
        body = body + _cd(self_code, np.where(recheck, "2", v), 2003)
        body = body + _cd(re_code, np.where(recheck, "1", None), 24020)
    smk = t["smoking"].to_numpy(dtype=object)
    smk = np.where(smk == "2", np.where(rng.random(n) < 0.3, "2", "3"), smk)  # 第4期 2 / 3 = なし
    body = body + _cd("9N736000000000011", smk, 24060)
    body = body + _cd("9N501000000000011", t["metabo_reported"], 1008)
    body = body + _cd("9N506000000000011", t["guidance_level_reported"], 3001)
    body = body + "    </section></component>\n  </structuredBody></component>\n</ClinicalDocument>\n"
    docs = pd.DataFrame({"insurer": insurer, "fy": fy, "name": "", "xml": body,
                         "person_id": t["person_id"].to_numpy(), "exam": exam,
                         "header": head})
    docs["name"] = ("DATA/h" + ORG + pd.Series(exam) + "01_" + pd.Series(np.arange(1, n + 1)).astype(str).str.zfill(6)
                    + "_" + pd.Series(insurer) + ".xml").to_numpy()
    ids = card.assign(person_id=t["person_id"].to_numpy()).drop_duplicates()
    return docs, ids


# 特定保健指導情報 (hg08) documents: structure and codes of docs/formats/tokutei_xml.md §1.7
_G_OBS = ('        <entryRelationship typeCode="COMP"><observation classCode="OBS" moodCode="EVN">'
          '<code code="{code}" codeSystem="1.2.392.200119.6.1006"/>')
_G_END = '</observation></entryRelationship>\n'


def _days(dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    """YYYYMMDD texts `days` after the YYYYMMDD `dates`."""
    d = pd.to_datetime(pd.Series(dates), format="%Y%m%d") + pd.to_timedelta(days, unit="D")
    return d.dt.strftime("%Y%m%d").to_numpy(dtype=object)


def build_guidance_documents(guidance: pd.DataFrame, kenshin_docs: pd.DataFrame, seed: int = 2024) -> pd.DataFrame:
    """One 特定保健指導 document per guidance that started (one row per document: insurer, fy,
    file name, XML text). 対象者 who never started have no document, as in real archives: the reader
    takes them from the 健診's 保健指導レベル. Completed → 報告区分 22 実績評価 (with 最終評価日),
    some of them with an earlier 21 開始 document too; started, not completed → 23 途中終了."""
    rng = np.random.default_rng(seed + 16)
    g = _csv_text(guidance)
    g = g[g["started"].eq("1")].reset_index(drop=True)
    key = pd.MultiIndex.from_arrays([g["person_id"], g["fy"].astype(int)])
    k = kenshin_docs.set_index(["person_id", "fy"])
    head_of = k.reindex(key)
    if head_of["insurer"].isna().any():
        raise ValueError("保健指導の対象者に健診の文書がありません（デモの生成規則と矛盾）")
    n = len(g)
    exam = head_of["exam"].to_numpy(dtype=object)
    first = _days(exam, rng.integers(20, 60, n))
    final = _days(first.astype(str), rng.integers(95, 180, n))  # 実績評価: 3か月以上後 (第4期)
    level = np.where(g["level"].eq("積極的支援"), "1", "2").astype(object)
    completed = g["completed"].eq("1").to_numpy()
    with_start_doc = completed & (rng.random(n) < 0.3)
    parts = []
    for report, sel, has_final in (("22", completed, True), ("23", ~completed, False),
                                   ("21", with_start_doc, False)):
        idx = np.flatnonzero(sel)
        if not len(idx):
            continue
        h = head_of.iloc[idx]
        xml = h["header"].to_numpy(dtype=object).astype(str)
        xml = np.char.replace(xml, '<code code="10" codeSystem="1.2.392.200119.6.1001"/>',
                              f'<code code="{report}" codeSystem="1.2.392.200119.6.1001"/>').astype(object)
        xml = np.char.replace(xml.astype(str), '<code code="010" codeSystem="1.2.392.200119.6.1002"/>',
                              '<code code="100" codeSystem="1.2.392.200119.6.1002"/>').astype(object)
        body = ('    <component><section>\n      <code code="90010" codeSystem="1.2.392.200119.6.1010"/>\n'
                '      <entry><act classCode="ACT" moodCode="EVN">\n'
                + _G_OBS.format(code="1020000001") + '<value xsi:type="CD" code="' + level[idx]
                + '" codeSystem="1.2.392.200119.6.3001"/>' + _G_END
                + _G_OBS.format(code="1020000004") + '<value xsi:type="ST">' + exam[idx] + '</value>' + _G_END
                + '      </act></entry>\n    </section></component>\n'
                '    <component><section>\n      <code code="90030" codeSystem="1.2.392.200119.6.1010"/>\n'
                '      <entry><act classCode="ACT" moodCode="EVN"><effectiveTime value="' + first[idx]
                + '"/></act></entry>\n    </section></component>\n')
        if has_final:
            body = body + ('    <component><section>\n      <code code="90060" codeSystem="1.2.392.200119.6.1010"/>\n'
                           '      <entry><act classCode="ACT" moodCode="EVN"><effectiveTime value="' + final[idx]
                           + '"/></act></entry>\n    </section></component>\n')
        doc = xml + body + "  </structuredBody></component>\n</ClinicalDocument>\n"
        parts.append(pd.DataFrame({"insurer": h["insurer"].to_numpy(), "fy": g["fy"].astype(int).to_numpy()[idx],
                                   "report": report, "pos": idx, "xml": doc}))
    if not parts:
        return pd.DataFrame(columns=["insurer", "fy", "name", "xml"])
    docs = pd.concat(parts, ignore_index=True).sort_values(["pos", "report"], kind="stable")  # 21 before 22
    docs["name"] = ("DATA/g" + ORG + docs["fy"].astype(str) + docs["report"] + "_"
                    + pd.Series(np.arange(1, len(docs) + 1), index=docs.index).astype(str).str.zfill(6)
                    + "_" + docs["insurer"].astype(str) + ".xml")
    return docs[["insurer", "fy", "name", "xml"]].reset_index(drop=True)


def _index_xml(insurer: str, n: int, date: str) -> str:
    ns = "https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<index xmlns="{ns}">\n'
            f'  <interactionType code="1"/>\n  <creationTime value="{date}"/>\n'
            f'  <sender><id root="1.2.392.200119.6.102" extension="{ORG}"/></sender>\n'
            f'  <receiver><id root="1.2.392.200119.6.101" extension="{insurer}"/></receiver>\n'
            f'  <serviceEventType code="1"/>\n  <totalRecordCount value="{n}"/>\n</index>\n')


def _summary_xml(n: int) -> str:
    ns = "https://www.mhlw.go.jp/stf/seisakunitsuite/bunya/0000161103.html"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<summary xmlns="{ns}">\n'
            f'  <serviceEventType code="1"/>\n  <totalSubjectCount value="{n}"/>\n'
            '  <totalCostAmount value="0"/>\n  <totalPaymentAmount value="0"/>\n'
            '  <totalPaymentByOtherProgram value="0"/>\n  <totalClaimAmount value="0"/>\n</summary>\n')


def remove_archives(out: Path) -> None:
    """Remove what `write_kenshin_archives` wrote into `out` (nothing else)."""
    out = Path(out)
    folder = out / "kenshin_xml"
    if folder.is_dir():
        for z in folder.glob(f"{ORG}_*.zip"):
            z.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
    for name in ("person_ids.csv", "insurer_munis.csv"):
        (out / name).unlink(missing_ok=True)


def _add_member(z: zipfile.ZipFile, name: str, text: str, fy: int) -> None:
    """One archive member stamped with the archive's own date (30 June after the fiscal year), not
    the time of writing, so the same seed gives byte-identical archives."""
    info = zipfile.ZipInfo(name, date_time=(fy + 1, 6, 30, 0, 0, 0))
    info.external_attr = 0o600 << 16  # what writestr gives a member named by a string
    z.writestr(info, text, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)


def write_kenshin_archives(tables: dict[str, pd.DataFrame], out: Path, seed: int = 2024) -> list[str]:
    """Write the demo kenshin as archives under ``out/kenshin_xml/`` plus the helper tables in
    ``out``; returns Japanese summary lines."""
    out = Path(out)
    docs, ids = build_documents(tables["kenshin"], tables["enrollment"], seed=seed)
    gdocs = build_guidance_documents(tables["guidance"], docs, seed=seed) if "guidance" in tables else \
        pd.DataFrame(columns=["insurer", "fy", "name", "xml"])
    n_ken = len(docs)
    docs = pd.concat([docs[["insurer", "fy", "name", "xml"]], gdocs], ignore_index=True)
    folder = out / "kenshin_xml"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.zip"):
        old.unlink()
    n_arch = 0
    for (insurer, fy), g in docs.groupby(["insurer", "fy"], sort=True):  # one archive per insurer × year
        date = f"{fy + 1}0630"
        stem = f"{ORG}_{insurer}_{date}1_1"
        tmp = folder / f"{stem}.zip.tmp"
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            _add_member(z, f"{stem}/ix08_V08.xml", _index_xml(insurer, len(g), date), fy)
            _add_member(z, f"{stem}/su08_V08.xml", _summary_xml(len(g)), fy)
            for name, xml in zip(g["name"], g["xml"]):  # file writing: one member per exam
                _add_member(z, f"{stem}/{name}", xml, fy)
        tmp.replace(folder / f"{stem}.zip")
        n_arch += 1
    n_ids = write_person_ids(tables, out)
    kokuho = ids[ids["保険者番号"] != KOUKI_INSURER]
    munis = pd.DataFrame({"保険者番号": kokuho["保険者番号"].to_numpy(),
                          "市町村コード": tables["kenshin"].drop_duplicates("person_id")
                          .set_index("person_id")["muni_code"].reindex(kokuho["person_id"]).to_numpy()})
    munis.drop_duplicates("保険者番号").sort_values("保険者番号").to_csv(
        out / "insurer_munis.csv", index=False, encoding="utf-8")
    return [f"  {schema.TABLES['kenshin'].ja}（kenshin_xml/ 特定健診XMLアーカイブ {n_arch} 件）: {n_ken:,} 文書",
            f"  {schema.TABLES['guidance'].ja}（同じアーカイブの DATA/g*.xml）: {len(gdocs):,} 文書"
            "（初回面接のない対象者は健診の保健指導レベルから）",
            f"  個人ID対応表（person_ids.csv）: {n_ids:,} 行、保険者市町村対応表（insurer_munis.csv）"]

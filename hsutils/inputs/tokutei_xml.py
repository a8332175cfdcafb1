"""特定健診 XML archives (電子的な標準様式, HL7 CDA R2) → the canonical `kenshin` table.

What users hold: zip archives ``{提出元}_{提出先}_{YYYYMMDD}{n}_{実施区分}.zip`` whose root folder has
``ix08_V08.xml`` (交換用基本情報), ``su08_V08.xml`` (集計情報), ``DATA/h*.xml`` (one 特定健診情報ファイル
per person and exam), ``CLAIMS/`` and ``XSD/`` (TOKUTEI_XML §1.1). This module reads a folder (or a
list) of such archives and/or extracted archive folders:

* Documents are found by **content**, never by file name: every ``*.xml`` outside ``XSD/`` whose
  root element is a CDA ``ClinicalDocument`` with 報告区分 (``code/@code``, OID .6.1001) ``10``
  is a 特定健診 document; ix08/su08/決済 files and other 報告区分 are counted as "other files".
* Header (TOKUTEI_XML §1.2): 保険者番号 (id root .6.101), 記号 (.204), 番号 (.205), 枝番 (.211),
  性別, 生年月日, 受診日 (``documentationOf/serviceEvent/effectiveTime``), 実施機関 (.102).
  **Names and addresses (``patient/name``, ``addr``) are never read.**
* Body (TOKUTEI_XML §1.3): every ``observation`` at any depth that has an item code, including
  一連検査グループ members under ``entryRelationship``; values by ``xsi:type`` (PQ number+unit,
  CD/CO code, ST text), ``interpretationCode`` and ``methodCode``. These rows form the audit
  table (one row per observation).
* Item codes → canonical columns come from the data table ``data/tokutei_xml_items.csv``
  (第4期 2024 item list, TOKUTEI_XML §1.4, and the 第3期/JDS codes still found in old files).
  An item code not in that table is counted and listed (`XmlImport.unknown_items`), never dropped
  silently.

Rules (each tested in tests/test_tokutei_xml.py):

* Blood pressure (TOKUTEI_XML §1.6): the ``その他`` code (9A755/9A765) is the reported value; when
  it is absent, the mean of 1回目/2回目 (or the one reading present).
* 中性脂肪: 空腹時 and 随時 codes both fill ``tg``; ``tg_fasting`` comes from 採血時間 9N141 when
  present (2 = 10時間以上 → 空腹時, 3/4 → 随時), otherwise from the kind of TG code. 血糖: the code
  decides (空腹時血糖 → ``fpg``, 随時血糖 → ``casual_glucose``).
* Several codes for one measure (one per 検査方法): the first in the item table's order is used
  (e.g. 腹囲 実測 before 自己申告, LDL 直接法 before 計算法); all remain in the audit table.
* 服薬: self-report 1 あり / 2 なし; a 保険者再確認 code (9N702/9N707/9N712…49, values 1 or 2,
  both meaning 服薬中 confirmed) overrides the self-report with あり.
* 喫煙 9N736 (第4期): 1 はい → あり; 2 以前は吸っていた and 3 いいえ → なし (current smoking only).
* HbA1c JDS (3D045…, before FY2013) is never mixed with NGSP: it is listed as an excluded value.
* Person key: one rule with the UKE reader, `hsutils.inputs.person_keys` (docs/formats/person_key.md §1):
  保険者番号(8桁)-記号-番号-枝番 after NFKC; a 個人ID対応表 (``person_ids.csv``) or a salt file
  (``person_id_salt.txt``) replace it by the user's person_id or a salted pseudonym.
* Fiscal year from the 受診日 (April start); age reached in the fiscal year from the birth date
  (docs/rules.md §1.4: born 4月1日 counts as a year older); the birth date itself is then dropped.
* Municipality: from the 保険者番号 via a user table ``insurer_munis.csv`` (保険者番号, 市町村コード),
  else from the enrollment table (same person and fiscal year, else the person's latest year).
* Duplicate (person, fy) exams: the earliest 受診日 counts (same day: the document that comes
  first in archive/path order); the others are listed as 重複 by `hsutils.inputs.io`'s rule.

Validation and accounting: a document that is not well-formed XML, lacks a header field, has an
unparsable date or cannot be linked is excluded as a whole (scope ``行``); an unparsable or
implausible value (schema ranges, docs/rules.md §3.2), a wrong unit or an undefined answer code sets only
that value to missing (scope ``項目``). The exclusions use `hsutils.inputs.io`'s format with ``file`` =
``archive/document path`` and ``row`` = the document's number in the import. documents read =
kept + excluded is asserted. The wide table goes through `hsutils.inputs.io.read_text_frame`, so dtypes,
ranges and duplicate handling are exactly those of a CSV 健診 file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from lxml import etree

from hsutils.core import distinct, files
from hsutils.inputs import io as _io, person_keys
from hsutils.core.errors import DataError
from hsutils.core.schema import TABLES

NS = "urn:hl7-org:v3"
_H = "{%s}" % NS
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_T_OBS = _H + "observation"
_T_CODE, _T_VALUE = _H + "code", _H + "value"
_T_INTERP, _T_METHOD = _H + "interpretationCode", _H + "methodCode"
_NSMAP = {"h": NS}

# OIDs of the header identifiers (TOKUTEI_XML §1.2).
OID_INSURER = "1.2.392.200119.6.101"
OID_ORG = "1.2.392.200119.6.102"
OID_KIGO = "1.2.392.200119.6.204"
OID_BANGO = "1.2.392.200119.6.205"
OID_EDABAN = "1.2.392.200119.6.211"
REPORT_KENSHIN = "10"  # 報告区分 10 特定健診情報 (OID .6.1001)
# 報告区分 of 特定保健指導情報 (hg08): 21 開始, 22 実績評価, 23 途中終了, 24 その他, 25 初回未完了
# (TOKUTEI_XML §1.2; docs/formats/tokutei_xml.md §1.7).
REPORT_GUIDANCE = frozenset({"21", "22", "23", "24", "25"})
REPORT_GUIDANCE_FINAL = "22"        # 実績評価: the guidance was completed (終了者)
REPORT_GUIDANCE_NOT_STARTED = "25"  # 初回未完了: 初回面接 not completed, not counted as started
SECTION_FIRST = "90030"  # 指導初回情報セクション: act/effectiveTime = 初回面接日
SECTION_FINAL = "90060"  # 最終評価情報セクション: act/effectiveTime = 最終評価（実績評価）日
_T_SECTION, _T_ACT, _T_TIME = _H + "section", _H + "act", _H + "effectiveTime"

ITEM_TABLE = "tokutei_xml_items.csv"
GUIDANCE_ITEM_TABLE = "tokutei_xml_guidance_items.csv"
READER_VERSION = "2"
LABEL = "特定健診XML"

# Optional helper files in the data folder (README 自分のデータを使う).
PERSON_ID_FILES, SALT_FILES = person_keys.PERSON_ID_FILES, person_keys.SALT_FILES
INSURER_MUNI_FILES = ("insurer_munis.csv", "保険者市町村対応表.csv")
HELPER_FILES = PERSON_ID_FILES + SALT_FILES + INSURER_MUNI_FILES

# Audit (long) table: one row per observation.
OBS_COLUMNS = ("doc", "item_code", "display_name", "value_type", "value", "unit", "code_system",
               "interpretation", "method")
# Document table: one row per document found (no name, address or birth date).
_DOC_FIELDS = ("doc", "archive", "path", "kind", "error", "report_code", "insurer", "kigo", "bango",
               "edaban", "sex", "birth", "exam_date", "org", "first_date", "final_date", "xsd")
PARALLEL_MIN_DOCS = 4000  # below this, worker start-up costs more than it saves
CHUNK_DOCS = 8000  # the item mapping has a fixed cost per chunk; a chunk's memory is small
# the kept documents are validated (io) in slices of this many; one slice for most imports, as the
# validation has a fixed cost per slice (streaming only bounds the memory of large folders)
VALIDATE_DOCS = 24_000


# ---------------------------------------------------------------------------------------------
# Item table (data/tokutei_xml_items.csv)
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _item_table() -> pd.DataFrame:
    with resources.files("hsutils").joinpath("data", ITEM_TABLE).open("rb") as fh:
        t = pd.read_csv(fh, dtype=str, keep_default_na=False, encoding="utf-8")
    t["priority"] = np.arange(len(t))
    return t


def item_table() -> pd.DataFrame:
    """The item-code table shipped in the package, with `priority` = row order."""
    return _item_table().copy()


@functools.lru_cache(maxsize=1)
def _guidance_item_table() -> pd.DataFrame:
    with resources.files("hsutils").joinpath("data", GUIDANCE_ITEM_TABLE).open("rb") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False, encoding="utf-8")


def guidance_item_table() -> pd.DataFrame:
    """The 特定保健指導 (hg08) item-code table shipped in the package, with how each code was
    verified (docs/formats/tokutei_xml.md §1.7)."""
    return _guidance_item_table().copy()


def _value_maps(items: pd.DataFrame) -> dict[str, dict[str, str]]:
    """item code → {XML answer code → canonical code text} for coded items."""
    out = {}
    for code, vm in zip(items["item_code"], items["value_map"]):
        if vm:
            out[code] = dict(pair.split(":", 1) for pair in vm.split(";"))
    return out


# ---------------------------------------------------------------------------------------------
# Finding documents
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One archive (.zip) or extracted folder, with the XML members to read."""

    path: Path
    is_zip: bool
    members: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.path.name


def _wanted(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.lower().endswith(".xml") and not any(p.upper() == "XSD" for p in parts[:-1])


def find_sources(paths) -> list[Source]:
    """Archives and extracted folders under `paths` (a folder, a zip file, or a list of them).

    In a folder, at any depth: every ``.zip`` is one source; a sub-folder that looks like an
    extracted archive (it has a ``DATA`` folder or an ``ix08`` index) is one source with all its
    XML files; XML files lying loose in a folder form one source. Sorted, so the import is
    reproducible. ``XSD/`` folders are skipped.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Source] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix.lower() == ".zip":
            out.append(_zip_source(p))
        elif p.is_dir():
            _scan(p, out)
    return out


def _looks_extracted(d: Path) -> bool:
    return any((c.is_dir() and c.name.upper() == "DATA")
               or (c.is_file() and c.name.lower().startswith("ix08") and c.suffix.lower() == ".xml")
               for c in d.iterdir())


def _scan(d: Path, out: list[Source]) -> None:
    entries = sorted(q for q in d.iterdir() if not q.name.startswith((".", "~$")))
    out.extend(_zip_source(z) for z in entries if z.is_file() and z.suffix.lower() == ".zip")
    loose = tuple(f.name for f in entries if f.is_file() and _wanted(f.name))
    if loose:
        out.append(Source(d, False, loose))
    for sub in (q for q in entries if q.is_dir() and q.name.upper() != "XSD"):
        if _looks_extracted(sub):
            members = tuple(sorted(str(f.relative_to(sub)) for f in sub.rglob("*.xml")
                                   if f.is_file() and _wanted(str(f.relative_to(sub)))))
            if members:
                out.append(Source(sub, False, members))
        else:
            _scan(sub, out)


def _zip_source(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as z:
            names = tuple(sorted(n for n in z.namelist() if _wanted(n)))
            _zip_infos(path, z)
    except zipfile.BadZipFile:
        raise DataError(f"{path.name}: zip アーカイブとして読めません（壊れているか zip ではありません）")
    return Source(path, True, names)


def has_xml_sources(folder) -> bool:
    """True when `folder` holds at least one archive or XML file (at any depth)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    return any(f.suffix.lower() == ".zip" or _wanted(str(f.relative_to(folder)))
               for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in (".zip", ".xml"))


# ---------------------------------------------------------------------------------------------
# Parsing (runs in worker processes for large imports)
# ---------------------------------------------------------------------------------------------

def _attr(el, name):
    return None if el is None else el.get(name)


def _first(el, *tags):
    """The first element at the child path `tags` below `el` in document order (what
    ``el.find("a/b/c")`` returns, without ElementPath's per-call Python work), or None."""
    if el is None:
        return None
    if not tags:
        return el
    for c in el.iterchildren(tags[0]):
        found = _first(c, *tags[1:])
        if found is not None:
            return found
    return None


def _time_value(el):
    """effectiveTime/@value, or its <low value=…> when given as an interval."""
    if el is None:
        return None
    v = el.get("value")
    if v is None:
        v = _attr(_first(el, _T_LOW), "value")
    return v


# No DTD/entity resolution and no network access: the files come from outside (XXE-safe).
# Whitespace-only text between elements, comments and processing instructions are not kept: none of them
# carries a value (a value's text is stripped anyway) and dropping them makes the tree ~40 % cheaper.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, collect_ids=False,
                          remove_blank_text=True, remove_comments=True, remove_pis=True)
_T_LOW, _T_ID, _T_PATIENT = _H + "low", _H + "id", _H + "patient"
_T_RECORD_TARGET, _T_PATIENT_ROLE = _H + "recordTarget", _H + "patientRole"
_T_DOC_OF, _T_SERVICE_EVENT = _H + "documentationOf", _H + "serviceEvent"
_ORG_ID = (_H + "performer", _H + "assignedEntity", _H + "representedOrganization", _H + "id")
_T_GENDER, _T_BIRTH = _H + "administrativeGenderCode", _H + "birthTime"
_CODED_TYPES = frozenset({"CD", "CO", "CE", "CV"})


def _act_time(section) -> str | None:
    """effectiveTime of the first ``act`` of a 保健指導 section (初回面接日 / 最終評価日)."""
    for act in section.iter(_T_ACT):
        v = _time_value(_first(act, _T_TIME))
        if v:
            return v
    return None


_N_HEAD = len(_DOC_FIELDS) - 1  # a parsed row: every document field but ``xsd``


def _other_head(doc: int, archive: str, name: str, report=None) -> tuple:
    """The document-table row of a file that is not a 健診/保健指導 document."""
    return (doc, archive, name, "other", None, report) + (None,) * (_N_HEAD - 6)


def _parse_document(data: bytes, doc: int, archive: str, name: str, obs: list, gobs: list,
                    heads: list):
    """Parse one document on its own and read it (`_read_document`); a document that is not
    well-formed is listed with libxml2's message and line, and has no readable 報告区分: it counts
    as 保健指導 when its file name starts with ``g`` (the standard's DATA/g*.xml), else as 健診."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as e:
        kind = "guidance" if name.rsplit("/", 1)[-1][:1].lower() == "g" else "kenshin"
        heads.append((doc, archive, name, kind, f"XML として読めません（整形式でない, 行 {e.lineno}: {e.msg}）")
                     + (None,) * (_N_HEAD - 5))
        return None
    return _read_document(root, doc, archive, name, obs, gobs, heads)


def _read_document(root, doc: int, archive: str, name: str, obs: list, gobs: list, heads: list):
    """Append one parsed document's row (`_DOC_FIELDS` without ``xsd``) to `heads` and its
    observations to the flat lists `obs` (健診) or `gobs` (保健指導), the OBS_COLUMNS values of one
    observation after the other (`_obs_columns` makes the columns); returns `root` for a 健診 /
    保健指導 document, else None.

    This runs once per document: the header is read by walking children (no ElementPath) and
    each observation's children in one loop; everything else is vectorised per chunk."""
    if root.tag != _H + "ClinicalDocument":
        heads.append(_other_head(doc, archive, name))
        return None
    report = _attr(_first(root, _T_CODE), "code")
    if report != REPORT_KENSHIN and report not in REPORT_GUIDANCE:
        heads.append(_other_head(doc, archive, name, report))
        return None
    kind = "kenshin" if report == REPORT_KENSHIN else "guidance"
    insurer = kigo = bango = edaban = sex = birth = exam = org = first = final = None
    pr = se = None
    for c in root:  # the document's children, once: 被保険者 (recordTarget) and 健診 (documentationOf)
        t = c.tag
        if t == _T_RECORD_TARGET:
            if pr is None:
                for pr in c.iterchildren(_T_PATIENT_ROLE):
                    break
        elif t == _T_DOC_OF:
            if se is None:
                for se in c.iterchildren(_T_SERVICE_EVENT):
                    break
    if pr is not None:
        ids = {i.get("root"): i.get("extension") for i in pr.iterchildren(_T_ID)}
        insurer, kigo = ids.get(OID_INSURER), ids.get(OID_KIGO)
        bango, edaban = ids.get(OID_BANGO), ids.get(OID_EDABAN)
        for patient in pr.iterchildren(_T_PATIENT):  # the first; only gender and birth time are read
            for g in patient.iterchildren(_T_GENDER):
                sex = g.get("code")
                break
            for b in patient.iterchildren(_T_BIRTH):
                birth = b.get("value")
                break
            break
    if se is not None:
        for et in se.iterchildren(_T_TIME):
            exam = _time_value(et)
            break
        org = _attr(_first(se, *_ORG_ID), "extension")
    if kind == "guidance":  # 初回面接日 and 最終評価日 are act times of their sections
        for sec in root.iter(_T_SECTION):
            sc = _attr(_first(sec, _T_CODE), "code")
            if sc == SECTION_FIRST and first is None:
                first = _act_time(sec)
            elif sc == SECTION_FINAL and final is None:
                final = _act_time(sec)
    heads.append((doc, archive, name, kind, None, report, insurer, kigo, bango, edaban, sex, birth,
                  exam, org, first, final))
    add = obs.extend if kind == "kenshin" else gobs.extend  # flat lists: one transpose by slicing
    coded = _CODED_TYPES
    for o in root.iter(_T_OBS):
        code = v = interp = method = None
        for c in o:  # direct children; faster than four find() calls
            t = c.tag
            if t == _T_CODE:
                code = c
            elif t == _T_VALUE:
                v = c
            elif t == _T_INTERP:
                interp = c
            elif t == _T_METHOD:
                method = c
        if code is None:
            continue
        item = code.get("code")
        if item is None:  # a 一連検査グループ container (code nullFlavor="NA")
            continue
        if v is None:
            vtype = val = unit = system = None
        else:
            vtype = v.get(_XSI_TYPE)
            if vtype is not None and ":" in vtype:
                vtype = vtype.split(":", 1)[1]
            if vtype == "PQ":
                val, unit, system = v.get("value"), v.get("unit"), None
            elif vtype in coded:
                val, unit, system = v.get("code"), None, v.get("codeSystem")
            else:  # ST, TS and anything else: the text (or @value)
                val, unit, system = (v.text or "").strip() or v.get("value"), v.get("unit"), None
        add((doc, item, code.get("displayName"), vtype, val, unit, system,
             None if interp is None else interp.get("code"),
             None if method is None else method.get("code")))
    return root


@dataclass
class _Parsed:
    """What the workers return: documents, the audit table and the mapped wide values."""

    docs: pd.DataFrame            # one row per XML file (_DOC_FIELDS)
    observations: pa.Table | None  # audit table (OBS_COLUMNS), dictionary-encoded text; None when not kept
    wide: pa.Table                # text cells per 健診 document: ``doc`` + the canonical columns (Arrow strings)
    value_excl: pd.DataFrame      # value-level problems (doc, item_code, column, value, reason)
    item_of: pd.DataFrame         # (doc, column) → item code used
    unknown: pd.DataFrame         # item_code, display_name, count (codes not in the item table)
    n_mapped: int = 0             # observations whose item code is in the item table
    guidance_observations: pa.Table | None = None  # audit table of the 保健指導 documents
    n_observations: int = 0       # 健診 observations read (also when the audit table is not kept)


_DICT_COLUMNS = ("item_code", "display_name", "value_type", "unit", "code_system",
                 "interpretation", "method")


def _obs_columns(flat: list) -> dict[str, list]:
    """The columns of the flat list of observation values (OBS_COLUMNS, one row after the
    other): each column is a strided slice, made in C."""
    n = len(OBS_COLUMNS)
    return {k: flat[i::n] for i, k in enumerate(OBS_COLUMNS)}


def _obs_table(cols: dict[str, list]) -> pa.Table:
    """The audit table (OBS_COLUMNS) from `_obs_columns`."""
    arrays = {}
    for k in OBS_COLUMNS:
        if k == "doc":
            arrays[k] = pa.array(cols[k], type=pa.int64())
        else:
            arr = pa.array(cols[k], type=pa.string())
            arrays[k] = arr.dictionary_encode() if k in _DICT_COLUMNS else arr  # few distinct values
    return pa.table(arrays)


_SCHEMAS: dict[tuple[Path, str], object] = {}  # per process: one compiled XSD per source and kind
XSD_KENSHIN, XSD_GUIDANCE = "hc08", "hg08"  # XSD/hc08*.xsd (特定健診), XSD/hg08*.xsd (特定保健指導)


def _source_schema(source: Source, prefix: str = XSD_KENSHIN):
    """The archive's own ``XSD/hc08*.xsd`` (or ``XSD/hg08*.xsd`` with `prefix`) compiled with
    lxml; a str (reason) when missing or unusable."""
    if (source.path, prefix) in _SCHEMAS:
        return _SCHEMAS[(source.path, prefix)]
    import re
    import tempfile

    pat = re.compile(rf"(^|/)XSD/{prefix}[^/]*\.xsd$", re.IGNORECASE)
    schema: object = f"XSDなし（アーカイブに XSD/{prefix}*.xsd がありません）"
    try:
        if source.is_zip:
            with zipfile.ZipFile(source.path) as z:
                names = [n for n in z.namelist() if pat.search(n)]
                if names:
                    xsd_dir = names[0].rsplit("/", 1)[0] + "/"
                    # the compiled schema holds everything it needs: the copies go when it is built
                    with tempfile.TemporaryDirectory(prefix="hs_xsd_") as folder:
                        tmp = Path(folder)
                        for n in z.namelist():  # the schema imports its coreschemas by relative path
                            if n.startswith(xsd_dir) and not n.endswith("/"):
                                (tmp / n).parent.mkdir(parents=True, exist_ok=True)
                                (tmp / n).write_bytes(z.read(n))
                        schema = etree.XMLSchema(etree.parse(str(tmp / names[0])))
        else:
            found = sorted(f for f in source.path.rglob("*.xsd")
                           if pat.search(f.relative_to(source.path).as_posix()))
            if found:
                schema = etree.XMLSchema(etree.parse(str(found[0])))
    except (etree.XMLSchemaParseError, etree.XMLSyntaxError) as e:
        schema = f"XSDを読めません（{e}）"
    _SCHEMAS[(source.path, prefix)] = schema
    return schema


def _validate(schema, root) -> str:
    if isinstance(schema, str):
        return schema
    if root is None:
        return "検証できません（XMLとして読めません）"
    if schema.validate(root):
        return "適合"
    err = schema.error_log.last_error
    return f"不適合（行 {err.line}: {err.message}）"


def _parse_members(source: Source, members: tuple[str, ...], first_doc: int, validate_xsd: bool,
                   heads: list, xsd: list, rows: list, grows: list) -> None:
    """Parse `members` of one source (document numbers from `first_doc`) into `heads` (document
    rows) / `rows` (健診 observations) / `grows` (保健指導 observations); with `validate_xsd`,
    check each 健診 document against the archive's own ``XSD/hc08*.xsd`` and each 保健指導
    document against its ``XSD/hg08*.xsd`` (result per document in `xsd`; a 保健指導 document
    is checked only when its archive carries an hg08 schema: docs/formats/tokutei_xml.md §1.11).

    Each document is parsed on its own: parsing them in batches as one tree was measured
    (callgrind) to cost as many instructions per document, and an error's line would not be the
    file's."""
    schema = _source_schema(source) if validate_xsd else None
    gschema = _source_schema(source, XSD_GUIDANCE) if validate_xsd else None
    if isinstance(gschema, str) and gschema.startswith("XSDなし"):
        gschema = None  # no hg08 schema in this archive: its 保健指導 documents are not checked
    archive = source.label
    if source.is_zip:
        reader = _ZipMembers(source.path)
        read = reader.read
    else:
        read = lambda name: (source.path / name).read_bytes()  # noqa: E731
    try:
        for i, name in enumerate(members):  # one XML document per iteration (file I/O + lxml)
            doc = first_doc + i
            data = read(name)
            if b"ClinicalDocument" not in data[:4096] and b"<?xml" in data[:64]:
                # well-formed start but no CDA root near the top: an index/summary/claims file
                heads.append(_other_head(doc, archive, name))
                xsd.append(None)
                continue
            root = _parse_document(data, doc, archive, name, rows, grows, heads)
            kind = heads[-1][3]
            check = schema if kind == "kenshin" else gschema if kind == "guidance" else None
            xsd.append(_validate(check, root) if check is not None else None)
    finally:
        if source.is_zip:
            reader.close()


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # zip local file header (30 bytes)
# Central directories read by `find_sources` or a parse (path → (size, mtime, {name: ZipInfo})), so
# that the parse does not read them again; a changed file is read anew. Only the last ZIP_INFO_CACHE
# archives are kept (per process): a ZipInfo costs ~450 bytes, so keeping every archive's would grow
# the import's memory with the number of documents (issue 17); chunks come in archive order, so each
# process reads an archive's directory about once.
ZIP_INFO_CACHE = 8
_ZIP_INFOS: dict[Path, tuple[int, int, dict]] = {}


def _zip_infos(path: Path, z: zipfile.ZipFile | None = None) -> dict:
    st = path.stat()
    got = _ZIP_INFOS.pop(path, None)
    if got is None or got[:2] != (st.st_size, st.st_mtime_ns):
        if z is None:
            with zipfile.ZipFile(path) as z2:
                infos = {i.filename: i for i in z2.infolist()}
        else:
            infos = {i.filename: i for i in z.infolist()}
        got = (st.st_size, st.st_mtime_ns, infos)
    _ZIP_INFOS[path] = got  # the most recently used last
    while len(_ZIP_INFOS) > ZIP_INFO_CACHE:
        del _ZIP_INFOS[next(iter(_ZIP_INFOS))]
    return got[2]


class _ZipMembers:
    """The members of one zip archive, read from the archive's bytes in memory (one read of the
    file): deflated or stored members are inflated with zlib directly (zipfile's per-member
    Python work costs more than inflating a document); any other case (encryption, other
    methods, a damaged header, a CRC mismatch) goes through `zipfile` so that its error reaches
    the user."""

    def __init__(self, path: Path):
        self.path = path
        self.infos = _zip_infos(path)
        self.buf = memoryview(path.read_bytes())
        self._zf: zipfile.ZipFile | None = None

    def _zipfile_read(self, name: str) -> bytes:
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.path)
        return self._zf.read(name)

    def read(self, name: str) -> bytes:
        info = self.infos.get(name)
        if info is None or info.flag_bits & 0x1 or \
                info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
            return self._zipfile_read(name)
        off = info.header_offset
        buf = self.buf
        if off + 30 > len(buf):
            return self._zipfile_read(name)
        h = _LOCAL_HEADER.unpack_from(buf, off)
        if h[0] != b"PK\x03\x04":
            return self._zipfile_read(name)
        start = off + 30 + h[9] + h[10]  # file name and extra field of the local header
        raw = buf[start:start + info.compress_size]
        try:
            data = bytes(raw) if info.compress_type == zipfile.ZIP_STORED else zlib.decompress(raw, -15)
        except zlib.error:
            return self._zipfile_read(name)
        if zlib.crc32(data) != info.CRC:
            return self._zipfile_read(name)
        return data

    def close(self) -> None:
        self.buf.release()
        if self._zf is not None:
            self._zf.close()


def _wide_table(frame: pd.DataFrame) -> pa.Table:
    """The wide text cells of one chunk (`_wide_values`) as a compact Arrow table: a chunk's
    Python strings are released when the chunk is done, so the import holds Arrow buffers only
    (streaming, issue 17)."""
    arrays = [pa.array(frame.index.to_numpy(dtype=np.int64), type=pa.int64())]
    arrays += [pa.array(frame[c].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
               for c in _VALUE_COLUMNS]
    return pa.Table.from_arrays(arrays, names=["doc", *_VALUE_COLUMNS])


def _parse_chunk(segments: tuple[tuple[Source, tuple[str, ...], int], ...],
                 validate_xsd: bool = False, keep_observations: bool = True) -> _Parsed:
    """Parse and map one chunk: `segments` of (source, members, first document number), which
    may span several small archives (the item mapping costs the same per chunk whatever its
    size, so an archive per municipality and year must not make a chunk of its own).

    One chunk is one batch of the streaming import: its observations (Python objects) live only
    while it is mapped; what it returns is compact (Arrow tables, the document rows). Without
    `keep_observations` the 健診 audit table is not returned (only its row count)."""
    heads: list[tuple] = []
    xsd: list = []
    rows: list[tuple] = []
    grows: list[tuple] = []
    for source, members, first_doc in segments:
        _parse_members(source, members, first_doc, validate_xsd, heads, xsd, rows, grows)
    cols = list(zip(*heads)) if heads else [()] * _N_HEAD  # transpose in C
    docs = pd.DataFrame({**{k: list(v) for k, v in zip(_DOC_FIELDS, cols)}, "xsd": xsd})
    n_members = sum(len(m) for _, m, _ in segments)
    assert len(docs) == n_members, "chunk accounting broken: every member is one document row"
    obs_cols = _obs_columns(rows)
    obs_t = _obs_table(obs_cols)
    it = _obs_items(obs_t)
    known = it >= 0
    # codes not in the item table are rare: counted with pandas on their rows only
    unk = obs_t.filter(pa.array(~known)).to_pandas() if len(it) else obs_t.to_pandas()
    unknown = (unk.groupby(unk["item_code"].astype(str))
               .agg(display_name=("display_name", "first"), count=("doc", "size"))
               .rename_axis("item_code").reset_index())
    ken_docs = pd.Index(docs.loc[docs["kind"].eq("kenshin") & docs["error"].isna(), "doc"])
    wide = _wide_values(obs_t, obs_cols["value"], it, ken_docs)
    return _Parsed(docs=docs, observations=obs_t if keep_observations else None,
                   wide=_wide_table(wide.frame), value_excl=wide.value_excl,
                   item_of=wide.item_of, unknown=unknown, n_mapped=int(known.sum()),
                   guidance_observations=_obs_table(_obs_columns(grows)), n_observations=obs_t.num_rows)


def _chunk_tasks(sources: list[Source]) -> tuple[list[tuple], int]:
    """The chunks of an import: tuples of (source, members, first document number) filling
    CHUNK_DOCS documents across sources, in document order (documents are numbered 1, 2, … over
    all members of all sources); and the number of documents."""
    tasks: list[tuple] = []
    chunk: list[tuple] = []
    size = 0
    doc = 1
    for s in sources:  # fill chunks of CHUNK_DOCS documents across sources, in document order
        i = 0
        while i < len(s.members):
            part = s.members[i:i + CHUNK_DOCS - size]
            chunk.append((s, part, doc))
            size += len(part)
            doc += len(part)
            i += len(part)
            if size >= CHUNK_DOCS:
                tasks.append(tuple(chunk))
                chunk, size = [], 0
    if chunk:
        tasks.append(tuple(chunk))
    return tasks, doc - 1


def iter_parsed(sources: list[Source], workers: int | None = None, validate_xsd: bool = False,
                keep_observations: bool = True):
    """The parsed chunks (`_parse_chunk`) of `sources`, yielded one at a time in document order,
    parsed in worker processes when the import is large (`workers` None = one per CPU core).

    Streaming (issue 17): at most 2 × workers chunks are submitted ahead of the one the caller
    holds, so the caller's memory depends on the chunk size, not on the folder (`read_archives`
    keeps only what it needs of each chunk). An import without any member yields one empty chunk."""
    tasks, n_docs = _chunk_tasks(sources)
    if not tasks:
        yield _parse_chunk((), validate_xsd, keep_observations)
        return
    workers = workers or os.cpu_count() or 1
    if not (workers > 1 and n_docs >= PARALLEL_MIN_DOCS and len(tasks) > 1):
        for t in tasks:
            yield _parse_chunk(t, validate_xsd, keep_observations)
        return
    import collections
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    n = min(workers, len(tasks))
    ex = ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    pending: collections.deque = collections.deque()
    todo = iter(tasks)
    try:
        for t in todo:
            pending.append(ex.submit(_parse_chunk, t, validate_xsd, keep_observations))
            if len(pending) >= 2 * n:
                break
        while pending:
            part = pending.popleft().result()
            t = next(todo, None)
            if t is not None:
                pending.append(ex.submit(_parse_chunk, t, validate_xsd, keep_observations))
            yield part
            del part
    finally:  # also when the caller stops early (an error): no more chunks are parsed
        ex.shutdown(wait=True, cancel_futures=True)


def _concat_obs(tables: list[pa.Table]) -> pa.Table:
    """The audit tables of the chunks as one table (dictionaries unified)."""
    return pa.concat_tables(tables).unify_dictionaries() if len(tables) > 1 else tables[0]


def _concat_docs(frames: list[pd.DataFrame], n_parts: int) -> pd.DataFrame:
    """The document rows of the chunks (`frames`: one per chunk, in order) as one frame. A column
    that is empty in one chunk (e.g. 初回面接日 where no 保健指導 document was) is object there:
    inferred again, so that the dtypes do not depend on how the import was chunked."""
    if n_parts == 1:
        return frames[0]
    kept = [d for d in frames if len(d)]
    return (pd.concat(kept) if kept else frames[0]).reset_index(drop=True).infer_objects()


def _concat_nonempty(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    kept = [f for f in frames if len(f)]
    return pd.concat(kept) if kept else empty


def _combine_unknown(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Unknown item codes of the chunks: counts summed, the first display name, in order of
    first appearance."""
    unknown = _concat_nonempty(frames, empty)
    if len(unknown):
        unknown = (unknown.groupby("item_code", sort=False)
                   .agg(display_name=("display_name", "first"), count=("count", "sum")).reset_index())
    return unknown


def parse_sources(sources: list[Source], workers: int | None = None,
                  validate_xsd: bool = False, keep_observations: bool = True) -> _Parsed:
    """Every XML member of `sources`, parsed and mapped (`iter_parsed`), with the chunks'
    products concatenated in document order: everything in memory at once, for callers that
    want it all (`read_archives` itself consumes `iter_parsed` chunk by chunk)."""
    parts = list(iter_parsed(sources, workers=workers, validate_xsd=validate_xsd,
                             keep_observations=keep_observations))

    def cat(name):
        return _concat_nonempty([getattr(p, name) for p in parts], getattr(parts[0], name))

    obs = _concat_obs([p.observations for p in parts]) if keep_observations else None
    return _Parsed(docs=_concat_docs([p.docs for p in parts], len(parts)), observations=obs,
                   wide=pa.concat_tables([p.wide for p in parts]),
                   value_excl=cat("value_excl").reset_index(drop=True),
                   item_of=cat("item_of").reset_index(drop=True),
                   unknown=_combine_unknown([p.unknown for p in parts], parts[0].unknown),
                   n_mapped=sum(p.n_mapped for p in parts),
                   guidance_observations=_concat_obs([p.guidance_observations for p in parts]),
                   n_observations=sum(p.n_observations for p in parts))


# ---------------------------------------------------------------------------------------------
# Linking documents to persons and municipalities
# ---------------------------------------------------------------------------------------------

# the person key is shared with the UKE reader (one rule): hsutils.inputs.person_keys
_norm = person_keys.normalise
insurer_number = person_keys.insurer_number
person_key = person_keys.person_key


_read_helper_csv = person_keys.read_helper_csv
_pick = person_keys.pick


def load_insurer_munis(path: Path) -> dict[str, str]:
    """保険者市町村対応表: 保険者番号 → 5-digit municipality code."""
    from hsutils.core import codes as _codes

    df = _read_helper_csv(path)
    try:
        ins = insurer_number(_pick(df, "保険者番号", "insurer"))
        muni, errors = _codes.normalize_muni_codes(_norm(_pick(df, "市町村コード", "muni_code")))
    except DataError as e:
        raise DataError(f"{path.name}: {e}")
    bad = errors.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path.name}: {i + 2} 行目の市町村コードが正しくありません（{errors.iloc[i]}）")
    return dict(zip(ins, muni.astype(str)))


def _first_file(folder: Path | None, names) -> Path | None:
    if folder is None:
        return None
    for n in names:
        if (folder / n).is_file():
            return folder / n
    return None


# ---------------------------------------------------------------------------------------------
# Observations → wide text frame
# ---------------------------------------------------------------------------------------------

def _fiscal_year(dates: pd.Series) -> pd.Series:
    return (dates.dt.year - (dates.dt.month < 4)).astype("Int64")


def _age_at_fy_end(birth: pd.Series, fy: pd.Series) -> pd.Series:
    """Age reached in fiscal year `fy` = age at its end, 3月31日 (docs/rules.md §1.4), vectorised.

    年齢計算ニ関スル法律: the new age is reached at the end of the day before the birthday, so a
    person born on 4月1日 reaches it on 3月31日, inside the fiscal year; only birthdays from
    4月2日 fall in the next fiscal year.
    """
    end_year = fy.astype("float64") + 1
    age = end_year - birth.dt.year
    later = (birth.dt.month > 4) | ((birth.dt.month == 4) & (birth.dt.day > 1))
    return (age - later.astype("float64")).astype("Int64")


def _parse_ymd(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s.str.slice(0, 8), format="%Y%m%d", errors="coerce").astype("datetime64[ns]")


_HEADER_COLUMNS = ("person_id", "fy", "muni_code", "exam_date", "sex", "age")


@dataclass
class _Wide:
    frame: pd.DataFrame           # text cells, canonical column names, one row per document
    item_of: pd.DataFrame         # doc, col, item (int codes: `_item_label`) → item code used
    value_excl: pd.DataFrame      # value-level exclusions found here (unit, code, JDS)


_VALUE_COLUMNS = tuple(c for c in TABLES["kenshin"].names if c not in _HEADER_COLUMNS)
_COL_INDEX = {c: i for i, c in enumerate(_VALUE_COLUMNS)}
_MEAN_ITEM = -1  # item_of.item of a blood pressure that is the mean of 1回目/2回目
_MEAN_LABEL = "1回目・2回目の平均"
_ROLES = ("value", "code", "bp_reported", "bp_1", "bp_2", "blood_time", "tg_fasting", "tg_casual",
          "med_recheck", "legacy_jds", "unused")


@dataclass(frozen=True)
class _ItemArrays:
    """The item table as arrays indexed by item number (= row = priority)."""

    index: dict          # item code → item number
    codes: np.ndarray    # object: item code
    col: np.ndarray      # int: index into _VALUE_COLUMNS, -1 for none
    role: np.ndarray     # int: index into _ROLES
    unit: np.ndarray     # object: expected unit ("" = not checked)
    unit_cf: np.ndarray  # object: expected unit, casefolded
    maps: tuple          # per item: {XML answer code → canonical code} or None


@functools.lru_cache(maxsize=1)
def _item_arrays() -> _ItemArrays:
    t = _item_table()
    maps = _value_maps(t)
    return _ItemArrays(
        index={c: i for i, c in enumerate(t["item_code"])},
        codes=t["item_code"].to_numpy(dtype=object),
        col=np.array([_COL_INDEX.get(c, -1) for c in t["column"]], dtype=np.int64),
        role=np.array([_ROLES.index(r) for r in t["role"]], dtype=np.int64),
        unit=t["unit"].to_numpy(dtype=object),
        unit_cf=np.array([u.casefold() for u in t["unit"]], dtype=object),
        maps=tuple(maps.get(c) for c in t["item_code"]))


def _item_label(item: np.ndarray) -> np.ndarray:
    """item_of.item → the item code text (or the 1回目・2回目 mean label)."""
    labels = np.append(_item_arrays().codes, _MEAN_LABEL)  # index -1 = the mean
    return labels[np.asarray(item, dtype=np.int64)]


def _dictionary_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list]:
    """A dictionary-encoded column → (indices with -1 for null, dictionary values)."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    idx = arr.indices.to_numpy(zero_copy_only=False)
    if arr.null_count:
        idx = np.where(arr.is_valid().to_numpy(zero_copy_only=False), idx, -1)
    return np.asarray(idx, dtype=np.int64), arr.dictionary.to_pylist()


def _obs_items(obs_t: pa.Table) -> np.ndarray:
    """Item number (row of the item table) of each observation; -1 = not in the table."""
    if obs_t.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    idx, codes = _dictionary_codes(obs_t["item_code"])
    index = _item_arrays().index
    to_item = np.array([index.get(c, -1) for c in codes] + [-1], dtype=np.int64)
    return to_item[idx]


def _first_per_doc(doc: np.ndarray) -> np.ndarray:
    """Positions of the first row of each document in `doc` (sorted by document)."""
    if not len(doc):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])


def _wide_values(obs_t: pa.Table, values: list, it: np.ndarray, docs: pd.Index) -> _Wide:
    """Pivot the mapped observations to one text row per document (rules in the module
    docstring), vectorised over the chunk: every observation's item number `it` indexes the
    item table's arrays; the rare value problems are listed with pandas on their few rows.
    `values`: the observations' value column as parsed (a list; no conversion from Arrow)."""
    ia = _item_arrays()
    R = {r: i for i, r in enumerate(_ROLES)}
    doc = obs_t["doc"].to_numpy().astype(np.int64)
    use = np.flatnonzero((it >= 0) & (ia.role[np.maximum(it, 0)] != R["unused"])
                         & (docs.get_indexer(doc) >= 0))
    it, doc = it[use], doc[use]
    value = np.array(values, dtype=object)[use]
    missing = obs_t["value"].is_null().to_numpy(zero_copy_only=False)[use]  # from Arrow, not per object
    value[missing] = np.nan
    uidx, udict = _dictionary_codes(obs_t["unit"]) if len(obs_t) else (np.zeros(0, np.int64), [])
    uidx = uidx[use]
    role = ia.role[it]
    col = ia.col[it]
    excl = []

    def excl_frame(rows, values, reason):
        return pd.DataFrame({"doc": doc[rows], "item_code": pd.Series(ia.codes[it[rows]], dtype="str"),
                             "column": pd.Series(np.array(_VALUE_COLUMNS, dtype=object)[col[rows]], dtype="str"),
                             "value": values, "reason": reason})

    # coded answers: XML code → canonical code (value_map); an undefined code is listed
    coded = np.flatnonzero(np.isin(role, [R["code"], R["med_recheck"], R["blood_time"]]))
    if len(coded):
        vcodes, vuniq = pd.factorize(pd.Series(value[coded], dtype=object))
        nu = len(vuniq) + 1
        pair = it[coded] * nu + (vcodes + 1)  # value code 0 = missing
        pairs, inv = np.unique(pair, return_inverse=True)
        vals = [None] + list(vuniq)
        out = np.array([(ia.maps[p // nu] or {}).get(vals[p % nu], np.nan) if p % nu else np.nan
                        for p in pairs.tolist()], dtype=object)
        mapped = out[inv]
        unmapped = np.array([isinstance(x, float) for x in out], dtype=bool)[inv]  # NaN: no canonical code
        bad = unmapped & ~missing[coded]
        if bad.any():
            b = coded[bad]
            allowed = pd.Series([", ".join(ia.maps[i] or {}) for i in it[b]], dtype="str")
            excl.append(excl_frame(b, value[b], "回答コードが定義にありません（" + allowed + " のいずれかが必要）"))
        value[coded] = mapped
        missing[coded] = unmapped
    # PQ unit check: a different unit is not converted, it is listed (as for CSV files)
    # compared as integer ids of the casefolded units (one id per distinct unit text)
    ids: dict[str, int] = {}
    unit_id = np.array([ids.setdefault(u.casefold(), len(ids)) for u in udict] + [-1], dtype=np.int64)[uidx]
    expected = np.array([ids.get(u, -2) for u in ia.unit_cf], dtype=np.int64)[it]
    wrong = (ia.unit_cf[it] != "") & (uidx >= 0) & (unit_id != expected)
    if wrong.any():
        b = np.flatnonzero(wrong)
        unit = pd.Series(np.array(udict, dtype=object)[uidx[b]], dtype=object)
        excl.append(excl_frame(b, pd.Series(value[b], dtype=object).astype(str) + " " + unit.astype(str),
                               "単位が違います（" + pd.Series(ia.unit[it[b]], dtype="str") + " が必要）"))
    jds = (role == R["legacy_jds"]) & ~wrong  # a wrong unit is listed once, as such
    if jds.any():
        b = np.flatnonzero(jds)
        excl.append(excl_frame(b, value[b], "HbA1c（JDS値）は NGSP値と混在させないため使いません"))
    keep = np.flatnonzero(~wrong & ~jds & ~missing)
    order = keep[np.lexsort((it[keep], doc[keep]))]  # by document, then the item table's order
    doc, it, role, col, value = doc[order], it[order], role[order], col[order], value[order]

    frame = np.full((len(docs), len(_VALUE_COLUMNS)), None, dtype=object)
    pos = docs.get_indexer(doc)
    item_of = []

    def put(rows, c, vals, items=None):
        frame[pos[rows], c] = vals
        if items is not None:
            item_of.append((doc[rows], np.full(len(rows), c), items))

    def first(mask):  # rows of `mask`, the first per document
        rows = np.flatnonzero(mask)
        return rows[_first_per_doc(doc[rows])]

    plain = np.flatnonzero(np.isin(role, [R["value"], R["code"]]))
    by_col = plain[np.argsort(col[plain], kind="stable")]
    if len(by_col):
        c, d = col[by_col], doc[by_col]
        f = by_col[np.r_[True, (c[1:] != c[:-1]) | (d[1:] != d[:-1])]]
        put(f, col[f], value[f], it[f])
    # blood pressure: その他 = reported value; else mean of 1回目/2回目 (TOKUTEI_XML §1.6)
    for name in ("sbp", "dbp"):
        c = _COL_INDEX[name]
        rep = first((col == c) & (role == R["bp_reported"]))
        put(rep, c, value[rep], it[rep])
        rd = np.flatnonzero((col == c) & np.isin(role, [R["bp_1"], R["bp_2"]]))
        if len(rd):
            num = pd.to_numeric(pd.Series(value[rd], dtype=object), errors="coerce")
            mean = num.groupby(doc[rd]).mean()
            mean = mean[mean.notna() & ~mean.index.isin(doc[rep])]
            if len(mean):
                # mean of two readings, written as the loader reads numbers ("123.5")
                p = docs.get_indexer(mean.index.to_numpy())
                frame[p, c] = mean.astype("str").to_numpy(dtype=object)
                item_of.append((mean.index.to_numpy(dtype=np.int64), np.full(len(mean), c),
                                np.full(len(mean), _MEAN_ITEM)))
    # 中性脂肪: 空腹時 code first, then 随時; tg_fasting from 9N141, else from the code kind
    tg = first(np.isin(role, [R["tg_fasting"], R["tg_casual"]]))
    put(tg, _COL_INDEX["tg"], value[tg], it[tg])
    put(tg, _COL_INDEX["tg_fasting"], np.where(role[tg] == R["tg_fasting"], "1", "2").astype(object))
    bt = first(role == R["blood_time"])
    put(bt, _COL_INDEX["tg_fasting"], value[bt])
    # 服薬: 保険者再確認 overrides the self-report
    for name in ("med_bp", "med_glucose", "med_lipid"):
        over = first((col == _COL_INDEX[name]) & (role == R["med_recheck"]))
        put(over, _COL_INDEX[name], value[over])
    if item_of:
        d, c, i = (np.concatenate(x) for x in zip(*item_of))
    else:
        d = c = i = np.zeros(0, dtype=np.int64)
    value_excl = pd.concat(excl, ignore_index=True) if excl else \
        pd.DataFrame(columns=["doc", "item_code", "column", "value", "reason"])
    return _Wide(frame=pd.DataFrame(frame, index=docs, columns=list(_VALUE_COLUMNS), dtype=object),
                 item_of=pd.DataFrame({"doc": d.astype(np.int64), "col": c.astype(np.int16),
                                       "item": i.astype(np.int16)}),
                 value_excl=value_excl)


class _DocFilter:
    """Documents of one kind being validated: `drop` excludes documents as a whole (each listed
    once, scope 行, file = archive/document path); `bad` marks the excluded ones."""

    def __init__(self, docs: pd.DataFrame, table: str):
        self.docs, self.table = docs, table
        self.bad = pd.Series(False, index=docs.index)
        self.excl: list[pd.DataFrame] = []

    def drop(self, mask, column, values, reason) -> None:
        mask = mask.fillna(False).astype(bool) & ~self.bad
        if mask.any():
            sel = self.docs[mask]
            why = reason[mask].to_numpy(dtype=object) if isinstance(reason, pd.Series) else reason
            ex = _io._exclusion_frame("", self.table, sel["doc"], column,
                                      values[mask].to_numpy(dtype=object), why, _io.SCOPE_ROW)
            ex["file"] = (sel["archive"] + "/" + sel["path"]).to_numpy()
            self.excl.append(ex)
            self.bad |= mask

    def check_header(self, fields) -> None:
        d = self.docs
        self.drop(d["error"].notna(), "文書", d["path"], d["error"].fillna(""))
        for col in fields:
            ja = _HEADER_JA[col]
            self.drop(d[col].isna(), ja, d[col].fillna(""), f"{ja} がありません（ヘッダ部の必須項目）")


_HEADER_JA = {"insurer": "保険者番号", "bango": "被保険者証番号", "sex": "性別", "birth": "生年月日",
              "exam_date": "受診日"}


def _memo(memo: dict, key, make):
    """`memo[key]`, made by `make()` the first time (the lookup tables of one import)."""
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _enrollment_lookup(enrollment: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(muni by (person, fy), the person's muni of the latest fy) from the enrollment table."""
    e = enrollment[["person_id", "fy", "muni_code"]]
    by_year = pd.Series(e["muni_code"].to_numpy(),
                        index=pd.MultiIndex.from_arrays([e["person_id"], e["fy"].astype("int64")]))
    by_year = by_year[~by_year.index.duplicated()]
    latest = e.sort_values("fy").drop_duplicates("person_id", keep="last").set_index("person_id")["muni_code"]
    return by_year, latest


def _link(f: _DocFilter, data_folder: Path | None, enrollment: pd.DataFrame | None,
          memo: dict | None = None) -> None:
    """person_id and muni_code of the documents in `f` (needs its `fy` column); documents that
    cannot be linked are dropped. Person key: `hsutils.inputs.person_keys` (docs/formats/person_key.md);
    municipality: 保険者市町村対応表, else the enrollment table (same year, else latest).

    `memo` (one dict per import) keeps the lookup tables (個人ID対応表, 保険者市町村対応表, the
    enrollment's) between the calls of one import (健診 chunk by chunk, then 保健指導)."""
    memo = {} if memo is None else memo
    d = f.docs
    key = person_key(d["insurer"], d["kigo"], d["bango"], d["edaban"])
    id_file = person_keys.find_file(data_folder, PERSON_ID_FILES)
    salt_file = person_keys.find_file(data_folder, SALT_FILES)
    if id_file is not None:
        ids = _memo(memo, id_file, lambda: person_keys.read_person_ids(id_file))
        pid = pd.Series(ids.lookup(key).to_numpy(), index=key.index)
        f.drop(pid.isna(), "被保険者証番号", key,
               f"{id_file.name} にない被保険者です（保険者番号-記号-番号-枝番 が一致する行、"
               "または枝番のない場合は保険者番号-記号-番号 が1人に決まる行が必要）")
    elif salt_file is not None:
        pid = person_keys.pseudonyms(key, salt_file)
    else:
        pid = key
    d["person_id"] = pid
    muni = pd.Series(np.nan, index=d.index, dtype="object")
    ins = insurer_number(d["insurer"])
    map_file = _first_file(data_folder, INSURER_MUNI_FILES)
    if map_file is not None:
        muni = ins.map(_memo(memo, ("insurer_munis", map_file), lambda: load_insurer_munis(map_file)))
    if enrollment is not None and len(enrollment):
        by_year, latest = _memo(memo, ("enrollment", id(enrollment)), lambda: _enrollment_lookup(enrollment))
        fy_known = d["fy"].fillna(0).astype("int64")
        got = by_year.reindex(pd.MultiIndex.from_arrays([d["person_id"], fy_known])).to_numpy()
        muni = muni.fillna(pd.Series(got, index=d.index))
        muni = muni.fillna(d["person_id"].map(latest))
    f.drop(muni.isna(), "保険者番号", ins.fillna(""),
           "市町村を決められません（保険者番号が保険者市町村対応表になく、対象者表にもこの人がいません）")
    d["muni_code"] = muni



# ---------------------------------------------------------------------------------------------
# The import
# ---------------------------------------------------------------------------------------------

@dataclass
class XmlImport:
    """Result of reading 特定健診 XML archives."""

    result: _io.LoadResult            # canonical kenshin (data, exclusions, counts)
    documents: pd.DataFrame           # one row per XML file: archive, path, kind, status
    observation_table: pa.Table | None  # audit table, one row per observation (OBS_COLUMNS);
    #                                    None when read with keep_observations=False
    unknown_items: pd.DataFrame       # item_code, display_name, count
    sources: list[str] = field(default_factory=list)
    guidance: _io.LoadResult | None = None          # canonical guidance from hg08 documents
    guidance_observation_table: pa.Table | None = None  # audit table of the hg08 documents
    guidance_unknown_items: pd.DataFrame | None = None  # hg08 item codes not in the table
    guidance_summary: dict = field(default_factory=dict)  # documents, rows, derived targets
    n_observations: int = 0                         # 健診 observations read (kept or not)

    @property
    def observations(self) -> pd.DataFrame | None:
        """The audit table as pandas (coded columns categorical); None when not kept."""
        return None if self.observation_table is None else self.observation_table.to_pandas()

    @property
    def kenshin(self) -> pd.DataFrame:
        return self.result.data

    @property
    def exclusions(self) -> pd.DataFrame:
        return self.result.exclusions


_TEXT_SCHEMA = pa.schema([(c, pa.string()) for c in (*_HEADER_COLUMNS, *_VALUE_COLUMNS)])
_ITEM_OF_SCHEMA = pa.schema([("doc", pa.int64()), ("col", pa.int16()), ("item", pa.int16())])
_KINDS = ("kenshin", "guidance", "other")  # documents["kind"]; its code per document while streaming
_ID_FIELDS = ["birth", "insurer", "kigo", "bango", "edaban"]  # never kept in `documents`
SPILL_ROWS = 256  # rows per record batch of the spilled text cells (a slice reads whole batches)


def _text_table(wide: pa.Table, keep: pd.DataFrame) -> pa.Table:
    """The text cells of the documents `keep` (in its order) for `hsutils.inputs.io`: header
    columns from the document rows, item cells taken from the compact Arrow table (null = no
    value); all columns Arrow strings (`_TEXT_SCHEMA`). ``.to_pandas()`` is the text frame."""
    at = pd.Index(wide["doc"].to_numpy()).get_indexer(keep["doc"].to_numpy())
    values = wide.take(pa.array(at, mask=at < 0)).drop_columns(["doc"])
    head = (keep["person_id"], keep["fy"].astype(str), keep["muni_code"].astype(str),
            keep["exam"].dt.strftime("%Y-%m-%d"), keep["sex"], keep["age"].astype(str))
    arrays = [pa.array(s.to_numpy(dtype=object), type=pa.string(), from_pandas=True) for s in head]
    return pa.Table.from_arrays(arrays + values.columns, schema=_TEXT_SCHEMA)


class _Spill:
    """The kept 健診 documents of an import, chunk by chunk, in Arrow IPC files in `folder`
    (streaming, issue 17): their text cells (`_text_table`), each chunk's rows in (受診日,
    document) order in record batches of SPILL_ROWS rows, and their item codes (`item_of`, one
    batch per chunk). A slice of the import's (受診日, document) order is one range of rows in
    every chunk, so it reads back only the batches that hold them (`rows`)."""

    NAMES = ("rows.arrow", "item_of.arrow")

    def __init__(self, folder: Path):
        self.folder = folder
        opts = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
        self._files = [pa.OSFile(str(folder / n), "wb") for n in self.NAMES]
        self._writers = [pa.ipc.new_file(f, s, options=opts)
                         for f, s in zip(self._files, (_TEXT_SCHEMA, _ITEM_OF_SCHEMA))]
        self.first_batch: list[int] = []  # per chunk: its first record batch in rows.arrow
        self.n_batches = 0
        self._readers: list = []

    def add(self, table: pa.Table, item_of: pd.DataFrame) -> int:
        """Write one chunk's rows (in (受診日, document) order) and item codes; its number."""
        chunk = len(self.first_batch)
        self.first_batch.append(self.n_batches)
        for batch in table.combine_chunks().to_batches(max_chunksize=SPILL_ROWS):
            self._writers[0].write_batch(batch)
            self.n_batches += 1
        self._writers[1].write_table(pa.Table.from_pandas(item_of, schema=_ITEM_OF_SCHEMA, preserve_index=False))
        return chunk

    def finish(self) -> None:
        """Close the writers and open the files for reading."""
        for w in self._writers:
            w.close()
        self._writers = []
        self.close()
        self._files = [pa.OSFile(str(self.folder / n), "rb") for n in self.NAMES]
        self._readers = [pa.ipc.open_file(f) for f in self._files]
        assert self._readers[0].num_record_batches == self.n_batches, "spill accounting broken"

    def rows(self, chunk: np.ndarray, pos: np.ndarray) -> pa.Table:
        """The rows at (chunk number, position in the chunk), in this order. The positions asked
        of one chunk must be one contiguous range (what a slice of the (受診日, document) order
        asks: each chunk was written in that order)."""
        if not len(chunk):
            return _TEXT_SCHEMA.empty_table()
        by = np.lexsort((pos, chunk))
        c, p = chunk[by], pos[by]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        ends = np.r_[starts[1:], len(c)]
        at = np.empty(len(c), dtype=np.int64)
        pieces, n = [], 0
        for s, e in zip(starts.tolist(), ends.tolist()):  # a loop over the chunks
            lo, hi = int(p[s]), int(p[e - 1]) + 1
            assert hi - lo == e - s, "the rows of a chunk are read back as one range"
            b0, b1 = lo // SPILL_ROWS, (hi - 1) // SPILL_ROWS
            first = self.first_batch[int(c[s])]
            batches = [self._readers[0].get_batch(first + b) for b in range(b0, b1 + 1)]
            pieces.append(pa.Table.from_batches(batches, schema=_TEXT_SCHEMA).slice(lo - b0 * SPILL_ROWS, hi - lo))
            at[by[s:e]] = n + (p[s:e] - lo)
            n += hi - lo
        return pa.concat_tables(pieces).take(pa.array(at))

    def item_of(self, docs) -> pd.DataFrame:
        """The item_of rows of the documents `docs` (in the order written)."""
        import pyarrow.compute as pc

        want = pa.array(distinct.unique_sorted(np.asarray(docs, dtype=np.int64)))
        reader = self._readers[1]
        got = [b.filter(pc.is_in(b["doc"], value_set=want)) for b in
               (reader.get_batch(i) for i in range(reader.num_record_batches))]
        return pa.Table.from_batches(got, schema=_ITEM_OF_SCHEMA).to_pandas()

    def close(self) -> None:
        for w in self._writers:
            w.close()
        for f in self._files:
            f.close()
        self._writers, self._readers, self._files = [], [], []


class _DocFiles:
    """``archive/document path`` of documents by number, from the sources (the documents are
    numbered 1, 2, … over the members of the sources in order: `_chunk_tasks`), so that the
    import keeps no per-document text for the exclusions' file labels."""

    def __init__(self, sources: list[Source]):
        self.sources = sources
        self.first = np.cumsum([1] + [len(s.members) for s in sources])  # first doc of each source; [-1] = n + 1

    def __call__(self, docs) -> pd.Series:
        """The labels of `docs` (a str Series aligned with `docs`; missing for numbers that are not
        documents, e.g. the 保健指導 rows derived from the 健診)."""
        d = np.asarray(docs, dtype=np.int64)
        k = np.searchsorted(self.first, d, side="right") - 1
        ok = (d >= 1) & (d < self.first[-1])
        out = np.full(len(d), np.nan, dtype=object)
        for src in np.unique(k[ok]).tolist():  # a loop over the archives concerned
            sel = np.flatnonzero(ok & (k == src))
            s = self.sources[src]
            out[sel] = s.label + "/" + np.asarray(s.members, dtype=object)[d[sel] - self.first[src]]
        return pd.Series(out, index=docs.index if isinstance(docs, pd.Series) else None, dtype="str")


def _check_kenshin(kdocs: pd.DataFrame, data_folder: Path | None, enrollment: pd.DataFrame | None,
                   memo: dict) -> _DocFilter:
    """The document-level checks of 健診 documents (one chunk's: each document on its own) and
    the link to person and municipality; adds exam, fy, age, person_id, muni_code to `kdocs`."""
    f = _DocFilter(kdocs, "kenshin")
    f.check_header(("insurer", "bango", "sex", "birth", "exam_date"))
    exam = _parse_ymd(kdocs["exam_date"].fillna(""))
    birth = _parse_ymd(kdocs["birth"].fillna(""))
    f.drop(exam.isna(), "受診日", kdocs["exam_date"].fillna(""), "受診日が日付として読めません（YYYYMMDD が必要）")
    f.drop(birth.isna(), "生年月日", kdocs["birth"].fillna(""), "生年月日が日付として読めません（YYYYMMDD が必要）")
    f.drop(birth > exam, "生年月日", kdocs["birth"].fillna(""), "生年月日が受診日より後です")
    kdocs["exam"] = exam
    kdocs["fy"] = _fiscal_year(exam)
    kdocs["age"] = _age_at_fy_end(birth, kdocs["fy"])
    _link(f, data_folder, enrollment, memo)
    return f


def read_archives(paths, enrollment: pd.DataFrame | None = None, data_folder=None,
                  workers: int | None = None, validate_xsd: bool = False,
                  known_munis=None, keep_observations: bool = True, spill_dir=None, sink=None) -> XmlImport:
    """Read 特定健診 XML archives and/or extracted folders into the canonical kenshin table.

    `paths`: a folder (archives and extracted folders inside it), one archive, or a list.
    `enrollment`: the canonical enrollment table, used for the municipality when no
    保険者市町村対応表 is given. `data_folder`: where the optional helper files (個人ID対応表,
    salt file, 保険者市町村対応表) are looked up (default: `paths` when it is a folder).
    `validate_xsd`: check every 健診 document against the XSD its archive carries
    (``XSD/hc08*.xsd``); the result per document is `documents["xsd"]`. `known_munis`: codes
    of the municipality master (other codes exclude the document, as for CSV files).
    `keep_observations`: keep the 健診 audit table (one row per observation) and the full
    document table; the pipeline passes False, so that the import streams and its memory grows
    by tens of bytes per document (issue 17); `documents` is then the compact table doc,
    archive, kind, status (categorical; the path of an excluded document is in the exclusions).

    Streaming: the chunks (`iter_parsed`) are checked and linked one at a time; each chunk's kept
    documents are written (`_Spill`) to a temporary folder in `spill_dir` (default: the system's
    temporary folder; removed at the end, also after an error) and read back in slices of
    VALIDATE_DOCS documents in (受診日, document) order for `io.iter_text_frames`. `sink`: called
    with (data, row numbers) of each validated slice in turn (the kept rows in the order of the
    whole table; the pipeline writes them into the partitions, docs/design.md §8.4); the result's
    `data` and `row_numbers` are then empty (the whole table is never held). Without it the slices
    are put together into `result.data`.
    """
    import shutil
    import tempfile

    if data_folder is None and isinstance(paths, (str, Path)) and Path(paths).is_dir():
        data_folder = Path(paths)
    data_folder = Path(data_folder) if data_folder is not None else None
    sources = find_sources(paths)
    if spill_dir is not None:
        Path(spill_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="hs_xml_", dir=spill_dir))
    try:
        spill = _Spill(tmp)
        try:
            return _read_streamed(sources, spill, enrollment, data_folder, workers, validate_xsd,
                                  known_munis, keep_observations, sink)
        finally:
            spill.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_streamed(sources: list[Source], spill: _Spill, enrollment, data_folder, workers,
                   validate_xsd, known_munis, keep_observations, sink=None) -> XmlImport:
    """`read_archives` on the chunks of `iter_parsed`: per chunk the document checks, the link
    and the spill of the kept documents; then the duplicate rule's order over all of them."""
    memo: dict = {}
    kinds, excl, ve_parts, unknown_parts, obs_parts, gobs_parts, doc_parts, gdoc_parts = ([] for _ in range(8))
    k_doc, k_exam, k_chunk, k_pos = [], [], [], []  # per kept 健診 document (the duplicate rule's order)
    with_value: set = set()  # document columns with a value in some chunk (their dtype when concatenated)
    n_parts = n_docs = n_bad = n_obs = n_mapped = 0
    first_unknown = None
    next_doc = 1
    for part in iter_parsed(sources, workers=workers, validate_xsd=validate_xsd,
                            keep_observations=keep_observations):
        d = part.docs
        assert (d["doc"].to_numpy() == np.arange(next_doc, next_doc + len(d))).all(), "documents out of order"
        next_doc += len(d)
        n_parts += 1
        kind = d["kind"].to_numpy(dtype=object)
        kinds.append(pd.Categorical(kind, categories=_KINDS).codes.astype(np.int8))
        with_value.update(c for c in d.columns if d[c].notna().any())
        if keep_observations:
            doc_parts.append(d.drop(columns=_ID_FIELDS))
            obs_parts.append(part.observations)
        gdoc_parts.append(d[kind == "guidance"])
        gobs_parts.append(part.guidance_observations)
        if first_unknown is None:
            first_unknown = part.unknown
        if len(part.unknown):
            unknown_parts.append(part.unknown)
        n_obs += part.n_observations
        n_mapped += part.n_mapped
        kd = d[kind == "kenshin"].copy()
        if not len(kd):
            continue
        n_docs += len(kd)
        f = _check_kenshin(kd, data_folder, enrollment, memo)
        excl.extend(f.excl)
        n_bad += int(f.bad.sum())
        # Duplicate rule: earliest 受診日 first (same day: archive/path order); io keeps the first.
        keep = kd[~f.bad].sort_values(["exam", "doc"], kind="stable")
        kept = keep["doc"].to_numpy(dtype=np.int64)
        chunk = spill.add(_text_table(part.wide, keep), part.item_of[part.item_of["doc"].isin(kept)])
        k_doc.append(kept)
        k_exam.append(keep["exam"].to_numpy(dtype="datetime64[ns]").view(np.int64))
        k_chunk.append(np.full(len(kept), chunk, dtype=np.int32))
        k_pos.append(np.arange(len(kept), dtype=np.int32))
        if len(part.value_excl):  # value-level problems found before validation are blanked and listed
            ve_parts.append(part.value_excl[part.value_excl["doc"].isin(kept)])
    del part, d, kd
    spill.finish()
    kinds = np.concatenate(kinds)
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
    k_doc, k_exam = cat(k_doc, np.int64), cat(k_exam, np.int64)
    k_chunk, k_pos = cat(k_chunk, np.int32), cat(k_pos, np.int32)
    order = np.lexsort((k_doc, k_exam))  # (受診日, document): the duplicate rule's order
    n = VALIDATE_DOCS
    if len(order) <= n:  # one slice: validated as one frame
        slices = [(_io.read_text_frame(spill.rows(k_chunk[order], k_pos[order]).to_pandas(), "kenshin", LABEL,
                                       row_numbers=k_doc[order], known_munis=known_munis), None)]
    else:  # the text cells of VALIDATE_DOCS documents at a time (duplicates across slices: io)
        slices = _io.iter_text_frames(((spill.rows(k_chunk[o], k_pos[o]).to_pandas(), k_doc[o])
                                       for o in (order[i:i + n] for i in range(0, len(order), n))),
                                      "kenshin", LABEL, known_munis=known_munis)
    # each validated slice goes to `sink` (or is kept, for the whole table); only its counts,
    # exclusions and warnings (`ChunkTally`), the kept documents (a flag per document) and the rows
    # that may make 保健指導 対象者 (`_guidance_targets`, when there are 保健指導 documents) stay
    tally = _io.ChunkTally("kenshin", LABEL)
    used = np.zeros(len(kinds) + 1, dtype=bool)  # by document number
    with_guidance = bool((kinds == _KINDS.index("guidance")).any())
    kept, targets = [], []
    for rs, n_lines in slices:
        tally.add(rs, n_lines)
        used[rs.row_numbers] = True
        if with_guidance:
            targets.append(_guidance_targets(rs.data))
        if sink is None:
            kept.append((rs.data, rs.row_numbers))
        else:
            sink(rs.data, rs.row_numbers)
        del rs
    del order, k_chunk, k_pos, k_exam, slices
    r = tally.result()
    if sink is None and len(kept) == 1 and tally.whole:  # the one frame as validated
        r.data, r.row_numbers = kept[0]
    elif sink is None:
        r.data = _io.concat_chunks([d for d, _ in kept], "kenshin")
        r.row_numbers = np.concatenate([rn for _, rn in kept])
    else:  # rows handed to `sink`: none here, in the dtypes of the whole table
        r.data = pd.DataFrame({c: pd.Series(dtype=d) for c, d in tally.final_dtypes().items()})
    del kept

    # exclusions: io's rows → archive/document and item code
    kt = TABLES["kenshin"]
    files_of = _DocFiles(sources)
    io_ex = r.exclusions.copy()
    if len(io_ex):
        io_ex["file"] = files_of(io_ex["row"]).to_numpy()
        ja_to_name = {c.ja: c.name for c in kt.columns}
        io_of = spill.item_of(io_ex["row"])  # the rows concerned only
        code = dict(zip(zip(io_of["doc"].tolist(), np.array(_VALUE_COLUMNS)[io_of["col"].to_numpy()].tolist()),
                        _item_label(io_of["item"].to_numpy()).tolist()))
        names = io_ex["column"].map(ja_to_name)
        lab = pd.Series([code.get(k, np.nan) for k in zip(io_ex["row"].tolist(), names.fillna("").tolist())],
                        index=io_ex.index, dtype=object)
        io_ex["column"] = np.where(lab.notna(), io_ex["column"] + "（" + lab.fillna("") + "）", io_ex["column"])
    pre = _io._empty_exclusions()
    ve = pd.concat(ve_parts) if ve_parts else None
    if ve is not None and len(ve):
        pre = pd.DataFrame({
            "file": files_of(ve["doc"]).to_numpy(), "table": "kenshin", "row": ve["doc"].to_numpy(),
            "column": [f"{kt.column(c).ja}（{i}）" for c, i in zip(ve["column"], ve["item_code"])],
            "value": ve["value"].astype(str).to_numpy(), "reason": ve["reason"].to_numpy(),
            "scope": _io.SCOPE_VALUE}).astype({"row": "int64"})
    parts = [x for x in (*excl, io_ex, pre) if len(x)]
    exclusions = pd.concat(parts, ignore_index=True) if parts else _io._empty_exclusions()
    exclusions = exclusions.sort_values(["row", "scope"], kind="stable").reset_index(drop=True)

    n_read = n_docs
    n_kept = r.n_kept
    n_dropped = n_bad + r.n_dropped
    assert n_read == n_kept + n_dropped, "document accounting broken"

    unknown_items = _combine_unknown(unknown_parts, first_unknown).sort_values("count", ascending=False, kind="stable")
    unknown_items = pd.DataFrame({
        "item_code": unknown_items["item_code"].astype(str).to_numpy(),
        "display_name": unknown_items["display_name"].astype(object).fillna("").astype(str).to_numpy(),
        "count": unknown_items["count"].astype("int64").to_numpy()})
    gd = _concat_docs(gdoc_parts, n_parts)
    if n_parts > 1:  # the dtypes of the whole document table (`_concat_docs` of all documents)
        for c in gd.columns:
            if c in with_value and gd[c].dtype == object and gd[c].isna().all():
                gd[c] = gd[c].astype("str")
    gd.index = gd["doc"].to_numpy() - 1  # the documents' position in the import, as in the whole table
    gobs = _concat_obs(gobs_parts)
    g = _read_guidance(gd, gobs, len(kinds), files_of, data_folder, enrollment, known_munis,
                       pd.concat(targets, ignore_index=True) if targets else None, memo)
    del targets
    doc_no = np.arange(1, len(kinds) + 1, dtype=np.int64)
    status = np.where(kinds == _KINDS.index("other"), "対象外", np.where(used[1:], "採用", "除外"))
    is_g = kinds == _KINDS.index("guidance")
    status[is_g] = np.where(np.isin(doc_no[is_g], g.used_docs), "採用", "除外")
    if keep_observations:
        docs = _concat_docs(doc_parts, n_parts)
        docs["status"] = status
    else:  # compact: nothing in the pipeline reads it (docstring)
        codes, labels = pd.factorize(pd.Series([s.label for s in sources], dtype=object))
        docs = pd.DataFrame({
            "doc": doc_no,
            "archive": pd.Categorical.from_codes(np.repeat(codes, [len(s.members) for s in sources]),
                                                 categories=labels),
            "kind": pd.Categorical.from_codes(kinds, categories=list(_KINDS)),
            "status": pd.Categorical(status, categories=["採用", "除外", "対象外"])})
    n_g, n_other = int(is_g.sum()), int((kinds == _KINDS.index("other")).sum())
    warnings = list(r.warnings)
    warnings.append(
        f"{LABEL}: アーカイブ・フォルダ {len(sources)} 件、XMLファイル {len(kinds):,} 件"
        f"（特定健診 {n_docs:,} 件、特定保健指導 {n_g:,} 件、"
        f"その他 {n_other:,} 件）、"
        f"検査値 {n_obs:,} 件（項目コード対応あり {n_mapped:,} 件、対応表にない {n_obs - n_mapped:,} 件）")
    if len(unknown_items):
        top = "、".join(f"{c} {d}（{n} 件）" for c, n, d in
                       zip(unknown_items["item_code"].head(10), unknown_items["count"].head(10),
                           unknown_items["display_name"].head(10)))
        warnings.append(f"{LABEL}: 項目コード対応表にない項目 {len(unknown_items)} 種類（分析に使わず監査表に保持）: {top}")
    result = _io.LoadResult(data=r.data, exclusions=exclusions, n_read=n_read, n_kept=n_kept,
                            n_dropped=n_dropped, warnings=warnings, extra_columns=pd.DataFrame(index=range(n_kept)),
                            file=LABEL, table="kenshin", row_numbers=r.row_numbers)
    return XmlImport(result=result, documents=docs,
                     observation_table=_concat_obs(obs_parts) if keep_observations else None,
                     unknown_items=unknown_items, sources=[s.label for s in sources],
                     guidance=g.result, guidance_observation_table=gobs,
                     guidance_unknown_items=g.unknown, guidance_summary=g.summary,
                     n_observations=n_obs)


# ---------------------------------------------------------------------------------------------
# 特定保健指導 (hg08) → the canonical guidance table
# ---------------------------------------------------------------------------------------------

LABEL_GUIDANCE = "特定保健指導XML"
_TARGET_LEVELS = {"1": "積極的支援", "2": "動機付け支援"}  # 保健指導レベル 9N506 / 支援レベル codes


@dataclass
class _GuidanceRead:
    result: _io.LoadResult | None
    used_docs: np.ndarray
    unknown: pd.DataFrame
    summary: dict


def _guidance_targets(kenshin: pd.DataFrame) -> pd.DataFrame:
    """The 健診 rows that make 保健指導 対象者 (reported 保健指導レベル 1/2, age 40–74), with the columns
    `_read_guidance` needs; rows in order (the import keeps these of each validated slice)."""
    lvl = kenshin["guidance_level_reported"].astype("Int64").astype(str)
    age = kenshin["age"].astype("float64")
    at = lvl.isin(list(_TARGET_LEVELS)).to_numpy() & (age >= 40).to_numpy() & (age <= 74).to_numpy()
    return kenshin.loc[at, ["person_id", "fy", "muni_code", "guidance_level_reported"]].reset_index(drop=True)


def _read_guidance(gd: pd.DataFrame, obs_t: pa.Table | None, n_all_docs: int, files_of: _DocFiles,
                   data_folder, enrollment, known_munis, targets: pd.DataFrame | None,
                   memo: dict | None = None) -> _GuidanceRead:
    """The guidance table from the 特定保健指導 documents (docs/formats/tokutei_xml.md §1.7).

    One row per (person, 年度): all documents of a person and year (開始, 実績評価, 途中終了 …)
    make one row. level = 支援レベル (1020000001) of the first document that has it; started =
    a document with a 初回面接日 (section 90030) whose 報告区分 is not 25 初回未完了; completed = a
    報告区分 22 実績評価 document. 年度 = that of 健診実施日 (1020000004) else of 初回面接日.
    対象者 who never started have no document: when any guidance document was read, the 健診
    rows whose reported 保健指導レベル (9N506) is 1/2 at age 40–74 and that have no row are added
    with started = completed = なし (docs/rules.md §1: 対象者 come from the 階層化 of the 健診)."""
    gd = gd.copy()
    empty_unknown = pd.DataFrame({"item_code": pd.Series(dtype=str), "display_name": pd.Series(dtype=str),
                                  "count": pd.Series(dtype="int64")})
    if not len(gd):
        return _GuidanceRead(None, np.array([], dtype=np.int64), empty_unknown, {"documents": 0})
    obs = obs_t.to_pandas() if obs_t is not None else pd.DataFrame(columns=list(OBS_COLUMNS))
    obs = obs.assign(item_code=obs["item_code"].astype(str), value=obs["value"].astype(object))
    items = guidance_item_table()
    known = obs["item_code"].isin(set(items["item_code"]))
    unk = obs[~known]
    unknown = (unk.groupby("item_code", sort=False)
               .agg(display_name=("display_name", "first"), count=("doc", "size")).reset_index())
    unknown = pd.DataFrame({"item_code": unknown["item_code"].astype(str).to_numpy(),
                            "display_name": unknown["display_name"].astype(object).fillna("").astype(str).to_numpy(),
                            "count": unknown["count"].astype("int64").to_numpy()}) \
        .sort_values("count", ascending=False, kind="stable") if len(unknown) else empty_unknown
    m = obs[known].merge(items[["item_code", "role"]], on="item_code")
    first_by_doc = lambda role: m[m["role"].eq(role) & m["value"].notna()].drop_duplicates("doc") \
        .set_index("doc")["value"]  # noqa: E731 (first value per document)
    level_code = first_by_doc("level")
    checkup = first_by_doc("checkup_date")

    f = _DocFilter(gd, "guidance")
    f.check_header(("insurer", "bango"))
    value_excl = []
    lc = gd["doc"].map(level_code)
    gd["level"] = lc.map(_TARGET_LEVELS)
    bad_level = lc.notna() & gd["level"].isna()
    if bad_level.any():
        b = gd[bad_level & ~f.bad]
        value_excl.append(pd.DataFrame({
            "file": (b["archive"] + "/" + b["path"]).to_numpy(), "table": "guidance",
            "row": b["doc"].to_numpy(), "column": "支援レベル（1020000001）", "value": lc[b.index].astype(str).to_numpy(),
            "reason": "支援レベルのコードが 1（積極的支援）・2（動機付け支援）ではありません", "scope": _io.SCOPE_VALUE}))
    first = _parse_ymd(gd["first_date"].fillna(""))
    ck_text = gd["doc"].map(checkup)
    ck = _parse_ymd(ck_text.fillna(""))
    f.drop(gd["first_date"].notna() & first.isna(), "初回面接日", gd["first_date"].fillna(""),
           "初回面接日が日付として読めません（YYYYMMDD が必要）")
    f.drop(ck_text.notna() & ck.isna(), "健診実施日", ck_text.fillna(""),
           "健診実施日（1020000004）が日付として読めません（YYYYMMDD が必要）")
    base = ck.fillna(first)
    f.drop(base.isna(), "健診実施日", ck_text.fillna(""),
           "年度を決められません（健診実施日 1020000004 も初回面接日（指導初回情報セクション）もありません）")
    gd["fy"] = _fiscal_year(base)
    _link(f, data_folder, enrollment, memo)
    keep = gd[~f.bad].copy()
    keep["started"] = keep["first_date"].notna() & keep["report_code"].ne(REPORT_GUIDANCE_NOT_STARTED)
    keep["completed"] = keep["report_code"].eq(REPORT_GUIDANCE_FINAL)
    keep = keep.sort_values("doc", kind="stable")
    rows = (keep.groupby(["person_id", "fy"], sort=False)
            .agg(doc=("doc", "first"), muni_code=("muni_code", "first"), level=("level", "first"),
                 started=("started", "any"), completed=("completed", "any"), n=("doc", "size"))
            .reset_index())
    frame = pd.DataFrame({"person_id": rows["person_id"].to_numpy(), "fy": rows["fy"].astype(str).to_numpy(),
                          "muni_code": rows["muni_code"].astype(str).to_numpy(),
                          "level": rows["level"].fillna("").to_numpy(),
                          "started": np.where(rows["started"], "1", "2"),
                          "completed": np.where(rows["completed"], "1", "2")})
    row_numbers = rows["doc"].to_numpy(dtype=np.int64)
    # 対象者 without any document, from the 健診 (reported 保健指導レベル 1/2, age 40–74)
    n_derived = 0
    if targets is not None and len(targets):
        t = targets
        have = pd.MultiIndex.from_arrays([rows["person_id"].astype(str), rows["fy"].astype("int64")])
        tk = pd.MultiIndex.from_arrays([t["person_id"].astype(str), t["fy"].astype("int64")])
        t = t[~tk.isin(have)]
        n_derived = len(t)
        if n_derived:
            frame = pd.concat([frame, pd.DataFrame({
                "person_id": t["person_id"].astype(str).to_numpy(), "fy": t["fy"].astype(str).to_numpy(),
                "muni_code": t["muni_code"].astype(str).to_numpy(),
                "level": t["guidance_level_reported"].astype("Int64").astype(str).map(_TARGET_LEVELS).to_numpy(),
                "started": "2", "completed": "2"})], ignore_index=True)
            start = n_all_docs + 1  # row numbers after the documents'
            row_numbers = np.concatenate([row_numbers, np.arange(start, start + n_derived, dtype=np.int64)])
    r = _io.read_text_frame(frame, "guidance", LABEL_GUIDANCE, row_numbers=row_numbers, known_munis=known_munis)
    io_ex = r.exclusions.copy()
    if len(io_ex):
        io_ex["file"] = files_of(io_ex["row"]).fillna("特定健診XML（保健指導レベルからの対象者）").to_numpy()
    parts = [x for x in (*f.excl, *value_excl, io_ex) if len(x)]
    exclusions = pd.concat(parts, ignore_index=True) if parts else _io._empty_exclusions()
    exclusions = exclusions.sort_values(["row", "scope"], kind="stable").reset_index(drop=True)
    # document accounting: every document is used (its row kept) or excluded
    kept_keys = pd.MultiIndex.from_arrays([r.data["person_id"].astype(str), r.data["fy"].astype("int64")]) \
        if len(r.data) else pd.MultiIndex.from_arrays([[], []])
    kk = pd.MultiIndex.from_arrays([keep["person_id"].astype(str), keep["fy"].astype("int64")])
    used = keep["doc"].to_numpy()[kk.isin(kept_keys)]
    n_docs, n_excl_docs = len(gd), len(gd) - len(used)
    assert n_docs == len(used) + n_excl_docs
    n_rows = len(frame)
    n_pre = int(f.bad.sum())
    result = _io.LoadResult(
        data=r.data, exclusions=exclusions, n_read=n_rows + n_pre, n_kept=r.n_kept,
        n_dropped=n_pre + r.n_dropped, warnings=list(r.warnings) + [
            f"{LABEL_GUIDANCE}: 文書 {n_docs:,} 件（採用 {len(used):,} 件、除外 {n_excl_docs:,} 件）→ "
            f"{len(rows):,} 行（同じ人・年度の文書は1行にまとめます）、"
            f"健診の保健指導レベルからの対象者（初回面接なし）{n_derived:,} 行"],
        extra_columns=pd.DataFrame(index=range(r.n_kept)), file=LABEL_GUIDANCE, table="guidance",
        row_numbers=r.row_numbers)
    assert result.n_read == result.n_kept + result.n_dropped, "guidance accounting broken"
    n_obs = obs_t.num_rows if obs_t is not None else 0
    summary = {"documents": n_docs, "used": len(used), "excluded": n_excl_docs, "rows": len(rows),
               "derived": n_derived, "observations": n_obs, "mapped": int(known.sum()),
               "unknown": n_obs - int(known.sum())}
    return _GuidanceRead(result, used, unknown, summary)



def describe_import(imp: XmlImport, k: int = 5) -> list[str]:
    """Japanese lines for `hsutils check`: archives, documents, items, exclusions by reason."""
    d = imp.documents
    ken = d[d["kind"].eq("kenshin")]
    shown = "、".join(imp.sources[:k]) + (" ほか" if len(imp.sources) > k else "")
    lines = [f"  アーカイブ・展開フォルダ: {len(imp.sources):,} 件（{shown or 'なし'}）",
             f"  特定健診の文書: {len(ken):,} 件（採用 {int(ken['status'].eq('採用').sum()):,} 件、"
             f"除外 {int(ken['status'].eq('除外').sum()):,} 件）、その他のXML（交換用基本情報・集計情報等）"
             f" {int(d['kind'].eq('other').sum()):,} 件"]
    if ken["xsd"].notna().any():
        x = ken["xsd"].fillna("")
        lines.append(f"  XSD検証（アーカイブ同梱の XSD）: 適合 {int(x.eq('適合').sum()):,} 件、"
                     f"不適合 {int(x.str.startswith('不適合').sum()):,} 件、"
                     f"検証なし {int((~(x.eq('適合') | x.str.startswith('不適合'))).sum()):,} 件")
        for _, r in ken[x.str.startswith("不適合")].head(k).iterrows():  # a few examples
            lines.append(f"    {r['archive']}/{r['path']}: {r['xsd']}")
    if len(imp.unknown_items):
        lines.append(f"  項目コード対応表にない項目: {len(imp.unknown_items)} 種類、"
                     f"{int(imp.unknown_items['count'].sum()):,} 件（分析に使わず監査表に保持）")
    lines.extend(_reason_lines(imp.exclusions))
    return lines


def _reason_lines(exclusions: pd.DataFrame) -> list[str]:
    if not len(exclusions):
        return []
    lines = ["  除外の理由ごとの件数:"]
    counts = exclusions.groupby(["scope", "reason"], sort=False).size()
    for (scope, reason), n in counts.items():  # a few reason groups
        what = "文書を除外" if scope == _io.SCOPE_ROW else "値を欠損扱い"
        lines.append(f"    [{what}] {reason} … {n:,} 件")
    return lines


def describe_guidance(imp: XmlImport) -> list[str]:
    """Japanese lines for `hsutils check` about the 特定保健指導 (hg08) documents."""
    s = imp.guidance_summary
    if not s.get("documents"):
        return ["  特定保健指導の文書: 0 件（保健指導の表は作りません）"]
    lines = [f"  特定保健指導の文書: {s['documents']:,} 件（採用 {s['used']:,} 件、除外 {s['excluded']:,} 件）→ "
             f"{s['rows']:,} 行（同じ人・年度の文書を1行に）、健診の保健指導レベルからの対象者（初回面接なし）"
             f"{s['derived']:,} 行",
             f"  保健指導の項目: {s['observations']:,} 件（項目コード対応あり {s['mapped']:,} 件、"
             f"対応表にない {s['unknown']:,} 件）"]
    gd = imp.documents[imp.documents["kind"].eq("guidance")]
    if gd["xsd"].notna().any():  # only archives that carry XSD/hg08*.xsd are checked
        x = gd["xsd"].fillna("")
        lines.append(f"  保健指導の XSD検証（アーカイブ同梱の XSD/hg08*.xsd）: 適合 {int(x.eq('適合').sum()):,} 件、"
                     f"不適合 {int(x.str.startswith('不適合').sum()):,} 件、"
                     f"検証なし {int((~(x.eq('適合') | x.str.startswith('不適合'))).sum()):,} 件")
        for _, r in gd[x.str.startswith("不適合")].head(5).iterrows():  # a few examples
            lines.append(f"    {r['archive']}/{r['path']}: {r['xsd']}")
    u = imp.guidance_unknown_items
    if u is not None and len(u):
        top = "、".join(f"{c}（{n} 件）" for c, n in zip(u["item_code"].head(5), u["count"].head(5)))
        lines.append(f"  保健指導の項目コード対応表にない項目: {len(u)} 種類（監査表に保持）: {top}")
    lines.extend(_reason_lines(imp.guidance.exclusions))
    return lines


# ---------------------------------------------------------------------------------------------
# Cache: a batch parses the archives once
# ---------------------------------------------------------------------------------------------

def _sources_hash(folder: Path, extra: list[Path], known_munis) -> str:
    h = hashlib.sha256()
    for s in find_sources(folder):
        for m in ((s.path,) if s.is_zip else [s.path / n for n in s.members]):
            h.update(str(Path(m).relative_to(folder)).encode("utf-8"))
            h.update(Path(m).read_bytes() if not s.is_zip else _file_digest(Path(m)))
    for p in extra:
        if p is not None and p.exists():
            h.update(p.name.encode("utf-8"))
            h.update(_file_digest(p))
    for name in (ITEM_TABLE, GUIDANCE_ITEM_TABLE):
        with resources.files("hsutils").joinpath("data", name).open("rb") as fh:
            h.update(fh.read())
    h.update(json.dumps({"schema": _io.SCHEMA_VERSION, "reader": READER_VERSION,
                         "munis": known_munis}).encode())
    return h.hexdigest()[:32]


def _file_digest(p: Path) -> bytes:
    return bytes.fromhex(files.sha256_file(p))  # the one file hash (hsutils.core.files)


def read_folder_cached(folder, enrollment: pd.DataFrame | None, enrollment_file: Path | None = None,
                       cache_dir=None, known_munis=None, table: str = "kenshin",
                       sink=None) -> _io.LoadResult | None:
    """`read_archives(folder).result` (table ``kenshin``) or `.guidance` (table ``guidance``;
    None when the archives hold no 保健指導 document) through `hsutils.inputs.io`'s content-hash
    Parquet cache. One parse fills both tables' cache entries, so a batch parses XML once.

    The key covers every archive/XML file, the helper files, the enrollment file (it links
    persons to municipalities), both item tables and the schema version.

    `sink` (table ``kenshin``): called with (data, row numbers) of one slice of the 健診 table at a
    time, in order (a parse: the validated slices, `read_archives`; a cache hit: the row groups of
    the cache entry, `io.read_cached_chunks`); the returned LoadResult then has no rows. The
    pipeline writes the slices into the partitions, so that no step holds the whole table
    (docs/design.md §8.4). A parse writes the 健診 entry slice by slice (`io.CacheWriter`) unless
    the whole table is asked for (table ``kenshin`` without `sink`).
    """
    folder = Path(folder)
    known = None if known_munis is None else sorted(str(k) for k in known_munis)
    ken_sink = sink if table == "kenshin" else None
    if cache_dir is None:
        imp = read_archives(folder, enrollment=enrollment, known_munis=known, keep_observations=False,
                            sink=ken_sink)
        return imp.result if table == "kenshin" else imp.guidance
    helpers = [_first_file(folder, n) for n in (PERSON_ID_FILES, SALT_FILES, INSURER_MUNI_FILES)]
    key = _sources_hash(folder, [*helpers, enrollment_file], known)
    paths = {t: _io._cache_paths(Path(cache_dir), f"{t}_xml", key) for t in ("kenshin", "guidance")}
    none_marker = paths["guidance"]["meta"].with_name(paths["guidance"]["meta"].name + ".none")
    if table == "guidance" and none_marker.exists():
        _io.CACHE_STATS["hits"] += 1
        return None
    cached = (_io.read_cached_chunks(paths[table], ken_sink) if ken_sink is not None
              else _io._read_cached(paths[table]))
    if cached is not None:
        _io.CACHE_STATS["hits"] += 1
        return cached
    _io.CACHE_STATS["misses"] += 1
    if table == "kenshin" and sink is None:  # the whole table is asked for
        imp = read_archives(folder, enrollment=enrollment, known_munis=known, keep_observations=False,
                            spill_dir=cache_dir)
        _io._write_cache(paths["kenshin"], imp.result)
    else:  # the 健診 rows only pass through: into the cache entry (and `sink`) slice by slice
        writer = _io.CacheWriter(paths["kenshin"], "kenshin")

        def both(data, row_numbers):
            writer.add(data, row_numbers)
            if ken_sink is not None:
                ken_sink(data, row_numbers)

        try:
            imp = read_archives(folder, enrollment=enrollment, known_munis=known, keep_observations=False,
                                spill_dir=cache_dir, sink=both)
            writer.finish(imp.result)
        except BaseException:
            writer.abandon()
            raise
    if imp.guidance is not None:
        _io._write_cache(paths["guidance"], imp.guidance)
    else:
        none_marker.parent.mkdir(parents=True, exist_ok=True)
        none_marker.write_text("no guidance documents\n", encoding="utf-8")
    return imp.result if table == "kenshin" else imp.guidance
